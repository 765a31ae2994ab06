/**
 * S3 requests over the mount's one transport, against the local S3 server
 * (which checks SigV4) and the fault proxy in front of it: our signed GETs
 * and small PUTs (app/s3/requests.ts) for keys of every kind, sent where
 * the SDK would send them, retried by us alone (resumed where a body
 * broke, given up after the read deadline with nothing left running); the
 * SDK's requests on the same connections; `--max-threads` bounding them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { keyPath } from '../app/s3/requests.js';
import { S3RequestError } from '../app/s3/errors.js';
import { openObjectClient } from '../app/s3/sdk-client.js';
import { zoneEndpoint } from '../app/s3/zones.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { Collect, KEYS, testConnection as connection } from './helpers/s3-client-fixture.js';
import { md5 } from './helpers/faults-io.js';

const MiB = 1024 * 1024;

describe('GETs and small PUTs signed by us, on the transport', () => {
  let server: TestS3Server;
  let proxy: FaultProxy;
  let s3: S3Client;
  const body = randomBytes(12 * MiB + 321);

  before(async () => {
    server = await startS3Server({ buckets: ['direct'] });
    proxy = await startFaultProxy({ targetPort: server.port });
    s3 = server.client();
    for (const k of KEYS) await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: k, Body: `0123456789 of ${k}` }));
    await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'big.bin', Body: body }));
    await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'empty', Body: '' }));
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
    const client = openObjectClient(connection(server.endpoint));
    for (const k of KEYS) {
      const sink = new Collect();
      await client.getRange(k, { start: 2, end: 6 }, sink);
      assert.equal(sink.bytes.toString(), '2345', k);
    }
    await assert.rejects(client.getRange('no such key', { start: 0, end: 10 }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'NoSuchKey');
    await assert.rejects(client.getRange('plain', { start: 0, end: 10 }, new Collect(), { ifMatch: '"not-the-etag"' }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'PreconditionFailed');
    client.destroy();
  });

  test('they go where the SDK sends GetObject: path style, or the bucket\'s own host name for a zone', async () => {
    const pathStyle = openObjectClient(connection(server.endpoint));
    assert.deepEqual(await pathStyle.describeRequests(), { url: `${server.endpoint}/direct/`, region: 'us-east-1', service: 's3' });
    const zone = openObjectClient({ ...connection(zoneEndpoint('ch-gva-2'), { forcePathStyle: false, region: 'ch-gva-2' }), bucket: 'my-bucket' });
    assert.deepEqual(await zone.describeRequests(), { url: 'https://my-bucket.sos-ch-gva-2.exo.io/', region: 'ch-gva-2', service: 's3' });
  });

  test('a lookup reads the first bytes in one request; a missing key is one request too, an empty object asks HeadObject', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.resetStats();
    const first = await client.getFirstBytes('with space', 64);
    assert.equal(first?.data.toString(), '0123456789 of with space');
    assert.equal(first?.info.sizeBytes, Buffer.byteLength('0123456789 of with space'));
    assert.match(first?.info.etag ?? '', /^"[0-9a-f]{32}"$/);
    assert.equal(await client.getFirstBytes('missing', 64), undefined);
    assert.deepEqual((await proxy.stats()).requests, { GetObject: 2 });
    const big = await client.getFirstBytes('big.bin', 64 * 1024);
    assert.equal(big?.info.sizeBytes, body.length);
    assert.ok(big?.data.equals(body.subarray(0, 64 * 1024)));
    const empty = await client.getFirstBytes('empty', 64);
    assert.equal(empty?.info.sizeBytes, 0);
    assert.equal(empty?.data.length, 0);
    client.destroy();
  });

  test('an error answer is retried by us alone (a 503, a reset), and a refusal comes back typed with its request id', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.resetStats();
    await proxy.setRules([{ id: '503', match: { op: 'GetObject' }, action: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 }]);
    const sink = new Collect();
    await client.getRange('tilde~', { start: 0, end: 3 }, sink);
    assert.equal(sink.bytes.toString(), '012');
    assert.equal((await proxy.stats()).requests.GetObject, 3, 'two refused attempts and one that succeeded: no retries stacked on retries');
    await proxy.setRules([{ id: 'denied', match: { op: 'GetObject' }, action: { kind: 'error', status: 403, code: 'AccessDenied', requestId: 'REQ-DENIED' } }]);
    await assert.rejects(client.getRange('plain', { start: 0, end: 3 }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'AccessDenied' && err.requestId === 'REQ-DENIED');
    await proxy.clearRules();
    client.destroy();
  });

  test('a wrong secret is refused by the server and reported typed, not taken for a missing key', async () => {
    const client = openObjectClient(connection(server.endpoint, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' }, maxAttempts: 1 }));
    await assert.rejects(client.getFirstBytes('plain', 64), (err: unknown) => err instanceof S3RequestError && err.status === 403 && err.kind === 'InvalidCredentials');
    client.destroy();
  });

  test('a body cut off half way is asked again from where it stopped: every byte once, in order', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.resetStats();
    await proxy.setRules([{ id: 'cut', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'reset-response', afterBytes: MiB }, times: 2 }]);
    const sink = new Collect();
    await client.getRange('big.bin', { start: 5, end: 5 + 4 * MiB }, sink);
    assert.equal(md5(sink.bytes), md5(body.subarray(5, 5 + 4 * MiB)));
    assert.equal((await proxy.stats()).requests.GetObject, 3);
    await proxy.clearRules();
    client.destroy();
  });

  test('an answer that stops half way is cut after the inactivity timeout and resumed', async () => {
    const client = openObjectClient(connection(proxy.endpoint, { requestTimeoutMs: 500 }));
    await proxy.setRules([{ id: 'stall', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall-response', afterBytes: 256 * 1024 }, times: 1 }]);
    const sink = new Collect();
    await client.getRange('big.bin', { start: 0, end: 2 * MiB }, sink);
    assert.equal(md5(sink.bytes), md5(body.subarray(0, 2 * MiB)));
    await proxy.clearRules();
    client.destroy();
  });

  test('a fault that never recovers: the GET fails within the read deadline (no byte for that long, retries included), and nothing is left running', async () => {
    const client = openObjectClient(connection(proxy.endpoint, { requestTimeoutMs: 400, readDeadlineMs: 2_000 }));
    await proxy.setRules([{ id: 'stall', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall' } }]);
    const t0 = Date.now();
    await assert.rejects(client.getRange('big.bin', { start: 0, end: MiB }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'Network');
    const took = Date.now() - t0;
    // Several stalled attempts, cut after 400 ms each; no retry starts that could not end before the deadline.
    assert.ok(took >= 800 && took < 2_000 + 500, `failed after ${took} ms`);
    assert.equal(client.transport.requestsInFlight, 0);
    await proxy.setRules([{ id: 'gone', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'error', status: 500, code: 'InternalError' } }]);
    await assert.rejects(client.getRange('big.bin', { start: 0, end: MiB }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'ServerError');
    assert.equal(client.transport.requestsInFlight, 0);
    await proxy.clearRules();
    client.destroy();
  });

  test('a GET whose server answered 500 and then stopped answering fails with that answer, not "could not be reached"', async () => {
    const client = openObjectClient(connection(proxy.endpoint, { requestTimeoutMs: 10_000, readDeadlineMs: 1_500 }));
    await proxy.setRules([
      { id: 'refused', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'error', status: 500, code: 'InternalError', requestId: 'REQ-500' }, times: 1 },
      { id: 'silent', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall' } },
    ]);
    await assert.rejects(client.getRange('big.bin', { start: 0, end: MiB }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'ServerError' && err.requestId === 'REQ-500');
    const stats = await proxy.stats();
    assert.deepEqual([stats.fired['refused'], stats.fired['silent']], [1, 1], 'the retry was sent and cut by the deadline');
    assert.equal(client.transport.requestsInFlight, 0);
    await proxy.clearRules();
    client.destroy();
  });

  test('an aborted GET rejects at once', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.setRules([{ id: 'slow', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall-response', afterBytes: 128 * 1024 } }]);
    const ac = new AbortController();
    const got = client.getRange('big.bin', { start: 0, end: 4 * MiB }, { write: () => ac.abort() }, { signal: ac.signal });
    await assert.rejects(got, (err: unknown) => err instanceof S3RequestError && err.kind === 'Aborted');
    assert.equal(client.transport.requestsInFlight, 0);
    await proxy.clearRules();
    client.destroy();
  });

  test('--max-threads bounds the open connections: GETs, listings, PUTs and the SDK\'s requests share them', async () => {
    const client = openObjectClient(connection(proxy.endpoint, { maxConnections: 3 }));
    await proxy.resetStats();
    const sinks = Array.from({ length: 12 }, () => new Collect());
    await Promise.all([
      ...sinks.map((s, i) => client.getRange('big.bin', { start: i * 700_000, end: i * 700_000 + 600_000 }, s)),
      ...Array.from({ length: 6 }, () => client.listObjects({ prefix: '', delimiter: '/' })),
      ...Array.from({ length: 4 }, (_, i) => client.putObject(`bounded/${i}`, Buffer.from(`put ${i}`))),
      client.createMultipartUpload('bounded/mpu').then((id) => client.abortMultipartUpload('bounded/mpu', id)),
      client.headObject('plain'),
    ]);
    sinks.forEach((s, i) => assert.ok(s.bytes.equals(body.subarray(i * 700_000, i * 700_000 + 600_000)), `range ${i}`));
    const stats = await proxy.stats();
    assert.ok(stats.maxOpenConnections <= 3, `${stats.maxOpenConnections} connections open at once`);
    assert.ok(client.transport.connectionCount <= 3);
    assert.equal(client.transport.requestsInFlight, 0);
    client.destroy();
  });

  async function stored(key: string): Promise<{ body: string; etag: string | undefined }> {
    const out = await s3.send(new GetObjectCommand({ Bucket: 'direct', Key: key }));
    return { body: await out.Body!.transformToString(), etag: out.ETag };
  }

  test('the server takes our PUTs\' signatures (payload hash included), one request each, for keys of every kind', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.resetStats();
    for (const k of KEYS) {
      const { etag } = await client.putObject(`put/${k}`, Buffer.from(`body of ${k}`));
      const got = await stored(`put/${k}`);
      assert.equal(got.body, `body of ${k}`, k);
      assert.equal(etag, got.etag, k);
    }
    assert.deepEqual((await proxy.stats()).requests, { PutObject: KEYS.length });
    client.destroy();
  });

  test('a PUT refused with 503 or reset is sent again by us; a refusal comes back typed with its request id', async () => {
    const client = openObjectClient(connection(proxy.endpoint));
    await proxy.resetStats();
    await proxy.setRules([{ id: '503', match: { op: 'PutObject' }, action: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 }]);
    await client.putObject('put/retried', Buffer.from('retried'));
    assert.equal((await stored('put/retried')).body, 'retried');
    assert.equal((await proxy.stats()).requests.PutObject, 3);
    await proxy.setRules([{ id: 'denied', match: { op: 'PutObject' }, action: { kind: 'error', status: 403, code: 'AccessDenied', requestId: 'REQ-PUT' } }]);
    await assert.rejects(client.putObject('put/denied', Buffer.from('x')), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'AccessDenied' && err.requestId === 'REQ-PUT');
    await proxy.setRules([{ id: 'reset', match: { op: 'PutObject' }, action: { kind: 'reset-request' }, times: 1 }]);
    await client.putObject('put/after-reset', Buffer.from('after reset'));
    assert.equal((await stored('put/after-reset')).body, 'after reset');
    await proxy.clearRules();
    client.destroy();
  });

  test('a wrong secret is refused and reported, and an aborted upload rejects without storing anything', async () => {
    const wrong = openObjectClient(connection(server.endpoint, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' }, maxAttempts: 1 }));
    await assert.rejects(wrong.putObject('put/wrong', Buffer.from('x')), (err: unknown) => err instanceof S3RequestError && err.status === 403);
    const client = openObjectClient(connection(server.endpoint));
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(client.putObject('put/aborted', Buffer.from('x'), { signal: ac.signal }));
    await assert.rejects(stored('put/aborted'));
    wrong.destroy();
    client.destroy();
  });

  test('the storage class is sent; with additional checksums asked for, the SDK sends the PUT (it adds them) on the same transport', async () => {
    const seen: Array<{ url: string; headers: http.IncomingHttpHeaders }> = [];
    const capture = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      req.resume();
      req.on('end', () => { res.setHeader('ETag', '"e"'); res.end(); });
    });
    await new Promise<void>((r) => capture.listen(0, '127.0.0.1', r));
    try {
      const ep = `http://127.0.0.1:${(capture.address() as { port: number }).port}`;
      const ours = openObjectClient(connection(ep, { storageClass: 'STANDARD_IA' }));
      await ours.putObject('k', Buffer.from('hello'));
      const sdk = openObjectClient(connection(ep, { uploadChecksums: 'crc32c' }));
      await sdk.putObject('k', Buffer.from('hello'));
      assert.equal(seen.length, 2);
      assert.equal(seen[0]!.url, '/direct/k');
      assert.equal(seen[0]!.headers['x-amz-storage-class'], 'STANDARD_IA');
      assert.equal(seen[0]!.headers['x-amz-content-sha256'], '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
      assert.equal(seen[1]!.url, '/direct/k?x-id=PutObject', 'the SDK\'s request');
      assert.ok(Object.keys(seen[1]!.headers).some((h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm' || h === 'x-amz-trailer'), JSON.stringify(seen[1]!.headers));
      assert.equal(sdk.transport.connectionCount, 1, 'the SDK\'s PUT went over the client\'s transport');
      ours.destroy();
      sdk.destroy();
    } finally {
      capture.close();
    }
  });
});
