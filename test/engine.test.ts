/**
 * Fast unit tests of the S3 core and the fs model over the in-memory bucket.
 * Every behaviour here is also exercised through real mounts against the
 * local S3 server (tutorial, semantics, cli tests).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import { MemoryBudget } from '../app/s3/memory-budget.js';
import { DEFAULT_PREFETCH_CONFIG, Prefetcher } from '../app/s3/prefetcher.js';
import { Uploader, maxObjectBytes, partSizeFor } from '../app/s3/uploader.js';
import { S3RequestError } from '../app/s3/errors.js';
import type { Readable } from 'node:stream';
import type { ByteRange } from '../app/s3/object-client.js';
import { S3FileSystem, type FsConfig } from '../app/fs/filesystem.js';
import { FsError } from '../app/fs/errno.js';

const MiB = 1024 * 1024;

/** Records the ranges of every GET, and can fail chosen requests (after mountpoint's failure_client). */
class RecordingClient extends MemoryObjectClient {
  readonly ranges: ByteRange[] = [];
  failUploadPart: number | undefined;
  override async getObject(key: string, range: ByteRange, opts: { ifMatch?: string } = {}): Promise<Readable> {
    this.ranges.push(range);
    return super.getObject(key, range, opts);
  }
  override async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    if (partNumber === this.failUploadPart) {
      throw new S3RequestError('ServerError', { operation: 'UploadPart', bucket: this.bucket, key, status: 500 }, 'injected failure');
    }
    return super.uploadPart(key, uploadId, partNumber, body);
  }
}

async function readAll(p: Prefetcher, size: number, step: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += step) {
    const n = await p.read(off, step, out.subarray(off, Math.min(size, off + step)));
    assert.equal(n, Math.min(step, size - off));
  }
  return out;
}

describe('prefetcher', () => {
  test('a sequential read returns the exact bytes with few, growing requests', async () => {
    const c = new RecordingClient();
    const body = randomBytes(50 * MiB + 12345);
    c.put('big', body);
    const info = (await c.headObject('big'))!;
    const p = new Prefetcher(c, 'big', info.sizeBytes, info.etag, new MemoryBudget(256 * MiB));
    const got = await readAll(p, body.length, 128 * 1024);
    assert.ok(got.equals(body));
    assert.equal(c.ranges[0]!.start, 0);
    assert.ok(c.ranges[0]!.end <= DEFAULT_PREFETCH_CONFIG.initialRequestBytes, 'the first request is small');
    assert.ok(c.ranges.length <= 12, `requests: ${c.ranges.length}`);
    for (const r of c.ranges) assert.ok(r.end - r.start <= DEFAULT_PREFETCH_CONFIG.partSizeBytes);
    p.close();
  });

  test('reading only the head of a big object costs one small request', async () => {
    const c = new RecordingClient();
    c.put('big', randomBytes(40 * MiB));
    const p = new Prefetcher(c, 'big', 40 * MiB, undefined, new MemoryBudget(256 * MiB));
    await p.read(0, 4096, Buffer.alloc(4096));
    assert.equal(c.ranges.length, 1);
    assert.ok(c.ranges[0]!.end - c.ranges[0]!.start <= DEFAULT_PREFETCH_CONFIG.initialRequestBytes);
    p.close();
  });

  test('random 4 KiB reads fetch a small aligned block each', async () => {
    const c = new RecordingClient();
    const body = randomBytes(64 * MiB);
    c.put('r', body);
    const p = new Prefetcher(c, 'r', body.length, undefined, new MemoryBudget(256 * MiB));
    for (const off of [40 * MiB + 5, 3 * MiB, 60 * MiB + 100, 17 * MiB]) {
      const buf = Buffer.alloc(4096);
      assert.equal(await p.read(off, 4096, buf), 4096);
      assert.ok(buf.equals(body.subarray(off, off + 4096)));
    }
    for (const r of c.ranges) assert.ok(r.end - r.start <= DEFAULT_PREFETCH_CONFIG.randomReadBlockBytes, JSON.stringify(r));
    p.close();
  });

  test('a backward read within the window does not refetch; a far seek resets', async () => {
    const c = new RecordingClient();
    const body = randomBytes(32 * MiB);
    c.put('s', body);
    const p = new Prefetcher(c, 's', body.length, undefined, new MemoryBudget(256 * MiB));
    await readAll(p, 2 * MiB, 128 * 1024);
    const before = c.ranges.length;
    const buf = Buffer.alloc(128 * 1024);
    await p.read(2 * MiB - 512 * 1024, buf.length, buf);
    assert.ok(buf.equals(body.subarray(2 * MiB - 512 * 1024, 2 * MiB - 384 * 1024)));
    assert.equal(c.ranges.length, before);
    assert.equal(p.stats.resets, 0);
    await p.read(30 * MiB, 4096, Buffer.alloc(4096));
    assert.equal(p.stats.resets, 1);
    p.close();
  });

  test('the per-mount budget bounds read-ahead across open files', async () => {
    const c = new RecordingClient();
    c.put('a', randomBytes(64 * MiB));
    const budget = new MemoryBudget(16 * MiB);
    const ps = [0, 1, 2, 3].map(() => new Prefetcher(c, 'a', 64 * MiB, undefined, budget));
    for (const p of ps) await readAll(p, 8 * MiB, 128 * 1024);
    assert.ok(budget.used <= 16 * MiB + 4 * DEFAULT_PREFETCH_CONFIG.partSizeBytes, `used ${budget.used}`);
    for (const p of ps) p.close();
    assert.equal(budget.used, 0);
  });
});

