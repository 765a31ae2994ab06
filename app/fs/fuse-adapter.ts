/**
 * The thin layer between a FUSE binding and the fs model: it translates
 * FsErrors to negative errnos (the one place that happens) and sets the
 * FUSE options. Two bindings: on Linux our libfuse 3 binding
 * (fuse3-session.ts: READDIRPLUS, parallel lookups, 1 MiB requests); on
 * macOS fuse-native over macFUSE's libfuse 2 API, which Linux can also use
 * with SOSMOUNT_FUSE_BINDING=libfuse2.
 */
import Fuse, { type FuseOps, type FuseStat, type OpTimeouts } from 'fuse-native';
import type { Logger } from '../log.js';
import { errnoValue, refuse, toFsError } from './errno.js';
import type { S3FileSystem, Stat } from './filesystem.js';
import { Fuse3Session, fuse3Unavailable, type Fuse3Handlers, type Fuse3Options } from './fuse3-session.js';
import { FUSE_OP_TIMEOUT_MS } from '../s3/retry-strategy.js';

export type FuseBindingName = 'libfuse3' | 'libfuse2';

/**
 * libfuse 3 on Linux, libfuse 2 (fuse-native) elsewhere or when asked for
 * with SOSMOUNT_FUSE_BINDING. The libfuse 3 binding is compiled at install
 * (native/fuse3/install.cjs: it needs libfuse3-dev); where it could not be,
 * Linux mounts with libfuse 2 and says so in the log.
 */
export function chooseFuseBinding(log: Logger, env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform,
  unavailable: () => string | undefined = fuse3Unavailable): FuseBindingName {
  const asked = env['SOSMOUNT_FUSE_BINDING'];
  if (asked === 'libfuse2' || asked === 'libfuse3') return asked;
  if (asked !== undefined && asked !== '') throw new Error(`SOSMOUNT_FUSE_BINDING must be libfuse3 or libfuse2, not ${JSON.stringify(asked)}`);
  if (platform !== 'linux') return 'libfuse2';
  const why = unavailable();
  if (why === undefined) return 'libfuse3';
  log.warn('mounting with libfuse 2: ls -l of big folders and big reads are slower', { reason: why });
  return 'libfuse2';
}

/** A mounted (or mountable) file system, whichever binding serves it. */
export interface FuseMount {
  readonly binding: FuseBindingName;
  mount(): Promise<void>;
  /** Detaches the mount; programs holding files open keep them until they close. */
  unmount(): Promise<void>;
  /**
   * Resolves when the kernel connection ended after a mount (an external
   * umount included), where the binding can tell; libfuse 2 cannot, and the
   * mount polls /proc for that.
   */
  readonly ended: Promise<void>;
  /** Requests served per FUSE operation, where the binding counts them (libfuse 3). */
  operationCounts(): Record<string, number> | undefined;
}

export interface FuseMountOptions {
  allowOther: boolean;
  allowRoot: boolean;
  autoUnmount: boolean;
  debug: boolean;
  /** Kernel entry and attribute cache time, matched to --metadata-ttl. */
  kernelCacheSeconds: number;
  fsName: string;
}

/**
 * FUSE settings and their reasons.
 * - max_read / max_readahead 1 MiB: the most the kernel may ask for at
 *   once; the prefetcher serves it from its window. The kernel's readahead
 *   is also bounded by the mount's read_ahead_kb (/sys/class/bdi/0:N,
 *   128 KiB unless root raises it), so sequential reads mostly arrive as
 *   128 KiB requests; raised to 1 MiB they arrive whole with libfuse 3
 *   (max_pages), out of order by up to 2 MiB, which the prefetcher keeps
 *   for (backwardSeekBytes). libfuse 2 splits them into 128 KiB requests.
 * - max_write: 1 MiB on libfuse 3; on libfuse 2 big_writes with 128 KiB,
 *   without which it sends 4 KiB writes and writing runs ten times slower.
 * - atomic_o_trunc: open(O_TRUNC) of an existing object reaches us as one
 *   open with O_TRUNC (an overwrite, allowed with --allow-overwrite)
 *   instead of a truncate followed by an open.
 * - max_background / congestion_threshold: the kernel sends read-ahead and
 *   parallel random reads as "background" requests, at most 12 at once by
 *   default (16 readers got 10-12 GETs in flight); room for every request
 *   the S3 client can have in flight.
 * - threads (libfuse 3): each FUSE thread waits for one answer, so they
 *   bound the requests in flight; as many as the kernel may send.
 */
