/**
 * Renaming a folder of a bucket: S3 has no rename, so every key under the
 * old prefix is copied server-side (no bytes through this machine) to the
 * new prefix and then deleted, several keys at once. Each key is moved on
 * its own, copy before delete, so at every moment each object is under at
 * least one of its two names. A rename that stops half way (an outage
 * outlasting the retries, access denied) stops starting new keys, lets the
 * keys under way finish, retries deletes of keys already copied so none is
 * left under both names, and reports how many moved: the folder is then
 * split between the two names, each object under exactly one of them
 * unless the report says otherwise.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ObjectClient, ObjectInfo } from '../s3/object-client.js';

export interface FolderRenameJob {
  client: Pick<ObjectClient, 'listObjects' | 'copyObject' | 'deleteObject'>;
  /** Both end in '/'. */
  fromPrefix: string;
  toPrefix: string;
  /** Keys moved at once. */
  concurrency: number;
  /** Keys under fromPrefix whose content is already staged under the new name: deleted, not copied. */
  deleteOnly?: ReadonlySet<string>;
  /** Called at most every `progressEveryMs` and once at the end. */
  onProgress?(done: number, total: number): void;
  progressEveryMs?: number;
  /** Tries of a delete whose copy succeeded, before the key is reported under both names. */
  deleteAttempts?: number;
  deleteRetryDelayMs?: number;
}

export interface FolderRenameResult {
  total: number;
  moved: number;
}

/** The rename stopped half way; the message says where each object is. */
export class FolderRenameError extends Error {
  override readonly name = 'FolderRenameError';
  constructor(
    readonly fromPrefix: string,
    readonly toPrefix: string,
    readonly total: number,
    readonly moved: number,
    /** Keys copied whose old name could not be deleted: under both names. */
    readonly underBoth: readonly string[],
    cause: unknown,
  ) {
    const left = total - moved - underBoth.length;
    super(
      `rename of ${fromPrefix} to ${toPrefix} stopped after ${moved} of ${total} objects: ${moved} are under ${toPrefix}, ${left} still under ${fromPrefix}` +
        (underBoth.length > 0 ? `, ${underBoth.length} under both (${underBoth.slice(0, 3).join(', ')}${underBoth.length > 3 ? ', …' : ''})` : '') +
        `: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

/** Every key under `prefix`, in listing order. */
export async function listAllKeys(client: Pick<ObjectClient, 'listObjects'>, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  let token: string | undefined;
  do {
    const page = await client.listObjects({ prefix, ...(token ? { continuationToken: token } : {}) });
    for (const o of page.objects) out.push(o);
    token = page.nextContinuationToken;
  } while (token);
  return out;
}

export async function renameFolderKeys(job: FolderRenameJob): Promise<FolderRenameResult> {
  const objects = await listAllKeys(job.client, job.fromPrefix);
  const total = objects.length;
  const everyMs = job.progressEveryMs ?? 250;
  const deleteAttempts = job.deleteAttempts ?? 5;
  const deleteRetryDelayMs = job.deleteRetryDelayMs ?? 2_000;
  let moved = 0;
  let next = 0;
  let failure: unknown;
  const underBoth: string[] = [];
  let lastReport = 0;
  const report = (force: boolean): void => {
    const now = Date.now();
    if (!force && now - lastReport < everyMs) return;
    lastReport = now;
    job.onProgress?.(moved, total);
  };

  const deleteOld = async (key: string): Promise<boolean> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await job.client.deleteObject(key);
        return true;
      } catch (err) {
        if (attempt >= deleteAttempts) {
          failure ??= err;
          return false;
        }
        await sleep(deleteRetryDelayMs);
      }
    }
  };

  const worker = async (): Promise<void> => {
    while (failure === undefined && next < objects.length) {
      const o = objects[next++]!;
      if (!job.deleteOnly?.has(o.key)) {
        try {
          await job.client.copyObject(o.key, job.toPrefix + o.key.slice(job.fromPrefix.length), { ifMatch: o.etag, sizeBytes: o.sizeBytes });
        } catch (err) {
          failure ??= err;
          return;
        }
      }
      if (await deleteOld(o.key)) moved++;
      else underBoth.push(o.key);
      report(false);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(job.concurrency, total)) }, worker));
  report(true);
  if (failure !== undefined || underBoth.length > 0) {
    if (moved === total) return { total, moved };
    throw new FolderRenameError(job.fromPrefix, job.toPrefix, total, moved, underBoth, failure);
  }
  return { total, moved };
}
