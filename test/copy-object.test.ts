/**
 * The S3 side of editing mode: server-side copies (CopyObject, and a
 * multipart copy of UploadPartCopy ranges above CopyObject's limit) and
 * conditional writes (If-Match / If-None-Match on PutObject and
 * CompleteMultipartUpload), against the local S3 server, through the fault
 * proxy where a failure is needed, and the in-memory client's same rules.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { S3RequestError } from '../app/s3/errors.js';
import { MemoryObjectClient } from '../app/s3/memory-client.js';
import {
  copyPartBytes, DEFAULT_COPY_LIMITS, openObjectClient, type CopyLimits, type S3ConnectionConfig, type SdkObjectClient,
} from '../app/s3/sdk-client.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { KEYS, testConnection as connection } from './helpers/s3-client-fixture.js';
import { md5 } from './helpers/faults-io.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Small enough for a test: a 12 MiB object is copied in 5 MiB parts (S3's smallest). */
const SMALL_COPY_LIMITS: CopyLimits = { singleCopyMaxBytes: 8 * MiB, partBytes: 5 * MiB, partsInFlight: 2 };

/** openObjectClient's client, with copy limits of the test's choosing. */
function objectClient(endpointUrl: string, extra: Partial<S3ConnectionConfig> = {}, copyLimits?: Partial<CopyLimits>): SdkObjectClient {
  return openObjectClient(connection(endpointUrl, extra), copyLimits);
}

function isKind(kind: S3RequestError['kind']): (err: unknown) => boolean {
  return (err: unknown) => err instanceof S3RequestError && err.kind === kind;
}

