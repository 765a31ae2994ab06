/**
 * The desktop app as README.md ("Desktop app") describes it, driven through the app core under
 * plain Node: real workers (child_process.fork of app/worker/worker.js), real FUSE
 * mounts against the local S3 server, secrets in a real keyring (GNOME
 * Keyring on a private D-Bus bus), the tray menu as the user sees it.
 *
 * Each step starts where the previous one ended, like a user session:
 * configure, mount from the menu, copy files in, unmount, a crashed worker,
 * start at login on/off, quit with an upload in flight; then a second start
 * of the app (a new login) mounts the "mount at login" buckets by itself.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { isMountPoint, isStaleMount } from '../app/worker/mount-point.js';
import { AppCore, type QuitChoice } from '../main/app-core.js';
import { AUTOSTART_FILE, createAutostart } from '../main/autostart.js';
import type { MenuItemModel } from '../main/menu-model.js';
import type { MountConfig } from '../main/model.js';
import { KeytarSecretStore } from '../main/secret-store.js';
import { SettingsStore } from '../main/settings-store.js';
import { NodeWorkerLauncher } from '../main/worker-launcher.js';
import { holdOpenWriter, MenuRecorder, RecordingNotifier, RecordingShell, waitForStatus } from './helpers/desktop.js';
import { execQuiet, sh, tempDir } from './helpers/processes.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { startSecretService, type TestSecretService } from './helpers/secret-service.js';

const EXO = { accessKeyId: 'EXODESKTOP0123456789', secretAccessKey: 'desktop-api-secret-Zq81vK' };
const PROFILE = 'exomount';
/** Short enough for retries within a test, long enough to look at the folder before the remount; the schedule itself is unit-tested. */
const BACKOFF_MS = 1000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function objectMd5(server: TestS3Server, bucket: string, key: string): Promise<string> {
  const out = await server.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return createHash('md5').update(Buffer.from(await out.Body!.transformToByteArray())).digest('hex');
}

const md5 = (data: Buffer | string): string => createHash('md5').update(data).digest('hex');

function item(core: AppCore, id: string): MenuItemModel {
  const found = core.menu().items.find((i) => i.id === id);
  assert.ok(found, `menu item ${id} in ${JSON.stringify(core.menu().items.map((i) => i.id))}`);
  return found;
}

/** Clicks a menu entry, as the adapter does. */
async function click(core: AppCore, id: string): Promise<void> {
  const entry = item(core, id);
  assert.ok(entry.type !== 'separator' && entry.action, `${id} is clickable`);
  assert.ok(entry.enabled, `${id} is enabled`);
  await core.dispatch(entry.action);
}

function label(core: AppCore, id: string): string {
  const entry = item(core, id);
  return entry.type === 'separator' ? '' : entry.label;
}

