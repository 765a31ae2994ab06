/**
 * The thin layer between fuse-native and the fs model: it translates
 * callbacks to promises and FsErrors to negative errnos (the one place that
 * happens), and it sets the FUSE options fuse-native does not expose.
 */
import Fuse, { type FuseOps, type FuseStat, type OpTimeouts } from 'fuse-native';
import type { Logger } from '../log.js';
import { errnoValue, refuse, toFsError } from './errno.js';
import type { S3FileSystem, Stat } from './filesystem.js';

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
 * FUSE settings and their reasons (DESIGN.md, "Performance design").
 * - max_read / max_readahead 1 MiB: the kernel asks for big sequential
 *   reads; the prefetcher serves them from its window.
 * - big_writes with max_write 128 KiB: without it libfuse 2 sends 4 KiB
 *   writes and writing runs ten times slower.
 * - atomic_o_trunc: open(O_TRUNC) of an existing object reaches us as one
 *   open with O_TRUNC (an overwrite, allowed with --allow-overwrite)
 *   instead of a truncate followed by an open.
 */
export const FUSE_TUNING = {
  maxReadBytes: 1024 * 1024,
  maxReadaheadBytes: 1024 * 1024,
  maxWriteBytes: 128 * 1024,
  maxBackground: 64,
  congestionThreshold: 48,
} as const;

/**
 * fuse-native answers an operation itself after 15 s by default, with EIO.
 * Our S3 calls are bounded by their own timeouts and retries (retry-strategy.ts:
 * about 95 s at worst), so the FUSE timeout only
 * catches our own bugs and sits above that. Completing an upload (flush,
 * fsync, release) waits for the last parts however long they take:
 * close() must not report success or failure before S3 has decided.
 */
export const OP_TIMEOUTS: OpTimeouts = {
  default: 120_000,
  flush: false,
  fsync: false,
  release: false,
};

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

function toFuseStat(s: Stat): FuseStat {
  return { ...s };
}

export function createFuse(mountPoint: string, fs: S3FileSystem, options: FuseMountOptions, log: Logger): TunedFuse {
  const fail = (op: string, path: string, err: unknown): number => {
    const e = toFsError(err, path);
    const level = e.errno === 'ENOENT' || e.rule !== undefined && e.rule !== 'ioError' && e.rule !== 'accessDenied' ? 'debug' : 'warn';
    log[level]('operation refused', { op, path, errno: e.errno, rule: e.rule, error: e.message });
    return -errnoValue(e.errno);
  };
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
    rename: (src, _dest, cb) => done0('rename', src, fs.rename(src), cb),
    link: (_src, dest, cb) => done0('link', dest, fs.link(dest), cb),
    symlink: (_target, path, cb) => done0('symlink', path, fs.symlink(path), cb),
    chmod: refuseWith('chmod', (p) => fs.setattr(p)),
    chown: refuseWith('chown', (p) => fs.setattr(p)),
    utimens: refuseWith('utimens', (p) => fs.setattr(p)),
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
  return new TunedFuse(mountPoint, ops, {
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
    `max_write=${FUSE_TUNING.maxWriteBytes}`,
    `max_readahead=${FUSE_TUNING.maxReadaheadBytes}`,
    'atomic_o_trunc',
    // The kernel sends read-ahead and parallel random reads as "background"
    // requests, at most 12 at once by default: 16 readers got 10-12 GETs in
    // flight. Room for every request the S3 client can have in flight.
    `max_background=${FUSE_TUNING.maxBackground}`,
    `congestion_threshold=${FUSE_TUNING.congestionThreshold}`,
    // libfuse 2 otherwise renames an open file to .fuse_hiddenXXX on unlink,
    // which we refuse (no rename): rm must answer by the semantics table.
    'hard_remove',
    // fuse-native drops zero values of its own entry/attr options, so set them here.
    `entry_timeout=${ttl}`,
    `attr_timeout=${ttl}`,
    'negative_timeout=0',
  ]);
}
