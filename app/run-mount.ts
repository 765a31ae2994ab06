/**
 * Mounts and keeps one bucket mounted: the part of a worker that
 * `sosmount --foreground` also runs in-process.
 */
import { BucketMount, MountError } from './mount.js';
import { createLogger, defaultLogDirectory, fileSink, stderrSink, type Logger } from './log.js';
import type { MountOptions } from './options.js';
import type { StaticCredentials } from './s3/sdk-client.js';
import type { FromWorker, WorkerError } from './worker-protocol.js';

export function workerLogger(options: MountOptions, toStderr: boolean): Logger {
  const level = options.debug ? 'debug' : 'info';
  const base = { mount: options.mountPoint, bucket: options.bucket, pid: process.pid };
  if (options.noLog) return createLogger(() => {}, 'error');
  if (toStderr && !options.logDirectory) return createLogger(stderrSink, level, base);
  return createLogger(fileSink(options.logDirectory ?? defaultLogDirectory()).sink, level, base);
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
export async function runMount(options: MountOptions, credentials: StaticCredentials | undefined, log: Logger, cb: RunMountCallbacks): Promise<{ mount: BucketMount | undefined; ended: Promise<number> }> {
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

