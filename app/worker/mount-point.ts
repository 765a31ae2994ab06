/**
 * Mount-point checks and cleanup, shared by the worker, the CLI and the
 * tray's supervisor. All calls are asynchronous: the caller may be the very
 * process that serves the mount.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type MountPointProblem =
  | { code: 'mount-point-missing'; message: string }
  | { code: 'mount-point-not-directory'; message: string }
  | { code: 'mount-point-not-empty'; message: string }
  | { code: 'mount-point-in-use'; message: string };

/** Mount points listed in /proc/self/mountinfo (Linux), with their file-system types. */
export async function listMounts(): Promise<Map<string, string> | undefined> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const mounts = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    const mountPoint = fields[4];
    const fsType = sep >= 0 ? fields[sep + 1] : undefined;
    if (mountPoint !== undefined && fsType !== undefined) mounts.set(unescapeMountInfo(mountPoint), fsType);
  }
  return mounts;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountInfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * The path the kernel lists for a mount: symlinks resolved. Resolves the
 * parent and keeps the last name, so it works on a stale mount too (whose
 * own stat fails).
 */
export async function canonicalMountPoint(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  try {
    return path.join(await realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

export async function isMountPoint(dir: string): Promise<boolean> {
  const mounts = await listMounts();
  if (mounts) {
    const abs = await canonicalMountPoint(dir);
    if (mounts.has(abs)) return true;
    // The last name may itself be a symlink to a folder.
    const target = await realpath(abs).catch(() => abs);
    return mounts.has(target);
  }
  // No /proc (macOS): a mount point's device differs from its parent's.
  const [self, parent] = await Promise.all([stat(dir), stat(path.join(dir, '..'))]);
  return self.dev !== parent.dev;
}

/** A FUSE mount whose server is gone answers ENOTCONN ("Transport endpoint is not connected"). */
export async function isStaleMount(dir: string): Promise<boolean> {
  try {
    await stat(dir);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

/** Detaches a mount (lazy, so open files elsewhere do not block it). Never throws. */
export async function forceUnmount(dir: string): Promise<boolean> {
  const attempts: Array<[string, string[]]> = process.platform === 'darwin'
    ? [['diskutil', ['unmount', 'force', dir]], ['umount', ['-f', dir]]]
    : [['fusermount', ['-uz', dir]], ['umount', ['-l', dir]]];
  for (const [cmd, args] of attempts) {
    try {
      await run(cmd, args, { timeout: 10_000 });
      return true;
    } catch {
      // try the next way
    }
  }
  return !(await isMountPoint(dir).catch(() => false));
}

/**
 * Checks a directory can take a mount, as mount-s3 does: it exists, is a
 * folder, is empty and is not a mount already. A stale FUSE mount left by a
 * worker that died is cleaned first (stale-mount recovery).
 */
export async function checkMountPoint(dir: string): Promise<MountPointProblem | undefined> {
  if (await isStaleMount(dir)) await forceUnmount(dir);
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { code: 'mount-point-missing', message: `mount point ${dir} does not exist` };
    if (code === 'ENOTDIR') return { code: 'mount-point-not-directory', message: `mount point ${dir} is not a directory` };
    throw err;
  }
  if (!st.isDirectory()) return { code: 'mount-point-not-directory', message: `mount point ${dir} is not a directory` };
  if (await isMountPoint(dir)) return { code: 'mount-point-in-use', message: `mount point ${dir} is already mounted` };
  const entries = await readdir(dir);
  if (entries.length > 0) return { code: 'mount-point-not-empty', message: `mount point ${dir} is not empty` };
  return undefined;
}

/**
 * A folder the worker itself writes to while it serves the mount: its log,
 * the upload journal, a local cache. Inside the mount point, such a write
 * would be served by the very thread that waits on it, and the mount hangs
 * (processes in `ls` stuck in uninterruptible sleep until the FUSE
 * connection is aborted).
 */
export interface LocalFolder {
  /** How the message names it: "log folder", "upload journal folder". */
  what: string;
  folder: string;
}

export interface FolderInsideMountPoint {
  code: 'folder-inside-mount-point';
  message: string;
  what: string;
  folder: string;
}

/**
 * The real path of `p` as far as it exists, with the missing rest appended:
 * a log folder inside an (empty) mount point does not exist yet, but a
 * symlink on the way to it must still be followed. `..` is resolved by
 * name first, as the options already do with path.resolve.
 */
export async function realPathOfExistingPart(p: string): Promise<string> {
  let existing = path.resolve(p);
  const missing: string[] = [];
  for (;;) {
    try {
      return path.join(await realpath(existing), ...missing);
    } catch {
      // Missing, or not readable (EACCES, a stale mount): look one level up.
      const parent = path.dirname(existing);
      if (parent === existing) return path.join(existing, ...missing);
      missing.unshift(path.basename(existing));
      existing = parent;
    }
  }
}

function isSameOrInside(folder: string, mountPoint: string): boolean {
  const rel = path.relative(mountPoint, folder);
  return rel === '' || (rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel));
}

/**
 * Refuses any of `folders` that is the mount point or inside it, comparing
 * real paths. Every folder the worker writes locally goes through here
 * before the mount. Only asynchronous calls: once mounted, a synchronous
 * lookup under the mount point from the serving process would deadlock.
 */
export async function checkFoldersOutsideMountPoint(mountPoint: string, folders: readonly LocalFolder[]): Promise<FolderInsideMountPoint | undefined> {
  const realMountPoint = await realPathOfExistingPart(mountPoint);
  for (const { what, folder } of folders) {
    const real = await realPathOfExistingPart(folder);
    if (!isSameOrInside(real, realMountPoint)) continue;
    const shown = real === path.resolve(folder) ? folder : `${folder} (${real})`;
    const where = real === realMountPoint ? `is the mount point ${mountPoint}` : `is inside the mount point ${mountPoint}`;
    return {
      code: 'folder-inside-mount-point',
      what,
      folder,
      message: `the ${what} ${shown} ${where}: the worker would write into its own mount and hang it; choose a ${what} outside ${mountPoint}`,
    };
  }
  return undefined;
}
