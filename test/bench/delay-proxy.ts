/**
 * A TCP delay proxy on 127.0.0.1 that makes loopback look like a WAN link
 * (this kernel has no `netem` qdisc, so it is done in user space):
 *
 * - `oneWayDelayMs` on every byte in each direction (20 ms: a 40 ms RTT);
 * - a new connection pays one more RTT before its first byte leaves (the
 *   TCP handshake): the client's bytes are held for 2 x oneWay after accept;
 * - one shared bottleneck per direction (`rateBytesPerSec`, 400 Mbit/s =
 *   50 MB/s), a FIFO virtual-time queue across all connections: a chunk
 *   starts serialising when the link is free and arrives `oneWay` after it
 *   has been serialised;
 * - each connection's byte order is kept (one FIFO per direction);
 * - flow control like a TCP window: at most `windowBytes` per connection and
 *   direction may be unacknowledged, an ACK being the delivery plus the way
 *   back (oneWay), so a sender feels the pipe and the proxy's memory stays
 *   bounded. 4 MiB per connection is more than the 2 MB bandwidth-delay
 *   product, so one connection can fill the link (no slow start is modelled).
 *
 * It also counts the HTTP requests that cross it, by S3 operation, and the
 * connections opened, so the bench can show what each contender asked for.
 *
 * Runs in its own process (forked by the bench with a JSON config in argv[2]):
 * timing must not depend on what the bench's own event loop is doing.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export interface ProxyConfig {
  targetHost: string;
  targetPort: number;
  /** 0: a free port. */
  listenPort: number;
  oneWayDelayMs: number;
  /** 0: unlimited. */
  rateBytesPerSec: number;
  /** Hold a new connection's first bytes for one RTT (the handshake). */
  handshake: boolean;
  windowBytes: number;
}

export interface ProxyStats {
  connections: number;
  bytesUp: number;
  bytesDown: number;
  requests: Record<string, number>;
}

type Item = { pipe: Pipe; chunk: Buffer | null; at: number; n: number };

