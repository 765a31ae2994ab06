/**
 * The production {@link ObjectClient}: @aws-sdk/client-s3 over a keep-alive
 * agent sized for the mount's parallelism, with the SDK's standard retries
 * (backoff for 5xx, SlowDown, resets and timeouts) and a per-request
 * inactivity timeout so a stalled request is retried instead of hanging
 * until FUSE gives up.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type ListObjectsV2CommandInput,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import type { DeserializeMiddleware } from '@smithy/types';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { S3RequestError, toS3Error } from './errors.js';
import { DirectGet, type DirectGetConfig } from './direct-get.js';
import { HttpGetPool } from './http-get.js';
import { streamInto } from './stream-into.js';
import { parseListObjectsV2, type ParsedListing } from './list-xml.js';
import { DEFAULT_RETRY_POLICY, OutageRetryStrategy } from './retry-strategy.js';
import type {
  ByteRange, CompletedPart, FirstBytes, ListPage, ListRequest, ObjectClient, ObjectInfo, RangeSink, RequestOptions,
} from './object-client.js';

export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface S3ConnectionConfig {
  bucket: string;
  endpointUrl: string | undefined;
  region: string | undefined;
  forcePathStyle: boolean;
  /** Used with the standard AWS chain when no explicit credentials are given. */
  profile: string | undefined;
  credentials?: StaticCredentials | undefined;
  /** Upper bound of concurrent requests; sizes the socket pool. */
  maxConnections: number;
  uploadChecksums: 'crc32c' | 'off';
  storageClass?: string | undefined;
  /** Socket inactivity timeout (default 10 s); a request that stalls is retried. */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxAttempts?: number;
}

/** Why: mount-s3 also falls back to us-east-1; S3-compatible stores mostly ignore the region. */
const DEFAULT_REGION = 'us-east-1';

export function resolveRegion(config: Pick<S3ConnectionConfig, 'region'>, env: NodeJS.ProcessEnv = process.env): string {
  return config.region ?? env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'] ?? DEFAULT_REGION;
}

export function credentialProvider(config: Pick<S3ConnectionConfig, 'credentials' | 'profile'>): AwsCredentialIdentityProvider {
  if (config.credentials) {
    const c: AwsCredentialIdentity = {
      accessKeyId: config.credentials.accessKeyId,
      secretAccessKey: config.credentials.secretAccessKey,
      ...(config.credentials.sessionToken ? { sessionToken: config.credentials.sessionToken } : {}),
    };
    return async () => c;
  }
  return fromNodeProviderChain(config.profile !== undefined ? { profile: config.profile } : {});
}

/** "bytes 0-65535/1234567" → 1234567; undefined when absent or "*". */
export function totalFromContentRange(range: string | undefined): number | undefined {
  const m = range === undefined ? null : /\/(\d+)\s*$/.exec(range);
  return m ? Number(m[1]) : undefined;
}

/**
 * Reads a small body whole, but never more than `maxBytes`: a server that
 * ignores the Range header sends the whole object, which is cut off here
 * (its connection is dropped rather than drained).
 */
async function readBody(body: unknown, maxBytes: number): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  if (!(body instanceof Readable)) throw new Error('GetObject returned a body that is not a Node stream');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (total > maxBytes) {
      body.destroy();
      break;
    }
  }
  const all = Buffer.concat(chunks);
  return all.length > maxBytes ? all.subarray(0, maxBytes) : all;
}

