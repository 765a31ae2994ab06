/**
 * The file-system model: FUSE-shaped operations (paths in, stats and errnos
 * out) over an {@link ObjectClient}, with Mountpoint's semantics. Every
 * refusal comes from the errno table (errno.ts); the FUSE adapter only
 * translates. Names and hidden keys: names.ts. Remote metadata:
 * metadata-cache.ts. Local state lives here: folders made with mkdir that
 * hold no object yet, and files being written.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import type { ListPage, ObjectClient, ObjectInfo } from '../s3/object-client.js';
import type { Prefetcher, PrefetchConfig } from '../data/prefetcher.js';
import { ObjectReads } from '../data/object-reads.js';
import type { CacheFill, DiskCache } from '../data/disk-cache.js';
import { PartLimitError, Uploader, type UploadTracker } from '../data/uploader.js';
import { S3RequestError } from '../s3/errors.js';
import type { Logger } from '../log.js';
import { DEFAULT_UPLOAD_DELAY_MS, type MountOptions } from '../options.js';
import { silentLogger } from '../log.js';
import { FsError, refuse, toFsError } from './errno.js';
import { MetadataCache, systemClock, type Clock, type RemoteEntry } from './metadata-cache.js';
import {
  MAX_KEY_BYTES, baseName, compareKeyOrder, dirPrefix, fileKey, isInside, isValidName, joinPath, parentPath,
} from './names.js';
import { FolderIndex, FolderIndexes, pagePositions } from './folder-index.js';
import { BatchQueue, HeldFiles } from './folder-listing.js';
import type { RecoveredStage, StagedFile, StagingArea } from '../data/staging.js';
import { StageConflictError, uploadStagedFile } from '../data/staged-upload.js';
import { WriteBack } from '../data/write-back.js';
import { conflictName } from './conflict-name.js';
import { FolderRenameError, renameFolderKeys } from './folder-rename.js';

/** The mount's flags the model obeys, plus the numbers derived from them in mount.ts. */
export interface FsConfig extends Pick<MountOptions,
  'prefix' | 'readOnly' | 'allowDelete' | 'allowOverwrite' | 'uid' | 'gid' | 'fileMode' | 'dirMode' | 'readPartSizeBytes' | 'writePartSizeBytes'> {
  metadataTtlMs: number;
  negativeMetadataTtlMs: number;
  /** Parts of one upload in flight at once. */
  maxPartsInFlight: number;
  /** Bytes of read-ahead all open files of the mount may hold together. */
  prefetchBudgetBytes: number;
  prefetch?: Partial<PrefetchConfig>;
  uploadTracker?: UploadTracker | undefined;
  /** Editing mode (--allow-edit): writes are staged in `staging`, required then. */
  allowEdit?: boolean;
  /** Editing mode: quiet time after the last close before the upload. */
  uploadDelayMs?: number;
  /** Editing mode's local copies. */
  staging?: StagingArea | undefined;
  /** Editing mode: files uploaded at once, and keys moved at once by a folder rename. */
  maxUploadsInFlight?: number;
  /** `--cache`: reads go through it; what is written is stored in it once uploaded. */
  dataCache?: DiskCache | undefined;
}

export interface Stat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  blocks: number;
  blksize: number;
}

/** Entries of a folder listing as they arrive; `done` marks the last batch. */
export interface DirBatch {
  names: string[];
  stats: Stat[];
  done: boolean;
}

/** A folder listing being read: one next() at a time; close() ends it early. */
export interface DirStream {
  next(): Promise<DirBatch>;
  close(): void;
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number;
  files: number; ffree: number; favail: number; namemax: number;
}

interface WriteHandle {
  kind: 'write';
  path: string;
  uploader: Uploader;
  /** The written bytes kept for the disk cache, when the mount has one. */
  fill: CacheFill | undefined;
  /** Set once flush/fsync completed the object: later writes get EIO. */
  completed: boolean;
  openedAtMs: number;
}

interface ReadHandle {
  kind: 'read';
  path: string;
  prefetcher: Prefetcher;
  /** Opened with the kernel's cached pages kept (keepsPageCache). */
  keepCache?: boolean;
}

/** Versions remembered for keepsPageCache(): one per path read, the oldest forgotten first. */
const MAX_PAGE_CACHE_VERSIONS = 65_536;

/**
 * Editing mode: a file staged on local disk (staging.ts), at `path` until
 * it is renamed, unlinked or replaced (then `detached`: never uploaded,
 * removed when its last handle closes).
 */
interface StagedEntry {
  path: string;
  stage: StagedFile;
  handles: number;
  writers: number;
  /** The stage's generation whose content is in the bucket; -1 when none is. */
  cleanGeneration: number;
  detached: boolean;
  /** Failed uploads in a row, for the backoff. */
  failures: number;
}

interface StagedHandle {
  kind: 'staged';
  path: string;
  entry: StagedEntry;
  writable: boolean;
}

type Handle = WriteHandle | ReadHandle | StagedHandle;

/** A folder this mount made: until when we know all it holds, and what we wrote there. */
interface OwnedDir {
  until: number;
  entries: Map<string, RemoteEntry>;
}

type Node =
  | { kind: 'dir'; local: boolean }
  | { kind: 'file'; info: ObjectInfo }
  | { kind: 'writing'; handle: WriteHandle }
  | { kind: 'staged'; entry: StagedEntry };

const { O_WRONLY, O_RDWR, O_TRUNC, O_EXCL, O_SYNC } = fsConstants;
/** renameat2 flags (linux/fs.h); libfuse 3 passes them on. */
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
/** Editing mode's uploads at once, unless the mount says otherwise. */
const DEFAULT_UPLOADS_IN_FLIGHT = 16;
/**
 * Part buffers all staged multipart uploads may hold at once (x the part
 * size: 128 MiB at 8 MiB): 16 large files uploading share them.
 */
const STAGED_PARTS_IN_FLIGHT = 16;
/** Folders quietInFolder remembers before it forgets those with no file in its quiet period. */
const QUIET_FOLDERS_MAX = 256;
/** Backoff of a staged file whose upload failed: 1 s doubling to this. */
const MAX_UPLOAD_RETRY_MS = 60_000;
const O_DSYNC = fsConstants.O_DSYNC ?? 0;
/** Not in Node's constants; the same on Linux and macOS. */
const O_ACCMODE = 3;

/** open/create with O_SYNC or O_DSYNC (refused: openSyncFlags). */
function isSyncOpen(flags: number): boolean {
  return (flags & O_SYNC) === O_SYNC || (O_DSYNC !== 0 && (flags & O_DSYNC) === O_DSYNC);
}
/** See readdir: time a stat of one listed entry may take, for the TTL of a listing. */
const LISTING_GRACE_MS_PER_ENTRY = 2;
/** Names an owned folder remembers before it is looked up like any other (ownedDirs). */
const OWNED_ENTRIES_MAX = 10_000;
/** Names a program must go through in a folder before its next page is fetched ahead (refreshAhead). */
const REFRESH_AHEAD_AFTER_NAMES = 8;
/** Keys of the page a lookup re-lists around its name (S3's page size). */
const LOOKUP_PAGE_KEYS = 1000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/** Events the worker reports to the CLI or the tray (uploads in progress). */
export interface FsEvents {
  onUploadsChanged?(inProgress: number): void;
  onUploadFailed?(path: string, err: Error): void;
  /** Editing mode: ours was stored as `conflictPath` because the object at `path` changed meanwhile. */
  onConflict?(path: string, conflictPath: string): void;
  /** Editing mode: a folder rename's progress; called with finished at the end, with the error if it stopped. */
  onRenameProgress?(progress: RenameProgress): void;
  /** Editing mode, at mount: what an earlier run left in the staging folder. */
  onRecovered?(recovered: { uploading: number; kept: { path: string; reason: string }[]; stagingDirectory: string }): void;
}

export interface RenameProgress {
  from: string;
  to: string;
  done: number;
  total: number;
  finished: boolean;
  error?: string | undefined;
}

