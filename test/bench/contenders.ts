/**
 * The mounts under test: ours (`sosmount`, background mode), s3fs and
 * rclone mount. Each mount is fresh (cold caches); each reports the pid that
 * serves it, so the bench can sample its memory.
 *
 * Settings, chosen to be each tool's defaults plus what the local server needs:
 * - ours: `--endpoint-url URL --force-path-style`, keys in the environment;
 *   everything else default (16 requests in flight, 8 MiB parts, metadata TTL 1 s).
 *   The editing-mode workloads (`cp -r`, the editor save) add
 *   `--allow-edit --staging-directory DIR`, DIR a fresh folder of the bench's
 *   removed after the unmount; the upload delay stays at its default.
 * - ours-copy (only when named with --contenders): the same with
 *   SOSMOUNT_FUSE_COPY_BUFFERS=1, the copying path the tray's workers take
 *   under Electron (no Buffers over libfuse's memory), to compare the two
 *   in one run.
 * - s3fs: `-f -o url=URL,use_path_request_style,passwd_file=F`; defaults
 *   otherwise (no local cache: `use_cache` is off by default).
 * - rclone: `rclone mount bench:BUCKET DIR` with the remote configured in
 *   the environment (type s3, provider Other, path style), `--vfs-cache-mode off`
 *   (its default: streaming reads and sequential writes, no local disk copy,
 *   the closest to what ours and Mountpoint do), AWS_CA_BUNDLE unset.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { alive, cleanup, forceUnmountSync, mountOf } from './cleanup.js';

export type ContenderName = 'ours' | 'ours-copy' | 'sdk' | 's3fs' | 'rclone';
/** The default contenders. */
export const ALL_CONTENDERS: ContenderName[] = ['sdk', 'ours', 's3fs', 'rclone'];
/** Those --contenders accepts: ours-copy only when asked for. */
export const KNOWN_CONTENDERS: ContenderName[] = [...ALL_CONTENDERS, 'ours-copy'];
export const PEERS: ContenderName[] = ['s3fs', 'rclone'];

export interface Target {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface MountHandle {
  dir: string;
  /** The process that serves the mount (ours: the worker). */
  pid: number;
  unmount(): Promise<void>;
  /** Last lines the mount process printed (for a FAILED reason). */
  logTail(): string;
}

export class MountFailed extends Error {}

const CLI = fileURLToPath(new URL('../../app/cli.js', import.meta.url));
const MOUNT_WAIT_MS = 30_000;
const EXIT_WAIT_MS = 15_000;

/** The environment without AWS and Node test settings, so no contender picks up a developer's setup. */
export function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && !k.startsWith('RCLONE_') && !k.startsWith('NODE_TEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  return { ...env, LC_ALL: 'C', ...extra };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(25);
  }
  return check();
}

function tailOf(buf: { text: string }): string {
  return buf.text.trim().split('\n').slice(-5).join(' | ').slice(-600);
}

function collect(child: ChildProcess): { text: string } {
  const out = { text: '' };
  const add = (d: Buffer): void => { out.text = (out.text + d.toString()).slice(-8000); };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return out;
}

/** Unmounts, waits for the serving process to exit, and forces both if they do not. */
async function unmountAndWait(dir: string, pid: number, polite: () => void): Promise<void> {
  if (mountOf(dir)) {
    const r = spawnSync('umount', [dir], { stdio: 'ignore', timeout: 15_000 });
    if (r.status !== 0 && mountOf(dir)) polite();
  }
  const gone = await waitUntil(() => !alive(pid) && !mountOf(dir), EXIT_WAIT_MS);
  if (!gone) {
    forceUnmountSync(dir);
    if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await waitUntil(() => !alive(pid), 5_000);
  }
  cleanup.mountDirs.delete(dir);
  cleanup.pids.delete(pid);
}

/** pids whose environment holds NAME=VALUE. */
function pidsWithEnv(name: string, value: string): number[] {
  const want = `${name}=${value}`;
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = fs.readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (env.includes(want)) out.push(Number(entry));
    } catch {
      // exited, or not ours to read
    }
  }
  return out;
}

let tagCounter = 0;

export async function mountOurs(t: Target, dir: string, opts: { logDir: string; cpuProfDir?: string | undefined; copyBuffers?: boolean; extraArgs?: string[] }): Promise<MountHandle> {
  const tag = `${process.pid}-${++tagCounter}`;
  const env = baseEnv({
    AWS_ACCESS_KEY_ID: t.accessKeyId,
    AWS_SECRET_ACCESS_KEY: t.secretAccessKey,
    SOSMOUNT_BENCH_TAG: tag,
    ...(opts.copyBuffers ? { SOSMOUNT_FUSE_COPY_BUFFERS: '1' } : {}),
  });
  if (opts.cpuProfDir) {
    // Node refuses --cpu-prof in NODE_OPTIONS and the CLI forks its worker with no flags:
    // profile the same engine in --foreground mode, where the mount runs in the process we start.
    // The profile is written when the process exits after the unmount.
    const args = ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, CLI, '--foreground', '--endpoint-url', t.endpoint, '--force-path-style', '--log-directory', opts.logDir, ...(opts.extraArgs ?? []), t.bucket, dir];
    return mountForeground('sosmount --foreground', dir, process.execPath, args, env, 'fuse.sosmount');
  }
  cleanup.mountDirs.add(dir);
  const child = cleanup.child(spawn(process.execPath, [CLI, '--endpoint-url', t.endpoint, '--force-path-style', '--log-directory', opts.logDir, ...(opts.extraArgs ?? []), t.bucket, dir], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = collect(child);
  const code = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(-1); }, MOUNT_WAIT_MS + 5_000);
    child.once('exit', (c) => { clearTimeout(timer); resolve(c ?? -1); });
  });
  // The worker was forked by the CLI with the CLI's environment: find it by its tag.
  const workers = pidsWithEnv('SOSMOUNT_BENCH_TAG', tag).filter((p) => p !== child.pid);
  for (const p of workers) cleanup.pids.add(p);
  if (code !== 0 || !mountOf(dir)) {
    for (const p of workers) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    forceUnmountSync(dir);
    throw new MountFailed(`sosmount exited ${code}: ${tailOf(out)}`);
  }
  const pid = workers[0];
  if (pid === undefined) throw new MountFailed('sosmount mounted but its worker process was not found');
  return {
    dir,
    pid,
    unmount: () => unmountAndWait(dir, pid, () => { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }),
    logTail: () => tailOf(out),
  };
}