/** A server that records requests and answers each with `answer`. */
async function captureServer(answer: (req: http.IncomingMessage) => { status: number; headers?: Record<string, string>; body?: string }): Promise<{
  endpoint: string;
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}> {
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      const a = answer(req);
      res.writeHead(a.status, { 'content-type': 'application/xml', ...a.headers });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

describe('copyObject against the local S3 server', () => {
  let server: TestS3Server;
  let proxy: FaultProxy;
  let s3: S3Client;
  const big = randomBytes(12 * MiB + 777);

  before(async () => {
    server = await startS3Server({ buckets: ['direct'] });
    proxy = await startFaultProxy({ targetPort: server.port });
    s3 = server.client();
    for (const k of KEYS) await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: `src/${k}`, Body: `body of ${k}` }));
    await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'big.bin', Body: big, Metadata: { mode: '600' }, ContentType: 'application/x-test' }));
  });
  after(async () => {
    s3.destroy();
    await proxy.stop();
    await server.stop();
  });

  async function stored(key: string): Promise<{ body: Buffer; etag: string | undefined }> {
    const out = await s3.send(new GetObjectCommand({ Bucket: 'direct', Key: key }));
    return { body: Buffer.from(await out.Body!.transformToByteArray()), etag: out.ETag };
  }

  async function exists(key: string): Promise<boolean> {
    return s3.send(new HeadObjectCommand({ Bucket: 'direct', Key: key })).then(() => true, () => false);
  }

  async function pendingUploads(): Promise<string[]> {
    return fsp.readdir(path.join(server.directory, 'direct', '._S3rver_uploads')).catch(() => []);
  }

  test('the real limits are S3\'s: CopyObject up to 5 GiB, 512 MiB parts, raised to stay within 10,000 parts', () => {
    assert.deepEqual(DEFAULT_COPY_LIMITS, { singleCopyMaxBytes: 5 * GiB, partBytes: 512 * MiB, partsInFlight: 4 });
    assert.equal(copyPartBytes(6 * GiB), 512 * MiB);
    const fiveTiB = 5 * 1024 * GiB;
    assert.ok(Math.ceil(fiveTiB / copyPartBytes(fiveTiB)) <= 10_000);
    assert.equal(copyPartBytes(12 * MiB, { partBytes: 1 }), 5 * MiB, 'never below S3\'s 5 MiB part');
  });

  test('keys of every kind are copied with one CopyObject each, and the answer\'s ETag is the copy\'s', async () => {
    const client = objectClient(proxy.endpoint);
    await proxy.resetStats();
    for (const k of KEYS) {
      const { etag } = await client.copyObject(`src/${k}`, `dst/${k}`);
      const got = await stored(`dst/${k}`);
      assert.equal(got.body.toString(), `body of ${k}`, k);
      assert.equal(etag, got.etag, k);
    }
    assert.deepEqual((await proxy.stats()).requests, { CopyObject: KEYS.length });
    await assert.rejects(client.copyObject('src/no such key', 'dst/none'), isKind('NoSuchKey'));
    client.destroy();
  });

  test('ifMatch: the current ETag copies; a stale one fails with PreconditionFailed and leaves the destination as it was', async () => {
    const client = objectClient(server.endpoint);
    const { ETag: first } = await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'm/src', Body: 'first' }));
    await client.copyObject('m/src', 'm/dst', { ifMatch: first! });
    assert.equal((await stored('m/dst')).body.toString(), 'first');
    await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'm/src', Body: 'second' }));
    await assert.rejects(client.copyObject('m/src', 'm/dst', { ifMatch: first! }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'PreconditionFailed' && err.status === 412 && err.operation === 'CopyObject');
    assert.equal((await stored('m/dst')).body.toString(), 'first');
    client.destroy();
  });

  test('CopyObject asks for the source\'s metadata (COPY), the client\'s storage class, the condition, and the source key URL-encoded', async () => {
    const capture = await captureServer(() => ({ status: 200, body: '<CopyObjectResult><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>' }));
    try {
      const client = objectClient(capture.endpoint, { storageClass: 'STANDARD_IA' });
      assert.deepEqual(await client.copyObject('a b+c&d#e/é', 'dest key', { ifMatch: '"abc"' }), { etag: '"e"' });
      const h = capture.seen[0]!.headers;
      assert.equal(capture.seen[0]!.method, 'PUT');
      assert.equal(h['x-amz-copy-source'], 'direct/a%20b%2Bc%26d%23e/%C3%A9');
      assert.equal(h['x-amz-metadata-directive'], 'COPY');
      assert.equal(h['x-amz-storage-class'], 'STANDARD_IA');
      assert.equal(h['x-amz-copy-source-if-match'], '"abc"');
      client.destroy();
    } finally {
      await capture.close();
    }
  });

  test('a 200 answer carrying an <Error> (as S3 documents for copies) is a failure: retried, then reported with its code', async () => {
    const client = objectClient(proxy.endpoint, { maxAttempts: 2 });
    await proxy.resetStats();
    await proxy.setRules([{ id: 'error-in-200', match: { op: 'CopyObject' }, action: { kind: 'error', status: 200, code: 'InternalError', requestId: 'REQ-200' }, times: 1 }]);
    await client.copyObject('src/plain', 'e200/once');
    assert.equal((await stored('e200/once')).body.toString(), 'body of plain');
    assert.equal((await proxy.stats()).requests.CopyObject, 2, 'the failed answer and the retry');
    await proxy.setRules([{ id: 'error-in-200', match: { op: 'CopyObject' }, action: { kind: 'error', status: 200, code: 'InternalError', requestId: 'REQ-200' } }]);
    await assert.rejects(client.copyObject('src/plain', 'e200/never'), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'ServerError' && err.code === 'InternalError' && err.requestId === 'REQ-200');
    assert.equal(await exists('e200/never'), false);
    await proxy.clearRules();
    client.destroy();
  });

  test('above the single-copy limit: a multipart copy of 5 MiB ranges, exact, with the source\'s metadata, and no CopyObject', async () => {
    const client = objectClient(proxy.endpoint, {}, SMALL_COPY_LIMITS);
    await proxy.resetStats();
    const { etag } = await client.copyObject('big.bin', 'copies/big copy+1.bin', { sizeBytes: big.length });
    const got = await stored('copies/big copy+1.bin');
    assert.equal(md5(got.body), md5(big));
    assert.equal(etag, got.etag);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'direct', Key: 'copies/big copy+1.bin' }));
    assert.equal(head.Metadata?.['mode'], '600');
    assert.equal(head.ContentType, 'application/x-test');
    assert.deepEqual((await proxy.stats()).requests, { HeadObject: 1, CreateMultipartUpload: 1, UploadPart: 3, CompleteMultipartUpload: 1 });
    assert.deepEqual(await pendingUploads(), []);
    client.destroy();
  });

  test('without a size, CopyObject\'s refusal of a source too large turns into a multipart copy; the same refusal of a small source stands', async () => {
    const client = objectClient(proxy.endpoint, {}, SMALL_COPY_LIMITS);
    await proxy.setRules([{ id: 'too-large', match: { op: 'CopyObject' }, action: { kind: 'error', status: 400, code: 'InvalidRequest', message: 'The specified copy source is larger than the maximum allowable size for a copy source: 5368709120' } }]);
    await proxy.resetStats();
    await client.copyObject('big.bin', 'copies/unsized.bin');
    assert.equal(md5((await stored('copies/unsized.bin')).body), md5(big));
    const stats = await proxy.stats();
    assert.equal(stats.requests.CopyObject, 1);
    assert.equal(stats.requests.UploadPart, 3);
    await assert.rejects(client.copyObject('src/plain', 'copies/small'), (err: unknown) =>
      err instanceof S3RequestError && err.code === 'InvalidRequest' && err.operation === 'CopyObject');
    assert.equal(await exists('copies/small'), false);
    await proxy.clearRules();
    client.destroy();
  });

  test('a multipart copy whose UploadPartCopy fails past the retries aborts the upload: no upload, no object left', async () => {
    const client = objectClient(proxy.endpoint, { maxAttempts: 2 }, SMALL_COPY_LIMITS);
    await proxy.resetStats();
    await proxy.setRules([{ id: 'part-2', match: { op: 'UploadPart', query: 'partNumber=2' }, action: { kind: 'error', status: 500, code: 'InternalError', requestId: 'REQ-PART' } }]);
    await assert.rejects(client.copyObject('big.bin', 'copies/failed.bin', { sizeBytes: big.length }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'ServerError' && err.operation === 'UploadPartCopy' && err.requestId === 'REQ-PART');
    const stats = await proxy.stats();
    assert.equal(stats.fired['part-2'], 2, 'the part was tried as often as the policy allows');
    assert.equal(stats.requests.AbortMultipartUpload, 1);
    assert.equal(stats.requests.CompleteMultipartUpload, undefined);
    assert.deepEqual(await pendingUploads(), []);
    assert.equal(await exists('copies/failed.bin'), false);
    assert.equal(client.transport.requestsInFlight, 0);
    await proxy.clearRules();
    client.destroy();
  });

  test('a multipart copy takes every part from one version: a source changed half way fails with PreconditionFailed and is aborted', async () => {
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'changing.bin', Body: big }));
    const client = objectClient(proxy.endpoint, {}, { ...SMALL_COPY_LIMITS, partsInFlight: 1 });
    await proxy.setRules([{ id: 'hold-part-2', match: { op: 'UploadPart', query: 'partNumber=2' }, action: { kind: 'hold' }, times: 1 }]);
    await proxy.resetStats();
    const copy = client.copyObject('changing.bin', 'copies/changing.bin', { sizeBytes: big.length });
    const outcome = copy.then(() => undefined, (err: unknown) => err);
    // Part 1 is copied from the first version; part 2 waits at the proxy while the source is replaced.
    for (let i = 0; (await proxy.stats()).fired['hold-part-2'] !== 1; i++) {
      assert.ok(i < 1500, 'part 2 never reached the proxy');
      await new Promise((r) => setTimeout(r, 10));
    }
    await s3.send(new PutObjectCommand({ Bucket: 'direct', Key: 'changing.bin', Body: randomBytes(big.length) }));
    await proxy.release();
    const err = await outcome;
    assert.ok(err instanceof S3RequestError && err.kind === 'PreconditionFailed', String(err));
    assert.deepEqual(await pendingUploads(), []);
    assert.equal(await exists('copies/changing.bin'), false);
    // A stale ifMatch fails before any upload is created.
    await proxy.resetStats();
    await assert.rejects(client.copyObject('changing.bin', 'copies/changing.bin', { sizeBytes: big.length, ifMatch: ETag! }), isKind('PreconditionFailed'));
    assert.equal((await proxy.stats()).requests.CreateMultipartUpload, undefined);
    await proxy.clearRules();
    client.destroy();
  });

  test('an aborted multipart copy rejects and leaves no upload', async () => {
    const client = objectClient(proxy.endpoint, {}, SMALL_COPY_LIMITS);
    await proxy.setRules([{ id: 'slow-parts', match: { op: 'UploadPart' }, action: { kind: 'stall', ms: 2_000 } }]);
    const ac = new AbortController();
    const copy = client.copyObject('big.bin', 'copies/aborted.bin', { sizeBytes: big.length, signal: ac.signal });
    setTimeout(() => ac.abort(), 300);
    await assert.rejects(copy, isKind('Aborted'));
    await proxy.clearRules();
    assert.deepEqual(await pendingUploads(), []);
    assert.equal(await exists('copies/aborted.bin'), false);
    client.destroy();
  });
});

