/**
 * A ranged read of one object version through the disk cache: blocks the
 * cache holds are read from disk, runs of missing blocks are fetched with
 * one GET each, widened to whole blocks so they can be stored. Bytes reach
 * the sink in order and as they arrive (a reader waiting for the first
 * bytes of a miss does not wait for its whole block).
 */
import type { ByteRange, ObjectClient, RangeSink, RequestOptions } from '../s3/object-client.js';
import type { DiskCache, ObjectVersion } from './disk-cache.js';

/**
 * A sink that can lend its own memory for the next bytes (the prefetcher's
 * segments): a block read from disk lands there with no copy.
 */
export interface InPlaceSink extends RangeSink {
  /** Buffers to hold the next `bytes` bytes, in order; undefined when the sink cannot lend them now. */
  slabsFor?(bytes: number): Buffer[] | undefined;
  /** The lent buffers now hold the next `bytes` bytes. */
  filled?(bytes: number): void;
  /**
   * Views of bytes [from, to) (absolute offsets) the sink holds, kept
   * valid until unpin(): a fetched block is stored from them, no copy.
   */
  pin?(from: number, to: number): Buffer[] | undefined;
  unpin?(): void;
}

export async function readThroughCache(
  cache: DiskCache,
  client: Pick<ObjectClient, 'getRange'>,
  v: ObjectVersion,
  range: ByteRange,
  sink: InPlaceSink,
  opts: RequestOptions & { ifMatch?: string },
): Promise<void> {
  const bs = cache.blockSizeBytes;
  const end = Math.min(range.end, v.sizeBytes);
  let pos = range.start;
  while (pos < end) {
    opts.signal?.throwIfAborted();
    const index = Math.floor(pos / bs);
    const blockStart = index * bs;
    const deliver = (data: Buffer): void => {
      const upTo = Math.min(end, blockStart + data.length);
      sink.write(data.subarray(pos - blockStart, upTo - blockStart));
      pos = upTo;
    };
    // A block another reader fetches is read from disk once stored.
    const fetching = cache.fetchingBlock(v, index);
    if (fetching) await fetching;
    if (cache.stores(v, index)) {
      const length = cache.blockLength(v, index);
      // The whole block, where the sink can lend its memory: read in place.
      const slabs = pos === blockStart && blockStart + length <= end ? sink.slabsFor?.(length) : undefined;
      if (slabs) {
        if (await cache.readBlockInto(v, index, slabs)) {
          sink.filled!(length);
          pos += length;
          continue;
        }
      } else if (await cache.readBlock(v, index, deliver)) continue;
    }
    // Another reader may have taken the block up while this one waited.
    if (cache.holds(v, index)) continue;
    // The run of blocks nobody holds or fetches, from this one on, claimed
    // before any await so that no other reader fetches them too.
    let last = index;
    while ((last + 1) * bs < end && !cache.holds(v, last + 1)) last++;
    pos = await fetchBlocks(cache, client, v, index, last, pos, end, sink, opts);
  }
}

/** One GET of blocks first..last; returns the offset delivered up to. */
async function fetchBlocks(
  cache: DiskCache,
  client: Pick<ObjectClient, 'getRange'>,
  v: ObjectVersion,
  first: number,
  last: number,
  from: number,
  end: number,
  sink: InPlaceSink,
  opts: RequestOptions & { ifMatch?: string },
): Promise<number> {
  const bs = cache.blockSizeBytes;
  const start = first * bs;
  const stop = Math.min((last + 1) * bs, v.sizeBytes);
  const fetch = cache.beginFetch(v, first, last);
  let at = start;
  let delivered = from;
  let index = first;
  /**
   * The block being received. A block that lands whole in the sink is
   * stored from the sink's memory (pinned); one it gets only part of is
   * assembled in a pooled buffer, or not stored when none is free.
   */
  let inSink = false;
  let block: Buffer | undefined;
  let buffer: Buffer | undefined;
  const startBlock = (): void => {
    const blockStart = index * bs;
    inSink = sink.pin !== undefined && blockStart >= from && blockStart + cache.blockLength(v, index) <= end;
    if (!inSink) {
      buffer = cache.takeSpareBuffer();
      block = buffer?.subarray(0, cache.blockLength(v, index));
    }
  };
  const endBlock = (): void => {
    if (inSink) {
      const blockStart = index * bs;
      const views = sink.pin!(blockStart, blockStart + cache.blockLength(v, index));
      fetch.done(index, views, views ? () => sink.unpin!() : undefined);
    } else {
      const b = buffer;
      fetch.done(index, block ? [block] : undefined, b ? () => cache.giveBuffer(b) : undefined);
    }
    block = undefined;
    buffer = undefined;
    index++;
  };
  startBlock();
  const blockSink: RangeSink = {
    write(bytes: Buffer): void {
      let pos = 0;
      while (pos < bytes.length && at < stop) {
        const length = cache.blockLength(v, index);
        const within = at - index * bs;
        const n = Math.min(bytes.length - pos, length - within);
        if (block) bytes.copy(block, within, pos, pos + n);
        // The caller's part of these bytes, in order.
        const a = Math.max(at, delivered);
        const b = Math.min(at + n, end);
        if (b > a) {
          sink.write(bytes.subarray(pos + (a - at), pos + (b - at)));
          delivered = b;
        }
        at += n;
        pos += n;
        if (within + n === length) {
          endBlock();
          if (at < stop) startBlock();
        }
      }
    },
  };
  try {
    await client.getRange(v.key, { start, end: stop }, blockSink, opts);
  } finally {
    // Blocks the GET did not finish: their waiters fetch them themselves.
    const unfinished = buffer;
    for (let i = index; i <= last; i++) fetch.done(i, undefined, i === index && unfinished ? () => cache.giveBuffer(unfinished) : undefined);
  }
  if (delivered < Math.min(end, stop)) throw new Error(`${v.key}: the answer ended at byte ${at} of ${stop}`);
  return delivered;
}
