/**
 * Whole versions for the local test server. S3 never shows an object half
 * written: a GET, a HEAD, a copy or an UploadPartCopy sees the old version
 * or the new one, whole, with its own ETag and size. s3rver 3.7.1 writes an
 * object in place while its PUT streams in (a reader of the same key gets
 * the bytes so far, or a size that is neither version's), and writes the
 * MD5 and metadata files after the bytes.
 *
 * Here a write streams into a temporary file beside the object (same
 * folder, so same file system: the bench keeps a prefix on a tmpfs) and is
 * committed by a rename and the metadata files, under a per-key gate. A
 * reader takes its version under the same gate: the metadata and an open
 * descriptor of the bytes, which a later rename does not change. The
 * checks S3 makes against the version it serves (GetObject If-Match,
 * x-amz-copy-source-if-match / -if-none-match) are made against that one.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

type Metadata = Record<string, string | number | undefined>;

/** The parts of s3rver's FilesystemStore this module replaces or calls. */
export interface VersionedStore {
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  getMetadata(bucket: string, key: string): Promise<Metadata>;
  putMetadata(bucket: string, key: string, metadata: object | null | undefined, md5?: string): Promise<void>;
  getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<{ metadata: Metadata; content: Readable | null } | null>;
  putObject(object: { bucket: string; key: string; content: Buffer | Readable; metadata: object }): Promise<{ size: number; md5: string }>;
  copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, replacementMetadata: object | null): Promise<Metadata>;
  deleteObject(bucket: string, key: string): Promise<void>;
}

/** One version of an object: its metadata and its bytes, open. The caller closes `handle`. */
export interface Version {
  metadata: Metadata;
  /** Without quotes. */
  etag: string;
  size: number;
  handle: FileHandle;
}

/** A failed S3 precondition, built by the caller (s3rver's error type lives there). */
export type Refusal = (etag: string) => Error | undefined;

/**
 * Readers of a key run together; a commit waits until none runs and holds
 * new ones back while it runs. A reader never waits for a commit that is
 * only queued, so a read inside a read (s3rver's getObject calls
 * getMetadata) cannot deadlock.
 */
class KeyGate {
  private readonly readers = new Map<string, number>();
  private readonly drained = new Map<string, Array<() => void>>();
  private readonly active = new Map<string, Promise<void>>();
  private readonly queued = new Map<string, Promise<void>>();

  async read<T>(id: string, fn: () => Promise<T>): Promise<T> {
    for (let c = this.active.get(id); c; c = this.active.get(id)) await c;
    this.readers.set(id, (this.readers.get(id) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const left = this.readers.get(id)! - 1;
      if (left > 0) this.readers.set(id, left);
      else {
        this.readers.delete(id);
        const waiting = this.drained.get(id) ?? [];
        this.drained.delete(id);
        for (const wake of waiting) wake();
      }
    }
  }

  async commit<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queued.get(id);
    let finish!: () => void;
    const mine = new Promise<void>((resolve) => { finish = resolve; });
    this.queued.set(id, mine);
    try {
      await before;
      while (this.readers.has(id)) {
        await new Promise<void>((resolve) => {
          const waiting = this.drained.get(id) ?? [];
          waiting.push(resolve);
          this.drained.set(id, waiting);
        });
      }
      this.active.set(id, mine);
      return await fn();
    } finally {
      this.active.delete(id);
      if (this.queued.get(id) === mine) this.queued.delete(id);
      finish();
    }
  }
}

/** S3's checks against the version a request is served from, set by the controller around it. */
export const servedVersionCheck = new AsyncLocalStorage<Refusal>();

