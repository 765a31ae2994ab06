/**
 * The desktop shell's plain modules, one behaviour per test: the menu
 * model, the settings file (schema, defaults, migration, a corrupt file),
 * validation, start at login, the utility-process bridge, and how a
 * configured mount becomes worker options.
 */
import type { FromWorker, ToWorker, WorkerError } from '../app/worker/protocol.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { AUTOSTART_FILE, LOGIN_FLAG, autostartDirectory, createAutostart, desktopEntry, quoteExecArg, type LoginItemApi } from '../main/autostart.js';
import { buildMenu, quitQuestion, statusText, tooltip, whatQuittingDoes, type AppState, type MountView } from '../main/menu-model.js';
import { menuToHtml } from '../main/menu-picture.js';
import { DEFAULT_CACHE_SIZE_MIB, type MountConfig, type MountStatus } from '../main/model.js';
import { bridgeParentPort } from '../main/parent-port-bridge.js';
import { SETTINGS_FILE, SettingsStore } from '../main/settings-store.js';
import { ClearCacheError, Supervisor, defaultBackoffMs, mountOptionsFor } from '../main/supervisor.js';
import { cacheFolderUsage } from '../app/data/disk-cache.js';
import { parseMountArgs, type MountOptions } from '../app/options.js';
import { cacheSizeProblem, mountConfigProblems, profileConfigProblems } from '../main/validation.js';
import { cacheDirectoryFor, cacheFolderName } from '../main/cache-folders.js';
import { workerEnvironment } from '../main/worker-launcher.js';
import { tempDir } from './helpers/processes.js';
import { RecordingNotifier, RecordingShell, waitForStatus } from './helpers/desktop.js';
import { AppCore, SettingsValidationError, recoveredText, type QuitChoice } from '../main/app-core.js';
import type { SupervisorEvent } from '../main/supervisor.js';
import { MemorySecretStore } from '../main/secret-store.js';
import type { WorkerEvents, WorkerHandle, WorkerLauncher } from '../main/worker-launcher.js';

function mount(overrides: Partial<MountConfig> = {}): MountConfig {
  return {
    id: 'm1',
    name: 'photos',
    bucket: 'photos',
    zone: 'ch-dk-2',
    endpointUrl: undefined,
    forcePathStyle: false,
    profile: 'exomount',
    mountPoint: '/home/ada/Photos',
    prefix: '',
    readOnly: false,
    allowDelete: false,
    allowOverwrite: false,
    allowEdit: false,
    cacheEnabled: false,
    cacheSizeMiB: 2048,
    mountAtLogin: false,
    ...overrides,
  };
}

function view(status: MountStatus, overrides: Partial<MountConfig> = {}, wanted = status.state !== 'unmounted'): MountView {
  return { config: mount(overrides), status, wanted };
}

function state(mounts: MountView[], extra: Partial<AppState> = {}): AppState {
  return { mounts, startAtLogin: false, warnings: [], quitting: undefined, ...extra };
}

describe('menu model', () => {
  test('each state reads as the tray shows it', () => {
    assert.equal(statusText({ state: 'unmounted' }), 'unmounted');
    assert.equal(statusText({ state: 'mounting', attempt: 1 }), 'mounting…');
    assert.equal(statusText({ state: 'mounting', attempt: 3 }), 'mounting (attempt 3)…');
    assert.equal(statusText({ state: 'mounted', uploadsInProgress: 0, editing: false }), 'mounted');
    assert.equal(statusText({ state: 'mounted', uploadsInProgress: 1, editing: false }), 'uploading 1 file');
    assert.equal(statusText({ state: 'mounted', uploadsInProgress: 7, editing: false }), 'uploading 7 files');
    assert.equal(statusText({ state: 'unmounting', uploadsInProgress: 2, editing: false }), 'unmounting, 2 files still uploading');
    assert.equal(statusText({ state: 'error', message: 'access denied to bucket photos', requestId: 'R1D' }), 'error: access denied to bucket photos (request id R1D)');
    assert.equal(statusText({ state: 'error', message: 'cannot reach https://sos-ch-dk-2.exo.io', retryInMs: 4000 }), 'error: cannot reach https://sos-ch-dk-2.exo.io; retrying in 4 s');
  });

  test('a long error reason is shortened to one line', () => {
    const text = statusText({ state: 'error', message: `first line\n${'x'.repeat(300)}` });
    assert.ok(text.length < 110, text);
    assert.ok(text.endsWith('…'));
    assert.ok(!text.includes('\n'));
  });

  test('one checkbox per mount with its state; "Open folder" only for mounted ones; then Settings, Start at login, Show logs, Quit', () => {
    const menu = buildMenu(state([
      view({ state: 'mounted', uploadsInProgress: 0, editing: false }, { id: 'a', name: 'photos' }),
      view({ state: 'unmounted' }, { id: 'b', name: 'backups' }),
      view({ state: 'error', message: 'bucket backups does not exist', retryInMs: undefined }, { id: 'c', name: 'media' }, false),
      view({ state: 'mounted', uploadsInProgress: 3, editing: false }, { id: 'd', name: 'scratch' }),
    ], { startAtLogin: true }));
    const rows = menu.items.map((i) => (i.type === 'separator' ? '---' : `${i.type === 'checkbox' ? (i.checked ? '[x] ' : '[ ] ') : ''}${i.label}${i.enabled ? '' : ' (disabled)'}`));
    assert.deepEqual(rows, [
      '[x] photos — mounted',
      'Open “photos” folder',
      '[ ] backups — unmounted',
      '[ ] media — error: bucket backups does not exist',
      '[x] scratch — uploading 3 files',
      'Open “scratch” folder',
      '---',
      'Settings…',
      '[x] Start at login',
      'Show logs',
      '---',
      'Quit',
    ]);
    assert.deepEqual(menu.items.find((i) => i.id === 'mount:b')?.type === 'checkbox' && menu.items.find((i) => i.id === 'mount:b'), {
      type: 'checkbox', id: 'mount:b', label: 'backups — unmounted', checked: false, enabled: true, action: { type: 'toggle-mount', mountId: 'b' },
    });
    assert.equal(menu.tooltip, 'SOS Mount: 2 of 4 mounted, uploading 3 files, 1 error');
  });

  test('a mount retrying after an error stays checked', () => {
    const menu = buildMenu(state([view({ state: 'error', message: 'cannot reach x', retryInMs: 2000 }, {}, true)]));
    const entry = menu.items[0];
    assert.equal(entry?.type === 'checkbox' && entry.checked, true);
  });

  test('no mounts: a hint to add one in Settings', () => {
    const menu = buildMenu(state([]));
    assert.deepEqual(menu.items[0], { type: 'normal', id: 'no-mounts', label: 'No buckets yet: add one in Settings…', enabled: false });
    assert.equal(tooltip(state([])), 'SOS Mount: no buckets configured');
  });

  test('a settings warning is shown first, with a way to dismiss it', () => {
    const menu = buildMenu(state([], { warnings: ['The settings file could not be read.'] }));
    assert.deepEqual(menu.items.slice(0, 3).map((i) => i.id), ['warning:0', 'dismiss-warnings', 'sep:warnings']);
    assert.equal(menu.items[0]?.type === 'normal' && menu.items[0].label, '⚠ The settings file could not be read.');
  });

  test('while Quit waits for uploads: the count, "Quit now", and no toggles', () => {
    const menu = buildMenu(state([view({ state: 'mounted', uploadsInProgress: 2, editing: false })], { quitting: { lost: 2, kept: 0 } }));
    const ids = menu.items.map((i) => i.id);
    assert.ok(!ids.includes('quit'));
    assert.equal(menu.items.find((i) => i.id === 'quitting')?.type === 'normal' && menu.items.find((i) => i.id === 'quitting')!.type, 'normal');
    const quitting = menu.items.find((i) => i.id === 'quitting');
    assert.equal(quitting?.type !== 'separator' && quitting?.label, 'Quitting: waiting for 2 files to upload…');
    const toggle = menu.items.find((i) => i.id === 'mount:m1');
    assert.equal(toggle?.type === 'checkbox' && toggle.enabled, false);
    const quitNow = menu.items.find((i) => i.id === 'quit-now');
    assert.equal(quitNow?.type !== 'separator' && quitNow?.label, 'Quit now (the uploads are lost)');
  });

  test('"Quit now" and the Quit dialog say what happens to the uploads: lost, or kept on disk by editing mode for the next mount', () => {
    const quitNow = (lost: number, kept: number): string | false | undefined => {
      const item = buildMenu(state([], { quitting: { lost, kept } })).items.find((i) => i.id === 'quit-now');
      return item?.type !== 'separator' && item?.label;
    };
    assert.equal(quitNow(1, 0), 'Quit now (the upload is lost)');
    assert.equal(quitNow(3, 0), 'Quit now (the uploads are lost)');
    assert.equal(quitNow(0, 1), 'Quit now (1 file uploads at the next mount)');
    assert.equal(quitNow(0, 4), 'Quit now (4 files upload at the next mount)');
    assert.equal(quitNow(2, 3), 'Quit now (2 uploads are lost, 3 files upload at the next mount)');
    assert.equal(quitNow(1, 1), 'Quit now (1 upload is lost, 1 file uploads at the next mount)');
    const waiting = buildMenu(state([], { quitting: { lost: 2, kept: 3 } })).items.find((i) => i.id === 'quitting');
    assert.equal(waiting?.type !== 'separator' && waiting?.label, 'Quitting: waiting for 5 files to upload…');

    assert.deepEqual(quitQuestion({ lost: 1, kept: 0 }), {
      pending: { lost: 1, kept: 0 },
      message: '1 file still uploading',
      detail: 'Wait for it to finish and then quit, or quit now and lose that upload.',
    });
    assert.equal(quitQuestion({ lost: 3, kept: 0 }).detail, 'Wait for them to finish and then quit, or quit now and lose those uploads.');
    assert.equal(quitQuestion({ lost: 0, kept: 1 }).detail, 'Wait for it to finish and then quit, or quit now: it stays on this computer and uploads at the next mount.');
    assert.deepEqual(quitQuestion({ lost: 0, kept: 3 }), {
      pending: { lost: 0, kept: 3 },
      message: '3 files still uploading',
      detail: 'Wait for them to finish and then quit, or quit now: they stay on this computer and upload at the next mount.',
    });
    assert.equal(quitQuestion({ lost: 2, kept: 1 }).detail,
      'Wait for them to finish and then quit, or quit now: 2 uploads are lost, 1 file uploads at the next mount (editing mode keeps its files on this computer).');
    assert.equal(whatQuittingDoes({ lost: 0, kept: 2 }), '2 files upload at the next mount');
  });

  test('a folder rename under way shows in the mount\'s entry and the tooltip, long paths shortened at the start', () => {
    const renaming = { from: 'photos/2024', to: 'photos/archive-2024', done: 120, total: 4000 };
    assert.equal(statusText({ state: 'mounted', uploadsInProgress: 0, editing: true, renaming }), 'renaming photos/2024 → photos/archive-2024: 120/4000');
    assert.equal(statusText({ state: 'mounted', uploadsInProgress: 2, editing: true, renaming }), 'renaming photos/2024 → photos/archive-2024: 120/4000, uploading 2 files');
    const menu = buildMenu(state([view({ state: 'mounted', uploadsInProgress: 0, editing: true, renaming }, { allowEdit: true })]));
    const entry = menu.items.find((i) => i.id === 'mount:m1');
    assert.equal(entry?.type !== 'separator' && entry?.label, 'photos — renaming photos/2024 → photos/archive-2024: 120/4000');
    assert.equal(menu.tooltip, 'SOS Mount: 1 of 1 mounted, photos renaming photos/2024 → photos/archive-2024: 120/4000');
    const deep = statusText({ state: 'mounted', uploadsInProgress: 0, editing: true, renaming: { from: `${'a/'.repeat(40)}old`, to: 'new', done: 1, total: 2 } });
    assert.equal(deep, `renaming …${'a/'.repeat(18)}old → new: 1/2`);
  });

  test('the menu picture shows every entry, escaped', () => {
    const html = menuToHtml(buildMenu(state([view({ state: 'error', message: '<script>alert(1)</script> & more' })])));
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt; &amp; more'));
    assert.ok(!html.includes('<script>'));
    assert.ok(html.includes('Start at login'));
  });
});

