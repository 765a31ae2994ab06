/**
 * The reference scenario: the Exoscale tutorial (shared tutorial text), step
 * by step, with `sosmount` in place of `mount-s3`, through the CLI in child
 * processes, against a real S3-compatible server and a real FUSE mount.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HeadObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { awsHome, cleanEnv, execQuiet, sh, sosmount, tempDir, waitFor } from './helpers/processes.js';
import { isMountPoint } from '../app/worker/mount-point.js';

const EXO = { accessKeyId: 'EXO1234567890', secretAccessKey: 'tutorial-api-secret-0123456789' };

describe('the Exoscale tutorial, with sosmount', () => {
  let server: TestS3Server;
  let home: string;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const backup = randomBytes(524288);
  const md5 = createHash('md5').update(backup).digest('hex');

  before(async () => {
    server = await startS3Server({ buckets: ['mybucket'], credentials: [EXO] });
    home = await awsHome({ exomount: EXO });
    work = await tempDir('tutorial');
    env = cleanEnv(home);
    await writeFile(path.join(work, 'backup.tgz'), backup);
  });

  after(async () => {
    await execQuiet('fusermount', ['-uz', path.join(work, 'mnt')]);
    await server.stop();
  });

  test('step 1: mkdir mnt', async () => {
    const r = await sh('mkdir mnt', { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
  });

  test('step 2: mount the bucket with --profile exomount and --endpoint-url', async () => {
    const r = await sosmount(['--profile', 'exomount', '--endpoint-url', server.endpoint, 'mybucket', 'mnt'], { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await isMountPoint(path.join(work, 'mnt')), 'mnt is a mount point');
  });

  test('step 3: cp backup.tgz mnt puts the object in the bucket when cp returns', async () => {
    const r = await sh('cp backup.tgz mnt', { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    const head = await server.client().send(new HeadObjectCommand({ Bucket: 'mybucket', Key: 'backup.tgz' }));
    assert.equal(head.ContentLength, 524288);
  });

  test('step 4: ls -l mnt shows the file with its size, mode and date', async () => {
    const r = await sh('ls -l mnt', { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^total \d+$/);
    assert.equal(lines.length, 2, r.stdout);
    assert.match(lines[1] ?? '', /^-rw-r--r-- 1 \S+ \S+ 524288 [A-Z][a-z]{2} [ \d]\d \d\d:\d\d backup\.tgz$/);
  });

  test('step 5: md5sum mnt/backup.tgz matches the original', async () => {
    const r = await sh('md5sum mnt/backup.tgz', { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${md5}  mnt/backup.tgz`);
  });

  test('the mount is private to the user who mounted it (no --allow-other): another user gets "Permission denied"', async () => {
    await chmod(work, 0o755);
    const asNobody = 'setpriv --reuid=65534 --regid=65534 --clear-groups';
    const parent = await sh(`${asNobody} ls`, { cwd: work, env });
    assert.equal(parent.code, 0, `the folder above the mount is readable to others: ${parent.stderr}`);
    const r = await sh(`${asNobody} ls mnt`, { cwd: work, env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied/);
  });

  test('step 6: rm mnt/backup.tgz says "Operation not permitted" and the object stays', async () => {
    const r = await sh('rm mnt/backup.tgz', { cwd: work, env });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim(), "rm: cannot remove 'mnt/backup.tgz': Operation not permitted");
    const body = await server.client().send(new GetObjectCommand({ Bucket: 'mybucket', Key: 'backup.tgz' }));
    const bytes = Buffer.from(await body.Body!.transformToByteArray());
    assert.equal(createHash('md5').update(bytes).digest('hex'), md5);
  });

  test('step 7: umount mnt ends the mount and its worker, leaving an empty folder', async () => {
    // The watchdog's arguments name our worker's pid and mount point.
    const watchdog = await sh(`pgrep -af 'sosmount-watchdog [0-9]+ ${path.join(work, 'mnt')}' || true`);
    const workerPid = /sosmount-watchdog (\d+) /.exec(watchdog.stdout)?.[1];
    assert.ok(workerPid, `no watchdog found: ${watchdog.stdout}`);
    const r = await sh('umount mnt', { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await isMountPoint(path.join(work, 'mnt')), false);
    assert.deepEqual(await readdir(path.join(work, 'mnt')), []);
    await waitFor('the worker to exit', async () => (await sh(`kill -0 ${workerPid}`)).code !== 0);
  });

  test('with --allow-delete, rm removes the object', async () => {
    const r = await sosmount(['--profile', 'exomount', '--endpoint-url', server.endpoint, '--allow-delete', 'mybucket', 'mnt'], { cwd: work, env });
    assert.equal(r.code, 0, r.stderr);
    const rm = await sh('rm mnt/backup.tgz && ls -A mnt', { cwd: work, env });
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout, '');
    await assert.rejects(server.client().send(new HeadObjectCommand({ Bucket: 'mybucket', Key: 'backup.tgz' })), /NotFound|404/);
    assert.equal((await sh('umount mnt', { cwd: work, env })).code, 0);
  });

  test('the mount point can be given as an absolute path and an empty subfolder', async () => {
    const dir = path.join(work, 'deep', 'mnt2');
    await mkdir(dir, { recursive: true });
    const r = await sosmount(['--profile', 'exomount', '--endpoint-url', server.endpoint, 'mybucket', dir], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await isMountPoint(dir));
    assert.equal((await sh(`umount ${dir}`)).code, 0);
  });
});
