/**
 * Structured logs: one JSON object per line (level, msg, mount, op, key,
 * requestId, durationMs, ...). Secrets never reach this module: credentials
 * are never passed as fields, and {@link redact} masks anything that looks
 * like one in case a caller slips.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

const SECRET_FIELD = /secret|password|authorization|signature|token|credential/i;

/** Drops fields whose names suggest secrets; stringifies errors usefully. */
export function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_FIELD.test(k)) {
      out[k] = '[redacted]';
    } else if (v instanceof Error) {
      out[k] = v.message;
    } else {
      out[k] = v;
    }
  }
  return out;
}

export function createLogger(sink: LogSink, minLevel: LogLevel = 'info', base: LogFields = {}): Logger {
  const write = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVEL_ORDER[level] < LEVEL_ORDER[minLevel]) return;
    const record = { time: new Date().toISOString(), level, msg, ...redact({ ...base, ...fields }) };
    try {
      sink(JSON.stringify(record));
    } catch {
      // A log line that cannot be written must never fail a file-system operation.
    }
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (fields) => createLogger(sink, minLevel, { ...base, ...fields }),
  };
}

export const stderrSink: LogSink = (line) => {
  process.stderr.write(line + '\n');
};

/**
 * Why our own writer and not pino: pino's file destination (sonic-boom)
 * buffers well but does not rotate; rotation means pino-roll, a transport
 * run in a worker thread, whose flush at process.exit needs its own care,
 * and pino's record shape (numeric levels, epoch time) would have to be
 * mapped back to ours. What the worker needs fits in this class: lines
 * queued in memory, written in batches by asynchronous calls (never by the
 * thread that serves FUSE waiting on a disk), size rotation, a bounded
 * queue, a flush before exit and a synchronous last write on a crash.
 * One write is in flight at a time, so a stalled disk holds one of libuv's
 * four threads, not those the mount's own work needs.
 */
export interface LogFileOptions {
  /** A file is rotated before it would grow past this. */
  maxFileBytes?: number;
  /** Files kept: the one written and maxFiles - 1 older ones (`.1` newest). */
  maxFiles?: number;
  /** Lines queued while the disk is slow or failing; past this, lines are dropped and counted. */
  maxQueuedBytes?: number;
  /**
   * Asked once before the folder is created or written: false keeps it
   * untouched and drops every line (a log folder inside the mount point,
   * which the mount refuses with the reason).
   */
  mayOpen?: () => Promise<boolean>;
}

/** 10 MiB x 5: the last 50 MiB of a busy mount's debug log, little on any disk. */
export const LOG_FILE_BYTES = 10 * 1024 * 1024;
export const LOG_FILES_KEPT = 5;
/** Enough for minutes of debug lines while a disk stalls; bounded so a stuck disk cannot grow the worker. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** After a failed write (disk full, folder removed), lines wait this long before the next try. */
const RETRY_AFTER_FAILURE_MS = 1_000;

export class LogFile {
  readonly file: string;
  readonly directory: string;
  private readonly maxFileBytes: number;
  private readonly maxFiles: number;
  private readonly maxQueuedBytes: number;
  private readonly allowed: Promise<boolean>;
  /** Known once mayOpen has answered; a crash before that writes nothing. */
  private allowedNow: boolean | undefined;
  private queue: string[] = [];
  private queuedBytes = 0;
  private lost = 0;
  private lastError: string | undefined;
  private handle: FileHandle | undefined;
  private size = 0;
  private retryAt = 0;
  private draining: Promise<void> | undefined;

  constructor(directory: string, options: LogFileOptions = {}) {
    this.directory = directory;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    // One file per worker like mount-s3; rotated ones take a numeric suffix.
    this.file = path.join(directory, `sosmount-${stamp}-${process.pid}.log`);
    this.maxFileBytes = options.maxFileBytes ?? LOG_FILE_BYTES;
    this.maxFiles = Math.max(1, options.maxFiles ?? LOG_FILES_KEPT);
    this.maxQueuedBytes = options.maxQueuedBytes ?? MAX_QUEUED_BYTES;
    this.allowed = (options.mayOpen ? options.mayOpen().catch(() => false) : Promise.resolve(true)).then((ok) => {
      this.allowedNow = ok;
      if (!ok) this.queue = [];
      return ok;
    });
  }

  /** Queues one line; never throws, never waits on the disk. */
  readonly sink: LogSink = (line) => {
    if (this.allowedNow === false) return;
    const text = line + '\n';
    const bytes = Buffer.byteLength(text);
    if (this.queuedBytes + bytes > this.maxQueuedBytes) {
      this.lost++;
      return;
    }
    this.queue.push(text);
    this.queuedBytes += bytes;
    this.drainSoon();
  };