describe('uploader', () => {
  test('a small file is one PutObject', async () => {
    const c = new RecordingClient();
    const u = new Uploader(c, 'small', { partSizeBytes: 8 * MiB, maxPartsInFlight: 4 });
    await u.append(Buffer.from('hello'));
    await u.complete();
    assert.equal(c.requestCounts.get('PutObject'), 1);
    assert.equal(c.requestCounts.get('CreateMultipartUpload'), undefined);
    assert.equal(c.objects.get('small')!.body.toString(), 'hello');
  });

  test('a large file streams as a multipart upload with the exact bytes', async () => {
    const c = new RecordingClient();
    const body = randomBytes(23 * MiB + 7);
    const u = new Uploader(c, 'large', { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 });
    for (let off = 0; off < body.length; off += 128 * 1024) await u.append(body.subarray(off, off + 128 * 1024));
    await u.complete();
    assert.equal(c.requestCounts.get('UploadPart'), 5);
    assert.equal(createHash('md5').update(c.objects.get('large')!.body).digest('hex'), createHash('md5').update(body).digest('hex'));
  });

  test('a failed part aborts the upload: complete() rejects and no object or upload is left', async () => {
    const c = new RecordingClient();
    c.failUploadPart = 2;
    const u = new Uploader(c, 'broken', { partSizeBytes: 5 * MiB, maxPartsInFlight: 1 });
    await assert.rejects(async () => {
      for (let i = 0; i < 16; i++) await u.append(Buffer.alloc(MiB));
      await u.complete();
    }, /injected failure/);
    await assert.rejects(u.complete(), /injected failure/);
    assert.equal(c.objects.has('broken'), false);
    assert.equal(c.uploads.size, 0);
    assert.equal(c.requestCounts.get('AbortMultipartUpload'), 1);
  });

  test('part sizes double every 1000 parts so 10,000 parts hold multi-TiB files', () => {
    assert.equal(partSizeFor(1, 8 * MiB), 8 * MiB);
    assert.equal(partSizeFor(1000, 8 * MiB), 8 * MiB);
    assert.equal(partSizeFor(1001, 8 * MiB), 16 * MiB);
    assert.ok(maxObjectBytes(8 * MiB) > 5 * 1024 ** 4);
  });
});

const CONFIG: FsConfig = {
  prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, uid: 1000, gid: 1000,
  fileMode: 0o644, dirMode: 0o755, metadataTtlMs: 1000, negativeMetadataTtlMs: 1000,
  readPartSizeBytes: 8 * MiB, writePartSizeBytes: 8 * MiB, maxPartsInFlight: 4, prefetchBudgetBytes: 64 * MiB,
};

