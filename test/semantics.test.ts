/**
 * The semantics table, row by row, through real mounts: README.md
 * ("What is not POSIX", with its names) and the errno table SEMANTICS in
 * app/fs/errno.ts. Every row that a program can reach through the kernel is
 * a test here: `sosmount` (background mode, as a user runs it) mounts a
 * bucket of the local S3 server, single fs calls run in child processes
 * (fs-op.js, python3 where Node has no call for it, or shell commands where
 * the message matters), and each test checks the exact errno AND, through
 * the S3 API, that the bucket holds what the row says: the same objects with
 * the same bytes, no new object, no multipart upload left behind.
 *
 * Each option set is mounted once, in its describe block. The last test
 * checks that every row of SEMANTICS was tested or is listed, with its
 * reason, among the rows no program can reach through a mount.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { SEMANTICS, type SemanticsRule } from '../app/fs/errno.js';
import { isMountPoint } from '../app/worker/mount-point.js';
import { listKeys, objectBytes } from './helpers/bucket-view.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { awsHome, cleanEnv, fsOp, run, sh, sosmount, tempDir, waitFor } from './helpers/processes.js';

const KEYS = { accessKeyId: 'SEMANTICS0123456789', secretAccessKey: 'semantics-secret-0123456789' };
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Rows: every assertion of an errno from the table goes through assertRow, so
// the last test can check that no row was forgotten.

const tested = new Set<SemanticsRule>();

function assertRow(rule: SemanticsRule, actual: string | undefined, what?: string): void {
  tested.add(rule);
  assert.equal(actual, SEMANTICS[rule].errno, `${what ? what + ': ' : ''}${rule} (${SEMANTICS[rule].rule})`);
}

/**
 * Rows no program can reach through a mount, and why. They are the fs
 * model's answers to requests the kernel never sends (or answers itself),
 * or need conditions a test cannot make in its time budget.
 */
const UNREACHABLE: Partial<Record<SemanticsRule, string>> = {
  fileTooLarge: 'needs about 4.9 TiB written even with the smallest --write-part-size (parts double every 1000); the fs model is tested with a tiny part size in engine.test.ts',
  fsyncTooLarge: 'as fileTooLarge; engine.test.ts "a write past the multipart limit fails with EFBIG, and fsync then reports ENOSPC"',
  readlink: 'no symlink can exist in a mount, and the kernel answers readlink of a non-symlink with EINVAL itself (tested below)',
  invalidName: "the kernel never sends an empty name, '.', '..', or a name with '/' or NUL",
  badHandle: 'the kernel owns the file handles and never sends one we did not give it',
};

// ---------------------------------------------------------------------------
// The server, its buckets, and looking at them through the S3 API.

let server: TestS3Server;
let s3: S3Client;
let env: NodeJS.ProcessEnv;
let work: string;
let home: string;
/** Keys in the big folder of the names block. */
const MANY = 2_500;
let seedingMany: Promise<void> = Promise.resolve();

function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

async function put(bucket: string, key: string, body: Buffer | string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** Puts many objects with at most `concurrency` requests in flight. */
async function seed(bucket: string, objects: ReadonlyArray<readonly [string, Buffer | string]>, concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < objects.length) {
      const [key, body] = objects[next++]!;
      await put(bucket, key, body);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, objects.length) }, worker));
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

/** Every object of the bucket with its ETag (MD5 of the bytes), size and date: equal snapshots mean an unchanged bucket. */
async function snapshot(bucket: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.push(`${o.Key} ${o.ETag} ${o.Size} ${o.LastModified?.toISOString()}`);
    token = page.NextContinuationToken;
  } while (token);
  return out;
}

/**
 * Keys of multipart uploads begun and neither completed nor aborted.
 * ListMultipartUploads first; s3rver 3.7 answers it with NotImplemented, and
 * keeps each open upload as <bucket>/._S3rver_uploads/<uploadId>/ (with a
 * file `key`), so then the server's directory is read.
 */
async function pendingUploads(bucket: string): Promise<string[]> {
  try {
    const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return (r.Uploads ?? []).map((u) => u.Key ?? '');
  } catch (err) {
    if ((err as { name?: string }).name !== 'NotImplemented') throw err;
    const dir = path.join(server.directory, bucket, '._S3rver_uploads');
    const ids = await readdir(dir).catch(() => [] as string[]);
    return Promise.all(ids.map((id) => readFile(path.join(dir, id, 'key'), 'utf8').catch(() => `(upload ${id})`)));
  }
}

async function assertUnchanged(bucket: string, before: string[]): Promise<void> {
  assert.deepEqual(await snapshot(bucket), before, `bucket ${bucket} changed`);
  assert.deepEqual(await pendingUploads(bucket), [], `bucket ${bucket} has multipart uploads left`);
}

// ---------------------------------------------------------------------------
// Mounts and child processes.

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function mount(bucket: string, dir: string, options: string[], endpoint = server.endpoint): Promise<void> {
  await mkdir(dir, { recursive: true });
  const r = await sosmount(['--profile', 'sem', '--endpoint-url', endpoint, ...options, bucket, dir], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await isMountPoint(dir), `${dir} is a mount point`);
}

async function unmount(dir: string): Promise<void> {
  if (!(await isMountPoint(dir).catch(() => false))) return;
  const r = await run('umount', [dir]);
  if (r.code !== 0) await run('fusermount', ['-uz', dir]);
}

async function shOk(script: string): Promise<string> {
  const r = await sh(script, { env });
  assert.equal(r.code, 0, `${script}\n${r.stderr}`);
  return r.stdout;
}

/** Several fs calls in one child process (fs-op.js batch), in order: their results. */
async function fsOps(...calls: string[][]): Promise<string[]> {
  return (await fsOp('batch', JSON.stringify(calls))).split('\n');
}

/** `ls -1A` of a folder as a list of names. */
async function ls(dir: string): Promise<string[]> {
  return (await shOk(`ls -1A ${q(dir)}`)).split('\n').filter(Boolean);
}

/** Helpers available to every python3 child: attempt() prints OK or the errno's name, as fs-op.js does. */
const PY_PRELUDE = `
import errno, os, stat, sys
def attempt(fn):
    try:
        fn()
        return 'OK'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def say(*a):
    print(*a, flush=True)
def wait():
    sys.stdin.readline()
`;

/** python3 keeps the caller's environment (a python version manager may need HOME), in the C locale. */
const PY_ENV: NodeJS.ProcessEnv = { ...process.env, LANG: 'C', LC_ALL: 'C' };

/**
 * The python3 interpreter itself, found once: a version manager's `python3`
 * shim costs half a second of CPU per start.
 */
let python = 'python3';

