/**
 * Files dropped on a mount row: copied one after another into the mounted
 * folder, so each becomes one sequential write (one multipart upload) in the
 * mount, with progress events for the row's bar and each failure in plain
 * words.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IpcChannel, IpcEvent, type IpcHandlers, type UploadResult } from '../ipc-contract.js';
import { SettingsActionError } from '../ipc-validate.js';
import type { SettingsContext } from './context.js';
import { errnoOf } from './messages.js';
import { mountById } from './mounts.js';

export type UploadHandlers = Pick<IpcHandlers, typeof IpcChannel.UploadFiles>;

export const DEFAULT_PROGRESS_INTERVAL_MS = 100;

function copyFailure(err: unknown, file: string): string {
  switch (errnoOf(err)) {
    case 'EEXIST': return `'${file}' already exists in the mount`;
    case 'EROFS': return 'the mount is read-only';
    case 'EPERM': return 'the mount refused the file (overwriting and deleting are off by default)';
    case 'EACCES': return `'${file}' could not be read: permission denied`;
    case 'ENOENT': return `'${file}' is gone`;
    case 'ENOSPC':
    case 'EFBIG': return `'${file}' is too large for the mount's write part size`;
    case 'EIO': return 'the upload failed; the mount\'s log has the S3 error';
    case 'ENOTCONN': return 'the mount is not connected any more';
    case 'ABORT_ERR': return 'cancelled';
    default: return err instanceof Error ? err.message : String(err);
  }
}

export function uploadHandlers(ctx: SettingsContext): UploadHandlers {
  return {
    async [IpcChannel.UploadFiles](mountId, paths): Promise<UploadResult> {
      const mount = mountById(ctx.settings, mountId);
      const status = ctx.statuses.status(mountId);
      if (status.state !== 'mounted') {
        throw new SettingsActionError('Refused', `'${mount.name}' is not mounted. Mount it from the tray, then drop the files again.`);
      }
      if (mount.readOnly) throw new SettingsActionError('Refused', `'${mount.name}' is read-only.`);
      const result: UploadResult = { uploaded: [], failed: [] };
      const files: Array<{ source: string; name: string; size: number }> = [];
      for (const source of paths) {
        const name = path.basename(source);
        if (!path.isAbsolute(source)) {
          result.failed.push({ file: name, reason: 'not a file on this computer' });
          continue;
        }
        try {
          const stat = await fsp.stat(source);
          if (stat.isDirectory()) result.failed.push({ file: name, reason: 'folders are not uploaded; drop the files inside it' });
          else if (!stat.isFile()) result.failed.push({ file: name, reason: 'not a regular file' });
          else files.push({ source, name, size: stat.size });
        } catch (err) {
          result.failed.push({ file: name, reason: copyFailure(err, name) });
        }
      }
      const uploadId = ctx.newId();
      const bytesTotal = files.reduce((sum, f) => sum + f.size, 0);
      let bytesDone = 0;
      let lastEmit = 0;
      const progress = (file: string, fileIndex: number, done: boolean, force: boolean): void => {
        const now = Date.now();
        if (!force && now - lastEmit < ctx.progressIntervalMs) return;
        lastEmit = now;
        ctx.emit(IpcEvent.UploadProgress, { uploadId, mountId, file, fileIndex, fileCount: files.length, bytesDone, bytesTotal, done });
      };
      for (const [index, file] of files.entries()) {
        const destination = path.join(mount.mountPoint, file.name);
        progress(file.name, index, false, true);
        let created = false;
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            bytesDone += chunk.length;
            progress(file.name, index, false, false);
            callback(null, chunk);
          },
        });
        const fileStart = bytesDone;
        try {
          const out = createWriteStream(destination, { flags: 'wx' });
          out.once('open', () => {
            created = true;
          });
          await pipeline(createReadStream(file.source), counter, out, { signal: ctx.lifetime });
          result.uploaded.push(file.name);
        } catch (err) {
          bytesDone = fileStart + file.size; // count it as handled, so the bar still ends full
          result.failed.push({ file: file.name, reason: copyFailure(err, file.name) });
          // Only what this copy created; an existing file (EEXIST) is never touched.
          if (created) await fsp.rm(destination, { force: true }).catch(() => undefined);
        }
      }
      progress(files.at(-1)?.name ?? '', Math.max(files.length - 1, 0), true, true);
      return result;
    },
  };
}
