/**
 * The settings window as a user meets it: the real page in headless
 * Chromium, the real preload, and behind it the real main-side handlers with
 * a settings file in a temp folder, a real keyring (a private GNOME Keyring
 * on a private D-Bus), a real local S3 server and, for drops, a real FUSE
 * mount made by `sosmount`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { IpcChannel, IpcEvent, type UploadProgress } from '../main/ipc-contract.js';
import { KeytarSecretStore } from '../main/secret-store.js';
import type { MountConfig } from '../main/model.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { startSecretService, type TestSecretService } from './helpers/secret-service.js';
import { cleanEnv, execQuiet, run, sosmount, tempDir, waitFor } from './helpers/processes.js';
import {
  dropFiles,
  launchBrowser,
  openSettingsPage,
  pageTextAndValues,
  startStaticServer,
  waitForText,
  type Browser,
  type PageGlobals,
  type SettingsPage,
  type StaticServer,
} from './helpers/settings-page.js';

const GOOD = { accessKeyId: 'EXOSETTINGS0000001', secretAccessKey: 'settings-secret-Xq81vR2pLm' };
const BUCKETS = ['backups', 'logs-2024', 'photos'];

let keyring: TestSecretService;
let server: TestS3Server;
let browser: Browser;
let site: StaticServer;
/** A keychain service of its own, so nothing here can touch a real `sos-mount` entry. */
const secrets = new KeytarSecretStore({ service: 'sos-mount-test' });
const open: SettingsPage[] = [];
const folders: string[] = [];

before(async () => {
  keyring = await startSecretService();
  keyring.use();
  [server, browser, site] = await Promise.all([
    startS3Server({ buckets: BUCKETS, credentials: [GOOD] }),
    launchBrowser(),
    startStaticServer(),
  ]);
});

after(async () => {
  for (const page of open.splice(0)) await page.close().catch(() => undefined);
  await browser?.close();
  await site?.stop();
  await server?.stop();
  await keyring?.stop();
  for (const dir of folders) await rm(dir, { recursive: true, force: true });
});

async function settingsPage(options: { credentialsFile?: string; homeDir?: string; progressIntervalMs?: number } = {}): Promise<SettingsPage> {
  const page = await openSettingsPage(browser, site, { secrets, ...options });
  open.push(page);
  return page;
}

async function emptyFolder(name = 'mnt'): Promise<string> {
  const work = await tempDir('settings');
  folders.push(work);
  const dir = path.join(work, name);
  await mkdir(dir);
  return dir;
}

/** A profile saved through main, as the Profiles pane would. */
async function seedProfile(ui: SettingsPage, name: string, credentials = GOOD): Promise<void> {
  const response = await ui.invoke(IpcChannel.SaveProfile, [{ name, accessKeyId: credentials.accessKeyId, secret: credentials.secretAccessKey, isNew: true }]);
  assert.deepEqual((response as { ok: boolean }).ok, true, JSON.stringify(response));
}

async function seedMount(ui: SettingsPage, mount: Partial<MountConfig> & { name: string; profile: string; mountPoint: string }): Promise<MountConfig> {
  const draft = {
    id: undefined, bucket: 'photos', zone: undefined, endpointUrl: server.endpoint, forcePathStyle: true, prefix: '',
    readOnly: false, allowDelete: false, allowOverwrite: false, allowEdit: false, cacheEnabled: false, cacheSizeMiB: 2048, mountAtLogin: false, ...mount,
  };
  const response = await ui.invoke(IpcChannel.SaveMount, [draft]) as { ok: true; value: { saved: true; mount: MountConfig } };
  assert.equal(response.ok && response.value.saved, true, JSON.stringify(response));
  await ui.reload();
  return response.value.mount;
}

function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

// ---------------------------------------------------------------------------

