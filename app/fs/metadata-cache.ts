/**
 * Remote metadata with time-to-live, as Mountpoint keeps it: what a listing
 * or a lookup learned about a path is trusted for `--metadata-ttl`, what it
 * learned is missing for `--negative-metadata-ttl`. Local state (folders
 * made with mkdir, files being written) is not here; see filesystem.ts.
 */
import type { ObjectInfo } from '../s3/object-client.js';

export type RemoteEntry =
  | { kind: 'file'; info: ObjectInfo }
  | { kind: 'dir' }
  | { kind: 'missing' };

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

interface Cached {
  entry: RemoteEntry;
  expiresAtMs: number;
}

export class MetadataCache {
  private readonly entries = new Map<string, Cached>();
  private readonly clock: Clock;
  readonly ttlMs: number;
  readonly negativeTtlMs: number;

  constructor(ttlMs: number, negativeTtlMs: number, clock: Clock = systemClock) {
    this.ttlMs = ttlMs;
    this.negativeTtlMs = negativeTtlMs;
    this.clock = clock;
  }

  get(fusePath: string): RemoteEntry | undefined {
    const c = this.entries.get(fusePath);
    if (!c) return undefined;
    if (c.expiresAtMs <= this.clock.now()) {
      this.entries.delete(fusePath);
      return undefined;
    }
    return c.entry;
  }

  /** How long a cached entry stays trusted; undefined if there is none. */
  remainingMs(fusePath: string): number | undefined {
    const c = this.entries.get(fusePath);
    if (!c) return undefined;
    const left = c.expiresAtMs - this.clock.now();
    return left > 0 ? left : undefined;
  }

  /**
   * Stores an entry. `fromMs` is when the information was complete: a
   * listing of a big folder counts from its last page, so `ls -l` of 10,000
   * keys needs no request per file even with a short TTL.
   */
  set(fusePath: string, entry: RemoteEntry, fromMs: number = this.clock.now()): void {
    const ttl = entry.kind === 'missing' ? this.negativeTtlMs : this.ttlMs;
    if (ttl <= 0) {
      this.entries.delete(fusePath);
      return;
    }
    this.entries.set(fusePath, { entry, expiresAtMs: fromMs + ttl });
  }

  delete(fusePath: string): void {
    this.entries.delete(fusePath);
  }

  /** Drops every entry whose path matches (a renamed folder's contents). */
  deleteWhere(matches: (fusePath: string) => boolean): void {
    for (const k of [...this.entries.keys()]) if (matches(k)) this.entries.delete(k);
  }

  /** Bounds memory: drops expired entries (called after each listing). */
  sweep(): void {
    const now = this.clock.now();
    for (const [k, c] of this.entries) if (c.expiresAtMs <= now) this.entries.delete(k);
  }
}
