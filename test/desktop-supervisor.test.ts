/**
 * The mount supervisor with real workers, real FUSE mounts and the local S3
 * server: failures that are retried and failures that are not, a crash
 * without "keep mounted", an external umount, stopping while mounting,
 * shutting down with an upload in flight, where secrets go (and do not),
 * a mount in editing mode, and the worker run the way the app runs it
 * (main/utility-worker.js over a parent port instead of Node IPC).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { cacheFolderUsage } from '../app/data/disk-cache.js';
import { isMountPoint, isStaleMount } from '../app/worker/mount-point.js';
import type { MountConfig, MountStatus } from '../main/model.js';
import { CredentialsError, Supervisor, type SupervisorEvent } from '../main/supervisor.js';
import { NodeWorkerLauncher, workerEnvironment, type WorkerHandle, type WorkerLauncher } from '../main/worker-launcher.js';
import { holdOpenWriter, waitForStatus } from './helpers/desktop.js';
import { execQuiet, sh, tempDir } from './helpers/processes.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const KEYS = { accessKeyId: 'EXOSUPERVISOR01', secretAccessKey: 'supervisor-secret-Hq4mZ0xw' };
const FAKE_UTILITY_HOST = fileURLToPath(new URL('./helpers/fake-utility-host.js', import.meta.url));

/** Starts main/utility-worker.js with a parent port, as utilityProcess.fork does in the app. */
class FakeUtilityLauncher implements WorkerLauncher {
  launch(_name: string, events: Parameters<WorkerLauncher['launch']>[1]): WorkerHandle {
    const child = spawn(process.execPath, [FAKE_UTILITY_HOST], { stdio: ['pipe', 'ignore', 'pipe', 'pipe'], env: workerEnvironment() });
    const fromWorker = child.stdio[3];
    if (fromWorker && 'on' in fromWorker) {
      createInterface({ input: fromWorker as NodeJS.ReadableStream }).on('line', (line) => events.message(JSON.parse(line)));
    }
    child.stderr?.on('data', (d: Buffer) => events.stderr?.(d.toString()));
    child.stdin?.on('error', () => { /* the worker has exited */ });
    child.once('exit', (code, signal) => events.exit(code, signal));
    return {
      get pid() {
        return child.pid;
      },
      send: (message) => {
        if (child.exitCode !== null || child.signalCode !== null || !child.stdin) return false;
        child.stdin.write(JSON.stringify(message) + '\n');
        return true;
      },
      kill: (signal) => {
        child.kill(signal);
      },
    };
  }
}

