/**
 * Editing mode's units, fast: the upload queue (app/data/write-back.ts),
 * conflict names (app/fs/conflict-name.ts), folder renames key by key
 * (app/fs/folder-rename.ts) over the in-memory bucket, and the fs model in
 * editing mode over the in-memory bucket with a real staging area in a
 * temp folder. The queue's timers are node:test's mock timers, so the
 * quiet period is checked without sleeping; the fs model's tests wait for
 * conditions (an object in the bucket). A short sleep appears only where a
 * wrong order (a rename not waiting for an upload) needs a chance to show.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { constants as fsConstants } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WriteBack, type WriteBackConfig } from '../app/data/write-back.js';
import { conflictName } from '../app/fs/conflict-name.js';
import { MAX_NAME_BYTES } from '../app/fs/names.js';
import { FolderRenameError, renameFolderKeys, type FolderRenameJob } from '../app/fs/folder-rename.js';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import { S3RequestError } from '../app/s3/errors.js';
import type { CopyOptions, ListPage, ListRequest, WriteConditions } from '../app/s3/object-client.js';
import { StagingArea } from '../app/data/staging.js';
import { S3FileSystem, type FsConfig, type FsEvents, type RenameProgress } from '../app/fs/filesystem.js';
import { FsError, type ErrnoName } from '../app/fs/errno.js';

/** The staging folder's files but its lock (one worker per folder). */
async function stageFiles(directory: string): Promise<string[]> {
  // Uploaded stages' files go in the background (removeSoon).
  await Promise.all(areas.map((a) => a.removalsSettled()));
  return (await readdir(directory)).filter((n) => n !== 'lock');
}

const MiB = 1024 * 1024;
const { O_RDWR, O_WRONLY, O_APPEND } = fsConstants;
/** renameat2 flags (linux/fs.h), as libfuse 3 passes them. */
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

/** Lets every ready promise chain run (setImmediate is not mocked). */
async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

function isErrno(errno: ErrnoName): (err: unknown) => boolean {
  return (err: unknown) => err instanceof FsError && err.errno === errno;
}

// ---- write-back.ts ----

interface Item { name: string }

/**
 * The job of a queue under test: records every run, counts runs at once (in
 * all and per item), holds runs until the test releases them, and fails
 * chosen runs.
 */
class JobRecorder {
  readonly runs: string[] = [];
  active = 0;
  maxActive = 0;
  readonly activeByItem = new Map<string, number>();
  maxActiveOfOneItem = 0;
  /** Runs wait on these while they are set, by item name. */
  readonly holds = new Map<string, Promise<void>>();
  /** Thrown by the item's nth run (1-based), keyed `name#n`. */
  readonly failures = new Map<string, Error>();

  readonly job = async (item: Item): Promise<void> => {
    this.runs.push(item.name);
    const run = this.count(item.name);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const mine = (this.activeByItem.get(item.name) ?? 0) + 1;
    this.activeByItem.set(item.name, mine);
    this.maxActiveOfOneItem = Math.max(this.maxActiveOfOneItem, mine);
    try {
      const hold = this.holds.get(item.name);
      if (hold) await hold;
      const failure = this.failures.get(`${item.name}#${run}`);
      if (failure) throw failure;
    } finally {
      this.active--;
      this.activeByItem.set(item.name, (this.activeByItem.get(item.name) ?? 1) - 1);
    }
  };

  /** Holds the item's runs from now on; returns the release. */
  hold(name: string): () => void {
    const d = deferred();
    this.holds.set(name, d.promise);
    return () => {
      if (this.holds.get(name) === d.promise) this.holds.delete(name);
      d.resolve();
    };
  }

  count(name: string): number {
    return this.runs.filter((n) => n === name).length;
  }
}

function queue(t: TestContext, config: Partial<WriteBackConfig> = {}): { wb: WriteBack<Item>; jobs: JobRecorder; advance(ms: number): Promise<void> } {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const jobs = new JobRecorder();
  const wb = new WriteBack<Item>(jobs.job, { delayMs: 100, concurrency: 4, ...config });
  return {
    wb,
    jobs,
    advance: async (ms: number) => {
      await settleMicrotasks();
      t.mock.timers.tick(ms);
      await settleMicrotasks();
    },
  };
}

