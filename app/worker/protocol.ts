/**
 * The one contract between a mount worker (app/worker.ts) and whoever runs
 * it: the `sosmount` CLI, or the tray's supervisor. Both sides type-check
 * against it; {@link parseToWorker} checks what actually arrives.
 */
import type { MountOptions } from '../options.js';
import type { StaticCredentials } from '../s3/sdk-client.js';

export type MountState = 'mounting' | 'mounted' | 'unmounting' | 'unmounted' | 'error';

/** Why a mount failed, stable for callers to branch on. */
export type MountErrorCode =
  | 'mount-point-missing'
  | 'mount-point-not-directory'
  | 'mount-point-not-empty'
  | 'mount-point-in-use'
  /** A folder the worker writes (log, upload journal) is the mount point or inside it. */
  | 'folder-inside-mount-point'
  /** Editing mode: the same bucket and prefix is mounted in editing mode by another live worker. */
  | 'staging-in-use'
  /** --cache: another live worker uses the cache folder. */
  | 'cache-in-use'
  /** --cache: the cache folder cannot be created or written, or its disk is full. */
  | 'cache-unusable'
  | 'bucket-not-found'
  | 'access-denied'
  | 'invalid-credentials'
  | 'credentials-missing'
  | 'clock-skew'
  | 'endpoint-unreachable'
  | 'fuse-unavailable'
  | 'worker-crashed'
  | 'internal';

export interface WorkerError {
  code: MountErrorCode;
  message: string;
  requestId?: string | undefined;
}

export type ToWorker =
  | {
      type: 'mount';
      options: MountOptions;
      /** From the keychain (tray). Absent: the standard AWS chain with options.profile. */
      credentials?: StaticCredentials | undefined;
      /** Keep running when the parent disconnects (the CLI's background mode). */
      detach: boolean;
    }
  /** With abandonUploads (Quit anyway), uploads still running are aborted instead of awaited. */
  | { type: 'unmount'; abandonUploads?: boolean }
  /** Empties the mount's local disk cache (answered by `cache-cleared`). */
  | { type: 'clear-cache' };

export type FromWorker =
  | { type: 'state'; state: MountState; error?: WorkerError | undefined; mountPoint?: string }
  | { type: 'uploads'; inProgress: number }
  | { type: 'upload-failed'; path: string; message: string }
  /**
   * Editing mode: the object changed in the bucket while it was edited here;
   * ours was stored beside it as `conflictPath` (both are mount paths).
   */
  | { type: 'conflict'; path: string; conflictPath: string }
  /** Editing mode, at mount: files an earlier run accepted and did not upload; `kept` could not be uploaded and stay in `stagingDirectory`. */
  | { type: 'recovered'; uploading: number; kept: { path: string; reason: string }[]; stagingDirectory: string }
  /** Editing mode: a folder rename under way (`done` of `total` objects), or ended (`finished`, with `error` if it stopped half way). */
  | { type: 'rename-progress'; from: string; to: string; done: number; total: number; finished: boolean; error?: string | undefined }
  /** Answer to `clear-cache`: bytes removed, or why the cache could not be cleared. */
  | { type: 'cache-cleared'; freedBytes: number; error?: string | undefined }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates a message from the parent; anything malformed is rejected with a reason. */
export function parseToWorker(raw: unknown): ToWorker {
  if (!isRecord(raw) || typeof raw['type'] !== 'string') throw new Error('worker message: not an object with a type');
  if (raw['type'] === 'unmount') return { type: 'unmount', abandonUploads: raw['abandonUploads'] === true };
  if (raw['type'] === 'clear-cache') return { type: 'clear-cache' };
  if (raw['type'] === 'mount') {
    const options = raw['options'];
    if (!isRecord(options) || typeof options['bucket'] !== 'string' || typeof options['mountPoint'] !== 'string') {
      throw new Error('worker message: mount needs options with bucket and mountPoint');
    }
    const creds = raw['credentials'];
    let credentials: StaticCredentials | undefined;
    if (creds !== undefined) {
      if (!isRecord(creds) || typeof creds['accessKeyId'] !== 'string' || typeof creds['secretAccessKey'] !== 'string') {
        throw new Error('worker message: credentials need accessKeyId and secretAccessKey strings');
      }
      credentials = {
        accessKeyId: creds['accessKeyId'],
        secretAccessKey: creds['secretAccessKey'],
        sessionToken: typeof creds['sessionToken'] === 'string' ? creds['sessionToken'] : undefined,
      };
    }
    return { type: 'mount', options: options as unknown as MountOptions, credentials, detach: raw['detach'] === true };
  }
  throw new Error(`worker message: unknown type ${JSON.stringify(raw['type'])}`);
}
