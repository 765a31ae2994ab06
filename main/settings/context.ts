/**
 * What the settings handlers are given: the settings store, the keychain,
 * the supervisor's mount states, an S3 client factory and a folder dialog,
 * injected so that no handler imports electron. The Electron adapter passes
 * the real parts; the renderer tests pass the same handlers test doubles.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { S3ConnectionConfig } from '../../app/s3/sdk-client.js';
import type { IpcEvent, IpcEventContract } from '../ipc-contract.js';
import type { MountStatus, SecretStore, Settings } from '../model.js';
import type { AwsSharedFiles } from './aws-shared-files.js';

/** The part of main/settings-store.ts's SettingsStore the handlers use. */
export interface SettingsAccess {
  get(): Settings;
  /** Applies a change and writes it; throws (and keeps the old settings) if the result is invalid. */
  update(change: (draft: Settings) => void): Settings;
}

/** The supervisor's view of each mount, live. */
export interface MountStatusSource {
  status(id: string): MountStatus;
  /** Calls `listener` on every change; returns the unsubscribe function. */
  onStatus(listener: (id: string, status: MountStatus) => void): () => void;
}

/** The mounts' local disk caches: the supervisor in the app. */
export interface CacheControl {
  cacheDirectory(mountId: string): string;
  /** Empties one (through its worker while mounted) and resolves with the bytes freed; a ClearCacheError says why it could not. */
  clearCache(mountId: string): Promise<number>;
}

export interface FolderDialog {
  /** Resolves undefined when the user cancels. */
  chooseFolder(defaultPath: string | undefined): Promise<string | undefined>;
}

export type S3ClientFactory = (config: S3ConnectionConfig) => S3Client;

export type EventSink = <E extends IpcEvent>(event: E, payload: IpcEventContract[E]) => void;

export interface SettingsHandlerDeps {
  settings: SettingsAccess;
  secrets: SecretStore;
  statuses: MountStatusSource;
  caches: CacheControl;
  createS3Client: S3ClientFactory;
  dialog: FolderDialog;
  /** Delivers events to the window (webContents.send in the app). */
  emit: EventSink;
  /** Where "Import" reads keys; default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials. */
  credentialsFile?: string;
  /** Where "Import" reads `[profile x]` sections; default: AWS_CONFIG_FILE, else ~/.aws/config. */
  configFile?: string;
  /** Where the two defaults above look for AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** For showing paths with `~`; default os.homedir(). */
  homeDir?: string;
  /** Per request of "Test connection" and the bucket picker. */
  connectionTimeoutMs?: number;
  /** Least time between two progress events of one upload. */
  progressIntervalMs?: number;
  newId?: () => string;
}

/** The injected parts with their defaults filled in, as each feature module of main/settings/ receives them. */
export interface SettingsContext extends Pick<SettingsHandlerDeps, 'settings' | 'secrets' | 'statuses' | 'caches' | 'createS3Client' | 'dialog' | 'emit'> {
  home: string;
  awsFiles: AwsSharedFiles;
  connectionTimeoutMs: number;
  progressIntervalMs: number;
  newId: () => string;
  /** Aborted when the window closes: uploads and S3 requests in flight stop with it. */
  lifetime: AbortSignal;
}
