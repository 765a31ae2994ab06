/**
 * Faults (docs/reliability.md), against the real local S3 server and real mounts made
 * by `sosmount` in background mode, with the fault proxy
 * (test/helpers/fault-proxy.ts) between the mount and the server: the
 * server going away for 5 s during `ls`, a big read and a big write; 500,
 * 503, SlowDown and connection resets for a while; stalled requests;
 * uploads that cannot complete. The promise under test is Mountpoint's: an
 * operation succeeds or fails with EIO within a bounded time, the data
 * read is right (MD5), an object appears only when close() succeeded, no
 * multipart upload is left behind, and the mount keeps answering.
 *
 * The file I/O runs in child processes (test/helpers/faults-io.ts) that can
 * pause mid-file, so each fault lands at a known point. The measured times
 * are printed as test diagnostics and go into docs/reliability.md. Tests
 * marked `todo` describe engine bugs (see the todo text).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { RetryErrorInfo } from '@smithy/types';
import {
  listKeys, mountBucket, objectExists, objectMd5, pendingUploads, putObject, seedOnDisk, startWorld, statWithin,
  waitUntil, withDeadline, type Mount, type World,
} from './helpers/faults-fixture.js';
import { MiB, md5, pattern, startIo, type IoEvent, type IoProcess } from './helpers/faults-io.js';
import { run } from './helpers/processes.js';
import { DEFAULT_RETRY_POLICY, FUSE_OP_TIMEOUT_MS, OutageRetryStrategy, READ_DEADLINE_MS } from '../app/s3/retry-strategy.js';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import { S3RequestError } from '../app/s3/errors.js';
import { S3FileSystem } from '../app/fs/filesystem.js';
import type { FsError } from '../app/fs/errno.js';

/** The bound on any operation under a fault (docs/reliability.md): it ends, one way or the other, within this. */
const BOUND_MS = 120_000;
const OUTAGE_MS = 5_000;
const BIG = 64 * MiB;

let world: World;
const big = pattern('faults-big', BIG);
const bigMd5 = md5(big);

before(async () => {
  world = await startWorld();
});

after(async () => {
  await world?.stop();
});

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function sh(script: string, env: NodeJS.ProcessEnv, timeoutMs = BOUND_MS + 30_000): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const r = await run('bash', ['-c', script], { env, timeoutMs });
  return { ...r, ms: Date.now() - started };
}

/** Outcome of a reader or writer child: its events, and how long it took. */
async function finish(io: IoProcess, what: string): Promise<{ events: IoEvent[]; ms: number }> {
  const started = Date.now();
  try {
    const r = await withDeadline(what, io.exited, BOUND_MS + 10_000);
    return { events: r.events, ms: Date.now() - started };
  } finally {
    io.kill();
  }
}

function eventOf(events: IoEvent[], kind: IoEvent['event']): IoEvent | undefined {
  return events.find((e) => e.event === kind);
}

/** The mount answers: a stat of its root and a listing of `dir` work. */
async function assertAnswers(m: Mount, dir = ''): Promise<void> {
  assert.equal(await statWithin(m.mnt, 10_000), 'OK', 'the mount point answers');
  const ls = await sh(`ls ${q(path.join(m.mnt, dir))} > /dev/null`, m.env, 60_000);
  assert.equal(ls.code, 0, `ls works again: ${ls.stderr}`);
}

async function proxyBack(): Promise<void> {
  await waitUntil('the proxy to listen again', async () => (await world.proxy.stats()).listening, 20_000);
}