async function mountForeground(name: string, dir: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, fsType: string): Promise<MountHandle> {
  cleanup.mountDirs.add(dir);
  const child = cleanup.child(spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = collect(child);
  let exited = false;
  child.once('exit', () => { exited = true; });
  child.once('error', (err) => { out.text += `\n${err.message}`; exited = true; });
  const ok = await waitUntil(() => exited || mountOf(dir)?.fsType === fsType, MOUNT_WAIT_MS);
  if (!ok || exited || !child.pid) {
    child.kill('SIGKILL');
    forceUnmountSync(dir);
    throw new MountFailed(`${name} ${exited ? `exited (${child.exitCode ?? child.signalCode})` : `did not mount within ${MOUNT_WAIT_MS / 1000} s`}: ${tailOf(out) || '(no output)'}`);
  }
  const pid = child.pid;
  cleanup.pids.add(pid);
  return {
    dir,
    pid,
    unmount: () => unmountAndWait(dir, pid, () => child.kill('SIGTERM')),
    logTail: () => tailOf(out),
  };
}

export async function mountS3fs(t: Target, dir: string, workDir: string, extraOptions: string[] = []): Promise<MountHandle> {
  const passwd = path.join(workDir, 's3fs.passwd');
  fs.writeFileSync(passwd, `${t.accessKeyId}:${t.secretAccessKey}\n`, { mode: 0o600 });
  const options = [`url=${t.endpoint}`, 'use_path_request_style', `passwd_file=${passwd}`, ...extraOptions];
  return mountForeground('s3fs', dir, 's3fs', [t.bucket, dir, '-f', '-o', options.join(',')], baseEnv(), 'fuse.s3fs');
}

export async function mountRclone(t: Target, dir: string, workDir: string, extraArgs: string[] = []): Promise<MountHandle> {
  const conf = path.join(workDir, 'rclone.conf');
  if (!fs.existsSync(conf)) fs.writeFileSync(conf, '');
  const env = baseEnv({
    RCLONE_CONFIG: conf,
    RCLONE_CONFIG_BENCH_TYPE: 's3',
    RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
    RCLONE_CONFIG_BENCH_ENDPOINT: t.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: t.accessKeyId,
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: t.secretAccessKey,
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG_BENCH_REGION: 'us-east-1',
  });
  return mountForeground('rclone', dir, 'rclone', ['mount', `bench:${t.bucket}`, dir, ...(extraArgs.length ? extraArgs : ['--vfs-cache-mode', 'off'])], env, 'fuse.rclone');
}

/** Samples a process's resident memory (and CPU time) while a workload runs. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private peakKiB = 0;
  private lastCpu = NaN;
  private readonly cpuStart: number;

  constructor(private readonly pid: number, intervalMs = 50) {
    this.sample();
    this.cpuStart = this.cpuSeconds();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private read(field: string): number {
    try {
      const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  /** utime + stime of the process and its waited-for children, in seconds. */
  private cpuSeconds(): number {
    try {
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields after the name: state(0) ... utime(11) stime(12)
      return (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      return NaN;
    }
  }

  private sample(): void {
    this.peakKiB = Math.max(this.peakKiB, this.read('VmRSS'));
    const cpu = this.cpuSeconds();
    if (Number.isFinite(cpu)) this.lastCpu = cpu;
  }

  /** Peak RSS in MiB (the largest sample, or the kernel's high-water mark if larger) and CPU seconds used meanwhile. */
  stop(): { rssMiB: number; cpuSeconds: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return { rssMiB: Math.max(this.peakKiB, this.read('VmHWM')) / 1024, cpuSeconds: this.lastCpu - this.cpuStart };
  }
}

/** Fraction of all CPUs busy over `ms` (from /proc/stat). */
export async function cpuBusy(ms = 500): Promise<number> {
  const read = (): { idle: number; total: number } => {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (line[3] ?? 0) + (line[4] ?? 0);
    return { idle, total: line.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  const total = b.total - a.total;
  return total > 0 ? 1 - (b.idle - a.idle) / total : 0;
}

/** Waits (at most maxWaitMs) until other work leaves the CPUs mostly idle; returns the last busy fraction. */
export async function waitQuiet(maxWaitMs: number, threshold = 0.3): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  let busy = await cpuBusy();
  while (busy > threshold && Date.now() < deadline) busy = await cpuBusy();
  return busy;
}
