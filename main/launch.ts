/**
 * What `npm start` runs under plain Node: starts the Electron binary on
 * this app (package.json "main": dist/main/index.js). Where Electron's
 * binary was never downloaded (CI, ELECTRON_SKIP_BINARY_DOWNLOAD=1) it says
 * so in one line, points to what works without it, and exits 1.
 *
 * It finds the binary the way the electron package does (its path.txt,
 * ELECTRON_OVERRIDE_DIST_PATH) without importing it: importing `electron`
 * is left to main/electron-adapter.ts alone.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const APP_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function electronBinary(env: NodeJS.ProcessEnv = process.env): { path: string | undefined; why: string } {
  let packageDir: string;
  try {
    packageDir = path.dirname(createRequire(import.meta.url).resolve('electron/package.json'));
  } catch {
    return { path: undefined, why: 'the electron package is not installed' };
  }
  const pathFile = path.join(packageDir, 'path.txt');
  const executable = existsSync(pathFile) ? readFileSync(pathFile, 'utf8').trim() : undefined;
  const override = env['ELECTRON_OVERRIDE_DIST_PATH'];
  const binary = override ? path.join(override, executable || 'electron') : executable ? path.join(packageDir, 'dist', executable) : undefined;
  if (binary === undefined || !existsSync(binary)) {
    return { path: undefined, why: `the Electron binary is not installed (${binary ?? path.join(packageDir, 'dist')} is missing)` };
  }
  return { path: binary, why: '' };
}

function main(): void {
  const electron = electronBinary();
  if (electron.path === undefined) {
    process.stderr.write(`sos-mount: ${electron.why}, so the tray app cannot start here; try \`npm run demo\` for a demo mount, or the \`sosmount\` CLI (\`npm link\`, then \`sosmount --help\`).\n`);
    process.exit(1);
  }
  // ELECTRON_RUN_AS_NODE would make the binary a plain Node instead of the app.
  const env = { ...process.env };
  delete env['ELECTRON_RUN_AS_NODE'];
  const child = spawn(electron.path, [APP_ROOT, ...process.argv.slice(2)], { stdio: 'inherit', env });
  // Ctrl-C in the terminal reaches Electron too (same process group); forward what is sent to us alone.
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) process.on(signal, () => child.kill(signal));
  child.on('error', (err) => {
    process.stderr.write(`sos-mount: cannot start Electron: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}

main();
