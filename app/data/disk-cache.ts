/**
 * The local disk cache of object content (`--cache DIR`), after
 * Mountpoint's disk_data_cache.rs, kept across mounts.
 *
 * Objects are stored in blocks of `--cache-block-size`, one file per block,
 * named by a hash of the object version (key, ETag, size) and the block's
 * index. Each file starts with a header naming that version and block and
 * carrying a CRC-32 of the bytes; every read checks all of it, so a
 * truncated, corrupt or foreign block is a miss (fetched again and
 * logged), never wrong bytes. A block is indexed, and so read, only once
 * its file is written and closed; one written through the mount waits
 * under a temporary name until its upload gives it an ETag.
 *
 * The size stays under its limit at all times: least recently used blocks
 * are removed before a new one is written. The order survives a restart
 * through the files' modification times (touched at most once a minute
 * per block when read).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, statfs, unlink, utimes } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../log.js';
import { MIN_CACHE_BLOCKS } from '../options.js';
import { FolderLockedError, lockFolder, lockHolder, unlockFolder } from './folder-lock.js';

/** The folder of a cache's blocks; versioned, so a new layout never reads an old one's files. */
const BLOCKS_FOLDER = 'v1';

/** Another live worker uses the cache folder (one mount per cache at a time). */
export class CacheInUseError extends Error {
  override readonly name = 'CacheInUseError';
  constructor(readonly directory: string, readonly pid: number | undefined) {
    super(`the cache folder ${directory} is in use by ${pid === undefined ? 'another process' : `process ${pid}`} (another mount uses the same --cache folder)`);
  }
}

/** The cache folder cannot be created or written, or its disk is full. */
export class CacheUnusableError extends Error {
  override readonly name = 'CacheUnusableError';
  constructor(readonly directory: string, problem: string, options?: { cause?: unknown }) {
    super(`cannot use the cache folder ${directory}: ${problem}`, options);
  }
}

/**
 * The tray's cache folder for a mount: under the XDG cache directory
 * (~/Library/Caches on macOS), one per mount.
 */
export function defaultCacheDirectory(mountName: string, env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Caches', 'sos-mount', mountName);
  return path.join(env['XDG_CACHE_HOME'] ?? path.join(home, '.cache'), 'sos-mount', mountName);
}

/** Bytes the folder takes on disk, as `du` counts them (allocated blocks of files and folders); 0 if it does not exist. */
export async function cacheFolderUsage(directory: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
      total += (await stat(dir)).blocks * 512;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else total += await stat(p).then((s) => s.blocks * 512, () => 0);
    }
  };
  await walk(directory);
  return total;
}

/**
 * Empties a cache that no mount uses now, and returns the bytes freed. A
 * mounted cache is cleared by its worker (the `clear-cache` message);
 * here that is a CacheInUseError.
 */
export async function clearCacheFolder(directory: string): Promise<number> {
  const holder = await lockHolder(directory);
  if (holder !== undefined) throw new CacheInUseError(directory, holder);
  const blocks = path.join(directory, BLOCKS_FOLDER);
  const before = await cacheFolderUsage(blocks);
  await rm(blocks, { recursive: true, force: true });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  return before;
}

/** Layout of a block file's header; the block's bytes follow it. */
const HEADER_BYTES = 64;
const MAGIC = Buffer.from('SOSCACHE', 'latin1');
const FORMAT = 1;
const AT = { format: 8, blockSize: 12, identity: 16, index: 48, length: 52, crc: 56 } as const;
const IDENTITY_BYTES = 32;
/** Where blocks written through the mount wait for their upload's ETag (CacheFill). */
const PENDING_FOLDER = 'pending';
/** A read moves a block to the front of the LRU order at once, and on disk (its mtime) at most this often. */
const TOUCH_INTERVAL_MS = 60_000;
/** How long a reading of the disk's free space is trusted when the limit is "keep 5 % free". */
const STATFS_INTERVAL_MS = 1000;
/** mount-s3's default limit: the cache leaves this share of its disk free. */
const KEEP_FREE_SHARE = 0.05;
/** A folder entry's share of its folder's size, so the total follows what `du` counts. */
const DIRENT_BYTES = 64;
/**
 * Bytes of blocks waiting for the disk: past this a fetched block is served
 * but not stored, so a slow disk costs hit rate, never memory.
 */
