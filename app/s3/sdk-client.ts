/**
 * The production {@link ObjectClient}. Every request goes over one
 * transport (http-transport.ts) injected into the client, whose connections
 * `--max-threads` bounds: GETs and small PUTs signed by us (requests.ts),
 * everything else through @aws-sdk/client-s3 with our retry strategy
 * (retry-strategy.ts) and the transport as its HTTP handler.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type ListObjectsV2CommandInput,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import type { DeserializeMiddleware } from '@smithy/types';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { S3RequestError, isRetryable, toS3Error } from './errors.js';
import { HttpTransport } from './http-transport.js';
import { SignedRequests, keyPath, type RequestsOptions } from './requests.js';
import { TransportHttpHandler } from './smithy-handler.js';
import { parseListObjectsV2, type ParsedListing } from './list-xml.js';
import {
  CONNECT_TIMEOUT_MS, DEFAULT_RETRY_POLICY, IDLE_CONNECTION_MS, INACTIVITY_TIMEOUT_MS, OutageRetryStrategy, retryDelayMs,
  type RetryPolicy,
} from './retry-strategy.js';
import type {
  ByteRange, CompletedPart, CopyOptions, FirstBytes, ListPage, ListRequest, ObjectClient, ObjectInfo, RangeSink, RequestOptions,
  WriteConditions,
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
  /** Connections open at once, for every request of the client (`--max-threads`). */
  maxConnections: number;
  uploadChecksums: 'crc32c' | 'off';
  storageClass?: string | undefined;
  /** Socket inactivity timeout (default INACTIVITY_TIMEOUT_MS); a request that stalls is retried. */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxAttempts?: number;
  /** A GET fails after this long without progress (default READ_DEADLINE_MS). */
  readDeadlineMs?: number;
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

/** The connections every request of a client goes over. */
export function createTransport(config: Pick<S3ConnectionConfig, 'maxConnections' | 'connectTimeoutMs' | 'requestTimeoutMs'>): HttpTransport {
  return new HttpTransport({
    maxSockets: config.maxConnections,
    connectTimeoutMs: config.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    socketTimeoutMs: config.requestTimeoutMs ?? INACTIVITY_TIMEOUT_MS,
    idleTimeoutMs: IDLE_CONNECTION_MS,
  });
}

/**
 * An S3Client whose requests go over `transport`; without one it gets its
 * own, closed by the client's destroy().
 */
export function createS3Client(config: S3ConnectionConfig, transport?: HttpTransport): S3Client {
  // The SDK warns on every start that future releases need Node 22; a
  // `sosmount` user cannot act on that, and package.json states our engines.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  // Non-AWS endpoints (SOS, MinIO, s3rver) reject the SDK's default aws-chunked
  // checksummed uploads; mount-s3's `--upload-checksums off` exists for the same reason.
  const checksums = config.uploadChecksums === 'off' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  return new S3Client({
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
    requestHandler: new TransportHttpHandler(transport ?? createTransport(config), transport === undefined),
  });
}

/** A client for the bucket with its S3Client and transport, made for each other; `copyLimits` for tests. */
export function openObjectClient(config: S3ConnectionConfig, copyLimits?: Partial<CopyLimits>): SdkObjectClient {
  const transport = createTransport(config);
  return new SdkObjectClient(createS3Client(config, transport), config.bucket, {
    transport,
    storageClass: config.storageClass,
    directPuts: config.uploadChecksums === 'off',
    policy: { ...DEFAULT_RETRY_POLICY, ...(config.maxAttempts !== undefined ? { maxAttempts: config.maxAttempts } : {}) },
    ...(config.readDeadlineMs !== undefined ? { readDeadlineMs: config.readDeadlineMs } : {}),
    ...(copyLimits ? { copyLimits } : {}),
  });
}

/** encoding-type=url is form encoding: '+' stands for a space (botocore decodes with unquote_plus). */
export function decodeListedKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, ' '));
}

function etagOf(raw: string | undefined): string {
  return raw ?? '';
}