describe('mounts', () => {
  test('adding a mount end to end: custom endpoint, bucket picked from ListBuckets, folder chosen, saved, shown with live state', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    await ui.reload();
    const { page } = ui;
    const folder = await emptyFolder();

    await page.getByRole('button', { name: 'Add Mount…' }).click();
    const form = page.locator('#mount-form');
    await form.getByLabel('Name', { exact: true }).fill('Photos');
    await form.getByLabel('Profile', { exact: true }).selectOption('local');
    await form.getByRole('radio', { name: 'Custom endpoint' }).check();
    await form.getByLabel('Endpoint URL').fill(server.endpoint);
    await form.getByLabel(/Path-style addressing/).check();

    // The picker asks the server, with the profile's key from the keychain.
    await form.getByRole('button', { name: 'Choose a bucket' }).click();
    await waitForText(page, '#m-bucket-picker-title', 'Choose a bucket (3 buckets)');
    const offered = await page.locator('#m-bucket-picker-list button').allTextContents();
    assert.deepEqual(offered, BUCKETS);
    await page.locator('#m-bucket-picker-list button', { hasText: 'photos' }).click();
    assert.equal(await form.getByLabel('Bucket', { exact: true }).inputValue(), 'photos');
    assert.equal(await page.locator('#m-bucket-picker').isHidden(), true);

    ui.dialog.next = folder;
    await form.getByRole('button', { name: 'Choose a folder' }).click();
    await page.waitForFunction((f) => (globalThis as unknown as PageGlobals).document.getElementById('m-folder')?.value === f, folder);
    await form.getByLabel(/Prefix/).fill('2024/');
    await form.getByLabel(/Editing mode/).uncheck();
    await form.getByLabel(/Allow delete/).check();
    await form.getByLabel(/Mount at login/).check();
    await form.getByRole('button', { name: 'Add Mount', exact: true }).click();

    const row = page.locator('.mount-row', { hasText: 'Photos' });
    await row.waitFor();
    assert.match(await row.textContent() ?? '', /photos\/2024\/ · 127\.0\.0\.1:\d+ · /);
    assert.equal(await row.locator('.status').textContent(), 'Not mounted');

    // What was written to the settings file.
    const saved = JSON.parse(await readFile(ui.settingsFile, 'utf8')) as { mounts: MountConfig[] };
    assert.equal(saved.mounts.length, 1);
    const { id, ...rest } = saved.mounts[0]!;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(rest, {
      name: 'Photos', bucket: 'photos', endpointUrl: server.endpoint, forcePathStyle: true, profile: 'local',
      mountPoint: folder, prefix: '2024/', readOnly: false, allowDelete: true, allowOverwrite: false, allowEdit: false,
      cacheEnabled: true, cacheSizeMiB: 2048, mountAtLogin: true,
    });

    // Live state, as the supervisor reports it.
    ui.statuses.set(id, { state: 'mounting', attempt: 1 });
    await waitForText(page, `[data-mount-id="${id}"] .status`, 'Mounting…');
    ui.statuses.set(id, { state: 'mounted', uploadsInProgress: 2, editing: false });
    await waitForText(page, `[data-mount-id="${id}"] .status`, 'Mounted · uploading 2');
    ui.statuses.set(id, { state: 'error', message: 'Access denied', requestId: 'REQ-42' });
    await waitForText(page, `[data-mount-id="${id}"] .status`, 'Error');
    await waitForText(page, `[data-mount-id="${id}"] .row-error`, 'Access denied (request id REQ-42)');

    // Editing keeps the id and shows the saved values.
    ui.statuses.set(id, { state: 'unmounted' });
    await row.getByRole('button', { name: 'Edit Photos' }).click();
    assert.equal(await form.getByLabel('Bucket', { exact: true }).inputValue(), 'photos');
    assert.equal(await form.getByLabel(/Allow delete/).isChecked(), true);
    await form.getByLabel('Name', { exact: true }).fill('Photos 2024');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.locator('.mount-row', { hasText: 'Photos 2024' }).waitFor();
    assert.deepEqual(ui.settings.get().mounts.map((m) => [m.id, m.name]), [[id, 'Photos 2024']]);
  });

  test('a zone mount: the zone list comes from app/s3/zones.ts, a folder typed as ~/..., Escape cancels, Remove deletes it', async () => {
    const folder = await emptyFolder('Archive');
    const home = path.dirname(folder);
    const ui = await settingsPage({ homeDir: home });
    await seedProfile(ui, 'exo');
    await ui.reload();
    const { page } = ui;
    await page.getByRole('button', { name: 'Add Mount…' }).click();
    const zones = await page.locator('#m-zone option').evaluateAll((options) => options.map((o) => (o as unknown as { value: string }).value));
    assert.deepEqual(zones, ['ch-gva-2', 'ch-dk-2', 'de-fra-1', 'de-muc-1', 'at-vie-1', 'at-vie-2', 'bg-sof-1']);
    await page.keyboard.press('Escape');
    await page.locator('#mounts-list-view').waitFor();

    await page.getByRole('button', { name: 'Add Mount…' }).click();
    const form = page.locator('#mount-form');
    await form.getByLabel('Name', { exact: true }).fill('Archive');
    await form.getByLabel('Zone', { exact: true }).selectOption('de-fra-1');
    await form.getByLabel('Bucket', { exact: true }).fill('archive-bucket');
    await form.getByLabel(/Mount folder/).fill('~/Archive');
    // Read-only and editing mode (on for a new mount) exclude each other: the reason shows at once, beside editing mode.
    await form.getByLabel(/Read-only/).check();
    await waitForText(page, '#m-allow-edit-problem', 'A read-only mount cannot be in editing mode; turn one of them off');
    await page.getByRole('button', { name: 'Add Mount', exact: true }).click();
    await waitForText(page, '#m-message', 'Some fields need attention.');
    assert.deepEqual(ui.settings.get().mounts, []);
    await form.getByLabel(/Editing mode/).uncheck();
    await waitForText(page, '#m-allow-edit-problem', '');
    await form.getByLabel(/Read-only/).focus();
    await page.keyboard.press('Enter');
    const row = page.locator('.mount-row', { hasText: 'Archive' });
    await row.waitFor();
    assert.equal(await row.locator('.row-sub').textContent(), 'archive-bucket · Frankfurt (DE) · ~/Archive');
    const mount = ui.settings.get().mounts[0]!;
    assert.equal(mount.mountPoint, folder);
    assert.equal(mount.zone, 'de-fra-1');
    assert.equal(mount.endpointUrl, undefined);
    assert.equal(mount.readOnly, true);
    assert.equal(mount.allowEdit, false);

    // Removing is refused while mounted, then done once unmounted.
    ui.statuses.set(mount.id, { state: 'mounted', uploadsInProgress: 0, editing: false });
    await row.getByRole('button', { name: 'Edit Archive' }).click();
    await page.getByRole('button', { name: 'Remove Mount…' }).click();
    await page.locator('#m-remove-confirm').getByRole('button', { name: 'Remove' }).click();
    await waitForText(page, '#m-message', "'Archive' is mounted. Unmount it from the tray first.");
    assert.equal(ui.settings.get().mounts.length, 1);
    ui.statuses.set(mount.id, { state: 'unmounted' });
    await page.getByRole('button', { name: 'Remove Mount…' }).click();
    await page.locator('#m-remove-confirm').getByRole('button', { name: 'Remove' }).click();
    await page.locator('#mounts-empty').waitFor();
    assert.deepEqual(ui.settings.get().mounts, []);
  });
});

