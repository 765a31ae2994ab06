/**
 * The local test server against S3's documented ListObjects/ListObjectsV2
 * behaviour and the other requests our client makes, through the real SDK.
 * If these pass, a red test elsewhere is a bug in our code, not in the server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandInput,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

// ---------------------------------------------------------------------------
// Helpers

/** S3's key order: UTF-8 bytes. */
function s3Sort(keys: Iterable<string>): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

/** Reference listing, written independently of the server: all entries (keys and "prefix/" rollups) in order. */
function expectedEntries(keys: Iterable<string>, prefix = '', delimiter = ''): string[] {
  const entries = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
    entries.add(cut < 0 ? key : key.slice(0, cut + delimiter.length));
  }
  return s3Sort(entries);
}

/** Keys and common prefixes of one page, merged in S3 order. */
function pageEntries(page: { Contents?: Array<{ Key?: string }>; CommonPrefixes?: Array<{ Prefix?: string }> }): string[] {
  return s3Sort([
    ...(page.Contents ?? []).map((o) => o.Key ?? ''),
    ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? ''),
  ]);
}

function isSorted(values: readonly string[]): boolean {
  return values.every((v, i) => i === 0 || Buffer.compare(Buffer.from(values[i - 1]!), Buffer.from(v)) < 0);
}

async function pool<T>(items: readonly T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await run(items[next++]!);
  }));
}

async function putAll(s3: S3Client, bucket: string, keys: readonly string[], body = 'x'): Promise<void> {
  await pool(keys, 32, async (key) => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  });
}

/** Every page of a ListObjectsV2 listing, following continuation tokens. */
async function listAllV2(s3: S3Client, input: ListObjectsV2CommandInput): Promise<ListObjectsV2CommandOutput[]> {
  const pages: ListObjectsV2CommandOutput[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ ...input, ContinuationToken: token }));
    pages.push(page);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
    assert.ok(!page.IsTruncated || token, 'a truncated page carries a NextContinuationToken');
    assert.ok(pages.length < 10_000, 'listing terminates');
  } while (token);
  return pages;
}

async function listKeysV2(s3: S3Client, input: ListObjectsV2CommandInput): Promise<string[]> {
  return (await listAllV2(s3, input)).flatMap(pageEntries);
}

/** A server with one bucket, 'bucket', for the tests of the describe() that calls this. */
function serverForSuite(use: (server: TestS3Server) => void): void {
  let started: TestS3Server | undefined;
  before(async () => {
    started = await startS3Server({ buckets: ['bucket'] });
    use(started);
  });
  after(async () => {
    await started?.stop();
  });
}

async function s3Failure(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof S3ServiceException, `expected an S3 error, got ${String(err)}`);
    return { name: err.name, status: err.$metadata.httpStatusCode };
  }
  assert.fail('expected the request to fail');
}

// ---------------------------------------------------------------------------
// Listing semantics, on one server shared by the read-only listing tests.

