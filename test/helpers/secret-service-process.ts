/**
 * Child-process entry of the test Secret Service (forked by
 * ./secret-service.ts): a private D-Bus session bus and a GNOME Keyring
 * daemon on it, serving org.freedesktop.secrets with an unlocked login
 * keyring (empty password) in a temporary folder.
 *
 * It lives in its own process so that nothing outlives a test run: the
 * daemons are its children, and it ends them when told to (`close`
 * message, SIGTERM) or when its parent goes away (IPC disconnect), even if
 * the test process crashed.
 *
 * The bus has no service activation (its own config file lists no service
 * folders), so nothing on it can start a second, locked keyring or a
 * password prompter; the keyring is ready once its login collection shows
 * on the bus.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export type SecretServiceMessage =
  | { type: 'ready'; address: string }
  | { type: 'error'; message: string };

const READY_TIMEOUT_MS = 20_000;
const LOGIN_COLLECTION = '/org/freedesktop/secrets/collection/login';

const children: ChildProcess[] = [];
let root: string | undefined;

function send(message: SecretServiceMessage): void {
  process.send?.(message);
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopAll(): Promise<void> {
  // Keyring first, then the bus it is connected to.
  for (const child of children.slice().reverse()) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited(child);
    clearTimeout(timer);
  }
  if (root) await rm(root, { recursive: true, force: true });
}

let stopping: Promise<void> | undefined;
function shutdown(code: number): void {
  stopping ??= stopAll().finally(() => process.exit(code));
}

function dbusSend(env: NodeJS.ProcessEnv, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('dbus-send', ['--session', '--print-reply', ...args], { env, timeout: 5000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

async function waitForKeyring(env: NodeJS.ProcessEnv, keyring: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (keyring.exitCode !== null || keyring.signalCode !== null) throw new Error(`gnome-keyring-daemon exited (${keyring.exitCode ?? keyring.signalCode}) before it was ready`);
    // NameHasOwner asks the bus, so the check cannot start anything by itself.
    const owner = await dbusSend(env, ['--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.NameHasOwner', 'string:org.freedesktop.secrets']);
    if (owner?.includes('boolean true')) {
      const collections = await dbusSend(env, ['--dest=org.freedesktop.secrets', '/org/freedesktop/secrets', 'org.freedesktop.DBus.Properties.Get', 'string:org.freedesktop.Secret.Service', 'string:Collections']);
      if (collections?.includes(LOGIN_COLLECTION)) return;
    }
    if (Date.now() > deadline) throw new Error(`the keyring was not ready within ${READY_TIMEOUT_MS / 1000} s`);
    // Condition polling: the daemon announces readiness nowhere else in --foreground mode.
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  root = await mkdtemp(path.join(os.tmpdir(), 'sosmount-keyring-'));
  const home = path.join(root, 'home');
  const runtime = path.join(root, 'run');
  await mkdir(home, { recursive: true });
  await mkdir(runtime, { recursive: true, mode: 0o700 });
  const config = path.join(root, 'session.conf');
  await writeFile(config, `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${root}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: home,
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_RUNTIME_DIR: runtime,
    LANG: 'C',
  };

  const bus = spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address=1'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(bus);
  bus.stderr.resume();
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    bus.stdout.setEncoding('utf8');
    bus.stdout.on('data', (chunk: string) => {
      out += chunk;
      const line = out.split('\n');
      if (line.length > 1 && line[0]) resolve(line[0].trim());
    });
    bus.once('exit', (code) => reject(new Error(`dbus-daemon exited (${code}) before printing its address`)));
    bus.once('error', reject);
  });
  env['DBUS_SESSION_BUS_ADDRESS'] = address;

  // --unlock reads the login keyring's password from stdin: an empty line
  // creates it unlocked (an empty stream would not).
  const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--components=secrets', '--unlock'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
  children.push(keyring);
  keyring.stderr.resume();
  keyring.stdin.end('\n');
  await waitForKeyring(env, keyring);
  send({ type: 'ready', address });
}

process.on('disconnect', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('message', (m: unknown) => {
  if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'close') shutdown(0);
});

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  shutdown(1);
});
