/**
 * Structured logs: one JSON object per line (level, msg, mount, op, key,
 * requestId, durationMs, ...). Secrets never reach this module: credentials
 * are never passed as fields, and {@link redact} masks anything that looks
 * like one in case a caller slips.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
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

/** Appends to `<dir>/sosmount-<timestamp>-<pid>.log`, one file per worker like mount-s3. */
export function fileSink(directory: string): { sink: LogSink; file: string } {
  mkdirSync(directory, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(directory, `sosmount-${stamp}-${process.pid}.log`);
  // Synchronous appends keep lines whole and ordered; the log file is never inside a mount.
  return { sink: (line) => appendFileSync(file, line + '\n'), file };
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
