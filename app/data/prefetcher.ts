/**
 * Read-ahead for one open file, after Mountpoint's prefetch.rs.
 *
 * A reader's requests are served from a window of ranged GETs kept in
 * flight ahead of it. The window starts small, so `head`, `file` or a
 * thumbnailer reading the start of a big object costs one small request
 * (Mountpoint: 1 MiB + 128 KiB). Each time the reader catches up with the
 * newest request, or a sequential reader has to wait for bytes, the window
 * doubles, up to `maxWindowBytes`, and is cut into parts of
 * `partSizeBytes` fetched in parallel. Reads that land inside the
 * window (forward anywhere in it; backward up to `backwardSeekBytes`, which
 * covers the kernel's out-of-order readahead) keep the window; any other
 * seek resets it and fetches only a small aligned block, so random small
 * reads cost little. Bytes are copied from the socket into reused slabs
 * and from there into the kernel's buffer; the window's bytes are drawn
 * from a per-mount {@link MemoryBudget}.
 */
import type { ObjectClient, RangeSink } from '../s3/object-client.js';
import { S3RequestError, toS3Error } from '../s3/errors.js';
import { READ_DEADLINE_MS } from '../s3/retry-strategy.js';
import type { MemoryBudget } from './memory-budget.js';
import type { DiskCache } from './disk-cache.js';
import { readThroughCache } from './cached-range.js';
import { SLAB_BYTES, SlabPool } from './slab-pool.js';

/** Read-ahead slabs of every prefetcher in the process (one mount per worker). */
const sharedSlabs = new SlabPool();

export interface PrefetchConfig {
  /** First request of a stream that starts at offset 0. Mountpoint's value: 1 MiB + 128 KiB. */
  initialRequestBytes: number;
  /** Size of each ranged GET once the window is large (`--read-part-size`). */
  partSizeBytes: number;
  /**
   * Largest window per open file: 32 MiB (four parts) keeps the worker
   * reading 1 GiB at ~140 MiB of RSS; 64 MiB took it to ~170 MiB and read
   * no faster on loopback.
   */
  maxWindowBytes: number;
  /** After a reset, the block fetched around a random read. */
  randomReadBlockBytes: number;
  /**
   * Data kept behind the furthest read, for the kernel's out-of-order reads.
   * Mountpoint keeps 1 MiB, enough for 128 KiB reads; where read_ahead_kb
   * is raised the kernel has 1 MiB reads in flight, up to 2 MiB apart.
   */
  backwardSeekBytes: number;
}

/** See discard(): what is cheaper to receive and drop than a new connection. */
const LINGER_MAX_BYTES = 512 * 1024;

export const DEFAULT_PREFETCH_CONFIG: PrefetchConfig = {
  initialRequestBytes: 1024 * 1024 + 128 * 1024,
  partSizeBytes: 8 * 1024 * 1024,
  maxWindowBytes: 32 * 1024 * 1024,
  randomReadBlockBytes: 16 * 1024,
  backwardSeekBytes: 4 * 1024 * 1024,
};

/**
 * One ranged GET of the window. Its bytes are copied, as they arrive, into
 * slabs from the pool (a segment smaller than a slab gets a buffer of its
 * size), given back once the window has let the segment go, no read is
 * copying from it and its transfer can write no more.
 */
class Segment implements RangeSink {
  readonly start: number;
  readonly end: number;
  private slabs: Buffer[] = [];
  private readonly slabBytes: number;
  received = 0;
  done = false;
  /** Let go by the window; a lingering transfer only keeps its connection. */
  discarded = false;
  /** Reads waiting for or copying this segment's bytes. */
  readers = 0;
  /** A GET is writing into the segment. */
  writing = false;
  /** Views of its slabs lent out (pin()): the disk cache is writing them. */
  private pins = 0;
  private freed = false;
  error: Error | undefined;
  readonly controller = new AbortController();
  private waiters: Array<() => void> = [];

  constructor(start: number, end: number, private readonly pool: SlabPool) {
    this.start = start;
    this.end = end;
    this.slabBytes = Math.min(SLAB_BYTES, Math.max(1, end - start));
  }

  get size(): number {
    return this.end - this.start;
  }

  /** Bytes of the GET; those past the segment's end are dropped (the body is still read to its end). */
  write(bytes: Buffer): void {
    if (this.done || this.freed) return;
    const n = Math.min(bytes.length, this.size - this.received);
    let copied = 0;
    while (copied < n) {
      const at = this.received + copied;
      const index = Math.floor(at / this.slabBytes);
      let slab = this.slabs[index];
      if (!slab) {
        slab = this.slabBytes === SLAB_BYTES ? this.pool.take() : Buffer.allocUnsafe(this.slabBytes);
        this.slabs.push(slab);
      }
      const offset = at - index * this.slabBytes;
      copied += bytes.copy(slab, offset, copied, copied + Math.min(n - copied, this.slabBytes - offset));
    }
    // Serve readers at once; the rest of the body only keeps the connection.
    this.filled(n);
  }