export class S3FileSystem {
  private readonly client: ObjectClient;
  private readonly config: FsConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly cache: MetadataCache;
  /** Open files' read-ahead and the first blocks lookups fetched: the data, which this model never holds. */
  private readonly reads: ObjectReads;
  /** The object version each path was last opened for reading at (keepsPageCache). */
  private readonly pageCacheVersions = new Map<string, string>();
  private readonly mountedAt: Date;
  private readonly localDirs = new Set<string>();
  /**
   * Folders this mount made with mkdir, and until when we know all they
   * hold: what we wrote there. A name we do not know in such a folder is
   * missing, with no request. Creating files is serialized by the kernel's
   * folder lock, so without this every new file in a fresh folder costs a
   * lookup round trip (measured on a 40 ms WAN: 20 files/s). The knowledge
   * lasts while the folder is local, then for the metadata TTL after our
   * last upload into it, like a cached "missing" for the whole folder; what
   * we wrote there is remembered as long (at most OWNED_ENTRIES_MAX names,
   * then the folder is looked up as any other).
   */
  private readonly ownedDirs = new Map<string, OwnedDir>();
  private readonly writing = new Map<string, WriteHandle>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  private readonly lookups = new Map<string, Promise<RemoteEntry>>();
  /** What each recently listed folder held, for lookups by listing (folder-index.ts). */
  private readonly folderIndexes = new FolderIndexes();
  /** Per folder, how many times lookups moved to another name since its last page (refreshAhead). */
  private readonly folderScans = new Map<string, { last: string; moves: number }>();
  /** Lookup pages in flight, by folder: a lookup meanwhile waits for it instead of sending its own. */
  private readonly lookupPages = new Map<string, Promise<unknown>>();
  private readonly events: FsEvents;
  /** Editing mode: staged files by path. */
  private readonly staged = new Map<string, StagedEntry>();
  /**
   * Files closed in each folder whose quiet period is not over: a program
   * that creates another file in the folder has moved on and will not
   * rename them, so their uploads start at once (hurryQuiet). `cp -r`'s
   * first uploads would otherwise wait while it copies the next 30 files.
   */
  private readonly quietInFolder = new Map<string, Set<StagedEntry>>();
  /** Editing mode: a stored file being staged, so two opens at once share one stage. */
  private readonly staging = new Map<string, Promise<StagedEntry>>();
  private readonly writeBack: WriteBack<StagedEntry>;
  private lastUploadsReported = 0;
  /** Staged uploads running in parts now, which share STAGED_PARTS_IN_FLIGHT. */
  private multipartUploads = 0;
  private draining = false;

  constructor(client: ObjectClient, config: FsConfig, options: { log?: Logger; clock?: Clock; events?: FsEvents } = {}) {
    this.client = client;
    this.config = config;
    this.log = options.log ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.events = options.events ?? {};
    this.cache = new MetadataCache(config.metadataTtlMs, config.negativeMetadataTtlMs, this.clock);
    this.reads = new ObjectReads(client, {
      budgetBytes: config.prefetchBudgetBytes,
      readPartSizeBytes: config.readPartSizeBytes,
      prefetch: config.prefetch,
      cache: config.dataCache,
      now: () => this.clock.now(),
    });
    this.mountedAt = new Date(this.clock.now());
    if (config.allowEdit && !config.staging) throw new Error('editing mode needs a staging area');
    this.writeBack = new WriteBack<StagedEntry>((e) => this.uploadStaged(e), {
      delayMs: config.uploadDelayMs ?? DEFAULT_UPLOAD_DELAY_MS,
      concurrency: config.maxUploadsInFlight ?? DEFAULT_UPLOADS_IN_FLIGHT,
      onError: (e, err) => this.uploadFailed(e as StagedEntry, err),
      onPendingChanged: () => this.uploadsChanged(),
    });
  }

  /** Files open for writing whose object is not complete yet, and staged files waiting for their upload. */
  get uploadsInProgress(): number {
    let n = 0;
    for (const h of this.writing.values()) if (!h.completed) n++;
    for (const e of this.staged.values()) if (this.isDirty(e) || this.writeBack.has(e)) n++;
    return n;
  }

  private uploadsChanged(): void {
    const n = this.uploadsInProgress;
    if (n === this.lastUploadsReported) return;
    this.lastUploadsReported = n;
    this.events.onUploadsChanged?.(n);
  }

  get prefetchedBytes(): number {
    return this.reads.prefetchedBytes;
  }

  // ---- metadata ----

  private dirStat(): Stat {
    return this.stat(S_IFDIR | this.config.dirMode, 0, this.mountedAt, 2);
  }

  private fileStat(size: number, mtime: Date): Stat {
    return this.stat(S_IFREG | this.config.fileMode, size, mtime, 1);
  }

  private stat(mode: number, size: number, mtime: Date, nlink: number): Stat {
    return {
      mode, size, nlink, mtime, atime: mtime, ctime: mtime,
      uid: this.config.uid, gid: this.config.gid,
      blocks: Math.ceil(size / 512), blksize: 4096,
    };
  }

  private statOf(node: Node): Stat {
    switch (node.kind) {
      case 'dir': return this.dirStat();
      case 'file': return this.fileStat(node.info.sizeBytes, node.info.lastModified);
      case 'writing': return this.fileStat(node.handle.uploader.sizeBytes, new Date(node.handle.openedAtMs));
      case 'staged': {
        const st = this.fileStat(node.entry.stage.sizeBytes, new Date(node.entry.stage.mtimeMs));
        st.atime = new Date(node.entry.stage.atimeMs);
        return st;
      }
    }
  }

  /**
   * What is at a path: a remote folder first, then local state, then a
   * remote file (README.md: "a folder hides a file of the same name").
   */
  private async resolve(path: string): Promise<Node | undefined> {
    if (path === '/') return { kind: 'dir', local: false };
    // Local state answers without a request; only a cached remote folder overrides it.
    const local = this.localDirs.has(path) || this.writing.has(path) || this.staged.has(path);
    return this.merge(path, local ? this.cache.get(path) : await this.lookupRemote(path));
  }

  /** The precedence of resolve(): remote folder, then local state, then remote file. */
  private merge(path: string, remote: RemoteEntry | undefined): Node | undefined {
    if (remote?.kind === 'dir') return { kind: 'dir', local: false };
    if (this.localDirs.has(path)) return { kind: 'dir', local: true };
    const w = this.writing.get(path);
    if (w) return { kind: 'writing', handle: w };
    const e = this.staged.get(path);
    if (e) return { kind: 'staged', entry: e };
    if (remote?.kind === 'file') return { kind: 'file', info: remote.info };
    return undefined;
  }

  /** What we know a folder this mount made holds, while we know it all. */
  private ownedContents(dir: string): OwnedDir | undefined {
    const owned = this.ownedDirs.get(dir);
    if (owned === undefined) return undefined;
    if (this.localDirs.has(dir) || owned.until > this.clock.now()) return owned;
    this.ownedDirs.delete(dir);
    return undefined;
  }

  /** Records an entry we made in an owned folder, which stays owned for the TTL from now. */
  private noteOwned(dir: string, path: string, entry: RemoteEntry): void {
    const owned = this.ownedContents(dir);
    if (!owned) return;
    owned.entries.set(path, entry);
    if (owned.entries.size > OWNED_ENTRIES_MAX) {
      this.ownedDirs.delete(dir);
      return;
    }
    owned.until = this.clock.now() + this.config.metadataTtlMs;
  }

  /** What local state and the cache say of a path, without a request. */
  private resolveKnown(path: string): Node | undefined {
    return this.merge(path, this.cache.get(path));
  }

  private lookupRemote(path: string): Promise<RemoteEntry> {
    const cached = this.cache.get(path);
    if (cached) {
      this.refreshAhead(path);
      return Promise.resolve(cached);
    }
    const owned = this.ownedContents(parentPath(path));
    if (owned) return Promise.resolve(owned.entries.get(path) ?? { kind: 'missing' });
    const name = baseName(path);
    if (!isValidName(name)) return Promise.resolve({ kind: 'missing' });
    let pending = this.lookups.get(path);
    if (!pending) {
      pending = this.lookupFresh(path).finally(() => this.lookups.delete(path));
      this.lookups.set(path, pending);
    }
    return pending;
  }

  /**
   * A program going through a listed folder (ls, then open every file)
   * would stall on a page whenever the names it reaches expire, the kernel
   * holding every other lookup of the folder meanwhile. So once it has
   * moved on to other names since the last page, the next page starts in
   * the background while half the TTL is left. One file looked up again and
   * again (a poller) does not count as moving on.
   */
  private refreshAhead(path: string): void {
    const dir = parentPath(path);
    const index = this.folderIndexes.get(dir);
    if (!index || this.lookupPages.has(dir)) return;
    const name = baseName(path);
    const scan = this.folderScans.get(dir) ?? { last: '', moves: 0 };
    if (scan.last !== name) {
      scan.last = name;
      scan.moves++;
      if (this.folderScans.size > 256) this.folderScans.clear();
      this.folderScans.set(dir, scan);
    }
    if (scan.moves < REFRESH_AHEAD_AFTER_NAMES) return;
    const left = this.cache.remainingMs(path);
    if (left === undefined || left > this.config.metadataTtlMs / 2) return;
    void this.lookupByListing(path, dir, index).catch(() => undefined);
  }

  /** A lookup the cache cannot answer: by listing in a folder listed before, else by name. */
  private async lookupFresh(path: string): Promise<RemoteEntry> {
    const dir = parentPath(path);
    const index = this.folderIndexes.get(dir);
    if (index) {
      const inFlight = this.lookupPages.get(dir);
      if (inFlight) {
        await inFlight.catch(() => undefined);
        const cached = this.cache.get(path);
        if (cached) return cached;
      } else {
        const entry = await this.lookupByListing(path, dir, index);
        if (entry) return entry;
      }
    }
    return this.fetchRemote(path);
  }

