/**
 * Child-process entry of the local S3-compatible test server: s3rver 3.7.1,
 * with its object listing, SigV4 checking and a few other gaps replaced so
 * that a failing test of ours points at our code, never at the server.
 *
 * It runs in its own process (forked by ./s3-server.ts) because test
 * processes make synchronous fs calls into FUSE mounts whose worker talks to
 * this server: in the test process itself, the server could never answer.
 *
 * Protocol: argv[2] is a JSON {@link ServerProcessConfig}; once listening the
 * child sends `{ type: 'ready', port }` (or `{ type: 'error', message }` and
 * exits 1); it shuts down on SIGTERM, on `{ type: 'close' }`, or when the
 * parent goes away (IPC disconnect), so a crashed test never leaks a server.
 *
 * What is replaced, and why:
 * - ListObjects V1/V2 (`getBucket` controller): s3rver walks every key below
 *   the prefix per request, drops CommonPrefixes more than one level down,
 *   returns unsorted pages, ignores max-keys for prefixes, and encrypts its
 *   continuation tokens with DES (needs --openssl-legacy-provider). Ours pages
 *   over an in-memory sorted index kept current by hooks on the store.
 * - SigV4: s3rver only checks that the access key exists ("Signature version
 *   4 calculation is unimplemented"), so a wrong secret would be accepted.
 * - DeleteObjects: s3rver's XML parser turns the key "0012" into the number
 *   12 (and crashes) and trims keys with surrounding spaces.
 * - CopyObject: s3rver decodes x-amz-copy-source with decodeURI, which leaves
 *   %2B, %26, %23... encoded, so keys with '+', '&', '#' cannot be copied; and
 *   a same-key metadata REPLACE kept the old LastModified.
 * - AbortMultipartUpload: s3rver answers 405 MethodNotAllowed.
 * - GetObject/HeadObject If-Match: s3rver ignores it.
 * - GetObject ranges: "bytes=0-0" sent the whole object (s3rver reads the
 *   end as `end || Infinity`); a range of an empty object sent a bad
 *   Content-Length instead of 416 InvalidRange.
 * - UploadPartCopy (x-amz-copy-source on a part PUT): s3rver answers 501
 *   NotImplemented. Ours stores the source's x-amz-copy-source-range (or
 *   the whole source) as the part, with x-amz-copy-source-if-match.
 * - CopyObject x-amz-copy-source-if-match / -if-none-match: s3rver ignores
 *   them; a source that does not match gets 412 PreconditionFailed.
 * - Writes in place (s3-server-versions.ts): s3rver streams a PUT into the
 *   object's own file, so a GET, HEAD, copy or UploadPartCopy of the key
 *   meanwhile saw part of the new bytes, or a size neither version has.
 *   Ours writes beside it and renames; readers take one version whole.
 * - PutObject and CompleteMultipartUpload If-Match / If-None-Match (S3's
 *   conditional writes): s3rver ignores them. Ours: 412 PreconditionFailed
 *   when the condition fails, 404 NoSuchKey for If-Match on a missing key.
 *   Checked just before the write, not atomically with it: no test races
 *   two conditional writes, so 409 ConditionalRequestConflict never occurs.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { copySourceRefusal, etagListMatches, installWholeVersions, servedVersionCheck, type VersionedStore } from './s3-server-versions.js';

export interface ServerProcessConfig {
  /** 0 picks a free port. */
  port: number;
  directory: string;
  buckets: string[];
  credentials: Array<{ accessKeyId: string; secretAccessKey: string }>;
  silent: boolean;
  /** Set when the parent created the directory: if the parent goes away without stop(), nobody else will remove it. */
  removeDirectoryWhenOrphaned: boolean;
}

export type ServerProcessMessage =
  | { type: 'ready'; port: number }
  | { type: 'error'; message: string };

// ---------------------------------------------------------------------------
// The parts of s3rver (CommonJS, untyped) this file relies on.

interface FilesystemStore extends VersionedStore {
  rootDirectory: string;
  putPart(bucket: string, uploadId: string, partNumber: string, content: NodeJS.ReadableStream): Promise<{ size: number; md5: string }>;
  getBucket(bucket: string): Promise<object | null>;
  putBucket(bucket: string): Promise<object | null>;
  deleteBucket(bucket: string): Promise<void>;
  existsObject(bucket: string, key: string): Promise<boolean>;
  reset(): void;
}

type QueryValue = string | string[] | undefined;

/** The Koa context as s3rver's router leaves it. */
interface Ctx {
  req: IncomingMessage;
  method: string;
  path: string;
  originalUrl: string;
  headers: IncomingHttpHeaders;
  query: Record<string, QueryValue>;
  params: Record<string, string | undefined>;
  state: Record<string, unknown>;
  body: unknown;
  status: number;
  /** Koa's Content-Length. */
  length: number | undefined;
  set(field: string, value: string): void;
  store: FilesystemStore;
  logger: { info(...args: unknown[]): void };
}

type Next = () => Promise<void>;
type Middleware = (ctx: Ctx, next: Next) => Promise<void>;
type Controller = (ctx: Ctx) => Promise<void>;

interface S3rverOptions {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
  configureBuckets: Array<{ name: string; configs: never[] }>;
}

interface S3rverInstance {
  store: FilesystemStore;
  /** Koa's middleware stack; it is composed only when the server starts listening. */
  middleware: Middleware[];
  httpServer?: Server;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}

type S3ErrorCtor = new (code: string, message: string, detail?: Record<string, string | number>) => Error;