/**
 * A send's options: none without a signal, so the SDK reuses the command
 * class's resolved middleware (cacheMiddleware). A send with options also
 * empties the SDK's cache, which is why ListObjectsV2, whose commands carry
 * their own middleware, always has options: a cached handler would keep the
 * first command's.
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

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** How copies are cut; S3's limits are the defaults, tests shrink them. */
export interface CopyLimits {
  /** Larger objects are copied in parts. */
  singleCopyMaxBytes: number;
  /** Each UploadPartCopy's range, unless the object needs larger parts to fit S3's part count. */
  partBytes: number;
  /** UploadPartCopy requests at once. */
  partsInFlight: number;
}

/**
 * S3 refuses CopyObject of a source above 5 GiB. A part may be 5 MiB to
 * 5 GiB and an upload holds at most 10,000 parts; 512 MiB parts keep a copy
 * to a few requests per GiB and are raised for objects above 5,000 GiB
 * (10,000 × 512 MiB). Four parts at once: the copy runs inside S3, so more
 * only competes with the mount's own requests for connections.
 */
export const DEFAULT_COPY_LIMITS: CopyLimits = { singleCopyMaxBytes: 5 * GiB, partBytes: 512 * MiB, partsInFlight: 4 };
const MIN_PART_BYTES = 5 * MiB;
const MAX_PARTS = 10_000;

/** The part size of a copy of `sizeBytes`: the configured one, or larger to stay within 10,000 parts. */
export function copyPartBytes(sizeBytes: number, limits: Pick<CopyLimits, 'partBytes'> = DEFAULT_COPY_LIMITS): number {
  const least = Math.ceil(Math.ceil(sizeBytes / MAX_PARTS) / MiB) * MiB;
  return Math.max(limits.partBytes, least, MIN_PART_BYTES);
}

/** The header value of a source in this bucket: S3 wants the key URL-encoded. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${keyPath(key)}`;
}

/** CopyObject's refusal of a source above its limit (S3 answers 400 InvalidRequest; some stores EntityTooLarge). */
function isTooLargeToCopy(err: unknown): boolean {
  return err instanceof S3RequestError && err.status === 400 && (err.code === 'InvalidRequest' || err.code === 'EntityTooLarge');
}

/** What toS3Error classifies as Aborted, with the signal's reason as cause (a DOMException's name cannot be set). */
function abortedError(signal: AbortSignal): Error {
  return Object.assign(new Error('aborted', { cause: signal.reason }), { name: 'AbortError' });
}

export interface SdkObjectClientOptions {
  /** The connections of `s3` too: GETs and small PUTs are sent on it directly. */
  transport: HttpTransport;
  storageClass?: string | undefined;
  /** Small files' PutObject without the SDK; not where additional checksums are asked for (the SDK adds them). */
  directPuts?: boolean;
  policy?: RequestsOptions['policy'];
  readDeadlineMs?: number;
  copyLimits?: Partial<CopyLimits>;
}

export class SdkObjectClient implements ObjectClient {
  readonly bucket: string;
  readonly s3: S3Client;
  readonly transport: HttpTransport;
  private readonly storageClass: string | undefined;
  private readonly requests: SignedRequests;
  private readonly directPuts: boolean;
  private readonly copyLimits: CopyLimits;
  private readonly policy: RetryPolicy;

