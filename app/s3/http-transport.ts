/**
 * The mount's one HTTP/1.1 transport: every request to S3 (the SDK's,
 * through smithy-handler.ts, and our signed GETs and small PUTs, through
 * requests.ts) goes over one bounded set of kept-alive connections, so
 * `--max-threads N` bounds the sockets the mount opens, whatever mix of
 * reads, lookups, listings and uploads is running.
 *
 * Answers are read into one reused buffer (the `onread` option of net and
 * tls sockets) and handed to the caller's sink, which copies what it
 * keeps. Why: Node's HTTP client receives a body as a fresh 64 KiB Buffer
 * per socket read. Reading a GiB allocated 16,000 of them; the external
 * memory they count for drove the worker's garbage collector to ~100 full
 * collections per GiB, a third of its CPU on a loopback read, and the
 * freshly mapped pages cost as much again in page faults. Here nothing is
 * allocated per read.
 *
 * Answers may be framed by Content-Length, chunked, or end with the
 * connection; a request body may be bytes or a stream (sent chunked when
 * its length is not given). Waiting requests are served in order, those
 * marked `first` (metadata, uploads) before read-ahead GETs.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';

export interface HttpTarget {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number;
}

export interface HttpRequestSpec {
  method: string;
  /** Path and query, already encoded. */
  path: string;
  /** Everything the request needs (host, signature); names in any case. */
  headers: Record<string, string>;
  body?: Uint8Array | Readable | undefined;
}

export interface ResponseHead {
  status: number;
  /** Lower-cased names; a repeated header keeps its values joined by ", ". */
  headers: Map<string, string>;
}

/** Where an answer's body goes. The bytes are valid only during the call: copy them. */
export interface BodySink {
  write(bytes: Buffer): void;
}

export type HttpOutcome =
  /** The body went to the sink whole. */
  | { kind: 'delivered'; head: ResponseHead }
  /** The caller declined the body (onHead returned undefined); up to 64 KiB of it. */
  | { kind: 'declined'; head: ResponseHead; body: Buffer };

/**
 * A failure and where it happened: before the answer's head (nothing was
 * written to a sink) or during the body (the sink holds the bytes before
 * the break).
 */
export class HttpTransportError extends Error {
  constructor(message: string, readonly phase: 'before-head' | 'body', readonly code: string) {
    super(message);
    this.name = 'HttpTransportError';
  }
}

export interface HttpTransportOptions {
  /** Connections open at once, idle or busy, to every target together. */
  maxSockets: number;
  connectTimeoutMs: number;
  /** Inactivity of a request's connection, before and during its answer. */
  socketTimeoutMs: number;
  /** An unused connection is closed after this long (servers drop idle ones too). */
  idleTimeoutMs: number;
  /** TLS settings for https targets (CA, client certificates); Node's defaults otherwise. */
  tls?: tls.ConnectionOptions;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Served before waiting requests without it (metadata and uploads before read-ahead). */
  first?: boolean;
  /** Called when the request has a connection and is being sent (time spent waiting for one is not the server's). */
  onSent?: () => void;
}

const MAX_HEAD_BYTES = 64 * 1024;
const DECLINED_BODY_BYTES = 64 * 1024;
/** What one socket read may return; shared by every connection (reads are handled one at a time). */
const READ_BUFFER_BYTES = 256 * 1024;
const MAX_CHUNK_LINE_BYTES = 4096;

type Framing =
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; state: 'size' | 'data' | 'data-end' | 'trailer'; remaining: number; line: string }
  | { kind: 'close' };

/** The request a connection is serving: its parser state. */
interface Exchange {
  method: string;
  onHead: (head: ResponseHead) => BodySink | undefined;
  resolve: (o: HttpOutcome) => void;
  reject: (e: HttpTransportError) => void;
  headParts: Buffer[];
  head: ResponseHead | undefined;
  framing: Framing | undefined;
  sink: BodySink | undefined;
  declined: Buffer[];
  declinedBytes: number;
  received: number;
  keepAlive: boolean;
  /** The request's body is still being written: the connection cannot take another request yet. */
  sending: boolean;
  done: boolean;
}

interface Connection {
  socket: net.Socket;
  key: string;
  exchange: Exchange | undefined;
  /** Counted in `open` until dropped. */
  counted: boolean;
}

interface Waiter {
  key: string;
  start: (conn: Connection) => void;
  fail: (err: HttpTransportError) => void;
}

