/**
 * HTTP/1.1 GETs on kept-alive connections whose bytes are read into one
 * reused buffer (the `onread` option of net and tls sockets) and handed
 * to the caller's sink, which copies them where they are kept.
 *
 * Why: Node's HTTP client receives a body as a fresh 64 KiB Buffer per
 * socket read. Reading a GiB allocated 16,000 of them; the external memory
 * they count for drove the worker's garbage collector to ~100 full
 * collections per GiB, a third of its CPU on a loopback read, and the
 * freshly mapped pages cost as much again in page faults. Here nothing is
 * allocated per read.
 *
 * Only what S3's ranged GETs need: a request without a body, an answer
 * with Content-Length. Anything else (chunked answers, informational
 * status lines, malformed heads) is reported, and the connection dropped.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface HttpTarget {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number;
}

export interface ResponseHead {
  status: number;
  /** Lower-cased names; a repeated header keeps its last value. */
  headers: Map<string, string>;
}

/** Where a body goes. The bytes are valid only during the call: copy them. */
export interface BodySink {
  write(bytes: Buffer): void;
}

export type GetOutcome =
  /** The body went to the sink whole. */
  | { kind: 'delivered'; head: ResponseHead }
  /** The caller declined the body (onHead returned undefined); up to 64 KiB of it. */
  | { kind: 'declined'; head: ResponseHead; body: Buffer };

/**
 * A failure and where it happened: before the answer's head (nothing was
 * written to a sink; the request may be sent again elsewhere) or during
 * the body (the sink holds the bytes before the break).
 */
export class HttpGetError extends Error {
  constructor(message: string, readonly phase: 'before-head' | 'body', readonly code: string) {
    super(message);
    this.name = 'HttpGetError';
  }
}

export interface HttpGetPoolOptions {
  /** Connections per target; more requests wait for one. */
  maxSockets: number;
  connectTimeoutMs: number;
  /** Inactivity of a request's connection, before and during its answer. */
  socketTimeoutMs: number;
  /** An unused connection is closed after this long (servers drop idle ones too). */
  idleTimeoutMs: number;
  /** TLS settings for https targets (CA, client certificates); Node's defaults otherwise. */
  tls?: tls.ConnectionOptions;
}

const MAX_HEAD_BYTES = 64 * 1024;
const DECLINED_BODY_BYTES = 64 * 1024;
/** What one socket read may return; shared by every connection (reads are handled one at a time). */
const READ_BUFFER_BYTES = 256 * 1024;

/** The request a connection is serving: its parser state. */
interface Exchange {
  onHead: (head: ResponseHead) => BodySink | undefined;
  resolve: (o: GetOutcome) => void;
  reject: (e: HttpGetError) => void;
  headParts: Buffer[];
  head: ResponseHead | undefined;
  sink: BodySink | undefined;
  declined: Buffer[];
  declinedBytes: number;
  bodyLength: number;
  received: number;
  keepAlive: boolean;
}

interface Connection {
  socket: net.Socket;
  key: string;
  exchange: Exchange | undefined;
}

interface Waiter {
  run: () => void;
}

export class HttpGetPool {
  private readonly idle = new Map<string, Connection[]>();
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, Waiter[]>();
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private closed = false;

  constructor(private readonly options: HttpGetPoolOptions) {}