  /**
   * Slabs to receive the next `n` bytes in place (a block read from the
   * disk cache, no copy); undefined unless they start a whole slab.
   */
  slabsFor(n: number): Buffer[] | undefined {
    if (this.done || this.freed || this.slabBytes !== SLAB_BYTES || this.received % SLAB_BYTES !== 0 || this.received + n > this.size) return undefined;
    const out: Buffer[] = [];
    for (let i = this.received / SLAB_BYTES; i * SLAB_BYTES < this.received + n; i++) {
      let slab = this.slabs[i];
      if (!slab) {
        slab = this.pool.take();
        this.slabs.push(slab);
      }
      out.push(slab);
    }
    return out;
  }

  /** Views of the received bytes [from, to) (absolute), valid until unpin(). */
  pin(from: number, to: number): Buffer[] | undefined {
    if (this.freed || from < this.start || to > this.start + this.received) return undefined;
    const views: Buffer[] = [];
    for (let at = from - this.start; at < to - this.start;) {
      const index = Math.floor(at / this.slabBytes);
      const offset = at - index * this.slabBytes;
      const n = Math.min(this.slabBytes - offset, to - this.start - at);
      views.push(this.slabs[index]!.subarray(offset, offset + n));
      at += n;
    }
    this.pins++;
    return views;
  }

  unpin(): void {
    this.pins--;
    this.release();
  }

  /** The slabs (written by write(), or lent by slabsFor()) now hold the next `n` bytes. */
  filled(n: number): void {
    if (this.done || this.freed) return;
    this.received += n;
    if (this.received >= this.size) this.finish();
    else this.wake();
  }

  finish(error?: Error): void {
    this.done = true;
    this.error = error;
    this.wake();
  }

  /** Gives the slabs back once nothing can read or write them any more. */
  release(): void {
    if (this.freed || !this.discarded || this.readers > 0 || this.writing || this.pins > 0) return;
    this.freed = true;
    if (this.slabBytes === SLAB_BYTES) for (const slab of this.slabs) this.pool.give(slab);
    this.slabs = [];
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Resolves once bytes up to `absEnd` have arrived, or the segment ended. */
  async waitFor(absEnd: number): Promise<void> {
    while (!this.done && this.start + this.received < absEnd) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.error && this.start + this.received < absEnd) throw this.error;
  }

  /** Copies [from, to) (absolute offsets, already received) into target at targetOffset. */
  copyTo(from: number, to: number, target: Buffer, targetOffset: number): number {
    let at = from - this.start;
    const stop = Math.min(to - this.start, this.received);
    let written = 0;
    while (at < stop) {
      const index = Math.floor(at / this.slabBytes);
      const offset = at - index * this.slabBytes;
      const n = Math.min(this.slabBytes - offset, stop - at);
      this.slabs[index]!.copy(target, targetOffset + written, offset, offset + n);
      written += n;
      at += n;
    }
    return written;
  }
}

export interface PrefetcherStats {
  requests: number;
  resets: number;
}

export class Prefetcher {
  private readonly client: ObjectClient;
  private readonly key: string;
  private readonly sizeBytes: number;
  private readonly etag: string | undefined;
  /** Bytes handed to the reader so far: a changed object may be opened anew only before the first. */
  servedBytes = 0;
  private readonly config: PrefetchConfig;
  private readonly budget: MemoryBudget;
  private segments: Segment[] = [];
  /** End of the bytes requested so far (exclusive). */
  private requestedEnd = 0;
  private windowBytes = 0;
  /** Furthest byte a reader has asked for. */
  private highWater = 0;
  /** Set once the reader caught up with a request since the last reset. */
  private sequential = false;
  private closed = false;
  /**
   * The endpoint was unreachable: a GET gave up after its deadline. Reads
   * needing bytes not held fail the same way at once for as long again:
   * the kernel retries a failed readahead page with a read of its own,
   * which would otherwise wait the whole deadline a second time.
   */
  private unreachable: { error: S3RequestError; untilMs: number } | undefined;
  readonly stats: PrefetcherStats = { requests: 0, resets: 0 };

  /** The disk cache, when the mount has one: parts are read through it. */
  private readonly cache: DiskCache | undefined;