describe('listing (ListObjectsV2 and ListObjects)', () => {
  let server: TestS3Server;
  let s3: S3Client;

  /**
   * 2,500 keys: 1,500 top-level files and 500 directories holding one key
   * directly and one two levels down, so top-level listings interleave keys
   * and common prefixes (2,000 entries).
   */
  const bigKeys: string[] = [];
  for (let i = 0; i < 2500; i++) {
    const n = String(i).padStart(4, '0');
    const dir = String(i - (i % 5) + 3).padStart(4, '0');
    if (i % 5 < 3) bigKeys.push(`k${n}`);
    else if (i % 5 === 3) bigKeys.push(`k${dir}/a`);
    else bigKeys.push(`k${dir}/deep/b`);
  }

  const treeKeys = [
    'a/b/c/d',
    'a/b/c/e',
    'a/b2/c/d/e',
    'a/file',
    'a/x/y',
    'a-b',
    'a.txt',
    'top',
    'z/only',
  ];

  before(async () => {
    server = await startS3Server({ buckets: ['big', 'tree', 'empty', 'names', 'small'] });
    s3 = server.client();
    await Promise.all([
      putAll(s3, 'big', bigKeys),
      putAll(s3, 'tree', treeKeys),
      putAll(s3, 'small', ['a', 'b', 'c', 'd/e', 'd/f', 'g']),
    ]);
  });
  after(async () => {
    await server?.stop();
  });

  test('CommonPrefixes roll up keys two and three levels below the prefix', async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Prefix: 'a/', Delimiter: '/' }));
    assert.deepEqual(page.Contents?.map((o) => o.Key), ['a/file']);
    assert.deepEqual(page.CommonPrefixes?.map((p) => p.Prefix), ['a/b/', 'a/b2/', 'a/x/']);
    assert.equal(page.KeyCount, 4);
    assert.equal(page.IsTruncated, false);

    const deeper = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Prefix: 'a/b2/', Delimiter: '/' }));
    assert.equal(deeper.Contents, undefined);
    assert.deepEqual(deeper.CommonPrefixes?.map((p) => p.Prefix), ['a/b2/c/']);
  });

  test('delimiter without prefix rolls up top-level directories and lists top-level keys', async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Delimiter: '/' }));
    assert.deepEqual(page.Contents?.map((o) => o.Key), ['a-b', 'a.txt', 'top']);
    assert.deepEqual(page.CommonPrefixes?.map((p) => p.Prefix), ['a/', 'z/']);
  });

  test('a delimiter other than "/" splits on its first occurrence after the prefix', async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Delimiter: 'c' }));
    assert.deepEqual(pageEntries(page), expectedEntries(treeKeys, '', 'c'));
    assert.deepEqual(page.CommonPrefixes?.map((p) => p.Prefix), ['a/b/c', 'a/b2/c']);
  });

  test('prefix without delimiter lists every key below the prefix at any depth', async () => {
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'tree', Prefix: 'a/b' }), ['a/b/c/d', 'a/b/c/e', 'a/b2/c/d/e']);
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'tree', Prefix: 'a' }), s3Sort(treeKeys.filter((k) => k.startsWith('a'))));
  });

  test('every entry carries Key, LastModified, ETag, Size and StorageClass like HeadObject reports', async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Prefix: 'top' }));
    const [entry] = page.Contents ?? [];
    assert.ok(entry);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'tree', Key: 'top' }));
    assert.equal(entry.Key, 'top');
    assert.equal(entry.Size, 1);
    assert.equal(entry.ETag, head.ETag);
    assert.equal(entry.StorageClass, 'STANDARD');
    assert.equal(entry.LastModified?.getTime(), head.LastModified?.getTime());
  });

  test('2,500 keys page in sorted, non-overlapping pages of 1000 without a delimiter', async () => {
    const pages = await listAllV2(s3, { Bucket: 'big', MaxKeys: 1000 });
    assert.deepEqual(pages.map((p) => p.KeyCount), [1000, 1000, 500]);
    assert.deepEqual(pages.map((p) => p.IsTruncated), [true, true, false]);
    const keys = pages.flatMap((p) => (p.Contents ?? []).map((o) => o.Key ?? ''));
    assert.ok(isSorted(keys), 'keys are strictly increasing across pages');
    assert.deepEqual(keys, s3Sort(bigKeys));
  });

  test('paging keys and prefixes mixed with MaxKeys 1000 and 7 yields every entry once, in order', async () => {
    const expected = expectedEntries(bigKeys, '', '/');
    assert.equal(expected.length, 2000);
    for (const maxKeys of [1000, 7]) {
      const pages = await listAllV2(s3, { Bucket: 'big', Delimiter: '/', MaxKeys: maxKeys });
      assert.equal(pages.length, Math.ceil(expected.length / maxKeys), `page count with MaxKeys ${maxKeys}`);
      for (const [i, page] of pages.entries()) {
        const entries = pageEntries(page);
        assert.equal(page.KeyCount, entries.length);
        assert.ok(entries.length <= maxKeys);
        assert.equal(page.IsTruncated, i < pages.length - 1);
        // Sorted within the page as returned (keys and prefixes are listed separately, each in order).
        assert.ok(isSorted((page.Contents ?? []).map((o) => o.Key ?? '')));
        assert.ok(isSorted((page.CommonPrefixes ?? []).map((p) => p.Prefix ?? '')));
      }
      const all = pages.flatMap(pageEntries);
      assert.ok(isSorted(all), `entries strictly increasing across pages with MaxKeys ${maxKeys}`);
      assert.deepEqual(all, expected);
    }
  });

  test('MaxKeys counts CommonPrefixes together with keys', async () => {
    const first = await s3.send(new ListObjectsV2Command({ Bucket: 'big', Delimiter: '/', MaxKeys: 5 }));
    assert.deepEqual(first.Contents?.map((o) => o.Key), ['k0000', 'k0001', 'k0002', 'k0005']);
    assert.deepEqual(first.CommonPrefixes?.map((p) => p.Prefix), ['k0003/']);
    assert.equal(first.KeyCount, 5);
    assert.equal(first.IsTruncated, true);

    const onlyPrefixes = await s3.send(new ListObjectsV2Command({ Bucket: 'tree', Prefix: 'a/', Delimiter: '/', MaxKeys: 2 }));
    assert.deepEqual(pageEntries(onlyPrefixes), ['a/b/', 'a/b2/']);
    assert.equal(onlyPrefixes.IsTruncated, true);
  });

  test('MaxKeys 0 returns nothing and is not truncated; MaxKeys above 1000 is capped at 1000', async () => {
    const none = await s3.send(new ListObjectsV2Command({ Bucket: 'big', MaxKeys: 0 }));
    assert.equal(none.Contents, undefined);
    assert.equal(none.CommonPrefixes, undefined);
    assert.equal(none.KeyCount, 0);
    assert.equal(none.IsTruncated, false);

    const capped = await s3.send(new ListObjectsV2Command({ Bucket: 'big', MaxKeys: 5000 }));
    assert.equal(capped.Contents?.length, 1000);
    assert.equal(capped.IsTruncated, true);

    const byDefault = await s3.send(new ListObjectsV2Command({ Bucket: 'big' }));
    assert.equal(byDefault.Contents?.length, 1000);
    assert.equal(byDefault.MaxKeys, 1000);
  });

  test('StartAfter returns only entries after the given key, and skips a common prefix it names', async () => {
    const after = async (startAfter: string, delimiter?: string): Promise<string[]> =>
      pageEntries(await s3.send(new ListObjectsV2Command({ Bucket: 'small', StartAfter: startAfter, Delimiter: delimiter })));
    assert.deepEqual(await after('b'), ['c', 'd/e', 'd/f', 'g']);
    assert.deepEqual(await after('bb'), ['c', 'd/e', 'd/f', 'g']);
    assert.deepEqual(await after('d/e'), ['d/f', 'g']);
    assert.deepEqual(await after('b', '/'), ['c', 'd/', 'g']);
    assert.deepEqual(await after('d/', '/'), ['g']);
    assert.deepEqual(await after('g'), []);

    const beforePrefix = await s3.send(new ListObjectsV2Command({ Bucket: 'small', Prefix: 'd/', StartAfter: 'a' }));
    assert.deepEqual(pageEntries(beforePrefix), ['d/e', 'd/f']);
    assert.equal(beforePrefix.StartAfter, 'a');
  });

  test('continuation tokens are opaque base64url, resume after a key or a prefix, and are refused elsewhere', async () => {
    const first = await s3.send(new ListObjectsV2Command({ Bucket: 'small', Delimiter: '/', MaxKeys: 4 }));
    assert.deepEqual(pageEntries(first), ['a', 'b', 'c', 'd/']);
    const token = first.NextContinuationToken;
    assert.ok(token);
    assert.match(token, /^[A-Za-z0-9_-]+$/);

    const second = await s3.send(new ListObjectsV2Command({ Bucket: 'small', Delimiter: '/', MaxKeys: 4, ContinuationToken: token }));
    assert.deepEqual(pageEntries(second), ['g']);
    assert.equal(second.ContinuationToken, token);
    assert.equal(second.IsTruncated, false);
    assert.equal(second.NextContinuationToken, undefined);

    const wrongBucket = await s3Failure(s3.send(new ListObjectsV2Command({ Bucket: 'tree', ContinuationToken: token })));
    assert.deepEqual(wrongBucket, { name: 'InvalidArgument', status: 400 });
    const garbage = await s3Failure(s3.send(new ListObjectsV2Command({ Bucket: 'small', ContinuationToken: 'not a token' })));
    assert.deepEqual(garbage, { name: 'InvalidArgument', status: 400 });
  });

  test('ListObjects (V1) gives NextMarker only with a delimiter, and Marker resumes after keys and prefixes', async () => {
    const expected = expectedEntries(bigKeys, '', '/');
    const seen: string[] = [];
    let marker: string | undefined;
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 1000);
      const page = await s3.send(new ListObjectsCommand({ Bucket: 'big', Delimiter: '/', MaxKeys: 333, Marker: marker }));
      assert.equal(page.Marker ?? '', marker ?? '');
      seen.push(...pageEntries(page));
      if (!page.IsTruncated) {
        assert.equal(page.NextMarker, undefined);
        break;
      }
      assert.equal(page.NextMarker, seen[seen.length - 1]);
      marker = page.NextMarker;
    }
    assert.deepEqual(seen, expected);

    const plain = await s3.send(new ListObjectsCommand({ Bucket: 'small', MaxKeys: 2 }));
    assert.deepEqual(plain.Contents?.map((o) => o.Key), ['a', 'b']);
    assert.equal(plain.IsTruncated, true);
    assert.equal(plain.NextMarker, undefined, 'S3 omits NextMarker without a delimiter');
    const rest = await s3.send(new ListObjectsCommand({ Bucket: 'small', Marker: 'b' }));
    assert.deepEqual(rest.Contents?.map((o) => o.Key), ['c', 'd/e', 'd/f', 'g']);
  });

  test('an empty bucket lists nothing', async () => {
    const v2 = await s3.send(new ListObjectsV2Command({ Bucket: 'empty', Delimiter: '/' }));
    assert.equal(v2.Contents, undefined);
    assert.equal(v2.CommonPrefixes, undefined);
    assert.equal(v2.KeyCount, 0);
    assert.equal(v2.IsTruncated, false);
    const v1 = await s3.send(new ListObjectsCommand({ Bucket: 'empty' }));
    assert.equal(v1.Contents, undefined);
    assert.equal(v1.IsTruncated, false);
  });

  test('listing a bucket that does not exist fails with NoSuchBucket 404', async () => {
    assert.deepEqual(await s3Failure(s3.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' }))), { name: 'NoSuchBucket', status: 404 });
    assert.deepEqual(await s3Failure(s3.send(new ListObjectsCommand({ Bucket: 'no-such-bucket' }))), { name: 'NoSuchBucket', status: 404 });
  });

  test('keys with spaces, unicode and "+" are listed verbatim in UTF-8 byte order', async () => {
    const names = [
      'with space', 'plus+sign', 'dir with space/file+1', 'dir with space/sub dir/x',
      'Zebra', 'é', '\uE000private', '😀emoji', 'ümlaut/ö', '~tilde', '0012', 'a&b<c>"d\'',
    ];
    await putAll(s3, 'names', names);
    // U+E000 sorts before an astral character in UTF-8, after it in UTF-16.
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'names', MaxKeys: 2 }), s3Sort(names));
    assert.ok(s3Sort(names).indexOf('\uE000private') < s3Sort(names).indexOf('😀emoji'));

    const spaced = await s3.send(new ListObjectsV2Command({ Bucket: 'names', Prefix: 'dir with space/', Delimiter: '/' }));
    assert.deepEqual(spaced.Contents?.map((o) => o.Key), ['dir with space/file+1']);
    assert.deepEqual(spaced.CommonPrefixes?.map((p) => p.Prefix), ['dir with space/sub dir/']);
    assert.equal(spaced.Prefix, 'dir with space/');

    const top = await s3.send(new ListObjectsV2Command({ Bucket: 'names', Delimiter: '/' }));
    assert.deepEqual(pageEntries(top), expectedEntries(names, '', '/'));
  });

  test('encoding-type=url percent-encodes keys and prefixes in the response', async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'names', Prefix: 'dir with space/', Delimiter: '/', EncodingType: 'url' }));
    assert.equal(page.EncodingType, 'url');
    const decode = (s: string | undefined): string => decodeURIComponent((s ?? '').replace(/\+/g, ' '));
    assert.deepEqual(page.Contents?.map((o) => o.Key), ['dir+with+space%2Ffile%2B1']);
    assert.deepEqual(page.Contents?.map((o) => decode(o.Key)), ['dir with space/file+1']);
    assert.deepEqual(page.CommonPrefixes?.map((p) => decode(p.Prefix)), ['dir with space/sub dir/']);
  });
});