const MAX_QUEUED_STORE_BYTES = 16 * 1024 * 1024;
/** Block buffers kept for reuse (takeBuffer). */
const MAX_POOLED_BUFFERS = 8;
/** Versions whose hash identity() keeps. */
const MAX_REMEMBERED_IDENTITIES = 256;
/** Incomplete blocks one write through the mount may hold (parts arrive in any order). */
const MAX_FILL_PARTIAL_BLOCKS = 8;

/** One version of an object: blocks are served only for the same key, ETag and size. */
export interface ObjectVersion {
  key: string;
  etag: string;
  sizeBytes: number;
}

export interface DiskCacheConfig {
  directory: string;
  blockSizeBytes: number;
  /** undefined: keep 5 % of the disk free. */
  maxSizeBytes?: number | undefined;
  log?: Logger | undefined;
  now?: () => number;
}

export interface DiskCacheStats {
  hits: number;
  misses: number;
  /** Blocks found corrupt, truncated or foreign (each also a miss). */
  invalid: number;
  stored: number;
  evicted: number;
  /** Blocks not stored: the disk refused, or too many waited for it. */
  skipped: number;
}

interface Entry {
  bytes: number;
  touchedMs: number;
}

function unusable(directory: string, err: unknown): CacheUnusableError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EROFS' ? 'it is on a read-only file system'
      : code === 'ENOTDIR' || code === 'EEXIST' ? 'it is not a folder'
        : code === 'ENOSPC' || code === 'EDQUOT' ? 'its disk is full'
          : (err as Error).message;
  return new CacheUnusableError(directory, reason, { cause: err });
}

/**
 * mkdir -p, with the real reason when it fails: a recursive mkdir says
 * ENOENT for a parent on a read-only file system, so the first missing
 * folder is made alone to learn why.
 */
async function makeFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let missing = dir;
  while (path.dirname(missing) !== missing && !(await stat(path.dirname(missing)).then(() => true, () => false))) missing = path.dirname(missing);
  await mkdir(missing, { mode: 0o700 });
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** A block file: its header, then its bytes, in one write. */
async function writeBlockFile(file: string, header: Buffer, parts: readonly Buffer[]): Promise<void> {
  const h = await open(file, 'w', 0o600);
  try {
    await h.writev([header, ...parts]);
  } finally {
    await h.close();
  }
}

const MiB = 1024 * 1024;
const mib = (bytes: number): string => `${Math.floor(bytes / MiB)} MiB`;

export class DiskCache {
  readonly directory: string;
  readonly blockSizeBytes: number;
  private readonly blocksDir: string;
  private readonly pendingDir: string;
  private readonly maxSizeBytes: number | undefined;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  /** Every stored block by its name under blocksDir, least recently used first. */
  private readonly entries = new Map<string, Entry>();
  /** Shard folders made (or being made) by this run, or found by scan(). */
  private readonly shards = new Map<string, Promise<void>>();
  private usedBytes = 0;
  /** The disk's block size: files take whole ones. */
  private fsBlockBytes = 4096;
  private limit = { bytes: 0, atMs: -Infinity };
  private queuedStoreBytes = 0;
  private readonly writes = new Set<Promise<unknown>>();
  /** Block files being written after their room was reserved (reserve() waits for them when the cache is full). */
  private readonly blockWrites = new Set<Promise<void>>();
  /** Blocks being fetched by a reader, so a second reader of the same block waits instead of fetching it again. */
  private readonly fetching = new Map<string, Promise<boolean>>();
  private readonly pool: Buffer[] = [];
  private buffersMade = 0;
  private readonly identities = new Map<string, Buffer>();
  private warnedWrite = false;
  private closed = false;
  private tempCounter = 0;
  readonly stats: DiskCacheStats = { hits: 0, misses: 0, invalid: 0, stored: 0, evicted: 0, skipped: 0 };

