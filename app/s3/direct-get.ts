/**
 * GetObject (and a small file's PutObject) without the SDK's middleware
 * stack, for the requests a mount makes most: ranged reads, a lookup's
 * first block, and writing many small files.
 *
 * Why: the SDK spends about 1 ms of CPU per request (endpoint rules,
 * schema serde, middleware, retry bookkeeping), which on a busy machine is
 * what limits reading many small files or random blocks. This path signs
 * the request with the SDK's own signer, sends it on the SDK client's
 * keep-alive agent to the endpoint the SDK resolves for the bucket, and
 * takes only an answer that is plainly a success (200/206) or, for a
 * lookup, a plain NoSuchKey. Everything else — an error status, a refused
 * connection, a stalled answer — is handed back as `fallback`: the caller
 * sends the same GET through the SDK, which retries, corrects a clock
 * skew and builds the typed error with its request id as for every other
 * request. A GET is idempotent, so sending it twice is safe.
 *
 * Lookups (get) and PUTs go on the SDK client's keep-alive agent, whose
 * connection the mount's first requests have opened; the read-ahead's GETs
 * (getInto) on a pool of connections read without a buffer per chunk
 * (http-get.ts).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { getEndpointFromInstructions } from '@smithy/core/endpoints';
import { SignatureV4 } from '@smithy/signature-v4';
import type { S3Client } from '@aws-sdk/client-s3';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { ByteRange, RangeSink } from './object-client.js';
import { HttpGetError, type HttpGetPool } from './http-get.js';

export type DirectAnswer =
  | { kind: 'ok'; response: http.IncomingMessage }
  | { kind: 'missing' }
  | { kind: 'fallback'; reason: string };

function abortError(): Error {
  return Object.assign(new Error('request aborted'), { name: 'AbortError', code: 'ABORT_ERR' });
}

export type DirectDelivery = { kind: 'delivered' } | { kind: 'fallback'; reason: string };

export interface DirectGetConfig {
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
  /** Connections of the read-ahead's GETs (getInto), read without a buffer per chunk. */
  pool: HttpGetPool;
  /** PutObject may go without the SDK: no additional checksums are asked for (they are the SDK's). */
  directPuts?: boolean;
  connectTimeoutMs: number;
  /** Inactivity before the answer's headers; the body's reader has its own. */
  socketTimeoutMs: number;
}

interface Target {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number | undefined;
  /** The Host header: host name (bracketed if IPv6) and any non-default port. */
  host: string;
  /** Path of the bucket's root, without a trailing '/'. */
  basePath: string;
  signer: SignatureV4;
  region: string;
  service: string;
}

