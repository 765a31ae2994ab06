/**
 * The SDK's requests on the mount's transport (http-transport.ts): an
 * HttpHandler for S3Client, in place of the SDK's NodeHttpHandler and its
 * own socket pool, so the SDK's requests and ours share one bounded set of
 * connections. The SDK keeps what it does above the wire: signing, retries
 * (retry-strategy.ts), typed errors with their request ids.
 */
import { Readable } from 'node:stream';
import { buildQueryString } from '@smithy/core/protocols';
import type { HttpHandlerOptions, HttpRequest, HttpResponse } from '@smithy/types';
import { HttpTransport, HttpTransportError, type HttpTarget } from './http-transport.js';

/** Error names the SDK's retry classification knows (@smithy/service-error-classification). */
function sdkError(err: unknown): Error {
  if (!(err instanceof HttpTransportError)) return err instanceof Error ? err : new Error(String(err));
  if (err.code === 'ABORT_ERR') return Object.assign(new Error('request aborted'), { name: 'AbortError', code: err.code, cause: err });
  if (err.code === 'ETIMEDOUT') return Object.assign(new Error(err.message), { name: 'TimeoutError', code: err.code, cause: err });
  return Object.assign(new Error(err.message), { code: err.code, cause: err });
}

function bodyOf(body: unknown): Uint8Array | Readable | undefined {
  if (body === undefined || body === null) return undefined;
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Readable) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('request body of an unsupported type');
}

export class TransportHttpHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };

  /** `owned`: the transport is this handler's alone, closed by destroy(). */
  constructor(private readonly transport: HttpTransport, private readonly owned = false) {}

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    const protocol = request.protocol === 'http:' ? 'http:' : request.protocol === 'https:' ? 'https:' : undefined;
    if (!protocol) throw new Error(`unsupported protocol ${request.protocol}`);
    const hostname = request.hostname.replace(/^\[|\]$/g, '');
    const target: HttpTarget = { protocol, hostname, port: request.port ?? (protocol === 'https:' ? 443 : 80) };
    const query = request.query ? buildQueryString(request.query) : '';
    const path = `${request.path}${query ? `?${query}` : ''}`;
    const signal = options.abortSignal as AbortSignal | undefined;
    return new Promise((resolve, reject) => {
      let body: Readable | undefined;
      this.transport.request(target, { method: request.method, path, headers: request.headers, body: bodyOf(request.body) },
        (head) => {
          const stream = new Readable({ read() { /* pushed as bytes arrive */ } });
          body = stream;
          const headers: Record<string, string> = {};
          for (const [name, value] of head.headers) headers[name] = value;
          resolve({ response: { statusCode: head.status, headers, body: stream } });
          // The SDK's readers keep what they are given: each piece is a copy.
          return { write: (bytes) => { stream.push(Buffer.from(bytes)); } };
        },
        { signal, first: true },
      ).then(
        () => body?.push(null),
        (err: unknown) => {
          if (body) body.destroy(sdkError(err));
          else reject(sdkError(err));
        },
      );
    });
  }

  updateHttpClientConfig(): void {
    // Timeouts and limits are the transport's.
  }

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    // A shared transport is closed by its owner (SdkObjectClient.destroy).
    if (this.owned) this.transport.close();
  }
}
