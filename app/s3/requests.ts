/**
 * GetObject (ranged reads and a lookup's first block) and a small file's
 * PutObject, signed with the SDK's own signer and sent on the mount's
 * transport (http-transport.ts) without the SDK's middleware, and retried
 * here: for these requests this module is the one owner of retries.
 *
 * Why without the SDK: it spends about 1 ms of CPU per request (endpoint
 * rules, schema serde, middleware, retry bookkeeping), which on a busy
 * machine is what limits reading many small files or random blocks.
 *
 * A GET gives up once READ_DEADLINE_MS (retry-strategy.ts) pass without a
 * byte arriving, all attempts included, well before FUSE's own timeout:
 * the program gets EIO from us, and nothing is left running. A body that
 * breaks is asked again from where it stopped, pinned to the first
 * answer's ETag, so one read never mixes two versions of an object.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { getEndpointFromInstructions } from '@smithy/core/endpoints';
import { SignatureV4 } from '@smithy/signature-v4';
import type { S3Client } from '@aws-sdk/client-s3';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { ByteRange, RangeSink } from './object-client.js';
import { HttpTransportError, type HttpTarget, type HttpTransport, type ResponseHead } from './http-transport.js';
import { S3RequestError, isRetryable, toS3Error } from './errors.js';
import { DEFAULT_RETRY_POLICY, READ_DEADLINE_MS, retryDelayMs, type RetryPolicy } from './retry-strategy.js';

interface Target extends HttpTarget {
  /** The Host header: host name (bracketed if IPv6) and any non-default port. */
  host: string;
  /** Path of the bucket's root, without a trailing '/'. */
  basePath: string;
  signer: SignatureV4;
  region: string;
  service: string;
}

/** What the answer to a GET said of the object. */
export interface GetAnswer {
  /** The object's size, from Content-Range (or Content-Length of a whole answer). */
  totalBytes: number | undefined;
  etag: string | undefined;
  lastModified: Date | undefined;
}

export interface GetOptions {
  signal?: AbortSignal | undefined;
  ifMatch?: string | undefined;
  /** Served before read-ahead GETs waiting for a connection (a lookup). */
  first?: boolean;
  /**
   * An object shorter than the range is not an error: the GET ends at its
   * end (a lookup's first block). Without it, a short answer is retried.
   */
  upToEnd?: boolean;
}

export interface RequestsOptions {
  policy?: RetryPolicy;
  /** Time without progress after which a GET fails. */
  readDeadlineMs?: number;
  random?: () => number;
}