/** Runs a python3 snippet (arguments in sys.argv[1:]) and returns its trimmed output. */
async function py(code: string, ...args: string[]): Promise<string> {
  const r = await run(python, ['-c', PY_PRELUDE + code, ...args], { env: PY_ENV });
  if (r.code !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * A python3 child driven step by step: it prints a line when it reached a
 * state (a file open and written...), then waits for a line on stdin. No
 * sleeps: each step waits for the child's own report.
 */
class Stepper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private stderr = '';
  private closed = false;

  constructor(code: string, args: string[]) {
    this.child = spawn(python, ['-u', '-c', PY_PRELUDE + code, ...args], { env: PY_ENV, stdio: ['pipe', 'pipe', 'pipe'] });
    let buffer = '';
    this.child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        this.lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
      this.waiter?.();
    });
    this.child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.child.on('close', () => { this.closed = true; this.waiter?.(); });
    this.child.stdin.on('error', () => { /* the child may be gone */ });
  }

  /** The next line the child prints. */
  async line(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.closed) throw new Error(`python3 child ended without output: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`python3 child printed nothing within ${timeoutMs} ms: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
      this.waiter = undefined;
    }
    return this.lines.shift()!;
  }

  /** Lets the child go on to its next step. */
  next(): void {
    this.child.stdin.write('\n');
  }

  /** Ends the child (its open files are closed by the kernel) and waits until it is gone. */
  async kill(): Promise<void> {
    if (this.closed) return;
    const gone = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    this.child.kill('SIGKILL');
    await gone;
  }
}

/** Opens PATH for writing (a new file), writes argv[2], reports, and closes when told; prints close()'s outcome. */
const HOLD_WRITE = `
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, sys.argv[2].encode())
say('written')
wait()
say(attempt(lambda: os.close(fd)))
`;

async function holdWrite(file: string, data: string): Promise<Stepper> {
  const child = new Stepper(HOLD_WRITE, [file, data]);
  assert.equal(await child.line(), 'written');
  return child;
}

// ---------------------------------------------------------------------------
// A pass-through proxy in front of the test server, for what the server
// cannot do itself:
// - keys it cannot store: s3rver keeps every object as a file named after
//   its key, so a key with an empty segment (`a//b`: its router finds no
//   object) or a segment over 255 bytes (the server process dies on
//   ENAMETOOLONG) cannot be put there. The proxy adds such keys to the
//   ListObjectsV2 answers of one bucket exactly as S3 lists them (a key, or
//   the common prefix it rolls up to under the delimiter);
// - a policy: s3rver has none, so the proxy answers 403 AccessDenied to
//   HeadObject and GetObject of chosen keys, as S3 does under a bucket
//   policy that denies s3:GetObject on them.
// Everything else passes unchanged, signatures included.

