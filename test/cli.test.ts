/**
 * The `sosmount` command line as a user meets it: real processes, the real
 * local S3 server (test/helpers/s3-server.ts), real FUSE. Mount-time
 * failures print one line and exit 1 leaving nothing behind; bad flags are
 * usage errors (exit 2) naming the flag; --foreground stays attached and
 * Ctrl-C unmounts cleanly; a worker killed with SIGKILL leaves a stale mount
 * that the next `sosmount` cleans; the secret never leaks to argv, the
 * environment or the log.
 *
 * Each test has its own HOME, folders and bucket (see fixture()), so tests
 * run side by side, and this file beside others, without seeing each
 * other's workers or objects.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { closedPort, startErrorEndpoint } from './helpers/error-endpoint.js';
import { CLI, awsHome, cleanEnv, execQuiet, fsOp, run, sh, sosmount, tempDir, waitFor, type RunResult } from './helpers/processes.js';
import { isMountPoint } from '../app/worker/mount-point.js';
import { EXOSCALE_ZONES } from '../app/s3/zones.js';

const GOOD = { accessKeyId: 'EXOCLI0123456789', secretAccessKey: 'cli-secret-Qz7vN3kP1xW9' };

let server: TestS3Server;

before(async () => {
  server = await startS3Server({ credentials: [GOOD] });
});

after(async () => {
  await server?.stop();
});

// ---------------------------------------------------------------------------
// Fixtures and process helpers

interface Fixture {
  /** A bucket of its own, empty at the start of the test. */
  bucket: string;
  home: string;
  work: string;
  /** An empty folder to mount on. */
  mnt: string;
  env: NodeJS.ProcessEnv;
}

/**
 * A fresh HOME (its own, so this test's workers can be told apart from any
 * other test's by their environment) with the profiles `good`,
 * `wrongsecret` and `unknownkey`, and an empty mount folder. Cleans up
 * after the test: unmounts, ends this HOME's workers, removes the folders.
 * Each fixture has its own empty bucket, so tests running side by side never
 * see each other's objects.
 */
async function fixture(t: TestContext, opts: { profiles?: boolean; extraEnv?: Record<string, string> } = {}): Promise<Fixture> {
  const home = opts.profiles === false
    ? await tempDir('home')
    : await awsHome({
      good: GOOD,
      wrongsecret: { accessKeyId: GOOD.accessKeyId, secretAccessKey: 'not-the-secret-0000' },
      unknownkey: { accessKeyId: 'EXONOSUCHKEY000000', secretAccessKey: GOOD.secretAccessKey },
    });
  const bucket = `cli-${randomBytes(6).toString('hex')}`;
  await server.client().send(new CreateBucketCommand({ Bucket: bucket }));
  const work = await tempDir('cli');
  const mnt = path.join(work, 'mnt');
  await mkdir(mnt);
  const env = cleanEnv(home, opts.extraEnv);
  // Logs must land in HOME/.local/state/sos-mount/logs, whatever the developer's setup.
  delete env['XDG_STATE_HOME'];
  t.after(async () => {
    // This test's workers, and anything they left running on its folders
    // (a program stuck on a dead mount would otherwise hang there for ever).
    for (const pid of [...await workersOf(home), ...await processesMentioning(work)]) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    for (const dir of await mountsUnder(work)) await execQuiet('fusermount', ['-uz', dir]);
    await rm(work, { recursive: true, force: true }).catch(() => {});
    await rm(home, { recursive: true, force: true }).catch(() => {});
  });
  return { bucket, home, work, mnt, env };
}

/** Running `sosmount-worker` processes whose HOME is `home`. */
async function workersOf(home: string): Promise<number[]> {
  const r = await run('pgrep', ['-f', 'sosmount-worker']);
  const pids: number[] = [];
  for (const line of r.stdout.split('\n')) {
    const pid = Number(line.trim());
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.startsWith('sosmount-worker')) continue;
      const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
      if (environ.includes(`HOME=${home}`)) pids.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Processes other than this one whose command line contains `text` (a test's own temp folder). */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if ((await readFile(`/proc/${name}/cmdline`, 'utf8')).includes(text)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** stat(1) of `dir`: OK, ENOTCONN, another error, or HANG when it does not answer within `ms`. */
async function statWithin(dir: string, ms: number): Promise<string> {
  try {
    const r = await run('stat', ['-c', '%i', dir], { timeoutMs: ms, env: { ...process.env, LC_ALL: 'C' } });
    if (r.code === 0) return 'OK';
    return /Transport endpoint is not connected/.test(r.stderr) ? 'ENOTCONN' : `error: ${r.stderr.trim()}`;
  } catch (err) {
    if (/timed out/.test((err as Error).message)) return 'HANG';
    throw err;
  }
}

/** Mount points inside `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n')
    .map((line) => unescapeMountInfo(line.split(' ')[4] ?? ''))
    .filter((p) => p.startsWith(dir + path.sep))
    .sort((a, b) => b.length - a.length);
}

function unescapeMountInfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** How many mounts sit exactly on `dir` (a second mount on top would make 2). */
async function mountCount(dir: string): Promise<number> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter((line) => unescapeMountInfo(line.split(' ')[4] ?? '') === dir).length;
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l !== '');
}

