/**
 * Screenshots of the settings window for the README, light and dark, at the
 * window's size (900x640): `npm run build && node dist/test/settings-window-screenshots.js [outdir]`.
 * The real page and handlers, as in the tests, with example mounts and
 * profiles (an in-memory keychain: nothing here needs a real one).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { IpcChannel } from '../main/ipc-contract.js';
import { MemorySecretStore } from '../main/secret-store.js';
import type { MountConfig } from '../main/model.js';
import { ROOT, launchBrowser, openSettingsPage, startStaticServer, type SettingsPage } from './helpers/settings-page.js';
import { tempDir } from './helpers/processes.js';

const outDir = path.resolve(process.argv[2] ?? path.join(ROOT, 'docs'));

async function call(ui: SettingsPage, channel: string, args: unknown[]): Promise<unknown> {
  const response = await ui.invoke(channel, args) as { ok: boolean; value?: unknown; error?: { message: string } };
  if (!response.ok) throw new Error(`${channel}: ${response.error?.message}`);
  return response.value;
}

async function main(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const work = await tempDir('screenshots');
  const browser = await launchBrowser();
  const site = await startStaticServer();
  const secrets = new MemorySecretStore();
  try {
    for (const scheme of ['light', 'dark'] as const) {
      const home = path.join(work, scheme, 'home', 'alex');
      const ui = await openSettingsPage(browser, site, { secrets, colorScheme: scheme, homeDir: home });
      await call(ui, IpcChannel.SaveProfile, [{ name: 'exoscale', accessKeyId: 'EXO5f3c2a8e91d04b7e6a1c', secret: 'example-secret', isNew: true }]);
      await call(ui, IpcChannel.SaveProfile, [{ name: 'minio-lab', accessKeyId: 'minioadmin', secret: 'example-secret', isNew: true }]);
      const mounts: Array<{ config: Partial<MountConfig>; status: Parameters<SettingsPage['statuses']['set']>[1] }> = [
        { config: { name: 'Photos', bucket: 'family-photos', zone: 'ch-gva-2', profile: 'exoscale', allowEdit: true, cacheEnabled: true, mountAtLogin: true }, status: { state: 'mounted', uploadsInProgress: 0, editing: true } },
        { config: { name: 'Backups', bucket: 'nightly-backups', zone: 'de-fra-1', profile: 'exoscale', prefix: 'laptop/', readOnly: true }, status: { state: 'unmounted' } },
        { config: { name: 'Datasets', bucket: 'ml-datasets', zone: 'ch-dk-2', profile: 'exoscale' }, status: { state: 'mounting', attempt: 2 } },
        { config: { name: 'Lab MinIO', bucket: 'scratch', endpointUrl: 'https://minio.lab.example.net', forcePathStyle: true, profile: 'minio-lab', allowDelete: true, allowOverwrite: true }, status: { state: 'error', message: 'Access denied', requestId: '17A3F9C2B4E8D610' } },
      ];
      for (const m of mounts) {
        const folder = path.join(home, 'Buckets', m.config.name!.replace(/\s+/g, '-'));
        await mkdir(folder, { recursive: true });
        const saved = await call(ui, IpcChannel.SaveMount, [{
          id: undefined, zone: undefined, endpointUrl: undefined, forcePathStyle: false, prefix: '', readOnly: false,
          allowDelete: false, allowOverwrite: false, allowEdit: false, cacheEnabled: false, cacheSizeMiB: 2048, mountAtLogin: false, mountPoint: folder, ...m.config,
        }]) as { saved: boolean; mount: MountConfig };
        ui.statuses.set(saved.mount.id, m.status);
        if (saved.mount.cacheEnabled) {
          // Something in the cache, so the space-used line has a figure to show.
          const blocks = path.join(ui.caches.cacheDirectory(saved.mount.id), 'v1');
          await mkdir(blocks, { recursive: true });
          await writeFile(path.join(blocks, 'block'), Buffer.alloc(312 * 1024 * 1024, 1));
        }
      }
      await ui.reload();
      await ui.page.screenshot({ path: path.join(outDir, `settings-${scheme}.png`) });

      // The editor of the MinIO mount, with a test result.
      await ui.page.getByRole('button', { name: 'Edit Lab MinIO' }).click();
      await ui.page.locator('#m-name').focus();
      await ui.page.screenshot({ path: path.join(outDir, `settings-editor-${scheme}.png`) });

      // The options of a mount in editing mode: delete and overwrite shown as implied.
      await ui.page.getByRole('button', { name: 'Back to the mounts' }).click();
      await ui.page.getByRole('button', { name: 'Edit Photos' }).click();
      await ui.page.locator('#m-at-login').scrollIntoViewIfNeeded();
      await ui.page.locator('#m-cache-usage', { hasText: 'Using' }).waitFor();
      await ui.page.screenshot({ path: path.join(outDir, `settings-options-${scheme}.png`) });

      // Its cache (the options shot above shows the space it takes): Clear Cache and what it freed.
      await ui.page.locator('#m-cache-usage', { hasText: 'Using' }).waitFor();
      await ui.page.getByRole('button', { name: 'Clear Cache' }).click();
      await ui.page.locator('#m-cache-usage', { hasText: 'Nothing stored yet' }).waitFor();
      await ui.page.locator('#m-clear-cache').focus();
      await ui.page.screenshot({ path: path.join(outDir, `settings-cache-${scheme}.png`) });

      await ui.page.getByRole('button', { name: 'Profiles' }).click();
      await ui.page.screenshot({ path: path.join(outDir, `settings-profiles-${scheme}.png`) });
      await ui.close();
    }
  } finally {
    await site.stop();
    await browser.close();
    await rm(work, { recursive: true, force: true });
  }
  console.log(`screenshots in ${outDir}`);
}

await main();
