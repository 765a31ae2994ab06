/**
 * One mount's lifecycle: check (mount point, credentials, bucket), mount,
 * watch for an external `umount`, drain and unmount. The worker runs it for
 * the CLI and the tray alike; `sosmount --foreground` runs it in-process.
 */
import { createHash } from 'node:crypto';
import { readdir, realpath } from 'node:fs/promises';
import os from 'node:os';
import type { MountOptions } from '../options.js';
import { metadataTtlMs } from '../options.js';
import type { Logger } from '../log.js';
import { credentialProvider, openObjectClient, type StaticCredentials } from '../s3/sdk-client.js';
import { S3RequestError, toS3Error } from '../s3/errors.js';
import type { ObjectClient } from '../s3/object-client.js';
import { S3FileSystem, type FsEvents } from '../fs/filesystem.js';
import { createFuse, type FuseMount } from '../fs/fuse-adapter.js';
import { checkFoldersOutsideMountPoint, checkMountPoint, forceUnmount, isMountPoint, type LocalFolder } from './mount-point.js';
import { UploadJournal, abortAbandonedUploads } from './upload-journal.js';
import { uploadJournalDirectory } from '../log.js';
import type { UploadTracker } from '../data/uploader.js';
import { StagingArea, StagingInUseError, defaultStagingDirectory } from '../data/staging.js';
import { CacheInUseError, CacheUnusableError, DiskCache } from '../data/disk-cache.js';
import type { MountErrorCode, MountState, WorkerError } from './protocol.js';

export class MountError extends Error {
  override readonly name = 'MountError';
  readonly code: MountErrorCode;
  readonly requestId: string | undefined;

  constructor(code: MountErrorCode, message: string, options: { requestId?: string | undefined; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.requestId = options.requestId;
  }

  toWorkerError(): WorkerError {
    return { code: this.code, message: this.message, requestId: this.requestId };
  }
}

/** Bytes of read-ahead all open files of one mount may hold (the worker's RSS stays bounded: docs/benchmarks.md). */
const PREFETCH_BUDGET_BYTES = 256 * 1024 * 1024;
/** Parts of one upload in flight: memory per writer is (this + 1) x write part size. */
const MAX_PARTS_IN_FLIGHT = 4;
/** How often we look for an external `umount` of our mount point. */
const UNMOUNT_POLL_MS = 500;

function endpointName(options: MountOptions): string {
  return options.endpointUrl ?? 'the default AWS S3 endpoint';
}

/**
 * Editing mode's staging folder: --staging-directory, else one per bucket,
 * prefix and endpoint under the state directory, so the next mount of the
 * same folder finds what an earlier run left to upload, wherever it is
 * mounted.
 */
export function stagingDirectoryFor(options: Pick<MountOptions, 'stagingDirectory' | 'endpointUrl' | 'region' | 'bucket' | 'prefix'>): string {
  if (options.stagingDirectory !== undefined) return options.stagingDirectory;
  const endpoint = options.endpointUrl ?? `aws:${options.region ?? ''}`;
  const id = createHash('sha256').update(`${endpoint}\n${options.bucket}\n${options.prefix}`).digest('hex').slice(0, 12);
  return defaultStagingDirectory(`${options.bucket}-${id}`);
}

/** The message a user reads when the bucket check fails, by cause. */
export function bucketCheckError(err: S3RequestError, options: MountOptions): MountError {
  const rid = err.requestId ? ` (request id ${err.requestId})` : '';
  switch (err.kind) {
    case 'NoSuchBucket':
      return new MountError('bucket-not-found', `bucket ${options.bucket} does not exist at ${endpointName(options)}`, { requestId: err.requestId, cause: err });
    case 'AccessDenied':
      return new MountError('access-denied', `access denied to bucket ${options.bucket}${rid}`, { requestId: err.requestId, cause: err });
    case 'InvalidCredentials':
      return new MountError('invalid-credentials', `the credentials were rejected by ${endpointName(options)}${err.code ? ` (${err.code})` : ''}${rid}`, { requestId: err.requestId, cause: err });
    case 'ClockSkew':
      return new MountError('clock-skew', `this computer's clock differs too much from the server's; fix the system time${rid}`, { requestId: err.requestId, cause: err });
    case 'Network':
      return new MountError('endpoint-unreachable', `cannot reach ${endpointName(options)}: ${(err.cause as Error | undefined)?.message ?? err.message}`, { cause: err });
    default:
      return new MountError('internal', `checking bucket ${options.bucket} failed: ${err.message}`, { requestId: err.requestId, cause: err });
  }
}

/**
 * Mountpoint's promise: an object created by another client is visible at
 * once. So with the default (minimal) TTL nothing is cached as missing; a
 * TTL the user chose applies to misses too unless set apart.
 *
 * Editing mode trusts a miss as long as a hit (1 s with minimal): programs
 * ask about a new name several times before creating it (`cp -r` looks up
 * its target folder three times, mkdir once more), each a round trip to
 * S3 otherwise. What another client creates meanwhile is not lost: our
 * upload of the same name is conditional and becomes a conflict copy.
 */
export function negativeTtlMs(options: Pick<MountOptions, 'metadataTtl' | 'negativeMetadataTtl' | 'allowEdit'>): number {
  if (options.negativeMetadataTtl) return metadataTtlMs(options.negativeMetadataTtl);
  return options.metadataTtl.kind === 'minimal' && !options.allowEdit ? 0 : metadataTtlMs(options.metadataTtl);
}

export interface MountHooks {
  onState?(state: MountState, error?: WorkerError): void;
  events?: FsEvents;
  uploadTracker?: UploadTracker | undefined;
  /** Folders the caller writes to while the mount runs (its log folder): refused inside the mount point. */
  localFolders?: readonly LocalFolder[] | undefined;
}

export class BucketMount {
  readonly options: MountOptions;
  readonly fs: S3FileSystem;
  private readonly fuse: FuseMount;
  private readonly log: Logger;
  private readonly hooks: MountHooks;
  /** Closes what the mount holds besides FUSE (the staging folder). */
  private readonly release: () => Promise<void>;
  private watch: NodeJS.Timeout | undefined;
  private stateValue: MountState = 'mounting';
  private unmounting: Promise<void> | undefined;
  private finishing: Promise<void> | undefined;
  private readonly ended: Promise<void>;
  private resolveEnded!: () => void;