/** SHA-256 of an empty payload: a GET has no body. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** S3's encoding of a key in the request path: every byte but unreserved ones and '/'. */
export function keyPath(key: string): string {
  return key.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

export class DirectGet {
  private target: Promise<Target> | undefined;

  constructor(private readonly s3: S3Client, private readonly bucket: string, private readonly config: DirectGetConfig) {}

  /** Whether put() may be used: no additional upload checksums are asked for (the SDK adds those). */
  get sendsPuts(): boolean {
    return this.config.directPuts === true;
  }

  /** Where GETs go and how they are signed (for the logs and tests). */
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
        port: url.port === '' ? undefined : Number(url.port),
        host: url.host,
        basePath: url.pathname.replace(/\/+$/, ''),
        signer: new SignatureV4({ credentials: c.credentials, region, service, sha256: c.sha256, uriEscapePath: false, applyChecksum: false }),
        region,
        service,
      };
    })();
    return this.target;
  }

  /** The signed request of a ranged GET, or why there is none. */
  private prepare(key: string, range: ByteRange, ifMatch: string | undefined):
  Promise<{ t: Target; path: string; headers: Record<string, string> } | { reason: string }> {
    return this.sign('GET', key, {
      range: `bytes=${range.start}-${range.end - 1}`,
      'x-amz-content-sha256': EMPTY_SHA256,
      ...(ifMatch ? { 'if-match': ifMatch } : {}),
    });
  }

  /** Signs a request for the key with these headers (host added), or says why it cannot. */
  private async sign(method: 'GET' | 'PUT', key: string, extra: Record<string, string>):
  Promise<{ t: Target; path: string; headers: Record<string, string> } | { reason: string }> {
    let t: Target;
    try {
      t = await this.resolveTarget();
    } catch (err) {
      return { reason: `endpoint: ${(err as Error).message}` };
    }
    const path = `${t.basePath}/${keyPath(key)}`;
    const headers: Record<string, string> = { host: t.host, ...extra };
    try {
      const offset = this.s3.config.systemClockOffset ?? 0;
      const signed = await t.signer.sign(
        { method, protocol: t.protocol, hostname: t.hostname, ...(t.port !== undefined ? { port: t.port } : {}), path, query: {}, headers },
        { signingDate: new Date(Date.now() + offset), signingRegion: t.region, signingService: t.service },
      );
      return { t, path, headers: signed.headers };
    } catch (err) {
      return { reason: `signing: ${(err as Error).message}` };
    }
  }

  /**
   * A request on the SDK client's agent, with its connect timeout and the
   * inactivity timeout (which stays on for the answer's body: a stall
   * destroys it with an error its reader sees, as with the SDK's handler).
   */
  private open(t: Target, method: 'GET' | 'PUT', path: string, headers: Record<string, string>): http.ClientRequest {
    const mod = t.protocol === 'https:' ? https : http;
    const req = mod.request({
      protocol: t.protocol,
      hostname: t.hostname,
      ...(t.port !== undefined ? { port: t.port } : {}),
      method,
      path,
      headers,
      agent: t.protocol === 'https:' ? this.config.httpsAgent : this.config.httpAgent,
    });
    const connectTimer = setTimeout(() => req.destroy(new Error('connect timeout')), this.config.connectTimeoutMs);
    req.on('socket', (socket) => {
      if (!socket.connecting) clearTimeout(connectTimer);
      else socket.once('connect', () => clearTimeout(connectTimer));
    });
    req.once('close', () => clearTimeout(connectTimer));
    req.setTimeout(this.config.socketTimeoutMs, () => req.destroy(new Error('no answer in time')));
    return req;
  }

  /**
   * PutObject of a small file without the SDK's middleware (about 1 ms of
   * CPU per request there), on the SDK client's agent. The payload's
   * SHA-256 is signed, so the server refuses a body that changed on the
   * way. Only a 200 with an ETag is taken; anything else is `fallback`
   * and the caller sends the PUT through the SDK (sending the same bytes
   * twice is harmless). Not for uploads with additional checksums: the
   * SDK adds those.
   */
  async put(key: string, body: Uint8Array, opts: { storageClass?: string; signal?: AbortSignal } = {}): Promise<{ kind: 'ok'; etag: string } | { kind: 'fallback'; reason: string }> {
    const req = await this.sign('PUT', key, {
      'content-length': String(body.byteLength),
      'content-type': 'application/octet-stream',
      'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'),
      ...(opts.storageClass ? { 'x-amz-storage-class': opts.storageClass } : {}),
    });
    if ('reason' in req) return { kind: 'fallback', reason: req.reason };
    const { t } = req;
    if (opts.signal?.aborted) throw abortError();
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const r = this.open(t, 'PUT', req.path, req.headers);
      const onAbort = (): void => {
        r.destroy();
        settle(() => reject(abortError()));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      r.on('error', (err) => settle(() => resolve({ kind: 'fallback', reason: err.message })));
      r.on('response', (res) => {
        const etag = res.headers.etag;
        const status = res.statusCode ?? 0;
        res.on('error', (err) => settle(() => resolve({ kind: 'fallback', reason: err.message })));
        // The answer's (empty) body is read to its end so the connection is kept.
        res.on('end', () => settle(() => resolve(status === 200 && etag
          ? { kind: 'ok', etag }
          : { kind: 'fallback', reason: `status ${status}` })));
        res.resume();
      });
      r.end(body);
    });
  }

  /**
   * A read-ahead GET whose body goes straight to `sink`, on the pool's
   * connections. `fallback`: nothing was written and the caller sends the
   * GET through the SDK. A break during the body throws a network error
   * (the sink keeps what arrived; the caller asks for the rest).
   */
  async getInto(key: string, range: ByteRange, sink: RangeSink, opts: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<DirectDelivery> {
    const req = await this.prepare(key, range, opts.ifMatch);
    if ('reason' in req) return { kind: 'fallback', reason: req.reason };
    const { t } = req;
    const want = range.end - range.start;
    try {
      const out = await this.config.pool.get(
        { protocol: t.protocol, hostname: t.hostname, port: t.port ?? (t.protocol === 'https:' ? 443 : 80) },
        req.path, req.headers,
        (head) => {
          const length = Number(head.headers.get('content-length'));
          // 200 to a range: the server ignored it. Taken only when it is the
          // range anyway (a small object read from 0); else the SDK path.
          return head.status === 206 || (head.status === 200 && range.start === 0 && length <= want) ? sink : undefined;
        },
        opts.signal,
      );
      return out.kind === 'delivered' ? { kind: 'delivered' } : { kind: 'fallback', reason: `status ${out.head.status}` };
    } catch (err) {
      if (opts.signal?.aborted) throw abortError();
      if (err instanceof HttpGetError && err.phase === 'before-head') return { kind: 'fallback', reason: err.message };
      const code = err instanceof HttpGetError && err.code === 'ETIMEDOUT' ? 'ETIMEDOUT' : 'ECONNRESET';
      throw Object.assign(new Error(`GET ${key}: ${(err as Error).message}`), { code });
    }
  }

  async get(key: string, range: ByteRange, opts: { ifMatch?: string; notFoundIsAnswer?: boolean } = {}): Promise<DirectAnswer> {
    const prepared = await this.prepare(key, range, opts.ifMatch);
    if ('reason' in prepared) return { kind: 'fallback', reason: prepared.reason };
    const { t, path, headers } = prepared;
    return new Promise<DirectAnswer>((resolve) => {
      let settled = false;
      const settle = (a: DirectAnswer): void => {
        if (settled) return;
        settled = true;
        resolve(a);
      };
      const req = this.open(t, 'GET', path, headers);
      req.on('error', (err) => settle({ kind: 'fallback', reason: err.message }));
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        // 200 to a range that does not start at 0: the server sent the whole
        // object from its start; the SDK path handles that as before.
        if (status === 206 || (status === 200 && range.start === 0)) {
          settle({ kind: 'ok', response: res });
          return;
        }
        if (status === 404 && opts.notFoundIsAnswer) {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= 64 * 1024) chunks.push(c);
          });
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            settle(/<Code>NoSuchKey<\/Code>/.test(body) ? { kind: 'missing' } : { kind: 'fallback', reason: 'status 404' });
          });
          res.on('error', (err) => settle({ kind: 'fallback', reason: err.message }));
          return;
        }
        res.resume();
        settle({ kind: 'fallback', reason: `status ${status}` });
      });
      req.end();
    });
  }
}
