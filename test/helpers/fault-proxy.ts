/**
 * A fault-injecting HTTP proxy in front of the local S3 test server, for the
 * fault tests (test/faults*.test.ts, docs/reliability.md). It forwards every request to
 * the server unchanged, unless a rule set by the test says otherwise for
 * that request: answer with an S3 error (500 InternalError, 503
 * ServiceUnavailable or SlowDown, 403 AccessDenied, ... with an
 * x-amz-request-id), reset the connection before or in the middle of the
 * request or the response body, stall (accept and never answer, or stop in
 * the middle of the body), hold a request until the test releases it, add keys to a listing, or go away altogether
 * (stop listening and reset every connection, for a while).
 *
 * The proxy runs in a CHILD process, controlled over IPC: the tests make
 * synchronous file-system calls into mounts whose worker talks to this
 * proxy, and an in-process proxy could not answer while the test's thread
 * is blocked. This one file is both the parent's API ({@link startFaultProxy})
 * and the child's entry (when run as a script).
 *
 * Rules are matched in order; the first active rule that matches a request
 * decides its fate. A rule matches by S3 operation (classified from the
 * method, path and query of a path-style request), bucket, key substring
 * and query substring, and then fires for the n-th matching request only,
 * for the first `times`, for every `every`-th, and/or only while `forMs`
 * has not run out since the rule was set.
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------
// The rule language, shared by both sides.

export type S3Operation =
  | 'ListBuckets' | 'CreateBucket' | 'HeadBucket' | 'DeleteBucket' | 'ListObjectsV2' | 'ListObjects'
  | 'ListMultipartUploads' | 'DeleteObjects' | 'HeadObject' | 'GetObject' | 'PutObject' | 'CopyObject'
  | 'DeleteObject' | 'CreateMultipartUpload' | 'UploadPart' | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload' | 'ListParts' | 'Other';

export interface FaultMatch {
  /** One operation or any of several. */
  op?: S3Operation | S3Operation[];
  bucket?: string;
  /** Substring of the decoded key. */
  key?: string;
  /** Substring of the raw query string (e.g. 'continuation-token'). */
  query?: string;
}

export type FaultAction =
  /** An S3 error response: XML body with Code, Message, RequestId; header x-amz-request-id. */
  | { kind: 'error'; status: number; code: string; message?: string; requestId?: string }
  /** Reset (TCP RST) the client connection once `afterBytes` of the request body arrived (0: at once). */
  | { kind: 'reset-request'; afterBytes?: number }
  /** Forward, then reset the client connection after `afterBytes` of the response body. */
  | { kind: 'reset-response'; afterBytes: number }
  /** Accept the request and answer nothing for `ms` (then forward it); without ms, until the client gives up. */
  | { kind: 'stall'; ms?: number }
  /** Accept the request and answer nothing until the test calls release(), then forward it (an order a test needs, not a time). */
  | { kind: 'hold' }
  /** Forward, then stop sending after `afterBytes` of the body for `ms` (without ms: until the client gives up). */
  | { kind: 'stall-response'; afterBytes: number; ms?: number }
  /** Stop listening and reset every open connection (this request's too) for `ms`: the server is gone. */
  | { kind: 'go-away'; ms: number }
  /**
   * Forward a listing and add these objects to it (keys the test server
   * cannot store), as S3 would list them for the request's prefix and
   * delimiter: under Contents, or rolled up into CommonPrefixes.
   */
  | { kind: 'add-keys'; entries: Array<{ key: string; size: number }> };

export interface FaultRule {
  /** Named in the stats; defaults to the rule's index. */
  id?: string;
  match?: FaultMatch;
  action: FaultAction;
  /** Fire for the n-th matching request only (1-based). */
  nth?: number;
  /** Fire for at most this many matching requests. */
  times?: number;
  /** Fire for every k-th matching request (k, 2k, ...). */
  every?: number;
  /** Fire only during this long after the rule was set. */
  forMs?: number;
}

