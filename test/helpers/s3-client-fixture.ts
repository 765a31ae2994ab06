/**
 * What the client-level tests (requests, copy-object, transport) share: the
 * keys that exercise every encoding a path or a copy source needs, a
 * connection to the local test server, and a sink that keeps what a
 * request writes.
 */
import type { S3ConnectionConfig } from '../../app/s3/sdk-client.js';
import type { BodySink } from '../../app/s3/http-transport.js';

/** Every character class a key may hold in a request path or a copy source. */
export const KEYS = ['plain', 'with space', 'plus+sign', 'per%cent', 'amp&and=eq?q#h', "bang!quote'(paren)*star", 'tilde~', 'é/ü/😀', 'dir/sub/file.txt', '\uE000private'];

/** A client's settings for bucket `direct` of the test server (or a proxy in front of it) at `endpointUrl`. */
export function testConnection(endpointUrl: string, extra: Partial<S3ConnectionConfig> = {}): S3ConnectionConfig {
  return {
    bucket: 'direct', endpointUrl, region: undefined, forcePathStyle: true, profile: undefined,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxConnections: 4, uploadChecksums: 'off', ...extra,
  };
}

/** Collects what a request writes; the transport's buffer is reused, so it copies. */
export class Collect implements BodySink {
  readonly parts: Buffer[] = [];
  write(bytes: Buffer): void {
    this.parts.push(Buffer.from(bytes));
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}
