/**
 * Uploads a closed staged file (staging.ts) to its key. A file up to the
 * first part size is one PutObject; a larger one is a multipart upload that
 * reads the data file part by part, with at most `maxPartsInFlight` parts
 * read and sent at once, so memory is bounded by parts in flight x part
 * size whatever the file size. Part sizes follow uploader.ts (partSizeFor,
 * the 10,000-part limit), so a file that streamed upload could hold can be
 * staged too. Any failure aborts the multipart upload: no partial object.
 *
 * The upload is conditional: it must find at the key the version the stage
 * was based on (If-Match), or no object for a new file (If-None-Match: *),
 * so another writer's newer version is never overwritten silently; a
 * refusal leaves the stage, in state "conflict", for the user.
 *
 * A write to the stage during the upload (the file reopened) must not
 * publish a mix of old and new bytes: the stage's generation is checked
 * after every part is read and before the object is completed; a change
 * aborts the upload, which starts over if the stage was closed again, and
 * otherwise leaves it to the next close.
 */
import type { CompletedPart, ObjectClient, WriteConditions } from '../s3/object-client.js';
import { S3RequestError } from '../s3/errors.js';
import { PartLimitError, maxObjectBytes, partSizeFor, type UploadTracker } from './uploader.js';
import type { StagedFile, UploadSnapshot } from './staging.js';
import type { CacheFill } from './disk-cache.js';

/** What an upload of a staged file needs of the bucket: its writes, with their conditions (WriteConditions). */
export type StagedUploadTarget = Pick<ObjectClient, 'bucket' | 'putObject' | 'createMultipartUpload' | 'uploadPart' | 'completeMultipartUpload' | 'abortMultipartUpload'>;

export interface StagedUploadConfig {
  /** `--write-part-size`; the first part size, as in uploader.ts. */
  partSizeBytes: number;
  maxPartsInFlight: number;
  tracker?: UploadTracker | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Tries when the stage keeps changing and closing during uploads; past
   * them the stage stays closed for the caller's next round.
   */
  maxAttempts?: number;
  /**
   * Asked once the object is stored: true keeps the stage (a program still
   * has the file open), based on the version just uploaded.
   */
  keepStage?: () => boolean;
  /** A copy of the bytes for the disk cache, per attempt; committed once the object is stored. */
  cacheFill?: () => CacheFill | undefined;
}

export type StagedUploadResult =
  /** The object is in the bucket as `etag`; the stage was removed unless it changed meanwhile (then it is based on `etag`). */
  | { status: 'uploaded'; key: string; etag: string; sizeBytes: number; stageRemoved: boolean; generation: number }
  /** The stage changed during the upload; nothing was published; it uploads again after its next close. */
  | { status: 'superseded'; key: string };

/** The bucket refused the conditional write: the object changed (or vanished) since the stage was based on it. */
export class StageConflictError extends Error {
  override readonly name = 'StageConflictError';
  constructor(readonly key: string, readonly baseEtag: string | undefined, cause: unknown) {
    super(baseEtag === undefined
      ? `${key}: another writer created this object while it was being edited; the edited copy is kept`
      : `${key}: the object changed in the bucket since it was opened (was ${baseEtag}); the edited copy is kept`, { cause });
  }
}

const DEFAULT_MAX_ATTEMPTS = 3;

/** The stage changed under the upload; internal to this module. */
class ChangedDuringUpload extends Error {}

function isConflict(err: unknown, precondition: WriteConditions): boolean {
  if (!(err instanceof S3RequestError)) return false;
  if (err.kind === 'PreconditionFailed') return true;
  // 409: two conditional writes raced at S3; the other one won.
  if (err.status === 409 && err.code === 'ConditionalRequestConflict') return true;
  // S3 answers If-Match on a deleted key with 404.
  return precondition.ifMatch !== undefined && err.kind === 'NoSuchKey';
}