interface AWSAccountClass {
  new (accountId: number, displayName: string): { createKeyPair(accessKeyId: string, secret: string): void };
  registry: Map<string, { accessKeys: Map<string, string> }>;
  DUMMY_ACCOUNT: { id: number; displayName: string };
}

const require = createRequire(import.meta.url);
const S3rver = require('s3rver') as new (options: S3rverOptions) => S3rverInstance;
const S3Error = require('s3rver/lib/models/error.js') as S3ErrorCtor;
const AWSAccount = require('s3rver/lib/models/account.js') as AWSAccountClass;
const bucketController = require('s3rver/lib/controllers/bucket.js') as { getBucket: Controller };
const objectController = require('s3rver/lib/controllers/object.js') as {
  getObject: Controller;
  deleteMultipleObjects: Controller;
  putObject: Controller;
  putObjectCopy: Controller;
  uploadPart: Controller;
  completeMultipartUpload: Controller;
};
// `he` is s3rver's own XML entity codec; using it keeps escaping identical.
const he = createRequire(require.resolve('s3rver'))('he') as { decode(text: string): string };

const OBJECT_SUFFIX = '._S3rver_object';
const UPLOADS_DIR = '._S3rver_uploads';
const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const SUMMARY_READS_IN_FLIGHT = 64;

// ---------------------------------------------------------------------------
// Key order and the sorted index.

/**
 * S3 orders keys by their UTF-8 bytes, i.e. by code point. JS compares UTF-16
 * code units, which differs only when a surrogate (astral character) meets a
 * unit in U+E000..U+FFFF; remapping the two ranges at the first difference
 * restores code point order without encoding the strings.
 */
function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** First index in keys[from..] whose key is > bound (strict) or >= bound. */
function searchKeys(keys: readonly string[], bound: string, strict: boolean, from = 0): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(keys[mid]!, bound);
    if (c < 0 || (strict && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * keys[from] starts with prefix; keys starting with a prefix are contiguous in
 * sorted order, so the end of that run is found by bisection, which is what
 * makes a common prefix with 10,000 keys below it cost O(log n), not O(n).
 */
function endOfRun(keys: readonly string[], from: number, prefix: string): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]!.startsWith(prefix)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface ObjectSummary { lastModified: string; etag: string; size: number }

/**
 * The sorted keys of one bucket, plus a cache of what a listing shows per key.
 *
 * Cache coherence: every write to a key takes a fresh sequence number when it
 * starts and when it ends. A summary read from disk is cached only if the
 * key's number did not move during the read and no write to it is in flight,
 * so a listing that raced a write never caches what it saw half-written.
 */
class BucketIndex {
  readonly keys: string[];
  private readonly summaries = new Map<string, ObjectSummary>();
  /** Never pruned: a removed-then-re-added key must not get an old number back. */
  private readonly versions = new Map<string, number>();
  private readonly inFlight = new Map<string, number>();
  private sequence = 0;

  constructor(keys: string[]) {
    this.keys = keys.sort(compareKeys);
  }

  version(key: string): number {
    return this.versions.get(key) ?? 0;
  }

  cached(key: string): ObjectSummary | undefined {
    return this.summaries.get(key);
  }

  cache(key: string, version: number, summary: ObjectSummary): void {
    if (this.version(key) === version && !this.inFlight.get(key)) this.summaries.set(key, summary);
  }

  beginWrite(key: string): number {
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    return this.touch(key);
  }

  /**
   * Publishes the outcome of a write. Returns the key's new version when no
   * other write to it overlapped this one, i.e. when what this writer read
   * back from disk after its write may be cached under that version.
   */
  endWrite(key: string, started: number, exists: boolean): number | undefined {
    const clean = this.version(key) === started;
    const left = (this.inFlight.get(key) ?? 1) - 1;
    if (left > 0) this.inFlight.set(key, left);
    else this.inFlight.delete(key);
    const version = this.touch(key);
    const i = searchKeys(this.keys, key, false);
    if (exists && this.keys[i] !== key) this.keys.splice(i, 0, key);
    if (!exists && this.keys[i] === key) this.keys.splice(i, 1);
    return clean && left === 0 ? version : undefined;
  }

  private touch(key: string): number {
    const version = ++this.sequence;
    this.versions.set(key, version);
    this.summaries.delete(key);
    return version;
  }
}

type Entry = { key: string } | { prefix: string };

interface PageRequest {
  prefix: string;
  delimiter: string;
  /** Only entries (keys or common prefixes) strictly after this are returned. */
  after: string | undefined;
  maxKeys: number;
}

/**
 * One page of ListObjects: keys and common prefixes merged in key order, each
 * counting toward maxKeys. A common prefix ≤ `after` is skipped whole, so a
 * NextMarker/continuation token that names a prefix resumes after all of it.
 */
function listPage(keys: readonly string[], req: PageRequest): { entries: Entry[]; isTruncated: boolean } {
  const entries: Entry[] = [];
  if (req.maxKeys <= 0) return { entries, isTruncated: false };
  let i = searchKeys(keys, req.prefix, false);
  if (req.after !== undefined) i = Math.max(i, searchKeys(keys, req.after, true));
  while (i < keys.length) {
    const key = keys[i]!;
    if (!key.startsWith(req.prefix)) break;
    const cut = req.delimiter ? key.indexOf(req.delimiter, req.prefix.length) : -1;
    if (cut < 0) {
      if (entries.length === req.maxKeys) return { entries, isTruncated: true };
      entries.push({ key });
      i++;
      continue;
    }
    const prefix = key.slice(0, cut + req.delimiter.length);
    if (req.after === undefined || compareKeys(prefix, req.after) > 0) {
      if (entries.length === req.maxKeys) return { entries, isTruncated: true };
      entries.push({ prefix });
    }
    i = endOfRun(keys, i, prefix);
  }
  return { entries, isTruncated: false };
}

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

/** Keeps one {@link BucketIndex} per bucket in step with the store's directory. */
class ListingIndex {
  private readonly buckets = new Map<string, BucketIndex>();

  constructor(private readonly store: FilesystemStore) {}

  /**
   * Synchronous on purpose: a scan that cannot interleave with a write needs
   * no reconciliation. It runs once per bucket (at start, or when a bucket
   * appears), then the hooks keep the index current.
   */
  bucket(name: string): BucketIndex {
    let index = this.buckets.get(name);
    if (!index) {
      index = new BucketIndex(this.scan(name));
      this.buckets.set(name, index);
    }
    return index;
  }

  scanAll(): void {
    for (const entry of fs.readdirSync(this.store.rootDirectory, { withFileTypes: true })) {
      if (entry.isDirectory()) this.bucket(entry.name);
    }
  }

  drop(name: string): void {
    this.buckets.delete(name);
  }

  clear(): void {
    this.buckets.clear();
  }

  /**
   * Runs one write to a key of the store, keeping the index in step: the key
   * is listed from the moment the write is acknowledged, and on failure the
   * disk decides whether it exists. `readBack` may return the listing data
   * the write produced, to spare the first listing a read per key.
   */
  async write<T>(
    bucket: string,
    key: string,
    exists: boolean,
    run: () => Promise<T>,
    readBack?: (result: T) => ObjectSummary | Promise<ObjectSummary>,
  ): Promise<T> {
    const index = this.bucket(bucket);
    const started = index.beginWrite(key);
    let result: T;
    try {
      result = await run();
    } catch (err) {
      index.endWrite(key, started, fs.existsSync(this.store.getResourcePath(bucket, key, 'object')));
      throw err;
    }
    const version = index.endWrite(key, started, exists);
    if (version !== undefined && readBack) {
      // Not awaited: the response need not wait for a cache fill.
      Promise.resolve(result).then(readBack).then(
        (summary) => index.cache(key, version, summary),
        () => undefined,
      );
    }
    return result;
  }

  private scan(bucket: string): string[] {
    const keys: string[] = [];
    const root = path.join(this.store.rootDirectory, bucket);
    const walk = (dir: string, rel: string): void => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.isDirectory()) {
          if (rel === '' && entry.name === UPLOADS_DIR) continue;
          walk(path.join(dir, entry.name), `${rel}${entry.name}/`);
        } else if (entry.name.endsWith(OBJECT_SUFFIX)) {
          keys.push(decodeKeyPath(rel + entry.name.slice(0, -OBJECT_SUFFIX.length)));
        }
      }
    };
    walk(root, '');
    return keys;
  }
}