  /** `--cache`'s blocks. */
  readonly dataCache: DiskCache | undefined;

  private constructor(options: MountOptions, fs: S3FileSystem, fuse: FuseMount, log: Logger, hooks: MountHooks, release: () => Promise<void> = async () => {},
    dataCache?: DiskCache) {
    this.options = options;
    this.fs = fs;
    this.fuse = fuse;
    this.log = log;
    this.hooks = hooks;
    this.release = release;
    this.dataCache = dataCache;
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
  }

  get state(): MountState {
    return this.stateValue;
  }

  /** Resolves when the mount is gone, by our unmount or an external one. */
  whenEnded(): Promise<void> {
    return this.ended;
  }

  private setState(state: MountState, error?: WorkerError): void {
    this.stateValue = state;
    this.hooks.onState?.(state, error);
  }

  /** Runs the checks, then mounts. Throws {@link MountError} with a one-line reason. */
  static async mount(given: MountOptions, credentials: StaticCredentials | undefined, log: Logger, hooks: MountHooks = {}): Promise<BucketMount> {
    const problem = await checkMountPoint(given.mountPoint);
    if (problem) throw new MountError(problem.code, problem.message);
    const journalDir = uploadJournalDirectory();
    const inside = await checkFoldersOutsideMountPoint(given.mountPoint, [
      ...(hooks.localFolders ?? []),
      { what: 'upload journal folder', folder: journalDir },
      ...(given.allowEdit ? [{ what: 'staging folder', folder: stagingDirectoryFor(given) }] : []),
      ...(given.cacheDirectory !== undefined ? [{ what: 'cache folder', folder: given.cacheDirectory }] : []),
    ]);
    if (inside) throw new MountError(inside.code, inside.message);
    // The kernel lists mounts by their real path; watching a symlinked
    // path would mistake our own mount for an external unmount.
    const options: MountOptions = { ...given, mountPoint: await realpath(given.mountPoint) };

    const connection = {
      bucket: options.bucket,
      endpointUrl: options.endpointUrl,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      profile: options.profile,
      credentials,
      uploadChecksums: options.uploadChecksums,
      storageClass: options.storageClass,
    };
    try {
      await credentialProvider(connection)();
    } catch (err) {
      const which = options.profile ? `profile ${options.profile}` : 'the environment, ~/.aws/credentials or ~/.aws/config';
      throw new MountError('credentials-missing', `no credentials found in ${which}: ${(err as Error).message}`, { cause: err });
    }

    // A quick, single-attempt check: an unreachable endpoint fails in seconds, not after retries.
    const probe = openObjectClient({ ...connection, maxConnections: 2, maxAttempts: 1, connectTimeoutMs: 5_000, requestTimeoutMs: 15_000 });
    let sampleKey: string | undefined;
    try {
      const page = await probe.listObjects({ prefix: options.prefix, delimiter: '/', maxKeys: 1 });
      sampleKey = page.objects[0]?.key;
    } catch (err) {
      throw bucketCheckError(err instanceof S3RequestError ? err : toS3Error(err, { operation: 'ListObjectsV2', bucket: options.bucket }), options);
    } finally {
      probe.destroy();
    }

    // --max-threads bounds every connection of the mount (http-transport.ts).
    const client: ObjectClient = openObjectClient({ ...connection, maxConnections: options.maxThreads });
    const endpoint = options.endpointUrl ?? `aws:${options.region ?? ''}`;
    // A lookup sends a GET and a listing at once: two connections opened now
    // spare the first file access their handshakes (a round trip each on a
    // WAN), and running both requests once compiles the SDK's code for them
    // (the first GET of a fresh process took 3x longer than the next).
    void client.listObjects({ prefix: options.prefix, delimiter: '/', maxKeys: 1 }).catch(() => {});
    void client.getFirstBytes(sampleKey ?? `${options.prefix}.sosmount-warm-up`, 1).catch(() => {});
    await abortAbandonedUploads(journalDir, endpoint, client, log).catch((err: unknown) => {
      log.warn('could not clean up uploads of dead workers', { error: (err as Error).message });
    });
    const journal = new UploadJournal(journalDir);
    return BucketMount.mountWith(client, options, log, {
      ...hooks,
      uploadTracker: {
        created: (key, uploadId) => journal.created({ endpoint, bucket: options.bucket, key, uploadId }),
        ended: (uploadId) => journal.ended(uploadId),
      },
    });
  }