export async function uploadStagedFile(stage: StagedFile, target: StagedUploadTarget, config: StagedUploadConfig): Promise<StagedUploadResult> {
  const maxAttempts = config.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    const snap = await stage.beginUpload();
    const precondition: WriteConditions = snap.baseEtag === undefined ? { ifNoneMatch: '*' } : { ifMatch: snap.baseEtag };
    let etag: string;
    const fill = config.cacheFill?.();
    try {
      etag = await uploadSnapshot(stage, snap, target, config, precondition, fill);
      fill?.commit({ key: snap.key, etag, sizeBytes: snap.sizeBytes });
    } catch (err) {
      fill?.abort();
      if (err instanceof ChangedDuringUpload) {
        await stage.endUploadUnpublished('retry');
        if (stage.state === 'closed' && attempt < maxAttempts) continue;
        return { status: 'superseded', key: snap.key };
      }
      if (isConflict(err, precondition)) {
        await stage.endUploadUnpublished('conflict');
        throw new StageConflictError(snap.key, snap.baseEtag, err);
      }
      await stage.endUploadUnpublished('retry');
      throw err;
    }
    const stageRemoved = await stage.finishUpload(snap, etag, { keep: config.keepStage?.() ?? false, singlePart: snap.sizeBytes <= partSizeFor(1, config.partSizeBytes) });
    return { status: 'uploaded', key: snap.key, etag, sizeBytes: snap.sizeBytes, stageRemoved, generation: snap.generation };
  }
}

async function readPart(stage: StagedFile, snap: UploadSnapshot, buffer: Buffer, position: number, fill: CacheFill | undefined): Promise<void> {
  const got = await stage.readForUpload(buffer, position);
  if (got !== buffer.length || !stage.unchangedSince(snap)) throw new ChangedDuringUpload();
  fill?.add(position, buffer);
}

async function uploadSnapshot(stage: StagedFile, snap: UploadSnapshot, target: StagedUploadTarget, config: StagedUploadConfig, precondition: WriteConditions,
  fill: CacheFill | undefined): Promise<string> {
  const signalOpts = config.signal ? { signal: config.signal } : {};
  const firstPartBytes = partSizeFor(1, config.partSizeBytes);
  if (snap.sizeBytes <= firstPartBytes) {
    const body = Buffer.allocUnsafe(snap.sizeBytes);
    await readPart(stage, snap, body, 0, fill);
    return (await target.putObject(snap.key, body, { ...signalOpts, ...precondition })).etag;
  }
  const limitBytes = maxObjectBytes(config.partSizeBytes);
  if (snap.sizeBytes > limitBytes) throw new PartLimitError(limitBytes, snap.key);

  const parts: { partNumber: number; start: number; sizeBytes: number }[] = [];
  for (let start = 0, n = 1; start < snap.sizeBytes; n++) {
    const sizeBytes = Math.min(partSizeFor(n, config.partSizeBytes), snap.sizeBytes - start);
    parts.push({ partNumber: n, start, sizeBytes });
    start += sizeBytes;
  }

  const controller = new AbortController();
  const signal = config.signal ? AbortSignal.any([config.signal, controller.signal]) : controller.signal;
  const uploadId = await target.createMultipartUpload(snap.key, { signal });
  config.tracker?.created(snap.key, uploadId);
  try {
    const done: CompletedPart[] = [];
    let next = 0;
    let failure: unknown;
    // A fixed number of workers pull parts from one list (lib-storage's
    // shape): each holds one part buffer, so memory is workers x part size.
    const worker = async (): Promise<void> => {
      let buffer: Buffer | undefined;
      while (failure === undefined && next < parts.length) {
        const part = parts[next++]!;
        if (!buffer || buffer.length !== part.sizeBytes) buffer = Buffer.allocUnsafe(part.sizeBytes);
        try {
          await readPart(stage, snap, buffer, part.start, fill);
          const etag = await target.uploadPart(snap.key, uploadId, part.partNumber, buffer, { signal });
          done.push({ partNumber: part.partNumber, etag });
        } catch (err) {
          if (failure === undefined) failure = err;
          controller.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(config.maxPartsInFlight, parts.length)) }, worker));
    if (failure !== undefined) throw failure;
    // Every byte was read with the generation unchanged: the parts are one version.
    if (!stage.unchangedSince(snap)) throw new ChangedDuringUpload();
    done.sort((a, b) => a.partNumber - b.partNumber);
    const { etag } = await target.completeMultipartUpload(snap.key, uploadId, done, { ...signalOpts, ...precondition });
    config.tracker?.ended(uploadId);
    return etag;
  } catch (err) {
    try {
      // A fresh signal: the upload's own may be aborted already.
      await target.abortMultipartUpload(snap.key, uploadId);
      config.tracker?.ended(uploadId);
    } catch {
      // The caller reports the original failure; the upload journal or a
      // lifecycle rule removes the parts.
    }
    throw err;
  }
}