describe('conditional writes against the local S3 server', () => {
  let server: TestS3Server;
  let proxy: FaultProxy;
  let s3: S3Client;

  before(async () => {
    server = await startS3Server({ buckets: ['direct'] });
    proxy = await startFaultProxy({ targetPort: server.port });
    s3 = server.client();
  });
  after(async () => {
    s3.destroy();
    await proxy.stop();
    await server.stop();
  });

  async function body(key: string): Promise<string> {
    return (await s3.send(new GetObjectCommand({ Bucket: 'direct', Key: key }))).Body!.transformToString();
  }

  test('our signed PUT: If-None-Match * creates only a missing key, If-Match replaces only the version named; failures are typed and not retried', async () => {
    const client = objectClient(proxy.endpoint);
    await proxy.resetStats();
    for (const k of KEYS) {
      const first = await client.putObject(`put/${k}`, Buffer.from('one'), { ifNoneMatch: '*' });
      await assert.rejects(client.putObject(`put/${k}`, Buffer.from('two'), { ifNoneMatch: '*' }), (err: unknown) =>
        err instanceof S3RequestError && err.kind === 'PreconditionFailed' && err.status === 412 && err.operation === 'PutObject');
      const second = await client.putObject(`put/${k}`, Buffer.from('three'), { ifMatch: first.etag });
      await assert.rejects(client.putObject(`put/${k}`, Buffer.from('four'), { ifMatch: first.etag }), isKind('PreconditionFailed'));
      assert.equal(await body(`put/${k}`), 'three', k);
      assert.notEqual(second.etag, first.etag);
    }
    assert.equal((await proxy.stats()).requests.PutObject, 4 * KEYS.length, 'a failed condition is final: one request each');
    await assert.rejects(client.putObject('put/missing', Buffer.from('x'), { ifMatch: '"0123456789abcdef0123456789abcdef"' }), isKind('NoSuchKey'));
    client.destroy();
  });

  test('our signed PUT: a 409 ConditionalRequestConflict is sent again (AWS: retry the upload), and the condition is then decided', async () => {
    const client = objectClient(proxy.endpoint);
    await proxy.resetStats();
    await proxy.setRules([{ id: 'conflict', match: { op: 'PutObject' }, action: { kind: 'error', status: 409, code: 'ConditionalRequestConflict' }, times: 1 }]);
    await client.putObject('put/conflict', Buffer.from('after conflict'), { ifNoneMatch: '*' });
    assert.equal(await body('put/conflict'), 'after conflict');
    assert.equal((await proxy.stats()).requests.PutObject, 2);
    await proxy.clearRules();
    client.destroy();
  });

  test('the conditions are signed: the server checks our signature over them', async () => {
    const capture = await captureServer(() => ({ status: 200, headers: { etag: '"e"' } }));
    try {
      const client = objectClient(capture.endpoint);
      await client.putObject('k', Buffer.from('x'), { ifMatch: '"abc"' });
      await client.putObject('k', Buffer.from('x'), { ifNoneMatch: '*' });
      const signed = (h: http.IncomingHttpHeaders): string[] => /SignedHeaders=([^,]+)/.exec(String(h.authorization))?.[1]?.split(';') ?? [];
      assert.equal(capture.seen[0]!.headers['if-match'], '"abc"');
      assert.ok(signed(capture.seen[0]!.headers).includes('if-match'));
      assert.equal(capture.seen[1]!.headers['if-none-match'], '*');
      assert.ok(signed(capture.seen[1]!.headers).includes('if-none-match'));
      client.destroy();
    } finally {
      await capture.close();
    }
  });

  test('with additional checksums (the SDK\'s PUT, which the server accepts): the same conditions hold', async () => {
    const client = objectClient(proxy.endpoint, { uploadChecksums: 'crc32c' });
    await proxy.resetStats();
    const first = await client.putObject('sdk/k', Buffer.from('one'), { ifNoneMatch: '*' });
    await assert.rejects(client.putObject('sdk/k', Buffer.from('two'), { ifNoneMatch: '*' }), isKind('PreconditionFailed'));
    await client.putObject('sdk/k', Buffer.from('three'), { ifMatch: first.etag });
    await assert.rejects(client.putObject('sdk/k', Buffer.from('four'), { ifMatch: first.etag }), isKind('PreconditionFailed'));
    assert.equal(await body('sdk/k'), 'three');
    assert.equal((await proxy.stats()).requests.PutObject, 4, 'a failed condition is final: one request each');
    client.destroy();
  });

  test('with additional checksums (the SDK\'s PUT): the conditions are sent, a failed one is PreconditionFailed, a 409 is sent again', async () => {
    let conflicts = 1;
    const capture = await captureServer((req) => {
      if (req.headers['if-none-match'] === '*' && conflicts-- > 0) {
        return { status: 409, body: '<Error><Code>ConditionalRequestConflict</Code><Message>conflict</Message><RequestId>REQ-409</RequestId></Error>' };
      }
      if (req.headers['if-match'] === '"stale"') {
        return { status: 412, body: '<Error><Code>PreconditionFailed</Code><Message>no</Message><RequestId>REQ-412</RequestId></Error>' };
      }
      return { status: 200, headers: { etag: '"e"' } };
    });
    try {
      const client = objectClient(capture.endpoint, { uploadChecksums: 'crc32c' });
      assert.deepEqual(await client.putObject('k', Buffer.from('hello'), { ifNoneMatch: '*' }), { etag: '"e"' });
      assert.equal(capture.seen.length, 2, 'the 409 and the retry');
      assert.equal(capture.seen[1]!.url, '/direct/k?x-id=PutObject', 'the SDK\'s request');
      assert.equal(capture.seen[1]!.headers['if-none-match'], '*');
      assert.ok(Object.keys(capture.seen[1]!.headers).some((h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-trailer'));
      await assert.rejects(client.putObject('k', Buffer.from('hello'), { ifMatch: '"stale"' }), (err: unknown) =>
        err instanceof S3RequestError && err.kind === 'PreconditionFailed' && err.requestId === 'REQ-412');
      assert.equal(capture.seen.length, 3, 'a failed condition is not retried');
      client.destroy();
    } finally {
      await capture.close();
    }
  });

  test('CompleteMultipartUpload: If-None-Match * and If-Match decide; a 409 is not retried (AWS: start a new upload)', async () => {
    const client = objectClient(proxy.endpoint);
    const upload = async (key: string, text: string): Promise<{ uploadId: string; parts: Array<{ partNumber: number; etag: string }> }> => {
      const uploadId = await client.createMultipartUpload(key);
      const etag = await client.uploadPart(key, uploadId, 1, Buffer.from(text));
      return { uploadId, parts: [{ partNumber: 1, etag }] };
    };
    const a = await upload('mpu/a', 'first');
    const first = await client.completeMultipartUpload('mpu/a', a.uploadId, a.parts, { ifNoneMatch: '*' });
    const b = await upload('mpu/a', 'second');
    await assert.rejects(client.completeMultipartUpload('mpu/a', b.uploadId, b.parts, { ifNoneMatch: '*' }), isKind('PreconditionFailed'));
    await assert.rejects(client.completeMultipartUpload('mpu/a', b.uploadId, b.parts, { ifMatch: '"0123456789abcdef0123456789abcdef-1"' }), isKind('PreconditionFailed'));
    assert.equal(await body('mpu/a'), 'first');
    await client.completeMultipartUpload('mpu/a', b.uploadId, b.parts, { ifMatch: first.etag });
    assert.equal(await body('mpu/a'), 'second');

    const c = await upload('mpu/c', 'third');
    await proxy.resetStats();
    await proxy.setRules([{ id: 'conflict', match: { op: 'CompleteMultipartUpload' }, action: { kind: 'error', status: 409, code: 'ConditionalRequestConflict' } }]);
    await assert.rejects(client.completeMultipartUpload('mpu/c', c.uploadId, c.parts, { ifNoneMatch: '*' }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'Conflict' && err.status === 409);
    assert.equal((await proxy.stats()).requests.CompleteMultipartUpload, 1);
    await proxy.clearRules();
    await client.abortMultipartUpload('mpu/c', c.uploadId);
    client.destroy();
  });
});

describe('the in-memory client follows the same rules', () => {
  test('copyObject copies, refuses a stale ifMatch with PreconditionFailed and a missing source with NoSuchKey', async () => {
    const m = new MemoryObjectClient();
    m.put('src', 'one');
    const etag = (await m.headObject('src'))!.etag;
    assert.deepEqual(await m.copyObject('src', 'dst', { ifMatch: etag }), { etag });
    m.put('src', 'two');
    await assert.rejects(m.copyObject('src', 'dst', { ifMatch: etag }), isKind('PreconditionFailed'));
    await assert.rejects(m.copyObject('gone', 'dst'), isKind('NoSuchKey'));
    assert.equal(m.objects.get('dst')?.body.toString(), 'one');
    assert.equal(m.requestCounts.get('CopyObject'), 3);
  });

  test('putObject: If-None-Match * only where nothing exists, If-Match only over that ETag (quotes aside), NoSuchKey when missing', async () => {
    const m = new MemoryObjectClient();
    const first = await m.putObject('k', Buffer.from('one'), { ifNoneMatch: '*' });
    await assert.rejects(m.putObject('k', Buffer.from('two'), { ifNoneMatch: '*' }), isKind('PreconditionFailed'));
    await m.putObject('k', Buffer.from('three'), { ifMatch: first.etag.replace(/"/g, '') });
    await assert.rejects(m.putObject('k', Buffer.from('four'), { ifMatch: first.etag }), isKind('PreconditionFailed'));
    await assert.rejects(m.putObject('missing', Buffer.from('x'), { ifMatch: first.etag }), isKind('NoSuchKey'));
    assert.equal(m.objects.get('k')?.body.toString(), 'three');
  });

  test('completeMultipartUpload: a failed condition stores nothing and keeps the upload', async () => {
    const m = new MemoryObjectClient();
    m.put('k', 'old');
    const id = await m.createMultipartUpload('k');
    const parts = [{ partNumber: 1, etag: await m.uploadPart('k', id, 1, Buffer.from('new')) }];
    await assert.rejects(m.completeMultipartUpload('k', id, parts, { ifNoneMatch: '*' }), isKind('PreconditionFailed'));
    await assert.rejects(m.completeMultipartUpload('k', id, parts, { ifMatch: '"stale"' }), isKind('PreconditionFailed'));
    assert.equal(m.objects.get('k')?.body.toString(), 'old');
    assert.ok(m.uploads.has(id));
    await m.completeMultipartUpload('k', id, parts, { ifMatch: m.objects.get('k')!.etag });
    assert.equal(m.objects.get('k')?.body.toString(), 'new');
  });
});