  /** Resolves once every line queued so far is written (or dropped), or after timeoutMs. */
  async flush(timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); });
    const done = (async () => {
      while (this.draining) await this.draining;
    })();
    try {
      await Promise.race([done, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * For a crash handler, just before process.exit: appends what is queued,
   * synchronously. A batch already handed to the disk may land after it.
   */
  flushSync(): void {
    if (this.allowedNow !== true || this.queue.length === 0) return;
    const text = this.lostNotice() + this.queue.join('');
    this.queue = [];
    this.queuedBytes = 0;
    try {
      mkdirSync(this.directory, { recursive: true });
      appendFileSync(this.file, text);
      this.lost = 0;
    } catch {
      // Nothing more can be done for a crashing process.
    }
  }

  /** Flushes and closes the file; lines logged later open it again. */
  async close(timeoutMs?: number): Promise<void> {
    await this.flush(timeoutMs);
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => {});
  }

  private drainSoon(): void {
    this.draining ??= this.drain();
  }

  private async drain(): Promise<void> {
    try {
      if (!(await this.allowed)) return;
      while (this.queue.length > 0) {
        const wait = this.retryAt - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await this.writeSome();
      }
    } finally {
      // Cleared without an await in between, so a line queued after the last check starts a new drain.
      this.draining = undefined;
    }
  }

  /** Writes the lines that fit in the current file, rotating first when none does. */
  private async writeSome(): Promise<void> {
    let batch: string[] = [];
    try {
      if (!this.handle) await this.openFile();
      const room = this.maxFileBytes - this.size;
      let bytes = 0;
      let n = 0;
      for (const line of this.queue) {
        const b = Buffer.byteLength(line);
        // A line longer than a whole file still goes out, alone in a fresh file.
        if (bytes + b > room && !(n === 0 && this.size === 0)) break;
        bytes += b;
        n++;
      }
      if (n === 0) {
        await this.rotate();
        return;
      }
      batch = this.queue.splice(0, n);
      this.queuedBytes -= bytes;
      const text = this.lostNotice() + batch.join('');
      // writeFile, unlike write, loops until every byte is out (a short write would cut a line).
      await this.handle!.writeFile(text);
      this.size += Buffer.byteLength(text);
      this.lost = 0;
      this.lastError = undefined;
    } catch (err) {
      // Disk full, folder gone, permissions: the lines are lost, the mount
      // goes on. The whole queue goes, not only the batch: retrying it would
      // keep memory and an exit's flush waiting on a disk that may not recover.
      this.lost += batch.length + this.queue.length;
      this.queue = [];
      this.queuedBytes = 0;
      this.lastError = (err as Error).message;
      this.retryAt = Date.now() + RETRY_AFTER_FAILURE_MS;
      const h = this.handle;
      this.handle = undefined;
      await h?.close().catch(() => {});
    }
  }

  private async openFile(): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    const h = await open(this.file, 'a');
    try {
      this.size = (await h.stat()).size;
    } catch (err) {
      await h.close().catch(() => {});
      throw err;
    }
    this.handle = h;
  }

  /** file -> file.1 -> ... -> file.(maxFiles-1); the oldest is replaced. */
  private async rotate(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
    for (let i = this.maxFiles - 1; i >= 1; i--) {
      const from = i === 1 ? this.file : `${this.file}.${i - 1}`;
      await rename(from, `${this.file}.${i}`).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
    }
    // With maxFiles 1 nothing was renamed: start the file over.
    this.handle = await open(this.file, this.maxFiles === 1 ? 'w' : 'a');
    this.size = 0;
  }

  /** A line saying how many lines were lost since the last write, so a gap in the log is never silent; reset once written. */
  private lostNotice(): string {
    if (this.lost === 0) return '';
    return JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: 'log lines lost', lost: this.lost, error: this.lastError }) + '\n';
  }
}

export const silentLogger: Logger = createLogger(() => {}, 'error');

/** Where workers note their open multipart uploads (upload-journal.ts): beside the default logs. */
export function uploadJournalDirectory(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  return path.join(path.dirname(defaultLogDirectory(env, home)), 'uploads');
}

/** Where a background worker logs without --log-directory (mount-s3 uses syslog; a file is easier to show). */
export function defaultLogDirectory(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Logs', 'sos-mount');
  return path.join(env['XDG_STATE_HOME'] ?? path.join(home, '.local', 'state'), 'sos-mount', 'logs');
}
