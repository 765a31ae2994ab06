/**
 * The disk cache's blocks (app/data/disk-cache.ts) and reads through it
 * (app/data/cached-range.ts), on a real folder: round trips, every kind of
 * bad block read as a miss, the size limit as `du` measures it, the LRU
 * order, reopening (also after the order was set by reads), the folder
 * lock, unusable folders, and copies of written files.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CacheInUseError, CacheUnusableError, DiskCache, cacheFolderUsage, clearCacheFolder, type ObjectVersion } from '../app/data/disk-cache.js';
import { readThroughCache } from '../app/data/cached-range.js';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import type { RangeSink } from '../app/s3/object-client.js';
import { execQuiet, run, tempDir } from './helpers/processes.js';
import { assertSameBytes } from './helpers/same-bytes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];

after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function folder(): Promise<string> {
  const d = await tempDir('disk-cache');
  dirs.push(d);
  return path.join(d, 'cache');
}

function version(key: string, sizeBytes: number, etag = `"${key}-1"`): ObjectVersion {
  return { key, etag, sizeBytes };
}

/** Every block file under the cache folder. */
async function blockFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const root = path.join(dir, 'v1');
  for (const shard of await readdir(root)) {
    if (shard === 'pending') continue;
    for (const f of await readdir(path.join(root, shard))) out.push(path.join(root, shard, f));
  }
  return out.sort();
}

/** A cache of 64 KiB blocks, and an object of `size` random bytes in an in-memory bucket. */
async function objectInCache(size: number): Promise<{ cache: DiskCache; client: MemoryObjectClient; body: Buffer; v: ObjectVersion }> {
  const cache = await DiskCache.open({ directory: await folder(), blockSizeBytes: 64 * KiB });
  const client = new MemoryObjectClient();
  const body = randomBytes(size);
  client.put('obj', body);
  return { cache, client, body, v: { key: 'obj', etag: client.objects.get('obj')!.etag, sizeBytes: body.length } };
}

function collect(): RangeSink & { bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return { write: (b: Buffer) => { chunks.push(Buffer.from(b)); }, bytes: () => Buffer.concat(chunks) };
}

