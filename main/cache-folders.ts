/**
 * Where the tray keeps each mount's local disk cache: one folder per mount
 * under the XDG cache directory (app/data/disk-cache.ts
 * `defaultCacheDirectory`), named by the mount's id. The id, not the name:
 * a renamed mount keeps its cache, and two mounts never share one (the
 * engine locks a cache folder to one worker).
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { defaultCacheDirectory } from '../app/data/disk-cache.js';

/** What an id may be to name a folder as it is: the app's ids are uuids. */
const PLAIN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * The folder name for a mount id. A hand-edited settings file may hold any
 * id, and `../x` or `a/b` must not lead outside the cache directory (Clear
 * Cache deletes what is in the folder), so such an id is named by its hash.
 */
export function cacheFolderName(mountId: string): string {
  if (PLAIN_ID.test(mountId)) return mountId;
  return `id-${createHash('sha256').update(mountId).digest('hex').slice(0, 32)}`;
}

/** The cache folder of one mount. */
export function cacheDirectoryFor(mountId: string, env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  return defaultCacheDirectory(cacheFolderName(mountId), env, home);
}