// ---------------------------------------------------------------------------
// Writes show up in listings immediately.

describe('writes and listings', () => {
  let server: TestS3Server;
  let s3: S3Client;
  serverForSuite((started) => {
    server = started;
    s3 = started.client();
  });

  const keys = async (prefix = ''): Promise<string[]> => listKeysV2(s3, { Bucket: 'bucket', Prefix: prefix });

  test('PutObject, multipart upload and CopyObject appear in the listing immediately; DeleteObject(s) remove them', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'w/put', Body: 'hello' }));
    assert.deepEqual(await keys('w/'), ['w/put']);

    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key: 'w/multi part' }));
    assert.ok(UploadId);
    const parts = [];
    for (const [i, body] of ['part one;', 'part two'].entries()) {
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket: 'bucket', Key: 'w/multi part', UploadId, PartNumber: i + 1, Body: body }));
      parts.push({ PartNumber: i + 1, ETag });
    }
    assert.deepEqual(await keys('w/'), ['w/put'], 'an unfinished upload is not listed');
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'w/multi part', UploadId, MultipartUpload: { Parts: parts } }));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: 'w/multi' }));
    assert.deepEqual(listed.Contents?.map((o) => [o.Key, o.Size]), [['w/multi part', 17]]);

    await s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'w/copy+of é', CopySource: `bucket/${encodeURIComponent('w/put')}` }));
    assert.deepEqual(await keys('w/'), ['w/copy+of é', 'w/multi part', 'w/put']);
    const copied = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'w/copy+of é' }));
    assert.equal(await copied.Body?.transformToString(), 'hello');

    await s3.send(new DeleteObjectCommand({ Bucket: 'bucket', Key: 'w/put' }));
    assert.deepEqual(await keys('w/'), ['w/copy+of é', 'w/multi part']);

    const deleted = await s3.send(new DeleteObjectsCommand({
      Bucket: 'bucket',
      Delete: { Objects: [{ Key: 'w/copy+of é' }, { Key: 'w/multi part' }, { Key: 'w/never existed' }] },
    }));
    assert.deepEqual(deleted.Deleted?.map((d) => d.Key).sort(), ['w/copy+of é', 'w/multi part', 'w/never existed']);
    assert.deepEqual(await keys('w/'), []);
  });

  test('CopyObject copies from keys with "+", "&", "#" and spaces', async () => {
    const source = 'c/a+b&c#d e.txt';
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: source, Body: 'odd' }));
    await s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'c/dest', CopySource: `bucket/${source.split('/').map(encodeURIComponent).join('/')}` }));
    const copied = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'c/dest' }));
    assert.equal(await copied.Body?.transformToString(), 'odd');
    assert.deepEqual(await keys('c/'), s3Sort([source, 'c/dest']));
  });

  test('DeleteObjects deletes keys that look like numbers or have surrounding spaces', async () => {
    const odd = ['n/0012', 'n/1e3', 'n/ padded '];
    await putAll(s3, 'bucket', odd);
    assert.deepEqual(await keys('n/'), s3Sort(odd));
    const result = await s3.send(new DeleteObjectsCommand({ Bucket: 'bucket', Delete: { Objects: odd.map((Key) => ({ Key })) } }));
    assert.deepEqual(result.Deleted?.map((d) => d.Key).sort(), [...odd].sort());
    assert.deepEqual(await keys('n/'), []);
  });

  test('a listing reflects a burst of concurrent writes and deletes as soon as they are acknowledged', async () => {
    const burst = Array.from({ length: 300 }, (_, i) => `burst/${String(i).padStart(3, '0')}`);
    await putAll(s3, 'bucket', burst);
    assert.deepEqual(await keys('burst/'), burst);
    const gone = burst.filter((_, i) => i % 3 === 0);
    await pool(gone, 32, async (Key) => {
      await s3.send(new DeleteObjectCommand({ Bucket: 'bucket', Key }));
    });
    assert.deepEqual(await keys('burst/'), burst.filter((_, i) => i % 3 !== 0));
  });

  test('AbortMultipartUpload discards the upload and a second abort gets NoSuchUpload', async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key: 'abort/me' }));
    await s3.send(new UploadPartCommand({ Bucket: 'bucket', Key: 'abort/me', UploadId, PartNumber: 1, Body: 'data' }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'bucket', Key: 'abort/me', UploadId }));
    assert.deepEqual(await keys('abort/'), []);
    assert.deepEqual(
      await s3Failure(s3.send(new AbortMultipartUploadCommand({ Bucket: 'bucket', Key: 'abort/me', UploadId }))),
      { name: 'NoSuchUpload', status: 404 },
    );
  });

  test('GetObject with If-Match succeeds on the current ETag and fails 412 on another', async () => {
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'etag/obj', Body: 'v1' }));
    assert.ok(ETag);
    const ok = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'etag/obj', IfMatch: ETag }));
    assert.equal(await ok.Body?.transformToString(), 'v1');
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'etag/obj', Body: 'v2' }));
    assert.deepEqual(
      await s3Failure(s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'etag/obj', IfMatch: ETag }))),
      { name: 'PreconditionFailed', status: 412 },
    );
  });

  test('GetObject ranges: the first byte alone, a range past the end cut to the object, 416 for an empty object', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'range/ten', Body: '0123456789' }));
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'range/empty', Body: '' }));
    const first = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'range/ten', Range: 'bytes=0-0' }));
    assert.equal(await first.Body?.transformToString(), '0');
    assert.equal(first.ContentRange, 'bytes 0-0/10');
    assert.equal(first.ContentLength, 1);
    const some = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'range/ten', Range: 'bytes=2-5' }));
    assert.equal(await some.Body?.transformToString(), '2345');
    assert.equal(some.ContentRange, 'bytes 2-5/10');
    const past = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'range/ten', Range: 'bytes=0-65535' }));
    assert.equal(await past.Body?.transformToString(), '0123456789');
    assert.equal(past.ContentRange, 'bytes 0-9/10');
    assert.deepEqual(
      await s3Failure(s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'range/empty', Range: 'bytes=0-65535' }))),
      { name: 'InvalidRange', status: 416 },
    );
    const whole = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'range/empty' }));
    assert.equal(await whole.Body?.transformToString(), '');
  });

  test('copying an object onto itself with REPLACE gives it a new LastModified in HEAD and in the listing', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'self/obj', Body: 'same' }));
    const before = await s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'self/obj' }));
    // LastModified has whole-second resolution.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await s3.send(new CopyObjectCommand({
      Bucket: 'bucket', Key: 'self/obj', CopySource: 'bucket/self/obj', MetadataDirective: 'REPLACE', Metadata: { mode: '644' },
    }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'self/obj' }));
    assert.ok((head.LastModified?.getTime() ?? 0) > (before.LastModified?.getTime() ?? 0));
    assert.equal(head.Metadata?.['mode'], '644');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: 'self/' }));
    assert.equal(listed.Contents?.[0]?.LastModified?.getTime(), head.LastModified?.getTime());
  });
});