const unquoted = (etag: unknown): string => String(etag).replace(/"/g, '');

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

let temporaries = 0;

/** A name beside the object's file that no key's files can have (they end in ._S3rver_<resource>). */
function temporaryBeside(objectPath: string): string {
  return `${objectPath}.${process.pid}-${++temporaries}.writing`;
}

/**
 * Replaces the store's write and read paths with whole-version ones and
 * returns what the controllers use to read one version.
 */
export function installWholeVersions(store: VersionedStore, noSuchKey: (key: string) => Error): {
  version(bucket: string, key: string): Promise<Version | undefined>;
  /** Runs `fn` as a reader of the key: no write is committed to it meanwhile. */
  read<T>(bucket: string, key: string, fn: () => Promise<T>): Promise<T>;
} {
  const gate = new KeyGate();
  const idOf = (bucket: string, key: string): string => `${bucket}\0${key}`;
  const getMetadata = store.getMetadata.bind(store);
  const getObject = store.getObject.bind(store);
  const deleteObject = store.deleteObject.bind(store);

  /** Writes `source` to a temporary file beside the object; its MD5 and size. */
  const writeBeside = async (objectPath: string, source: Buffer | Readable): Promise<{ temp: string; md5: string; size: number }> => {
    await fsp.mkdir(path.dirname(objectPath), { recursive: true });
    const temp = temporaryBeside(objectPath);
    const hash = createHash('md5');
    let size = 0;
    try {
      if (Buffer.isBuffer(source)) {
        await fsp.writeFile(temp, source);
        hash.update(source);
        size = source.length;
      } else {
        await pipeline(source, new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            hash.update(chunk);
            size += chunk.length;
            callback(null, chunk);
          },
        }), fs.createWriteStream(temp));
      }
    } catch (err) {
      await fsp.rm(temp, { force: true });
      throw err;
    }
    return { temp, md5: hash.digest('hex'), size };
  };

  /** Puts a written temporary file in place with its metadata files, as one change to readers. */
  const commitBeside = async (bucket: string, key: string, temp: string, metadata: object | null | undefined, md5: string, rawMetadata?: string): Promise<void> => {
    try {
      await gate.commit(idOf(bucket, key), async () => {
        await fsp.rename(temp, store.getResourcePath(bucket, key, 'object'));
        if (rawMetadata === undefined) await store.putMetadata(bucket, key, metadata, md5);
        else {
          await fsp.writeFile(store.getResourcePath(bucket, key, 'object.md5'), md5);
          await fsp.writeFile(store.getResourcePath(bucket, key, 'metadata.json'), rawMetadata);
        }
      });
    } finally {
      await fsp.rm(temp, { force: true });
    }
  };

  const version = (bucket: string, key: string): Promise<Version | undefined> => gate.read(idOf(bucket, key), async () => {
    let handle: FileHandle;
    try {
      handle = await fsp.open(store.getResourcePath(bucket, key, 'object'), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    try {
      const metadata = await getMetadata(bucket, key);
      return { metadata, etag: unquoted(metadata['etag']), size: (await handle.stat()).size, handle };
    } catch (err) {
      await handle.close();
      if (isNotFound(err)) return undefined;
      throw err;
    }
  });

  store.getMetadata = (bucket, key) => gate.read(idOf(bucket, key), () => getMetadata(bucket, key));

  store.getObject = async (bucket, key, options) => {
    const object = await gate.read(idOf(bucket, key), () => getObject(bucket, key, options));
    const refusal = object ? servedVersionCheck.getStore()?.(unquoted(object.metadata['etag'])) : undefined;
    if (refusal) {
      object?.content?.destroy();
      throw refusal;
    }
    return object;
  };

  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    const { temp, md5, size } = await writeBeside(objectPath, object.content);
    await commitBeside(object.bucket, object.key, temp, object.metadata, md5);
    return { size, md5 };
  };

  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, replacementMetadata) => {
    const source = await version(srcBucket, srcKey);
    // s3rver checked it exists; it may have been deleted since.
    if (!source) throw noSuchKey(srcKey);
    try {
      const refusal = servedVersionCheck.getStore()?.(source.etag);
      if (refusal) throw refusal;
      const md5 = source.etag;
      if (srcBucket === destBucket && srcKey === destKey) {
        // Onto itself (REPLACE): the same bytes with new metadata.
        await gate.commit(idOf(destBucket, destKey), () => store.putMetadata(destBucket, destKey, replacementMetadata, md5));
      } else {
        const destPath = store.getResourcePath(destBucket, destKey, 'object');
        const { temp } = await writeBeside(destPath, source.handle.createReadStream({ start: 0, autoClose: false }));
        const raw = replacementMetadata
          ? undefined
          : await fsp.readFile(store.getResourcePath(srcBucket, srcKey, 'metadata.json'), 'utf8').catch((err: unknown) => {
            if (isNotFound(err)) return '{}';
            throw err;
          });
        await commitBeside(destBucket, destKey, temp, replacementMetadata, md5, raw);
      }
    } finally {
      await source.handle.close();
    }
    return store.getMetadata(destBucket, destKey);
  };

  store.deleteObject = (bucket, key) => gate.commit(idOf(bucket, key), () => deleteObject(bucket, key));

  return { version, read: (bucket, key, fn) => gate.read(idOf(bucket, key), fn) };
}

/** The copy-source conditions of CopyObject and UploadPartCopy, as S3 applies them to the source version copied. */
export function copySourceRefusal(headers: IncomingHttpHeaders, refuse: (condition: string) => Error): Refusal {
  const value = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  return (etag) => {
    const ifMatch = value('x-amz-copy-source-if-match');
    const ifNoneMatch = value('x-amz-copy-source-if-none-match');
    if (ifMatch && !etagListMatches(ifMatch, etag)) return refuse('x-amz-copy-source-If-Match');
    if (ifNoneMatch && etagListMatches(ifNoneMatch, etag)) return refuse('x-amz-copy-source-If-None-Match');
    return undefined;
  };
}

/** Whether an If-Match style list ("a", W/"b", *) names this ETag. */
export function etagListMatches(header: string, etag: string): boolean {
  const wanted = header.split(',').map((t) => t.trim().replace(/^W\//, '').replace(/"/g, ''));
  return wanted.includes('*') || wanted.includes(etag);
}