describe('keyboard and labels', () => {
  test('a mount can be added with the keyboard alone, and every control has a name', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    await ui.reload();
    const { page } = ui;
    const folder = await emptyFolder();
    const focused = (): Promise<string | undefined> => page.evaluate(() => {
      const active = (globalThis as unknown as PageGlobals).document.activeElement;
      return active?.id || active?.getAttribute('aria-label') || active?.textContent?.trim() || undefined;
    });
    const tab = async (expected: string): Promise<void> => {
      await page.keyboard.press('Tab');
      assert.equal(await focused(), expected);
    };

    await tab('nav-mounts');
    await tab('nav-profiles');
    await tab('add-mount');
    await page.keyboard.press('Enter');
    assert.equal(await focused(), 'm-name');
    await page.keyboard.type('Keyboard');
    await tab('m-profile');
    await tab('m-location-zone');
    await page.keyboard.press('ArrowRight'); // the radio group: Custom endpoint
    assert.equal(await focused(), 'm-location-custom');
    await tab('m-endpoint');
    await page.keyboard.type(server.endpoint);
    await tab('m-path-style');
    await page.keyboard.press('Space');
    await tab('m-bucket');
    await page.keyboard.type('photos');
    await tab('m-pick-bucket');
    await tab('m-prefix');
    await tab('m-test');
    await tab('m-folder');
    await page.keyboard.type(folder);
    await tab('m-choose-folder');
    await tab('m-read-only');
    await tab('m-allow-edit');
    // On for a new mount; it implies delete and overwrite, whose switches cannot be reached until it is off.
    await tab('m-at-login');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Space');
    await tab('m-allow-delete');
    await tab('m-allow-overwrite');
    await page.keyboard.press('Space');
    await tab('m-at-login');
    await tab('m-cache');
    await tab('m-cache-size');
    await tab('m-cache-unit');
    // A new mount has no cache yet: no space used, no Clear Cache.
    await tab('m-cancel');
    await tab('m-save');

    // Every visible control in the editor has an accessible name.
    const unnamed = await page.evaluate(() => {
      const { document } = globalThis as unknown as PageGlobals;
      return Array.from(document.querySelectorAll('#mount-form input, #mount-form select, #mount-form button, #profile-form input, .sidebar button'))
        .map((e) => e as unknown as PageElementLike)
        .filter((e) => (e.labels?.length ?? 0) === 0 && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby') && (e.textContent ?? '').trim() === '')
        .map((e) => e.id);
      interface PageElementLike { id: string; labels?: { length: number }; textContent: string | null; getAttribute(n: string): string | null }
    });
    assert.deepEqual(unnamed, []);

    await page.keyboard.press('Enter');
    await page.locator('.mount-row', { hasText: 'Keyboard' }).waitFor();
    const [mount] = ui.settings.get().mounts;
    assert.deepEqual(
      [mount?.name, mount?.endpointUrl, mount?.forcePathStyle, mount?.bucket, mount?.mountPoint, mount?.allowOverwrite, mount?.allowDelete, mount?.allowEdit],
      ['Keyboard', server.endpoint, true, 'photos', folder, true, false, false],
    );
    // Focus goes back to the list, on the button that opened the editor.
    assert.equal(await focused(), 'add-mount');
  });
});