describe('supervisor with real workers', () => {
  let server: TestS3Server;
  let work: string;
  let logDir: string;
  const supervisors: Supervisor[] = [];
  const mountPoints: string[] = [];
  let counter = 0;

  before(async () => {
    server = await startS3Server({ buckets: ['alpha'], credentials: [KEYS] });
    work = await tempDir('supervisor');
    logDir = path.join(work, 'logs');
  });

  after(async () => {
    await Promise.allSettled(supervisors.map((s) => s.shutdown({ abandonUploads: true })));
    for (const dir of mountPoints) await execQuiet('fusermount', ['-uz', dir]);
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  function supervisor(options: { launcher?: WorkerLauncher; credentialsFor?: (profile: string) => Promise<{ accessKeyId: string; secretAccessKey: string }> } = {}): { sup: Supervisor; events: SupervisorEvent[] } {
    const sup = new Supervisor({
      launcher: options.launcher ?? new NodeWorkerLauncher(),
      credentialsFor: options.credentialsFor ?? (async () => KEYS),
      logDirectory: logDir,
      // Never the user's real ~/.cache.
      cacheDirectoryFor: (id) => path.join(work, 'caches', id),
      backoffMs: () => 100,
      unmountTimeoutMs: 20_000,
    });
    supervisors.push(sup);
    const events: SupervisorEvent[] = [];
    sup.onEvent((e) => events.push(e));
    return { sup, events };
  }

  async function config(overrides: Partial<MountConfig> = {}): Promise<MountConfig> {
    counter += 1;
    const mountPoint = path.join(work, `mnt-${counter}`);
    await mkdir(mountPoint);
    mountPoints.push(mountPoint);
    return {
      id: `mount-${counter}`,
      name: `mount ${counter}`,
      bucket: 'alpha',
      zone: undefined,
      endpointUrl: server.endpoint,
      forcePathStyle: true,
      profile: 'p',
      mountPoint,
      prefix: '',
      readOnly: false,
      allowDelete: false,
      allowOverwrite: false,
      allowEdit: false,
      cacheEnabled: false,
      cacheSizeMiB: 2048,
      mountAtLogin: false,
      ...overrides,
    };
  }

  const isMounted = (s: MountStatus): boolean => s.state === 'mounted';

  test('a bucket that does not exist: error with the reason, not retried, not wanted any more', async () => {
    const { sup, events } = supervisor();
    const cfg = await config({ bucket: 'no-such-bucket' });
    sup.mount(cfg, { keepMounted: true });
    const status = await waitForStatus(sup, cfg.id, 'the error', (s) => s.state === 'error');
    assert.deepEqual(status, { state: 'error', message: `bucket no-such-bucket does not exist at ${server.endpoint}`, requestId: undefined, retryInMs: undefined });
    assert.equal(sup.wanted(cfg.id), false);
    assert.deepEqual(events.map((e) => e.type), ['mount-failed']);
    assert.equal(await isMountPoint(cfg.mountPoint), false);
  });

  test('a profile without a secret: error naming what to do, and no worker started', async () => {
    const launched: string[] = [];
    const launcher: WorkerLauncher = { launch: (name, ev) => { launched.push(name); return new NodeWorkerLauncher().launch(name, ev); } };
    const { sup } = supervisor({ launcher, credentialsFor: async (p) => { throw new CredentialsError(`the keychain holds no API secret for profile ${p}; enter it in Settings`); } });
    const cfg = await config();
    sup.mount(cfg, { keepMounted: true });
    const status = await waitForStatus(sup, cfg.id, 'the error', (s) => s.state === 'error');
    assert.equal(status.state === 'error' && status.message, 'the keychain holds no API secret for profile p; enter it in Settings');
    assert.equal(status.state === 'error' && status.retryInMs, undefined);
    assert.deepEqual(launched, []);
  });

  test('a keychain that is still locked (at login) is asked again after a backoff', async () => {
    let calls = 0;
    const { sup } = supervisor({
      credentialsFor: async () => {
        calls += 1;
        if (calls === 1) throw new CredentialsError('the keychain could not read the secret for profile p: locked', { retryable: true });
        return KEYS;
      },
    });
    const cfg = await config();
    sup.mount(cfg, { keepMounted: false });
    const failed = await waitForStatus(sup, cfg.id, 'the first failure', (s) => s.state === 'error');
    assert.equal(failed.state === 'error' && failed.retryInMs, 100);
    await waitForStatus(sup, cfg.id, 'mounted after the retry', isMounted);
    assert.equal(calls, 2);
    await sup.unmount(cfg.id);
  });

  test('the secret reaches the worker in its mount message only: not in argv, environment or log', async () => {
    const { sup } = supervisor();
    const cfg = await config();
    sup.mount(cfg, { keepMounted: false });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    const pid = sup.workerPid(cfg.id);
    assert.ok(pid !== undefined);
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8');
    assert.ok(!cmdline.includes(KEYS.secretAccessKey) && !environ.includes(KEYS.secretAccessKey));
    assert.ok(!environ.includes('AWS_SECRET_ACCESS_KEY'));
    const r = await sh(`cp /etc/hostname ${JSON.stringify(path.join(cfg.mountPoint, 'host.txt'))}`);
    assert.equal(r.code, 0, r.stderr);
    await sup.unmount(cfg.id);
    const logs = await readdir(logDir);
    assert.ok(logs.some((f) => f.endsWith(`-${pid}.log`)), `a log file of worker ${pid} in ${logs.join(', ')}`);
    const text = await readFile(path.join(logDir, logs.find((f) => f.endsWith(`-${pid}.log`))!), 'utf8');
    assert.match(text, /"msg":"mounted"/);
    assert.ok(!text.includes(KEYS.secretAccessKey), 'no secret in the worker log');
  });

  test('a killed worker of a mount not kept mounted: error, clean folder, and it stays unmounted', async () => {
    const { sup, events } = supervisor();
    const cfg = await config();
    sup.mount(cfg, { keepMounted: false });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    process.kill(sup.workerPid(cfg.id)!, 'SIGKILL');
    const status = await waitForStatus(sup, cfg.id, 'the error', (s) => s.state === 'error');
    assert.deepEqual(status, { state: 'error', message: 'the mount worker stopped unexpectedly (SIGKILL)', retryInMs: undefined });
    assert.equal(await isStaleMount(cfg.mountPoint), false);
    assert.equal(await isMountPoint(cfg.mountPoint), false);
    assert.equal(sup.wanted(cfg.id), false);
    assert.deepEqual(events.at(-1), { type: 'worker-crashed', mountId: cfg.id, message: 'the mount worker stopped unexpectedly (SIGKILL)', remountInMs: undefined });
  });

  test('an external umount is taken as the user\'s wish: unmounted, not remounted', async () => {
    const { sup, events } = supervisor();
    const cfg = await config();
    sup.mount(cfg, { keepMounted: true });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    const r = await sh(`umount ${JSON.stringify(cfg.mountPoint)}`);
    assert.equal(r.code, 0, r.stderr);
    await waitForStatus(sup, cfg.id, 'unmounted', (s) => s.state === 'unmounted');
    assert.equal(sup.wanted(cfg.id), false);
    assert.deepEqual(events.map((e) => e.type), ['unmounted-externally']);
  });

  test('unchecking a mount while it is still mounting ends unmounted, with nothing left mounted', async () => {
    const { sup } = supervisor();
    const cfg = await config();
    sup.mount(cfg, { keepMounted: true });
    await waitForStatus(sup, cfg.id, 'mounting', (s) => s.state === 'mounting');
    await sup.unmount(cfg.id);
    assert.deepEqual(sup.status(cfg.id), { state: 'unmounted' });
    assert.equal(await isMountPoint(cfg.mountPoint), false);
    assert.equal(sup.workerPid(cfg.id), undefined);
  });

  test('shutdown abandoning uploads stops only the uploading worker at once; the others unmount cleanly', async () => {
    const { sup } = supervisor();
    const busy = await config();
    const idle = await config();
    sup.mount(busy, { keepMounted: true });
    sup.mount(idle, { keepMounted: true });
    await waitForStatus(sup, busy.id, 'busy mounted', isMounted);
    await waitForStatus(sup, idle.id, 'idle mounted', isMounted);
    const writer = holdOpenWriter(path.join(busy.mountPoint, 'partial.bin'), 'x'.repeat(1000), 'y');
    assert.equal(await writer.opened, 'open');
    await waitForStatus(sup, busy.id, 'an upload', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
    assert.equal(sup.uploadsInProgress(), 1);
    await sup.shutdown({ abandonUploads: true });
    for (const cfg of [busy, idle]) {
      assert.deepEqual(sup.status(cfg.id), { state: 'unmounted' });
      assert.equal(await isMountPoint(cfg.mountPoint), false);
      assert.equal(await isStaleMount(cfg.mountPoint), false);
    }
    assert.notEqual(await writer.finish(), 'closed');
    await assert.rejects(server.client().send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'partial.bin' })), /NotFound|404/);
    assert.throws(() => sup.mount(idle, { keepMounted: false }), /shut down/);
  });

  test('a mount in editing mode reaches the worker as --allow-edit: its status says so, and deleting works without "allow delete" in its settings', async () => {
    const { sup } = supervisor();
    const cfg = await config({ allowEdit: true });
    sup.mount(cfg, { keepMounted: false });
    assert.deepEqual(await waitForStatus(sup, cfg.id, 'mounted', isMounted), { state: 'mounted', uploadsInProgress: 0, editing: true });
    const file = path.join(cfg.mountPoint, 'edited.txt');
    const put = await sh(`echo draft > ${JSON.stringify(file)}`);
    assert.equal(put.code, 0, put.stderr);
    await waitForStatus(sup, cfg.id, 'upload done', (s) => s.state === 'mounted' && s.uploadsInProgress === 0);
    const rm = await sh(`rm ${JSON.stringify(file)}`);
    assert.equal(rm.code, 0, rm.stderr);
    await assert.rejects(server.client().send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'edited.txt' })), /NotFound|404/);
    await sup.unmount(cfg.id);
  });

  test('a mount with the cache on mounts and reads; once unmounted, Clear Cache empties its folder on disk', async () => {
    const { sup } = supervisor();
    const cfg = await config({ cacheEnabled: true, cacheSizeMiB: 64 });
    await server.client().send(new PutObjectCommand({ Bucket: 'alpha', Key: 'cached.txt', Body: 'read me twice\n' }));
    sup.mount(cfg, { keepMounted: false });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    for (let i = 0; i < 2; i++) assert.equal(await readFile(path.join(cfg.mountPoint, 'cached.txt'), 'utf8'), 'read me twice\n');
    await sup.unmount(cfg.id);
    const dir = sup.cacheDirectory(cfg.id);
    assert.equal(dir, path.join(work, 'caches', cfg.id));
    // Blocks as the engine lays them out, whatever this read stored.
    await mkdir(path.join(dir, 'v1', 'ab'), { recursive: true });
    await writeFile(path.join(dir, 'v1', 'ab', 'block'), Buffer.alloc(256 * 1024, 1));
    const before = await cacheFolderUsage(path.join(dir, 'v1'));
    assert.equal(await sup.clearCache(cfg.id), before);
    assert.equal(await cacheFolderUsage(path.join(dir, 'v1')), 0);
    assert.equal(await isMountPoint(cfg.mountPoint), false);
  });

  test('Clear Cache while mounted: the worker empties its cache and says how much it freed; reads go on from the bucket', async () => {
    const { sup } = supervisor();
    const cfg = await config({ cacheEnabled: true, cacheSizeMiB: 64 });
    const body = 'x'.repeat(300 * 1024);
    await server.client().send(new PutObjectCommand({ Bucket: 'alpha', Key: 'cleared.txt', Body: body }));
    sup.mount(cfg, { keepMounted: false });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    assert.equal(await readFile(path.join(cfg.mountPoint, 'cleared.txt'), 'utf8'), body);
    const blocks = path.join(sup.cacheDirectory(cfg.id), 'v1');
    // The block is written in the background after the read.
    for (let i = 0; i < 100 && (await cacheFolderUsage(blocks)) < 300 * 1024; i++) await new Promise((r) => setTimeout(r, 50));
    const freed = await sup.clearCache(cfg.id);
    assert.ok(freed >= 300 * 1024, `freed ${freed}`);
    assert.equal(sup.status(cfg.id).state, 'mounted');
    assert.equal(await readFile(path.join(cfg.mountPoint, 'cleared.txt'), 'utf8'), body);
    await sup.unmount(cfg.id);
  });

  test('the worker as the app runs it (utility-process entry over a parent port) mounts, uploads, reports and unmounts', async () => {
    const { sup } = supervisor({ launcher: new FakeUtilityLauncher() });
    const cfg = await config();
    const seen: string[] = [];
    sup.onStatus((id, s) => { if (id === cfg.id) seen.push(s.state === 'mounted' ? `mounted/${s.uploadsInProgress}` : s.state); });
    sup.mount(cfg, { keepMounted: false });
    await waitForStatus(sup, cfg.id, 'mounted', isMounted);
    const writer = holdOpenWriter(path.join(cfg.mountPoint, 'via-port.txt'), 'hello ', 'port\n');
    assert.equal(await writer.opened, 'open');
    await waitForStatus(sup, cfg.id, 'an upload', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
    assert.equal(await writer.finish(), 'closed');
    await waitForStatus(sup, cfg.id, 'upload done', (s) => s.state === 'mounted' && s.uploadsInProgress === 0);
    await sup.unmount(cfg.id);
    assert.deepEqual(seen, ['mounting', 'mounted/0', 'mounted/1', 'mounted/0', 'unmounting', 'unmounted']);
    assert.equal(await isMountPoint(cfg.mountPoint), false);
    const head = await server.client().send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'via-port.txt' }));
    assert.equal(head.ContentLength, 'hello port\n'.length);
  });
});