export interface FaultProxyStats {
  /** Requests seen, by operation. */
  requests: Partial<Record<S3Operation, number>>;
  /** Requests not answered in full, nor given up by the client, now, by operation. */
  active: Partial<Record<S3Operation, number>>;
  /** Times each rule fired, by rule id. */
  fired: Record<string, number>;
  /** Request ids of the error responses the proxy made up, in order. */
  errorRequestIds: string[];
  connections: number;
  /** Client connections open now, and the most open at once since the stats were reset. */
  openConnections: number;
  maxOpenConnections: number;
  /** Occurrences of the watched string in request lines, headers or bodies. */
  watchedSeen: number;
  /** Whether the proxy is listening (not gone away). */
  listening: boolean;
}

interface ChildConfig {
  targetHost: string;
  targetPort: number;
  /** 0: a free port. */
  port: number;
  /** A string that must never cross the wire (a secret); counted in the stats. */
  watch?: string;
}

type Command =
  | { id: number; type: 'set-rules'; rules: FaultRule[] }
  | { id: number; type: 'go-away'; ms?: number }
  | { id: number; type: 'come-back' }
  | { id: number; type: 'stats' }
  | { id: number; type: 'reset-stats' }
  | { id: number; type: 'release' };

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

type Reply =
  | { type: 'ready'; port: number }
  | { type: 'error'; message: string }
  | { type: 'reply'; id: number; stats?: FaultProxyStats; error?: string };

// ---------------------------------------------------------------------------
// Parent side.

