/**
 * Fast unit tests of the S3 core and the fs model over the in-memory bucket.
 * Every behaviour here is also exercised through real mounts against the
 * local S3 server (tutorial, semantics, cli tests).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import { MemoryBudget } from '../app/data/memory-budget.js';
import { SLAB_BYTES, SlabPool } from '../app/data/slab-pool.js';
import { DEFAULT_PREFETCH_CONFIG, Prefetcher } from '../app/data/prefetcher.js';
import { Uploader, maxObjectBytes, partSizeFor } from '../app/data/uploader.js';
import { S3RequestError } from '../app/s3/errors.js';
import type { ByteRange, ListPage, ListRequest, RangeSink } from '../app/s3/object-client.js';
import { compareKeyOrder } from '../app/fs/names.js';
import { FolderIndex } from '../app/fs/folder-index.js';
import { S3FileSystem, type FsConfig } from '../app/fs/filesystem.js';
import { FsError } from '../app/fs/errno.js';

const MiB = 1024 * 1024;

/** Records the ranges of every GET, and can fail chosen requests (after mountpoint's failure_client). */
class RecordingClient extends MemoryObjectClient {
  readonly ranges: ByteRange[] = [];
  readonly lists: ListRequest[] = [];
  override async listObjects(req: ListRequest): Promise<ListPage> {
    this.lists.push(req);
    return super.listObjects(req);
  }
  failUploadPart: number | undefined;
  override async getRange(key: string, range: ByteRange, sink: RangeSink, opts: { ifMatch?: string } = {}): Promise<void> {
    this.ranges.push(range);
    return super.getRange(key, range, sink, opts);
  }
  override async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    if (partNumber === this.failUploadPart) {
      throw new S3RequestError('ServerError', { operation: 'UploadPart', bucket: this.bucket, key, status: 500 }, 'injected failure');
    }
    return super.uploadPart(key, uploadId, partNumber, body);
  }
}

