/**
 * The narrow interface through which the file system reaches S3. The real
 * client (sdk-client.ts) and the in-memory one (memory-client.ts) implement
 * it; every method throws {@link S3RequestError} on failure.
 */
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

/**
 * S3's conditional writes (PutObject, CompleteMultipartUpload): with
 * `ifMatch` the write happens only over the version with that ETag (a
 * missing key fails with NoSuchKey), with `ifNoneMatch: '*'` only where no
 * object exists. A failed condition is kind PreconditionFailed; a write
 * that raced another one on the key is kind Conflict.
 */
export interface WriteConditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: '*' | undefined;
}

export interface CopyOptions extends RequestOptions {
  /** The source's ETag: a source changed since fails with kind PreconditionFailed. */
  ifMatch?: string | undefined;
  /**
   * The source's size when known: above S3's CopyObject limit the copy is
   * multipart from the start, instead of after CopyObject's refusal.
   */
  sizeBytes?: number | undefined;
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
   * Reads a byte range into `sink`, in order, each byte once; resolves once
   * the whole range is written. Retries are the client's own (a body that
   * breaks is asked again from where it stopped): a rejection is final.
   * With `ifMatch`, a changed object fails with kind PreconditionFailed
   * instead of returning mixed versions. A failure after some bytes were
   * written leaves them in the sink.
   */
  getRange(key: string, range: ByteRange, sink: RangeSink, opts?: RequestOptions & { ifMatch?: string }): Promise<void>;
  putObject(key: string, body: Uint8Array, opts?: RequestOptions & WriteConditions): Promise<{ etag: string }>;
  createMultipartUpload(key: string, opts?: RequestOptions): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, opts?: RequestOptions): Promise<string>;
  completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts?: RequestOptions & WriteConditions): Promise<{ etag: string }>;
  abortMultipartUpload(key: string, uploadId: string, opts?: RequestOptions): Promise<void>;
  deleteObject(key: string, opts?: RequestOptions): Promise<void>;
  /**
   * A server-side copy of `sourceKey` (this bucket) to `destKey`, with the
   * source's metadata and the client's storage class. Large objects are
   * copied in parts; a failed copy leaves no multipart upload behind.
   */
  copyObject(sourceKey: string, destKey: string, opts?: CopyOptions): Promise<{ etag: string }>;
}
