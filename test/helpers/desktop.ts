/**
 * Shared pieces of the desktop-shell tests: waiting for a mount's status
 * (by event, never by sleeping), recording what the tray showed and which
 * notifications went out, and a writer that holds a file open in a mount.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AppCore, Notification, Notifier, Shell } from '../../main/app-core.js';
import type { MountStatus } from '../../main/model.js';

const HELD_WRITER = fileURLToPath(new URL('./held-writer.js', import.meta.url));

/** What a test waits on: the supervisor or anything with the same two calls. */
export interface StatusSource {
  status(mountId: string): MountStatus;
  onStatus(listener: (mountId: string, status: MountStatus) => void): () => void;
}

/**
 * Resolves with the first status of `mountId` (the current one included)
 * that satisfies `accept`. The timeout only turns a hang into a failure
 * that says what was awaited and what was seen.
 */
export function waitForStatus(source: StatusSource, mountId: string, what: string, accept: (s: MountStatus) => boolean, timeoutMs = 30_000): Promise<MountStatus> {
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const done = (s: MountStatus): boolean => {
      seen.push(JSON.stringify(s));
      if (!accept(s)) return false;
      clearTimeout(timer);
      off();
      resolve(s);
      return true;
    };
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}; statuses seen: ${seen.join(' -> ')}`));
    }, timeoutMs);
    const off = source.onStatus((id, s) => {
      if (id === mountId) done(s);
    });
    done(source.status(mountId));
  });
}

/** Every label the tray showed for one mount entry, in order, without repeats. */
export class MenuRecorder {
  readonly labels: string[] = [];
  private readonly off: () => void;

  constructor(core: AppCore, itemId: string) {
    const record = (): void => {
      const item = core.menu().items.find((i) => i.id === itemId);
      const label = item && item.type !== 'separator' ? item.label : '(absent)';
      if (this.labels[this.labels.length - 1] !== label) this.labels.push(label);
    };
    this.off = core.onChange(record);
    record();
  }

  stop(): string[] {
    this.off();
    return this.labels;
  }
}

export class RecordingNotifier implements Notifier {
  readonly sent: Notification[] = [];

  notify(notification: Notification): void {
    this.sent.push(notification);
  }
}

export class RecordingShell implements Shell {
  readonly opened: string[] = [];

  async openPath(target: string): Promise<string> {
    this.opened.push(target);
    return '';
  }
}

export interface HeldWriter {
  /** Resolves once the file is open and the first part written (or with the errno of opening). */
  opened: Promise<string>;
  /** Writes the second part and closes; resolves with "closed" or the errno of the failed step. */
  finish(): Promise<string>;
}

/** Opens `file` in a child process and keeps it open until finish(). */
export function holdOpenWriter(file: string, first: string, second: string): HeldWriter {
  const child = spawn(process.execPath, [HELD_WRITER, file, first, second], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let stderr = '';
  let buffer = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    for (const w of waiters.splice(0)) w();
    resolve();
  }));
  const line = (n: number): Promise<string> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (lines.length > n) resolve(lines[n] as string);
      else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`held writer exited early: ${stderr}`));
      else waiters.push(check);
    };
    check();
  });
  child.stdin.on('error', () => { /* it may have exited after a failed open */ });
  return {
    opened: line(0),
    finish: async () => {
      child.stdin.end('finish\n');
      const result = await line(1).catch(() => lines[1] ?? 'exited');
      await exited;
      return result;
    },
  };
}