export function createS3Client(config: S3ConnectionConfig): S3Client {
  // The SDK warns on every start that future releases need Node 22; a
  // `sosmount` user cannot act on that, and package.json states our engines.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const agentOptions = { keepAlive: true, maxSockets: config.maxConnections, keepAliveMsecs: 10_000 };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  // Non-AWS endpoints (SOS, MinIO, s3rver) reject the SDK's default aws-chunked
  // checksummed uploads; mount-s3's `--upload-checksums off` exists for the same reason.
  const checksums = config.uploadChecksums === 'off' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  const s3 = new S3Client({
    region: resolveRegion(config),
    ...(config.endpointUrl !== undefined ? { endpoint: config.endpointUrl } : {}),
    forcePathStyle: config.forcePathStyle,
    // Reuse the resolved middleware of a command class for sends without
    // options (sendOptions): resolving it costs ~0.3 ms of CPU per request.
    cacheMiddleware: true,
    credentials: credentialProvider(config),
    retryStrategy: new OutageRetryStrategy({ ...DEFAULT_RETRY_POLICY, ...(config.maxAttempts !== undefined ? { maxAttempts: config.maxAttempts } : {}) }),
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
    requestHandler: new NodeHttpHandler({
      httpAgent,
      httpsAgent,
      connectionTimeout: config.connectTimeoutMs ?? 10_000,
      // The idle timeout is what catches a stalled request (Smithy's
      // requestTimeout only warns unless told to throw, and would bound the
      // whole transfer of a large part, which may rightly take long).
      socketTimeout: config.requestTimeoutMs ?? 10_000,
    }),
  });
  const connectTimeoutMs = config.connectTimeoutMs ?? 10_000;
  const socketTimeoutMs = config.requestTimeoutMs ?? 10_000;
  // Idle connections are closed before the 5 s after which many servers
  // (Node's among them) close theirs, so a GET rarely meets a closing one.
  const pool = new HttpGetPool({ maxSockets: config.maxConnections, connectTimeoutMs, socketTimeoutMs, idleTimeoutMs: 4_000 });
  directGetConfigs.set(s3, { httpAgent, httpsAgent, pool, connectTimeoutMs, socketTimeoutMs, directPuts: config.uploadChecksums === 'off' });
  return s3;
}

/** The agents, read-ahead pool and timeouts of the clients made here, for their requests that bypass the SDK (direct-get.ts). */
const directGetConfigs = new WeakMap<S3Client, DirectGetConfig>();

/** encoding-type=url is form encoding: '+' stands for a space (botocore decodes with unquote_plus). */
export function decodeListedKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, ' '));
}

function etagOf(raw: string | undefined): string {
  return raw ?? '';
}

/**
 * A send's options: none without a signal, so the SDK reuses the command
 * class's resolved middleware (cacheMiddleware). GETs are always sent
 * without one, being the most frequent request: a prefetcher stops a
 * discarded transfer by destroying its body (prefetcher.ts), and a lookup's
 * GET is small. A send with options also empties the SDK's cache, which is
 * why ListObjectsV2, whose commands carry their own middleware, always has
 * options: a cached handler would keep the first command's.
 */
function sendOptions(signal: AbortSignal | undefined): { abortSignal: AbortSignal } | undefined {
  return signal ? { abortSignal: signal } : undefined;
}

/** What the SDK is left to parse once ours has taken a listing. */
const EMPTY_LISTING = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated></ListBucketResult>';

/**
 * Parses a ListObjectsV2 200 answer with our parser (list-xml.ts) before the
 * SDK's deserializer runs, and hands the SDK an empty listing instead: the
 * SDK's generic parser costs ~30 ms of CPU per 1,000 keys, on the critical
 * path of a listing. An answer ours does not take, and every error answer,
 * reach the SDK as they came (its errors carry the request ids).
 */
export function parseListingFirst(command: ListObjectsV2Command): { parsed: ParsedListing | undefined } {
  const result: { parsed: ParsedListing | undefined } = { parsed: undefined };
  const parseFirst: DeserializeMiddleware<ListObjectsV2CommandInput, ListObjectsV2CommandOutput> = (next) => async (args) => {
    const out = await next(args);
    result.parsed = undefined;
    const response = out.response as { statusCode?: unknown; body?: unknown };
    if (response.statusCode !== 200 || !(response.body instanceof Readable)) return out;
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    result.parsed = parseListObjectsV2(bytes.toString('utf8'));
    response.body = Readable.from([result.parsed ? Buffer.from(EMPTY_LISTING) : bytes]);
    return out;
  };
  command.middlewareStack.addRelativeTo(parseFirst, { relation: 'after', toMiddleware: 'deserializerMiddleware', name: 'sosmountListingParser' });
  return result;
}

export class SdkObjectClient implements ObjectClient {
  readonly bucket: string;
  private readonly s3: S3Client;
  private readonly storageClass: string | undefined;

  /** GETs without the SDK's middleware, where the client was made by createS3Client. */
  private readonly direct: DirectGet | undefined;

  constructor(s3: S3Client, bucket: string, storageClass?: string) {
    this.s3 = s3;
    this.bucket = bucket;
    this.storageClass = storageClass;
    const direct = directGetConfigs.get(s3);
    this.direct = direct && new DirectGet(s3, bucket, direct);
  }

