/**
 * A mount's local disk cache in the Mounts pane: the space it takes now,
 * and Clear Cache. Where the folder is and how it is cleared (through the
 * worker while mounted) is the supervisor's business (main/supervisor.ts);
 * this turns its answers into what the window shows.
 */
import { stat } from 'node:fs/promises';
import { cacheFolderUsage } from '../../app/data/disk-cache.js';
import { IpcChannel, type IpcHandlers } from '../ipc-contract.js';
import { SettingsActionError } from '../ipc-validate.js';
import { ClearCacheError } from '../supervisor.js';
import type { SettingsContext } from './context.js';
import { displayPath } from './home-paths.js';
import { errnoOf, sentence } from './messages.js';
import { mountById } from './mounts.js';

export type CacheHandlers = Pick<IpcHandlers, typeof IpcChannel.CacheUsage | typeof IpcChannel.ClearCache>;

export function cacheHandlers(ctx: SettingsContext): CacheHandlers {
  return {
    async [IpcChannel.CacheUsage](mountId) {
      mountById(ctx.settings, mountId);
      const directory = ctx.caches.cacheDirectory(mountId);
      let usedBytes: number;
      try {
        // Less the folder's own entry: a cleared cache is an empty folder,
        // and "Using 4 KiB" would say something is still stored.
        const own = await stat(directory).then((s) => s.blocks * 512, () => 0);
        usedBytes = Math.max(0, (await cacheFolderUsage(directory)) - own);
      } catch (err) {
        throw new SettingsActionError('Refused', `The cache folder cannot be read: ${errnoOf(err) ?? (err as Error).message}`);
      }
      return { directory: displayPath(directory, ctx.home), usedBytes };
    },

    async [IpcChannel.ClearCache](mountId) {
      mountById(ctx.settings, mountId);
      try {
        return { freedBytes: await ctx.caches.clearCache(mountId) };
      } catch (err) {
        if (err instanceof ClearCacheError) throw new SettingsActionError('Refused', sentence(err.message));
        throw err;
      }
    },
  };
}