  /**
   * One ListObjectsV2 page starting just before the name (folder-index.ts):
   * it answers the lookup and refreshes the names after it for the TTL.
   * Undefined when the page ends before it can tell (then ask by name).
   */
  private async lookupByListing(path: string, dir: string, index: FolderIndex): Promise<RemoteEntry | undefined> {
    const name = baseName(path);
    const prefix = dirPrefix(this.config.prefix, dir);
    const after = index.before(name);
    const started = this.clock.now();
    const request = this.client.listObjects({
      prefix, delimiter: '/', maxKeys: LOOKUP_PAGE_KEYS, ...(after !== undefined ? { startAfter: prefix + after } : {}),
    });
    this.lookupPages.set(dir, request);
    this.folderScans.delete(dir);
    let page;
    try {
      page = await request;
    } finally {
      if (this.lookupPages.get(dir) === request) this.lookupPages.delete(dir);
    }
    // S3 may repeat the sub-folder the page starts in.
    const positions = pagePositions(prefix, page.objects.map((o) => o.key), page.commonPrefixes)
      .filter((p) => after === undefined || compareKeyOrder(p, after) > 0);
    const truncated = page.nextContinuationToken !== undefined;
    const last = positions[positions.length - 1];
    const { dirs, files } = pageEntries(prefix, page);
    // Files first: a folder hides a file of the same name.
    for (const [n, info] of files) this.cache.set(joinPath(dir, n), { kind: 'file', info }, started);
    for (const n of dirs) this.cache.set(joinPath(dir, n), { kind: 'dir' }, started);
    const fresh = new Set<string>([...dirs, ...files.map(([n]) => n)]);
    for (const gone of index.replaceRange(after, truncated ? last : undefined, positions)) {
      const n = gone.endsWith('/') ? gone.slice(0, -1) : gone;
      if (!fresh.has(n)) this.cache.delete(joinPath(dir, n));
    }
    const covers = (pos: string): boolean => !truncated || (last !== undefined && compareKeyOrder(pos, last) <= 0);
    let entry: RemoteEntry | undefined;
    if (dirs.includes(name)) entry = { kind: 'dir' };
    else if (covers(`${name}/`)) {
      const info = files.find(([n]) => n === name)?.[1];
      entry = info ? { kind: 'file', info } : { kind: 'missing' };
      if (!info) this.cache.set(path, entry, started);
    }
    this.log.debug('lookup', {
      op: 'lookup', key: prefix + name, by: 'listing', result: entry?.kind ?? 'not covered', entries: positions.length,
      durationMs: this.clock.now() - started,
    });
    return entry;
  }

  /**
   * The object and a one-key listing of key/ at once, as Mountpoint does,
   * except that the object is asked with a GET of its first block instead
   * of HeadObject: the same round trip then also answers the first read of
   * the open that usually follows (time to first byte: one round trip
   * instead of two), and a small file is read whole.
   */
  private async fetchRemote(path: string): Promise<RemoteEntry> {
    const key = fileKey(this.config.prefix, path);
    const started = this.clock.now();
    const [info, list] = await Promise.all([
      this.reads.lookup(key, this.config.metadataTtlMs),
      this.client.listObjects({ prefix: key + '/', delimiter: '/', maxKeys: 1 }),
    ]);
    let entry: RemoteEntry;
    if (list.objects.length > 0 || list.commonPrefixes.length > 0) entry = { kind: 'dir' };
    else if (info) entry = { kind: 'file', info };
    else entry = { kind: 'missing' };
    this.cache.set(path, entry, started);
    this.log.debug('lookup', { op: 'lookup', key, result: entry.kind, durationMs: this.clock.now() - started });
    return entry;
  }

  async getattr(path: string): Promise<Stat> {
    return this.guard(path, async () => {
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      return this.statOf(node);
    });
  }