  constructor(client: ObjectClient, key: string, sizeBytes: number, etag: string | undefined, budget: MemoryBudget,
    config: PrefetchConfig = DEFAULT_PREFETCH_CONFIG, firstBytes?: Buffer, cache?: DiskCache) {
    this.client = client;
    this.key = key;
    this.sizeBytes = sizeBytes;
    this.etag = etag && etag !== '' ? etag : undefined;
    this.config = config;
    this.budget = budget;
    this.cache = cache;
    if (firstBytes && firstBytes.length > 0) this.seed(firstBytes.subarray(0, sizeBytes));
  }

  /** Starts the window with bytes already fetched (the lookup's first block): the first read needs no request. */
  private seed(data: Buffer): void {
    const seg = new Segment(0, data.length, sharedSlabs);
    seg.write(data);
    this.budget.forceReserve(seg.size);
    this.segments.push(seg);
    this.requestedEnd = seg.end;
  }

  /**
   * Reads up to `length` bytes at `offset` into `target`; returns the count
   * (0 at EOF). Rejects with kind PreconditionFailed once the object is no
   * longer the version this reader was opened for.
   */
  async read(offset: number, length: number, target: Buffer): Promise<number> {
    if (this.unreachable && Date.now() < this.unreachable.untilMs && !this.holds(offset, Math.min(offset + length, this.sizeBytes))) {
      throw this.unreachable.error;
    }
    if (this.closed) throw new Error('prefetcher closed');
    if (offset >= this.sizeBytes || length <= 0) return 0;
    const end = Math.min(offset + length, this.sizeBytes);
    if (!this.covers(offset)) this.reset(offset);
    // The reader reached the newest request: the access is sequential, so
    // the window doubles and from now on is kept full ahead of the reader.
    // "Reached" is any overlap: a read of 1 MiB may start just before the
    // newest request and, by the time the next arrives, the refill this one
    // makes has moved the newest request ahead again.
    const newest = this.segments[this.segments.length - 1];
    const caughtUp = newest !== undefined && end > newest.start;
    // Once the window is wider than a part, the refill issues the next part
    // before the reader reaches the newest one, so reaching it no longer
    // tells that the window is too narrow; a sequential reader that has to
    // wait for bytes does (the window stopped at about one part and a half:
    // one or two GETs in flight, whatever the round trip).
    const starved = this.sequential && this.waitsFor(offset, end);
    this.highWater = Math.max(this.highWater, end);
    this.ensureRequested(end);
    if (caughtUp || starved) {
      this.sequential = true;
      this.windowBytes = Math.min(this.config.maxWindowBytes, Math.max(this.windowBytes * 2, this.config.initialRequestBytes));
    }
    if (this.sequential) this.refill();

    let written = 0;
    let pos = offset;
    for (const seg of [...this.segments]) {
      if (seg.end <= pos) continue;
      if (seg.start > pos) break;
      if (seg.discarded && seg.controller.signal.aborted) {
        // A concurrent read on this handle (the kernel's readahead, or a
        // program's threads sharing a descriptor) moved the window away
        // before this read reached the part: read the rest anew.
        this.servedBytes += written;
        return written + await this.read(pos, end - pos, target.subarray(written));
      }
      const upTo = Math.min(end, seg.end);
      seg.readers++;
      try {
        await seg.waitFor(upTo);
        written += seg.copyTo(pos, upTo, target, written);
      } catch (err) {
        // Drop the failed part so the next read starts a fresh request.
        if (err instanceof S3RequestError && err.kind === 'Network') this.giveUp(err);
        this.dropFrom(seg);
        throw err;
      } finally {
        seg.readers--;
        if (seg.discarded) {
          this.stopIfUnwanted(seg);
          seg.release();
        }
      }
      pos = upTo;
      if (pos >= end) break;
    }
    this.trimBehind();
    this.servedBytes += written;
    return written;
  }

  close(): void {
    this.closed = true;
    for (const seg of this.segments) this.discard(seg);
    this.segments = [];
  }

  /**
   * The endpoint is unreachable: every read waiting for bytes fails now
   * with the same error, and no GET of this file goes on.
   */
  private giveUp(err: S3RequestError): void {
    this.unreachable = { error: err, untilMs: Date.now() + READ_DEADLINE_MS };
    for (const seg of this.segments) {
      if (seg.done) continue;
      seg.finish(err);
      seg.controller.abort();
    }
  }

  /** Whether every byte of [offset, end) has arrived. */
  private holds(offset: number, end: number): boolean {
    let pos = offset;
    for (const seg of this.segments) {
      if (seg.end <= pos) continue;
      if (seg.start > pos || seg.start + seg.received < Math.min(end, seg.end)) return false;
      pos = seg.end;
      if (pos >= end) return true;
    }
    return pos >= end;
  }

