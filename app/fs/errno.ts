/**
 * The one errno table: every refused operation of the file system takes its
 * errno from here, row for row with the table in README.md ("What is not POSIX"), so the
 * behaviour is documented in one place and tested row by row
 * (test/semantics.test.ts). Values come from the platform (os.constants),
 * never from literals: Linux and macOS number them differently.
 */
import { constants } from 'node:os';
import { S3RequestError } from '../s3/errors.js';

export type ErrnoName =
  | 'EPERM' | 'ENOENT' | 'EIO' | 'EACCES' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'EINVAL' | 'EFBIG'
  | 'ENOSPC' | 'EROFS' | 'ENAMETOOLONG' | 'ENOSYS' | 'ENOTEMPTY' | 'EBADF' | 'ENOTSUP' | 'ETIMEDOUT';

/** The semantics table. Keys are stable names used by the fs code and the tests. */
export const SEMANTICS = {
  writeOutOfOrder: { errno: 'EINVAL', rule: 'write out of order (seek, offset write)' },
  openSyncFlags: { errno: 'EINVAL', rule: 'open with O_SYNC/O_DSYNC' },
  writeAfterFsync: { errno: 'EIO', rule: 'write after fsync() or close() completed the upload' },
  overwriteNotAllowed: { errno: 'EPERM', rule: 'overwrite an existing object without --allow-overwrite' },
  overwriteWithoutTruncate: { errno: 'EPERM', rule: 'open an existing object for writing without O_TRUNC' },
  unlinkNotAllowed: { errno: 'EPERM', rule: 'unlink without --allow-delete (object kept)' },
  unlinkWhileWriting: { errno: 'EPERM', rule: 'unlink a file that is still being written' },
  concurrentWriter: { errno: 'EPERM', rule: 'two writers, or a reader and a writer, on one file' },
  fileTooLarge: { errno: 'EFBIG', rule: 'write beyond 10,000 x write part size' },
  fsyncTooLarge: { errno: 'ENOSPC', rule: 'fsync of a file larger than 10,000 x write part size' },
  mkdirExists: { errno: 'EEXIST', rule: 'mkdir of an existing name' },
  rmdirRemote: { errno: 'EPERM', rule: 'rmdir of a folder that exists in the bucket' },
  rmdirNotEmpty: { errno: 'ENOTEMPTY', rule: 'rmdir of a folder that is not empty (one made by mkdir; in editing mode any)' },
  renameFile: { errno: 'ENOSYS', rule: 'rename of a file' },
  renameDirectory: { errno: 'EPERM', rule: 'rename of a folder' },
  renameExchange: { errno: 'EINVAL', rule: 'rename with RENAME_EXCHANGE (editing mode)' },
  renameIntoItself: { errno: 'EINVAL', rule: 'rename of a folder into itself (editing mode)' },
  renameExists: { errno: 'EEXIST', rule: 'rename with RENAME_NOREPLACE over an existing name (editing mode)' },
  renameNotEmpty: { errno: 'ENOTEMPTY', rule: 'rename of a folder over a folder that is not empty (editing mode)' },
  symlink: { errno: 'EPERM', rule: 'symlink' },
  hardLink: { errno: 'EPERM', rule: 'hard link' },
  specialFile: { errno: 'EPERM', rule: 'mknod of a device, FIFO or socket' },
  setAttributes: { errno: 'EPERM', rule: 'chmod, chown, utimes of a stored file' },
  truncate: { errno: 'EPERM', rule: 'truncate a stored file, or a file being written to another size' },
  xattr: { errno: 'ENOSYS', rule: 'extended attributes' },
  readlink: { errno: 'ENOSYS', rule: 'readlink' },
  readOnly: { errno: 'EROFS', rule: 'any write on a --read-only mount' },
  notFound: { errno: 'ENOENT', rule: 'no such file or folder' },
  notADirectory: { errno: 'ENOTDIR', rule: 'a path component is a file' },
  isADirectory: { errno: 'EISDIR', rule: 'open a folder for writing, or unlink a folder' },
  nameTooLong: { errno: 'ENAMETOOLONG', rule: 'a name over 255 bytes or a key over 1024 bytes' },
  invalidName: { errno: 'EINVAL', rule: 'a name that cannot be an S3 key segment' },
  createExists: { errno: 'EEXIST', rule: 'create with O_EXCL of an existing name' },
  badHandle: { errno: 'EBADF', rule: 'an unknown or closed file handle' },
  accessDenied: { errno: 'EACCES', rule: 'S3 refused the request (403)' },
  objectChanged: { errno: 'EIO', rule: 'the object changed in the bucket while open for reading' },
  ioError: { errno: 'EIO', rule: 'S3 or network failure after retries' },
} as const satisfies Record<string, { errno: ErrnoName; rule: string }>;

export type SemanticsRule = keyof typeof SEMANTICS;

export function errnoValue(name: ErrnoName): number {
  const v = constants.errno[name];
  if (typeof v !== 'number') throw new Error(`errno ${name} is unknown on this platform`);
  return v;
}

/** An fs failure: the errno the kernel will see, a message for the log, and the cause. */
export class FsError extends Error {
  override readonly name = 'FsError';
  readonly errno: ErrnoName;
  readonly rule: SemanticsRule | undefined;

  constructor(errno: ErrnoName, message: string, options: { rule?: SemanticsRule; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.errno = errno;
    this.rule = options.rule;
  }
}

export function refuse(rule: SemanticsRule, path: string): FsError {
  const row = SEMANTICS[rule];
  return new FsError(row.errno, `${path}: ${row.rule}`, { rule });
}

/**
 * The one place an internal error becomes an errno. Judgment calls:
 * 403 becomes EACCES (the user can act on it), a vanished key ENOENT, and
 * everything transient that survived the retries EIO, as Mountpoint does.
 */
export function toFsError(err: unknown, path: string): FsError {
  if (err instanceof FsError) return err;
  if (err instanceof S3RequestError) {
    switch (err.kind) {
      case 'NoSuchKey':
        return new FsError('ENOENT', `${path}: ${err.message}`, { rule: 'notFound', cause: err });
      case 'AccessDenied':
      case 'InvalidCredentials':
        return new FsError('EACCES', `${path}: ${err.message}`, { rule: 'accessDenied', cause: err });
      case 'PreconditionFailed':
        return new FsError('EIO', `${path}: ${err.message}`, { rule: 'objectChanged', cause: err });
      default:
        return new FsError('EIO', `${path}: ${err.message}`, { rule: 'ioError', cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new FsError('EIO', `${path}: ${message}`, { rule: 'ioError', cause: err });
}
