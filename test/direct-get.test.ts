/**
 * GETs that bypass the SDK's middleware (app/s3/direct-get.ts): signed so
 * that the local S3 server (which checks SigV4) accepts them for keys of
 * every kind, sent where the SDK would send them, and handed back to the
 * SDK for anything but a plain success, so errors and retries stay the
 * SDK's.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DirectGet, keyPath } from '../app/s3/direct-get.js';
import { HttpGetPool } from '../app/s3/http-get.js';
import { S3RequestError } from '../app/s3/errors.js';
import { createS3Client, SdkObjectClient, type S3ConnectionConfig } from '../app/s3/sdk-client.js';
import { zoneEndpoint } from '../app/s3/zones.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const KEYS = ['plain', 'with space', 'plus+sign', 'per%cent', 'amp&and=eq?q#h', "bang!quote'(paren)*star", 'tilde~', 'é/ü/😀', 'dir/sub/file.txt', '\uE000private'];

/** For clients that only resolve where they would send. */
const UNUSED_AGENTS = { httpAgent: new http.Agent(), httpsAgent: new https.Agent(), pool: new HttpGetPool({ maxSockets: 1, connectTimeoutMs: 1, socketTimeoutMs: 1, idleTimeoutMs: 1 }), connectTimeoutMs: 1, socketTimeoutMs: 1 };

function connection(endpointUrl: string, extra: Partial<S3ConnectionConfig> = {}): S3ConnectionConfig {
  return {
    bucket: 'direct', endpointUrl, region: undefined, forcePathStyle: true, profile: undefined,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxConnections: 4, uploadChecksums: 'off', ...extra,
  };
}