describe('the desktop app, driven through its core', () => {
  let server: TestS3Server;
  let secretService: TestSecretService;
  let work: string;
  let configDir: string;
  let logDir: string;
  let xdgConfig: string;
  let photosDir: string;
  let archiveDir: string;
  let core: AppCore;
  let notifier: RecordingNotifier;
  let shell: RecordingShell;
  let exits = 0;
  let quitQuestions: string[] = [];
  let quitAnswer: QuitChoice = 'wait';
  const cores: AppCore[] = [];

  const photos: MountConfig = {
    id: 'photos-0001',
    name: 'photos',
    bucket: 'photos',
    zone: undefined,
    endpointUrl: '',
    forcePathStyle: true,
    profile: PROFILE,
    mountPoint: '',
    prefix: '',
    readOnly: false,
    allowDelete: false,
    allowOverwrite: false,
    allowEdit: false,
    cacheEnabled: false,
    cacheSizeMiB: 2048,
    mountAtLogin: false,
  };

  /** A fresh app start over the same settings folder, keyring and autostart folder. */
  function startCore(): AppCore {
    notifier = new RecordingNotifier();
    shell = new RecordingShell();
    const c = new AppCore({
      settings: SettingsStore.open({ directory: configDir }),
      secrets: new KeytarSecretStore(),
      launcher: new NodeWorkerLauncher(),
      autostart: createAutostart({ platform: 'linux', env: { XDG_CONFIG_HOME: xdgConfig }, command: '/opt/SOS Mount/sos-mount', args: [] }),
      notifier,
      shell,
      logDirectory: logDir,
      openSettings: () => {},
      confirmQuit: async ({ message }) => {
        quitQuestions.push(message);
        return quitAnswer;
      },
      exit: () => {
        exits += 1;
      },
      backoffMs: () => BACKOFF_MS,
      unmountTimeoutMs: 20_000,
    });
    cores.push(c);
    return c;
  }

  before(async () => {
    server = await startS3Server({ buckets: ['photos'], credentials: [EXO] });
    secretService = await startSecretService();
    secretService.use();
    work = await tempDir('desktop');
    configDir = path.join(work, 'config');
    logDir = path.join(work, 'logs');
    xdgConfig = path.join(work, 'xdg-config');
    photosDir = path.join(work, 'photos');
    archiveDir = path.join(work, 'archive');
    await mkdir(photosDir);
    await mkdir(archiveDir);
    photos.endpointUrl = server.endpoint;
    photos.mountPoint = photosDir;
    core = startCore();
    await core.start();
  });

  after(async () => {
    // Whatever a failed step left: no worker, no mount, no daemon.
    await Promise.allSettled(cores.map((c) => c.supervisor.shutdown({ abandonUploads: true })));
    for (const dir of [photosDir, archiveDir]) if (dir) await execQuiet('fusermount', ['-uz', dir]);
    await server?.stop();
    await secretService?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('configure a profile and a mount: the secret goes to the keychain, never to the settings file', async () => {
    await core.saveProfile({ name: PROFILE, accessKeyId: EXO.accessKeyId }, EXO.secretAccessKey);
    core.saveMount(photos);
    assert.equal(await new KeytarSecretStore().get(PROFILE), EXO.secretAccessKey);
    const file = await readFile(path.join(configDir, 'settings.json'), 'utf8');
    assert.ok(!file.includes(EXO.secretAccessKey), 'no secret in settings.json');
    assert.equal(JSON.parse(file).profiles[0].accessKeyId, EXO.accessKeyId);
    assert.equal(label(core, 'mount:photos-0001'), 'photos — unmounted');
    const entry = item(core, 'mount:photos-0001');
    assert.equal(entry.type === 'checkbox' && entry.checked, false);
  });

  test('a mount is refused with the field at fault when its settings are wrong', () => {
    assert.throws(() => core.saveMount({ ...photos, id: 'bad', name: 'bad', bucket: 'Not_A_Bucket', mountPoint: path.join(work, 'x') }), /bucket: 'Not_A_Bucket' may contain only/);
    assert.throws(() => core.saveMount({ ...photos, id: 'bad', name: 'bad', profile: 'nobody', mountPoint: path.join(work, 'x') }), /profile: there is no profile named 'nobody'/);
  });

  test('mount from the menu: checked, "mounted", with "Open folder"', async () => {
    await click(core, 'mount:photos-0001');
    await waitForStatus(core.supervisor, photos.id, 'photos mounted', (s) => s.state === 'mounted');
    assert.equal(label(core, 'mount:photos-0001'), 'photos — mounted');
    const entry = item(core, 'mount:photos-0001');
    assert.equal(entry.type === 'checkbox' && entry.checked, true);
    assert.ok(await isMountPoint(photosDir));
    await click(core, 'open:photos-0001');
    assert.deepEqual(shell.opened, [photosDir]);
  });

  test('a file being written shows "uploading 1 file", then "mounted" once it is stored', async () => {
    const recorder = new MenuRecorder(core, 'mount:photos-0001');
    const writer = holdOpenWriter(path.join(photosDir, 'notes.txt'), 'first half, ', 'second half\n');
    assert.equal(await writer.opened, 'open');
    await waitForStatus(core.supervisor, photos.id, 'one upload in progress', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
    assert.equal(label(core, 'mount:photos-0001'), 'photos — uploading 1 file');
    assert.equal(await writer.finish(), 'closed');
    await waitForStatus(core.supervisor, photos.id, 'no upload in progress', (s) => s.state === 'mounted' && s.uploadsInProgress === 0);
    assert.deepEqual(recorder.stop(), ['photos — mounted', 'photos — uploading 1 file', 'photos — mounted']);
    assert.equal(await objectMd5(server, 'photos', 'notes.txt'), md5('first half, second half\n'));
  });

  test('copy a folder tree in, as a file manager does: every file arrives whole in the bucket', async () => {
    const tree = path.join(work, 'holiday');
    const files: Record<string, Buffer> = {
      'holiday/beach.jpg': randomBytes(700_000),
      'holiday/day 2/café.png': randomBytes(65_537),
      'holiday/day 2/notes.txt': Buffer.from('sun\n'),
      'holiday/empty.txt': Buffer.alloc(0),
    };
    for (const [rel, data] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(work, rel)), { recursive: true });
      await writeFile(path.join(work, rel), data);
    }
    const recorder = new MenuRecorder(core, 'mount:photos-0001');
    // A child process, like a file manager: the test process never writes into a mount itself.
    const r = await sh(`cp -r ${JSON.stringify(tree)} ${JSON.stringify(photosDir + '/')}`);
    assert.equal(r.code, 0, r.stderr);
    await waitForStatus(core.supervisor, photos.id, 'uploads done', (s) => s.state === 'mounted' && s.uploadsInProgress === 0);
    const labels = recorder.stop();
    assert.ok(labels.includes('photos — uploading 1 file'), labels.join(' | '));
    assert.equal(labels[labels.length - 1], 'photos — mounted');
    for (const [key, data] of Object.entries(files)) assert.equal(await objectMd5(server, 'photos', key), md5(data), key);
    const listed = await sh(`ls -R ${JSON.stringify(path.join(photosDir, 'holiday'))}`);
    assert.match(listed.stdout, /beach\.jpg/);
    assert.match(listed.stdout, /café\.png/);
  });

  test('files dropped on the tray icon are uploaded into the first mounted bucket', async () => {
    const dropped = path.join(work, 'dropped');
    await mkdir(path.join(dropped, 'inner'), { recursive: true });
    await writeFile(path.join(dropped, 'a.txt'), 'A');
    await writeFile(path.join(dropped, 'inner', 'b.txt'), 'B');
    const result = await core.dropFiles([dropped]);
    assert.deepEqual(result, { mountName: 'photos', copied: 2, failed: [] });
    assert.equal(await objectMd5(server, 'photos', 'dropped/inner/b.txt'), md5('B'));
    // Dropping again never overwrites: each existing file is reported.
    const again = await core.dropFiles([dropped]);
    assert.deepEqual(again.failed.map((f) => [path.relative(work, f.path), f.message]), [['dropped/a.txt', 'already in the bucket'], ['dropped/inner/b.txt', 'already in the bucket']]);
    assert.equal(notifier.sent.at(-1)?.title, 'Some files were not uploaded');
    await waitForStatus(core.supervisor, photos.id, 'uploads done', (s) => s.state === 'mounted' && s.uploadsInProgress === 0);
  });

  test('unmount from the menu: the folder is an empty folder again and the entry unchecked', async () => {
    const pid = core.supervisor.workerPid(photos.id);
    await click(core, 'mount:photos-0001');
    await waitForStatus(core.supervisor, photos.id, 'photos unmounted', (s) => s.state === 'unmounted');
    assert.equal(await isMountPoint(photosDir), false);
    assert.deepEqual(await readdir(photosDir), []);
    assert.equal(label(core, 'mount:photos-0001'), 'photos — unmounted');
    assert.equal(core.menu().items.some((i) => i.id === 'open:photos-0001'), false);
    assert.ok(pid !== undefined);
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the worker has exited');
  });

  test('a killed worker: error state, a clean mount point, then mounted again (mount at login is set)', async () => {
    core.saveMount({ ...photos, mountAtLogin: true });
    await click(core, 'mount:photos-0001');
    await waitForStatus(core.supervisor, photos.id, 'photos mounted', (s) => s.state === 'mounted');
    const pid = core.supervisor.workerPid(photos.id);
    assert.ok(pid !== undefined);
    const errorSeen = waitForStatus(core.supervisor, photos.id, 'the error state', (s) => s.state === 'error');
    process.kill(pid, 'SIGKILL');
    const status = await errorSeen;
    // The error is published only once the folder is usable again.
    assert.equal(await isStaleMount(photosDir), false, 'no "Transport endpoint is not connected"');
    assert.equal(await isMountPoint(photosDir), false);
    assert.deepEqual(await readdir(photosDir), []);
    assert.equal(status.state === 'error' && status.retryInMs, BACKOFF_MS);
    assert.match(label(core, 'mount:photos-0001'), /^photos — error: the mount worker stopped unexpectedly \(SIGKILL\); retrying in 1 s$/);
    assert.deepEqual(notifier.sent.at(-1), { title: 'photos stopped unexpectedly', body: 'the mount worker stopped unexpectedly (SIGKILL). Mounting it again in 1 s.' });

    await waitForStatus(core.supervisor, photos.id, 'photos mounted again', (s) => s.state === 'mounted');
    assert.notEqual(core.supervisor.workerPid(photos.id), pid);
    const ls = await sh(`ls ${JSON.stringify(photosDir)}`);
    assert.match(ls.stdout, /holiday/);
  });

  test('start at login on and off writes and removes the XDG autostart file', async () => {
    const file = path.join(xdgConfig, 'autostart', AUTOSTART_FILE);
    await click(core, 'start-at-login');
    const entry = item(core, 'start-at-login');
    assert.equal(entry.type === 'checkbox' && entry.checked, true);
    const text = await readFile(file, 'utf8');
    assert.match(text, /^\[Desktop Entry\]$/m);
    assert.match(text, /^Exec="\/opt\/SOS Mount\/sos-mount" --at-login$/m);
    assert.equal(JSON.parse(await readFile(path.join(configDir, 'settings.json'), 'utf8')).startAtLogin, true);

    await click(core, 'start-at-login');
    await assert.rejects(stat(file), /ENOENT/);
    const off = item(core, 'start-at-login');
    assert.equal(off.type === 'checkbox' && off.checked, false);
    await click(core, 'start-at-login'); // on again, for the next login below
  });

  test('quit with a file still uploading says so, waits for it, then unmounts everything', async () => {
    const writer = holdOpenWriter(path.join(photosDir, 'late.txt'), 'still ', 'writing\n');
    assert.equal(await writer.opened, 'open');
    await waitForStatus(core.supervisor, photos.id, 'one upload in progress', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
    quitAnswer = 'wait';
    quitQuestions = [];
    const waitingShown = new Promise<void>((resolve) => {
      const off = core.onChange((menu) => {
        if (menu.items.some((i) => i.id === 'quitting')) {
          off();
          resolve();
        }
      });
    });
    const quitting = core.dispatch({ type: 'quit' });
    await waitingShown;
    assert.deepEqual(quitQuestions, ['1 file still uploading']);
    assert.equal(label(core, 'quitting'), 'Quitting: waiting for 1 file to upload…');
    assert.equal(exits, 0);
    assert.ok(await isMountPoint(photosDir), 'still mounted while the upload is in flight');

    assert.equal(await writer.finish(), 'closed');
    await quitting;
    assert.equal(exits, 1);
    assert.equal(await isMountPoint(photosDir), false);
    assert.equal(await isStaleMount(photosDir), false);
    assert.equal(await objectMd5(server, 'photos', 'late.txt'), md5('still writing\n'));
  });

  test('the next start (a new login) mounts the "mount at login" buckets by themselves; an unreachable one retries and says why', async () => {
    const port = await freePort();
    const archive: MountConfig = { ...photos, id: 'archive-0002', name: 'archive', bucket: 'archive', endpointUrl: `http://127.0.0.1:${port}`, mountPoint: archiveDir, mountAtLogin: true };
    core = startCore();
    core.saveMount(archive);
    await core.start();
    const entry = item(core, 'start-at-login');
    assert.equal(entry.type === 'checkbox' && entry.checked, true, 'start at login read back from the autostart file');

    await waitForStatus(core.supervisor, photos.id, 'photos mounted at start', (s) => s.state === 'mounted');
    const failed = await waitForStatus(core.supervisor, archive.id, 'archive failing', (s) => s.state === 'error');
    assert.match(label(core, 'mount:archive-0002'), new RegExp(`^archive — error: cannot reach http://127\\.0\\.0\\.1:${port}: .+; retrying in 1 s$`));
    assert.equal(failed.state === 'error' && failed.retryInMs, BACKOFF_MS);
    const checked = item(core, 'mount:archive-0002');
    assert.equal(checked.type === 'checkbox' && checked.checked, true, 'still wanted while retrying');
    assert.equal(notifier.sent.filter((n) => n.title === 'Cannot mount archive').length, 1);
    await waitForStatus(core.supervisor, archive.id, 'a second attempt', (s) => s.state === 'mounting' && s.attempt === 2);
    await waitForStatus(core.supervisor, archive.id, 'the second failure', (s) => s.state === 'error');
    assert.equal(notifier.sent.filter((n) => n.title === 'Cannot mount archive').length, 1, 'one notification per run of failures');

    // The endpoint comes up (the network is back): the next retry mounts.
    const archiveServer = await startS3Server({ buckets: ['archive'], credentials: [EXO], port });
    try {
      await waitForStatus(core.supervisor, archive.id, 'archive mounted', (s) => s.state === 'mounted');
      assert.match(label(core, 'mount:archive-0002'), /^archive — mounted$/);
      await core.unmount(archive.id);
    } finally {
      await archiveServer.stop();
    }
  });

  test('quit anyway with a file uploading: its worker is stopped, the upload lost, and no stale mount left', async () => {
    const writer = holdOpenWriter(path.join(photosDir, 'abandoned.txt'), 'never ', 'stored\n');
    assert.equal(await writer.opened, 'open');
    await waitForStatus(core.supervisor, photos.id, 'one upload in progress', (s) => s.state === 'mounted' && s.uploadsInProgress === 1);
    quitAnswer = 'quit-anyway';
    quitQuestions = [];
    const before = exits;
    await core.dispatch({ type: 'quit' });
    assert.deepEqual(quitQuestions, ['1 file still uploading']);
    assert.equal(exits, before + 1);
    assert.equal(await isMountPoint(photosDir), false);
    assert.equal(await isStaleMount(photosDir), false);
    assert.deepEqual(await readdir(photosDir), []);
    assert.notEqual(await writer.finish(), 'closed', 'the writer learns its file was not stored');
    await assert.rejects(server.client().send(new HeadObjectCommand({ Bucket: 'photos', Key: 'abandoned.txt' })), /NotFound|404/);
    const listing = await server.client().send(new ListObjectsV2Command({ Bucket: 'photos' }));
    assert.ok((listing.Contents ?? []).some((o) => o.Key === 'late.txt'));
  });
});
