/**
 * One workload through a mounted folder, in its own process (a process must
 * not make synchronous calls into a mount it serves, and the bench's own
 * event loop must not disturb the timing). argv[2] is a JSON {@link Task};
 * prints one JSON {@link TaskResult}. Everything read is checked against the
 * deterministic data (data.ts): a fast wrong answer is a failure.
 * The parent sets UV_THREADPOOL_SIZE so parallel fs calls really run in parallel.
 *
 * The workloads timed "until in S3" (`cp -r`, the editor save) watch the
 * bucket straight from the server, not through the delay proxy: a mount in
 * editing mode returns from close() before it uploads, so the program's
 * own exit is not the end of the work.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { BLOCK, KiB, blockView, content, fill, matches, smallName } from './data.js';
import { errorText, pool, printResult, sdkClientBase, type SdkEndpoint, type Task, type TaskResult } from './workload.js';

/**
 * Between two looks at the bucket. Each look is one listing (or HEAD) on
 * loopback, a few ms of the server's CPU; at 50 ms the figure is late by
 * 25 ms on average, about 1 % of the 2–3 s a copy of 500 files takes on wan.
 */
const POLL_MS = 50;

async function seqread(t: Extract<Task, { op: 'seqread' }>): Promise<TaskResult> {
  const buf = Buffer.allocUnsafe(BLOCK);
  const t0 = performance.now();
  const fd = fs.openSync(t.target, 'r');
  let pos = 0;
  let bad = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, BLOCK, pos);
    if (n === 0) break;
    if (!matches(t.seed, pos, buf, n)) bad++;
    pos += n;
  }
  fs.closeSync(fd);
  const seconds = (performance.now() - t0) / 1000;
  if (pos !== t.size) return { ok: false, seconds, bytes: pos, error: `read ${pos} bytes, expected ${t.size}` };
  if (bad) return { ok: false, seconds, bytes: pos, error: `${bad} reads returned wrong bytes` };
  return { ok: true, seconds, bytes: pos };
}

async function ttfb(t: Extract<Task, { op: 'ttfb' }>): Promise<TaskResult> {
  const buf = Buffer.alloc(1);
  const t0 = performance.now();
  const fd = fs.openSync(t.target, 'r');
  const n = fs.readSync(fd, buf, 0, 1, 0);
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  if (n !== 1) return { ok: false, seconds, error: `read returned ${n}` };
  return { ok: true, seconds, bytes: 1 };
}