describe('validation as you type', () => {
  test('each field shows its reason next to it, and clears it once fixed', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    const taken = await emptyFolder('taken');
    await seedMount(ui, { name: 'Photos', profile: 'local', mountPoint: taken });
    const { page } = ui;
    const work = path.dirname(await emptyFolder('spare'));
    const file = path.join(work, 'a-file');
    await writeFile(file, 'x');
    const full = path.join(work, 'full');
    await mkdir(full);
    await writeFile(path.join(full, 'inside.txt'), 'x');
    const empty = await emptyFolder('free');

    await page.getByRole('button', { name: 'Add Mount…' }).click();
    const form = page.locator('#mount-form');

    /** Types `value` into the field and waits for `expected` beside it. */
    async function check(label: string | RegExp, value: string, problemId: string, expected: string): Promise<void> {
      const input = typeof label === 'string' ? form.getByLabel(label, { exact: true }) : form.getByLabel(label);
      await input.fill(value);
      await waitForText(page, `#${problemId}`, expected);
      if (expected !== '') {
        assert.equal(await input.getAttribute('aria-invalid'), 'true');
        // The reason is the field's accessible description.
        assert.equal(await input.getAttribute('aria-describedby'), problemId);
      } else {
        assert.equal(await input.getAttribute('aria-invalid'), null);
      }
    }

    // Name
    await check('Name', 'x', 'm-name-problem', '');
    await check('Name', '', 'm-name-problem', 'Give the mount a name');
    await check('Name', 'photos', 'm-name-problem', "Another mount is already named 'photos'");
    await check('Name', 'Holidays', 'm-name-problem', '');

    // Bucket: the CLI's rules (app/options.ts bucketNameProblem)
    await check('Bucket', 'ab', 'm-bucket-problem', "'ab' must be 3 to 63 characters long");
    await check('Bucket', 'My_Bucket', 'm-bucket-problem', "'My_Bucket' may contain only lowercase letters, digits, dots and hyphens");
    await check('Bucket', '-photos', 'm-bucket-problem', "'-photos' must start and end with a letter or digit");
    await check('Bucket', 'a..b', 'm-bucket-problem', "'a..b' must not contain two dots in a row");
    await check('Bucket', '192.168.1.10', 'm-bucket-problem', "'192.168.1.10' must not be an IP address");
    await check('Bucket', 's3://photos/2024', 'm-bucket-problem', 'Give the bare bucket name; put a folder inside it under Prefix');
    await check('Bucket', '', 'm-bucket-problem', 'Enter a bucket name, or choose one');
    await check('Bucket', 'holidays-2024', 'm-bucket-problem', '');

    // Endpoint URL (custom endpoint)
    await form.getByRole('radio', { name: 'Custom endpoint' }).check();
    await check('Endpoint URL', 'not a url', 'm-endpoint-problem', "'not a url' is not a URL (expected e.g. https://s3.example.com)");
    await check('Endpoint URL', 'ftp://files.example.com', 'm-endpoint-problem', "'ftp://files.example.com' must start with https:// or http://");
    await check('Endpoint URL', 'https://user:pw@s3.example.com', 'm-endpoint-problem', "'https://user:pw@s3.example.com' must not contain a user name or password");
    await check('Endpoint URL', 'https://s3.example.com/?x=1', 'm-endpoint-problem', "'https://s3.example.com/?x=1' must not have a query or fragment");
    await check('Endpoint URL', '', 'm-endpoint-problem', 'Enter the endpoint URL, e.g. https://s3.example.com');
    await check('Endpoint URL', 'https://s3.example.com', 'm-endpoint-problem', '');
    await form.getByRole('radio', { name: 'Exoscale zone' }).check();

    // Prefix
    await check(/Prefix/, 'photos', 'm-prefix-problem', "'photos' must end in '/'");
    await check(/Prefix/, '/photos/', 'm-prefix-problem', "'/photos/' must not start with '/'");
    await check(/Prefix/, 'photos/', 'm-prefix-problem', '');

    // Mount folder: absolute, existing, a folder, empty, not another mount's
    await check(/Mount folder/, 'relative/dir', 'm-folder-problem', "'relative/dir' must be an absolute path");
    await check(/Mount folder/, path.join(work, 'missing'), 'm-folder-problem', 'The folder does not exist');
    await check(/Mount folder/, file, 'm-folder-problem', 'This is a file, not a folder');
    await check(/Mount folder/, full, 'm-folder-problem', 'The folder is not empty (1 item); a mount needs an empty folder');
    await check(/Mount folder/, taken, 'm-folder-problem', `The folder overlaps the folder of mount 'Photos' (${taken})`);
    await check(/Mount folder/, empty, 'm-folder-problem', '');

    // Options that contradict each other
    await form.getByLabel(/Read-only/).check();
    await waitForText(page, '#m-allow-edit-problem', 'A read-only mount cannot be in editing mode; turn one of them off');
    assert.equal(await form.getByLabel(/Editing mode/).getAttribute('aria-invalid'), 'true');
    await form.getByLabel(/Editing mode/).uncheck();
    await waitForText(page, '#m-allow-edit-problem', '');
    await form.getByLabel(/Allow delete/).check();
    await waitForText(page, '#m-allow-delete-problem', 'A read-only mount cannot allow deletes or overwrites');
    await form.getByLabel(/Allow delete/).uncheck();
    await waitForText(page, '#m-allow-delete-problem', '');

    // Now valid: it saves.
    await form.getByRole('button', { name: 'Add Mount', exact: true }).click();
    await page.locator('.mount-row', { hasText: 'Holidays' }).waitFor();
    assert.deepEqual(ui.settings.get().mounts.map((m) => m.name), ['Photos', 'Holidays']);
  });

  test('editing mode: on for a new mount, implying delete and overwrite (shown on, not changeable); the user\'s own choices come back when it is turned off', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    const oldFolder = await emptyFolder('old');
    const old = await seedMount(ui, { name: 'Old', profile: 'local', mountPoint: oldFolder, allowOverwrite: true });
    const { page } = ui;
    const form = page.locator('#mount-form');
    const editing = form.getByLabel(/Editing mode/);
    const del = form.getByLabel(/Allow delete/);
    const over = form.getByLabel(/Allow overwrite/);
    const switches = async (): Promise<string[]> => Promise.all([editing, del, over].map(async (s) => `${await s.isChecked() ? 'on' : 'off'}${await s.isDisabled() ? ' (implied)' : ''}`));

    // A mount saved without editing mode shows it off, with its own flags.
    await page.getByRole('button', { name: 'Edit Old' }).click();
    assert.deepEqual(await switches(), ['off', 'off', 'on']);
    await page.getByRole('button', { name: 'Cancel' }).click();

    // A new mount starts in editing mode.
    await page.getByRole('button', { name: 'Add Mount…' }).click();
    assert.deepEqual(await switches(), ['on', 'on (implied)', 'on (implied)']);
    assert.equal(await form.locator('label[for="m-allow-edit"] .hint').textContent(), 'Programs can save, rename and edit files in place; changes wait on this computer, then upload');
    await form.getByLabel('Name', { exact: true }).fill('Notes');
    await form.getByLabel('Zone', { exact: true }).selectOption('ch-gva-2');
    await form.getByLabel('Bucket', { exact: true }).fill('notes-bucket');
    await form.getByLabel(/Mount folder/).fill(await emptyFolder('notes'));
    await form.getByRole('button', { name: 'Add Mount', exact: true }).click();
    await page.locator('.mount-row', { hasText: 'Notes' }).waitFor();
    const saved = ui.settings.get().mounts.find((m) => m.name === 'Notes');
    // Implied flags are not written as the user's: turning editing mode off later gives back a mount that neither deletes nor overwrites.
    assert.deepEqual([saved?.allowEdit, saved?.allowDelete, saved?.allowOverwrite], [true, false, false]);

    await page.getByRole('button', { name: 'Edit Notes' }).click();
    assert.deepEqual(await switches(), ['on', 'on (implied)', 'on (implied)']);
    await editing.uncheck();
    assert.deepEqual(await switches(), ['off', 'off', 'off']);
    await del.check();
    await editing.check();
    assert.deepEqual(await switches(), ['on', 'on (implied)', 'on (implied)']);
    await editing.uncheck();
    assert.deepEqual(await switches(), ['off', 'on', 'off'], 'the own choice made before editing mode went back on');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.locator('#mounts-list-view').waitFor();
    const edited = ui.settings.get().mounts.find((m) => m.name === 'Notes');
    assert.deepEqual([edited?.allowEdit, edited?.allowDelete, edited?.allowOverwrite], [false, true, false]);
    assert.equal(ui.settings.get().mounts.find((m) => m.id === old.id)?.allowEdit, false);
  });

  test('an untouched form shows no reasons until Save, then every one', async () => {
    const ui = await settingsPage();
    const { page } = ui;
    await page.getByRole('button', { name: 'Add Mount…' }).click();
    assert.equal(await page.locator('#mount-form .problem:not(:empty)').count(), 0);
    await page.getByRole('button', { name: 'Add Mount', exact: true }).click();
    await waitForText(page, '#m-message', 'Some fields need attention.');
    await waitForText(page, '#m-name-problem', 'Give the mount a name');
    await waitForText(page, '#m-bucket-problem', 'Enter a bucket name, or choose one');
    await waitForText(page, '#m-profile-problem', 'Choose a profile (its secret is in the keychain)');
    await waitForText(page, '#m-folder-problem', 'Choose a folder to mount into');
    // Focus goes to the first field that needs attention.
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id), 'm-name');
    assert.deepEqual(ui.settings.get().mounts, []);
  });
});

