/**
 * Starts the local S3-compatible test server (s3rver with corrected listing,
 * see ./s3-server-process.ts) in a child process on 127.0.0.1.
 *
 * A child process, not an in-process server: tests make synchronous fs calls
 * into FUSE mounts whose worker talks to this server, and a server sharing
 * the test's event loop could not answer while the test thread is blocked.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import type { ServerProcessConfig, ServerProcessMessage } from './s3-server-process.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface TestS3ServerOptions {
  /** Buckets created before the server reports ready. */
  buckets?: string[];
  /** Accepted key pairs, besides s3rver's built-in S3RVER/S3RVER. */
  credentials?: S3Credentials[];
  /** Where objects are stored; a fresh temp directory (removed on stop) when omitted. */
  directory?: string;
  /** 0 or omitted: a free port. */
  port?: number;
}

export interface TestS3Server {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  directory: string;
  /** The first configured pair, or S3RVER/S3RVER. */
  credentials: S3Credentials;
  /** A new SDK client for this server (path style, us-east-1, checksums only when required). */
  client(): S3Client;
  /** Ends the server process and waits for it to exit, so the port is free; removes the directory if it was created here. */
  stop(): Promise<void>;
  /** SIGKILL, without waiting: the server vanishes mid-request, as in an outage. */
  kill(): void;
  /** Starts the server again on the same port and directory (after kill() or while running). */
  restart(): Promise<void>;
}

export const DEFAULT_CREDENTIALS: S3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const READY_TIMEOUT_MS = 20_000;
/** After SIGTERM, how long a server may take to close before it is SIGKILLed. */
const STOP_TIMEOUT_MS = 5_000;
const STDERR_TAIL_CHARS = 4_000;
const ENTRY = fileURLToPath(new URL('./s3-server-process.js', import.meta.url));

interface RunningChild {
  child: ChildProcess;
  exited: Promise<void>;
}

function isMessage(value: unknown): value is ServerProcessMessage {
  if (typeof value !== 'object' || value === null) return false;
  const type = (value as { type?: unknown }).type;
  return type === 'ready' || type === 'error';
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Lets a test process end even if a test forgot stop(); the child then exits on IPC disconnect. */
function setRef(child: ChildProcess, ref: boolean): void {
  const handles = [child, child.channel, child.stderr] as Array<{ ref?: () => void; unref?: () => void } | null | undefined>;
  for (const handle of handles) {
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}

async function spawnServer(config: ServerProcessConfig): Promise<{ running: RunningChild; port: number }> {
  const log = process.env['SOSMOUNT_TEST_SERVER_LOG'] === '1';
  // execArgv: [] so the test runner's flags (--test, --openssl-legacy-provider...) do not leak into the server.
  const child = fork(ENTRY, [JSON.stringify(config)], {
    execArgv: [],
    stdio: log ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'ignore', 'pipe', 'ipc'],
    serialization: 'json',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderrTail = '';
  // Always drained, so a chatty child can never block on a full pipe.
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARS);
  });

  const port = await new Promise<number>((resolve, reject) => {
    let reported: string | undefined;
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    const onMessage = (message: unknown): void => {
      if (!isMessage(message)) return;
      if (message.type === 'ready') {
        cleanup();
        resolve(message.port);
      } else {
        reported = message.message;
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanup();
      const why = reported ?? (stderrTail.trim() || '(no output; set SOSMOUNT_TEST_SERVER_LOG=1 to see it)');
      reject(new Error(`S3 test server on port ${config.port || '(any)'} exited before it was ready (code ${code}, signal ${signal}): ${why}`));
    };
    const onError = (err: Error): void => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`S3 test server could not be started: ${err.message}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`S3 test server was not ready within ${READY_TIMEOUT_MS / 1000} s: ${stderrTail.trim()}`));
    }, READY_TIMEOUT_MS);
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.once('error', onError);
  });
  setRef(child, false);
  return { running: { child, exited }, port };
}

async function terminate(running: RunningChild): Promise<void> {
  const { child, exited } = running;
  setRef(child, true);
  if (!hasExited(child)) {
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
    });
    const late = await Promise.race([exited.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) child.kill('SIGKILL');
  }
  await exited;
}

class ChildS3Server implements TestS3Server {
  readonly endpoint: string;
  readonly port: number;
  readonly directory: string;
  readonly credentials: S3Credentials;
  private readonly config: ServerProcessConfig;
  private readonly ownsDirectory: boolean;
  private running: RunningChild;
  private readonly clients: S3Client[] = [];
  private stopped = false;

  constructor(config: ServerProcessConfig, port: number, running: RunningChild, ownsDirectory: boolean) {
    this.config = { ...config, port };
    this.port = port;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.directory = config.directory;
    this.credentials = config.credentials[0] ?? DEFAULT_CREDENTIALS;
    this.running = running;
    this.ownsDirectory = ownsDirectory;
  }

  client(): S3Client {
    const client = new S3Client({
      endpoint: this.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { ...this.credentials },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await terminate(this.running);
    for (const client of this.clients.splice(0)) client.destroy();
    if (this.ownsDirectory) await fsp.rm(this.directory, { recursive: true, force: true });
  }

  kill(): void {
    if (!hasExited(this.running.child)) this.running.child.kill('SIGKILL');
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error('S3 test server: restart() after stop()');
    await terminate(this.running);
    const { running } = await spawnServer(this.config);
    this.running = running;
  }
}

export async function startS3Server(options: TestS3ServerOptions = {}): Promise<TestS3Server> {
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'sosmount-s3rver-')));
  const config: ServerProcessConfig = {
    port: options.port ?? 0,
    directory,
    buckets: options.buckets ?? [],
    credentials: options.credentials ?? [],
    silent: process.env['SOSMOUNT_TEST_SERVER_LOG'] !== '1',
    removeDirectoryWhenOrphaned: ownsDirectory,
  };
  try {
    const { running, port } = await spawnServer(config);
    return new ChildS3Server(config, port, running, ownsDirectory);
  } catch (err) {
    if (ownsDirectory) await fsp.rm(directory, { recursive: true, force: true });
    throw err;
  }
}