  private constructor(config: DiskCacheConfig) {
    this.directory = config.directory;
    this.blockSizeBytes = config.blockSizeBytes;
    this.blocksDir = path.join(config.directory, BLOCKS_FOLDER);
    this.pendingDir = path.join(this.blocksDir, PENDING_FOLDER);
    this.maxSizeBytes = config.maxSizeBytes;
    this.log = config.log;
    this.now = config.now ?? Date.now;
  }

  /**
   * Opens (creating it 0700) and locks the folder, indexes what an earlier
   * run left, and checks there is room for a few blocks. Throws
   * CacheInUseError or CacheUnusableError with a one-line reason.
   */
  static async open(config: DiskCacheConfig): Promise<DiskCache> {
    const cache = new DiskCache(config);
    const dir = config.directory;
    try {
      await makeFolder(dir);
      await lockFolder(dir);
    } catch (err) {
      if (err instanceof FolderLockedError) throw new CacheInUseError(dir, err.pid);
      throw unusable(dir, err);
    }
    try {
      await rm(cache.pendingDir, { recursive: true, force: true });
      await mkdir(cache.pendingDir, { recursive: true, mode: 0o700 });
      cache.fsBlockBytes = (await statfs(dir)).bsize || 4096;
      await cache.scan();
      await cache.refreshLimit(true);
    } catch (err) {
      await unlockFolder(dir);
      throw err instanceof CacheUnusableError ? err : unusable(dir, err);
    }
    const minimum = MIN_CACHE_BLOCKS * cache.costOf(cache.blockSizeBytes);
    const s = await statfs(dir);
    const free = s.bavail * s.bsize;
    // Room for a few blocks, counting what eviction can free.
    const room = cache.maxSizeBytes === undefined ? cache.limit.bytes : Math.min(cache.maxSizeBytes, cache.usedBytes + free);
    if (room < minimum) {
      await unlockFolder(dir);
      throw new CacheUnusableError(dir, cache.maxSizeBytes === undefined
        ? `its disk is full: ${mib(free)} free, and the cache leaves 5 % of the disk (${mib(s.blocks * s.bsize * KEEP_FREE_SHARE)}) free; free some space or set --max-cache-size`
        : `its disk is full: ${mib(free)} free`);
    }
    return cache;
  }

  /** Bytes the cache takes on disk now (its own count; cacheFolderUsage measures). */
  get sizeBytes(): number {
    return this.usedBytes;
  }

  get blocks(): number {
    return this.entries.size;
  }