  /** Mounts over a given client (tests use this with a fault-injecting one). */
  static async mountWith(client: ObjectClient, options: MountOptions, log: Logger, hooks: MountHooks = {}): Promise<BucketMount> {
    const ttlMs = metadataTtlMs(options.metadataTtl);
    const stop = new AbortController();
    let staging: StagingArea | undefined;
    let recovered: Awaited<ReturnType<StagingArea['open']>> = [];
    const stagingDirectory = stagingDirectoryFor(options);
    if (!options.allowEdit) {
      // Editing mode was on before and left files to upload: they wait for it.
      const waiting = (await readdir(stagingDirectory).catch(() => [] as string[])).filter((f) => f.endsWith('.json'));
      if (waiting.length > 0) log.warn('staged files from editing mode wait for the next mount with --allow-edit', { count: waiting.length, stagingDirectory });
    } else {
      staging = new StagingArea({ directory: stagingDirectory, log, signal: stop.signal });
      try {
        recovered = await staging.open();
      } catch (err) {
        if (err instanceof StagingInUseError) throw new MountError('staging-in-use', err.message, { cause: err });
        throw new MountError('internal', `cannot open the staging folder ${staging.directory}: ${(err as Error).message}`, { cause: err });
      }
    }
    let dataCache: DiskCache | undefined;
    if (options.cacheDirectory !== undefined) {
      try {
        dataCache = await DiskCache.open({ directory: options.cacheDirectory, blockSizeBytes: options.cacheBlockSizeBytes, maxSizeBytes: options.maxCacheSizeBytes, log });
      } catch (err) {
        await staging?.close();
        if (err instanceof CacheInUseError) throw new MountError('cache-in-use', err.message, { cause: err });
        if (err instanceof CacheUnusableError) throw new MountError('cache-unusable', err.message, { cause: err });
        throw new MountError('internal', `cannot open the cache folder ${options.cacheDirectory}: ${(err as Error).message}`, { cause: err });
      }
    }
    const fs = new S3FileSystem(client, {
      prefix: options.prefix,
      readOnly: options.readOnly,
      allowDelete: options.allowDelete,
      allowOverwrite: options.allowOverwrite,
      allowEdit: options.allowEdit,
      uploadDelayMs: options.uploadDelayMs,
      staging,
      maxUploadsInFlight: Math.min(16, options.maxThreads),
      uid: options.uid,
      gid: options.gid,
      fileMode: options.fileMode,
      dirMode: options.dirMode,
      metadataTtlMs: ttlMs,
      negativeMetadataTtlMs: negativeTtlMs(options),
      readPartSizeBytes: options.readPartSizeBytes,
      writePartSizeBytes: options.writePartSizeBytes,
      maxPartsInFlight: MAX_PARTS_IN_FLIGHT,
      prefetchBudgetBytes: PREFETCH_BUDGET_BYTES,
      uploadTracker: hooks.uploadTracker,
      dataCache,
    }, { log, ...(hooks.events ? { events: hooks.events } : {}) });
    const fuse = createFuse(options.mountPoint, fs, {
      allowOther: options.allowOther,
      allowRoot: options.allowRoot,
      autoUnmount: options.autoUnmount,
      debug: options.debug && process.env['SOSMOUNT_FUSE_DEBUG'] === '1',
      // The kernel caches entries for the metadata TTL, capped so a long TTL
      // does not hide our own local changes' effects from other processes for long.
      kernelCacheSeconds: Math.min(ttlMs, 60_000) / 1000,
      fsName: `sosmount:${options.bucket}${options.prefix ? '/' + options.prefix : ''}`,
    }, log);
    const m = new BucketMount(options, fs, fuse, log, hooks, async () => {
      stop.abort();
      await Promise.all([staging?.close(), dataCache?.close()]);
    }, dataCache);
    m.setState('mounting');
    try {
      await fuse.mount();
    } catch (err) {
      await m.release().catch(() => undefined);
      throw new MountError('fuse-unavailable', `cannot mount at ${options.mountPoint}: ${(err as Error).message}`, { cause: err });
    }
    m.setState('mounted');
    log.info('mounted', { binding: fuse.binding, bucket: options.bucket, mountPoint: options.mountPoint, prefix: options.prefix, endpoint: options.endpointUrl, pid: process.pid, host: os.hostname() });
    m.watchForExternalUnmount();
    if (staging) {
      const r = fs.recover(recovered);
      if (r.uploading > 0 || r.kept.length > 0) hooks.events?.onRecovered?.({ ...r, stagingDirectory: staging.directory });
    }
    return m;
  }

