/**
 * The mount's HTTP transport (app/s3/http-transport.ts): requests over one
 * bounded set of kept-alive connections, answers read into one reused
 * buffer. Against a raw server with hand-written answers: every framing
 * S3 and its look-alikes use, and what the transport must refuse rather
 * than misread. (Its use for S3 requests: requests.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { describe, test, type TestContext } from 'node:test';
import { HttpTransport, HttpTransportError, type BodySink, type HttpTarget, type HttpTransportOptions } from '../app/s3/http-transport.js';
import { Collect } from './helpers/s3-client-fixture.js';

const MiB = 1024 * 1024;


describe('the transport against a raw server', () => {
  /** Serves each connection's requests with the next canned answers, in order. */
  async function rawServer(t: TestContext, answers: Array<Buffer | string | ((s: net.Socket) => void)>):
  Promise<{ target: HttpTarget; connections: () => number; received: () => string }> {
    let next = 0;
    let conns = 0;
    let all = '';
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      conns++;
      sockets.add(s);
      let pending = '';
      s.on('data', (d) => {
        all += d.toString('latin1');
        pending += d.toString('latin1');
        // Answers go out once a request's head has come (its body, if any, is not waited for).
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
    return { target: { protocol: 'http:', hostname: '127.0.0.1', port }, connections: () => conns, received: () => all };
  }
  function newPool(t: TestContext, opts: Partial<HttpTransportOptions> = {}): HttpTransport {
    const p = new HttpTransport({ maxSockets: 2, connectTimeoutMs: 2_000, socketTimeoutMs: 2_000, idleTimeoutMs: 2_000, ...opts });
    t.after(() => p.close());
    return p;
  }
  const take = (sink: BodySink) => () => sink;
  const GET = { method: 'GET', path: '/b/k', headers: { host: 'x' } };

  test('a head and body split across many small packets, then a second answer on the same connection', async (t) => {
    const answer = 'HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n0123456789';
    const srv = await rawServer(t, [
      (s) => { for (const ch of answer) s.write(ch); },
      'HTTP/1.1 206 Partial Content\r\ncontent-length: 3\r\n\r\nabc',
    ]);
    const p = newPool(t);
    const a = new Collect();
    const out = await p.request(srv.target, GET, take(a));
    assert.equal(out.kind, 'delivered');
    assert.equal(out.head.headers.get('etag'), '"x"');
    assert.equal(a.bytes.toString(), '0123456789');
    const b = new Collect();
    await p.request(srv.target, GET, take(b));
    assert.equal(b.bytes.toString(), 'abc');
    assert.equal(srv.connections(), 1);
  });

  test('refused before the body: an unknown transfer coding, a bad Content-Length, a protocol switch, garbage', async (t) => {
    for (const bad of [
      'HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: gzip\r\n\r\nabc',
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 3x\r\n\r\nabc',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
      'SSH-2.0-OpenSSH\r\n\r\n',
    ]) {
      const srv = await rawServer(t, [bad]);
      const p = newPool(t);
      const sink = new Collect();
      await assert.rejects(p.request(srv.target, GET, take(sink)), (err: unknown) =>
        err instanceof HttpTransportError && err.phase === 'before-head', JSON.stringify(bad));
      assert.equal(sink.bytes.length, 0);
      assert.equal(p.connectionCount, 0);
    }
  });

  test('chunked answers, split anywhere, with extensions and trailers; the connection is kept for the next answer', async (t) => {
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n'
      + '3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n';
    const srv = await rawServer(t, [
      (s) => { for (const ch of chunked) s.write(ch); },
      chunked,
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok',
    ]);
    const p = newPool(t, { maxSockets: 1 });
    for (let i = 0; i < 2; i++) {
      const sink = new Collect();
      assert.equal((await p.request(srv.target, GET, take(sink))).kind, 'delivered');
      assert.equal(sink.bytes.toString(), 'abc0123456789abcdef', 'chunked wins over a Content-Length (RFC 9112)');
    }
    const after = new Collect();
    await p.request(srv.target, GET, take(after));
    assert.equal(after.bytes.toString(), 'ok');
    assert.equal(srv.connections(), 1);
  });

  test('an answer without Content-Length ends with its connection; "100 Continue" before the answer is skipped', async (t) => {
    const srv = await rawServer(t, [
      (s) => { s.end('HTTP/1.1 200 OK\r\n\r\nuntil the end'); },
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext',
    ]);
    const p = newPool(t, { maxSockets: 1 });
    const a = new Collect();
    await p.request(srv.target, GET, take(a));
    assert.equal(a.bytes.toString(), 'until the end');
    const b = new Collect();
    await p.request(srv.target, GET, take(b));
    assert.equal(b.bytes.toString(), 'next');
    assert.equal(srv.connections(), 2);
  });

  test('HEAD, 204 and 304 answers have no body whatever their headers say', async (t) => {
    const srv = await rawServer(t, [
      'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n',
      'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nend',
    ]);
    const p = newPool(t, { maxSockets: 1 });
    const head = await p.request(srv.target, { ...GET, method: 'HEAD' }, take(new Collect()));
    assert.equal(head.head.headers.get('content-length'), '1234');
    await p.request(srv.target, { ...GET, method: 'DELETE' }, take(new Collect()));
    const last = new Collect();
    await p.request(srv.target, GET, take(last));
    assert.equal(last.bytes.toString(), 'end');
    assert.equal(srv.connections(), 1);
  });

  test('request bodies: bytes with their length, a stream without one sent chunked; "Expect: 100-continue" is not waited for', async (t) => {
    const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    const srv = await rawServer(t, [ok, ok]);
    const p = newPool(t, { maxSockets: 1 });
    await p.request(srv.target, { method: 'PUT', path: '/b/k', headers: { host: 'x', Expect: '100-continue' }, body: Buffer.from('hello') }, take(new Collect()));
    await p.request(srv.target, { method: 'PUT', path: '/b/s', headers: { host: 'x' }, body: Readable.from([Buffer.from('ab'), Buffer.from('cde')]) }, take(new Collect()));
    const sent = srv.received();
    assert.match(sent, /^PUT \/b\/k HTTP\/1\.1\r\n/);
    assert.doesNotMatch(sent, /expect/i);
    assert.match(sent, /content-length: 5\r\n\r\nhello/);
    assert.match(sent, /transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n$/);
  });

  test('more bytes than Content-Length, or a close before the end: a body error', async (t) => {
    for (const bad of [
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabcdef',
      (s: net.Socket) => { s.end('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nabc'); },
    ]) {
      const srv = await rawServer(t, [bad]);
      const p = newPool(t);
      await assert.rejects(p.request(srv.target, GET, take(new Collect())), (err: unknown) =>
        err instanceof HttpTransportError && err.phase === 'body');
    }
  });

  test('an error answer is declined with its body, and "Connection: close" is honoured', async (t) => {
    const xml = '<Error><Code>NoSuchKey</Code></Error>';
    const srv = await rawServer(t, [
      `HTTP/1.1 404 Not Found\r\nContent-Length: ${xml.length}\r\nConnection: close\r\n\r\n${xml}`,
      'HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok',
    ]);
    const p = newPool(t);
    const out = await p.request(srv.target, GET, () => undefined);
    assert.equal(out.kind, 'declined');
    assert.equal(out.kind === 'declined' ? out.body.toString() : '', xml);
    const sink = new Collect();
    await p.request(srv.target, GET, take(sink));
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
    const out = await p.request(srv.target, GET, () => undefined);
    assert.equal(out.kind, 'declined');
    assert.equal(out.kind === 'declined' ? out.body.length : 0, 64 * 1024);
    assert.ok(Date.now() - t0 < 4_000, 'without waiting for the rest');
    assert.equal(p.connectionCount, 0, 'the connection was dropped');
  });

  test('with maxSockets 1, parallel GETs wait for the one connection; an idle one is closed after the idle timeout', async (t) => {
    const srv = await rawServer(t, Array.from({ length: 5 }, (_, i) => `HTTP/1.1 206 Partial Content\r\nContent-Length: 1\r\n\r\n${i}`));
    const p = newPool(t, { maxSockets: 1, idleTimeoutMs: 200 });
    const sinks = Array.from({ length: 5 }, () => new Collect());
    await Promise.all(sinks.map((s) => p.request(srv.target, GET, take(s))));
    assert.deepEqual(sinks.map((s) => s.bytes.toString()), ['0', '1', '2', '3', '4']);
    assert.equal(srv.connections(), 1);
    assert.equal(p.connectionCount, 1);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(p.connectionCount, 0);
  });

  test('maxSockets bounds the connections to every target together: an idle one to another target is closed to make room', async (t) => {
    const one = await rawServer(t, ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na']);
    const two = await rawServer(t, ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb']);
    const p = newPool(t, { maxSockets: 1 });
    await p.request(one.target, GET, take(new Collect()));
    assert.equal(p.connectionCount, 1);
    await p.request(two.target, GET, take(new Collect()));
    assert.equal(p.connectionCount, 1);
    assert.equal(one.connections() + two.connections(), 2);
  });

  test('waiting requests marked first go before the others; an aborted waiter leaves the queue', async (t) => {
    const answers = Array.from({ length: 4 }, (_, i) => `HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${i}`);
    const srv = await rawServer(t, answers);
    const p = newPool(t, { maxSockets: 1 });
    const order: string[] = [];
    const run = (name: string, first: boolean, signal?: AbortSignal): Promise<void> => {
      const sink = new Collect();
      return p.request(srv.target, GET, take(sink), { first, signal }).then(() => { order.push(`${name}:${sink.bytes.toString()}`); });
    };
    const ac = new AbortController();
    const all = [run('a', false), run('read-ahead', false), run('aborted', true, ac.signal).catch(() => { order.push('aborted'); }), run('lookup', true)];
    ac.abort();
    await Promise.all(all);
    assert.deepEqual(order, ['aborted', 'a:0', 'lookup:1', 'read-ahead:2']);
    assert.equal(p.requestsInFlight, 0);
  });

  test('through TLS, with the CA given in the options; an untrusted certificate fails before the head', { skip: process.platform !== 'linux' }, async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'transport-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
    const [key, cert] = await Promise.all([readFile(path.join(dir, 'key.pem')), readFile(path.join(dir, 'cert.pem'))]);
    const body = Buffer.alloc(3 * MiB, 9);
    const front = tls.createServer({ key, cert }, (s) => {
      s.on('error', () => {});
      let pending = '';
      s.on('data', (d) => {
        pending += d.toString('latin1');
        while (pending.includes('\r\n\r\n')) {
          pending = pending.slice(pending.indexOf('\r\n\r\n') + 4);
          s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
          s.write(body);
        }
      });
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => front.close(() => r())));
    const port = (front.address() as net.AddressInfo).port;
    const target: HttpTarget = { protocol: 'https:', hostname: 'localhost', port };
    const p = newPool(t, { tls: { ca: cert } });
    for (let i = 0; i < 2; i++) {
      const sink = new Collect();
      await p.request(target, GET, take(sink));
      assert.ok(sink.bytes.equals(body));
    }
    assert.equal(p.connectionCount, 1, 'the TLS connection was kept and reused');
    const untrusted = newPool(t);
    await assert.rejects(untrusted.request(target, GET, take(new Collect())), (err: unknown) =>
      err instanceof HttpTransportError && err.phase === 'before-head');
  });

  test('a server that never answers: the inactivity timeout fails the GET before its head', async (t) => {
    const srv = await rawServer(t, [() => { /* silence */ }]);
    const p = newPool(t, { maxSockets: 1, socketTimeoutMs: 300 });
    await assert.rejects(p.request(srv.target, GET, take(new Collect())), (err: unknown) =>
      err instanceof HttpTransportError && err.phase === 'before-head' && err.code === 'ETIMEDOUT');
  });
});
