/*
 * A libfuse 3 binding for Node (N-API, C), made for sosmount's engine.
 *
 * Why our own and not fuse-native (libfuse 2.9): libfuse 3 negotiates
 * READDIRPLUS (a listing hands the kernel every entry's attributes, so
 * `ls -l` does not send one LOOKUP per entry), parallel lookups in one
 * folder (libfuse 3.17.1 and later: older ones never pass the flag to the
 * kernel), and requests of up to 1 MiB (max_pages) where libfuse 2 caps
 * them at 128 KiB: writes; reads too where the mount's read_ahead_kb
 * allows (the kernel's readahead is 128 KiB unless root raises it).
 *
 * Threads: libfuse's multi-threaded loop runs the operations on its own
 * threads. Each operation fills a request on its thread's stack, queues it
 * to the JavaScript thread through one thread-safe function (calls made
 * while the event loop is busy share one wake-up), and waits until
 * JavaScript answers with reply() or the operation's timeout passes.
 *
 * A request's lifetime is owned here, not by JavaScript: each one travels
 * as a ticket that both sides hold (a reference count), whose mutex guards
 * whether it is still pending. The first answer wins; a second answer, or
 * one that comes after the operation's timeout (enforced on the FUSE
 * thread, which then answers EIO), is refused by reply() with an error
 * and touches nothing. Every failure on the way to JavaScript (no memory,
 * a throwing dispatch, a runtime going away) answers the kernel EIO, so no
 * program is left waiting on a request nobody will answer.
 */
/*
 * The loop API. libfuse 3.12 replaced the public loop config (clone_fd,
 * max idle threads) with setters that also bound the number of threads,
 * and runs the old API with at most 10 threads. We compile against the
 * 3.10 API, so that one build loads on every libfuse from 3.10 on (Ubuntu
 * 22.04 ships 3.10.5; a package is built once, on whatever libfuse its
 * builder has), and take 3.12's loop at run time, through dlvsym, where
 * the loaded libfuse has it: each FUSE thread waits for one answer, so
 * their number bounds the requests in flight and must be ours, not 10.
 * SOSFUSE3_PRE_312_LOOP (binding.gyp, from the environment variable of the
 * same name) keeps the old loop on any libfuse: what 3.10 and 3.11 run,
 * built and tested on a newer one.
 */
#define FUSE_USE_VERSION 310
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <fuse.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#if FUSE_VERSION < FUSE_MAKE_VERSION(3, 10)
#error "sosfuse3 needs libfuse 3.10 or newer (Debian 11, Ubuntu 22.04); mounts fall back to libfuse 2"
#endif
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 12)
/* Newer headers name the old loop fuse_loop_mt_32, a symbol 3.10 lacks;
 * every libfuse since 3.2 has the same function as fuse_loop_mt@FUSE_3.2. */
int sosfuse3_loop_mt_v1(struct fuse *f, struct fuse_loop_config *config);
__asm__(".symver sosfuse3_loop_mt_v1, fuse_loop_mt@FUSE_3.2");
#define loop_mt_v1 sosfuse3_loop_mt_v1
#else
#define loop_mt_v1 fuse_loop_mt
#endif

/* libfuse 3.12's loop, where the loaded libfuse has it (found at load). */
static struct {
  void *(*cfg_create)(void);
  void (*cfg_destroy)(void *cfg);
  void (*cfg_set_max_threads)(void *cfg, unsigned int value);
  void (*cfg_set_idle_threads)(void *cfg, unsigned int value);
  void (*cfg_set_clone_fd)(void *cfg, unsigned int value);
  int (*loop_mt)(struct fuse *f, void *cfg);
} loop312;

static void find_loop312(void) {
#ifndef SOSFUSE3_PRE_312_LOOP
  /* Loaded already: we link it. The handle is kept for the process's life. */
  void *lib = dlopen("libfuse3.so.3", RTLD_LAZY | RTLD_NOLOAD);
  if (lib == NULL) return;
  *(void **) &loop312.cfg_create = dlsym(lib, "fuse_loop_cfg_create");
  *(void **) &loop312.cfg_destroy = dlsym(lib, "fuse_loop_cfg_destroy");
  *(void **) &loop312.cfg_set_max_threads = dlsym(lib, "fuse_loop_cfg_set_max_threads");
  *(void **) &loop312.cfg_set_idle_threads = dlsym(lib, "fuse_loop_cfg_set_idle_threads");
  *(void **) &loop312.cfg_set_clone_fd = dlsym(lib, "fuse_loop_cfg_set_clone_fd");
  *(void **) &loop312.loop_mt = dlvsym(lib, "fuse_loop_mt", "FUSE_3.12");
  if (!loop312.cfg_create || !loop312.cfg_destroy || !loop312.cfg_set_max_threads || !loop312.cfg_set_idle_threads
      || !loop312.cfg_set_clone_fd || !loop312.loop_mt) memset(&loop312, 0, sizeof loop312);
#endif
}

/* Operation codes, the same list as OPS in app/fs/fuse3-session.ts. */
enum op {
  OP_GETATTR, OP_READDIR, OP_OPEN, OP_CREATE, OP_READ, OP_WRITE, OP_FLUSH,
  OP_FSYNC, OP_RELEASE, OP_UNLINK, OP_MKDIR, OP_RMDIR, OP_RENAME, OP_LINK,
  OP_SYMLINK, OP_CHMOD, OP_CHOWN, OP_UTIMENS, OP_TRUNCATE, OP_MKNOD,
  OP_READLINK, OP_STATFS, OP_GETXATTR, OP_SETXATTR, OP_LISTXATTR,
  OP_REMOVEXATTR, OP_RELEASEDIR,
  OP_COUNT,
  OP_READY = 100,     /* not an operation: the kernel accepted the session */
  OP_ENDED = 101,     /* not an operation: the loop has ended */
  OP_TIMED_OUT = 102  /* not an operation: a request was answered EIO at its timeout */
};

/* Stat fields as JavaScript sends them, one Float64Array row per entry. */
enum { ST_MODE, ST_UID, ST_GID, ST_SIZE, ST_NLINK, ST_ATIME_MS, ST_MTIME_MS, ST_CTIME_MS, ST_BLOCKS, ST_BLKSIZE, ST_FIELDS };
enum { SF_BSIZE, SF_FRSIZE, SF_BLOCKS, SF_BFREE, SF_BAVAIL, SF_FILES, SF_FFREE, SF_FAVAIL, SF_NAMEMAX, SF_FIELDS };

