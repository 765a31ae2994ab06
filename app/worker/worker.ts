/**
 * A mount worker: one process per mount, forked by the `sosmount` CLI or
 * started by the tray's supervisor. It takes one `mount` message (options,
 * and credentials from the keychain when the tray sends them: never argv or
 * environment), reports its state, and ends when the bucket is unmounted,
 * by an `unmount` message, SIGTERM/SIGINT or an external `umount`.
 */
import { runMount, workerLogger } from './run-mount.js';
import { parseToWorker, type FromWorker } from './protocol.js';

/** Set once the log exists: the crash handler writes the crash and what is queued before exiting. */
let logCrash: ((err: Error) => void) | undefined;

function sendToParent(message: FromWorker): void {
  // The CLI's background mode leaves once the bucket is mounted: a message
  // sent while its end of the channel closes fails with EPIPE, which without
  // a callback would be thrown at the process and end the mount.
  if (process.connected && process.send) process.send(message, undefined, undefined, () => {});
}

async function main(): Promise<void> {
  if (!process.send) {
    process.stderr.write('app/worker/worker.js is started by sosmount or the SOS Mount app, not by hand\n');
    process.exit(2);
  }
  process.title = 'sosmount-worker';
  const first = await new Promise<unknown>((resolve) => process.once('message', resolve));
  let msg;
  try {
    msg = parseToWorker(first);
  } catch (err) {
    sendToParent({ type: 'state', state: 'error', error: { code: 'internal', message: (err as Error).message } });
    process.exit(2);
  }
  if (msg.type !== 'mount') process.exit(0);
  const { options, credentials, detach } = msg;
  const { log, file, directory, flush, flushSync } = workerLogger(options, false);
  logCrash = (err) => {
    log.error('worker crashed', { error: err.stack ?? err.message });
    flushSync();
  };
  // The tray's supervisor cleans up after its workers itself; the CLI's
  // background workers have no parent left to do it.
  const { mount, ended } = await runMount(options, credentials, log, { send: sendToParent, watchdog: detach, watchdogLogFile: file, logDirectory: directory });
  if (mount) {
    process.on('message', (raw) => {
      try {
        const m = parseToWorker(raw);
        if (m.type === 'unmount') void mount.unmount({ abandonUploads: m.abandonUploads === true });
        if (m.type === 'clear-cache') {
          const cache = mount.dataCache;
          (cache ? cache.clear() : Promise.reject(new Error('this mount keeps no local copy'))).then(
            (freedBytes) => sendToParent({ type: 'cache-cleared', freedBytes }),
            (err: unknown) => sendToParent({ type: 'cache-cleared', freedBytes: 0, error: (err as Error).message }),
          );
        }
      } catch (err) {
        log.warn('bad message from parent', { error: (err as Error).message });
      }
    });
    process.on('disconnect', () => {
      if (!detach) void mount.unmount();
    });
  }
  const code = await ended;
  // The "unmounted" line and whatever came before it reach the disk before process.exit drops them.
  await flush();
  // Let the last state message leave before exiting.
  setTimeout(() => process.exit(code), 50).unref();
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(code), 50);
}

process.on('uncaughtException', (err) => {
  sendToParent({ type: 'state', state: 'error', error: { code: 'internal', message: `worker crashed: ${err.message}` } });
  process.stderr.write(`sosmount worker: ${err.stack ?? err.message}\n`);
  try {
    logCrash?.(err);
  } catch {
    // The exit below matters more than the log line.
  }
  process.exit(70);
});

void main();