  /** Whether a read of [offset, end) would wait for bytes still on their way. */
  private waitsFor(offset: number, end: number): boolean {
    for (const seg of this.segments) {
      if (seg.end <= offset) continue;
      if (seg.start > offset) return false;
      return !seg.done && seg.start + seg.received < Math.min(end, seg.end);
    }
    return false;
  }

  private covers(offset: number): boolean {
    const first = this.segments[0];
    if (!first) return false;
    // Anything still held is served, also behind the newest read: the
    // kernel's concurrent reads arrive out of order, by as much as its
    // readahead window (1 MiB where read_ahead_kb is raised), and what
    // stays behind is already bounded by trimBehind().
    if (offset < first.start) return false;
    // Reading exactly where the window ends is still sequential.
    return offset <= this.requestedEnd;
  }

  private reset(offset: number): void {
    if (this.segments.length > 0 || this.requestedEnd > 0) this.stats.resets++;
    for (const seg of this.segments) this.discard(seg);
    this.segments = [];
    const block = this.config.randomReadBlockBytes;
    if (offset === 0) {
      this.requestedEnd = 0;
      this.windowBytes = this.config.initialRequestBytes;
    } else {
      this.requestedEnd = Math.floor(offset / block) * block;
      this.windowBytes = block;
    }
    this.highWater = offset;
    this.sequential = false;
  }

  private ensureRequested(end: number): void {
    while (this.requestedEnd < end) {
      const size = Math.min(this.config.partSizeBytes, Math.max(end - this.requestedEnd, this.windowBytes), this.sizeBytes - this.requestedEnd);
      this.budget.forceReserve(size);
      this.issue(this.requestedEnd, this.requestedEnd + size);
    }
  }

  private refill(): void {
    // Whole requests of min(window, part size): topping the window up by
    // each 128 KiB the kernel reads would cost a request per read.
    const target = Math.min(this.sizeBytes, this.highWater + this.windowBytes);
    const requestBytes = Math.min(this.config.partSizeBytes, this.windowBytes);
    while (this.requestedEnd < target) {
      const size = Math.min(requestBytes, this.sizeBytes - this.requestedEnd);
      if (!this.budget.tryReserve(size)) break;
      this.issue(this.requestedEnd, this.requestedEnd + size);
    }
  }

  private issue(start: number, end: number): void {
    const seg = new Segment(start, end, sharedSlabs);
    this.segments.push(seg);
    this.requestedEnd = end;
    void this.fetch(seg);
  }

  private async fetch(seg: Segment): Promise<void> {
    seg.writing = true;
    try {
      await this.fetchInto(seg);
    } finally {
      seg.writing = false;
      seg.release();
    }
  }

  /** One GET per part: the client retries it (and resumes a broken body) until its deadline, so a failure here is final. */
  private async fetchInto(seg: Segment): Promise<void> {
    this.stats.requests++;
    try {
      const opts = { signal: seg.controller.signal, ...(this.etag ? { ifMatch: this.etag } : {}) };
      if (this.cache && this.etag) {
        await readThroughCache(this.cache, this.client, { key: this.key, etag: this.etag, sizeBytes: this.sizeBytes }, { start: seg.start, end: seg.end }, seg, opts);
      } else {
        await this.client.getRange(this.key, { start: seg.start, end: seg.end }, seg, opts);
      }
      seg.finish();
    } catch (err) {
      // Every byte arrived and only the end of the answer failed, or the reader gave up on it.
      if (seg.done) return;
      if (seg.controller.signal.aborted) {
        seg.finish(new Error('read aborted'));
        return;
      }
      const e = toS3Error(err, { operation: 'GetObject', bucket: this.client.bucket, key: this.key });
      seg.finish(e);
    }
  }

  private discard(seg: Segment): void {
    // Aborting a request destroys its connection, and the next request then
    // pays for a new one (a round trip or two on a WAN). A request with
    // little left is allowed to finish instead; its bytes are dropped.
    seg.discarded = true;
    this.budget.release(seg.size);
    this.stopIfUnwanted(seg);
    seg.release();
  }

  /** Cancels a discarded segment's transfer once no read waits for it, unless it is nearly done. */
  private stopIfUnwanted(seg: Segment): void {
    if (seg.readers === 0 && !seg.done && seg.size - seg.received > LINGER_MAX_BYTES) seg.controller.abort();
  }

  private dropFrom(failed: Segment): void {
    const i = this.segments.indexOf(failed);
    if (i < 0) return;
    for (const seg of this.segments.slice(i)) this.discard(seg);
    this.segments = this.segments.slice(0, i);
    this.requestedEnd = failed.start;
  }

  private trimBehind(): void {
    const keepFrom = this.highWater - this.config.backwardSeekBytes;
    while (this.segments.length > 1 && this.segments[0]!.end <= keepFrom) {
      this.discard(this.segments.shift()!);
    }
  }
}
