/**
 * Shared setup of the fault tests (test/faults*.test.ts): a local S3 server
 * with the fault proxy in front, and mounts made through the `sosmount` CLI
 * in background mode (`--endpoint-url` = the proxy), each with its own
 * HOME, bucket and mount folder. A mount's worker is found through its
 * watchdog (`/bin/sh -c SCRIPT sosmount-watchdog <worker pid> <mount point>
 * <log file>`, app/watchdog.ts), which names the worker's pid and log file;
 * cleanup ends only the processes this fixture started or found that way.
 */
import type { TestContext } from 'node:test';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command,
  PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from './s3-server.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { cleanEnv, execQuiet, run, sosmount, tempDir, type RunResult } from './processes.js';
import { md5 } from './faults-io.js';
import { processAlive as alive } from '../../app/data/folder-lock.js';

export interface World {
  server: TestS3Server;
  proxy: FaultProxy;
  s3: S3Client;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

export async function startWorld(opts: { watch?: string; credentials?: { accessKeyId: string; secretAccessKey: string } } = {}): Promise<World> {
  const credentials = opts.credentials ?? { accessKeyId: 'FAULTKEY0123456789', secretAccessKey: `fault-secret-${randomBytes(8).toString('hex')}` };
  const server = await startS3Server({ credentials: [credentials] });
  let proxy: FaultProxy;
  try {
    proxy = await startFaultProxy({ targetPort: server.port, ...(opts.watch !== undefined ? { watch: opts.watch } : {}) });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    server,
    proxy,
    s3: server.client(),
    credentials,
    stop: async () => {
      await proxy.stop();
      await server.stop();
    },
  };
}

export interface Watchdog {
  pid: number;
  workerPid: number;
  mountPoint: string;
  logFile: string;
}

/**
 * Watchdogs (app/worker/watchdog.ts) by their command line: /bin/sh -c
 * SCRIPT sosmount-watchdog PID DIR LOG. The shell forks for each `sleep 1`,
 * and until the child execs it has the same command line: a process whose
 * parent is a watchdog is that fork, not a second watchdog.
 */
export async function findWatchdogs(mountPoint?: string): Promise<Watchdog[]> {
  const found: Array<Watchdog & { parent: number }> = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    let parent: number;
    try {
      argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      parent = Number(/^PPid:\s+(\d+)/m.exec(await readFile(`/proc/${name}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      continue;
    }
    if (argv[3] !== 'sosmount-watchdog') continue;
    const w = { pid: Number(name), workerPid: Number(argv[4]), mountPoint: argv[5] ?? '', logFile: argv[6] ?? '', parent };
    if (mountPoint === undefined || w.mountPoint === mountPoint) found.push(w);
  }
  const pids = new Set(found.map((w) => w.pid));
  return found.filter((w) => !pids.has(w.parent)).map(({ parent: _parent, ...w }) => w);
}

async function isZombieOrGone(pid: number): Promise<boolean> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return /^State:\s+Z/m.test(status);
  } catch {
    return true;
  }
}

export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<number> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function gone(pid: number): Promise<boolean> {
  return isZombieOrGone(pid);
}

export async function withDeadline<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Mount {
  bucket: string;
  home: string;
  work: string;
  mnt: string;
  env: NodeJS.ProcessEnv;
  /** What `sosmount` printed and returned. */
  cli: RunResult;
  watchdog: Watchdog;
  workerPid: number;
  logFile: string;
  /** The worker's log so far. */
  log(): Promise<string>;
  /** umount, then wait for the worker to exit. */
  unmount(): Promise<void>;
  /** Mounts the same bucket again on the same folder (after a kill). */
  remount(): Promise<Mount>;
}

export interface MountOptions {
  /** Extra sosmount flags. */
  flags?: string[];
  /** Credentials from a profile in HOME/.aws/credentials instead of the environment. */
  profile?: boolean;
  /** An existing bucket (not created). */
  bucket?: string;
  /** Mount directly at the server, not through the proxy. */
  direct?: boolean;
  /** Extra environment of sosmount and its worker. */
  env?: Record<string, string>;
}

/** `stat DIR` in a child: OK, an errno code, or HANG. Never blocks the test on a dead mount. */
export async function statWithin(dir: string, ms: number): Promise<string> {
  const script = 'try { require("fs").statSync(process.argv[1]); console.log("OK") } catch (e) { console.log(e.code) }';
  try {
    const r = await run(process.execPath, ['-e', script, dir], { timeoutMs: ms });
    return r.stdout.trim();
  } catch (err) {
    if (/timed out/.test((err as Error).message)) return 'HANG';
    throw err;
  }
}

export async function isMounted(dir: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').some((line) => unescapeMountInfo(line.split(' ')[4] ?? '') === dir);
}

function unescapeMountInfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Mounts a fresh bucket (or `opts.bucket`) through the CLI in background
 * mode and registers cleanup on `t`.
 */
export async function mountBucket(t: TestContext, world: World, opts: MountOptions = {}): Promise<Mount> {
  const bucket = opts.bucket ?? `faults-${randomBytes(5).toString('hex')}`;
  if (!opts.bucket) await world.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const home = await tempDir('faults-home');
  const work = await tempDir('faults');
  const mnt = path.join(work, 'mnt');
  await mkdir(mnt);
  let env: NodeJS.ProcessEnv;
  if (opts.profile) {
    await mkdir(path.join(home, '.aws'));
    await writeFile(path.join(home, '.aws', 'credentials'),
      `[faults]\naws_access_key_id = ${world.credentials.accessKeyId}\naws_secret_access_key = ${world.credentials.secretAccessKey}\n`);
    env = cleanEnv(home);
  } else {
    env = cleanEnv(home, { AWS_ACCESS_KEY_ID: world.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: world.credentials.secretAccessKey });
  }
  // Logs land in HOME/.local/state/sos-mount/logs, whatever the developer's setup.
  delete env['XDG_STATE_HOME'];
  Object.assign(env, opts.env);
  const endpoint = opts.direct ? world.server.endpoint : world.proxy.endpoint;
  const known = new Set<number>();
  t.after(async () => {
    for (const dir of [mnt]) await execQuiet('fusermount', ['-uz', dir]);
    // This mount's workers and watchdogs (every mount made on this folder), if still there.
    const deadline = Date.now() + 10_000;
    for (const pid of known) {
      while (!(await isZombieOrGone(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!(await isZombieOrGone(pid))) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    await rm(work, { recursive: true, force: true }).catch(() => {});
    await rm(home, { recursive: true, force: true }).catch(() => {});
  });

  const doMount = async (): Promise<Mount> => {
    const args = [...(opts.profile ? ['--profile', 'faults'] : []), '--endpoint-url', endpoint, ...(opts.flags ?? []), bucket, mnt];
    const cli = await sosmount(args, { env, timeoutMs: 60_000 });
    if (cli.code !== 0) throw new Error(`sosmount ${args.join(' ')} failed (${cli.code}): ${cli.stderr}`);
    const [watchdog, ...more] = await findWatchdogs(mnt).then((all) => all.filter((w) => alive(w.workerPid)));
    if (!watchdog || more.length > 0) throw new Error(`expected one live watchdog for ${mnt}, found ${JSON.stringify([watchdog, ...more])}`);
    known.add(watchdog.pid);
    known.add(watchdog.workerPid);
    const m: Mount = {
      bucket, home, work, mnt, env, cli, watchdog,
      workerPid: watchdog.workerPid,
      logFile: watchdog.logFile,
      log: () => readFile(watchdog.logFile, 'utf8').catch(() => ''),
      unmount: async () => {
        const r = await run('umount', [mnt], { timeoutMs: 30_000 });
        if (r.code !== 0) await execQuiet('fusermount', ['-uz', mnt]);
        await waitUntil('the worker to exit after umount', () => gone(watchdog.workerPid), 30_000);
      },
      remount: () => doMount(),
    };
    return m;
  };
  return doMount();
}

// ---------------------------------------------------------------------------
// The bucket as S3 sees it (straight to the server, never through the proxy).

export async function putObject(s3: S3Client, bucket: string, key: string, body: Uint8Array | string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

export async function objectMd5(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return md5(await out.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

export async function objectExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

/**
 * Multipart uploads not completed nor aborted. The test server (s3rver) does
 * not implement ListMultipartUploads (NotImplemented); its uploads are then
 * read from its directory (BUCKET/._S3rver_uploads/ID/key).
 */
export async function pendingUploads(world: World, bucket: string): Promise<Array<{ key: string; uploadId: string }>> {
  try {
    const out = await world.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return (out.Uploads ?? []).map((u) => ({ key: u.Key ?? '', uploadId: u.UploadId ?? '' }));
  } catch (err) {
    if ((err as { name?: string }).name !== 'NotImplemented') throw err;
  }
  const dir = path.join(world.server.directory, bucket, '._S3rver_uploads');
  const ids = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(ids.map(async (uploadId) => ({
    key: await readFile(path.join(dir, uploadId, 'key'), 'utf8').catch(() => '?'),
    uploadId,
  })));
}

export async function listKeys(s3: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of out.Contents ?? []) keys.push(o.Key ?? '');
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** VmRSS and VmHWM of a process, in MiB (undefined once it is gone). */
export async function memoryOf(pid: number): Promise<{ rssMiB: number; hwmMiB: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * Creates a bucket with many small objects straight in the test server's
 * directory (s3rver's layout: KEY._S3rver_object, .md5, ._S3rver_metadata.json),
 * which takes a second where 10,000 PutObjects take a minute on a busy
 * machine. Must run before any request names the bucket: the server indexes
 * a bucket's keys when it first sees it.
 */
export async function seedOnDisk(world: World, bucket: string, objects: Array<[key: string, body: string]>): Promise<void> {
  const root = path.join(world.server.directory, bucket);
  await mkdir(root, { recursive: true });
  const dirs = new Set<string>();
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < objects.length) {
      const [key, body] = objects[next++]!;
      const parts = key.split('/');
      const name = parts.pop()!;
      const dir = path.join(root, ...parts);
      if (!dirs.has(dir)) {
        await mkdir(dir, { recursive: true });
        dirs.add(dir);
      }
      const base = path.join(dir, name);
      await Promise.all([
        writeFile(`${base}._S3rver_object`, body),
        writeFile(`${base}._S3rver_object.md5`, md5(Buffer.from(body))),
        writeFile(`${base}._S3rver_metadata.json`, '{"content-type":"binary/octet-stream"}'),
      ]);
    }
  }));
}
