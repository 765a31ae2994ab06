/**
 * The local disk cache of object content (`--cache DIR`), after
 * Mountpoint's disk_data_cache.rs, kept across mounts.
 *
 * Objects are stored in blocks of `--cache-block-size`, one file per block,
 * named by a hash of the object version (key, ETag, size) and the block's
 * index. Each file starts with a header naming that version and block and
 * carrying a CRC-32 of the bytes; every read checks all of it, so a
 * truncated, corrupt or foreign block is a miss (fetched again and
 * logged), never wrong bytes. A block is written under a temporary name
 * and renamed into place, so a reader sees a whole block or none.
 *
 * The size stays under its limit at all times: least recently used blocks
 * are removed before a new one is written. The order survives a restart
 * through the files' modification times (touched at most once a minute
 * per block when read).
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { lockHolder } from './folder-lock.js';

/** The folder of a cache's blocks; versioned, so a new layout never reads an old one's files. */
const BLOCKS_FOLDER = 'v1';

/** Another live worker uses the cache folder (one mount per cache at a time). */
export class CacheInUseError extends Error {
  override readonly name = 'CacheInUseError';
  constructor(readonly directory: string, readonly pid: number | undefined) {
    super(`the cache folder ${directory} is in use by ${pid === undefined ? 'another process' : `process ${pid}`} (another mount uses the same --cache folder)`);
  }
}

/** The cache folder cannot be created or written, or its disk is full. */
export class CacheUnusableError extends Error {
  override readonly name = 'CacheUnusableError';
  constructor(readonly directory: string, problem: string, options?: { cause?: unknown }) {
    super(`cannot use the cache folder ${directory}: ${problem}`, options);
  }
}

/**
 * The tray's cache folder for a mount: under the XDG cache directory
 * (~/Library/Caches on macOS), one per mount.
 */
export function defaultCacheDirectory(mountName: string, env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Caches', 'sos-mount', mountName);
  return path.join(env['XDG_CACHE_HOME'] ?? path.join(home, '.cache'), 'sos-mount', mountName);
}

/** Bytes the folder takes on disk, as `du` counts them (allocated blocks of files and folders); 0 if it does not exist. */
export async function cacheFolderUsage(directory: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
      total += (await stat(dir)).blocks * 512;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else total += await stat(p).then((s) => s.blocks * 512, () => 0);
    }
  };
  await walk(directory);
  return total;
}

/**
 * Empties a cache that no mount uses now, and returns the bytes freed. A
 * mounted cache is cleared by its worker (the `clear-cache` message);
 * here that is a CacheInUseError.
 */
export async function clearCacheFolder(directory: string): Promise<number> {
  const holder = await lockHolder(directory);
  if (holder !== undefined) throw new CacheInUseError(directory, holder);
  const blocks = path.join(directory, BLOCKS_FOLDER);
  const before = await cacheFolderUsage(blocks);
  await rm(blocks, { recursive: true, force: true });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  return before;
}
