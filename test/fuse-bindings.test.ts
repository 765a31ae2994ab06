/**
 * The two FUSE bindings: which one a mount uses, and that each serves real
 * mounts. libfuse 3 (ours, Linux): `ls -l` of a folder is answered from the
 * listing (READDIRPLUS), not with one LOOKUP per entry, and a new file's
 * open flags reach create(). libfuse 2 (fuse-native, macOS's binding, the
 * fallback where ours is not built): mounts, lists, reads and writes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chooseFuseBinding } from '../app/fs/fuse-adapter.js';
import { fuse3Binding, fuse3Unavailable } from '../app/fs/fuse3-session.js';
import { createLogger } from '../app/log.js';
import { gone, isMounted, mountBucket, objectMd5, putObject, seedOnDisk, startWorld, waitUntil, type World } from './helpers/faults-fixture.js';
import { md5, pattern } from './helpers/faults-io.js';
import { run, sh, shellQuote } from './helpers/processes.js';

/** The JSON log lines with this message. */
function logLines(log: string, msg: string): Array<Record<string, unknown>> {
  return log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r['msg'] === msg);
}

describe('choosing the FUSE binding', () => {
  const recorded: string[] = [];
  const log = createLogger((line) => recorded.push(line), 'debug');

  test('Linux uses libfuse 3 where it is built, and says in the log why it falls back to libfuse 2 where not', () => {
    assert.equal(chooseFuseBinding(log, {}, 'linux', () => undefined), 'libfuse3');
    assert.equal(recorded.length, 0);
    assert.equal(chooseFuseBinding(log, {}, 'linux', () => 'no libfuse3-dev at install'), 'libfuse2');
    assert.equal(recorded.length, 1);
    const line = JSON.parse(recorded[0]!) as Record<string, unknown>;
    assert.equal(line['level'], 'warn');
    assert.equal(line['reason'], 'no libfuse3-dev at install');
  });

  test('macOS uses fuse-native (libfuse 2 over macFUSE); SOSMOUNT_FUSE_BINDING overrides, and a wrong value is an error', () => {
    assert.equal(chooseFuseBinding(log, {}, 'darwin', () => undefined), 'libfuse2');
    assert.equal(chooseFuseBinding(log, { SOSMOUNT_FUSE_BINDING: 'libfuse2' }, 'linux', () => undefined), 'libfuse2');
    assert.equal(chooseFuseBinding(log, { SOSMOUNT_FUSE_BINDING: 'libfuse3' }, 'linux', () => 'whatever'), 'libfuse3');
    assert.throws(() => chooseFuseBinding(log, { SOSMOUNT_FUSE_BINDING: 'fuse4' }, 'linux', () => undefined), /SOSMOUNT_FUSE_BINDING must be libfuse3 or libfuse2, not "fuse4"/);
  });

  test('the libfuse 3 binding is built here (npm install compiled it; a silent fallback would hide it)', { skip: process.platform !== 'linux' }, () => {
    assert.equal(fuse3Unavailable(), undefined);
  });

  test('the libfuse 3 binding runs libfuse 3.12\'s thread-bounded loop where libfuse has it, the old loop below 3.12 or when built with SOSFUSE3_PRE_312_LOOP=1', { skip: process.platform !== 'linux' }, () => {
    const b = fuse3Binding();
    assert.ok(b.FUSE_VERSION >= 310, `libfuse ${b.FUSE_VERSION}`);
    const forced = process.env['SOSFUSE3_PRE_312_LOOP'] === '1';
    assert.equal(b.PRE_312_LOOP, forced || b.FUSE_VERSION < 312, `libfuse ${b.FUSE_VERSION}, SOSFUSE3_PRE_312_LOOP=${forced ? 1 : 0}`);
  });
});