function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

async function objectBytes(bucket: string, key: string): Promise<Buffer> {
  const out = await server.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** The object's size, or undefined when there is no such object. */
async function objectSize(bucket: string, key: string): Promise<number | undefined> {
  try {
    const head = await server.client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.ContentLength;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

/**
 * The contract of every mount-time failure: exit 1, stdout empty, stderr
 * exactly one line `sosmount: error: ...` matching `expected`, no mount
 * left on the folder, and no worker of this HOME left running.
 */
async function assertMountFailure(r: RunResult, expected: RegExp, fx: Fixture, mountPoint = fx.mnt): Promise<void> {
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const errLines = lines(r.stderr);
  assert.equal(errLines.length, 1, `exactly one line on stderr, got: ${JSON.stringify(r.stderr)}`);
  assert.match(errLines[0]!, /^sosmount: error: \S/);
  assert.match(errLines[0]!, expected);
  assert.equal(await mountCount(mountPoint), 0, 'nothing mounted');
  await waitFor('the failed mount\'s worker to exit', async () => (await workersOf(fx.home)).length === 0, 5_000);
}

/** A good mount of the fixture's bucket on its folder, plus `extra`. */
function mountArgs(fx: Fixture, ...extra: string[]): string[] {
  return ['--profile', 'good', '--endpoint-url', server.endpoint, ...extra, fx.bucket, fx.mnt];
}

interface Attached {
  child: ChildProcess;
  stderr(): string;
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `sosmount` without waiting for it (for --foreground). */
function startAttached(args: readonly string[], env: NodeJS.ProcessEnv, t: TestContext): Attached {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stderr: () => err, stdout: () => out, exited };
}

async function withDeadline<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until the attached sosmount has mounted, failing at once if it exits instead. */
async function waitMounted(a: Attached, mnt: string): Promise<void> {
  await waitFor('the foreground mount', async () => {
    if (a.child.exitCode !== null || a.child.signalCode !== null) {
      throw new Error(`sosmount exited (${a.child.exitCode ?? a.child.signalCode}) before mounting: ${a.stderr()}`);
    }
    return isMountPoint(mnt);
  }, 20_000);
}

// ---------------------------------------------------------------------------

describe('a mount-time failure prints one "sosmount: error:" line, exits 1 and leaves nothing mounted', { concurrency: 2 }, () => {
  test('unknown bucket: says the bucket does not exist at the endpoint', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, 'nosuchbucket', fx.mnt], { env: fx.env });
    await assertMountFailure(r, new RegExp(`bucket nosuchbucket does not exist at ${server.endpoint}$`), fx);
  });

  test('wrong secret: says the credentials were rejected (SignatureDoesNotMatch)', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(['--profile', 'wrongsecret', '--endpoint-url', server.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, /credentials were rejected .*SignatureDoesNotMatch/, fx);
    assert.ok(!r.stderr.includes('not-the-secret-0000'), 'the secret is not printed');
  });

  test('unknown access key: says the credentials were rejected (InvalidAccessKeyId)', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(['--profile', 'unknownkey', '--endpoint-url', server.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, /credentials were rejected .*InvalidAccessKeyId/, fx);
  });

  test('endpoint unreachable (closed port): says it cannot reach the endpoint, within 15 s', async (t) => {
    const fx = await fixture(t);
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    const r = await sosmount(['--profile', 'good', '--endpoint-url', endpoint, fx.bucket, fx.mnt], { env: fx.env, timeoutMs: 30_000 });
    const elapsed = Date.now() - started;
    await assertMountFailure(r, new RegExp(`cannot reach ${endpoint}.*ECONNREFUSED`), fx);
    assert.ok(elapsed < 15_000, `failed after ${elapsed} ms`);
  });

  test('no credentials at all (empty HOME, no AWS_* variables): says no credentials were found', async (t) => {
    const fx = await fixture(t, { profiles: false });
    const r = await sosmount(['--endpoint-url', server.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, /no credentials found/, fx);
  });

  test('--profile nosuch: says no credentials were found in profile nosuch', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(['--profile', 'nosuch', '--endpoint-url', server.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, /no credentials found in profile nosuch/, fx);
  });

  test('access denied: says so, with the S3 request id', async (t) => {
    const fx = await fixture(t);
    const fake = await startErrorEndpoint({ status: 403, code: 'AccessDenied', message: 'Access Denied', requestId: 'REQ-DENIED-4242' });
    t.after(() => fake.stop());
    const r = await sosmount(['--profile', 'good', '--endpoint-url', fake.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, new RegExp(`access denied to bucket ${fx.bucket}.*REQ-DENIED-4242`), fx);
    assert.ok(fake.requests.length >= 1, 'the endpoint was asked');
  });

  test('clock skew (RequestTimeTooSkewed): says to fix the system time, with the request id', async (t) => {
    const fx = await fixture(t);
    const serverTime = new Date(Date.now() + 3_600_000);
    const fake = await startErrorEndpoint({
      status: 403,
      code: 'RequestTimeTooSkewed',
      message: 'The difference between the request time and the current time is too large.',
      requestId: 'REQ-SKEW-77',
      headers: { date: serverTime.toUTCString() },
      extra: { RequestTime: new Date().toISOString(), ServerTime: serverTime.toISOString(), MaxAllowedSkewMilliseconds: '900000' },
    });
    t.after(() => fake.stop());
    const r = await sosmount(['--profile', 'good', '--endpoint-url', fake.endpoint, fx.bucket, fx.mnt], { env: fx.env });
    await assertMountFailure(r, /clock .*fix the system time.*REQ-SKEW-77/, fx);
  });

  test('mount point missing: says it does not exist', async (t) => {
    const fx = await fixture(t);
    const missing = path.join(fx.work, 'no-such-dir');
    const r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, fx.bucket, missing], { env: fx.env });
    await assertMountFailure(r, new RegExp(`mount point ${missing} does not exist`), fx, missing);
  });

  test('mount point is a file: says it is not a directory, and the file is untouched', async (t) => {
    const fx = await fixture(t);
    const file = path.join(fx.work, 'a-file');
    await writeFile(file, 'keep me');
    const r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, fx.bucket, file], { env: fx.env });
    await assertMountFailure(r, new RegExp(`mount point ${file} is not a directory`), fx, file);
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  test('mount point not empty: says so, and its files are untouched', async (t) => {
    const fx = await fixture(t);
    await writeFile(path.join(fx.mnt, 'local.txt'), 'local');
    const r = await sosmount(mountArgs(fx), { env: fx.env });
    await assertMountFailure(r, new RegExp(`mount point ${fx.mnt} is not empty`), fx);
    assert.deepEqual(await readdir(fx.mnt), ['local.txt']);
  });

  test('mount point already a mount: says it is already mounted; the first mount and its worker stay', async (t) => {
    const fx = await fixture(t);
    const first = await sosmount(mountArgs(fx), { env: fx.env });
    assert.equal(first.code, 0, first.stderr);
    const workers = await workersOf(fx.home);
    assert.equal(workers.length, 1, 'one worker serves the first mount');

    const second = await sosmount(mountArgs(fx), { env: fx.env });
    assert.equal(second.code, 1, second.stderr);
    assert.equal(second.stdout, '');
    assert.equal(lines(second.stderr).length, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`^sosmount: error: mount point ${fx.mnt} is already mounted\\n$`));
    assert.equal(await mountCount(fx.mnt), 1, 'still exactly one mount on the folder');
    assert.deepEqual(await workersOf(fx.home), workers, 'no second worker left behind');
    assert.equal(await fsOp('readdir', fx.mnt), 'OK', 'the first mount still answers');

    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`)).code, 0);
    await waitFor('the worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
  });
});

describe('--cache folders that cannot be used are refused before mounting, in one line', { concurrency: 2 }, () => {
  test('inside the mount point, a file, in use by another mount, on a read-only file system', async (t) => {
    const fx = await fixture(t);
    const inside = path.join(fx.mnt, 'cache');
    let r = await sosmount(mountArgs(fx, '--cache', inside), { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the cache folder ${inside} is inside the mount point ${fx.mnt}: `), fx);
    assert.deepEqual(await readdir(fx.mnt), []);

    const file = path.join(fx.work, 'a-file');
    await writeFile(file, 'x');
    r = await sosmount(mountArgs(fx, '--cache', file), { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`^sosmount: error: cannot use the cache folder ${file}: it is not a folder$`), fx);

    const ro = path.join(fx.work, 'ro');
    await mkdir(ro);
    assert.equal((await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro])).code, 0);
    try {
      r = await sosmount(mountArgs(fx, '--cache', path.join(ro, 'cache')), { env: fx.env, timeoutMs: 30_000 });
      await assertMountFailure(r, /: it is on a read-only file system$/, fx);
    } finally {
      await execQuiet('umount', [ro]);
    }

    const cache = path.join(fx.work, 'cache');
    r = await sosmount(mountArgs(fx, '--cache', cache), { env: fx.env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const second = path.join(fx.work, 'mnt2');
    await mkdir(second);
    r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, '--cache', cache, fx.bucket, second], { env: fx.env, timeoutMs: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^sosmount: error: the cache folder ${cache} is in use by process \\d+ \\(another mount uses the same --cache folder\\)\n$`));
    assert.equal(await mountCount(second), 0);
    assert.equal((await run('umount', [fx.mnt])).code, 0);
  });

  test('bad --cache flag values: a usage error naming the flag, nothing mounted', async (t) => {
    const fx = await fixture(t);
    const cases: Array<[string[], RegExp]> = [
      [['--max-cache-size', '100'], /^sosmount: --max-cache-size: only applies with --cache$/],
      [['--cache', fx.work, '--max-cache-size', 'lots'], /^sosmount: --max-cache-size: /],
      [['--cache', fx.work, '--max-cache-size', '2'], /^sosmount: --max-cache-size: 2 MiB holds fewer than 4 blocks of 1024 KiB; give at least 4$/],
      [['--cache', fx.work, '--cache-block-size', '1'], /^sosmount: --cache-block-size: /],
      [['--cache', ''], /^sosmount: --cache: /],
    ];
    for (const [flags, expected] of cases) {
      const r = await sosmount(mountArgs(fx, ...flags), { env: fx.env, timeoutMs: 30_000 });
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      const errLines = lines(r.stderr);
      assert.ok(errLines.length >= 1 && expected.test(errLines[0]!), `${flags.join(' ')}: ${r.stderr}`);
      assert.equal(await mountCount(fx.mnt), 0);
    }
  });
});

describe('the worker\'s own folders (log, upload journal) inside the mount point are refused before mounting', { concurrency: 2 }, () => {
  // Before this check, `-l MNT/logs` mounted, and the worker's first log
  // line went into its own mount: `ls MNT` then hung for ever. Every run
  // here has a timeout, so a regression fails instead of hanging the suite.
  test('-l MNT/logs: one line naming both folders, exit 1, nothing mounted, no folder created in the mount point', async (t) => {
    const fx = await fixture(t);
    const logs = path.join(fx.mnt, 'logs');
    const r = await sosmount(mountArgs(fx, '-l', logs), { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the log folder ${logs} is inside the mount point ${fx.mnt}: `), fx);
    assert.deepEqual(await readdir(fx.mnt), [], 'the mount point is untouched');
    assert.equal(await statWithin(fx.mnt, 5_000), 'OK', 'the folder answers');
  });

  test('--allow-edit --staging-directory MNT/stage: refused the same way, nothing staged in the mount point', async (t) => {
    const fx = await fixture(t);
    const stage = path.join(fx.mnt, 'stage');
    const r = await sosmount(mountArgs(fx, '--allow-edit', '--staging-directory', stage), { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the staging folder ${stage} is inside the mount point ${fx.mnt}: `), fx);
    assert.deepEqual(await readdir(fx.mnt), [], 'the mount point is untouched');
  });

  test('--foreground -l MNT/logs: refused the same way, and the command ends', async (t) => {
    const fx = await fixture(t);
    const logs = path.join(fx.mnt, 'logs');
    const r = await sosmount(['--foreground', ...mountArgs(fx, '-l', logs)], { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the log folder ${logs} is inside the mount point ${fx.mnt}: `), fx);
    assert.deepEqual(await readdir(fx.mnt), []);
  });

  test('a log folder reached through a symlink into the mount point: refused, naming the real path', async (t) => {
    const fx = await fixture(t);
    const door = path.join(fx.work, 'door');
    await symlink(fx.mnt, door);
    const logs = path.join(door, 'logs');
    const r = await sosmount(mountArgs(fx, '-l', logs), { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the log folder ${logs} \\(${path.join(fx.mnt, 'logs')}\\) is inside the mount point ${fx.mnt}: `), fx);
    assert.deepEqual(await readdir(fx.mnt), []);
  });

  test('mounting on the upload journal folder: refused, naming it', async (t) => {
    const fx = await fixture(t);
    const journal = path.join(fx.home, '.local', 'state', 'sos-mount', 'uploads');
    await mkdir(journal, { recursive: true });
    const r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, '-l', path.join(fx.work, 'logs'), fx.bucket, journal], { env: fx.env, timeoutMs: 30_000 });
    await assertMountFailure(r, new RegExp(`the upload journal folder ${journal} is the mount point ${journal}: `), fx, journal);
  });
});

describe('a mount\'s log file', () => {
  /** The JSON records of the log files in `dir`, oldest file first. */
  async function logRecords(dir: string): Promise<Array<Record<string, unknown>>> {
    const rank = (n: string): number => Number(/\.log\.(\d+)$/.exec(n)?.[1] ?? 0);
    const files = (await readdir(dir)).sort((a, b) => rank(b) - rank(a));
    assert.ok(files.length >= 1, `a log file in ${dir}`);
    const out: Array<Record<string, unknown>> = [];
    for (const f of files) {
      const text = await readFile(path.join(dir, f), 'utf8');
      assert.ok(text.endsWith('\n'), `${f} ends with a whole line`);
      for (const line of lines(text)) out.push(JSON.parse(line) as Record<string, unknown>);
    }
    return out;
  }

  test('-l DIR in a normal folder: the worker logs there, and after umount the file ends with the "unmounted" line', async (t) => {
    const fx = await fixture(t);
    const logs = path.join(fx.work, 'logs');
    const r = await sosmount(mountArgs(fx, '-l', logs), { env: fx.env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const ls = await sh('ls mnt', { cwd: fx.work, env: fx.env, timeoutMs: 10_000 });
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`, { timeoutMs: 10_000 })).code, 0);
    await waitFor('the worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);

    const msgs = (await logRecords(logs)).map((rec) => rec['msg']);
    const at = (m: string): number => msgs.indexOf(m);
    assert.ok(at('mounted') >= 0, `logs "mounted": ${JSON.stringify(msgs)}`);
    assert.ok(at('unmounted from outside') > at('mounted'), JSON.stringify(msgs));
    assert.equal(msgs.at(-1), 'unmounted', `the last line, written just before the worker exited: ${JSON.stringify(msgs)}`);
    await assert.rejects(readdir(path.join(fx.home, '.local', 'state', 'sos-mount', 'logs')), { code: 'ENOENT' }, 'nothing in the default log folder');
  });

  test('--foreground -l DIR: lines go to the file, not stderr, and Ctrl-C leaves "unmounting" and "unmounted" in it', async (t) => {
    const fx = await fixture(t);
    const logs = path.join(fx.work, 'logs');
    const a = startAttached(['--foreground', '-l', logs, ...mountArgs(fx)], fx.env, t);
    await waitMounted(a, fx.mnt);
    const ls = await sh('ls mnt', { cwd: fx.work, env: fx.env, timeoutMs: 10_000 });
    assert.equal(ls.code, 0, ls.stderr);
    a.child.kill('SIGINT');
    const exit = await withDeadline('sosmount to exit after SIGINT', a.exited, 20_000);
    assert.deepEqual(exit, { code: 0, signal: null }, a.stderr());
    assert.deepEqual(lines(a.stderr()), [`bucket ${fx.bucket} is mounted at ${fx.mnt}`]);
    const msgs = (await logRecords(logs)).map((rec) => rec['msg']);
    assert.ok(msgs.indexOf('mounted') >= 0 && msgs.indexOf('unmounting') > msgs.indexOf('mounted'), JSON.stringify(msgs));
    assert.equal(msgs.at(-1), 'unmounted', JSON.stringify(msgs));
  });
});