describe('upload queue (write-back)', () => {
  test('the quiet period starts over at every schedule(): one run, delayMs after the last one', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 100 });
    const a = { name: 'a' };
    wb.schedule(a);
    await advance(80);
    wb.schedule(a);
    await advance(80);
    assert.deepEqual(jobs.runs, [], '160 ms after the first schedule, but only 80 after the last');
    assert.ok(wb.has(a));
    await advance(20);
    assert.deepEqual(jobs.runs, ['a']);
    await advance(1000);
    assert.deepEqual(jobs.runs, ['a'], 'once');
    assert.equal(wb.pending, 0);
    assert.equal(wb.has(a), false);
  });

  test('a delay given to schedule() replaces the configured one for that run', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 100 });
    wb.schedule({ name: 'soon' }, 5);
    await advance(5);
    assert.deepEqual(jobs.runs, ['soon']);
  });

  test('at most `concurrency` jobs run at once, timer runs and runNow together, and every item runs', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 10, concurrency: 3 });
    const items = Array.from({ length: 10 }, (_, i) => ({ name: `i${i}` }));
    const releases = items.map((i) => jobs.hold(i.name));
    for (const i of items.slice(0, 8)) wb.schedule(i);
    const now = [wb.runNow(items[8]!), wb.runNow(items[9]!)];
    await advance(10);
    assert.equal(jobs.active, 3);
    for (let k = 0; k < items.length; k++) {
      // Release in an order unrelated to the start order: whichever is held.
      const running = [...jobs.activeByItem].filter(([, n]) => n > 0).map(([name]) => name);
      const name = running[k % running.length]!;
      releases[items.findIndex((i) => i.name === name)]!();
      await advance(0);
      assert.ok(jobs.active <= 3, `${jobs.active} jobs at once`);
      assert.equal(jobs.active, Math.min(3, items.length - k - 1), 'a freed slot is taken at once');
    }
    await Promise.all(now);
    assert.equal(jobs.maxActive, 3);
    assert.deepEqual([...jobs.runs].sort(), items.map((i) => i.name).sort());
    assert.equal(wb.pending, 0);
  });

  test('runNow waits for the running job, then runs the job again and rejects with that run\'s error', async (t) => {
    const errors: unknown[] = [];
    const { wb, jobs, advance } = queue(t, { delayMs: 0, onError: (_i, err) => errors.push(err) });
    const a = { name: 'a' };
    const release = jobs.hold('a');
    wb.schedule(a);
    await advance(0);
    assert.equal(jobs.count('a'), 1);
    let outcome: string | undefined;
    const now = wb.runNow(a).then(() => { outcome = 'resolved'; }, (err: Error) => { outcome = err.message; });
    await advance(0);
    assert.equal(jobs.count('a'), 1, 'not while the first run holds the item');
    assert.equal(outcome, undefined);
    jobs.failures.set('a#2', new Error('second run failed'));
    release();
    await now;
    assert.equal(outcome, 'second run failed');
    assert.equal(jobs.count('a'), 2);
    assert.equal(jobs.maxActiveOfOneItem, 1);
    assert.deepEqual(errors, [], 'the caller of runNow is told, not onError');
    assert.equal(wb.pending, 0);
  });

  test('runNow of an idle item runs at once and resolves with it; a scheduled timer is dropped', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 100 });
    const a = { name: 'a' };
    wb.schedule(a);
    await wb.runNow(a);
    assert.deepEqual(jobs.runs, ['a']);
    await advance(200);
    assert.deepEqual(jobs.runs, ['a'], 'the quiet period\'s run was replaced, not added');
  });

  test('a schedule() during a running job runs it once more after the job, never twice at once', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 50 });
    const a = { name: 'a' };
    const release = jobs.hold('a');
    wb.schedule(a);
    await advance(50);
    wb.schedule(a);
    wb.schedule(a);
    await advance(500);
    assert.equal(jobs.count('a'), 1, 'the follow-up waits for the run');
    release();
    await advance(0);
    assert.equal(jobs.count('a'), 1, 'the follow-up has its own quiet period');
    await advance(50);
    assert.equal(jobs.count('a'), 2, 'one follow-up for both schedules');
    await advance(500);
    assert.equal(jobs.count('a'), 2);
    assert.equal(jobs.maxActiveOfOneItem, 1);
    assert.equal(wb.pending, 0);
  });

  test('cancel() forgets a scheduled item; during a run it drops the follow-up', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 50 });
    const a = { name: 'a' };
    const b = { name: 'b' };
    wb.schedule(a);
    wb.cancel(a);
    assert.equal(wb.has(a), false);
    assert.equal(wb.pending, 0);
    await advance(100);
    assert.deepEqual(jobs.runs, []);

    const release = jobs.hold('b');
    wb.schedule(b);
    await advance(50);
    wb.schedule(b);
    wb.cancel(b);
    assert.equal(wb.has(b), true, 'a running job is still pending until it ends');
    release();
    await advance(100);
    assert.deepEqual(jobs.runs, ['b']);
    assert.equal(wb.pending, 0);
  });

  test('drain() runs scheduled items now, whatever their delay, and waits for them and their follow-ups', async (t) => {
    const { wb, jobs } = queue(t, { delayMs: 3_600_000 });
    const a = { name: 'a' };
    const b = { name: 'b' };
    // a's first run is scheduled again meanwhile (a program wrote and closed during the upload).
    const release = jobs.hold('a');
    wb.schedule(a);
    wb.schedule(b);
    let drained = false;
    const drain = wb.drain().then(() => { drained = true; });
    await settleMicrotasks();
    assert.deepEqual([...jobs.runs].sort(), ['a', 'b'], 'both now, not in an hour');
    wb.schedule(a);
    assert.equal(drained, false);
    release();
    await drain;
    assert.equal(jobs.count('a'), 2, 'the follow-up ran before drain() resolved');
    assert.equal(wb.pending, 0);
  });

  test('onPendingChanged counts items scheduled or running, down to 0', async (t) => {
    const counts: number[] = [];
    const { wb, jobs, advance } = queue(t, { delayMs: 10, onPendingChanged: (n) => counts.push(n) });
    const a = { name: 'a' };
    const b = { name: 'b' };
    const c = { name: 'c' };
    const releaseA = jobs.hold('a');
    const releaseB = jobs.hold('b');
    wb.schedule(a);
    wb.schedule(b);
    wb.schedule(a);
    wb.schedule(c);
    wb.cancel(c);
    assert.deepEqual(counts, [1, 2, 3, 2]);
    await advance(10);
    assert.equal(wb.pending, 2, 'running items are pending');
    releaseA();
    await advance(0);
    releaseB();
    await advance(0);
    assert.deepEqual(counts, [1, 2, 3, 2, 1, 0]);
  });

  test('onError is told the item and error of a failed timer run, follow-ups included', async (t) => {
    const errors: Array<[string, string]> = [];
    const { wb, jobs, advance } = queue(t, { delayMs: 10, onError: (i, err) => errors.push([(i as Item).name, (err as Error).message]) });
    const a = { name: 'a' };
    jobs.failures.set('a#1', new Error('first'));
    wb.schedule(a);
    await advance(10);
    assert.deepEqual(errors, [['a', 'first']]);
    assert.equal(wb.pending, 0, 'a failed run is not retried by the queue itself');
    const release = jobs.hold('a');
    wb.schedule(a);
    await advance(10);
    wb.schedule(a);
    release();
    await advance(0);
    assert.equal(jobs.count('a'), 2);
    assert.deepEqual(errors, [['a', 'first']], 'the second run ended well');
    jobs.failures.set('a#3', new Error('follow-up'));
    await advance(10);
    assert.equal(jobs.count('a'), 3);
    assert.deepEqual(errors, [['a', 'first'], ['a', 'follow-up']]);
  });
});

describe('upload queue (write-back): hurry', () => {
  test('hurry() ends a quiet period at once; a retry\'s backoff, a running job and an unknown item are left alone', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 100 });
    const a = { name: 'a' };
    const b = { name: 'b' };
    wb.schedule(a);
    wb.schedule(b, 100);
    wb.hurry(a);
    wb.hurry(b);
    wb.hurry({ name: 'never scheduled' });
    await advance(0);
    assert.deepEqual(jobs.runs, ['a'], 'a ran at once; b waits out its backoff');
    assert.equal(wb.has({ name: 'never scheduled' }), false);
    await advance(100);
    assert.deepEqual(jobs.runs, ['a', 'b']);
    const release = jobs.hold('a');
    wb.schedule(a);
    wb.hurry(a);
    await advance(0);
    wb.schedule(a);
    wb.hurry(a);
    await advance(0);
    assert.equal(jobs.count('a'), 2, 'never two runs of one item at once');
    release();
    await advance(100);
    assert.equal(jobs.count('a'), 3, 'the follow-up of the schedule() during the run');
  });
});

describe('upload queue (write-back): runNow after a running job', () => {
  test('the run runNow starts once the running job ended is tracked: has(), pending, settle() and drain() wait for it', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 0 });
    const a = { name: 'a' };
    const releaseFirst = jobs.hold('a');
    wb.schedule(a);
    await advance(0);
    const now = wb.runNow(a);
    const releaseSecond = jobs.hold('a');
    releaseFirst();
    await advance(0);
    assert.equal(jobs.count('a'), 2, 'runNow\'s run started');
    assert.equal(jobs.active, 1);
    assert.equal(wb.has(a), true, 'has() while runNow\'s run is under way');
    assert.equal(wb.pending, 1);
    let settled = false;
    let drained = false;
    const settle = wb.settle(a).then(() => { settled = true; });
    const drain = wb.drain().then(() => { drained = true; });
    await advance(0);
    assert.equal(settled, false, 'settle() waits for runNow\'s run');
    assert.equal(drained, false, 'drain() waits for runNow\'s run');
    releaseSecond();
    await Promise.all([now, settle, drain]);
  });

  test('a schedule() during the run runNow started waits for it: never two runs of one item at once', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 0 });
    const a = { name: 'a' };
    const releaseFirst = jobs.hold('a');
    wb.schedule(a);
    await advance(0);
    const now = wb.runNow(a);
    const releaseSecond = jobs.hold('a');
    releaseFirst();
    await advance(0);
    assert.equal(jobs.count('a'), 2, 'runNow\'s run started');
    wb.schedule(a);
    await advance(0);
    assert.equal(jobs.maxActiveOfOneItem, 1, 'a second run of the item started while runNow\'s ran');
    releaseSecond();
    await now;
    await advance(0);
    assert.equal(jobs.count('a'), 3, 'the schedule() still runs, after');
  });

  test('a schedule() while runNow waits for a running job never starts a second run of the item at once', async (t) => {
    const { wb, jobs, advance } = queue(t, { delayMs: 0 });
    const a = { name: 'a' };
    const releaseFirst = jobs.hold('a');
    wb.schedule(a);
    await advance(0);
    const now = wb.runNow(a);
    // The running job (or a program's close meanwhile) schedules the item again.
    wb.schedule(a);
    const releaseSecond = jobs.hold('a');
    releaseFirst();
    await advance(0);
    await advance(0);
    assert.equal(jobs.maxActiveOfOneItem, 1, `${jobs.maxActiveOfOneItem} runs of one item at once`);
    releaseSecond();
    await now;
    await wb.drain();
  });
});

// ---- conflict-name.ts ----

