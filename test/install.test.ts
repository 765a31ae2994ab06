/**
 * `sosmount` as a package, as the README installs it: `npm pack` of a copy
 * of this checkout (its prepack builds dist there, so the suite's own dist is
 * left alone), `npm install -g` of the tarball into a temporary prefix under
 * npm's strict install-script policy with only the scripts the README names
 * allowed, then the installed command: --version, and a mount of a bucket of
 * the local S3 server, read from a child process. The install fetches the
 * dependencies from the npm registry (or npm's cache).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, readdir, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { execQuiet, run, tempDir, waitFor, type RunResult } from './helpers/processes.js';
import { isMountPoint } from '../app/worker/mount-point.js';
import { fuse3Unavailable } from '../app/fs/fuse3-session.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
/** Not copied: what the build and the install make, and the checkout's own history. */
const NOT_COPIED = new Set(['.git', 'node_modules', 'dist', 'release', path.join('native', 'fuse3', 'build')]);
const README_TEXT = 'read through an installed sosmount\n';

let server: TestS3Server;
let work: string;

before(async () => {
  server = await startS3Server({ buckets: ['demo'] });
  await server.client().send(new PutObjectCommand({ Bucket: 'demo', Key: 'README.txt', Body: README_TEXT }));
  work = await tempDir('install');
});

after(async () => {
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** What npm keeps of the outer `npm test`'s settings: the headers node-gyp builds against, npm's cache and registry. */
const KEPT_NPM_SETTINGS = new Set(['npm_config_nodedir', 'npm_config_cache', 'npm_config_registry']);

/**
 * This test's environment with its Node first on PATH (the installed
 * `sosmount` starts with `#!/usr/bin/env node`), without the developer's AWS
 * settings or the outer `npm test`'s prefix and package.
 */
function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('AWS_') || key.startsWith('NODE_TEST') || key === 'NODE_OPTIONS') continue;
    if (key.startsWith('npm_') && !KEPT_NPM_SETTINGS.has(key)) continue;
    env[key] = value;
  }
  env['PATH'] = `${path.dirname(process.execPath)}${path.delimiter}${env['PATH'] ?? ''}`;
  // As on CI. The package must not pull Electron in at all: checked after the install.
  env['ELECTRON_SKIP_BINARY_DOWNLOAD'] = '1';
  return { ...env, ...extra };
}

function ok(r: RunResult, what: string): RunResult {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

test('npm pack makes a package that npm install -g turns into a working sosmount, without Electron', { timeout: 300_000 }, async (t) => {
  const env = testEnv();

  // The checkout as a clean clone has it, with its installed dependencies (typescript for prepack).
  const checkout = path.join(work, 'checkout');
  await cp(ROOT, checkout, { recursive: true, filter: (src) => !NOT_COPIED.has(path.relative(ROOT, src)) });
  await symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
  const packed = path.join(work, 'packed');
  await mkdir(packed);
  ok(await run('npm', ['pack', '--pack-destination', packed], { cwd: checkout, env, timeoutMs: 180_000 }), 'npm pack');
  const tarballs = await readdir(packed);
  assert.deepEqual(tarballs, [`${PACKAGE.name}-${PACKAGE.version}.tgz`]);
  const tgz = path.join(packed, tarballs[0]!);

  const entries = ok(await run('tar', ['-tzf', tgz]), 'tar -t').stdout.split('\n').filter(Boolean).map((e) => e.replace(/^package\//, ''));
  for (const needed of ['package.json', 'README.md', 'dist/app/cli.js', 'dist/app/worker/worker.js',
    'native/fuse3/binding.gyp', 'native/fuse3/sosfuse3.c', 'native/fuse3/install.cjs', 'native/fuse3/index.cjs', 'native/fuse3/check-libfuse.cjs']) {
    assert.ok(entries.includes(needed), `the package holds ${needed}`);
  }
  const stray = entries.filter((e) => /^(dist\/test|node_modules|app|test|native\/fuse3\/build)\/|\.map$|\.ts$/.test(e));
  assert.deepEqual(stray, [], 'no tests, sources, maps, builds or dependencies in the package');

  // A stricter npm runs only the install scripts it is told to: the ones the README names.
  const prefix = path.join(work, 'prefix');
  await mkdir(path.join(prefix, 'lib'), { recursive: true });
  ok(await run('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--strict-allow-scripts',
    `--allow-scripts=${tgz},keytar,fuse-native`, tgz], { cwd: work, env, timeoutMs: 240_000 }), 'npm install -g');
  const installed = path.join(prefix, 'lib', 'node_modules', PACKAGE.name);
  await assert.rejects(stat(path.join(installed, 'node_modules', 'electron')), { code: 'ENOENT' }, 'Electron is not installed');
  const fuse3Here = fuse3Unavailable() === undefined;
  if (fuse3Here) await stat(path.join(installed, 'native', 'fuse3', 'build', 'Release', 'sosfuse3.node'));

  const sosmount = path.join(prefix, 'bin', 'sosmount');
  const version = ok(await run(sosmount, ['--version'], { env }), 'sosmount --version');
  assert.equal(version.stdout.trim(), `sosmount ${PACKAGE.version}`);

  const mnt = path.join(work, 'mnt');
  const logs = path.join(work, 'logs');
  await mkdir(mnt);
  t.after(async () => {
    if (await isMountPoint(mnt).catch(() => false)) await execQuiet('fusermount', ['-uz', mnt]);
  });
  const home = path.join(work, 'home');
  await mkdir(home);
  const mountEnv = testEnv({ HOME: home, AWS_ACCESS_KEY_ID: server.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey });
  ok(await run(sosmount, ['--endpoint-url', server.endpoint, '--force-path-style', '--log-directory', logs, 'demo', mnt], { env: mountEnv }),
    'sosmount (mount)');
  assert.ok(await isMountPoint(mnt), 'mounted when sosmount returns');
  assert.equal(ok(await run('cat', [path.join(mnt, 'README.txt')]), 'cat').stdout, README_TEXT);
  ok(await run('fusermount', ['-u', mnt]), 'fusermount -u');
  await waitFor('the unmount', async () => !(await isMountPoint(mnt)));

  // The installed package mounts with the binding its install built, where this checkout's builds here.
  const lines = (await Promise.all((await readdir(logs)).map((f) => readFile(path.join(logs, f), 'utf8')))).join('').split('\n').filter(Boolean);
  const mounted = lines.map((l) => JSON.parse(l) as { msg: string; binding?: string }).find((l) => l.msg === 'mounted');
  assert.equal(mounted?.binding, fuse3Here ? 'libfuse3' : 'libfuse2', `the worker's log: ${lines.join('\n')}`);
});
