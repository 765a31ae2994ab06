/**
 * The local disk cache (--cache) through real mounts of the local S3
 * server, with the fault proxy counting the GETs that reach the bucket:
 * a second read is served from the cache, a damaged block is fetched again
 * (right bytes), a replaced object reads new once its metadata expires,
 * the folder stays under --max-cache-size as du measures it, a killed
 * worker's cache serves the next mount, and what is written through the
 * mount is read from the cache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gone, mountBucket, putObject, startWorld, waitUntil, type Mount, type World } from './helpers/faults-fixture.js';
import { run, sh, shellQuote as q, tempDir } from './helpers/processes.js';

let world: World;
const KiB = 1024;
const MiB = 1024 * KiB;

before(async () => {
  world = await startWorld();
});

after(async () => {
  await world.stop();
});

function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

/** md5 of a file read through the mount by a child process (never this process: it serves no mount, but keeps the rule). */
async function md5Through(m: Mount, rel: string): Promise<string> {
  const r = await sh(`md5sum ${q(path.join(m.mnt, rel))}`, { env: m.env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split(' ')[0]!;
}

/**
 * Drops the kernel's cached pages of a file (posix_fadvise DONTNEED, dd's
 * nocache): with --cache an unchanged file keeps them across opens, and
 * these tests are about the disk cache behind them.
 */
async function dropPages(m: Mount, rel: string): Promise<void> {
  const r = await sh(`dd if=${q(path.join(m.mnt, rel))} iflag=nocache count=0 status=none`, { env: m.env, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
}

async function gets(): Promise<number> {
  return (await world.proxy.stats()).requests.GetObject ?? 0;
}

async function cacheDir(): Promise<string> {
  return path.join(await tempDir('cache'), 'c');
}

async function du(dir: string): Promise<number> {
  const r = await run('du', ['-s', '-B1', dir]);
  return Number(r.stdout.split(/\s/)[0]);
}

/** Every block file of a cache folder. */
async function blockFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const shard of await readdir(path.join(dir, 'v1'))) {
    if (shard === 'pending') continue;
    for (const f of await readdir(path.join(dir, 'v1', shard))) out.push(path.join(dir, 'v1', shard, f));
  }
  return out;
}

describe('--cache through real mounts', { concurrency: 1 }, () => {
  test('a second read makes no GET, for a big and a small file', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache] });
    const big = randomBytes(5 * MiB + 123);
    const small = randomBytes(10 * KiB);
    await putObject(world.s3, m.bucket, 'data/big.bin', big);
    await putObject(world.s3, m.bucket, 'data/small.txt', small);
    assert.equal(await md5Through(m, 'data/big.bin'), md5(big));
    assert.equal(await md5Through(m, 'data/small.txt'), md5(small));
    await world.proxy.resetStats();
    assert.equal(await md5Through(m, 'data/big.bin'), md5(big));
    assert.equal(await md5Through(m, 'data/small.txt'), md5(small));
    assert.equal(await gets(), 0, 'both came from the cache (or the kernel\'s pages of them)');
    await dropPages(m, 'data/big.bin');
    await dropPages(m, 'data/small.txt');
    assert.equal(await md5Through(m, 'data/big.bin'), md5(big));
    assert.equal(await md5Through(m, 'data/small.txt'), md5(small));
    assert.equal(await gets(), 0, 'both came from the disk cache');
    await m.unmount();
    assert.match(await m.log(), /"msg":"cache".*"hits":[1-9]/);
  });

  test('a damaged block still reads right: it is fetched again, and the log says so', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache] });
    const body = randomBytes(3 * MiB);
    await putObject(world.s3, m.bucket, 'f.bin', body);
    assert.equal(await md5Through(m, 'f.bin'), md5(body));
    const files = await blockFiles(cache);
    assert.equal(files.length, 3, files.join('\n'));
    // One flipped byte in the middle of each block.
    for (const f of files) {
      const b = await readFile(f);
      b[Math.floor(b.length / 2)]! ^= 0x5a;
      await writeFile(f, b);
    }
    await world.proxy.resetStats();
    await dropPages(m, 'f.bin');
    assert.equal(await md5Through(m, 'f.bin'), md5(body));
    assert.ok(await gets() >= 1, 'fetched again');
    await world.proxy.resetStats();
    await dropPages(m, 'f.bin');
    assert.equal(await md5Through(m, 'f.bin'), md5(body));
    assert.equal(await gets(), 0, 'stored again, whole');
    await m.unmount();
    assert.match(await m.log(), /cache block invalid, fetched again.*checksum mismatch/);
  });

  test('a file opened again unchanged keeps the kernel\'s pages: the second read never reaches the worker', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache] });
    const body = randomBytes(2 * MiB);
    await putObject(world.s3, m.bucket, 'p.bin', body);
    assert.equal(await md5Through(m, 'p.bin'), md5(body));
    await m.unmount();
    const first = Number(/"fuseOperations":\{[^}]*"read":(\d+)/.exec(await m.log())?.[1]);
    assert.ok(first > 0, 'reads counted');
    await waitUntil('the first mount\'s watchdog to exit', () => gone(m.watchdog.pid), 15_000);
    const again = await m.remount();
    assert.equal(await md5Through(again, 'p.bin'), md5(body));
    assert.equal(await md5Through(again, 'p.bin'), md5(body));
    await again.unmount();
    const second = Number(/"fuseOperations":\{[^}]*"read":(\d+)/.exec(await again.log())?.[1]);
    assert.equal(second, first, 'two reads of an unchanged file cost the worker one read\'s requests');
  });

  test('an object replaced while the kernel keeps part of it: the read fails rather than mix versions, and the next open reads the new one', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache] });
    const v1 = randomBytes(16 * MiB);
    const v2 = randomBytes(16 * MiB);
    await putObject(world.s3, m.bucket, 'x.bin', v1);
    // The kernel and the disk cache hold only the start of version 1.
    const head = await sh(`head -c 1048576 ${q(path.join(m.mnt, 'x.bin'))} | md5sum`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(head.stdout.split(' ')[0], md5(v1.subarray(0, MiB)));
    await putObject(world.s3, m.bucket, 'x.bin', v2);
    // Within the metadata TTL: the same version as far as the mount knows, so its pages are kept.
    const whole = await sh(`cat ${q(path.join(m.mnt, 'x.bin'))} | md5sum; echo "status \${PIPESTATUS[0]}"`, { env: m.env, timeoutMs: 60_000 });
    const sum = whole.stdout.split(' ')[0];
    const failed = /status [1-9]/.test(whole.stdout);
    t.diagnostic(`cat: ${whole.stdout.trim()} ${whole.stderr.trim()}`);
    assert.ok(failed || sum === md5(v1), `either an error or version 1 whole, never a mix: ${whole.stdout} ${whole.stderr}`);
    if (failed) assert.match(whole.stderr, /Input\/output error/);
    assert.equal(await md5Through(m, 'x.bin'), md5(v2), 'the next open reads version 2');
    await m.unmount();
  });

  test('an object replaced through the S3 API reads new bytes once its metadata expires', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache, '--metadata-ttl', '1'] });
    const v1 = randomBytes(2 * MiB);
    const v2 = randomBytes(2 * MiB);
    await putObject(world.s3, m.bucket, 'r.bin', v1);
    assert.equal(await md5Through(m, 'r.bin'), md5(v1));
    await putObject(world.s3, m.bucket, 'r.bin', v2);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await md5Through(m, 'r.bin'), md5(v2));
    await m.unmount();
  });

  test('reading twice the cache limit keeps the folder under it, as du measures', async (t) => {
    const cache = await cacheDir();
    const limitMiB = 8;
    const m = await mountBucket(t, world, { flags: ['--cache', cache, '--max-cache-size', String(limitMiB)] });
    const files = [0, 1, 2, 3].map(() => randomBytes(4 * MiB));
    for (const [i, b] of files.entries()) await putObject(world.s3, m.bucket, `big/${i}.bin`, b);
    for (const [i, b] of files.entries()) {
      assert.equal(await md5Through(m, `big/${i}.bin`), md5(b));
      const used = await du(cache);
      assert.ok(used <= limitMiB * MiB, `after file ${i}: du ${used} > ${limitMiB} MiB`);
    }
    // The most recent file is still whole in the cache.
    await dropPages(m, 'big/3.bin');
    await world.proxy.resetStats();
    assert.equal(await md5Through(m, 'big/3.bin'), md5(files[3]!));
    assert.equal(await gets(), 0);
    await m.unmount();
    assert.ok(await du(cache) <= limitMiB * MiB);
  });

  test('a killed worker\'s cache serves the next mount', async (t) => {
    const cache = await cacheDir();
    const m = await mountBucket(t, world, { flags: ['--cache', cache] });
    const body = randomBytes(4 * MiB);
    await putObject(world.s3, m.bucket, 'k.bin', body);
    assert.equal(await md5Through(m, 'k.bin'), md5(body));
    // The blocks are written in the background: wait until all four are there.
    await waitUntil('the blocks on disk', async () => (await blockFiles(cache)).length === 4, 10_000);
    process.kill(m.workerPid, 'SIGKILL');
    await waitUntil('the worker to die', () => gone(m.workerPid), 10_000);
    // Its watchdog detaches the dead mount, then exits.
    await waitUntil('the watchdog to exit', () => gone(m.watchdog.pid), 15_000);
    const again = await m.remount();
    await world.proxy.resetStats();
    assert.equal(await md5Through(again, 'k.bin'), md5(body));
    // The lookup asks the bucket what k.bin is now (a GET of its first
    // 64 KiB, as every lookup); every byte beyond comes from the cache.
    assert.equal(await gets(), 1);
    await again.unmount();
  });

  test('what is written through the mount is read from the cache, in the default and in editing mode', async (t) => {
    for (const flags of [[], ['--allow-edit']]) {
      const cache = await cacheDir();
      const m = await mountBucket(t, world, { flags: ['--cache', cache, ...flags] });
      const src = path.join(await tempDir('cache-src'), 'w.bin');
      const body = randomBytes(3 * MiB + 5);
      await writeFile(src, body);
      const r = await sh(`cp ${q(src)} ${q(path.join(m.mnt, 'w.bin'))} && sync`, { env: m.env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      // In editing mode close() returns before the upload: wait for the blocks.
      await waitUntil('the written blocks in the cache', async () => (await blockFiles(cache)).length === 4, 20_000);
      await dropPages(m, 'w.bin');
      await world.proxy.resetStats();
      assert.equal(await md5Through(m, 'w.bin'), md5(body), flags.join(' '));
      assert.equal(await gets(), 0, `${flags.join(' ') || 'default mode'}: read from the cache`);
      await m.unmount();
    }
  });
});
