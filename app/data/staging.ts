/**
 * Local staging of files opened for writing in editing mode: each staged
 * file is a data file on local disk plus a small journal record beside it,
 * in one folder per mount (under the state directory, never inside the
 * mount: the worker would write into its own mount and hang it). The fs
 * model stages a file when a program opens it for writing, uploads it
 * (staged-upload.ts) after the last close, and removes the stage once the
 * object is in the bucket.
 *
 * Durability: markClosed() writes the record as "closed" atomically
 * (temp file, rename) before it returns, so whatever close() accepted
 * survives a killed or crashed worker, and the next mount finds it with
 * open() and uploads it. The fsyncs that carry it through a power loss
 * (data, record, folder) run within a second, in batches, for the stages
 * not uploaded by then (syncLater): a copy of 500 small files would
 * otherwise spend more time in fsync than in S3. That is the promise of
 * the local disk's own close() (ext4 commits every 5 s);
 * fsync(2) on the mount waits for the upload itself. A record is switched
 * back to "open" durably, fsyncs included, before a closed stage takes
 * another write, so a crash can never leave a "closed" record over
 * half-rewritten data. Records still "open" after a crash had a writer
 * that never finished: they are never uploaded, only kept and reported.
 *
 * Failures to write locally (a full disk above all) are sticky: the stage
 * becomes "write-failed", every later write and markClosed() throws the
 * same FsError (ENOSPC for a full disk or quota), and nothing of it is
 * ever uploaded: a program told ENOSPC must not find half its file in the
 * bucket.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, rename, rm, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { FsError, type ErrnoName } from '../fs/errno.js';
import { defaultLogDirectory, type Logger } from '../log.js';
import type { ByteRange, RangeSink } from '../s3/object-client.js';
import { FolderLockedError, lockFolder, unlockFolder } from './folder-lock.js';

/**
 * open: a writer may still change it. closed: complete on disk, waiting to
 * be uploaded. uploading: an upload started (after a crash: upload again).
 * conflict: the object changed in the bucket since the stage was based on
 * it; kept for the user, never uploaded over the other writer's version.
 * write-failed: a local write failed (ENOSPC); never uploaded.
 */
export type StageState = 'open' | 'closed' | 'uploading' | 'conflict' | 'write-failed';

/** The version of an object a stage is filled from, lazily. */
export interface StageOrigin {
  key: string;
  etag: string;
  sizeBytes: number;
}

/** Where a stage's first bytes come from; ObjectClient satisfies it. */
export interface StageFillSource {
  getRange(key: string, range: ByteRange, sink: RangeSink, opts?: { signal?: AbortSignal; ifMatch?: string }): Promise<void>;
}

/** The journal record, one JSON file per staged file. */
export interface StageRecord {
  format: 1;
  id: string;
  key: string;
  /** The ETag the upload must still find at the key; absent for a new file (the key must not exist). */
  baseEtag?: string;
  sizeBytes: number;
  createdMs: number;
  mtimeMs: number;
  atimeMs: number;
  state: StageState;
  /** Set while the bytes of the origin are still to be fetched into the data file. */
  fillFrom?: StageOrigin & { fillBytes: number };
  failure?: { errno: ErrnoName; message: string };
}

export type KeptReason = 'never-closed' | 'write-failed' | 'data-missing' | 'data-size-differs' | 'record-unreadable';

/**
 * What open() found of an earlier run: stages to upload (state "closed", or
 * "conflict": to store under another name), and the rest, kept.
 */
export type RecoveredStage =
  | { action: 'upload'; stage: StagedFile }
  | {
    action: 'keep';
    reason: KeptReason;
    message: string;
    /** Undefined when the record could not be read. */
    record: StageRecord | undefined;
    /** The bytes, for the user to rescue; discard() removes them. */
    dataPath: string;
    recordPath: string;
  };

export interface StagingConfig {
  /** The mount's staging folder; created 0700. */
  directory: string;
  now?: () => number;
  log?: Logger;
  /**
   * Bytes fetched per GET while filling a stage from its object: memory
   * for a fill is one such buffer, whatever the object's size.
   */
  fillChunkBytes?: number;
  /** The mount's signal: unmount stops fills in progress. */
  signal?: AbortSignal;
  /** How long after markClosed() its fsyncs run (syncLater); default 1 s. */
  syncDelayMs?: number;
  /** Files made ahead of time for creates (takeSpare); default 16. Uploaded stages are kept as spares up to SPARES_KEPT_FACTOR times that. */
  spares?: number;
}

/** Files made ahead for creates (takeSpare). */
const DEFAULT_SPARES = 16;
/**
 * Uploaded stages kept as spares (recycle), up to this many times the
 * spares made ahead: enough for the files a copy has closed and not yet
 * uploaded, so that a long copy reuses the same few dozen pairs.
 */
const SPARES_KEPT_FACTOR = 4;
/**
 * Closed stages that keep their two descriptors until their upload ends
 * (an upload that empties them for a spare needs no opens); past this,
 * a closed stage closes them (thousands may wait offline).
 */
const CLOSED_STAGES_KEEPING_FILES_OPEN = 64;

interface Spare {
  id: string;
  record: FileHandle;
  data: FileHandle;
}

/**
 * A new file written front to back keeps a copy of its bytes in memory up
 * to this size, so its upload reads no file (a copy of many small files
 * spent its time in the thread pool, re-reading what it had just written).
 */
const MEMORY_COPY_MAX_BYTES = 1024 * 1024;
/** Memory the copies of all staged files may hold together. */
const MEMORY_COPIES_MAX_BYTES = 32 * 1024 * 1024;

/** markClosed()'s fsyncs wait this long for the upload that makes them needless (syncLater). */
const DEFAULT_SYNC_DELAY_MS = 1000;
/** 8 MiB, the default --read-part-size: one GET per part as the reader would send. */
const DEFAULT_FILL_CHUNK_BYTES = 8 * 1024 * 1024;
const RECORD_SUFFIX = '.json';
const DATA_SUFFIX = '.data';
const TEMP_SUFFIX = '.tmp';