describe('disk cache blocks', () => {
  test('a stored block reads back for the same version only', async () => {
    const dir = await folder();
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    const v = version('a/b.bin', 100 * KiB);
    const block0 = randomBytes(64 * KiB);
    const block1 = randomBytes(36 * KiB);
    cache.store(v, 0, block0);
    cache.store(v, 1, block1);
    await cache.settled();
    assertSameBytes(await cache.read(v, 0), block0);
    assertSameBytes(await cache.read(v, 1), block1);
    assert.equal(await cache.read({ ...v, etag: '"other"' }, 0), undefined, 'another ETag');
    assert.equal(await cache.read({ ...v, sizeBytes: v.sizeBytes + 1 }, 0), undefined, 'another size');
    assert.equal(await cache.read({ ...v, key: 'a/c.bin' }, 0), undefined, 'another key');
    // A block of the wrong length for its place is never stored.
    cache.store(v, 2, randomBytes(10));
    cache.store(version('x', 10 * KiB), 0, randomBytes(9 * KiB));
    await cache.settled();
    assert.equal(cache.blocks, 2);
    assert.equal(cache.stats.hits, 2);
    await cache.close();
  });

  test('a corrupt, truncated or foreign block file is a miss, logged and removed; never wrong bytes', async () => {
    const dir = await folder();
    const warnings: string[] = [];
    const log = { debug() {}, info() {}, warn: (msg: string, f?: Record<string, unknown>) => { warnings.push(`${msg} ${String(f?.['problem'])}`); }, error() {}, child() { return log; } };
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 16 * KiB, log });
    const a = version('a', 16 * KiB);
    const b = version('b', 16 * KiB);
    const c = version('c', 16 * KiB);
    const bytesA = randomBytes(16 * KiB);
    cache.store(a, 0, bytesA);
    cache.store(b, 0, randomBytes(16 * KiB));
    cache.store(c, 0, randomBytes(16 * KiB));
    await cache.settled();
    assert.equal((await blockFiles(dir)).length, 3);
    const fileA = cache.blockFile(a, 0);
    const fileB = cache.blockFile(b, 0);
    const fileC = cache.blockFile(c, 0);
    assertSameBytes(await cache.read(a, 0), bytesA);

    // One flipped byte in the data.
    const damaged = await readFile(fileA);
    damaged[damaged.length - 100]! ^= 0xff;
    await writeFile(fileA, damaged);
    assert.equal(await cache.read(a, 0), undefined);
    // Truncated.
    await truncate(fileB, 1000);
    assert.equal(await cache.read(b, 0), undefined);
    // Foreign: c's file now holds a's (valid) block.
    cache.store(a, 0, bytesA);
    await cache.settled();
    await copyFile(cache.blockFile(a, 0), fileC);
    assert.equal(await cache.read(c, 0), undefined);
    assertSameBytes(await cache.read(a, 0), bytesA);

    assert.equal(cache.stats.invalid, 3);
    assert.ok(warnings.some((w) => /checksum mismatch/.test(w)), warnings.join('\n'));
    assert.ok(warnings.some((w) => /truncated/.test(w)), warnings.join('\n'));
    assert.ok(warnings.some((w) => /another object or version/.test(w)), warnings.join('\n'));
    assert.equal((await blockFiles(dir)).length, 1, 'the bad files are gone');
    await cache.close();
  });

  test('the folder stays under --max-cache-size as du measures it, least recently used blocks going first', async () => {
    const dir = await folder();
    const max = 4 * MiB;
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 256 * KiB, maxSizeBytes: max });
    const v = version('big', 64 * MiB);
    const blocks = new Map<number, Buffer>();
    const keep = 0;
    for (let i = 0; i < 48; i++) {
      const data = randomBytes(256 * KiB);
      blocks.set(i, data);
      cache.store(v, i, data);
      await cache.settled();
      // Block 0 is read after every store: the most recently used, it is never evicted.
      assertSameBytes(await cache.read(v, keep), blocks.get(keep)!, `block ${keep} after storing ${i}`);
      const du = await cacheFolderUsage(dir);
      assert.ok(du <= max, `du ${du} > ${max} after ${i + 1} blocks`);
    }
    assert.ok(cache.stats.evicted > 30, `evicted ${cache.stats.evicted}`);
    assert.equal(await cache.read(v, 1), undefined, 'an old block was evicted');
    assertSameBytes(await cache.read(v, 47), blocks.get(47)!, 'the newest is there');
    // du of the real tool agrees.
    const r = await run('du', ['-s', '-B1', dir]);
    assert.ok(Number(r.stdout.split(/\s/)[0]) <= max, r.stdout);
    await cache.close();
  });

  test('blocks stored faster than the disk takes them wait for room instead of being skipped', async () => {
    const dir = await folder();
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 256 * KiB, maxSizeBytes: 1200 * KiB });
    const v = version('fast', 8 * 256 * KiB);
    const blocks = Array.from({ length: 8 }, () => randomBytes(256 * KiB));
    // All at once: the room of the first ones is held by their writes when the last ones ask.
    blocks.forEach((b, i) => cache.store(v, i, b));
    await cache.settled();
    assert.equal(cache.stats.skipped, 0);
    assert.equal(cache.stats.stored, 8);
    // Four fit; which four depends on the order the writes end in (the
    // least recently stored go first), so each block is its bytes or a miss.
    let kept = 0;
    for (let i = 0; i < 8; i++) {
      const got = await cache.read(v, i);
      if (got === undefined) continue;
      kept++;
      assertSameBytes(got, blocks[i]!, `block ${i}`);
    }
    assert.equal(kept, 4, 'as many blocks as fit are kept');
    assert.equal(cache.stats.evicted, 4);
    assert.ok(await cacheFolderUsage(dir) <= 1200 * KiB);
    await cache.close();
  });

  test('a reopened cache serves what was stored and keeps its LRU order from the files', async () => {
    const dir = await folder();
    let now = 1_000_000_000_000;
    const v = version('k', 1 * MiB);
    const data = randomBytes(1 * MiB);
    {
      const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 256 * KiB, maxSizeBytes: 5 * 260 * KiB, now: () => now });
      for (let i = 0; i < 4; i++) cache.store(v, i, data.subarray(i * 256 * KiB, (i + 1) * 256 * KiB));
      await cache.settled();
      // Block 0 read two minutes later: its file is touched, so it is newer than 1..3.
      now += 120_000;
      assert.ok(await cache.read(v, 0));
      await new Promise((r) => setTimeout(r, 50));
      await cache.close();
    }
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 256 * KiB, maxSizeBytes: 5 * 260 * KiB, now: () => now });
    assert.equal(cache.blocks, 4);
    for (let i = 0; i < 4; i++) assertSameBytes(await cache.read(version('k', 1 * MiB), i), data.subarray(i * 256 * KiB, (i + 1) * 256 * KiB));
    await cache.close();
    // Fresh: the order on disk is 1, 2, 3, 0 (reads above happened in this run only).
    const again = await DiskCache.open({ directory: dir, blockSizeBytes: 256 * KiB, maxSizeBytes: 5 * 260 * KiB, now: () => now });
    const other = version('other', 512 * KiB);
    again.store(other, 0, randomBytes(256 * KiB));
    again.store(other, 1, randomBytes(256 * KiB));
    await again.settled();
    assert.ok(await again.read(v, 0) !== undefined || await again.read(v, 3) !== undefined);
    await again.close();
  });

  test('one process per cache folder; a dead owner\'s lock is taken over', async () => {
    const dir = await folder();
    const first = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    // Another live process holds it: a child that writes its pid as the lock and waits.
    await first.close();
    const child = await import('node:child_process').then((cp) => cp.spawn(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(path.join(dir, 'lock'))}, String(process.pid)); setTimeout(() => {}, 60000)`], { stdio: 'ignore' }));
    try {
      for (let i = 0; i < 100 && !(await readFile(path.join(dir, 'lock'), 'utf8').catch(() => '')).includes(String(child.pid)); i++) await new Promise((r) => setTimeout(r, 20));
      await assert.rejects(DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB }), (err: unknown) =>
        err instanceof CacheInUseError && err.message === `the cache folder ${dir} is in use by process ${child.pid} (another mount uses the same --cache folder)`);
      await assert.rejects(clearCacheFolder(dir), CacheInUseError);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    const taken = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    await taken.close();
  });

  test('a cache folder that is a file, on a read-only or a full file system, is a one-line error', async () => {
    const base = path.dirname(await folder());
    const file = path.join(base, 'a-file');
    await writeFile(file, 'x');
    await assert.rejects(DiskCache.open({ directory: file, blockSizeBytes: 64 * KiB }), (err: unknown) =>
      err instanceof CacheUnusableError && err.message === `cannot use the cache folder ${file}: it is not a folder`);

    const ro = path.join(base, 'ro');
    await mkdir(ro);
    assert.equal((await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro])).code, 0);
    try {
      await assert.rejects(DiskCache.open({ directory: path.join(ro, 'cache'), blockSizeBytes: 64 * KiB }), (err: unknown) =>
        err instanceof CacheUnusableError && /: it is on a read-only file system$/.test(err.message));
    } finally {
      await execQuiet('umount', [ro]);
    }

    const small = path.join(base, 'small');
    await mkdir(small);
    assert.equal((await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small])).code, 0);
    try {
      await writeFile(path.join(small, 'filler'), Buffer.alloc(1000 * KiB)).catch(() => undefined);
      await assert.rejects(DiskCache.open({ directory: path.join(small, 'cache'), blockSizeBytes: 1024 * KiB }), (err: unknown) =>
        err instanceof CacheUnusableError && /: its disk is full: 0 MiB free, and the cache leaves 5 % of the disk \(0 MiB\) free; free some space or set --max-cache-size$/.test(err.message));
      await assert.rejects(DiskCache.open({ directory: path.join(small, 'cache'), blockSizeBytes: 1024 * KiB, maxSizeBytes: 8 * MiB }), (err: unknown) =>
        err instanceof CacheUnusableError && /: its disk is full: 0 MiB free$/.test(err.message));
    } finally {
      await execQuiet('umount', [small]);
    }
  });

  test('clear empties a cache; clearCacheFolder empties one no process holds', async () => {
    const dir = await folder();
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    const v = version('a', 256 * KiB);
    for (let i = 0; i < 4; i++) cache.store(v, i, randomBytes(64 * KiB));
    await cache.settled();
    assert.ok(await cache.clear() >= 4 * 64 * KiB);
    assert.equal(cache.blocks, 0);
    assert.equal((await blockFiles(dir)).length, 0);
    cache.store(v, 0, randomBytes(64 * KiB));
    await cache.close();
    assert.ok(await clearCacheFolder(dir) >= 64 * KiB);
    const reopened = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    assert.equal(reopened.blocks, 0);
    await reopened.close();
  });
});

describe('copies of written files', () => {
  test('bytes added in any order become blocks of the uploaded version at commit', async () => {
    const dir = await folder();
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    const data = randomBytes(300 * KiB);
    const fill = cache.fill();
    // Parts out of order, one straddling blocks.
    fill.add(200 * KiB, data.subarray(200 * KiB));
    fill.add(0, data.subarray(0, 100 * KiB));
    fill.add(100 * KiB, data.subarray(100 * KiB, 200 * KiB));
    const v = version('w', data.length, '"etag-w"');
    assert.equal(await cache.read(v, 0), undefined, 'nothing before the ETag is known');
    fill.commit(v);
    await cache.settled();
    const got = collect();
    const client = new MemoryObjectClient();
    await readThroughCache(cache, client, v, { start: 0, end: data.length }, got, {});
    assertSameBytes(got.bytes(), data);
    assert.equal(client.requestCounts.get('GetObject') ?? 0, 0);
    await cache.close();
  });

  test('an aborted fill, or one whose size differs from what was added, stores nothing', async () => {
    const dir = await folder();
    const cache = await DiskCache.open({ directory: dir, blockSizeBytes: 64 * KiB });
    const data = randomBytes(200 * KiB);
    const aborted = cache.fill();
    aborted.add(0, data);
    aborted.abort();
    const short = cache.fill();
    short.add(0, data.subarray(0, 150 * KiB));
    short.commit(version('s', data.length));
    await cache.settled();
    assert.equal(cache.blocks, 0);
    assert.deepEqual((await readdir(path.join(dir, 'v1', 'pending'))), []);
    await cache.close();
  });
});

describe('reads through the cache', () => {
  test('a second read of a range makes no GET; an unaligned range gets its bytes and stores whole blocks', async () => {
    const { cache, client, body, v } = await objectInCache(1000 * KiB);
    const first = collect();
    await readThroughCache(cache, client, v, { start: 100 * KiB + 7, end: 300 * KiB + 3 }, first, {});
    assertSameBytes(first.bytes(), body.subarray(100 * KiB + 7, 300 * KiB + 3));
    assert.equal(client.requestCounts.get('GetObject'), 1);
    await cache.settled();
    const second = collect();
    await readThroughCache(cache, client, v, { start: 64 * KiB, end: 320 * KiB }, second, {});
    assertSameBytes(second.bytes(), body.subarray(64 * KiB, 320 * KiB));
    assert.equal(client.requestCounts.get('GetObject'), 1, 'blocks 1..4 came from disk');
    // A range with held and missing blocks: one GET for the missing run.
    const third = collect();
    await readThroughCache(cache, client, v, { start: 0, end: body.length }, third, {});
    assertSameBytes(third.bytes(), body);
    assert.equal(client.requestCounts.get('GetObject'), 3, 'blocks 0 and 5.. fetched, 1..4 read');
    await cache.close();
  });

  test('two readers of the same blocks at once fetch them once', async () => {
    const { cache, client, body, v } = await objectInCache(256 * KiB);
    // A GET that answers a little later, so both readers are under way.
    const slow = { getRange: async (...args: Parameters<MemoryObjectClient['getRange']>) => {
      await new Promise((r) => setTimeout(r, 30));
      return client.getRange(...args);
    } };
    const a = collect();
    const b = collect();
    await Promise.all([
      readThroughCache(cache, slow, v, { start: 0, end: body.length }, a, {}),
      readThroughCache(cache, slow, v, { start: 64 * KiB, end: body.length }, b, {}),
    ]);
    assertSameBytes(a.bytes(), body);
    assertSameBytes(b.bytes(), body.subarray(64 * KiB));
    assert.equal(client.requestCounts.get('GetObject'), 1);
    await cache.close();
  });

  test('a sink that lends its memory gets whole blocks read into it in place; a damaged one is fetched into it instead', async () => {
    const { cache, client, body, v } = await objectInCache(200 * KiB);
    await readThroughCache(cache, client, v, { start: 0, end: body.length }, collect(), {});
    await cache.settled();
    // Damage block 1.
    const f = cache.blockFile(v, 1);
    const b = await readFile(f);
    b[100]! ^= 1;
    await writeFile(f, b);
    const slabs: Buffer[] = [];
    let received = 0;
    let lent = 0;
    const chunks: Buffer[] = [];
    const sink = {
      write: (x: Buffer) => { chunks.push(Buffer.from(x)); received += x.length; },
      slabsFor: (n: number) => { const slab = Buffer.alloc(n); slabs.push(slab); return [slab]; },
      filled: (n: number) => { chunks.push(slabs.at(-1)!.subarray(0, n)); received += n; lent += n; },
    };
    await readThroughCache(cache, client, v, { start: 0, end: body.length }, sink, {});
    assertSameBytes(Buffer.concat(chunks), body);
    assert.equal(received, body.length);
    assert.equal(lent, body.length - 64 * KiB, 'blocks 0, 2 and 3 in place; block 1 fetched');
    assert.equal(client.requestCounts.get('GetObject'), 2);
    assert.equal(cache.stats.invalid, 1);
    await cache.close();
  });

  test('a block fetched whole into a sink that can pin its bytes is stored from them and unpinned once on disk', async () => {
    const { cache, client, body, v } = await objectInCache(200 * KiB);
    const held = Buffer.alloc(body.length);
    let received = 0;
    let pins = 0;
    let unpins = 0;
    const sink = {
      write: (x: Buffer) => { x.copy(held, received); received += x.length; },
      pin: (from: number, to: number) => { pins++; return [held.subarray(from, from + 1000), held.subarray(from + 1000, to)]; },
      unpin: () => { unpins++; },
    };
    await readThroughCache(cache, client, v, { start: 0, end: body.length }, sink, {});
    await cache.settled();
    assertSameBytes(held, body);
    assert.equal(pins, 4);
    assert.equal(unpins, 4);
    for (let i = 0; i < 4; i++) assertSameBytes(await cache.read(v, i), body.subarray(i * 64 * KiB, Math.min(body.length, (i + 1) * 64 * KiB)));
    await cache.close();
  });
});