describe('conflict names', () => {
  // Local time: the name shows the time as the user's clock reads it.
  const at = new Date(2026, 11, 6, 22, 15, 30);
  const mark = ' (conflict 2026-12-06 221530)';

  test('the mark goes before the extension, in local time', () => {
    assert.equal(conflictName('report.pdf', at), `report${mark}.pdf`);
    assert.equal(conflictName('report.pdf', new Date(2026, 0, 2, 3, 4, 5)), 'report (conflict 2026-01-02 030405).pdf', 'zero-padded');
  });

  test('a second conflict in the same second is numbered', () => {
    assert.equal(conflictName('report.pdf', at, 2), 'report (conflict 2026-12-06 221530 2).pdf');
    assert.equal(conflictName('report.pdf', at, 1), conflictName('report.pdf', at));
  });

  test('a leading dot is a hidden file, not an extension; no extension puts the mark last', () => {
    assert.equal(conflictName('.bashrc', at), `.bashrc${mark}`);
    assert.equal(conflictName('Makefile', at), `Makefile${mark}`);
    assert.equal(conflictName('trailing.', at), `trailing.${mark}`);
  });

  test('a compressed tar keeps both parts of its extension after the mark; other double extensions keep the last', () => {
    assert.equal(conflictName('archive.tar.gz', at), `archive${mark}.tar.gz`);
    assert.equal(conflictName('backup.TAR.ZST', at), `backup${mark}.TAR.ZST`);
    assert.equal(conflictName('notes.v2.txt', at), `notes.v2${mark}.txt`);
  });

  test('a 250-byte name is shortened to at most 255 bytes, keeping the mark and the extension', () => {
    const name = `${'a'.repeat(246)}.pdf`;
    assert.equal(Buffer.byteLength(name), 250);
    const got = conflictName(name, at, 12);
    assert.ok(Buffer.byteLength(got) <= MAX_NAME_BYTES, `${Buffer.byteLength(got)} bytes`);
    assert.ok(got.endsWith(' (conflict 2026-12-06 221530 12).pdf'), got);
    assert.ok(got.startsWith('aaaa'));
  });

  test('shortening cuts whole characters, never half of a multi-byte one', () => {
    const name = `${'é'.repeat(60)}${'😀'.repeat(30)}.txt`;
    const got = conflictName(name, at);
    assert.ok(Buffer.byteLength(got) <= MAX_NAME_BYTES);
    assert.ok(got.endsWith(`${mark}.txt`));
    assert.ok(!got.includes('\uFFFD'));
    assert.equal(Buffer.from(got).toString(), got, 'valid UTF-8 all through');
    assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(got), 'no lone surrogate');
  });
});

// ---- folder-rename.ts ----

type RenameClient = FolderRenameJob['client'];

/** The in-memory bucket, with copies that fail after `copiesBeforeFailure` and deletes that fail for chosen keys. */
class FlakyRenameClient implements RenameClient {
  copiesBeforeFailure = Number.POSITIVE_INFINITY;
  copies = 0;
  /** Key to the number of its deletes that fail (Infinity: all). */
  readonly deleteFailures = new Map<string, number>();
  readonly deleteAttempts = new Map<string, number>();

  constructor(readonly inner: MemoryObjectClient) {}

  listObjects(req: ListRequest): Promise<ListPage> {
    return this.inner.listObjects(req);
  }

  async copyObject(sourceKey: string, destKey: string, opts?: CopyOptions): Promise<{ etag: string }> {
    if (this.copies >= this.copiesBeforeFailure) {
      throw new S3RequestError('AccessDenied', { operation: 'CopyObject', bucket: this.inner.bucket, key: sourceKey, status: 403, code: 'AccessDenied' }, 'injected: access denied');
    }
    this.copies++;
    return this.inner.copyObject(sourceKey, destKey, opts);
  }

  async deleteObject(key: string): Promise<void> {
    const attempt = (this.deleteAttempts.get(key) ?? 0) + 1;
    this.deleteAttempts.set(key, attempt);
    if (attempt <= (this.deleteFailures.get(key) ?? 0)) {
      throw new S3RequestError('ServerError', { operation: 'DeleteObject', bucket: this.inner.bucket, key, status: 503, code: 'SlowDown' }, 'injected: slow down');
    }
    return this.inner.deleteObject(key);
  }
}

function bucketOf(keys: readonly string[]): MemoryObjectClient {
  const m = new MemoryObjectClient();
  for (const k of keys) m.put(k, `body of ${k}`);
  return m;
}

/**
 * After a rename that stopped: each original key is under exactly one of
 * its names (both only for `underBoth`), with its content; returns how many
 * are under the new name only.
 */
function checkSplit(m: MemoryObjectClient, keys: readonly string[], from: string, to: string, underBoth: readonly string[] = []): number {
  let movedOnly = 0;
  for (const k of keys) {
    const newKey = to + k.slice(from.length);
    const atOld = m.objects.get(k);
    const atNew = m.objects.get(newKey);
    if (underBoth.includes(k)) {
      assert.ok(atOld && atNew, `${k} is under both names`);
    } else {
      assert.ok((atOld === undefined) !== (atNew === undefined), `${k} is under exactly one name (old: ${atOld !== undefined}, new: ${atNew !== undefined})`);
      if (atNew) movedOnly++;
    }
    assert.equal((atOld ?? atNew)!.body.toString(), `body of ${k}`);
    if (atNew) assert.equal(atNew.body.toString(), `body of ${k}`);
  }
  return movedOnly;
}