async function randread(t: Extract<Task, { op: 'randread' }>): Promise<TaskResult> {
  const len = 4 * KiB;
  let bad = 0;
  if (t.threads <= 1) {
    const buf = Buffer.allocUnsafe(len);
    const fd = fs.openSync(t.target, 'r');
    const t0 = performance.now();
    for (const off of t.offsets) {
      const n = fs.readSync(fd, buf, 0, len, off);
      if (n !== len || !matches(t.seed, off, buf, n, true)) bad++;
    }
    const seconds = (performance.now() - t0) / 1000;
    fs.closeSync(fd);
    return bad ? { ok: false, seconds, error: `${bad} wrong reads` } : { ok: true, seconds, ops: t.offsets.length, bytes: t.offsets.length * len };
  }
  // One open file per thread, as `threads` independent readers would have.
  const handles = await Promise.all(Array.from({ length: t.threads }, () => fsp.open(t.target, 'r')));
  const bufs = handles.map(() => Buffer.allocUnsafe(len));
  let next = 0;
  const t0 = performance.now();
  await Promise.all(handles.map(async (h, i) => {
    const buf = bufs[i]!;
    while (next < t.offsets.length) {
      const off = t.offsets[next++]!;
      const { bytesRead } = await h.read(buf, 0, len, off);
      if (bytesRead !== len || !matches(t.seed, off, buf, bytesRead, true)) bad++;
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(handles.map((h) => h.close()));
  return bad ? { ok: false, seconds, error: `${bad} wrong reads` } : { ok: true, seconds, ops: t.offsets.length, bytes: t.offsets.length * len };
}

async function smallread(t: Extract<Task, { op: 'smallread' }>): Promise<TaskResult> {
  let bad = 0;
  const t0 = performance.now();
  // As `cat dir/*` or a data loader would: list the folder, then read every file.
  const names = (await fsp.readdir(t.dir)).filter((n) => /^f\d{4}$/.test(n)).sort().slice(0, t.count);
  await pool(names, t.parallel, async (name) => {
    const data = await fsp.readFile(path.join(t.dir, name));
    const seed = t.seedBase + Number(name.slice(1));
    if (data.length !== t.size || !matches(seed, 0, data, data.length, true)) bad++;
  });
  const seconds = (performance.now() - t0) / 1000;
  if (names.length !== t.count) return { ok: false, seconds, error: `listed ${names.length} files, expected ${t.count}` };
  return bad ? { ok: false, seconds, error: `${bad} files with wrong bytes` } : { ok: true, seconds, ops: names.length, bytes: names.length * t.size };
}

async function ls(t: Extract<Task, { op: 'ls' }>): Promise<TaskResult> {
  const t0 = performance.now();
  const r = spawnSync('ls', ['-l', t.dir], { maxBuffer: 256 * 1024 * 1024, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) return { ok: false, seconds, error: `ls exited ${r.status}: ${(r.stderr ?? '').slice(0, 300)}` };
  const entries = r.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('total')).length;
  if (entries !== t.expect) return { ok: false, seconds, error: `ls -l showed ${entries} entries, expected ${t.expect}` };
  return { ok: true, seconds, ops: entries };
}

async function seqwrite(t: Extract<Task, { op: 'seqwrite' }>): Promise<TaskResult> {
  const t0 = performance.now();
  const fd = fs.openSync(t.target, 'w');
  for (let pos = 0, i = 0; pos < t.size; pos += BLOCK, i++) {
    const block = blockView(t.seed, i, Math.min(BLOCK, t.size - pos));
    let off = 0;
    while (off < block.length) off += fs.writeSync(fd, block, off, block.length - off, pos + off);
  }
  // close() returns once the object is in the bucket (for mounts that upload on close).
  fs.closeSync(fd);
  const seconds = (performance.now() - t0) / 1000;
  return { ok: true, seconds, bytes: t.size };
}

async function smallwrite(t: Extract<Task, { op: 'smallwrite' }>): Promise<TaskResult> {
  const files = Array.from({ length: t.count }, (_, i) => ({ name: smallName(i), data: content(t.seedBase + i, t.size) }));
  const t0 = performance.now();
  await pool(files, t.parallel, async (f) => {
    await fsp.writeFile(path.join(t.dir, f.name), f.data);
  });
  const seconds = (performance.now() - t0) / 1000;
  return { ok: true, seconds, ops: t.count, bytes: t.count * t.size };
}

/** A client straight to the server; the SDK is loaded only by the workloads that watch the bucket. */
async function directClient(ep: SdkEndpoint): Promise<{ s3: S3Client; sdk: typeof import('@aws-sdk/client-s3') }> {
  const sdk = await import('@aws-sdk/client-s3');
  const { NodeHttpHandler } = await import('@smithy/node-http-handler');
  const s3 = new sdk.S3Client({
    ...sdkClientBase(ep),
    requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: 2 }), requestTimeout: 30_000 }),
  });
  // Load the SDK's code and open the connection before the timed part.
  await s3.send(new sdk.HeadBucketCommand({ Bucket: ep.bucket }));
  return { s3, sdk };
}