/** Holds every GET's body until open(); aborted transfers end with an error, as a destroyed connection does. */
class GatedClient extends MemoryObjectClient {
  private gate: Promise<void>;
  private release!: () => void;
  held = 0;
  constructor() {
    super();
    this.gate = new Promise((r) => { this.release = r; });
  }
  open(): void {
    this.release();
  }
  override async getRange(key: string, range: ByteRange, sink: RangeSink, opts: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<void> {
    this.held++;
    try {
      await Promise.race([this.gate, aborted(opts.signal)]);
    } finally {
      this.held--;
    }
    return super.getRange(key, range, sink, opts);
  }
}

/** Rejects when the signal aborts, as a transfer whose connection is destroyed does. */
function aborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (signal?.aborted) reject(new Error('read aborted'));
    signal?.addEventListener('abort', () => reject(new Error('read aborted')), { once: true });
  });
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

  test('1 MiB reads (read_ahead_kb raised) arriving out of order, by up to 2 MiB, keep the window and let it grow', async () => {
    const c = new RecordingClient();
    const body = randomBytes(64 * MiB);
    c.put('big', body);
    const p = new Prefetcher(c, 'big', body.length, undefined, new MemoryBudget(256 * MiB));
    // After the first two, each group of three 1 MiB reads arrives newest
    // first, as the kernel's concurrent readahead requests can.
    const order: number[] = [0, 1];
    for (let g = 2; g < 64; g += 3) order.push(...[g + 2, g + 1, g].filter((i) => i < 64));
    const out = Buffer.alloc(body.length);
    for (const i of order) {
      assert.equal(await p.read(i * MiB, MiB, out.subarray(i * MiB, (i + 1) * MiB)), MiB);
    }
    assert.ok(out.equals(body));
    assert.equal(p.stats.resets, 0);
    assert.ok(c.ranges.length <= 14, `requests: ${c.ranges.length}`);
    p.close();
  });

  test('a sequential reader that waits for bytes widens the window past one part: several GETs in flight', async () => {
    // Every body arrives after a delay, as over a long round trip: a reader
    // faster than one GET at a time waits, and the window must grow until
    // enough GETs are in flight (it stopped at about one part and a half).
    class SlowClient extends MemoryObjectClient {
      inFlight = 0;
      maxInFlight = 0;
      override async getRange(key: string, range: ByteRange, sink: RangeSink, opts: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<void> {
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
          await Promise.race([new Promise((r) => setTimeout(r, 20)), aborted(opts.signal)]);
          return await super.getRange(key, range, sink, opts);
        } finally {
          this.inFlight--;
        }
      }
    }
    const c = new SlowClient();
    const body = randomBytes(96 * MiB);
    c.put('big', body);
    const p = new Prefetcher(c, 'big', body.length, undefined, new MemoryBudget(256 * MiB));
    const got = await readAll(p, body.length, 128 * 1024);
    assert.ok(got.equals(body));
    const parts = DEFAULT_PREFETCH_CONFIG.maxWindowBytes / DEFAULT_PREFETCH_CONFIG.partSizeBytes;
    assert.ok(c.maxInFlight >= parts, `at most ${c.maxInFlight} GETs in flight, the window allows ${parts}`);
    assert.equal(p.stats.resets, 0);
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

  test('reads in parallel on one handle: a far read resets the window without failing the reads still waiting in it', async () => {
    // The kernel sends a handle's reads concurrently (its readahead, or a
    // program's threads calling pread on one descriptor); a read that moves
    // the window must not cancel the transfer another read is waiting for.
    const c = new GatedClient();
    const body = randomBytes(64 * MiB);
    c.put('p', body);
    const p = new Prefetcher(c, 'p', body.length, undefined, new MemoryBudget(256 * MiB));
    const offsets = [0, 40 * MiB, 8 * MiB + 4096, 20 * MiB, 0, 50 * MiB + 3, 40 * MiB + 128 * 1024];
    const bufs = offsets.map(() => Buffer.alloc(256 * 1024));
    const reads = offsets.map((off, i) => p.read(off, bufs[i]!.length, bufs[i]!));
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(c.held > 0, 'the first transfers are still held when the later reads move the window');
    c.open();
    const counts = await Promise.all(reads);
    offsets.forEach((off, i) => {
      assert.equal(counts[i], bufs[i]!.length);
      assert.ok(bufs[i]!.equals(body.subarray(off, off + bufs[i]!.length)), `bytes at ${off}`);
    });
    assert.ok(p.stats.resets >= 3);
    p.close();
  });

  test('read-ahead slabs reused across files, seeks and closes never mix one file\'s bytes into another\'s', async () => {
    const c = new RecordingClient();
    const bodies = [0, 1, 2, 3].map(() => randomBytes(24 * MiB + 4097));
    bodies.forEach((b, i) => c.put(`f${i}`, b));
    const budget = new MemoryBudget(32 * MiB);
    for (let round = 0; round < 2; round++) {
      const ps = bodies.map((b, i) => new Prefetcher(c, `f${i}`, b.length, undefined, budget));
      const outs = bodies.map((b) => Buffer.alloc(b.length));
      // Interleaved sequential reads, with a far seek and back in the middle.
      for (let off = 0; off < 24 * MiB + 4097; off += 96 * 1024) {
        await Promise.all(ps.map(async (p, i) => {
          if (off === 12 * MiB) {
            const probe = Buffer.alloc(5000);
            await p.read(20 * MiB + 3, probe.length, probe);
            assert.ok(probe.equals(bodies[i]!.subarray(20 * MiB + 3, 20 * MiB + 5003)));
          }
          const n = Math.min(96 * 1024, bodies[i]!.length - off);
          assert.equal(await p.read(off, n, outs[i]!.subarray(off, off + n)), n);
        }));
      }
      outs.forEach((o, i) => assert.ok(o.equals(bodies[i]!), `file ${i}, round ${round}`));
      for (const p of ps) p.close();
    }
    assert.equal(budget.used, 0);
  });

  test('the slab pool keeps at most its cap of free slabs and gives them all back after a while without reads', async () => {
    const pool = new SlabPool({ maxFree: 3, idleMs: 100 });
    const slabs = [0, 1, 2, 3, 4].map(() => pool.take());
    assert.ok(slabs.every((b) => b.length === SLAB_BYTES));
    for (const b of slabs) pool.give(b);
    pool.give(Buffer.alloc(100));
    assert.equal(pool.freeCount, 3, 'the cap; a buffer of another size is not kept');
    const again = pool.take();
    assert.ok(slabs.includes(again), 'a free slab is reused');
    pool.give(again);
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(pool.freeCount, 0);
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
    assert.equal(c.requestCounts.get('GetObject') ?? 0, 1, 'only the lookup of /big itself');
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

  test('a lookup sends a GET of the first block and a one-key listing at once and caches a miss', async () => {
    const c = new RecordingClient();
    const fs = new S3FileSystem(c, CONFIG);
    await assert.rejects(fs.getattr('/missing'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    await assert.rejects(fs.getattr('/missing'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    assert.equal(c.requestCounts.get('GetObject'), 1);
    assert.equal(c.requestCounts.get('HeadObject') ?? 0, 0);
    assert.equal(c.requestCounts.get('ListObjectsV2'), 1);
  });

  test('an object replaced by another client after the open: a handle that has read nothing reads the new version whole; one that has read fails with EIO, never mixing the two', async () => {
    const c = new RecordingClient();
    const v1 = randomBytes(300 * 1024);
    const v2 = randomBytes(500 * 1024);
    c.put('f', v1);
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    now += 60_000;
    const fresh = await fs.open('/f', 0);
    c.put('f', v2);
    // The lookup's first block is of v1: the read past it meets the change, and the whole read is of v2.
    const got = Buffer.alloc(v2.length);
    assert.equal(await fs.read('/f', fresh, got, got.length, 0), v2.length);
    assert.ok(got.equals(v2));
    await fs.release('/f', fresh);
    now += 60_000;
    const fd = await fs.open('/f', 0);
    const first = Buffer.alloc(100 * 1024);
    assert.equal(await fs.read('/f', fd, first, first.length, 200 * 1024), first.length);
    assert.ok(first.equals(v2.subarray(200 * 1024, 300 * 1024)));
    c.put('f', v1);
    const other = Buffer.alloc(64 * 1024);
    await assert.rejects(fs.read('/f', fd, other, other.length, 400 * 1024), (e: unknown) => e instanceof FsError && e.errno === 'EIO');
  });

  test("the lookup's first block serves the first read of the open that follows, once", async () => {
    const c = new RecordingClient();
    const body = randomBytes(200 * 1024);
    c.put('f', body);
    c.put('small', 'tiny file');
    const fs = new S3FileSystem(c, CONFIG);
    const fd = await fs.open('/f', 0);
    const buf = Buffer.alloc(16384);
    assert.equal(await fs.read('/f', fd, buf, buf.length, 0), buf.length);
    assert.ok(buf.equals(body.subarray(0, 16384)));
    assert.ok(c.ranges.every((r) => r.start >= 64 * 1024), 'the first read is served from the block; read-ahead starts after it');
    const rest = Buffer.alloc(body.length);
    const n = await fs.read('/f', fd, rest, rest.length, 0);
    assert.equal(n, body.length);
    assert.ok(rest.equals(body), 'reads past the block continue with ranged GETs');
    assert.equal(c.ranges[0]!.start, 64 * 1024);
    await fs.release('/f', fd);
    const fd2 = await fs.open('/small', 0);
    const out = Buffer.alloc(100);
    assert.equal(await fs.read('/small', fd2, out, 100, 0), 9);
    assert.equal(out.subarray(0, 9).toString(), 'tiny file');
    const fd3 = await fs.open('/small', 0);
    assert.equal(await fs.read('/small', fd3, out, 100, 0), 9);
    assert.equal(c.ranges.filter((r) => r.start === 0).length, 1, 'the block is handed out once; the second open reads with a GET');
  });

  test('a --read-part-size larger than the default window still gets GETs of that size', async () => {
    const c = new RecordingClient();
    const body = randomBytes(160 * MiB);
    c.put('big', body);
    const fs = new S3FileSystem(c, { ...CONFIG, readPartSizeBytes: 40 * MiB, prefetchBudgetBytes: 256 * MiB });
    const fd = await fs.open('/big', 0);
    const out = Buffer.alloc(body.length);
    for (let off = 0; off < body.length; off += MiB) {
      assert.equal(await fs.read('/big', fd, out.subarray(off, off + MiB), MiB, off), MiB);
    }
    assert.ok(out.equals(body));
    const largest = Math.max(...c.ranges.map((r) => r.end - r.start));
    assert.equal(largest, 40 * MiB, `largest GET ${largest} bytes`);
    await fs.release('/big', fd);
  });

  test('a first block of another version of the file is not used', async () => {
    const c = new RecordingClient();
    c.put('v', 'old contents');
    const fs = new S3FileSystem(c, { ...CONFIG, metadataTtlMs: 0, negativeMetadataTtlMs: 0 });
    await fs.getattr('/v');
    c.put('v', 'new contents!');
    const fd = await fs.open('/v', 0);
    const out = Buffer.alloc(100);
    const n = await fs.read('/v', fd, out, 100, 0);
    assert.equal(out.subarray(0, n).toString(), 'new contents!');
  });

  test('a 403 becomes EACCES and other S3 failures EIO', async () => {
    const c = new RecordingClient();
    c.getFirstBytes = async () => { throw new S3RequestError('AccessDenied', { operation: 'GetObject', bucket: 'b', status: 403, requestId: 'RID1' }, 'denied'); };
    const fs = new S3FileSystem(c, CONFIG);
    await assert.rejects(fs.getattr('/x'), (e: unknown) => e instanceof FsError && e.errno === 'EACCES');
    c.getFirstBytes = async () => { throw new S3RequestError('ServerError', { operation: 'GetObject', bucket: 'b', status: 500 }, 'boom'); };
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
    const before = (c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    for (let i = 0; i < 20; i++) {
      const p = `/fresh/f${i}`;
      await assert.rejects(fs.getattr(p), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
      const fd = await fs.create(p, 0);
      await fs.write(p, fd, Buffer.from('x'), 0);
      await fs.flush(p, fd);
      await fs.release(p, fd);
    }
    const after = (c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    assert.equal(after, before, 'no lookups for the new names');
    assert.equal(c.requestCounts.get('PutObject'), 20);
    now += CONFIG.metadataTtlMs + 1;
    await assert.rejects(fs.getattr('/fresh/other'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    assert.ok((c.requestCounts.get('GetObject') ?? 0) > 0, 'past the TTL a lookup asks S3 again');
  });

  test('a file written early stays visible while later files keep the folder known, past its own TTL, and a deleted one goes', async () => {
    const c = new RecordingClient();
    let now = 1_000_000;
    const fs = new S3FileSystem(c, { ...CONFIG, allowDelete: true }, { clock: { now: () => now } });
    await fs.mkdir('/fresh');
    await fs.mkdir('/fresh/sub');
    const write = async (p: string): Promise<void> => {
      const fd = await fs.create(p, 0);
      await fs.write(p, fd, Buffer.from('x'), 0);
      await fs.flush(p, fd);
      await fs.release(p, fd);
    };
    await write('/fresh/first');
    await write('/fresh/sub/deep');
    for (let i = 0; i < 5; i++) {
      now += CONFIG.metadataTtlMs / 2;
      await write(`/fresh/later${i}`);
    }
    const lookups = (c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    assert.equal((await fs.getattr('/fresh/first')).size, 1, 'written more than a TTL ago, and still there');
    assert.equal((await fs.getattr('/fresh/sub')).mode & 0o170000, 0o040000, 'a folder made and filled here');
    await assert.rejects(fs.getattr('/fresh/never'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
    assert.equal((c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0), lookups, 'answered without a request');
    await fs.unlink('/fresh/first');
    await assert.rejects(fs.getattr('/fresh/first'), (e: unknown) => e instanceof FsError && e.errno === 'ENOENT');
  });
});

describe('lookups by listing', () => {
  const pad = (i: number): string => String(i).padStart(5, '0');
  const isENOENT = (e: unknown): boolean => e instanceof FsError && e.errno === 'ENOENT';

  test('key order is UTF-8 byte order, as S3 sorts', () => {
    const samples = ['a', 'a/', 'a-1', 'b', '\uE000', '\uD83D\uDE00', '\uFFFD', 'é', 'z\uD800\uDC00', 'z\uFFFF', ''];
    for (const x of samples) {
      for (const y of samples) {
        assert.equal(Math.sign(compareKeyOrder(x, y)), Math.sign(Buffer.compare(Buffer.from(x), Buffer.from(y))), `${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
      }
    }
  });

  test('a listing with entries answers the lookup of its own folder for the TTL, with no request', async () => {
    const c = new RecordingClient();
    c.put('docs/a', 'x');
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.getattr('/docs');
    now += CONFIG.metadataTtlMs - 1;
    await fs.readdir('/docs');
    const before = (c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0);
    now += 2; // past the TTL of the lookup before the listing, not of the listing
    assert.equal((await fs.getattr('/docs')).mode & 0o170000, 0o040000);
    assert.equal((c.requestCounts.get('GetObject') ?? 0) + (c.requestCounts.get('ListObjectsV2') ?? 0), before);
  });

  test('the folder index finds where a page starts and takes a fresh page in place of what it covered', () => {
    const idx = new FolderIndex(['a', 'b/', 'c', 'd', 'e']);
    assert.equal(idx.before('c'), 'b/');
    assert.equal(idx.before('a'), undefined);
    assert.equal(idx.before('zz'), 'e');
    assert.deepEqual(idx.replaceRange('b/', 'd', ['c', 'cc']), ['d']);
    assert.equal(idx.before('d'), 'cc');
    assert.equal(idx.before('e'), 'cc');
    assert.deepEqual(idx.replaceRange('cc', undefined, []), ['e']);
    assert.equal(idx.size, 4);
  });

  test('past the TTL, lookups in a listed folder cost one page per thousand names, not a request pair per name', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 2500; i++) c.put(`big/f${pad(i)}`, 'x');
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.readdir('/big');
    now += 60_000;
    const heads = c.requestCounts.get('GetObject') ?? 0;
    const lists = c.lists.length;
    for (let i = 1000; i < 2000; i++) await fs.getattr(`/big/f${pad(i)}`);
    assert.equal(c.requestCounts.get('GetObject') ?? 0, heads, 'no lookup by name per file');
    assert.equal(c.lists.length, lists + 1, 'one page answered a thousand lookups');
    assert.equal(c.lists[lists]!.startAfter, 'big/f00999');
    assert.equal(c.lists[lists]!.maxKeys, 1000);
    await fs.getattr('/big/f02000');
    assert.equal(c.lists.length, lists + 2, 'the next name past the page sends the next page');
  });

  test('a program going through a listed folder finds the next names refreshed ahead, without waiting', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 2500; i++) c.put(`big/f${pad(i)}`, 'x');
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.readdir('/big');
    const lists = c.lists.length;
    // A page's entries are trusted for the TTL plus 2 ms per entry listed up
    // to that page (the first page: 1,000); go to where less than half the TTL is left.
    now += 1000 * 2 + CONFIG.metadataTtlMs * 0.6;
    for (let i = 0; i < 3; i++) await fs.getattr('/big/f00000');
    assert.equal(c.lists.length, lists, 'one file looked up again and again does not fetch ahead');
    for (let i = 0; i < 10; i++) await fs.getattr(`/big/f${pad(i)}`);
    await new Promise((r) => setImmediate(r));
    assert.equal(c.lists.length, lists + 1, 'moving through the names fetched the next page in the background');
    // From now on a page never completes: a lookup that waited for one would hang.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => { release = r; });
    const list = c.listObjects.bind(c);
    c.listObjects = async (req) => { await gate; return list(req); };
    now += CONFIG.metadataTtlMs * 0.8;
    const walk = (async () => {
      for (let i = 10; i < 900; i++) await fs.getattr(`/big/f${pad(i)}`);
      return 'done';
    })();
    const outcome = await Promise.race([walk, new Promise((r) => setTimeout(() => r('waited for a page'), 2_000))]);
    release();
    assert.equal(outcome, 'done', 'the names after were fresh when reached');
    assert.equal(c.requestCounts.get('GetObject') ?? 0, 1, 'only the lookup of /big itself');
  });

  test('answers are as fresh as the page: a deleted file is gone, a new one and a new folder are found', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 50; i++) c.put(`d/f${pad(i)}`, 'x');
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.readdir('/d');
    c.objects.delete('d/f00010');
    c.put('d/f00010x', 'new');
    c.put('d/f00020', 'changed, longer');
    c.put('d/f00030/inner', 'x');
    now += 60_000;
    await assert.rejects(fs.getattr('/d/f00010'), isENOENT);
    assert.equal((await fs.getattr('/d/f00010x')).size, 3);
    assert.equal((await fs.getattr('/d/f00020')).size, 15);
    assert.equal((await fs.getattr('/d/f00030')).mode & 0o170000, 0o040000, 'a folder hides the file of the same name');
    await assert.rejects(fs.getattr('/d/nothing'), isENOENT);
    assert.equal(c.requestCounts.get('GetObject') ?? 0, 1, 'only the lookup of /d itself');
  });

  test('a page that ends before it can tell falls back to the lookup by name', async () => {
    const c = new RecordingClient();
    c.put('p/0', 'x');
    // 'a-…' keys sort between 'a' and 'a/': a page starting at 'a' ends before the folder a/.
    for (let i = 0; i < 1500; i++) c.put(`p/a-${pad(i)}`, 'x');
    c.put('p/a/inner', 'x');
    let now = 1_000_000;
    const fs = new S3FileSystem(c, CONFIG, { clock: { now: () => now } });
    await fs.readdir('/p');
    now += 60_000;
    const heads = c.requestCounts.get('GetObject') ?? 0;
    assert.equal((await fs.getattr('/p/a')).mode & 0o170000, 0o040000);
    assert.equal(c.requestCounts.get('GetObject'), heads + 1, 'asked by name');
  });
});

describe('folder listings streamed page by page', () => {
  const pad = (i: number): string => String(i).padStart(5, '0');
  test('the first page\'s entries are handed on while the next page is still on its way', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 2500; i++) c.put(`big/f${pad(i)}`, 'x');
    const fs = new S3FileSystem(c, CONFIG);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => { release = r; });
    const list = c.listObjects.bind(c);
    c.listObjects = async (req) => { if (req.continuationToken) await gate; return list(req); };
    const stream = fs.listDir('/big');
    const first = await stream.next();
    assert.equal(first.done, false);
    assert.deepEqual(first.names.slice(0, 3), ['.', '..', 'f00000']);
    // The page's last file waits for the next page: "f00999/" could be on it.
    assert.equal(first.names.length, 2 + 999);
    assert.equal(first.stats.length, first.names.length);
    release();
    const second = await stream.next();
    const third = await stream.next();
    assert.deepEqual([second.names.length, second.done, third.names.length, third.done], [1000, false, 501, true]);
    assert.equal(c.lists.length, 1 + 3, 'the folder\'s lookup and three pages');
  });

  test('a folder hides the file of the same name also when the folder comes pages later', async () => {
    const c = new RecordingClient();
    // S3 lists "x", then "x-0000".."x-1499" (two pages), then the prefix "x/".
    c.put('d/x', 'file');
    for (let i = 0; i < 1500; i++) c.put(`d/x-${pad(i)}`, 'x');
    c.put('d/x/inner', 'in the folder');
    const fs = new S3FileSystem(c, CONFIG);
    const stream = fs.listDir('/d');
    const batches = [];
    for (;;) {
      const b = await stream.next();
      batches.push(b);
      if (b.done) break;
    }
    assert.equal(batches.length, 2);
    assert.equal(batches[0]!.names.includes('x'), false, 'held back until the listing reached "x/"');
    const all = batches.flatMap((b) => b.names);
    assert.equal(all.filter((n) => n === 'x').length, 1);
    const x = all.indexOf('x');
    assert.equal(batches.flatMap((b) => b.stats)[x]!.mode & 0o170000, 0o040000, 'x is the folder');
    assert.equal(all.length, 2 + 1500 + 1);
  });

  test('closing a listing early stops it: no more pages are fetched', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 3500; i++) c.put(`big/f${pad(i)}`, 'x');
    const fs = new S3FileSystem(c, CONFIG);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => { release = r; });
    const list = c.listObjects.bind(c);
    c.listObjects = async (req: ListRequest, opts?: { signal?: AbortSignal }) => {
      if (req.continuationToken) await gate;
      if (opts?.signal?.aborted) throw new Error('aborted');
      return list(req);
    };
    const stream = fs.listDir('/big');
    await stream.next();
    stream.close();
    release();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.lists.length, 2, 'the folder\'s lookup and the first page: the page in flight was dropped, none followed');
    await assert.rejects(stream.next());
  });

  test('a page that fails fails the listing after the entries already handed on', async () => {
    const c = new RecordingClient();
    for (let i = 0; i < 1500; i++) c.put(`big/f${pad(i)}`, 'x');
    const fs = new S3FileSystem(c, CONFIG);
    const list = c.listObjects.bind(c);
    c.listObjects = async (req) => {
      if (req.continuationToken) throw new S3RequestError('ServerError', { operation: 'ListObjectsV2', bucket: c.bucket, key: req.prefix, status: 500 }, 'injected failure');
      return list(req);
    };
    const stream = fs.listDir('/big');
    assert.equal((await stream.next()).names.length, 1001);
    await assert.rejects(stream.next(), (err: unknown) => err instanceof FsError && err.errno === 'EIO');
    await assert.rejects(fs.readdir('/big'), (err: unknown) => err instanceof FsError && err.errno === 'EIO');
  });
});

describe('worker protocol', () => {
  test('malformed messages to a worker are rejected with a reason', async () => {
    const { parseToWorker } = await import('../app/worker/protocol.js');
    assert.throws(() => parseToWorker('mount'), /not an object with a type/);
    assert.throws(() => parseToWorker({ type: 'format-disk' }), /unknown type "format-disk"/);
    assert.throws(() => parseToWorker({ type: 'mount', options: { bucket: 3 } }), /needs options with bucket and mountPoint/);
    assert.throws(() => parseToWorker({ type: 'mount', options: { bucket: 'b', mountPoint: '/m' }, credentials: { accessKeyId: 'A' } }), /credentials need/);
    assert.deepEqual(parseToWorker({ type: 'unmount', abandonUploads: 'yes' }), { type: 'unmount', abandonUploads: false });
  });
});
