/**
 * Fixed-size buffers for read-ahead data, reused from one part to the next.
 *
 * Why: a fresh buffer per received chunk (or per part) is memory the
 * garbage collector must find and the kernel must map and unmap; reading a
 * GiB that way cost the worker ~100 full collections and as much CPU in
 * page faults as in copying. Reused slabs cost neither. Free slabs are
 * kept up to a cap, and let go after a while without reads, so an idle
 * mount gives the memory back.
 */
export const SLAB_BYTES = 256 * 1024;

export interface SlabPoolOptions {
  /** Free slabs kept at most. */
  maxFree: number;
  /** Free slabs are dropped after this long without a take(). */
  idleMs: number;
}

export class SlabPool {
  private readonly free: Buffer[] = [];
  private lastTake = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SlabPoolOptions = { maxFree: 256, idleMs: 10_000 }) {}

  /** Free slabs held now (for tests). */
  get freeCount(): number {
    return this.free.length;
  }

  take(): Buffer {
    this.lastTake = Date.now();
    return this.free.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  }

  /** Gives a slab back; its bytes may be overwritten at once. */
  give(slab: Buffer): void {
    if (slab.length !== SLAB_BYTES || this.free.length >= this.options.maxFree) return;
    this.free.push(slab);
    if (!this.timer) {
      this.timer = setInterval(() => this.trim(), this.options.idleMs);
      this.timer.unref();
    }
  }

  private trim(): void {
    if (Date.now() - this.lastTake < this.options.idleMs) return;
    this.free.length = 0;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