/** s3rver escapes a few characters in file names on Windows only; mirror its decoding. */
function decodeKeyPath(keyPath: string): string {
  return process.platform === 'win32'
    ? keyPath.replace(/&../g, (ent) => Buffer.from(ent.slice(1), 'hex').toString())
    : keyPath;
}

const indexes = new WeakMap<FilesystemStore, ListingIndex>();
const versions = new WeakMap<FilesystemStore, ReturnType<typeof installWholeVersions>>();

function versionsOf(store: FilesystemStore): ReturnType<typeof installWholeVersions> {
  const v = versions.get(store);
  if (!v) throw new Error('whole versions not installed on this store');
  return v;
}

function indexOf(store: FilesystemStore): ListingIndex {
  const index = indexes.get(store);
  if (!index) throw new Error('listing index not installed on this store');
  return index;
}

/** Wraps the store's write paths so every completed write updates the index before the response. */
function installIndex(store: FilesystemStore): ListingIndex {
  const index = new ListingIndex(store);
  indexes.set(store, index);
  index.scanAll();

  const putBucket = store.putBucket.bind(store);
  store.putBucket = async (bucket) => {
    const result = await putBucket(bucket);
    index.bucket(bucket);
    return result;
  };
  const deleteBucket = store.deleteBucket.bind(store);
  store.deleteBucket = async (bucket) => {
    try {
      await deleteBucket(bucket);
    } finally {
      index.drop(bucket);
    }
  };
  const reset = store.reset.bind(store);
  store.reset = () => {
    reset();
    index.clear();
  };
  // putObjectMultipart stores through this.putObject, so this covers CompleteMultipartUpload too.
  const putObject = store.putObject.bind(store);
  store.putObject = (object) => index.write(object.bucket, object.key, true, () => putObject(object), async ({ md5, size }) => {
    const stat = await fsp.stat(store.getResourcePath(object.bucket, object.key, 'object'));
    return { lastModified: wholeSeconds(stat.mtime), etag: JSON.stringify(md5), size };
  });
  const copyObject = store.copyObject.bind(store);
  store.copyObject = (srcBucket, srcKey, destBucket, destKey, replacementMetadata) => index.write(destBucket, destKey, true, async () => {
    if (srcBucket === destBucket && srcKey === destKey) {
      // A copy onto itself only rewrites metadata in s3rver; on S3 it is a new object with a new LastModified.
      const now = new Date();
      await fsp.utimes(store.getResourcePath(destBucket, destKey, 'object'), now, now);
    }
    return copyObject(srcBucket, srcKey, destBucket, destKey, replacementMetadata);
  }, (metadata) => ({
    // s3rver read these back from disk after the copy.
    lastModified: wholeSeconds(new Date(String(metadata['last-modified']))),
    etag: String(metadata['etag']),
    size: Number(metadata['content-length']),
  }));
  const deleteObject = store.deleteObject.bind(store);
  store.deleteObject = (bucket, key) => index.write(bucket, key, false, () => deleteObject(bucket, key));
  return index;
}

