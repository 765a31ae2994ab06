/**
 * Feeds a Node stream's bytes to a {@link RangeSink}: the path of GETs
 * that come back as streams (the SDK's, the in-memory client's).
 */
import type { Readable } from 'node:stream';
import type { RangeSink } from './object-client.js';

/**
 * With 'data' events (an async iterator per chunk cost a third of the
 * worker's CPU on a loopback read). The body is read to its end even once
 * the sink has what it wants: leaving early destroys the socket, and every
 * GET would then pay a new connection. Resolves at the body's end; rejects
 * if it breaks or closes early. An abort destroys the body.
 */
export function streamInto(body: Readable, sink: RangeSink, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let ended = false;
    const onAbort = (): void => {
      body.destroy(new Error('read aborted'));
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    body.on('data', (chunk: Buffer | Uint8Array) => {
      sink.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    body.once('end', () => {
      ended = true;
      resolve();
    });
    body.once('error', reject);
    body.once('close', () => {
      signal?.removeEventListener('abort', onAbort);
      if (!ended) reject(Object.assign(new Error('response body closed early'), { code: 'ECONNRESET' }));
    });
  });
}
