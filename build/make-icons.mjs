#!/usr/bin/env node
// Renders every icon from build/icon.svg with headless Chromium:
//   build/icon.png            1024 px app icon (electron-builder: macOS icns, Linux)
//   build/icons/NxN.png       Linux hicolor sizes
//   build/tray/tray*.png      Linux tray (colour), 22 px and @2x
//   build/tray/trayTemplate*  macOS menu bar: black on transparent, folder only,
//                             drawn by macOS in the bar's colour (template image)
// Run: node build/make-icons.mjs (commit the PNGs; CI has no need to run it).
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withPage } from './chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const svg = await readFile(path.join(here, 'icon.svg'), 'utf8');

const FULL = '';
// The template keeps only the folder (with its bucket-shaped hole), in black.
const TEMPLATE = '#background, #bucket { display: none; } #folder { fill: #000; }';

const outputs = [
  { file: 'icon.png', size: 1024, css: FULL },
  ...[16, 24, 32, 48, 64, 128, 256, 512].map((n) => ({ file: `icons/${n}x${n}.png`, size: n, css: FULL })),
  { file: 'tray/tray.png', size: 22, css: FULL },
  { file: 'tray/tray@2x.png', size: 44, css: FULL },
  { file: 'tray/trayTemplate.png', size: 16, css: TEMPLATE },
  { file: 'tray/trayTemplate@2x.png', size: 32, css: TEMPLATE },
];

await withPage(async (page) => {
  for (const { file, size, css } of outputs) {
    const out = path.join(here, file);
    await mkdir(path.dirname(out), { recursive: true });
    await page.setViewportSize({ width: size, height: size });
    const sized = svg.replace(/width="512" height="512"/, `width="${size}" height="${size}"`);
    await page.setContent(`<!doctype html><html><head><style>html,body{margin:0;background:transparent}svg{display:block}${css}</style></head><body>${sized}</body></html>`);
    await page.screenshot({ path: out, omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    console.log(`${file} (${size} px)`);
  }
});
