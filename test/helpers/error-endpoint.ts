/**
 * A fake S3 endpoint that answers every request with one fixed S3 error
 * (status, XML body, x-amz-request-id header), for failures the local S3
 * server cannot produce: access denied by a policy, a clock the server
 * finds too far off. It runs in the test process: only `sosmount` child
 * processes talk to it, never a FUSE call made by the test itself.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FixedError {
  status: number;
  /** S3 error code, e.g. AccessDenied, RequestTimeTooSkewed. */
  code: string;
  message: string;
  /** Sent as x-amz-request-id and <RequestId>. */
  requestId: string;
  /** Extra response headers (e.g. a far-off Date). */
  headers?: Record<string, string>;
  /** Extra elements inside <Error>, e.g. { ServerTime: ..., RequestTime: ... }. */
  extra?: Record<string, string>;
}

export interface ErrorEndpoint {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** Requests answered so far, as "METHOD /path?query". */
  readonly requests: readonly string[];
  stop(): Promise<void>;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export async function startErrorEndpoint(reply: FixedError): Promise<ErrorEndpoint> {
  const requests: string[] = [];
  const extra = Object.entries(reply.extra ?? {}).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join('');
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n'
    + `<Error><Code>${xmlEscape(reply.code)}</Code><Message>${xmlEscape(reply.message)}</Message>${extra}`
    + `<RequestId>${xmlEscape(reply.requestId)}</RequestId><HostId>fake-host-id</HostId></Error>`;
  const server = http.createServer((req, res) => {
    requests.push(`${req.method ?? '?'} ${req.url ?? ''}`);
    // Read the whole request first, so the client never sees a reset mid-upload.
    req.resume();
    req.on('end', () => {
      res.writeHead(reply.status, {
        'content-type': 'application/xml',
        'x-amz-request-id': reply.requestId,
        'x-amz-id-2': 'fake-host-id',
        ...reply.headers,
        ...(req.method === 'HEAD' ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
