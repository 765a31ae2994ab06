/**
 * The typed side of our libfuse 3 binding (native/fuse3/sosfuse3.c): it
 * turns each kernel request into a call of a promise-returning handler and
 * answers it with the handler's result or with the errno its failure maps
 * to. The binding owns each request's lifetime: it answers EIO when the
 * handler takes longer than the operation's timeout (the request must not
 * hang the kernel forever) and refuses a second or late answer.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type { DirStream, Stat, StatFs } from './filesystem.js';

/** The operations, in the order of `enum op` in sosfuse3.c. */
export const FUSE3_OPS = [
  'getattr', 'readdir', 'open', 'create', 'read', 'write', 'flush',
  'fsync', 'release', 'unlink', 'mkdir', 'rmdir', 'rename', 'link',
  'symlink', 'chmod', 'chown', 'utimens', 'truncate', 'mknod',
  'readlink', 'statfs', 'getxattr', 'setxattr', 'listxattr',
  'removexattr', 'releasedir',
] as const;
export type Fuse3Op = typeof FUSE3_OPS[number];

declare const nativeRequest: unique symbol;
/** A pending kernel request; valid until it is answered. */
type NativeRequest = { readonly [nativeRequest]: true };

type Dispatch = (
  op: number, req: NativeRequest, path: string | null, path2: string | null,
  n0: number, n1: number, buf: Buffer | undefined,
) => void;

interface NativeTuning {
  maxWrite: number; maxReadahead: number; maxBackground: number; congestionThreshold: number;
  maxThreads: number; idleThreads: number;
  entryTimeout: number; attrTimeout: number; negativeTimeout: number;
  /** Per operation code; 0: no timeout. */
  timeoutsMs: number[];
  copyBuffers: boolean;
}

/** What an answer carries besides its result, per operation (see reply() in sosfuse3.c). */
type Reply = Float64Array | number | [number, Float64Array] | [number, boolean] | [string[], Float64Array, number] | Buffer;

/** The binding as native/fuse3/index.cjs exports it (tests drive it directly too). */
export interface NativeBinding {
  mount(mountPoint: string, args: string[], tuning: NativeTuning, dispatch: Dispatch): void;
  /** Throws with code ERR_FUSE_REQUEST_ANSWERED or ERR_FUSE_REQUEST_TIMED_OUT for a request that is not pending. */
  reply(req: NativeRequest, result: number, extra?: Reply): void;
  readonly OP_READY: number;
  readonly OP_ENDED: number;
  readonly OP_TIMED_OUT: number;
  readonly OP_COUNT: number;
  readonly STAT_FIELDS: number;
  /** The loaded libfuse's version, as major * 100 + minor. */
  readonly FUSE_VERSION: number;
  /** Runs libfuse's pre-3.12 loop: the loaded libfuse is older than 3.12, or SOSFUSE3_PRE_312_LOOP=1 at build. */
  readonly PRE_312_LOOP: boolean;
}
export type { Dispatch as NativeDispatch, NativeRequest, NativeTuning };

export class Fuse3UnavailableError extends Error {
  override readonly name = 'Fuse3UnavailableError';
}

let loaded: NativeBinding | undefined;
/** The loaded binding; throws Fuse3UnavailableError where it is not built. */
export function fuse3Binding(): NativeBinding {
  if (loaded) return loaded;
  try {
    loaded = createRequire(import.meta.url)('#fuse3') as NativeBinding;
  } catch (err) {
    throw new Fuse3UnavailableError(
      `the libfuse 3 binding is not built (${(err as Error).message.split('\n')[0]}): install libfuse3-dev (3.10 or newer) and pkg-config, then run npm install`,
      { cause: err },
    );
  }
  return loaded;
}