export const FUSE_TUNING = {
  maxReadBytes: 1024 * 1024,
  maxReadaheadBytes: 1024 * 1024,
  maxWriteBytes: 1024 * 1024,
  libfuse2MaxWriteBytes: 128 * 1024,
  maxBackground: 64,
  congestionThreshold: 48,
  maxThreads: 64 + 16,
  idleThreads: 16,
} as const;

/** FUSE_TUNING as the libfuse 3 binding's session takes it. */
export const FUSE3_TUNING = {
  maxWriteBytes: FUSE_TUNING.maxWriteBytes,
  maxReadaheadBytes: FUSE_TUNING.maxReadaheadBytes,
  maxBackground: FUSE_TUNING.maxBackground,
  congestionThreshold: FUSE_TUNING.congestionThreshold,
  maxThreads: FUSE_TUNING.maxThreads,
  idleThreads: FUSE_TUNING.idleThreads,
} as const satisfies Partial<Fuse3Options>;

/**
 * How long an operation may take before it is answered EIO:
 * FUSE_OP_TIMEOUT_MS, above every bound of our S3 requests (retry-strategy.ts),
 * so it only catches our own bugs (fuse-native's default would be 15 s).
 * Completing an upload (flush, fsync, release) waits for the last parts
 * however long they take: close() must not report success or failure
 * before S3 has decided.
 */
export const OP_TIMEOUTS = {
  default: FUSE_OP_TIMEOUT_MS,
  flush: false,
  fsync: false,
  release: false,
  // Editing mode renames a folder key by key; the tray shows its progress.
  rename: false,
} as const satisfies OpTimeouts;

/** fuse-native with the options it does not pass itself, appended to its `-o` list. */
export class TunedFuse extends Fuse {
  private readonly extraOptions: string[];

  constructor(mnt: string, ops: FuseOps, opts: ConstructorParameters<typeof Fuse>[2], extraOptions: string[]) {
    super(mnt, ops, opts);
    this.extraOptions = extraOptions;
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = this.extraOptions.join(',');
    if (extra === '') return base;
    return base === '' ? `-o${extra}` : `${base},${extra}`;
  }
}

/** fuse-native hands times as Dates or numbers (ms). */
function timeMs(t: unknown): number {
  if (t instanceof Date) return t.getTime();
  return typeof t === 'number' ? t : Number.NaN;
}

function toFuseStat(s: Stat): FuseStat {
  return { ...s };
}

export function createFuse(mountPoint: string, fs: S3FileSystem, options: FuseMountOptions, log: Logger, binding: FuseBindingName = chooseFuseBinding(log)): FuseMount {
  const fail = (op: string, path: string, err: unknown): number => {
    const e = toFsError(err, path);
    const level = e.errno === 'ENOENT' || e.rule !== undefined && e.rule !== 'ioError' && e.rule !== 'accessDenied' ? 'debug' : 'warn';
    log[level]('operation refused', { op, path, errno: e.errno, rule: e.rule, error: e.message });
    return -errnoValue(e.errno);
  };
  return binding === 'libfuse3' ? createLibfuse3(mountPoint, fs, options, log, fail) : createLibfuse2(mountPoint, fs, options, fail);
}

/**
 * libfuse 3's mount options. Read size: max_pages, which libfuse 3 derives
 * from max_write, bounds it (a max_read option would have to be repeated
 * in init()).
 */
function mountOptions(options: FuseMountOptions): string[] {
  return [
    `fsname=${options.fsName.replace(/[,\\]/g, (c) => `\\${c}`)}`,
    'subtype=sosmount',
    ...(options.allowOther ? ['allow_other'] : []),
    ...(options.allowRoot ? ['allow_root'] : []),
    ...(options.autoUnmount ? ['auto_unmount'] : []),
  ];
}

/**
 * SOSMOUNT_FUSE_COPY_BUFFERS=1: reads and writes go through copies, as in
 * the tray's workers (Electron's utilityProcess forbids Buffers over
 * libfuse's memory), so that path is tested and measured under Node.
 */
export function copyBuffersAsked(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env['SOSMOUNT_FUSE_COPY_BUFFERS'];
  if (v === undefined || v === '' || v === '0') return false;
  if (v === '1') return true;
  throw new Error(`SOSMOUNT_FUSE_COPY_BUFFERS must be 1 or 0, not ${JSON.stringify(v)}`);
}