describe('a bad flag is a usage error: exit 2, the flag named on stderr, nothing mounted', { concurrency: 2 }, () => {
  async function usage(t: TestContext, args: (fx: Fixture) => string[], names: RegExp): Promise<RunResult> {
    const fx = await fixture(t);
    const r = await sosmount(args(fx), { env: fx.env });
    assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^sosmount: /);
    assert.match(r.stderr, names);
    assert.equal(await mountCount(fx.mnt), 0, 'nothing mounted');
    assert.deepEqual(await workersOf(fx.home), [], 'no worker started');
    return r;
  }

  test('--file-mode 999 names --file-mode', async (t) => {
    await usage(t, (fx) => mountArgs(fx, '--file-mode', '999'), /--file-mode: '999' is not an octal mode/);
  });

  test('--zone nowhere names --zone and lists the known zones', async (t) => {
    const r = await usage(t, (fx) => ['--profile', 'good', '--zone', 'nowhere', fx.bucket, fx.mnt], /--zone: unknown Exoscale zone 'nowhere'/);
    for (const z of EXOSCALE_ZONES) assert.ok(r.stderr.includes(z.zone), `lists ${z.zone}: ${r.stderr}`);
  });

  test('--endpoint-url ftp://x names --endpoint-url', async (t) => {
    await usage(t, (fx) => ['--profile', 'good', '--endpoint-url', 'ftp://x', fx.bucket, fx.mnt], /--endpoint-url: 'ftp:\/\/x' is not an http\(s\) URL/);
  });

  test('an unknown flag --frobnicate is named', async (t) => {
    await usage(t, (fx) => mountArgs(fx, '--frobnicate'), /--frobnicate: unknown flag/);
  });

  test('a missing DIRECTORY is named', async (t) => {
    await usage(t, (fx) => ['--profile', 'good', '--endpoint-url', server.endpoint, fx.bucket], /missing argument <DIRECTORY>/);
  });

  test('--zone ch-dk-2 with --endpoint-url names --zone', async (t) => {
    await usage(t, (fx) => mountArgs(fx, '--zone', 'ch-dk-2'), /--zone: cannot be combined with --endpoint-url/);
  });

  test('--prefix without a trailing slash names --prefix', async (t) => {
    await usage(t, (fx) => mountArgs(fx, '--prefix', 'photos'), /--prefix: 'photos' must end in '\/'/);
  });
});