typedef struct {
  struct fuse *fuse;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int external_buffers; /* 0 where the runtime forbids them (Electron), or when asked to copy */
  /*
   * Where reads and writes go through copies, the copies' Buffers are used
   * again: a fresh 1 MiB Buffer per request costs its allocation and page
   * faults (more than the copy), and garbage to collect. Bounded in bytes
   * (the mount's memory budget); JavaScript thread only.
   */
  struct { size_t len; napi_ref buf; } pool[32];
  int pool_count;
  size_t pool_bytes;
  double timeout_ms[OP_COUNT]; /* 0: no timeout */
  /* Set in init(), from the mount call. */
  unsigned max_write, max_readahead, max_background, congestion_threshold, max_threads, idle_threads;
  double entry_timeout, attr_timeout, negative_timeout;
} session_t;

/*
 * A folder's listing, kept per open folder handle. The kernel reads it in
 * chunks (offsets); JavaScript streams it, one batch per listing page, so
 * the kernel and the program take the first entries while the next pages
 * are still on their way. A pass starts at offset 0.
 */
typedef struct {
  uint32_t count, capacity;
  char **names;
  struct stat *stats;
  double id;     /* names the listing on the JavaScript side */
  int started;   /* JavaScript holds a listing for this handle */
  int complete;  /* JavaScript sent the last batch */
} dirlist_t;

typedef struct {
  int op;
  const char *path;
  const char *path2;
  double num[2];
  char *buf;             /* read: where the data goes */
  const char *wbuf;      /* write: the data */
  size_t len;
  struct fuse_file_info *fi;
  struct stat *st;
  struct statvfs *stv;
  dirlist_t *dir;
  int result;
} request_t;

/* What travels through the thread-safe function to JavaScript. */
enum msg_kind { MSG_REQUEST, MSG_TIMED_OUT, MSG_READY, MSG_ENDED };
typedef struct { int kind; } msg_t;

enum ticket_state { T_PENDING, T_ANSWERED, T_TIMED_OUT };

/*
 * A request as both threads see it. The FUSE thread's request (on its
 * stack) is reachable only while the state is T_PENDING, under the mutex;
 * the FUSE thread leaves only once the state changed, under the same
 * mutex, so reply() never writes into a finished frame.
 */
typedef struct {
  msg_t msg; /* MSG_REQUEST */
  pthread_mutex_t mu;
  pthread_cond_t cond; /* on CLOCK_MONOTONIC: the timeout must not move with the wall clock */
  int state;
  int refs; /* the FUSE thread's, the queue's (then the JavaScript external's), a notice's */
  int op;
  double timeout_ms;
  request_t *r;
  /*
   * A Buffer over libfuse's memory (read target, write data) was handed to
   * JavaScript: it must be detached before the FUSE thread may return, or
   * a late handler would read or write memory libfuse has freed.
   */
  napi_ref alias;
  /* The copy handed to JavaScript instead (read target, write data): back to
   * the session's pool once answered in time, never after a timeout (the
   * late handler may still write it). */
  napi_ref copy;
  size_t copy_len;
  session_t *s;
} ticket_t;

/* Tells JavaScript that a request timed out, and detaches its Buffer. */
typedef struct {
  msg_t msg; /* MSG_TIMED_OUT */
  ticket_t *t;
  char *path;
} notice_t;

/*
 * Set in a handle opened read-only. flush() of such a handle has nothing
 * to do (no upload), and a file read by a program is flushed at every
 * close: it is answered here, without a trip to JavaScript.
 */
#define FH_READ_ONLY (1ULL << 52)
/* The handle number JavaScript gave. */
#define JS_FH(fi) ((double) ((fi)->fh & ~FH_READ_ONLY))

static session_t *current_session(void) {
  return (session_t *) fuse_get_context()->private_data;
}

static void ticket_unref(ticket_t *t) {
  if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cond);
  free(t);
}

/*
 * After a timeout: queue the notice that tells JavaScript (which logs it)
 * and detaches a Buffer over libfuse's memory if JavaScript holds one, and
 * wait for that detach (the event loop runs the notice between callbacks,
 * so a handler that never settles does not hold it up). Called and returns
 * with t->mu held.
 */
static void await_detach(session_t *s, ticket_t *t) {
  notice_t *n = calloc(1, sizeof *n);
  int queued = 0;
  if (n != NULL) {
    n->msg.kind = MSG_TIMED_OUT;
    n->t = t;
    n->path = t->r->path ? strdup(t->r->path) : NULL;
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&t->mu);
    queued = napi_call_threadsafe_function(s->tsfn, n, napi_tsfn_blocking) == napi_ok;
    pthread_mutex_lock(&t->mu);
    if (!queued) { free(n->path); free(n); __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL); }
  }
  /* Not queued: the runtime is going away and no JavaScript will run. */
  while (queued && t->alias != NULL) pthread_cond_wait(&t->cond, &t->mu);
}

/* Runs an operation in JavaScript and waits for its answer or its timeout. */
static int call_js(session_t *s, request_t *r) {
  ticket_t *t = calloc(1, sizeof *t);
  if (t == NULL) return -ENOMEM;
  t->msg.kind = MSG_REQUEST;
  t->state = T_PENDING;
  t->refs = 2;
  t->op = r->op;
  t->s = s;
  t->timeout_ms = s->timeout_ms[r->op];
  t->r = r;
  pthread_mutex_init(&t->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cond, &ca);
  pthread_condattr_destroy(&ca);
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (t->timeout_ms > 0) {
    long long ns = deadline.tv_nsec + (long long) (t->timeout_ms * 1e6);
    deadline.tv_sec += (time_t) (ns / 1000000000LL);
    deadline.tv_nsec = (long) (ns % 1000000000LL);
  }
  if (napi_call_threadsafe_function(s->tsfn, t, napi_tsfn_blocking) != napi_ok) {
    ticket_unref(t); /* the queue's */
    ticket_unref(t);
    return -EIO;
  }
  pthread_mutex_lock(&t->mu);
  while (t->state == T_PENDING) {
    if (t->timeout_ms <= 0) { pthread_cond_wait(&t->cond, &t->mu); continue; }
    if (pthread_cond_timedwait(&t->cond, &t->mu, &deadline) == ETIMEDOUT && t->state == T_PENDING) {
      t->state = T_TIMED_OUT;
      r->result = -EIO;
      await_detach(s, t);
    }
  }
  int result = r->result;
  t->r = NULL;
  pthread_mutex_unlock(&t->mu);
  ticket_unref(t);
  return result;
}

