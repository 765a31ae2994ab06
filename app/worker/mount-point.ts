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
