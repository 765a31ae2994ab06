/**
 * Child processes for tests: the `sosmount` CLI, shell commands and single
 * file-system calls. Everything that touches a mount runs in a child, so no
 * test makes a synchronous call into a mount served by its own event loop.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../app/cli.js', import.meta.url));
const FS_OP = fileURLToPath(new URL('./fs-op.js', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** An environment without the developer's AWS settings, with HOME set. */
export function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && !k.startsWith('NODE_TEST') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  return { ...env, HOME: home, LANG: 'C', LC_ALL: 'C', ...extra };
}

export function run(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out after ${opts.timeoutMs ?? 60_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => { /* the child may exit without reading */ });
      child.stdin?.end(opts.input);
    }
  });
}

/** Quotes a word for a POSIX shell script. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sh(script: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('bash', ['-c', script], opts);
}

export function sosmount(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts);
}

/** Outcome of one fs call made in a child process: 'OK' or the errno code (EPERM, ...). */
export async function fsOp(op: string, ...args: string[]): Promise<string> {
  const r = await run(process.execPath, [FS_OP, op, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`fs-op ${op} crashed: ${r.stderr}`);
  return r.stdout.trim();
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `sosmount-${prefix}-`));
}

/** A HOME whose ~/.aws/credentials holds the given profiles, as the tutorial writes it. */
export async function awsHome(profiles: Record<string, { accessKeyId: string; secretAccessKey: string; region?: string }>): Promise<string> {
  const home = await tempDir('home');
  await mkdir(path.join(home, '.aws'));
  const lines: string[] = [];
  for (const [name, p] of Object.entries(profiles)) {
    lines.push(`[${name}]`, `aws_access_key_id = ${p.accessKeyId}`, `aws_secret_access_key = ${p.secretAccessKey}`, '');
  }
  await writeFile(path.join(home, '.aws', 'credentials'), lines.join('\n'));
  return home;
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function execQuiet(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve) => execFile(cmd, args, () => resolve()));
}