  constructor(s3: S3Client, bucket: string, options: SdkObjectClientOptions) {
    this.s3 = s3;
    this.copyLimits = { ...DEFAULT_COPY_LIMITS, ...options.copyLimits };
    this.policy = options.policy ?? DEFAULT_RETRY_POLICY;
    this.bucket = bucket;
    this.transport = options.transport;
    this.storageClass = options.storageClass;
    this.directPuts = options.directPuts ?? false;
    this.requests = new SignedRequests(s3, bucket, options.transport, {
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.readDeadlineMs !== undefined ? { readDeadlineMs: options.readDeadlineMs } : {}),
    });
  }

  /** Where GETs go and how they are signed (for the logs and tests). */
  describeRequests(): Promise<{ url: string; region: string; service: string }> {
    return this.requests.describe();
  }

  /** Closes the client's connections; requests in flight fail. */
  destroy(): void {
    this.s3.destroy();
    this.transport.close();
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
    const parts: Buffer[] = [];
    let answer;
    try {
      answer = await this.requests.getRange(key, { start: 0, end: maxBytes }, { write: (b) => { parts.push(Buffer.from(b)); } },
        { signal: opts.signal, first: true, upToEnd: true });
    } catch (err) {
      if (err instanceof S3RequestError && err.kind === 'NoSuchKey') return undefined;
      // An empty object has no byte 0 (416), an archived one cannot be read
      // (403 InvalidObjectState) but still exists: HeadObject tells.
      if (err instanceof S3RequestError && (err.status === 416 || err.code === 'InvalidObjectState')) return this.headWithoutBytes(key, opts);
      throw err;
    }
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return {
      info: { key, sizeBytes: answer.totalBytes ?? data.length, lastModified: answer.lastModified ?? new Date(0), etag: etagOf(answer.etag) },
      data,
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

  async getRange(key: string, range: ByteRange, sink: RangeSink, opts: RequestOptions & { ifMatch?: string } = {}): Promise<void> {
    await this.requests.getRange(key, range, sink, opts);
  }

  async putObject(key: string, body: Uint8Array, opts: RequestOptions & WriteConditions = {}): Promise<{ etag: string }> {
    if (this.directPuts) {
      return this.requests.put(key, body, { storageClass: this.storageClass, signal: opts.signal, ifMatch: opts.ifMatch, ifNoneMatch: opts.ifNoneMatch });
    }
    // The SDK's retry strategy sees a 409 as a client error; AWS says a
    // conditional PutObject that met a concurrent write may be sent again.
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await this.call('PutObject', key, () =>
          this.s3.send(new PutObjectCommand({
            Bucket: this.bucket, Key: key, Body: body, ContentLength: body.byteLength,
            ...(this.storageClass ? { StorageClass: this.storageClass as never } : {}),
            ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
            ...(opts.ifNoneMatch ? { IfNoneMatch: opts.ifNoneMatch } : {}),
          }), sendOptions(opts.signal)));
        return { etag: etagOf(out.ETag) };
      } catch (err) {
        if (!(err instanceof S3RequestError && err.kind === 'Conflict' && isRetryable(err)) || attempt >= this.policy.maxAttempts) throw err;
        await sleep(retryDelayMs(attempt, this.policy), undefined, { signal: opts.signal }).catch((e: unknown) => {
          throw toS3Error(e, { operation: 'PutObject', bucket: this.bucket, key });
        });
      }
    }
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

  async completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts: RequestOptions & WriteConditions = {}): Promise<{ etag: string }> {
    const out = await this.call('CompleteMultipartUpload', key, () =>
      this.s3.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: key, UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
        ...(opts.ifNoneMatch ? { IfNoneMatch: opts.ifNoneMatch } : {}),
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

  async copyObject(sourceKey: string, destKey: string, opts: CopyOptions = {}): Promise<{ etag: string }> {
    if (opts.sizeBytes === undefined || opts.sizeBytes <= this.copyLimits.singleCopyMaxBytes) {
      try {
        return await this.copyWhole(sourceKey, destKey, opts);
      } catch (err) {
        if (!isTooLargeToCopy(err)) throw err;
        // Only a source above the limit takes the multipart path; any other refusal stands.
        const source = await this.headObject(sourceKey, opts);
        if (source === undefined || source.sizeBytes <= this.copyLimits.singleCopyMaxBytes) throw err;
      }
    }
    return this.copyInParts(sourceKey, destKey, opts);
  }

  /**
   * CopyObject. A 200 answer may still carry an <Error> (S3 documents it for
   * copies): the SDK's S3 middleware turns it into a 503 with the error's
   * code, retried like any server error.
   */
  private async copyWhole(sourceKey: string, destKey: string, opts: CopyOptions): Promise<{ etag: string }> {
    const out = await this.call('CopyObject', destKey, () =>
      this.s3.send(new CopyObjectCommand({
        Bucket: this.bucket, Key: destKey, CopySource: copySource(this.bucket, sourceKey),
        MetadataDirective: 'COPY',
        ...(opts.ifMatch ? { CopySourceIfMatch: opts.ifMatch } : {}),
        ...(this.storageClass ? { StorageClass: this.storageClass as never } : {}),
      }), sendOptions(opts.signal)));
    return { etag: etagOf(out.CopyObjectResult?.ETag) };
  }

  /**
   * The copy of a source above CopyObject's limit: UploadPartCopy of its
   * ranges, a bounded number at once. Every part names the source's ETag,
   * so the parts all come from one version even without `ifMatch`. Parts
   * do not carry metadata: the upload is created with the source's.
   * Any failure aborts the upload, once no part is in flight.
   */
  private async copyInParts(sourceKey: string, destKey: string, opts: CopyOptions): Promise<{ etag: string }> {
    const head = await this.call('HeadObject', sourceKey, () =>
      this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: sourceKey, ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}) }), sendOptions(opts.signal)));
    const sizeBytes = head.ContentLength ?? 0;
    const etag = opts.ifMatch ?? head.ETag;
    const create = await this.call('CreateMultipartUpload', destKey, () =>
      this.s3.send(new CreateMultipartUploadCommand({
        Bucket: this.bucket, Key: destKey,
        ...(head.ContentType ? { ContentType: head.ContentType } : {}),
        ...(head.Metadata ? { Metadata: head.Metadata } : {}),
        ...(this.storageClass ? { StorageClass: this.storageClass as never } : {}),
      }), sendOptions(opts.signal)));
    const uploadId = create.UploadId;
    if (!uploadId) throw toS3Error(new Error('no UploadId in response'), { operation: 'CreateMultipartUpload', bucket: this.bucket, key: destKey });
    try {
      const partBytes = copyPartBytes(sizeBytes, this.copyLimits);
      const count = Math.max(1, Math.ceil(sizeBytes / partBytes));
      const parts: CompletedPart[] = [];
      const failed = new AbortController();
      const signal = opts.signal ? AbortSignal.any([failed.signal, opts.signal]) : failed.signal;
      let next = 0;
      // The first failure is the cause; the parts in flight then were aborted because of it.
      let firstFailure: { error: unknown } | undefined;
      const worker = async (): Promise<void> => {
        while (next < count && !signal.aborted) {
          const partNumber = ++next;
          const start = (partNumber - 1) * partBytes;
          const end = Math.min(sizeBytes, start + partBytes);
          try {
            const out = await this.call('UploadPartCopy', destKey, () =>
              this.s3.send(new UploadPartCopyCommand({
                Bucket: this.bucket, Key: destKey, UploadId: uploadId, PartNumber: partNumber,
                CopySource: copySource(this.bucket, sourceKey),
                ...(sizeBytes > 0 ? { CopySourceRange: `bytes=${start}-${end - 1}` } : {}),
                ...(etag ? { CopySourceIfMatch: etag } : {}),
              }), { abortSignal: signal }));
            parts.push({ partNumber, etag: etagOf(out.CopyPartResult?.ETag) });
          } catch (err) {
            firstFailure ??= { error: err };
            failed.abort();
            return;
          }
        }
      };
      // Every worker settles before the upload is aborted: a part still in
      // flight could otherwise land in an upload thought gone.
      await Promise.all(Array.from({ length: Math.min(this.copyLimits.partsInFlight, count) }, worker));
      if (firstFailure) throw firstFailure.error;
      if (opts.signal?.aborted) throw toS3Error(abortedError(opts.signal), { operation: 'UploadPartCopy', bucket: this.bucket, key: destKey });
      parts.sort((a, b) => a.partNumber - b.partNumber);
      return await this.completeMultipartUpload(destKey, uploadId, parts, opts.signal ? { signal: opts.signal } : {});
    } catch (err) {
      // Without the caller's signal: an aborted copy must still clean up. A
      // failed abort leaves the upload to the bucket's lifecycle rules; the
      // copy's own error is the one to report.
      await this.abortMultipartUpload(destKey, uploadId).catch(() => undefined);
      throw err;
    }
  }
}
