/**
 * `npm run bench`: the benchmark of docs/benchmarks.md. Runs the same workloads, in one run,
 * against our mount, s3fs, rclone mount and a direct @aws-sdk/client-s3
 * baseline, over the local S3 server (test/helpers/s3-server.ts), on two
 * network profiles: `lan` (loopback) and `wan` (delay-proxy.ts: 40 ms RTT,
 * 400 Mbit/s shared). Prints markdown tables, writes
 * docs/bench-results/latest.json and the results section of docs/benchmarks.md.
 *
 * Usage: node dist/test/bench/run.js [--quick] [--profile lan|wan|lanproxy|lan,wan]
 *   [--only seqread,ttfb,...,cpr,cprstream,editsave] [--contenders sdk,ours,s3fs,rclone,ours-copy] [--runs N]
 *   [--data-dir DIR] [--no-doc] [--json FILE] [--cpu-prof DIR] [--no-proxy-check]
 *   [--settle SECONDS] [--merge] [--report-only] [--staging-in DIR] [--server-writes-on-disk]
 * --merge keeps the results found in the JSON file that this invocation does
 * not measure (other profiles; with --only, a profile's other workloads), so
 * lan and wan, or one workload after a change, can be measured separately;
 * --settle waits (default 10 s at most) before each run for other processes
 * to leave the CPUs; --report-only rewrites docs/benchmarks.md from the JSON
 * file without measuring; --staging-in puts the staging folders of our
 * mount's editing mode under DIR instead of the bench's temporary folder
 * (to compare file systems: staging costs a few local file operations and
 * fsyncs per file). The server keeps the objects the write workloads store
 * on a tmpfs (write-area.ts) unless --server-writes-on-disk.
 *
 * cpr, cprstream and editsave measure writes until the objects are in S3:
 * `cp -r` of a local folder into our mount in editing mode (cpr; s3fs and
 * rclone as they are) and in the default mode (cprstream), against the
 * SDK's PutObject of the same files; `gio save` of 10 MiB over an object
 * (editsave), whose figure is the bytes the delay proxy carried to the
 * server (proxied profiles only).
 */
import { execSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectsCommand, GetObjectCommand,
  HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startS3Server, type TestS3Server } from '../helpers/s3-server.js';
import { abortFuse, cleanup, installCleanupHandlers } from './cleanup.js';
import {
  ALL_CONTENDERS, KNOWN_CONTENDERS, MountFailed, PEERS, RssSampler, baseEnv, waitQuiet, mountOurs, mountRclone, mountS3fs,
  type ContenderName, type MountHandle, type Target,
} from './contenders.js';
import { EDIT_SEED, GiB, KiB, LIST_SEED, MiB, SMALL_SEED_BASE, WRITE_SEED_BASE, content, fill, listName, md5Of, randomOffsets, smallName } from './data.js';
import type { ProxyConfig, ProxyMessage, ProxyStats } from './delay-proxy.js';
import { runProxyCheck, type ProxyCheckReport } from './proxy-check.js';
import { prepareWriteArea } from './write-area.js';
import {
  FIGURES, failureNotes, markdownTable, requestTable, summarize, type Measurement, type ProfileReport, type Summary,
} from './report.js';
import { WORKLOADS, pool, sdkClientBase, type Task, type TaskResult, type WorkloadName } from './workload.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../..');
const FS_CHILD = path.join(HERE, 'fs-child.js');
const SDK_CHILD = path.join(HERE, 'sdk-child.js');
const PROXY = path.join(HERE, 'delay-proxy.js');

const BUCKET = 'bench';
/** Where the write workloads store, under the bucket (write-area.ts). */
const WRITE_FOLDER = 'w';
/** Where the server kept them in this invocation, for the report. */
let serverWrites = 'disk';
const CREDS = { accessKeyId: 'BENCHKEY', secretAccessKey: 'BENCHSECRET0123456789' };
const SMALL_SIZE = 64 * KiB;
const LIST_COUNT = 10_000;
const PART = 8 * MiB;
const SDK_INFLIGHT = 16;
const PARALLEL = 16;
/** The editor save's file: over one 8 MiB part, so a mount's upload of it is a multipart upload. */
const EDIT_SIZE = 10 * MiB;

// ---------------------------------------------------------------------------
// Options.

interface Options {
  quick: boolean;
  profiles: string[];
  only: WorkloadName[];
  contenders: ContenderName[];
  runs: number;
  dataDir: string;
  writeDoc: boolean;
  jsonOut: string;
  cpuProfDir: string | undefined;
  proxyCheck: boolean;
  /** Before each run, wait up to this long for other work to leave the CPUs. */
  settleMs: number;
  /** Keep the other profiles' results found in the JSON file (to measure profiles in separate invocations). */
  merge: boolean;
  /** Only rewrite the markdown from the JSON file. */
  reportOnly: boolean;
  /** Where editing mode's staging folders go; undefined: the bench's temporary folder. */
  stagingIn: string | undefined;
  /** The server's `w/` on a tmpfs (write-area.ts). */
  serverWritesInMemory: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    quick: false,
    profiles: ['lan', 'wan'],
    only: [...WORKLOADS],
    contenders: [...ALL_CONTENDERS],
    runs: 3,
    dataDir: path.join(os.tmpdir(), 'sosmount-bench-data'),
    writeDoc: true,
    jsonOut: path.join(REPO, 'docs/bench-results/latest.json'),
    cpuProfDir: undefined,
    proxyCheck: true,
    settleMs: 10_000,
    merge: false,
    reportOnly: false,
    stagingIn: undefined,
    serverWritesInMemory: true,
  };
  let runsSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--quick': o.quick = true; break;
      case '--profile': case '--profiles': o.profiles = val().split(','); break;
      case '--only': o.only = val().split(',') as WorkloadName[]; break;
      case '--contenders': o.contenders = val().split(',') as ContenderName[]; break;
      case '--runs': o.runs = Number(val()); runsSet = true; break;
      case '--data-dir': o.dataDir = path.resolve(val()); break;
      case '--no-doc': o.writeDoc = false; break;
      case '--json': o.jsonOut = path.resolve(val()); break;
      case '--cpu-prof': o.cpuProfDir = path.resolve(val()); break;
      case '--merge': o.merge = true; break;
      case '--report-only': o.reportOnly = true; break;
      case '--staging-in': o.stagingIn = path.resolve(val()); break;
      case '--server-writes-on-disk': o.serverWritesInMemory = false; break;
      case '--settle': o.settleMs = Number(val()) * 1000; break;
      case '--no-proxy-check': o.proxyCheck = false; break;
      case '--proxy-check': o.proxyCheck = true; break;
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url).replace(/\.js$/, '.js'), 'utf8').split('*/')[0]!.replace(/^\/\*\*?/, '').replace(/^ \* ?/gm, '') + '\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  for (const w of o.only) if (!WORKLOADS.includes(w)) throw new Error(`unknown workload ${w} (${WORKLOADS.join(', ')})`);
  for (const c of o.contenders) if (!KNOWN_CONTENDERS.includes(c)) throw new Error(`unknown contender ${c} (${KNOWN_CONTENDERS.join(', ')})`);
  for (const p of o.profiles) if (!['lan', 'wan', 'lanproxy'].includes(p)) throw new Error(`unknown profile ${p} (lan, wan, lanproxy)`);
  if (o.quick && !runsSet) o.runs = 1;
  if (o.quick) o.proxyCheck = false;
  return o;
}

