/**
 * Calibrates the delay proxy against a plain TCP source/sink (no S3 server
 * in the way): round trips on new and reused connections, and throughput
 * down and up over 1 and 8 connections, through the WAN profile and through
 * a zero-delay, unlimited proxy (compared with direct loopback), so the
 * report can show that the proxy models what it claims and is not itself a
 * bottleneck at loopback rates.
 *
 * `node proxy-check.js` prints a JSON report; the bench imports runProxyCheck().
 * The TCP peer runs in a child process (`node proxy-check.js --peer`), so the
 * measuring client and the peer do not share an event loop.
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ProxyConfig, ProxyMessage } from './delay-proxy.js';

const SELF = fileURLToPath(import.meta.url);
const PROXY = fileURLToPath(new URL('./delay-proxy.js', import.meta.url));
const MiB = 1024 * 1024;

// ---- the peer: 'p' answers 'p' (ping); 'd' + u32 n sends n bytes; 'u' + u32 n reads n bytes then answers 'k'.
function peer(): void {
  const chunk = Buffer.alloc(256 * 1024, 7);
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let uploadLeft = 0;
    s.on('data', (d: Buffer) => {
      if (uploadLeft > 0) {
        const n = Math.min(uploadLeft, d.length);
        uploadLeft -= n;
        d = d.subarray(n);
        if (uploadLeft === 0) s.write('k');
        if (d.length === 0) return;
      }
      buf = Buffer.concat([buf, d]);
      while (buf.length > 0) {
        const c = String.fromCharCode(buf[0]!);
        if (c === 'p') { s.write('p'); buf = buf.subarray(1); continue; }
        if (buf.length < 5) return;
        const n = buf.readUInt32LE(1);
        buf = buf.subarray(5);
        if (c === 'd') {
          let left = n;
          const pump = (): void => {
            while (left > 0) {
              const part = chunk.subarray(0, Math.min(chunk.length, left));
              left -= part.length;
              if (!s.write(part)) { s.once('drain', pump); return; }
            }
          };
          pump();
        } else if (c === 'u') {
          const take = Math.min(n, buf.length);
          uploadLeft = n - take;
          buf = buf.subarray(take);
          if (uploadLeft === 0) s.write('k');
        }
      }
    });
    s.on('error', () => s.destroy());
  });
  server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as net.AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function readBytes(s: net.Socket, n: number): Promise<void> {
  return new Promise((resolve) => {
    let got = 0;
    const on = (d: Buffer): void => {
      got += d.length;
      if (got >= n) { s.off('data', on); resolve(); }
    };
    s.on('data', on);
  });
}

function cmd(c: string, n: number): Buffer {
  const b = Buffer.alloc(5);
  b.write(c, 0, 'latin1');
  b.writeUInt32LE(n, 1);
  return b;
}

export interface LinkFigures {
  newConnectionPingMs: number;
  pingMs: number;
  down1MiBps: number;
  down8MiBps: number;
  up1MiBps: number;
  up8MiBps: number;
}

async function measureLink(port: number, bytes: number): Promise<LinkFigures> {
  const t0 = performance.now();
  const s = await connect(port);
  s.write('p');
  await readBytes(s, 1);
  const newConnectionPingMs = performance.now() - t0;
  const pings: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    s.write('p');
    await readBytes(s, 1);
    pings.push(performance.now() - t);
  }
  s.destroy();
  const down = async (conns: number): Promise<number> => {
    const socks = await Promise.all(Array.from({ length: conns }, () => connect(port)));
    // Warm each connection (handshake delay) before timing.
    await Promise.all(socks.map(async (x) => { x.write('p'); await readBytes(x, 1); }));
    const per = Math.floor(bytes / conns);
    const t = performance.now();
    await Promise.all(socks.map(async (x) => { x.write(cmd('d', per)); await readBytes(x, per); }));
    const sec = (performance.now() - t) / 1000;
    socks.forEach((x) => x.destroy());
    return (per * conns) / MiB / sec;
  };
  const up = async (conns: number): Promise<number> => {
    const socks = await Promise.all(Array.from({ length: conns }, () => connect(port)));
    await Promise.all(socks.map(async (x) => { x.write('p'); await readBytes(x, 1); }));
    const per = Math.floor(bytes / conns);
    const block = Buffer.alloc(256 * 1024, 3);
    const t = performance.now();
    await Promise.all(socks.map(async (x) => {
      const done = readBytes(x, 1);
      x.write(cmd('u', per));
      let left = per;
      while (left > 0) {
        const part = block.subarray(0, Math.min(block.length, left));
        left -= part.length;
        if (!x.write(part)) await new Promise((r) => x.once('drain', r));
      }
      await done;
    }));
    const sec = (performance.now() - t) / 1000;
    socks.forEach((x) => x.destroy());
    return (per * conns) / MiB / sec;
  };
  return {
    newConnectionPingMs,
    pingMs: pings.sort((a, b) => a - b)[2]!,
    down1MiBps: await down(1),
    down8MiBps: await down(8),
    up1MiBps: await up(1),
    up8MiBps: await up(8),
  };
}

async function startProxy(cfg: ProxyConfig): Promise<{ port: number; stop: () => void }> {
  const child = fork(PROXY, [JSON.stringify(cfg)], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: ProxyMessage) => (m.type === 'ready' ? resolve(m.port) : undefined));
    child.once('exit', (c) => reject(new Error(`proxy exited ${c}`)));
  });
  return { port, stop: () => { child.kill('SIGKILL'); } };
}

export interface ProxyCheckReport {
  direct: LinkFigures;
  zeroDelayProxy: LinkFigures;
  wanProxy: LinkFigures;
  wanConfig: Omit<ProxyConfig, 'targetHost' | 'targetPort' | 'listenPort'>;
}

export async function runProxyCheck(wan: Omit<ProxyConfig, 'targetHost' | 'targetPort' | 'listenPort'>, onStart?: (stop: () => void) => void): Promise<ProxyCheckReport> {
  const child = fork(SELF, ['--peer'], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  onStart?.(() => child.kill('SIGKILL'));
  try {
    const peerPort = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
    const direct = await measureLink(peerPort, 512 * MiB);
    const zero = await startProxy({ targetHost: '127.0.0.1', targetPort: peerPort, listenPort: 0, oneWayDelayMs: 0, rateBytesPerSec: 0, handshake: false, windowBytes: 4 * MiB });
    let zeroDelayProxy: LinkFigures;
    try { zeroDelayProxy = await measureLink(zero.port, 512 * MiB); } finally { zero.stop(); }
    const w = await startProxy({ targetHost: '127.0.0.1', targetPort: peerPort, listenPort: 0, ...wan });
    let wanProxy: LinkFigures;
    try { wanProxy = await measureLink(w.port, 64 * MiB); } finally { w.stop(); }
    return { direct, zeroDelayProxy, wanProxy, wanConfig: wan };
  } finally {
    child.kill('SIGKILL');
  }
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === '--peer') peer();
  else {
    void runProxyCheck({ oneWayDelayMs: 20, rateBytesPerSec: 50_000_000, handshake: true, windowBytes: 4 * MiB }).then((r) => {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      process.exit(0);
    });
  }
}
