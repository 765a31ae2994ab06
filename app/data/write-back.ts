/**
 * Editing mode's upload queue: each staged file is uploaded once it has
 * been quiet (closed, not written) for a short delay, so "write a temporary
 * file, rename it over the original" uploads the final name once, and a
 * copy of many files keeps a fixed number of uploads in flight instead of
 * one round trip per file at close. The queue knows nothing of S3: it runs
 * the job it was given for an item, at most `concurrency` at once, never
 * twice at once for one item.
 */

export interface WriteBackConfig {
  /** Quiet time between schedule() and the job. */
  delayMs: number;
  /** Jobs running at once. */
  concurrency: number;
  /** A job that failed by itself (not for a caller of runNow) is told here, to be scheduled again. */
  onError?(item: object, err: unknown): void;
  /** The number of items scheduled or running changed. */
  onPendingChanged?(pending: number): void;
}

interface ItemState {
  timer: NodeJS.Timeout | undefined;
  /** The timer is the quiet period (not a retry's backoff): hurry() may end it. */
  quiet: boolean;
  running: Promise<void> | undefined;
  /** Scheduled again while running: run once more when it ends. */
  again: boolean;
}

export class WriteBack<T extends object> {
  private readonly job: (item: T) => Promise<void>;
  private readonly config: WriteBackConfig;
  private readonly items = new Map<T, ItemState>();
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private lastPending = 0;
  private mostActive = 0;
  private runs = 0;

  constructor(job: (item: T) => Promise<void>, config: WriteBackConfig) {
    this.job = job;
    this.config = config;
  }

  /** Jobs run so far, and the most that ran at once (the log at unmount). */
  get stats(): { runs: number; mostAtOnce: number } {
    return { runs: this.runs, mostAtOnce: this.mostActive };
  }

  /** Items scheduled, waiting for a slot or running. */
  get pending(): number {
    return this.items.size;
  }

  /** Whether the item is scheduled or running. */
  has(item: T): boolean {
    return this.items.has(item);
  }

  /**
   * (Re)starts the item's quiet period, or waits `delayMs` (a retry's
   * backoff); a running job is followed by another one.
   */
  schedule(item: T, delayMs?: number): void {
    const state = this.stateOf(item);
    if (state.running) {
      state.again = true;
      return;
    }
    if (state.timer) clearTimeout(state.timer);
    state.quiet = delayMs === undefined;
    state.timer = setTimeout(() => this.fire(item, state), delayMs ?? this.config.delayMs);
    this.changed();
  }

  /** Whether the item waits out its quiet period now (not a retry's backoff, not running). */
  inQuietPeriod(item: T): boolean {
    const state = this.items.get(item);
    return state?.timer !== undefined && state.quiet && !state.running;
  }

  /** Ends the item's quiet period now, if it is in one (a retry's backoff is kept). */
  hurry(item: T): void {
    const state = this.items.get(item);
    if (!state?.timer || !this.inQuietPeriod(item)) return;
    clearTimeout(state.timer);
    this.fire(item, state);
  }

  /** The item's timer is up (or cut short): its job starts. */
  private fire(item: T, state: ItemState): void {
    state.timer = undefined;
    void this.start(item, state).catch((err: unknown) => this.config.onError?.(item, err));
  }

  /**
   * Runs the job now (fsync), after a running one ends, and resolves or
   * rejects with its outcome.
   */
  async runNow(item: T): Promise<void> {
    for (;;) {
      // Looked up afresh each time: a job that ended meanwhile forgot its state.
      const state = this.stateOf(item);
      if (state.timer) clearTimeout(state.timer);
      state.timer = undefined;
      state.again = false;
      if (!state.running) return this.start(item, state);
      await state.running.catch(() => undefined);
    }
  }

  /** Resolves when a running job of the item has ended (its outcome is not reported here). */
  async settle(item: T): Promise<void> {
    const state = this.items.get(item);
    while (state?.running) await state.running.catch(() => undefined);
  }

  /** Forgets a scheduled item; a running job runs to its end, without a follow-up. */
  cancel(item: T): void {
    const state = this.items.get(item);
    if (!state) return;
    if (state.timer) clearTimeout(state.timer);
    state.timer = undefined;
    state.again = false;
    if (!state.running) {
      this.items.delete(item);
      this.changed();
    }
  }

  /** Runs every scheduled item now and waits until nothing is scheduled or running. */
  async drain(): Promise<void> {
    for (;;) {
      const runs: Promise<void>[] = [];
      for (const [item, state] of this.items) {
        if (state.timer) {
          clearTimeout(state.timer);
          state.timer = undefined;
          runs.push(this.start(item, state).catch((err: unknown) => this.config.onError?.(item, err)));
        } else if (state.running) {
          runs.push(state.running.catch(() => undefined));
        }
      }
      if (runs.length === 0) return;
      await Promise.all(runs);
    }
  }

  /** Forgets every scheduled item (unmount that abandons uploads); running jobs end by themselves. */
  clear(): void {
    for (const item of [...this.items.keys()]) this.cancel(item);
  }

  private stateOf(item: T): ItemState {
    let state = this.items.get(item);
    if (!state) {
      state = { timer: undefined, quiet: false, running: undefined, again: false };
      this.items.set(item, state);
    }
    return state;
  }

  private start(item: T, state: ItemState): Promise<void> {
    const run = (async () => {
      await this.slot();
      try {
        await this.job(item);
      } finally {
        this.active--;
        this.waiting.shift()?.();
      }
    })();
    state.running = run;
    this.changed();
    const end = (): void => {
      if (state.running !== run) return;
      state.running = undefined;
      if (state.again) {
        state.again = false;
        this.schedule(item);
      } else if (!state.timer && this.items.get(item) === state) {
        this.items.delete(item);
      }
      this.changed();
    };
    run.then(end, end);
    return run;
  }

  private async slot(): Promise<void> {
    if (this.active >= this.config.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    this.runs++;
    this.mostActive = Math.max(this.mostActive, this.active);
  }

  private changed(): void {
    const n = this.items.size;
    if (n === this.lastPending) return;
    this.lastPending = n;
    this.config.onPendingChanged?.(n);
  }
}