// ---------------------------------------------------------------------------
// Conditional writes and copies, as S3 documents them.

describe('conditional writes and copies', () => {
  let server: TestS3Server;
  let s3: S3Client;
  serverForSuite((started) => {
    server = started;
    s3 = started.client();
  });

  const body = async (Key: string): Promise<string> =>
    (await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key }))).Body!.transformToString();

  async function pendingUploadIds(): Promise<string[]> {
    return fsp.readdir(`${server.directory}/bucket/._S3rver_uploads`).catch(() => []);
  }

  test('PutObject with If-None-Match: * creates a missing key and fails 412 PreconditionFailed on an existing one, which it keeps', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/new', Body: 'first', IfNoneMatch: '*' }));
    assert.deepEqual(
      await s3Failure(s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/new', Body: 'second', IfNoneMatch: '*' }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    assert.equal(await body('cond/new'), 'first');
  });

  test('PutObject with If-Match replaces the version with that ETag, fails 412 with a stale one and 404 NoSuchKey on a missing key', async () => {
    const v1 = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/match', Body: 'v1' }));
    const v2 = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/match', Body: 'v2', IfMatch: v1.ETag }));
    assert.deepEqual(
      await s3Failure(s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/match', Body: 'v3', IfMatch: v1.ETag }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    assert.equal(await body('cond/match'), 'v2');
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/match', Body: 'v3', IfMatch: v2.ETag }));
    assert.equal(await body('cond/match'), 'v3');
    assert.deepEqual(
      await s3Failure(s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/missing', Body: 'x', IfMatch: v1.ETag }))),
      { name: 'NoSuchKey', status: 404 },
    );
  });

  test('CompleteMultipartUpload honours If-None-Match and If-Match; a failed condition stores nothing and keeps the upload', async () => {
    const { ETag: current } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'cond/mpu', Body: 'old' }));
    const upload = async (Key = 'cond/mpu'): Promise<{ UploadId: string; Parts: Array<{ PartNumber: number; ETag: string | undefined }> }> => {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key }));
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket: 'bucket', Key, UploadId, PartNumber: 1, Body: 'new' }));
      return { UploadId: UploadId!, Parts: [{ PartNumber: 1, ETag }] };
    };
    const a = await upload();
    assert.deepEqual(
      await s3Failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'cond/mpu', UploadId: a.UploadId, MultipartUpload: { Parts: a.Parts }, IfNoneMatch: '*' }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    assert.deepEqual(
      await s3Failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'cond/mpu', UploadId: a.UploadId, MultipartUpload: { Parts: a.Parts }, IfMatch: '"0123456789abcdef0123456789abcdef"' }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    assert.equal(await body('cond/mpu'), 'old');
    assert.ok((await pendingUploadIds()).includes(a.UploadId), 'the upload is still there');
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'cond/mpu', UploadId: a.UploadId, MultipartUpload: { Parts: a.Parts }, IfMatch: current }));
    assert.equal(await body('cond/mpu'), 'new');
    const b = await upload('cond/mpu-fresh');
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'cond/mpu-fresh', UploadId: b.UploadId, MultipartUpload: { Parts: b.Parts }, IfNoneMatch: '*' }));
    assert.equal(await body('cond/mpu-fresh'), 'new');
  });

  test('CopyObject with a stale x-amz-copy-source-if-match fails 412 and copies nothing; with the current ETag it copies', async () => {
    const { ETag: stale } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'copy/src', Body: 'one' }));
    const { ETag: current } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'copy/src', Body: 'two' }));
    assert.deepEqual(
      await s3Failure(s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'copy/dest', CopySource: 'bucket/copy/src', CopySourceIfMatch: stale }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    assert.deepEqual(await s3Failure(s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'copy/dest' }))), { name: 'NoSuchKey', status: 404 });
    await s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'copy/dest', CopySource: 'bucket/copy/src', CopySourceIfMatch: current }));
    assert.equal(await body('copy/dest'), 'two');
  });

  test('UploadPartCopy of a range gives exactly those bytes; a range past the source is 400 InvalidArgument, a stale copy-source-if-match 412', async () => {
    const source = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'part copy/src +&#', Body: source }));
    const CopySource = `bucket/${'part copy/src +&#'.split('/').map(encodeURIComponent).join('/')}`;
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key: 'part copy/dest' }));
    const first = await s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'part copy/dest', UploadId, PartNumber: 1, CopySource, CopySourceRange: 'bytes=100-399', CopySourceIfMatch: ETag }));
    const second = await s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'part copy/dest', UploadId, PartNumber: 2, CopySource, CopySourceRange: 'bytes=900-999' }));
    assert.match(first.CopyPartResult?.ETag ?? '', /^"[0-9a-f]{32}"$/);
    assert.deepEqual(
      await s3Failure(s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'part copy/dest', UploadId, PartNumber: 3, CopySource, CopySourceRange: 'bytes=900-1000' }))),
      { name: 'InvalidArgument', status: 400 },
    );
    assert.deepEqual(
      await s3Failure(s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'part copy/dest', UploadId, PartNumber: 3, CopySource, CopySourceIfMatch: '"0123456789abcdef0123456789abcdef"' }))),
      { name: 'PreconditionFailed', status: 412 },
    );
    await s3.send(new CompleteMultipartUploadCommand({
      Bucket: 'bucket', Key: 'part copy/dest', UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: first.CopyPartResult?.ETag }, { PartNumber: 2, ETag: second.CopyPartResult?.ETag }] },
    }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'part copy/dest' }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat([source.subarray(100, 400), source.subarray(900, 1000)])));
  });

  test('UploadPartCopy into an upload that does not exist fails 404 NoSuchUpload', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'part copy/x', Body: 'x' }));
    assert.deepEqual(
      await s3Failure(s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'part copy/y', UploadId: 'abcdef', PartNumber: 1, CopySource: 'bucket/part copy/x' }))),
      { name: 'NoSuchUpload', status: 404 },
    );
  });
});