  /** Reads what an earlier run stored, oldest use first (file mtimes). */
  private async scan(): Promise<void> {
    const found: { name: string; bytes: number; mtimeMs: number }[] = [];
    // The folders themselves count, as du counts them.
    this.usedBytes = (await stat(this.directory)).blocks * 512 + (await stat(this.blocksDir)).blocks * 512 + (await stat(this.pendingDir)).blocks * 512;
    for (const shard of await readdir(this.blocksDir)) {
      if (shard === PENDING_FOLDER) continue;
      const shardDir = path.join(this.blocksDir, shard);
      let names: string[];
      try {
        names = await readdir(shardDir);
      } catch {
        await rm(shardDir, { recursive: true, force: true });
        continue;
      }
      this.shards.set(shard, Promise.resolve());
      this.usedBytes += (await stat(shardDir)).blocks * 512;
      for (const name of names) {
        const s = await stat(path.join(shardDir, name)).catch(() => undefined);
        if (!s?.isFile()) continue;
        found.push({ name: `${shard}/${name}`, bytes: s.blocks * 512 + DIRENT_BYTES, mtimeMs: s.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of found) {
      this.entries.set(f.name, { bytes: f.bytes, touchedMs: f.mtimeMs });
      this.usedBytes += f.bytes;
    }
    if (found.length > 0) this.log?.info('cache opened', { directory: this.directory, blocks: found.length, sizeBytes: this.usedBytes });
  }

  /** The limit now: --max-cache-size, or what keeps 5 % of the disk free (read again at most once a second). */
  private async refreshLimit(force = false): Promise<number> {
    if (this.maxSizeBytes !== undefined) {
      this.limit = { bytes: this.maxSizeBytes, atMs: this.now() };
      return this.limit.bytes;
    }
    if (!force && this.now() - this.limit.atMs < STATFS_INTERVAL_MS) return this.limit.bytes;
    const s = await statfs(this.directory);
    // bavail: what an unprivileged writer can still use.
    this.limit = { bytes: this.usedBytes + s.bavail * s.bsize - s.blocks * s.bsize * KEEP_FREE_SHARE, atMs: this.now() };
    return this.limit.bytes;
  }

  /** What a block of `length` bytes takes on disk: whole file-system blocks, and its folder entry. */
  private costOf(length: number): number {
    return Math.ceil((HEADER_BYTES + length) / this.fsBlockBytes) * this.fsBlockBytes + DIRENT_BYTES;
  }

  /**
   * The version's hash, remembered for the versions read lately: a read
   * asks for it several times per block (fetching? stored? read), and with
   * small blocks that was a hash per few kilobytes.
   */
  private identity(v: ObjectVersion): Buffer {
    const text = `${v.key}\n${v.etag}\n${v.sizeBytes}`;
    let id = this.identities.get(text);
    if (!id) {
      id = createHash('sha256').update(text).digest();
      if (this.identities.size >= MAX_REMEMBERED_IDENTITIES) this.identities.delete(this.identities.keys().next().value as string);
      this.identities.set(text, id);
    }
    return id;
  }

  private nameOf(identity: Buffer, index: number): string {
    const hex = identity.toString('hex');
    return `${hex.slice(0, 2)}/${hex.slice(2, 40)}.${index}`;
  }

  /** Bytes of block `index` of the version: whole blocks but the last. */
  blockLength(v: ObjectVersion, index: number): number {
    return Math.max(0, Math.min(this.blockSizeBytes, v.sizeBytes - index * this.blockSizeBytes));
  }

  /** Whether the block is stored or being fetched (no disk access). */
  holds(v: ObjectVersion, index: number): boolean {
    const name = this.nameOf(this.identity(v), index);
    return !this.closed && (this.entries.has(name) || this.fetching.has(name));
  }

  /** When another reader fetches the block: resolves once it is stored (true) or will not be (false). */
  fetchingBlock(v: ObjectVersion, index: number): Promise<boolean> | undefined {
    return this.fetching.get(this.nameOf(this.identity(v), index));
  }

  /** Where the block's file is (tests damage it). */
  blockFile(v: ObjectVersion, index: number): string {
    return path.join(this.blocksDir, this.nameOf(this.identity(v), index));
  }

  /** Whether the index has the block (its file is checked only by read()). */
  stores(v: ObjectVersion, index: number): boolean {
    return !this.closed && this.entries.has(this.nameOf(this.identity(v), index));
  }

  /**
   * Hands the block's bytes to `use` (synchronously, in a buffer reused
   * once it returns) if the block is stored and whole; false for a miss. A
   * block that fails its checks is removed and logged.
   */
  async readBlock(v: ObjectVersion, index: number, use: (data: Buffer) => void): Promise<boolean> {
    const buffer = this.takeBuffer();
    try {
      const data = buffer.subarray(0, this.blockLength(v, index));
      if (!(await this.readBlockInto(v, index, [data]))) return false;
      use(data);
      return true;
    } finally {
      this.giveBuffer(buffer);
    }
  }

  /**
   * Reads the block straight into `buffers` (the reader's own memory, no
   * copy), checked as readBlock checks it; false for a miss, and then the
   * buffers hold nothing of use.
   */
  async readBlockInto(v: ObjectVersion, index: number, buffers: readonly Buffer[]): Promise<boolean> {
    const identity = this.identity(v);
    const name = this.nameOf(identity, index);
    const entry = this.entries.get(name);
    const length = this.blockLength(v, index);
    if (!entry || this.closed) {
      this.stats.misses++;
      return false;
    }
    const file = path.join(this.blocksDir, name);
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    const views: Buffer[] = [header];
    let room = length;
    for (const b of buffers) {
      if (room <= 0) break;
      views.push(b.subarray(0, Math.min(b.length, room)));
      room -= Math.min(b.length, room);
    }
    // One byte more than the block: a longer file is not a block either.
    views.push(Buffer.allocUnsafe(1));
    let got: number;
    try {
      const h = await open(file, 'r');
      try {
        got = (await h.readv(views, 0)).bytesRead;
      } finally {
        await h.close();
      }
    } catch (err) {
      this.forget(name);
      this.stats.misses++;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log?.warn('cache block unreadable', { key: v.key, block: index, error: (err as Error).message });
      return false;
    }
    const data = views.slice(1, -1);
    let problem = this.checkHeader(header, got, identity, index, length);
    if (problem === undefined) {
      let crc = 0;
      for (const d of data) crc = crc32(d, crc);
      if (crc !== header.readUInt32LE(AT.crc)) problem = 'checksum mismatch';
    }
    if (problem !== undefined) {
      this.invalid(v, index, name, file, problem);
      return false;
    }
    this.hit(name, entry, file);
    return true;
  }

  /** The block's bytes (a copy), or undefined for a miss. */
  async read(v: ObjectVersion, index: number): Promise<Buffer | undefined> {
    let copy: Buffer | undefined;
    await this.readBlock(v, index, (data) => { copy = Buffer.from(data); });
    return copy;
  }

  /**
   * A buffer of a block's size. Reads and fetches reuse
   * a few: a fresh megabyte per block cost more in allocation and garbage
   * collection than the read itself.
   */
  takeBuffer(): Buffer {
    return this.takeSpareBuffer() ?? Buffer.allocUnsafeSlow(this.blockSizeBytes);
  }

  /**
   * A pooled buffer, or undefined once MAX_POOLED_BUFFERS are in use: a
   * fetch that finds none does not store its block (memory stays bounded;
   * allocating and dropping a megabyte per block grew the worker's RSS by
   * 40 MiB).
   */
  takeSpareBuffer(): Buffer | undefined {
    const b = this.pool.pop();
    if (b) return b;
    if (this.buffersMade >= MAX_POOLED_BUFFERS) return undefined;
    this.buffersMade++;
    return Buffer.allocUnsafeSlow(this.blockSizeBytes);
  }

  giveBuffer(buffer: Buffer): void {
    if (this.pool.length < MAX_POOLED_BUFFERS && buffer.length === this.blockSizeBytes) this.pool.push(buffer);
  }

  /** Why a block file's header is not the block asked for (`fileBytes` read in all, header and data), or undefined. */
  private checkHeader(header: Buffer, fileBytes: number, identity: Buffer, index: number, length: number): string | undefined {
    if (fileBytes < HEADER_BYTES || !header.subarray(0, MAGIC.length).equals(MAGIC) || header.readUInt32LE(AT.format) !== FORMAT) return 'not a block file';
    if (!header.subarray(AT.identity, AT.identity + IDENTITY_BYTES).equals(identity) || header.readUInt32LE(AT.index) !== index) return 'a block of another object or version';
    if (header.readUInt32LE(AT.blockSize) !== this.blockSizeBytes) return 'a block of another block size';
    if (header.readUInt32LE(AT.length) !== length || fileBytes !== HEADER_BYTES + length) return `truncated (${fileBytes - HEADER_BYTES} of ${length} bytes)`;
    return undefined;
  }

  private invalid(v: ObjectVersion, index: number, name: string, file: string, problem: string): void {
    this.stats.invalid++;
    this.stats.misses++;
    this.log?.warn('cache block invalid, fetched again', { key: v.key, block: index, problem });
    this.forget(name);
    void unlink(file).catch(() => undefined);
  }

  /** A block read and checked: the most recently used now (last in the map's order). */
  private hit(name: string, entry: Entry, file: string): void {
    this.stats.hits++;
    this.entries.delete(name);
    this.entries.set(name, entry);
    const now = this.now();
    if (now - entry.touchedMs > TOUCH_INTERVAL_MS) {
      entry.touchedMs = now;
      void utimes(file, now / 1000, now / 1000).catch(() => undefined);
    }
  }

  /** A block file's header for `parts`, the block's bytes in order. */
  private header(identity: Buffer | undefined, index: number, parts: readonly Buffer[]): Buffer {
    const h = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(h, 0);
    h.writeUInt32LE(FORMAT, AT.format);
    h.writeUInt32LE(this.blockSizeBytes, AT.blockSize);
    identity?.copy(h, AT.identity);
    h.writeUInt32LE(index, AT.index);
    let length = 0;
    let crc = 0;
    for (const p of parts) {
      length += p.length;
      crc = crc32(p, crc);
    }
    h.writeUInt32LE(length, AT.length);
    h.writeUInt32LE(crc, AT.crc);
    return h;
  }

  private forget(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    this.entries.delete(name);
    this.usedBytes -= e.bytes;
  }

  /**
   * Makes room for `bytes` more: least recently used blocks go first, and
   * their files are gone before this returns, so the folder never holds
   * more than the limit. Returns the function that ends the reservation's
   * hold (`hold`: a block write others may wait for), or false when the
   * room cannot be had.
   */
  private async reserve(bytes: number, hold = false): Promise<false | (() => void)> {
    for (;;) {
      let limit: number;
      try {
        limit = await this.refreshLimit();
      } catch {
        return false;
      }
      const victims: string[] = [];
      while (this.usedBytes + bytes > limit && this.entries.size > 0) {
        const oldest = this.entries.keys().next().value as string;
        this.forget(oldest);
        victims.push(oldest);
      }
      if (victims.length > 0) {
        this.stats.evicted += victims.length;
        await Promise.all(victims.map((n) => unlink(path.join(this.blocksDir, n)).catch(() => undefined)));
      }
      if (this.usedBytes + bytes <= limit) {
        this.usedBytes += bytes;
        // A block write's room is held from this moment (holdRoom), before any other reserve() runs.
        return hold ? this.holdRoom() : () => {};
      }
      // The room is held by blocks being written, not evictable yet: a
      // small cache read fast would otherwise skip blocks it could keep.
      const writing = [...this.blockWrites];
      if (writing.length === 0) return false;
      await Promise.race(writing);
    }
  }

  /** A block write holding reserved room: reserve() waits for it when the cache is full. */
  private holdRoom(): () => void {
    let done!: () => void;
    const p = new Promise<void>((resolve) => { done = resolve; });
    this.blockWrites.add(p);
    return () => {
      this.blockWrites.delete(p);
      done();
    };
  }

  /** The shard folder of a block name, created (and counted) the first time. */
  private shardOf(name: string): Promise<void> {
    const shard = name.slice(0, 2);
    let ready = this.shards.get(shard);
    if (!ready) {
      // Blocks of one shard written at once all wait for the one mkdir.
      this.usedBytes += this.fsBlockBytes;
      ready = mkdir(path.join(this.blocksDir, shard), { recursive: true, mode: 0o700 }).then(() => undefined);
      ready.catch(() => this.shards.delete(shard));
      this.shards.set(shard, ready);
    }
    return ready;
  }

  private tempPath(): string {
    return path.join(this.pendingDir, `${process.pid}-${++this.tempCounter}`);
  }

  /**
   * Stores a block in the background; skipped (counted, never an error) when
   * the disk refuses or too many blocks already wait for it.
   */
  store(v: ObjectVersion, index: number, data: Buffer): void {
    void this.storeBlock(v, index, [data]);
  }

  /** store() of a block given in parts: true once it is on disk, false if it is not stored. */
  private storeBlock(v: ObjectVersion, index: number, parts: readonly Buffer[]): Promise<boolean> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (this.closed || length !== this.blockLength(v, index) || length === 0) return Promise.resolve(false);
    const identity = this.identity(v);
    const name = this.nameOf(identity, index);
    if (this.entries.has(name)) return Promise.resolve(true);
    if (this.queuedStoreBytes + length > MAX_QUEUED_STORE_BYTES) {
      this.stats.skipped++;
      return Promise.resolve(false);
    }
    this.queuedStoreBytes += length;
    const write = (async () => {
      try {
        return await this.writeBlock(name, this.header(identity, index, parts), parts, length);
      } finally {
        this.queuedStoreBytes -= length;
      }
    })();
    this.track(write);
    return write;
  }

  private track(p: Promise<unknown>): void {
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
  }

  private async writeBlock(name: string, header: Buffer, parts: readonly Buffer[], length: number): Promise<boolean> {
    const cost = this.costOf(length);
    const release = await this.reserve(cost, true);
    if (!release) {
      this.stats.skipped++;
      return false;
    }
    // Written in place: a block is read only once indexed, which is after
    // its close, and the folder has one writer (the lock); a write cut by a
    // crash is found truncated by its first read.
    const file = path.join(this.blocksDir, name);
    try {
      await this.shardOf(name);
      await writeBlockFile(file, header, parts);
      if (this.closed) throw new Error('cache closed');
      this.addEntry(name, cost);
      return true;
    } catch (err) {
      this.usedBytes -= cost;
      await unlink(file).catch(() => undefined);
      this.writeFailed(err);
      return false;
    } finally {
      release();
    }
  }

  /** Renames a finished block file into place and indexes it. */
  private async place(temp: string, name: string, cost: number): Promise<void> {
    if (this.closed) throw new Error('cache closed');
    await rename(temp, path.join(this.blocksDir, name));
    this.addEntry(name, cost);
  }

  private addEntry(name: string, cost: number): void {
    this.forget(name);
    this.entries.set(name, { bytes: cost, touchedMs: this.now() });
    this.stats.stored++;
  }

  private writeFailed(err: unknown): void {
    this.stats.skipped++;
    if (this.warnedWrite) return;
    this.warnedWrite = true;
    this.log?.warn('cache write failed; reads go on from the bucket', { directory: this.directory, error: (err as Error).message });
  }

  /**
   * Marks blocks as being fetched by the caller: a reader that wants one of
   * them waits until it is stored (fetchingBlock). The caller settles each
   * with `done`: its bytes in parts (stored, then `release` lets their
   * memory go) or undefined if the fetch failed.
   */
  beginFetch(v: ObjectVersion, first: number, last: number): { done(index: number, parts: readonly Buffer[] | undefined, release?: () => void): void } {
    const identity = this.identity(v);
    const settle = new Map<number, (parts: readonly Buffer[] | undefined, release?: () => void) => void>();
    for (let i = first; i <= last; i++) {
      const name = this.nameOf(identity, i);
      if (this.fetching.has(name)) continue;
      let resolve!: (stored: boolean) => void;
      const p = new Promise<boolean>((r) => { resolve = r; });
      this.fetching.set(name, p);
      settle.set(i, (parts, release) => {
        const finish = (stored: boolean): void => {
          if (this.fetching.get(name) === p) this.fetching.delete(name);
          release?.();
          resolve(stored);
        };
        if (parts) void this.storeBlock(v, i, parts).then(finish, () => finish(false));
        else finish(false);
      });
    }
    return {
      done: (index, parts, release) => {
        const finish = settle.get(index);
        if (!finish) {
          release?.();
          return;
        }
        settle.delete(index);
        finish(parts, release);
      },
    };
  }

  /** A cache copy of what is written through the mount, stored once the object's ETag is known. */
  fill(): CacheFill {
    return new CacheFill(this);
  }

  /** @internal CacheFill's access to the folder. */
  async writePending(index: number, data: Buffer): Promise<{ temp: string; cost: number } | undefined> {
    if (this.closed) return undefined;
    const cost = this.costOf(data.length);
    if (!(await this.reserve(cost))) return undefined;
    const temp = this.tempPath();
    try {
      await writeBlockFile(temp, this.header(undefined, index, [data]), [data]);
      return { temp, cost };
    } catch (err) {
      this.usedBytes -= cost;
      await unlink(temp).catch(() => undefined);
      this.writeFailed(err);
      return undefined;
    }
  }

  /** @internal Names a pending block for its version (its header gets the identity) and puts it in place. */
  async commitPending(v: ObjectVersion, index: number, pending: { temp: string; cost: number }): Promise<void> {
    const identity = this.identity(v);
    const name = this.nameOf(identity, index);
    try {
      const h = await open(pending.temp, 'r+');
      try {
        await h.write(identity, 0, IDENTITY_BYTES, AT.identity);
      } finally {
        await h.close();
      }
      await this.shardOf(name);
      await this.place(pending.temp, name, pending.cost);
    } catch (err) {
      await this.releasePending(pending);
      this.writeFailed(err);
    }
  }

  /** @internal */
  async releasePending(pending: { temp: string; cost: number }): Promise<void> {
    this.usedBytes -= pending.cost;
    await unlink(pending.temp).catch(() => undefined);
  }

  /** @internal */
  trackWrite(p: Promise<unknown>): void {
    this.track(p);
  }

  /** Removes every block (Clear cache while mounted); returns the bytes freed, as counted. */
  async clear(): Promise<number> {
    await this.settled();
    const before = this.usedBytes;
    const names = [...this.entries.keys()];
    for (const n of names) this.forget(n);
    await Promise.all(names.map((n) => unlink(path.join(this.blocksDir, n)).catch(() => undefined)));
    this.log?.info('cache cleared', { directory: this.directory, blocks: names.length, freedBytes: before - this.usedBytes });
    return before - this.usedBytes;
  }

  /** Waits for the blocks being written. */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
  }

  async close(): Promise<void> {
    await this.settled();
    this.closed = true;
    this.log?.info('cache', { ...this.stats, sizeBytes: this.usedBytes, blocks: this.entries.size });
    await rm(this.pendingDir, { recursive: true, force: true }).catch(() => undefined);
    await unlockFolder(this.directory);
  }
}

/**
 * What a program writes through the mount, kept for the cache: whole
 * blocks go to the pending folder as they complete (parts may arrive in
 * any order), the last one is held until the size is known; commit()
 * names them for the version the upload produced. Best effort: a fill that
 * would hold too much gives up quietly.
 */
export class CacheFill {
  private readonly partial = new Map<number, { data: Buffer; received: number }>();
  private readonly pending = new Map<number, Promise<{ temp: string; cost: number } | undefined>>();
  private addedBytes = 0;
  private failed = false;
  private ended = false;

