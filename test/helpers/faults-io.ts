/**
 * Reader and writer processes for the fault tests (test/faults*.test.ts).
 * A test never calls into a mount from its own process (its event loop may
 * serve the proxy's IPC, and a hung mount must not hang the test); these
 * children do the file I/O with synchronous calls, in 1 MiB pieces, and
 * report what happened as JSON lines on stdout: progress, a pause point
 * (the child waits for a line on stdin, so a test can inject a fault while
 * a file is open mid-read or mid-write, deterministically), and the outcome
 * of every call that failed, with its errno code and timing.
 *
 * The bytes are a deterministic pattern (AES-CTR keystream of a seed), so
 * the test can compute the expected MD5 without storing the data.
 *
 * This one file is both the parent's API ({@link startIo}) and the child's
 * entry (when run as a script).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const MiB = 1024 * 1024;

/** `size` bytes of a pattern determined by `seed`. */
export function pattern(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(`key:${seed}`).digest().subarray(0, 16);
  const iv = createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

export function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

export interface IoEvent {
  event: 'progress' | 'paused' | 'error' | 'close' | 'done' | 'opened';
  op?: string;
  code?: string;
  bytes?: number;
  md5?: string;
  ms?: number;
}

export interface IoProcess {
  child: ChildProcess;
  pid: number;
  readonly events: IoEvent[];
  /** Bytes reported so far. */
  bytes(): number;
  /** Resolves with the first event of this kind (waits for it), or rejects after timeoutMs. */
  waitEvent(kind: IoEvent['event'], timeoutMs: number): Promise<IoEvent>;
  /** Lets a paused child go on. */
  resume(): void;
  /** Resolves when the child has exited, with its events. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; events: IoEvent[]; stderr: string }>;
  kill(): void;
}

const ENTRY = fileURLToPath(import.meta.url);

export interface WriteJob { op: 'write'; path: string; size: number; seed: string; pauseAt?: number; paceMs?: number }
export interface ReadJob { op: 'read'; path: string; pauseAt?: number; chunk?: number; paceMs?: number }

/** Starts a reader or writer child; `env` as for the mount's user. */
export function startIo(job: WriteJob | ReadJob, env?: NodeJS.ProcessEnv): IoProcess {
  const child = spawn(process.execPath, [ENTRY, '--faults-io-child', JSON.stringify(job)], {
    env: env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: IoEvent[] = [];
  const waiters: Array<() => void> = [];
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    let nl: number;
    while ((nl = stdout.indexOf('\n')) >= 0) {
      const line = stdout.slice(0, nl);
      stdout = stdout.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as IoEvent);
      } catch {
        events.push({ event: 'error', op: 'protocol', code: line });
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  child.stdin!.on('error', () => { /* the child may be gone */ });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; events: IoEvent[]; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) w();
      resolve({ code, signal, events, stderr });
    });
  });
  let done = false;
  void exited.then(() => { done = true; });
  return {
    child,
    pid: child.pid!,
    events,
    bytes: () => Math.max(0, ...events.map((e) => e.bytes ?? 0)),
    waitEvent: (kind, timeoutMs) => new Promise<IoEvent>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = (): void => {
        const found = events.find((e) => e.event === kind);
        if (found) {
          clearTimeout(timer);
          resolve(found);
          return;
        }
        if (done) {
          clearTimeout(timer);
          reject(new Error(`io child exited without a ${kind} event: ${JSON.stringify(events.slice(-5))} ${stderr}`));
          return;
        }
        if (Date.now() < deadline) waiters.push(check);
      };
      const timer = setTimeout(() => reject(new Error(`no ${kind} event within ${timeoutMs} ms: ${JSON.stringify(events.slice(-5))} ${stderr}`)), timeoutMs);
      check();
    }),
    resume: () => { child.stdin!.write('go\n'); },
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------
// Child side: synchronous calls, one JSON line per event.

function emit(e: IoEvent): void {
  fs.writeSync(1, JSON.stringify(e) + '\n');
}

function waitForGo(): void {
  const buf = Buffer.alloc(64);
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw err;
    }
    if (n === 0 || buf.subarray(0, n).includes(0x0a)) return;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function codeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

function runWrite(job: WriteJob): void {
  const started = Date.now();
  const data = pattern(job.seed, job.size);
  let fd: number;
  try {
    fd = fs.openSync(job.path, 'w');
  } catch (err) {
    emit({ event: 'error', op: 'open', code: codeOf(err), bytes: 0, ms: Date.now() - started });
    return;
  }
  emit({ event: 'opened', bytes: 0 });
  let done = 0;
  let paused = false;
  let failed = false;
  while (done < job.size) {
    if (!paused && job.pauseAt !== undefined && done >= job.pauseAt) {
      paused = true;
      emit({ event: 'paused', bytes: done });
      waitForGo();
    }
    const n = Math.min(MiB, job.size - done);
    // As cp does: a short write (a FUSE piece failed after others succeeded) is followed by a write of the rest.
    let piece = 0;
    try {
      while (piece < n) piece += fs.writeSync(fd, data, done + piece, n - piece);
    } catch (err) {
      emit({ event: 'error', op: 'write', code: codeOf(err), bytes: done + piece, ms: Date.now() - started });
      failed = true;
      break;
    }
    done += n;
    emit({ event: 'progress', bytes: done });
    if (job.paceMs) sleepSync(job.paceMs);
  }
  const closing = Date.now();
  try {
    fs.closeSync(fd);
    emit({ event: 'close', code: 'OK', bytes: done, ms: Date.now() - closing });
    if (!failed) emit({ event: 'done', bytes: done, ms: Date.now() - started });
  } catch (err) {
    emit({ event: 'close', code: codeOf(err), bytes: done, ms: Date.now() - closing });
  }
}

function runRead(job: ReadJob): void {
  const started = Date.now();
  let fd: number;
  try {
    fd = fs.openSync(job.path, 'r');
  } catch (err) {
    emit({ event: 'error', op: 'open', code: codeOf(err), bytes: 0, ms: Date.now() - started });
    return;
  }
  emit({ event: 'opened', bytes: 0 });
  const hash = createHash('md5');
  const buf = Buffer.alloc(job.chunk ?? MiB);
  let done = 0;
  let paused = false;
  let reported = 0;
  for (;;) {
    if (!paused && job.pauseAt !== undefined && done >= job.pauseAt) {
      paused = true;
      emit({ event: 'paused', bytes: done });
      waitForGo();
    }
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, done);
    } catch (err) {
      emit({ event: 'error', op: 'read', code: codeOf(err), bytes: done, ms: Date.now() - started });
      try { fs.closeSync(fd); } catch { /* the mount may be gone */ }
      return;
    }
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
    done += n;
    if (done - reported >= 4 * MiB) {
      reported = done;
      emit({ event: 'progress', bytes: done });
    }
    if (job.paceMs) sleepSync(job.paceMs);
  }
  try {
    fs.closeSync(fd);
  } catch (err) {
    emit({ event: 'close', code: codeOf(err), bytes: done });
  }
  emit({ event: 'done', bytes: done, md5: hash.digest('hex'), ms: Date.now() - started });
}

if (process.argv[2] === '--faults-io-child' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const job = JSON.parse(process.argv[3] ?? '{}') as WriteJob | ReadJob;
  if (job.op === 'write') runWrite(job);
  else runRead(job);
}