// ---------------------------------------------------------------------------
// A write replaces an object whole.

describe('whole versions while a write streams in', () => {
  let server: TestS3Server;
  let s3: S3Client;
  serverForSuite((started) => {
    server = started;
    s3 = started.client();
  });

  const bytesOf = async (Key: string, range?: string): Promise<Buffer> =>
    Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key, Range: range }))).Body!.transformToByteArray());

  /** A PutObject whose body is sent in two halves: the first now, the second when `finish` is called. */
  async function halfSentPut(Key: string, body: Buffer): Promise<{ finish(): Promise<string> }> {
    const stream = new PassThrough();
    const put = s3.send(new PutObjectCommand({ Bucket: 'bucket', Key, Body: stream, ContentLength: body.length }));
    put.catch(() => undefined);
    const started = Date.now() - 1000;
    stream.write(body.subarray(0, body.length / 2));
    // The first half is on the server's disk: a file written since holds it
    // (s3rver's own store wrote the object's file in place; ours, a file beside it).
    const dir = path.dirname(path.join(server.directory, 'bucket', Key));
    for (let i = 0; ; i++) {
      const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => !n.endsWith('.json') && !n.endsWith('.md5'));
      const stats = await Promise.all(names.map((n) => fsp.stat(path.join(dir, n)).catch(() => undefined)));
      if (stats.some((st) => st && st.size >= body.length / 2 && st.mtimeMs >= started)) break;
      assert.ok(i < 500, `the server did not receive the first half: ${names.join(', ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return {
      finish: async () => {
        stream.end(body.subarray(body.length / 2));
        return (await put).ETag!;
      },
    };
  }

  test('GET, HEAD, a range and a listing during a PutObject of the same key see the old version whole; the new one once acknowledged', async () => {
    const old = randomBytes(3 * 1024 * 1024);
    const next = randomBytes(5 * 1024 * 1024);
    const { ETag: oldEtag } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'v/obj', Body: old }));
    const put = await halfSentPut('v/obj', next);
    assert.ok((await bytesOf('v/obj')).equals(old), 'GET: the old version, whole');
    assert.ok((await bytesOf('v/obj', 'bytes=1048576-1048591')).equals(old.subarray(1048576, 1048592)), 'a range of the old version');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'v/obj' }));
    assert.deepEqual([head.ContentLength, head.ETag], [old.length, oldEtag]);
    const listed = (await s3.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: 'v/' }))).Contents ?? [];
    assert.deepEqual(listed.map((o) => [o.Key, o.Size, o.ETag]), [['v/obj', old.length, oldEtag]]);
    const newEtag = await put.finish();
    assert.ok((await bytesOf('v/obj')).equals(next), 'GET: the new version, whole');
    const after = await s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'v/obj' }));
    assert.deepEqual([after.ContentLength, after.ETag], [next.length, newEtag]);
  });

  test('a new key being written does not exist until its PutObject is acknowledged', async () => {
    const put = await halfSentPut('v/new', randomBytes(2 * 1024 * 1024));
    assert.deepEqual(await s3Failure(s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'v/new' }))), { name: 'NotFound', status: 404 });
    assert.deepEqual((await s3.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: 'v/new' }))).KeyCount, 0);
    await put.finish();
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: 'bucket', Key: 'v/new' }))).ContentLength, 2 * 1024 * 1024);
  });

  test('CopyObject and UploadPartCopy during a PutObject of their source copy the old version, and its ETag is the one their conditions see', async () => {
    const old = randomBytes(2 * 1024 * 1024);
    const { ETag: oldEtag } = await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'v/src', Body: old }));
    const put = await halfSentPut('v/src', randomBytes(3 * 1024 * 1024));
    await s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'v/copy', CopySource: 'bucket/v/src', CopySourceIfMatch: oldEtag }));
    assert.ok((await bytesOf('v/copy')).equals(old));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key: 'v/parts' }));
    const part = await s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'v/parts', UploadId, PartNumber: 1, CopySource: 'bucket/v/src', CopySourceRange: `bytes=0-${old.length - 1}`, CopySourceIfMatch: oldEtag }));
    await put.finish();
    // Once the new version is in, the old ETag is stale for both, and the new size is the range's limit.
    assert.deepEqual(await s3Failure(s3.send(new CopyObjectCommand({ Bucket: 'bucket', Key: 'v/copy2', CopySource: 'bucket/v/src', CopySourceIfMatch: oldEtag }))), { name: 'PreconditionFailed', status: 412 });
    assert.deepEqual(await s3Failure(s3.send(new UploadPartCopyCommand({ Bucket: 'bucket', Key: 'v/parts', UploadId, PartNumber: 2, CopySource: 'bucket/v/src', CopySourceIfMatch: oldEtag }))), { name: 'PreconditionFailed', status: 412 });
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket', Key: 'v/parts', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.CopyPartResult?.ETag }] } }));
    assert.ok((await bytesOf('v/parts')).equals(old));
  });

  test('a PutObject cut off half way leaves the old version and no temporary file', async () => {
    const old = randomBytes(1024 * 1024);
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'v/cut', Body: old }));
    const stream = new PassThrough();
    const ac = new AbortController();
    const put = s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'v/cut', Body: stream, ContentLength: 4 * 1024 * 1024 }), { abortSignal: ac.signal });
    stream.write(randomBytes(1024 * 1024));
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    await assert.rejects(put);
    stream.destroy();
    const dir = path.join(server.directory, 'bucket', 'v');
    for (let i = 0; (await fsp.readdir(dir)).some((n) => n.endsWith('.writing')); i++) {
      assert.ok(i < 500, `a temporary file stays: ${(await fsp.readdir(dir)).join(', ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok((await bytesOf('v/cut')).equals(old));
  });
});