interface Proxy {
  endpoint: string;
  close(): Promise<void>;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function injectKeys(body: string, prefix: string, delimiter: string, extra: readonly string[]): string {
  let added = '';
  for (const key of extra) {
    if (!key.startsWith(prefix)) continue;
    const rest = key.slice(prefix.length);
    const cut = delimiter ? rest.indexOf(delimiter) : -1;
    if (cut >= 0) {
      const common = xmlEscape(prefix + rest.slice(0, cut + delimiter.length));
      if (!body.includes(`<Prefix>${common}</Prefix>`) && !added.includes(`<Prefix>${common}</Prefix>`)) {
        added += `<CommonPrefixes><Prefix>${common}</Prefix></CommonPrefixes>`;
      }
    } else {
      added += `<Contents><Key>${xmlEscape(key)}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>`
        + `<ETag>&quot;${md5(key)}&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>`;
    }
  }
  return added === '' ? body : body.replace('</ListBucketResult>', `${added}</ListBucketResult>`);
}

async function startProxy(target: TestS3Server, bucket: string, rules: { listed: readonly string[]; denied: readonly string[] }): Promise<Proxy> {
  const proxy = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const key = url.pathname.startsWith(`/${bucket}/`) ? decodeURIComponent(url.pathname.slice(bucket.length + 2)) : undefined;
    if ((req.method === 'GET' || req.method === 'HEAD') && key !== undefined && rules.denied.includes(key)) {
      const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
        + '<RequestId>policy-proxy</RequestId></Error>';
      res.writeHead(403, { 'content-type': 'application/xml', 'x-amz-request-id': 'policy-proxy', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      req.resume();
      return;
    }
    const listing = req.method === 'GET' && url.pathname.replace(/\/$/, '') === `/${bucket}`
      && url.searchParams.get('list-type') === '2' && !url.searchParams.has('continuation-token');
    const upstream = http.request({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      if (!listing || up.statusCode !== 200) {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        const body = injectKeys(Buffer.concat(chunks).toString('utf8'), url.searchParams.get('prefix') ?? '', url.searchParams.get('delimiter') ?? '', rules.listed);
        const headers = { ...up.headers };
        delete headers['content-length'];
        delete headers['transfer-encoding'];
        res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      proxy.closeAllConnections();
      proxy.close(() => resolve());
    }),
  };
}

// ---------------------------------------------------------------------------

describe('the semantics table through a real mount', () => {
  before(async () => {
    server = await startS3Server({ buckets: ['plain', 'overwrite', 'delete', 'readonly', 'prefixed', 'names', 'failing', 'editing'], credentials: [KEYS] });
    s3 = server.client();
    home = await awsHome({ sem: KEYS });
    env = cleanEnv(home);
    work = await tempDir('semantics');
    python = (await run('python3', ['-c', 'import sys; print(sys.executable)'], { env: PY_ENV })).stdout.trim() || 'python3';
    // The folder of MANY keys for the names block is put while the blocks
    // before it run: it touches only its own bucket, and costs seconds.
    const many: Array<[string, string]> = [];
    for (let i = 0; i < MANY; i++) many.push([`many/key-${String(i).padStart(4, '0')}.txt`, String(i)]);
    seedingMany = seed('names', many, 8);
    seedingMany.catch(() => { /* awaited, and reported, by the names block */ });
  });

  after(async () => {
    await server?.stop();
    if (home) await rm(home, { recursive: true, force: true });
    if (!work) return;
    // Only when every mount of the file is gone: never recurse into a mount.
    const dirs = await readdir(work);
    const mounted = await Promise.all(dirs.map((d) => isMountPoint(path.join(work, d)).catch(() => true)));
    if (!mounted.includes(true)) await rm(work, { recursive: true, force: true });
  });

  describe('default options', () => {
    const bucket = 'plain';
    let mnt: string;
    const big = randomBytes(3 * MiB + 12_345);
    const changing = randomBytes(8 * MiB);
    const stored = 'stored bytes\n';

    before(async () => {
      mnt = path.join(work, 'plain');
      await seed(bucket, [
        ['read/big.bin', big],
        ['tree/top.txt', 'top'],
        ['tree/a/sibling.txt', 'sibling'],
        ['tree/a/b/deep.txt', 'deep'],
        ['stored/file.txt', stored],
        ['remote/child.txt', 'child'],
        ['changing.bin', changing],
      ]);
      await mount(bucket, mnt, []);
    });

    after(async () => {
      await unmount(mnt);
    });

    const m = (p: string): string => path.join(mnt, p);

    test('cat reads a whole object sequentially, byte for byte', async () => {
      const out = await shOk(`md5sum < ${q(m('read/big.bin'))}`);
      assert.equal(out.split(' ')[0], md5(big));
      assert.equal((await shOk(`stat -c %s ${q(m('read/big.bin'))}`)).trim(), String(big.length));
    });

    test('dd reads random ranges of an object: a block-aligned skip= and an unaligned byte offset', async () => {
      const aligned = await shOk(`dd if=${q(m('read/big.bin'))} bs=4096 skip=517 count=3 status=none | md5sum`);
      assert.equal(aligned.split(' ')[0], md5(big.subarray(517 * 4096, 520 * 4096)));
      const offset = 2 * MiB + 777;
      const unaligned = await shOk(`dd if=${q(m('read/big.bin'))} iflag=skip_bytes,count_bytes skip=${offset} count=10001 status=none | md5sum`);
      assert.equal(unaligned.split(' ')[0], md5(big.subarray(offset, offset + 10_001)));
      // The last bytes, past the last full block.
      const tail = await shOk(`dd if=${q(m('read/big.bin'))} iflag=skip_bytes skip=${big.length - 100} status=none | md5sum`);
      assert.equal(tail.split(' ')[0], md5(big.subarray(big.length - 100)));
    });

    test('prefixes are listed as folders, also two levels down, and their files read', async () => {
      assert.deepEqual(await ls(m('tree')), ['a', 'top.txt']);
      assert.deepEqual(await ls(m('tree/a')), ['b', 'sibling.txt']);
      assert.deepEqual(await ls(m('tree/a/b')), ['deep.txt']);
      assert.equal((await shOk(`stat -c %F ${q(m('tree/a'))} ${q(m('tree/a/b'))} ${q(m('tree/a/b/deep.txt'))}`)).trim(),
        'directory\ndirectory\nregular file');
      assert.equal(await shOk(`cat ${q(m('tree/a/b/deep.txt'))}`), 'deep');
    });

    test('a new file is not in the bucket while it is written and is there, complete, when close() returns', async () => {
      const child = await holdWrite(m('held.txt'), 'held bytes');
      try {
        assert.equal(await getBytes(bucket, 'held.txt'), undefined, 'no object before close');
        assert.deepEqual(await pendingUploads(bucket), []);
        assert.ok((await ls(mnt)).includes('held.txt'), 'the file being written is listed');
        child.next();
        assert.equal(await child.line(), 'OK', 'close()');
      } finally {
        await child.kill();
      }
      assert.equal(await getText(bucket, 'held.txt'), 'held bytes');
    });

    test('cp of a 9 MiB file (a multipart upload) puts the object in the bucket when cp returns, with no upload left', async () => {
      const data = randomBytes(9 * MiB + 1);
      const local = path.join(work, 'nine.bin');
      await writeFile(local, data);
      await shOk(`cp ${q(local)} ${q(m('nine.bin'))}`);
      const got = await getBytes(bucket, 'nine.bin');
      assert.equal(got?.length, data.length);
      assert.equal(md5(got!), md5(data));
      assert.deepEqual(await pendingUploads(bucket), []);
      assert.equal((await shOk(`md5sum < ${q(m('nine.bin'))}`)).split(' ')[0], md5(data));
    });

    test('shell redirection and touch create objects: closing a still-empty dup of the file does not complete it', async () => {
      // `echo > f` opens f, dup2()s it onto stdout and closes the first fd
      // (a flush) before writing; touch closes, then sets times.
      await shOk(`echo redirected > ${q(m('redirected.txt'))}`);
      assert.equal(await getText(bucket, 'redirected.txt'), 'redirected\n');
      await shOk(`touch ${q(m('touched.txt'))}`);
      await waitFor('the empty object of touch', async () => (await getBytes(bucket, 'touched.txt'))?.length === 0);
      assert.deepEqual(await pendingUploads(bucket), []);
    });

    test('a write at an offset other than the end fails with EINVAL, and the out-of-order bytes never reach the bucket', async () => {
      assertRow('writeOutOfOrder', await fsOp('write-out-of-order', m('out-of-order.txt')));
      // fs-op wrote 'abc' at 0, was refused 'xyz' at 100, then closed: only
      // the bytes written in order can be in the bucket (if close uploads them).
      const body = await getText(bucket, 'out-of-order.txt');
      assert.ok(body === undefined || body === 'abc', `object holds ${JSON.stringify(body)}`);
      assert.deepEqual(await pendingUploads(bucket), []);
    });

    test('a new file opened with O_SYNC or O_DSYNC fails with EINVAL and no object appears', async () => {
      const before = await snapshot(bucket);
      const [sync, dsync] = await fsOps(['create-sync', m('sync-new.txt')], ['create-dsync', m('dsync-new.txt')]);
      assertRow('openSyncFlags', sync, 'O_CREAT|O_SYNC');
      assertRow('openSyncFlags', dsync, 'O_CREAT|O_DSYNC');
      await assertUnchanged(bucket, before);
    });

    test('a write after fsync() fails with EIO and the object keeps what fsync completed', async () => {
      assertRow('writeAfterFsync', await fsOp('write-after-fsync', m('fsynced.txt')));
      assert.equal(await getText(bucket, 'fsynced.txt'), 'abc');
      assert.deepEqual(await pendingUploads(bucket), []);
    });

    test('overwriting an object without --allow-overwrite fails with EPERM and keeps the object', async () => {
      const before = await snapshot(bucket);
      const file = m('stored/file.txt');
      const [trunc, writeFile, open] = await fsOps(['open-trunc-write', file, 'new'], ['write', file, 'new'], ['open-existing-write', file]);
      assertRow('overwriteNotAllowed', trunc, 'O_WRONLY|O_TRUNC');
      assertRow('overwriteNotAllowed', writeFile, 'writeFile');
      assertRow('overwriteNotAllowed', open, 'O_WRONLY');
      const r = await sh(`echo new > ${q(m('stored/file.txt'))}`, { env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Operation not permitted/);
      assert.equal(await getText(bucket, 'stored/file.txt'), stored);
      await assertUnchanged(bucket, before);
    });

    test('unlink without --allow-delete fails with EPERM and keeps the object; rm says "Operation not permitted"', async () => {
      const before = await snapshot(bucket);
      assertRow('unlinkNotAllowed', await fsOp('unlink', m('stored/file.txt')));
      const r = await sh(`rm ${q(m('stored/file.txt'))}`, { env });
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trim(), `rm: cannot remove '${m('stored/file.txt')}': Operation not permitted`);
      assert.equal(await getText(bucket, 'stored/file.txt'), stored);
      assert.ok((await ls(m('stored'))).includes('file.txt'));
      await assertUnchanged(bucket, before);
    });

    test('a second writer of a file being written fails with EPERM; the first writer completes the object', async () => {
      assertRow('concurrentWriter', await fsOp('second-writer', m('two-writers.txt')));
      assert.equal(await getText(bucket, 'two-writers.txt'), 'abc');
      assert.deepEqual(await pendingUploads(bucket), []);
    });

    test('a reader of a file being written fails with EPERM; the writer completes the object', async () => {
      assertRow('concurrentWriter', await fsOp('reader-while-writing', m('read-while-writing.txt')));
      assert.equal(await getText(bucket, 'read-while-writing.txt'), 'abc');
    });

    test('mkdir makes a local folder: listed and usable in the mount, nothing in the bucket', async () => {
      const before = await snapshot(bucket);
      assert.equal(await fsOp('mkdir', m('local')), 'OK');
      assert.equal(await shOk(`ls -1A ${q(mnt)} | grep -x local; stat -c %F ${q(m('local'))}; ls -A ${q(m('local'))}`), 'local\ndirectory\n');
      await assertUnchanged(bucket, before);
    });

    test('mkdir of an existing name (a stored file, a remote folder, a local folder) fails with EEXIST', async () => {
      const before = await snapshot(bucket);
      const [file, remote, first, local] = await fsOps(
        ['mkdir', m('stored/file.txt')], ['mkdir', m('remote')], ['mkdir', m('local-twice')], ['mkdir', m('local-twice')]);
      assertRow('mkdirExists', file, 'a stored file');
      assertRow('mkdirExists', remote, 'a remote folder');
      assert.equal(first, 'OK');
      assertRow('mkdirExists', local, 'a local folder');
      await assertUnchanged(bucket, before);
    });

    test('a file written under mkdir-made folders puts its key in the bucket, and the folders become remote', async () => {
      assert.deepEqual(await fsOps(['mkdir', m('made')], ['mkdir', m('made/sub')]), ['OK', 'OK']);
      assert.deepEqual(await keys(bucket, 'made'), []);
      assert.equal(await fsOp('write', m('made/sub/file.txt'), 'under made'), 'OK');
      assert.deepEqual(await keys(bucket, 'made'), ['made/sub/file.txt']);
      assert.equal(await getText(bucket, 'made/sub/file.txt'), 'under made');
      // Remote now: rmdir is refused as for any folder of the bucket.
      const [sub, made] = await fsOps(['rmdir', m('made/sub')], ['rmdir', m('made')]);
      assertRow('rmdirRemote', sub);
      assertRow('rmdirRemote', made);
      assert.deepEqual(await ls(m('made/sub')), ['file.txt']);
    });

    test('rmdir of an empty mkdir-made folder succeeds and the folder is gone', async () => {
      const before = await snapshot(bucket);
      assert.deepEqual(await fsOps(['mkdir', m('empty-local')], ['rmdir', m('empty-local')], ['stat', m('empty-local')]), ['OK', 'OK', 'ENOENT']);
      assert.ok(!(await ls(mnt)).includes('empty-local'));
      await assertUnchanged(bucket, before);
    });

    test('rmdir of a local folder holding a local subfolder, or a file being written, fails with ENOTEMPTY', async () => {
      const before = await snapshot(bucket);
      const [outer, inner, notEmpty, innerGone, outerGone, busy] = await fsOps(
        ['mkdir', m('outer')], ['mkdir', m('outer/inner')], ['rmdir', m('outer')], ['rmdir', m('outer/inner')], ['rmdir', m('outer')],
        ['mkdir', m('busy')]);
      assert.deepEqual([outer, inner], ['OK', 'OK']);
      assertRow('rmdirNotEmpty', notEmpty, 'a local subfolder');
      assert.deepEqual([innerGone, outerGone], ['OK', 'OK'], 'empty again');
      assert.equal(busy, 'OK');
      await assertUnchanged(bucket, before);

      const child = await holdWrite(m('busy/file.txt'), 'busy');
      try {
        assertRow('rmdirNotEmpty', await fsOp('rmdir', m('busy')), 'a file being written');
        child.next();
        assert.equal(await child.line(), 'OK');
      } finally {
        await child.kill();
      }
      assert.equal(await getText(bucket, 'busy/file.txt'), 'busy');
    });

    test('rmdir of a folder that exists in the bucket fails with EPERM and keeps its objects', async () => {
      const before = await snapshot(bucket);
      assertRow('rmdirRemote', await fsOp('rmdir', m('remote')));
      assert.deepEqual(await ls(m('remote')), ['child.txt']);
      await assertUnchanged(bucket, before);
    });

    test('rename of a file fails with ENOSYS, mv says "Function not implemented", and the object stays', async () => {
      const before = await snapshot(bucket);
      assertRow('renameFile', await fsOp('rename', m('stored/file.txt'), m('stored/renamed.txt')));
      const r = await sh(`mv ${q(m('stored/file.txt'))} ${q(m('stored/moved.txt'))}`, { env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /^mv: cannot move '.*file\.txt' to '.*moved\.txt': Function not implemented$/m);
      assert.deepEqual(await ls(m('stored')), ['file.txt']);
      await assertUnchanged(bucket, before);
    });

    test('rename of a folder, remote or local, fails with EPERM and changes nothing', async () => {
      const before = await snapshot(bucket);
      const [remote, made, local, renamed, gone] = await fsOps(['rename', m('remote'), m('remote-renamed')], ['mkdir', m('local-to-rename')],
        ['rename', m('local-to-rename'), m('local-renamed')], ['stat', m('remote-renamed')], ['stat', m('local-renamed')]);
      assertRow('renameDirectory', remote, 'remote folder');
      assert.equal(made, 'OK');
      assertRow('renameDirectory', local, 'local folder');
      assert.deepEqual([renamed, gone], ['ENOENT', 'ENOENT']);
      assert.equal((await shOk(`stat -c %F ${q(m('local-to-rename'))} ${q(m('remote'))}`)), 'directory\ndirectory\n');
      await assertUnchanged(bucket, before);
    });

    test('symlink fails with EPERM and creates nothing', async () => {
      const before = await snapshot(bucket);
      const [symlink, stat] = await fsOps(['symlink', m('a-symlink'), 'stored/file.txt'], ['stat', m('a-symlink')]);
      assertRow('symlink', symlink);
      assert.equal(stat, 'ENOENT');
      await assertUnchanged(bucket, before);
    });

    test('a hard link fails with EPERM and creates nothing', async () => {
      const before = await snapshot(bucket);
      const [link, stat] = await fsOps(['link', m('stored/file.txt'), m('a-hard-link')], ['stat', m('a-hard-link')]);
      assertRow('hardLink', link);
      assert.equal(stat, 'ENOENT');
      await assertUnchanged(bucket, before);
    });

    test('mknod of a FIFO fails with EPERM and creates nothing', async () => {
      const before = await snapshot(bucket);
      const [mkfifo, stat] = (await py(`
say(attempt(lambda: os.mkfifo(sys.argv[1])))
say(attempt(lambda: os.stat(sys.argv[1])))
`, m('a-fifo'))).split('\n');
      assertRow('specialFile', mkfifo);
      assert.equal(stat, 'ENOENT');
      await assertUnchanged(bucket, before);
    });

    test('chmod, chown and utimes of a stored file fail with EPERM and leave the object as it was', async () => {
      const before = await snapshot(bucket);
      const file = m('stored/file.txt');
      const [chmod, chown, utimes] = await fsOps(['chmod', file], ['chown', file], ['utimes', file]);
      assertRow('setAttributes', chmod, 'chmod');
      assertRow('setAttributes', chown, 'chown');
      assertRow('setAttributes', utimes, 'utimes');
      assert.equal((await shOk(`stat -c %a ${q(m('stored/file.txt'))}`)).trim(), '644');
      await assertUnchanged(bucket, before);
    });

    test('truncate of a stored file fails with EPERM; of a file being written, only to its own size', async () => {
      const before = await snapshot(bucket);
      // truncate(2) by path: a setattr of the size, not an open.
      assertRow('truncate', await py(`say(attempt(lambda: os.truncate(sys.argv[1], 0)))`, m('stored/file.txt')), 'stored file');
      assert.equal(await getText(bucket, 'stored/file.txt'), stored);
      await assertUnchanged(bucket, before);

      const child = await holdWrite(m('truncated-while-writing.txt'), 'abc');
      try {
        const [other, same] = (await py(`
say(attempt(lambda: os.truncate(sys.argv[1], 10)))
say(attempt(lambda: os.truncate(sys.argv[1], 3)))
`, m('truncated-while-writing.txt'))).split('\n');
        assertRow('truncate', other, 'being written, to another size');
        assert.equal(same, 'OK', 'to its own size');
        child.next();
        assert.equal(await child.line(), 'OK');
      } finally {
        await child.kill();
      }
      assert.equal(await getText(bucket, 'truncated-while-writing.txt'), 'abc');
    });

    test('extended attributes: set, get, list and remove fail with ENOTSUP, the kernel\'s answer to the fs\'s ENOSYS', async () => {
      // The fs answers every xattr request with ENOSYS (the row). The FUSE
      // kernel module takes ENOSYS from an xattr op to mean "not
      // implemented": it remembers that for the mount and returns
      // EOPNOTSUPP (= ENOTSUP on Linux) to this call and every later one, so
      // ENOTSUP is what a program sees.
      const before = await snapshot(bucket);
      const file = m('stored/file.txt');
      const results = await py(`
p = sys.argv[1]
say(attempt(lambda: os.setxattr(p, 'user.test', b'1')))
say(attempt(lambda: os.getxattr(p, 'user.test')))
say(attempt(lambda: os.listxattr(p)))
say(attempt(lambda: os.removexattr(p, 'user.test')))
say(attempt(lambda: os.setxattr(p, 'user.test', b'1')))
`, file);
      tested.add('xattr');
      assert.equal(SEMANTICS.xattr.errno, 'ENOSYS');
      assert.deepEqual(results.split('\n'), ['ENOTSUP', 'ENOTSUP', 'ENOTSUP', 'ENOTSUP', 'ENOTSUP']);
      await assertUnchanged(bucket, before);
    });

    test('readlink of a stored file fails with EINVAL: the kernel answers it, as no symlink can exist here', async () => {
      assert.equal(await py(`say(attempt(lambda: os.readlink(sys.argv[1])))`, m('stored/file.txt')), 'EINVAL');
    });

    test('a missing name is ENOENT, a path through a file ENOTDIR, a folder opened for writing or unlinked EISDIR', async () => {
      const before = await snapshot(bucket);
      const calls: Array<[SemanticsRule, string, string[]]> = [
        ['notFound', 'stat', ['stat', m('no-such-file')]],
        ['notFound', 'read', ['read', m('tree/no-such-file')]],
        ['notFound', 'create in a missing folder', ['write', m('no-such-folder/file.txt')]],
        // The kernel answers these itself from the file's attributes; the errno is the row's.
        ['notADirectory', 'stat through a file', ['stat', m('stored/file.txt/x')]],
        ['notADirectory', 'readdir of a file', ['readdir', m('stored/file.txt')]],
        ['notADirectory', 'mkdir under a file', ['mkdir', m('stored/file.txt/x')]],
        ['isADirectory', 'open a folder for writing', ['open-existing-write', m('remote')]],
        ['isADirectory', 'unlink a folder', ['unlink', m('remote')]],
      ];
      const results = await fsOps(...calls.map(([, , call]) => call));
      calls.forEach(([rule, what], i) => assertRow(rule, results[i], what));
      await assertUnchanged(bucket, before);
    });

    test('a name over 255 bytes or a key over 1024 bytes fails with ENAMETOOLONG and uploads nothing', async () => {
      const before = await snapshot(bucket);
      const [file, folder] = await fsOps(['write', m('n'.repeat(256))], ['mkdir', m('é'.repeat(128))]);
      assertRow('nameTooLong', file, 'a 256-byte name');
      assertRow('nameTooLong', folder, 'a 256-byte UTF-8 folder name');
      // Five local folders of 200 bytes make a 1004-byte key prefix. (Not
      // fewer, longer ones: the test server stores a key as a file named
      // after its last segment plus a 15-byte suffix, so it fails lookups of
      // segments over 240 bytes.)
      const dirs = [...'vwxyz'].map((c, i, all) => path.join(mnt, ...all.slice(0, i + 1).map((d) => d.repeat(200))));
      assert.deepEqual(await fsOps(...dirs.map((d) => ['mkdir', d])), ['OK', 'OK', 'OK', 'OK', 'OK']);
      const dir = dirs[dirs.length - 1]!;
      const keyOf = (name: string): number => Buffer.byteLength(path.relative(mnt, path.join(dir, name)));
      const room = 1024 - keyOf('') - 1;
      const tooLong = 'n'.repeat(room + 1);
      assert.equal(keyOf(tooLong), 1025);
      const [longFile, longFolder] = await fsOps(['write', path.join(dir, tooLong)], ['mkdir', path.join(dir, tooLong)]);
      assertRow('nameTooLong', longFile, 'a file key of 1025 bytes');
      assertRow('nameTooLong', longFolder, 'a folder key of 1025 bytes');
      await assertUnchanged(bucket, before);
      // One byte less fits: the limit is S3's 1024 bytes.
      const fits = 'n'.repeat(room);
      assert.equal(await fsOp('write', path.join(dir, fits), 'fits'), 'OK', 'a file key of 1024 bytes');
      const written = await keys(bucket, 'v');
      assert.deepEqual(written.map((k) => Buffer.byteLength(k)), [1024]);
      assert.equal(await getText(bucket, written[0]!), 'fits');
    });

    test('create with O_EXCL of an existing name fails with EEXIST and keeps the object', async () => {
      const before = await snapshot(bucket);
      assertRow('createExists', await fsOp('create-excl', m('stored/file.txt')));
      await assertUnchanged(bucket, before);
    });

    test('a read after the object changed in the bucket fails with EIO', async () => {
      // Open and read the start, replace the object through the S3 API,
      // then read far from what was fetched: the ranged GET is conditional
      // on the ETag the file was opened with, and fails.
      const child = new Stepper(`
fd = os.open(sys.argv[1], os.O_RDONLY)
say(len(os.pread(fd, 16, 0)))
wait()
say(attempt(lambda: os.pread(fd, 4096, int(sys.argv[2]))))
os.close(fd)
`, [m('changing.bin'), String(6 * MiB)]);
      try {
        assert.equal(await child.line(), '16');
        await put(bucket, 'changing.bin', randomBytes(8 * MiB));
        child.next();
        assertRow('objectChanged', await child.line());
      } finally {
        await child.kill();
      }
    });
  });

  describe('--allow-overwrite', () => {
    const bucket = 'overwrite';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);

    before(async () => {
      mnt = path.join(work, 'overwrite');
      await seed(bucket, [['replace.txt', 'old'], ['echo.txt', 'old'], ['keep.txt', 'kept'], ['sync.txt', 'sync']]);
      await mount(bucket, mnt, ['--allow-overwrite']);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('opening an object with O_TRUNC and writing replaces it when close() returns', async () => {
      assert.equal(await fsOp('open-trunc-write', m('replace.txt'), 'replaced'), 'OK');
      assert.equal(await getText(bucket, 'replace.txt'), 'replaced');
      await shOk(`echo echoed > ${q(m('echo.txt'))}`);
      assert.equal(await getText(bucket, 'echo.txt'), 'echoed\n');
      assert.equal(await shOk(`cat ${q(m('echo.txt'))}`), 'echoed\n');
      assert.deepEqual(await pendingUploads(bucket), []);
    });

    test('opening an object for writing without O_TRUNC fails with EPERM and keeps the object', async () => {
      const before = await snapshot(bucket);
      assertRow('overwriteWithoutTruncate', await fsOp('open-existing-write', m('keep.txt')));
      const r = await sh(`echo appended >> ${q(m('keep.txt'))}`, { env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Operation not permitted/);
      assert.equal(await getText(bucket, 'keep.txt'), 'kept');
      await assertUnchanged(bucket, before);
    });

    test('opening an object with O_SYNC or O_DSYNC fails with EINVAL and keeps the object', async () => {
      const before = await snapshot(bucket);
      const [sync, dsync] = await fsOps(['open-sync-write', m('sync.txt')], ['open-dsync-write', m('sync.txt')]);
      assertRow('openSyncFlags', sync, 'O_SYNC');
      assertRow('openSyncFlags', dsync, 'O_DSYNC');
      assert.equal(await getText(bucket, 'sync.txt'), 'sync');
      await assertUnchanged(bucket, before);
    });
  });

  describe('--allow-delete', () => {
    const bucket = 'delete';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);

    before(async () => {
      mnt = path.join(work, 'delete');
      await seed(bucket, [['doomed.txt', 'doomed'], ['rm-me.txt', 'rm'], ['open-reader.txt', 'read me'], ['folder/kept.txt', 'kept']]);
      await mount(bucket, mnt, ['--allow-delete']);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('unlink deletes the object, and rm works', async () => {
      assert.deepEqual(await fsOps(['unlink', m('doomed.txt')], ['stat', m('doomed.txt')]), ['OK', 'ENOENT']);
      assert.equal(await getBytes(bucket, 'doomed.txt'), undefined);
      await shOk(`rm ${q(m('rm-me.txt'))}`);
      assert.equal(await getBytes(bucket, 'rm-me.txt'), undefined);
      assert.deepEqual(await ls(mnt), ['folder', 'open-reader.txt']);
    });

    // libfuse 2's high-level API does not unlink a file some process has
    // open unless the mount has the `hard_remove` option (fuse-adapter.ts
    // sets it): it would rename it to .fuse_hiddenXXXX, which we refuse.
    test('unlink of a file being written fails with EPERM, and the object appears on close', async () => {
      const child = await holdWrite(m('writing.txt'), 'still here');
      try {
        assertRow('unlinkWhileWriting', await fsOp('unlink', m('writing.txt')));
        child.next();
        assert.equal(await child.line(), 'OK');
      } finally {
        await child.kill();
      }
      assert.equal(await getText(bucket, 'writing.txt'), 'still here');
    });

    test('unlink of a file open for reading deletes the object at once, as Mountpoint does', async () => {
      const child = new Stepper(`
fd = os.open(sys.argv[1], os.O_RDONLY)
say(os.pread(fd, 4, 0).decode())
wait()
os.close(fd)
`, [m('open-reader.txt')]);
      try {
        assert.equal(await child.line(), 'read');
        assert.equal(await fsOp('unlink', m('open-reader.txt')), 'OK');
        assert.equal(await getBytes(bucket, 'open-reader.txt'), undefined);
      } finally {
        await child.kill();
      }
    });

    test('unlink of a folder fails with EISDIR and keeps its objects', async () => {
      const before = await snapshot(bucket);
      assertRow('isADirectory', await fsOp('unlink', m('folder')));
      await assertUnchanged(bucket, before);
    });
  });

  describe('--allow-edit (editing mode)', () => {
    const bucket = 'editing';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);
    /** renameat2(2) with flags, as python3 has no call for it: OK or the errno's name. */
    const renameat2 = (from: string, to: string, flags: number): Promise<string> => py(`
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
r = libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), int(sys.argv[3]))
say('OK' if r == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))
`, from, to, String(flags));

    before(async () => {
      mnt = path.join(work, 'editing');
      await seed(bucket, [
        ['a.txt', 'a'], ['b.txt', 'b'], ['dir/x.txt', 'x'], ['full/y.txt', 'y'], ['other/z.txt', 'z'],
      ]);
      await mount(bucket, mnt, ['--allow-edit', '--staging-directory', path.join(work, 'editing-staging')]);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('rename works, except RENAME_EXCHANGE (EINVAL), RENAME_NOREPLACE over a name (EEXIST), into itself (EINVAL), over a folder that is not empty (ENOTEMPTY)', async () => {
      assertRow('renameExchange', await renameat2(m('a.txt'), m('b.txt'), 2));
      assertRow('renameExists', await renameat2(m('a.txt'), m('b.txt'), 1));
      assertRow('renameIntoItself', await fsOp('rename', m('dir'), m('dir/inside')));
      assertRow('renameNotEmpty', await fsOp('rename', m('other'), m('full')));
      assert.equal(await getText(bucket, 'a.txt'), 'a');
      assert.equal(await getText(bucket, 'b.txt'), 'b');
      assert.deepEqual(await keys(bucket, 'other/'), ['other/z.txt']);
      assert.equal(await renameat2(m('a.txt'), m('c.txt'), 1), 'OK', 'RENAME_NOREPLACE to a free name works');
      assert.equal(await getText(bucket, 'c.txt'), 'a');
      assert.equal(await getBytes(bucket, 'a.txt'), undefined);
    });

    test('rmdir of a folder in the bucket that is not empty is ENOTEMPTY; O_SYNC is still EINVAL', async () => {
      assertRow('rmdirNotEmpty', await fsOp('rmdir', m('full')), 'a folder in the bucket');
      assert.deepEqual(await keys(bucket, 'full/'), ['full/y.txt']);
      assertRow('openSyncFlags', await py(`say(attempt(lambda: os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_SYNC))))`, m('sync.txt')), 'editing mode');
    });
  });

  describe('--read-only', () => {
    const bucket = 'readonly';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);

    before(async () => {
      mnt = path.join(work, 'readonly');
      await seed(bucket, [['file.txt', 'read me'], ['folder/inner.txt', 'inner']]);
      await mount(bucket, mnt, ['--read-only']);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('reading and listing work', async () => {
      assert.equal(await shOk(`cat ${q(m('file.txt'))}`), 'read me');
      assert.deepEqual(await ls(mnt), ['file.txt', 'folder']);
    });

    test('writing a stored file fails with EROFS and keeps the object', async () => {
      const before = await snapshot(bucket);
      const [open, trunc, writeFile] = await fsOps(['open-existing-write', m('file.txt')], ['open-trunc-write', m('file.txt')], ['write', m('file.txt')]);
      assertRow('readOnly', open, 'O_WRONLY');
      assertRow('readOnly', trunc, 'O_WRONLY|O_TRUNC');
      assertRow('readOnly', writeFile, 'writeFile');
      await assertUnchanged(bucket, before);
    });

    test('creating a new file fails with EROFS and uploads nothing', async () => {
      const before = await snapshot(bucket);
      const [writeFile, excl, stat] = await fsOps(['write', m('new.txt')], ['create-excl', m('new.txt')], ['stat', m('new.txt')]);
      assertRow('readOnly', writeFile, 'writeFile');
      assertRow('readOnly', excl, 'O_CREAT|O_EXCL');
      assert.equal(stat, 'ENOENT');
      await assertUnchanged(bucket, before);
    });

    test('mkdir fails with EROFS', async () => {
      const [mkdir, stat] = await fsOps(['mkdir', m('new-folder')], ['stat', m('new-folder')]);
      assertRow('readOnly', mkdir);
      assert.equal(stat, 'ENOENT');
    });

    test('unlink fails with EROFS and keeps the object', async () => {
      const before = await snapshot(bucket);
      assertRow('readOnly', await fsOp('unlink', m('file.txt')));
      await assertUnchanged(bucket, before);
    });

    test('rmdir, rename, symlink, link, chmod, utimes and truncate fail with EROFS', async () => {
      const before = await snapshot(bucket);
      const calls = [
        ['rmdir', m('folder')], ['rename', m('file.txt'), m('renamed.txt')], ['symlink', m('a-symlink'), 'file.txt'],
        ['link', m('file.txt'), m('a-hard-link')], ['chmod', m('file.txt')], ['utimes', m('file.txt')],
      ];
      const results = await fsOps(...calls);
      calls.forEach(([op], i) => assertRow('readOnly', results[i], op));
      assertRow('readOnly', await py(`say(attempt(lambda: os.truncate(sys.argv[1], 0)))`, m('file.txt')), 'truncate');
      await assertUnchanged(bucket, before);
    });
  });

  describe('--prefix P/', () => {
    const bucket = 'prefixed';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);

    before(async () => {
      mnt = path.join(work, 'prefixed');
      await seed(bucket, [
        ['P/inside.txt', 'inside'],
        ['P/sub/deep.txt', 'deep'],
        ['outside.txt', 'outside'],
        ['Q/other.txt', 'other'],
        ['Px.txt', 'shares the letters, not the prefix'],
      ]);
      await mount(bucket, mnt, ['--prefix', 'P/']);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('only the keys under P/ are visible, at the root of the mount', async () => {
      assert.deepEqual(await ls(mnt), ['inside.txt', 'sub']);
      assert.deepEqual(await ls(m('sub')), ['deep.txt']);
      assert.equal(await shOk(`cat ${q(m('inside.txt'))}`), 'inside');
      assert.equal(await shOk(`cat ${q(m('sub/deep.txt'))}`), 'deep');
    });

    test('keys outside the prefix cannot be reached', async () => {
      const names = ['outside.txt', 'Q', 'Px.txt', 'P', 'P/inside.txt'];
      const results = await fsOps(...names.map((name) => ['stat', m(name)]));
      names.forEach((name, i) => assertRow('notFound', results[i], name));
    });

    test('a new file lands under P/ in the bucket', async () => {
      assert.deepEqual(await fsOps(['write', m('new.txt'), 'new'], ['mkdir', m('made')], ['write', m('made/deeper.txt'), 'deeper']), ['OK', 'OK', 'OK']);
      assert.equal(await getText(bucket, 'P/new.txt'), 'new');
      assert.equal(await getText(bucket, 'P/made/deeper.txt'), 'deeper');
      assert.deepEqual((await keys(bucket)).sort(), [
        'P/inside.txt', 'P/made/deeper.txt', 'P/new.txt', 'P/sub/deep.txt', 'Px.txt', 'Q/other.txt', 'outside.txt',
      ]);
    });
  });

  describe('names: keys that are shown, hidden, or folders', () => {
    const bucket = 'names';
    let mnt: string;
    let proxy: Proxy;
    const m = (p: string): string => path.join(mnt, p);
    const long = 'L'.repeat(300);
    /** Keys the test server cannot store; the proxy lists them (see startProxy). */
    const unstorable = ['names/a//b', `names/${long}`, `names/deep/${long}/x`];
    let seeded: string[];

    before(async () => {
      mnt = path.join(work, 'names');
      await seedingMany;
      await seed(bucket, [
        ['names/plain.txt', 'plain'],
        ['names/both', 'a file that is also a prefix'],
        ['names/both/inner.txt', 'inner'],
        ['names/dots/./x', 'dot segment'],
        ['names/dots/sub/../y', 'dot-dot segment'],
        ['names/trail/', 'a key ending in / with content'],
        ['names/trail/real.txt', 'real'],
        ['names/marker/', 'only a key ending in /'],
        ['denied/secret.txt', 'a policy denies reading this'],
      ]);
      seeded = await snapshot(bucket);
      proxy = await startProxy(server, bucket, { listed: unstorable, denied: ['denied/secret.txt'] });
      await mount(bucket, mnt, [], proxy.endpoint);
    });

    after(async () => {
      await unmount(mnt);
      await proxy?.close();
    });

    test('a listing shows valid names and hides keys with empty, "." or ".." segments, 300-byte names, and keys ending in /', async () => {
      assert.deepEqual(await ls(m('names')), ['a', 'both', 'deep', 'dots', 'marker', 'plain.txt', 'trail']);
      assert.deepEqual(await ls(m('names/a')), [], "a//b: the folder a shows, the empty name under it does not");
      assert.deepEqual(await ls(m('names/deep')), [], 'a folder whose only child has a 300-byte name');
      assert.deepEqual(await ls(m('names/dots')), ['sub'], 'dots/./x hidden; dots/sub/../y shows only the real folder sub');
      assert.deepEqual(await ls(m('names/dots/sub')), []);
      assert.equal(await fsOp('stat', m(`names/${long}`)), 'ENOENT', 'a 300-byte name cannot be looked up');
    });

    test('a key that is both a file and a prefix shows as a folder: the folder wins', async () => {
      assert.equal((await shOk(`stat -c %F ${q(m('names/both'))}`)).trim(), 'directory');
      assert.deepEqual(await ls(m('names/both')), ['inner.txt']);
      assert.equal(await shOk(`cat ${q(m('names/both/inner.txt'))}`), 'inner');
      assert.equal(await fsOp('read', m('names/both')), 'EISDIR');
    });

    test('a key ending in / with content is not a file: its folder lists only real children', async () => {
      assert.deepEqual(await ls(m('names/trail')), ['real.txt']);
      assert.deepEqual(await ls(m('names/marker')), []);
      assert.equal((await shOk(`stat -c %F ${q(m('names/marker'))}`)).trim(), 'directory');
    });

    test('ls -laR and find walk the hidden keys without an error, and the mount still answers', async () => {
      await shOk(`ls -laR ${q(m('names'))} > /dev/null`);
      const found = (await shOk(`cd ${q(mnt)} && find names | sort`)).split('\n').filter(Boolean);
      assert.deepEqual(found, [
        'names', 'names/a', 'names/both', 'names/both/inner.txt', 'names/deep', 'names/dots', 'names/dots/sub',
        'names/marker', 'names/plain.txt', 'names/trail', 'names/trail/real.txt',
      ]);
      assert.deepEqual(await ls(mnt), ['denied', 'many', 'names']);
      assert.deepEqual(await snapshot(bucket), seeded, 'listing changes nothing');
    });

    test('a read that S3 refuses with 403 (a bucket policy) fails with EACCES', async () => {
      // ListObjects is allowed, so the file is listed; HeadObject and
      // GetObject are denied, so the open (after a lookup) or the read is.
      assert.deepEqual(await ls(m('denied')), ['secret.txt']);
      assertRow('accessDenied', await fsOp('read', m('denied/secret.txt')));
      const r = await sh(`cat ${q(m('denied/secret.txt'))}`, { env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Permission denied/);
    });

    test(`a folder of ${MANY} keys lists completely`, async () => {
      assert.equal((await shOk(`ls ${q(m('many'))} | wc -l`)).trim(), String(MANY));
      const names = await ls(m('many'));
      assert.equal(names[0], 'key-0000.txt');
      assert.equal(names[MANY - 1], `key-${MANY - 1}.txt`);
      assert.equal(new Set(names).size, MANY);
      assert.equal((await shOk(`ls -l ${q(m('many'))} | grep -c '^-rw-r--r--'`)).trim(), String(MANY));
    });
  });

  describe('S3 failures', () => {
    const bucket = 'failing';
    let mnt: string;
    const m = (p: string): string => path.join(mnt, p);

    before(async () => {
      mnt = path.join(work, 'failing');
      await seed(bucket, [['seen.txt', 'seen'], ['unseen.txt', 'unseen']]);
      await mount(bucket, mnt, []);
    });

    after(async () => {
      await unmount(mnt);
    });

    test('while S3 is unreachable lookups, listings and new files fail with EIO; all work again once it is back', async () => {
      assert.equal(await shOk(`cat ${q(m('seen.txt'))}`), 'seen');
      server.kill();
      try {
        // At once: each waits out the retries (seconds, see retry-strategy.ts).
        const [lookup, listing, create] = await Promise.all([
          fsOp('stat', m('unseen.txt')), fsOp('readdir', mnt), fsOp('write', m('new.txt')),
        ]);
        assertRow('ioError', lookup, 'lookup');
        assertRow('ioError', listing, 'listing');
        assertRow('ioError', create, 'create');
      } finally {
        await server.restart();
      }
      await waitFor('the mount to answer again', async () => (await fsOp('stat', m('unseen.txt'))) === 'OK');
      assert.equal(await shOk(`cat ${q(m('unseen.txt'))}`), 'unseen');
      assert.deepEqual(await keys(bucket), ['seen.txt', 'unseen.txt']);
      assert.deepEqual(await pendingUploads(bucket), []);
    });
  });

  test('every row of SEMANTICS is tested above or cannot be reached through a mount', () => {
    const all = Object.keys(SEMANTICS).sort();
    const unreachable = Object.keys(UNREACHABLE);
    for (const rule of unreachable) assert.ok(!tested.has(rule as SemanticsRule), `${rule} is tested, so not unreachable`);
    assert.deepEqual([...tested, ...unreachable].sort(), all, 'rows neither tested nor listed as unreachable');
  });
});