describe('the local disk cache', () => {
  test('on for a new mount at 2 GiB, off for one saved before; the size is checked as you type, in MiB or GiB, and stored in MiB', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    await seedMount(ui, { name: 'Old', profile: 'local', mountPoint: await emptyFolder('old') });
    const { page } = ui;
    const form = page.locator('#mount-form');
    const cache = form.getByLabel(/Keep a local copy of what is read/);
    const size = form.getByRole('spinbutton', { name: /^Cache size/ });
    const unit = form.getByLabel('Cache size unit');
    const shown = async (): Promise<string> => `${await cache.isChecked() ? 'on' : 'off'} ${await size.inputValue()} ${await unit.inputValue()}${await size.isDisabled() ? ' (disabled)' : ''}`;

    // Saved before the cache existed: off, its size kept greyed for when it is turned on.
    await page.getByRole('button', { name: 'Edit Old' }).click();
    assert.equal(await shown(), 'off 2 GiB (disabled)');
    assert.equal(await form.locator('label[for="m-cache"] .hint').textContent(), "Files open from this computer's disk the next time, while unchanged in the bucket");
    await page.getByRole('button', { name: 'Cancel' }).click();

    await page.getByRole('button', { name: 'Add Mount…' }).click();
    assert.equal(await shown(), 'on 2 GiB');
    assert.equal(await page.locator('#m-cache-usage-field').isHidden(), true, 'a new mount has no cache to measure');
    await form.getByLabel('Name', { exact: true }).fill('Cached');
    await form.getByLabel('Zone', { exact: true }).selectOption('ch-gva-2');
    await form.getByLabel('Bucket', { exact: true }).fill('cached-bucket');
    await form.getByLabel(/Mount folder/).fill(await emptyFolder('cached'));

    /** Sets the size and waits for `expected` beside it. */
    async function check(value: string, unitName: 'MiB' | 'GiB', expected: string): Promise<void> {
      await unit.selectOption(unitName);
      await size.fill(value);
      await waitForText(page, '#m-cache-size-problem', expected);
      assert.equal(await size.getAttribute('aria-invalid'), expected === '' ? null : 'true');
    }
    await check('3', 'MiB', 'The cache needs at least 4 MiB');
    await check('4.5', 'MiB', 'The cache size must be a whole number of MiB (4.5 is not)');
    await check('', 'MiB', 'Enter the cache size, e.g. 2 GiB');
    await check('2000', 'GiB', 'The cache can be at most 1024 GiB (1 TiB)');
    await check('4', 'MiB', '');
    await check('0.001', 'GiB', 'The cache needs at least 4 MiB');
    // A size not in use is not a problem: turning the cache off clears the reason, turning it on shows it again.
    await cache.uncheck();
    await waitForText(page, '#m-cache-size-problem', '');
    assert.equal(await size.isDisabled(), true);
    await cache.check();
    await waitForText(page, '#m-cache-size-problem', 'The cache needs at least 4 MiB');
    await check('1.5', 'GiB', '');
    await form.getByRole('button', { name: 'Add Mount', exact: true }).click();
    await page.locator('.mount-row', { hasText: 'Cached' }).waitFor();
    const saved = ui.settings.get().mounts.find((m) => m.name === 'Cached');
    assert.deepEqual([saved?.cacheEnabled, saved?.cacheSizeMiB], [true, 1536]);

    // Turned off with the size field emptied: saved off, with a size that can be stored (the default).
    await page.getByRole('button', { name: 'Edit Cached' }).click();
    assert.equal(await shown(), 'on 1536 MiB');
    await size.fill('');
    await cache.uncheck();
    await form.getByRole('button', { name: 'Save' }).click();
    await page.locator('#mounts-list-view').waitFor();
    const off = ui.settings.get().mounts.find((m) => m.name === 'Cached');
    assert.deepEqual([off?.cacheEnabled, off?.cacheSizeMiB], [false, 2048]);
  });

  test('the space used is shown, and Clear Cache empties the cache and says what it freed, or why it could not', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'local');
    const mount = await seedMount(ui, { name: 'Photos', profile: 'local', mountPoint: await emptyFolder(), cacheEnabled: true, cacheSizeMiB: 2048 });
    const { page } = ui;
    const dir = ui.caches.cacheDirectory(mount.id);
    await mkdir(path.join(dir, 'v1', 'ab'), { recursive: true });
    await writeFile(path.join(dir, 'v1', 'ab', 'block-0'), randomBytes(5 * 1024 * 1024));

    await page.getByRole('button', { name: 'Edit Photos' }).click();
    await waitForText(page, '#m-cache-usage', 'Using 5 MiB of 2 GiB');
    assert.equal(await page.locator('#m-cache-usage').getAttribute('title'), dir);
    // The line follows the size as it is typed.
    await page.locator('#mount-form').getByRole('spinbutton', { name: /^Cache size/ }).fill('3');
    await waitForText(page, '#m-cache-usage', 'Using 5 MiB of 3 GiB');

    await page.getByRole('button', { name: 'Clear Cache' }).click();
    await waitForText(page, '#m-cache-result', 'Cleared 5 MiB.');
    assert.equal(await page.locator('#m-cache-result').getAttribute('data-tone'), 'ok');
    await waitForText(page, '#m-cache-usage', 'Nothing stored yet');
    assert.deepEqual(ui.caches.cleared, [mount.id]);
    assert.deepEqual(await readdir(dir), []);

    await page.getByRole('button', { name: 'Clear Cache' }).click();
    await waitForText(page, '#m-cache-result', 'The cache was already empty.');

    // A process holding the folder (here: this one) keeps it: the reason shows, nothing is removed.
    await mkdir(path.join(dir, 'v1'), { recursive: true });
    await writeFile(path.join(dir, 'v1', 'block-1'), randomBytes(64 * 1024));
    await writeFile(path.join(dir, 'lock'), `${process.pid}\n`);
    await page.getByRole('button', { name: 'Clear Cache' }).click();
    await waitForText(page, '#m-cache-result', `The cache folder is in use by process ${process.pid} (a mount started outside this app?)`);
    assert.equal(await page.locator('#m-cache-result').getAttribute('data-tone'), 'bad');
    assert.deepEqual(await readdir(path.join(dir, 'v1')), ['block-1']);
    await waitForText(page, '#m-cache-usage', /^Using \d+ KiB of 3 GiB$/);

    // The same through main, for a mount that does not exist.
    const missing = await ui.invoke(IpcChannel.ClearCache, ['no-such-mount']);
    assert.deepEqual(missing, { ok: false, error: { code: 'NotFound', message: 'That mount no longer exists; it may have been removed elsewhere.' } });
    assert.deepEqual(ui.caches.cleared, [mount.id, mount.id, mount.id]);

    // Removing the mount removes its cache, unless another process still uses the folder.
    await page.getByRole('button', { name: 'Remove Mount…' }).click();
    await page.locator('#m-remove-confirm').getByRole('button', { name: 'Remove' }).click();
    await page.locator('#mounts-empty').waitFor();
    assert.deepEqual(await readdir(path.join(dir, 'v1')), ['block-1'], 'a folder in use is left alone');
    const other = await seedMount(ui, { name: 'Other', profile: 'local', mountPoint: await emptyFolder('other'), cacheEnabled: true });
    const otherDir = ui.caches.cacheDirectory(other.id);
    await mkdir(path.join(otherDir, 'v1'), { recursive: true });
    await writeFile(path.join(otherDir, 'v1', 'block-0'), randomBytes(4096));
    assert.deepEqual(await ui.invoke(IpcChannel.RemoveMount, [other.id]), { ok: true, value: undefined });
    await assert.rejects(readdir(otherDir), /ENOENT/);
  });
});

