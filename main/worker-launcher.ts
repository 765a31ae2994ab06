/**
 * How the supervisor starts a mount worker (app/worker.ts): one interface,
 * two implementations. Under plain Node (tests, tools) {@link NodeWorkerLauncher}
 * uses `child_process.fork`; in the app, the Electron adapter implements it
 * with `utilityProcess.fork`. Either way the worker
 * speaks app/worker/protocol.ts, and credentials travel only in its `mount`
 * message, never in argv or the environment.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ToWorker } from '../app/worker/protocol.js';

/** What a launcher reports about one worker. `exit` comes exactly once, last. */
export interface WorkerEvents {
  message(message: unknown): void;
  exit(code: number | null, signal: NodeJS.Signals | null): void;
  /** The worker's stderr (crash stacks; its log goes to its own file). */
  stderr?(text: string): void;
}

export interface WorkerHandle {
  readonly pid: number | undefined;
  /** False when the channel is gone (the worker is exiting). */
  send(message: ToWorker): boolean;
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
}

export interface WorkerLauncher {
  /** `name` labels the process (Electron's service name, logs). */
  launch(name: string, events: WorkerEvents): WorkerHandle;
}

export const WORKER_SCRIPT = fileURLToPath(new URL('../app/worker/worker.js', import.meta.url));

/**
 * The worker's environment: ours without what would change how a worker
 * finds credentials or runs (AWS_*: a tray mount uses the keychain only;
 * NODE_OPTIONS and the test runner's variables).
 */
export function workerEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('AWS_') || key.startsWith('NODE_TEST') || key === 'NODE_OPTIONS') continue;
    out[key] = value;
  }
  return out;
}

export class NodeWorkerLauncher implements WorkerLauncher {
  private readonly script: string;

  constructor(options: { script?: string } = {}) {
    this.script = options.script ?? WORKER_SCRIPT;
  }

  launch(_name: string, events: WorkerEvents): WorkerHandle {
    const child = fork(this.script, [], {
      // The parent's flags (--test, --inspect...) are not the worker's.
      execArgv: [],
      env: workerEnvironment(),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
    });
    let exited = false;
    const exit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (exited) return;
      exited = true;
      events.exit(code, signal);
    };
    child.on('message', (m) => events.message(m));
    child.on('exit', exit);
    // fork() reports a failure to start (ENOENT, EAGAIN) as 'error' without 'exit'.
    child.on('error', () => {
      if (child.exitCode === null && child.signalCode === null && child.pid === undefined) exit(null, null);
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => events.stderr?.(text));
    return {
      get pid() {
        return child.pid;
      },
      send: (message) => {
        if (!child.connected) return false;
        try {
          return child.send(message);
        } catch {
          return false;
        }
      },
      kill: (signal) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
    };
  }
}