describe('the server goes away for 5 s', () => {
  test('during ls of a 2,500-key folder (gone between two listing pages): ls lists everything or fails with EIO in bounded time; then the mount answers and lists everything', async (t) => {
    const bucket = `ls-${randomBytes(4).toString('hex')}`;
    const keys = Array.from({ length: 2_500 }, (_, i): [string, string] => [`many/k${String(i).padStart(5, '0')}`, String(i)]);
    await seedOnDisk(world, bucket, keys);
    const m = await mountBucket(t, world, { bucket });
    await world.proxy.setRules([{ id: 'outage', match: { op: 'ListObjectsV2', query: 'continuation-token' }, nth: 1, action: { kind: 'go-away', ms: OUTAGE_MS } }]);
    try {
      const r = await sh(`set -o pipefail; ls -1 ${q(path.join(m.mnt, 'many'))} | wc -l`, m.env);
      const fired = (await world.proxy.stats()).fired['outage'];
      t.diagnostic(`ls during a 5 s outage: exit ${r.code} after ${r.ms} ms; ${r.code === 0 ? `${r.stdout.trim()} names` : r.stderr.trim()}`);
      assert.equal(fired, 1, 'the outage began between the pages of the listing');
      assert.ok(r.ms < BOUND_MS, `ls ended within ${BOUND_MS} ms (${r.ms})`);
      if (r.code === 0) assert.equal(r.stdout.trim(), '2500');
      else assert.match(r.stderr, /Input\/output error/, 'a failed ls says EIO');
    } finally {
      await world.proxy.clearRules();
      await proxyBack();
    }
    const again = await sh(`ls -1 ${q(path.join(m.mnt, 'many'))} | wc -l`, m.env, 60_000);
    assert.equal(again.stdout.trim(), '2500', `afterwards ls lists everything: ${again.stderr}`);
    await assertAnswers(m);
    await m.unmount();
  });

  test('during a 64 MiB sequential read (server killed, restarted 5 s later): the read returns the right bytes or fails with EIO in bounded time; then the mount reads it right', async (t) => {
    const m = await mountBucket(t, world);
    await putObject(world.s3, m.bucket, 'big.bin', big);
    const reader = startIo({ op: 'read', path: path.join(m.mnt, 'big.bin'), pauseAt: 8 * MiB }, m.env);
    t.after(() => reader.kill());
    await reader.waitEvent('paused', 60_000);
    const started = Date.now();
    world.server.kill();
    reader.resume();
    try {
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
    } finally {
      await world.server.restart();
    }
    const { events } = await finish(reader, 'the reader');
    const ms = Date.now() - started;
    const done = eventOf(events, 'done');
    const error = eventOf(events, 'error');
    t.diagnostic(`read across a ${OUTAGE_MS} ms outage (+ server restart): ${done ? `completed, md5 ${done.md5 === bigMd5 ? 'right' : 'WRONG'}` : `failed ${error?.op} ${error?.code} at ${error?.bytes} bytes`} ${ms} ms after the kill`);
    assert.ok(ms < BOUND_MS, `the read ended within ${BOUND_MS} ms (${ms})`);
    if (done) {
      assert.equal(done.bytes, BIG);
      assert.equal(done.md5, bigMd5, 'the bytes read across the outage are right');
    } else {
      assert.equal(error?.code, 'EIO', `a failed read says EIO: ${JSON.stringify(events.slice(-3))}`);
    }
    const again = await finish(startIo({ op: 'read', path: path.join(m.mnt, 'big.bin') }, m.env), 'a second reader');
    assert.equal(eventOf(again.events, 'done')?.md5, bigMd5, `afterwards the mount reads the file right: ${JSON.stringify(again.events.slice(-2))}`);
    await m.unmount();
  });

  test('during a 64 MiB write (gone at the 3rd UploadPart): close() succeeds and the object is exact, or a call fails with EIO and no object nor upload is left; then the mount answers', async (t) => {
    const m = await mountBucket(t, world);
    await world.proxy.setRules([{ id: 'outage', match: { op: 'UploadPart' }, nth: 3, action: { kind: 'go-away', ms: OUTAGE_MS } }]);
    let events: IoEvent[];
    let ms: number;
    try {
      ({ events, ms } = await finish(startIo({ op: 'write', path: path.join(m.mnt, 'big.bin'), size: BIG, seed: 'faults-write' }, m.env), 'the writer'));
      assert.equal((await world.proxy.stats()).fired['outage'], 1, 'the outage began during the upload');
    } finally {
      await world.proxy.clearRules();
      await proxyBack();
    }
    const close = eventOf(events, 'close');
    const error = eventOf(events, 'error');
    t.diagnostic(`write across a ${OUTAGE_MS} ms outage: ${close?.code === 'OK' ? 'close() succeeded' : `${error ? `write failed ${error.code} at ${error.bytes} bytes, ` : ''}close() ${close?.code}`} after ${ms} ms`);
    assert.ok(ms < BOUND_MS, `the writer ended within ${BOUND_MS} ms (${ms})`);
    if (close?.code === 'OK' && !error) {
      assert.equal(await objectMd5(world.s3, m.bucket, 'big.bin'), md5(pattern('faults-write', BIG)), 'the object holds exactly what was written');
    } else {
      // A write after a part failed may say EINVAL instead of EIO: see the todo test 'a write after ...' below.
      if (error) assert.ok(['EIO', 'EINVAL'].includes(error.code ?? ''), `a failed write says EIO (or EINVAL, the bug below): ${error.code}`);
      assert.equal(close?.code, 'EIO', 'close() reports the failed upload');
      assert.equal(await objectExists(world.s3, m.bucket, 'big.bin'), false, 'no object, no partial object');
    }
    assert.deepEqual(await pendingUploads(world, m.bucket), [], 'no multipart upload is left');
    await assertAnswers(m);
    const small = await sh(`echo after > ${q(path.join(m.mnt, 'after.txt'))}`, m.env, 60_000);
    assert.equal(small.code, 0, `a new file can be written afterwards: ${small.stderr}`);
    await m.unmount();
  });
});