// ---------------------------------------------------------------------------
// Profiles and sizes.

interface Profile {
  name: string;
  proxy: Omit<ProxyConfig, 'targetHost' | 'targetPort' | 'listenPort'> | undefined;
  rttMs: number;
  bigSize: number;
  /** The object of the large-object random reads: too big to download during them (Mountpoint's random-read benchmark reads a 100 GiB object). */
  largeSize: number;
  writeSize: number;
  rand1: number;
  rand16: number;
  smallRead: number;
  smallWrite: number;
}

function profileOf(name: string, quick: boolean): Profile {
  const wan = name === 'wan';
  const base = {
    name,
    rttMs: wan ? 40 : 0,
    smallRead: quick ? 300 : 1000,
    smallWrite: quick ? 150 : 500,
    largeSize: quick ? 2 * GiB : 8 * GiB,
  };
  const proxy = name === 'wan'
    ? { oneWayDelayMs: 20, rateBytesPerSec: 50_000_000, handshake: true, windowBytes: 4 * MiB }
    : name === 'lanproxy' ? { oneWayDelayMs: 0, rateBytesPerSec: 0, handshake: false, windowBytes: 4 * MiB } : undefined;
  if (wan) {
    return { ...base, proxy, bigSize: quick ? 64 * MiB : 256 * MiB, writeSize: quick ? 64 * MiB : 256 * MiB, rand1: quick ? 100 : 200, rand16: quick ? 500 : 2000 };
  }
  return { ...base, proxy, bigSize: quick ? 256 * MiB : GiB, writeSize: quick ? 256 * MiB : GiB, rand1: quick ? 500 : 2000, rand16: quick ? 500 : 2000 };
}

/** Time limit per workload; a run past it is TIMEOUT. */
const LIMIT_S: Record<WorkloadName, number> = {
  seqread: 300, ttfb: 30, randread1: 150, randread16: 150, randlarge1: 150, randlarge16: 150, smallread: 180, ls: 150, seqwrite: 400, smallwrite: 150,
  cpr: 150, cprstream: 150, editsave: 60, seqread2: 400, smallread2: 240,
};

/**
 * Workloads measured with some contenders only: the default-mode copy and
 * the editor save are about our mount's two modes (the peers' copy is the
 * cpr row).
 */
const WORKLOAD_CONTENDERS: Partial<Record<WorkloadName, readonly ContenderName[]>> = {
  cprstream: ['sdk', 'ours', 'ours-copy'],
  editsave: ['sdk', 'ours', 'ours-copy'],
  // The SDK keeps no local copy to read twice.
  seqread2: ['ours', 's3fs', 'rclone'],
  smallread2: ['ours', 's3fs', 'rclone'],
};
/** Every contender mounts these with its local cache in a fresh folder: ours --cache, rclone --vfs-cache-mode full, s3fs use_cache. */
const CACHE_WORKLOADS: readonly WorkloadName[] = ['seqread2', 'smallread2'];
/** Our mount runs these with --allow-edit. */
const EDITING_WORKLOADS: readonly WorkloadName[] = ['cpr', 'editsave'];
/** Figures counted by the delay proxy: not measured on a profile without it. */
const PROXY_WORKLOADS: readonly WorkloadName[] = ['editsave'];
const WRITE_WORKLOADS: readonly WorkloadName[] = ['seqwrite', 'smallwrite', 'cpr', 'cprstream', 'editsave'];

const bigKey = (size: number): string => `big-${size / MiB}m.bin`;
const bigSeed = (size: number): number => size / MiB;

// ---------------------------------------------------------------------------
// Setup: server, data, proxy.

function directClient(endpoint: string): S3Client {
  return new S3Client({
    ...sdkClientBase({ endpoint, ...CREDS }),
    requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: 32 }), requestTimeout: 120_000 }),
  });
}

async function listKeys(s3: S3Client, prefix: string): Promise<Array<{ key: string; size: number; etag: string }>> {
  const out: Array<{ key: string; size: number; etag: string }> = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.push({ key: o.Key ?? '', size: o.Size ?? 0, etag: (o.ETag ?? '').replace(/"/g, '') });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function deletePrefix(s3: S3Client, prefix: string): Promise<void> {
  const keys = await listKeys(s3, prefix);
  for (let i = 0; i < keys.length; i += 1000) {
    await s3.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.slice(i, i + 1000).map((k) => ({ Key: k.key })), Quiet: true } }));
  }
}

async function uploadBig(s3: S3Client, key: string, size: number, seed: number): Promise<void> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const parts: Array<{ n: number; s: number }> = [];
  for (let s = 0, n = 1; s < size; s += PART, n++) parts.push({ n, s });
  const done: Array<{ PartNumber: number; ETag: string }> = [];
  await pool(parts, 4, async (p) => {
    const body = Buffer.allocUnsafe(Math.min(PART, size - p.s));
    fill(seed, p.s, body.length, body);
    const out = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: p.n, Body: body, ContentLength: body.length }));
    done.push({ PartNumber: p.n, ETag: out.ETag ?? '' });
  });
  done.sort((a, b) => a.PartNumber - b.PartNumber);
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: done } }));
}