export interface FaultProxy {
  /** http://127.0.0.1:PORT: give this to `sosmount --endpoint-url`. */
  endpoint: string;
  port: number;
  /** Replaces the rule set (counters start afresh). */
  setRules(rules: FaultRule[]): Promise<void>;
  /** Forward everything again. */
  clearRules(): Promise<void>;
  /** Stop listening and reset every connection; with ms, come back by itself after ms. */
  goAway(ms?: number): Promise<void>;
  comeBack(): Promise<void>;
  stats(): Promise<FaultProxyStats>;
  resetStats(): Promise<void>;
  /** Forwards the requests a `hold` rule holds. */
  release(): Promise<void>;
  /** Ends the proxy process. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const CALL_TIMEOUT_MS = 15_000;

export async function startFaultProxy(options: { targetPort: number; targetHost?: string; port?: number; watch?: string }): Promise<FaultProxy> {
  const config: ChildConfig = {
    targetHost: options.targetHost ?? '127.0.0.1',
    targetPort: options.targetPort,
    port: options.port ?? 0,
    ...(options.watch !== undefined ? { watch: options.watch } : {}),
  };
  const entry = fileURLToPath(import.meta.url);
  const child: ChildProcess = fork(entry, ['--fault-proxy-child', JSON.stringify(config)], {
    execArgv: [],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    serialization: 'json',
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fault proxy not ready within ${READY_TIMEOUT_MS} ms: ${stderr}`));
    }, READY_TIMEOUT_MS);
    child.on('message', function onReady(m: Reply) {
      if (m.type === 'ready') {
        clearTimeout(timer);
        child.off('message', onReady);
        resolve(m.port);
      } else if (m.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`fault proxy failed: ${m.message}`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`fault proxy exited before it was ready (${signal ?? code}): ${stderr}`));
    });
  });

  // The IPC channel is held only while a call waits, so a test process can end.
  let pending = 0;
  const hold = (on: boolean): void => {
    pending += on ? 1 : -1;
    const handles = [child, child.channel] as Array<{ ref?: () => void; unref?: () => void } | null | undefined>;
    for (const h of handles) {
      if (pending > 0) h?.ref?.();
      else h?.unref?.();
    }
  };
  hold(false);
  pending = 0;

  let nextId = 1;
  const call = (command: DistributiveOmit<Command, 'id'>): Promise<FaultProxyStats | undefined> => {
    const id = nextId++;
    hold(true);
    return new Promise<FaultProxyStats | undefined>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        hold(false);
      };
      const onMessage = (m: Reply): void => {
        if (m.type !== 'reply' || m.id !== id) return;
        done();
        if (m.error) reject(new Error(`fault proxy: ${m.error}`));
        else resolve(m.stats);
      };
      const onExit = (): void => {
        done();
        reject(new Error(`fault proxy exited: ${stderr}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`fault proxy did not answer ${command.type} within ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send({ ...command, id } as Command);
    });
  };

  let stopped = false;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    setRules: async (rules) => { await call({ type: 'set-rules', rules }); },
    clearRules: async () => { await call({ type: 'set-rules', rules: [] }); },
    goAway: async (ms) => { await call(ms === undefined ? { type: 'go-away' } : { type: 'go-away', ms }); },
    comeBack: async () => { await call({ type: 'come-back' }); },
    stats: async () => (await call({ type: 'stats' }))!,
    resetStats: async () => { await call({ type: 'reset-stats' }); },
    release: async () => { await call({ type: 'release' }); },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      hold(true);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      hold(false);
    },
  };
}

// ---------------------------------------------------------------------------
// Child side.

/** The operation of a path-style S3 request. */
export function classify(method: string, pathname: string, query: URLSearchParams, headers: http.IncomingHttpHeaders): { op: S3Operation; bucket: string; key: string } {
  const segments = pathname.split('/').slice(1);
  const bucket = safeDecode(segments[0] ?? '');
  const key = segments.slice(1).map(safeDecode).join('/');
  const hasKey = segments.length > 1 && (key !== '' || segments.length > 2);
  let op: S3Operation = 'Other';
  if (bucket === '') op = method === 'GET' ? 'ListBuckets' : 'Other';
  else if (!hasKey) {
    if (method === 'GET') op = query.has('uploads') ? 'ListMultipartUploads' : query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
    else if (method === 'HEAD') op = 'HeadBucket';
    else if (method === 'PUT') op = 'CreateBucket';
    else if (method === 'DELETE') op = 'DeleteBucket';
    else if (method === 'POST' && query.has('delete')) op = 'DeleteObjects';
  } else {
    if (method === 'GET') op = query.has('uploadId') ? 'ListParts' : 'GetObject';
    else if (method === 'HEAD') op = 'HeadObject';
    else if (method === 'PUT') op = query.has('partNumber') ? 'UploadPart' : headers['x-amz-copy-source'] ? 'CopyObject' : 'PutObject';
    else if (method === 'POST') op = query.has('uploads') ? 'CreateMultipartUpload' : query.has('uploadId') ? 'CompleteMultipartUpload' : 'Other';
    else if (method === 'DELETE') op = query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  }
  return { op, bucket, key };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Adds keys to a ListObjects(V2) XML body as S3 would list them (not re-sorted; the engine does not rely on order). */
function addKeys(body: string, prefix: string, delimiter: string, entries: Array<{ key: string; size: number }>): string {
  const contents: string[] = [];
  const prefixes: string[] = [];
  for (const e of entries) {
    if (!e.key.startsWith(prefix)) continue;
    const rest = e.key.slice(prefix.length);
    const cut = delimiter ? rest.indexOf(delimiter) : -1;
    if (cut >= 0) {
      const common = `<CommonPrefixes><Prefix>${xmlEscape(prefix + rest.slice(0, cut + delimiter.length))}</Prefix></CommonPrefixes>`;
      if (!body.includes(common) && !prefixes.includes(common)) prefixes.push(common);
    } else {
      contents.push(`<Contents><Key>${xmlEscape(e.key)}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>`
        + `<ETag>&quot;00000000000000000000000000000000&quot;</ETag><Size>${e.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`);
    }
  }
  return body.replace('</ListBucketResult>', `${contents.join('')}${prefixes.join('')}</ListBucketResult>`);
}

interface ActiveRule {
  rule: FaultRule;
  id: string;
  seen: number;
  fired: number;
  until: number;
}

/** Counts occurrences of `needle` across chunk boundaries. */
class Watcher {
  private tail = '';
  constructor(private readonly needle: string, private readonly onSeen: () => void) {}
  feed(chunk: Buffer | string): void {
    const text = this.tail + (typeof chunk === 'string' ? chunk : chunk.toString('latin1'));
    let i = text.indexOf(this.needle);
    while (i >= 0) {
      this.onSeen();
      i = text.indexOf(this.needle, i + 1);
    }
    this.tail = text.slice(-(this.needle.length - 1));
  }
}

function runChild(config: ChildConfig): void {
  let rules: ActiveRule[] = [];
  // Not reset with the stats: requests in flight stay counted until they end.
  const active: FaultProxyStats['active'] = {};
  const inFlight = new Map<Socket, Set<() => void>>();
  let stats: FaultProxyStats = { requests: {}, active, fired: {}, errorRequestIds: [], connections: 0, openConnections: 0, maxOpenConnections: 0, watchedSeen: 0, listening: false };
  const sockets = new Set<Socket>();
  const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  let server: http.Server | undefined;
  let boundPort = config.port;
  let comeBackTimer: NodeJS.Timeout | undefined;
  /** Requests held by a `hold` rule: forwarding each, on release(). */
  const held = new Set<() => void>();
  let errorCounter = 0;

  const reset = (socket: Socket | null | undefined): void => {
    if (!socket || socket.destroyed) return;
    if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    else socket.destroy();
  };

  const pick = (op: S3Operation, bucket: string, key: string, rawQuery: string): ActiveRule | undefined => {
    const now = Date.now();
    for (const r of rules) {
      const m = r.rule.match ?? {};
      if (m.op !== undefined && !(Array.isArray(m.op) ? m.op.includes(op) : m.op === op)) continue;
      if (m.bucket !== undefined && m.bucket !== bucket) continue;
      if (m.key !== undefined && !key.includes(m.key)) continue;
      if (m.query !== undefined && !rawQuery.includes(m.query)) continue;
      r.seen++;
      if (now > r.until) continue;
      if (r.rule.nth !== undefined && r.seen !== r.rule.nth) continue;
      if (r.rule.every !== undefined && r.seen % r.rule.every !== 0) continue;
      if (r.rule.times !== undefined && r.fired >= r.rule.times) continue;
      r.fired++;
      stats.fired[r.id] = r.fired;
      return r;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, onResponse?: (up: http.IncomingMessage) => void): void => {
    const upstream = http.request({
      host: config.targetHost,
      port: config.targetPort,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: upstreamAgent,
    }, (up) => {
      if (onResponse) {
        onResponse(up);
        return;
      }
      res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
      up.pipe(res);
      up.on('error', () => reset(req.socket));
    });
    // The server is gone (killed, restarting): the client sees its connection reset, as it would.
    upstream.on('error', () => reset(req.socket));
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  const sendError = (req: http.IncomingMessage, res: http.ServerResponse, action: Extract<FaultAction, { kind: 'error' }>): void => {
    const requestId = action.requestId ?? `FAULT${process.pid}x${++errorCounter}`;
    stats.errorRequestIds.push(requestId);
    const body = '<?xml version="1.0" encoding="UTF-8"?>\n'
      + `<Error><Code>${xmlEscape(action.code)}</Code><Message>${xmlEscape(action.message ?? `injected ${action.code}`)}</Message>`
      + `<RequestId>${xmlEscape(requestId)}</RequestId><HostId>fault-proxy</HostId></Error>`;
    // Read the whole request first, as S3 does, so the client is not cut off mid-upload.
    req.resume();
    const answer = (): void => {
      if (res.destroyed) return;
      res.writeHead(action.status, {
        'content-type': 'application/xml',
        'x-amz-request-id': requestId,
        'x-amz-id-2': 'fault-proxy',
        'content-length': String(req.method === 'HEAD' ? 0 : Buffer.byteLength(body)),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.complete) answer();
    else req.once('end', answer);
  };

  /** Forwards, handing the response body to `shape` chunk by chunk. */
  const forwardShaped = (req: http.IncomingMessage, res: http.ServerResponse, shape: (up: http.IncomingMessage) => void): void => {
    forward(req, res, (up) => {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
      shape(up);
    });
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const { op, bucket, key } = classify(req.method ?? 'GET', url.pathname, url.searchParams, req.headers);
    stats.requests[op] = (stats.requests[op] ?? 0) + 1;
    active[op] = (active[op] ?? 0) + 1;
    // Over once the answer is sent in full or its connection is gone (however it went: reset by a rule, by the client).
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      active[op] = (active[op] ?? 1) - 1;
      inFlight.get(req.socket)?.delete(end);
    };
    res.once('close', end);
    const ends = inFlight.get(req.socket) ?? new Set<() => void>();
    ends.add(end);
    inFlight.set(req.socket, ends);
    if (config.watch) {
      const watcher = new Watcher(config.watch, () => { stats.watchedSeen++; });
      watcher.feed(`${req.method} ${req.url}\n`);
      for (let i = 0; i < req.rawHeaders.length; i++) watcher.feed(`${req.rawHeaders[i]}\n`);
      const body = new Watcher(config.watch, () => { stats.watchedSeen++; });
      req.on('data', (c: Buffer) => body.feed(c));
    }
    const rule = pick(op, bucket, key, url.search.slice(1));
    const action = rule?.rule.action;
    if (!action) {
      forward(req, res);
      return;
    }
    switch (action.kind) {
      case 'error':
        sendError(req, res, action);
        return;
      case 'reset-request': {
        const after = action.afterBytes ?? 0;
        if (after <= 0) {
          reset(req.socket);
          return;
        }
        let got = 0;
        req.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= after) reset(req.socket);
        });
        req.on('end', () => reset(req.socket));
        return;
      }
      case 'reset-response':
        forwardShaped(req, res, (up) => {
          let sent = 0;
          up.on('data', (c: Buffer) => {
            if (res.destroyed) return;
            const room = action.afterBytes - sent;
            if (room > 0) {
              const part = c.subarray(0, room);
              sent += part.length;
              res.write(part);
            }
            if (sent >= action.afterBytes) {
              up.destroy();
              // Let the bytes written so far leave before the reset.
              setTimeout(() => reset(req.socket), 20);
            }
          });
          up.on('end', () => setTimeout(() => reset(req.socket), 20));
        });
        return;
      case 'stall':
        // The request body (if any) stays unread: the client's upload stalls too.
        if (action.ms !== undefined) {
          const timer = setTimeout(() => {
            if (!req.socket.destroyed) forward(req, res);
          }, action.ms);
          req.socket.once('close', () => clearTimeout(timer));
        }
        return;
      case 'hold': {
        const go = (): void => {
          held.delete(go);
          if (!req.socket.destroyed) forward(req, res);
        };
        held.add(go);
        req.socket.once('close', () => held.delete(go));
        return;
      }
      case 'stall-response':
        forwardShaped(req, res, (up) => {
          let sent = 0;
          let stalled = false;
          up.on('data', (c: Buffer) => {
            if (res.destroyed) return;
            if (!stalled && sent + c.length >= action.afterBytes) {
              const head = c.subarray(0, Math.max(0, action.afterBytes - sent));
              res.write(head);
              sent += head.length;
              stalled = true;
              up.pause();
              const rest = c.subarray(head.length);
              if (action.ms !== undefined) {
                const timer = setTimeout(() => {
                  if (res.destroyed) return;
                  res.write(rest);
                  up.resume();
                }, action.ms);
                res.once('close', () => clearTimeout(timer));
              }
              return;
            }
            sent += c.length;
            res.write(c);
          });
          up.on('end', () => res.end());
          res.once('close', () => up.destroy());
        });
        return;
      case 'go-away':
        goAway(action.ms);
        return;
      case 'add-keys':
        forward(req, res, (up) => {
          const chunks: Buffer[] = [];
          up.on('data', (c: Buffer) => chunks.push(c));
          up.on('end', () => {
            let body = Buffer.concat(chunks).toString('utf8');
            if (up.statusCode === 200) body = addKeys(body, url.searchParams.get('prefix') ?? '', url.searchParams.get('delimiter') ?? '', action.entries);
            const headers = { ...up.headers };
            delete headers['content-length'];
            delete headers['transfer-encoding'];
            res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
            res.end(body);
          });
        });
        return;
    }
  };

  const listen = (): Promise<void> => {
    const s = http.createServer(handle);
    s.keepAliveTimeout = 60_000;
    s.headersTimeout = 0;
    s.requestTimeout = 0;
    s.on('connection', (socket: Socket) => {
      stats.connections++;
      sockets.add(socket);
      stats.openConnections = sockets.size;
      stats.maxOpenConnections = Math.max(stats.maxOpenConnections, sockets.size);
      socket.on('error', () => { /* resets are the point */ });
      socket.once('close', () => {
        sockets.delete(socket);
        stats.openConnections = sockets.size;
        for (const end of inFlight.get(socket) ?? []) end();
        inFlight.delete(socket);
      });
    });
    s.on('clientError', (_err, socket) => reset(socket as Socket));
    return new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      const attempt = (): void => {
        s.once('error', (err: NodeJS.ErrnoException) => {
          // The port may linger for a moment after going away; wait for it.
          if (err.code === 'EADDRINUSE' && Date.now() < deadline) setTimeout(attempt, 100);
          else reject(err);
        });
        s.listen(boundPort, '127.0.0.1', () => {
          s.removeAllListeners('error');
          s.on('error', () => {});
          boundPort = (s.address() as AddressInfo).port;
          server = s;
          stats.listening = true;
          resolve();
        });
      };
      attempt();
    });
  };

