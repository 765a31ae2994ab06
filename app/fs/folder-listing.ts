/**
 * Pieces of a streamed folder listing (S3FileSystem.listDir): the queue of
 * batches between the pages coming from S3 and the kernel taking them, and
 * the rule that holds a file back until the listing shows whether a folder
 * of the same name hides it.
 */
import { compareKeyOrder } from './names.js';

/** Batches handed from one producer to one reader, in order; a failure ends it. */
export class BatchQueue<T> {
  private readonly ready: T[] = [];
  private waiter: { resolve: (value: T) => void; reject: (err: unknown) => void } | undefined;
  private failure: { err: unknown } | undefined;

  push(value: T): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve(value);
    } else {
      this.ready.push(value);
    }
  }

  /** Batches already pushed are still read; then every next() rejects with `err`. */
  fail(err: unknown): void {
    if (this.failure) return;
    this.failure = { err };
    const w = this.waiter;
    if (w && this.ready.length === 0) {
      this.waiter = undefined;
      w.reject(err);
    }
  }

  next(): Promise<T> {
    if (this.ready.length > 0) return Promise.resolve(this.ready.shift()!);
    if (this.failure) return Promise.reject(this.failure.err);
    if (this.waiter) return Promise.reject(new Error('BatchQueue: one next() at a time'));
    return new Promise<T>((resolve, reject) => { this.waiter = { resolve, reject }; });
  }
}

/**
 * A folder hides a file of the same name, and S3 lists the key `x` before
 * the prefix `x/`, often pages apart (`x-1` sorts between them). A file is
 * therefore handed on only once the listing has reached `x/`: by then the
 * folder, if there is one, has been seen. Names are relative to the listed
 * prefix; a position is a relative key or common prefix (ending in '/').
 */
export class HeldFiles<T> {
  private held: Array<[string, T]> = [];

  add(files: ReadonlyArray<readonly [string, T]>): void {
    for (const [name, info] of files) this.held.push([name, info]);
  }

  /**
   * The files whose folder position the listing has passed, given the last
   * position listed so far; `undefined` when the listing is complete.
   */
  release(lastPosition: string | undefined): Array<[string, T]> {
    if (lastPosition === undefined) {
      const all = this.held;
      this.held = [];
      return all;
    }
    const out: Array<[string, T]> = [];
    const keep: Array<[string, T]> = [];
    for (const entry of this.held) {
      if (compareKeyOrder(`${entry[0]}/`, lastPosition) <= 0) out.push(entry);
      else keep.push(entry);
    }
    this.held = keep;
    return out;
  }
}
