/**
 * A real Secret Service for tests (GNOME Keyring on a private D-Bus session
 * bus, see ./secret-service-process.ts), so that KeytarSecretStore is
 * tested against libsecret and a keyring, not a mock.
 *
 * Point keytar at it by setting DBUS_SESSION_BUS_ADDRESS (see {@link use})
 * before the first keychain call of the process: libsecret connects to the
 * session bus on first use.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SecretServiceMessage } from './secret-service-process.js';

const ENTRY = fileURLToPath(new URL('./secret-service-process.js', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

export interface TestSecretService {
  /** The bus address, for DBUS_SESSION_BUS_ADDRESS. */
  address: string;
  /** Sets DBUS_SESSION_BUS_ADDRESS in this process (keytar here uses this keyring); stop() restores it. */
  use(): void;
  stop(): Promise<void>;
}

export async function startSecretService(): Promise<TestSecretService> {
  const child: ChildProcess = fork(ENTRY, [], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`the test Secret Service was not ready within ${READY_TIMEOUT_MS / 1000} s: ${stderr}`));
    }, READY_TIMEOUT_MS);
    child.on('message', (m: SecretServiceMessage) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m.address);
      else reject(new Error(`the test Secret Service failed: ${m.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the test Secret Service exited (${code}) before it was ready: ${stderr}`));
    });
  });
  // Let a test process end even if a test forgot stop(): the child then cleans up on disconnect.
  child.unref();
  child.channel?.unref();
  const previous = process.env['DBUS_SESSION_BUS_ADDRESS'];
  let used = false;
  return {
    address,
    use() {
      used = true;
      process.env['DBUS_SESSION_BUS_ADDRESS'] = address;
    },
    async stop() {
      if (used) {
        if (previous === undefined) delete process.env['DBUS_SESSION_BUS_ADDRESS'];
        else process.env['DBUS_SESSION_BUS_ADDRESS'] = previous;
      }
      if (child.exitCode === null && child.signalCode === null) {
        child.ref();
        if (child.connected) child.send({ type: 'close' });
        else child.kill('SIGTERM');
      }
      await exited;
    },
  };
}