/** Uploads what the workloads in `only` read and is not in the bucket yet (the writes bring their own). */
async function ensureData(s3: S3Client, profiles: Profile[], only: readonly WorkloadName[]): Promise<void> {
  const needs = (...wls: WorkloadName[]): boolean => wls.some((w) => only.includes(w));
  const sizes = [...new Set(profiles.flatMap((p) => [
    ...(needs('seqread', 'ttfb', 'randread1', 'randread16', 'seqread2') ? [p.bigSize] : []),
    ...(needs('randlarge1', 'randlarge16') ? [p.largeSize] : []),
  ]))];
  for (const size of sizes) {
    const key = bigKey(size);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).catch(() => undefined);
    if (head?.ContentLength !== size) {
      log(`setup: uploading ${key} (${size / MiB} MiB)`);
      await uploadBig(s3, key, size, bigSeed(size));
    }
  }
  const smallCount = Math.max(...profiles.map((p) => p.smallRead));
  if (!needs('smallread', 'ls', 'smallread2')) {
    await deletePrefix(s3, `${WRITE_FOLDER}/`);
    return;
  }
  const have = new Set((await listKeys(s3, 'small/')).filter((k) => k.size === SMALL_SIZE).map((k) => k.key));
  const missing = Array.from({ length: 1000 }, (_, i) => i).filter((i) => !have.has(`small/${smallName(i)}`));
  if (missing.length) {
    log(`setup: uploading ${missing.length} small files`);
    await pool(missing, 16, async (i) => {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `small/${smallName(i)}`, Body: content(SMALL_SEED_BASE + i, SMALL_SIZE) }));
    });
  }
  void smallCount;
  const listed = new Set((await listKeys(s3, 'list10k/')).map((k) => k.key));
  const missingList = Array.from({ length: LIST_COUNT }, (_, i) => i).filter((i) => !listed.has(`list10k/${listName(i)}`));
  if (missingList.length) {
    log(`setup: uploading ${missingList.length} keys for the listing`);
    const body = content(LIST_SEED, 16);
    await pool(missingList, 32, async (i) => {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `list10k/${listName(i)}`, Body: body }));
    });
  }
  await deletePrefix(s3, `${WRITE_FOLDER}/`);
  // Warm the server's listing summaries (what the first listing after a restart would pay).
  await listKeys(s3, 'list10k/');
  await listKeys(s3, 'small/');
}

interface ProxyHandle {
  port: number;
  endpoint: string;
  stats(): Promise<ProxyStats>;
  stop(): Promise<void>;
}

async function startProxy(cfg: ProxyConfig): Promise<ProxyHandle> {
  const child = cleanup.child(fork(PROXY, [JSON.stringify(cfg)], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('delay proxy did not start')), 10_000);
    child.once('message', (m: ProxyMessage) => { if (m.type === 'ready') { clearTimeout(timer); resolve(m.port); } });
    child.once('exit', (c) => { clearTimeout(timer); reject(new Error(`delay proxy exited ${c}`)); });
  });
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    stats: () => new Promise((resolve) => {
      const onMsg = (m: ProxyMessage): void => { if (m.type === 'stats') { child.off('message', onMsg); resolve(m.stats); } };
      child.on('message', onMsg);
      child.send({ type: 'stats' });
    }),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------
// Running one child with a time limit.

interface ChildOutcome { result?: TaskResult; timedOut: boolean; stderr: string; pid: number | undefined }

function runChild(script: string, arg: unknown, limitS: number, onStart: (child: ChildProcess) => void, onTimeout: () => void): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    const child = cleanup.child(spawn(process.execPath, [script, JSON.stringify(arg)], {
      env: baseEnv({ UV_THREADPOOL_SIZE: '32', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
    onStart(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const timer = setTimeout(() => {
      timedOut = true;
      onTimeout();
      child.kill('SIGKILL');
    }, limitS * 1000);
    child.on('exit', () => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      let result: TaskResult | undefined;
      try { result = line ? JSON.parse(line) as TaskResult : undefined; } catch { result = undefined; }
      resolve({ ...(result ? { result } : {}), timedOut, stderr, pid: child.pid });
    });
  });
}

// ---------------------------------------------------------------------------
// Workloads.

function taskFor(wl: WorkloadName, p: Profile, contender: ContenderName, root: string, writePrefix: string, env: Env): Task {
  // root: a mount folder (ends without /) for mounts, '' for the SDK (keys).
  const at = (rel: string): string => (contender === 'sdk' ? rel : path.join(root, rel));
  const big = bigKey(p.bigSize);
  const randomReads = (size: number, offsetSeed: number, threads: 1 | 16): Task => ({
    op: 'randread', target: at(bigKey(size)), size, seed: bigSeed(size),
    offsets: randomOffsets(offsetSeed, size, threads === 1 ? p.rand1 : p.rand16, 4 * KiB), threads,
  });
  switch (wl) {
    case 'seqread': return { op: 'seqread', target: at(big), size: p.bigSize, seed: bigSeed(p.bigSize), partSize: PART, concurrency: SDK_INFLIGHT };
    case 'seqread2': return { op: 'twice', task: taskFor('seqread', p, contender, root, writePrefix, env) as Extract<Task, { op: 'seqread' }> };
    case 'smallread2': return { op: 'twice', task: taskFor('smallread', p, contender, root, writePrefix, env) as Extract<Task, { op: 'smallread' }> };
    case 'ttfb': return { op: 'ttfb', target: at(big) };
    case 'randread1': return randomReads(p.bigSize, 11, 1);
    case 'randread16': return randomReads(p.bigSize, 16, 16);
    case 'randlarge1': return randomReads(p.largeSize, 21, 1);
    case 'randlarge16': return randomReads(p.largeSize, 26, 16);
    case 'smallread': return { op: 'smallread', dir: contender === 'sdk' ? 'small/' : path.join(root, 'small'), count: p.smallRead, parallel: PARALLEL, seedBase: SMALL_SEED_BASE, size: SMALL_SIZE };
    case 'ls': return { op: 'ls', dir: contender === 'sdk' ? 'list10k/' : path.join(root, 'list10k'), expect: LIST_COUNT };
    case 'seqwrite': return { op: 'seqwrite', target: at(`${writePrefix}big.bin`), size: p.writeSize, seed: WRITE_SEED_BASE, partSize: PART, concurrency: SDK_INFLIGHT };
    case 'smallwrite': return { op: 'smallwrite', dir: contender === 'sdk' ? writePrefix : path.join(root, writePrefix), count: p.smallWrite, parallel: PARALLEL, seedBase: WRITE_SEED_BASE + 1, size: SMALL_SIZE };
    case 'cpr':
    case 'cprstream': {
      // The SDK's baseline is its small writes: the same files, PutObject with 16 in flight.
      if (contender === 'sdk') return taskFor('smallwrite', p, contender, root, writePrefix, env);
      return {
        op: 'cpr', source: copySource(env, p.smallWrite), dest: path.join(root, writePrefix), count: p.smallWrite, size: SMALL_SIZE,
        poll: { endpoint: env.server.endpoint, bucket: BUCKET, ...CREDS }, prefix: writePrefix,
      };
    }
    case 'editsave':
      return {
        op: 'editsave', target: at(`${writePrefix}doc.bin`), source: editSource(env), key: `${writePrefix}doc.bin`, size: EDIT_SIZE,
        seed: EDIT_SEED + 1, md5: expectedMd5(EDIT_SEED + 1, EDIT_SIZE), poll: { endpoint: env.server.endpoint, bucket: BUCKET, ...CREDS },
      };
  }
}

/** The local folder `cp -r` copies: `count` files of 64 KiB named and filled as the small writes' (verifyWrite checks both alike). */
function copySource(env: Env, count: number): string {
  const dir = path.join(env.workDir, `copy-source-${count}`);
  if (!fs.existsSync(path.join(dir, smallName(count - 1)))) {
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, smallName(i)), content(WRITE_SEED_BASE + 1 + i, SMALL_SIZE));
  }
  return dir;
}