#define REQUEST(opcode) \
  session_t *s = current_session(); \
  request_t r; \
  memset(&r, 0, sizeof r); \
  r.op = (opcode);

/*
 * The attributes of the file this thread just created. libfuse's create
 * asks getattr for them right after create() returns, on the same thread
 * and with the same path, while the kernel holds the folder's lock: the
 * answer to create carries them, saving a second trip to JavaScript per
 * new file.
 */
static __thread struct {
  char *path; /* a copy: libfuse frees its own after the create */
  struct stat st;
} just_created;

static void forget_created(void) {
  free(just_created.path);
  just_created.path = NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (just_created.path != NULL) {
    int same = strcmp(just_created.path, path) == 0;
    if (same) *st = just_created.st;
    forget_created();
    if (same) return 0;
  }
  REQUEST(OP_GETATTR) r.path = path; r.st = st; r.fi = fi;
  return call_js(s, &r);
}

static void dirlist_clear(dirlist_t *d) {
  for (uint32_t i = 0; i < d->count; i++) free(d->names[i]);
  free(d->names);
  free(d->stats);
  d->names = NULL;
  d->stats = NULL;
  d->count = 0;
  d->capacity = 0;
  d->complete = 0;
}

static int fs_opendir(const char *path, struct fuse_file_info *fi) {
  (void) path;
  static uint64_t next_id = 1;
  dirlist_t *d = calloc(1, sizeof *d);
  if (d == NULL) return -ENOMEM;
  d->id = (double) __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
  fi->fh = (uint64_t) (uintptr_t) d;
  return 0;
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi) {
  dirlist_t *d = (dirlist_t *) (uintptr_t) fi->fh;
  if (d->started && !d->complete) {
    /* The program stopped reading early: JavaScript ends the listing. */
    REQUEST(OP_RELEASEDIR) r.path = path; r.fi = fi; r.num[1] = d->id;
    call_js(s, &r);
  }
  dirlist_clear(d);
  free(d);
  return 0;
}

static int is_dot_or_dotdot(const char *name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* Asks JavaScript for the first batch of a pass (more = 0) or the next one. */
static int dirlist_fetch(const char *path, struct fuse_file_info *fi, dirlist_t *d, int more) {
  REQUEST(OP_READDIR) r.path = path; r.fi = fi; r.dir = d; r.num[0] = more; r.num[1] = d->id;
  d->started = 1;
  return call_js(s, &r);
}

/*
 * Entries are passed with their offsets (i + 1), not with offset 0: libfuse
 * 3.14's high-level API (Debian 12's) drops the attributes of a listing
 * filled at offset 0 from READDIRPLUS replies (fixed upstream in 3.17), and
 * the kernel would then send a LOOKUP per entry. A reply holds what has
 * arrived; only a reply that would be empty waits for the next batch.
 */
static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  dirlist_t *d = (dirlist_t *) (uintptr_t) fi->fh;
  if (off == 0) {
    dirlist_clear(d);
    int res = dirlist_fetch(path, fi, d, 0);
    if (res != 0) return res;
  }
  int plus = (flags & FUSE_READDIR_PLUS) != 0;
  uint32_t i = off < 0 ? 0 : (uint32_t) off;
  int filled = 0;
  for (;;) {
    for (; i < d->count; i++, filled++) {
      /* "." and ".." are never looked up by the kernel from a listing. */
      enum fuse_fill_dir_flags fill = plus && !is_dot_or_dotdot(d->names[i]) ? FUSE_FILL_DIR_PLUS : 0;
      if (filler(buf, d->names[i], &d->stats[i], (off_t) i + 1, fill) != 0) return 0;
    }
    if (filled > 0 || d->complete) return 0;
    int res = dirlist_fetch(path, fi, d, 1);
    if (res != 0) return res;
  }
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
  REQUEST(OP_OPEN) r.path = path; r.fi = fi; r.num[0] = fi->flags;
  return call_js(s, &r);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  struct stat st;
  REQUEST(OP_CREATE) r.path = path; r.fi = fi; r.num[0] = fi->flags; r.num[1] = mode; r.st = &st;
  forget_created();
  int res = call_js(s, &r);
  if (res == 0) {
    just_created.path = strdup(path);
    just_created.st = st;
  }
  return res;
}

static int fs_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi) {
  REQUEST(OP_READ) r.path = path; r.fi = fi; r.buf = buf; r.len = len; r.num[0] = (double) off; r.num[1] = JS_FH(fi);
  return call_js(s, &r);
}

static int fs_write(const char *path, const char *buf, size_t len, off_t off, struct fuse_file_info *fi) {
  REQUEST(OP_WRITE) r.path = path; r.fi = fi; r.wbuf = buf; r.len = len; r.num[0] = (double) off; r.num[1] = JS_FH(fi);
  return call_js(s, &r);
}

static int fs_flush(const char *path, struct fuse_file_info *fi) {
  if (fi->fh & FH_READ_ONLY) return 0;
  REQUEST(OP_FLUSH) r.path = path; r.fi = fi; r.num[1] = JS_FH(fi);
  return call_js(s, &r);
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  REQUEST(OP_FSYNC) r.path = path; r.fi = fi; r.num[0] = datasync; r.num[1] = JS_FH(fi);
  return call_js(s, &r);
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
  REQUEST(OP_RELEASE) r.path = path; r.fi = fi; r.num[1] = JS_FH(fi);
  return call_js(s, &r);
}

