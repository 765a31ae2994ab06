/**
 * An in-memory bucket implementing {@link ObjectClient}, for fast unit tests
 * of the fs model. Listing follows S3's documented ListObjectsV2 semantics.
 * Every feature is also tested against a real server (test/helpers).
 */
import { createHash, randomUUID } from 'node:crypto';
import { S3RequestError } from './errors.js';
import type {
  ByteRange, CompletedPart, CopyOptions, FirstBytes, ListPage, ListRequest, ObjectClient, ObjectInfo, RangeSink, WriteConditions,
} from './object-client.js';

interface StoredObject {
  body: Buffer;
  lastModified: Date;
  etag: string;
}

export class MemoryObjectClient implements ObjectClient {
  readonly bucket: string;
  readonly objects = new Map<string, StoredObject>();
  readonly uploads = new Map<string, { key: string; parts: Map<number, Buffer> }>();
  /** Counts requests per operation, so tests can assert "no request per file". */
  readonly requestCounts = new Map<string, number>();

  constructor(bucket = 'test-bucket') {
    this.bucket = bucket;
  }

  private count(op: string): void {
    this.requestCounts.set(op, (this.requestCounts.get(op) ?? 0) + 1);
  }

  private notFound(op: string, key: string): S3RequestError {
    return new S3RequestError('NoSuchKey', { operation: op, bucket: this.bucket, key, status: 404, code: 'NoSuchKey' }, `${op} ${key}: no such key`);
  }

  private preconditionFailed(op: string, key: string, condition: string): S3RequestError {
    return new S3RequestError('PreconditionFailed', { operation: op, bucket: this.bucket, key, status: 412, code: 'PreconditionFailed' },
      `${op} ${key}: the ${condition} condition did not hold`);
  }

  /**
   * S3's conditional writes: If-Match names the current version (a missing
   * key is 404 NoSuchKey, as S3 answers), If-None-Match '*' requires that
   * no object exists. ETags compare without their quotes, as S3 does.
   */
  private checkConditions(op: string, key: string, cond: WriteConditions): void {
    const current = this.objects.get(key);
    if (cond.ifNoneMatch === '*' && current) throw this.preconditionFailed(op, key, 'If-None-Match');
    if (cond.ifMatch !== undefined) {
      if (!current) throw this.notFound(op, key);
      if (unquoted(cond.ifMatch) !== unquoted(current.etag)) throw this.preconditionFailed(op, key, 'If-Match');
    }
  }

  put(key: string, body: string | Uint8Array, lastModified = new Date()): void {
    const buf = Buffer.from(body);
    this.objects.set(key, { body: buf, lastModified, etag: `"${createHash('md5').update(buf).digest('hex')}"` });
  }

  async headBucket(): Promise<void> {
    this.count('HeadBucket');
  }

  async headObject(key: string): Promise<ObjectInfo | undefined> {
    this.count('HeadObject');
    const o = this.objects.get(key);
    return o ? { key, sizeBytes: o.body.length, lastModified: o.lastModified, etag: o.etag } : undefined;
  }

  async getFirstBytes(key: string, maxBytes: number): Promise<FirstBytes | undefined> {
    this.count('GetObject');
    const o = this.objects.get(key);
    if (!o) return undefined;
    return {
      info: { key, sizeBytes: o.body.length, lastModified: o.lastModified, etag: o.etag },
      data: Buffer.from(o.body.subarray(0, maxBytes)),
    };
  }

  async listObjects(req: ListRequest): Promise<ListPage> {
    this.count('ListObjectsV2');
    const maxKeys = Math.min(req.maxKeys ?? 1000, 1000);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(req.prefix)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const after = req.continuationToken ?? req.startAfter;
    const objects: ObjectInfo[] = [];
    const commonPrefixes: string[] = [];
    let last: string | undefined;
    for (const key of keys) {
      const rest = key.slice(req.prefix.length);
      const cut = req.delimiter ? rest.indexOf(req.delimiter) : -1;
      const entry = cut >= 0 ? req.prefix + rest.slice(0, cut + (req.delimiter?.length ?? 0)) : key;
      if (after !== undefined && entry <= after) continue;
      if (entry === last) continue;
      if (objects.length + commonPrefixes.length >= maxKeys) {
        return { objects, commonPrefixes, nextContinuationToken: last };
      }
      if (cut >= 0) {
        commonPrefixes.push(entry);
      } else {
        const o = this.objects.get(key)!;
        objects.push({ key, sizeBytes: o.body.length, lastModified: o.lastModified, etag: o.etag });
      }
      last = entry;
    }
    return { objects, commonPrefixes, nextContinuationToken: undefined };
  }