describe('profiles and the keychain', () => {
  test('a secret goes to the keychain and never into the DOM, the settings file, the console or an answer from main', async () => {
    const ui = await settingsPage();
    const { page } = ui;
    const secret = `typed-secret-${randomBytes(8).toString('hex')}`;
    const replacement = `replaced-secret-${randomBytes(8).toString('hex')}`;
    await page.getByRole('button', { name: 'Profiles' }).click();
    const form = page.locator('#profile-form');

    // A new profile needs a secret.
    await form.getByLabel('Name', { exact: true }).fill('exo');
    await form.getByLabel('Access key ID').fill('EXOKEY123');
    await form.getByRole('button', { name: 'Add Profile' }).click();
    await waitForText(page, '#p-secret-problem', 'Enter the API secret');

    await form.getByLabel('Secret').fill(secret);
    await form.getByRole('button', { name: 'Add Profile' }).click();
    const row = page.locator('.profile-row', { hasText: 'exo' });
    await row.waitFor();
    await waitForText(page, '#profiles-message', "Added profile 'exo'. Its secret is in the keychain.");
    assert.equal(await row.locator('.keychain').textContent(), 'Stored in keychain');
    assert.equal(await secrets.get('exo'), secret);

    // Replace: the form shows "Stored in keychain" and a Replace button, never the secret.
    await row.getByRole('button', { name: 'Edit profile exo' }).click();
    assert.equal(await page.locator('#p-secret-stored').isVisible(), true);
    assert.equal(await page.locator('#p-secret').isHidden(), true);
    assert.equal(await form.getByLabel('Access key ID').inputValue(), 'EXOKEY123');
    await form.getByRole('button', { name: 'Replace…' }).click();
    await form.getByLabel('Secret').fill(replacement);
    await form.getByRole('button', { name: 'Save' }).click();
    await waitForText(page, '#profiles-message', "Saved profile 'exo'.");
    assert.equal(await secrets.get('exo'), replacement);

    // Editing the key id alone keeps the stored secret.
    await row.getByRole('button', { name: 'Edit profile exo' }).click();
    await form.getByLabel('Access key ID').fill('EXOKEY456');
    await form.getByRole('button', { name: 'Save' }).click();
    await waitForText(page, '#profiles-message', "Saved profile 'exo'.");
    assert.equal(await secrets.get('exo'), replacement);
    assert.deepEqual(ui.settings.get().profiles, [{ name: 'exo', accessKeyId: 'EXOKEY456' }]);

    const dom = await pageTextAndValues(page);
    const file = await readFile(ui.settingsFile, 'utf8');
    for (const s of [secret, replacement]) {
      assert.equal(dom.includes(s), false, 'secret in the DOM');
      assert.equal(file.includes(s), false, 'secret in the settings file');
      assert.equal(ui.console.some((line) => line.includes(s)), false, 'secret in console output');
      assert.equal(ui.responses.some((r) => r.includes(s)), false, 'secret in an answer from main');
      assert.equal(ui.events.some((e) => JSON.stringify(e).includes(s)), false, 'secret in an event');
    }
    assert.ok(ui.responses.length > 5);
  });

  test('removing a profile removes its keychain entry, and is refused while a mount uses it', async () => {
    const ui = await settingsPage();
    await seedProfile(ui, 'shared');
    await seedProfile(ui, 'spare');
    const folder = await emptyFolder();
    const mount = await seedMount(ui, { name: 'Photos', profile: 'shared', mountPoint: folder });
    const { page } = ui;
    await page.getByRole('button', { name: 'Profiles' }).click();
    const row = page.locator('.profile-row', { hasText: 'shared' });
    assert.equal(await row.locator('.row-note').textContent(), 'Used by Photos');

    await row.getByRole('button', { name: 'Remove profile shared' }).click();
    await row.getByRole('button', { name: 'Remove', exact: true }).click();
    await waitForText(page, '#profiles-message', "Profile 'shared' is used by mount 'Photos'. Change or remove that mount first.");
    assert.equal(await secrets.get('shared'), GOOD.secretAccessKey);
    assert.equal(ui.settings.get().profiles.length, 2);

    // Keyboard only: Keep puts the buttons back and focus on Remove.
    await row.getByRole('button', { name: 'Remove profile shared' }).click();
    await page.keyboard.press('Enter'); // focus is on Keep
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.getAttribute('aria-label')), 'Remove profile shared');

    await ui.invoke(IpcChannel.RemoveMount, [mount.id]);
    await ui.reload();
    await page.getByRole('button', { name: 'Profiles' }).click();
    await row.getByRole('button', { name: 'Remove profile shared' }).click();
    await row.getByRole('button', { name: 'Remove', exact: true }).click();
    await waitForText(page, '#profiles-message', "Removed profile 'shared' and its keychain entry.");
    assert.equal(await secrets.get('shared'), undefined);
    assert.deepEqual(ui.settings.get().profiles.map((p) => p.name), ['spare']);
    await secrets.delete('spare');
  });

  test('import from ~/.aws/credentials: key pairs become profiles with their secrets in the keychain; the rest is skipped with a reason', async () => {
    const home = await tempDir('home');
    folders.push(home);
    await mkdir(path.join(home, '.aws'));
    const file = path.join(home, '.aws', 'credentials');
    const imported = { default: 'default-secret-Zk18', exomount: 'exomount-secret-Qp27' };
    await writeFile(file, [
      '# written by the aws cli',
      '[default]',
      'aws_access_key_id = AKIADEFAULT',
      `aws_secret_access_key = ${imported.default}`,
      '',
      '[exomount]',
      'aws_access_key_id=EXO1234567890',
      `aws_secret_access_key=${imported.exomount}`,
      'region = ch-dk-2',
      '',
      '[session]',
      'aws_access_key_id = ASIATEMP',
      'aws_secret_access_key = temp-secret',
      'aws_session_token = token',
      '',
      '[sso-only]',
      'sso_session = corp',
      '',
      '[existing]',
      'aws_access_key_id = AKIAOTHER',
      'aws_secret_access_key = other-secret',
      '',
    ].join('\n'));
    const ui = await settingsPage({ credentialsFile: file, homeDir: home });
    await seedProfile(ui, 'existing');
    await ui.reload();
    const { page } = ui;
    await page.getByRole('button', { name: 'Profiles' }).click();
    await page.getByRole('button', { name: 'Import from ~/.aws/credentials' }).click();
    await waitForText(page, '#profiles-message', [
      'Imported 2 profiles from ~/.aws/credentials: default, exomount.',
      'Skipped session: temporary credentials (aws_session_token) expire; not imported.',
      'Skipped sso-only: no aws_access_key_id and aws_secret_access_key.',
      'Skipped existing: a profile with this name exists.',
    ].join(' '));
    const names = await page.locator('.profile-row .row-title').allTextContents();
    assert.deepEqual(names, ['existing', 'default', 'exomount']);
    assert.deepEqual(ui.settings.get().profiles.find((p) => p.name === 'exomount'), { name: 'exomount', accessKeyId: 'EXO1234567890' });
    assert.equal(await secrets.get('default'), imported.default);
    assert.equal(await secrets.get('exomount'), imported.exomount);
    assert.equal(await secrets.get('existing'), GOOD.secretAccessKey, 'an existing profile is not overwritten');

    const dom = await pageTextAndValues(page);
    const settingsText = await readFile(ui.settingsFile, 'utf8');
    for (const s of Object.values(imported)) {
      assert.equal(dom.includes(s), false);
      assert.equal(settingsText.includes(s), false);
      assert.equal(ui.responses.some((r) => r.includes(s)), false);
    }
    for (const name of ['default', 'exomount', 'existing']) await secrets.delete(name);
  });

  test('import says so when there is no credentials file', async () => {
    const home = await tempDir('home');
    folders.push(home);
    const ui = await settingsPage({ credentialsFile: path.join(home, '.aws', 'credentials'), homeDir: home });
    await ui.page.getByRole('button', { name: 'Profiles' }).click();
    await ui.page.getByRole('button', { name: 'Import from ~/.aws/credentials' }).click();
    await waitForText(ui.page, '#profiles-message', 'There is no credentials file at ~/.aws/credentials.');
  });
});