function wholeSeconds(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString();
}

/**
 * Only what a listing shows: a stat and the stored MD5, not s3rver's full
 * getMetadata (which also reads the metadata JSON). LastModified is cut to
 * whole seconds like s3rver's HeadObject/GetObject (an HTTP date), so a
 * listing and a HEAD of the same object agree.
 */
function readSummary(store: FilesystemStore, bucket: string, key: string): Promise<ObjectSummary | undefined> {
  // Under the key's gate: the size and the ETag of one version.
  return versionsOf(store).read(bucket, key, () => readSummaryNow(store, bucket, key));
}

async function readSummaryNow(store: FilesystemStore, bucket: string, key: string): Promise<ObjectSummary | undefined> {
  const objectPath = store.getResourcePath(bucket, key, 'object');
  try {
    const [stat, md5] = await Promise.all([
      fsp.stat(objectPath),
      fsp.readFile(`${objectPath}.md5`, 'utf8').catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      }),
    ]);
    // s3rver creates a missing .md5 file from the content on first read; let it.
    const etag = md5 !== undefined ? JSON.stringify(md5) : String((await store.getMetadata(bucket, key))['etag']);
    return { lastModified: wholeSeconds(stat.mtime), etag, size: stat.size };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

// ---------------------------------------------------------------------------
// ListObjects (V1) and ListObjectsV2.

function queryString(ctx: Ctx, name: string): string | undefined {
  const value = ctx.query[name];
  return Array.isArray(value) ? value[0] : value;
}

function invalidArgument(message: string, name: string, value?: string): Error {
  return new S3Error('InvalidArgument', message, {
    ArgumentName: name,
    ...(value !== undefined ? { ArgumentValue: value } : {}),
  });
}

/** Opaque to clients; names the bucket so a token from another listing is refused, as S3 does. */
function encodeContinuationToken(bucket: string, last: string): string {
  return Buffer.from(`${bucket}/${last}`, 'utf8').toString('base64url');
}

function decodeContinuationToken(bucket: string, token: string): string {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  const slash = text.indexOf('/');
  if (slash < 0 || text.slice(0, slash) !== bucket || encodeContinuationToken(bucket, text.slice(slash + 1)) !== token) {
    throw invalidArgument('The continuation token provided is incorrect', 'continuation-token', token);
  }
  return text.slice(slash + 1);
}

/** S3's encoding-type=url: percent-encoding with '+' for space (botocore decodes with unquote_plus). */
function urlEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

function parseMaxKeys(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 1000;
  if (!/^-?\d+$/.test(raw)) {
    throw invalidArgument('Provided max-keys not an integer or within integer range', 'max-keys', raw);
  }
  const value = Number(raw);
  if (value < 0 || value > 2147483647) {
    throw invalidArgument('Argument maxKeys must be an integer between 0 and 2147483647', 'maxKeys', raw);
  }
  return Math.min(1000, value);
}