  async getRange(key: string, range: ByteRange, sink: RangeSink, opts: { ifMatch?: string } = {}): Promise<void> {
    this.count('GetObject');
    const o = this.objects.get(key);
    if (!o) throw this.notFound('GetObject', key);
    if (opts.ifMatch && opts.ifMatch !== o.etag) {
      throw new S3RequestError('PreconditionFailed', { operation: 'GetObject', bucket: this.bucket, key, status: 412 }, 'precondition failed');
    }
    if (range.end > o.body.length) {
      throw new S3RequestError('Other', { operation: 'GetObject', bucket: this.bucket, key, status: 416 }, 'range past the end of the object');
    }
    sink.write(o.body.subarray(range.start, range.end));
  }

  async putObject(key: string, body: Uint8Array, opts: WriteConditions = {}): Promise<{ etag: string }> {
    this.count('PutObject');
    this.checkConditions('PutObject', key, opts);
    this.put(key, body);
    return { etag: this.objects.get(key)!.etag };
  }

  async createMultipartUpload(key: string): Promise<string> {
    this.count('CreateMultipartUpload');
    const id = randomUUID();
    this.uploads.set(id, { key, parts: new Map() });
    return id;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    this.count('UploadPart');
    const u = this.uploads.get(uploadId);
    if (!u || u.key !== key) throw new S3RequestError('NoSuchUpload', { operation: 'UploadPart', bucket: this.bucket, key, status: 404 }, 'no such upload');
    u.parts.set(partNumber, Buffer.from(body));
    return `"${createHash('md5').update(body).digest('hex')}"`;
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], opts: WriteConditions = {}): Promise<{ etag: string }> {
    this.count('CompleteMultipartUpload');
    const u = this.uploads.get(uploadId);
    if (!u) throw new S3RequestError('NoSuchUpload', { operation: 'CompleteMultipartUpload', bucket: this.bucket, key, status: 404 }, 'no such upload');
    // A failed condition leaves the upload in place, as on S3 (it can be completed or aborted later).
    this.checkConditions('CompleteMultipartUpload', key, opts);
    const body = Buffer.concat(parts.map((p) => {
      const b = u.parts.get(p.partNumber);
      if (!b) throw new S3RequestError('Other', { operation: 'CompleteMultipartUpload', bucket: this.bucket, key, status: 400, code: 'InvalidPart' }, 'invalid part');
      return b;
    }));
    this.uploads.delete(uploadId);
    this.put(key, body);
    return { etag: this.objects.get(key)!.etag };
  }

  async abortMultipartUpload(_key: string, uploadId: string): Promise<void> {
    this.count('AbortMultipartUpload');
    this.uploads.delete(uploadId);
  }

  async deleteObject(key: string): Promise<void> {
    this.count('DeleteObject');
    this.objects.delete(key);
  }

  /** One request whatever the size: the part-wise copy of large objects is the real client's concern. */
  async copyObject(sourceKey: string, destKey: string, opts: CopyOptions = {}): Promise<{ etag: string }> {
    this.count('CopyObject');
    const source = this.objects.get(sourceKey);
    if (!source) throw this.notFound('CopyObject', sourceKey);
    if (opts.ifMatch !== undefined && unquoted(opts.ifMatch) !== unquoted(source.etag)) {
      throw this.preconditionFailed('CopyObject', sourceKey, 'x-amz-copy-source-if-match');
    }
    this.put(destKey, source.body);
    return { etag: this.objects.get(destKey)!.etag };
  }
}

function unquoted(etag: string): string {
  return etag.replace(/"/g, '');
}