static int fs_unlink(const char *path) { REQUEST(OP_UNLINK) r.path = path; return call_js(s, &r); }
static int fs_rmdir(const char *path) { REQUEST(OP_RMDIR) r.path = path; return call_js(s, &r); }
static int fs_readlink(const char *path, char *buf, size_t len) {
  (void) buf; (void) len;
  REQUEST(OP_READLINK) r.path = path;
  /* Links are refused (errno table); an answer of 0 would need a target. */
  int res = call_js(s, &r);
  return res == 0 ? -EIO : res;
}
static int fs_mkdir(const char *path, mode_t mode) { REQUEST(OP_MKDIR) r.path = path; r.num[0] = mode; return call_js(s, &r); }
static int fs_mknod(const char *path, mode_t mode, dev_t dev) { REQUEST(OP_MKNOD) r.path = path; r.num[0] = mode; r.num[1] = (double) dev; return call_js(s, &r); }
static int fs_rename(const char *from, const char *to, unsigned int flags) { REQUEST(OP_RENAME) r.path = from; r.path2 = to; r.num[0] = flags; return call_js(s, &r); }
static int fs_link(const char *from, const char *to) { REQUEST(OP_LINK) r.path = from; r.path2 = to; return call_js(s, &r); }
static int fs_symlink(const char *target, const char *path) { REQUEST(OP_SYMLINK) r.path = path; r.path2 = target; return call_js(s, &r); }
static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) { (void) fi; REQUEST(OP_CHMOD) r.path = path; r.num[0] = mode; return call_js(s, &r); }
static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) { (void) fi; REQUEST(OP_CHOWN) r.path = path; r.num[0] = uid; r.num[1] = gid; return call_js(s, &r); }
static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
  (void) fi;
  REQUEST(OP_UTIMENS) r.path = path;
  /* To JavaScript: ms since the epoch; NaN leaves a time (UTIME_OMIT);
   * Infinity means now (UTIME_NOW, or no times at all: touch). */
  for (int i = 0; i < 2; i++) {
    if (!tv || tv[i].tv_nsec == UTIME_NOW) r.num[i] = INFINITY;
    else if (tv[i].tv_nsec == UTIME_OMIT) r.num[i] = NAN;
    else r.num[i] = (double) tv[i].tv_sec * 1000 + tv[i].tv_nsec / 1e6;
  }
  return call_js(s, &r);
}
static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  REQUEST(OP_TRUNCATE) r.path = path; r.fi = fi; r.num[0] = (double) size; r.num[1] = fi ? JS_FH(fi) : -1;
  return call_js(s, &r);
}
static int fs_statfs(const char *path, struct statvfs *stv) { REQUEST(OP_STATFS) r.path = path; r.stv = stv; return call_js(s, &r); }
static int fs_getxattr(const char *path, const char *name, char *value, size_t size) {
  (void) value; (void) size;
  REQUEST(OP_GETXATTR) r.path = path; r.path2 = name;
  int res = call_js(s, &r);
  return res > 0 ? -EIO : res;
}
static int fs_setxattr(const char *path, const char *name, const char *value, size_t size, int flags) {
  (void) value; (void) size;
  REQUEST(OP_SETXATTR) r.path = path; r.path2 = name; r.num[0] = flags;
  return call_js(s, &r);
}
static int fs_listxattr(const char *path, char *list, size_t size) {
  (void) list; (void) size;
  REQUEST(OP_LISTXATTR) r.path = path;
  int res = call_js(s, &r);
  return res > 0 ? -EIO : res;
}
static int fs_removexattr(const char *path, const char *name) { REQUEST(OP_REMOVEXATTR) r.path = path; r.path2 = name; return call_js(s, &r); }

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  session_t *s = current_session();
  conn->max_write = s->max_write;
  conn->max_readahead = s->max_readahead;
  conn->max_background = s->max_background;
  conn->congestion_threshold = s->congestion_threshold;
  /* open(O_TRUNC) reaches us as one open, not a truncate and an open. */
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  /* Always READDIRPLUS: in "auto" mode the kernel uses it for the first
   * chunk of a listing only, and `ls` reads the whole folder before it
   * stats anything. */
  if (conn->capable & FUSE_CAP_READDIRPLUS) {
    conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  }
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  /* libfuse 3 turns this on by default: the kernel would then ask for the
   * attributes of an open file before reads each time they are older than
   * the TTL (a listing request in the middle of a read). Open drops a file's
   * cached pages instead (no keep_cache), as with libfuse 2. */
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  cfg->entry_timeout = s->entry_timeout;
  cfg->attr_timeout = s->attr_timeout;
  cfg->negative_timeout = s->negative_timeout;
  /* An unlinked open file is removed at once, not renamed to .fuse_hidden
   * (we refuse renames; rm answers by the semantics table). */
  cfg->hard_remove = 1;
  cfg->use_ino = 0;
  /* mount() returns before the kernel's INIT; JavaScript waits for this. */
  static msg_t ready_marker = { MSG_READY };
  napi_call_threadsafe_function(s->tsfn, &ready_marker, napi_tsfn_blocking);
  return s;
}

static const struct fuse_operations operations = {
  .getattr = fs_getattr, .readlink = fs_readlink, .mknod = fs_mknod, .mkdir = fs_mkdir,
  .unlink = fs_unlink, .rmdir = fs_rmdir, .symlink = fs_symlink, .rename = fs_rename,
  .link = fs_link, .chmod = fs_chmod, .chown = fs_chown, .truncate = fs_truncate,
  .open = fs_open, .read = fs_read, .write = fs_write, .statfs = fs_statfs,
  .flush = fs_flush, .release = fs_release, .fsync = fs_fsync,
  .setxattr = fs_setxattr, .getxattr = fs_getxattr, .listxattr = fs_listxattr,
  .removexattr = fs_removexattr, .opendir = fs_opendir, .readdir = fs_readdir,
  .releasedir = fs_releasedir, .init = fs_init,
  .create = fs_create, .utimens = fs_utimens,
};

/* ---- JavaScript thread ---- */

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, "sosfuse3: " #call " failed"); return NULL; } } while (0)