async function listObjects(ctx: Ctx): Promise<void> {
  const bucket = ctx.params['bucket']!;
  const v2 = queryString(ctx, 'list-type') === '2';
  const prefix = queryString(ctx, 'prefix') ?? '';
  const delimiter = queryString(ctx, 'delimiter') ?? '';
  const encodingType = queryString(ctx, 'encoding-type');
  if (encodingType !== undefined && encodingType !== 'url') {
    throw invalidArgument('Invalid Encoding Method specified in Request', 'encoding-type', encodingType);
  }
  const maxKeysRaw = queryString(ctx, 'max-keys');
  const maxKeys = parseMaxKeys(maxKeysRaw);
  const startAfter = queryString(ctx, 'start-after');
  const continuationToken = queryString(ctx, 'continuation-token');
  const marker = queryString(ctx, 'marker');

  let after: string | undefined;
  if (v2) {
    if ('marker' in ctx.query) throw invalidArgument('Marker unsupported with REST.GET.BUCKET in list-type=2', 'marker');
    after = continuationToken ? decodeContinuationToken(bucket, continuationToken) : startAfter || undefined;
  } else {
    if ('continuation-token' in ctx.query) {
      throw invalidArgument('continuation-token only supported in REST.GET.BUCKET with list-type=2', 'continuation-token');
    }
    if ('start-after' in ctx.query) {
      throw invalidArgument('startAfter only supported in REST.GET.BUCKET with list-type=2', 'start-after');
    }
    after = marker || undefined;
  }

  const store = ctx.store;
  const index = indexOf(store).bucket(bucket);
  const page = listPage(index.keys, { prefix, delimiter, after, maxKeys });
  const pageKeys = page.entries.flatMap((e) => ('key' in e ? [e.key] : []));
  const summaries: Array<ObjectSummary | undefined> = pageKeys.map((key) => index.cached(key));
  const misses = pageKeys.flatMap((key, i) => (summaries[i] ? [] : [i]));
  // Bounded: a cold 1000-key page must not hold 1000 file descriptors at once (EMFILE under a low ulimit).
  let nextMiss = 0;
  await Promise.all(Array.from({ length: Math.min(SUMMARY_READS_IN_FLIGHT, misses.length) }, async () => {
    while (nextMiss < misses.length) {
      const i = misses[nextMiss++]!;
      const key = pageKeys[i]!;
      const version = index.version(key);
      const summary = await readSummary(store, bucket, key);
      if (summary) index.cache(key, version, summary);
      summaries[i] = summary;
    }
  }));

  const enc = encodingType === 'url' ? urlEncode : (s: string) => s;
  const withOwner = !v2 || queryString(ctx, 'fetch-owner') === 'true';
  const contents = pageKeys.flatMap((key, i) => {
    const summary = summaries[i];
    // Gone between indexing and reading: a delete raced this listing.
    if (!summary) return [];
    return [{
      Key: enc(key),
      LastModified: summary.lastModified,
      ETag: summary.etag,
      Size: summary.size,
      Owner: withOwner ? { ID: AWSAccount.DUMMY_ACCOUNT.id, DisplayName: AWSAccount.DUMMY_ACCOUNT.displayName } : undefined,
      StorageClass: 'STANDARD',
    }];
  });
  const commonPrefixes = page.entries.flatMap((e) => ('prefix' in e ? [{ Prefix: enc(e.prefix) }] : []));
  const last = page.entries[page.entries.length - 1];
  const lastName = last === undefined ? undefined : 'key' in last ? last.key : last.prefix;

  ctx.logger.info('Listed %d keys and %d prefixes in bucket "%s"', contents.length, commonPrefixes.length, bucket);
  ctx.body = {
    ListBucketResult: {
      '@': { xmlns: XMLNS },
      Name: bucket,
      Prefix: enc(prefix),
      ...(v2
        ? {
            StartAfter: startAfter ? enc(startAfter) : undefined,
            ContinuationToken: continuationToken || undefined,
            NextContinuationToken: page.isTruncated && lastName !== undefined ? encodeContinuationToken(bucket, lastName) : undefined,
            KeyCount: contents.length + commonPrefixes.length,
          }
        : {
            Marker: enc(marker ?? ''),
            // As on S3: without a delimiter the client resumes from the last Key itself.
            NextMarker: delimiter && page.isTruncated && lastName !== undefined ? enc(lastName) : undefined,
          }),
      // S3 echoes max-keys as requested, even above its 1000 cap.
      MaxKeys: maxKeysRaw !== undefined && maxKeysRaw !== '' ? Number(maxKeysRaw) : 1000,
      Delimiter: delimiter ? enc(delimiter) : undefined,
      EncodingType: encodingType,
      IsTruncated: page.isTruncated,
      Contents: contents.length ? contents : undefined,
      CommonPrefixes: commonPrefixes.length ? commonPrefixes : undefined,
    },
  };
}

// ---------------------------------------------------------------------------
// SigV4 verification.

function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The SDK's canonical query: RFC 3986-encoded names and values, sorted, without X-Amz-Signature. */
function canonicalQuery(rawQuery: string): string {
  const byName = new Map<string, string[]>();
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = escapeUri(safeDecode(eq < 0 ? part : part.slice(0, eq)));
    if (name.toLowerCase() === 'x-amz-signature') continue;
    const value = escapeUri(safeDecode(eq < 0 ? '' : part.slice(eq + 1)));
    const list = byName.get(name) ?? [];
    list.push(`${name}=${value}`);
    byName.set(name, list);
  }
  return [...byName.keys()].sort().map((name) => byName.get(name)!.sort().join('&')).join('&');
}

function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  const text = Array.isArray(value) ? value.join(',') : value ?? '';
  return text.trim().replace(/\s+/g, ' ');
}

interface SigV4Claim {
  accessKeyId: string;
  scope: string[];
  signedHeaders: string[];
  signature: string;
  amzDate: string;
  payloadHash: string;
}

function parseSigV4(ctx: Ctx, rawQuery: string): SigV4Claim | undefined {
  const authorization = ctx.req.headers.authorization;
  if (typeof authorization === 'string' && /^AWS4-HMAC-SHA256\s/i.test(authorization)) {
    const fields = new Map<string, string>();
    for (const part of authorization.replace(/^AWS4-HMAC-SHA256\s+/i, '').split(',')) {
      const eq = part.indexOf('=');
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    const credential = (fields.get('Credential') ?? '').split('/');
    return {
      accessKeyId: credential[0] ?? '',
      scope: credential.slice(1),
      signedHeaders: (fields.get('SignedHeaders') ?? '').split(';').filter(Boolean),
      signature: fields.get('Signature') ?? '',
      amzDate: headerValue(ctx.req.headers, 'x-amz-date') || headerValue(ctx.req.headers, 'date'),
      payloadHash: headerValue(ctx.req.headers, 'x-amz-content-sha256') || 'UNSIGNED-PAYLOAD',
    };
  }
  const query = new Map<string, string>();
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0) query.set(safeDecode(part.slice(0, eq)), safeDecode(part.slice(eq + 1)));
  }
  if (query.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return undefined;
  const credential = (query.get('X-Amz-Credential') ?? '').split('/');
  return {
    accessKeyId: credential[0] ?? '',
    scope: credential.slice(1),
    signedHeaders: (query.get('X-Amz-SignedHeaders') ?? '').split(';').filter(Boolean),
    signature: query.get('X-Amz-Signature') ?? '',
    amzDate: query.get('X-Amz-Date') ?? '',
    payloadHash: query.get('X-Amz-Content-Sha256') ?? (headerValue(ctx.req.headers, 'x-amz-content-sha256') || 'UNSIGNED-PAYLOAD'),
  };
}

/**
 * Recomputes the signature the way the SDK's S3 signer builds it (path taken
 * as sent, no re-encoding or normalisation) and rejects a mismatch with S3's
 * 403 SignatureDoesNotMatch. An unknown access key is left to s3rver, which
 * answers 403 InvalidAccessKeyId.
 */