async function text(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describe('GETs and small files\' PUTs without the SDK middleware', () => {
  let server: TestS3Server;
  let proxy: FaultProxy;
  let s3: S3Client;

  before(async () => {
    server = await startS3Server({ buckets: ['direct'] });
    proxy = await startFaultProxy({ targetPort: server.port });
    s3 = server.client();
    for (const k of KEYS) await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: k, Body: `0123456789 of ${k}` }));
  });
  after(async () => {
    s3.destroy();
    await proxy.stop();
    await server.stop();
  });

  test('keys are encoded in the path as S3 expects: every byte but unreserved ones and "/"', () => {
    assert.equal(keyPath('a b+c/d%e'), 'a%20b%2Bc/d%25e');
    assert.equal(keyPath("x!'()*~"), 'x%21%27%28%29%2A~');
    assert.equal(keyPath('é/😀'), '%C3%A9/%F0%9F%98%80');
  });

  test('the server accepts their signatures and sends the asked range, for keys of every kind', async () => {
    const direct = new DirectGet(createS3Client(connection(server.endpoint)), 'direct', {
      httpAgent: new http.Agent({ keepAlive: true }), httpsAgent: new https.Agent(), connectTimeoutMs: 5_000, socketTimeoutMs: 5_000,
      pool: new HttpGetPool({ maxSockets: 4, connectTimeoutMs: 5_000, socketTimeoutMs: 5_000, idleTimeoutMs: 4_000 }),
    });
    for (const k of KEYS) {
      const a = await direct.get(k, { start: 2, end: 6 });
      assert.equal(a.kind, 'ok', `${k}: ${a.kind === 'fallback' ? a.reason : ''}`);
      if (a.kind === 'ok') {
        assert.equal(a.response.statusCode, 206);
        assert.equal(await text(a.response), '2345', k);
      }
    }
    assert.equal((await direct.get('no such key', { start: 0, end: 10 }, { notFoundIsAnswer: true })).kind, 'missing');
    const stale = await direct.get('plain', { start: 0, end: 10 }, { ifMatch: '"not-the-etag"' });
    assert.deepEqual(stale, { kind: 'fallback', reason: 'status 412' });
  });

  test('they go where the SDK sends GetObject: path style, or the bucket\'s own host name for a zone', async () => {
    const pathStyle = new DirectGet(createS3Client(connection(server.endpoint)), 'direct', UNUSED_AGENTS);
    assert.deepEqual(await pathStyle.describe(), { url: `${server.endpoint}/direct/`, region: 'us-east-1', service: 's3' });
    const zone = new DirectGet(createS3Client(connection(zoneEndpoint('ch-gva-2'), { forcePathStyle: false, region: 'ch-gva-2' })), 'my-bucket', UNUSED_AGENTS);
    assert.deepEqual(await zone.describe(), { url: 'https://my-bucket.sos-ch-gva-2.exo.io/', region: 'ch-gva-2', service: 's3' });
  });

  test('the client reads through them, and a lookup of a missing key sends one request', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'direct');
    await proxy.resetStats();
    const first = await client.getFirstBytes('with space', 64);
    assert.equal(first?.data.toString(), '0123456789 of with space');
    assert.equal(first?.info.sizeBytes, Buffer.byteLength('0123456789 of with space'));
    assert.match(first?.info.etag ?? '', /^"[0-9a-f]{32}"$/);
    assert.equal(await client.getFirstBytes('missing', 64), undefined);
    assert.deepEqual((await proxy.stats()).requests, { GetObject: 2 });
  });

  test('an error answer is handed to the SDK: it retries a 503, and a refusal comes back typed with its request id', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'direct');
    await proxy.resetStats();
    await proxy.setRules([{ id: '503', match: { op: 'GetObject' }, action: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 }]);
    assert.equal(await text(await client.getObject('tilde~', { start: 0, end: 3 })), '012');
    const s = await proxy.stats();
    assert.equal(s.fired['503'], 2, 'the direct GET and the SDK\'s first attempt');
    assert.equal(s.requests.GetObject, 3, 'then the SDK\'s retry');
    await proxy.setRules([{ id: 'denied', match: { op: 'GetObject' }, action: { kind: 'error', status: 403, code: 'AccessDenied', requestId: 'REQ-DENIED' } }]);
    await assert.rejects(client.getObject('plain', { start: 0, end: 3 }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'AccessDenied' && err.requestId === 'REQ-DENIED');
    await proxy.clearRules();
  });

  test('a wrong secret is refused by the server and reported by the SDK, not taken for a missing key', async () => {
    const client = new SdkObjectClient(createS3Client(connection(server.endpoint, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' }, maxAttempts: 1 })), 'direct');
    await assert.rejects(client.getFirstBytes('plain', 64), (err: unknown) => err instanceof S3RequestError && err.status === 403);
  });

  async function stored(key: string): Promise<{ body: string; etag: string | undefined }> {
    const out = await s3.send(new GetObjectCommand({ Bucket: 'direct', Key: key }));
    return { body: await out.Body!.transformToString(), etag: out.ETag };
  }

  test('the server takes their signatures (payload hash included), one request each, for keys of every kind', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'direct');
    await proxy.resetStats();
    for (const k of KEYS) {
      const { etag } = await client.putObject(`put/${k}`, Buffer.from(`body of ${k}`));
      const got = await stored(`put/${k}`);
      assert.equal(got.body, `body of ${k}`, k);
      assert.equal(etag, got.etag, k);
    }
    assert.deepEqual((await proxy.stats()).requests, { PutObject: KEYS.length });
  });

  test('an error answer is handed to the SDK: a 503 is retried there, a refusal comes back typed with its request id', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'direct');
    await proxy.resetStats();
    await proxy.setRules([{ id: '503', match: { op: 'PutObject' }, action: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 }]);
    await client.putObject('put/retried', Buffer.from('retried'));
    assert.equal((await stored('put/retried')).body, 'retried');
    assert.equal((await proxy.stats()).requests.PutObject, 3, 'ours, the SDK\'s refused first attempt, its retry');
    await proxy.setRules([{ id: 'denied', match: { op: 'PutObject' }, action: { kind: 'error', status: 403, code: 'AccessDenied', requestId: 'REQ-PUT' } }]);
    await assert.rejects(client.putObject('put/denied', Buffer.from('x')), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'AccessDenied' && err.requestId === 'REQ-PUT');
    await proxy.setRules([{ id: 'reset', match: { op: 'PutObject' }, action: { kind: 'reset-request' }, times: 1 }]);
    await client.putObject('put/after-reset', Buffer.from('after reset'));
    assert.equal((await stored('put/after-reset')).body, 'after reset');
    await proxy.clearRules();
  });

  test('a wrong secret is refused and reported, and an aborted upload rejects without storing anything', async () => {
    const wrong = new SdkObjectClient(createS3Client(connection(server.endpoint, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' }, maxAttempts: 1 })), 'direct');
    await assert.rejects(wrong.putObject('put/wrong', Buffer.from('x')), (err: unknown) => err instanceof S3RequestError && err.status === 403);
    const client = new SdkObjectClient(createS3Client(connection(server.endpoint)), 'direct');
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(client.putObject('put/aborted', Buffer.from('x'), { signal: ac.signal }));
    await assert.rejects(stored('put/aborted'));
  });

  test('the storage class is sent; with additional checksums asked for, the SDK sends the PUT (it adds them)', async () => {
    const seen: Array<{ url: string; headers: http.IncomingHttpHeaders }> = [];
    const capture = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      req.resume();
      req.on('end', () => { res.setHeader('ETag', '"e"'); res.end(); });
    });
    await new Promise<void>((r) => capture.listen(0, '127.0.0.1', r));
    try {
      const ep = `http://127.0.0.1:${(capture.address() as { port: number }).port}`;
      await new SdkObjectClient(createS3Client(connection(ep)), 'direct', 'STANDARD_IA').putObject('k', Buffer.from('hello'));
      await new SdkObjectClient(createS3Client(connection(ep, { uploadChecksums: 'crc32c' })), 'direct').putObject('k', Buffer.from('hello'));
      assert.equal(seen.length, 2);
      assert.equal(seen[0]!.url, '/direct/k');
      assert.equal(seen[0]!.headers['x-amz-storage-class'], 'STANDARD_IA');
      assert.equal(seen[0]!.headers['x-amz-content-sha256'], '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
      assert.equal(seen[1]!.url, '/direct/k?x-id=PutObject', 'the SDK\'s request');
      assert.ok(Object.keys(seen[1]!.headers).some((h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm' || h === 'x-amz-trailer'), JSON.stringify(seen[1]!.headers));
    } finally {
      capture.close();
    }
  });
});