// ---------------------------------------------------------------------------
// Credentials and lifecycle.

describe('credentials', () => {
  let server: TestS3Server;

  before(async () => {
    server = await startS3Server({
      buckets: ['secure'],
      credentials: [
        { accessKeyId: 'TESTKEY1', secretAccessKey: 'test-secret-1' },
        { accessKeyId: 'TESTKEY2', secretAccessKey: 'test-secret-2' },
      ],
    });
  });
  after(async () => {
    await server?.stop();
  });

  const clientWith = (accessKeyId: string, secretAccessKey: string): S3Client => new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });

  test('the configured pairs and the default S3RVER pair are accepted', async () => {
    assert.deepEqual(server.credentials, { accessKeyId: 'TESTKEY1', secretAccessKey: 'test-secret-1' });
    await server.client().send(new PutObjectCommand({ Bucket: 'secure', Key: 'by key 1', Body: '1' }));
    for (const [id, secret] of [['TESTKEY2', 'test-secret-2'], ['S3RVER', 'S3RVER']] as const) {
      const s3 = clientWith(id, secret);
      const page = await s3.send(new ListObjectsV2Command({ Bucket: 'secure' }));
      assert.deepEqual(page.Contents?.map((o) => o.Key), ['by key 1']);
      s3.destroy();
    }
  });

  test('a wrong secret gets 403 SignatureDoesNotMatch and an unknown key 403 InvalidAccessKeyId, for reads and writes', async () => {
    const wrongSecret = clientWith('TESTKEY1', 'test-secret-2');
    const unknownKey = clientWith('NOSUCHKEY', 'test-secret-1');
    assert.deepEqual(await s3Failure(wrongSecret.send(new ListObjectsV2Command({ Bucket: 'secure' }))), { name: 'SignatureDoesNotMatch', status: 403 });
    assert.deepEqual(
      await s3Failure(wrongSecret.send(new PutObjectCommand({ Bucket: 'secure', Key: 'intruder', Body: 'x' }))),
      { name: 'SignatureDoesNotMatch', status: 403 },
    );
    assert.deepEqual(await s3Failure(unknownKey.send(new ListObjectsV2Command({ Bucket: 'secure' }))), { name: 'InvalidAccessKeyId', status: 403 });
    wrongSecret.destroy();
    unknownKey.destroy();
    const page = await server.client().send(new ListObjectsV2Command({ Bucket: 'secure', Prefix: 'intruder' }));
    assert.equal(page.Contents, undefined, 'a refused write stores nothing');
  });
});