  constructor(private readonly cache: DiskCache) {}

  /** Bytes at `offset` of the file (copied now: the caller may reuse its buffer). */
  add(offset: number, bytes: Buffer): void {
    if (this.failed || this.ended) return;
    const bs = this.cache.blockSizeBytes;
    let pos = 0;
    while (pos < bytes.length) {
      const at = offset + pos;
      const index = Math.floor(at / bs);
      const within = at - index * bs;
      const n = Math.min(bytes.length - pos, bs - within);
      let block = this.partial.get(index);
      if (!block) {
        if (this.pending.has(index) || this.partial.size >= MAX_FILL_PARTIAL_BLOCKS) return this.giveUp();
        block = { data: Buffer.allocUnsafe(bs), received: 0 };
        this.partial.set(index, block);
      }
      bytes.copy(block.data, within, pos, pos + n);
      block.received += n;
      pos += n;
      if (block.received === bs) {
        this.partial.delete(index);
        const p = this.cache.writePending(index, block.data);
        this.pending.set(index, p);
        this.cache.trackWrite(p);
      }
    }
    this.addedBytes += bytes.length;
  }

  /** The upload stored the object as `v`: its blocks become readable from the cache. */
  commit(v: ObjectVersion): void {
    if (this.ended) return;
    this.ended = true;
    const bs = this.cache.blockSizeBytes;
    const blocks = Math.ceil(v.sizeBytes / bs);
    const tail = this.partial.get(blocks - 1);
    // Whole only if every byte was added once (a rewrite at an offset would count twice).
    const whole = !this.failed && this.addedBytes === v.sizeBytes && this.pending.size + (tail ? 1 : 0) === blocks
      && (!tail || tail.received === this.cache.blockLength(v, blocks - 1));
    const pending = [...this.pending];
    this.pending.clear();
    this.partial.clear();
    this.cache.trackWrite((async () => {
      const written = await Promise.all(pending.map(async ([i, p]) => [i, await p] as const));
      if (!whole || written.some(([, w]) => w === undefined)) {
        await Promise.all(written.map(([, w]) => (w ? this.cache.releasePending(w) : undefined)));
        return;
      }
      for (const [i, w] of written) await this.cache.commitPending(v, i, w!);
      if (tail) this.cache.store(v, blocks - 1, tail.data.subarray(0, tail.received));
    })());
  }

  /** The upload failed or was abandoned: nothing is stored. */
  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.giveUp();
  }

  private giveUp(): void {
    this.failed = true;
    this.partial.clear();
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.cache.trackWrite(Promise.all(pending).then((ws) => Promise.all(ws.map((w) => (w ? this.cache.releasePending(w) : undefined)))));
  }
}