/** A FIFO of timed events served by one timer. Times must be non-decreasing. */
class TimedQueue {
  private items: Item[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private armedAt = Infinity;

  constructor(private readonly run: (item: Item) => void) {}

  push(item: Item): void {
    const last = this.items[this.items.length - 1];
    if (last && last.at > item.at && this.head < this.items.length) item.at = last.at;
    this.items.push(item);
    this.arm();
  }

  private arm(): void {
    if (this.head >= this.items.length) return;
    const at = this.items[this.head]!.at;
    if (this.timer && at >= this.armedAt) return;
    if (this.immediate) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wait = at - performance.now();
    if (wait <= 0.5) {
      this.immediate = setImmediate(() => { this.immediate = undefined; this.fire(); });
    } else {
      this.armedAt = at;
      this.timer = setTimeout(() => { this.timer = undefined; this.armedAt = Infinity; this.fire(); }, Math.max(1, Math.floor(wait)));
    }
  }

  private fire(): void {
    const now = performance.now() + 0.5;
    while (this.head < this.items.length && this.items[this.head]!.at <= now) {
      const item = this.items[this.head]!;
      this.items[this.head] = undefined as unknown as Item;
      this.head++;
      this.run(item);
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.arm();
  }
}

/** One direction of the link, shared by all connections. */
class Link {
  private nextFreeAt = 0;
  readonly deliveries: TimedQueue;
  readonly acks: TimedQueue;

  constructor(private readonly cfg: ProxyConfig) {
    this.deliveries = new TimedQueue((item) => item.pipe.deliver(item.chunk));
    this.acks = new TimedQueue((item) => item.pipe.ack(item.n));
  }

  /** Schedules the chunk entering the link now (or the end marker, chunk null). */
  send(pipe: Pipe, chunk: Buffer | null): void {
    const now = performance.now();
    const start = Math.max(now, this.nextFreeAt);
    const tx = chunk && this.cfg.rateBytesPerSec > 0 ? (chunk.length * 1000) / this.cfg.rateBytesPerSec : 0;
    this.nextFreeAt = start + tx;
    this.deliveries.push({ pipe, chunk, at: start + tx + this.cfg.oneWayDelayMs, n: 0 });
  }

  ackLater(pipe: Pipe, bytes: number): void {
    this.acks.push({ pipe, chunk: null, at: performance.now() + this.cfg.oneWayDelayMs, n: bytes });
  }
}

/** One direction of one connection. */
class Pipe {
  inflight = 0;
  private paused = false;
  private held: Array<Buffer | null> | undefined;
  private unackedUntilDrain = 0;
  private ended = false;

  constructor(
    readonly src: net.Socket,
    readonly dst: net.Socket,
    private readonly link: Link,
    private readonly cfg: ProxyConfig,
    holdUntil: number,
    private readonly onChunk: (chunk: Buffer) => void,
  ) {
    if (holdUntil > performance.now()) {
      this.held = [];
      setTimeout(() => {
        const held = this.held ?? [];
        this.held = undefined;
        for (const c of held) this.link.send(this, c);
      }, Math.max(1, Math.round(holdUntil - performance.now())));
    }
    src.on('data', (chunk: Buffer) => {
      this.onChunk(chunk);
      this.inflight += chunk.length;
      if (this.held) this.held.push(chunk);
      else this.link.send(this, chunk);
      if (this.inflight >= this.cfg.windowBytes && !this.paused) {
        this.paused = true;
        src.pause();
      }
    });
    src.on('end', () => {
      if (this.held) this.held.push(null);
      else this.link.send(this, null);
    });
    dst.on('drain', () => {
      if (this.unackedUntilDrain > 0) {
        this.link.ackLater(this, this.unackedUntilDrain);
        this.unackedUntilDrain = 0;
      }
    });
  }

  deliver(chunk: Buffer | null): void {
    if (this.dst.destroyed) return;
    if (chunk === null) {
      if (!this.ended) this.dst.end();
      this.ended = true;
      return;
    }
    const ok = this.dst.write(chunk);
    if (ok) this.link.ackLater(this, chunk.length);
    else this.unackedUntilDrain += chunk.length;
  }

  ack(n: number): void {
    this.inflight -= n;
    if (this.paused && this.inflight < this.cfg.windowBytes / 2) {
      this.paused = false;
      if (!this.src.destroyed) this.src.resume();
    }
  }
}

/**
 * Finds the S3 operation of each HTTP/1.1 request in a client's byte stream:
 * parses request heads, skips bodies by Content-Length or chunked encoding.
 */
export class RequestScanner {
  private buf: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  private chunked = false;
  private broken = false;

  constructor(private readonly count: (op: string) => void) {}

  push(chunk: Buffer): void {
    if (this.broken) return;
    let data = chunk;
    while (data.length > 0) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, data.length);
        this.bodyLeft -= n;
        data = data.subarray(n);
        continue;
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
      data = Buffer.alloc(0);
      if (this.chunked) {
        if (!this.consumeChunkHeader()) return;
        data = this.buf;
        this.buf = Buffer.alloc(0);
        continue;
      }
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.buf.length > 64 * 1024) this.broken = true;
        return;
      }
      const head = this.buf.subarray(0, end).toString('latin1');
      const rest = this.buf.subarray(end + 4);
      this.buf = Buffer.alloc(0);
      this.onHead(head);
      data = rest;
    }
  }

  /** In chunked mode: reads one chunk-size line (or the last chunk and trailers); false when more bytes are needed. */
  private consumeChunkHeader(): boolean {
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) return false;
    const size = parseInt(this.buf.subarray(0, eol).toString('latin1').split(';')[0]!.trim(), 16);
    if (Number.isNaN(size)) { this.broken = true; return false; }
    if (size > 0) {
      this.buf = this.buf.subarray(eol + 2);
      this.bodyLeft = size + 2; // data and its CRLF
      return true;
    }
    // Last chunk: optional trailers, then an empty line.
    const after = this.buf.subarray(eol + 2);
    let end: number;
    if (after.subarray(0, 2).toString('latin1') === '\r\n') end = 2;
    else {
      const t = after.indexOf('\r\n\r\n');
      if (t < 0) return false;
      end = t + 4;
    }
    this.buf = after.subarray(end);
    this.chunked = false;
    return true;
  }

  private onHead(head: string): void {
    const lines = head.split('\r\n');
    const [method = '', target = ''] = (lines[0] ?? '').split(' ');
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    this.count(classify(method, target, headers));
    if ((headers.get('transfer-encoding') ?? '').toLowerCase().includes('chunked')) {
      this.chunked = true;
    } else {
      this.bodyLeft = Number(headers.get('content-length') ?? 0) || 0;
    }
  }
}

