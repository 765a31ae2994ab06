/**
 * Deterministic benchmark data: every object's bytes are a function of
 * (seed, offset), so the bench never holds a whole object in memory, any
 * process can check what it read against what was written, and the MD5 of a
 * written object can be computed without reading it back through a mount.
 *
 * Bytes come from one 17 MiB pool of xorshift noise; block i (1 MiB) of an
 * object with seed s is the pool slice at an offset hashed from (i, s), so
 * blocks differ (a part uploaded twice or out of order changes the MD5).
 */
import { createHash } from 'node:crypto';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Objects are made of blocks of this size. */
export const BLOCK = MiB;
const POOL_SPAN = 16 * MiB;

let poolCache: Buffer | undefined;

function pool(): Buffer {
  if (poolCache) return poolCache;
  const buf = Buffer.allocUnsafe(POOL_SPAN + BLOCK);
  let x = 0x2545f491;
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  poolCache = buf;
  return buf;
}

function blockOffset(block: number, seed: number): number {
  const h = (Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(seed + 1, 0x85ebca77)) >>> 0;
  return h % POOL_SPAN;
}

/** The bytes [pos, pos + len) of the object with this seed, written into target at targetOffset. */
export function fill(seed: number, pos: number, len: number, target: Buffer, targetOffset = 0): void {
  const p = pool();
  let done = 0;
  while (done < len) {
    const abs = pos + done;
    const block = Math.floor(abs / BLOCK);
    const inBlock = abs - block * BLOCK;
    const n = Math.min(len - done, BLOCK - inBlock);
    const from = blockOffset(block, seed) + inBlock;
    p.copy(target, targetOffset + done, from, from + n);
    done += n;
  }
}

/** A view (no copy) of block `block` when it is whole; the last block of an object may be shorter. */
export function blockView(seed: number, block: number, len = BLOCK): Buffer {
  const from = blockOffset(block, seed);
  return pool().subarray(from, from + len);
}

/** Whether buf[0..n) equals the object's bytes at pos. Compares everything when `full`, else 64-byte samples at both ends. */
export function matches(seed: number, pos: number, buf: Buffer, n: number, full = false): boolean {
  if (n <= 0) return true;
  const check = (from: number, len: number): boolean => {
    const want = Buffer.allocUnsafe(len);
    fill(seed, pos + from, len, want);
    return want.equals(buf.subarray(from, from + len));
  };
  if (full || n <= 128) return check(0, n);
  return check(0, 64) && check(n - 64, 64);
}

export function content(seed: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  fill(seed, 0, size, buf);
  return buf;
}

export function md5Of(seed: number, size: number): string {
  const h = createHash('md5');
  for (let pos = 0; pos < size; pos += BLOCK) {
    const len = Math.min(BLOCK, size - pos);
    h.update(blockView(seed, pos / BLOCK, len));
  }
  return h.digest('hex');
}

/** A small seeded PRNG (mulberry32) for offsets. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` distinct 4 KiB-aligned offsets in [0, size - len]. */
export function randomOffsets(seed: number, size: number, count: number, len: number): number[] {
  const next = prng(seed);
  const slots = Math.floor((size - len) / len) + 1;
  const seen = new Set<number>();
  const out: number[] = [];
  while (out.length < Math.min(count, slots)) {
    const s = Math.floor(next() * slots);
    if (seen.has(s)) continue;
    seen.add(s);
    out.push(s * len);
  }
  return out;
}

export const SMALL_SEED_BASE = 1000;
export const LIST_SEED = 77;
export const WRITE_SEED_BASE = 5000;
/** The editor save: the object before (EDIT_SEED) and the bytes saved over it (EDIT_SEED + 1). */
export const EDIT_SEED = 9000;
export const smallName = (i: number): string => `f${String(i).padStart(4, '0')}`;
export const listName = (i: number): string => `k${String(i).padStart(5, '0')}`;
