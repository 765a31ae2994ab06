/**
 * What a lookup costs, through real mounts against the local S3 server,
 * counted by the fault proxy in front of it (no faults injected):
 * - a lookup by name GETs the file's first 64 KiB with the listing of
 *   name/, and the open that follows reads them without another request;
 * - past the metadata TTL, the lookups of a folder listed before are
 *   answered by listing pages around the names, not a request pair per name.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { startWorld, mountBucket, putObject, seedOnDisk, type World } from './helpers/faults-fixture.js';
import { pattern, md5 } from './helpers/faults-io.js';
import { sh, shellQuote } from './helpers/processes.js';
import type { S3Operation } from './helpers/fault-proxy.js';

async function counted(world: World, work: () => Promise<void>): Promise<Partial<Record<S3Operation, number>>> {
  const before = (await world.proxy.stats()).requests;
  await work();
  const after = (await world.proxy.stats()).requests;
  const out: Partial<Record<S3Operation, number>> = {};
  for (const [op, n] of Object.entries(after) as Array<[S3Operation, number]>) {
    const d = n - (before[op] ?? 0);
    if (d > 0) out[op] = d;
  }
  return out;
}

describe('lookups', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(async () => {
    await world?.stop();
  });

  test("a file's lookup fetches its first block: reading a 50 KiB file sends one GET, a big file's first read none of its own", async (t) => {
    // A long TTL keeps the folder's own lookup (a GET that finds no object, and a listing) out of the counts.
    const m = await mountBucket(t, world, { flags: ['--metadata-ttl', '60'] });
    const small = pattern('small', 50 * 1024);
    const big = pattern('big', 3 * 1024 * 1024);
    await putObject(world.s3, m.bucket, 'docs/small.bin', small);
    await putObject(world.s3, m.bucket, 'docs/big.bin', big);
    await putObject(world.s3, m.bucket, 'docs/empty', '');
    assert.equal((await sh(`stat ${shellQuote(path.join(m.mnt, 'docs'))}`, { env: m.env, timeoutMs: 60_000 })).code, 0);

    const smallReqs = await counted(world, async () => {
      const r = await sh(`md5sum < ${shellQuote(path.join(m.mnt, 'docs', 'small.bin'))}`, { env: m.env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(' ')[0], md5(small));
    });
    assert.equal(smallReqs.GetObject, 1, `one GET for lookup and read: ${JSON.stringify(smallReqs)}`);
    assert.equal(smallReqs.HeadObject ?? 0, 0);

    const headReqs = await counted(world, async () => {
      const r = await sh(`head -c 100 ${shellQuote(path.join(m.mnt, 'docs', 'big.bin'))} | md5sum`, { env: m.env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(' ')[0], md5(big.subarray(0, 100)));
    });
    // The lookup's GET served the first read; the prefetcher may start reading ahead after it.
    assert.ok((headReqs.GetObject ?? 0) <= 2, JSON.stringify(headReqs));
    const whole = await sh(`md5sum < ${shellQuote(path.join(m.mnt, 'docs', 'big.bin'))}`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(whole.stdout.split(' ')[0], md5(big), 'the whole file reads back exactly, past the first block');

    const empty = await sh(`stat -c %s ${shellQuote(path.join(m.mnt, 'docs', 'empty'))} && wc -c < ${shellQuote(path.join(m.mnt, 'docs', 'empty'))}`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(empty.code, 0, empty.stderr);
    assert.deepEqual(empty.stdout.trim().split('\n'), ['0', '0'], 'an empty object (416 for its first block) is an empty file');
    await m.unmount();
  });

  test('past the TTL, reading every file of a listed folder costs a listing page per thousand names, not a lookup per file', async (t) => {
    const bucket = `lookups-${Date.now().toString(36)}`;
    const names = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(4, '0')}`);
    await seedOnDisk(world, bucket, names.map((n): [string, string] => [`set/${n}`, `contents of ${n}`]));
    const m = await mountBucket(t, world, { bucket });
    const dir = path.join(m.mnt, 'set');
    const listed = await sh(`ls ${shellQuote(dir)} | wc -l`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(listed.stdout.trim(), '300');
    // Past the listing's trust (1 s TTL + 2 ms per entry).
    await new Promise((r) => setTimeout(r, 2_500));
    const reqs = await counted(world, async () => {
      const r = await sh(`cd ${shellQuote(dir)} && for f in f*; do cat "$f"; echo; done | sort | md5sum`, { env: m.env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const expected = md5(Buffer.from(names.map((n) => `contents of ${n}\n`).sort().join('')));
      assert.equal(r.stdout.split(' ')[0], expected, 'every file reads its own contents');
    });
    t.diagnostic(`requests: ${JSON.stringify(reqs)}`);
    assert.equal(reqs.HeadObject ?? 0, 0);
    // The shell's glob lists the folder again (one page); each further page of lookups refreshes the next names.
    assert.ok((reqs.ListObjectsV2 ?? 0) <= 20, `listing pages, not a listing per file: ${JSON.stringify(reqs)}`);
    assert.ok((reqs.GetObject ?? 0) <= 300 + 20, `a GET per file to read it, not another per lookup: ${JSON.stringify(reqs)}`);

    // A file deleted and one added behind the mount's back are seen as soon as the TTL has passed.
    await world.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'set/f0100' }));
    await putObject(world.s3, bucket, 'set/f0100a', 'new');
    await new Promise((r) => setTimeout(r, 1_500));
    const seen = await sh(`cd ${shellQuote(dir)}; cat f0100 2>&1; cat f0100a`, { env: m.env, timeoutMs: 60_000 });
    assert.match(seen.stdout, /No such file or directory/);
    assert.match(seen.stdout, /new$/);
    await m.unmount();
  });

  test('a name not found: asked again every time by default (Mountpoint), trusted for the TTL in editing mode, where cp -r asks four times', async (t) => {
    const askAgain = async (flags: string[], dir: string): Promise<Partial<Record<S3Operation, number>>> => {
      const m = await mountBucket(t, world, { flags });
      const target = shellQuote(path.join(m.mnt, dir));
      // What cp -r does before its first file: two lookups of the target, then mkdir (a lookup, then the check).
      const reqs = await counted(world, async () => {
        const r = await sh(`test -e ${target} || stat ${target} 2>/dev/null || mkdir ${target}`, { env: m.env, timeoutMs: 60_000 });
        assert.equal(r.code, 0, r.stderr);
      });
      // Another client's object under a name looked up as missing shows once the TTL has passed.
      const other = shellQuote(path.join(m.mnt, `${dir}-other.txt`));
      assert.notEqual((await sh(`cat ${other}`, { env: m.env, timeoutMs: 60_000 })).code, 0);
      await putObject(world.s3, m.bucket, `${dir}-other.txt`, 'theirs');
      await new Promise((r) => setTimeout(r, 1_200));
      const seen = await sh(`cat ${other}`, { env: m.env, timeoutMs: 60_000 });
      assert.equal(seen.stdout, 'theirs', seen.stderr);
      await m.unmount();
      return reqs;
    };
    const byDefault = await askAgain([], 'plain');
    const editing = await askAgain(['--allow-edit'], 'edited');
    t.diagnostic(`default: ${JSON.stringify(byDefault)}; editing mode: ${JSON.stringify(editing)}`);
    // A lookup by name is a GET (the first block) and a listing of name/.
    assert.equal(byDefault.ListObjectsV2, 4, `each of the four asks S3: ${JSON.stringify(byDefault)}`);
    assert.equal(editing.ListObjectsV2, 1, `one lookup, then the cached miss: ${JSON.stringify(editing)}`);
    assert.equal(editing.PutObject, 1, 'mkdir stores the folder object');
  });
});
