/**
 * The local staging layer of editing mode (app/data/staging.ts) and the
 * upload of staged files (app/data/staged-upload.ts), on real disk in temp
 * folders, against the in-memory bucket behind an adapter that checks
 * conditional writes as S3 does. A crash is simulated by opening a second
 * StagingArea on the folder of one never closed; ENOSPC comes from a real
 * tiny tmpfs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import { S3RequestError } from '../app/s3/errors.js';
import type { ByteRange, CompletedPart, RangeSink, RequestOptions, WriteConditions } from '../app/s3/object-client.js';
import { FsError } from '../app/fs/errno.js';
import {
  StagedFile, StageStateError, StagingArea, StagingInUseError, defaultStagingDirectory, stageWriteError, type RecoveredStage, type StageFillSource, type StageRecord,
} from '../app/data/staging.js';
import {
  StageConflictError, uploadStagedFile, type StagedUploadConfig, type StagedUploadTarget,
} from '../app/data/staged-upload.js';
import { S3_MIN_PART_BYTES } from '../app/data/uploader.js';
import { assertSameBytes } from './helpers/same-bytes.js';

/** The staging folder's files but its lock (one worker per folder). */
async function stageFiles(directory: string): Promise<string[]> {
  // Uploaded stages' files go in the background (removeSoon).
  await Promise.all(areas.map((a) => a.removalsSettled()));
  return (await readdir(directory)).filter((n) => n !== 'lock');
}

const MiB = 1024 * 1024;
const SMALL: StagedUploadConfig = { partSizeBytes: S3_MIN_PART_BYTES, maxPartsInFlight: 2 };

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
/** S3 compares ETags with or without their quotes. */
const bareEtag = (e: string): string => e.replace(/^"|"$/g, '');

/**
 * MemoryObjectClient (which checks If-Match and If-None-Match as S3 does)
 * as a StagedUploadTarget that records the conditions, every part's size
 * and the parts in flight, and lets a test act at a chosen step of an upload.
 */
class ConditionalBucket implements StagedUploadTarget {
  readonly bucket: string;
  readonly partSizes: number[] = [];
  readonly preconditions: WriteConditions[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failPart: number | undefined;
  /** Runs before part n is stored (n = 1..), or before a PutObject (n = 0). */
  beforePart: ((partNumber: number) => Promise<void>) | undefined;

  constructor(readonly inner: MemoryObjectClient) {
    this.bucket = inner.bucket;
  }

  async putObject(key: string, body: Uint8Array, opts: RequestOptions & WriteConditions = {}): Promise<{ etag: string }> {
    await this.beforePart?.(0);
    this.preconditions.push({ ...(opts.ifMatch !== undefined ? { ifMatch: opts.ifMatch } : {}), ...(opts.ifNoneMatch !== undefined ? { ifNoneMatch: opts.ifNoneMatch } : {}) });
    return this.inner.putObject(key, body, opts);
  }

  createMultipartUpload(key: string): Promise<string> {
    return this.inner.createMultipartUpload(key);
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.partSizes.push(body.length);
      await this.beforePart?.(partNumber);
      if (partNumber === this.failPart) {
        throw new S3RequestError('ServerError', { operation: 'UploadPart', bucket: this.bucket, key, status: 500 }, 'injected failure');
      }
      return await this.inner.uploadPart(key, uploadId, partNumber, body);
    } finally {
      this.inFlight--;
    }
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts: RequestOptions & WriteConditions = {}): Promise<{ etag: string }> {
    this.preconditions.push({ ...(opts.ifMatch !== undefined ? { ifMatch: opts.ifMatch } : {}), ...(opts.ifNoneMatch !== undefined ? { ifNoneMatch: opts.ifNoneMatch } : {}) });
    return this.inner.completeMultipartUpload(key, uploadId, parts, opts);
  }

  abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    return this.inner.abortMultipartUpload(key, uploadId);
  }
}

/** Counts the GETs a fill sends. */
class CountingSource implements StageFillSource {
  readonly ranges: ByteRange[] = [];
  constructor(private readonly inner: MemoryObjectClient) {}
  getRange(key: string, range: ByteRange, sink: RangeSink, opts?: { signal?: AbortSignal; ifMatch?: string }): Promise<void> {
    this.ranges.push(range);
    return this.inner.getRange(key, range, sink, opts);
  }
}

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'sos-staging-test-'));
});
const areas: StagingArea[] = [];
after(async () => {
  // Areas of simulated crashes are never closed by their test; their file
  // handles are closed here, before their folders go.
  await Promise.all(areas.map((a) => a.close()));
  await rm(root, { recursive: true, force: true });
});

let folderCount = 0;
async function openArea(directory?: string, extra: { fillChunkBytes?: number } = {}): Promise<{ area: StagingArea; recovered: RecoveredStage[]; directory: string }> {
  const dir = directory ?? path.join(root, `area-${++folderCount}`);
  let t = 1_000_000;
  // No spares: these tests count the folder's files and the clock's ticks (the spares' test has its own).
  const area = new StagingArea({ directory: dir, now: () => t++, spares: 0, ...extra });
  areas.push(area);
  const recovered = await area.open();
  return { area, recovered, directory: dir };
}

async function recordOnDisk(directory: string, stage: StagedFile): Promise<StageRecord> {
  return JSON.parse(await readFile(path.join(directory, `${stage.id}.json`), 'utf8')) as StageRecord;
}