  function goAway(ms?: number): void {
    if (comeBackTimer) clearTimeout(comeBackTimer);
    comeBackTimer = undefined;
    if (server) {
      server.close();
      server = undefined;
    }
    stats.listening = false;
    for (const socket of sockets) reset(socket);
    sockets.clear();
    upstreamAgent.destroy();
    if (ms !== undefined) {
      comeBackTimer = setTimeout(() => {
        comeBackTimer = undefined;
        void listen().catch((err: Error) => process.stderr.write(`fault proxy: cannot listen again: ${err.message}\n`));
      }, ms);
    }
  }

  const send = (m: Reply): void => {
    process.send?.(m);
  };

  process.on('message', (raw: Command) => {
    const reply = (extra: Partial<Extract<Reply, { type: 'reply' }>> = {}): void => send({ type: 'reply', id: raw.id, ...extra });
    switch (raw.type) {
      case 'set-rules': {
        const now = Date.now();
        rules = raw.rules.map((rule, i) => ({
          rule,
          id: rule.id ?? String(i),
          seen: 0,
          fired: 0,
          until: rule.forMs !== undefined ? now + rule.forMs : Infinity,
        }));
        reply();
        return;
      }
      case 'go-away':
        goAway(raw.ms);
        reply();
        return;
      case 'come-back':
        if (comeBackTimer) clearTimeout(comeBackTimer);
        comeBackTimer = undefined;
        if (server) {
          reply();
          return;
        }
        listen().then(() => reply(), (err: Error) => reply({ error: err.message }));
        return;
      case 'stats':
        reply({ stats });
        return;
      case 'release':
        for (const go of [...held]) go();
        reply();
        return;
      case 'reset-stats':
        stats = {
          requests: {}, active, fired: {}, errorRequestIds: [], connections: 0, openConnections: sockets.size, maxOpenConnections: sockets.size,
          watchedSeen: 0, listening: server !== undefined,
        };
        reply();
        return;
      default:
        reply({ error: `unknown command ${JSON.stringify((raw as { type?: unknown }).type)}` });
    }
  });
  const shutdown = (): void => {
    goAway();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('disconnect', shutdown);

  listen().then(
    () => send({ type: 'ready', port: boundPort }),
    (err: Error) => {
      send({ type: 'error', message: err.message });
      process.exit(1);
    },
  );
}

if (process.argv[2] === '--fault-proxy-child' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runChild(JSON.parse(process.argv[3] ?? '{}') as ChildConfig);
}