export class HttpTransport {
  private readonly idle = new Map<string, Connection[]>();
  private readonly waitingFirst: Waiter[] = [];
  private readonly waiting: Waiter[] = [];
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private readonly targets = new Map<string, HttpTarget>();
  private open = 0;
  private busy = 0;
  private closed = false;

  constructor(readonly options: HttpTransportOptions) {
    if (!Number.isInteger(options.maxSockets) || options.maxSockets < 1) throw new RangeError('maxSockets must be a positive integer');
  }

  /** Connections open now, idle and busy. */
  get connectionCount(): number {
    return this.open;
  }

  /** Requests holding a connection now. */
  get requestsInFlight(): number {
    return this.busy;
  }

  /**
   * Sends a request. `onHead` sees the answer's head and returns the sink
   * for its body, or undefined to decline it. Resolves once the body has
   * ended; rejects with {@link HttpTransportError}.
   */
  request(target: HttpTarget, spec: HttpRequestSpec, onHead: (head: ResponseHead) => BodySink | undefined,
    opts: RequestOptions = {}): Promise<HttpOutcome> {
    if (this.closed) return Promise.reject(new HttpTransportError('transport closed', 'before-head', 'ECLOSED'));
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new HttpTransportError('request aborted', 'before-head', 'ABORT_ERR'));
    const key = `${target.protocol}//${target.hostname}:${target.port}`;
    this.targets.set(key, target);
    return new Promise<HttpOutcome>((resolve, reject) => {
      let waiter: Waiter | undefined;
      const onAbortWaiting = (): void => {
        if (!waiter) return;
        this.removeWaiter(waiter);
        reject(new HttpTransportError('request aborted', 'before-head', 'ABORT_ERR'));
      };
      const start = (conn: Connection): void => {
        signal?.removeEventListener('abort', onAbortWaiting);
        waiter = undefined;
        opts.onSent?.();
        this.send(conn, spec, onHead, signal, resolve, reject);
      };
      const conn = this.acquire(key);
      if (conn) {
        start(conn);
        return;
      }
      waiter = { key, start, fail: reject };
      (opts.first ? this.waitingFirst : this.waiting).push(waiter);
      signal?.addEventListener('abort', onAbortWaiting, { once: true });
    });
  }

  /** Closes every connection; requests in flight fail, waiting ones too. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) this.drop(c);
    this.idle.clear();
    const waiters = [...this.waitingFirst, ...this.waiting];
    this.waitingFirst.length = 0;
    this.waiting.length = 0;
    for (const w of waiters) w.fail(new HttpTransportError('transport closed', 'before-head', 'ECLOSED'));
  }

  private removeWaiter(w: Waiter): void {
    for (const queue of [this.waitingFirst, this.waiting]) {
      const i = queue.indexOf(w);
      if (i >= 0) queue.splice(i, 1);
    }
  }

  /** A connection for the target now, or undefined when every one allowed is busy. */
  private acquire(key: string): Connection | undefined {
    const reused = this.takeIdle(key);
    if (reused) {
      this.busy++;
      return reused;
    }
    if (this.open >= this.options.maxSockets) {
      // An idle connection to another target makes room.
      const other = [...this.idle.values()].find((l) => l.length > 0)?.shift();
      if (!other) return undefined;
      this.drop(other);
    }
    this.busy++;
    return this.connect(key);
  }

  /** Hands freed capacity to the requests waiting for it, in order. */
  private pump(): void {
    for (const queue of [this.waitingFirst, this.waiting]) {
      while (queue.length > 0) {
        const conn = this.acquire(queue[0]!.key);
        if (!conn) return;
        queue.shift()!.start(conn);
      }
    }
  }

  private takeIdle(key: string): Connection | undefined {
    const list = this.idle.get(key);
    for (let conn = list?.pop(); conn; conn = list?.pop()) {
      if (!conn.socket.destroyed) {
        conn.socket.setTimeout(0);
        conn.socket.ref();
        return conn;
      }
    }
    return undefined;
  }

  /** Forgets a connection (closing it): it no longer counts against the limit. */
  private drop(conn: Connection, error?: Error): void {
    if (conn.counted) {
      conn.counted = false;
      this.open--;
    }
    const list = this.idle.get(conn.key);
    const i = list ? list.indexOf(conn) : -1;
    if (list && i >= 0) list.splice(i, 1);
    conn.socket.destroy(error);
  }

  private connect(key: string): Connection {
    const target = this.targets.get(key)!;
    const onread = { buffer: this.readBuffer, callback: (n: number, buf: Uint8Array): boolean => {
      this.onBytes(conn, buf as Buffer, n);
      return true;
    } };
    // tls.connect takes onread as net.connect does (Node's types omit it).
    const tlsOptions: tls.ConnectionOptions & { onread: typeof onread } = {
      ...this.options.tls, host: target.hostname, port: target.port, ALPNProtocols: ['http/1.1'], onread,
      ...(net.isIP(target.hostname) ? {} : { servername: target.hostname }),
    };
    const socket = target.protocol === 'https:' ? tls.connect(tlsOptions) : net.connect({ host: target.hostname, port: target.port, onread });
    socket.setNoDelay(true);
    const conn: Connection = { socket, key, exchange: undefined, counted: true };
    this.open++;
    const connectTimer = setTimeout(() => socket.destroy(new HttpTransportError('connect timeout', 'before-head', 'ETIMEDOUT')), this.options.connectTimeoutMs);
    socket.once(target.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
    socket.on('timeout', () => {
      if (conn.exchange) socket.destroy(new HttpTransportError('no data in time', conn.exchange.head ? 'body' : 'before-head', 'ETIMEDOUT'));
      else this.drop(conn);
    });
    socket.on('error', () => { /* reported by 'close' */ });
    socket.on('end', () => {
      const ex = conn.exchange;
      // An answer framed by the connection's end is complete now.
      if (ex?.framing?.kind === 'close') this.complete(conn, ex);
      else socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.drop(conn);
      const ex = conn.exchange;
      conn.exchange = undefined;
      if (ex && !ex.done) {
        ex.done = true;
        this.busy--;
        const cause = (socket as net.Socket & { errored?: Error | null }).errored;
        const code = cause instanceof HttpTransportError ? cause.code : (cause as NodeJS.ErrnoException | null | undefined)?.code ?? 'ECONNRESET';
        const message = cause?.message ?? 'connection closed';
        ex.reject(new HttpTransportError(ex.head ? `${message} after ${ex.received} body bytes` : message, ex.head ? 'body' : 'before-head', code));
      }
      this.pump();
    });
    return conn;
  }

  private send(conn: Connection, spec: HttpRequestSpec, onHead: Exchange['onHead'], signal: AbortSignal | undefined,
    resolve: (o: HttpOutcome) => void, reject: (e: HttpTransportError) => void): void {
    let onAbort: (() => void) | undefined;
    const finish = (): void => {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    };
    const ex: Exchange = {
      method: spec.method.toUpperCase(),
      onHead,
      resolve: (o) => { finish(); resolve(o); },
      reject: (e) => { finish(); reject(e); },
      headParts: [], head: undefined, framing: undefined, sink: undefined, declined: [], declinedBytes: 0,
      received: 0, keepAlive: true, sending: spec.body !== undefined, done: false,
    };
    conn.exchange = ex;
    if (signal) {
      onAbort = () => conn.socket.destroy(new HttpTransportError('request aborted', ex.head ? 'body' : 'before-head', 'ABORT_ERR'));
      signal.addEventListener('abort', onAbort, { once: true });
    }
    const headers = { ...spec.headers };
    // The body is sent at once: waiting for "100 Continue" costs a round trip.
    for (const name of Object.keys(headers)) if (name.toLowerCase() === 'expect') delete headers[name];
    const body = spec.body;
    const streamed = body !== undefined && !(body instanceof Uint8Array);
    const hasLength = Object.keys(headers).some((n) => n.toLowerCase() === 'content-length');
    const chunked = streamed && !hasLength;
    if (chunked) headers['transfer-encoding'] = 'chunked';
    if (body instanceof Uint8Array && !hasLength) headers['content-length'] = String(body.byteLength);
    let text = `${ex.method} ${spec.path} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
    conn.socket.setTimeout(this.options.socketTimeoutMs);
    if (body instanceof Uint8Array && body.byteLength > 0) {
      // Head and body in one system call (a small upload is one segment less, one write less).
      conn.socket.cork();
      conn.socket.write(`${text}\r\n`, 'latin1');
      conn.socket.write(body);
      conn.socket.uncork();
      ex.sending = false;
      return;
    }
    conn.socket.write(`${text}\r\n`, 'latin1');
    if (body === undefined) return;
    if (body instanceof Uint8Array) {
      ex.sending = false;
      return;
    }
    void this.pipeBody(conn, ex, body, chunked);
  }

  /** Writes a streamed request body, waiting for the socket to drain. */
  private async pipeBody(conn: Connection, ex: Exchange, body: Readable, chunked: boolean): Promise<void> {
    const socket = conn.socket;
    try {
      for await (const chunk of body) {
        if (socket.destroyed || conn.exchange !== ex) {
          body.destroy();
          return;
        }
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer;
        if (bytes.length === 0) continue;
        const ok = chunked
          ? socket.write(`${bytes.length.toString(16)}\r\n`, 'latin1') && socket.write(bytes) && socket.write('\r\n', 'latin1')
          : socket.write(bytes);
        if (!ok) await new Promise<void>((r) => { socket.once('drain', r); socket.once('close', r); });
      }
      if (chunked && !socket.destroyed) socket.write('0\r\n\r\n', 'latin1');
      ex.sending = false;
    } catch (err) {
      socket.destroy(new HttpTransportError(`request body: ${(err as Error).message}`, 'before-head', 'EBODY'));
    }
  }

  private onBytes(conn: Connection, buf: Buffer, n: number): void {
    const ex = conn.exchange;
    if (!ex) {
      // Bytes nobody asked for: the connection is out of step.
      this.drop(conn);
      return;
    }
    let data = buf.subarray(0, n);
    while (!ex.head) {
      const rest = this.readHead(conn, ex, data);
      if (rest === undefined) return;
      data = rest;
    }
    this.readBody(conn, ex, data);
  }

  /**
   * Collects the answer's head; returns the bytes after it, or undefined
   * while it is incomplete (or failed). An informational answer ("100
   * Continue") is skipped: ex.head stays unset and the caller reads on.
   */
  private readHead(conn: Connection, ex: Exchange, data: Buffer): Buffer | undefined {
    ex.headParts.push(Buffer.from(data));
    const all = ex.headParts.length === 1 ? ex.headParts[0]! : Buffer.concat(ex.headParts);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length > MAX_HEAD_BYTES) conn.socket.destroy(new HttpTransportError('answer head too large', 'before-head', 'EPROTO'));
      return undefined;
    }
    ex.headParts = [];
    const lines = all.subarray(0, end).toString('latin1').split('\r\n');
    const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? '');
    if (!statusLine) {
      conn.socket.destroy(new HttpTransportError('not an HTTP/1.1 answer', 'before-head', 'EPROTO'));
      return undefined;
    }
    const status = Number(statusLine[2]);
    const rest = all.subarray(end + 4);
    if (status >= 100 && status < 200) {
      if (status === 101) {
        conn.socket.destroy(new HttpTransportError('the server switched protocols', 'before-head', 'EPROTO'));
        return undefined;
      }
      return rest;
    }
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const before = headers.get(name);
      headers.set(name, before === undefined ? value : `${before}, ${value}`);
    }
    const framing = this.framingOf(ex, status, headers);
    if (typeof framing === 'string') {
      conn.socket.destroy(new HttpTransportError(`${framing} (status ${status})`, 'before-head', 'EPROTO'));
      return undefined;
    }
    const head: ResponseHead = { status, headers };
    ex.head = head;
    ex.framing = framing;
    ex.keepAlive = framing.kind !== 'close' && statusLine[1] === '1' && !/(?:^|,)\s*close\s*(?:,|$)/i.test(headers.get('connection') ?? '');
    try {
      ex.sink = ex.onHead(head);
    } catch (err) {
      conn.socket.destroy(new HttpTransportError(`answer refused: ${(err as Error).message}`, 'before-head', 'EHEAD'));
      return undefined;
    }
    if (conn.exchange !== ex) return undefined;
    return rest;
  }

  /** How the body ends (RFC 9112, 6.3), or why the answer cannot be read. */
  private framingOf(ex: Exchange, status: number, headers: Map<string, string>): Framing | string {
    if (ex.method === 'HEAD' || status === 204 || status === 304) return { kind: 'length', remaining: 0 };
    const te = headers.get('transfer-encoding');
    if (te !== undefined) {
      if (!/(?:^|,)\s*chunked\s*$/i.test(te)) return `unsupported transfer encoding ${te}`;
      return { kind: 'chunked', state: 'size', remaining: 0, line: '' };
    }
    const length = headers.get('content-length');
    if (length === undefined) return { kind: 'close' };
    if (!/^\d+$/.test(length)) return 'malformed Content-Length';
    return { kind: 'length', remaining: Number(length) };
  }

  private readBody(conn: Connection, ex: Exchange, data: Buffer): void {
    const framing = ex.framing!;
    if (framing.kind === 'length') {
      if (data.length > framing.remaining) {
        conn.socket.destroy(new HttpTransportError('more body bytes than Content-Length', 'body', 'EPROTO'));
        return;
      }
      framing.remaining -= data.length;
      if (data.length > 0 && !this.deliver(conn, ex, data)) return;
      if (framing.remaining === 0) this.complete(conn, ex);
      return;
    }
    if (framing.kind === 'close') {
      if (data.length > 0) this.deliver(conn, ex, data);
      return;
    }
    let at = 0;
    while (at < data.length) {
      switch (framing.state) {
        case 'size':
        case 'trailer': {
          const nl = data.indexOf(10, at);
          const piece = data.subarray(at, nl < 0 ? data.length : nl).toString('latin1');
          framing.line += piece;
          if (framing.line.length > MAX_CHUNK_LINE_BYTES) {
            conn.socket.destroy(new HttpTransportError('chunk line too long', 'body', 'EPROTO'));
            return;
          }
          if (nl < 0) return;
          at = nl + 1;
          const line = framing.line.replace(/\r$/, '');
          framing.line = '';
          if (framing.state === 'trailer') {
            if (line === '') {
              if (at !== data.length) {
                conn.socket.destroy(new HttpTransportError('bytes after the last chunk', 'body', 'EPROTO'));
                return;
              }
              this.complete(conn, ex);
              return;
            }
            continue;
          }
          const size = /^([0-9a-fA-F]+)\s*(?:;.*)?$/.exec(line);
          if (!size) {
            conn.socket.destroy(new HttpTransportError('malformed chunk size', 'body', 'EPROTO'));
            return;
          }
          framing.remaining = parseInt(size[1]!, 16);
          framing.state = framing.remaining === 0 ? 'trailer' : 'data';
          break;
        }
        case 'data': {
          const n = Math.min(framing.remaining, data.length - at);
          const piece = data.subarray(at, at + n);
          at += n;
          framing.remaining -= n;
          if (!this.deliver(conn, ex, piece)) return;
          if (framing.remaining === 0) framing.state = 'data-end';
          break;
        }
        case 'data-end': {
          // The CRLF after a chunk's data; a lone LF is tolerated.
          const c = data[at]!;
          at++;
          if (c === 10) framing.state = 'size';
          else if (c !== 13) {
            conn.socket.destroy(new HttpTransportError('malformed chunk end', 'body', 'EPROTO'));
            return;
          }
          break;
        }
      }
    }
  }

  /** Hands body bytes on; false once the exchange is over (declined and cut off, or aborted by the sink). */
  private deliver(conn: Connection, ex: Exchange, data: Buffer): boolean {
    ex.received += data.length;
    if (ex.sink) {
      try {
        ex.sink.write(data);
      } catch (err) {
        conn.socket.destroy(new HttpTransportError(`body refused: ${(err as Error).message}`, 'body', 'ESINK'));
        return false;
      }
      // The sink may have aborted the request (destroying the socket).
      return conn.exchange === ex;
    }
    const keep = data.subarray(0, DECLINED_BODY_BYTES - ex.declinedBytes);
    if (keep.length > 0) ex.declined.push(Buffer.from(keep));
    ex.declinedBytes += keep.length;
    if (ex.declinedBytes >= DECLINED_BODY_BYTES) {
      // A long answer nobody wants (a whole object sent for a range):
      // dropping the connection costs less than reading it to its end.
      ex.keepAlive = false;
      this.complete(conn, ex);
      return false;
    }
    return true;
  }

  private complete(conn: Connection, ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    conn.exchange = undefined;
    this.busy--;
    if (ex.keepAlive && !ex.sending && !this.closed && !conn.socket.destroyed) {
      conn.socket.setTimeout(this.options.idleTimeoutMs);
      // As Node's agent does: an idle connection does not keep the process alive.
      conn.socket.unref();
      const list = this.idle.get(conn.key) ?? [];
      list.push(conn);
      this.idle.set(conn.key, list);
    } else {
      // Also when the answer came before the body was all sent: the connection is out of step.
      this.drop(conn);
    }
    const head = ex.head!;
    if (ex.sink) ex.resolve({ kind: 'delivered', head });
    else ex.resolve({ kind: 'declined', head, body: Buffer.concat(ex.declined) });
    this.pump();
  }
}
