/**
 * Mounts and keeps one bucket mounted: the part of a worker that
 * `sosmount --foreground` also runs in-process.
 */
import { BucketMount, MountError } from './mount.js';
import { createLogger, defaultLogDirectory, fileSink, stderrSink, type Logger } from '../log.js';
import type { MountOptions } from '../options.js';
import type { StaticCredentials } from '../s3/sdk-client.js';
import type { FromWorker, WorkerError } from './protocol.js';
import { startWatchdog } from './watchdog.js';

export function workerLogger(options: MountOptions, toStderr: boolean): { log: Logger; file: string | undefined } {
  const level = options.debug ? 'debug' : 'info';
  const base = { mount: options.mountPoint, bucket: options.bucket, pid: process.pid };
  if (options.noLog) return { log: createLogger(() => {}, 'error'), file: undefined };
  if (toStderr && !options.logDirectory) return { log: createLogger(stderrSink, level, base), file: undefined };
  const { sink, file } = fileSink(options.logDirectory ?? defaultLogDirectory());
  return { log: createLogger(sink, level, base), file };
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
export async function runMount(options: MountOptions, credentials: StaticCredentials | undefined, log: Logger, cb: RunMountCallbacks & { watchdogLogFile?: string | undefined; watchdog: boolean }): Promise<{ mount: BucketMount | undefined; ended: Promise<number> }> {
  // Started before the mount opens /dev/fuse: a child forked later would
  // inherit that descriptor and keep a dead worker's mount hanging instead
  // of failing with ENOTCONN.
  if (cb.watchdog) startWatchdog(process.pid, options.mountPoint, cb.watchdogLogFile);
  let mount: BucketMount;
  try {
    mount = await BucketMount.mount(options, credentials, log, {
      onState: (state, error) => cb.send({ type: 'state', state, error, mountPoint: options.mountPoint }),
      events: {
        onUploadsChanged: (inProgress) => cb.send({ type: 'uploads', inProgress }),
        onUploadFailed: (path, err) => cb.send({ type: 'upload-failed', path, message: err.message }),
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

