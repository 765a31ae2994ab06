/**
 * Editing mode (--allow-edit) through real mounts of the local S3 server,
 * with the programs a user has: GIO (what GNOME's file manager and editors
 * do), the shell, rsync, cp -a, tar, SQLite, git. Every outcome is checked
 * through the S3 API after the unmount, which waits for the worker to exit
 * (its uploads drained). The same programs on a mount with default flags
 * still fail, as with Mountpoint. Then the faults: a worker killed after a
 * save, a concurrent change (a conflict copy), a full staging disk, and a
 * folder rename interrupted by an outage and by a refusal.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listKeys, objectBytes } from './helpers/bucket-view.js';
import { gone, mountBucket, waitUntil, startWorld, type Mount, type World } from './helpers/faults-fixture.js';
import { CLI, run, sh, shellQuote as q, tempDir } from './helpers/processes.js';

let world: World;
let src: string;
let s3: S3Client;

function md5(data: Uint8Array | string): string {
  return createHash('md5').update(data).digest('hex');
}

function getBytes(bucket: string, key: string): Promise<Buffer | undefined> {
  return objectBytes(s3, bucket, key);
}

async function getText(bucket: string, key: string): Promise<string | undefined> {
  return (await getBytes(bucket, key))?.toString('utf8');
}

function keys(bucket: string, prefix = ''): Promise<string[]> {
  return listKeys(s3, bucket, prefix);
}

async function put(bucket: string, key: string, body: string | Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

async function seed(bucket: string, objects: ReadonlyArray<readonly [string, string | Buffer]>, concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, objects.length) }, async () => {
    while (next < objects.length) {
      const [key, body] = objects[next++]!;
      await put(bucket, key, body);
    }
  }));
}

/** A shell script in a child, with the mount's environment; its exit code and output. */
async function shell(m: Mount, script: string): Promise<{ code: number | null; out: string }> {
  const r = await sh(script, { env: { ...m.env, LANG: 'C', LC_ALL: 'C' }, timeoutMs: 120_000 });
  return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

async function shellOk(m: Mount, script: string): Promise<string> {
  const r = await shell(m, script);
  assert.equal(r.code, 0, `${script}\n${r.out}`);
  return r.out;
}

/** Copies every key under `prefix` into `dir`, as files at their relative paths (folder objects become folders). */
async function download(bucket: string, prefix: string, dir: string): Promise<void> {
  for (const key of await keys(bucket, prefix)) {
    const rel = key.slice(prefix.length);
    const target = path.join(dir, rel);
    if (key.endsWith('/')) {
      await mkdir(target, { recursive: true });
      continue;
    }
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, (await getBytes(bucket, key))!);
  }
}

const PY_ENV: NodeJS.ProcessEnv = { ...process.env, LANG: 'C', LC_ALL: 'C' };

