/**
 * The worker killed outright, and memory under load (docs/reliability.md), against the
 * real local S3 server and real mounts made by `sosmount` in background
 * mode.
 *
 * - SIGKILL of the worker while a file is open mid-read and another
 *   mid-write: the programs get an error at once instead of hanging, the
 *   watchdog (app/watchdog.ts) detaches the stale mount point within
 *   seconds and says so in the worker's log, a remount works, what was
 *   closed before the kill is intact, and the file being written never
 *   appears. A killed worker cannot abort its multipart upload; the next
 *   mount of the bucket aborts it from the dead worker's upload journal
 *   (app/upload-journal.ts).
 * - 16 parallel readers and a writer: the worker's VmRSS and VmHWM are
 *   sampled from /proc and printed, and bounded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  gone, isMounted, memoryOf, mountBucket, objectExists, objectMd5, pendingUploads, putObject, startWorld, statWithin,
  waitUntil, withDeadline, type World,
} from './helpers/faults-fixture.js';
import { MiB, md5, pattern, startIo, type IoEvent } from './helpers/faults-io.js';
import { run } from './helpers/processes.js';

let world: World;

before(async () => {
  world = await startWorld();
});

after(async () => {
  await world?.stop();
});

function eventOf(events: IoEvent[], kind: IoEvent['event']): IoEvent | undefined {
  return events.find((e) => e.event === kind);
}

describe('the worker is killed (SIGKILL) mid-read and mid-write', () => {
  test('the programs get an error at once; the watchdog detaches the mount point within seconds and logs it; a remount works; closed files are intact; the file being written is not in the bucket', async (t) => {
    const m = await mountBucket(t, world);
    const big = pattern('kill-read', 64 * MiB);
    await putObject(world.s3, m.bucket, 'stored/big.bin', big);

    // Files closed before the kill: a small one and a multipart one, written through the mount.
    const closedSmall = startIo({ op: 'write', path: path.join(m.mnt, 'closed-small.txt'), size: 1000, seed: 'closed-small' }, m.env);
    const closedBig = startIo({ op: 'write', path: path.join(m.mnt, 'closed-big.bin'), size: 12 * MiB, seed: 'closed-big' }, m.env);
    for (const io of [closedSmall, closedBig]) {
      const r = await withDeadline('a file closed before the kill', io.exited, 120_000);
      assert.equal(eventOf(r.events, 'close')?.code, 'OK', JSON.stringify(r.events.slice(-2)));
    }

    const reader = startIo({ op: 'read', path: path.join(m.mnt, 'stored/big.bin'), pauseAt: 16 * MiB }, m.env);
    const writer = startIo({ op: 'write', path: path.join(m.mnt, 'partial.bin'), size: 64 * MiB, seed: 'partial', pauseAt: 24 * MiB }, m.env);
    t.after(() => { reader.kill(); writer.kill(); });
    await Promise.all([reader.waitEvent('paused', 120_000), writer.waitEvent('paused', 120_000)]);
    // Mid-write for S3 too: the multipart upload has begun and parts are stored.
    await waitUntil('the multipart upload of partial.bin to begin', async () => (await pendingUploads(world, m.bucket)).some((u) => u.key === 'partial.bin'), 60_000);
    // The server lists an upload a moment before its answer reaches the
    // worker and the worker notes the id in its journal; a kill inside that
    // moment leaves an upload no one can know of (its id never reached us).
    // The kill is meant for after it.
    const journal = path.join(m.home, '.local', 'state', 'sos-mount', 'uploads', `${m.workerPid}.json`);
    await waitUntil('the worker to note the upload in its journal', async () => (await readFile(journal, 'utf8').catch(() => '')).includes('partial.bin'), 10_000);

    const killedAt = Date.now();
    process.kill(m.workerPid, 'SIGKILL');
    await waitUntil('the worker to be gone', () => gone(m.workerPid), 10_000);
    reader.resume();
    writer.resume();
    const [read, write] = await Promise.all([
      withDeadline('the reader after the kill', reader.exited, 30_000),
      withDeadline('the writer after the kill', writer.exited, 30_000),
    ]);
    const programsMs = Date.now() - killedAt;
    const readError = eventOf(read.events, 'error');
    const writeError = eventOf(write.events, 'error');
    const writeClose = eventOf(write.events, 'close');
    t.diagnostic(`after SIGKILL: reader got ${readError?.code ?? 'no error'} at ${readError?.bytes} bytes; writer got write ${writeError?.code ?? 'no error'} at ${writeError?.bytes} bytes, close ${writeClose?.code}; both ended ${programsMs} ms after the kill`);
    assert.ok(readError, `the reader gets an error: ${JSON.stringify(read.events.slice(-2))}`);
    assert.notEqual(writeClose?.code, 'OK', 'the writer never sees a successful close');

    await waitUntil('the watchdog to detach the mount point', async () =>
      !(await isMounted(m.mnt)) && (await statWithin(m.mnt, 5_000)) === 'OK', 15_000, 100);
    const sinceKill = Date.now() - killedAt;
    t.diagnostic(`the mount point was detached and answers normally ${sinceKill} ms after the kill`);
    assert.ok(sinceKill < 10_000, `detached within 10 s of the kill (${sinceKill} ms)`);
    await waitUntil('the watchdog to write its log line', async () => /worker exited unexpectedly; stale mount point cleaned/.test(await m.log()), 5_000);
    await waitUntil('the watchdog to exit', () => gone(m.watchdog.pid), 5_000);

    const again = await m.remount();
    assert.notEqual(again.workerPid, m.workerPid);
    const ls = await run('ls', ['-1', again.mnt], { env: again.env, timeoutMs: 60_000 });
    assert.equal(ls.stdout, 'closed-big.bin\nclosed-small.txt\nstored\n', `the remount lists what was closed, not the partial file: ${ls.stderr}`);
    assert.equal(await objectMd5(world.s3, m.bucket, 'closed-small.txt'), md5(pattern('closed-small', 1000)));
    assert.equal(await objectMd5(world.s3, m.bucket, 'closed-big.bin'), md5(pattern('closed-big', 12 * MiB)));
    assert.equal(await objectExists(world.s3, m.bucket, 'partial.bin'), false, 'the file being written is not in the bucket');
    const reread = await withDeadline('a reader on the remount', startIo({ op: 'read', path: path.join(again.mnt, 'stored/big.bin') }, again.env).exited, 120_000);
    assert.equal(eventOf(reread.events, 'done')?.md5, md5(big), 'the remount reads the file right');

    const left = await pendingUploads(world, m.bucket);
    t.diagnostic(`multipart uploads left by the killed worker after the remount: ${left.length} (${JSON.stringify(left.map((u) => u.key))})`);
    await t.test('no multipart upload of the killed worker is left once the bucket is mounted again', async () => {
      assert.deepEqual(left, []);
    });

    await again.unmount();
  });
});

describe('memory stays bounded', () => {
  test('16 parallel readers of a 32 MiB file and a writer of 64 MiB: the worker\'s VmRSS and VmHWM stay under 600 MiB', async (t) => {
    const m = await mountBucket(t, world, { direct: true });
    const data = pattern('memory', 32 * MiB);
    await putObject(world.s3, m.bucket, 'shared.bin', data);
    const before = await memoryOf(m.workerPid);
    let peakRss = 0;
    let sampling = true;
    const samples: number[] = [];
    const sampler = (async () => {
      while (sampling) {
        const mem = await memoryOf(m.workerPid);
        if (mem) {
          peakRss = Math.max(peakRss, mem.rssMiB);
          samples.push(mem.rssMiB);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const started = Date.now();
    const readers = Array.from({ length: 16 }, () => startIo({ op: 'read', path: path.join(m.mnt, 'shared.bin') }, m.env));
    const writer = startIo({ op: 'write', path: path.join(m.mnt, 'written.bin'), size: 64 * MiB, seed: 'memory-writer' }, m.env);
    t.after(() => { for (const io of [...readers, writer]) io.kill(); });
    let results;
    try {
      results = await withDeadline('16 readers and a writer', Promise.all([...readers, writer].map((io) => io.exited)), 180_000);
    } finally {
      sampling = false;
      await sampler;
    }
    const ms = Date.now() - started;
    const afterLoad = await memoryOf(m.workerPid);
    const hwm = afterLoad?.hwmMiB ?? NaN;
    const p50 = [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)] ?? NaN;
    t.diagnostic(`worker memory: VmRSS ${before?.rssMiB.toFixed(0)} MiB idle, peak sampled VmRSS ${peakRss.toFixed(0)} MiB (median ${p50.toFixed(0)}), VmHWM ${hwm.toFixed(0)} MiB; 16 x 32 MiB read + 64 MiB written in ${ms} ms (${((16 * 32 + 64) / (ms / 1000)).toFixed(0)} MiB/s)`);
    for (const r of results.slice(0, 16)) assert.equal(eventOf(r.events, 'done')?.md5, md5(data), `every reader reads the right bytes: ${JSON.stringify(r.events.slice(-2))}`);
    assert.equal(eventOf(results[16]!.events, 'close')?.code, 'OK', JSON.stringify(results[16]!.events.slice(-2)));
    assert.equal(await objectMd5(world.s3, m.bucket, 'written.bin'), md5(pattern('memory-writer', 64 * MiB)));
    assert.ok(hwm < 600, `VmHWM ${hwm.toFixed(0)} MiB < 600 MiB`);
    assert.ok(peakRss < 600, `VmRSS ${peakRss.toFixed(0)} MiB < 600 MiB`);
    await m.unmount();
  });
});
