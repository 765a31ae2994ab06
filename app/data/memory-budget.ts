/**
 * A per-mount budget for prefetched bytes: every open file's read-ahead
 * window draws from it, so memory stays bounded however many files are open
 * (docs/benchmarks.md: worker RSS during big reads and 16 parallel readers).
 */
export class MemoryBudget {
  readonly limitBytes: number;
  private usedBytes = 0;

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  get used(): number {
    return this.usedBytes;
  }

  /** Reserves unless that would pass the limit. */
  tryReserve(bytes: number): boolean {
    if (this.usedBytes + bytes > this.limitBytes) return false;
    this.usedBytes += bytes;
    return true;
  }

  /** Reserves even past the limit: the bytes a reader is blocked on are always fetched. */
  forceReserve(bytes: number): void {
    this.usedBytes += bytes;
  }

  release(bytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - bytes);
  }
}