async function python(script: string, ...args: string[]): Promise<string> {
  const r = await run('python3', ['-c', script, ...args], { env: PY_ENV, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

const OFFSET_WRITE = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, sys.argv[2].encode(), int(sys.argv[3]))
os.close(fd)
`;

const SQLITE_FILL = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('create table notes (id integer primary key, body text)')
with db:
    db.executemany('insert into notes (body) values (?)', [('note %d' % i,) for i in range(500)])
with db:
    db.execute("update notes set body = 'edited' where id = 7")
db.close()
print('OK')
`;

const SQLITE_READ = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute('select count(*), (select body from notes where id = 7) from notes').fetchone())
`;

before(async () => {
  world = await startWorld();
  s3 = world.s3;
  src = await tempDir('editing-src');
  await mkdir(path.join(src, 'tree', 'sub'), { recursive: true });
  await writeFile(path.join(src, 'doc.txt'), 'first version\n');
  await writeFile(path.join(src, 'doc-v2.txt'), 'second version\n');
  for (let i = 0; i < 5; i++) await writeFile(path.join(src, 'tree', 'sub', `f${i}.bin`), randomBytes(3000 + i));
  await writeFile(path.join(src, 'tree', 'top.txt'), 'top\n');
  // Old times, so a copy that keeps them is told from one that does not.
  await shOkPlain(`touch -d '2020-01-02 03:04:05' ${q(path.join(src, 'tree', 'top.txt'))}`);
  await shOkPlain(`cd ${q(src)} && tar cf tree.tar tree`);
});

after(async () => {
  await world?.stop();
  if (src) await rm(src, { recursive: true, force: true });
});

async function shOkPlain(script: string): Promise<void> {
  const r = await sh(script);
  assert.equal(r.code, 0, r.stderr);
}

describe('editing mode: what desktop programs and tools do to a folder', () => {
  test('copy, replace, save, New Folder and rename, rename of files and folders, >, >>, offset write, touch, rsync -a, cp -a, tar x, SQLite, git, trash: all in the bucket after unmount', async (t) => {
    const m = await mountBucket(t, world, { flags: ['--allow-edit'] });
    const b = m.bucket;
    await seed(b, [
      ['stored.txt', 'stored\n'],
      ['append.txt', 'line 1\n'],
      ['offset.bin', 'abcdefghij'],
      ['old-folder/a.txt', 'a'],
      ['old-folder/deeper/b.txt', 'b'],
      ['trash-me.txt', 'trash'],
      ['saved.txt', 'before the save\n'],
      ['touched.txt', 'kept'],
    ]);
    const mnt = (p: string): string => q(path.join(m.mnt, p));
    const from = (p: string): string => q(path.join(src, p));

    await shellOk(m, `gio copy ${from('doc.txt')} ${mnt('copied.txt')}`);
    await shellOk(m, `gio copy ${from('doc.txt')} ${mnt('replaced.txt')} && gio copy ${from('doc-v2.txt')} ${mnt('replaced.txt')}`);
    await shellOk(m, `printf 'after the save\\n' | gio save ${mnt('saved.txt')}`);
    await shellOk(m, `mkdir ${mnt('Untitled Folder')} && mv ${mnt('Untitled Folder')} ${mnt('Photos')} && cp ${from('doc.txt')} ${mnt('Photos/doc.txt')}`);
    await shellOk(m, `mkdir ${mnt('Empty Folder')}`);
    await shellOk(m, `mv ${mnt('stored.txt')} ${mnt('renamed.txt')}`);
    await shellOk(m, `mv ${mnt('old-folder')} ${mnt('new-folder')}`);
    await shellOk(m, `echo hello > ${mnt('echo.txt')} && echo again >> ${mnt('echo.txt')} && echo 'line 2' >> ${mnt('append.txt')}`);
    await python(OFFSET_WRITE, path.join(m.mnt, 'offset.bin'), 'XYZ', '3');
    await shellOk(m, `touch ${mnt('touch-new.txt')} ${mnt('touched.txt')}`);
    await shellOk(m, `rsync -a ${from('tree/')} ${mnt('rsync/')}`);
    const rsyncTime = await shellOk(m, `stat -c %Y ${mnt('rsync/top.txt')}`);
    assert.equal(rsyncTime.trim(), String(Date.UTC(2020, 0, 2, 3, 4, 5) / 1000), 'rsync -a set the time of the file it wrote');
    await shellOk(m, `cp -a ${from('tree')} ${mnt('cp-a')}`);
    await shellOk(m, `mkdir ${mnt('untar')} && tar xf ${from('tree.tar')} -C ${mnt('untar')}`);
    assert.equal(await python(SQLITE_FILL, path.join(m.mnt, 'notes.db')), 'OK');
    assert.equal(await python(SQLITE_READ, path.join(m.mnt, 'notes.db')), "(500, 'edited')");
    await shellOk(m, `mkdir ${mnt('repo')} && cd ${mnt('repo')} && git init -q && echo 'hello' > README && git add README && git -c user.email=t@example.com -c user.name=T commit -qm 'first commit'`);
    await shellOk(m, `gio trash ${mnt('trash-me.txt')}`);
    const listed = (await shellOk(m, `ls -A ${q(m.mnt)}`)).split('\n').filter(Boolean).sort();
    t.diagnostic(`mount root: ${listed.join(', ')}`);
    await m.unmount();

    assert.equal(await getText(b, 'copied.txt'), 'first version\n');
    assert.equal(await getText(b, 'replaced.txt'), 'second version\n');
    assert.equal(await getText(b, 'saved.txt'), 'after the save\n');
    assert.equal(await getText(b, 'Photos/doc.txt'), 'first version\n');
    assert.deepEqual(await keys(b, 'Photos'), ['Photos/', 'Photos/doc.txt'], 'the renamed folder, nothing under its first name');
    assert.deepEqual(await keys(b, 'Untitled'), []);
    assert.deepEqual(await keys(b, 'Empty Folder'), ['Empty Folder/'], 'an empty folder is kept as a folder object');
    assert.equal(await getText(b, 'renamed.txt'), 'stored\n');
    assert.equal(await getBytes(b, 'stored.txt'), undefined);
    assert.deepEqual(await keys(b, 'old-folder'), []);
    assert.deepEqual(await keys(b, 'new-folder/'), ['new-folder/a.txt', 'new-folder/deeper/b.txt']);
    assert.equal(await getText(b, 'new-folder/deeper/b.txt'), 'b');
    assert.equal(await getText(b, 'echo.txt'), 'hello\nagain\n');
    assert.equal(await getText(b, 'append.txt'), 'line 1\nline 2\n');
    assert.equal(await getText(b, 'offset.bin'), 'abcXYZghij');
    assert.equal(await getText(b, 'touch-new.txt'), '');
    assert.equal(await getText(b, 'touched.txt'), 'kept');
    for (const dir of ['rsync', 'cp-a', 'untar/tree']) {
      assert.equal(await getText(b, `${dir}/top.txt`), 'top\n', dir);
      for (let i = 0; i < 5; i++) assert.equal((await getBytes(b, `${dir}/sub/f${i}.bin`))?.length, 3000 + i, `${dir}/sub/f${i}.bin`);
    }
    assert.ok(!(await keys(b, 'rsync/')).some((k) => /\/\.[^/]+\.\w{6}$/.test(k)), 'no rsync temporary file left');
    assert.ok(!(await keys(b)).some((k) => k.includes('.goutputstream')), 'no GIO temporary file left');

    const local = await tempDir('editing-check');
    try {
      await download(b, '', local);
      assert.equal(await python(SQLITE_READ, path.join(local, 'notes.db')), "(500, 'edited')", 'the database in the bucket is whole');
      assert.ok(!(await keys(b)).includes('notes.db-journal'), 'the rollback journal was deleted');
      const log = await run('git', ['-C', path.join(local, 'repo'), 'log', '--format=%s'], { timeoutMs: 30_000 });
      assert.equal(log.stdout.trim(), 'first commit', log.stderr);
      const fsck = await run('git', ['-C', path.join(local, 'repo'), 'fsck', '--strict'], { timeoutMs: 30_000 });
      assert.equal(fsck.code, 0, fsck.stderr);
    } finally {
      await rm(local, { recursive: true, force: true });
    }
    assert.equal(await getBytes(b, 'trash-me.txt'), undefined, 'trashed: gone from its folder');
    assert.equal(await getText(b, '.Trash-0/files/trash-me.txt'), 'trash', 'and in the mount\'s trash folder, as on any removable disk');
    const staging = path.join(m.home, '.local', 'state', 'sos-mount', 'staging');
    const left = await readdir(staging, { recursive: true }).catch(() => [] as string[]);
    assert.deepEqual(left.filter((f) => f.endsWith('.json') || f.endsWith('.data')), [], 'nothing left staged');
  });

  test('with default flags the same programs fail, as with Mountpoint, and the bucket keeps its objects', async (t) => {
    const m = await mountBucket(t, world);
    const b = m.bucket;
    await seed(b, [['saved.txt', 'before\n'], ['stored.txt', 'stored\n'], ['append.txt', 'line 1\n'], ['offset.bin', 'abcdefghij'], ['folder/a.txt', 'a'], ['trash-me.txt', 'trash']]);
    const mnt = (p: string): string => q(path.join(m.mnt, p));
    const from = (p: string): string => q(path.join(src, p));
    const fails: Array<[string, string]> = [
      ['gio save over a file', `printf 'after\\n' | gio save ${mnt('saved.txt')}`],
      ['rename of a file', `mv ${mnt('stored.txt')} ${mnt('renamed.txt')}`],
      ['rename of a folder', `mv ${mnt('folder')} ${mnt('folder2')}`],
      ['New Folder and rename', `mkdir ${mnt('Untitled Folder')} && mv ${mnt('Untitled Folder')} ${mnt('Photos')}`],
      ['>>', `echo 'line 2' >> ${mnt('append.txt')}`],
      ['offset write', `python3 -c ${q(OFFSET_WRITE)} ${mnt('offset.bin')} XYZ 3`],
      ['rsync -a', `rsync -a ${from('tree/')} ${mnt('rsync/')}`],
      ['tar x', `mkdir -p ${mnt('untar')} && tar xf ${from('tree.tar')} -C ${mnt('untar')}`],
      ['SQLite', `python3 -c ${q(SQLITE_FILL)} ${mnt('notes.db')}`],
      ['git commit', `mkdir ${mnt('repo')} && cd ${mnt('repo')} && git init -q && echo hello > README && git add README && git -c user.email=t@example.com -c user.name=T commit -qm first`],
      ['gio trash', `gio trash ${mnt('trash-me.txt')}`],
    ];
    for (const [what, script] of fails) {
      const r = await shell(m, script);
      t.diagnostic(`${what}: exit ${r.code}: ${r.out.trim().split('\n').pop() ?? ''}`);
      assert.notEqual(r.code, 0, `${what} fails without --allow-edit`);
    }
    await m.unmount();
    assert.equal(await getText(b, 'saved.txt'), 'before\n');
    assert.equal(await getText(b, 'stored.txt'), 'stored\n');
    assert.equal(await getText(b, 'append.txt'), 'line 1\n');
    assert.equal(await getText(b, 'offset.bin'), 'abcdefghij');
    assert.equal(await getText(b, 'folder/a.txt'), 'a');
    assert.equal(await getText(b, 'trash-me.txt'), 'trash');
    assert.deepEqual(await keys(b, 'folder2'), []);
  });
});

describe('editing mode: faults', () => {
  test('SIGKILL after a save: the next mount uploads it and says so', async (t) => {
    // A long quiet period: the kill comes before any upload. The copy goes
    // to a folder of its own: a file created beside it (the save's
    // temporary file) would end its quiet period.
    const m = await mountBucket(t, world, { flags: ['--allow-edit', '--upload-delay', '600'] });
    await put(m.bucket, 'report.txt', 'old\n');
    const body = randomBytes(200_000);
    await writeFile(path.join(src, 'kill-body.bin'), body);
    await shellOk(m, `mkdir ${q(path.join(m.mnt, 'copies'))} && cp ${q(path.join(src, 'kill-body.bin'))} ${q(path.join(m.mnt, 'copies', 'new.bin'))}`);
    // An editor's save without fsync (gio save fsyncs, which uploads at once): a temporary file renamed over the original.
    await python(`
import os, sys
tmp = os.path.join(os.path.dirname(sys.argv[1]), '.report.txt.swp')
with open(tmp, 'w') as f:
    f.write('saved before the kill\\n')
os.rename(tmp, sys.argv[1])
`, path.join(m.mnt, 'report.txt'));
    // assert.ok, not equal: a failing equal would print a diff of 200 KB.
    assert.ok(await getBytes(m.bucket, 'copies/new.bin') === undefined, 'not uploaded yet');
    process.kill(m.workerPid, 'SIGKILL');
    await waitUntil('the worker to be gone', () => gone(m.workerPid), 10_000);
    await waitUntil('the watchdog to exit', () => gone(m.watchdog.pid), 15_000);
    const again = await m.remount();
    try {
      await waitUntil('the next mount to upload what was saved', async () => md5((await getBytes(m.bucket, 'copies/new.bin')) ?? '') === md5(body)
        && (await getText(m.bucket, 'report.txt')) === 'saved before the kill\n', 30_000, 200);
    } catch (err) {
      for (const line of (await again.log()).split('\n').filter((l) => /stag|recover|upload|rename/.test(l))) t.diagnostic(line.slice(0, 500));
      throw err;
    }
    assert.match(await again.log(), /staged files recovered.*"uploading":2/);
    await again.unmount();
    assert.ok(!(await keys(m.bucket)).some((k) => k.includes('.swp')), 'the temporary name never reached the bucket');
  });

  test('a second editing-mode mount of the same bucket is refused while the first runs: they would share one staging folder', async (t) => {
    const m = await mountBucket(t, world, { flags: ['--allow-edit'] });
    const other = path.join(m.work, 'second');
    await mkdir(other);
    // Registered after mountBucket's, so it runs first: nothing is removed through a mount left by a failure.
    t.after(async () => { await run('fusermount', ['-uz', other]); });
    const r = await run(process.execPath, [CLI, '--endpoint-url', world.proxy.endpoint, '--allow-edit', m.bucket, other], { env: m.env, timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /staging folder .* is in use by process \d+/);
    await m.unmount();
    const again = await run(process.execPath, [CLI, '--endpoint-url', world.proxy.endpoint, '--allow-edit', m.bucket, other], { env: m.env, timeoutMs: 60_000 });
    assert.equal(again.code, 0, `once the first is unmounted the second mounts: ${again.stderr}`);
    // As mountBucket's unmount: GIO's daemons, started by the tests above, may hold a fresh mount for a moment.
    const umount = await run('umount', [other]);
    if (umount.code !== 0) await run('fusermount', ['-uz', other]);
    const staging = path.join(m.home, '.local', 'state', 'sos-mount', 'staging');
    try {
      await waitUntil('the second worker to release its staging folder', async () =>
        (await readdir(staging, { recursive: true }).catch(() => [] as string[])).every((f) => !f.endsWith('lock')), 15_000);
    } catch (err) {
      t.diagnostic(`umount: ${umount.code} ${umount.stderr}; staging: ${(await readdir(staging, { recursive: true })).join(' ')}`);
      const logs = path.join(m.home, '.local', 'state', 'sos-mount', 'logs');
      for (const f of await readdir(logs)) t.diagnostic(`${f}: ${(await readFile(path.join(logs, f), 'utf8')).split('\n').slice(-6).join(' | ').slice(0, 1500)}`);
      throw err;
    }
  });

  test('a concurrent change through the S3 API: ours is stored as a conflict copy beside theirs, both intact', async (t) => {
    const m = await mountBucket(t, world, { flags: ['--allow-edit', '--upload-delay', '2'] });
    await put(m.bucket, 'notes/plan.txt', 'v1\n');
    await shellOk(m, `printf 'ours\\n' > ${q(path.join(m.mnt, 'notes/plan.txt'))}`);
    await put(m.bucket, 'notes/plan.txt', 'theirs\n');
    await m.unmount();
    assert.equal(await getText(m.bucket, 'notes/plan.txt'), 'theirs\n', 'the other writer\'s version stays');
    const copies = (await keys(m.bucket, 'notes/')).filter((k) => k !== 'notes/plan.txt');
    assert.equal(copies.length, 1, `one conflict copy: ${copies.join(', ')}`);
    assert.match(copies[0]!, /^notes\/plan \(conflict \d{4}-\d{2}-\d{2} \d{6}\)\.txt$/);
    assert.equal(await getText(m.bucket, copies[0]!), 'ours\n');
    assert.match(await m.log(), /conflict copy/);
  });

  test('a full staging disk: the program gets ENOSPC and nothing partial reaches the bucket; small files still work', async (t) => {
    const tiny = await tempDir('editing-tmpfs');
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', tiny]);
    if (mounted.code !== 0) {
      t.skip(`cannot mount a tmpfs here: ${mounted.stderr}`);
      return;
    }
    t.after(async () => {
      await run('umount', [tiny]);
      await rm(tiny, { recursive: true, force: true });
    });
    const m = await mountBucket(t, world, { flags: ['--allow-edit', '--staging-directory', tiny] });
    const big = await shell(m, `dd if=/dev/zero of=${q(path.join(m.mnt, 'big.bin'))} bs=64k count=32`);
    assert.notEqual(big.code, 0);
    assert.match(big.out, /No space left on device/);
    // dd has exited, but the kernel sends the release of its file after
    // close() returns: the failed stage's bytes go when the worker gets it.
    await waitUntil('the failed file\'s staged bytes to be removed', async () => {
      const s = await statfs(tiny);
      return s.bavail * s.bsize >= 256 * 1024;
    }, 10_000, 20);
    await shellOk(m, `printf 'small\\n' > ${q(path.join(m.mnt, 'small.txt'))}`);
    await m.unmount();
    assert.equal(await getBytes(m.bucket, 'big.bin'), undefined, 'no partial object');
    assert.equal(await getText(m.bucket, 'small.txt'), 'small\n');
  });

  for (const fault of ['outage', 'refusal'] as const) {
    test(`a rename of a folder of 1,000 keys interrupted by ${fault === 'outage' ? 'a server outage' : 'an access refusal'}: every object is under exactly one of its names`, async (t) => {
      const m = await mountBucket(t, world, { flags: ['--allow-edit'] });
      const n = 1000;
      const name = (i: number): string => `k-${String(i).padStart(4, '0')}.txt`;
      await seed(m.bucket, Array.from({ length: n }, (_, i) => [`big/${name(i)}`, `body ${i}`] as const), 32);
      await world.proxy.setRules([fault === 'outage'
        ? { id: 'outage', match: { op: 'CopyObject' }, nth: 300, action: { kind: 'go-away', ms: 3_000 } }
        : { id: 'refusal', match: { op: 'CopyObject' }, nth: 500, times: 100_000, action: { kind: 'error', status: 403, code: 'AccessDenied' } }]);
      // One rename(2), as a file manager sends (mv would try again into the half-made folder).
      const r = await shell(m, `python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' ${q(path.join(m.mnt, 'big'))} ${q(path.join(m.mnt, 'moved'))}`);
      const fired = (await world.proxy.stats()).fired;
      await world.proxy.clearRules();
      t.diagnostic(`mv: exit ${r.code} ${r.out.trim()}; faults fired: ${JSON.stringify(fired)}`);
      assert.ok((fired[fault] ?? 0) > 0, 'the fault happened during the rename');
      if (fault === 'refusal') {
        assert.notEqual(r.code, 0, 'the rename reports that it stopped');
        assert.match(r.out, /Input\/output error/);
        assert.match(await m.log(), /folder rename stopped.*are under .*moved\/.*still under .*big\//);
      }
      await m.unmount();
      const old = new Set((await keys(m.bucket, 'big/')).map((k) => k.slice('big/'.length)));
      const moved = new Set((await keys(m.bucket, 'moved/')).map((k) => k.slice('moved/'.length)));
      t.diagnostic(`${moved.size} under moved/, ${old.size} under big/`);
      for (let i = 0; i < n; i++) {
        const inOld = old.has(name(i));
        const inNew = moved.has(name(i));
        assert.ok(inOld !== inNew, `${name(i)} is under exactly one name (old: ${inOld}, new: ${inNew})`);
        assert.equal(await getText(m.bucket, `${inNew ? 'moved' : 'big'}/${name(i)}`), `body ${i}`);
      }
      if (fault === 'outage') assert.equal(moved.size, n, 'the outage was ridden out: all moved');
      else assert.ok(moved.size > 0 && moved.size < n, 'stopped half way');
    });
  }
});
