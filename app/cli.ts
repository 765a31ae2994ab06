#!/usr/bin/env node
/**
 * `sosmount [OPTIONS] BUCKET DIRECTORY`: mount-s3's command line plus
 * `--zone`. Without --foreground it forks a worker (app/worker.ts), waits
 * until the bucket is mounted or the mount failed, and returns; with it,
 * the mount runs in this process and Ctrl-C unmounts.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseMountArgs, UsageError, type MountOptions } from './options.js';
import { createLogger, stderrSink } from './log.js';
import { runMount, workerLogger } from './worker/run-mount.js';
import type { FromWorker, ToWorker, WorkerError } from './worker/protocol.js';

/** How long the CLI waits for a worker to report the mount, mount-s3 style. */
const MOUNT_WAIT_MS = 60_000;

function printError(error: WorkerError): void {
  process.stderr.write(`sosmount: error: ${error.message}\n`);
}

async function foreground(options: MountOptions): Promise<number> {
  const { log, file, directory, flush } = workerLogger(options, true);
  const { mount, ended } = await runMount(options, undefined, log, {
    watchdog: true,
    watchdogLogFile: file,
    logDirectory: directory,
    send: (m) => {
      if (m.type === 'state' && m.state === 'error' && m.error) printError(m.error);
    },
  });
  if (mount) process.stderr.write(`bucket ${options.bucket} is mounted at ${options.mountPoint}\n`);
  const code = await ended;
  // main's caller exits shortly after this returns; queued log lines go out first.
  await flush();
  return code;
}

async function background(options: MountOptions): Promise<number> {
  const workerPath = fileURLToPath(new URL('./worker/worker.js', import.meta.url));
  const child = fork(workerPath, [], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    execArgv: [],
  });
  const request: ToWorker = { type: 'mount', options, detach: true };
  child.send(request);
  return new Promise<number>((done) => {
    let settled = false;
    const resolve = (code: number): void => {
      if (!settled) done(code);
      settled = true;
    };
    const timer = setTimeout(() => {
      printError({ code: 'internal', message: `the mount did not become ready within ${MOUNT_WAIT_MS / 1000} s` });
      child.kill('SIGTERM');
      resolve(1);
    }, MOUNT_WAIT_MS);
    child.on('message', (m: FromWorker) => {
      if (m.type !== 'state') return;
      if (m.state === 'mounted') {
        clearTimeout(timer);
        child.disconnect();
        child.unref();
        resolve(0);
      } else if (m.state === 'error') {
        clearTimeout(timer);
        if (m.error) printError(m.error);
        resolve(1);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (settled) return;
      printError({ code: 'worker-crashed', message: `the mount worker exited before the mount was ready (${signal ?? `exit code ${code}`})` });
      resolve(1);
    });
  });
}

export async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseMountArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sosmount: ${err.message}\nRun 'sosmount --help' for the list of options.\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.kind === 'help' || parsed.kind === 'version') {
    process.stdout.write(parsed.text.endsWith('\n') ? parsed.text : parsed.text + '\n');
    return 0;
  }
  return parsed.options.foreground ? foreground(parsed.options) : background(parsed.options);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // fuse-native's native session can keep the event loop alive after an
    // external umount; nothing is left to do once main has settled.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    createLogger(stderrSink).error('unexpected failure', { error: err instanceof Error ? err.stack : String(err) });
    process.exit(70);
  },
);
