/**
 * The read-ahead's HTTP transport (app/s3/http-get.ts): GETs over kept-alive
 * connections read into one reused buffer. Against the local S3 server (the
 * read-ahead's real requests, plain and through TLS), the fault proxy (a
 * body cut off, a stall) and a raw server with hand-written answers (what
 * the transport must refuse rather than misread).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, test, type TestContext } from 'node:test';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DirectGet } from '../app/s3/direct-get.js';
import { HttpGetError, HttpGetPool, type BodySink, type HttpGetPoolOptions, type HttpTarget } from '../app/s3/http-get.js';
import { createS3Client, SdkObjectClient, type S3ConnectionConfig } from '../app/s3/sdk-client.js';
import { S3RequestError } from '../app/s3/errors.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const MiB = 1024 * 1024;

function connection(endpointUrl: string, extra: Partial<S3ConnectionConfig> = {}): S3ConnectionConfig {
  return {
    bucket: 'hg', endpointUrl, region: undefined, forcePathStyle: true, profile: undefined,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxConnections: 4, uploadChecksums: 'off', ...extra,
  };
}

/** Collects what a GET writes; the transport's buffer is reused, so it copies. */
class Collect implements BodySink {
  readonly parts: Buffer[] = [];
  write(bytes: Buffer): void {
    this.parts.push(Buffer.from(bytes));
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

describe('read-ahead GETs against the S3 server', () => {
  let server: TestS3Server;
  let proxy: FaultProxy;
  let s3: S3Client;
  const body = randomBytes(12 * MiB + 321);

  before(async () => {
    server = await startS3Server({ buckets: ['hg'] });
    proxy = await startFaultProxy({ targetPort: server.port });
    s3 = server.client();
    await s3.send(new PutObjectCommand({ Bucket: 'hg', Key: 'big.bin', Body: body }));
    await s3.send(new PutObjectCommand({ Bucket: 'hg', Key: 'small.txt', Body: 'small' }));
  });
  after(async () => {
    s3.destroy();
    await proxy.stop();
    await server.stop();
  });

  test('ranges arrive exact, 16 at a time on at most 4 connections, which are reused', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'hg');
    await proxy.resetStats();
    const ranges = Array.from({ length: 16 }, (_, i) => ({ start: i * 777_777, end: i * 777_777 + 300_001 + i }));
    const sinks = ranges.map(() => new Collect());
    await Promise.all(ranges.map((r, i) => client.getObjectInto('big.bin', r, sinks[i]!)));
    ranges.forEach((r, i) => assert.ok(sinks[i]!.bytes.equals(body.subarray(r.start, r.end)), `range ${i}`));
    const whole = new Collect();
    await client.getObjectInto('big.bin', { start: 0, end: body.length }, whole);
    assert.equal(md5(whole.bytes), md5(body));
    const s = await proxy.stats();
    assert.equal(s.requests.GetObject, 17, 'one request per GET: none went to the SDK');
    assert.ok(s.connections <= 4, `connections: ${s.connections}`);
  });

  test('a body cut off half way: the bytes before the break are kept and the error is a network one, which the read-ahead retries', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'hg');
    await proxy.setRules([{ id: 'cut', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'reset-response', afterBytes: MiB }, times: 1 }]);
    const sink = new Collect();
    await assert.rejects(client.getObjectInto('big.bin', { start: 0, end: 4 * MiB }, sink), (err: unknown) =>
      (err as NodeJS.ErrnoException).code === 'ECONNRESET');
    assert.ok(sink.bytes.length >= 64 * 1024 && sink.bytes.length <= MiB, `kept ${sink.bytes.length}`);
    assert.ok(sink.bytes.equals(body.subarray(0, sink.bytes.length)));
    await proxy.clearRules();
  });

  test('an answer that stops half way fails after the inactivity timeout instead of hanging', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint, { requestTimeoutMs: 500 })), 'hg');
    await proxy.setRules([{ id: 'stall', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall-response', afterBytes: 256 * 1024 }, times: 1 }]);
    const t0 = Date.now();
    await assert.rejects(client.getObjectInto('big.bin', { start: 0, end: 2 * MiB }, new Collect()), (err: unknown) =>
      (err as NodeJS.ErrnoException).code === 'ETIMEDOUT');
    assert.ok(Date.now() - t0 < 5_000);
    await proxy.clearRules();
  });

  test('an error answer goes to the SDK, which retries it or reports it typed with its request id', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'hg');
    await proxy.resetStats();
    await proxy.setRules([{ id: '503', match: { op: 'GetObject' }, action: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 }]);
    const sink = new Collect();
    await client.getObjectInto('small.txt', { start: 1, end: 4 }, sink);
    assert.equal(sink.bytes.toString(), 'mal');
    assert.equal((await proxy.stats()).requests.GetObject, 3);
    await proxy.setRules([{ id: 'denied', match: { op: 'GetObject' }, action: { kind: 'error', status: 403, code: 'AccessDenied', requestId: 'REQ-HG' } }]);
    await assert.rejects(client.getObjectInto('small.txt', { start: 0, end: 3 }, new Collect()), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'AccessDenied' && err.requestId === 'REQ-HG');
    await proxy.clearRules();
    await assert.rejects(client.getObjectInto('small.txt', { start: 0, end: 3 }, new Collect(), { ifMatch: '"stale"' }), (err: unknown) =>
      err instanceof S3RequestError && err.kind === 'PreconditionFailed');
  });

  test('an aborted GET rejects at once', async () => {
    const client = new SdkObjectClient(createS3Client(connection(proxy.endpoint)), 'hg');
    await proxy.setRules([{ id: 'slow', match: { op: 'GetObject', key: 'big.bin' }, action: { kind: 'stall-response', afterBytes: 128 * 1024 } }]);
    const ac = new AbortController();
    const got = client.getObjectInto('big.bin', { start: 0, end: 4 * MiB }, { write: () => ac.abort() }, { signal: ac.signal });
    await assert.rejects(got, /aborted/);
    await proxy.clearRules();
  });

  test('through TLS: the same bytes, with the CA given in the options', { skip: process.platform !== 'linux' }, async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hg-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
    const [key, cert] = await Promise.all([readFile(path.join(dir, 'key.pem')), readFile(path.join(dir, 'cert.pem'))]);
    // TLS in front of the S3 server.
    const front = tls.createServer({ key, cert }, (client) => {
      const upstream = net.connect(server.port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => front.close(() => r())));
    const port = (front.address() as net.AddressInfo).port;
    const pool = new HttpGetPool({ maxSockets: 2, connectTimeoutMs: 5_000, socketTimeoutMs: 5_000, idleTimeoutMs: 4_000, tls: { ca: cert } });
    t.after(() => pool.close());
    const direct = new DirectGet(createS3Client(connection(`https://localhost:${port}`)), 'hg', {
      httpAgent: new http.Agent(), httpsAgent: new https.Agent(), pool, connectTimeoutMs: 5_000, socketTimeoutMs: 5_000,
    });
    for (let i = 0; i < 2; i++) {
      const sink = new Collect();
      assert.deepEqual(await direct.getInto('big.bin', { start: 5, end: 5 + 3 * MiB }, sink), { kind: 'delivered' });
      assert.ok(sink.bytes.equals(body.subarray(5, 5 + 3 * MiB)));
    }
    assert.equal(pool.connectionCount, 1, 'the TLS connection was kept and reused');
    const target: HttpTarget = { protocol: 'https:', hostname: 'localhost', port };
    const untrusted = new HttpGetPool({ maxSockets: 1, connectTimeoutMs: 5_000, socketTimeoutMs: 5_000, idleTimeoutMs: 4_000 });
    await assert.rejects(untrusted.get(target, '/hg/big.bin', { host: `localhost:${port}` }, () => new Collect()), (err: unknown) =>
      err instanceof HttpGetError && err.phase === 'before-head');
  });
});

