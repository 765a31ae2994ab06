/**
 * A worker killed outright cannot abort its multipart uploads, and S3
 * keeps (and bills) their parts until a lifecycle rule removes them. So each
 * worker notes the uploads it has open in a small journal file of its own
 * (`<state dir>/uploads/<pid>.json`), and every mount first aborts the
 * uploads noted by workers that are no longer running, for its endpoint
 * and bucket. The journal holds keys and upload ids, never credentials.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ObjectClient } from '../s3/object-client.js';
import { S3RequestError } from '../s3/errors.js';
import type { Logger } from '../log.js';
import { processAlive } from '../data/folder-lock.js';

export interface JournalEntry {
  endpoint: string;
  bucket: string;
  key: string;
  uploadId: string;
}

export class UploadJournal {
  private readonly file: string;
  private readonly entries = new Map<string, JournalEntry>();
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly directory: string, pid: number = process.pid) {
    this.file = path.join(directory, `${pid}.json`);
  }

  created(entry: JournalEntry): void {
    this.entries.set(entry.uploadId, entry);
    this.save();
  }

  ended(uploadId: string): void {
    if (this.entries.delete(uploadId)) this.save();
  }

  /** Resolves when every change so far is on disk. */
  flushed(): Promise<void> {
    return this.writing;
  }

  private save(): void {
    const snapshot = [...this.entries.values()];
    // Writes are chained so the file always ends with the latest state.
    this.writing = this.writing.then(async () => {
      try {
        await mkdir(this.directory, { recursive: true });
        if (snapshot.length === 0) {
          await rm(this.file, { force: true });
          return;
        }
        const tmp = `${this.file}.tmp`;
        await writeFile(tmp, JSON.stringify(snapshot), { mode: 0o600 });
        await rename(tmp, this.file);
      } catch {
        // The journal only helps clean up after a crash; an upload never fails for it.
      }
    });
  }
}

/** Aborts the uploads that dead workers left on this endpoint and bucket; returns how many. */
export async function abortAbandonedUploads(directory: string, endpoint: string, client: ObjectClient, log: Logger): Promise<number> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return 0;
  }
  let aborted = 0;
  for (const name of names) {
    const m = /^(\d+)\.json$/.exec(name);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    const file = path.join(directory, name);
    let entries: JournalEntry[];
    try {
      entries = JSON.parse(await readFile(file, 'utf8')) as JournalEntry[];
    } catch {
      await rm(file, { force: true });
      continue;
    }
    const kept: JournalEntry[] = [];
    for (const e of entries) {
      if (e.endpoint !== endpoint || e.bucket !== client.bucket) {
        kept.push(e);
        continue;
      }
      try {
        await client.abortMultipartUpload(e.key, e.uploadId);
        aborted++;
        log.info('aborted an upload left by a worker that died', { key: e.key, deadPid: Number(m[1]) });
      } catch (err) {
        if (!(err instanceof S3RequestError && (err.kind === 'NoSuchUpload' || err.kind === 'NoSuchKey'))) {
          kept.push(e);
          log.warn('could not abort an upload left by a worker that died', { key: e.key, error: (err as Error).message });
        }
      }
    }
    if (kept.length === 0) await rm(file, { force: true });
    else await writeFile(file, JSON.stringify(kept), { mode: 0o600 });
  }
  return aborted;
}
