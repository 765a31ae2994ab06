/**
 * The worker's log file (app/log.ts LogFile) and the check that keeps the
 * worker's own folders out of its mount point (app/worker/mount-point.ts).
 * Plain folders only: nothing here is mounted. The CLI-level tests (a log
 * folder inside the mount point refused, a mount's log flushed at exit) are
 * in cli.test.ts, beside the local S3 server and the fixture they need.
 */
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger, LogFile } from '../app/log.js';
import { checkFoldersOutsideMountPoint, realPathOfExistingPart } from '../app/worker/mount-point.js';
import { tempDir } from './helpers/processes.js';

async function scratch(t: TestContext): Promise<string> {
  const dir = await tempDir('logs');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The log's files, oldest first: `x.log.N` ... `x.log.1`, then `x.log`. */
async function filesOldestFirst(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  const rank = (n: string): number => {
    const m = /\.log\.(\d+)$/.exec(n);
    return m ? Number(m[1]) : 0;
  };
  return names.sort((a, b) => rank(b) - rank(a)).map((n) => path.join(dir, n));
}

async function records(files: string[]): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (const f of files) {
    const text = await readFile(f, 'utf8');
    assert.ok(text.endsWith('\n'), `${f} ends with a whole line`);
    for (const line of text.split('\n')) if (line !== '') out.push(JSON.parse(line) as Record<string, unknown>);
  }
  return out;
}

/** One ~110-byte line per i, so a 2 KiB file holds about 18. */
function writeLines(logFile: LogFile, from: number, to: number): void {
  const log = createLogger(logFile.sink, 'info', { mount: '/mnt/b' });
  for (let i = from; i < to; i++) log.info('line', { i, key: `photos/${String(i).padStart(5, '0')}.jpg` });
}

describe('the log file rotates by size', () => {
  test('with room for every line: all lines, in order, across several files of at most the size limit', async (t) => {
    const dir = path.join(await scratch(t), 'logs');
    const logFile = new LogFile(dir, { maxFileBytes: 2048, maxFiles: 100 });
    writeLines(logFile, 0, 400);
    await logFile.close();
    const files = await filesOldestFirst(dir);
    assert.ok(files.length >= 10, `rotated into several files: ${files.length}`);
    for (const f of files) assert.ok((await stat(f)).size <= 2048, `${f} is within the limit`);
    const got = (await records(files)).map((r) => r['i']);
    assert.deepEqual(got, Array.from({ length: 400 }, (_, i) => i));
    assert.equal(path.basename(files.at(-1)!), path.basename(logFile.file), 'the newest lines are in the file without a suffix');
  });

  test('with maxFiles 3: exactly 3 files remain, holding the newest lines in order up to the last', async (t) => {
    const dir = path.join(await scratch(t), 'logs');
    const logFile = new LogFile(dir, { maxFileBytes: 2048, maxFiles: 3 });
    writeLines(logFile, 0, 200);
    await logFile.flush();
    // Lines logged after a flush go on in the same rotation.
    writeLines(logFile, 200, 400);
    await logFile.close();
    const files = await filesOldestFirst(dir);
    assert.deepEqual(files.map((f) => path.basename(f)), [`${path.basename(logFile.file)}.2`, `${path.basename(logFile.file)}.1`, path.basename(logFile.file)]);
    const got = (await records(files)).map((r) => r['i'] as number);
    assert.ok(got.length > 18 && got.length < 400, `older files were dropped: ${got.length} lines kept`);
    const first = got[0]!;
    assert.deepEqual(got, Array.from({ length: 400 - first }, (_, k) => first + k), 'a gapless run ending with the last line');
  });

  test('a line longer than the limit is written whole, alone in its file', async (t) => {
    const dir = path.join(await scratch(t), 'logs');
    const logFile = new LogFile(dir, { maxFileBytes: 512, maxFiles: 10 });
    const log = createLogger(logFile.sink);
    log.info('before');
    log.info('big', { blob: 'x'.repeat(2000) });
    log.info('after');
    await logFile.close();
    const msgs = (await records(await filesOldestFirst(dir))).map((r) => r['msg']);
    assert.deepEqual(msgs, ['before', 'big', 'after']);
  });
});