describe('answers the transport must not misread (a raw server)', () => {
  /** Serves each connection's requests with the next canned answers, in order. */
  async function rawServer(t: TestContext, answers: Array<Buffer | string | ((s: net.Socket) => void)>): Promise<{ target: HttpTarget; connections: () => number }> {
    let next = 0;
    let conns = 0;
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      conns++;
      sockets.add(s);
      let pending = '';
      s.on('data', (d) => {
        pending += d.toString('latin1');
        while (pending.includes('\r\n\r\n')) {
          pending = pending.slice(pending.indexOf('\r\n\r\n') + 4);
          const a = answers[next++];
          if (typeof a === 'function') a(s);
          else if (a !== undefined) s.write(a);
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    // Also when an assertion failed half way: nothing may keep the test process alive.
    t.after(() => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }));
    const port = (server.address() as net.AddressInfo).port;
    return { target: { protocol: 'http:', hostname: '127.0.0.1', port }, connections: () => conns };
  }
  function newPool(t: TestContext, opts: Partial<HttpGetPoolOptions> = {}): HttpGetPool {
    const p = new HttpGetPool({ maxSockets: 2, connectTimeoutMs: 2_000, socketTimeoutMs: 2_000, idleTimeoutMs: 2_000, ...opts });
    t.after(() => p.close());
    return p;
  }
  const take = (sink: BodySink) => () => sink;

  test('a head and body split across many small packets, then a second answer on the same connection', async (t) => {
    const answer = 'HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n0123456789';
    const srv = await rawServer(t, [
      (s) => { for (const ch of answer) s.write(ch); },
      'HTTP/1.1 206 Partial Content\r\ncontent-length: 3\r\n\r\nabc',
    ]);
    const p = newPool(t);
    const a = new Collect();
    const out = await p.get(srv.target, '/b/k', { host: 'x' }, take(a));
    assert.equal(out.kind, 'delivered');
    assert.equal(out.head.headers.get('etag'), '"x"');
    assert.equal(a.bytes.toString(), '0123456789');
    const b = new Collect();
    await p.get(srv.target, '/b/k', { host: 'x' }, take(b));
    assert.equal(b.bytes.toString(), 'abc');
    assert.equal(srv.connections(), 1);
  });

  test('refused before the body: chunked encoding, no Content-Length, an informational status, garbage', async (t) => {
    for (const bad of [
      'HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      // Chunked wins over a Content-Length (RFC 9112): not ours to read either.
      'HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'HTTP/1.1 206 Partial Content\r\n\r\nabc',
      'HTTP/1.1 100 Continue\r\n\r\n',
      'SSH-2.0-OpenSSH\r\n\r\n',
    ]) {
      const srv = await rawServer(t, [bad]);
      const p = newPool(t);
      const sink = new Collect();
      await assert.rejects(p.get(srv.target, '/b/k', { host: 'x' }, take(sink)), (err: unknown) =>
        err instanceof HttpGetError && err.phase === 'before-head', JSON.stringify(bad));
      assert.equal(sink.bytes.length, 0);
    }
  });

  test('more bytes than Content-Length, or a close before the end: a body error', async (t) => {
    for (const bad of [
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabcdef',
      (s: net.Socket) => { s.end('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nabc'); },
    ]) {
      const srv = await rawServer(t, [bad]);
      const p = newPool(t);
      await assert.rejects(p.get(srv.target, '/b/k', { host: 'x' }, take(new Collect())), (err: unknown) =>
        err instanceof HttpGetError && err.phase === 'body');
    }
  });

  test('an error answer is declined with its body, and "Connection: close" is honoured', async (t) => {
    const xml = '<Error><Code>NoSuchKey</Code></Error>';
    const srv = await rawServer(t, [
      `HTTP/1.1 404 Not Found\r\nContent-Length: ${xml.length}\r\nConnection: close\r\n\r\n${xml}`,
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok',
    ]);
    const p = newPool(t);
    const out = await p.get(srv.target, '/b/k', { host: 'x' }, () => undefined);
    assert.equal(out.kind, 'declined');
    assert.equal(out.kind === 'declined' ? out.body.toString() : '', xml);
    const sink = new Collect();
    await p.get(srv.target, '/b/k', { host: 'x' }, take(sink));
    assert.equal(sink.bytes.toString(), 'ok');
    assert.equal(srv.connections(), 2, 'a new connection after the server said close');
  });

  test('a long answer that is declined (a whole object for a range) is cut off after 64 KiB, not read to its end', async (t) => {
    const srv = await rawServer(t, [(s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${1024 * MiB}\r\n\r\n`);
      s.write(Buffer.alloc(100 * 1024, 7)); // and then nothing more: reading on would stall
    }]);
    const p = newPool(t, { socketTimeoutMs: 5_000 });
    const t0 = Date.now();
    const out = await p.get(srv.target, '/b/k', { host: 'x' }, () => undefined);
    assert.equal(out.kind, 'declined');
    assert.equal(out.kind === 'declined' ? out.body.length : 0, 64 * 1024);
    assert.ok(Date.now() - t0 < 4_000, 'without waiting for the rest');
    assert.equal(p.connectionCount, 0, 'the connection was dropped');
  });

  test('with maxSockets 1, parallel GETs wait for the one connection; an idle one is closed after the idle timeout', async (t) => {
    const srv = await rawServer(t, Array.from({ length: 5 }, (_, i) => `HTTP/1.1 206 Partial Content\r\nContent-Length: 1\r\n\r\n${i}`));
    const p = newPool(t, { maxSockets: 1, idleTimeoutMs: 200 });
    const sinks = Array.from({ length: 5 }, () => new Collect());
    await Promise.all(sinks.map((s) => p.get(srv.target, '/b/k', { host: 'x' }, take(s))));
    assert.deepEqual(sinks.map((s) => s.bytes.toString()), ['0', '1', '2', '3', '4']);
    assert.equal(srv.connections(), 1);
    assert.equal(p.connectionCount, 1);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(p.connectionCount, 0);
  });

  test('a server that never answers: the inactivity timeout fails the GET before its head', async (t) => {
    const srv = await rawServer(t, [() => { /* silence */ }]);
    const p = newPool(t, { maxSockets: 1, socketTimeoutMs: 300 });
    await assert.rejects(p.get(srv.target, '/b/k', { host: 'x' }, take(new Collect())), (err: unknown) =>
      err instanceof HttpGetError && err.phase === 'before-head' && err.code === 'ETIMEDOUT');
  });
});