  /** Connections open now, idle and busy (for tests). */
  get connectionCount(): number {
    let n = 0;
    for (const v of this.active.values()) n += v;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /**
   * Sends a GET. `headers` must hold everything the request needs (host,
   * signature). `onHead` sees the answer's head and returns the sink for
   * its body, or undefined to decline it.
   */
  get(target: HttpTarget, path: string, headers: Record<string, string>,
    onHead: (head: ResponseHead) => BodySink | undefined, signal?: AbortSignal): Promise<GetOutcome> {
    if (this.closed) return Promise.reject(new HttpGetError('connection pool closed', 'before-head', 'ECLOSED'));
    const key = `${target.protocol}//${target.hostname}:${target.port}`;
    return new Promise<GetOutcome>((resolve, reject) => {
      const start = (): void => {
        if (signal?.aborted) {
          this.release(key);
          reject(new HttpGetError('request aborted', 'before-head', 'ABORT_ERR'));
          return;
        }
        const conn = this.takeIdle(key) ?? this.connect(target, key);
        this.send(conn, path, headers, onHead, signal, resolve, reject);
      };
      const busy = this.active.get(key) ?? 0;
      if (busy < this.options.maxSockets) {
        this.active.set(key, busy + 1);
        start();
      } else {
        const queue = this.waiting.get(key) ?? [];
        queue.push({ run: start });
        this.waiting.set(key, queue);
      }
    });
  }

  /** Closes every connection; requests in flight fail. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
    this.waiting.clear();
  }

  /** A request finished with its connection: the next waiting request may start. */
  private release(key: string): void {
    const queue = this.waiting.get(key);
    const next = queue?.shift();
    if (queue && queue.length === 0) this.waiting.delete(key);
    if (next) {
      next.run();
      return;
    }
    const n = (this.active.get(key) ?? 1) - 1;
    if (n > 0) this.active.set(key, n);
    else this.active.delete(key);
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

  private connect(target: HttpTarget, key: string): Connection {
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
    const conn: Connection = { socket, key, exchange: undefined };
    const connectTimer = setTimeout(() => socket.destroy(new HttpGetError('connect timeout', 'before-head', 'ETIMEDOUT')), this.options.connectTimeoutMs);
    socket.once(target.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
    socket.on('timeout', () => {
      if (conn.exchange) socket.destroy(new HttpGetError('no data in time', conn.exchange.head ? 'body' : 'before-head', 'ETIMEDOUT'));
      else socket.destroy();
    });
    socket.on('error', () => { /* reported by 'close' */ });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.dropIdle(conn);
      const ex = conn.exchange;
      if (!ex) return;
      conn.exchange = undefined;
      const cause = (socket as net.Socket & { errored?: Error | null }).errored;
      const code = cause instanceof HttpGetError ? cause.code : (cause as NodeJS.ErrnoException | null | undefined)?.code ?? 'ECONNRESET';
      const message = cause?.message ?? 'connection closed';
      this.release(conn.key);
      ex.reject(new HttpGetError(ex.head ? `${message} after ${ex.received} of ${ex.bodyLength} body bytes` : message, ex.head ? 'body' : 'before-head', code));
    });
    socket.on('end', () => socket.destroy());
    return conn;
  }

  private dropIdle(conn: Connection): void {
    const list = this.idle.get(conn.key);
    const i = list ? list.indexOf(conn) : -1;
    if (list && i >= 0) list.splice(i, 1);
  }

  private send(conn: Connection, path: string, headers: Record<string, string>, onHead: Exchange['onHead'], signal: AbortSignal | undefined,
    resolve: (o: GetOutcome) => void, reject: (e: HttpGetError) => void): void {
    let onAbort: (() => void) | undefined;
    const finish = (): void => {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    };
    conn.exchange = {
      onHead,
      resolve: (o) => { finish(); resolve(o); },
      reject: (e) => { finish(); reject(e); },
      headParts: [], head: undefined, sink: undefined, declined: [], declinedBytes: 0,
      bodyLength: 0, received: 0, keepAlive: true,
    };
    if (signal) {
      onAbort = () => conn.socket.destroy(new HttpGetError('request aborted', conn.exchange?.head ? 'body' : 'before-head', 'ABORT_ERR'));
      signal.addEventListener('abort', onAbort, { once: true });
    }
    let text = `GET ${path} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
    conn.socket.setTimeout(this.options.socketTimeoutMs);
    conn.socket.write(`${text}\r\n`, 'latin1');
  }

  private onBytes(conn: Connection, buf: Buffer, n: number): void {
    const ex = conn.exchange;
    if (!ex) {
      // Bytes nobody asked for: the connection is out of step.
      conn.socket.destroy();
      return;
    }
    let data = buf.subarray(0, n);
    if (!ex.head) {
      const rest = this.readHead(conn, ex, data);
      if (rest === undefined) return;
      data = rest;
    }
    if (data.length === 0 && ex.received < ex.bodyLength) return;
    if (ex.received + data.length > ex.bodyLength) {
      conn.socket.destroy(new HttpGetError('more body bytes than Content-Length', 'body', 'EPROTO'));
      return;
    }
    ex.received += data.length;
    if (ex.sink) {
      if (data.length > 0) ex.sink.write(data);
    } else {
      const keep = data.subarray(0, DECLINED_BODY_BYTES - ex.declinedBytes);
      if (keep.length > 0) ex.declined.push(Buffer.from(keep));
      ex.declinedBytes += keep.length;
      if (ex.declinedBytes >= DECLINED_BODY_BYTES && ex.received < ex.bodyLength) {
        // A long answer nobody wants (a whole object sent for a range):
        // dropping the connection costs less than reading it to its end.
        ex.keepAlive = false;
        this.complete(conn, ex);
        return;
      }
    }
    // The sink may have aborted the request (destroying the socket).
    if (conn.exchange !== ex || ex.received < ex.bodyLength) return;
    this.complete(conn, ex);
  }

  /** Collects the answer's head; returns the bytes after it, or undefined while it is incomplete (or failed). */
  private readHead(conn: Connection, ex: Exchange, data: Buffer): Buffer | undefined {
    ex.headParts.push(Buffer.from(data));
    const all = ex.headParts.length === 1 ? ex.headParts[0]! : Buffer.concat(ex.headParts);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length > MAX_HEAD_BYTES) conn.socket.destroy(new HttpGetError('answer head too large', 'before-head', 'EPROTO'));
      return undefined;
    }
    const lines = all.subarray(0, end).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = headers.get('content-length');
    const code = status ? Number(status[1]) : 0;
    if (!status || code < 200 || headers.has('transfer-encoding') || length === undefined || !/^\d+$/.test(length)) {
      conn.socket.destroy(new HttpGetError(status ? `answer without a plain Content-Length (status ${code})` : 'not an HTTP/1.1 answer', 'before-head', 'EPROTO'));
      return undefined;
    }
    const head: ResponseHead = { status: code, headers };
    ex.head = head;
    ex.bodyLength = Number(length);
    ex.keepAlive = (headers.get('connection') ?? '').toLowerCase() !== 'close' && lines[0]!.startsWith('HTTP/1.1');
    ex.headParts = [];
    ex.sink = ex.onHead(head);
    if (conn.exchange !== ex) return undefined;
    return all.subarray(end + 4);
  }

  private complete(conn: Connection, ex: Exchange): void {
    conn.exchange = undefined;
    if (ex.keepAlive && !this.closed && !conn.socket.destroyed) {
      conn.socket.setTimeout(this.options.idleTimeoutMs);
      // As Node's agent does: an idle connection does not keep the process alive.
      conn.socket.unref();
      const list = this.idle.get(conn.key) ?? [];
      list.push(conn);
      this.idle.set(conn.key, list);
    } else {
      conn.socket.destroy();
    }
    this.release(conn.key);
    const head = ex.head!;
    if (ex.sink) ex.resolve({ kind: 'delivered', head });
    else ex.resolve({ kind: 'declined', head, body: Buffer.concat(ex.declined) });
  }
}