describe('folder rename key by key', () => {
  const keysUnder = (m: MemoryObjectClient, prefix: string): string[] => [...m.objects.keys()].filter((k) => k.startsWith(prefix)).sort();

  test('every key under the prefix moves with its content, past one listing page; keys beside it stay; progress ends at (total, total)', async () => {
    const keys = ['a/', ...Array.from({ length: 1200 }, (_, i) => `a/k${String(i).padStart(4, '0')}`), 'a/sub/deep', 'a/sub/'];
    const m = bucketOf([...keys, 'ab/beside', 'a']);
    const progress: Array<[number, number]> = [];
    const result = await renameFolderKeys({
      client: m, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 8, onProgress: (done, total) => progress.push([done, total]),
    });
    assert.deepEqual(result, { total: keys.length, moved: keys.length });
    assert.deepEqual(keysUnder(m, 'a/'), []);
    assert.deepEqual(keysUnder(m, 'b/'), keys.map((k) => `b/${k.slice(2)}`).sort());
    for (const k of keys) assert.equal(m.objects.get(`b/${k.slice(2)}`)!.body.toString(), `body of ${k}`);
    assert.equal(m.objects.get('ab/beside')?.body.toString(), 'body of ab/beside');
    assert.equal(m.objects.get('a')?.body.toString(), 'body of a');
    assert.equal(m.requestCounts.get('CopyObject'), keys.length);
    assert.deepEqual(progress.at(-1), [keys.length, keys.length]);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]![0] >= progress[i - 1]![0], 'progress never goes back');
  });

  test('keys whose content is staged under the new name are deleted, not copied', async () => {
    const keys = ['a/one', 'a/staged', 'a/two'];
    const m = bucketOf(keys);
    const result = await renameFolderKeys({ client: m, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 2, deleteOnly: new Set(['a/staged']) });
    assert.deepEqual(result, { total: 3, moved: 3 });
    assert.deepEqual(keysUnder(m, 'a/'), []);
    assert.deepEqual(keysUnder(m, 'b/'), ['b/one', 'b/two']);
    assert.equal(m.requestCounts.get('CopyObject'), 2);
    assert.equal(m.requestCounts.get('DeleteObject'), 3);
  });

  test('an empty prefix renames nothing and reports (0, 0)', async () => {
    const m = bucketOf(['elsewhere']);
    const progress: Array<[number, number]> = [];
    assert.deepEqual(await renameFolderKeys({ client: m, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 4, onProgress: (d, t) => progress.push([d, t]) }), { total: 0, moved: 0 });
    assert.deepEqual(progress, [[0, 0]]);
  });

  test('a copy refused half way stops the rename: FolderRenameError says how many moved, and each object is under exactly one name', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `a/k${String(i).padStart(2, '0')}`);
    const m = bucketOf(keys);
    const c = new FlakyRenameClient(m);
    c.copiesBeforeFailure = 7;
    const progress: Array<[number, number]> = [];
    const err = await renameFolderKeys({ client: c, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 4, onProgress: (d, t) => progress.push([d, t]) })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof FolderRenameError, String(err));
    assert.equal(err.total, 20);
    assert.equal(err.moved, 7);
    assert.deepEqual(err.underBoth, []);
    assert.ok(err.cause instanceof S3RequestError && err.cause.kind === 'AccessDenied');
    assert.match(err.message, /stopped after 7 of 20 objects: 7 are under b\/, 13 still under a\//);
    assert.equal(checkSplit(m, keys, 'a/', 'b/'), 7);
    assert.equal(keysUnder(m, 'b/').length, 7);
    assert.equal(keysUnder(m, 'a/').length, 13);
    assert.deepEqual(progress.at(-1), [7, 20]);
  });

  test('a delete that keeps failing leaves that key under both names, reported; the others are under one', async () => {
    const keys = Array.from({ length: 10 }, (_, i) => `a/k${i}`);
    const m = bucketOf(keys);
    const c = new FlakyRenameClient(m);
    c.deleteFailures.set('a/k5', Number.POSITIVE_INFINITY);
    const err = await renameFolderKeys({
      client: c, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 3, deleteAttempts: 3, deleteRetryDelayMs: 1,
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof FolderRenameError, String(err));
    assert.deepEqual(err.underBoth, ['a/k5']);
    assert.equal(c.deleteAttempts.get('a/k5'), 3);
    assert.match(err.message, /1 under both \(a\/k5\)/);
    const movedOnly = checkSplit(m, keys, 'a/', 'b/', ['a/k5']);
    assert.equal(err.moved, movedOnly);
    assert.equal(err.total, 10);
  });

  test('a delete that fails once is retried and the rename completes', async () => {
    const keys = ['a/x', 'a/y'];
    const m = bucketOf(keys);
    const c = new FlakyRenameClient(m);
    c.deleteFailures.set('a/y', 1);
    assert.deepEqual(await renameFolderKeys({ client: c, fromPrefix: 'a/', toPrefix: 'b/', concurrency: 2, deleteRetryDelayMs: 1 }), { total: 2, moved: 2 });
    assert.equal(c.deleteAttempts.get('a/y'), 2);
    assert.deepEqual(keysUnder(m, 'a/'), []);
  });
});

// ---- the fs model in editing mode ----

const EDIT_CONFIG: Omit<FsConfig, 'staging'> = {
  prefix: '', readOnly: false, allowDelete: true, allowOverwrite: true, uid: 1000, gid: 1000,
  fileMode: 0o644, dirMode: 0o755, metadataTtlMs: 1000, negativeMetadataTtlMs: 1000,
  readPartSizeBytes: 8 * MiB, writePartSizeBytes: 8 * MiB, maxPartsInFlight: 4, prefetchBudgetBytes: 64 * MiB,
  allowEdit: true, maxUploadsInFlight: 4,
};
/** Long enough that nothing uploads before drain() or fsync, unless a test says otherwise. */
const HOUR_MS = 3_600_000;

let root: string;
const areas: StagingArea[] = [];
const mounts: S3FileSystem[] = [];
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'sos-editing-units-'));
});
after(async () => {
  // A test that failed half way may leave an upload scheduled an hour ahead: its timer must not hold the process.
  await Promise.all(mounts.map((fs) => fs.drain({ abandonUploads: true })));
  await Promise.all(areas.map((a) => a.close()));
  await rm(root, { recursive: true, force: true });
});

let areaCount = 0;
async function editingFs(options: { uploadDelayMs?: number; events?: FsEvents; now?: () => number; client?: MemoryObjectClient } = {}): Promise<{
  fs: S3FileSystem; client: MemoryObjectClient; stagingDirectory: string;
}> {
  const client = options.client ?? new MemoryObjectClient();
  const stagingDirectory = path.join(root, `area-${++areaCount}`);
  const staging = new StagingArea({ directory: stagingDirectory, spares: 0 });
  areas.push(staging);
  await staging.open();
  const fs = new S3FileSystem(client, { ...EDIT_CONFIG, staging, uploadDelayMs: options.uploadDelayMs ?? HOUR_MS }, {
    ...(options.events ? { events: options.events } : {}),
    ...(options.now ? { clock: { now: options.now } } : {}),
  });
  mounts.push(fs);
  return { fs, client, stagingDirectory };
}

/** create, write, close: the way `echo text > file` reaches the model. */
async function writeNew(fs: S3FileSystem, p: string, text: string): Promise<void> {
  const fd = await fs.create(p, O_WRONLY);
  await fs.write(p, fd, Buffer.from(text), 0);
  await fs.flush(p, fd);
  await fs.release(p, fd);
}

/** An existing file opened for writing, `text` written, the bucket changed by `meanwhile`, then closed and every upload done. */
async function editWhileChanged(fs: S3FileSystem, p: string, text: string, meanwhile: () => unknown): Promise<void> {
  const fd = await fs.open(p, O_RDWR);
  await fs.write(p, fd, Buffer.from(text), 0);
  await meanwhile();
  await fs.flush(p, fd);
  await fs.release(p, fd);
  await fs.drain();
}