describe('dropping files on a mount row', () => {
  test('uploads them into the mounted bucket, with progress; refuses when not mounted; never overwrites', async (t) => {
    // Every chunk reports progress, so the events can be checked whatever the copy's speed.
    const ui = await settingsPage({ progressIntervalMs: 0 });
    await seedProfile(ui, 'local');
    const mnt = await emptyFolder('dropmnt');
    const bucket = `drop-${randomBytes(4).toString('hex')}`;
    await server.client().send(new CreateBucketCommand({ Bucket: bucket }));
    const mount = await seedMount(ui, { name: 'Drops', profile: 'local', mountPoint: mnt, bucket });
    const { page } = ui;
    const rowSelector = `[data-mount-id="${mount.id}"]`;

    const sources = await tempDir('drop-src');
    folders.push(sources);
    const big = randomBytes(3 * 1024 * 1024 + 123);
    const small = Buffer.from('hello from the settings window\n');
    await writeFile(path.join(sources, 'big.bin'), big);
    await writeFile(path.join(sources, 'note.txt'), small);
    await ui.setDropPaths({ 'big.bin': path.join(sources, 'big.bin'), 'note.txt': path.join(sources, 'note.txt') });
    const files = [{ name: 'big.bin', content: 'x' }, { name: 'note.txt', content: 'x' }];

    // Not mounted: main refuses, and says how to fix it.
    await dropFiles(page, rowSelector, files);
    await waitForText(page, `${rowSelector} .row-note`, "'Drops' is not mounted. Mount it from the tray, then drop the files again.");

    // Mount it for real, with the CLI the supervisor's worker shares.
    const home = await tempDir('drop-home');
    folders.push(home);
    const env = cleanEnv(home, { AWS_ACCESS_KEY_ID: GOOD.accessKeyId, AWS_SECRET_ACCESS_KEY: GOOD.secretAccessKey });
    const mounted = await sosmount(['--endpoint-url', server.endpoint, '--force-path-style', bucket, mnt], { env });
    assert.equal(mounted.code, 0, mounted.stderr);
    t.after(async () => {
      await run('fusermount', ['-u', mnt]);
      await execQuiet('fusermount', ['-uz', mnt]);
    });
    ui.statuses.set(mount.id, { state: 'mounted', uploadsInProgress: 0, editing: false });
    await waitForText(page, `${rowSelector} .status`, 'Mounted');

    // Record what the row's progress line says while the upload runs.
    await page.evaluate((selector) => {
      const g = globalThis as unknown as { document: { querySelector(s: string): unknown }; MutationObserver: new (cb: () => void) => { observe(n: unknown, o: object): void }; __progressSeen: string[] };
      g.__progressSeen = [];
      const line = g.document.querySelector(`${selector} .row-progress span`) as { textContent: string };
      new g.MutationObserver(() => g.__progressSeen.push(line.textContent)).observe(line, { childList: true, characterData: true, subtree: true });
    }, rowSelector);
    await dropFiles(page, rowSelector, files);
    await waitForText(page, `${rowSelector} .row-note`, 'Uploaded 2 files.', 60_000);
    const shown = await page.evaluate(() => (globalThis as unknown as { __progressSeen: string[] }).__progressSeen);
    assert.ok(shown.some((text) => /^Uploading big\.bin \(1 of 2\) · ([1-9]|[1-9]\d)%$/.test(text)), `progress shown: ${shown.slice(0, 5).join(' | ')}`);
    assert.ok(shown.some((text) => /^Uploading note\.txt \(2 of 2\) · \d+%$/.test(text)));
    for (const [key, data] of [['big.bin', big], ['note.txt', small]] as const) {
      const out = await server.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(md5(await out.Body!.transformToByteArray()), md5(data), key);
    }
    const progress = ui.events.filter((e) => e.event === IpcEvent.UploadProgress).map((e) => e.payload as UploadProgress);
    assert.ok(progress.length >= 3, `progress events: ${progress.length}`);
    const last = progress.at(-1)!;
    assert.deepEqual([last.done, last.bytesDone, last.bytesTotal, last.fileCount], [true, big.length + small.length, big.length + small.length, 2]);
    const done = progress.map((p) => p.bytesDone);
    assert.deepEqual(done, [...done].sort((a, b) => a - b), 'progress only grows');
    assert.ok(progress.some((p) => p.bytesDone > 0 && p.bytesDone < big.length), 'progress inside the big file');
    assert.equal(await page.locator(`${rowSelector} .row-progress`).isHidden(), true);

    // Dropping the same file again: the mount does not overwrite (and nothing of it is deleted).
    await dropFiles(page, rowSelector, [{ name: 'note.txt', content: 'x' }]);
    await waitForText(page, `${rowSelector} .row-note`, "note.txt: 'note.txt' already exists in the mount.", 30_000);
    const again = await server.client().send(new GetObjectCommand({ Bucket: bucket, Key: 'note.txt' }));
    assert.equal(md5(await again.Body!.transformToByteArray()), md5(small));

    // A read-only mount is refused in main before anything is copied.
    ui.settings.update((s) => {
      s.mounts[0]!.readOnly = true;
    });
    await dropFiles(page, rowSelector, [{ name: 'note.txt', content: 'x' }]);
    await waitForText(page, `${rowSelector} .row-note`, "'Drops' is read-only.");

    await run('fusermount', ['-u', mnt]);
    await waitFor('the worker to unmount', async () => (await run('mountpoint', ['-q', mnt])).code !== 0);
  });
});