describe('--help and --version', { concurrency: 2 }, () => {
  for (const flag of ['--help', '-h']) {
    test(`${flag} prints the usage on stdout and exits 0`, async () => {
      const r = await sosmount([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /Usage: sosmount \[OPTIONS\] <BUCKET_NAME> <DIRECTORY>/);
      assert.match(r.stdout, /--endpoint-url/);
      assert.match(r.stdout, /--zone/);
    });
  }

  for (const flag of ['--version', '-V']) {
    test(`${flag} prints "sosmount VERSION" on stdout and exits 0`, async () => {
      const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      const r = await sosmount([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.equal(r.stdout, `sosmount ${pkg.version}\n`);
    });
  }

  test('--help wins over a bad flag and mounts nothing', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(mountArgs(fx, '--frobnicate', '--help'), { env: fx.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SOS Mount /);
    assert.equal(await mountCount(fx.mnt), 0);
  });
});

describe('--foreground', () => {
  test('stays attached while mounted, logs JSON lines to stderr without the secret, and Ctrl-C unmounts cleanly', async (t) => {
    const fx = await fixture(t);
    const a = startAttached(['--foreground', ...mountArgs(fx)], fx.env, t);
    await waitMounted(a, fx.mnt);
    assert.equal(a.child.exitCode, null, 'still running once mounted');
    assert.deepEqual(await workersOf(fx.home), [], 'no background worker');

    const data = randomBytes(300_000);
    await writeFile(path.join(fx.work, 'photo.jpg'), data);
    const cp = await sh('cp photo.jpg mnt/', { cwd: fx.work, env: fx.env });
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(md5(await objectBytes(fx.bucket, 'photo.jpg')), md5(data), 'the copied file is in the bucket');

    a.child.kill('SIGINT');
    const exit = await withDeadline('sosmount to exit after SIGINT', a.exited, 20_000);
    assert.deepEqual(exit, { code: 0, signal: null }, a.stderr());
    assert.equal(await isMountPoint(fx.mnt), false, 'not a mount point any more');
    assert.deepEqual(await readdir(fx.mnt), [], 'the folder is empty');

    const stderr = a.stderr();
    assert.ok(!stderr.includes(GOOD.secretAccessKey), 'the secret is not logged');
    const records: Array<Record<string, unknown>> = [];
    const other: string[] = [];
    for (const line of lines(stderr)) {
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        other.push(line);
      }
    }
    for (const r of records) {
      assert.equal(typeof r['time'], 'string');
      assert.match(String(r['level']), /^(debug|info|warn|error)$/);
      assert.equal(typeof r['msg'], 'string');
    }
    const msgs = records.map((r) => r['msg']);
    for (const m of ['mounted', 'upload complete', 'unmounting', 'unmounted']) assert.ok(msgs.includes(m), `logs "${m}": ${stderr}`);
    assert.ok(!records.some((r) => r['level'] === 'error' || r['level'] === 'warn'), `no warnings or errors: ${stderr}`);
    // The one human line, as mount-s3 prints it; everything else is JSON.
    assert.deepEqual(other, [`bucket ${fx.bucket} is mounted at ${fx.mnt}`], `non-JSON lines on stderr: ${stderr}`);
  });

  test('a mount-time failure in the foreground exits 1 with one "sosmount: error:" line among JSON log lines', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(['--foreground', '--profile', 'good', '--endpoint-url', server.endpoint, 'nosuchbucket', fx.mnt], { env: fx.env });
    assert.equal(r.code, 1, r.stderr);
    const errLines = lines(r.stderr).filter((l) => l.startsWith('sosmount: error: '));
    assert.equal(errLines.length, 1, r.stderr);
    assert.match(errLines[0]!, /bucket nosuchbucket does not exist/);
    for (const l of lines(r.stderr)) if (!l.startsWith('sosmount: error: ')) assert.doesNotThrow(() => JSON.parse(l), l);
    assert.equal(await mountCount(fx.mnt), 0);
  });

  test('an external umount ends the foreground sosmount with exit 0', async (t) => {
    const fx = await fixture(t);
    const a = startAttached(['--foreground', ...mountArgs(fx)], fx.env, t);
    await waitMounted(a, fx.mnt);
    const u = await sh(`umount ${JSON.stringify(fx.mnt)}`);
    assert.equal(u.code, 0, u.stderr);
    const exit = await withDeadline('sosmount to exit after umount', a.exited, 10_000);
    assert.deepEqual(exit, { code: 0, signal: null }, a.stderr());
    assert.match(a.stderr(), /"msg":"unmounted from outside"/);
    assert.equal(await isMountPoint(fx.mnt), false);
  });

  test('Ctrl-C while a file is still being written never leaves a partial object in the bucket', async (t) => {
    const fx = await fixture(t);
    const a = startAttached(['--foreground', ...mountArgs(fx)], fx.env, t);
    await waitMounted(a, fx.mnt);

    // Writes 1 MiB pieces with short pauses, reporting each, then closes.
    const writerScript = `
      const fs = require('fs');
      const [file, pieces, pauseMs] = process.argv.slice(1);
      const piece = Buffer.alloc(1024 * 1024, 'w');
      const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      let written = 0;
      let fd;
      try {
        fd = fs.openSync(file, 'w');
        for (let i = 0; i < Number(pieces); i++) {
          let off = 0;
          while (off < piece.length) off += fs.writeSync(fd, piece, off, piece.length - off);
          written += piece.length;
          process.stdout.write('wrote ' + written + '\\n');
          pause(Number(pauseMs));
        }
        const f = fd; fd = undefined;
        fs.closeSync(f);
        process.stdout.write('closed ' + written + '\\n');
      } catch (err) {
        process.stdout.write('failed ' + err.code + ' ' + written + '\\n');
        if (fd !== undefined) {
          try { fs.closeSync(fd); } catch (e) { process.stdout.write('close-failed ' + e.code + '\\n'); }
        }
      }
    `;
    const pieces = 40;
    const file = path.join(fx.mnt, 'big.bin');
    const writer = spawn(process.execPath, ['-e', writerScript, file, String(pieces), '25'], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => { if (writer.exitCode === null && writer.signalCode === null) writer.kill('SIGKILL'); });
    let report = '';
    writer.stdout.on('data', (d: Buffer) => { report += d.toString(); });
    writer.stderr.on('data', (d: Buffer) => { report += d.toString(); });
    const writerExited = new Promise<void>((resolve) => writer.on('exit', () => resolve()));
    const writtenSoFar = (): number => Math.max(0, ...[...report.matchAll(/^wrote (\d+)$/gm)].map((m) => Number(m[1])));

    await waitFor('the writer to be mid-file', async () => writtenSoFar() >= 10 * 1024 * 1024, 30_000);
    assert.equal(writer.exitCode, null, 'the writer is still writing');
    a.child.kill('SIGINT');

    const exit = await withDeadline('sosmount to exit after SIGINT', a.exited, 60_000);
    await withDeadline('the writer to end', writerExited, 60_000);
    assert.equal(exit.code, 0, a.stderr());
    assert.equal(await isMountPoint(fx.mnt), false);

    const closed = /^closed (\d+)$/m.exec(report);
    const size = await objectSize(fx.bucket, 'big.bin');
    const why = `writer: ${report.split('\n').filter((l) => !l.startsWith('wrote')).join(' | ')}; object size: ${size}; log: ${a.stderr()}`;
    if (size !== undefined) {
      assert.ok(closed, `the object exists although the writer's close did not succeed: ${why}`);
      assert.equal(size, Number(closed[1]), `the object holds what the writer wrote and closed: ${why}`);
      assert.equal(size, pieces * 1024 * 1024, why);
    }
  });
});

describe('background mode, after the worker is killed with SIGKILL', () => {
  /** Mounts the fixture's bucket in the background and copies in a file, closed (so uploaded) before any kill. */
  async function mountWithFile(fx: Fixture): Promise<{ worker: number; data: Buffer }> {
    const first = await sosmount(mountArgs(fx), { env: fx.env });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '');
    const data = randomBytes(3 * 1024 * 1024 + 12_345);
    await writeFile(path.join(fx.work, 'backup.tgz'), data);
    const cp = await sh('cp backup.tgz mnt/', { cwd: fx.work, env: fx.env });
    assert.equal(cp.code, 0, cp.stderr);
    const [worker, ...more] = await workersOf(fx.home);
    assert.ok(worker !== undefined && more.length === 0, 'one worker serves the mount');
    return { worker, data };
  }

  async function killWorker(fx: Fixture, worker: number): Promise<void> {
    process.kill(worker, 'SIGKILL');
    await waitFor('the killed worker to be gone', async () => !(await workersOf(fx.home)).includes(worker));
  }

  /** The stale-mount watchdog a worker may have started for this mount (app/watchdog.ts). */
  async function watchdogsOf(fx: Fixture): Promise<number[]> {
    const pids: number[] = [];
    for (const pid of await processesMentioning(fx.mnt)) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes('sosmount-watchdog')) pids.push(pid);
    }
    return pids;
  }

  test('with no watchdog left either, the mount point is stale ("Transport endpoint is not connected"); the next sosmount cleans it and mounts, and the file closed before the kill is intact', async (t) => {
    const fx = await fixture(t);
    const { worker, data } = await mountWithFile(fx);
    // A hard kill that takes the watchdog too (or a build without one): nothing cleans up but the next mount.
    for (const pid of await watchdogsOf(fx)) process.kill(pid, 'SIGKILL');
    await waitFor('the watchdog to be gone', async () => (await watchdogsOf(fx)).length === 0);
    await killWorker(fx, worker);

    assert.equal(await statWithin(fx.mnt, 5_000), 'ENOTCONN', 'the mount point is stale, and answers at once');
    const stale = await sh('ls mnt', { cwd: fx.work, env: fx.env, timeoutMs: 5_000 });
    assert.match(stale.stderr, /Transport endpoint is not connected/);
    assert.equal(await isMountPoint(fx.mnt), true, 'the stale mount is still listed');

    const again = await sosmount(mountArgs(fx), { env: fx.env, timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, '');
    assert.equal(await mountCount(fx.mnt), 1, 'one live mount, not one on top of the stale one');
    assert.equal(await statWithin(fx.mnt, 5_000), 'OK');
    const ls = await sh('ls mnt', { cwd: fx.work, env: fx.env });
    assert.equal(ls.stdout, 'backup.tgz\n', ls.stderr);
    assert.equal(md5(await objectBytes(fx.bucket, 'backup.tgz')), md5(data), 'md5 via the S3 API');
    const sum = await sh('md5sum mnt/backup.tgz', { cwd: fx.work, env: fx.env });
    assert.equal(sum.stdout, `${md5(data)}  mnt/backup.tgz\n`, 'md5 through the new mount');

    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`)).code, 0);
    await waitFor('the new worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
  });

  test('with its watchdog, the mount point never hangs: the stale mount is detached within seconds, logged, and sosmount mounts there again', async (t) => {
    const fx = await fixture(t);
    const { worker, data } = await mountWithFile(fx);
    assert.equal((await watchdogsOf(fx)).length, 1, 'the background worker started one watchdog');
    await killWorker(fx, worker);

    // Whatever the moment, the folder answers: stale (ENOTCONN) until the watchdog acts, then a plain folder.
    await waitFor('the watchdog to detach the stale mount', async () => {
      const outcome = await statWithin(fx.mnt, 5_000);
      assert.notEqual(outcome, 'HANG', 'stat of the mount point hangs: something still holds the dead mount\'s FUSE connection');
      assert.ok(outcome === 'ENOTCONN' || outcome === 'OK', outcome);
      return outcome === 'OK' && !(await isMountPoint(fx.mnt));
    }, 15_000);
    assert.deepEqual(await readdir(fx.mnt), [], 'an empty folder again');
    await waitFor('the watchdog to exit', async () => (await watchdogsOf(fx)).length === 0);
    const logDir = path.join(fx.home, '.local', 'state', 'sos-mount', 'logs');
    const log = (await Promise.all((await readdir(logDir)).map((f) => readFile(path.join(logDir, f), 'utf8')))).join('');
    assert.match(log, /"msg":"worker exited unexpectedly; stale mount point cleaned"/);

    const again = await sosmount(mountArgs(fx), { env: fx.env, timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(md5(await objectBytes(fx.bucket, 'backup.tgz')), md5(data), 'md5 via the S3 API');
    const sum = await sh('md5sum mnt/backup.tgz', { cwd: fx.work, env: fx.env });
    assert.equal(sum.stdout, `${md5(data)}  mnt/backup.tgz\n`, 'md5 through the new mount');
    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`)).code, 0);
    await waitFor('the new worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
  });
});