  private async call<T>(operation: string, key: string | undefined, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw toS3Error(err, { operation, bucket: this.bucket, key });
    }
  }

  async headBucket(opts: RequestOptions = {}): Promise<void> {
    await this.call('HeadBucket', undefined, () =>
      this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }), sendOptions(opts.signal)));
  }

  async headObject(key: string, opts: RequestOptions = {}): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.call('HeadObject', key, () =>
        this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), sendOptions(opts.signal)));
      return {
        key,
        sizeBytes: out.ContentLength ?? 0,
        lastModified: out.LastModified ?? new Date(0),
        etag: etagOf(out.ETag),
      };
    } catch (err) {
      if (err instanceof S3RequestError && err.kind === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async getFirstBytes(key: string, maxBytes: number, opts: RequestOptions = {}): Promise<FirstBytes | undefined> {
    const direct = await this.direct?.get(key, { start: 0, end: maxBytes }, { notFoundIsAnswer: true });
    if (direct?.kind === 'missing') return undefined;
    if (direct?.kind === 'ok') {
      const h = direct.response.headers;
      const length = h['content-length'] !== undefined ? Number(h['content-length']) : undefined;
      return this.firstBytesOf(key, maxBytes, opts, direct.response, {
        total: totalFromContentRange(h['content-range']) ?? length,
        lastModified: h['last-modified'] !== undefined ? new Date(h['last-modified']) : undefined,
        etag: h.etag,
      });
    }
    let out;
    try {
      out = await this.call('GetObject', key, () =>
        this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=0-${maxBytes - 1}` })));
    } catch (err) {
      if (err instanceof S3RequestError && err.kind === 'NoSuchKey') return undefined;
      // An empty object has no byte 0 (416), an archived one cannot be read
      // (403 InvalidObjectState) but still exists: HeadObject tells.
      if (err instanceof S3RequestError && (err.status === 416 || err.code === 'InvalidObjectState')) return this.headWithoutBytes(key, opts);
      throw err;
    }
    return this.firstBytesOf(key, maxBytes, opts, out.Body, {
      total: totalFromContentRange(out.ContentRange) ?? out.ContentLength,
      lastModified: out.LastModified,
      etag: out.ETag,
    });
  }

  private async firstBytesOf(key: string, maxBytes: number, opts: RequestOptions, body: unknown,
    meta: { total: number | undefined; lastModified: Date | undefined; etag: string | undefined }): Promise<FirstBytes | undefined> {
    let data: Buffer;
    try {
      data = await readBody(body, maxBytes);
    } catch {
      // The body broke after the headers: the lookup still has its answer.
      return this.headWithoutBytes(key, opts);
    }
    const total = meta.total ?? data.length;
    const lastModified = meta.lastModified && !Number.isNaN(meta.lastModified.getTime()) ? meta.lastModified : new Date(0);
    return {
      info: { key, sizeBytes: total, lastModified, etag: etagOf(meta.etag) },
      data: data.length > total ? data.subarray(0, total) : data,
    };
  }

  /** getFirstBytes' answer when the GET cannot give the bytes: what HeadObject says, and none. */
  private async headWithoutBytes(key: string, opts: RequestOptions): Promise<FirstBytes | undefined> {
    const info = await this.headObject(key, opts);
    return info && { info, data: Buffer.alloc(0) };
  }

  async listObjects(req: ListRequest, opts: RequestOptions = {}): Promise<ListPage> {
    const command = new ListObjectsV2Command({
      Bucket: this.bucket,
      Prefix: req.prefix,
      Delimiter: req.delimiter,
      MaxKeys: req.maxKeys,
      ContinuationToken: req.continuationToken,
      StartAfter: req.continuationToken ? undefined : req.startAfter,
      // XML 1.0 cannot carry every character a key may hold (a carriage
      // return comes back as a line feed): ask for url-encoded keys.
      EncodingType: 'url',
    });
    const ours = parseListingFirst(command);
    const out = await this.call('ListObjectsV2', req.prefix, () => this.s3.send(command, { abortSignal: opts.signal }));
    const listing: ParsedListing = ours.parsed ?? {
      contents: (out.Contents ?? []).map((o) => ({ key: o.Key ?? '', size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), etag: o.ETag ?? '' })),
      commonPrefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix ?? ''),
      isTruncated: out.IsTruncated ?? false,
      nextContinuationToken: out.NextContinuationToken,
      encodingType: out.EncodingType,
    };
    // A store that ignores encoding-type sends keys as they are.
    const decode = listing.encodingType === 'url' ? decodeListedKey : (k: string) => k;
    return {
      objects: listing.contents.map((o) => ({ key: decode(o.key), sizeBytes: o.size, lastModified: o.lastModified, etag: etagOf(o.etag) })),
      commonPrefixes: listing.commonPrefixes.map(decode).filter((p) => p !== ''),
      nextContinuationToken: listing.isTruncated ? listing.nextContinuationToken : undefined,
    };
  }

  async getObject(key: string, range: ByteRange, opts: RequestOptions & { ifMatch?: string } = {}): Promise<Readable> {
    const direct = await this.direct?.get(key, range, opts.ifMatch ? { ifMatch: opts.ifMatch } : {});
    if (direct?.kind === 'ok') return direct.response;
    return this.getObjectViaSdk(key, range, opts);
  }

  async getObjectInto(key: string, range: ByteRange, sink: RangeSink, opts: RequestOptions & { ifMatch?: string } = {}): Promise<void> {
    const direct = await this.direct?.getInto(key, range, sink, opts);
    if (direct?.kind === 'delivered') return;
    await streamInto(await this.getObjectViaSdk(key, range, opts), sink, opts.signal);
  }

  private async getObjectViaSdk(key: string, range: ByteRange, opts: { ifMatch?: string }): Promise<Readable> {
    const out = await this.call('GetObject', key, () =>
      this.s3.send(new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Range: `bytes=${range.start}-${range.end - 1}`,
        ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
      })));
    // On Node the SDK's body is the http.IncomingMessage itself; body errors
    // (a reset mid-stream) are classified by the reader (toS3Error).
    const body = out.Body;
    if (body instanceof Readable) return body;
    if (body === undefined) return Readable.from([]);
    throw toS3Error(new Error('GetObject returned a body that is not a Node stream'), { operation: 'GetObject', bucket: this.bucket, key });
  }

  async putObject(key: string, body: Uint8Array, opts: RequestOptions = {}): Promise<{ etag: string }> {
    if (this.direct?.sendsPuts) {
      const direct = this.direct;
      const sent = await this.call('PutObject', key, () => direct.put(key, body, {
        ...(this.storageClass ? { storageClass: this.storageClass } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      }));
      if (sent.kind === 'ok') return { etag: sent.etag };
    }
    const out = await this.call('PutObject', key, () =>
      this.s3.send(new PutObjectCommand({
        Bucket: this.bucket, Key: key, Body: body, ContentLength: body.byteLength,
        ...(this.storageClass ? { StorageClass: this.storageClass as never } : {}),
      }), sendOptions(opts.signal)));
    return { etag: etagOf(out.ETag) };
  }

  async createMultipartUpload(key: string, opts: RequestOptions = {}): Promise<string> {
    const out = await this.call('CreateMultipartUpload', key, () =>
      this.s3.send(new CreateMultipartUploadCommand({
        Bucket: this.bucket, Key: key,
        ...(this.storageClass ? { StorageClass: this.storageClass as never } : {}),
      }), sendOptions(opts.signal)));
    if (!out.UploadId) throw toS3Error(new Error('no UploadId in response'), { operation: 'CreateMultipartUpload', bucket: this.bucket, key });
    return out.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, opts: RequestOptions = {}): Promise<string> {
    const out = await this.call('UploadPart', key, () =>
      this.s3.send(new UploadPartCommand({
        Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.byteLength,
      }), sendOptions(opts.signal)));
    return etagOf(out.ETag);
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts: RequestOptions = {}): Promise<{ etag: string }> {
    const out = await this.call('CompleteMultipartUpload', key, () =>
      this.s3.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: key, UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
      }), sendOptions(opts.signal)));
    return { etag: etagOf(out.ETag) };
  }

  async abortMultipartUpload(key: string, uploadId: string, opts: RequestOptions = {}): Promise<void> {
    await this.call('AbortMultipartUpload', key, () =>
      this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), sendOptions(opts.signal)));
  }

  async deleteObject(key: string, opts: RequestOptions = {}): Promise<void> {
    await this.call('DeleteObject', key, () =>
      this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), sendOptions(opts.signal)));
  }
}
