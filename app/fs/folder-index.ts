/**
 * The names a folder's last listing held, in S3's key order, so a lookup can
 * re-list the stretch of the folder around a name instead of asking about
 * that one name (filesystem.ts, lookupByListing).
 *
 * Why: without FUSE_PARALLEL_DIROPS (libfuse 2) the kernel sends the
 * lookups of one folder one at a time, and once a listing is older than
 * --metadata-ttl each costs a round trip (HeadObject + ListObjectsV2). A
 * program that lists a folder and then opens its files (a file manager, a
 * data loader) paid that round trip per file. One ListObjectsV2 page that
 * starts just before the name answers the lookup as fresh as the pair would
 * and refreshes the next thousand names too.
 *
 * Positions are key suffixes below the folder's prefix: `name` for an
 * object, `name/` for a sub-folder. The index only chooses where a page
 * starts; what a lookup answers always comes from the page itself.
 */
import { compareKeyOrder } from './names.js';

/** Past this many names a folder is not indexed (memory); its lookups ask per name. */
export const MAX_INDEXED_NAMES = 100_000;
/** Folders indexed at once; the least recently listed are dropped. */
export const MAX_INDEXED_FOLDERS = 64;

export class FolderIndex {
  private positions: string[];

  /** `positions` in key order, as the listing's pages delivered them. */
  constructor(positions: string[]) {
    this.positions = positions;
  }

  get size(): number {
    return this.positions.length;
  }

  /** Index of the first position not ordered before `pos`. */
  private lowerBound(pos: string): number {
    let lo = 0;
    let hi = this.positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeyOrder(this.positions[mid]!, pos) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The last position ordered before `pos`, where a page reaching `pos` can start. */
  before(pos: string): string | undefined {
    const i = this.lowerBound(pos);
    return i > 0 ? this.positions[i - 1] : undefined;
  }

  /**
   * Replaces what the index held after `after` (exclusive) up to `through`
   * (inclusive; undefined = to the end) with a fresh page's positions.
   * Returns the positions that were there and are gone now.
   */
  replaceRange(after: string | undefined, through: string | undefined, fresh: readonly string[]): string[] {
    const from = after === undefined ? 0 : this.upperBound(after);
    const to = through === undefined ? this.positions.length : this.upperBound(through);
    const removed = this.positions.slice(from, Math.max(from, to));
    const kept = new Set(fresh);
    this.positions.splice(from, Math.max(0, to - from), ...fresh);
    return removed.filter((p) => !kept.has(p));
  }

  /** Index of the first position ordered after `pos`. */
  private upperBound(pos: string): number {
    let lo = 0;
    let hi = this.positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeyOrder(this.positions[mid]!, pos) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Merges one listing page's objects and sub-folders into positions in key order. */
export function pagePositions(prefix: string, objectKeys: readonly string[], commonPrefixes: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < objectKeys.length || j < commonPrefixes.length) {
    const a = objectKeys[i];
    const b = commonPrefixes[j];
    if (b === undefined || (a !== undefined && compareKeyOrder(a, b) <= 0)) {
      out.push(a!.slice(prefix.length));
      i++;
    } else {
      out.push(b.slice(prefix.length));
      j++;
    }
  }
  return out;
}

/** The folder indexes of one mount, least recently listed dropped first. */
export class FolderIndexes {
  private readonly byFolder = new Map<string, FolderIndex>();

  get(folder: string): FolderIndex | undefined {
    return this.byFolder.get(folder);
  }

  delete(folder: string): void {
    this.byFolder.delete(folder);
  }

  /** Forgets the folders that match (a renamed folder and those in it). */
  deleteWhere(matches: (folder: string) => boolean): void {
    for (const k of [...this.byFolder.keys()]) if (matches(k)) this.byFolder.delete(k);
  }

  set(folder: string, index: FolderIndex): void {
    this.byFolder.delete(folder);
    if (index.size > MAX_INDEXED_NAMES) return;
    this.byFolder.set(folder, index);
    while (this.byFolder.size > MAX_INDEXED_FOLDERS) {
      const oldest = this.byFolder.keys().next().value as string;
      this.byFolder.delete(oldest);
    }
  }
}