/** Why the libfuse 3 binding cannot be used here, or undefined when it loads. */
export function fuse3Unavailable(): string | undefined {
  try {
    fuse3Binding();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** What the file system does for each operation; a rejection is mapped by `errno`. */
export interface Fuse3Handlers {
  getattr(path: string): Promise<Stat>;
  /** Starts listing a folder; the kernel takes its entries batch by batch. */
  listDir(path: string): DirStream;
  open(path: string, flags: number): Promise<number>;
  /** Whether the kernel may keep the file's cached pages at this open (the object is unchanged since it last read it). */
  keepsPageCache?(fd: number): boolean;
  /** The new file's handle and its attributes (the kernel needs both at once). */
  create(path: string, flags: number, mode: number): Promise<{ fd: number; stat: Stat }>;
  /** Fills `target` (the kernel's buffer) and resolves to the bytes read. */
  read(path: string, fd: number, target: Buffer, position: number): Promise<number>;
  /** `data` is libfuse's memory, valid until the promise settles. */
  write(path: string, fd: number, data: Buffer, position: number): Promise<number>;
  flush(path: string, fd: number): Promise<void>;
  fsync(path: string, fd: number): Promise<void>;
  release(path: string, fd: number): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** `flags`: renameat2's RENAME_NOREPLACE / RENAME_EXCHANGE. */
  rename(from: string, to: string, flags: number): Promise<void>;
  link(from: string, to: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  /**
   * chmod (a: mode), chown (a: uid, b: gid) and utimens (a: atime, b:
   * mtime in ms; NaN leaves a time as it is, Infinity sets it to now).
   */
  setattr(op: 'chmod' | 'chown' | 'utimens', path: string, a: number, b: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  mknod(path: string, mode: number): Promise<void>;
  /** Links are not stored; the handler rejects with the errno of the table. */
  readlink(path: string): Promise<never>;
  statfs(path: string): Promise<StatFs>;
  xattr(op: 'getxattr' | 'setxattr' | 'listxattr' | 'removexattr', path: string): Promise<void>;
}

export interface Fuse3Options {
  /** libfuse arguments after the program name, e.g. ['-o', 'fsname=x,allow_other']. */
  args: string[];
  maxWriteBytes: number;
  maxReadaheadBytes: number;
  maxBackground: number;
  congestionThreshold: number;
  /** FUSE threads: each waits for one answer, so this bounds requests in flight. */
  maxThreads: number;
  idleThreads: number;
  entryTimeoutSeconds: number;
  attrTimeoutSeconds: number;
  negativeTimeoutSeconds: number;
  /** Milliseconds per operation before the binding answers EIO; `false`: wait as long as it takes. */
  timeouts: Partial<Record<Fuse3Op, number | false>> & { default: number };
  /**
   * Hand handlers copies of the kernel's data instead of Buffers over
   * libfuse's memory, as under Electron's utilityProcess (which forbids
   * external buffers): SOSMOUNT_FUSE_COPY_BUFFERS=1, to test and measure
   * that path under Node.
   */
  copyBuffers?: boolean;
  /** Maps a handler's rejection to a negative errno (and logs it). */
  errno(op: Fuse3Op, path: string, err: unknown): number;
  /** Called when an operation timed out (the binding answered EIO). */
  onTimeout(op: Fuse3Op, path: string, timeoutMs: number): void;
  /** Called when the binding refused an answer other than a late one (a bug of ours, logged). */
  onReplyError?(op: Fuse3Op, path: string, err: Error): void;
}

/** How long unmount() waits for the kernel connection to end after detaching. */
const UNMOUNT_END_WAIT_MS = 2_000;

const EIO = -5;
const ENOSYS = -38;

function msOf(d: Date): number {
  return d.getTime();
}

/** Writes one stat row in the binding's field order (ST_* in sosfuse3.c). */
function putStat(out: Float64Array, row: number, s: Stat): void {
  const o = row * 10;
  out[o] = s.mode; out[o + 1] = s.uid; out[o + 2] = s.gid; out[o + 3] = s.size; out[o + 4] = s.nlink;
  out[o + 5] = msOf(s.atime); out[o + 6] = msOf(s.mtime); out[o + 7] = msOf(s.ctime);
  out[o + 8] = s.blocks; out[o + 9] = s.blksize;
}

function statRows(stats: Stat[]): Float64Array {
  const out = new Float64Array(stats.length * 10);
  stats.forEach((s, i) => putStat(out, i, s));
  return out;
}

function statfsRow(s: StatFs): Float64Array {
  return Float64Array.of(s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax);
}

/** One mounted libfuse 3 file system. */
export class Fuse3Session {
  private readonly native: NativeBinding;
  private endedResolve!: () => void;
  private readyResolve: () => void = () => {};
  /** Resolves when the kernel connection is gone (our unmount or an external one). */
  readonly ended: Promise<void>;
  private mounted = false;
  private isEnded = false;
  private readonly served = new Array<number>(FUSE3_OPS.length).fill(0);
  /** Listings being read, by the binding's folder handle id. */
  private readonly listings = new Map<number, DirStream>();

  constructor(readonly mountPoint: string, private readonly handlers: Fuse3Handlers, private readonly options: Fuse3Options) {
    this.native = fuse3Binding();
    // A binding built from older sources lacks what this side relies on (timeouts in C).
    if (this.native.STAT_FIELDS !== 10 || typeof this.native.OP_TIMED_OUT !== 'number') throw new Fuse3UnavailableError('the libfuse 3 binding is from another version: run npm install');
    this.ended = new Promise((resolve) => { this.endedResolve = resolve; });
  }

  /**
   * Mounts and resolves once the kernel accepted the session (its INIT);
   * rejects with libfuse's complaint when it did not.
   */
  async mount(): Promise<void> {
    const o = this.options;
    const ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      void this.ended.then(() => reject(new Error('the kernel ended the FUSE session at its start (libfuse says why on stderr)')));
    });
    this.native.mount(this.mountPoint, o.args, {
      maxWrite: o.maxWriteBytes,
      maxReadahead: o.maxReadaheadBytes,
      maxBackground: o.maxBackground,
      congestionThreshold: o.congestionThreshold,
      maxThreads: o.maxThreads,
      idleThreads: o.idleThreads,
      entryTimeout: o.entryTimeoutSeconds,
      attrTimeout: o.attrTimeoutSeconds,
      negativeTimeout: o.negativeTimeoutSeconds,
      timeoutsMs: FUSE3_OPS.map((op) => {
        const limit = o.timeouts[op] ?? o.timeouts.default;
        return limit === false ? 0 : Math.max(1, limit);
      }),
      copyBuffers: o.copyBuffers === true,
    }, (op, req, path, path2, n0, n1, buf) => this.dispatch(op, req, path, path2, n0, n1, buf));
    this.mounted = true;
    await ready;
  }

  /**
   * Detaches the mount (lazily, as fusermount -uz: programs holding files
   * open keep them until they close) and waits a moment for the connection
   * to end. It ends only when no program uses the file system any more (a
   * shell whose current folder is inside keeps it), so waiting for that
   * would keep the worker from ever exiting; its exit then ends it.
   */
  async unmount(): Promise<void> {
    if (!this.mounted || this.isEnded) return;
    await new Promise<void>((resolve, reject) => {
      execFile('fusermount3', ['-uz', this.mountPoint], { timeout: 10_000 }, (err, _out, stderr) => {
        if (err && !this.isEnded) reject(new Error(`fusermount3 -uz ${this.mountPoint}: ${stderr.trim() || err.message}`));
        else resolve();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.ended, new Promise<void>((resolve) => { timer = setTimeout(resolve, UNMOUNT_END_WAIT_MS); })]);
    clearTimeout(timer);
  }

  /** How many requests of each operation the kernel sent (those sent at least once). */
  operationCounts(): Partial<Record<Fuse3Op, number>> {
    const out: Partial<Record<Fuse3Op, number>> = {};
    FUSE3_OPS.forEach((op, i) => { if (this.served[i]! > 0) out[op] = this.served[i]!; });
    return out;
  }

  private dispatch(op: number, req: NativeRequest, path: string | null, path2: string | null, n0: number, n1: number, buf: Buffer | undefined): void {
    if (op === this.native.OP_READY) {
      this.readyResolve();
      return;
    }
    if (op === this.native.OP_ENDED) {
      this.isEnded = true;
      this.endedResolve();
      return;
    }
    if (op === this.native.OP_TIMED_OUT) {
      const timedOut = FUSE3_OPS[n0];
      if (timedOut !== undefined) this.options.onTimeout(timedOut, path ?? '', n1);
      return;
    }
    const name = FUSE3_OPS[op];
    if (name === undefined) {
      this.native.reply(req, ENOSYS);
      return;
    }
    this.served[op]!++;
    const p = path ?? '';
    /** False when the binding refused the answer (too late). */
    const answer = (result: number, extra?: Reply): boolean => {
      try {
        this.native.reply(req, result, extra);
      } catch (err) {
        // A late answer was refused: the binding already answered EIO and
        // told onTimeout. Anything else is a bug to hear about.
        if ((err as NodeJS.ErrnoException).code !== 'ERR_FUSE_REQUEST_TIMED_OUT') this.options.onReplyError?.(name, p, err as Error);
        return false;
      }
      return true;
    };
    const fail = (err: unknown): void => { answer(this.options.errno(name, p, err)); };
    const h = this.handlers;
    const done = (pr: Promise<unknown>): void => { pr.then(() => { answer(0); }, fail); };
    try {
      switch (name) {
        case 'getattr':
          h.getattr(p).then((s) => { const row = new Float64Array(10); putStat(row, 0, s); answer(0, row); }, fail);
          break;
        case 'readdir': {
          // n0: 0 starts a pass (offset 0), 1 asks for the next batch; n1: the handle's id.
          let stream = this.listings.get(n1);
          if (n0 === 0) {
            stream?.close();
            stream = h.listDir(p);
            this.listings.set(n1, stream);
          } else if (stream === undefined) {
            // The pass failed earlier: it cannot go on where it stopped.
            answer(EIO);
            break;
          }
          const current = stream;
          current.next().then(({ names, stats, done }) => {
            if (done && this.listings.get(n1) === current) this.listings.delete(n1);
            // A batch the kernel never got (it timed out): the pass cannot go
            // on where it stopped, so its next batch is answered EIO.
            if (!answer(0, [names, statRows(stats), done ? 1 : 0]) && this.listings.get(n1) === current) {
              current.close();
              this.listings.delete(n1);
            }
          }, (err: unknown) => {
            if (this.listings.get(n1) === current) this.listings.delete(n1);
            fail(err);
          });
          break;
        }
        case 'releasedir':
          this.listings.get(n1)?.close();
          this.listings.delete(n1);
          answer(0);
          break;
        case 'open':
          h.open(p, n0).then((fd) => answer(0, h.keepsPageCache?.(fd) === true ? [fd, true] : fd), fail);
          break;
        case 'create':
          h.create(p, n0, n1).then(({ fd, stat }) => { const row = new Float64Array(10); putStat(row, 0, stat); answer(0, [fd, row]); }, fail);
          break;
        case 'read':
          // The Buffer goes back with the answer: when it is a copy (Electron,
          // copyBuffers), the binding copies its bytes to libfuse.
          h.read(p, n1, buf!, n0).then((n) => answer(n, buf), fail);
          break;
        case 'write':
          h.write(p, n1, buf!, n0).then((n) => answer(n), fail);
          break;
        case 'flush': done(h.flush(p, n1)); break;
        case 'fsync': done(h.fsync(p, n1)); break;
        case 'release': done(h.release(p, n1)); break;
        case 'unlink': done(h.unlink(p)); break;
        case 'mkdir': done(h.mkdir(p, n0)); break;
        case 'rmdir': done(h.rmdir(p)); break;
        case 'rename': done(h.rename(p, path2 ?? '', n0)); break;
        case 'link': done(h.link(p, path2 ?? '')); break;
        case 'symlink': done(h.symlink(path2 ?? '', p)); break;
        case 'chmod': case 'chown': case 'utimens': done(h.setattr(name, p, n0, n1)); break;
        case 'truncate': done(h.truncate(p, n0)); break;
        case 'mknod': done(h.mknod(p, n0)); break;
        case 'readlink': h.readlink(p).catch(fail); break;
        case 'statfs':
          h.statfs(p).then((s) => answer(0, statfsRow(s)), fail);
          break;
        case 'getxattr': case 'setxattr': case 'listxattr': case 'removexattr':
          done(h.xattr(name, p));
          break;
      }
    } catch (err) {
      fail(err);
    }
  }
}
