#!/usr/bin/env node
// Renders the tray menu for the README (docs/tray-menu.png) from the real
// menu model (main/menu-model.ts) and its HTML picture (main/menu-picture.ts),
// with headless Chromium. Run after `npm run build`: node build/render-menu.mjs
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withPage } from './chromium.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { buildMenu } = await import(path.join(root, 'dist/main/menu-model.js'));
const { menuToHtml } = await import(path.join(root, 'dist/main/menu-picture.js'));

const mount = (id, name, bucket, extra = {}) => ({
  id, name, bucket, zone: 'ch-dk-2', endpointUrl: undefined, forcePathStyle: false, profile: 'exomount',
  mountPoint: `/home/ada/${name}`, prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, mountAtLogin: true, ...extra,
});

// A typical session: one bucket mounted, one receiving a copied folder,
// one whose zone cannot be reached right now, one not mounted.
const state = {
  mounts: [
    { config: mount('1', 'Photos', 'ada-photos'), status: { state: 'mounted', uploadsInProgress: 0 }, wanted: true },
    { config: mount('2', 'Backups', 'ada-backups'), status: { state: 'mounted', uploadsInProgress: 3 }, wanted: true },
    { config: mount('3', 'Archive', 'ada-archive', { zone: 'at-vie-1' }), status: { state: 'error', message: 'cannot reach https://sos-at-vie-1.exo.io: connect ETIMEDOUT', retryInMs: 8000 }, wanted: true },
    { config: mount('4', 'Datasets', 'ml-datasets', { mountAtLogin: false }), status: { state: 'unmounted' }, wanted: false },
  ],
  startAtLogin: true,
  warnings: [],
  quitting: undefined,
};

const icon = (await readFile(path.join(root, 'build', 'icon.svg'), 'utf8')).replace(/<!--[\s\S]*?-->/g, '');
const html = menuToHtml(buildMenu(state), { trayIconSvg: icon });
const out = path.join(root, 'docs', 'tray-menu.png');
await mkdir(path.dirname(out), { recursive: true });
await withPage(async (page) => {
  await page.setViewportSize({ width: 900, height: 600 });
  await page.setContent(html);
  const box = await page.locator('body').boundingBox();
  await page.screenshot({ path: out, omitBackground: true, clip: { x: 0, y: 0, width: Math.ceil(box.width), height: Math.ceil(box.height) } });
});
console.log(path.relative(root, out));