/** SHA-256 of an empty payload: a GET has no body. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** S3's encoding of a key in the request path: every byte but unreserved ones and '/'. */
export function keyPath(key: string): string {
  return key.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

/** "bytes 0-65535/1234567" → { start: 0, total: 1234567 }; total undefined for "*". */
export function parseContentRange(value: string | undefined): { start: number; total: number | undefined } | undefined {
  const m = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)\s*$/.exec(value);
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

function xmlField(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return m?.[1];
}

/** An S3 error answer as the SDK would have typed it, with its request ids. */
export function errorOfAnswer(head: ResponseHead, body: Buffer, details: { operation: string; bucket: string; key?: string }): S3RequestError {
  const xml = body.toString('utf8');
  const code = xmlField(xml, 'Code');
  return toS3Error({
    name: code ?? `HTTP ${head.status}`,
    message: xmlField(xml, 'Message') ?? '',
    $metadata: {
      httpStatusCode: head.status,
      requestId: head.headers.get('x-amz-request-id') ?? xmlField(xml, 'RequestId'),
      extendedRequestId: head.headers.get('x-amz-id-2') ?? xmlField(xml, 'HostId'),
    },
  }, details);
}

function abortError(): Error {
  return Object.assign(new Error('request aborted'), { name: 'AbortError', code: 'ABORT_ERR' });
}

/** Raised inside an attempt: the answer is not what was asked for (an error answer, a wrong range). */
class AttemptFailed extends Error {
  constructor(readonly error: S3RequestError) {
    super(error.message);
  }
}

/** Aborts its signal once `limitMs` pass without touch(). */
class ProgressDeadline {
  private readonly controller = new AbortController();
  private last = Date.now();
  private timer: NodeJS.Timeout;

  constructor(private readonly limitMs: number) {
    this.timer = setTimeout(() => this.check(), limitMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get expired(): boolean {
    return this.controller.signal.aborted;
  }

  /** Time left before it expires. */
  get leftMs(): number {
    return this.limitMs - (Date.now() - this.last);
  }

  touch(): void {
    this.last = Date.now();
  }

  /** Time that does not count (waiting for a free connection). */
  credit(ms: number): void {
    this.last += ms;
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private check(): void {
    const left = this.leftMs;
    if (left <= 0) this.controller.abort();
    else this.timer = setTimeout(() => this.check(), left);
  }
}

export class SignedRequests {
  private target: Promise<Target> | undefined;
  private readonly policy: RetryPolicy;
  private readonly readDeadlineMs: number;
  private readonly random: () => number;

  constructor(private readonly s3: S3Client, private readonly bucket: string, private readonly transport: HttpTransport, options: RequestsOptions = {}) {
    this.policy = options.policy ?? DEFAULT_RETRY_POLICY;
    this.readDeadlineMs = options.readDeadlineMs ?? READ_DEADLINE_MS;
    this.random = options.random ?? Math.random;
  }

  /** Where requests go and how they are signed (for the logs and tests). */
  async describe(): Promise<{ url: string; region: string; service: string }> {
    const t = await this.resolveTarget();
    return { url: `${t.protocol}//${t.host}${t.basePath}/`, region: t.region, service: t.service };
  }

  /** The bucket's endpoint and signing scope, as the SDK resolves them for GetObject. */
  private resolveTarget(): Promise<Target> {
    this.target ??= (async (): Promise<Target> => {
      const c = this.s3.config;
      const endpoint = await getEndpointFromInstructions({ Bucket: this.bucket, Key: 'k' }, GetObjectCommand, c as unknown as Parameters<typeof getEndpointFromInstructions>[2]);
      const url = endpoint.url;
      const scheme = (endpoint.properties?.['authSchemes'] as Array<{ name?: string; signingName?: string; signingRegion?: string }> | undefined)?.[0];
      if (scheme && scheme.name !== 'sigv4') throw new Error(`signing scheme ${String(scheme.name)} is not SigV4`);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`endpoint ${url.protocol} is not HTTP`);
      if (url.search !== '') throw new Error('endpoint has a query');
      const region = scheme?.signingRegion ?? await c.region();
      const service = scheme?.signingName ?? 's3';
      return {
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
        host: url.host,
        basePath: url.pathname.replace(/\/+$/, ''),
        signer: new SignatureV4({ credentials: c.credentials, region, service, sha256: c.sha256, uriEscapePath: false, applyChecksum: false }),
        region,
        service,
      };
    })();
    this.target.catch(() => { this.target = undefined; });
    return this.target;
  }

  /** Signs a request for the key with these headers (host added), at the clock the SDK corrected for skew. */
  private async sign(t: Target, method: 'GET' | 'PUT', key: string, extra: Record<string, string>): Promise<{ path: string; headers: Record<string, string> }> {
    const path = `${t.basePath}/${keyPath(key)}`;
    const headers: Record<string, string> = { host: t.host, ...extra };
    const offset = this.s3.config.systemClockOffset ?? 0;
    const signed = await t.signer.sign(
      { method, protocol: t.protocol, hostname: t.hostname, port: t.port, path, query: {}, headers },
      { signingDate: new Date(Date.now() + offset), signingRegion: t.region, signingService: t.service },
    );
    return { path, headers: signed.headers };
  }

  /**
   * A clock-skew refusal moves the clock the SDK signs with (shared with
   * the SDK's requests) to the server's, from the answer's Date.
   */
  private correctClock(head: ResponseHead): void {
    const date = head.headers.get('date');
    const server = date === undefined ? NaN : Date.parse(date);
    if (!Number.isNaN(server)) this.s3.config.systemClockOffset = server - Date.now();
  }

  /**
   * Reads [range.start, range.end) of the object into `sink`, in order,
   * each byte once. Resolves with what the answer said of the object;
   * rejects with S3RequestError (kind PreconditionFailed when `ifMatch`
   * no longer matches).
   */
  async getRange(key: string, range: ByteRange, sink: RangeSink, opts: GetOptions = {}): Promise<GetAnswer> {
    const details = { operation: 'GetObject', bucket: this.bucket, key };
    const deadline = new ProgressDeadline(this.readDeadlineMs);
    let delivered = 0;
    let want = range.end - range.start;
    let answer: GetAnswer | undefined;
    let ifMatch = opts.ifMatch;
    let retry = 0;
    /** The last error the server answered with since the last byte arrived. */
    let answered: S3RequestError | undefined;
    try {
      for (;;) {
        if (opts.signal?.aborted) throw toS3Error(abortError(), details);
        const attempt = new AbortController();
        const signal = AbortSignal.any([attempt.signal, deadline.signal, ...(opts.signal ? [opts.signal] : [])]);
        const from = range.start + delivered;
        let skip = 0;
        const before = delivered;
        try {
          const t = await this.resolveTarget();
          const req = await this.sign(t, 'GET', key, {
            range: `bytes=${from}-${range.start + want - 1}`,
            'x-amz-content-sha256': EMPTY_SHA256,
            ...(ifMatch ? { 'if-match': ifMatch } : {}),
          });
          const asked = Date.now();
          const out = await this.transport.request(t, { method: 'GET', path: req.path, headers: req.headers }, (head) => {
            if (head.status !== 200 && head.status !== 206) return undefined;
            const cr = parseContentRange(head.headers.get('content-range'));
            const length = Number(head.headers.get('content-length'));
            const total = head.status === 206 ? cr?.total : Number.isNaN(length) ? undefined : length;
            if (head.status === 206 && cr?.start !== from) {
              throw new Error(`asked for bytes from ${from}, got ${head.headers.get('content-range') ?? 'no Content-Range'}`);
            }
            // A server that ignores Range sends the object from its start.
            skip = head.status === 200 ? from : 0;
            answer ??= { totalBytes: total, etag: head.headers.get('etag'), lastModified: dateOf(head.headers.get('last-modified')) };
            ifMatch ??= answer.etag;
            if (opts.upToEnd && total !== undefined) want = Math.min(want, Math.max(0, total - range.start));
            return {
              write: (bytes: Buffer) => {
                deadline.touch();
                let b = bytes;
                if (skip > 0) {
                  const n = Math.min(skip, b.length);
                  skip -= n;
                  b = b.subarray(n);
                }
                const n = Math.min(b.length, want - delivered);
                if (n > 0) {
                  sink.write(n === b.length ? b : b.subarray(0, n));
                  delivered += n;
                }
                // All that was asked arrived and the server would send more: stop it.
                if (delivered >= want && b.length > n) attempt.abort();
              },
            };
          }, { signal, first: opts.first ?? false, onSent: () => deadline.credit(Date.now() - asked) });
          if (out.kind === 'declined') {
            const e = errorOfAnswer(out.head, out.body, details);
            if (e.kind === 'ClockSkew') this.correctClock(out.head);
            throw new AttemptFailed(e);
          }
          if (delivered >= want) return answer ?? { totalBytes: undefined, etag: undefined, lastModified: undefined };
          throw new AttemptFailed(toS3Error(Object.assign(new Error(`the answer ended after ${delivered} of ${want} bytes`), { code: 'ECONNRESET' }), details));
        } catch (err) {
          if (delivered >= want && answer) return answer;
          if (opts.signal?.aborted) throw toS3Error(abortError(), details);
          if (delivered > before) {
            retry = 0;
            answered = undefined;
          }
          if (err instanceof AttemptFailed) answered = err.error;
          if (deadline.expired) {
            // The server's last answer since the last byte (a 500, a body cut
            // short) says more than "no data" does: it was reached.
            if (answered) throw answered;
            throw toS3Error(Object.assign(new Error(`no data for ${Math.round(this.readDeadlineMs / 1000)} s`), { code: 'ETIMEDOUT' }), details);
          }
          const e = err instanceof AttemptFailed ? err.error : toS3Error(transportCause(err), details);
          retry++;
          if (e.kind === 'ClockSkew' && retry === 1) continue;
          if (!isRetryable(e)) throw e;
          const delay = retryDelayMs(retry, this.policy, this.random);
          if (delay >= deadline.leftMs) throw e;
          await sleep(delay, undefined, { signal: opts.signal }).catch(() => { throw toS3Error(abortError(), details); });
        }
      }
    } finally {
      deadline.stop();
    }
  }

  /**
   * PutObject of a small file. The payload's SHA-256 is signed, so the
   * server refuses a body that changed on the way. Retried as the SDK
   * retries (the policy's attempts); the body is sent whole each time.
   */
  async put(key: string, body: Uint8Array, opts: {
    storageClass?: string | undefined;
    signal?: AbortSignal | undefined;
    ifMatch?: string | undefined;
    ifNoneMatch?: '*' | undefined;
  } = {}): Promise<{ etag: string }> {
    const details = { operation: 'PutObject', bucket: this.bucket, key };
    const sha256 = createHash('sha256').update(body).digest('hex');
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw toS3Error(abortError(), details);
      let e: S3RequestError;
      try {
        const t = await this.resolveTarget();
        const req = await this.sign(t, 'PUT', key, {
          'content-length': String(body.byteLength),
          'content-type': 'application/octet-stream',
          'x-amz-content-sha256': sha256,
          ...(opts.storageClass ? { 'x-amz-storage-class': opts.storageClass } : {}),
          // Signed with the rest: a condition dropped on the way would turn into an overwrite.
          ...(opts.ifMatch ? { 'if-match': opts.ifMatch } : {}),
          ...(opts.ifNoneMatch ? { 'if-none-match': opts.ifNoneMatch } : {}),
        });
        const out = await this.transport.request(t, { method: 'PUT', path: req.path, headers: req.headers, body },
          (head) => head.status === 200 ? { write: () => {} } : undefined, { signal: opts.signal, first: true });
        if (out.kind === 'delivered') {
          const etag = out.head.headers.get('etag');
          if (etag) return { etag };
          e = toS3Error(new Error('PutObject answer without an ETag'), details);
        } else {
          e = errorOfAnswer(out.head, out.body, details);
          if (e.kind === 'ClockSkew') this.correctClock(out.head);
        }
      } catch (err) {
        if (opts.signal?.aborted) throw toS3Error(abortError(), details);
        e = toS3Error(transportCause(err), details);
      }
      if (!(isRetryable(e) || (e.kind === 'ClockSkew' && attempt === 1)) || attempt >= this.policy.maxAttempts) throw e;
      await sleep(retryDelayMs(attempt, this.policy, this.random), undefined, { signal: opts.signal }).catch(() => { throw toS3Error(abortError(), details); });
    }
  }
}

function dateOf(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A transport failure as toS3Error classifies it (its code: ECONNRESET, ETIMEDOUT, ...). */
function transportCause(err: unknown): unknown {
  if (err instanceof HttpTransportError) return Object.assign(new Error(err.message), { code: err.code === 'ABORT_ERR' ? 'ECONNRESET' : err.code, cause: err });
  return err;
}