static napi_value make_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value make_path(napi_env env, const char *p) {
  napi_value out;
  if (p == NULL) { napi_get_null(env, &out); return out; }
  napi_create_string_utf8(env, p, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* Tags our requests, so reply() refuses any other external it is given. */
static const napi_type_tag ticket_tag = { 0x736f7366757365ULL, 0x7469636b65743031ULL };

/* Answers a pending request; JavaScript thread, t->mu held. */
static void settle(ticket_t *t, int result) {
  t->r->result = result;
  t->state = T_ANSWERED;
  pthread_cond_broadcast(&t->cond);
}

static void detach_buffer(napi_env env, napi_value buf) {
  napi_typedarray_type type;
  size_t length, offset;
  void *raw;
  napi_value ab;
  if (napi_get_typedarray_info(env, buf, &type, &length, &raw, &ab, &offset) == napi_ok) napi_detach_arraybuffer(env, ab);
}

/* Detaches the Buffer over libfuse's memory, if any; JavaScript thread, t->mu held. */
static void release_alias(napi_env env, ticket_t *t) {
  if (t->alias == NULL) return;
  napi_value buf;
  if (napi_get_reference_value(env, t->alias, &buf) == napi_ok && buf != NULL) detach_buffer(env, buf);
  napi_delete_reference(env, t->alias);
  t->alias = NULL;
  pthread_cond_broadcast(&t->cond);
}

/*
 * A dispatch that throws must neither leave the request unanswered (the
 * caller answers EIO) nor end the process: the mount serves other programs.
 * Fuse3Session catches its handlers' throws itself; this is the backstop.
 */
static void report_exception(napi_env env, const char *what) {
  napi_value exc, str;
  char text[512] = "(no message)";
  size_t len;
  if (napi_get_and_clear_last_exception(env, &exc) != napi_ok) return;
  if (napi_coerce_to_string(env, exc, &str) == napi_ok) napi_get_value_string_utf8(env, str, text, sizeof text, &len);
  else napi_get_and_clear_last_exception(env, &exc);
  fprintf(stderr, "sosfuse3: %s threw: %s\n", what, text);
}

#define POOL_MAX_BYTES (8u << 20)

/* A Buffer of exactly len bytes for a copy: one used before, or a new one. */
static napi_value take_copy_buffer(napi_env env, session_t *s, size_t len, void **data) {
  napi_value out;
  size_t got;
  for (int i = s->pool_count - 1; i >= 0; i--) {
    if (s->pool[i].len != len) continue;
    napi_ref ref = s->pool[i].buf;
    s->pool[i] = s->pool[--s->pool_count];
    s->pool_bytes -= len;
    napi_status st = napi_get_reference_value(env, ref, &out);
    napi_delete_reference(env, ref);
    if (st == napi_ok && out != NULL && napi_get_buffer_info(env, out, data, &got) == napi_ok && got == len) return out;
  }
  if (napi_create_buffer(env, len, data, &out) != napi_ok) return NULL;
  return out;
}

/* Ends the ticket's hold on its copy: into the pool when reusable. JavaScript thread. */
static void drop_copy(napi_env env, ticket_t *t, int reusable) {
  if (t->copy == NULL) return;
  session_t *s = t->s;
  if (reusable && s->pool_count < (int) (sizeof s->pool / sizeof s->pool[0]) && s->pool_bytes + t->copy_len <= POOL_MAX_BYTES) {
    s->pool[s->pool_count].len = t->copy_len;
    s->pool[s->pool_count++].buf = t->copy;
    s->pool_bytes += t->copy_len;
  } else {
    napi_delete_reference(env, t->copy);
  }
  t->copy = NULL;
}

/*
 * The request's external is the JavaScript side's hold on the ticket. If
 * JavaScript drops a request without answering it (the external is
 * collected), nobody can answer it any more: EIO now. A request whose
 * Buffer still aliases libfuse's memory waits for its timeout instead (the
 * Buffer can only be detached by a JavaScript call, not from a finalizer).
 */
static void ticket_finalize(napi_env env, void *data, void *hint) {
  (void) hint;
  ticket_t *t = (ticket_t *) data;
  pthread_mutex_lock(&t->mu);
  if (t->state == T_PENDING && t->alias == NULL) {
    drop_copy(env, t, 0);
    settle(t, -EIO);
  }
  pthread_mutex_unlock(&t->mu);
  ticket_unref(t);
}

static void deliver_notice(napi_env env, napi_value dispatch, notice_t *n) {
  ticket_t *t = n->t;
  pthread_mutex_lock(&t->mu);
  if (env != NULL) {
    release_alias(env, t);
    drop_copy(env, t, 0);
  } else if (t->alias != NULL) {
    t->alias = NULL; /* no JavaScript runs any more */
    pthread_cond_broadcast(&t->cond);
  }
  int op = t->op;
  double ms = t->timeout_ms;
  pthread_mutex_unlock(&t->mu);
  ticket_unref(t);
  if (env != NULL) {
    napi_value undefined, argv[7];
    napi_get_undefined(env, &undefined);
    argv[0] = make_number(env, OP_TIMED_OUT);
    argv[1] = undefined;
    argv[2] = make_path(env, n->path);
    argv[3] = undefined;
    argv[4] = make_number(env, op);
    argv[5] = make_number(env, ms);
    argv[6] = undefined;
    if (napi_call_function(env, undefined, dispatch, 7, argv, NULL) == napi_pending_exception) report_exception(env, "dispatch of a timeout");
  }
  free(n->path);
  free(n);
}

/*
 * Calls dispatch(op, request, path, path2, n0, n1, buffer). Every way this
 * can fail answers the request (EIO, or ENOMEM for a buffer).
 */
static void dispatch_to_js(napi_env env, napi_value dispatch, void *context, void *data) {
  session_t *s = (session_t *) context;
  msg_t *m = (msg_t *) data;
  napi_value undefined, argv[7];
  if (m->kind == MSG_TIMED_OUT) { deliver_notice(env, dispatch, (notice_t *) m); return; }
  if (m->kind != MSG_REQUEST) {
    if (env == NULL) return;
    if (m->kind == MSG_ENDED) {
      /* No request is left to use the pool. */
      for (int i = 0; i < s->pool_count; i++) napi_delete_reference(env, s->pool[i].buf);
      s->pool_count = 0;
      s->pool_bytes = 0;
    }
    napi_get_undefined(env, &undefined);
    argv[0] = make_number(env, m->kind == MSG_READY ? OP_READY : OP_ENDED);
    for (int i = 1; i < 7; i++) argv[i] = undefined;
    if (napi_call_function(env, undefined, dispatch, 7, argv, NULL) == napi_pending_exception) report_exception(env, "dispatch of a session event");
    return;
  }
  ticket_t *t = (ticket_t *) m;
  pthread_mutex_lock(&t->mu);
  /* Timed out while it waited in the queue: already answered. */
  if (t->state != T_PENDING || env == NULL) {
    if (t->state == T_PENDING) settle(t, -EIO); /* the runtime is going away */
    pthread_mutex_unlock(&t->mu);
    ticket_unref(t);
    return;
  }
  request_t *r = t->r;
  napi_get_undefined(env, &undefined);
  if (napi_create_external(env, t, ticket_finalize, NULL, &argv[1]) != napi_ok) {
    settle(t, -EIO);
    pthread_mutex_unlock(&t->mu);
    ticket_unref(t);
    return;
  }
  /* From here the external holds the queue's reference. */
  napi_type_tag_object(env, argv[1], &ticket_tag);
  argv[0] = make_number(env, r->op);
  argv[2] = make_path(env, r->path);
  argv[3] = make_path(env, r->path2);
  argv[4] = make_number(env, r->num[0]);
  argv[5] = make_number(env, r->num[1]);
  argv[6] = undefined;
  if (r->op == OP_READ || r->op == OP_WRITE) {
    void *target = r->op == OP_READ ? (void *) r->buf : (void *) r->wbuf;
    napi_status st = napi_cannot_run_js;
    if (s->external_buffers) {
      st = napi_create_external_buffer(env, r->len, target, NULL, NULL, &argv[6]);
      if (st == napi_no_external_buffers_allowed) s->external_buffers = 0;
      if (st == napi_ok && napi_create_reference(env, argv[6], 1, &t->alias) != napi_ok) {
        detach_buffer(env, argv[6]);
        settle(t, -EIO);
        pthread_mutex_unlock(&t->mu);
        return;
      }
    }
    if (st != napi_ok) {
      void *copy;
      argv[6] = take_copy_buffer(env, s, r->len, &copy);
      if (argv[6] == NULL) {
        argv[6] = undefined;
        settle(t, -ENOMEM);
        pthread_mutex_unlock(&t->mu);
        return;
      }
      if (r->op == OP_WRITE) memcpy(copy, r->wbuf, r->len);
      if (napi_create_reference(env, argv[6], 1, &t->copy) == napi_ok) t->copy_len = r->len;
      else t->copy = NULL;
    }
  }
  pthread_mutex_unlock(&t->mu);
  napi_status st = napi_call_function(env, undefined, dispatch, 7, argv, NULL);
  if (st != napi_ok) {
    pthread_mutex_lock(&t->mu);
    int pending = t->state == T_PENDING;
    if (pending) {
      release_alias(env, t);
      drop_copy(env, t, 0);
      settle(t, -EIO);
    }
    pthread_mutex_unlock(&t->mu);
    if (st == napi_pending_exception) report_exception(env, pending ? "dispatch (its request was answered EIO)" : "dispatch (after answering its request)");
  }
}

static ticket_t *ticket_arg(napi_env env, napi_value v) {
  bool ours = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &ticket_tag, &ours) != napi_ok || !ours) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (ticket_t *) p;
}