describe('settings file', () => {
  test('a new file has the defaults and the schema version', async () => {
    const dir = await tempDir('settings');
    try {
      const store = SettingsStore.open({ directory: dir });
      assert.deepEqual(store.get(), { version: 1, mounts: [], profiles: [], startAtLogin: false });
      assert.deepEqual(store.warnings, []);
      assert.equal(store.path, path.join(dir, SETTINGS_FILE));
      assert.equal((await stat(store.path)).mode & 0o777, 0o600);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('changes are written and read back by the next start', async () => {
    const dir = await tempDir('settings');
    try {
      const store = SettingsStore.open({ directory: dir });
      store.update((s) => {
        s.profiles.push({ name: 'exomount', accessKeyId: 'EXO123' });
        s.mounts.push(mount({ zone: undefined, endpointUrl: 'https://s3.example.com' }));
        s.startAtLogin = true;
      });
      const again = SettingsStore.open({ directory: dir });
      assert.deepEqual(again.get().profiles, [{ name: 'exomount', accessKeyId: 'EXO123' }]);
      assert.equal(again.get().mounts[0]?.endpointUrl, 'https://s3.example.com');
      assert.equal(again.get().mounts[0]?.zone, undefined);
      assert.equal(again.get().startAtLogin, true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a secret never fits the schema: a profile with one is refused and the file keeps the old settings', async () => {
    const dir = await tempDir('settings');
    try {
      const store = SettingsStore.open({ directory: dir });
      store.update((s) => { s.profiles.push({ name: 'p', accessKeyId: 'EXO1' }); });
      assert.throws(() => store.update((s) => { (s.profiles[0] as unknown as Record<string, string>)['secretAccessKey'] = 'oops'; }), /must NOT have additional properties/);
      assert.ok(!(await readFile(store.path, 'utf8')).includes('oops'));
      assert.deepEqual(store.get().profiles, [{ name: 'p', accessKeyId: 'EXO1' }]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a file from before the schema is migrated: missing flags get their defaults', async () => {
    const dir = await tempDir('settings');
    try {
      await writeFile(path.join(dir, SETTINGS_FILE), JSON.stringify({ mounts: [{ id: '1', name: 'old', bucket: 'old-bucket', zone: 'ch-gva-2', profile: 'p', mountPoint: '/mnt/old' }], profiles: [{ name: 'p', accessKeyId: 'EXO9' }] }));
      const store = SettingsStore.open({ directory: dir });
      assert.deepEqual(store.warnings, []);
      assert.deepEqual(store.get().mounts[0], {
        id: '1', name: 'old', bucket: 'old-bucket', zone: 'ch-gva-2', profile: 'p', mountPoint: '/mnt/old',
        forcePathStyle: false, prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, allowEdit: false,
        cacheEnabled: false, cacheSizeMiB: 2048, mountAtLogin: false,
      });
      assert.equal(store.get().version, 1);
      const onDisk = JSON.parse(await readFile(store.path, 'utf8'));
      assert.equal(onDisk.__internal__.migrations.version, '0.1.0');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('editing mode: a mount stored before the field existed reads as off; one saved with it on reads back on', async () => {
    const dir = await tempDir('settings');
    try {
      // As the previous release wrote it: schema version 1, migrations done, no allowEdit.
      const old = { id: '1', name: 'old', bucket: 'old-bucket', zone: 'ch-gva-2', profile: 'p', mountPoint: '/mnt/old', forcePathStyle: false, prefix: '', readOnly: false, allowDelete: true, allowOverwrite: false, mountAtLogin: true };
      await writeFile(path.join(dir, SETTINGS_FILE), JSON.stringify({ version: 1, mounts: [old], profiles: [{ name: 'p', accessKeyId: 'EXO9' }], startAtLogin: false, __internal__: { migrations: { version: '0.1.0' } } }));
      const store = SettingsStore.open({ directory: dir });
      assert.deepEqual(store.warnings, []);
      assert.deepEqual(store.get().mounts, [{ ...old, allowEdit: false, cacheEnabled: false, cacheSizeMiB: 2048 }]);
      store.update((s) => { s.mounts.push(mount({ id: '2', name: 'new', mountPoint: '/mnt/new', allowEdit: true })); });
      const again = SettingsStore.open({ directory: dir });
      assert.deepEqual(again.get().mounts.map((m) => [m.name, m.allowEdit]), [['old', false], ['new', true]]);
      assert.throws(() => store.update((s) => { (s.mounts[0] as unknown as Record<string, unknown>)['allowEdit'] = 'yes'; }), /allowEdit.* must be boolean/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the cache: a mount stored before the fields existed reads as off (with the default size); one saved with it on reads back as saved', async () => {
    const dir = await tempDir('settings');
    try {
      const old = { id: '1', name: 'old', bucket: 'old-bucket', zone: 'ch-gva-2', profile: 'p', mountPoint: '/mnt/old', forcePathStyle: false, prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, allowEdit: true, mountAtLogin: true };
      await writeFile(path.join(dir, SETTINGS_FILE), JSON.stringify({ version: 1, mounts: [old], profiles: [{ name: 'p', accessKeyId: 'EXO9' }], startAtLogin: false, __internal__: { migrations: { version: '0.1.0' } } }));
      const store = SettingsStore.open({ directory: dir });
      assert.deepEqual(store.warnings, []);
      assert.deepEqual(store.get().mounts, [{ ...old, cacheEnabled: false, cacheSizeMiB: DEFAULT_CACHE_SIZE_MIB }]);
      assert.equal(DEFAULT_CACHE_SIZE_MIB, 2048);
      store.update((s) => { s.mounts.push(mount({ id: '2', name: 'new', mountPoint: '/mnt/new', cacheEnabled: true, cacheSizeMiB: 300 })); });
      const again = SettingsStore.open({ directory: dir });
      assert.deepEqual(again.get().mounts.map((m) => [m.name, m.cacheEnabled, m.cacheSizeMiB]), [['old', false, 2048], ['new', true, 300]]);
      assert.throws(() => store.update((s) => { s.mounts[1]!.cacheSizeMiB = 2.5; }), /cacheSizeMiB.* must be integer/);
      assert.throws(() => store.update((s) => { (s.mounts[1] as unknown as Record<string, unknown>)['cacheEnabled'] = 'yes'; }), /cacheEnabled.* must be boolean/);
      assert.equal(again.get().mounts[1]?.cacheSizeMiB, 300, 'a refused change leaves the file as it was');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const [what, content] of [['not JSON', '{"mounts": ['], ['not matching the schema', '{"mounts": 3}']] as const) {
    test(`a corrupt file (${what}) is kept as settings.json.corrupt-<time> and the user told, not silently reset`, async () => {
      const dir = await tempDir('settings');
      try {
        await writeFile(path.join(dir, SETTINGS_FILE), content);
        const store = SettingsStore.open({ directory: dir, now: () => new Date('2025-03-04T05:06:07.089Z') });
        const backup = path.join(dir, 'settings.json.corrupt-2025-03-04T05-06-07-089Z');
        assert.equal(await readFile(backup, 'utf8'), content);
        assert.equal(store.warnings.length, 1);
        assert.match(store.warnings[0] ?? '', /^The settings file could not be read \(.+\)\. It was kept as .+settings\.json\.corrupt-2025-03-04T05-06-07-089Z; SOS Mount started with empty settings\.$/);
        assert.deepEqual(store.get().mounts, []);
        assert.deepEqual((await readdir(dir)).sort(), ['settings.json', 'settings.json.corrupt-2025-03-04T05-06-07-089Z']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('validation', () => {
  const profiles = [{ name: 'exomount', accessKeyId: 'EXO1' }];

  test('a good mount has no problems', () => {
    assert.deepEqual(mountConfigProblems(mount(), [], profiles), []);
    assert.deepEqual(mountConfigProblems(mount({ zone: undefined, endpointUrl: 'http://127.0.0.1:9000', forcePathStyle: true }), [], profiles), []);
  });

  test('each problem names its field, with the CLI\'s bucket rules and the zone list', () => {
    const fields = (m: MountConfig, others: MountConfig[] = []): Array<[string, string]> => mountConfigProblems(m, others, profiles).map((p) => [p.field, p.message]);
    assert.deepEqual(fields(mount({ bucket: 'My_Bucket' })), [['bucket', "'My_Bucket' may contain only lowercase letters, digits, dots and hyphens"]]);
    assert.match(fields(mount({ zone: 'ch-xyz-9' }))[0]?.[1] ?? '', /^unknown zone 'ch-xyz-9'; zones: ch-gva-2, ch-dk-2, /);
    assert.deepEqual(fields(mount({ zone: undefined })), [['zone', 'choose a zone or give a custom endpoint']]);
    assert.deepEqual(fields(mount({ endpointUrl: 'https://x' })), [['endpointUrl', 'choose either a zone or a custom endpoint, not both']]);
    assert.deepEqual(fields(mount({ zone: undefined, endpointUrl: 'ftp://x' })), [['endpointUrl', "'ftp://x' must start with https:// or http://"]]);
    assert.deepEqual(fields(mount({ profile: 'nobody' })), [['profile', "there is no profile named 'nobody'"]]);
    assert.deepEqual(fields(mount({ mountPoint: 'relative/dir' })), [['mountPoint', "'relative/dir' must be an absolute path"]]);
    assert.deepEqual(fields(mount({ prefix: 'photos' })), [['prefix', "'photos' must end in '/'"]]);
    assert.deepEqual(fields(mount({ readOnly: true, allowDelete: true })), [['allowDelete', 'a read-only mount cannot allow deletes or overwrites']]);
    assert.deepEqual(fields(mount({ readOnly: true, allowEdit: true })), [['allowEdit', 'a read-only mount cannot be in editing mode; turn one of them off']]);
    assert.deepEqual(fields(mount({ allowEdit: true })), [], 'editing mode needs neither allow delete nor allow overwrite: it implies them');
    const other = mount({ id: 'm2', name: 'Photos', mountPoint: '/home/ada' });
    assert.deepEqual(fields(mount(), [other]), [
      ['name', "another mount is already named 'photos'"],
      ['mountPoint', "the folder overlaps the folder of mount 'Photos' (/home/ada)"],
    ]);
    assert.deepEqual(fields(mount(), [mount()]), [], 'the mount itself (same id) is not a clash');
  });

  test('the cache size: a whole number of MiB from 4 (four 1 MiB blocks) to 1 TiB, checked only while the cache is on', () => {
    assert.equal(cacheSizeProblem(4), undefined);
    assert.equal(cacheSizeProblem(2048), undefined);
    assert.equal(cacheSizeProblem(1024 * 1024), undefined);
    assert.equal(cacheSizeProblem(3), 'the cache needs at least 4 MiB');
    assert.equal(cacheSizeProblem(0), 'the cache needs at least 4 MiB');
    assert.equal(cacheSizeProblem(-8), 'the cache needs at least 4 MiB');
    assert.equal(cacheSizeProblem(4.5), 'the cache size must be a whole number of MiB (4.5 is not)');
    assert.equal(cacheSizeProblem(1024 * 1024 + 1), 'the cache can be at most 1024 GiB (1 TiB)');
    assert.equal(cacheSizeProblem(Number.NaN), 'enter the cache size, e.g. 2 GiB');
    assert.equal(cacheSizeProblem(Number.POSITIVE_INFINITY), 'enter the cache size, e.g. 2 GiB');
    const fields = (m: MountConfig): Array<[string, string]> => mountConfigProblems(m, [], profiles).map((p) => [p.field, p.message]);
    assert.deepEqual(fields(mount({ cacheEnabled: true, cacheSizeMiB: 2 })), [['cacheSizeMiB', 'the cache needs at least 4 MiB']]);
    assert.deepEqual(fields(mount({ cacheEnabled: false, cacheSizeMiB: 2 })), [], 'a size not in use is not a problem');
    assert.deepEqual(fields(mount({ cacheEnabled: true, readOnly: true })), [], 'a read-only mount may keep a local copy');
  });

  test('profiles: a name usable as a keychain account, a key, and a secret for a new one', () => {
    assert.deepEqual(profileConfigProblems({ name: 'exomount', accessKeyId: 'EXO1' }, [], 'secret'), []);
    assert.deepEqual(profileConfigProblems({ name: 'exomount', accessKeyId: 'EXO1' }, []), [], 'an edit may keep the stored secret');
    assert.deepEqual(profileConfigProblems({ name: 'my profile', accessKeyId: ' ' }, profiles, '').map((p) => p.field), ['name', 'accessKeyId', 'secret']);
    assert.deepEqual(profileConfigProblems({ name: 'exomount', accessKeyId: 'EXO2' }, profiles, 's').map((p) => p.message), ["a profile named 'exomount' exists already"]);
  });
});

describe('start at login', () => {
  test('Linux: writes $XDG_CONFIG_HOME/autostart/sos-mount.desktop and removes it', async () => {
    const dir = await tempDir('xdg');
    try {
      const autostart = createAutostart({ platform: 'linux', env: { XDG_CONFIG_HOME: dir }, command: '/opt/SOS Mount/sos-mount', args: [] });
      const file = path.join(dir, 'autostart', AUTOSTART_FILE);
      assert.equal(autostart.location, file);
      assert.equal(await autostart.isEnabled(), false);
      await autostart.setEnabled(true);
      assert.equal(await autostart.isEnabled(), true);
      assert.equal(await readFile(file, 'utf8'), desktopEntry('/opt/SOS Mount/sos-mount', [LOGIN_FLAG]));
      await autostart.setEnabled(false);
      assert.equal(await autostart.isEnabled(), false);
      await assert.rejects(stat(file), /ENOENT/);
      await autostart.setEnabled(false); // already off: no error
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Linux: without XDG_CONFIG_HOME (or a relative one) the entry goes to ~/.config/autostart', () => {
    assert.equal(autostartDirectory({}, '/home/ada'), '/home/ada/.config/autostart');
    assert.equal(autostartDirectory({ XDG_CONFIG_HOME: 'relative' }, '/home/ada'), '/home/ada/.config/autostart');
    assert.equal(autostartDirectory({ XDG_CONFIG_HOME: '/cfg' }, '/home/ada'), '/cfg/autostart');
  });

  test('Linux: an entry switched off in place (Hidden=true) counts as off', async () => {
    const dir = await tempDir('xdg');
    try {
      await mkdir(path.join(dir, 'autostart'));
      await writeFile(path.join(dir, 'autostart', AUTOSTART_FILE), `${desktopEntry('/usr/bin/sos-mount', [])}Hidden=true\n`);
      assert.equal(await createAutostart({ platform: 'linux', env: { XDG_CONFIG_HOME: dir }, command: 'x' }).isEnabled(), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Exec quoting follows the Desktop Entry Specification', () => {
    assert.equal(quoteExecArg('/usr/bin/sos-mount'), '/usr/bin/sos-mount');
    assert.equal(quoteExecArg('/opt/SOS Mount/app'), '"/opt/SOS Mount/app"');
    assert.equal(quoteExecArg('100%'), '100%%');
    // `$` and `"` are backslash-escaped inside quotes; the file format then doubles each backslash.
    assert.equal(quoteExecArg('a"b$c'), '"a\\\\"b\\\\$c"');
  });

  for (const platform of ['darwin', 'win32'] as const) {
    test(`${platform}: uses Electron's login item settings`, async () => {
      const calls: unknown[] = [];
      let open = false;
      const loginItems: LoginItemApi = {
        setLoginItemSettings: (s) => { calls.push(s); open = s.openAtLogin; },
        getLoginItemSettings: () => ({ openAtLogin: open }),
      };
      const autostart = createAutostart({ platform, command: '/Applications/SOS Mount.app', loginItems });
      await autostart.setEnabled(true);
      assert.equal(await autostart.isEnabled(), true);
      await autostart.setEnabled(false);
      assert.equal(await autostart.isEnabled(), false);
      assert.deepEqual(calls, platform === 'win32'
        ? [{ openAtLogin: true, args: [LOGIN_FLAG] }, { openAtLogin: false, args: [LOGIN_FLAG] }]
        : [{ openAtLogin: true }, { openAtLogin: false }]);
      assert.throws(() => createAutostart({ platform, command: 'x' }), /needs Electron's login item settings/);
    });
  }
});

describe('mount options and workers', () => {
  test('a configured mount becomes the CLI\'s MountOptions: zone endpoint and region, flags, the app\'s log folder', () => {
    const options = mountOptionsFor(mount({ prefix: 'raw/', readOnly: true }), { logDirectory: '/logs' });
    assert.equal(options.bucket, 'photos');
    assert.equal(options.mountPoint, '/home/ada/Photos');
    assert.equal(options.endpointUrl, 'https://sos-ch-dk-2.exo.io');
    assert.equal(options.region, 'ch-dk-2');
    assert.equal(options.prefix, 'raw/');
    assert.equal(options.readOnly, true);
    assert.equal(options.logDirectory, '/logs');
    assert.equal(options.profile, undefined, 'credentials come from the keychain, never ~/.aws');
    assert.equal(options.uploadChecksums, 'off', 'SOS rejects the additional checksums');
    const custom = mountOptionsFor(mount({ zone: undefined, endpointUrl: 'http://127.0.0.1:9000', forcePathStyle: true, allowDelete: true, allowOverwrite: true }), { logDirectory: '/logs' });
    assert.equal(custom.endpointUrl, 'http://127.0.0.1:9000');
    assert.equal(custom.forcePathStyle, true);
    assert.equal(custom.allowDelete && custom.allowOverwrite, true);
    assert.throws(() => mountOptionsFor(mount({ bucket: 'x' }), { logDirectory: '/logs' }), /BUCKET_NAME: 'x' must be 3 to 63 characters long/);
  });

  /** What `sosmount ARGV` would mount, with the supervisor's cwd and ids. */
  function cliOptions(argv: string[]): MountOptions {
    const parsed = parseMountArgs(argv, { cwd: '/', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
    assert.equal(parsed.kind, 'mount');
    if (parsed.kind !== 'mount') throw new Error('unreachable');
    return parsed.options;
  }

  /** The UsageError message `sosmount ARGV` would print. */
  function cliError(argv: string[]): string {
    try {
      parseMountArgs(argv, { cwd: '/', uid: 0, gid: 0 });
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error(`sosmount ${argv.join(' ')} was accepted`);
  }

  test('a configured mount gives the same MountOptions as the equivalent sosmount command line', () => {
    assert.deepEqual(
      mountOptionsFor(mount({ prefix: 'raw/', readOnly: true }), { logDirectory: '/logs' }),
      cliOptions(['--zone', 'ch-dk-2', '--prefix', 'raw/', '--read-only', '--log-directory', '/logs', 'photos', '/home/ada/Photos']),
    );
    assert.deepEqual(
      mountOptionsFor(mount({ zone: undefined, endpointUrl: 'http://127.0.0.1:9000', forcePathStyle: true, allowDelete: true, allowOverwrite: true }), { logDirectory: '/logs', debug: true }),
      cliOptions(['--endpoint-url', 'http://127.0.0.1:9000', '--force-path-style', '--allow-delete', '--allow-overwrite', '--debug', '-l', '/logs', 'photos', '/home/ada/Photos']),
    );
    const editing = mountOptionsFor(mount({ allowEdit: true }), { logDirectory: '/logs' });
    assert.deepEqual(editing, cliOptions(['--zone', 'ch-dk-2', '--allow-edit', '--log-directory', '/logs', 'photos', '/home/ada/Photos']));
    assert.deepEqual([editing.allowEdit, editing.allowDelete, editing.allowOverwrite], [true, true, true], 'editing mode implies delete and overwrite');
    assert.equal(mountOptionsFor(mount(), { logDirectory: '/logs' }).allowEdit, false);
  });

  test('settings the CLI would refuse fail with the CLI\'s message, naming the flag', () => {
    const cases: [Partial<MountConfig>, string[]][] = [
      [{ prefix: 'raw' }, ['--prefix', 'raw']],
      [{ zone: 'ch-zrh-1' }, ['--zone', 'ch-zrh-1']],
      [{ zone: undefined, endpointUrl: 'ftp://files.example.com' }, ['--endpoint-url', 'ftp://files.example.com']],
      [{ bucket: 'My_Bucket' }, []],
      [{ mountPoint: '/dev/fd/3' }, []],
      [{ readOnly: true, allowEdit: true }, ['--read-only', '--allow-edit']],
    ];
    for (const [overrides, flags] of cases) {
      const config = mount(overrides);
      const expected = cliError([...flags, '--', config.bucket, config.mountPoint]);
      assert.throws(() => mountOptionsFor(config, { logDirectory: '/logs' }), (err: unknown) => (err as Error).message === expected, expected);
    }
  });

  test('the cache on: --cache in the mount\'s own folder under the XDG cache directory (by id) and --max-cache-size, as on the command line', () => {
    const dir = cacheDirectoryFor('0b6f3c1e-7f7a-4b8e-9d1e-2f5a7c3b9d10');
    assert.equal(dir, path.join(process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'), 'sos-mount', '0b6f3c1e-7f7a-4b8e-9d1e-2f5a7c3b9d10'));
    const cached = mount({ id: '0b6f3c1e-7f7a-4b8e-9d1e-2f5a7c3b9d10', cacheEnabled: true, cacheSizeMiB: 300 });
    const options = mountOptionsFor(cached, { logDirectory: '/logs' });
    assert.deepEqual(options, cliOptions(['--zone', 'ch-dk-2', '--cache', dir, '--max-cache-size', '300', '--log-directory', '/logs', 'photos', '/home/ada/Photos']));
    assert.deepEqual([options.cacheDirectory, options.maxCacheSizeBytes], [dir, 300 * 1024 * 1024]);
    assert.deepEqual(options.metadataTtl, { kind: 'seconds', seconds: 60 }, 'as mount-s3: --cache keeps metadata for a minute');
    assert.equal(mountOptionsFor(cached, { logDirectory: '/logs', cacheDirectory: '/var/tmp/c' }).cacheDirectory, '/var/tmp/c');
    const off = mountOptionsFor(mount({ cacheSizeMiB: 300 }), { logDirectory: '/logs' });
    assert.deepEqual([off.cacheDirectory, off.maxCacheSizeBytes], [undefined, undefined], 'the size is kept in the settings, not passed, while the cache is off');
    assert.deepEqual(off, cliOptions(['--zone', 'ch-dk-2', '--log-directory', '/logs', 'photos', '/home/ada/Photos']));
    // A hand-edited file's size the CLI would refuse fails with the CLI's message.
    const tooSmall = mount({ cacheEnabled: true, cacheSizeMiB: 2 });
    assert.throws(() => mountOptionsFor(tooSmall, { logDirectory: '/logs' }), (err: unknown) => (err as Error).message === cliError(['--cache', '/c', '--max-cache-size', '2', 'photos', '/home/ada/Photos']));
  });

  test('a cache folder is named by the mount id, and an id that is not a plain name cannot lead outside the cache directory', () => {
    assert.equal(cacheFolderName('0b6f3c1e-7f7a-4b8e-9d1e-2f5a7c3b9d10'), '0b6f3c1e-7f7a-4b8e-9d1e-2f5a7c3b9d10');
    assert.equal(cacheFolderName('1'), '1');
    for (const id of ['../../.ssh', 'a/b', '..', '.', '', ' x', 'x'.repeat(200)]) {
      const name = cacheFolderName(id);
      assert.match(name, /^id-[0-9a-f]{32}$/, id);
      assert.equal(path.dirname(cacheDirectoryFor(id, { XDG_CACHE_HOME: '/c' }, '/h')), '/c/sos-mount', id);
    }
    assert.notEqual(cacheFolderName('a/b'), cacheFolderName('a/c'));
    assert.equal(cacheDirectoryFor('m1', {}, '/home/ada'), process.platform === 'darwin' ? '/home/ada/Library/Caches/sos-mount/m1' : '/home/ada/.cache/sos-mount/m1');
  });

  test('settings values are taken as values, never read as flags', () => {
    assert.equal(mountOptionsFor(mount({ prefix: '-raw/' }), { logDirectory: '/logs' }).prefix, '-raw/');
  });

  test('a settings file holding both a zone and an endpoint mounts the zone', () => {
    const options = mountOptionsFor(mount({ endpointUrl: 'http://127.0.0.1:9000' }), { logDirectory: '/logs' });
    assert.equal(options.endpointUrl, 'https://sos-ch-dk-2.exo.io');
    assert.equal(options.zone, 'ch-dk-2');
  });

  test('the retry delay doubles from 1 s up to a minute', () => {
    assert.deepEqual([1, 2, 3, 4, 6, 7, 8, 20].map(defaultBackoffMs), [1000, 2000, 4000, 8000, 32_000, 60_000, 60_000, 60_000]);
  });

  test('a worker\'s environment carries no AWS credentials or test-runner settings', () => {
    const env = workerEnvironment({ PATH: '/bin', AWS_SECRET_ACCESS_KEY: 's', AWS_PROFILE: 'p', NODE_OPTIONS: '--inspect', NODE_TEST_CONTEXT: 'child', HOME: '/h' });
    assert.deepEqual(env, { PATH: '/bin', HOME: '/h' });
  });

  test('the utility-process bridge gives the worker process.send and message events over the parent port', async () => {
    const port = new EventEmitter() as EventEmitter & { postMessage(m: unknown): void };
    const posted: unknown[] = [];
    port.postMessage = (m) => posted.push(m);
    const proc = new EventEmitter() as EventEmitter & { send?: (m: unknown, cb?: (e: Error | null) => void) => boolean; connected?: boolean; disconnect?: () => void };
    const received: unknown[] = [];
    let disconnected = false;
    proc.on('disconnect', () => { disconnected = true; });
    bridgeParentPort(port, proc);

    // Messages that arrive before the worker listens (its module still loading) are held, in order.
    port.emit('message', { data: { type: 'mount', n: 1 } });
    port.emit('message', { data: { type: 'unmount' } });
    proc.once('message', (m) => received.push(m));
    await Promise.resolve();
    assert.deepEqual(received, [{ type: 'mount', n: 1 }]);
    proc.on('message', (m) => received.push(m));
    await Promise.resolve();
    assert.deepEqual(received, [{ type: 'mount', n: 1 }, { type: 'unmount' }]);
    port.emit('message', { data: { type: 'unmount', again: true } });
    assert.deepEqual(received.at(-1), { type: 'unmount', again: true });
    let acked = false;
    assert.equal(proc.send?.({ type: 'uploads', inProgress: 1 }, () => { acked = true; }), true);
    assert.deepEqual(posted, [{ type: 'uploads', inProgress: 1 }]);
    assert.ok(acked);
    assert.equal(proc.connected, true);
    proc.disconnect?.();
    assert.equal(proc.connected, false);
    assert.equal(proc.send?.({ type: 'uploads', inProgress: 0 }), false);
    assert.equal(posted.length, 1);
    assert.equal(disconnected, false, 'disconnecting ourselves is not "the app went away"');
  });
});

/** Workers that follow the protocol without FUSE: mount → mounted, unmount → unmounted and exit. */
class ScriptedLauncher implements WorkerLauncher {
  readonly workers: Array<{ events: WorkerEvents; killed: string[]; sent: ToWorker[] }> = [];
  /** How a worker answers clear-cache; undefined: it says nothing (the test answers with say()). */
  clearCacheAnswer: FromWorker | undefined = { type: 'cache-cleared', freedBytes: 0 };
  /** Set: mounts fail with this error, and the worker exits. */
  mountError: WorkerError | undefined;

  launch(_name: string, events: WorkerEvents): WorkerHandle {
    const worker = { events, killed: [] as string[], sent: [] as ToWorker[] };
    this.workers.push(worker);
    let exited = false;
    const exit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (exited) return;
      exited = true;
      setImmediate(() => events.exit(code, signal));
    };
    return {
      pid: 100_000 + this.workers.length,
      send: (message) => {
        if (exited) return false;
        worker.sent.push(message);
        setImmediate(() => {
          if (message.type === 'mount' && this.mountError !== undefined) {
            events.message({ type: 'state', state: 'error', error: this.mountError });
            exit(1, null);
          } else if (message.type === 'mount') {
            events.message({ type: 'state', state: 'mounting' });
            events.message({ type: 'state', state: 'mounted' });
          } else if (message.type === 'clear-cache') {
            if (this.clearCacheAnswer !== undefined) events.message(this.clearCacheAnswer);
          } else {
            events.message({ type: 'state', state: 'unmounting' });
            events.message({ type: 'state', state: 'unmounted' });
            exit(0, null);
          }
        });
        return true;
      },
      kill: (signal) => {
        worker.killed.push(signal);
        exit(null, signal);
      },
    };
  }

  /** The latest worker reports uploads in progress. */
  uploads(n: number): void {
    this.say({ type: 'uploads', inProgress: n });
  }

  /** The latest worker (or worker `index`) sends a message. */
  say(message: FromWorker, index = this.workers.length - 1): void {
    this.workers[index]?.events.message(message);
  }
}

describe('supervisor (scripted workers)', () => {
  test('settings that fail validation: error state with the reason, no worker, no retry', async () => {
    const launcher = new ScriptedLauncher();
    const supervisor = new Supervisor({ launcher, credentialsFor: async () => ({ accessKeyId: 'EXO1', secretAccessKey: 's' }), logDirectory: '/logs', backoffMs: () => 10 });
    supervisor.mount(mount({ prefix: 'raw' }), { keepMounted: true });
    const status = await waitForStatus(supervisor, 'm1', 'the error state', (s) => s.state === 'error');
    assert.deepEqual(status, { state: 'error', message: "the mount's settings are not valid: --prefix: 'raw' must end in '/'", requestId: undefined, retryInMs: undefined });
    assert.equal(supervisor.wanted('m1'), false);
    assert.equal(launcher.workers.length, 0);
    await supervisor.shutdown({ abandonUploads: false });
  });
});

describe('recovered files notification', () => {
  test('says how many upload now, and where the rest are kept and why (known reasons in words, others as given, long lists cut)', () => {
    assert.equal(recoveredText(0, [], '/s'), undefined);
    assert.equal(recoveredText(1, [], '/s'), 'Uploading 1 file saved before SOS Mount stopped.');
    const kept = [
      { path: '/a.txt', reason: 'never-closed' },
      { path: '/b.txt', reason: 'write-failed' },
      { path: '/c.txt', reason: 'the disk was replaced' },
      { path: '/d.txt', reason: 'data-missing' },
      { path: '/e.txt', reason: 'record-unreadable' },
    ];
    assert.equal(recoveredText(2, kept, '/home/ada/.local/state/sosmount/staging/photos-1a2b'),
      'Uploading 2 files saved before SOS Mount stopped. 5 files could not be uploaded and are kept in /home/ada/.local/state/sosmount/staging/photos-1a2b: ' +
      '/a.txt (it was still open when SOS Mount stopped), /b.txt (writing it to disk failed), /c.txt (the disk was replaced), 2 more.');
  });
});

describe('supervisor: editing mode (scripted workers)', () => {
  function supervisor(): { sup: Supervisor; launcher: ScriptedLauncher; events: SupervisorEvent[] } {
    const launcher = new ScriptedLauncher();
    const sup = new Supervisor({ launcher, credentialsFor: async () => ({ accessKeyId: 'EXO1', secretAccessKey: 's' }), logDirectory: '/logs' });
    const events: SupervisorEvent[] = [];
    sup.onEvent((e) => events.push(e));
    return { sup, launcher, events };
  }

  test('the worker is started with --allow-edit, and the status says editing as launched, not as later saved', async () => {
    const { sup, launcher } = supervisor();
    sup.mount(mount({ allowEdit: true }), { keepMounted: false });
    await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
    const sent = launcher.workers[0]?.sent[0];
    assert.equal(sent?.type === 'mount' && sent.options.allowEdit, true);
    launcher.uploads(2);
    sup.updateConfig(mount({ allowEdit: false }), { keepMounted: false });
    assert.deepEqual(await waitForStatus(sup, 'm1', 'uploads', (s) => s.state === 'mounted' && s.uploadsInProgress === 2), { state: 'mounted', uploadsInProgress: 2, editing: true });
    assert.deepEqual(sup.pendingUploads(), { lost: 0, kept: 2 });
    await sup.shutdown({ abandonUploads: false });
  });

  test('pending uploads are counted as lost or kept by each worker\'s mode', async () => {
    const { sup, launcher } = supervisor();
    sup.mount(mount({ id: 'plain' }), { keepMounted: false });
    sup.mount(mount({ id: 'edit', mountPoint: '/home/ada/Edit', allowEdit: true }), { keepMounted: false });
    await waitForStatus(sup, 'plain', 'mounted', (s) => s.state === 'mounted');
    await waitForStatus(sup, 'edit', 'mounted', (s) => s.state === 'mounted');
    const index = (id: string): number => launcher.workers.findIndex((w) => w.sent[0]?.type === 'mount' && w.sent[0].options.mountPoint === (id === 'edit' ? '/home/ada/Edit' : '/home/ada/Photos'));
    launcher.say({ type: 'uploads', inProgress: 1 }, index('plain'));
    launcher.say({ type: 'uploads', inProgress: 3 }, index('edit'));
    assert.deepEqual(sup.pendingUploads(), { lost: 1, kept: 3 });
    assert.equal(sup.uploadsInProgress(), 4);
    await sup.shutdown({ abandonUploads: false });
  });

  test('conflicts and recovered files become events; rename progress is status, and only a rename that stopped is an event', async () => {
    const { sup, launcher, events } = supervisor();
    sup.mount(mount({ allowEdit: true }), { keepMounted: false });
    await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
    launcher.say({ type: 'conflict', path: 'notes/todo.md', conflictPath: 'notes/todo (conflict 2026-12-06 221530).md' });
    launcher.say({ type: 'recovered', uploading: 2, kept: [{ path: 'draft.txt', reason: 'never-closed' }], stagingDirectory: '/state/staging/photos-1a2b' });
    for (let done = 0; done <= 300; done += 100) launcher.say({ type: 'rename-progress', from: 'a', to: 'b', done, total: 300, finished: false });
    assert.deepEqual(sup.status('m1'), { state: 'mounted', uploadsInProgress: 0, editing: true, renaming: { from: 'a', to: 'b', done: 300, total: 300 } });
    launcher.say({ type: 'rename-progress', from: 'a', to: 'b', done: 300, total: 300, finished: true });
    assert.deepEqual(sup.status('m1'), { state: 'mounted', uploadsInProgress: 0, editing: true });
    launcher.say({ type: 'rename-progress', from: 'c', to: 'd', done: 5, total: 9, finished: false });
    launcher.say({ type: 'rename-progress', from: 'c', to: 'd', done: 5, total: 9, finished: true, error: 'access denied (request id R7)' });
    assert.deepEqual(sup.status('m1'), { state: 'mounted', uploadsInProgress: 0, editing: true });
    assert.deepEqual(events, [
      { type: 'conflict', mountId: 'm1', path: 'notes/todo.md', conflictPath: 'notes/todo (conflict 2026-12-06 221530).md' },
      { type: 'recovered', mountId: 'm1', uploading: 2, kept: [{ path: 'draft.txt', reason: 'never-closed' }], stagingDirectory: '/state/staging/photos-1a2b' },
      { type: 'rename-failed', mountId: 'm1', from: 'c', to: 'd', done: 5, total: 9, message: 'access denied (request id R7)' },
    ]);
    await sup.shutdown({ abandonUploads: false });
  });
});

describe('supervisor: the local disk cache', () => {
  async function setup(options: { credentialsFor?: () => Promise<{ accessKeyId: string; secretAccessKey: string }>; clearCacheTimeoutMs?: number } = {}) {
    const root = await tempDir('caches');
    const launcher = new ScriptedLauncher();
    const sup = new Supervisor({
      launcher,
      credentialsFor: options.credentialsFor ?? (async () => ({ accessKeyId: 'EXO1', secretAccessKey: 's' })),
      logDirectory: '/logs',
      backoffMs: () => 60_000,
      cacheDirectoryFor: (id) => path.join(root, id),
      ...(options.clearCacheTimeoutMs !== undefined ? { clearCacheTimeoutMs: options.clearCacheTimeoutMs } : {}),
    });
    const cleanup = async (): Promise<void> => {
      await sup.shutdown({ abandonUploads: false });
      await rm(root, { recursive: true, force: true });
    };
    return { root, launcher, sup, cleanup };
  }

  /** A cache folder with `bytes` of blocks in it, as the engine lays it out (app/data/disk-cache.ts). */
  async function fillCache(dir: string, bytes: number): Promise<void> {
    await mkdir(path.join(dir, 'v1', 'ab'), { recursive: true });
    await writeFile(path.join(dir, 'v1', 'ab', 'block-0'), Buffer.alloc(bytes, 7));
  }

  test('the worker is started with the mount\'s own cache folder and size', async () => {
    const { root, launcher, sup, cleanup } = await setup();
    try {
      sup.mount(mount({ cacheEnabled: true, cacheSizeMiB: 512 }), { keepMounted: false });
      await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
      const sent = launcher.workers[0]?.sent[0];
      assert.equal(sent?.type, 'mount');
      if (sent?.type !== 'mount') return;
      assert.deepEqual([sent.options.cacheDirectory, sent.options.maxCacheSizeBytes], [path.join(root, 'm1'), 512 * 1024 * 1024]);
      assert.equal(sup.cacheDirectory('m1'), path.join(root, 'm1'));
    } finally {
      await cleanup();
    }
  });

  test('mounted: Clear Cache asks the worker, which owns the folder, and its answer is the result; a second request meanwhile shares the first', async () => {
    const { root, launcher, sup, cleanup } = await setup();
    try {
      await fillCache(path.join(root, 'm1'), 64 * 1024);
      sup.mount(mount({ cacheEnabled: true }), { keepMounted: false });
      await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.clearCacheAnswer = undefined;
      const first = sup.clearCache('m1');
      const second = sup.clearCache('m1');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(launcher.workers[0]?.sent.map((m) => m.type), ['mount', 'clear-cache']);
      launcher.say({ type: 'cache-cleared', freedBytes: 5 * 1024 * 1024 });
      assert.deepEqual(await Promise.all([first, second]), [5 * 1024 * 1024, 5 * 1024 * 1024]);
      assert.ok((await readdir(path.join(root, 'm1', 'v1'))).length > 0, 'the app does not touch a folder its worker owns');
      launcher.clearCacheAnswer = { type: 'cache-cleared', freedBytes: 0 };
      assert.equal(await sup.clearCache('m1'), 0, 'a later request is a new one');
    } finally {
      await cleanup();
    }
  });

  test('mounted: a worker that fails to clear, does not answer in time, or stops meanwhile gives a reason', async () => {
    const { launcher, sup, cleanup } = await setup({ clearCacheTimeoutMs: 50 });
    try {
      sup.mount(mount({ cacheEnabled: true }), { keepMounted: false });
      await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.clearCacheAnswer = { type: 'cache-cleared', freedBytes: 0, error: 'EACCES: permission denied, rmdir' };
      await assert.rejects(sup.clearCache('m1'), (err: unknown) => err instanceof ClearCacheError && err.message === 'the cache could not be cleared: EACCES: permission denied, rmdir');
      launcher.clearCacheAnswer = undefined;
      await assert.rejects(sup.clearCache('m1'), (err: unknown) => err instanceof ClearCacheError && err.message === 'the cache could not be cleared: the mount did not answer within 0.05 s');
      const pending = sup.clearCache('m1');
      launcher.workers[0]?.events.exit(null, 'SIGKILL');
      await assert.rejects(pending, (err: unknown) => err instanceof ClearCacheError && err.message === 'the cache could not be cleared: the mount stopped before its cache was cleared; try again');
    } finally {
      await cleanup();
    }
  });

  test('while a mount is starting, Clear Cache is refused rather than racing the worker for the folder', async () => {
    let release!: () => void;
    const keychain = new Promise<void>((resolve) => { release = resolve; });
    const { root, sup, cleanup } = await setup({ credentialsFor: async () => { await keychain; return { accessKeyId: 'EXO1', secretAccessKey: 's' }; } });
    try {
      await fillCache(path.join(root, 'm1'), 4096);
      sup.mount(mount({ cacheEnabled: true }), { keepMounted: false });
      await assert.rejects(sup.clearCache('m1'), /^ClearCacheError: the mount is starting or stopping; clear its cache once it is mounted or unmounted$/);
      assert.ok((await readdir(path.join(root, 'm1', 'v1'))).length > 0);
      release();
      await waitForStatus(sup, 'm1', 'mounted', (s) => s.state === 'mounted');
    } finally {
      await cleanup();
    }
  });

  test('not mounted: the folder is emptied on disk and the bytes it took are the result; a folder a live process holds is refused', async () => {
    const { root, sup, cleanup } = await setup();
    try {
      const dir = path.join(root, 'm1');
      await fillCache(dir, 3 * 1024 * 1024);
      const before = await cacheFolderUsage(path.join(dir, 'v1'));
      assert.ok(before >= 3 * 1024 * 1024, `usage ${before}`);
      assert.equal(await sup.clearCache('m1'), before);
      assert.deepEqual(await readdir(dir), [], 'the blocks are gone, the folder stays');
      assert.equal(await sup.clearCache('m1'), 0, 'an empty cache frees nothing');
      assert.equal(await sup.clearCache('never-used'), 0, 'a mount whose cache was never used has nothing to clear');

      // A cache locked by a live process (a sosmount started by hand with this --cache) is left alone.
      await fillCache(dir, 4096);
      await writeFile(path.join(dir, 'lock'), `${process.pid}\n`);
      await assert.rejects(sup.clearCache('m1'), (err: unknown) => err instanceof ClearCacheError
        && err.message === `the cache folder is in use by process ${process.pid} (a mount started outside this app?)`);
      assert.ok((await readdir(path.join(dir, 'v1'))).length > 0);
    } finally {
      await cleanup();
    }
  });

  test('a mount failing because another process uses its cache folder says so in the tray\'s words, and is retried', async () => {
    const { root, launcher, sup, cleanup } = await setup();
    try {
      launcher.mountError = { code: 'cache-in-use', message: `the cache folder ${path.join(root, 'm1')} is in use by process 4242 (another mount uses the same --cache folder)` };
      sup.mount(mount({ cacheEnabled: true }), { keepMounted: true });
      const status = await waitForStatus(sup, 'm1', 'the error', (s) => s.state === 'error');
      assert.deepEqual(status, { state: 'error', message: `another process is using this mount's cache folder (${path.join(root, 'm1')})`, requestId: undefined, retryInMs: 60_000 });
      launcher.mountError = { code: 'cache-unusable', message: `cannot use the cache folder ${path.join(root, 'm1')}: no space left on device` };
      sup.mount(mount({ cacheEnabled: true }), { keepMounted: true });
      const unusable = await waitForStatus(sup, 'm1', 'the second error', (s) => s.state === 'error' && s.message !== status.message);
      assert.equal(unusable.state === 'error' && unusable.message, `cannot use the cache folder ${path.join(root, 'm1')}: no space left on device`);
      assert.equal(unusable.state === 'error' && unusable.retryInMs, 60_000, 'a full disk may get room');
    } finally {
      await cleanup();
    }
  });
});

describe('app core (scripted workers)', () => {
  async function setup(choice: QuitChoice = 'wait', files: Record<string, string> = {}, overrides: Partial<MountConfig> = {}) {
    const dir = await tempDir('core');
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
    const launcher = new ScriptedLauncher();
    const notifier = new RecordingNotifier();
    const asked: string[] = [];
    const details: string[] = [];
    let exits = 0;
    const core = new AppCore({
      settings: SettingsStore.open({ directory: dir }),
      secrets: new MemorySecretStore(),
      launcher,
      autostart: createAutostart({ platform: 'linux', env: { XDG_CONFIG_HOME: dir }, command: '/usr/bin/sos-mount' }),
      notifier,
      shell: new RecordingShell(),
      logDirectory: path.join(dir, 'logs'),
      openSettings: () => {},
      confirmQuit: async ({ message, detail }) => { asked.push(message); details.push(detail); return choice; },
      exit: () => { exits += 1; },
    });
    await core.start();
    await core.saveProfile({ name: 'exomount', accessKeyId: 'EXO1' }, 'secret');
    core.saveMount(mount({ mountPoint: dir, ...overrides }));
    return { dir, core, launcher, notifier, asked, details, exits: () => exits };
  }

  test('Quit with nothing uploading unmounts and exits without asking', async () => {
    const { dir, core, asked, exits } = await setup();
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      await core.dispatch({ type: 'quit' });
      assert.deepEqual(asked, []);
      assert.equal(exits(), 1);
      assert.deepEqual(core.supervisor.status('m1'), { state: 'unmounted' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Quit while uploading, then Cancel: nothing is unmounted', async () => {
    const { dir, core, launcher, asked, exits } = await setup('cancel');
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.uploads(2);
      await waitForStatus(core.supervisor, 'm1', 'uploads', (s) => s.state === 'mounted' && s.uploadsInProgress === 2);
      await core.dispatch({ type: 'quit' });
      assert.deepEqual(asked, ['2 files still uploading']);
      assert.equal(exits(), 0);
      assert.deepEqual(core.supervisor.status('m1'), { state: 'mounted', uploadsInProgress: 2, editing: false });
      assert.ok(core.menu().items.some((i) => i.id === 'quit'));
    } finally {
      await core.supervisor.shutdown({ abandonUploads: true });
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('while Quit waits for uploads, "Quit now" stops waiting: the uploading worker aborts its uploads and the app exits', async () => {
    const { dir, core, launcher, exits } = await setup('wait');
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.uploads(1);
      await waitForStatus(core.supervisor, 'm1', 'uploads', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
      const quitting = core.dispatch({ type: 'quit' });
      await new Promise<void>((resolve) => { const off = core.onChange((m) => { if (m.items.some((i) => i.id === 'quit-now')) { off(); resolve(); } }); });
      const toggle = core.menu().items.find((i) => i.id === 'mount:m1');
      assert.equal(toggle?.type === 'checkbox' && toggle.enabled, false, 'nothing can be mounted while quitting');
      await core.dispatch({ type: 'quit-now' });
      await quitting;
      assert.equal(exits(), 1);
      assert.deepEqual(launcher.workers[0]?.sent.at(-1), { type: 'unmount', abandonUploads: true });
      assert.deepEqual(launcher.workers[0]?.killed, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Quit while a mount in editing mode has staged files waiting: the question and "Quit now" say they upload at the next mount', async () => {
    const { dir, core, launcher, asked, details, exits } = await setup('wait', {}, { allowEdit: true });
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.uploads(2);
      await waitForStatus(core.supervisor, 'm1', 'uploads', (s) => s.state === 'mounted' && s.uploadsInProgress === 2);
      const quitting = core.dispatch({ type: 'quit' });
      await new Promise<void>((resolve) => { const off = core.onChange((m) => { if (m.items.some((i) => i.id === 'quit-now')) { off(); resolve(); } }); });
      assert.deepEqual(asked, ['2 files still uploading']);
      assert.deepEqual(details, ['Wait for them to finish and then quit, or quit now: they stay on this computer and upload at the next mount.']);
      const quitNow = core.menu().items.find((i) => i.id === 'quit-now');
      assert.equal(quitNow?.type !== 'separator' && quitNow?.label, 'Quit now (2 files upload at the next mount)');
      launcher.uploads(1);
      const waiting = core.menu().items.find((i) => i.id === 'quitting');
      assert.equal(waiting?.type !== 'separator' && waiting?.label, 'Quitting: waiting for 1 file to upload…');
      const after = core.menu().items.find((i) => i.id === 'quit-now');
      assert.equal(after?.type !== 'separator' && after?.label, 'Quit now (1 file uploads at the next mount)');
      await core.dispatch({ type: 'quit-now' });
      await quitting;
      assert.equal(exits(), 1);
      assert.deepEqual(launcher.workers[0]?.sent.at(-1), { type: 'unmount', abandonUploads: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Quit while uploading to a mount not in editing mode keeps saying the uploads are lost', async () => {
    const { dir, core, launcher, details } = await setup('cancel');
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      launcher.uploads(1);
      await waitForStatus(core.supervisor, 'm1', 'uploads', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
      await core.dispatch({ type: 'quit' });
      assert.deepEqual(details, ['Wait for it to finish and then quit, or quit now and lose that upload.']);
    } finally {
      await core.supervisor.shutdown({ abandonUploads: true });
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('editing mode tells the user of a conflict, of files saved before a stop, and of a folder rename that stopped; rename progress is in the menu, not in notifications', async () => {
    const { dir, core, launcher, notifier } = await setup('wait', {}, { allowEdit: true });
    try {
      core.mount('m1');
      await waitForStatus(core.supervisor, 'm1', 'mounted', (s) => s.state === 'mounted');
      const before = notifier.sent.length;
      launcher.say({ type: 'conflict', path: '/notes/todo.md', conflictPath: '/notes/todo (conflict 2026-12-06 221530).md' });
      launcher.say({ type: 'recovered', uploading: 0, kept: [], stagingDirectory: '/state/staging' });
      launcher.say({ type: 'recovered', uploading: 3, kept: [], stagingDirectory: '/state/staging' });
      launcher.say({ type: 'recovered', uploading: 0, kept: [{ path: '/draft.txt', reason: 'never-closed' }], stagingDirectory: '/state/staging/photos-1a2b' });
      const labels: string[] = [];
      const off = core.onChange((m) => {
        const entry = m.items.find((i) => i.id === 'mount:m1');
        if (entry?.type === 'checkbox' && labels.at(-1) !== entry.label) labels.push(entry.label);
      });
      for (let done = 50; done <= 200; done += 50) launcher.say({ type: 'rename-progress', from: '/old', to: '/new', done, total: 200, finished: false });
      assert.equal(core.menu().tooltip, 'SOS Mount: 1 of 1 mounted, photos renaming /old → /new: 200/200');
      launcher.say({ type: 'rename-progress', from: '/old', to: '/new', done: 120, total: 200, finished: true, error: 'PUT failed: 503 SlowDown (request id R9)' });
      off();
      assert.deepEqual(labels, [
        'photos — renaming /old → /new: 50/200',
        'photos — renaming /old → /new: 100/200',
        'photos — renaming /old → /new: 150/200',
        'photos — renaming /old → /new: 200/200',
        'photos — mounted',
      ]);
      assert.deepEqual(notifier.sent.slice(before), [
        { title: 'Conflict in photos', body: '/notes/todo.md changed in the bucket while you edited it; your version was saved as /notes/todo (conflict 2026-12-06 221530).md' },
        { title: 'Files saved earlier in photos', body: 'Uploading 3 files saved before SOS Mount stopped.' },
        { title: 'Files saved earlier in photos', body: '1 file could not be uploaded and is kept in /state/staging/photos-1a2b: /draft.txt (it was still open when SOS Mount stopped).' },
        { title: 'Renaming a folder in photos stopped', body: '/old → /new: 120 of 200 objects moved, then PUT failed: 503 SlowDown (request id R9)' },
      ]);
    } finally {
      await core.supervisor.shutdown({ abandonUploads: true });
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('an unreadable settings file: the user is told at start and in the menu until dismissed', async () => {
    const { dir, core, notifier } = await setup('wait', { 'settings.json': '{ not json' });
    try {
      assert.equal(notifier.sent[0]?.title, 'SOS Mount settings');
      assert.match(notifier.sent[0]?.body ?? '', /^The settings file could not be read .+settings\.json\.corrupt-/);
      assert.ok(core.menu().items[0]?.id === 'warning:0');
      await core.dispatch({ type: 'dismiss-warnings' });
      assert.ok(!core.menu().items.some((i) => i.id.startsWith('warning:')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('profiles: a new one needs its secret; one in use by a mount cannot be removed', async () => {
    const { dir, core } = await setup();
    try {
      await assert.rejects(core.saveProfile({ name: 'fresh', accessKeyId: 'EXO2' }), (err: unknown) => err instanceof SettingsValidationError && err.problems[0]?.field === 'secret');
      await assert.rejects(core.removeProfile('exomount'), /profile exomount is used by photos/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