  /** Lists a whole folder (the libfuse 2 binding and tests; the kernel takes listDir's batches). */
  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    const stream = this.listDir(path);
    const names: string[] = [];
    const stats: Stat[] = [];
    for (;;) {
      const batch = await stream.next();
      for (const n of batch.names) names.push(n);
      for (const st of batch.stats) stats.push(st);
      if (batch.done) return { names, stats };
    }
  }

  /**
   * Lists a folder as a stream of batches, one per ListObjectsV2 page, each
   * handed on while the next page is fetched: the kernel and `ls` work
   * through the first entries while the rest are on their way. Fills the
   * metadata cache as it goes, so `ls -l` needs no request per file.
   */
  listDir(path: string): DirStream {
    const queue = new BatchQueue<DirBatch>();
    const abort = new AbortController();
    this.guard(path, () => this.runListing(path, queue, abort.signal)).catch((err: unknown) => queue.fail(err));
    return {
      next: () => queue.next(),
      close: () => abort.abort(),
    };
  }

  private async runListing(path: string, queue: BatchQueue<DirBatch>, signal: AbortSignal): Promise<void> {
    const node = await this.resolve(path);
    if (!node) throw refuse('notFound', path);
    if (node.kind !== 'dir') throw refuse('notADirectory', path);
    const prefix = dirPrefix(this.config.prefix, path);
    const started = this.clock.now();
    const shown = new Set<string>();
    const held = new HeldFiles<ObjectInfo>();
    const positions: string[] = [];
    let token: string | undefined;
    let pages = 0;
    let listed = 0;
    let proved = path === '/';
    this.cache.sweep();
    do {
      const page = await this.client.listObjects({ prefix, delimiter: '/', ...(token ? { continuationToken: token } : {}) }, { signal });
      pages++;
      token = page.nextContinuationToken;
      const pagePos = pagePositions(prefix, page.objects.map((o) => o.key), page.commonPrefixes);
      for (const p of pagePos) positions.push(p);
      const entries = pageEntries(prefix, page);
      held.add(entries.files);
      const files = held.release(token ? pagePos[pagePos.length - 1] ?? '' : undefined);
      const names: string[] = pages === 1 ? ['.', '..'] : [];
      const stats: Stat[] = pages === 1 ? [this.dirStat(), this.dirStat()] : [];
      // `ls -l` stats every entry it is handed; a big folder's entries stay
      // trusted for the time such a pass takes (LISTING_GRACE_MS_PER_ENTRY
      // each) on top of the TTL, or the stats of 10,000 keys could each
      // send HeadObject and ListObjectsV2.
      listed += entries.dirs.length + files.length;
      const listedAt = this.clock.now() + LISTING_GRACE_MS_PER_ENTRY * listed;
      for (const name of entries.dirs) {
        if (shown.has(name)) continue;
        shown.add(name);
        this.cache.set(joinPath(path, name), { kind: 'dir' }, listedAt);
        names.push(name);
        stats.push(this.dirStat());
      }
      for (const [name, info] of files) {
        const child = joinPath(path, name);
        if (shown.has(name) || this.localDirs.has(child)) continue;
        shown.add(name);
        this.cache.set(child, { kind: 'file', info }, listedAt);
        const local = this.localFile(child);
        names.push(name);
        stats.push(local ? this.statOf(local) : this.fileStat(info.sizeBytes, info.lastModified));
      }
      // A listing with entries proves the folder: the kernel looks it up
      // again when its entry expires during a long listing.
      if (!proved && shown.size > 0) {
        this.cache.set(path, { kind: 'dir' });
        proved = true;
      }
      if (!token) {
        this.folderIndexes.set(path, new FolderIndex(positions));
        this.appendLocalEntries(path, shown, names, stats);
        this.log.debug('readdir', { op: 'readdir', key: prefix, entries: shown.size, pages, durationMs: this.clock.now() - started });
      }
      queue.push({ names, stats, done: !token });
    } while (token);
  }

  /** Folders made here and files being written, where the listing did not show them. */
  private appendLocalEntries(path: string, shown: Set<string>, names: string[], stats: Stat[]): void {
    for (const d of this.localDirs) {
      if (parentPath(d) === path && !shown.has(baseName(d))) {
        names.push(baseName(d));
        stats.push(this.dirStat());
        shown.add(baseName(d));
      }
    }
    for (const p of [...this.writing.keys(), ...this.staged.keys()]) {
      if (parentPath(p) === path && !shown.has(baseName(p))) {
        names.push(baseName(p));
        stats.push(this.statOf(this.localFile(p)!));
        shown.add(baseName(p));
      }
    }
  }

  /** A file being written or staged at the path. */
  private localFile(path: string): Node | undefined {
    const w = this.writing.get(path);
    if (w) return { kind: 'writing', handle: w };
    const e = this.staged.get(path);
    return e ? { kind: 'staged', entry: e } : undefined;
  }

  statfs(): StatFs {
    // Object storage has no fixed size; report plenty of room so file
    // managers do not refuse a copy before trying it.
    const blocks = 2 ** 40;
    return {
      bsize: 4096, frsize: 4096, blocks, bfree: blocks, bavail: blocks,
      files: 2 ** 32, ffree: 2 ** 32, favail: 2 ** 32, namemax: 255,
    };
  }

  // ---- open, read, write ----

  /** Every error leaving the model is an FsError with an errno (errno.ts). */
  private async guard<T>(path: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw toFsError(err, path);
    }
  }

  /** The parent of a new name must exist and be a folder. */
  private async requireParentDir(path: string): Promise<void> {
    const parent = await this.resolve(parentPath(path));
    if (!parent) throw refuse('notFound', path);
    if (parent.kind !== 'dir') throw refuse('notADirectory', path);
  }

  private checkWritable(path: string): void {
    if (this.config.readOnly) throw refuse('readOnly', path);
  }

  private checkNewName(path: string): void {
    if (!isValidName(baseName(path))) {
      throw Buffer.byteLength(baseName(path)) > 255 ? refuse('nameTooLong', path) : refuse('invalidName', path);
    }
    if (Buffer.byteLength(fileKey(this.config.prefix, path)) > MAX_KEY_BYTES) throw refuse('nameTooLong', path);
  }

  private addHandle(h: Handle): number {
    const fd = this.nextHandle++;
    this.handles.set(fd, h);
    return fd;
  }

  private handle(fd: number, path: string): Handle {
    const h = this.handles.get(fd);
    if (!h) throw refuse('badHandle', path);
    return h;
  }

  private startWrite(path: string): number {
    const h: WriteHandle = {
      kind: 'write',
      path,
      uploader: new Uploader(this.client, fileKey(this.config.prefix, path), {
        partSizeBytes: this.config.writePartSizeBytes,
        maxPartsInFlight: this.config.maxPartsInFlight,
        tracker: this.config.uploadTracker,
      }),
      fill: this.config.dataCache?.fill(),
      completed: false,
      openedAtMs: this.clock.now(),
    };
    this.writing.set(path, h);
    this.events.onUploadsChanged?.(this.uploadsInProgress);
    return this.addHandle(h);
  }

  async open(path: string, flags: number): Promise<number> {
    return this.guard(path, async () => {
      const accmode = flags & O_ACCMODE;
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (this.config.allowEdit) return this.openEditing(path, flags, node);
      if (node.kind === 'staged') throw refuse('concurrentWriter', path);
      const readWrite = accmode === O_RDWR && (flags & O_TRUNC) === 0 && node.kind === 'file';
      if ((accmode === O_WRONLY || accmode === O_RDWR) && !readWrite) {
        this.checkWritable(path);
        if (node.kind === 'dir') throw refuse('isADirectory', path);
        if (isSyncOpen(flags)) throw refuse('openSyncFlags', path);
        if (node.kind === 'writing') throw refuse('concurrentWriter', path);
        if (!this.config.allowOverwrite) throw refuse('overwriteNotAllowed', path);
        if ((flags & O_TRUNC) === 0) throw refuse('overwriteWithoutTruncate', path);
        return this.startWrite(path);
      }
      if (node.kind === 'writing') throw refuse('concurrentWriter', path);
      if (node.kind === 'dir') return this.addHandle({ kind: 'read', path, prefetcher: this.reads.openEmpty(fileKey(this.config.prefix, path)) });
      return this.openStored(path, node.info);
    });
  }

  /** A read handle of a stored object. */
  private openStored(path: string, info: ObjectInfo): number {
    return this.addHandle({ kind: 'read', path, prefetcher: this.reads.open(info), keepCache: this.samePageCacheVersion(path, info) });
  }

  /**
   * With a disk cache (--cache), a file opened again while its object is
   * the version read last time keeps the kernel's cached pages: the second
   * pass over a data set is served by the kernel. Mountpoint (and the
   * default mount) drop them at every open.
   */
  private samePageCacheVersion(path: string, info: ObjectInfo): boolean {
    if (!this.config.dataCache) return false;
    const version = `${info.etag}/${info.sizeBytes}`;
    const same = this.pageCacheVersions.get(path) === version;
    this.pageCacheVersions.delete(path);
    this.pageCacheVersions.set(path, version);
    if (this.pageCacheVersions.size > MAX_PAGE_CACHE_VERSIONS) this.pageCacheVersions.delete(this.pageCacheVersions.keys().next().value as string);
    return same;
  }

  /** Whether open() kept the kernel's cached pages for `fd` (the FUSE binding asks right after open). */
  keepsPageCache(fd: number): boolean {
    const h = this.handles.get(fd);
    return h?.kind === 'read' && h.keepCache === true;
  }

  /**
   * The object changed since we listed it (another client replaced it):
   * Mountpoint's promise is old or new data, never a mix, and a fresh open
   * sees the new object. So a handle that has served nothing yet looks the
   * file up once more and reads the new version.
   */
  private async reopen(h: ReadHandle): Promise<boolean> {
    if (h.keepCache) {
      // The kernel may have served this handle pages of the version it
      // kept: reading the new one now would mix them. The read fails; the
      // next open looks the file up afresh and drops those pages.
      this.cache.delete(h.path);
      this.pageCacheVersions.delete(h.path);
      return false;
    }
    if (h.prefetcher.servedBytes > 0) return false;
    this.cache.delete(h.path);
    const entry = await this.lookupRemote(h.path);
    if (entry.kind !== 'file') return false;
    h.prefetcher.close();
    h.prefetcher = this.reads.open(entry.info);
    return true;
  }

  async create(path: string, flags: number): Promise<number> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      this.checkNewName(path);
      await this.requireParentDir(path);
      // The kernel calls create only after its lookup found nothing, so only
      // what we already know (local state, the cache) is checked: no request.
      const node = this.resolveKnown(path);
      if (this.config.allowEdit) return this.createEditing(path, flags, node);
      if (node) {
        if ((flags & O_EXCL) !== 0) throw refuse('createExists', path);
        if (node.kind === 'staged') throw refuse('concurrentWriter', path);
        if (node.kind === 'dir') throw refuse('isADirectory', path);
        if (node.kind === 'writing') throw refuse('concurrentWriter', path);
        if (!this.config.allowOverwrite) throw refuse('overwriteNotAllowed', path);
        if ((flags & O_TRUNC) === 0) throw refuse('overwriteWithoutTruncate', path);
      }
      if (isSyncOpen(flags)) throw refuse('openSyncFlags', path);
      return this.startWrite(path);
    });
  }

  async read(path: string, fd: number, target: Buffer, length: number, offset: number): Promise<number> {
    const h = this.handle(fd, path);
    if (h.kind === 'staged') return this.readStaged(h, target, length, offset);
    if (h.kind !== 'read') throw refuse('concurrentWriter', path);
    try {
      try {
        return await h.prefetcher.read(offset, length, target);
      } catch (err) {
        if (!(err instanceof S3RequestError && err.kind === 'PreconditionFailed') || !await this.reopen(h)) throw err;
        return await h.prefetcher.read(offset, length, target);
      }
    } catch (err) {
      const e = toFsError(err, path);
      this.log.warn('read failed', { op: 'read', path, errno: e.errno, error: e.message, ...requestIdOf(err) });
      throw e;
    }
  }

  async write(path: string, fd: number, data: Buffer, offset: number): Promise<number> {
    const h = this.handle(fd, path);
    if (h.kind === 'staged') return this.writeStaged(h, data, offset);
    if (h.kind !== 'write') throw refuse('badHandle', path);
    if (h.completed) throw refuse('writeAfterFsync', path);
    // A part already failed: the upload is lost, whatever the offset (the
    // kernel retries the rest of a short write at a later offset).
    if (h.uploader.error) throw this.uploadError(h.uploader.error, path);
    if (offset !== h.uploader.sizeBytes) throw refuse('writeOutOfOrder', path);
    try {
      await h.uploader.append(data);
      h.fill?.add(offset, data);
      return data.length;
    } catch (err) {
      const e = this.uploadError(err, path);
      this.log.error('upload failed', { op: 'write', path, error: e.message, ...requestIdOf(err) });
      throw e;
    }
  }

  private uploadError(err: unknown, path: string): FsError {
    if (err instanceof PartLimitError) return new FsError('EFBIG', err.message, { rule: 'fileTooLarge', cause: err });
    return toFsError(err, path);
  }

  /** flush (every close) and fsync: complete the object; close() returns only when it is in the bucket. */
  async flush(path: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (h?.kind === 'staged') return this.guard(path, () => this.flushStaged(h));
    if (!h || h.kind !== 'write') return;
    // Mountpoint's exception: closing a still-empty file (shell redirection
    // closes a dup'ed fd before writing; `touch` sets times after close)
    // leaves the upload to release, after the last reference is gone.
    if (!h.completed && h.uploader.sizeBytes === 0) return;
    await this.completeWrite(h);
  }

  /** fsync completes the object even when it is empty; later writes get EIO. */
  async fsync(path: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (h?.kind === 'staged') return this.guard(path, () => this.fsyncStaged(h));
    if (!h || h.kind !== 'write') return;
    await this.completeWrite(h);
  }

  private async completeWrite(h: WriteHandle): Promise<void> {
    if (h.completed) {
      // A second flush (dup'ed fd) reports the first one's outcome.
      if (h.uploader.state === 'completed') return;
      throw new FsError('EIO', `${h.path}: upload failed earlier`, { rule: 'ioError', cause: h.uploader.error });
    }
    h.completed = true;
    const started = this.clock.now();
    try {
      const { etag, sizeBytes } = await h.uploader.complete();
      const info: ObjectInfo = { key: h.uploader.key, sizeBytes, etag, lastModified: new Date(this.clock.now()) };
      this.noteStored(h.path, info);
      h.fill?.commit(info);
      this.log.info('upload complete', { op: 'upload', key: h.uploader.key, sizeBytes, durationMs: this.clock.now() - started });
    } catch (err) {
      h.fill?.abort();
      const e = err instanceof PartLimitError
        ? new FsError('ENOSPC', err.message, { rule: 'fsyncTooLarge', cause: err })
        : new FsError('EIO', `${h.path}: upload failed, the object was not written: ${err instanceof Error ? err.message : String(err)}`, { rule: 'ioError', cause: err });
      this.log.error('upload failed', { op: 'upload', key: h.uploader.key, error: e.message, ...requestIdOf(err) });
      this.events.onUploadFailed?.(h.path, e);
      throw e;
    } finally {
      if (this.writing.get(h.path) === h) this.writing.delete(h.path);
      this.events.onUploadsChanged?.(this.uploadsInProgress);
    }
  }

  async release(path: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (!h) return;
    this.handles.delete(fd);
    if (h.kind === 'staged') return this.releaseStaged(h);
    if (h.kind === 'read') {
      h.prefetcher.close();
      this.log.debug('closed', { op: 'release', path, requests: h.prefetcher.stats.requests, resets: h.prefetcher.stats.resets });
      return;
    }
    if (!h.completed) {
      try {
        await this.completeWrite(h);
      } catch {
        // Already logged and reported; release has no caller to tell.
      }
    }
  }

  // ---- namespace changes ----

  async unlink(path: string): Promise<void> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (node.kind === 'dir') throw refuse('isADirectory', path);
      if (node.kind === 'writing') throw refuse('unlinkWhileWriting', path);
      if (!this.config.allowDelete) throw refuse('unlinkNotAllowed', path);
      if (node.kind === 'staged') return this.unlinkStaged(path, node.entry);
      await this.client.deleteObject(node.info.key);
      this.cache.set(path, { kind: 'missing' });
      this.ownedContents(parentPath(path))?.entries.delete(path);
      this.log.info('deleted', { op: 'unlink', key: node.info.key });
    });
  }

  async mkdir(path: string): Promise<void> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      this.checkNewName(path);
      await this.requireParentDir(path);
      if (await this.resolve(path)) throw refuse('mkdirExists', path);
      if (this.config.allowEdit) return this.mkdirEditing(path);
      this.localDirs.add(path);
      this.ownedDirs.set(path, { until: Number.POSITIVE_INFINITY, entries: new Map() });
    });
  }

  async rmdir(path: string): Promise<void> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (node.kind !== 'dir') throw refuse('notADirectory', path);
      if (!node.local && this.config.allowEdit) return this.rmdirEditing(path);
      if (!node.local) throw refuse('rmdirRemote', path);
      for (const d of this.localDirs) if (isInside(d, path)) throw refuse('rmdirNotEmpty', path);
      for (const w of this.writing.keys()) if (isInside(w, path)) throw refuse('rmdirNotEmpty', path);
      this.localDirs.delete(path);
      this.ownedDirs.delete(path);
    });
  }

  async rename(from: string, to = '', flags = 0): Promise<void> {
    return this.guard(from, async () => {
      this.checkWritable(from);
      if (this.config.allowEdit) return this.renameEditing(from, to, flags);
      const node = await this.resolve(from);
      if (!node) throw refuse('notFound', from);
      throw node.kind === 'dir' ? refuse('renameDirectory', from) : refuse('renameFile', from);
    });
  }

  async link(path: string): Promise<void> {
    this.checkWritable(path);
    throw refuse('hardLink', path);
  }

  async symlink(path: string): Promise<void> {
    this.checkWritable(path);
    throw refuse('symlink', path);
  }

  async mknod(path: string): Promise<void> {
    this.checkWritable(path);
    throw refuse('specialFile', path);
  }

  /**
   * chmod, chown, utimens: refused on stored files; a no-op on a file being
   * written, so `touch new` and copies that set times while writing work.
   */
  async setattr(path: string, times?: { atimeMs: number; mtimeMs: number }): Promise<void> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (node.kind === 'writing') return;
      if (this.config.allowEdit) {
        // Owner and modes come from the mount's flags, and S3 keeps no
        // times of its own: accepted so copies that preserve them work;
        // a staged file keeps its times until it is uploaded.
        if (node.kind === 'staged' && times) await node.entry.stage.setTimes(this.timesFrom(times));
        return;
      }
      throw refuse('setAttributes', path);
    });
  }

  async truncate(path: string, size: number): Promise<void> {
    return this.guard(path, async () => {
      this.checkWritable(path);
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (node.kind === 'writing' && !node.handle.completed && node.handle.uploader.sizeBytes === size) return;
      if (this.config.allowEdit && node.kind !== 'writing') return this.truncateEditing(path, node, size);
      throw refuse('truncate', path);
    });
  }

  // ---- editing mode (--allow-edit): files staged on local disk ----

  private get stagingArea(): StagingArea {
    if (!this.config.staging) throw new Error('editing mode needs a staging area');
    return this.config.staging;
  }

  private isDirty(e: StagedEntry): boolean {
    return !e.detached && e.stage.generation !== e.cleanGeneration;
  }

  private addStagedHandle(e: StagedEntry, writable: boolean): number {
    e.handles++;
    if (writable) e.writers++;
    return this.addHandle({ kind: 'staged', path: e.path, entry: e, writable });
  }

  private async openEditing(path: string, flags: number, node: Node): Promise<number> {
    const accmode = flags & O_ACCMODE;
    const writable = accmode === O_WRONLY || accmode === O_RDWR;
    if (node.kind === 'dir') {
      if (writable) throw refuse('isADirectory', path);
      return this.addHandle({ kind: 'read', path, prefetcher: this.reads.openEmpty(fileKey(this.config.prefix, path)) });
    }
    if (writable && isSyncOpen(flags)) throw refuse('openSyncFlags', path);
    if (node.kind === 'writing') throw refuse('concurrentWriter', path);
    const truncate = writable && (flags & O_TRUNC) !== 0;
    if (node.kind === 'staged') {
      const e = node.entry;
      if (writable) {
        await this.prepareWrite(e);
        if (truncate) await e.stage.truncate(0);
      }
      return this.addStagedHandle(e, writable);
    }
    if (!writable) return this.openStored(path, node.info);
    const e = await this.stageObject(path, node.info, truncate);
    return this.addStagedHandle(e, true);
  }

  private async createEditing(path: string, flags: number, node: Node | undefined): Promise<number> {
    if (isSyncOpen(flags)) throw refuse('openSyncFlags', path);
    this.hurryQuiet(path);
    if (node) {
      if ((flags & O_EXCL) !== 0) throw refuse('createExists', path);
      return this.openEditing(path, flags, node);
    }
    const stage = await this.stagingArea.createEmpty(fileKey(this.config.prefix, path), undefined);
    const e = this.addEntry(path, stage, -1);
    return this.addStagedHandle(e, true);
  }

  private addEntry(path: string, stage: StagedFile, cleanGeneration: number): StagedEntry {
    const e: StagedEntry = { path, stage, handles: 0, writers: 0, cleanGeneration, detached: false, failures: 0 };
    this.staged.set(path, e);
    this.uploadsChanged();
    return e;
  }

  /**
   * Stages a stored file; its bytes are fetched only when a read or a
   * partial write needs them. Two opens at once share one stage.
   */
  private stageObject(path: string, info: ObjectInfo, truncate: boolean): Promise<StagedEntry> {
    let pending = this.staging.get(path);
    if (!pending) {
      pending = (async () => {
        const origin = { key: info.key, etag: info.etag, sizeBytes: info.sizeBytes };
        const stage = truncate
          ? await this.stagingArea.createEmpty(info.key, info.etag)
          : await this.stagingArea.createFromObject(origin, this.client);
        // Truncated, it differs from the object; filled lazily, it is the object until written.
        return this.addEntry(path, stage, truncate && info.sizeBytes > 0 ? -1 : 0);
      })().finally(() => this.staging.delete(path));
      this.staging.set(path, pending);
      return pending;
    }
    return pending.then(async (e) => {
      if (truncate) await e.stage.truncate(0);
      return e;
    });
  }

  /** A stage closed by an earlier flush takes writes again: recorded "open" first (staging.ts). */
  private async prepareWrite(e: StagedEntry): Promise<void> {
    if (e.stage.failure) throw e.stage.failure;
    if (e.stage.state !== 'open') {
      this.writeBack.cancel(e);
      await e.stage.reopen();
    }
  }

  private async readStaged(h: StagedHandle, target: Buffer, length: number, offset: number): Promise<number> {
    try {
      const bytes = await h.entry.stage.read(offset, length);
      bytes.copy(target);
      return bytes.length;
    } catch (err) {
      const e = toFsError(err, h.path);
      this.log.warn('read failed', { op: 'read', path: h.entry.path, errno: e.errno, error: e.message, ...requestIdOf(err) });
      throw e;
    }
  }

  private async writeStaged(h: StagedHandle, data: Buffer, offset: number): Promise<number> {
    if (!h.writable) throw refuse('badHandle', h.path);
    try {
      await this.prepareWrite(h.entry);
      return await h.entry.stage.write(offset, data);
    } catch (err) {
      const e = toFsError(err, h.path);
      this.log.error('staged write failed', { op: 'write', path: h.entry.path, errno: e.errno, error: e.message });
      throw e;
    }
  }

  /**
   * close(): the last writer's flush records the stage closed (it survives
   * a killed worker from then on) and starts the quiet period before its
   * upload. close() does not wait for the network.
   */
  private async flushStaged(h: StagedHandle): Promise<void> {
    const e = h.entry;
    if (!h.writable || e.writers > 1) return;
    await this.closeStage(e);
  }

  private async closeStage(e: StagedEntry): Promise<void> {
    if (e.detached || e.stage.state !== 'open') return;
    if (e.stage.failure) throw e.stage.failure;
    if (!this.isDirty(e)) return;
    await e.stage.markClosed();
    this.writeBack.schedule(e);
    this.noteQuiet(e);
    this.uploadsChanged();
  }

  private noteQuiet(e: StagedEntry): void {
    const quiet = (q: StagedEntry): boolean => this.writeBack.inQuietPeriod(q);
    if (this.quietInFolder.size > QUIET_FOLDERS_MAX) {
      for (const [f, set] of this.quietInFolder) if (![...set].some(quiet)) this.quietInFolder.delete(f);
    }
    const folder = parentPath(e.path);
    const set = this.quietInFolder.get(folder) ?? new Set<StagedEntry>();
    for (const q of set) if (!quiet(q)) set.delete(q);
    set.add(e);
    this.quietInFolder.set(folder, set);
  }

  /** A file is created at `path`: the others closed in its folder upload now. */
  private hurryQuiet(path: string): void {
    const folder = parentPath(path);
    const set = this.quietInFolder.get(folder);
    if (!set) return;
    for (const q of set) {
      // Its own name created again: the program is still at that file.
      if (q.path === path) continue;
      set.delete(q);
      if (parentPath(q.path) === folder) this.writeBack.hurry(q);
    }
    if (set.size === 0) this.quietInFolder.delete(folder);
  }

  /** fsync uploads now and returns once the object is stored. */
  private async fsyncStaged(h: StagedHandle): Promise<void> {
    const e = h.entry;
    if (e.detached) return;
    if (e.stage.state === 'open') {
      if (!this.isDirty(e)) return;
      if (e.stage.failure) throw e.stage.failure;
      await e.stage.markClosed();
    } else if (!this.isDirty(e) && !this.writeBack.has(e)) {
      return;
    }
    const path = e.path;
    try {
      await this.writeBack.runNow(e);
    } catch (err) {
      this.uploadFailed(e, err);
      throw new FsError('EIO', `${path}: upload failed, it stays staged and is retried: ${(err as Error).message}`, { rule: 'ioError', cause: err });
    }
    if (e.path !== path) {
      throw new FsError('EIO', `${path}: changed in the bucket meanwhile; this version was stored as ${e.path}`, { rule: 'ioError' });
    }
  }

  private async releaseStaged(h: StagedHandle): Promise<void> {
    const e = h.entry;
    e.handles--;
    if (h.writable) e.writers--;
    try {
      if (e.writers === 0 && !e.stage.failure) await this.closeStage(e);
    } catch {
      // A failure to close was told to flush's caller; release has none.
    }
    if (e.handles > 0) return;
    if (e.detached) {
      await this.stagingArea.remove(e.stage);
      return;
    }
    if (e.stage.failure) {
      // The program was told (ENOSPC, EIO); the file is what the bucket holds.
      await this.dropStage(e);
      this.events.onUploadFailed?.(e.path, e.stage.failure);
      return;
    }
    if (!this.isDirty(e) && e.stage.state !== 'uploading' && !this.writeBack.has(e)) {
      await this.dropStage(e);
    }
  }

  /** The entry is forgotten and its stage removed: the bucket holds what it had, or the user was told. */
  private async dropStage(e: StagedEntry): Promise<void> {
    this.dropEntry(e);
    await this.stagingArea.remove(e.stage);
  }

  private dropEntry(e: StagedEntry): void {
    if (this.staged.get(e.path) === e) this.staged.delete(e.path);
    this.uploadsChanged();
  }

  /** The write-back job: uploads a closed stage, or stores a conflicting one under a conflict name. */
  private async uploadStaged(e: StagedEntry): Promise<void> {
    if (e.detached || this.staged.get(e.path) !== e) return;
    if (e.stage.state === 'conflict') await this.divertToConflictCopy(e);
    // Reopened by a writer: its next close schedules it again. Clean: an
    // fsync that waited for a running upload finds nothing left to send.
    if (e.stage.state !== 'closed' || !this.isDirty(e)) return;
    const started = this.clock.now();
    let result;
    const multipart = e.stage.sizeBytes > this.config.writePartSizeBytes;
    if (multipart) this.multipartUploads++;
    try {
      result = await uploadStagedFile(e.stage, this.client, {
        partSizeBytes: this.config.writePartSizeBytes,
        maxPartsInFlight: Math.max(1, Math.min(this.config.maxPartsInFlight, Math.floor(STAGED_PARTS_IN_FLIGHT / Math.max(1, this.multipartUploads)))),
        tracker: this.config.uploadTracker,
        keepStage: () => e.handles > 0,
        cacheFill: () => this.config.dataCache?.fill(),
      });
    } catch (err) {
      if (!(err instanceof StageConflictError)) throw err;
      const ours = await this.alreadyStored(e);
      if (ours) {
        // Our own bytes: an upload whose answer was lost, or one a crash
        // cut off before its stage was removed. Not a conflict.
        this.log.info('upload found already stored', { op: 'upload', key: ours.key, sizeBytes: ours.sizeBytes });
        this.noteStored(e.path, ours);
        await this.dropStage(e);
        return;
      }
      this.log.warn('object changed in the bucket while edited', { op: 'upload', key: err.key, baseEtag: err.baseEtag });
      await this.divertToConflictCopy(e);
      return this.uploadStaged(e);
    } finally {
      if (multipart) this.multipartUploads--;
    }
    e.failures = 0;
    if (result.status === 'superseded') {
      if (e.stage.state === 'closed') this.writeBack.schedule(e);
      return;
    }
    const info: ObjectInfo = { key: result.key, sizeBytes: result.sizeBytes, etag: result.etag, lastModified: new Date(this.clock.now()) };
    this.noteStored(e.path, info);
    if (result.stageRemoved) this.dropEntry(e);
    else {
      e.cleanGeneration = result.generation;
      if (e.stage.state === 'closed' && this.isDirty(e)) this.writeBack.schedule(e);
      else if (e.handles === 0 && !e.detached && e.stage.state === 'closed') {
        // Kept because a program had it open, which closed it while the
        // upload ended: that release found it uploading and left it to us.
        await this.dropStage(e);
      }
    }
    this.uploadsChanged();
    this.log.info('upload complete', { op: 'upload', key: result.key, sizeBytes: result.sizeBytes, durationMs: this.clock.now() - started, staged: true });
  }

  /** An upload that failed by itself: retried with backoff; the user is told once per run of failures. */
  private uploadFailed(e: StagedEntry, err: unknown): void {
    e.failures++;
    const message = err instanceof Error ? err.message : String(err);
    this.log.error('staged upload failed', { op: 'upload', key: e.stage.key, attempt: e.failures, error: message, ...requestIdOf(err) });
    if (e.failures === 1) {
      this.events.onUploadFailed?.(e.path, new Error(`not uploaded yet, kept on this computer and retried: ${message}`, { cause: err }));
    }
    if (this.draining || e.detached) return;
    this.writeBack.schedule(e, Math.min(MAX_UPLOAD_RETRY_MS, 1000 * 2 ** (e.failures - 1)));
  }

  /**
   * The object now at the stage's key, when it holds exactly the stage's
   * bytes (S3's ETag of a one-part upload is the MD5 of its bytes); only
   * for a stage no program has open, up to one part.
   */
  private async alreadyStored(e: StagedEntry): Promise<ObjectInfo | undefined> {
    const size = e.stage.sizeBytes;
    if (e.handles > 0 || size > this.config.writePartSizeBytes) return undefined;
    const info = await this.client.headObject(e.stage.key);
    if (!info || info.sizeBytes !== size) return undefined;
    const bytes = Buffer.allocUnsafe(size);
    if (await e.stage.readForUpload(bytes, 0) !== size) return undefined;
    const md5 = createHash('md5').update(bytes).digest('hex');
    return info.etag.replace(/"/g, '') === md5 ? info : undefined;
  }

  /** The stage is stored beside the other writer's version, under a free conflict name. */
  private async divertToConflictCopy(e: StagedEntry): Promise<void> {
    const from = e.path;
    const at = new Date(this.clock.now());
    let to = '';
    for (let attempt = 1; ; attempt++) {
      to = joinPath(parentPath(from), conflictName(baseName(from), at, attempt));
      if (this.staged.has(to)) continue;
      // If-None-Match on the upload still guards against a name taken meanwhile.
      if (!await this.client.headObject(fileKey(this.config.prefix, to))) break;
      if (attempt > 100) throw new Error(`${from}: no free name for a conflict copy`);
    }
    await e.stage.retarget(fileKey(this.config.prefix, to));
    e.cleanGeneration = -1;
    this.moveEntry(e, to);
    this.cache.delete(from);
    this.log.warn('conflict copy', { op: 'upload', path: from, conflictPath: to });
    this.events.onConflict?.(from, to);
  }

  /** An object we stored: cached, and the folders above exist in the bucket now. */
  private noteStored(path: string, info: ObjectInfo): void {
    this.cache.set(path, { kind: 'file', info });
    let child = path;
    let entry: RemoteEntry = { kind: 'file', info };
    for (let p = parentPath(path); ; p = parentPath(p)) {
      this.noteOwned(p, child, entry);
      if (p === '/') break;
      this.localDirs.delete(p);
      this.cache.set(p, { kind: 'dir' });
      child = p;
      entry = { kind: 'dir' };
    }
  }

  private timesFrom(times: { atimeMs: number; mtimeMs: number }): { atimeMs?: number; mtimeMs?: number } {
    // NaN: leave as is (UTIME_OMIT); Infinity: now (UTIME_NOW).
    const pick = (t: number): number | undefined => (Number.isNaN(t) ? undefined : t === Number.POSITIVE_INFINITY ? this.clock.now() : t);
    const out: { atimeMs?: number; mtimeMs?: number } = {};
    const a = pick(times.atimeMs);
    const m = pick(times.mtimeMs);
    if (a !== undefined) out.atimeMs = a;
    if (m !== undefined) out.mtimeMs = m;
    return out;
  }

  private async truncateEditing(path: string, node: Node, size: number): Promise<void> {
    if (node.kind === 'dir') throw refuse('isADirectory', path);
    let e: StagedEntry;
    if (node.kind === 'staged') e = node.entry;
    else if (node.kind === 'file') {
      if (node.info.sizeBytes === size) return;
      e = await this.stageObject(path, node.info, size === 0);
    } else throw refuse('truncate', path);
    await this.prepareWrite(e);
    await e.stage.truncate(size);
    // truncate(1) with no file open: nothing else will close it.
    if (e.writers === 0) await this.closeStage(e);
    if (e.handles === 0 && !this.isDirty(e)) {
      await this.dropStage(e);
    }
  }

  /** Unlink of a staged file: never uploaded, and the object it was based on (if any) deleted. */
  private async unlinkStaged(path: string, e: StagedEntry): Promise<void> {
    await this.stopUpload(e);
    if (this.staged.get(path) !== e) {
      // Its upload finished meanwhile: the file is an object now.
      const node = await this.resolve(path);
      if (!node) throw refuse('notFound', path);
      if (node.kind !== 'file') return this.unlink(path);
      await this.client.deleteObject(node.info.key);
      this.cache.set(path, { kind: 'missing' });
      return;
    }
    const key = e.stage.key;
    const stored = e.stage.baseEtag !== undefined;
    this.detach(e);
    if (e.handles === 0) await this.stagingArea.remove(e.stage);
    if (stored) await this.client.deleteObject(key);
    this.cache.set(path, { kind: 'missing' });
    this.ownedContents(parentPath(path))?.entries.delete(path);
    this.log.info('deleted', { op: 'unlink', key, staged: true });
  }

  /** No upload of the entry is scheduled or running once this resolves. */
  private async stopUpload(e: StagedEntry): Promise<void> {
    this.writeBack.cancel(e);
    await this.writeBack.settle(e);
  }

  private detach(e: StagedEntry): void {
    e.detached = true;
    this.writeBack.cancel(e);
    this.dropEntry(e);
  }

  /** A folder is an object `name/` in editing mode, so an empty folder survives the unmount. */
  private async mkdirEditing(path: string): Promise<void> {
    const key = dirPrefix(this.config.prefix, path);
    try {
      await this.client.putObject(key, new Uint8Array(0), { ifNoneMatch: '*' });
    } catch (err) {
      // Another client made the same folder meanwhile: it exists, as asked.
      if (!(err instanceof S3RequestError && (err.kind === 'PreconditionFailed' || err.kind === 'Conflict'))) throw err;
      throw refuse('mkdirExists', path);
    }
    this.cache.set(path, { kind: 'dir' });
    this.noteOwned(parentPath(path), path, { kind: 'dir' });
    // We know all it holds: nothing, so creating files in it needs no lookups.
    this.ownedDirs.set(path, { until: this.clock.now() + this.config.metadataTtlMs, entries: new Map() });
  }

  /** Whether a folder holds nothing but its own `name/` object, here or in the bucket. */
  private async folderIsEmpty(path: string): Promise<boolean> {
    for (const p of [...this.staged.keys(), ...this.writing.keys(), ...this.localDirs]) if (isInside(p, path)) return false;
    const prefix = dirPrefix(this.config.prefix, path);
    const page = await this.client.listObjects({ prefix, delimiter: '/', maxKeys: 2 });
    return page.commonPrefixes.length === 0 && page.objects.every((o) => o.key === prefix);
  }

  private async rmdirEditing(path: string): Promise<void> {
    if (!await this.folderIsEmpty(path)) throw refuse('rmdirNotEmpty', path);
    await this.client.deleteObject(dirPrefix(this.config.prefix, path));
    this.cache.set(path, { kind: 'missing' });
    this.ownedDirs.delete(path);
    this.folderIndexes.delete(path);
    this.ownedContents(parentPath(path))?.entries.delete(path);
  }

  private async renameEditing(from: string, to: string, flags: number): Promise<void> {
    if ((flags & RENAME_EXCHANGE) !== 0) throw refuse('renameExchange', from);
    if (from === to) return;
    if (isInside(to, from)) throw refuse('renameIntoItself', from);
    this.checkNewName(to);
    await this.requireParentDir(to);
    const src = await this.resolve(from);
    if (!src) throw refuse('notFound', from);
    const dst = await this.resolve(to);
    if (dst && (flags & RENAME_NOREPLACE) !== 0) throw refuse('renameExists', to);
    if (src.kind === 'writing' || dst?.kind === 'writing') throw refuse('concurrentWriter', from);
    if (src.kind === 'dir') {
      if (dst && dst.kind !== 'dir') throw refuse('notADirectory', to);
      if (dst && !await this.folderIsEmpty(to)) throw refuse('renameNotEmpty', to);
      return this.renameFolder(from, to);
    }
    if (dst?.kind === 'dir') throw refuse('isADirectory', to);
    return this.renameFile(from, to, src, dst);
  }

  /** What the new name replaces: the ETag its upload must find there (undefined: nothing is there). */
  private async takeOver(to: string, dst: Node | undefined): Promise<string | undefined> {
    if (dst?.kind === 'staged') {
      const t = dst.entry;
      await this.stopUpload(t);
      if (this.staged.get(to) === t) {
        const etag = t.stage.baseEtag;
        this.detach(t);
        if (t.handles === 0) await this.stagingArea.remove(t.stage);
        return etag;
      }
      dst = this.resolveKnown(to);
    }
    return dst?.kind === 'file' ? dst.info.etag : undefined;
  }

  private async renameFile(from: string, to: string, src: Node, dst: Node | undefined): Promise<void> {
    const fromKey = fileKey(this.config.prefix, from);
    const toKey = fileKey(this.config.prefix, to);
    const replaces = await this.takeOver(to, dst);
    if (src.kind === 'staged') {
      const e = src.entry;
      await this.stopUpload(e);
      if (this.staged.get(from) === e && !this.isDirty(e) && e.stage.baseEtag !== undefined) {
        // Its bytes are the object's (an editor's temporary file it fsynced):
        // a server-side copy, not a second upload of the same bytes.
        const { etag } = await this.client.copyObject(fromKey, toKey, { ifMatch: e.stage.baseEtag, sizeBytes: e.stage.sizeBytes });
        await this.client.deleteObject(fromKey);
        await e.stage.rename(toKey, etag);
        e.cleanGeneration = e.stage.generation;
        this.moveEntry(e, to);
        this.cache.set(from, { kind: 'missing' });
        this.ownedContents(parentPath(from))?.entries.delete(from);
        this.noteStored(to, { key: toKey, sizeBytes: e.stage.sizeBytes, etag, lastModified: new Date(this.clock.now()) });
        this.log.info('renamed', { op: 'rename', from: fromKey, to: toKey, staged: true, copied: true });
        return;
      }
      if (this.staged.get(from) === e) {
        // Renamed locally; the object it was based on goes once its bytes are here.
        const stored = e.stage.baseEtag !== undefined;
        if (stored) await e.stage.fill();
        await e.stage.rename(toKey, replaces);
        this.moveEntry(e, to);
        if (stored) await this.client.deleteObject(fromKey);
        this.cache.set(from, { kind: 'missing' });
        this.cache.delete(to);
        this.ownedContents(parentPath(from))?.entries.delete(from);
        if (e.stage.state === 'closed') this.writeBack.schedule(e);
        this.uploadsChanged();
        this.log.info('renamed', { op: 'rename', from: fromKey, to: toKey, staged: true });
        return;
      }
      // Uploaded meanwhile: a stored file now.
      const now = this.resolveKnown(from);
      if (now?.kind !== 'file') throw refuse('notFound', from);
      src = now;
    }
    if (src.kind !== 'file') throw refuse('notFound', from);
    const { etag } = await this.client.copyObject(fromKey, toKey, { ifMatch: src.info.etag, sizeBytes: src.info.sizeBytes });
    await this.client.deleteObject(fromKey);
    this.cache.set(from, { kind: 'missing' });
    this.ownedContents(parentPath(from))?.entries.delete(from);
    this.noteStored(to, { key: toKey, sizeBytes: src.info.sizeBytes, etag, lastModified: new Date(this.clock.now()) });
    this.log.info('renamed', { op: 'rename', from: fromKey, to: toKey, replaced: replaces !== undefined });
  }

  /**
   * A folder: staged files in it are renamed locally, then every key is
   * moved server-side (folder-rename.ts), with progress for the tray.
   */
  private async renameFolder(from: string, to: string): Promise<void> {
    const fromPrefix = dirPrefix(this.config.prefix, from);
    const toPrefix = dirPrefix(this.config.prefix, to);
    const moved = (p: string): string => to + p.slice(from.length);
    const deleteOnly = new Set<string>();
    for (const [p, e] of [...this.staged]) {
      if (!isInside(p, from)) continue;
      await this.stopUpload(e);
      if (this.staged.get(p) !== e) continue;
      if (e.stage.baseEtag !== undefined) {
        await e.stage.fill();
        deleteOnly.add(e.stage.key);
      }
      await e.stage.rename(fileKey(this.config.prefix, moved(p)), undefined);
      this.moveEntry(e, moved(p));
      if (e.stage.state === 'closed') this.writeBack.schedule(e);
    }
    for (const d of [...this.localDirs]) {
      if (d !== from && !isInside(d, from)) continue;
      this.localDirs.delete(d);
      this.localDirs.add(moved(d));
    }
    const progress = (done: number, total: number, finished: boolean, error?: string): void => {
      this.events.onRenameProgress?.({ from, to, done, total, finished, ...(error !== undefined ? { error } : {}) });
    };
    const started = this.clock.now();
    try {
      const { total } = await renameFolderKeys({
        client: this.client, fromPrefix, toPrefix,
        concurrency: this.config.maxUploadsInFlight ?? DEFAULT_UPLOADS_IN_FLIGHT,
        deleteOnly,
        onProgress: (done, n) => progress(done, n, false),
      });
      progress(total, total, true);
      this.log.info('renamed', { op: 'rename', from: fromPrefix, to: toPrefix, objects: total, durationMs: this.clock.now() - started });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error('folder rename stopped', { op: 'rename', from: fromPrefix, to: toPrefix, error: message, ...requestIdOf(err) });
      if (err instanceof FolderRenameError) progress(err.moved, err.total, true, message);
      else progress(0, 0, true, message);
      throw new FsError('EIO', message, { rule: 'ioError', cause: err });
    } finally {
      // Half way, both folders hold objects: looked up afresh.
      this.forgetUnder(from);
      this.forgetUnder(to);
      this.cache.delete(to);
      this.uploadsChanged();
    }
    this.cache.set(from, { kind: 'missing' });
    this.ownedContents(parentPath(from))?.entries.delete(from);
  }

  /** A staged entry at another path (a rename), its handles too. */
  private moveEntry(e: StagedEntry, to: string): void {
    if (this.staged.get(e.path) === e) this.staged.delete(e.path);
    e.path = to;
    this.staged.set(to, e);
    for (const [, h] of this.handles) if (h.kind === 'staged' && h.entry === e) h.path = to;
  }

  /** Drops what the caches say of a folder and everything in it (a rename moved it). */
  private forgetUnder(dir: string): void {
    this.cache.deleteWhere((p) => p === dir || isInside(p, dir));
    this.folderIndexes.deleteWhere((p) => p === dir || isInside(p, dir));
    for (const d of [...this.ownedDirs.keys()]) if (d === dir || isInside(d, dir)) this.ownedDirs.delete(d);
  }

  /**
   * At mount: uploads what an earlier run accepted and did not upload.
   * Returns what was kept (never closed, a failed write, unreadable).
   */
  recover(found: readonly RecoveredStage[]): { uploading: number; kept: { path: string; reason: string }[] } {
    const kept: { path: string; reason: string }[] = [];
    let uploading = 0;
    const toPath = (key: string): string => '/' + (key.startsWith(this.config.prefix) ? key.slice(this.config.prefix.length) : key);
    for (const r of found) {
      if (r.action === 'keep') {
        // The reason's code (KeptReason): the tray words it; the log has the message.
        kept.push({ path: r.record ? toPath(r.record.key) : r.dataPath, reason: r.reason });
        continue;
      }
      const path = toPath(r.stage.key);
      if (this.staged.has(path)) {
        kept.push({ path, reason: `${path}: staged twice; the older copy is kept in ${r.stage.dataPath}` });
        continue;
      }
      const e = this.addEntry(path, r.stage, -1);
      this.writeBack.schedule(e, 0);
      uploading++;
    }
    this.log.info('staged files recovered', { uploading, kept: kept.length });
    return { uploading, kept };
  }

  /**
   * Ends every handle before unmounting. A file a program still holds open
   * for writing is not finished: publishing it would leave a truncated
   * object. Its upload is aborted (no object, no parts left) and its later
   * writes fail with EIO. Uploads already completing (close or fsync under
   * way) finish, unless abandoned (Quit anyway): then they are aborted too,
   * so no parts are left behind.
   *
   * Editing mode: closed staged files are uploaded first; abandoned, or
   * failing, they stay staged and the next mount uploads them. A staged
   * file still open stays as it is, reported at the next mount.
   */
  async drain(options: { abandonUploads?: boolean } = {}): Promise<void> {
    if (this.config.allowEdit) {
      this.draining = true;
      if (options.abandonUploads) this.writeBack.clear();
      else await this.writeBack.drain();
      await this.stagingArea.flushSyncs();
      this.log.info('staged uploads', { ...this.writeBack.stats, concurrency: this.config.maxUploadsInFlight ?? DEFAULT_UPLOADS_IN_FLIGHT });
      const left = [...this.staged.values()].filter((e) => this.isDirty(e)).map((e) => e.path);
      if (left.length > 0) {
        this.log.warn('staged files not uploaded; the next mount uploads them', { count: left.length, paths: left.slice(0, 20), stagingDirectory: this.stagingArea.directory });
      }
    }
    const pending: Promise<unknown>[] = [];
    for (const [fd, h] of this.handles) {
      if (h.kind === 'staged') {
        this.handles.delete(fd);
      } else if (h.kind === 'read') {
        h.prefetcher.close();
        this.handles.delete(fd);
      } else if (h.completed && !options.abandonUploads) {
        pending.push(h.uploader.complete());
      } else {
        pending.push(this.abortWrite(h));
      }
    }
    await Promise.allSettled(pending);
  }

  private async abortWrite(h: WriteHandle): Promise<void> {
    h.completed = true;
    if (h.uploader.state === 'completed') return;
    h.fill?.abort();
    await h.uploader.abort();
    if (this.writing.get(h.path) === h) this.writing.delete(h.path);
    const err = new FsError('EIO', `${h.path}: still open for writing at unmount; the upload was aborted and the object not written`, { rule: 'ioError' });
    this.log.warn('upload aborted', { op: 'unmount', key: h.uploader.key, sizeBytes: h.uploader.sizeBytes });
    this.events.onUploadFailed?.(h.path, err);
    this.events.onUploadsChanged?.(this.uploadsInProgress);
  }
}

/** A listing page's entries as names in its folder; keys that cannot be names are left out (names.ts). */
function pageEntries(prefix: string, page: ListPage): { dirs: string[]; files: Array<[string, ObjectInfo]> } {
  const dirs: string[] = [];
  for (const p of page.commonPrefixes) {
    const name = p.slice(prefix.length, -1);
    if (isValidName(name)) dirs.push(name);
  }
  const files: Array<[string, ObjectInfo]> = [];
  for (const o of page.objects) {
    const name = o.key.slice(prefix.length);
    if (isValidName(name)) files.push([name, o]);
  }
  return { dirs, files };
}

function requestIdOf(err: unknown): { requestId?: string } {
  let e: unknown = err;
  while (e instanceof Error) {
    if (e instanceof S3RequestError) return e.requestId ? { requestId: e.requestId } : {};
    e = e.cause;
  }
  return {};
}
