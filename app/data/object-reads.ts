/**
 * Reading stored objects: a read-ahead per open file (prefetcher.ts), the
 * mount's memory budget they all draw from, and the first blocks that
 * lookups fetched, kept here for the open that usually follows.
 *
 * Why a lookup fetches data at all: a lookup by name sends a GET of the
 * object's first 64 KiB in place of HeadObject (the same round trip, priced
 * alike on S3), so the first read of the open that follows needs no
 * request and a small file is read whole. The fs model sees only what
 * HeadObject would have said; the bytes stay in this layer.
 */
import type { ObjectClient, ObjectInfo } from '../s3/object-client.js';
import { MemoryBudget } from './memory-budget.js';
import type { DiskCache } from './disk-cache.js';
import { DEFAULT_PREFETCH_CONFIG, Prefetcher, type PrefetchConfig } from './prefetcher.js';

/** Bytes a lookup by name fetches from the start of a file; the kernel's first read of a file is 16 KiB. */
const FIRST_BLOCK_BYTES = 64 * 1024;
/** First blocks kept for the open that follows a lookup. */
const MAX_FIRST_BLOCKS = 32;

export interface ObjectReadsConfig {
  /** Bytes of read-ahead all open files of the mount may hold together. */
  budgetBytes: number;
  /** `--read-part-size`. */
  readPartSizeBytes: number;
  prefetch?: Partial<PrefetchConfig> | undefined;
  /** `--cache`: parts are read through it, and what lookups fetch whole is stored in it. */
  cache?: DiskCache | undefined;
  now?: () => number;
}

const roundUp = (n: number, unit: number): number => Math.ceil(n / unit) * unit;

export class ObjectReads {
  private readonly budget: MemoryBudget;
  private readonly prefetchConfig: PrefetchConfig;
  private readonly firstBlocks = new Map<string, { etag: string; data: Buffer; untilMs: number }>();
  private readonly now: () => number;
  private readonly cache: DiskCache | undefined;

  constructor(private readonly client: ObjectClient, config: ObjectReadsConfig) {
    this.budget = new MemoryBudget(config.budgetBytes);
    this.now = config.now ?? Date.now;
    // The window holds at least as many parts as the default one, so a
    // larger --read-part-size gets GETs of its size (the window caps each
    // request); the per-mount budget still bounds the memory.
    const partsInWindow = DEFAULT_PREFETCH_CONFIG.maxWindowBytes / DEFAULT_PREFETCH_CONFIG.partSizeBytes;
    this.prefetchConfig = {
      ...DEFAULT_PREFETCH_CONFIG,
      partSizeBytes: config.readPartSizeBytes,
      maxWindowBytes: Math.max(DEFAULT_PREFETCH_CONFIG.maxWindowBytes, partsInWindow * config.readPartSizeBytes),
      ...config.prefetch,
    };
    this.cache = config.cache;
    if (this.cache) {
      // Requests in whole cache blocks, so every byte fetched can be stored:
      // a random read fetches its block (as mount-s3 does with a cache).
      const bs = this.cache.blockSizeBytes;
      this.prefetchConfig.initialRequestBytes = roundUp(this.prefetchConfig.initialRequestBytes, bs);
      this.prefetchConfig.randomReadBlockBytes = roundUp(this.prefetchConfig.randomReadBlockBytes, bs);
      this.prefetchConfig.partSizeBytes = roundUp(this.prefetchConfig.partSizeBytes, bs);
      this.prefetchConfig.maxWindowBytes = Math.max(this.prefetchConfig.maxWindowBytes, this.prefetchConfig.partSizeBytes);
    }
  }

  /** Read-ahead bytes held now by every open file. */
  get prefetchedBytes(): number {
    return this.budget.used;
  }

  /**
   * What HeadObject would say of the key, or undefined when it does not
   * exist. The object's first block is kept for an open within `keepMs`.
   */
  async lookup(key: string, keepMs: number): Promise<ObjectInfo | undefined> {
    const started = this.now();
    const first = await this.client.getFirstBytes(key, FIRST_BLOCK_BYTES);
    if (!first) return undefined;
    this.firstBlocks.delete(key);
    this.firstBlocks.set(key, { etag: first.info.etag, data: first.data, untilMs: started + keepMs });
    // A small object came whole with its lookup: the cache can serve it next time.
    const blockBytes = this.cache?.blockLength(first.info, 0) ?? 0;
    if (this.cache && blockBytes > 0 && first.data.length >= blockBytes) this.cache.store(first.info, 0, first.data.subarray(0, blockBytes));
    while (this.firstBlocks.size > MAX_FIRST_BLOCKS) this.firstBlocks.delete(this.firstBlocks.keys().next().value as string);
    return first.info;
  }

  /**
   * A reader of this version of the object; it fails with kind
   * PreconditionFailed if the object changed (the caller may look it up
   * again and open the new one, before it has served any bytes).
   */
  open(info: ObjectInfo): Prefetcher {
    return new Prefetcher(this.client, info.key, info.sizeBytes, info.etag, this.budget, this.prefetchConfig, this.takeFirstBlock(info), this.cache);
  }

  /** A reader of nothing (a folder opened for reading). */
  openEmpty(key: string): Prefetcher {
    return new Prefetcher(this.client, key, 0, undefined, this.budget, this.prefetchConfig);
  }

  /** The kept block, if it belongs to this version of the object and is fresh; it is handed out once. */
  private takeFirstBlock(info: ObjectInfo): Buffer | undefined {
    const b = this.firstBlocks.get(info.key);
    if (!b) return undefined;
    this.firstBlocks.delete(info.key);
    return b.etag === info.etag && b.untilMs > this.now() && b.data.length > 0 ? b.data : undefined;
  }
}