describe('fs model', () => {
  test('readdir fills the metadata cache: stat of every listed file sends no request', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 2500; i++) c.put(`big/f${String(i).padStart(5, '0')}`, 'x');
    const fs = new S3FileSystem(c, CONFIG);
    const { names } = await fs.readdir('/big');
    assert.equal(names.length, 2502);
    const listsAfterReaddir = c.requestCounts.get('ListObjectsV2');
    for (const n of names.slice(2)) await fs.getattr(`/big/${n}`);
    assert.equal(c.requestCounts.get('HeadObject') ?? 0, 1, 'only the lookup of /big itself');
    assert.equal(c.requestCounts.get('ListObjectsV2'), listsAfterReaddir);
  });

  test('keys that cannot be names are hidden and a folder hides a same-named file', async () => {
    const c = new RecordingClient();
    for (const k of ['ok.txt', 'a//b', 'dot/./x', 'up/../y', `${'n'.repeat(300)}`, 'both', 'both/inner', 'marker/']) c.put(k, 'x');
    const fs = new S3FileSystem(c, CONFIG);
    const { names } = await fs.readdir('/');
    assert.deepEqual([...names].sort(), ['.', '..', 'a', 'both', 'dot', 'marker', 'ok.txt', 'up'].sort());
    assert.equal((await fs.getattr('/both')).mode & 0o170000, 0o040000);
    assert.deepEqual((await fs.readdir('/a')).names, ['.', '..']);
    assert.deepEqual((await fs.readdir('/marker')).names, ['.', '..']);
  });

  test('a lookup sends HeadObject and a one-key listing at once and caches a miss', async () => {
    const c = new RecordingClient();
    const fs = new S3FileSystem(c, CONFIG);
    await assert.rejects(fs.getattr('/missing'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    await assert.rejects(fs.getattr('/missing'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    assert.equal(c.requestCounts.get('HeadObject'), 1);
    assert.equal(c.requestCounts.get('ListObjectsV2'), 1);
  });

  test('a 403 becomes EACCES and other S3 failures EIO', async () => {
    const c = new RecordingClient();
    c.headObject = async () => { throw new S3RequestError('AccessDenied', { operation: 'HeadObject', bucket: 'b', status: 403, requestId: 'RID1' }, 'denied'); };
    const fs = new S3FileSystem(c, CONFIG);
    await assert.rejects(fs.getattr('/x'), (e: unknown) => e instanceof FsError && e.errno === 'EACCES');
    c.headObject = async () => { throw new S3RequestError('ServerError', { operation: 'HeadObject', bucket: 'b', status: 500 }, 'boom'); };
    await assert.rejects(fs.getattr('/y'), (e: unknown) => e instanceof FsError && e.errno === 'EIO');
  });
});

describe('file size limit', () => {
  test('a write past the multipart limit fails with EFBIG, and fsync then reports ENOSPC', async () => {
    const c = new RecordingClient();
    // A 16-byte base part makes the limit small enough to reach: 1000 parts
    // of each size 16, 32, ... 8192 bytes (16,368,000 bytes in all).
    const fs = new S3FileSystem(c, { ...CONFIG, writePartSizeBytes: 16, maxPartsInFlight: 64 });
    const fd = await fs.create('/huge', 0);
    const limit = 16 * 1000 * (2 ** 10 - 1);
    const chunk = Buffer.alloc(1024 * 1024, 1);
    let offset = 0;
    while (offset + chunk.length <= limit) {
      await fs.write('/huge', fd, chunk, offset);
      offset += chunk.length;
    }
    await assert.rejects(fs.write('/huge', fd, chunk, offset), (e: unknown) => e instanceof FsError && e.errno === 'EFBIG');
    await assert.rejects(fs.fsync('/huge', fd), (e: unknown) => e instanceof FsError && e.errno === 'ENOSPC');
    assert.equal(c.objects.has('huge'), false);
    assert.equal(c.uploads.size, 0);
  });
});

describe('folders made with mkdir', () => {
  test('new files in a folder this mount made need no lookup request, until the TTL after the last upload', async () => {
    const c = new RecordingClient();
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.mkdir('/fresh');
    const before = (c.requestCounts.get('HeadObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    for (let i = 0; i < 20; i++) {
      const p = `/fresh/f${i}`;
      await assert.rejects(fs.getattr(p), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
      const fd = await fs.create(p, 0);
      await fs.write(p, fd, Buffer.from('x'), 0);
      await fs.flush(p, fd);
      await fs.release(p, fd);
    }
    const after = (c.requestCounts.get('HeadObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    assert.equal(after, before, 'no lookups for the new names');
    assert.equal(c.requestCounts.get('PutObject'), 20);
    now += CONFIG.metadataTtlMs + 1;
    await assert.rejects(fs.getattr('/fresh/other'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    assert.ok((c.requestCounts.get('HeadObject') ?? 0) > 0, 'past the TTL a lookup asks S3 again');
  });
});

describe('worker protocol', () => {
  test('malformed messages to a worker are rejected with a reason', async () => {
    const { parseToWorker } = await import('../app/worker-protocol.js');
    assert.throws(() => parseToWorker('mount'), /not an object with a type/);
    assert.throws(() => parseToWorker({ type: 'format-disk' }), /unknown type "format-disk"/);
    assert.throws(() => parseToWorker({ type: 'mount', options: { bucket: 3 } }), /needs options with bucket and mountPoint/);
    assert.throws(() => parseToWorker({ type: 'mount', options: { bucket: 'b', mountPoint: '/m' }, credentials: { accessKeyId: 'A' } }), /credentials need/);
    assert.deepEqual(parseToWorker({ type: 'unmount', abandonUploads: 'yes' }), { type: 'unmount', abandonUploads: false });
  });
});
