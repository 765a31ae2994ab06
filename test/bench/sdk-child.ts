/**
 * The direct-client baseline: the same workloads with @aws-sdk/client-s3 in
 * a child process, to show what the server and the network deliver.
 * argv[2]: JSON { endpoint, task }; prints one JSON {@link TaskResult}.
 *
 * - big read: parallel ranged GETs of `partSize`, `concurrency` in flight;
 * - first byte: a new client (fresh connection) GETs byte 0 and waits for it,
 *   after the SDK's code has been warmed by another client; the first byte
 *   of a cold process (SDK loading included) is reported as an extra;
 * - random reads: 4 KiB ranged GETs, `threads` in flight;
 * - small files: one ListObjectsV2, then GETs with `parallel` in flight;
 * - listing: ListObjectsV2 pages (1,000 keys each), as an `ls` needs them;
 * - big write: a multipart upload, `concurrency` parts in flight;
 * - small writes: PutObject with `parallel` in flight (also the baseline
 *   of `cp -r` into a mount);
 * - editor save: one PutObject of the new bytes over the object.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand, HeadBucketCommand,
  ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { KiB, content, fill, matches, smallName } from './data.js';
import { errorText, pool, printResult, sdkClientBase, type SdkEndpoint, type Task, type TaskResult } from './workload.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

function client(ep: SdkEndpoint, maxSockets = 64): S3Client {
  return new S3Client({
    ...sdkClientBase(ep),
    maxAttempts: 3,
    requestHandler: new NodeHttpHandler({
      httpAgent: new http.Agent({ keepAlive: true, maxSockets }),
      connectionTimeout: 10_000,
      requestTimeout: 60_000,
    }),
  });
}

type Body = AsyncIterable<Uint8Array>;

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Reads a body to the end, checking samples against the object's bytes from `pos`; returns the byte count. */
async function drain(body: Body, seed: number, pos: number, full: boolean): Promise<{ n: number; bad: number }> {
  let n = 0;
  let bad = 0;
  for await (const c of body) {
    const b = asBuffer(c);
    if (!matches(seed, pos + n, b, b.length, full)) bad++;
    n += b.length;
  }
  return { n, bad };
}

async function get(s3: S3Client, bucket: string, key: string, start?: number, end?: number): Promise<Body> {
  const out = await s3.send(new GetObjectCommand({
    Bucket: bucket, Key: key, ...(start !== undefined && end !== undefined ? { Range: `bytes=${start}-${end - 1}` } : {}),
  }));
  return out.Body as unknown as Body;
}