function byKey(recovered: readonly RecoveredStage[]): Map<string | undefined, RecoveredStage> {
  return new Map(recovered.map((r) => [r.action === 'upload' ? r.stage.key : r.record?.key, r]));
}

function bucketWith(key?: string, body?: string | Uint8Array): { inner: MemoryObjectClient; bucket: ConditionalBucket } {
  const inner = new MemoryObjectClient();
  if (key !== undefined && body !== undefined) inner.put(key, body);
  return { inner, bucket: new ConditionalBucket(inner) };
}

describe('staging area: files made ahead, and one worker per folder', () => {
  test('creates take files made ahead of time; unused ones are removed at close and by the next open after a crash', async () => {
    const directory = path.join(root, `spares-${++folderCount}`);
    const area = new StagingArea({ directory, spares: 3 });
    areas.push(area);
    await area.open();
    const made = async (): Promise<string[]> => (await stageFiles(directory)).filter((n) => n.endsWith('.data')).map((n) => n.slice(0, -5)).sort();
    for (let i = 0; i < 100 && (await made()).length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    const ahead = await made();
    assert.equal(ahead.length, 3, 'three spares made in the background');
    const stage = await area.createEmpty('k', undefined);
    assert.ok(ahead.includes(stage.id), 'the create took a spare');
    await stage.write(0, Buffer.from('data'));
    await stage.markClosed();
    assert.equal((await recordOnDisk(directory, stage)).key, 'k');
    // A crash: the next run finds the closed stage, and the spares (empty records) are not reported but removed.
    const next = await openArea(directory);
    assert.deepEqual(next.recovered.map((r) => r.action === 'upload' && r.stage.key), ['k']);
    const left = await made();
    assert.ok(left.includes(stage.id));
    await next.area.close();
    await area.close();
    assert.deepEqual(await made(), [stage.id], 'close removed the unused spares; the closed stage stays for its upload');
  });

  test('an uploaded stage\'s files become a spare, emptied in place; a multipart upload\'s are deleted', async () => {
    const directory = path.join(root, `recycle-${++folderCount}`);
    const area = new StagingArea({ directory, spares: 1 });
    areas.push(area);
    await area.open();
    const sizes = async (): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      for (const n of await stageFiles(directory)) out.set(n, (await stat(path.join(directory, n))).size);
      return out;
    };
    const { inner, bucket } = bucketWith();
    const small = await area.createEmpty('small', undefined);
    // The spare made to replace the one taken, before the upload's pair joins the pool.
    for (let i = 0; i < 100 && (await stageFiles(directory)).filter((n) => n.endsWith('.data')).length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await small.write(0, Buffer.from('hello'));
    await small.markClosed();
    const done = await uploadStagedFile(small, bucket, SMALL);
    assert.ok(done.status === 'uploaded' && done.stageRemoved);
    assert.equal(inner.objects.get('small')?.body.toString(), 'hello');
    let files = await sizes();
    assert.equal(files.get(`${small.id}.json`), 0, 'the record is emptied: a spare to the next open()');
    assert.equal(files.get(`${small.id}.data`), 0, 'the data file is emptied');
    // The pool holds the spare made ahead and the emptied pair, the latest first: the next create makes no file.
    const names = [...files.keys()].sort();
    const next = await area.createEmpty('next', undefined);
    assert.equal(next.id, small.id, 'the create took the emptied pair');
    await next.write(0, Buffer.from('one'));
    await next.markClosed();
    files = await sizes();
    assert.deepEqual([...files.keys()].sort(), names, 'no file was made or removed');
    assert.equal(files.get(`${next.id}.data`), 3);
    // Above one part: a power cut that undid the emptying would leave a conflict copy, so the files go.
    const { bucket: bucket2 } = bucketWith();
    const big = await area.createEmpty('big', undefined);
    await big.write(0, randomBytes(S3_MIN_PART_BYTES + 1));
    await big.markClosed();
    const bigDone = await uploadStagedFile(big, bucket2, SMALL);
    assert.ok(bigDone.status === 'uploaded' && bigDone.stageRemoved);
    files = await sizes();
    assert.ok(!files.has(`${big.id}.json`) && !files.has(`${big.id}.data`), 'a multipart upload\'s files are deleted');

    // A crash now: the closed stage is found, nothing of "small" is uploaded again, the spare is not reported.
    const crashed = await openArea(directory);
    assert.deepEqual(crashed.recovered.map((r) => r.action === 'upload' && r.stage.key), ['next']);
    await crashed.area.close();
    await area.close();
  });

  test('a folder locked by another live process is refused; a dead one\'s lock is taken over', async () => {
    const directory = path.join(root, `lock-${++folderCount}`);
    await mkdir(directory, { recursive: true });
    const other = spawn('sleep', ['30']);
    try {
      await writeFile(path.join(directory, 'lock'), `${other.pid}\n`);
      const area = new StagingArea({ directory, spares: 0 });
      await assert.rejects(area.open(), (e: unknown) => e instanceof StagingInUseError && e.pid === other.pid);
    } finally {
      other.kill();
      await once(other, 'exit');
    }
    const area = new StagingArea({ directory, spares: 0 });
    areas.push(area);
    await area.open();
    assert.equal((await readFile(path.join(directory, 'lock'), 'utf8')).trim(), String(process.pid));
    await area.close();
    assert.deepEqual(await readdir(directory), [], 'close releases the lock');
  });
});

describe('staging area', () => {
  test('open creates the folder 0700 under the state directory and finds nothing the first time', async () => {
    const { directory, recovered } = await openArea(path.join(root, 'fresh', 'nested'));
    assert.deepEqual(recovered, []);
    assert.equal((await stat(directory)).mode & 0o777, 0o700);
    assert.equal(defaultStagingDirectory('m1', { XDG_STATE_HOME: '/s' }, '/home/u'),
      process.platform === 'darwin' ? '/home/u/Library/Logs/staging/m1' : '/s/sos-mount/staging/m1');
  });

  test('staging before open() is refused', async () => {
    const area = new StagingArea({ directory: path.join(root, 'never-opened') });
    await assert.rejects(area.createEmpty('a', undefined), StageStateError);
  });

  test('writes at any offset read back, holes read as zeros, and several handles may write at once', async () => {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty('docs/a.txt', undefined);
    assert.equal(stage.state, 'open');
    assert.equal(stage.baseEtag, undefined);
    assert.equal(await stage.write(10, Buffer.from('world')), 5);
    await stage.write(0, Buffer.from('hello'));
    assert.equal(stage.sizeBytes, 15);
    assert.deepEqual(await stage.read(0, 100), Buffer.concat([Buffer.from('hello'), Buffer.alloc(5), Buffer.from('world')]));
    assert.deepEqual(await stage.read(12, 2), Buffer.from('rl'));
    assert.equal((await stage.read(15, 10)).length, 0);

    const chunks = Array.from({ length: 16 }, () => randomBytes(64 * 1024));
    await Promise.all(chunks.map((c, i) => stage.write(i * c.length, c)));
    const whole = Buffer.concat(chunks);
    assert.equal(stage.sizeBytes, whole.length);
    assertSameBytes(await stage.read(0, whole.length), whole);
    assert.deepEqual(await readFile(stage.dataPath), whole);
    assert.equal((await stat(stage.dataPath)).mode & 0o777, 0o600);
    assert.equal((await recordOnDisk(directory, stage)).state, 'open');
  });

  test('truncate shrinks and grows with zeros; set times and writes update the times', async () => {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty('t', undefined);
    await stage.write(0, Buffer.from('abcdef'));
    const writtenAt = stage.mtimeMs;
    await stage.truncate(3);
    assert.ok(stage.mtimeMs > writtenAt);
    assert.deepEqual(await stage.read(0, 10), Buffer.from('abc'));
    await stage.truncate(5);
    assert.deepEqual(await stage.read(0, 10), Buffer.from('abc\0\0'));
    await stage.setTimes({ atimeMs: 42, mtimeMs: 43 });
    assert.equal(stage.atimeMs, 42);
    assert.equal(stage.mtimeMs, 43);
    await stage.markClosed();
    await stage.setTimes({ mtimeMs: 44 });
    const rec = await recordOnDisk(directory, stage);
    assert.equal(rec.mtimeMs, 44);
    assert.equal(rec.sizeBytes, 5);
  });

  test('a stage of an existing object fetches it only when a read needs it, once, in bounded chunks', async () => {
    const body = randomBytes(100_000);
    const { inner } = bucketWith('obj', body);
    const source = new CountingSource(inner);
    const { area } = await openArea(undefined, { fillChunkBytes: 32 * 1024 });
    const etag = inner.objects.get('obj')!.etag;
    const stage = await area.createFromObject({ key: 'obj', etag, sizeBytes: body.length }, source);
    assert.equal(stage.sizeBytes, body.length);
    assert.equal(stage.baseEtag, etag);
    assert.ok(stage.needsFill);
    assert.equal(source.ranges.length, 0, 'creating the stage fetches nothing');
    const [a, b] = await Promise.all([stage.read(0, 10), stage.read(99_990, 100)]);
    assert.deepEqual(a, body.subarray(0, 10));
    assert.deepEqual(b, body.subarray(99_990));
    assert.deepEqual(source.ranges, [
      { start: 0, end: 32768 }, { start: 32768, end: 65536 }, { start: 65536, end: 98304 }, { start: 98304, end: 100_000 },
    ]);
    await stage.read(0, body.length);
    assert.equal(source.ranges.length, 4, 'filled once');
    assert.ok(!stage.needsFill);
  });

  test('a partial write first fills the stage and keeps the bytes it does not cover', async () => {
    const { inner } = bucketWith('obj', 'the quick brown fox');
    const source = new CountingSource(inner);
    const { area } = await openArea();
    const stage = await area.createFromObject({ key: 'obj', etag: inner.objects.get('obj')!.etag, sizeBytes: 19 }, source);
    await stage.write(4, Buffer.from('QUICK'));
    assert.equal(source.ranges.length, 1);
    assert.deepEqual(await stage.read(0, 100), Buffer.from('the QUICK brown fox'));
  });

  test('a write of the whole file or a truncate to 0 needs no fill', async () => {
    const { inner } = bucketWith('obj', 'old content');
    const source = new CountingSource(inner);
    const { area } = await openArea();
    const etag = inner.objects.get('obj')!.etag;
    const whole = await area.createFromObject({ key: 'obj', etag, sizeBytes: 11 }, source);
    await whole.write(0, Buffer.from('new content!'));
    assert.deepEqual(await whole.read(0, 100), Buffer.from('new content!'));
    const trunc = await area.createFromObject({ key: 'obj', etag, sizeBytes: 11 }, source);
    await trunc.truncate(0);
    await trunc.write(0, Buffer.from('x'));
    await trunc.markClosed();
    assert.deepEqual(await trunc.read(0, 100), Buffer.from('x'));
    assert.equal(source.ranges.length, 0);
  });

  test('a truncate down fetches only the bytes that stay; an unfetched stage is filled before close', async () => {
    const { inner } = bucketWith('obj', '0123456789');
    const source = new CountingSource(inner);
    const { area, directory } = await openArea();
    const stage = await area.createFromObject({ key: 'obj', etag: inner.objects.get('obj')!.etag, sizeBytes: 10 }, source);
    await stage.truncate(4);
    await stage.markClosed();
    assert.deepEqual(source.ranges, [{ start: 0, end: 4 }]);
    assert.deepEqual(await readFile(stage.dataPath), Buffer.from('0123'));
    const rec = await recordOnDisk(directory, stage);
    assert.equal(rec.fillFrom, undefined);
    assert.equal(rec.state, 'closed');
  });

  test('a fill of an object that changed since it was opened fails, and a later read may try again', async () => {
    const { inner } = bucketWith('obj', 'version one');
    const { area } = await openArea();
    const stage = await area.createFromObject({ key: 'obj', etag: inner.objects.get('obj')!.etag, sizeBytes: 11 }, inner);
    inner.put('obj', 'version two');
    await assert.rejects(stage.read(0, 5), (e: unknown) => e instanceof S3RequestError && e.kind === 'PreconditionFailed');
    assert.ok(stage.needsFill);
    assert.equal(stage.failure, undefined, 'a failed fetch is not a failed local write');
    await assert.rejects(stage.markClosed(), (e: unknown) => e instanceof S3RequestError && e.kind === 'PreconditionFailed');
  });

  test('rename changes only the record: key and the ETag it replaces', async () => {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty('a', undefined);
    await stage.write(0, Buffer.from('data'));
    const before = stage.generation;
    await stage.rename('b', '"etag-of-b"');
    assert.equal(stage.key, 'b');
    assert.equal(stage.baseEtag, '"etag-of-b"');
    assert.ok(stage.generation > before);
    const rec = await recordOnDisk(directory, stage);
    assert.equal(rec.key, 'b');
    assert.equal(rec.baseEtag, '"etag-of-b"');
    await stage.rename('c', undefined);
    assert.equal((await recordOnDisk(directory, stage)).baseEtag, undefined);
    assert.deepEqual(await stage.read(0, 10), Buffer.from('data'));
  });

  test('markClosed records the stage closed (fsynced right after); writes then need reopen, which records "open" first', async () => {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty('k', undefined);
    await stage.write(0, Buffer.from('abc'));
    await stage.markClosed();
    await area.flushSyncs();
    await stage.durable();
    assert.equal(stage.state, 'closed');
    assert.deepEqual(await recordOnDisk(directory, stage), { ...stage.snapshotRecord(), state: 'closed', sizeBytes: 3 });
    await assert.rejects(stage.write(0, Buffer.from('x')), StageStateError);
    await assert.rejects(stage.truncate(0), StageStateError);
    await stage.reopen();
    assert.equal((await recordOnDisk(directory, stage)).state, 'open');
    await stage.write(3, Buffer.from('d'));
    assert.deepEqual(await stage.read(0, 10), Buffer.from('abcd'));
  });

  test('local write errors map to the errno the program sees: a full disk or quota is ENOSPC', () => {
    const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
    assert.equal(stageWriteError(err('ENOSPC'), 'k').errno, 'ENOSPC');
    assert.equal(stageWriteError(err('EDQUOT'), 'k').errno, 'ENOSPC');
    assert.equal(stageWriteError(err('EFBIG'), 'k').errno, 'EFBIG');
    assert.equal(stageWriteError(err('EIO'), 'k').errno, 'EIO');
    assert.equal(stageWriteError(err('EDQUOT'), 'k').cause instanceof Error, true);
  });

  test('remove deletes record and data; freeSpace reports the staging file system', async () => {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty('k', undefined);
    await stage.write(0, Buffer.from('abc'));
    assert.equal(area.stages.length, 1);
    await area.remove(stage);
    assert.deepEqual(await stageFiles(directory), []);
    assert.equal(area.stages.length, 0);
    await assert.rejects(stage.read(0, 1), StageStateError);
    const space = await area.freeSpace();
    assert.ok(space.totalBytes > 0 && space.freeBytes >= 0 && space.freeBytes <= space.totalBytes);
  });
});

describe('staging recovery after a crash', () => {
  test('a second area on the folder of one never closed finds the closed file with its bytes and reports the unclosed one', async () => {
    const first = await openArea();
    const closed = await first.area.createEmpty('docs/closed.txt', '"base"');
    const bytes = randomBytes(300_000);
    await closed.write(0, bytes);
    await closed.markClosed();
    const unclosed = await first.area.createEmpty('docs/unclosed.txt', undefined);
    await unclosed.write(0, Buffer.from('half'));

    // No close of the first area: as if its worker was killed here.
    const second = await openArea(first.directory);
    assert.equal(second.recovered.length, 2);
    const up = second.recovered.find((r) => r.action === 'upload');
    assert.ok(up && up.action === 'upload');
    assert.equal(up.stage.key, 'docs/closed.txt');
    assert.equal(up.stage.state, 'closed');
    assert.equal(up.stage.baseEtag, '"base"');
    assert.equal(up.stage.sizeBytes, bytes.length);
    assertSameBytes(await up.stage.read(0, bytes.length), bytes);
    const kept = second.recovered.find((r) => r.action === 'keep');
    assert.ok(kept && kept.action === 'keep');
    assert.equal(kept.reason, 'never-closed');
    assert.equal(kept.record?.key, 'docs/unclosed.txt');
    assert.deepEqual(await readFile(kept.dataPath), Buffer.from('half'), 'kept for the user');

    // The next mount uploads it, conditionally on the version it was based on.
    const { inner, bucket } = bucketWith('docs/closed.txt', 'old');
    inner.objects.get('docs/closed.txt')!.etag = '"base"';
    const result = await uploadStagedFile(up.stage, bucket, SMALL);
    assert.equal(result.status, 'uploaded');
    assert.equal(md5(inner.objects.get('docs/closed.txt')!.body), md5(bytes));
    assert.deepEqual(bucket.preconditions, [{ ifMatch: '"base"' }]);

    await second.area.discard(kept.record!.id);
    assert.deepEqual((await openArea(first.directory)).recovered, []);
    assert.deepEqual(await stageFiles(first.directory), []);
  });

  test('a worker killed with SIGKILL loses nothing it closed', async () => {
    const directory = path.join(root, `killed-${++folderCount}`);
    const stagingModule = fileURLToPath(new URL('../app/data/staging.js', import.meta.url));
    const script = `
      import { StagingArea } from ${JSON.stringify(stagingModule)};
      const area = new StagingArea({ directory: process.env.STAGING_DIR });
      await area.open();
      const closed = await area.createEmpty('closed.bin', undefined);
      await closed.write(0, Buffer.alloc(3 * 1024 * 1024, 5));
      await closed.markClosed();
      const open = await area.createEmpty('open.bin', undefined);
      await open.write(0, Buffer.from('unfinished'));
      process.stdout.write('ready\\n');
      setInterval(() => {}, 60_000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, STAGING_DIR: directory }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    const lines = createInterface({ input: child.stdout });
    const [line] = await once(lines, 'line') as [string];
    lines.close();
    assert.equal(line, 'ready');
    child.kill('SIGKILL');
    const [, signal] = await exited as [number | null, string | null];
    assert.equal(signal, 'SIGKILL');

    const { recovered } = await openArea(directory);
    const outcome = byKey(recovered);
    const closed = outcome.get('closed.bin');
    assert.ok(closed && closed.action === 'upload');
    assertSameBytes(await closed.stage.read(0, 4 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024, 5));
    const open = outcome.get('open.bin');
    assert.ok(open && open.action === 'keep' && open.reason === 'never-closed');
  });

  test('a reopened stage left by a crash is reported, never uploaded half-rewritten', async () => {
    const first = await openArea();
    const stage = await first.area.createEmpty('k', undefined);
    await stage.write(0, Buffer.from('v1'));
    await stage.markClosed();
    await stage.reopen();
    await stage.write(0, Buffer.from('V'));
    const second = await openArea(first.directory);
    assert.deepEqual(second.recovered.map((r) => r.action === 'keep' ? r.reason : r.action), ['never-closed']);
  });

  test('a stage whose upload a crash cut short is uploaded again', async () => {
    const first = await openArea();
    const stage = await first.area.createEmpty('k', undefined);
    await stage.write(0, Buffer.from('payload'));
    await stage.markClosed();
    const { inner, bucket } = bucketWith();
    let cutShort!: (err: Error) => void;
    const held = new Promise<void>((_resolve, reject) => { cutShort = reject; });
    let reached!: () => void;
    const atPut = new Promise<void>((r) => { reached = r; });
    bucket.beforePart = async () => { reached(); await held; };
    const running = uploadStagedFile(stage, bucket, SMALL);
    await atPut;
    assert.equal((await recordOnDisk(first.directory, stage)).state, 'closed', 'an upload is not written to the record');

    const second = await openArea(first.directory);
    const [r] = second.recovered;
    assert.ok(r && r.action === 'upload');
    assert.equal(r.stage.state, 'closed');
    // The first worker's upload never completes (it died).
    cutShort(new Error('worker killed'));
    await assert.rejects(running, /worker killed/);
    await first.area.close();
    bucket.beforePart = undefined;
    const result = await uploadStagedFile(r.stage, bucket, SMALL);
    assert.ok(result.status === 'uploaded' && result.stageRemoved);
    assert.equal(inner.objects.get('k')!.body.toString(), 'payload');
    assert.deepEqual(await stageFiles(first.directory), []);
  });

  test('records with missing or short data, or unreadable, are reported; temp and orphan files are cleaned', async () => {
    const first = await openArea();
    const gone = await first.area.createEmpty('gone', undefined);
    await gone.write(0, Buffer.from('abc'));
    await gone.markClosed();
    const short = await first.area.createEmpty('short', undefined);
    await short.write(0, Buffer.from('abcdef'));
    await short.markClosed();
    await rm(gone.dataPath);
    await truncate(short.dataPath, 2);
    await writeFile(path.join(first.directory, 'bad.json'), '{not json');
    await writeFile(path.join(first.directory, 'x.json.1234.tmp'), '{}');
    await writeFile(path.join(first.directory, 'orphan.data'), 'left by a remove a crash cut short');

    const second = await openArea(first.directory);
    const reasons = second.recovered.map((r) => (r.action === 'keep' ? `${r.record?.key ?? '?'}:${r.reason}` : 'upload')).sort();
    assert.deepEqual(reasons, ['?:record-unreadable', 'gone:data-missing', 'short:data-size-differs']);
    const names = await stageFiles(first.directory);
    assert.ok(!names.some((n) => n.endsWith('.tmp')), 'temp records removed');
    assert.ok(!names.includes('orphan.data'), 'orphan data removed');
    assert.ok(names.includes('bad.json'), 'unreadable record kept for the user');
  });
});

describe('uploading staged files', () => {
  async function closedStage(key: string, body: Uint8Array, baseEtag: string | undefined): Promise<{ area: StagingArea; stage: StagedFile; directory: string }> {
    const { area, directory } = await openArea();
    const stage = await area.createEmpty(key, baseEtag);
    await stage.write(0, body);
    await stage.markClosed();
    return { area, stage, directory };
  }

  test('a small new file written front to back uploads from its memory copy; one written out of order from its data file', async () => {
    const { inner, bucket } = bucketWith();
    const { area } = await openArea();
    const inOrder = await area.createEmpty('in-order.bin', undefined);
    const a = randomBytes(40_000);
    await inOrder.write(0, a.subarray(0, 10_000));
    await inOrder.write(10_000, a.subarray(10_000));
    await inOrder.markClosed();
    // The data file emptied behind the stage's back: only the copy has the bytes.
    await writeFile(inOrder.dataPath, '');
    assert.equal((await uploadStagedFile(inOrder, bucket, SMALL)).status, 'uploaded');
    assertSameBytes(inner.objects.get('in-order.bin')!.body, a);

    const outOfOrder = await area.createEmpty('out-of-order.bin', undefined);
    await outOfOrder.write(0, a.subarray(0, 10_000));
    await outOfOrder.write(5_000, Buffer.alloc(10, 7));
    await outOfOrder.write(10_000, a.subarray(10_000));
    await outOfOrder.markClosed();
    assert.equal((await uploadStagedFile(outOfOrder, bucket, SMALL)).status, 'uploaded');
    const expected = Buffer.from(a);
    expected.fill(7, 5_000, 5_010);
    assertSameBytes(inner.objects.get('out-of-order.bin')!.body, expected, 'read from the data file, with the rewrite');

    const truncated = await area.createEmpty('truncated.bin', undefined);
    await truncated.write(0, a);
    await truncated.truncate(100);
    await truncated.markClosed();
    assert.equal((await uploadStagedFile(truncated, bucket, SMALL)).status, 'uploaded');
    assertSameBytes(inner.objects.get('truncated.bin')!.body, a.subarray(0, 100));
    await area.close();
  });

  test('a small new file is one PutObject with If-None-Match and the stage is removed', async () => {
    const { inner, bucket } = bucketWith();
    const { stage, directory } = await closedStage('new.txt', Buffer.from('hello'), undefined);
    const result = await uploadStagedFile(stage, bucket, SMALL);
    assert.ok(result.status === 'uploaded');
    assert.equal(result.etag, inner.objects.get('new.txt')!.etag);
    assert.equal(result.sizeBytes, 5);
    assert.ok(result.stageRemoved);
    assert.deepEqual(bucket.preconditions, [{ ifNoneMatch: '*' }]);
    assert.equal(inner.objects.get('new.txt')!.body.toString(), 'hello');
    assert.equal(inner.requestCounts.get('PutObject'), 1);
    assert.deepEqual(await stageFiles(directory), []);
  });

  test('an empty file uploads as an empty object', async () => {
    const { inner, bucket } = bucketWith();
    const { area } = await openArea();
    const stage = await area.createEmpty('empty', undefined);
    await stage.markClosed();
    await uploadStagedFile(stage, bucket, SMALL);
    assert.equal(inner.objects.get('empty')!.body.length, 0);
  });

  test('an edited object replaces the version it was based on (If-Match)', async () => {
    const { inner, bucket } = bucketWith('doc', 'original');
    const source = new CountingSource(inner);
    const { area } = await openArea();
    const stage = await area.createFromObject({ key: 'doc', etag: inner.objects.get('doc')!.etag, sizeBytes: 8 }, source);
    await stage.write(8, Buffer.from(' + edit'));
    await stage.markClosed();
    const result = await uploadStagedFile(stage, bucket, SMALL);
    assert.equal(result.status, 'uploaded');
    assert.equal(inner.objects.get('doc')!.body.toString(), 'original + edit');
    assert.equal(bucket.preconditions[0]?.ifMatch, stage.baseEtag);
  });

  test('a 12 MiB file is a multipart upload of 5 MiB parts, at most 2 in flight, with the right bytes', async () => {
    const { inner, bucket } = bucketWith();
    const body = randomBytes(12 * MiB);
    const { stage } = await closedStage('big.bin', body, undefined);
    const result = await uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 });
    assert.ok(result.status === 'uploaded' && result.stageRemoved);
    assert.deepEqual(bucket.partSizes.slice().sort((a, b) => a - b), [2 * MiB, 5 * MiB, 5 * MiB]);
    assert.ok(bucket.maxInFlight <= 2);
    assert.equal(md5(inner.objects.get('big.bin')!.body), md5(body));
    assert.deepEqual(bucket.preconditions, [{ ifNoneMatch: '*' }]);
    assert.equal(inner.uploads.size, 0);
  });

  test('an object changed in the bucket refuses the upload: the stage stays as "conflict" and the other version is kept', async () => {
    const { inner, bucket } = bucketWith('doc', 'v1');
    const { stage, directory, area } = await closedStage('doc', Buffer.from('mine'), inner.objects.get('doc')!.etag);
    inner.put('doc', 'theirs');
    await assert.rejects(uploadStagedFile(stage, bucket, SMALL), (e: unknown) => {
      assert.ok(e instanceof StageConflictError);
      assert.equal(e.key, 'doc');
      return true;
    });
    assert.equal(inner.objects.get('doc')!.body.toString(), 'theirs');
    assert.equal(stage.state, 'conflict');
    assert.equal((await recordOnDisk(directory, stage)).state, 'conflict');
    assert.deepEqual(await readFile(stage.dataPath), Buffer.from('mine'));
    await assert.rejects(uploadStagedFile(stage, bucket, SMALL), StageStateError, 'not uploaded again by itself');
    const next = await openArea(directory);
    assert.deepEqual(next.recovered.map((r) => r.action === 'upload' && r.stage.state), ['conflict'], 'the next run stores it under another name');
    const again = next.recovered[0]!;
    assert.ok(again.action === 'upload');
    await again.stage.retarget('doc (conflict)');
    const result = await uploadStagedFile(again.stage, bucket, SMALL);
    assert.equal(result.status, 'uploaded');
    assert.equal(inner.objects.get('doc (conflict)')!.body.toString(), 'mine');
    assert.equal(inner.objects.get('doc')!.body.toString(), 'theirs');
    await area.close();
  });

  test('a multipart upload refused at completion is aborted; a deleted object is a conflict too', async () => {
    const { inner, bucket } = bucketWith('big', 'v1');
    const { stage } = await closedStage('big', randomBytes(11 * MiB), '"not-the-etag"');
    await assert.rejects(uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 }), StageConflictError);
    assert.equal(inner.uploads.size, 0, 'multipart upload aborted');
    assert.equal(inner.objects.get('big')!.body.toString(), 'v1');

    const deleted = await closedStage('gone', Buffer.from('x'), '"etag"');
    await assert.rejects(uploadStagedFile(deleted.stage, bucket, SMALL), StageConflictError);
    assert.equal(deleted.stage.state, 'conflict');
  });

  test('a new file whose key another writer created meanwhile is a conflict', async () => {
    const { inner, bucket } = bucketWith();
    const { stage } = await closedStage('race', Buffer.from('mine'), undefined);
    inner.put('race', 'theirs');
    await assert.rejects(uploadStagedFile(stage, bucket, SMALL), StageConflictError);
    assert.equal(inner.objects.get('race')!.body.toString(), 'theirs');
  });

  test('a failed part aborts the upload and leaves the stage closed for another try', async () => {
    const { inner, bucket } = bucketWith();
    const body = randomBytes(11 * MiB);
    const { stage } = await closedStage('big', body, undefined);
    bucket.failPart = 2;
    await assert.rejects(uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 }),
      (e: unknown) => e instanceof S3RequestError && e.kind === 'ServerError');
    assert.equal(inner.uploads.size, 0);
    assert.equal(inner.objects.size, 0);
    assert.equal(stage.state, 'closed');
    bucket.failPart = undefined;
    const result = await uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 });
    assert.equal(result.status, 'uploaded');
    assert.equal(md5(inner.objects.get('big')!.body), md5(body));
  });

  test('a write during a multipart upload publishes nothing; the stage uploads whole after its next close', async () => {
    const { inner, bucket } = bucketWith();
    const oldBytes = Buffer.alloc(12 * MiB, 1);
    const { stage } = await closedStage('big', oldBytes, undefined);
    bucket.beforePart = async (n) => {
      if (n !== 1) return;
      bucket.beforePart = undefined;
      await stage.reopen();
      await stage.write(0, Buffer.alloc(12 * MiB, 2));
    };
    const first = await uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 1 });
    assert.equal(first.status, 'superseded');
    assert.equal(inner.objects.size, 0, 'nothing published');
    assert.equal(inner.uploads.size, 0, 'multipart upload aborted');
    assert.equal(stage.state, 'open');
    await stage.markClosed();
    const second = await uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 1 });
    assert.ok(second.status === 'uploaded' && second.stageRemoved);
    assert.equal(md5(inner.objects.get('big')!.body), md5(Buffer.alloc(12 * MiB, 2)));
  });

  test('a stage rewritten and closed again during its upload starts over and publishes the new version only', async () => {
    const { inner, bucket } = bucketWith();
    const { stage } = await closedStage('big', Buffer.alloc(11 * MiB, 1), undefined);
    bucket.beforePart = async (n) => {
      if (n !== 2) return;
      bucket.beforePart = undefined;
      await stage.reopen();
      await stage.write(5 * MiB, Buffer.alloc(MiB, 3));
      await stage.markClosed();
    };
    const result = await uploadStagedFile(stage, bucket, { partSizeBytes: 5 * MiB, maxPartsInFlight: 2 });
    assert.ok(result.status === 'uploaded' && result.stageRemoved);
    const expected = Buffer.alloc(11 * MiB, 1);
    expected.fill(3, 5 * MiB, 6 * MiB);
    assert.equal(md5(inner.objects.get('big')!.body), md5(expected));
    assert.equal(inner.requestCounts.get('CompleteMultipartUpload'), 1);
    assert.equal(inner.uploads.size, 0);
  });

  test('a write after the bytes were read publishes the version read; the stage stays, based on it', async () => {
    const { inner, bucket } = bucketWith();
    const { stage, directory } = await closedStage('doc', Buffer.from('version 1'), undefined);
    bucket.beforePart = async () => {
      bucket.beforePart = undefined;
      await stage.reopen();
      await stage.write(8, Buffer.from('2'));
    };
    const result = await uploadStagedFile(stage, bucket, SMALL);
    assert.ok(result.status === 'uploaded');
    assert.equal(result.stageRemoved, false);
    assert.equal(inner.objects.get('doc')!.body.toString(), 'version 1');
    assert.equal(stage.baseEtag, result.etag, 'the next upload replaces the version just published');
    assert.equal(stage.state, 'open');
    await stage.markClosed();
    assert.equal((await recordOnDisk(directory, stage)).baseEtag, result.etag);
    await uploadStagedFile(stage, bucket, SMALL);
    assert.equal(inner.objects.get('doc')!.body.toString(), 'version 2');
  });

  test('an open stage or one already uploading is not uploaded', async () => {
    const { bucket } = bucketWith();
    const { area } = await openArea();
    const stage = await area.createEmpty('k', undefined);
    await assert.rejects(uploadStagedFile(stage, bucket, SMALL), StageStateError);
    await stage.markClosed();
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let reached!: () => void;
    const atPut = new Promise<void>((r) => { reached = r; });
    bucket.beforePart = async () => { reached(); await held; };
    const running = uploadStagedFile(stage, bucket, SMALL);
    await atPut;
    await assert.rejects(uploadStagedFile(stage, bucket, SMALL), StageStateError);
    release();
    assert.equal((await running).status, 'uploaded');
  });
});

describe('staging on a full disk', () => {
  const notRoot = typeof process.getuid === 'function' && process.getuid() !== 0;
  test('a write past the space fails with ENOSPC, the stage is never uploaded, and the next mount reports it',
    { skip: notRoot ? 'mounting a tmpfs needs root' : false }, async (t) => {
      const dir = path.join(root, 'tiny');
      const { mkdir } = await import('node:fs/promises');
      await mkdir(dir);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'pipe' });
      } catch (err) {
        t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
        return;
      }
      try {
        const staging = path.join(dir, 'staging');
        const { area, directory } = await openArea(staging);
        const free = await area.freeSpace();
        assert.ok(free.totalBytes <= 256 * 1024);
        const ok = await area.createEmpty('fits', undefined);
        await ok.write(0, Buffer.alloc(16 * 1024, 7));
        await ok.markClosed();

        const stage = await area.createEmpty('too-big', undefined);
        const chunk = Buffer.alloc(64 * 1024, 9);
        let failure: unknown;
        for (let i = 0; i < 16 && failure === undefined; i++) {
          try {
            await stage.write(i * chunk.length, chunk);
          } catch (err) {
            failure = err;
          }
        }
        assert.ok(failure instanceof FsError, `expected an FsError, got ${String(failure)}`);
        assert.equal(failure.errno, 'ENOSPC');
        assert.equal((failure.cause as NodeJS.ErrnoException).code, 'ENOSPC');
        assert.equal(stage.state, 'write-failed');
        assert.equal(stage.failure, failure);
        await assert.rejects(stage.write(0, Buffer.from('x')), (e: unknown) => e === failure, 'the failure is sticky');
        await assert.rejects(stage.markClosed(), (e: unknown) => e instanceof FsError && e.errno === 'ENOSPC');

        // Even a record no longer fits: staging another file fails the same way and leaves nothing.
        const namesBefore = (await stageFiles(directory)).filter((n) => !n.endsWith('.tmp')).sort();
        await assert.rejects(area.createEmpty('another', undefined), (e: unknown) => e instanceof FsError && e.errno === 'ENOSPC');
        assert.deepEqual((await stageFiles(directory)).filter((n) => !n.endsWith('.tmp')).sort(), namesBefore);

        const { inner, bucket } = bucketWith();
        await assert.rejects(uploadStagedFile(stage, bucket, SMALL), (e: unknown) => e instanceof FsError && e.errno === 'ENOSPC');
        assert.equal(inner.objects.size, 0);
        assert.equal(inner.requestCounts.size, 0, 'no request at all');

        // The next mount: the closed file uploads, the failed one is reported
        // (its record says "write-failed", or "open" if even that did not fit).
        const next = await openArea(directory);
        const found = byKey(next.recovered);
        assert.equal(found.get('fits')?.action, 'upload');
        const failed = found.get('too-big');
        assert.ok(failed && failed.action === 'keep');
        assert.ok(['write-failed', 'never-closed'].includes(failed.reason), failed.reason);
        await area.close();
        await next.area.close();
      } finally {
        execFileSync('umount', [dir]);
      }
    });
});