function createLibfuse3(mountPoint: string, fs: S3FileSystem, options: FuseMountOptions, log: Logger,
  fail: (op: string, path: string, err: unknown) => number): FuseMount {
  const handlers: Fuse3Handlers = {
    getattr: (path) => fs.getattr(path),
    listDir: (path) => fs.listDir(path),
    open: (path, flags) => fs.open(path, flags),
    keepsPageCache: (fd) => fs.keepsPageCache(fd),
    create: async (path, flags) => {
      const fd = await fs.create(path, flags);
      try {
        return { fd, stat: await fs.getattr(path) };
      } catch (err) {
        // The kernel will not know the handle: end the upload it began.
        await fs.release(path, fd).catch(() => {});
        throw err;
      }
    },
    read: (path, fd, target, position) => fs.read(path, fd, target, target.length, position),
    write: (path, fd, data, position) => fs.write(path, fd, data, position),
    flush: (path, fd) => fs.flush(path, fd),
    fsync: (path, fd) => fs.fsync(path, fd),
    release: (path, fd) => fs.release(path, fd),
    unlink: (path) => fs.unlink(path),
    mkdir: (path) => fs.mkdir(path),
    rmdir: (path) => fs.rmdir(path),
    rename: (from, to, flags) => fs.rename(from, to, flags),
    link: (_from, to) => fs.link(to),
    symlink: (_target, path) => fs.symlink(path),
    setattr: (op, path, a, b) => fs.setattr(path, op === 'utimens' ? { atimeMs: a, mtimeMs: b } : undefined),
    truncate: (path, size) => fs.truncate(path, size),
    mknod: (path) => fs.mknod(path),
    readlink: (path) => Promise.reject(refuse('readlink', path)),
    statfs: () => Promise.resolve(fs.statfs()),
    xattr: (_op, path) => Promise.reject(refuse('xattr', path)),
  };
  const ttl = Math.max(0, options.kernelCacheSeconds);
  // Made at mount, so a binding that is not built fails the mount with its reason.
  const open = (): Fuse3Session => new Fuse3Session(mountPoint, handlers, {
    args: ['-o', mountOptions(options).join(','), ...(options.debug ? ['-d'] : [])],
    ...FUSE3_TUNING,
    entryTimeoutSeconds: ttl,
    attrTimeoutSeconds: ttl,
    negativeTimeoutSeconds: 0,
    timeouts: OP_TIMEOUTS,
    copyBuffers: copyBuffersAsked(),
    errno: fail,
    onTimeout: (op, path, timeoutMs) => log.error('operation timed out, answered EIO', { op, path, timeoutMs }),
    onReplyError: (op, path, err) => log.error('the FUSE binding refused an answer', { op, path, error: err.message }),
  });
  let session: Fuse3Session | undefined;
  let ended: () => void = () => {};
  return {
    binding: 'libfuse3',
    ended: new Promise<void>((resolve) => { ended = resolve; }),
    mount: async () => {
      session = open();
      void session.ended.then(ended);
      await session.mount();
    },
    unmount: async () => { await session?.unmount(); },
    operationCounts: () => session?.operationCounts(),
  };
}