async function run(ep: SdkEndpoint, t: Task): Promise<TaskResult> {
  const b = ep.bucket;
  switch (t.op) {
    case 'seqread': {
      const s3 = client(ep);
      const parts: Array<[number, number]> = [];
      for (let p = 0; p < t.size; p += t.partSize) parts.push([p, Math.min(t.size, p + t.partSize)]);
      let bytes = 0;
      let bad = 0;
      const t0 = performance.now();
      await pool(parts, t.concurrency, async ([s, e]) => {
        const r = await drain(await get(s3, b, t.target, s, e), t.seed, s, false);
        bytes += r.n;
        bad += r.bad;
      });
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      if (bytes !== t.size || bad) return { ok: false, seconds, bytes, error: `got ${bytes} bytes, ${bad} bad chunks` };
      return { ok: true, seconds, bytes };
    }
    case 'ttfb': {
      const first = async (s3: S3Client): Promise<number> => {
        const t0 = performance.now();
        const body = await get(s3, b, t.target, 0, 1);
        for await (const c of body) { if (c.length > 0) break; }
        return (performance.now() - t0) / 1000;
      };
      const cold = client(ep);
      const coldProcess = await first(cold);
      cold.destroy();
      // Warm the SDK's code on one client, then measure a fresh client (a new connection).
      const warm = client(ep);
      await warm.send(new HeadBucketCommand({ Bucket: b }));
      warm.destroy();
      const fresh = client(ep);
      const seconds = await first(fresh);
      fresh.destroy();
      return { ok: true, seconds, bytes: 1, extra: { coldProcessSeconds: coldProcess } };
    }
    case 'randread': {
      const s3 = client(ep);
      const len = 4 * KiB;
      let bad = 0;
      const t0 = performance.now();
      await pool(t.offsets, t.threads, async (off) => {
        const r = await drain(await get(s3, b, t.target, off, off + len), t.seed, off, true);
        if (r.n !== len || r.bad) bad++;
      });
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      return bad ? { ok: false, seconds, error: `${bad} wrong reads` } : { ok: true, seconds, ops: t.offsets.length, bytes: t.offsets.length * len };
    }
    case 'smallread': {
      const s3 = client(ep);
      let bad = 0;
      const t0 = performance.now();
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: t.dir, Delimiter: '/', ContinuationToken: token }));
        for (const o of page.Contents ?? []) if (o.Key && /\/f\d{4}$/.test(o.Key)) keys.push(o.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      const chosen = keys.sort().slice(0, t.count);
      await pool(chosen, t.parallel, async (key) => {
        const seed = t.seedBase + Number(key.slice(key.lastIndexOf('/') + 2));
        const r = await drain(await get(s3, b, key), seed, 0, true);
        if (r.n !== t.size || r.bad) bad++;
      });
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      if (chosen.length !== t.count) return { ok: false, seconds, error: `listed ${chosen.length}, expected ${t.count}` };
      return bad ? { ok: false, seconds, error: `${bad} wrong files` } : { ok: true, seconds, ops: chosen.length, bytes: chosen.length * t.size };
    }
    case 'ls': {
      const s3 = client(ep);
      let n = 0;
      let pages = 0;
      let token: string | undefined;
      const t0 = performance.now();
      do {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: t.dir, Delimiter: '/', ContinuationToken: token }));
        n += (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
        pages++;
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      if (n !== t.expect) return { ok: false, seconds, error: `listed ${n}, expected ${t.expect}` };
      return { ok: true, seconds, ops: n, extra: { pages } };
    }
    case 'seqwrite': {
      const s3 = client(ep);
      const parts: Array<{ n: number; s: number; e: number }> = [];
      for (let p = 0, n = 1; p < t.size; p += t.partSize, n++) parts.push({ n, s: p, e: Math.min(t.size, p + t.partSize) });
      const etags: Array<{ PartNumber: number; ETag: string }> = [];
      const t0 = performance.now();
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: t.target }));
      await pool(parts, t.concurrency, async (p) => {
        const body = Buffer.allocUnsafe(p.e - p.s);
        fill(t.seed, p.s, body.length, body);
        const out = await s3.send(new UploadPartCommand({ Bucket: b, Key: t.target, UploadId, PartNumber: p.n, Body: body, ContentLength: body.length }));
        etags.push({ PartNumber: p.n, ETag: out.ETag ?? '' });
      });
      etags.sort((x, y) => x.PartNumber - y.PartNumber);
      await s3.send(new CompleteMultipartUploadCommand({ Bucket: b, Key: t.target, UploadId, MultipartUpload: { Parts: etags } }));
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      return { ok: true, seconds, bytes: t.size };
    }
    case 'smallwrite': {
      const s3 = client(ep);
      const files = Array.from({ length: t.count }, (_, i) => ({ key: t.dir + smallName(i), data: content(t.seedBase + i, t.size) }));
      const t0 = performance.now();
      await pool(files, t.parallel, async (f) => {
        await s3.send(new PutObjectCommand({ Bucket: b, Key: f.key, Body: f.data, ContentLength: f.data.length }));
      });
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      return { ok: true, seconds, ops: t.count, bytes: t.count * t.size };
    }
    case 'cpr':
      throw new Error('cp -r is a mount workload; the SDK runs smallwrite for it');
    case 'editsave': {
      const s3 = client(ep);
      const body = content(t.seed, t.size);
      // The SDK's code loaded and the connection open, as the mount's are.
      await s3.send(new HeadBucketCommand({ Bucket: b }));
      const t0 = performance.now();
      await s3.send(new PutObjectCommand({ Bucket: b, Key: t.key, Body: body, ContentLength: body.length }));
      const seconds = (performance.now() - t0) / 1000;
      s3.destroy();
      return { ok: true, seconds, bytes: t.size };
    }
    // The SDK keeps no local copy: the two-pass workloads are for mounts only.
    case 'twice':
      return { ok: false, seconds: 0, error: 'the SDK has no local cache' };
  }
}

async function main(): Promise<void> {
  const { endpoint, task } = JSON.parse(process.argv[2] ?? '{}') as { endpoint: SdkEndpoint; task: Task };
  let r: TaskResult;
  try {
    r = await run(endpoint, task);
  } catch (err) {
    r = { ok: false, seconds: 0, error: errorText(err) };
  }
  printResult(r);
  process.exit(0);
}

void main();
