/**
 * `npm start` and the Electron boundary, on a machine without the Electron
 * binary (CI): the launcher's one-line message, the launcher with a binary,
 * the rule that only the adapter loads electron, and the packaging config.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv, run, tempDir } from './helpers/processes.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.resolve(DIST, '..');
const LAUNCH = path.join(DIST, 'main', 'launch.js');

describe('npm start (main/launch.ts)', () => {
  test('without the Electron binary: one line pointing to npm run demo and the sosmount CLI, exit 1', async () => {
    const empty = await tempDir('no-electron');
    try {
      const r = await run(process.execPath, [LAUNCH], { env: cleanEnv(empty, { ELECTRON_OVERRIDE_DIST_PATH: empty }) });
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      const lines = r.stderr.split('\n').filter(Boolean);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] ?? '', /^sos-mount: the Electron binary is not installed \(.+ is missing\), so the tray app cannot start here; try `npm run demo` .*`sosmount` CLI/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  test('with a binary: starts it on the app folder with our arguments and exits with its code', async () => {
    const dir = await tempDir('fake-electron');
    try {
      const fake = path.join(dir, 'electron');
      await writeFile(fake, '#!/bin/sh\necho "electron $*"\n[ -z "$ELECTRON_RUN_AS_NODE" ] || echo "RUN_AS_NODE leaked"\nexit 7\n');
      await chmod(fake, 0o755);
      const r = await run(process.execPath, [LAUNCH, '--at-login'], { env: cleanEnv(dir, { ELECTRON_OVERRIDE_DIST_PATH: dir, ELECTRON_RUN_AS_NODE: '1' }) });
      assert.equal(r.code, 7);
      assert.equal(r.stdout, `electron ${ROOT} --at-login\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the Electron boundary', () => {
  test('only main/electron-adapter loads electron or electron-store at run time; app/ never does', async () => {
    const loads = /(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"](electron|electron-store)(?:\/[^'"]*)?['"]/;
    const offenders: string[] = [];
    for (const dir of ['main', 'app']) {
      for (const file of await readdir(path.join(DIST, dir), { recursive: true })) {
        if (!file.endsWith('.js') && !file.endsWith('.cjs')) continue;
        const text = await readFile(path.join(DIST, dir, file), 'utf8');
        if (loads.test(text)) offenders.push(`${dir}/${file}`);
      }
    }
    // The preload runs in the renderer's sandbox, where `electron` is its only bridge to main.
    assert.deepEqual(offenders.filter((f) => f !== 'main/preload.cjs'), ['main/electron-adapter.js']);
  });

  test('package.json "main" is the Electron entry, and the entry goes through the adapter', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { main: string; scripts: Record<string, string> };
    assert.equal(pkg.main, 'dist/main/index.js');
    assert.match(await readFile(path.join(DIST, 'main', 'index.js'), 'utf8'), /from '\.\/electron-adapter\.js'/);
    assert.match(pkg.scripts['start'] ?? '', /node dist\/main\/launch\.js$/);
  });
});

describe('packaging (electron-builder.yml)', () => {
  test('is valid electron-builder configuration: AppImage and deb with libfuse2, a macOS dmg, no Windows target', async () => {
    // electron-builder's own YAML parser and JSON schema, resolved from its package.
    const require = createRequire(createRequire(import.meta.url).resolve('app-builder-lib/package.json'));
    const yaml = require('js-yaml') as { load(text: string): unknown };
    const Ajv = require('ajv') as new (options: object) => { validate(schema: unknown, data: unknown): boolean; errors: unknown };
    const schema: unknown = JSON.parse(await readFile(require.resolve('app-builder-lib/scheme.json'), 'utf8'));
    const config = yaml.load(await readFile(path.join(ROOT, 'electron-builder.yml'), 'utf8')) as Record<string, Record<string, unknown>>;
    const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
    assert.ok(ajv.validate(schema, config), JSON.stringify(ajv.errors));
    assert.deepEqual(config['linux']?.['target'], ['AppImage', 'deb']);
    assert.ok((config['deb']?.['depends'] as string[]).some((d) => /^libfuse2\b/.test(d)));
    assert.deepEqual(config['mac']?.['target'], ['dmg']);
    assert.equal((config['mac']?.['extendInfo'] as Record<string, unknown>)['LSUIElement'], true);
    assert.equal(config['win'], undefined);
  });

  test('the icons it names exist, rendered from build/icon.svg', async () => {
    for (const file of ['icon.svg', 'icon.png', 'icons/512x512.png', 'icons/16x16.png', 'tray/tray.png', 'tray/tray@2x.png', 'tray/trayTemplate.png', 'tray/trayTemplate@2x.png']) {
      const bytes = await readFile(path.join(ROOT, 'build', file));
      if (file.endsWith('.png')) assert.equal(bytes.subarray(1, 4).toString('latin1'), 'PNG', file);
    }
  });
});
