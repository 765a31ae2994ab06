/**
 * One live process per folder: the staging folder and the disk cache each
 * belong to one worker at a time. The lock is a file holding the owner's
 * pid, created exclusively; one left by a dead process is taken over, so a
 * crash never locks a folder for good.
 */
import { readFileSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

const LOCK_FILE = 'lock';

/** The folder is locked by another live process (`pid`, when it could be read). */
export class FolderLockedError extends Error {
  override readonly name = 'FolderLockedError';
  constructor(readonly directory: string, readonly pid: number | undefined) {
    super(`${directory} is in use by ${pid === undefined ? 'another process' : `process ${pid}`}`);
  }
}

/** Whether a process lives (EPERM: it does, under another user; a zombie does not). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed worker stays a zombie until its parent reaps it: dead all the same.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

async function writeFileExclusive(file: string, text: string): Promise<void> {
  const h = await open(file, 'wx', 0o600);
  try {
    await h.writeFile(text);
  } finally {
    await h.close();
  }
}

/** The pid in the folder's lock file, whatever its state; undefined for none or an unreadable one. */
async function lockPid(directory: string): Promise<number | undefined> {
  const pid = Number((await readFile(path.join(directory, LOCK_FILE), 'utf8').catch(() => '')).trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The live process holding the folder's lock, if any (a lock of a dead one does not count). */
export async function lockHolder(directory: string): Promise<number | undefined> {
  const pid = await lockPid(directory);
  return pid !== undefined && processAlive(pid) ? pid : undefined;
}

/**
 * Takes the folder's lock for this process; throws FolderLockedError if a
 * live process holds it. Taking it twice in one process (tests open a
 * folder twice) succeeds.
 */
export async function lockFolder(directory: string): Promise<void> {
  const file = path.join(directory, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFileExclusive(file, `${process.pid}\n`);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = await lockPid(directory);
    if (pid === process.pid) return;
    if (pid !== undefined && processAlive(pid)) throw new FolderLockedError(directory, pid);
    await unlink(file).catch(() => undefined);
  }
  throw new FolderLockedError(directory, undefined);
}

/** Gives the lock back; a missing lock file is no error. */
export async function unlockFolder(directory: string): Promise<void> {
  await unlink(path.join(directory, LOCK_FILE)).catch(() => undefined);
}