function verifySigV4(ctx: Ctx): void {
  const url = ctx.originalUrl;
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? '' : url.slice(q + 1);
  const claim = parseSigV4(ctx, rawQuery);
  if (!claim) return;
  const account = AWSAccount.registry.get(claim.accessKeyId);
  const secret = account?.accessKeys.get(claim.accessKeyId);
  if (secret === undefined) return;

  const canonicalRequest = [
    ctx.method,
    rawPath,
    canonicalQuery(rawQuery),
    claim.signedHeaders.map((name) => `${name}:${headerValue(ctx.req.headers, name)}\n`).join(''),
    claim.signedHeaders.join(';'),
    claim.payloadHash,
  ].join('\n');
  const scope = claim.scope.join('/');
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    claim.amzDate,
    scope,
    createHash('sha256').update(canonicalRequest, 'utf8').digest('hex'),
  ].join('\n');
  let key: Buffer = Buffer.from(`AWS4${secret}`, 'utf8');
  for (const part of claim.scope) key = createHmac('sha256', key).update(part, 'utf8').digest();
  const expected = createHmac('sha256', key).update(stringToSign, 'utf8').digest();
  const provided = Buffer.from(claim.signature, 'hex');
  if (claim.scope.length !== 4 || provided.length !== expected.length || !timingSafeEqual(provided, expected)) {
    throw new S3Error(
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
      { AWSAccessKeyId: claim.accessKeyId, StringToSign: stringToSign, CanonicalRequest: canonicalRequest },
    );
  }
}

// ---------------------------------------------------------------------------
// Smaller fixes.

/** `/bucket/key...` of a path-style (or vhost-rewritten) request, decoded. */
function bucketAndKey(ctx: Ctx): { bucket: string; key: string } | undefined {
  const match = /^\/([^/]+)\/(.+)$/s.exec(ctx.path);
  if (!match) return undefined;
  return { bucket: safeDecode(match[1]!), key: safeDecode(match[2]!) };
}

async function abortMultipartUpload(ctx: Ctx, bucket: string, uploadId: string): Promise<void> {
  if (!(await ctx.store.getBucket(bucket))) {
    throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
  }
  // Upload ids are hex (s3rver's own); anything else cannot name an upload and must not become a path.
  const uploadDir = path.join(ctx.store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
  if (!/^[0-9a-f]+$/i.test(uploadId) || !fs.existsSync(uploadDir)) {
    throw new S3Error(
      'NoSuchUpload',
      'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
      { UploadId: uploadId },
    );
  }
  await fsp.rm(uploadDir, { recursive: true, force: true });
  ctx.status = 204;
}

/**
 * Runs just before s3rver's router. Authentication happens here for SigV4
 * (s3rver's own check still runs after it for key existence and SigV2).
 */
const preRouter: Middleware = async (ctx, next) => {
  verifySigV4(ctx);
  const copySource = ctx.req.headers['x-amz-copy-source'];
  if (typeof copySource === 'string') {
    // s3rver applies decodeURI, which keeps reserved escapes (%2B...) encoded;
    // hand it a form whose decodeURI is the fully decoded source. Done after
    // the signature check because the header is signed.
    const source = copySource.replace(/\?versionId=.*$/, '');
    ctx.req.headers['x-amz-copy-source'] = encodeURI(source.split('/').map(safeDecode).join('/'));
  }
  const uploadId = queryString(ctx, 'uploadId');
  if (ctx.method === 'PUT' && uploadId !== undefined && typeof ctx.req.headers['x-amz-copy-source'] === 'string') {
    // s3rver's router refuses a part PUT with x-amz-copy-source (501): hide
    // the copy headers from it and let withUploadPartCopy take them.
    const copyHeaders: IncomingHttpHeaders = {};
    for (const name of Object.keys(ctx.req.headers)) {
      if (name.startsWith('x-amz-copy-source')) {
        copyHeaders[name] = ctx.req.headers[name];
        delete ctx.req.headers[name];
      }
    }
    ctx.state[COPY_PART_STATE] = copyHeaders;
  }
  const target = ctx.method === 'DELETE' && uploadId !== undefined ? bucketAndKey(ctx) : undefined;
  if (target && uploadId !== undefined) {
    await abortMultipartUpload(ctx, target.bucket, uploadId);
    return;
  }
  await next();
};

/** The stored object's ETag without quotes; undefined when there is no object. */
async function storedEtag(store: FilesystemStore, bucket: string, key: string): Promise<string | undefined> {
  try {
    if (!(await store.existsObject(bucket, key))) return undefined;
    return String((await store.getMetadata(bucket, key))['etag']).replace(/"/g, '');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function noSuchKey(key: string): Error {
  return new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: key });
}

function preconditionFailed(condition: string): Error {
  return new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: condition });
}

/**
 * S3's conditional writes on PutObject and CompleteMultipartUpload:
 * If-None-Match takes only '*' (anything else is refused) and fails 412
 * when the key exists; If-Match fails 412 on another
 * ETag and 404 NoSuchKey when there is no object.
 */
async function checkWriteConditions(ctx: Ctx, bucket: string, key: string): Promise<void> {
  const ifMatch = headerValue(ctx.req.headers, 'if-match');
  const ifNoneMatch = headerValue(ctx.req.headers, 'if-none-match');
  if (!ifMatch && !ifNoneMatch) return;
  if (ifNoneMatch && ifNoneMatch !== '*') {
    throw new S3Error('NotImplemented', 'A header you provided implies functionality that is not implemented', { Header: 'If-None-Match' });
  }
  const etag = await storedEtag(ctx.store, bucket, key);
  if (ifNoneMatch && etag !== undefined) throw preconditionFailed('If-None-Match');
  if (ifMatch) {
    if (etag === undefined) throw noSuchKey(key);
    if (!etagListMatches(ifMatch, etag)) throw preconditionFailed('If-Match');
  }
}