static napi_value throw_coded(napi_env env, const char *code, const char *message) {
  napi_value c, m, err;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, c, m, &err);
  napi_throw(env, err);
  return NULL;
}

static void fill_stat(struct stat *st, const double *f) {
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t) f[ST_MODE];
  st->st_uid = (uid_t) f[ST_UID];
  st->st_gid = (gid_t) f[ST_GID];
  st->st_size = (off_t) f[ST_SIZE];
  st->st_nlink = (nlink_t) f[ST_NLINK];
  st->st_blocks = (blkcnt_t) f[ST_BLOCKS];
  st->st_blksize = (blksize_t) f[ST_BLKSIZE];
  const int which[3] = { ST_ATIME_MS, ST_MTIME_MS, ST_CTIME_MS };
  struct timespec *ts[3] = { &st->st_atim, &st->st_mtim, &st->st_ctim };
  for (int i = 0; i < 3; i++) {
    double ms = f[which[i]];
    double sec = ms >= 0 ? (double) (int64_t) (ms / 1000) : -(double) (int64_t) (-ms / 1000 + 0.999999);
    ts[i]->tv_sec = (time_t) sec;
    ts[i]->tv_nsec = (long) ((ms - sec * 1000) * 1e6);
  }
}

static int float64_array(napi_env env, napi_value v, double **data, size_t *length) {
  napi_typedarray_type type;
  void *raw;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, &raw, &ab, &offset) != napi_ok || type != napi_float64_array) return 0;
  *data = (double *) raw;
  return 1;
}

/*
 * reply(request, result, extra?): answers a request. Per operation, extra is
 *   getattr: Float64Array of ST_FIELDS; statfs: Float64Array of SF_FIELDS;
 *   open: the handle number; create: [handle, Float64Array of ST_FIELDS];
 *   readdir: [names, Float64Array of ST_FIELDS per name, 1 if the last
 *   batch else 0], appended to the folder handle's listing;
 *   releasedir: nothing; read: a Buffer holding the data (copied unless it
 *   is the one given to dispatch over libfuse's memory); write: nothing.
 * A result < 0 is -errno and extra is ignored. A Buffer given to dispatch
 * over libfuse's memory is detached by any answer, so a late write by the
 * handler cannot reach that memory.
 * Throws (and changes nothing) for a request already answered, or answered
 * EIO at its timeout: err.code ERR_FUSE_REQUEST_ANSWERED or
 * ERR_FUSE_REQUEST_TIMED_OUT. A result that is not a number answers EIO
 * and throws a TypeError.
 */