describe('real mounts through each binding', { skip: process.platform !== 'linux' }, () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(async () => {
    await world?.stop();
  });

  test('libfuse 3: `ls -l` of 300 files is served by the listing, with no LOOKUP per entry, and shows every size', async (t) => {
    const bucket = `fuse3-${Date.now().toString(36)}`;
    const names = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, '0')}.txt`);
    await seedOnDisk(world, bucket, names.map((n, i) => [`many/${n}`, 'x'.repeat(i + 1)]));
    const m = await mountBucket(t, world, { bucket, flags: ['--metadata-ttl', '60'] });
    const r = await sh(`ls -l ${shellQuote(path.join(m.mnt, 'many'))}`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').slice(1);
    assert.equal(rows.length, 300);
    for (const [i, row] of rows.entries()) {
      const cols = row.split(/\s+/);
      assert.equal(cols[8], names[i]);
      assert.equal(Number(cols[4]), i + 1, `size of ${names[i]}`);
    }
    await m.unmount();
    const [mounted] = logLines(await m.log(), 'mounted');
    assert.equal(mounted?.['binding'], 'libfuse3');
    const [unmounted] = logLines(await m.log(), 'unmounted');
    const ops = unmounted?.['fuseOperations'] as Record<string, number> | undefined;
    assert.ok(ops, 'the worker logs the FUSE operations it served');
    assert.equal(ops['readdir'], 1, JSON.stringify(ops));
    // The folder itself and the root may be looked up; 300 entries are not.
    assert.ok((ops['getattr'] ?? 0) <= 5, `getattr per entry: ${JSON.stringify(ops)}`);
  });

  test('libfuse 3: a program reads a big folder\'s first entries while its later pages are still on their way', async (t) => {
    const bucket = `stream-${Date.now().toString(36)}`;
    await seedOnDisk(world, bucket, Array.from({ length: 2500 }, (_, i): [string, string] => [`big/k${String(i).padStart(4, '0')}`, 'x']));
    const m = await mountBucket(t, world, { bucket });
    // The second page is held 3 s; a third page asked for means the second was answered.
    await world.proxy.setRules([
      { id: 'held', match: { op: 'ListObjectsV2', query: 'continuation-token' }, action: { kind: 'stall', ms: 3_000 }, times: 1 },
      { id: 'later', match: { op: 'ListObjectsV2', query: 'continuation-token' }, action: { kind: 'stall', ms: 1 } },
    ]);
    t.after(() => world.proxy.clearRules());
    const reader = spawn(process.execPath, ['-e', `
      (async () => {
        const d = await require('fs').promises.opendir(process.argv[1]);
        let n = 0;
        for await (const e of d) if (n++ === 0) console.log('first ' + e.name);
        console.log('count ' + n);
      })().catch((e) => { console.log('error ' + e.code); });`, path.join(m.mnt, 'big')], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => { reader.kill('SIGKILL'); });
    let out = '';
    reader.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    await waitUntil('the first entry', () => out.includes('\n'), 30_000);
    const stats = await world.proxy.stats();
    assert.equal(out.split('\n')[0], 'first k0000');
    assert.equal(stats.fired['held'], 1, 'the second page was asked for');
    assert.equal(stats.fired['later'] ?? 0, 0, 'and not yet answered: the first entries came before the listing ended');
    await waitUntil('the whole listing', () => /count|error/.test(out), 30_000);
    assert.match(out, /\ncount 2500\n/);
    await m.unmount();
  });

  test('libfuse 3: closing a file opened for reading costs no trip to the engine; closing a written file still completes its upload', async (t) => {
    const bucket = `flush-${Date.now().toString(36)}`;
    await seedOnDisk(world, bucket, Array.from({ length: 20 }, (_, i): [string, string] => [`r/f${i}`, `body ${i}`]));
    const m = await mountBucket(t, world, { bucket });
    const r = await sh(`cat ${shellQuote(path.join(m.mnt, 'r'))}/f* > /dev/null && echo written > ${shellQuote(path.join(m.mnt, 'w.txt'))}`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await objectMd5(world.s3, bucket, 'w.txt'), md5(Buffer.from('written\n')), 'in the bucket when the shell closed it');
    await m.unmount();
    const [unmounted] = logLines(await m.log(), 'unmounted');
    const ops = unmounted?.['fuseOperations'] as Record<string, number> | undefined;
    assert.ok(ops);
    assert.equal(ops['release'], 21, JSON.stringify(ops));
    // The shell closes the written file twice (the redirection dup2s it to fd 1); the 20 reads close none.
    assert.ok(ops['flush'] === 1 || ops['flush'] === 2, `only the written file's closes reached the engine: ${JSON.stringify(ops)}`);
  });

  test('threads reading far-apart parts of one descriptor at once all get their bytes, and no read fails in the engine', async (t) => {
    // The kernel sends a descriptor's reads to the engine concurrently; one
    // that moves the read-ahead window used to cancel the transfer another
    // was waiting for (EIO, which the kernel hid by reading the page again).
    const bucket = `preads-${Date.now().toString(36)}`;
    const body = pattern('preads', 48 * 1024 * 1024);
    await world.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await putObject(world.s3, bucket, 'data.bin', body);
    const m = await mountBucket(t, world, { bucket });
    const offsets = [0, 40, 8, 24, 1, 32, 16, 44].map((mib) => mib * 1024 * 1024 + 4096);
    const r = await run(process.execPath, ['-e', `
      const fs = require('fs'), crypto = require('crypto');
      const fd = fs.openSync(process.argv[1], 'r');
      const offsets = JSON.parse(process.argv[2]);
      Promise.all(offsets.map((off) => new Promise((resolve, reject) => {
        const buf = Buffer.alloc(1024 * 1024);
        fs.read(fd, buf, 0, buf.length, off, (err, n) => err ? reject(err) : resolve(crypto.createHash('md5').update(buf.subarray(0, n)).digest('hex')));
      }))).then((sums) => console.log(JSON.stringify(sums)), (err) => { console.log(err.code); process.exitCode = 1; });`,
    path.join(m.mnt, 'data.bin'), JSON.stringify(offsets)], { env: { ...m.env, UV_THREADPOOL_SIZE: '8' }, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout) as string[], offsets.map((off) => md5(body.subarray(off, off + 1024 * 1024))));
    await m.unmount();
    assert.deepEqual(logLines(await m.log(), 'read failed'), []);
  });

  test('libfuse 3: a new file opened with O_SYNC is refused at create() (the open flags reach us) and no object appears', async (t) => {
    const m = await mountBucket(t, world, {});
    const file = path.join(m.mnt, 'sync-new.txt');
    const r = await run(process.execPath, ['-e', `
      const fs = require('fs');
      try { fs.closeSync(fs.openSync(process.argv[1], fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_SYNC)); console.log('opened'); }
      catch (e) { console.log(e.code); }`, file], { timeoutMs: 30_000 });
    assert.equal(r.stdout.trim(), 'EINVAL');
    assert.equal(await objectMd5(world.s3, m.bucket, 'sync-new.txt'), undefined);
    await m.unmount();
  });

  test('files written one after another into a new folder all stay visible, also once the first is older than the TTL', async (t) => {
    const m = await mountBucket(t, world, {});
    const dir = path.join(m.mnt, 'new');
    const r = await sh(`mkdir ${shellQuote(dir)} && for i in 1 2 3 4; do echo $i > ${shellQuote(dir)}/f$i; sleep 0.6; done; stat -c '%s %n' ${shellQuote(dir)}/f1 ${shellQuote(dir)}/f4`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n').map((l) => l.split(' ')[0]), ['2', '2']);
    await m.unmount();
  });

  test('libfuse 3: SIGTERM unmounts and the worker exits although a program still has its current folder inside the mount', async (t) => {
    const m = await mountBucket(t, world, {});
    const holder = spawn('sleep', ['30'], { cwd: m.mnt, stdio: 'ignore' });
    t.after(() => { holder.kill('SIGKILL'); });
    process.kill(m.workerPid, 'SIGTERM');
    await waitUntil('the worker to exit', () => gone(m.workerPid), 15_000);
    assert.equal(await isMounted(m.mnt), false, 'the folder is detached');
  });

  test('libfuse 2 (SOSMOUNT_FUSE_BINDING=libfuse2): a file copied in is in the bucket whole, and lists and reads back', async (t) => {
    const m = await mountBucket(t, world, { env: { SOSMOUNT_FUSE_BINDING: 'libfuse2' } });
    const body = pattern('libfuse2', 3 * 1024 * 1024 + 17);
    const src = path.join(m.work, 'src.bin');
    await writeFile(src, body);
    const cp = await sh(`cp ${shellQuote(src)} ${shellQuote(path.join(m.mnt, 'copied.bin'))} && ls -l ${shellQuote(m.mnt)} && md5sum < ${shellQuote(path.join(m.mnt, 'copied.bin'))}`, { env: m.env, timeoutMs: 60_000 });
    assert.equal(cp.code, 0, cp.stderr);
    assert.match(cp.stdout, new RegExp(`${body.length} .* copied\\.bin`));
    assert.ok(cp.stdout.includes(md5(body)), cp.stdout);
    assert.equal(await objectMd5(world.s3, m.bucket, 'copied.bin'), md5(body));
    await m.unmount();
    const [mounted] = logLines(await m.log(), 'mounted');
    assert.equal(mounted?.['binding'], 'libfuse2');
  });
});