describe('the log file never fails or holds up the caller', () => {
  test('a folder that cannot be created: logging does not throw, flush resolves, and once it can, a line says how many were lost', async (t) => {
    const root = await scratch(t);
    const blocker = path.join(root, 'blocker');
    await writeFile(blocker, 'a file where the log folder should be');
    const dir = path.join(blocker, 'logs');
    const logFile = new LogFile(dir);
    assert.doesNotThrow(() => writeLines(logFile, 0, 50));
    await logFile.flush();
    await rm(blocker);
    writeLines(logFile, 50, 51);
    await logFile.close();
    const recs = await records(await filesOldestFirst(dir));
    assert.deepEqual(recs.map((r) => r['msg']), ['log lines lost', 'line']);
    assert.equal(recs[0]!['lost'], 50);
    assert.match(String(recs[0]!['error']), /ENOTDIR|EEXIST|not a directory/);
    assert.equal(recs[1]!['i'], 50);
  });

  test('mayOpen answering false: the folder is never created and lines are dropped', async (t) => {
    const dir = path.join(await scratch(t), 'inside-a-mount-point', 'logs');
    const logFile = new LogFile(dir, { mayOpen: () => Promise.resolve(false) });
    writeLines(logFile, 0, 10);
    await logFile.close();
    writeLines(logFile, 10, 20);
    logFile.flushSync();
    await logFile.flush();
    await assert.rejects(stat(path.dirname(dir)), { code: 'ENOENT' });
  });

  test('flushSync (the crash path) appends what is queued at once, in order, and nothing twice', async (t) => {
    const dir = path.join(await scratch(t), 'logs');
    const logFile = new LogFile(dir);
    writeLines(logFile, 0, 3);
    await logFile.flush();
    writeLines(logFile, 3, 10);
    logFile.flushSync();
    const now = await records([logFile.file]);
    assert.deepEqual(now.map((r) => r['i']), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await logFile.close();
    assert.deepEqual((await records([logFile.file])).map((r) => r['i']), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('secret-looking fields are redacted in the file', async (t) => {
    const dir = path.join(await scratch(t), 'logs');
    const logFile = new LogFile(dir);
    createLogger(logFile.sink).info('signed', { secretAccessKey: 'hush-123', authorization: 'AWS4 hush-456', key: 'a.txt' });
    await logFile.close();
    const text = await readFile(logFile.file, 'utf8');
    assert.ok(!text.includes('hush'), text);
    assert.match(text, /"key":"a.txt"/);
  });
});

describe('folders the worker writes are refused inside the mount point', () => {
  test('a folder not created yet inside the mount point is refused, with what it is and both paths', async (t) => {
    const root = await scratch(t);
    const mnt = path.join(root, 'mnt');
    await mkdir(mnt);
    const problem = await checkFoldersOutsideMountPoint(mnt, [{ what: 'log folder', folder: path.join(mnt, 'a', 'logs') }]);
    assert.equal(problem?.code, 'folder-inside-mount-point');
    assert.equal(problem?.message.split('\n').length, 1);
    assert.match(problem!.message, new RegExp(`^the log folder ${path.join(mnt, 'a', 'logs')} is inside the mount point ${mnt}: `));
  });

  test('the mount point itself is refused, and so is a path through a symlink that leads inside', async (t) => {
    const root = await scratch(t);
    const mnt = path.join(root, 'mnt');
    await mkdir(mnt);
    await symlink(mnt, path.join(root, 'door'));
    const same = await checkFoldersOutsideMountPoint(mnt, [{ what: 'upload journal folder', folder: mnt }]);
    assert.match(same!.message, new RegExp(`^the upload journal folder ${mnt} is the mount point ${mnt}: `));
    const viaLink = await checkFoldersOutsideMountPoint(mnt, [{ what: 'log folder', folder: path.join(root, 'door', 'logs') }]);
    assert.match(viaLink!.message, new RegExp(`^the log folder ${path.join(root, 'door', 'logs')} \\(${path.join(mnt, 'logs')}\\) is inside the mount point`));
    // The mount point given through a link: the same folder by another name.
    const mntViaLink = await checkFoldersOutsideMountPoint(path.join(root, 'door'), [{ what: 'log folder', folder: path.join(mnt, 'logs') }]);
    assert.ok(mntViaLink, 'refused');
  });

  test('folders beside it, above it, or sharing a name prefix pass; the first bad one of several is named', async (t) => {
    const root = await scratch(t);
    const mnt = path.join(root, 'mnt');
    await mkdir(mnt);
    const fine = [
      { what: 'log folder', folder: path.join(root, 'logs') },
      { what: 'log folder', folder: root },
      { what: 'log folder', folder: `${mnt}2/logs` },
      { what: 'log folder', folder: path.join(mnt, '..', 'elsewhere') },
    ];
    for (const f of fine) assert.equal(await checkFoldersOutsideMountPoint(mnt, [f]), undefined, f.folder);
    const problem = await checkFoldersOutsideMountPoint(mnt, [...fine, { what: 'local cache folder', folder: path.join(mnt, 'cache') }]);
    assert.equal(problem?.what, 'local cache folder');
  });

  test('realPathOfExistingPart follows the links of what exists and keeps the missing rest', async (t) => {
    const root = await scratch(t);
    await mkdir(path.join(root, 'real'));
    await symlink(path.join(root, 'real'), path.join(root, 'link'));
    const rootReal = await realPathOfExistingPart(root);
    assert.equal(await realPathOfExistingPart(path.join(root, 'link', 'x', 'y')), path.join(rootReal, 'real', 'x', 'y'));
    assert.equal(await realPathOfExistingPart('/no-such-top-folder/a'), '/no-such-top-folder/a');
  });
});