/** S3 operation name of a path-style request. */
export function classify(method: string, target: string, headers: Map<string, string>): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);
  const params = new Set(query.split('&').map((p) => p.split('=')[0]));
  const hasKey = /^\/[^/]+\/.+/.test(path);
  switch (method) {
    case 'GET':
      if (!hasKey) return params.has('list-type') ? 'ListObjectsV2' : path === '/' ? 'ListBuckets' : 'ListObjects';
      if (params.has('uploadId')) return 'ListParts';
      return headers.has('range') ? 'GetObject(range)' : 'GetObject';
    case 'HEAD': return hasKey ? 'HeadObject' : 'HeadBucket';
    case 'PUT':
      if (!hasKey) return 'CreateBucket';
      if (params.has('partNumber')) return 'UploadPart';
      if (headers.has('x-amz-copy-source')) return 'CopyObject';
      return 'PutObject';
    case 'POST':
      if (params.has('uploads')) return 'CreateMultipartUpload';
      if (params.has('uploadId')) return 'CompleteMultipartUpload';
      if (params.has('delete')) return 'DeleteObjects';
      return 'POST';
    case 'DELETE': return params.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    default: return method || '?';
  }
}

export class DelayProxy {
  private server: net.Server | undefined;
  private readonly up: Link;
  private readonly down: Link;
  private readonly sockets = new Set<net.Socket>();
  stats: ProxyStats = { connections: 0, bytesUp: 0, bytesDown: 0, requests: {} };

  constructor(private readonly cfg: ProxyConfig) {
    this.up = new Link(cfg);
    this.down = new Link(cfg);
  }

  takeStats(): ProxyStats {
    const s = this.stats;
    this.stats = { connections: 0, bytesUp: 0, bytesDown: 0, requests: {} };
    return s;
  }

  listen(): Promise<number> {
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.accept(client));
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.cfg.listenPort, '127.0.0.1', () => resolve((this.server!.address() as net.AddressInfo).port));
    });
  }

  private accept(client: net.Socket): void {
    this.stats.connections++;
    const acceptedAt = performance.now();
    const upstream = net.connect({ host: this.cfg.targetHost, port: this.cfg.targetPort, allowHalfOpen: true, noDelay: true });
    client.setNoDelay(true);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
    const scanner = new RequestScanner((op) => { this.stats.requests[op] = (this.stats.requests[op] ?? 0) + 1; });
    const hold = this.cfg.handshake ? acceptedAt + 2 * this.cfg.oneWayDelayMs : 0;
    const upPipe = new Pipe(client, upstream, this.up, this.cfg, hold, (c) => { this.stats.bytesUp += c.length; scanner.push(c); });
    const downPipe = new Pipe(upstream, client, this.down, this.cfg, 0, (c) => { this.stats.bytesDown += c.length; });
    void upPipe;
    void downPipe;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

// ---------------------------------------------------------------------------
// Child-process entry: argv[2] is a JSON ProxyConfig; replies { type: 'ready', port };
// answers { type: 'stats' } with { type: 'stats', stats } (and resets them).

export type ProxyMessage = { type: 'ready'; port: number } | { type: 'stats'; stats: ProxyStats };

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as ProxyConfig;
  const proxy = new DelayProxy(cfg);
  const port = await proxy.listen();
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'stats') process.send?.({ type: 'stats', stats: proxy.takeStats() } satisfies ProxyMessage);
    if (m?.type === 'close') void proxy.close().then(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  process.send?.({ type: 'ready', port } satisfies ProxyMessage);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) void main();
