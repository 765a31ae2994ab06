/**
 * The narrow interface through which the file system reaches S3. The real
 * client (sdk-client.ts) and the in-memory one (memory-client.ts) implement
 * it; every method throws {@link S3RequestError} on failure.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  lastModified: Date;
  etag: string;
}

/** The start of an object and what HeadObject would have said of it. */
export interface FirstBytes {
  info: ObjectInfo;
  /** Bytes from offset 0: the whole object if it is that small. */
  data: Buffer;
}

export interface ListRequest {
  prefix: string;
  delimiter?: string;
  maxKeys?: number;
  continuationToken?: string;
  /** Keys after this one (in S3's byte order); ignored with a continuation token. */
  startAfter?: string;
}

export interface ListPage {
  objects: ObjectInfo[];
  commonPrefixes: string[];
  nextContinuationToken: string | undefined;
}

export interface ByteRange {
  start: number;
  /** Exclusive. */
  end: number;
}

export interface CompletedPart {
  partNumber: number;
  etag: string;
}

/**
 * Where a GET's body goes. The bytes are valid only during the call (the
 * transport reuses its buffer): the sink copies what it keeps, and ignores
 * bytes past the range it asked for.
 */
export interface RangeSink {
  write(bytes: Buffer): void;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface ObjectClient {
  readonly bucket: string;
  headBucket(opts?: RequestOptions): Promise<void>;
  /** Resolves undefined when the key does not exist. */
  headObject(key: string, opts?: RequestOptions): Promise<ObjectInfo | undefined>;
  /**
   * A ranged GetObject of the first `maxBytes` bytes, used in place of
   * HeadObject: the same round trip answers a lookup and the first read.
   * Resolves undefined when the key does not exist.
   */
  getFirstBytes(key: string, maxBytes: number, opts?: RequestOptions): Promise<FirstBytes | undefined>;
  listObjects(req: ListRequest, opts?: RequestOptions): Promise<ListPage>;
  /**
   * Streams a byte range. With `ifMatch`, a changed object fails with
   * kind PreconditionFailed instead of returning mixed versions. The body
   * is a plain Node stream: the prefetcher consumes it with 'data' events,
   * which costs far less CPU per chunk than async iteration (issue 4).
   * The signal may go unwatched until the response starts (the SDK client
   * sends GETs without it): a caller that gives up destroys the body.
   */
  getObject(key: string, range: ByteRange, opts?: RequestOptions & { ifMatch?: string }): Promise<Readable>;
  /**
   * The same GET, its body written to `sink` without a stream in between;
   * resolves once the whole range is written. Optional: a client without it
   * is read through getObject. A failure after some bytes were written
   * leaves them in the sink (the caller asks for the rest).
   */
  getObjectInto?(key: string, range: ByteRange, sink: RangeSink, opts?: RequestOptions & { ifMatch?: string }): Promise<void>;
  putObject(key: string, body: Uint8Array, opts?: RequestOptions): Promise<{ etag: string }>;
  createMultipartUpload(key: string, opts?: RequestOptions): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, opts?: RequestOptions): Promise<string>;
  completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts?: RequestOptions): Promise<{ etag: string }>;
  abortMultipartUpload(key: string, uploadId: string, opts?: RequestOptions): Promise<void>;
  deleteObject(key: string, opts?: RequestOptions): Promise<void>;
}
