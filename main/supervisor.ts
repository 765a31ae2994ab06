/**
 * The mount supervisor: one worker process per mount (app/worker.ts),
 * started through a {@link WorkerLauncher}, watched through the worker
 * protocol, and stopped by an `unmount` message (app/worker/protocol.ts).
 *
 * What it guarantees:
 * - Credentials come from the injected lookup (the keychain in the app) and
 *   reach the worker only in its `mount` message.
 * - Each mount's live state is one {@link MountStatus}, uploads included.
 * - A worker that exits without unmounting (a crash, SIGKILL) leaves no
 *   stale mount behind: its mount point is detached before the error state
 *   is published, so "Transport endpoint is not connected" never shows.
 *   It is mounted again when the mount was asked to be kept mounted.
 * - A mount that fails for a reason that may pass (endpoint unreachable,
 *   a server error, the keychain not unlocked yet, a crash) is retried with
 *   exponential backoff while the user still wants it; the status says why
 *   and when. Configuration errors (no such bucket, access denied, a bad
 *   folder) are not retried: retrying cannot fix them.
 * - Stopping never leaves a mount: a worker that does not end in time is
 *   killed and its mount point detached.
 */
import { CacheInUseError, clearCacheFolder } from '../app/data/disk-cache.js';
import { forceUnmount, isMountPoint, isStaleMount } from '../app/worker/mount-point.js';
import { buildMountOptions, type MountOptions } from '../app/options.js';
import type { StaticCredentials } from '../app/s3/sdk-client.js';
import { silentLogger, type Logger } from '../app/log.js';
import type { FromWorker, MountErrorCode, ToWorker, WorkerError } from '../app/worker/protocol.js';
import { cacheDirectoryFor } from './cache-folders.js';
import type { FolderRename, MountConfig, MountStatus, PendingUploads } from './model.js';
import type { WorkerHandle, WorkerLauncher } from './worker-launcher.js';