/** Runs a program to its end; rejects with its exit status and the end of its stderr. */
function runProgram(cmd: string, args: string[], stdinFile?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdin = stdinFile === undefined ? 'ignore' : fs.openSync(stdinFile, 'r');
    // GIO_USE_VFS=local: GLib's own local-file code, without asking a GVfs daemon over D-Bus first.
    const child = spawn(cmd, args, { stdio: [stdin, 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C', GIO_USE_VFS: 'local' } });
    if (typeof stdin === 'number') fs.closeSync(stdin);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-600); });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${err.trim()}`));
    });
  });
}

async function cpr(t: Extract<Task, { op: 'cpr' }>): Promise<TaskResult> {
  const { s3, sdk } = await directClient(t.poll);
  // `cp -r SOURCE DEST` makes DEST a copy of SOURCE: one key per file, in S3's (byte) order.
  const expected = fs.readdirSync(t.source).map((n) => t.prefix + n).sort();
  if (expected.length !== t.count) throw new Error(`${t.source} holds ${expected.length} files, not ${t.count}`);
  const t0 = performance.now();
  await runProgram('cp', ['-r', t.source, t.dest]);
  const cpSeconds = (performance.now() - t0) / 1000;
  // Each listing starts after the keys already all seen: the uploads end
  // nearly in order, so the listings shrink to the last few keys instead
  // of the server listing 500 every 50 ms while the mount's last uploads
  // go to it (and the bench's own parsing of them on the same 2 cores).
  const seen = new Set<string>();
  let done = 0;
  let looks = 0;
  for (;;) {
    let token: string | undefined;
    const startAfter = done > 0 ? expected[done - 1] : undefined;
    do {
      const page = await s3.send(new sdk.ListObjectsV2Command({ Bucket: t.poll.bucket, Prefix: t.prefix, ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}) }));
      for (const o of page.Contents ?? []) if (o.Key && o.Size === t.size) seen.add(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    while (done < expected.length && seen.has(expected[done]!)) done++;
    looks++;
    if (done === expected.length) break;
    await sleep(POLL_MS);
  }
  const seconds = (performance.now() - t0) / 1000;
  s3.destroy();
  return { ok: true, seconds, ops: t.count, bytes: t.count * t.size, extra: { cpSeconds, listings: looks } };
}

async function editsave(t: Extract<Task, { op: 'editsave' }>): Promise<TaskResult> {
  const { s3, sdk } = await directClient(t.poll);
  const before = (await s3.send(new sdk.HeadObjectCommand({ Bucket: t.poll.bucket, Key: t.key }))).ETag;
  const t0 = performance.now();
  await runProgram('gio', ['save', t.target], t.source);
  const saveSeconds = (performance.now() - t0) / 1000;
  // Until the key holds the new bytes: an ETag that changed to something
  // else (a partial version) is read and compared, and the wait goes on.
  let seen = before;
  let versions = 0;
  for (;;) {
    const head = await s3.send(new sdk.HeadObjectCommand({ Bucket: t.poll.bucket, Key: t.key })).catch(() => undefined);
    if (head?.ETag !== undefined && head.ETag !== seen) {
      seen = head.ETag;
      versions++;
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: t.poll.bucket, Key: t.key })).catch(() => undefined);
      if (out) {
        const h = createHash('md5');
        for await (const c of out.Body as AsyncIterable<Uint8Array>) h.update(c);
        if (h.digest('hex') === t.md5) break;
      }
    }
    await sleep(POLL_MS);
  }
  const seconds = (performance.now() - t0) / 1000;
  s3.destroy();
  return { ok: true, seconds, bytes: t.size, extra: { saveSeconds, versionsSeen: versions } };
}

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2] ?? '{}') as Task;
  void fill;
  let r: TaskResult;
  try {
    switch (task.op) {
      case 'seqread': r = await seqread(task); break;
      case 'ttfb': r = await ttfb(task); break;
      case 'randread': r = await randread(task); break;
      case 'smallread': r = await smallread(task); break;
      case 'ls': r = await ls(task); break;
      case 'seqwrite': r = await seqwrite(task); break;
      case 'smallwrite': r = await smallwrite(task); break;
      case 'cpr': r = await cpr(task); break;
      case 'editsave': r = await editsave(task); break;
      case 'twice': {
        const run = (): Promise<TaskResult> => (task.task.op === 'seqread' ? seqread(task.task) : smallread(task.task));
        const first = await run();
        r = first.ok ? await run() : first;
        if (first.ok) r = { ...r, extra: { ...r.extra, firstSeconds: first.seconds } };
        break;
      }
    }
  } catch (err) {
    r = { ok: false, seconds: 0, error: errorText(err) };
  }
  printResult(r);
  process.exit(0);
}

void main();
