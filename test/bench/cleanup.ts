/**
 * Everything the bench starts is registered here and torn down on every way
 * out: normal end, failure, Ctrl-C, SIGTERM. Teardown is synchronous so it
 * also runs from process.on('exit'): FUSE connections are aborted first (a
 * hung mount cannot block an unmount or a kill), then mounts are detached,
 * then processes killed, then temporary folders removed.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { processAlive as alive } from '../../app/data/folder-lock.js';

export { alive };

interface MountInfo { mountPoint: string; fsType: string; device: string }

/** Mounts from /proc/self/mountinfo (reading it never touches a FUSE file system). */
export function mounts(): MountInfo[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    const dash = parts.indexOf('-');
    if (dash < 0 || parts.length < 5) continue;
    const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ device: parts[2]!, mountPoint: unescape(parts[4]!), fsType: parts[dash + 1] ?? '' });
  }
  return out;
}

export function mountOf(dir: string): MountInfo | undefined {
  return mounts().find((m) => m.mountPoint === dir);
}

/** Aborts the FUSE connection of a mount: every request in flight fails at once with ENOTCONN. */
export function abortFuse(dir: string): void {
  const m = mountOf(dir);
  if (!m || !m.fsType.startsWith('fuse')) return;
  const minor = m.device.split(':')[1];
  try {
    fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
  } catch {
    // no fusectl, or the connection is gone already
  }
}

export function forceUnmountSync(dir: string): void {
  if (!mountOf(dir)) return;
  abortFuse(dir);
  spawnSync('umount', ['-l', dir], { stdio: 'ignore', timeout: 10_000 });
  if (mountOf(dir)) spawnSync('fusermount', ['-uz', dir], { stdio: 'ignore', timeout: 10_000 });
}

class Registry {
  readonly mountDirs = new Set<string>();
  readonly pids = new Set<number>();
  readonly children = new Set<ChildProcess>();
  readonly dirs = new Set<string>();
  readonly hooks: Array<() => void> = [];
  private done = false;

  child<T extends ChildProcess>(c: T): T {
    this.children.add(c);
    c.once('exit', () => this.children.delete(c));
    return c;
  }

  runSync(): void {
    if (this.done) return;
    this.done = true;
    for (const dir of this.mountDirs) forceUnmountSync(dir);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const pid of this.pids) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const hook of this.hooks) { try { hook(); } catch { /* keep going */ } }
    for (const dir of this.dirs) fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const cleanup = new Registry();

export function installCleanupHandlers(): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\nbench: ${sig}, cleaning up...\n`);
    cleanup.runSync();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', () => cleanup.runSync());
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    cleanup.runSync();
    process.exit(1);
  });
}