describe('lifecycle', () => {
  test('restart() keeps the data, the port and the listing, also after kill()', async (t) => {
    const server = await startS3Server({ buckets: ['keep'] });
    t.after(() => server.stop());
    const s3 = server.client();
    const port = server.port;
    assert.equal(server.endpoint, `http://127.0.0.1:${port}`);
    await putAll(s3, 'keep', ['one', 'two/three']);

    await server.restart();
    assert.equal(server.port, port);
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'keep' }), ['one', 'two/three']);

    server.kill();
    const offline = server.client();
    await assert.rejects(offline.send(new ListObjectsV2Command({ Bucket: 'keep' })));
    await server.restart();
    await s3.send(new PutObjectCommand({ Bucket: 'keep', Key: 'two/four', Body: 'x' }));
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'keep', Delimiter: '/' }), ['one', 'two/']);
    assert.deepEqual(await listKeysV2(s3, { Bucket: 'keep' }), ['one', 'two/four', 'two/three']);
  });

  test('stop() frees the port and removes the directory it created', async () => {
    const server = await startS3Server();
    await server.stop();
    await assert.rejects(fsp.stat(server.directory), { code: 'ENOENT' });
    const again = await startS3Server({ port: server.port });
    try {
      assert.equal(again.port, server.port);
    } finally {
      await again.stop();
    }
  });

  test('startS3Server rejects with a clear error when the port is taken', async (t) => {
    const first = await startS3Server();
    t.after(() => first.stop());
    await assert.rejects(startS3Server({ port: first.port }), /exited before it was ready.*EADDRINUSE/s);
  });
});