describe('the server answers 500, 503, SlowDown and resets connections for a while', () => {
  test('listing, a 64 MiB read and a 32 MiB and a small write all succeed with the right bytes; every fault fired', async (t) => {
    const m = await mountBucket(t, world);
    await putObject(world.s3, m.bucket, 'data/big.bin', big);
    await Promise.all(Array.from({ length: 30 }, (_, i) => putObject(world.s3, m.bucket, `data/f${i}.txt`, `file ${i}`)));
    const rules = [
      { id: 'list-500', match: { op: 'ListObjectsV2' as const }, every: 2, action: { kind: 'error' as const, status: 500, code: 'InternalError' } },
      // A lookup by name GETs the first block of the name (app/fs/filesystem.ts, fetchRemote).
      { id: 'lookup-503', match: { op: 'GetObject' as const, key: 'small.txt' }, times: 2, action: { kind: 'error' as const, status: 503, code: 'ServiceUnavailable' } },
      { id: 'get-slowdown', match: { op: 'GetObject' as const }, every: 3, action: { kind: 'error' as const, status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' } },
      { id: 'get-reset-body', match: { op: 'GetObject' as const }, times: 3, action: { kind: 'reset-response' as const, afterBytes: 256 * 1024 } },
      { id: 'get-503-window', match: { op: 'GetObject' as const }, forMs: 1_500, action: { kind: 'error' as const, status: 503, code: 'ServiceUnavailable' } },
      { id: 'create-slowdown', match: { op: 'CreateMultipartUpload' as const }, times: 1, action: { kind: 'error' as const, status: 503, code: 'SlowDown' } },
      { id: 'part-reset-upload', match: { op: 'UploadPart' as const }, times: 2, action: { kind: 'reset-request' as const, afterBytes: 1 * MiB } },
      { id: 'part-500', match: { op: 'UploadPart' as const }, every: 3, action: { kind: 'error' as const, status: 500, code: 'InternalError' } },
      { id: 'complete-500', match: { op: 'CompleteMultipartUpload' as const }, times: 1, action: { kind: 'error' as const, status: 500, code: 'InternalError' } },
      { id: 'put-reset', match: { op: 'PutObject' as const }, times: 1, action: { kind: 'reset-request' as const } },
    ];
    await world.proxy.setRules(rules);
    const started = Date.now();
    try {
      const [ls, read, write, smallWrite] = await Promise.all([
        sh(`ls -l ${q(path.join(m.mnt, 'data'))} | grep -c '^-'`, m.env),
        finish(startIo({ op: 'read', path: path.join(m.mnt, 'data/big.bin') }, m.env), 'the reader'),
        finish(startIo({ op: 'write', path: path.join(m.mnt, 'w32.bin'), size: 32 * MiB, seed: 'faults-5xx' }, m.env), 'the writer'),
        sh(`printf 'small file' > ${q(path.join(m.mnt, 'small.txt'))}`, m.env),
      ]);
      const stats = await world.proxy.stats();
      t.diagnostic(`under 5xx/SlowDown/resets: ls ${ls.ms} ms, 64 MiB read ${read.ms} ms, 32 MiB write ${write.ms} ms, small write ${smallWrite.ms} ms; all done ${Date.now() - started} ms; faults fired ${JSON.stringify(stats.fired)}; requests ${JSON.stringify(stats.requests)}`);
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(ls.stdout.trim(), '31', 'ls -l lists every file');
      assert.equal(eventOf(read.events, 'done')?.md5, bigMd5, `the read is exact: ${JSON.stringify(read.events.slice(-2))}`);
      assert.equal(eventOf(write.events, 'close')?.code, 'OK', `close() succeeds: ${JSON.stringify(write.events.slice(-2))}`);
      assert.equal(smallWrite.code, 0, smallWrite.stderr);
      // The time window may close before the first GetObject on a busy machine; the others fire by count.
      for (const rule of rules) if (rule.id !== 'get-503-window') assert.ok((stats.fired[rule.id] ?? 0) > 0, `fault ${rule.id} fired`);
    } finally {
      await world.proxy.clearRules();
    }
    assert.equal(await objectMd5(world.s3, m.bucket, 'w32.bin'), md5(pattern('faults-5xx', 32 * MiB)), 'the written object is exact');
    assert.equal(await objectMd5(world.s3, m.bucket, 'small.txt'), md5(Buffer.from('small file')));
    assert.deepEqual(await pendingUploads(world, m.bucket), [], 'no multipart upload is left');
    await m.unmount();
  });

  test('a request the server accepts and never answers, or whose body stops halfway, is given up after the inactivity timeout and retried: the read completes long before the stall ends', async (t) => {
    const m = await mountBucket(t, world);
    await putObject(world.s3, m.bucket, 'headers.bin', big.subarray(0, 2 * MiB));
    await putObject(world.s3, m.bucket, 'body.bin', big.subarray(2 * MiB, 4 * MiB));
    const STALL_MS = 22_000;
    await world.proxy.setRules([
      { id: 'stall-headers', match: { op: 'GetObject', key: 'headers.bin' }, times: 1, action: { kind: 'stall', ms: STALL_MS } },
      // Within the first 64 KiB: the first GET of body.bin stalls, be it the lookup's first block or the read-ahead's.
      { id: 'stall-body', match: { op: 'GetObject', key: 'body.bin' }, times: 1, action: { kind: 'stall-response', afterBytes: 30_000, ms: STALL_MS } },
    ]);
    try {
      // One after the other: the kernel holds a folder's lookups behind one that stalls (both are in the root).
      const headers = await finish(startIo({ op: 'read', path: path.join(m.mnt, 'headers.bin') }, m.env), 'reader of headers.bin');
      const body = await finish(startIo({ op: 'read', path: path.join(m.mnt, 'body.bin') }, m.env), 'reader of body.bin');
      const stats = await world.proxy.stats();
      t.diagnostic(`stalled response headers: read took ${headers.ms} ms; stalled body: ${body.ms} ms (stall ${STALL_MS} ms)`);
      assert.equal(stats.fired['stall-headers'], 1);
      assert.equal(stats.fired['stall-body'], 1);
      assert.equal(eventOf(headers.events, 'done')?.md5, md5(big.subarray(0, 2 * MiB)));
      assert.equal(eventOf(body.events, 'done')?.md5, md5(big.subarray(2 * MiB, 4 * MiB)));
      assert.ok(headers.ms < 19_000, `a stall before the headers is cut short (${headers.ms} ms)`);
      assert.ok(body.ms < 19_000, `a stall in the body is cut short (${body.ms} ms)`);
    } finally {
      await world.proxy.clearRules();
      await m.unmount();
    }
  });
});

describe('an endpoint that never recovers', () => {
  test('every GET stalls for good: the reader gets EIO within the read deadline, long before FUSE would answer, and no GET is left running; then the mount answers', async (t) => {
    const m = await mountBucket(t, world);
    await putObject(world.s3, m.bucket, 'stuck.bin', big);
    // The reader has opened the file and read its start; from then on every GET stalls (answers nothing, ever).
    const reader = startIo({ op: 'read', path: path.join(m.mnt, 'stuck.bin'), pauseAt: MiB }, m.env);
    t.after(() => reader.kill());
    await reader.waitEvent('paused', 60_000);
    await world.proxy.setRules([{ id: 'stall-forever', match: { op: 'GetObject', key: 'stuck.bin' }, action: { kind: 'stall' } }]);
    try {
      reader.resume();
      const { events, ms } = await finish(reader, 'the reader');
      const error = eventOf(events, 'error');
      t.diagnostic(`read with every GET stalled: ${error ? `${error.op} ${error.code}` : 'no error'} after ${ms} ms (read deadline ${READ_DEADLINE_MS} ms, FUSE ${FUSE_OP_TIMEOUT_MS} ms)`);
      assert.equal(error?.code, 'EIO', `the read fails with EIO: ${JSON.stringify(events.slice(-2))}`);
      assert.ok(ms < READ_DEADLINE_MS + 10_000, `within the read deadline (${ms} ms)`);
      assert.ok(READ_DEADLINE_MS + 10_000 < FUSE_OP_TIMEOUT_MS, 'which FUSE\'s own timeout is above');
      assert.ok((await world.proxy.stats()).fired['stall-forever']! >= 1);
      await waitUntil('no GET left running', async () => ((await world.proxy.stats()).active.GetObject ?? 0) === 0, 5_000)
        .catch(async (err: unknown) => { throw new Error(`${(err as Error).message}: ${JSON.stringify((await world.proxy.stats()).active)}`); });
    } finally {
      await world.proxy.clearRules();
    }
    await assertAnswers(m);
    await m.unmount();
  });
});

describe('an upload that cannot complete', () => {
  test('UploadPart or CompleteMultipartUpload failing (500) past the retries, UploadPart denied (403), PutObject failing: close() returns EIO, no object, no multipart upload left; with AbortMultipartUpload refused too, still no object', async (t) => {
    const m = await mountBucket(t, world);
    const cases = [
      { name: 'parts-500.bin', size: 24 * MiB, rule: { op: 'UploadPart' as const, status: 500, code: 'InternalError' } },
      { name: 'complete-500.bin', size: 20 * MiB, rule: { op: 'CompleteMultipartUpload' as const, status: 500, code: 'InternalError' } },
      { name: 'parts-403.bin', size: 24 * MiB, rule: { op: 'UploadPart' as const, status: 403, code: 'AccessDenied' } },
      { name: 'put-500.bin', size: 100_000, rule: { op: 'PutObject' as const, status: 500, code: 'InternalError' } },
    ];
    // Beside them: parts and the abort both refused, so the upload cannot be aborted either.
    const orphan = 'orphan.bin';
    await world.proxy.setRules([
      ...cases.map((c) => ({
        id: c.name, match: { op: c.rule.op, key: c.name }, action: { kind: 'error' as const, status: c.rule.status, code: c.rule.code },
      })),
      { id: 'orphan-part', match: { op: 'UploadPart', key: orphan }, action: { kind: 'error', status: 500, code: 'InternalError' } },
      { id: 'orphan-abort', match: { op: 'AbortMultipartUpload', key: orphan }, action: { kind: 'error', status: 500, code: 'InternalError' } },
    ]);
    try {
      const orphanWriter = finish(startIo({ op: 'write', path: path.join(m.mnt, orphan), size: 16 * MiB, seed: orphan }, m.env), orphan);
      const results = await Promise.all(cases.map((c) => finish(startIo({ op: 'write', path: path.join(m.mnt, c.name), size: c.size, seed: c.name }, m.env), c.name)));
      const orphaned = await orphanWriter;
      assert.equal(eventOf(orphaned.events, 'close')?.code, 'EIO', `${orphan}: close() reports the failed upload: ${JSON.stringify(orphaned.events.slice(-3))}`);
      const stats = await world.proxy.stats();
      for (const [i, c] of cases.entries()) {
        const { events, ms } = results[i]!;
        const error = eventOf(events, 'error');
        const close = eventOf(events, 'close');
        t.diagnostic(`${c.rule.op} -> ${c.rule.status} ${c.rule.code} (${c.size} bytes): ${error ? `write ${error.code} at ${error.bytes} bytes, ` : ''}close() ${close?.code} after ${ms} ms; ${stats.fired[c.name]} requests refused`);
        assert.ok((stats.fired[c.name] ?? 0) > 0, `${c.name}: the fault fired`);
        assert.equal(close?.code, 'EIO', `${c.name}: close() reports the failed upload with EIO: ${JSON.stringify(events.slice(-3))}`);
        if (error) assert.ok(['EIO', 'EACCES'].includes(error.code ?? ''), `${c.name}: a failed write says EIO or EACCES (${error.code})`);
        assert.ok(ms < BOUND_MS, `${c.name}: ended within ${BOUND_MS} ms (${ms})`);
      }
    } finally {
      await world.proxy.clearRules();
    }
    assert.deepEqual(await listKeys(world.s3, m.bucket), [], 'no object and no partial object');
    const left = await pendingUploads(world, m.bucket);
    t.diagnostic(`AbortMultipartUpload refused as well: ${left.filter((u) => u.key === orphan).length} multipart upload(s) of ${orphan} left (S3 lifecycle rules, AbortIncompleteMultipartUpload, must clean those)`);
    assert.deepEqual(left.filter((u) => u.key !== orphan), [], 'every multipart upload that could be aborted was aborted');
    await assertAnswers(m);
    await m.unmount();
  });

});

describe('engine rules under faults (unit level, over the in-memory client)', () => {
  test('a write after a part of the upload failed says EIO, the upload\'s failure, not EINVAL', async () => {
    class FailingParts extends MemoryObjectClient {
      override async uploadPart(key: string): Promise<string> {
        await new Promise((r) => setTimeout(r, 20));
        throw new S3RequestError('ServerError', { operation: 'UploadPart', bucket: this.bucket, key, status: 500 }, 'injected 500');
      }
    }
    const fs = new S3FileSystem(new FailingParts(), {
      prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, uid: 0, gid: 0, fileMode: 0o644, dirMode: 0o755,
      metadataTtlMs: 1000, negativeMetadataTtlMs: 1000, readPartSizeBytes: 8 * MiB, writePartSizeBytes: 5 * MiB,
      maxPartsInFlight: 1, prefetchBudgetBytes: 64 * MiB,
    });
    const fd = await fs.create('/f.bin', 0);
    const piece = Buffer.alloc(128 * 1024, 7);
    let offset = 0;
    let first: string | undefined;
    while (offset < 30 * MiB) {
      try {
        await fs.write('/f.bin', fd, piece, offset);
        offset += piece.length;
      } catch (err) {
        first = (err as FsError).errno;
        break;
      }
    }
    // As the kernel and cp do: the piece that failed was not written; it is written again at the same offset.
    const again = await fs.write('/f.bin', fd, piece, offset).then(() => 'OK', (err: FsError) => err.errno);
    await assert.rejects(fs.flush('/f.bin', fd));
    assert.equal(first, 'EIO', 'the write that meets the failed part says EIO');
    assert.equal(again, 'EIO', 'so does the next write at the same offset');
  });
});

describe('retry policy', () => {
  test('the retries of one request outlast a 5 s outage however the jitter falls', async () => {
    for (const random of [() => 0, () => 0.5, Math.random]) {
      const strategy = new OutageRetryStrategy(DEFAULT_RETRY_POLICY, random);
      let token = await strategy.acquireInitialRetryToken();
      let waited = 0;
      for (;;) {
        try {
          token = await strategy.refreshRetryTokenForRetry(token, { errorType: 'TRANSIENT', error: new Error('ECONNREFUSED') } as RetryErrorInfo);
        } catch {
          break;
        }
        waited += token.getRetryDelay();
      }
      assert.ok(waited >= OUTAGE_MS, `with random() = ${random === Math.random ? 'Math.random' : random()}, the retries wait ${waited} ms in all`);
    }
  });
});