/** The local file the editor save writes over the object. */
function editSource(env: Env): string {
  const file = path.join(env.workDir, 'edit-source.bin');
  if (!fs.existsSync(file)) fs.writeFileSync(file, content(EDIT_SEED + 1, EDIT_SIZE));
  return file;
}

function figureOf(wl: WorkloadName, r: TaskResult): number {
  switch (wl) {
    case 'seqread': case 'seqread2': case 'seqwrite': return (r.bytes ?? 0) / MiB / r.seconds;
    case 'smallread2': return r.seconds;
    case 'ttfb': case 'ls': return r.seconds * 1000;
    case 'randread1': case 'randread16': case 'randlarge1': case 'randlarge16': return (r.ops ?? 0) / r.seconds;
    case 'smallread': return r.seconds;
    case 'smallwrite': case 'cpr': case 'cprstream': return (r.ops ?? 0) / r.seconds;
    // Set from the proxy's count in measure().
    case 'editsave': return NaN;
  }
}

const md5Cache = new Map<string, string>();
function expectedMd5(seed: number, size: number): string {
  const k = `${seed}:${size}`;
  let v = md5Cache.get(k);
  if (!v) { v = md5Of(seed, size); md5Cache.set(k, v); }
  return v;
}

/** Checks what a write workload left in the bucket, through the S3 API (direct, not through the proxy). */
async function verifyWrite(s3: S3Client, wl: WorkloadName, p: Profile, prefix: string): Promise<string | undefined> {
  if (wl === 'seqwrite') {
    const key = `${prefix}big.bin`;
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).catch((e: Error) => e);
    if (head instanceof Error) return `object ${key} not found after close: ${head.name}`;
    if (head.ContentLength !== p.writeSize) return `object size ${head.ContentLength}, expected ${p.writeSize}`;
    const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const h = createHash('md5');
    for await (const c of out.Body as AsyncIterable<Uint8Array>) h.update(c);
    const got = h.digest('hex');
    const want = expectedMd5(WRITE_SEED_BASE, p.writeSize);
    return got === want ? undefined : `MD5 ${got}, expected ${want}`;
  }
  if (wl === 'smallwrite' || wl === 'cpr' || wl === 'cprstream') {
    const keys = (await listKeys(s3, prefix)).filter((k) => /\/f\d{4}$/.test(k.key));
    if (keys.length !== p.smallWrite) return `${keys.length} objects after the writes, expected ${p.smallWrite}`;
    let bad = 0;
    for (const k of keys) {
      const i = Number(k.key.slice(-4));
      const want = expectedMd5(WRITE_SEED_BASE + 1 + i, SMALL_SIZE);
      if (k.size !== SMALL_SIZE) { bad++; continue; }
      if (k.etag === want) continue;
      const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: k.key }));
      const h = createHash('md5');
      for await (const c of out.Body as AsyncIterable<Uint8Array>) h.update(c);
      if (h.digest('hex') !== want) bad++;
    }
    return bad ? `${bad} objects with wrong size or content` : undefined;
  }
  if (wl === 'editsave') {
    const key = `${prefix}doc.bin`;
    const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const h = createHash('md5');
    for await (const c of out.Body as AsyncIterable<Uint8Array>) h.update(c);
    const got = h.digest('hex');
    const want = expectedMd5(EDIT_SEED + 1, EDIT_SIZE);
    if (got !== want) return `MD5 ${got}, expected ${want}`;
    // GLib's temporary file is renamed over the target: nothing of it may stay in the bucket.
    const others = (await listKeys(s3, prefix)).filter((k) => k.key !== key && k.key !== prefix);
    return others.length ? `left in the bucket beside doc.bin: ${others.map((k) => k.key.slice(prefix.length)).join(', ')}` : undefined;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// One measurement.

interface Env {
  opts: Options;
  server: TestS3Server;
  direct: S3Client;
  workDir: string;
  logDir: string;
}

/** stagingDir: our mount runs in editing mode with its staged files there. */
/** cacheDir: the contender mounts with its local data cache there. */
async function mountContender(c: ContenderName, target: Target, dir: string, env: Env, stagingDir?: string, cacheDir?: string): Promise<MountHandle> {
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  await fsp.mkdir(dir, { recursive: true });
  const extraArgs = [...(stagingDir === undefined ? [] : ['--allow-edit', '--staging-directory', stagingDir]), ...(cacheDir === undefined ? [] : ['--cache', cacheDir])];
  switch (c) {
    case 'ours': return mountOurs(target, dir, { logDir: env.logDir, cpuProfDir: env.opts.cpuProfDir, extraArgs });
    case 'ours-copy': return mountOurs(target, dir, { logDir: env.logDir, cpuProfDir: env.opts.cpuProfDir, copyBuffers: true, extraArgs });
    case 's3fs': return mountS3fs(target, dir, env.workDir, cacheDir === undefined ? [] : [`use_cache=${cacheDir}`]);
    case 'rclone': return mountRclone(target, dir, env.workDir, cacheDir === undefined ? [] : ['--vfs-cache-mode', 'full', '--cache-dir', cacheDir]);
    default: throw new Error(`${c} is not a mount`);
  }
}

async function mkdirIn(dir: string, limitMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = cleanup.child(spawn('mkdir', ['-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`mkdir -p ${dir} timed out`)); }, limitMs);
    child.on('exit', (code) => { clearTimeout(timer); if (code === 0) resolve(); else reject(new Error(`mkdir -p ${dir}: ${err.trim()}`)); });
  });
}

async function measure(env: Env, p: Profile, proxy: ProxyHandle | undefined, wl: WorkloadName, c: ContenderName, run: number): Promise<Measurement> {
  const base: Measurement = { profile: p.name, workload: wl, contender: c, run, status: 'FAILED' };
  const endpoint = proxy ? proxy.endpoint : env.server.endpoint;
  const target: Target = { endpoint, bucket: BUCKET, ...CREDS };
  const writes = WRITE_WORKLOADS.includes(wl);
  const writePrefix = `${WRITE_FOLDER}/${p.name}-${c}-${wl}-${run}/`;
  let mount: MountHandle | undefined;
  const dir = path.join(env.workDir, `mnt-${c}`);
  const stagingDir = (c === 'ours' || c === 'ours-copy') && EDITING_WORKLOADS.includes(wl) ? path.join(env.opts.stagingIn ?? env.workDir, `sosmount-bench-staging-${c}`) : undefined;
  const cacheDir = CACHE_WORKLOADS.includes(wl) ? path.join(env.workDir, `cache-${c}`) : undefined;
  try {
    // The object the editor saves over, there before the mount looks.
    if (wl === 'editsave') await env.direct.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${writePrefix}doc.bin`, Body: content(EDIT_SEED, EDIT_SIZE) }));
    if (stagingDir !== undefined) await fsp.rm(stagingDir, { recursive: true, force: true });
    if (cacheDir !== undefined) await fsp.rm(cacheDir, { recursive: true, force: true });
    if (c !== 'sdk') {
      try {
        mount = await mountContender(c, target, dir, env, stagingDir, cacheDir);
      } catch (err) {
        return { ...base, status: 'FAILED', error: `mount failed: ${err instanceof MountFailed ? err.message : String(err)}` };
      }
      // cp -r makes the run's folder itself; the editor's folder holds its object already.
      if (wl === 'cpr' || wl === 'cprstream') await mkdirIn(path.join(dir, path.dirname(writePrefix)), 30_000);
      else if (writes && wl !== 'editsave') await mkdirIn(path.join(dir, writePrefix), 30_000);
    }
    const task = taskFor(wl, p, c, dir, writePrefix, env);
    const busyBefore = await waitQuiet(env.opts.settleMs);
    if (proxy) await proxy.stats();
    let sampler: RssSampler | undefined = mount ? new RssSampler(mount.pid) : undefined;
    const script = c === 'sdk' ? SDK_CHILD : FS_CHILD;
    const arg = c === 'sdk' ? { endpoint: { endpoint, bucket: BUCKET, ...CREDS }, task } : task;
    const outcome = await runChild(script, arg, LIMIT_S[wl], (child) => {
      if (c === 'sdk' && child.pid) sampler = new RssSampler(child.pid);
    }, () => { if (mount) abortFuse(mount.dir); });
    const used = sampler?.stop();
    const stats = proxy ? await proxy.stats() : undefined;
    const common: Measurement = {
      ...base,
      busyBefore,
      ...(used && used.rssMiB > 0 ? { rssMiB: used.rssMiB } : {}),
      ...(used && Number.isFinite(used.cpuSeconds) ? { cpuSeconds: used.cpuSeconds } : {}),
      ...(stats ? { requests: stats.requests, connections: stats.connections, bytesDown: stats.bytesDown, bytesUp: stats.bytesUp } : {}),
    };
    if (outcome.timedOut) return { ...common, status: 'TIMEOUT', error: `no result within ${LIMIT_S[wl]} s` };
    const r = outcome.result;
    if (!r) return { ...common, status: 'FAILED', error: `child crashed: ${outcome.stderr.trim().slice(-300)}` };
    if (!r.ok) return { ...common, status: 'FAILED', seconds: r.seconds, error: r.error ?? 'failed' };
    if (writes) {
      const problem = await verifyWrite(env.direct, wl, p, writePrefix);
      if (problem) return { ...common, status: 'FAILED', seconds: r.seconds, error: `verification: ${problem}` };
    }
    const extra: Record<string, number | string> = { ...r.extra };
    let value = figureOf(wl, r);
    if (typeof r.extra?.['firstSeconds'] === 'number') extra['first'] = figureOf(wl, { ...r, seconds: r.extra['firstSeconds'] });
    if (wl === 'editsave') {
      if (!stats) return { ...common, status: 'FAILED', seconds: r.seconds, error: 'needs the delay proxy to count bytes' };
      value = stats.bytesUp / EDIT_SIZE;
      if (mount) {
        // Anything the save still sends after the object is stored (a
        // deferred upload) goes before the unmount ends: counted apart.
        await mount.unmount();
        mount = undefined;
        extra['bytesUpAfterStored'] = (await proxy!.stats()).bytesUp;
      }
    }
    return { ...common, status: 'OK', seconds: r.seconds, value, ...(Object.keys(extra).length ? { extra } : {}) };
  } catch (err) {
    return { ...base, status: 'FAILED', error: err instanceof Error ? err.message : String(err) };
  } finally {
    if (mount) await mount.unmount().catch(() => undefined);
    if (stagingDir !== undefined) await fsp.rm(stagingDir, { recursive: true, force: true }).catch(() => undefined);
    if (cacheDir !== undefined) await fsp.rm(cacheDir, { recursive: true, force: true }).catch(() => undefined);
    if (writes) await deletePrefix(env.direct, writePrefix).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Output.

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);
}

function sh(cmd: string): string {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return '';
  }
}

function machine(): Record<string, string> {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? '?';
  return {
    cpu,
    cores: String(os.cpus().length),
    memory: `${Math.round(os.totalmem() / GiB)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    s3fs: sh('s3fs --version 2>&1 | head -1'),
    rclone: sh('rclone version 2>&1 | head -1'),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

const RESULTS_BEGIN = '<!-- bench-results:begin -->';
const RESULTS_END = '<!-- bench-results:end -->';

function writeDoc(section: string): void {
  const file = path.join(REPO, 'docs/benchmarks.md');
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : `# Benchmarks\n\n${RESULTS_BEGIN}\n${RESULTS_END}\n`;
  if (!text.includes(RESULTS_BEGIN)) text += `\n${RESULTS_BEGIN}\n${RESULTS_END}\n`;
  const a = text.indexOf(RESULTS_BEGIN) + RESULTS_BEGIN.length;
  const b = text.indexOf(RESULTS_END);
  text = `${text.slice(0, a)}\n${section.trim()}\n${text.slice(b)}`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

// ---------------------------------------------------------------------------
// Main.

async function main(): Promise<void> {
  installCleanupHandlers();
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message} (--help for the options)\n`);
    process.exit(2);
  }
  if (opts.reportOnly) {
    const prior = JSON.parse(fs.readFileSync(opts.jsonOut, 'utf8')) as { started: string; options: Partial<Options>; reports: ProfileReport[]; measurements: Measurement[]; proxyCheck?: Record<string, Summary>; linkCheck?: ProxyCheckReport };
    const o: Options = { ...opts, ...prior.options, merge: true, jsonOut: opts.jsonOut, writeDoc: opts.writeDoc };
    writeOutputs(o, new Date(prior.started), prior.reports, prior.measurements, prior.proxyCheck ?? {}, prior.linkCheck, true);
    return;
  }
  const started = new Date();
  const profiles = opts.profiles.map((n) => profileOf(n, opts.quick));
  for (const c of opts.contenders) {
    if (c === 's3fs' || c === 'rclone') {
      const r = sh(`command -v ${c}`);
      if (!r) log(`${c} is not installed: its figures will be FAILED (apt-get install ${c})`);
    }
  }
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'sosmount-bench-'));
  cleanup.dirs.add(workDir);
  await fsp.mkdir(opts.dataDir, { recursive: true });
  const logDir = path.join(opts.dataDir, 'logs', started.toISOString().replace(/[:.]/g, '-'));
  await fsp.mkdir(logDir, { recursive: true });
  if (opts.cpuProfDir) await fsp.mkdir(opts.cpuProfDir, { recursive: true });

  // Before the server starts: it indexes the bucket's keys once, at start.
  const writeArea = prepareWriteArea(path.join(opts.dataDir, BUCKET, WRITE_FOLDER), opts.serverWritesInMemory);
  cleanup.hooks.push(() => writeArea.release());
  serverWrites = writeArea.where;
  log(`S3 server on 127.0.0.1, data in ${opts.dataDir}; what the write workloads store: ${writeArea.where}`);
  const server = await startS3Server({ buckets: [BUCKET], credentials: [CREDS], directory: opts.dataDir });
  cleanup.hooks.push(() => server.kill());
  const direct = directClient(server.endpoint);
  const env: Env = { opts, server, direct, workDir, logDir };
  const all: Measurement[] = [];
  const reports: ProfileReport[] = [];
  /** Profiles measured again, as the JSON file had them: their workloads outside --only are kept. */
  const keptWorkloads = new Map<string, ProfileReport>();
  let proxyCheck: Record<string, Summary> = {};
  let linkCheck: ProxyCheckReport | undefined;
  if (opts.merge && fs.existsSync(opts.jsonOut)) {
    const prior = JSON.parse(fs.readFileSync(opts.jsonOut, 'utf8')) as { reports?: ProfileReport[]; measurements?: Measurement[]; proxyCheck?: Record<string, Summary>; linkCheck?: ProxyCheckReport };
    reports.push(...(prior.reports ?? []).filter((r) => !opts.profiles.includes(r.profile)));
    for (const r of prior.reports ?? []) if (opts.profiles.includes(r.profile)) keptWorkloads.set(r.profile, r);
    const remeasured = (m: Measurement): boolean => opts.profiles.includes(m.profile) && opts.only.includes(m.workload);
    all.push(...(prior.measurements ?? []).filter((m) => !remeasured(m) && (!opts.proxyCheck || !m.profile.startsWith('proxycheck'))));
    if (!opts.proxyCheck) { proxyCheck = prior.proxyCheck ?? {}; linkCheck = prior.linkCheck; }
    log(`merge: keeping ${reports.map((r) => r.profile).join(', ') || 'no'} results from ${opts.jsonOut}`);
  }
  try {
    if (opts.proxyCheck) {
      log('proxy check: plain TCP through the delay proxy (calibration)');
      const wan = profileOf('wan', opts.quick).proxy!;
      linkCheck = await runProxyCheck(wan, (stop) => cleanup.hooks.push(stop));
      log(`proxy check: ${JSON.stringify(linkCheck)}`);
    }
    // The proxy check reads lan's big object with the SDK.
    const proxyRead = opts.proxyCheck && opts.contenders.includes('sdk');
    await ensureData(direct, proxyRead ? [...profiles, profileOf('lan', opts.quick)] : profiles, proxyRead ? [...opts.only, 'seqread'] : opts.only);

    for (const p of profiles) {
      let proxy: ProxyHandle | undefined;
      if (p.proxy) {
        proxy = await startProxy({ targetHost: '127.0.0.1', targetPort: server.port, listenPort: 0, ...p.proxy });
        log(`profile ${p.name}: delay proxy on ${proxy.endpoint} (${JSON.stringify(p.proxy)})`);
      } else {
        log(`profile ${p.name}: direct loopback`);
      }
      const report: ProfileReport = {
        profile: p.name, rttMs: p.rttMs, measuredAt: new Date().toISOString(),
        sizes: { bigObjectMiB: p.bigSize / MiB, largeObjectMiB: p.largeSize / MiB, writeMiB: p.writeSize / MiB, random1Ops: p.rand1, random16Ops: p.rand16, smallReadFiles: p.smallRead, smallWriteFiles: p.smallWrite, listKeys: LIST_COUNT, runs: opts.runs },
        summaries: {},
      };
      const kept = keptWorkloads.get(p.name);
      if (kept) {
        for (const [wl, byC] of Object.entries(kept.summaries) as Array<[WorkloadName, ProfileReport['summaries'][WorkloadName]]>) {
          if (opts.only.includes(wl) || !byC) continue;
          report.summaries[wl] = byC;
          (report.workloadMeasuredAt ??= {})[wl] = kept.workloadMeasuredAt?.[wl] ?? kept.measuredAt ?? '';
        }
      }
      try {
        for (const wl of opts.only) {
          if (PROXY_WORKLOADS.includes(wl) && !proxy) {
            log(`${p.name} ${wl}: skipped, its figure is counted by the delay proxy (wan, lanproxy)`);
            continue;
          }
          const byC: Partial<Record<ContenderName, Measurement[]>> = {};
          const given = new Set<ContenderName>();
          for (let run = 1; run <= opts.runs; run++) {
            for (const c of opts.contenders) {
              if (given.has(c)) continue;
              if (WORKLOAD_CONTENDERS[wl] && !WORKLOAD_CONTENDERS[wl]!.includes(c)) continue;
              const m = await measure(env, p, proxy, wl, c, run);
              all.push(m);
              (byC[c] ??= []).push(m);
              const fig = FIGURES[wl];
              log(`${p.name} ${wl} run ${run} ${c}: ${m.status}${m.value !== undefined ? ` ${m.value.toFixed(fig.digits)} ${fig.unit}` : ''}${m.rssMiB ? `, RSS ${m.rssMiB.toFixed(0)} MiB` : ''}${m.cpuSeconds !== undefined ? `, CPU ${m.cpuSeconds.toFixed(1)} s` : ''}${m.busyBefore !== undefined ? `, busy before ${(m.busyBefore * 100).toFixed(0)}%` : ''}${m.error ? ` (${m.error.slice(0, 200)})` : ''}${m.requests ? ` [${Object.entries(m.requests).map(([k, v]) => `${k} ${v}`).join(', ')}; ${m.connections} conn]` : ''}`);
              // A contender that hangs once is not given two more time limits.
              if (m.status === 'TIMEOUT') given.add(c);
              // One that cannot even mount twice in a row is given up for this workload.
              if (m.status === 'FAILED' && m.error?.startsWith('mount failed') && (byC[c]?.length ?? 0) >= 2) given.add(c);
            }
          }
          report.summaries[wl] = Object.fromEntries(Object.entries(byC).map(([c, ms]) => [c, summarize(ms!)]));
          writeOutputs(opts, started, reports.concat([report]), all, proxyCheck, linkCheck, false);
        }
      } finally {
        await proxy?.stop();
      }
      reports.push(report);
    }

    if (opts.proxyCheck && opts.contenders.includes('sdk')) {
      // Is the proxy itself a bottleneck at loopback rates? The SDK's big read, direct and through a zero-delay proxy.
      log('proxy check: SDK sequential read, direct vs through the proxy with no delay and no rate limit');
      const p = profileOf('lan', opts.quick);
      const proxy = await startProxy({ targetHost: '127.0.0.1', targetPort: server.port, listenPort: 0, oneWayDelayMs: 0, rateBytesPerSec: 0, handshake: false, windowBytes: 4 * MiB });
      try {
        for (const [name, px] of [['direct', undefined], ['through proxy', proxy]] as const) {
          const ms: Measurement[] = [];
          for (let run = 1; run <= opts.runs; run++) ms.push(await measure(env, { ...p, name: `proxycheck-${name}` }, px, 'seqread', 'sdk', run));
          all.push(...ms);
          proxyCheck[name] = summarize(ms);
          log(`proxy check ${name}: ${proxyCheck[name]!.value?.toFixed(0)} MiB/s`);
        }
      } finally {
        await proxy.stop();
      }
    }
  } finally {
    writeOutputs(opts, started, reports, all, proxyCheck, linkCheck, true);
    direct.destroy();
    await server.stop();
  }
}

function writeOutputs(opts: Options, started: Date, unsorted: ProfileReport[], all: Measurement[], proxyCheck: Record<string, Summary>, linkCheck: ProxyCheckReport | undefined, final: boolean): void {
  const order = ['lan', 'lanproxy', 'wan'];
  const reports = [...unsorted].sort((a, b) => order.indexOf(a.profile) - order.indexOf(b.profile));
  const m = machine();
  const json = {
    started: started.toISOString(),
    finished: final ? new Date().toISOString() : undefined,
    complete: final,
    options: { quick: opts.quick, profiles: opts.profiles, only: opts.only, contenders: opts.contenders, runs: opts.runs, ...(opts.stagingIn ? { stagingIn: opts.stagingIn } : {}), serverWrites },
    machine: m,
    settings: {
      sdk: { readPartBytes: PART, readInFlight: SDK_INFLIGHT, writePartBytes: PART, writeInFlight: SDK_INFLIGHT, smallParallel: PARALLEL },
      ours: 'sosmount --endpoint-url URL --force-path-style (defaults); cpr and editsave add --allow-edit --staging-directory DIR; seqread2 and smallread2 add --cache DIR',
      'ours-copy': 'as ours, with SOSMOUNT_FUSE_COPY_BUFFERS=1 (the copying path of the tray\'s workers under Electron)',
      s3fs: 's3fs -f -o url=URL,use_path_request_style,passwd_file=F (defaults); seqread2 and smallread2 add use_cache=DIR',
      rclone: 'rclone mount bench:BUCKET DIR --vfs-cache-mode off (provider Other, defaults); seqread2 and smallread2: --vfs-cache-mode full --cache-dir DIR',
      wan: 'delay proxy: 20 ms each way, +1 RTT per new connection, 400 Mbit/s per direction shared, 4 MiB window per connection',
    },
    reports,
    proxyCheck,
    linkCheck,
    measurements: all,
  };
  fs.mkdirSync(path.dirname(opts.jsonOut), { recursive: true });
  fs.writeFileSync(opts.jsonOut, JSON.stringify(json, null, 2) + '\n');

  const md: string[] = [];
  md.push(`Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC${opts.quick ? ' (--quick: 1 run, smaller sizes)' : ''}${opts.merge ? ' (this invocation; other profiles kept from an earlier one, see each section)' : ''}; each figure is the median of the runs stated per profile.${final ? '' : ' **Partial: the run was still going when this was written.**'}`);
  const busy = all.map((x) => x.busyBefore).filter((x): x is number => x !== undefined);
  if (busy.length) {
    const sorted = [...busy].sort((a, b) => a - b);
    md.push('');
    md.push(`Other work on the machine: before each run the CPUs were ${(sorted[Math.floor(sorted.length / 2)]! * 100).toFixed(0)}% busy (median; ${(sorted[0]! * 100).toFixed(0)}–${(sorted[sorted.length - 1]! * 100).toFixed(0)}%) with processes that are not the bench's (the bench waits up to ${opts.settleMs / 1000} s for them to settle).`);
  }
  md.push('');
  md.push(`Machine: ${m['cpu']}, ${m['cores']} cores, ${m['memory']}, ${m['kernel']}, Node ${m['node']}; ${m['s3fs']}; ${m['rclone']}; load average at the end ${m['loadavg']}. In this invocation the S3 server kept what the write workloads stored on ${serverWrites === 'tmpfs' ? 'a tmpfs' : `the ${serverWrites}`} (see Method).`);
  md.push('');
  md.push(`Command: \`npm run bench --${[opts.quick ? ' --quick' : '', ` --profile ${opts.merge ? reports.map((r) => r.profile).join(',') : opts.profiles.join(',')}`, opts.only.length !== WORKLOADS.length ? ` --only ${opts.only.join(',')}` : '', opts.contenders.length !== ALL_CONTENDERS.length ? ` --contenders ${opts.contenders.join(',')}` : '', opts.stagingIn ? ` --staging-in ${opts.stagingIn}` : ''].join('')}\`; raw figures in [bench-results/latest.json](bench-results/latest.json).`);
  for (const r of reports) {
    md.push('');
    md.push(`### ${r.profile}${r.rttMs ? ` (${r.rttMs} ms RTT, 400 Mbit/s shared)` : r.profile === 'lan' ? ' (loopback)' : ''}${r.measuredAt ? `, measured ${r.measuredAt.slice(0, 16).replace('T', ' ')} UTC` : ''}`);
    md.push('');
    const older = Object.entries(r.workloadMeasuredAt ?? {}).filter(([, at]) => at);
    if (older.length) {
      md.push(`Kept from an earlier invocation: ${older.map(([wl, at]) => `${wl} (${at.slice(0, 16).replace('T', ' ')} UTC)`).join(', ')}; the rest measured as stated.`);
      md.push('');
    }
    md.push(`Runs per figure: ${r.sizes['runs']}. Sizes: big object ${r.sizes['bigObjectMiB']} MiB, large object ${r.sizes['largeObjectMiB'] ?? '–'} MiB, big write ${r.sizes['writeMiB']} MiB, random reads ${r.sizes['random1Ops']} (1 thread) / ${r.sizes['random16Ops']} (16 threads), ${r.sizes['smallReadFiles']} files read, ${r.sizes['smallWriteFiles']} files written, ${r.sizes['listKeys']} keys listed.`);
    md.push('');
    md.push(markdownTable(r, opts.contenders, PEERS));
    const notes = failureNotes(r);
    if (notes.length) { md.push(''); md.push('Failures and timeouts:'); md.push(''); md.push(...notes); }
    const sdkTtfb = all.find((x) => x.profile === r.profile && x.workload === 'ttfb' && x.contender === 'sdk' && x.extra);
    if (sdkTtfb?.extra?.['coldProcessSeconds'] !== undefined) {
      const cold = all.filter((x) => x.profile === r.profile && x.workload === 'ttfb' && x.contender === 'sdk' && x.extra).map((x) => Number(x.extra!['coldProcessSeconds']) * 1000);
      md.push('');
      md.push(`SDK first byte: the table shows a fresh client (new connection) with the SDK's code already loaded; the very first request of a fresh process took ${cold.map((v) => v.toFixed(1)).join(', ')} ms.`);
    }
    const okRuns = (wl: WorkloadName, c: ContenderName): Measurement[] => all.filter((x) => x.profile === r.profile && x.workload === wl && x.contender === c && x.status === 'OK');
    const secs = (xs: number[]): string => xs.map((v) => v.toFixed(2)).join(', ');
    const copies = (['cpr', 'cprstream'] as const).flatMap((wl) => (r.summaries[wl] ? opts.contenders.filter((c) => c !== 'sdk') : []).map((c) => ({ wl, c, ms: okRuns(wl, c) })).filter((x) => x.ms.length));
    if (copies.length) {
      md.push('');
      md.push(`\`cp -r\`, time until \`cp\` returned / until every object was listed by the server, per run: ${copies.map(({ wl, c, ms }) => `${c}${wl === 'cprstream' ? ' (default mode)' : c.startsWith('ours') ? ' (editing mode)' : ''} ${ms.map((x) => `${Number(x.extra?.['cpSeconds'] ?? NaN).toFixed(2)} / ${(x.seconds ?? NaN).toFixed(2)}`).join(', ')} s`).join('; ')}; the SDK's PutObject of the same files ${secs(okRuns(r.summaries['cpr'] ? 'cpr' : 'cprstream', 'sdk').map((x) => x.seconds ?? NaN))} s.`);
    }
    if (r.summaries['editsave']) {
      const saves = okRuns('editsave', 'ours');
      const sdkSaves = okRuns('editsave', 'sdk');
      md.push('');
      md.push(`Editor save of 10 MiB, time until the object held the new bytes, per run: ours ${secs(saves.map((x) => x.seconds ?? NaN))} s (\`gio save\` itself returned after ${secs(saves.map((x) => Number(x.extra?.['saveSeconds'] ?? NaN)))} s; bytes sent after that until the unmount had ended: ${saves.map((x) => x.extra?.['bytesUpAfterStored'] ?? '–').join(', ')}); the SDK's one PutObject ${secs(sdkSaves.map((x) => x.seconds ?? NaN))} s.`);
    }
    const req = requestTable(all, r.profile, opts.contenders);
    if (req) {
      md.push('');
      md.push('Requests seen by the proxy during the timed part of the first run of each workload, and the connections opened meanwhile (a connection opened before, e.g. by the mount check or the `mkdir` before a write, and reused is not counted):');
      md.push('');
      md.push(req);
    }
  }
  if (linkCheck) {
    const f = (x: number): string => x.toFixed(1);
    const row = (name: string, l: typeof linkCheck.direct): string => `| ${name} | ${f(l.newConnectionPingMs)} | ${f(l.pingMs)} | ${f(l.down1MiBps)} | ${f(l.down8MiBps)} | ${f(l.up1MiBps)} | ${f(l.up8MiBps)} |`;
    md.push('');
    md.push('Delay proxy calibration (plain TCP, no S3 server; MiB/s):');
    md.push('');
    md.push('| path | first reply on a new connection, ms | round trip, ms | down, 1 conn. | down, 8 conn. | up, 1 conn. | up, 8 conn. |');
    md.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    md.push(row('loopback, direct', linkCheck.direct));
    md.push(row('proxy, no delay, no limit', linkCheck.zeroDelayProxy));
    md.push(row('proxy, wan profile (model: 80 ms, 40 ms, 47.7 MiB/s)', linkCheck.wanProxy));
  }
  if (proxyCheck['direct'] && proxyCheck['through proxy']) {
    md.push('');
    md.push(`Proxy check: the SDK's big read direct ${proxyCheck['direct'].value?.toFixed(0)} MiB/s, through the delay proxy with no delay and no rate limit ${proxyCheck['through proxy'].value?.toFixed(0)} MiB/s.`);
  }
  const text = md.join('\n');
  if (final) process.stdout.write('\n' + text + '\n');
  if (opts.writeDoc) writeDoc(text);
}

main().then(
  () => { cleanup.runSync(); process.exit(0); },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    cleanup.runSync();
    process.exit(1);
  },
);