function createLibfuse2(mountPoint: string, fs: S3FileSystem, options: FuseMountOptions,
  fail: (op: string, path: string, err: unknown) => number): FuseMount {
  const done0 = (op: string, path: string, p: Promise<unknown>, cb: (err: number) => void): void => {
    p.then(() => cb(0), (err: unknown) => cb(fail(op, path, err)));
  };
  const refuseWith = (op: string, run: (path: string) => Promise<void>) =>
    (path: string, ...rest: unknown[]): void => {
      const cb = rest[rest.length - 1] as (err: number) => void;
      done0(op, path, run(path), cb);
    };
  const ops: FuseOps = {
    getattr: (path, cb) => {
      fs.getattr(path).then((s) => cb(0, toFuseStat(s)), (err: unknown) => cb(fail('getattr', path, err)));
    },
    fgetattr: (path, _fd, cb) => {
      fs.getattr(path).then((s) => cb(0, toFuseStat(s)), (err: unknown) => cb(fail('fgetattr', path, err)));
    },
    readdir: (path, cb) => {
      fs.readdir(path).then(({ names, stats }) => cb(0, names, stats.map(toFuseStat)), (err: unknown) => cb(fail('readdir', path, err)));
    },
    open: (path, flags, cb) => {
      fs.open(path, flags).then((fd) => cb(0, fd), (err: unknown) => cb(fail('open', path, err)));
    },
    create: (path, _mode, cb) => {
      // fuse-native does not pass the open flags of create(); the kernel has
      // already answered O_EXCL on an existing name, so this is a new file.
      fs.create(path, 0).then((fd) => cb(0, fd), (err: unknown) => cb(fail('create', path, err)));
    },
    read: (path, fd, buf, len, pos, cb) => {
      fs.read(path, fd, buf, len, pos).then((n) => cb(n), (err: unknown) => cb(fail('read', path, err)));
    },
    write: (path, fd, buf, len, pos, cb) => {
      // The buffer is libfuse's and is detached after the reply: the
      // uploader copies it into its part buffer before we answer.
      fs.write(path, fd, buf.subarray(0, len), pos).then((n) => cb(n), (err: unknown) => cb(fail('write', path, err)));
    },
    flush: (path, fd, cb) => done0('flush', path, fs.flush(path, fd), cb),
    fsync: (path, _datasync, fd, cb) => done0('fsync', path, fs.fsync(path, fd), cb),
    release: (path, fd, cb) => done0('release', path, fs.release(path, fd), cb),
    unlink: (path, cb) => done0('unlink', path, fs.unlink(path), cb),
    mkdir: (path, _mode, cb) => done0('mkdir', path, fs.mkdir(path), cb),
    rmdir: (path, cb) => done0('rmdir', path, fs.rmdir(path), cb),
    rename: (src, dest, cb) => done0('rename', src, fs.rename(src, dest), cb),
    link: (_src, dest, cb) => done0('link', dest, fs.link(dest), cb),
    symlink: (_target, path, cb) => done0('symlink', path, fs.symlink(path), cb),
    chmod: refuseWith('chmod', (p) => fs.setattr(p)),
    chown: refuseWith('chown', (p) => fs.setattr(p)),
    utimens: (path, atime, mtime, cb) => done0('utimens', path, fs.setattr(path, { atimeMs: timeMs(atime), mtimeMs: timeMs(mtime) }), cb),
    truncate: (path, size, cb) => done0('truncate', path, fs.truncate(path, size), cb),
    ftruncate: (path, _fd, size, cb) => done0('ftruncate', path, fs.truncate(path, size), cb),
    mknod: (path, _mode, _dev, cb) => done0('mknod', path, fs.mknod(path), cb),
    readlink: (path, cb) => cb(fail('readlink', path, refuse('readlink', path))),
    statfs: (_path, cb) => cb(0, { ...fs.statfs() }),
    getxattr: (path, _name, _pos, cb) => cb(fail('getxattr', path, refuse('xattr', path))),
    setxattr: (path, _name, _value, _pos, _flags, cb) => cb(fail('setxattr', path, refuse('xattr', path))),
    listxattr: (path, cb) => cb(fail('listxattr', path, refuse('xattr', path))),
    removexattr: (path, _name, cb) => cb(fail('removexattr', path, refuse('xattr', path))),
  };

  const ttl = Math.max(0, options.kernelCacheSeconds);
  const fuse = new TunedFuse(mountPoint, ops, {
    allowOther: options.allowOther,
    allowRoot: options.allowRoot,
    autoUnmount: options.autoUnmount,
    debug: options.debug,
    maxRead: FUSE_TUNING.maxReadBytes,
    fsname: options.fsName,
    subtype: 'sosmount',
    timeout: OP_TIMEOUTS,
  }, [
    'big_writes',
    `max_write=${FUSE_TUNING.libfuse2MaxWriteBytes}`,
    `max_readahead=${FUSE_TUNING.maxReadaheadBytes}`,
    'atomic_o_trunc',
    `max_background=${FUSE_TUNING.maxBackground}`,
    `congestion_threshold=${FUSE_TUNING.congestionThreshold}`,
    // libfuse otherwise renames an open file to .fuse_hiddenXXX on unlink,
    // which we refuse (no rename): rm must answer by the semantics table.
    'hard_remove',
    // fuse-native drops zero values of its own entry/attr options, so set them here.
    `entry_timeout=${ttl}`,
    `attr_timeout=${ttl}`,
    'negative_timeout=0',
  ]);
  return {
    binding: 'libfuse2',
    ended: new Promise<void>(() => {}),
    operationCounts: () => undefined,
    mount: () => new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve()))),
    unmount: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
  };
}