async function readWhole(fs: S3FileSystem, p: string): Promise<string> {
  const size = (await fs.getattr(p)).size;
  const fd = await fs.open(p, 0);
  const buf = Buffer.alloc(size);
  const n = await fs.read(p, fd, buf, size, 0);
  await fs.release(p, fd);
  return buf.subarray(0, n).toString();
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const body = (c: MemoryObjectClient, key: string): string | undefined => c.objects.get(key)?.body.toString();
const requests = (c: MemoryObjectClient, op: string): number => c.requestCounts.get(op) ?? 0;

/** Holds PutObject requests while `holding`, as a slow upload would be; the rest goes straight through. */
class HeldPutClient extends MemoryObjectClient {
  holding = true;
  held = 0;
  private readonly gates: Array<() => void> = [];

  override async putObject(key: string, body: Uint8Array, opts: WriteConditions = {}): Promise<{ etag: string }> {
    if (this.holding) {
      this.held++;
      await new Promise<void>((r) => this.gates.push(r));
      this.held--;
    }
    return super.putObject(key, body, opts);
  }

  releaseOne(): void {
    this.gates.shift()?.();
  }

  releaseAll(): void {
    this.holding = false;
    for (const g of this.gates.splice(0)) g();
  }
}

describe('fs model in editing mode', () => {
  test('a new file is staged at close and uploaded after the quiet period; the stage is then removed', async () => {
    const { fs, client, stagingDirectory } = await editingFs({ uploadDelayMs: 0 });
    await writeNew(fs, '/new.txt', 'hello');
    assert.equal((await fs.getattr('/new.txt')).size, 5);
    await waitFor(() => body(client, 'new.txt') === 'hello', 'the upload of new.txt');
    await waitFor(() => fs.uploadsInProgress === 0, 'the upload to end');
    assert.equal(requests(client, 'PutObject'), 1);
    assert.equal((await fs.getattr('/new.txt')).size, 5);
    assert.equal(await readWhole(fs, '/new.txt'), 'hello');
    assert.deepEqual(await stageFiles(stagingDirectory), []);
  });

  test('a file created in the same folder ends the quiet period of the files closed there before it, not of others', async () => {
    const { fs, client } = await editingFs();
    await fs.mkdir('/other');
    await writeNew(fs, '/other/elsewhere.txt', 'e');
    await writeNew(fs, '/a.txt', 'first');
    // The same name created again: the program is still at that file.
    await writeNew(fs, '/a.txt', 'second');
    await sleep(20);
    assert.equal(requests(client, 'PutObject'), 1, 'only the folder object: the files wait out their hour');
    // A new name in the folder: a program that moved on (cp -r, a file manager's copy) renames nothing it closed.
    await writeNew(fs, '/b.txt', 'b');
    await waitFor(() => body(client, 'a.txt') === 'second', 'the upload of a.txt');
    await sleep(20);
    assert.equal(body(client, 'b.txt'), undefined, 'b.txt waits for its own quiet period');
    assert.equal(body(client, 'other/elsewhere.txt'), undefined, 'another folder\'s file waits too');
    assert.equal(requests(client, 'PutObject'), 2, 'a.txt was uploaded once, with its second content');
  });

  test('open O_RDWR of a stored file and a write at an offset store the old bytes with the patch', async () => {
    const { fs, client } = await editingFs();
    client.put('doc.txt', 'hello world');
    const fd = await fs.open('/doc.txt', O_RDWR);
    assert.equal(await fs.write('/doc.txt', fd, Buffer.from('WORLD'), 6), 5);
    const got = Buffer.alloc(11);
    assert.equal(await fs.read('/doc.txt', fd, got, 11, 0), 11);
    assert.equal(got.toString(), 'hello WORLD');
    await fs.flush('/doc.txt', fd);
    await fs.release('/doc.txt', fd);
    assert.equal(body(client, 'doc.txt'), 'hello world', 'not before the quiet period');
    await fs.drain();
    assert.equal(body(client, 'doc.txt'), 'hello WORLD');
  });

  test('an O_APPEND write at the end adds to the stored bytes', async () => {
    const { fs, client } = await editingFs();
    client.put('log.txt', 'line1\n');
    const fd = await fs.open('/log.txt', O_WRONLY | O_APPEND);
    // The kernel turns an O_APPEND write into one at the current size.
    const end = (await fs.getattr('/log.txt')).size;
    assert.equal(end, 6);
    await fs.write('/log.txt', fd, Buffer.from('line2\n'), end);
    assert.equal((await fs.getattr('/log.txt')).size, 12);
    await fs.flush('/log.txt', fd);
    await fs.release('/log.txt', fd);
    await fs.drain();
    assert.equal(body(client, 'log.txt'), 'line1\nline2\n');
  });

  test('truncate of a stored file with no handle open uploads it shorter, empty, or padded with zeros', async () => {
    const { fs, client } = await editingFs();
    for (const k of ['short', 'empty', 'long']) client.put(k, '0123456789');
    await fs.truncate('/short', 4);
    await fs.truncate('/empty', 0);
    await fs.truncate('/long', 12);
    assert.equal((await fs.getattr('/short')).size, 4);
    assert.equal((await fs.getattr('/empty')).size, 0);
    assert.equal((await fs.getattr('/long')).size, 12);
    await fs.drain();
    assert.equal(body(client, 'short'), '0123');
    assert.equal(body(client, 'empty'), '');
    assert.deepEqual(client.objects.get('long')?.body, Buffer.concat([Buffer.from('0123456789'), Buffer.alloc(2)]));
  });

  test('a staged file renamed before its upload is uploaded under the new name only', async () => {
    const { fs, client } = await editingFs();
    await writeNew(fs, '/draft.tmp', 'content');
    await fs.rename('/draft.tmp', '/final.txt');
    await assert.rejects(fs.getattr('/draft.tmp'), isErrno('ENOENT'));
    assert.equal((await fs.getattr('/final.txt')).size, 7);
    await fs.drain();
    assert.equal(body(client, 'final.txt'), 'content');
    assert.equal(client.objects.has('draft.tmp'), false);
    assert.equal(requests(client, 'PutObject'), 1);
    assert.equal(requests(client, 'CopyObject'), 0);
    assert.equal(requests(client, 'DeleteObject'), 0);
  });

  test('a temporary file renamed over a stored file replaces it with one upload (an editor\'s save)', async () => {
    const { fs, client } = await editingFs();
    client.put('doc', 'old version');
    await fs.getattr('/doc');
    await writeNew(fs, '/.doc.swp', 'new version');
    await fs.rename('/.doc.swp', '/doc');
    assert.equal((await fs.getattr('/doc')).size, 11);
    await fs.drain();
    assert.equal(body(client, 'doc'), 'new version');
    assert.equal(client.objects.has('.doc.swp'), false);
    assert.equal(requests(client, 'PutObject'), 1);
    assert.equal(requests(client, 'CopyObject'), 0);
  });

  test('a stored file is renamed by a server-side copy and a delete', async () => {
    const { fs, client } = await editingFs();
    client.put('old.txt', 'stored bytes');
    const etag = client.objects.get('old.txt')!.etag;
    await fs.rename('/old.txt', '/new.txt');
    assert.equal(body(client, 'new.txt'), 'stored bytes');
    assert.equal(client.objects.get('new.txt')!.etag, etag);
    assert.equal(client.objects.has('old.txt'), false);
    assert.deepEqual([requests(client, 'CopyObject'), requests(client, 'DeleteObject'), requests(client, 'PutObject')], [1, 1, 0]);
    await assert.rejects(fs.getattr('/old.txt'), isErrno('ENOENT'));
    assert.equal((await fs.getattr('/new.txt')).size, 12);
  });

  test('a stored file renamed over another stored file replaces it', async () => {
    const { fs, client } = await editingFs();
    client.put('src', 'new');
    client.put('dst', 'old, longer');
    await fs.rename('/src', '/dst');
    assert.equal(body(client, 'dst'), 'new');
    assert.equal(client.objects.has('src'), false);
    assert.equal((await fs.getattr('/dst')).size, 3);
    await assert.rejects(fs.getattr('/src'), isErrno('ENOENT'));
  });

  test('a folder is renamed key by key, its folder object and sub-folders included, with progress ending finished', async () => {
    const progress: RenameProgress[] = [];
    const { fs, client } = await editingFs({ events: { onRenameProgress: (p) => progress.push(p) } });
    for (const k of ['dir/', 'dir/a', 'dir/sub/b', 'dirx/beside']) client.put(k, `body of ${k}`);
    await fs.rename('/dir', '/moved');
    assert.deepEqual([...client.objects.keys()].sort(), ['dirx/beside', 'moved/', 'moved/a', 'moved/sub/b']);
    assert.equal(body(client, 'moved/sub/b'), 'body of dir/sub/b');
    assert.deepEqual(progress.at(-1), { from: '/dir', to: '/moved', done: 3, total: 3, finished: true });
    await assert.rejects(fs.getattr('/dir'), isErrno('ENOENT'));
    assert.deepEqual((await fs.readdir('/moved')).names.sort(), ['.', '..', 'a', 'sub']);
  });

  test('a folder rename takes its staged files along: an edited file and a new one upload under the new name, no old key is left', async () => {
    const { fs, client } = await editingFs();
    client.put('dir/a', 'aaa');
    client.put('dir/b', 'bbb');
    const fd = await fs.open('/dir/a', O_RDWR);
    await fs.write('/dir/a', fd, Buffer.from('A'), 0);
    await fs.flush('/dir/a', fd);
    await fs.release('/dir/a', fd);
    await writeNew(fs, '/dir/new', 'nnn');
    await fs.rename('/dir', '/moved');
    assert.equal((await fs.getattr('/moved/a')).size, 3);
    await fs.drain();
    assert.deepEqual([...client.objects.keys()].sort(), ['moved/a', 'moved/b', 'moved/new']);
    assert.equal(body(client, 'moved/a'), 'Aaa');
    assert.equal(body(client, 'moved/b'), 'bbb');
    assert.equal(body(client, 'moved/new'), 'nnn');
  });

  test('rename refuses, moving nothing: RENAME_NOREPLACE over a name EEXIST, RENAME_EXCHANGE EINVAL, a folder into itself EINVAL, over a non-empty folder ENOTEMPTY', async () => {
    const { fs, client } = await editingFs();
    for (const k of ['a', 'b', 'dir/x', 'full/y']) client.put(k, k);
    const before = [...client.objects.keys()].sort();
    await assert.rejects(fs.rename('/a', '/b', RENAME_NOREPLACE), isErrno('EEXIST'));
    await assert.rejects(fs.rename('/a', '/b', RENAME_EXCHANGE), isErrno('EINVAL'));
    await assert.rejects(fs.rename('/dir', '/dir/inner'), isErrno('EINVAL'));
    await assert.rejects(fs.rename('/dir', '/full'), isErrno('ENOTEMPTY'));
    assert.deepEqual([...client.objects.keys()].sort(), before);
    assert.equal(requests(client, 'CopyObject') + requests(client, 'DeleteObject') + requests(client, 'PutObject'), 0);
    await fs.rename('/a', '/c', RENAME_NOREPLACE);
    assert.equal(body(client, 'c'), 'a', 'RENAME_NOREPLACE to a free name renames');
  });

  test('unlink of a staged file never uploaded sends nothing to the bucket and removes the stage', async () => {
    const { fs, client, stagingDirectory } = await editingFs();
    await writeNew(fs, '/scratch', 'temporary');
    await fs.unlink('/scratch');
    await assert.rejects(fs.getattr('/scratch'), isErrno('ENOENT'));
    await fs.drain();
    assert.equal(client.objects.has('scratch'), false);
    assert.equal(requests(client, 'PutObject'), 0);
    assert.equal(requests(client, 'DeleteObject'), 0);
    assert.deepEqual(await stageFiles(stagingDirectory), []);
  });

  test('unlink of a stored file being edited deletes the object and never uploads the edit', async () => {
    const { fs, client } = await editingFs();
    client.put('doc', 'v1');
    const fd = await fs.open('/doc', O_RDWR);
    await fs.write('/doc', fd, Buffer.from('edited'), 0);
    await fs.flush('/doc', fd);
    await fs.release('/doc', fd);
    await fs.unlink('/doc');
    await fs.drain();
    assert.equal(client.objects.has('doc'), false);
    assert.equal(requests(client, 'PutObject'), 0);
  });

  test('mkdir stores a folder object name/; rmdir of an empty folder deletes it; of a folder with keys is ENOTEMPTY', async () => {
    const { fs, client } = await editingFs();
    await fs.mkdir('/made');
    assert.equal(client.objects.get('made/')?.body.length, 0);
    assert.equal((await fs.getattr('/made')).mode & 0o170000, 0o040000);
    await assert.rejects(fs.mkdir('/made'), isErrno('EEXIST'));
    await fs.rmdir('/made');
    assert.equal(client.objects.has('made/'), false);
    await assert.rejects(fs.getattr('/made'), isErrno('ENOENT'));

    client.put('full/x', 'x');
    await assert.rejects(fs.rmdir('/full'), isErrno('ENOTEMPTY'));
    assert.equal(client.objects.has('full/x'), true);
  });

  test('rmdir of a folder holding only a staged file is ENOTEMPTY', async () => {
    const { fs, client } = await editingFs();
    await fs.mkdir('/made');
    await writeNew(fs, '/made/draft', 'x');
    await assert.rejects(fs.rmdir('/made'), isErrno('ENOTEMPTY'));
    await fs.drain();
    assert.equal(body(client, 'made/draft'), 'x');
  });

  test('set times on a staged file change getattr\'s times: Infinity is now, NaN leaves the time as it is', async () => {
    let now = 1_700_000_000_000;
    const { fs } = await editingFs({ now: () => now });
    const fd = await fs.create('/t', O_WRONLY);
    await fs.write('/t', fd, Buffer.from('x'), 0);
    await fs.setattr('/t', { atimeMs: 1_600_000_000_000, mtimeMs: 1_650_000_000_000 });
    let st = await fs.getattr('/t');
    assert.equal(st.atime.getTime(), 1_600_000_000_000);
    assert.equal(st.mtime.getTime(), 1_650_000_000_000);
    now += 5000;
    await fs.setattr('/t', { atimeMs: Number.NaN, mtimeMs: Number.POSITIVE_INFINITY });
    st = await fs.getattr('/t');
    assert.equal(st.mtime.getTime(), now);
    assert.equal(st.atime.getTime(), 1_600_000_000_000);
    now += 5000;
    await fs.setattr('/t', { atimeMs: Number.POSITIVE_INFINITY, mtimeMs: Number.NaN });
    st = await fs.getattr('/t');
    assert.equal(st.atime.getTime(), now);
    assert.equal(st.mtime.getTime(), now - 5000);
    await fs.flush('/t', fd);
    await fs.release('/t', fd);
    await fs.setattr('/t', { atimeMs: Number.NaN, mtimeMs: 1_500_000_000_000 });
    assert.equal((await fs.getattr('/t')).mtime.getTime(), 1_500_000_000_000, 'also once closed, before its upload');
    await fs.drain();
  });

  test('an object changed in the bucket while edited: ours goes under a conflict name, theirs stays, and onConflict tells both paths', async () => {
    const now = new Date(2026, 11, 6, 22, 15, 30).getTime();
    const conflicts: Array<[string, string]> = [];
    const { fs, client } = await editingFs({ now: () => now, events: { onConflict: (p, c) => conflicts.push([p, c]) } });
    client.put('report.pdf', 'v1');
    await editWhileChanged(fs, '/report.pdf', 'ours', () => client.put('report.pdf', 'theirs'));
    const conflictKey = 'report (conflict 2026-12-06 221530).pdf';
    assert.equal(body(client, 'report.pdf'), 'theirs');
    assert.equal(body(client, conflictKey), 'ours');
    assert.deepEqual(conflicts, [['/report.pdf', `/${conflictKey}`]]);
    assert.equal((await fs.getattr('/report.pdf')).size, 6, 'the original name shows theirs');
    assert.equal((await fs.getattr(`/${conflictKey}`)).size, 4);
  });

  test('a refused upload whose key already holds exactly our bytes (a lost answer, a crash after the upload) is no conflict', async () => {
    const conflicts: Array<[string, string]> = [];
    const { fs, client, stagingDirectory } = await editingFs({ events: { onConflict: (p, c) => conflicts.push([p, c]) } });
    client.put('notes.txt', 'v1');
    // Our bytes reach the key before our conditional upload runs, as when its answer was lost.
    await editWhileChanged(fs, '/notes.txt', 'v2', () => client.put('notes.txt', 'v2'));
    assert.deepEqual(conflicts, []);
    assert.deepEqual([...client.objects.keys()], ['notes.txt']);
    assert.equal(body(client, 'notes.txt'), 'v2');
    assert.deepEqual(await stageFiles(stagingDirectory), [], 'the stage is gone');
  });

  test('an object deleted in the bucket while edited is a conflict too: ours is kept under a conflict name', async () => {
    const now = new Date(2026, 0, 2, 3, 4, 5).getTime();
    const conflicts: Array<[string, string]> = [];
    const { fs, client } = await editingFs({ now: () => now, events: { onConflict: (p, c) => conflicts.push([p, c]) } });
    client.put('notes', 'v1');
    await editWhileChanged(fs, '/notes', 'v2', () => client.deleteObject('notes'));
    assert.equal(client.objects.has('notes'), false);
    assert.equal(body(client, 'notes (conflict 2026-01-02 030405)'), 'v2');
    assert.equal(conflicts.length, 1);
  });

  test('fsync uploads before it returns; the close after it uploads nothing more', async () => {
    const { fs, client } = await editingFs();
    const fd = await fs.create('/synced', O_WRONLY);
    await fs.write('/synced', fd, Buffer.from('first'), 0);
    await fs.fsync('/synced', fd);
    assert.equal(body(client, 'synced'), 'first');
    await fs.write('/synced', fd, Buffer.from(' second'), 5);
    await fs.fsync('/synced', fd);
    assert.equal(body(client, 'synced'), 'first second', 'the second fsync replaces the version of the first');
    await fs.flush('/synced', fd);
    await fs.release('/synced', fd);
    await fs.drain();
    assert.equal(requests(client, 'PutObject'), 2);
    assert.equal(fs.uploadsInProgress, 0);
  });

  test('open for writing and closed with no write uploads nothing', async () => {
    const { fs, client, stagingDirectory } = await editingFs({ uploadDelayMs: 0 });
    client.put('untouched', 'same');
    const fd = await fs.open('/untouched', O_RDWR);
    await fs.flush('/untouched', fd);
    await fs.release('/untouched', fd);
    await fs.drain();
    assert.equal(requests(client, 'PutObject'), 0);
    assert.deepEqual(await stageFiles(stagingDirectory), []);
  });

  test('a rename while the file\'s upload runs waits for it, then moves the stored object', async () => {
    const client = new HeldPutClient();
    const { fs } = await editingFs({ uploadDelayMs: 0, client });
    await writeNew(fs, '/up', 'data');
    await waitFor(() => client.held === 1, 'the upload to start');
    let renamed = false;
    const rename = fs.rename('/up', '/moved').then(() => { renamed = true; });
    await sleep(20);
    assert.equal(renamed, false, 'rename waits for the upload under way');
    client.releaseAll();
    await rename;
    assert.equal(body(client, 'moved'), 'data');
    assert.equal(client.objects.has('up'), false);
    await fs.drain();
    assert.deepEqual([...client.objects.keys()], ['moved']);
  });

  test('an unlink while the file\'s upload runs waits for it, then deletes the object', async () => {
    const client = new HeldPutClient();
    const { fs } = await editingFs({ uploadDelayMs: 0, client });
    await writeNew(fs, '/up', 'data');
    await waitFor(() => client.held === 1, 'the upload to start');
    const unlink = fs.unlink('/up');
    await sleep(20);
    client.releaseAll();
    await unlink;
    await fs.drain();
    assert.equal(client.objects.has('up'), false);
    await assert.rejects(fs.getattr('/up'), isErrno('ENOENT'));
  });

  test('a file its last program closes while its upload is finishing leaves nothing staged', async () => {
    // The upload keeps the stage of a file still open (it is clean, and the
    // program may read it); a close landing after that check, while the
    // upload writes its record, found the upload still running.
    class CloseAfterPut extends MemoryObjectClient {
      onStored: (() => void) | undefined;
      override async putObject(key: string, data: Uint8Array, opts: WriteConditions = {}): Promise<{ etag: string }> {
        const result = await super.putObject(key, data, opts);
        const then = this.onStored;
        this.onStored = undefined;
        if (then) setImmediate(then);
        return result;
      }
    }
    const client = new CloseAfterPut();
    const { fs, stagingDirectory } = await editingFs({ uploadDelayMs: 0, client });
    const fd = await fs.create('/open', O_WRONLY);
    await fs.write('/open', fd, Buffer.from('data'), 0);
    const reader = await fs.open('/open', 0);
    let closed: Promise<void> | undefined;
    client.onStored = () => { closed = fs.release('/open', reader); };
    await fs.flush('/open', fd);
    await fs.release('/open', fd);
    await waitFor(() => closed !== undefined && fs.uploadsInProgress === 0, 'the upload and the reader\'s close');
    await closed;
    assert.equal(body(client, 'open'), 'data');
    assert.deepEqual(await stageFiles(stagingDirectory), [], 'no stage is left for the next mount');
    assert.equal(await readWhole(fs, '/open'), 'data');
  });

  test('touch of a new name stores an empty object', async () => {
    const { fs, client } = await editingFs();
    const fd = await fs.create('/empty', O_WRONLY);
    await fs.setattr('/empty', { atimeMs: Number.POSITIVE_INFINITY, mtimeMs: Number.POSITIVE_INFINITY });
    await fs.flush('/empty', fd);
    await fs.release('/empty', fd);
    await fs.drain();
    assert.equal(client.objects.get('empty')?.body.length, 0);
  });

  test('a staged file renamed over another staged file: one upload, under the target name, with the source\'s bytes', async () => {
    const { fs, client } = await editingFs();
    await writeNew(fs, '/a', 'from a');
    await writeNew(fs, '/b', 'from b');
    await fs.rename('/a', '/b');
    await assert.rejects(fs.getattr('/a'), isErrno('ENOENT'));
    assert.equal(await readWhole(fs, '/b'), 'from a');
    await fs.drain();
    assert.deepEqual([...client.objects.keys()], ['b']);
    assert.equal(body(client, 'b'), 'from a');
    assert.equal(requests(client, 'PutObject'), 1);
  });

  test('a stored file renamed over a staged file replaces it; the staged bytes are never uploaded', async () => {
    const { fs, client } = await editingFs();
    client.put('stored', 'stored bytes');
    await writeNew(fs, '/pending', 'pending bytes');
    await fs.rename('/stored', '/pending');
    await fs.drain();
    assert.deepEqual([...client.objects.keys()], ['pending']);
    assert.equal(body(client, 'pending'), 'stored bytes');
    assert.equal(requests(client, 'PutObject'), 0);
  });

  test('an edited stored file renamed before its upload: the old key goes, the new one gets the edit', async () => {
    const { fs, client } = await editingFs();
    client.put('doc', 'hello world');
    const fd = await fs.open('/doc', O_RDWR);
    await fs.write('/doc', fd, Buffer.from('J'), 0);
    await fs.flush('/doc', fd);
    await fs.release('/doc', fd);
    await fs.rename('/doc', '/doc2');
    await fs.drain();
    assert.deepEqual([...client.objects.keys()], ['doc2']);
    assert.equal(body(client, 'doc2'), 'Jello world');
  });

  test('a file renamed while open for writing gets the later writes under its new name', async () => {
    const { fs, client } = await editingFs();
    const fd = await fs.create('/open', O_WRONLY);
    await fs.write('/open', fd, Buffer.from('one '), 0);
    await fs.rename('/open', '/renamed');
    await fs.write('/renamed', fd, Buffer.from('two'), 4);
    await fs.flush('/renamed', fd);
    await fs.release('/renamed', fd);
    await fs.drain();
    assert.deepEqual([...client.objects.keys()], ['renamed']);
    assert.equal(body(client, 'renamed'), 'one two');
  });

  test('truncate by path of a file open for writing takes effect at its close', async () => {
    const { fs, client } = await editingFs();
    client.put('t', '0123456789');
    const fd = await fs.open('/t', O_RDWR);
    await fs.write('/t', fd, Buffer.from('AB'), 0);
    await fs.truncate('/t', 5);
    assert.equal((await fs.getattr('/t')).size, 5);
    await fs.write('/t', fd, Buffer.from('Z'), 5);
    await fs.flush('/t', fd);
    await fs.release('/t', fd);
    await fs.drain();
    assert.equal(body(client, 't'), 'AB234Z');
  });

  test('an empty folder made here renames with its folder object', async () => {
    const { fs, client } = await editingFs();
    await fs.mkdir('/made');
    await fs.rename('/made', '/renamed');
    assert.deepEqual([...client.objects.keys()], ['renamed/']);
    assert.equal((await fs.getattr('/renamed')).mode & 0o170000, 0o040000);
    await assert.rejects(fs.getattr('/made'), isErrno('ENOENT'));
  });

  test('rename of a file over a folder is EISDIR, of a folder over a file ENOTDIR, into a missing folder ENOENT', async () => {
    const { fs, client } = await editingFs();
    for (const k of ['file', 'dir/x']) client.put(k, k);
    await assert.rejects(fs.rename('/file', '/dir'), isErrno('EISDIR'));
    await assert.rejects(fs.rename('/dir', '/file'), isErrno('ENOTDIR'));
    await assert.rejects(fs.rename('/file', '/nowhere/file'), isErrno('ENOENT'));
    assert.deepEqual([...client.objects.keys()].sort(), ['dir/x', 'file']);
  });

  test('a failed upload is told once, stays staged, and its next try uploads it', async () => {
    const failed: string[] = [];
    const client = new HeldPutClient();
    client.holding = false;
    let failPuts = 1;
    const original = client.putObject.bind(client);
    client.putObject = async (key, data, opts) => {
      if (failPuts-- > 0) throw new S3RequestError('ServerError', { operation: 'PutObject', bucket: client.bucket, key, status: 500 }, 'injected: internal error');
      return original(key, data, opts);
    };
    const { fs } = await editingFs({ uploadDelayMs: 0, client, events: { onUploadFailed: (p) => failed.push(p) } });
    await writeNew(fs, '/retried', 'kept');
    await waitFor(() => failed.length === 1, 'the failure to be told');
    assert.equal(client.objects.has('retried'), false);
    assert.equal(await readWhole(fs, '/retried'), 'kept', 'still staged, readable');
    assert.equal(fs.uploadsInProgress, 1);
    // The retry waits a backoff; unmount's drain runs it now.
    await fs.drain();
    assert.equal(body(client, 'retried'), 'kept');
    assert.deepEqual(failed, ['/retried']);
  });

  test('a folder rename that stops half way fails with EIO and reports how far it got', async () => {
    const progress: RenameProgress[] = [];
    const client = new HeldPutClient();
    client.holding = false;
    let copies = 0;
    const original = client.copyObject.bind(client);
    client.copyObject = async (from, to, opts) => {
      if (++copies > 2) throw new S3RequestError('AccessDenied', { operation: 'CopyObject', bucket: client.bucket, key: from, status: 403, code: 'AccessDenied' }, 'injected: access denied');
      return original(from, to, opts);
    };
    const { fs } = await editingFs({ client, events: { onRenameProgress: (p) => progress.push(p) } });
    const keys = ['dir/a', 'dir/b', 'dir/c', 'dir/d', 'dir/e'];
    for (const k of keys) client.put(k, k);
    await assert.rejects(fs.rename('/dir', '/moved'), isErrno('EIO'));
    const last = progress.at(-1)!;
    assert.equal(last.finished, true);
    assert.equal(last.total, 5);
    assert.equal(last.done, 2);
    assert.match(last.error ?? '', /2 are under moved\/, 3 still under dir\//);
    const under = (p: string): number => [...client.objects.keys()].filter((k) => k.startsWith(p)).length;
    assert.deepEqual([under('dir/'), under('moved/')], [3, 2]);
    assert.equal((await fs.readdir('/moved')).names.length, 2 + 2, 'the listing of the new name shows what moved');
  });

  test('a staged file shows in its folder\'s listing before its upload', async () => {
    const { fs, client } = await editingFs();
    client.put('stored', 's');
    await writeNew(fs, '/pending', 'p');
    const { names } = await fs.readdir('/');
    assert.deepEqual(names.sort(), ['.', '..', 'pending', 'stored']);
    await fs.drain();
  });
});

describe('fs model in editing mode: fsync while the timer\'s upload of the file runs', () => {
  /**
   * A staged file whose timer upload is held, written again meanwhile, and
   * an fsync of it that waited for that upload; returns once fsync's own
   * upload (of the new bytes) is held.
   */
  async function fsyncBehindUpload(p: string): Promise<{
    fs: S3FileSystem; client: HeldPutClient; fd: number; conflicts: string[]; fsync: Promise<unknown>;
  }> {
    const client = new HeldPutClient();
    client.put('d/keep', 'k');
    const conflicts: string[] = [];
    const { fs } = await editingFs({ uploadDelayMs: 0, client, events: { onConflict: (_p, c) => conflicts.push(c) } });
    await writeNew(fs, p, 'v1');
    await waitFor(() => client.held === 1, 'the timer\'s upload to start');
    const fd = await fs.open(p, O_RDWR);
    await fs.write(p, fd, Buffer.from('v2'), 0);
    const fsync = fs.fsync(p, fd).then(() => 'ok', (err: unknown) => err);
    await sleep(10);
    client.releaseOne();
    await waitFor(() => requests(client, 'PutObject') === 1 && client.held === 1, 'fsync\'s upload to start');
    return { fs, client, fd, conflicts, fsync };
  }

  test('an fsync that waited for the upload of the same bytes sends no second PUT', async () => {
    const client = new HeldPutClient();
    const { fs } = await editingFs({ uploadDelayMs: 0, client });
    await writeNew(fs, '/same', 'v1');
    await waitFor(() => client.held === 1, 'the timer\'s upload to start');
    const fd = await fs.open('/same', 0);
    const fsync = fs.fsync('/same', fd);
    await sleep(10);
    client.releaseAll();
    await fsync;
    await fs.release('/same', fd);
    await fs.drain();
    assert.equal(requests(client, 'PutObject'), 1);
    assert.equal(body(client, 'same'), 'v1');
  });

  test('unmount (drain) waits for the upload an fsync started', async () => {
    const { fs, client, fsync } = await fsyncBehindUpload('/f');
    let drained = false;
    const drain = fs.drain().then(() => { drained = true; });
    await sleep(20);
    const drainedEarly = drained;
    client.releaseAll();
    await Promise.all([drain, fsync]);
    assert.equal(drainedEarly, false, 'drain() resolved while fsync\'s upload was still under way');
  });

  test('a rename of the folder during the fsync moves the file: no conflict copy, no key left under the old name', async () => {
    const { fs, client, fd, conflicts, fsync } = await fsyncBehindUpload('/d/f');
    const rename = fs.rename('/d', '/moved');
    await sleep(20);
    client.releaseAll();
    await rename;
    const outcome = await fsync;
    await fs.release('/moved/f', fd);
    await fs.drain();
    assert.deepEqual(conflicts, []);
    assert.deepEqual([...client.objects.keys()].sort(), ['moved/f', 'moved/keep']);
    assert.equal(body(client, 'moved/f'), 'v2');
    assert.equal(outcome, 'ok');
  });
});

describe('fs model in editing mode: a folder rename that stopped half way', () => {
  test('what is left under the old name still shows there, as the error says', async () => {
    const client = new HeldPutClient();
    client.holding = false;
    let copies = 0;
    const original = client.copyObject.bind(client);
    client.copyObject = async (from, to, opts) => {
      if (++copies > 2) throw new S3RequestError('AccessDenied', { operation: 'CopyObject', bucket: client.bucket, key: from, status: 403, code: 'AccessDenied' }, 'injected: access denied');
      return original(from, to, opts);
    };
    // A clock that stands still: a cached answer lasts the whole test, as with --metadata-ttl indefinite.
    const { fs } = await editingFs({ client, now: () => 1_700_000_000_000 });
    for (const k of ['dir/a', 'dir/b', 'dir/c', 'dir/d', 'dir/e']) client.put(k, k);
    await assert.rejects(fs.rename('/dir', '/moved'), isErrno('EIO'));
    assert.equal([...client.objects.keys()].filter((k) => k.startsWith('dir/')).length, 3);
    assert.equal((await fs.getattr('/dir')).mode & 0o170000, 0o040000, '/dir is still a folder');
    assert.deepEqual((await fs.readdir('/dir')).names.sort(), ['.', '..', 'c', 'd', 'e']);
  });
});