describe('the secret never leaks', () => {
  async function logText(home: string): Promise<string> {
    const dir = path.join(home, '.local', 'state', 'sos-mount', 'logs');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.log'));
    assert.ok(files.length >= 1, `a log file in ${dir}`);
    return (await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')))).join('');
  }

  async function exercise(fx: Fixture): Promise<void> {
    await writeFile(path.join(fx.work, 'note.txt'), 'hello');
    const r = await sh('cp note.txt mnt/ && ls -l mnt && cat mnt/note.txt && (rm mnt/note.txt || true)', { cwd: fx.work, env: fx.env });
    assert.equal(r.code, 0, r.stderr);
  }

  test('with a profile: not in the worker\'s argv, environment or log file, even with --debug', async (t) => {
    const fx = await fixture(t);
    const r = await sosmount(mountArgs(fx, '--debug'), { env: fx.env });
    assert.equal(r.code, 0, r.stderr);
    await exercise(fx);
    const [worker] = await workersOf(fx.home);
    assert.ok(worker !== undefined, 'a worker serves the mount');
    const cmdline = await readFile(`/proc/${worker}/cmdline`, 'utf8');
    const environ = await readFile(`/proc/${worker}/environ`, 'utf8');
    assert.ok(!cmdline.includes(GOOD.secretAccessKey), `argv: ${cmdline}`);
    assert.ok(!environ.includes(GOOD.secretAccessKey), 'environment');
    const log = await logText(fx.home);
    assert.match(log, /"msg":"mounted"/);
    assert.ok(!log.includes(GOOD.secretAccessKey), 'log file');
    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`)).code, 0);
    await waitFor('the worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
    assert.ok(!(await logText(fx.home)).includes(GOOD.secretAccessKey), 'log file after unmount');
  });

  test('with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set by the user: not in the worker\'s argv or log file', async (t) => {
    const fx = await fixture(t, { profiles: false, extraEnv: { AWS_ACCESS_KEY_ID: GOOD.accessKeyId, AWS_SECRET_ACCESS_KEY: GOOD.secretAccessKey } });
    const r = await sosmount(['--endpoint-url', server.endpoint, '--debug', fx.bucket, fx.mnt], { env: fx.env });
    assert.equal(r.code, 0, r.stderr);
    await exercise(fx);
    const [worker] = await workersOf(fx.home);
    assert.ok(worker !== undefined, 'a worker serves the mount');
    const cmdline = await readFile(`/proc/${worker}/cmdline`, 'utf8');
    assert.ok(!cmdline.includes(GOOD.secretAccessKey), `argv: ${cmdline}`);
    // The environment holds it only because the test put it there: the user's own variable, inherited.
    assert.ok(!(await logText(fx.home)).includes(GOOD.secretAccessKey), 'log file');
    assert.equal((await sh(`umount ${JSON.stringify(fx.mnt)}`)).code, 0);
    await waitFor('the worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
  });
});

describe('a mount point given through a symbolic link', () => {
  test('stays mounted and served: the worker does not take the link path for an external umount', async (t) => {
    const fx = await fixture(t);
    const real = path.join(fx.work, 'real');
    const link = path.join(fx.work, 'link');
    await mkdir(real);
    await symlink(real, link);
    const r = await sosmount(['--profile', 'good', '--endpoint-url', server.endpoint, fx.bucket, link], { env: fx.env });
    assert.equal(r.code, 0, r.stderr);
    const [worker] = await workersOf(fx.home);
    assert.ok(worker !== undefined, 'a worker serves the mount');
    // The worker looks for an external umount every 0.5 s: let it look a few
    // times, measured by its own age, before checking the mount is still served.
    await waitFor('the worker to have run for 2 s', async () => {
      const age = await run('ps', ['-o', 'etimes=', '-p', String(worker)]);
      return age.code !== 0 || Number(age.stdout.trim()) >= 2;
    }, 10_000);
    assert.deepEqual(await workersOf(fx.home), [worker], 'the worker still runs');
    assert.equal(await statWithin(link, 5_000), 'OK', 'the mount answers (not "Transport endpoint is not connected")');
    await writeFile(path.join(fx.work, 'a.txt'), 'via the link');
    const cp = await sh('cp a.txt link/ && cat link/a.txt', { cwd: fx.work, env: fx.env });
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(cp.stdout, 'via the link');
    assert.equal((await sh(`umount ${JSON.stringify(real)}`)).code, 0);
    await waitFor('the worker to exit after umount', async () => (await workersOf(fx.home)).length === 0);
  });
});