function withWriteConditions(controller: Controller, key: (ctx: Ctx) => string | undefined): Controller {
  return async (ctx) => {
    const bucket = ctx.params['bucket'];
    const target = key(ctx);
    if (bucket !== undefined && target !== undefined) await checkWriteConditions(ctx, bucket, target);
    await controller(ctx);
  };
}

/** x-amz-copy-source as s3rver reads it once preRouter has rewritten it. */
function parseCopySource(header: string): { bucket: string; key: string } {
  const source = decodeURI(header).replace(/^\//, '');
  const slash = source.indexOf('/');
  return { bucket: source.slice(0, slash), key: source.slice(slash + 1) };
}

/** x-amz-copy-source-if-match / -if-none-match of CopyObject, checked against the source version the store copies. */
function withCopySourceConditions(putObjectCopy: Controller): Controller {
  return (ctx) => servedVersionCheck.run(copySourceRefusal(ctx.req.headers, preconditionFailed), () => putObjectCopy(ctx));
}

/** Where preRouter leaves an UploadPartCopy's headers, so s3rver routes it to uploadPart. */
const COPY_PART_STATE = 'sosmountCopyPart';

/**
 * UploadPartCopy: the part is the source's bytes in x-amz-copy-source-range
 * ("bytes=first-last", inclusive, within the source, else 400
 * InvalidArgument as S3 answers), or the whole source without it.
 */
function withUploadPartCopy(uploadPart: Controller): Controller {
  return async (ctx) => {
    const headers = ctx.state[COPY_PART_STATE] as IncomingHttpHeaders | undefined;
    if (headers === undefined) {
      await uploadPart(ctx);
      return;
    }
    const bucket = ctx.params['bucket']!;
    const uploadId = queryString(ctx, 'uploadId') ?? '';
    const partNumber = queryString(ctx, 'partNumber') ?? '';
    const uploadDir = path.join(ctx.store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
    if (!/^[0-9a-f]+$/i.test(uploadId) || !fs.existsSync(uploadDir)) {
      throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: uploadId });
    }
    if (!/^\d+$/.test(partNumber) || Number(partNumber) < 1 || Number(partNumber) > 10_000) {
      throw invalidArgument('Part number must be an integer between 1 and 10000, inclusive', 'partNumber', partNumber);
    }
    const source = parseCopySource(String(headers['x-amz-copy-source']));
    // One version for the conditions, the range check and the bytes, as S3 copies.
    const version = await versionsOf(ctx.store).version(source.bucket, source.key);
    if (!version) throw noSuchKey(source.key);
    try {
      const refusal = copySourceRefusal(headers, preconditionFailed)(version.etag);
      if (refusal) throw refusal;
      const size = version.size;
      const range = headerValue(headers, 'x-amz-copy-source-range');
      let start = 0;
      let end = size - 1;
      if (range) {
        const m = /^bytes=(\d+)-(\d+)$/.exec(range);
        if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) >= size) {
          throw invalidArgument(`Range specified is not valid for source object of size: ${size}`, 'x-amz-copy-source-range', range);
        }
        start = Number(m[1]);
        end = Number(m[2]);
      }
      const content = version.handle.createReadStream(size === 0 ? { start: 0, autoClose: false } : { start, end, autoClose: false });
      const { md5 } = await ctx.store.putPart(bucket, uploadId, partNumber, content);
      ctx.body = { CopyPartResult: { LastModified: new Date().toISOString(), ETag: JSON.stringify(md5) } };
    } finally {
      await version.handle.close();
    }
  };
}

