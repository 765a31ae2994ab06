/**
 * Mounts and keeps one bucket mounted: the part of a worker that
 * `sosmount --foreground` also runs in-process.
 */
import { BucketMount, MountError } from './mount.js';
import { createLogger, defaultLogDirectory, LogFile, stderrSink, type Logger } from '../log.js';
import type { MountOptions } from '../options.js';
import type { StaticCredentials } from '../s3/sdk-client.js';
import type { FromWorker, WorkerError } from './protocol.js';
import { checkFoldersOutsideMountPoint } from './mount-point.js';
import { startWatchdog } from './watchdog.js';

export interface WorkerLog {
  log: Logger;
  /** The log file written, when logging to a file. */
  file: string | undefined;
  directory: string | undefined;
  /** Resolves once the lines logged so far are written; bounded, so exit never waits on a stuck disk for long. */
  flush(): Promise<void>;
  /** On a crash, just before exiting: writes what is queued, synchronously. */
  flushSync(): void;
}

const LOG_FLUSH_TIMEOUT_MS = 5_000;

export function workerLogger(options: MountOptions, toStderr: boolean): WorkerLog {
  const level = options.debug ? 'debug' : 'info';
  const base = { mount: options.mountPoint, bucket: options.bucket, pid: process.pid };
  const none = { file: undefined, directory: undefined, flush: () => Promise.resolve(), flushSync: () => {} };
  if (options.noLog) return { ...none, log: createLogger(() => {}, 'error') };
  // stderr is written synchronously, as before: it is a terminal or pipe, never the mount.
  if (toStderr && !options.logDirectory) return { ...none, log: createLogger(stderrSink, level, base) };
  const directory = options.logDirectory ?? defaultLogDirectory();
  const logFile = new LogFile(directory, {
    // The mount refuses such a folder with the reason (BucketMount.mount);
    // until then the file must not be created there either.
    mayOpen: async () => (await checkFoldersOutsideMountPoint(options.mountPoint, [{ what: 'log folder', folder: directory }])) === undefined,
  });
  return {
    log: createLogger(logFile.sink, level, base),
    file: logFile.file,
    directory,
    flush: () => logFile.flush(LOG_FLUSH_TIMEOUT_MS),
    flushSync: () => logFile.flushSync(),
  };
}

export function toWorkerError(err: unknown): WorkerError {
  if (err instanceof MountError) return err.toWorkerError();
  return { code: 'internal', message: err instanceof Error ? err.message : String(err) };
}

export interface RunMountCallbacks {
  send(message: FromWorker): void;
}

/**
 * Mounts and keeps the mount until it ends; resolves with the exit code.
 * Shared by the forked worker and `sosmount --foreground`.
 */
export async function runMount(options: MountOptions, credentials: StaticCredentials | undefined, log: Logger, cb: RunMountCallbacks & { watchdogLogFile?: string | undefined; watchdog: boolean; logDirectory?: string | undefined }): Promise<{ mount: BucketMount | undefined; ended: Promise<number> }> {
  // Started before the mount opens /dev/fuse: a child forked later would
  // inherit that descriptor and keep a dead worker's mount hanging instead
  // of failing with ENOTCONN.
  if (cb.watchdog) startWatchdog(process.pid, options.mountPoint, cb.watchdogLogFile);
  let mount: BucketMount;
  try {
    mount = await BucketMount.mount(options, credentials, log, {
      localFolders: cb.logDirectory === undefined ? [] : [{ what: 'log folder', folder: cb.logDirectory }],
      onState: (state, error) => cb.send({ type: 'state', state, error, mountPoint: options.mountPoint }),
      events: {
        onUploadsChanged: (inProgress) => cb.send({ type: 'uploads', inProgress }),
        onUploadFailed: (path, err) => cb.send({ type: 'upload-failed', path, message: err.message }),
        onConflict: (path, conflictPath) => cb.send({ type: 'conflict', path, conflictPath }),
        onRenameProgress: (p) => cb.send({ type: 'rename-progress', ...p }),
        onRecovered: (r) => cb.send({ type: 'recovered', ...r }),
      },
    });
  } catch (err) {
    const error = toWorkerError(err);
    log.error('mount failed', { code: error.code, error: error.message, requestId: error.requestId });
    cb.send({ type: 'state', state: 'error', error });
    return { mount: undefined, ended: Promise.resolve(1) };
  }
  const stop = (): void => { void mount.unmount(); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.once('SIGHUP', stop);
  return { mount, ended: mount.whenEnded().then(() => 0) };
}