static napi_value reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ticket_t *t = argc >= 1 ? ticket_arg(env, argv[0]) : NULL;
  if (t == NULL) { napi_throw_type_error(env, NULL, "reply(request, result, extra?): not a request"); return NULL; }
  pthread_mutex_lock(&t->mu);
  if (t->state != T_PENDING) {
    int timed_out = t->state == T_TIMED_OUT;
    char message[160];
    if (timed_out) snprintf(message, sizeof message, "sosfuse3: this request was answered EIO at its timeout (%.0f ms); the late answer is dropped", t->timeout_ms);
    else snprintf(message, sizeof message, "sosfuse3: this request was already answered; a request is answered once");
    pthread_mutex_unlock(&t->mu);
    return throw_coded(env, timed_out ? "ERR_FUSE_REQUEST_TIMED_OUT" : "ERR_FUSE_REQUEST_ANSWERED", message);
  }
  request_t *r = t->r;
  int32_t result;
  int bad_result = argc < 2 || napi_get_value_int32(env, argv[1], &result) != napi_ok;
  if (bad_result) result = -EIO;
  napi_value extra = argc >= 3 && !bad_result ? argv[2] : NULL;

  if ((r->op == OP_READ || r->op == OP_WRITE) && extra != NULL) {
    void *data;
    size_t length;
    bool is_buffer = false;
    napi_is_buffer(env, extra, &is_buffer);
    if (is_buffer && napi_get_buffer_info(env, extra, &data, &length) == napi_ok) {
      void *target = r->op == OP_READ ? (void *) r->buf : (void *) r->wbuf;
      if (r->op == OP_READ && data != target && result > 0) {
        size_t n = (size_t) result < length ? (size_t) result : length;
        if (n > r->len) n = r->len;
        memmove(r->buf, data, n);
      }
    }
    if (r->op == OP_READ && result > (int32_t) r->len) result = -EIO;
  } else if (result >= 0 && extra != NULL) {
    double *f;
    size_t n;
    switch (r->op) {
      case OP_GETATTR:
        if (float64_array(env, extra, &f, &n) && n >= ST_FIELDS) fill_stat(r->st, f);
        else result = -EIO;
        break;
      case OP_STATFS:
        if (float64_array(env, extra, &f, &n) && n >= SF_FIELDS) {
          memset(r->stv, 0, sizeof *r->stv);
          r->stv->f_bsize = (unsigned long) f[SF_BSIZE];
          r->stv->f_frsize = (unsigned long) f[SF_FRSIZE];
          r->stv->f_blocks = (fsblkcnt_t) f[SF_BLOCKS];
          r->stv->f_bfree = (fsblkcnt_t) f[SF_BFREE];
          r->stv->f_bavail = (fsblkcnt_t) f[SF_BAVAIL];
          r->stv->f_files = (fsfilcnt_t) f[SF_FILES];
          r->stv->f_ffree = (fsfilcnt_t) f[SF_FFREE];
          r->stv->f_favail = (fsfilcnt_t) f[SF_FAVAIL];
          r->stv->f_namemax = (unsigned long) f[SF_NAMEMAX];
        } else result = -EIO;
        break;
      case OP_OPEN: {
        /* A handle, or [handle, keepCache]: keep the kernel's cached pages of
         * an object read before and unchanged since (the disk cache's mounts). */
        double fh = -1;
        bool keep = false, is_array = false;
        napi_value v;
        if (napi_is_array(env, extra, &is_array) == napi_ok && is_array) {
          if (napi_get_element(env, extra, 0, &v) != napi_ok || napi_get_value_double(env, v, &fh) != napi_ok) fh = -1;
          if (napi_get_element(env, extra, 1, &v) != napi_ok || napi_get_value_bool(env, v, &keep) != napi_ok) keep = false;
        } else if (napi_get_value_double(env, extra, &fh) != napi_ok) {
          fh = -1;
        }
        if (fh >= 0 && fh < (double) FH_READ_ONLY) {
          r->fi->fh = (uint64_t) fh;
          if ((r->fi->flags & O_ACCMODE) == O_RDONLY) r->fi->fh |= FH_READ_ONLY;
          r->fi->keep_cache = keep ? 1 : 0;
        } else {
          result = -EIO;
        }
        break;
      }
      case OP_CREATE: {
        napi_value v, row;
        double fh;
        if (napi_get_element(env, extra, 0, &v) == napi_ok && napi_get_value_double(env, v, &fh) == napi_ok && fh >= 0
            && napi_get_element(env, extra, 1, &row) == napi_ok && float64_array(env, row, &f, &n) && n >= ST_FIELDS) {
          r->fi->fh = (uint64_t) fh;
          fill_stat(r->st, f);
        } else {
          result = -EIO;
        }
        break;
      }
      case OP_READDIR: {
        napi_value names, stats, last;
        uint32_t count;
        int32_t done = 0;
        if (napi_get_element(env, extra, 0, &names) != napi_ok || napi_get_element(env, extra, 1, &stats) != napi_ok
            || napi_get_element(env, extra, 2, &last) != napi_ok || napi_get_value_int32(env, last, &done) != napi_ok
            || napi_get_array_length(env, names, &count) != napi_ok || !float64_array(env, stats, &f, &n) || n < (size_t) count * ST_FIELDS) {
          result = -EIO;
          break;
        }
        dirlist_t *d = r->dir;
        if (d->count + count > d->capacity) {
          uint32_t cap = d->capacity ? d->capacity : 64;
          while (cap < d->count + count) cap *= 2;
          char **nn = realloc(d->names, cap * sizeof *nn);
          if (nn != NULL) d->names = nn;
          struct stat *ns = nn != NULL ? realloc(d->stats, cap * sizeof *ns) : NULL;
          if (ns != NULL) d->stats = ns;
          if (nn == NULL || ns == NULL) { result = -ENOMEM; break; }
          d->capacity = cap;
        }
        char name[1024];
        for (uint32_t i = 0; i < count; i++) {
          napi_value v;
          size_t len;
          if (napi_get_element(env, names, i, &v) != napi_ok || napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) { result = -EIO; break; }
          if (len >= sizeof name - 1) continue; /* longer than any name the kernel passes (NAME_MAX) */
          char *copy = strdup(name);
          if (copy == NULL) { result = -ENOMEM; break; }
          struct stat *st = &d->stats[d->count];
          fill_stat(st, f + (size_t) i * ST_FIELDS);
          /* libfuse numbers the entries it looks up; "." and ".." keep
           * ours, and readdir(3) hides an entry numbered 0. */
          st->st_ino = 0xffffffff; /* libfuse's FUSE_UNKNOWN_INO */
          d->names[d->count++] = copy;
        }
        if (result >= 0) d->complete = done != 0;
        break;
      }
      default:
        break;
    }
  }
  release_alias(env, t);
  drop_copy(env, t, 1);
  settle(t, result);
  pthread_mutex_unlock(&t->mu);
  if (bad_result) napi_throw_type_error(env, NULL, "reply: the result must be a number (the request was answered EIO)");
  return NULL;
}

static void *loop_thread(void *arg) {
  session_t *s = (session_t *) arg;
  void *cfg = loop312.cfg_create ? loop312.cfg_create() : NULL;
  if (cfg != NULL) {
    loop312.cfg_set_max_threads(cfg, s->max_threads);
    loop312.cfg_set_idle_threads(cfg, s->idle_threads);
    loop312.cfg_set_clone_fd(cfg, 0);
    loop312.loop_mt(s->fuse, cfg);
    loop312.cfg_destroy(cfg);
  } else {
    /* Threads are not bounded here (3.10, 3.11) or at most 10 (3.12 on);
     * the kernel's max_background bounds what it sends at once. */
    struct fuse_loop_config v1 = { .clone_fd = 0, .max_idle_threads = s->idle_threads };
    loop_mt_v1(s->fuse, &v1);
  }
  fuse_unmount(s->fuse);
  fuse_destroy(s->fuse);
  s->fuse = NULL;
  /* A static marker: this thread ends before JavaScript reads the call. */
  static msg_t ended_marker = { MSG_ENDED };
  napi_call_threadsafe_function(s->tsfn, &ended_marker, napi_tsfn_blocking);
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  return NULL;
}

static void session_finalize(napi_env env, void *data, void *hint) {
  (void) env; (void) hint;
  free(data);
}

static int get_uint(napi_env env, napi_value obj, const char *key, unsigned *out) {
  napi_value v;
  uint32_t u;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_uint32(env, v, &u) != napi_ok) return 0;
  *out = u;
  return 1;
}

static int get_double(napi_env env, napi_value obj, const char *key, double *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_double(env, v, out) != napi_ok) return 0;
  return 1;
}