  private watchForExternalUnmount(): void {
    const endedOutside = (): void => {
      if (this.stateValue !== 'mounted' || this.finishing) return;
      this.log.info('unmounted from outside', { mountPoint: this.options.mountPoint });
      void this.finish();
    };
    void this.fuse.ended.then(endedOutside);
    this.watch = setInterval(() => {
      void isMountPoint(this.options.mountPoint).then((mounted) => {
        if (!mounted) endedOutside();
      }, () => { /* the check itself failed; try again next tick */ });
    }, UNMOUNT_POLL_MS);
    this.watch.unref();
  }

  /**
   * Finishes uploads already completing (or aborts them with
   * abandonUploads), aborts those of files still open, then unmounts.
   * Safe to call more than once.
   */
  unmount(options: { abandonUploads?: boolean } = {}): Promise<void> {
    if (!this.unmounting) {
      this.unmounting = (async () => {
        this.setState('unmounting');
        this.log.info('unmounting', { mountPoint: this.options.mountPoint, uploadsInProgress: this.fs.uploadsInProgress, abandonUploads: options.abandonUploads === true });
        await this.fs.drain({ abandonUploads: options.abandonUploads === true });
        await this.fuse.unmount().catch((err: unknown) => {
          this.log.warn('unmount failed, detaching', { error: (err as Error).message });
        });
        if (await isMountPoint(this.options.mountPoint).catch(() => false)) await forceUnmount(this.options.mountPoint);
        await this.finish();
      })();
    }
    return this.unmounting;
  }

  /** Ends the mount once, whichever of our unmount, the binding or the poll sees the end first. */
  private finish(): Promise<void> {
    if (this.watch) clearInterval(this.watch);
    this.watch = undefined;
    this.finishing ??= (async () => {
      await this.fs.drain();
      await this.release().catch((err: unknown) => this.log.warn('closing the staging or cache folder failed', { error: (err as Error).message }));
      this.setState('unmounted');
      // What the kernel asked for, per operation: shows at a glance whether
      // a workload was served by listings or by one request per file.
      this.log.info('unmounted', { mountPoint: this.options.mountPoint, fuseOperations: this.fuse.operationCounts() });
      this.resolveEnded();
    })();
    return this.finishing;
  }
}