/** If-Match on GetObject/HeadObject, which s3rver ignores: 412 PreconditionFailed on an ETag mismatch. */
function withIfMatch(getObject: Controller): Controller {
  return async (ctx) => {
    const ifMatch = headerValue(ctx.req.headers, 'if-match');
    const key = ctx.params['key'];
    const bucket = ctx.params['bucket'];
    if (ifMatch && key !== undefined && bucket !== undefined) {
      let etag: string | undefined;
      try {
        etag = String((await ctx.store.getMetadata(bucket, key))['etag']).replace(/"/g, '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (etag !== undefined && !etagListMatches(ifMatch, etag)) throw preconditionFailed('If-Match');
      // And against the version served, which a write may have replaced meanwhile.
      await servedVersionCheck.run((served) => etagListMatches(ifMatch, served) ? undefined : preconditionFailed('If-Match'), () => getObject(ctx));
      return;
    }
    await getObject(ctx);
  };
}

/**
 * Ranges s3rver gets wrong: "bytes=0-0" (the first byte) returned the whole
 * object, and a range of an empty object returned a Content-Length of 1
 * with no body, where S3 answers 416 InvalidRange.
 */
function withRangeFixes(getObject: Controller): Controller {
  return async (ctx) => {
    const range = headerValue(ctx.req.headers, 'range')?.trim();
    const key = ctx.params['key'];
    const bucket = ctx.params['bucket'];
    if (range === undefined || !range.startsWith('bytes=') || key === undefined || bucket === undefined) {
      await getObject(ctx);
      return;
    }
    let size: number | undefined;
    try {
      size = Number((await ctx.store.getMetadata(bucket, key))['content-length']);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (size === 0) {
      throw new S3Error('InvalidRange', 'The requested range is not satisfiable', { RangeRequested: range, ActualObjectSize: 0 });
    }
    if (range !== 'bytes=0-0' || size === undefined) {
      await getObject(ctx);
      return;
    }
    delete ctx.req.headers['range'];
    await getObject(ctx);
    if (ctx.status !== 200) return;
    (ctx.body as { destroy?: () => void } | undefined)?.destroy?.();
    const handle = await fsp.open(ctx.store.getResourcePath(bucket, key, 'object'), 'r');
    const first = Buffer.alloc(1);
    try {
      await handle.read(first, 0, 1, 0);
    } finally {
      await handle.close();
    }
    ctx.set('Content-Range', `bytes 0-0/${size}`);
    ctx.status = 206;
    ctx.body = first;
    ctx.length = 1;
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * DeleteObjects with keys kept verbatim (s3rver's parser turns "0012" into 12
 * and trims spaces). Keys cannot hold a raw '<' in XML, so a pattern match on
 * <Key> elements is exact.
 */
async function deleteMultipleObjects(ctx: Ctx): Promise<void> {
  const bucket = ctx.params['bucket']!;
  const xml = await readBody(ctx.req);
  const deleteBody = /<Delete(?:\s[^>]*)?>([\s\S]*)<\/Delete>/.exec(xml)?.[1];
  const objects = deleteBody === undefined ? [] : [...deleteBody.matchAll(/<Object>([\s\S]*?)<\/Object>/g)];
  const keys = objects.map((o) => /<Key>([\s\S]*?)<\/Key>/.exec(o[1]!)?.[1]);
  if (keys.length === 0 || keys.some((k) => k === undefined)) {
    throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  }
  const decoded = keys.map((k) => he.decode(k!));
  const quiet = /<Quiet>\s*true\s*<\/Quiet>/i.test(deleteBody ?? '');
  await Promise.all(decoded.map(async (key) => {
    if (await ctx.store.existsObject(bucket, key)) await ctx.store.deleteObject(bucket, key);
  }));
  ctx.body = {
    DeleteResult: {
      '@': { xmlns: XMLNS },
      Deleted: quiet ? undefined : decoded.map((key) => ({ Key: key })),
    },
  };
}

// ---------------------------------------------------------------------------
// Process entry.

function parseConfig(raw: string | undefined): ServerProcessConfig {
  const value: unknown = JSON.parse(raw ?? 'null');
  if (typeof value !== 'object' || value === null) throw new Error('s3-server-process: missing JSON config argument');
  const c = value as Partial<ServerProcessConfig>;
  if (typeof c.port !== 'number' || typeof c.directory !== 'string' || !Array.isArray(c.buckets) || !Array.isArray(c.credentials)) {
    throw new Error('s3-server-process: config needs port, directory, buckets and credentials');
  }
  return {
    port: c.port,
    directory: c.directory,
    buckets: c.buckets,
    credentials: c.credentials,
    silent: c.silent !== false,
    removeDirectoryWhenOrphaned: c.removeDirectoryWhenOrphaned === true,
  };
}

function send(message: ServerProcessMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const config = parseConfig(process.argv[2]);
  fs.mkdirSync(config.directory, { recursive: true });

  config.credentials.forEach((pair, i) => {
    new AWSAccount(123456789001 + i, `test-account-${i + 1}`).createKeyPair(pair.accessKeyId, pair.secretAccessKey);
  });
  // Module-level exports, called through the module object by s3rver's routes at request time.
  bucketController.getBucket = listObjects;
  objectController.getObject = withIfMatch(withRangeFixes(objectController.getObject));
  objectController.deleteMultipleObjects = deleteMultipleObjects;
  objectController.putObject = withWriteConditions(objectController.putObject, (ctx) => ctx.params['key']);
  objectController.completeMultipartUpload = withWriteConditions(objectController.completeMultipartUpload, (ctx) => ctx.params['key']);
  objectController.putObjectCopy = withCopySourceConditions(objectController.putObjectCopy);
  objectController.uploadPart = withUploadPartCopy(objectController.uploadPart);

  const server = new S3rver({
    address: '127.0.0.1',
    port: config.port,
    directory: config.directory,
    silent: config.silent,
    configureBuckets: config.buckets.map((name) => ({ name, configs: [] })),
  });
  // Whole versions first: the index wraps the writes they replace.
  versions.set(server.store, installWholeVersions(server.store, noSuchKey));
  installIndex(server.store);
  // The router is the last middleware; authentication lives inside it.
  server.middleware.splice(server.middleware.length - 1, 0, preRouter);

  const address = await server.run();

  let closing = false;
  const shutdown = (orphaned: boolean): void => {
    if (closing) return;
    closing = true;
    // Keep-alive sockets from SDK clients would hold close() open indefinitely.
    server.httpServer?.closeAllConnections();
    const exit = (): never => {
      if (orphaned && config.removeDirectoryWhenOrphaned) fs.rmSync(config.directory, { recursive: true, force: true });
      process.exit(0);
    };
    setTimeout(exit, 2000).unref();
    server.close().then(exit, exit);
  };
  process.on('SIGTERM', () => shutdown(false));
  process.on('SIGINT', () => shutdown(false));
  process.on('disconnect', () => shutdown(true));
  process.on('message', (message: unknown) => {
    if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'close') shutdown(false);
  });
  send({ type: 'ready', port: address.port });
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.stack ?? err.message : String(err);
  process.stderr.write(`s3-server-process: ${message}\n`);
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exitCode = 1;
  process.disconnect?.();
});