/** The default staging folder of a mount, beside the logs and the upload journal in the state directory. */
export function defaultStagingDirectory(mountName: string, env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  return path.join(path.dirname(defaultLogDirectory(env, home)), 'staging', mountName);
}

/** A local write failed: the errno the program must see (ENOSPC for a full disk or quota). */
export function stageWriteError(err: unknown, key: string): FsError {
  if (err instanceof FsError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // EDQUOT has no row of its own: to the program a quota is a full disk.
  if (code === 'ENOSPC' || code === 'EDQUOT') return new FsError('ENOSPC', `${key}: no space left in the staging folder`, { cause: err });
  if (code === 'EFBIG') return new FsError('EFBIG', `${key}: too large for the staging folder's file system`, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new FsError('EIO', `${key}: staging failed: ${message}`, { cause: err });
}

/** Another live process (a mount of the same bucket and prefix) uses the staging folder. */
export class StagingInUseError extends Error {
  override readonly name = 'StagingInUseError';
  constructor(readonly directory: string, readonly pid: number | undefined) {
    super(`the staging folder ${directory} is in use by ${pid === undefined ? 'another process' : `process ${pid}`} (the same bucket and prefix mounted in editing mode elsewhere)`);
  }
}

/** The stage is gone or in a state that refuses the operation. */
export class StageStateError extends Error {
  override readonly name = 'StageStateError';
}

/** unlink, where a missing file is no error (rm's force would lstat first: a system call per file more). */
async function removeFile(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function syncFolder(directory: string): Promise<void> {
  const h = await open(directory, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Replaces `file` with `text` so that a crash leaves either the old or the new content, both durable. */
async function writeFileDurably(directory: string, file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}${TEMP_SUFFIX}`;
  try {
    const h = await open(tmp, 'w', 0o600);
    try {
      await h.writeFile(text);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncFolder(directory);
}

/** Records are padded to this many bytes, so an overwrite in place rarely changes the length. */
const RECORD_PAD_BYTES = 1024;

/** JSON with trailing spaces (JSON.parse ignores them) up to `minBytes` or the next RECORD_PAD_BYTES. */
function padRecord(text: string, minBytes: number): string {
  const bytes = Buffer.byteLength(text);
  const target = Math.max(minBytes, Math.ceil(bytes / RECORD_PAD_BYTES) * RECORD_PAD_BYTES);
  return text + ' '.repeat(target - bytes);
}

async function writeAll(h: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await h.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads until `buffer` is full or the file ends; returns the bytes read. */
async function readFully(h: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await h.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

function parseRecord(text: string, id: string): StageRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<StageRecord>;
  const states: readonly StageState[] = ['open', 'closed', 'uploading', 'conflict', 'write-failed'];
  if (r.format !== 1 || r.id !== id || typeof r.key !== 'string' || typeof r.sizeBytes !== 'number' || r.sizeBytes < 0
    || typeof r.state !== 'string' || !states.includes(r.state)
    || typeof r.createdMs !== 'number' || typeof r.mtimeMs !== 'number' || typeof r.atimeMs !== 'number'
    || (r.baseEtag !== undefined && typeof r.baseEtag !== 'string')) {
    return undefined;
  }
  return r as StageRecord;
}

export class StagingArea {
  readonly directory: string;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  readonly fillChunkBytes: number;
  readonly signal: AbortSignal | undefined;
  private readonly live = new Map<string, StagedFile>();
  private opened = false;
  /** Stages closed since the last batch of fsyncs, and when that batch ends. */
  private syncBatch: { stages: Set<StagedFile>; done: Promise<void>; run: () => void; timer: NodeJS.Timeout } | undefined;
  private readonly syncDelayMs: number;
  private folderSyncRunning: Promise<void> | undefined;
  private readonly spares: Spare[] = [];
  private refilling: Promise<void> | undefined;
  private closing = false;
  private readonly removals = new Set<Promise<void>>();
  private readonly spareCount: number;
  /** Creates that found no spare (the log at close: more spares would help). */
  private sparesMissed = 0;
  private sparesTaken = 0;
  /** Uploaded stages whose files became spares (recycle). */
  private sparesRecycled = 0;
  /** Closed stages holding their descriptors (CLOSED_STAGES_KEEPING_FILES_OPEN). */
  private closedKeepingFiles = 0;
  private folderSyncQueued: Promise<void> | undefined;

  constructor(config: StagingConfig) {
    this.directory = config.directory;
    this.now = config.now ?? Date.now;
    this.log = config.log;
    this.fillChunkBytes = config.fillChunkBytes ?? DEFAULT_FILL_CHUNK_BYTES;
    this.signal = config.signal;
    this.syncDelayMs = config.syncDelayMs ?? DEFAULT_SYNC_DELAY_MS;
    this.spareCount = config.spares ?? DEFAULT_SPARES;
  }

  /**
   * @internal Fsyncs a closed stage with the others of the next batch, a
   * moment from now: most stages are uploaded and removed by then and need
   * none (a copy of 500 files spent more time in fsync than in S3 when each
   * was synced at once), and one folder fsync serves the whole batch. As a
   * local disk's journal commits every few seconds, a power cut in that
   * moment may lose what close() accepted; a killed worker never does.
   */
  syncLater(stage: StagedFile): Promise<void> {
    if (!this.syncBatch) {
      let run!: () => void;
      const stages = new Set<StagedFile>();
      const done = new Promise<void>((resolve) => {
        run = () => {
          clearTimeout(batch.timer);
          if (this.syncBatch === batch) this.syncBatch = undefined;
          void (async () => {
            for (const s of batch.stages) await s.syncFiles();
            await this.syncDirectory().catch(() => undefined);
          })().finally(resolve);
        };
      });
      const batch = { stages, done, run, timer: setTimeout(() => batch.run(), this.syncDelayMs) };
      batch.timer.unref();
      this.syncBatch = batch;
    }
    this.syncBatch.stages.add(stage);
    return this.syncBatch.done;
  }

  /** Runs the pending fsyncs now and waits for them (unmount, tests). */
  async flushSyncs(): Promise<void> {
    const batch = this.syncBatch;
    if (!batch) return;
    batch.run();
    await batch.done;
  }

  /**
   * Creates the folder (0700: staged files are the user's documents) and
   * returns what an earlier run left: closed or uploading stages to upload
   * again, and the rest, kept and reported.
   */
  async open(): Promise<RecoveredStage[]> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    await chmod(this.directory, 0o700);
    await this.lock();
    this.opened = true;
    const names = await readdir(this.directory);
    const recordIds = new Set<string>();
    const found: RecoveredStage[] = [];
    for (const name of names.sort()) {
      if (name.endsWith(TEMP_SUFFIX)) {
        // A record write a crash interrupted; the record it was replacing is intact.
        await rm(path.join(this.directory, name), { force: true });
        continue;
      }
      if (!name.endsWith(RECORD_SUFFIX)) continue;
      const id = name.slice(0, -RECORD_SUFFIX.length);
      if (this.live.has(id) || this.spares.some((sp) => sp.id === id)) {
        recordIds.add(id);
        continue;
      }
      const r = await this.recover(id);
      if (r) {
        recordIds.add(id);
        found.push(r);
      } else {
        // A spare an earlier run made and never used: its data file goes below.
        await removeFile(path.join(this.directory, name));
      }
    }
    for (const name of names) {
      if (!name.endsWith(DATA_SUFFIX)) continue;
      const id = name.slice(0, -DATA_SUFFIX.length);
      // remove() deletes the record first: a data file without one is an
      // upload that finished before a crash.
      if (!recordIds.has(id) && !this.live.has(id) && !this.spares.some((sp) => sp.id === id)) await rm(path.join(this.directory, name), { force: true });
    }
    this.refillSpares();
    return found;
  }

  /**
   * One worker per staging folder: a second mount of the same bucket and
   * prefix would take the first one's files for an earlier run's and
   * upload them twice. A lock left by a dead process is taken over.
   */
  private async lock(): Promise<void> {
    try {
      await lockFolder(this.directory);
    } catch (err) {
      if (err instanceof FolderLockedError) throw new StagingInUseError(this.directory, err.pid);
      throw err;
    }
  }

  /** What an earlier run left under `id`; undefined for an unused spare. */
  private async recover(id: string): Promise<RecoveredStage | undefined> {
    const recordPath = this.recordPath(id);
    const dataPath = this.dataPath(id);
    const keep = (reason: KeptReason, message: string, record: StageRecord | undefined): RecoveredStage => {
      this.log?.warn('staged file kept, not uploaded', { key: record?.key, reason, dataPath, detail: message });
      return { action: 'keep', reason, message, record, dataPath, recordPath };
    };
    let record: StageRecord | undefined;
    let recordBytes = 0;
    try {
      const text = await readFile(recordPath, 'utf8');
      // A spare made ahead of time and never used (takeSpare).
      if (text === '') return undefined;
      recordBytes = Buffer.byteLength(text);
      record = parseRecord(text, id);
    } catch {
      record = undefined;
    }
    if (!record) return keep('record-unreadable', `${recordPath}: not a staging record`, undefined);
    switch (record.state) {
      case 'open':
        return keep('never-closed', `${record.key}: its writer never closed it; the bytes may be incomplete`, record);
      case 'write-failed':
        return keep('write-failed', `${record.key}: a write failed (${record.failure?.errno ?? 'EIO'}); the bytes are incomplete`, record);
      case 'conflict':
      case 'closed':
      case 'uploading':
        break;
    }
    let dataBytes: number;
    try {
      dataBytes = (await stat(dataPath)).size;
    } catch {
      return keep('data-missing', `${record.key}: its data file is missing`, record);
    }
    if (record.fillFrom) {
      // markClosed() fills before it records "closed": only a hand-edited record gets here.
      return keep('data-size-differs', `${record.key}: the object's bytes were never fetched into it`, record);
    }
    if (dataBytes !== record.sizeBytes) {
      return keep('data-size-differs', `${record.key}: ${dataBytes} bytes on disk, ${record.sizeBytes} recorded`, record);
    }
    // An upload cut short by the crash starts over; its parts were aborted by
    // the upload journal or will be by a lifecycle rule.
    // A conflict stays one: the caller stores it under a conflict name (retarget()).
    const stage = new StagedFile(this, { ...record, state: record.state === 'conflict' ? 'conflict' : 'closed' }, undefined);
    stage.knowRecordBytes(recordBytes);
    this.live.set(id, stage);
    return { action: 'upload', stage };
  }

  /** A new, empty staged file; `baseEtag` is the ETag of the object it replaces (an O_TRUNC open), absent for a new key. */
  async createEmpty(key: string, baseEtag: string | undefined): Promise<StagedFile> {
    return this.create(key, baseEtag, undefined, undefined);
  }

  /**
   * A staged file with the object's content, fetched from `source` into the
   * stage only when a read or a partial write first needs it (a write of
   * the whole file or a truncate to 0 never fetches).
   */
  async createFromObject(origin: StageOrigin, source: StageFillSource): Promise<StagedFile> {
    return this.create(origin.key, origin.etag, origin, source);
  }

  private async create(key: string, baseEtag: string | undefined, origin: StageOrigin | undefined, source: StageFillSource | undefined): Promise<StagedFile> {
    if (!this.opened) throw new StageStateError('StagingArea.open() must run before files are staged');
    const spare = this.takeSpare();
    const id = spare?.id ?? this.newId();
    const t = this.now();
    const record: StageRecord = {
      format: 1, id, key, sizeBytes: origin?.sizeBytes ?? 0, createdMs: t, mtimeMs: t, atimeMs: t, state: 'open',
    };
    if (baseEtag !== undefined) record.baseEtag = baseEtag;
    if (origin && origin.sizeBytes > 0) record.fillFrom = { ...origin, fillBytes: origin.sizeBytes };
    const stage = new StagedFile(this, record, source);
    if (record.sizeBytes === 0) stage.startCopy();
    try {
      if (spare) {
        // Files made ahead of time: the create is one write of the record,
        // not waited for. A file is accepted at its close, whose record
        // write follows this one (persist() chains them); one killed before
        // this write landed looks like an unused spare to the next mount,
        // and was never closed.
        stage.adoptHandle(spare.data);
        stage.adoptRecord(spare.record);
        stage.persist({ durable: false }).catch((err: unknown) => {
          this.log?.warn('could not record a new staged file; its close records it', { key, error: (err as Error).message });
        });
      } else {
        // Both at once: a crash between them leaves a record "open"
        // (reported) or a nameless data file (deleted by open()), neither
        // ever uploaded. Not durable: a record lost to a power cut was "open".
        // The data file stays open for the writes that follow.
        const [rec, data] = await Promise.allSettled([stage.persist({ durable: false }), open(this.dataPath(id), 'wx+', 0o600)]);
        if (data.status === 'fulfilled') stage.adoptHandle(data.value);
        if (rec.status === 'rejected') throw rec.reason;
        if (data.status === 'rejected') throw data.reason;
      }
    } catch (err) {
      await stage.closeHandle();
      await this.deleteFiles(id);
      throw stageWriteError(err, key);
    }
    this.live.set(id, stage);
    return stage;
  }

  private newId(): string {
    return `${this.now().toString(36)}-${randomBytes(8).toString('hex')}`;
  }

  /**
   * A pair of files made ahead of time (an empty record marks a spare), so
   * a program's create does not wait for two file creations: `cp -r` of
   * many small files is bound by the time each create takes.
   */
  private takeSpare(): Spare | undefined {
    const spare = this.spares.pop();
    if (spare) this.sparesTaken++;
    else if (this.spareCount > 0) this.sparesMissed++;
    this.refillSpares();
    return spare;
  }

  private refillSpares(): void {
    if (this.refilling || this.closing || !this.opened) return;
    this.refilling = (async () => {
      while (this.spares.length < this.spareCount && !this.closing) {
        const id = this.newId();
        let record: FileHandle | undefined;
        try {
          const [r, d] = await Promise.allSettled([open(this.recordPath(id), 'wx', 0o600), open(this.dataPath(id), 'wx+', 0o600)]);
          if (r.status === 'fulfilled') record = r.value;
          if (d.status === 'rejected') throw d.reason;
          const data = d.value;
          if (r.status === 'rejected') {
            await data.close();
            await removeFile(this.dataPath(id));
            throw r.reason;
          }
          const rec = r.value;
          if (this.closing) {
            await Promise.all([rec.close(), data.close()]);
            await Promise.all([removeFile(this.recordPath(id)), removeFile(this.dataPath(id))]);
            return;
          }
          this.spares.push({ id, record: rec, data });
        } catch {
          // A full disk: create() makes its own files and reports the error.
          await record?.close().catch(() => undefined);
          await removeFile(this.recordPath(id)).catch(() => undefined);
          return;
        }
      }
    })().finally(() => { this.refilling = undefined; });
  }

  /**
   * The files of a stage just uploaded become a spare, emptied in place,
   * instead of being deleted while the next create makes two new ones: a
   * copy of many small files otherwise created and freed two inodes per
   * file, and on ext4 without a journal each new inode is checked against
   * the recently freed ones, so that cost grew with the copy (half a
   * second of the worker's CPU in a `cp -r` of 500 files). The record is
   * emptied first: from then on open() takes the pair for an unused spare.
   * Only for single-part uploads (the caller's choice): should a power cut
   * undo the emptying, the stage is uploaded again, and a refused
   * conditional upload over an object whose ETag is the MD5 of the staged
   * bytes counts as stored, where a multipart one would leave a conflict
   * copy. Returns false when the pool is full or a step failed (the caller
   * deletes).
   */
  private async recycle(id: string, kept: { record: FileHandle; data: FileHandle } | undefined): Promise<boolean> {
    const room = (): boolean => !this.closing && this.spares.length < SPARES_KEPT_FACTOR * this.spareCount;
    let record = kept?.record;
    let data = kept?.data;
    try {
      if (room()) {
        record ??= await open(this.recordPath(id), 'r+');
        await record.truncate(0);
        data ??= await open(this.dataPath(id), 'r+');
        await data.truncate(0);
        if (room()) {
          this.spares.push({ id, record, data });
          this.sparesRecycled++;
          return true;
        }
      }
    } catch (err) {
      this.log?.warn('could not reuse an uploaded staged file', { id, error: (err as Error).message });
    }
    await Promise.all([record?.close(), data?.close()]).catch(() => undefined);
    return false;
  }

  /** Bytes held by the staged files' memory copies (StagedFile.copy). */
  private copiesBytes = 0;

  /** @internal Whether a stage just closed may keep its descriptors open; see handlesReleased(). */
  keepFilesOpen(): boolean {
    if (this.closedKeepingFiles >= CLOSED_STAGES_KEEPING_FILES_OPEN) return false;
    this.closedKeepingFiles++;
    return true;
  }

  /** @internal A stage that kept its descriptors at close no longer holds them. */
  handlesReleased(): void {
    this.closedKeepingFiles--;
  }

  /** @internal A staged file's memory copy may grow by `n` bytes. */
  reserveCopy(n: number): boolean {
    if (this.copiesBytes + n > MEMORY_COPIES_MAX_BYTES) return false;
    this.copiesBytes += n;
    return true;
  }

  /** @internal */
  releaseCopy(n: number): void {
    this.copiesBytes -= n;
  }

  /** Staged files of this run (and those recovered for upload). */
  get stages(): readonly StagedFile[] {
    return [...this.live.values()];
  }

  /** Free and total bytes of the staging folder's file system, for statfs and to refuse early. */
  async freeSpace(): Promise<{ freeBytes: number; totalBytes: number }> {
    const s = await statfs(this.directory);
    // bavail, not bfree: what an unprivileged writer can still use.
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  }

  /**
   * Removes a stage: after its upload, or when the fs model drops it
   * (unlink, a failed write reported). `recycle`: its files may become a
   * spare (see recycle()).
   */
  async remove(stage: StagedFile, recycle = false): Promise<void> {
    stage.markRemoved();
    this.live.delete(stage.id);
    const run = (async () => {
      // A record write already under way would otherwise rename its temp file
      // over the deleted record and bring the stage back at the next open().
      await stage.recordWritten();
      const kept = recycle ? await stage.takeHandles() : undefined;
      await stage.closeHandle();
      if (!recycle || !(await this.recycle(stage.id, kept))) await this.deleteFiles(stage.id);
    })();
    this.removals.add(run);
    void run.catch(() => undefined).finally(() => this.removals.delete(run));
    await run;
  }

  /**
   * remove() for a stage just uploaded: its files go in the background, so
   * the upload's slot is free at once (the folder fsync a removal waits for
   * made each upload of a copy of many files take a third longer).
   */
  removeSoon(stage: StagedFile, recycle: boolean): void {
    this.remove(stage, recycle).catch((err: unknown) => {
      this.log?.warn('could not remove an uploaded staged file', { key: stage.key, error: (err as Error).message });
    });
  }

  /** Resolves once every removal under way has ended (close, tests). */
  async removalsSettled(): Promise<void> {
    while (this.removals.size > 0) await Promise.allSettled([...this.removals]);
  }

  /** Removes a kept stage of an earlier run, once the user has it or gave it up. */
  async discard(id: string): Promise<void> {
    const stage = this.live.get(id);
    if (stage) return this.remove(stage);
    await this.deleteFiles(id);
  }

  /** Closes open file handles; staged files stay on disk for the next open(). */
  async close(): Promise<void> {
    this.closing = true;
    await this.refilling;
    if (this.sparesTaken + this.sparesMissed > 0) this.log?.info('staging spares', { taken: this.sparesTaken, missed: this.sparesMissed, recycled: this.sparesRecycled });
    for (const spare of this.spares.splice(0)) {
      await Promise.all([spare.record.close(), spare.data.close()]).catch(() => undefined);
      await Promise.all([removeFile(this.recordPath(spare.id)), removeFile(this.dataPath(spare.id))]).catch(() => undefined);
    }
    await this.flushSyncs();
    await this.removalsSettled();
    if (this.opened) await unlockFolder(this.directory);
    await Promise.allSettled([...this.live.values()].map((s) => s.closeHandle()));
    this.live.clear();
  }

  private async deleteFiles(id: string): Promise<void> {
    // Record first, made durable: a crash then leaves an orphan data file,
    // deleted by the next open(), never a record pointing at nothing.
    await removeFile(this.recordPath(id));
    await this.syncDirectory();
    await removeFile(this.dataPath(id));
  }

  /**
   * An fsync of the folder that starts after this call: callers at the
   * same moment share one (16 uploads ending together cost one fsync, not 16).
   */
  private syncDirectory(): Promise<void> {
    if (!this.folderSyncRunning) {
      const run = syncFolder(this.directory).finally(() => { this.folderSyncRunning = undefined; });
      this.folderSyncRunning = run;
      return run;
    }
    this.folderSyncQueued ??= this.folderSyncRunning.catch(() => undefined).then(() => {
      this.folderSyncQueued = undefined;
      return this.syncDirectory();
    });
    return this.folderSyncQueued;
  }

  /** @internal */
  recordPath(id: string): string {
    return path.join(this.directory, id + RECORD_SUFFIX);
  }

  /** @internal */
  dataPath(id: string): string {
    return path.join(this.directory, id + DATA_SUFFIX);
  }

  /** @internal */
  clock(): number {
    return this.now();
  }

  /** @internal */
  logger(): Logger | undefined {
    return this.log;
  }
}

/** What an upload starts from; see staged-upload.ts. */
export interface UploadSnapshot {
  key: string;
  baseEtag: string | undefined;
  sizeBytes: number;
  generation: number;
}

/**
 * One staged file. Several handles of the fs model may use it at once:
 * reads and writes are positional on one file descriptor.
 */
export class StagedFile {
  readonly id: string;
  private readonly area: StagingArea;
  private record: StageRecord;
  private source: StageFillSource | undefined;
  private handlePromise: Promise<FileHandle> | undefined;
  private fillTask: Promise<void> | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private synced: Promise<void> = Promise.resolve();
  /** The record file's length, once written (persist pads to it). */
  private recordBytes: number | undefined;
  /** The record file, open from its creation until the stage is closed: an update is one write. */
  private recordHandle: FileHandle | undefined;
  /** Closed, and holding both descriptors by the area's leave (keepFilesOpen). */
  private keepingFilesOpen = false;
  private failureError: FsError | undefined;
  private removed = false;
  private uploadRunning = false;
  /**
   * Bumped by every change of content or key, before the change touches
   * the disk: an upload that finds it unchanged after reading the last
   * byte read one consistent version.
   */
  private generationValue = 0;
  /** The bytes of a new file written front to back, while small (MEMORY_COPY_MAX_BYTES): its upload reads them here. */
  private copy: { data: Buffer; length: number } | undefined;

  /** @internal Use StagingArea.createEmpty / createFromObject. */
  constructor(area: StagingArea, record: StageRecord, source: StageFillSource | undefined) {
    this.area = area;
    this.id = record.id;
    this.record = record;
    this.source = source;
  }

  get key(): string {
    return this.record.key;
  }

  get baseEtag(): string | undefined {
    return this.record.baseEtag;
  }

  get state(): StageState {
    return this.record.state;
  }

  get sizeBytes(): number {
    return this.record.sizeBytes;
  }

  get mtimeMs(): number {
    return this.record.mtimeMs;
  }

  get atimeMs(): number {
    return this.record.atimeMs;
  }

  get generation(): number {
    return this.generationValue;
  }

  /** The sticky local write failure (its errno is ENOSPC for a full disk), if any. */
  get failure(): FsError | undefined {
    return this.failureError;
  }

  /** Whether the object's bytes are still to be fetched. */
  get needsFill(): boolean {
    return this.record.fillFrom !== undefined;
  }

  get dataPath(): string {
    return this.area.dataPath(this.id);
  }

  /** A copy of the journal record as it is in memory. */
  snapshotRecord(): StageRecord {
    return structuredClone(this.record);
  }

  private handle(): Promise<FileHandle> {
    if (this.removed) return Promise.reject(new StageStateError(`${this.key}: staged file removed`));
    if (!this.handlePromise) {
      const p = open(this.dataPath, 'r+');
      p.catch(() => { if (this.handlePromise === p) this.handlePromise = undefined; });
      this.handlePromise = p;
    }
    return this.handlePromise;
  }

  /** @internal The record file's length, for a stage read back by open(). */
  knowRecordBytes(bytes: number): void {
    this.recordBytes = bytes;
  }

  /** @internal The record file's handle of a spare: empty, written by the first persist(). */
  adoptRecord(h: FileHandle): void {
    this.recordHandle = h;
    this.recordBytes = 0;
  }

  /** @internal The data file's handle, opened read-write by the creator. */
  adoptHandle(h: FileHandle): void {
    this.handlePromise = Promise.resolve(h);
  }

  /** @internal Closes the data file's and the record's descriptors (they reopen when needed). */
  async closeHandle(): Promise<void> {
    this.stopKeepingFilesOpen();
    const p = this.handlePromise;
    this.handlePromise = undefined;
    const r = this.recordHandle;
    this.recordHandle = undefined;
    await Promise.all([
      p?.then((h) => h.close()).catch(() => { /* opening had failed: nothing to close */ }),
      r?.close().catch(() => undefined),
    ]);
  }

  private stopKeepingFilesOpen(): void {
    if (!this.keepingFilesOpen) return;
    this.keepingFilesOpen = false;
    this.area.handlesReleased();
  }

  /**
   * @internal Hands over both descriptors, when the stage still holds them
   * (a removed stage, for a spare): the stage no longer uses them.
   */
  async takeHandles(): Promise<{ record: FileHandle; data: FileHandle } | undefined> {
    const p = this.handlePromise;
    const record = this.recordHandle;
    if (!p || !record) return undefined;
    let data: FileHandle;
    try {
      data = await p;
    } catch {
      return undefined;
    }
    if (this.handlePromise !== p || this.recordHandle !== record) return undefined;
    this.stopKeepingFilesOpen();
    this.handlePromise = undefined;
    this.recordHandle = undefined;
    return { record, data };
  }

  /** @internal */
  markRemoved(): void {
    this.removed = true;
    this.dropCopy();
  }

  /** @internal An empty new file: its bytes are kept in memory too while they come in order. */
  startCopy(): void {
    this.copy = { data: Buffer.alloc(0), length: 0 };
  }

  private dropCopy(): void {
    if (!this.copy) return;
    this.area.releaseCopy(this.copy.data.length);
    this.copy = undefined;
  }

  /** Appends to the memory copy, or drops it for a write out of order or past its size. */
  private extendCopy(offset: number, data: Uint8Array): void {
    const c = this.copy;
    if (!c) return;
    const end = offset + data.length;
    if (offset !== c.length || end > MEMORY_COPY_MAX_BYTES) return this.dropCopy();
    if (end > c.data.length) {
      // Doubling keeps the copying linear; the whole grown buffer is what counts against the budget.
      const size = Math.min(MEMORY_COPY_MAX_BYTES, Math.max(end, c.data.length * 2, 16 * 1024));
      if (!this.area.reserveCopy(size - c.data.length)) return this.dropCopy();
      const grown = Buffer.allocUnsafe(size);
      c.data.copy(grown, 0, 0, c.length);
      c.data = grown;
    }
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(c.data, c.length);
    c.length = end;
  }

  private assertWritable(): void {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    if (this.failureError) throw this.failureError;
    if (this.record.state !== 'open') throw new StageStateError(`${this.key}: staged file is ${this.record.state}, not open for writing`);
  }

  /** Makes the local failure sticky and records it; returns the error the program sees. */
  private failWrite(err: unknown): FsError {
    if (this.failureError) return this.failureError;
    const e = stageWriteError(err, this.key);
    this.failureError = e;
    this.record.state = 'write-failed';
    this.record.failure = { errno: e.errno, message: e.message };
    this.area.logger()?.warn('staged file write failed; it will not be uploaded', { key: this.key, errno: e.errno, detail: e.message });
    // Best effort: on a full disk the record may not fit either, and then it
    // stays "open", which is never uploaded too.
    this.persist().catch(() => {});
    return e;
  }

  /** Fetches the object's bytes into the stage, once; reads and partial writes call it. */
  async fill(): Promise<void> {
    if (!this.record.fillFrom) return;
    if (!this.fillTask) {
      const task = this.runFill().finally(() => { if (this.fillTask === task) this.fillTask = undefined; });
      this.fillTask = task;
    }
    return this.fillTask;
  }

  private async runFill(): Promise<void> {
    const from = this.record.fillFrom;
    if (!from) return;
    if (!this.source) throw new StageStateError(`${this.key}: no source to fill the staged file from`);
    const h = await this.handle();
    const chunkBytes = this.area.fillChunkBytes;
    const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, from.fillBytes));
    for (let start = 0; start < from.fillBytes; start += chunkBytes) {
      const end = Math.min(from.fillBytes, start + chunkBytes);
      let got = 0;
      const sink: RangeSink = {
        write: (bytes) => {
          // The transport reuses its buffer: copy now; ignore bytes past the range.
          got += bytes.copy(buffer, got, 0, Math.min(bytes.length, end - start - got));
        },
      };
      // ifMatch: a fill that mixed two versions would be a corrupt file.
      await this.source.getRange(from.key, { start, end }, sink, { ifMatch: from.etag, ...(this.area.signal ? { signal: this.area.signal } : {}) });
      if (got !== end - start) throw new StageStateError(`${from.key}: fill got ${got} of ${end - start} bytes at ${start}`);
      try {
        await writeAll(h, buffer.subarray(0, got), start);
      } catch (err) {
        throw this.failWrite(err);
      }
    }
    delete this.record.fillFrom;
    this.source = undefined;
  }

  /** Reads up to `length` bytes at `offset`; shorter at the end of the file. */
  async read(offset: number, length: number): Promise<Buffer> {
    if (this.record.fillFrom) await this.fill();
    const h = await this.handle();
    const n = Math.max(0, Math.min(length, this.record.sizeBytes - offset));
    const buffer = Buffer.alloc(n);
    // Zeroed: a read racing a truncate down gets zeros past the new end, never stale memory.
    await readFully(h, buffer, offset);
    this.record.atimeMs = this.area.clock();
    return buffer;
  }

  /**
   * Writes at any offset; resolves with the byte count once the bytes are
   * in the data file (not yet durable: markClosed() syncs them).
   */
  async write(offset: number, data: Uint8Array): Promise<number> {
    this.assertWritable();
    const from = this.record.fillFrom;
    if (from) {
      if (this.fillTask) await this.fillTask.catch(() => {});
      // A write that covers every byte the fill would fetch makes it useless.
      if (this.record.fillFrom && offset === 0 && data.length >= this.record.fillFrom.fillBytes) this.cancelFill();
      else await this.fill();
      this.assertWritable();
    }
    const h = await this.handle();
    this.generationValue++;
    try {
      await writeAll(h, data, offset);
    } catch (err) {
      this.dropCopy();
      throw this.failWrite(err);
    }
    this.extendCopy(offset, data);
    this.record.sizeBytes = Math.max(this.record.sizeBytes, offset + data.length);
    this.record.mtimeMs = this.area.clock();
    return data.length;
  }

  private cancelFill(): void {
    delete this.record.fillFrom;
    this.source = undefined;
  }

  async truncate(sizeBytes: number): Promise<void> {
    this.assertWritable();
    if (this.fillTask) await this.fillTask.catch(() => {});
    const from = this.record.fillFrom;
    if (from) {
      // Only the bytes that stay are worth fetching.
      if (sizeBytes === 0) this.cancelFill();
      else from.fillBytes = Math.min(from.fillBytes, sizeBytes);
    }
    if (this.copy && sizeBytes !== this.copy.length) this.dropCopy();
    const h = await this.handle();
    this.generationValue++;
    try {
      await h.truncate(sizeBytes);
    } catch (err) {
      throw this.failWrite(err);
    }
    this.record.sizeBytes = sizeBytes;
    this.record.mtimeMs = this.area.clock();
  }

  /** utimens; kept in the record (durable at the next markClosed or right away when closed). */
  async setTimes(times: { atimeMs?: number; mtimeMs?: number }): Promise<void> {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    if (times.atimeMs !== undefined) this.record.atimeMs = times.atimeMs;
    if (times.mtimeMs !== undefined) this.record.mtimeMs = times.mtimeMs;
    if (this.record.state !== 'open') await this.persist();
  }

  /**
   * Gives the stage another key, locally (the fs model deletes the old
   * object, if any, itself). `replacesEtag` is the ETag of the object now at
   * `key`, which the upload will replace, or undefined if the key is free.
   */
  async rename(key: string, replacesEtag: string | undefined): Promise<void> {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    this.generationValue++;
    this.record.key = key;
    if (replacesEtag === undefined) delete this.record.baseEtag;
    else this.record.baseEtag = replacesEtag;
    try {
      await this.persist();
    } catch (err) {
      throw stageWriteError(err, key);
    }
  }

  /**
   * A stage in conflict gets a new, free key (a conflict copy's name) and is
   * closed again, to be uploaded there: neither version is lost.
   */
  async retarget(key: string): Promise<void> {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    if (this.record.state !== 'conflict') throw new StageStateError(`${this.key}: staged file is ${this.record.state}, not in conflict`);
    this.generationValue++;
    this.record.key = key;
    delete this.record.baseEtag;
    this.record.state = 'closed';
    try {
      await this.persist();
    } catch (err) {
      throw stageWriteError(err, key);
    }
  }

  /**
   * The last writer closed: fills what was never fetched, then records the
   * stage "closed" (fsyncs follow in the background; see the module). After
   * this resolves the bytes survive a killed worker and the stage waits for
   * its upload.
   */
  async markClosed(): Promise<void> {
    this.assertWritable();
    await this.fill();
    this.assertWritable();
    try {
      this.record.state = 'closed';
      await this.persist({ durable: false });
    } catch (err) {
      throw this.failWrite(err);
    }
    // Thousands of files may wait for their uploads (offline): past a few
    // dozen, each closes its descriptors (the upload opens the data again).
    // Not awaited: a FileHandle closes once its pending operations end.
    this.keepingFilesOpen ||= this.area.keepFilesOpen();
    if (!this.keepingFilesOpen) void this.closeHandle();
    this.synced = this.area.syncLater(this);
  }

  /**
   * A program opens the file for writing again before (or while) it is
   * uploaded. The record says "open" on disk before this resolves, so no
   * write can reach a stage whose record still says "closed".
   */
  async reopen(): Promise<void> {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    if (this.failureError) throw this.failureError;
    if (this.record.state === 'open') return;
    this.record.state = 'open';
    try {
      await this.persist();
    } catch (err) {
      throw this.failWrite(err);
    }
  }

  /** @internal Resolves when every record write so far has ended. */
  recordWritten(): Promise<void> {
    return this.persisting;
  }

  /**
   * Writes the record, durably unless told otherwise; writes are chained so
   * the file ends with the latest state.
   */
  persist(options: { durable: boolean } = { durable: true }): Promise<void> {
    const text = JSON.stringify(this.record);
    const run = this.persisting.then(async () => {
      if (this.removed) return;
      const file = this.area.recordPath(this.id);
      if (options.durable) {
        // Replaced by a rename: a descriptor kept open would write the old file.
        const old = this.recordHandle;
        this.recordHandle = undefined;
        await old?.close().catch(() => undefined);
        const padded = padRecord(text, 0);
        await writeFileDurably(this.area.directory, file, padded);
        this.recordBytes = Buffer.byteLength(padded);
        return;
      }
      // The other writes (created, closed) rewrite the record in place, in
      // one write at offset 0 padded to its length, through a descriptor
      // kept until the stage is closed: a killed process cannot tear one
      // write, and a temporary file renamed over the record would create
      // and free an inode per write, which a copy of many small files paid
      // for in the file system's allocator. A power cut mid-write could
      // tear it: the record is then unreadable, and open() keeps its data
      // for the user rather than guessing. The first write creates it.
      this.recordHandle ??= await open(file, this.recordBytes === undefined ? 'wx' : 'r+', 0o600);
      const padded = Buffer.from(padRecord(text, this.recordBytes ?? 0));
      await writeAll(this.recordHandle, padded, 0);
      this.recordBytes = padded.length;
    });
    this.persisting = run.catch(() => {});
    return run;
  }

  /**
   * @internal The background half of markClosed() (syncLater): data, then
   * the record, fsynced (the folder is the caller's); nothing once removed.
   * A failure is logged (the data is still on disk; only a power cut could
   * lose it).
   */
  async syncFiles(): Promise<void> {
    try {
      if (this.removed) return;
      const h = await this.handle();
      await h.sync();
      // The record markClosed() wrote, fsynced where it is: rewriting it
      // would create and delete an inode per file, which cost more than the fsync.
      await this.persisting;
      if (this.removed) return;
      const r = await open(this.area.recordPath(this.id), 'r');
      try {
        await r.sync();
      } finally {
        await r.close();
      }
    } catch (err) {
      if (this.removed) return;
      this.area.logger()?.warn('could not fsync a staged file', { key: this.key, error: (err as Error).message });
    }
  }

  /** Resolves once what markClosed() accepted is fsynced; flushSyncs() hurries it (unmount). */
  durable(): Promise<void> {
    return this.synced;
  }

  /** @internal staged-upload.ts: marks the stage "uploading" and returns what to upload. */
  async beginUpload(): Promise<UploadSnapshot> {
    if (this.removed) throw new StageStateError(`${this.key}: staged file removed`);
    if (this.failureError) throw this.failureError;
    if (this.uploadRunning) throw new StageStateError(`${this.key}: an upload of this staged file is running`);
    if (this.record.state !== 'closed') throw new StageStateError(`${this.key}: staged file is ${this.record.state}, not closed`);
    this.uploadRunning = true;
    // In memory only: on disk "closed" and "uploading" mean the same to
    // open() (upload it), and a record write per upload cost a copy of many
    // small files more than its uploads.
    this.record.state = 'uploading';
    return { key: this.record.key, baseEtag: this.record.baseEtag, sizeBytes: this.record.sizeBytes, generation: this.generationValue };
  }

  /** @internal Reads upload bytes; `buffer` is filled unless the file is shorter. */
  async readForUpload(buffer: Buffer, position: number): Promise<number> {
    const c = this.copy;
    if (c && c.length === this.record.sizeBytes) return c.data.copy(buffer, 0, position, Math.min(c.length, position + buffer.length));
    return readFully(await this.handle(), buffer, position);
  }

  /** @internal Whether the stage is still what `snap` describes. */
  unchangedSince(snap: UploadSnapshot): boolean {
    return !this.removed && this.generationValue === snap.generation;
  }

  /**
   * @internal The object `snap` describes is in the bucket as `etag`.
   * Returns whether the stage was removed; a stage changed meanwhile, or
   * kept because a program still has it open, stays, now based on the
   * version just uploaded.
   */
  async finishUpload(snap: UploadSnapshot, etag: string, options: { keep?: boolean; singlePart?: boolean } = {}): Promise<boolean> {
    this.uploadRunning = false;
    if (this.removed) return true;
    if (this.generationValue === snap.generation && this.record.state === 'uploading' && options.keep !== true) {
      this.area.removeSoon(this, options.singlePart === true);
      return true;
    }
    if (this.record.key === snap.key) this.record.baseEtag = etag;
    if (this.record.state === 'uploading') this.record.state = 'closed';
    await this.persist();
    return false;
  }

  /** @internal The upload did not publish: back to "closed" for another try, or "conflict" for the user. */
  async endUploadUnpublished(outcome: 'retry' | 'conflict'): Promise<void> {
    this.uploadRunning = false;
    if (this.removed) return;
    if (this.record.state === 'uploading') this.record.state = outcome === 'conflict' ? 'conflict' : 'closed';
    // A retry finds the record as it was ("closed"); only a conflict is news.
    if (outcome === 'retry') return;
    try {
      await this.persist();
    } catch (err) {
      this.area.logger()?.warn('could not record the end of an upload', { key: this.key, error: (err as Error).message });
    }
  }
}