/*
 * mount(mountPoint, args, tuning, dispatch): mounts and starts the loop.
 *   args: libfuse command-line arguments after the program name
 *     (["-o", "fsname=...,allow_other", "-d"]);
 *   tuning: { maxWrite, maxReadahead, maxBackground, congestionThreshold,
 *     maxThreads, idleThreads, entryTimeout, attrTimeout, negativeTimeout,
 *     timeoutsMs, copyBuffers? }; timeoutsMs: per operation code, the
 *     milliseconds after which a request is answered EIO (0: none);
 *     copyBuffers: hand JavaScript copies, never libfuse's memory, as
 *     under Electron (to measure and test that path under Node);
 *     maxThreads is enforced with libfuse 3.12's loop only;
 *   dispatch: called for each operation as described at dispatch_to_js,
 *     once with OP_READY when the kernel's INIT is answered, with
 *     OP_TIMED_OUT (no request; path; n0 the operation, n1 the timeout)
 *     when a request was answered EIO at its timeout, and once with
 *     OP_ENDED when the file system is gone.
 * Throws with libfuse's reason on stderr when the mount fails.
 */
static napi_value mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) { napi_throw_type_error(env, NULL, "mount(mountPoint, args, tuning, dispatch)"); return NULL; }

  char mountpoint[4096];
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &len));

  session_t *s = calloc(1, sizeof *s);
  if (s == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  s->external_buffers = 1;
  napi_value tuning = argv[2];
  if (!get_uint(env, tuning, "maxWrite", &s->max_write) || !get_uint(env, tuning, "maxReadahead", &s->max_readahead)
      || !get_uint(env, tuning, "maxBackground", &s->max_background) || !get_uint(env, tuning, "congestionThreshold", &s->congestion_threshold)
      || !get_uint(env, tuning, "maxThreads", &s->max_threads) || !get_uint(env, tuning, "idleThreads", &s->idle_threads)
      || !get_double(env, tuning, "entryTimeout", &s->entry_timeout) || !get_double(env, tuning, "attrTimeout", &s->attr_timeout)
      || !get_double(env, tuning, "negativeTimeout", &s->negative_timeout)) {
    free(s);
    napi_throw_type_error(env, NULL, "mount: tuning needs maxWrite, maxReadahead, maxBackground, congestionThreshold, maxThreads, idleThreads, entryTimeout, attrTimeout, negativeTimeout");
    return NULL;
  }
  napi_value timeouts, flag;
  uint32_t ntimeouts = 0;
  if (napi_get_named_property(env, tuning, "timeoutsMs", &timeouts) != napi_ok || napi_get_array_length(env, timeouts, &ntimeouts) != napi_ok || ntimeouts != OP_COUNT) {
    free(s);
    napi_throw_type_error(env, NULL, "mount: tuning.timeoutsMs must hold one number per operation");
    return NULL;
  }
  for (uint32_t i = 0; i < OP_COUNT; i++) {
    napi_value v;
    if (napi_get_element(env, timeouts, i, &v) != napi_ok || napi_get_value_double(env, v, &s->timeout_ms[i]) != napi_ok || !(s->timeout_ms[i] >= 0)) {
      free(s);
      napi_throw_type_error(env, NULL, "mount: tuning.timeoutsMs must hold one number >= 0 per operation");
      return NULL;
    }
  }
  bool copy_buffers = false;
  if (napi_get_named_property(env, tuning, "copyBuffers", &flag) == napi_ok) napi_get_value_bool(env, flag, &copy_buffers);
  if (copy_buffers) s->external_buffers = 0;

  uint32_t nargs;
  if (napi_get_array_length(env, argv[1], &nargs) != napi_ok || nargs > 30) { free(s); napi_throw_type_error(env, NULL, "mount: args must be an array of strings"); return NULL; }
  char *fargv[32];
  int fargc = 0;
  fargv[fargc++] = strdup("sosmount");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    char arg[4096];
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || napi_get_value_string_utf8(env, v, arg, sizeof arg, &len) != napi_ok) {
      for (int j = 0; j < fargc; j++) free(fargv[j]);
      free(s);
      napi_throw_type_error(env, NULL, "mount: args must be an array of strings");
      return NULL;
    }
    fargv[fargc++] = strdup(arg);
  }
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);

  napi_value name;
  napi_create_string_utf8(env, "sosfuse3", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, s, session_finalize, s, dispatch_to_js, &s->tsfn) != napi_ok) {
    for (int j = 0; j < fargc; j++) free(fargv[j]);
    free(s);
    napi_throw_error(env, NULL, "mount: cannot create the dispatch queue");
    return NULL;
  }

  s->fuse = fuse_new(&args, &operations, sizeof operations, s);
  int mounted = s->fuse != NULL && fuse_mount(s->fuse, mountpoint) == 0;
  fuse_opt_free_args(&args);
  for (int j = 0; j < fargc; j++) free(fargv[j]);
  if (!mounted) {
    if (s->fuse != NULL) fuse_destroy(s->fuse);
    s->fuse = NULL;
    /* Releasing the queue frees the session (session_finalize). */
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    napi_throw_error(env, "EFUSE", "libfuse could not mount (its reason is on stderr)");
    return NULL;
  }
  if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
    fuse_unmount(s->fuse);
    fuse_destroy(s->fuse);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    napi_throw_error(env, NULL, "mount: cannot start the FUSE thread");
    return NULL;
  }
  pthread_detach(s->thread);
  return NULL;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mount", NULL, mount, NULL, NULL, NULL, napi_default, NULL },
    { "reply", NULL, reply, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_uint32(env, OP_ENDED, &v);
  napi_set_named_property(env, exports, "OP_ENDED", v);
  napi_create_uint32(env, OP_READY, &v);
  napi_set_named_property(env, exports, "OP_READY", v);
  napi_create_uint32(env, OP_TIMED_OUT, &v);
  napi_set_named_property(env, exports, "OP_TIMED_OUT", v);
  napi_create_uint32(env, OP_COUNT, &v);
  napi_set_named_property(env, exports, "OP_COUNT", v);
  napi_create_uint32(env, (uint32_t) fuse_version(), &v);
  napi_set_named_property(env, exports, "FUSE_VERSION", v);
  find_loop312();
  napi_get_boolean(env, loop312.loop_mt == NULL, &v);
  napi_set_named_property(env, exports, "PRE_312_LOOP", v);
  napi_create_uint32(env, ST_FIELDS, &v);
  napi_set_named_property(env, exports, "STAT_FIELDS", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