/** Raised by the credentials lookup; `retryable` when the keychain may work later (locked, not started yet). */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
  readonly retryable: boolean;

  constructor(message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

export type SupervisorEvent =
  | { type: 'mount-failed'; mountId: string; message: string; requestId?: string | undefined; attempt: number; retryInMs?: number | undefined }
  | { type: 'worker-crashed'; mountId: string; message: string; remountInMs?: number | undefined }
  | { type: 'upload-failed'; mountId: string; path: string; message: string }
  | { type: 'unmounted-externally'; mountId: string }
  /** Editing mode: `path` changed in the bucket while it was edited; ours is at `conflictPath`. */
  | { type: 'conflict'; mountId: string; path: string; conflictPath: string }
  /** Editing mode, at mount: files an earlier run accepted and did not upload (see FromWorker 'recovered'). */
  | { type: 'recovered'; mountId: string; uploading: number; kept: Array<{ path: string; reason: string }>; stagingDirectory: string }
  /** Editing mode: a folder rename stopped half way; `done` of `total` objects were moved. */
  | { type: 'rename-failed'; mountId: string; from: string; to: string; done: number; total: number; message: string };

export interface SupervisorOptions {
  launcher: WorkerLauncher;
  /** The profile's key pair. Throw {@link CredentialsError} with a message the user can act on. */
  credentialsFor(profile: string): Promise<StaticCredentials>;
  /** Where each worker writes its JSON-lines log (the app's log folder). */
  logDirectory: string;
  log?: Logger;
  /** Delay before retry number `attempt` (1-based). Default: 1 s doubling up to 60 s. */
  backoffMs?(attempt: number): number;
  /** How long an unmount may take (uploads drain first) before the worker is killed. Default 60 s. */
  unmountTimeoutMs?: number;
  /** How long a worker may take to report its mount before it is killed and the attempt counted as failed. Default 60 s. */
  mountTimeoutMs?: number;
  /** How long a mounted worker may take to answer "clear the cache". Default 60 s (a large cache is many files). */
  clearCacheTimeoutMs?: number;
  /** Each mount's cache folder; default under the XDG cache directory (main/cache-folders.ts). */
  cacheDirectoryFor?(mountId: string): string;
  debug?: boolean;
}

/** The cache could not be cleared now; the message says why in the user's words. */
export class ClearCacheError extends Error {
  override readonly name = 'ClearCacheError';
}

export interface MountRequest {
  /** Mount again after a crash (the mount is flagged "mount at login" or asked to be kept mounted). */
  keepMounted: boolean;
}

/** Quit anyway: how long a worker may take to abort its uploads and unmount before it is killed. */
const ABANDON_TIMEOUT_MS = 10_000;
/** Failures that say something about the configuration or the account: retrying will not help. */
const PERMANENT: ReadonlySet<MountErrorCode> = new Set<MountErrorCode>([
  'mount-point-missing',
  'mount-point-not-directory',
  'mount-point-not-empty',
  'mount-point-in-use',
  'folder-inside-mount-point',
  'bucket-not-found',
  'access-denied',
  'invalid-credentials',
  'credentials-missing',
  'fuse-unavailable',
  // Not here: 'staging-in-use' and 'cache-in-use' (the other process may end),
  // 'cache-unusable' (a full disk may get room): retrying can fix them.
]);

export function defaultBackoffMs(attempt: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

/**
 * The worker's MountOptions for a configured mount, through the CLI's own
 * builder: same defaults, same checks, same messages as the equivalent
 * command line. Throws a UsageError naming the flag at fault.
 */
export function mountOptionsFor(config: MountConfig, options: { logDirectory: string; debug?: boolean; cacheDirectory?: string }): MountOptions {
  const cache = config.cacheEnabled
    ? { cache: options.cacheDirectory ?? cacheDirectoryFor(config.id), maxCacheSize: String(config.cacheSizeMiB) }
    : {};
  return buildMountOptions(
    {
      bucket: config.bucket,
      mountPoint: config.mountPoint,
      zone: config.zone,
      // Settings validation allows only one of the two (main/validation.ts); should a hand-edited
      // file hold both, the zone wins rather than the mount failing on --zone's conflict check.
      endpointUrl: config.zone === undefined ? config.endpointUrl : undefined,
      forcePathStyle: config.forcePathStyle,
      prefix: config.prefix,
      readOnly: config.readOnly,
      allowDelete: config.allowDelete,
      allowOverwrite: config.allowOverwrite,
      allowEdit: config.allowEdit,
      ...cache,
      debug: options.debug ?? false,
      logDirectory: options.logDirectory,
    },
    { cwd: '/', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 },
  );
}

/** Detaches whatever is left at a mount point; true when the folder is usable again. */
export async function cleanMountPoint(dir: string): Promise<boolean> {
  try {
    if ((await isStaleMount(dir)) || (await isMountPoint(dir))) await forceUnmount(dir);
    return !(await isStaleMount(dir)) && !(await isMountPoint(dir));
  } catch {
    // The folder vanished or cannot be read: nothing is mounted there that we could detach.
    return !(await isStaleMount(dir).catch(() => false));
  }
}

/** Detaches a dead FUSE mount ("Transport endpoint is not connected") and nothing else. */
export async function cleanStaleMount(dir: string): Promise<boolean> {
  if (!(await isStaleMount(dir).catch(() => false))) return true;
  await forceUnmount(dir);
  return !(await isStaleMount(dir).catch(() => false));
}

interface Worker {
  handle: WorkerHandle;
  /** The worker said 'mounted'. */
  mounted: boolean;
  /** The worker said 'unmounted' (ours or an external umount). */
  unmounted: boolean;
  /** We asked it to stop. */
  stopping: boolean;
  /** The 'unmount' message went out (only possible once it is mounted). */
  unmountSent: boolean;
  error: WorkerError | undefined;
  uploads: number;
  /** Started in editing mode: its waiting uploads are staged on disk and outlive it. */
  editing: boolean;
  /** Folder renames under way, oldest first (keyed by from and to). */
  renames: Map<string, FolderRename>;
  /** A `clear-cache` sent and not answered yet; a second request shares it (the answer names no request). */
  clearing: { done: Promise<number>; settle(freedBytes: number, error?: string): void } | undefined;
  stderrTail: string;
  exited: Promise<void>;
  deadline: NodeJS.Timeout | undefined;
}

/** The status of a running worker; a rename shows only while mounted (unmounting says what it waits for). */
function liveStatus(state: 'mounted' | 'unmounting', worker: Worker): MountStatus {
  if (state === 'unmounting') return { state, uploadsInProgress: worker.uploads, editing: worker.editing };
  const renaming = worker.renames.values().next().value;
  return { state, uploadsInProgress: worker.uploads, editing: worker.editing, ...(renaming ? { renaming } : {}) };
}

interface Slot {
  config: MountConfig;
  keepMounted: boolean;
  /** What the user wants: mounted or not. */
  wanted: boolean;
  status: MountStatus;
  worker: Worker | undefined;
  /** Counts failures since the last successful mount; sets the backoff. */
  attempt: number;
  retry: NodeJS.Timeout | undefined;
  /** Set while credentials are looked up, before a worker exists. */
  starting: Promise<void> | undefined;
}

const STDERR_TAIL_CHARS = 4000;

export class Supervisor {
  private readonly options: SupervisorOptions;
  private readonly log: Logger;
  private readonly slots = new Map<string, Slot>();
  private readonly statusListeners = new Set<(mountId: string, status: MountStatus) => void>();
  private readonly eventListeners = new Set<(event: SupervisorEvent) => void>();
  private closed = false;

  constructor(options: SupervisorOptions) {
    this.options = options;
    this.log = options.log ?? silentLogger;
  }

  /** Called on every status change of any mount. Returns an unsubscribe function. */
  onStatus(listener: (mountId: string, status: MountStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  onEvent(listener: (event: SupervisorEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  status(mountId: string): MountStatus {
    return this.slots.get(mountId)?.status ?? { state: 'unmounted' };
  }

  /** Whether the user wants this mount mounted (the tray's check mark). */
  wanted(mountId: string): boolean {
    return this.slots.get(mountId)?.wanted ?? false;
  }

  /** Files being uploaded, over all mounts. */
  uploadsInProgress(): number {
    const pending = this.pendingUploads();
    return pending.lost + pending.kept;
  }

  /** Files being uploaded, over all mounts, by what quitting now would do to them. */
  pendingUploads(): PendingUploads {
    const pending: PendingUploads = { lost: 0, kept: 0 };
    for (const slot of this.slots.values()) {
      const worker = slot.worker;
      if (!worker) continue;
      if (worker.editing) pending.kept += worker.uploads;
      else pending.lost += worker.uploads;
    }
    return pending;
  }

  /** Mounts this supervisor knows (mounted, retrying, or in an error state). */
  mountIds(): string[] {
    return [...this.slots.keys()];
  }

  workerPid(mountId: string): number | undefined {
    return this.slots.get(mountId)?.worker?.handle.pid;
  }

  /** Mounts (or keeps mounted); a pending retry is brought forward. Returns at once: follow {@link onStatus}. */
  mount(config: MountConfig, request: MountRequest): void {
    if (this.closed) throw new Error('the supervisor is shut down');
    let slot = this.slots.get(config.id);
    if (!slot) {
      slot = { config, keepMounted: request.keepMounted, wanted: true, status: { state: 'unmounted' }, worker: undefined, attempt: 0, retry: undefined, starting: undefined };
      this.slots.set(config.id, slot);
    }
    slot.config = config;
    slot.keepMounted = request.keepMounted;
    slot.wanted = true;
    if (slot.worker || slot.starting) return;
    if (slot.retry) clearTimeout(slot.retry);
    slot.retry = undefined;
    this.start(slot);
  }

  /** Updates what a later (re)mount uses; a running mount keeps its options until remounted. */
  updateConfig(config: MountConfig, request: MountRequest): void {
    const slot = this.slots.get(config.id);
    if (!slot) return;
    slot.config = config;
    slot.keepMounted = request.keepMounted;
  }

  /**
   * Unmounts: uploads in flight complete first (the worker drains them).
   * Resolves when the worker is gone and the folder is free.
   */
  async unmount(mountId: string): Promise<void> {
    const slot = this.slots.get(mountId);
    if (!slot) return;
    slot.wanted = false;
    if (slot.retry) clearTimeout(slot.retry);
    slot.retry = undefined;
    if (slot.starting) await slot.starting;
    const worker = slot.worker;
    if (!worker) {
      if (slot.status.state !== 'unmounted') this.setStatus(slot, { state: 'unmounted' });
      return;
    }
    this.requestStop(slot, worker);
    await worker.exited;
  }

  /**
   * Ends every mount (Quit). With `abandonUploads`, workers still uploading
   * abort those uploads (no object, no parts left) and unmount at once,
   * killed if they do not within a few seconds; otherwise each worker
   * completes its uploads and unmounts.
   */
  async shutdown(options: { abandonUploads: boolean }): Promise<void> {
    this.closed = true;
    const stops: Promise<void>[] = [];
    for (const slot of this.slots.values()) {
      if (options.abandonUploads && slot.worker && slot.worker.uploads > 0) {
        slot.wanted = false;
        const worker = slot.worker;
        worker.stopping = true;
        if (worker.editing) this.log.info('quitting with staged files waiting: they upload at the next mount', { mount: slot.config.name, uploads: worker.uploads });
        else this.log.warn('quitting with uploads in flight: aborting them', { mount: slot.config.name, uploads: worker.uploads });
        if (!worker.handle.send({ type: 'unmount', abandonUploads: true })) worker.handle.kill('SIGKILL');
        const timer = setTimeout(() => worker.handle.kill('SIGKILL'), ABANDON_TIMEOUT_MS);
        timer.unref();
        stops.push(worker.exited.then(() => clearTimeout(timer)));
      } else {
        stops.push(this.unmount(slot.config.id));
      }
    }
    await Promise.all(stops);
  }

  /** The folder of a mount's local disk cache (whether or not its cache is on). */
  cacheDirectory(mountId: string): string {
    return (this.options.cacheDirectoryFor ?? cacheDirectoryFor)(mountId);
  }

  /**
   * Empties a mount's local disk cache and resolves with the bytes freed.
   * While mounted, its worker owns the folder (it holds the lock and the
   * index of what is stored), so the worker is asked; otherwise the folder
   * is emptied here. Throws {@link ClearCacheError} with a reason the user
   * can act on: the mount is between states, the worker failed or did not
   * answer in time, or another process uses the folder.
   */
  async clearCache(mountId: string): Promise<number> {
    const slot = this.slots.get(mountId);
    if (slot?.starting || (slot?.worker && (!slot.worker.mounted || slot.worker.stopping))) {
      throw new ClearCacheError('the mount is starting or stopping; clear its cache once it is mounted or unmounted');
    }
    if (slot?.worker) return this.clearThroughWorker(slot, slot.worker);
    try {
      const freed = await clearCacheFolder(this.cacheDirectory(mountId));
      this.log.info('cache cleared', { mount: slot?.config.name ?? mountId, freedBytes: freed });
      return freed;
    } catch (err) {
      if (err instanceof CacheInUseError) {
        throw new ClearCacheError(`the cache folder is in use by ${err.pid === undefined ? 'another process' : `process ${err.pid}`} (a mount started outside this app?)`, { cause: err });
      }
      throw new ClearCacheError(`the cache could not be cleared: ${(err as Error).message}`, { cause: err });
    }
  }

  private clearThroughWorker(slot: Slot, worker: Worker): Promise<number> {
    if (worker.clearing) return worker.clearing.done;
    const timeoutMs = this.options.clearCacheTimeoutMs ?? 60_000;
    let resolve!: (freed: number) => void;
    let reject!: (err: Error) => void;
    const done = new Promise<number>((res, rej) => { resolve = res; reject = rej; });
    const timer = setTimeout(() => {
      clearing.settle(0, `the mount did not answer within ${timeoutMs / 1000} s`);
    }, timeoutMs);
    // Not unref'd, unlike the other timers here: someone awaits this answer,
    // and every way the wait ends (answer, exit, timeout) clears it.
    const clearing = {
      done,
      settle: (freedBytes: number, error?: string): void => {
        if (worker.clearing !== clearing) return;
        worker.clearing = undefined;
        clearTimeout(timer);
        if (error === undefined) {
          this.log.info('cache cleared', { mount: slot.config.name, freedBytes });
          resolve(freedBytes);
        } else {
          this.log.warn('cache not cleared', { mount: slot.config.name, error });
          reject(new ClearCacheError(`the cache could not be cleared: ${error}`));
        }
      },
    };
    worker.clearing = clearing;
    if (!worker.handle.send({ type: 'clear-cache' })) clearing.settle(0, 'the mount stopped before its cache was cleared; try again');
    return done;
  }

  /** Stops and forgets a mount (it was removed from the settings). */
  async remove(mountId: string): Promise<void> {
    await this.unmount(mountId);
    this.slots.delete(mountId);
  }

  // -------------------------------------------------------------------------

  private setStatus(slot: Slot, status: MountStatus): void {
    // The worker confirms what we already showed ('unmounting' twice): no change, no redraw.
    if (JSON.stringify(slot.status) === JSON.stringify(status)) return;
    slot.status = status;
    for (const listener of this.statusListeners) listener(slot.config.id, status);
  }

  private emit(event: SupervisorEvent): void {
    for (const listener of this.eventListeners) listener(event);
  }

  private start(slot: Slot): void {
    slot.attempt += 1;
    this.setStatus(slot, { state: 'mounting', attempt: slot.attempt });
    const starting = this.launch(slot).catch((err: unknown) => {
      this.log.error('could not start a mount worker', { mount: slot.config.name, error: err instanceof Error ? err.message : String(err) });
      this.failed(slot, { code: 'internal', message: `could not start the mount worker: ${err instanceof Error ? err.message : String(err)}` }, true);
    }).finally(() => {
      slot.starting = undefined;
    });
    slot.starting = starting;
  }

  private async launch(slot: Slot): Promise<void> {
    const config = slot.config;
    let options: MountOptions;
    try {
      options = mountOptionsFor(config, { logDirectory: this.options.logDirectory, debug: this.options.debug ?? false, cacheDirectory: this.cacheDirectory(config.id) });
    } catch (err) {
      this.failed(slot, { code: 'internal', message: `the mount's settings are not valid: ${(err as Error).message}` }, false);
      return;
    }
    let credentials: StaticCredentials;
    try {
      credentials = await this.options.credentialsFor(config.profile);
    } catch (err) {
      const retryable = err instanceof CredentialsError && err.retryable;
      this.failed(slot, { code: 'credentials-missing', message: (err as Error).message }, retryable);
      return;
    }
    if (!slot.wanted) {
      // Unchecked while the keychain was asked.
      this.setStatus(slot, { state: 'unmounted' });
      return;
    }
    // A stale mount left by an earlier worker (or an earlier run of the app) would fail the mount-point check.
    await cleanStaleMount(options.mountPoint);

    let resolveExited!: () => void;
    const worker: Worker = {
      handle: undefined as unknown as WorkerHandle,
      mounted: false,
      unmounted: false,
      stopping: false,
      unmountSent: false,
      error: undefined,
      uploads: 0,
      editing: options.allowEdit,
      renames: new Map(),
      clearing: undefined,
      stderrTail: '',
      exited: new Promise<void>((resolve) => { resolveExited = resolve; }),
      deadline: undefined,
    };
    worker.handle = this.options.launcher.launch(`sos-mount ${config.name}`, {
      message: (raw) => this.onMessage(slot, worker, raw),
      stderr: (text) => {
        worker.stderrTail = (worker.stderrTail + text).slice(-STDERR_TAIL_CHARS);
      },
      exit: (code, signal) => {
        void this.onExit(slot, worker, code, signal).finally(resolveExited);
      },
    });
    slot.worker = worker;
    this.log.info('mount worker started', { mount: config.name, bucket: config.bucket, mountPoint: config.mountPoint, pid: worker.handle.pid, attempt: slot.attempt });
    const request: ToWorker = { type: 'mount', options, credentials, detach: false };
    worker.handle.send(request);
    worker.deadline = setTimeout(() => {
      if (worker.mounted || worker.stopping) return;
      this.log.error('mount worker did not report its mount in time; stopping it', { mount: config.name });
      worker.error = { code: 'internal', message: `the mount did not complete within ${(this.options.mountTimeoutMs ?? 60_000) / 1000} s` };
      worker.handle.kill('SIGKILL');
    }, this.options.mountTimeoutMs ?? 60_000);
    worker.deadline.unref();
  }

  private onMessage(slot: Slot, worker: Worker, raw: unknown): void {
    if (typeof raw !== 'object' || raw === null || typeof (raw as { type?: unknown }).type !== 'string') return;
    const message = raw as FromWorker;
    switch (message.type) {
      case 'state':
        switch (message.state) {
          case 'mounted':
            worker.mounted = true;
            if (worker.deadline) clearTimeout(worker.deadline);
            slot.attempt = 0;
            this.log.info('mounted', { mount: slot.config.name, mountPoint: slot.config.mountPoint });
            if (slot.wanted && !worker.stopping) this.setStatus(slot, liveStatus('mounted', worker));
            else if (worker.stopping) this.sendUnmount(slot, worker);
            else this.requestStop(slot, worker);
            break;
          case 'unmounting':
            this.setStatus(slot, liveStatus('unmounting', worker));
            break;
          case 'unmounted':
            worker.unmounted = true;
            break;
          case 'error':
            worker.error = message.error ?? { code: 'internal', message: 'the mount failed' };
            break;
          case 'mounting':
            break;
        }
        break;
      case 'uploads':
        worker.uploads = message.inProgress;
        this.refreshLive(slot, worker);
        break;
      case 'upload-failed':
        this.log.error('upload failed', { mount: slot.config.name, path: message.path, error: message.message });
        this.emit({ type: 'upload-failed', mountId: slot.config.id, path: message.path, message: message.message });
        break;
      case 'conflict':
        this.log.warn('conflict: the object changed in the bucket while it was edited', { mount: slot.config.name, path: message.path, conflictPath: message.conflictPath });
        this.emit({ type: 'conflict', mountId: slot.config.id, path: message.path, conflictPath: message.conflictPath });
        break;
      case 'recovered':
        this.log.info('files of an earlier run', { mount: slot.config.name, uploading: message.uploading, kept: message.kept.length, stagingDirectory: message.stagingDirectory });
        this.emit({ type: 'recovered', mountId: slot.config.id, uploading: message.uploading, kept: message.kept, stagingDirectory: message.stagingDirectory });
        break;
      case 'rename-progress': {
        // The worker throttles these; the status shows the latest, and only a failed end is an event.
        const key = `${message.from}\0${message.to}`;
        if (!message.finished) {
          worker.renames.set(key, { from: message.from, to: message.to, done: message.done, total: message.total });
        } else {
          worker.renames.delete(key);
          if (message.error !== undefined) {
            this.log.error('folder rename stopped', { mount: slot.config.name, from: message.from, to: message.to, done: message.done, total: message.total, error: message.error });
            this.emit({ type: 'rename-failed', mountId: slot.config.id, from: message.from, to: message.to, done: message.done, total: message.total, message: message.error });
          } else {
            this.log.info('folder renamed', { mount: slot.config.name, from: message.from, to: message.to, objects: message.total });
          }
        }
        this.refreshLive(slot, worker);
        break;
      }
      case 'cache-cleared':
        worker.clearing?.settle(message.freedBytes, message.error);
        break;
      case 'log': {
        const level = message.level === 'error' || message.level === 'warn' ? message.level : 'info';
        this.log[level](String(message.msg), { mount: slot.config.name, from: 'worker' });
        break;
      }
    }
  }

  /** Publishes the worker's counts while the status is a live one (mounted or unmounting). */
  private refreshLive(slot: Slot, worker: Worker): void {
    if (slot.status.state === 'mounted' || slot.status.state === 'unmounting') this.setStatus(slot, liveStatus(slot.status.state, worker));
  }

  private sendUnmount(slot: Slot, worker: Worker): void {
    if (worker.unmountSent) return;
    worker.unmountSent = true;
    this.setStatus(slot, liveStatus('unmounting', worker));
    if (!worker.handle.send({ type: 'unmount' })) worker.handle.kill('SIGTERM');
  }

  private requestStop(slot: Slot, worker: Worker): void {
    if (worker.stopping) return;
    worker.stopping = true;
    // Still mounting: the worker only listens for 'unmount' once mounted; the
    // 'mounted' handler above sends it then, or the mount fails and it exits.
    if (worker.mounted) this.sendUnmount(slot, worker);
    const timeoutMs = this.options.unmountTimeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      this.log.error('mount worker did not stop in time; killing it', { mount: slot.config.name, timeoutMs });
      worker.handle.kill('SIGKILL');
    }, timeoutMs);
    timer.unref();
    void worker.exited.then(() => clearTimeout(timer));
  }

  private async onExit(slot: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (worker.deadline) clearTimeout(worker.deadline);
    worker.clearing?.settle(0, 'the mount stopped before its cache was cleared; try again');
    const how = signal ?? `exit code ${code}`;
    if (slot.worker === worker) slot.worker = undefined;
    // Whatever happened, the folder must not stay a dead FUSE mount. Only a
    // mount this worker made is detached: a failed mount-point check
    // ("already mounted") may be about somebody else's mount.
    const clean = worker.mounted ? await cleanMountPoint(slot.config.mountPoint) : await cleanStaleMount(slot.config.mountPoint);
    if (!clean) this.log.error('could not detach the mount point', { mount: slot.config.name, mountPoint: slot.config.mountPoint });

    if (worker.stopping || (worker.unmounted && code === 0)) {
      this.log.info('mount worker ended', { mount: slot.config.name, how, asked: worker.stopping });
      if (!worker.stopping) {
        // `umount` from a terminal or the file manager: the user's way of saying "unmounted".
        slot.wanted = false;
        this.emit({ type: 'unmounted-externally', mountId: slot.config.id });
      }
      if (slot.wanted && !this.closed) {
        // Checked again while it was unmounting.
        this.start(slot);
      } else {
        this.setStatus(slot, { state: 'unmounted' });
      }
      return;
    }
    if (!worker.mounted && worker.error && worker.error.code !== 'internal') {
      // The mount itself failed and the worker said why.
      this.failed(slot, this.inTrayWords(slot, worker.error), !PERMANENT.has(worker.error.code));
      return;
    }
    // A crash: the worker died while mounted, or while mounting without a reason.
    const reason = worker.error?.message ?? `the mount worker stopped unexpectedly (${how})`;
    this.log.error('mount worker exited unexpectedly', { mount: slot.config.name, how, error: worker.error?.message, stderr: worker.stderrTail.trim().slice(-1000) });
    if (worker.mounted) {
      const again = slot.wanted && slot.keepMounted && !this.closed;
      const delay = again ? this.backoff(slot) : undefined;
      this.setStatus(slot, { state: 'error', message: reason, retryInMs: delay });
      this.emit({ type: 'worker-crashed', mountId: slot.config.id, message: reason, remountInMs: delay });
      if (again && delay !== undefined) this.scheduleRetry(slot, delay);
      else slot.wanted = false;
      return;
    }
    this.failed(slot, { code: 'worker-crashed', message: reason }, true);
  }

  /**
   * The worker words some failures for the command line ("the same --cache
   * folder"); the tray never shows a flag, so those are said its own way.
   */
  private inTrayWords(slot: Slot, error: WorkerError): WorkerError {
    if (error.code === 'cache-in-use') {
      return { ...error, message: `another process is using this mount's cache folder (${this.cacheDirectory(slot.config.id)})` };
    }
    return error;
  }

  private backoff(slot: Slot): number {
    return (this.options.backoffMs ?? defaultBackoffMs)(Math.max(1, slot.attempt));
  }

  private failed(slot: Slot, error: WorkerError, retryable: boolean): void {
    const again = retryable && slot.wanted && !this.closed;
    const delay = again ? this.backoff(slot) : undefined;
    this.log.warn('mount failed', { mount: slot.config.name, code: error.code, error: error.message, requestId: error.requestId, attempt: slot.attempt, retryInMs: delay });
    this.setStatus(slot, { state: 'error', message: error.message, requestId: error.requestId, retryInMs: delay });
    this.emit({ type: 'mount-failed', mountId: slot.config.id, message: error.message, requestId: error.requestId, attempt: slot.attempt, retryInMs: delay });
    if (again && delay !== undefined) this.scheduleRetry(slot, delay);
    else {
      slot.wanted = false;
      slot.attempt = 0;
    }
  }

  private scheduleRetry(slot: Slot, delayMs: number): void {
    if (slot.retry) clearTimeout(slot.retry);
    slot.retry = setTimeout(() => {
      slot.retry = undefined;
      if (slot.wanted && !slot.worker && !slot.starting && !this.closed) this.start(slot);
    }, delayMs);
  }
}
