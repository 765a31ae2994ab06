/**
 * The one contract between the settings window (renderer) and main: channel
 * names, argument tuples and results. The preload's bridge object, the main
 * handlers (main/settings-handlers.ts), the payload validators
 * (main/ipc-validate.ts) and the renderer's ambient types
 * (renderer/ambient.d.ts) are all typed from this file, so a change here is
 * a compile error wherever a side no longer matches.
 *
 * Types and constants only: this file is compiled into the main program and
 * into the renderer program (tsconfig.renderer.json), so it imports nothing
 * that needs Node or the DOM.
 */
import type { MountConfig, MountStatus } from './model.js';

export type { MountConfig, MountStatus } from './model.js';

/** `window.sosMount` in the settings window. */
export const BRIDGE_NAME = 'sosMount';

/** Renderer -> main requests (`ipcRenderer.invoke`), one per capability. */
export const IpcChannel = {
  GetSnapshot: 'sos-mount:get-snapshot',
  ValidateMount: 'sos-mount:validate-mount',
  SaveMount: 'sos-mount:save-mount',
  RemoveMount: 'sos-mount:remove-mount',
  ChooseFolder: 'sos-mount:choose-folder',
  SaveProfile: 'sos-mount:save-profile',
  RemoveProfile: 'sos-mount:remove-profile',
  ImportProfiles: 'sos-mount:import-profiles',
  TestConnection: 'sos-mount:test-connection',
  ListBuckets: 'sos-mount:list-buckets',
  UploadFiles: 'sos-mount:upload-files',
  CacheUsage: 'sos-mount:cache-usage',
  ClearCache: 'sos-mount:clear-cache',
} as const;
export type IpcChannel = (typeof IpcChannel)[keyof typeof IpcChannel];

/** Main -> renderer events (`webContents.send`). */
export const IpcEvent = {
  MountStatus: 'sos-mount:event:mount-status',
  UploadProgress: 'sos-mount:event:upload-progress',
} as const;
export type IpcEvent = (typeof IpcEvent)[keyof typeof IpcEvent];

// ---------------------------------------------------------------------------
// Payloads

export interface ZoneOption {
  zone: string;
  label: string;
  endpoint: string;
}

export interface MountRow {
  config: MountConfig;
  status: MountStatus;
}

export interface ProfileRow {
  name: string;
  accessKeyId: string;
  /** Whether the keychain holds a secret for it; the secret itself never leaves main. */
  secretStored: boolean;
  /** Names of the mounts that use this profile (removal is refused while any does). */
  usedBy: string[];
}

export interface SettingsSnapshot {
  mounts: MountRow[];
  profiles: ProfileRow[];
  /** The Exoscale zone list of app/s3/zones.ts. */
  zones: ZoneOption[];
  /** Where "Import" reads profiles from (~/.aws/credentials unless AWS_SHARED_CREDENTIALS_FILE says otherwise). */
  credentialsFile: string;
  /** The user's home folder: the page shows paths under it as `~/...`, and main expands a typed `~/`. */
  homeDir: string;
  /** The cache size a new mount starts with (main/model.ts), so the page need not keep its own copy. */
  defaultCacheSizeMiB: number;
}

/** A mount being added (id undefined) or edited. */
export type MountDraft = Omit<MountConfig, 'id'> & { id: string | undefined };

/** The fields that can carry a problem, each shown next to its control (main/validation.ts names them). */
export type MountField = keyof MountConfig;
export type MountProblems = Partial<Record<MountField, string>>;

export type SaveMountResult =
  | { saved: true; mount: MountConfig }
  | { saved: false; problems: MountProblems };

/** A profile being added or edited. `secret` undefined keeps the stored one. */
export interface ProfileDraft {
  name: string;
  accessKeyId: string;
  secret: string | undefined;
  /** true when adding: a profile of that name must not exist yet. */
  isNew: boolean;
}

export type ProfileField = 'name' | 'accessKeyId' | 'secret';
export type ProfileProblems = Partial<Record<ProfileField, string>>;

export type SaveProfileResult =
  | { saved: true; profile: ProfileRow }
  | { saved: false; problems: ProfileProblems };

export interface ImportResult {
  file: string;
  imported: string[];
  skipped: Array<{ name: string; reason: string }>;
}

/** Where "Test connection" and the bucket picker send their requests. */
export interface ConnectionTarget {
  profile: string;
  zone: string | undefined;
  endpointUrl: string | undefined;
  forcePathStyle: boolean;
  /** Checked with HeadBucket when given. */
  bucket: string | undefined;
}

export type ConnectionOutcome =
  | 'ok'
  | 'bucket-not-found'
  | 'access-denied'
  | 'invalid-credentials'
  | 'unreachable'
  | 'clock-skew'
  | 'no-secret'
  | 'invalid-target'
  | 'failed';

export interface ConnectionResult {
  outcome: ConnectionOutcome;
  /** Plain words for the user, e.g. "Connected: 3 buckets." */
  message: string;
  bucketCount: number | undefined;
  requestId: string | undefined;
}

export type BucketListResult =
  | { ok: true; buckets: string[] }
  | { ok: false; failure: ConnectionResult };

export interface UploadResult {
  uploaded: string[];
  failed: Array<{ file: string; reason: string }>;
}

export interface UploadProgress {
  uploadId: string;
  mountId: string;
  /** Base name of the file being copied. */
  file: string;
  fileIndex: number;
  fileCount: number;
  bytesDone: number;
  bytesTotal: number;
  done: boolean;
}

/** A mount's local disk cache as it is on disk now. */
export interface CacheUsage {
  /** Its folder, `~/...` under the home folder. */
  directory: string;
  /** Bytes its contents take on disk, as `du` counts them; 0 when nothing is stored. */
  usedBytes: number;
}

export interface ClearCacheResult {
  freedBytes: number;
}

export interface MountStatusEvent {
  id: string;
  status: MountStatus;
}

// ---------------------------------------------------------------------------
// The contract proper

export interface IpcInvokeContract {
  [IpcChannel.GetSnapshot]: { args: []; result: SettingsSnapshot };
  [IpcChannel.ValidateMount]: { args: [draft: MountDraft]; result: MountProblems };
  [IpcChannel.SaveMount]: { args: [draft: MountDraft]; result: SaveMountResult };
  [IpcChannel.RemoveMount]: { args: [id: string]; result: void };
  /** Resolves undefined when the user cancels the dialog. */
  [IpcChannel.ChooseFolder]: { args: [current: string | undefined]; result: string | undefined };
  [IpcChannel.SaveProfile]: { args: [draft: ProfileDraft]; result: SaveProfileResult };
  [IpcChannel.RemoveProfile]: { args: [name: string]; result: void };
  [IpcChannel.ImportProfiles]: { args: []; result: ImportResult };
  [IpcChannel.TestConnection]: { args: [target: ConnectionTarget]; result: ConnectionResult };
  [IpcChannel.ListBuckets]: { args: [target: ConnectionTarget]; result: BucketListResult };
  /** The preload turns dropped File objects into their paths (webUtils.getPathForFile). */
  [IpcChannel.UploadFiles]: { args: [mountId: string, paths: string[]]; result: UploadResult };
  [IpcChannel.CacheUsage]: { args: [mountId: string]; result: CacheUsage };
  /** Through the mount's worker while it is mounted, else on the folder; refused (with the reason) when it cannot be cleared now. */
  [IpcChannel.ClearCache]: { args: [mountId: string]; result: ClearCacheResult };
}

export interface IpcEventContract {
  [IpcEvent.MountStatus]: MountStatusEvent;
  [IpcEvent.UploadProgress]: UploadProgress;
}

export type InvokeArgs<C extends IpcChannel> = IpcInvokeContract[C]['args'];
export type InvokeResult<C extends IpcChannel> = IpcInvokeContract[C]['result'];

/**
 * What travels back over an invoke channel. A handler's expected outcomes
 * (validation problems, a refused removal) are in its result or its
 * `Refused` error; `InvalidPayload` and `UnknownChannel` mean the renderer
 * sent something the contract does not allow, and nothing was changed.
 */
export type IpcErrorCode = 'UnknownChannel' | 'UntrustedSender' | 'InvalidPayload' | 'Refused' | 'NotFound' | 'Failed';

export interface IpcError {
  code: IpcErrorCode;
  message: string;
}

export type IpcResponse<T> = { ok: true; value: T } | { ok: false; error: IpcError };

/** Main's side: one async function per channel. */
export type IpcHandlers = {
  [C in IpcChannel]: (...args: InvokeArgs<C>) => Promise<InvokeResult<C>>;
};

// ---------------------------------------------------------------------------
// The bridge the renderer sees as `window.sosMount`

type Invoke<C extends IpcChannel> = (...args: InvokeArgs<C>) => Promise<InvokeResult<C>>;

/** Ends a subscription. */
export type Unsubscribe = () => void;

/**
 * A subscription returns its unsubscribe function rather than taking an
 * AbortSignal: contextBridge copies a non-plain object such as AbortSignal
 * by its own properties, so it would arrive in the preload's world empty.
 * The renderer ties each one to its AbortSignal in one helper
 * (renderer/bridge.ts `listen`).
 */
type Subscribe<E extends IpcEvent> = (listener: (payload: IpcEventContract[E]) => void) => Unsubscribe;

/** A dropped file as the page holds it (a DOM File); only main learns its path. */
export interface DroppedFile {
  readonly name: string;
  readonly size: number;
}

export interface SettingsBridge {
  getSnapshot: Invoke<typeof IpcChannel.GetSnapshot>;
  validateMount: Invoke<typeof IpcChannel.ValidateMount>;
  saveMount: Invoke<typeof IpcChannel.SaveMount>;
  removeMount: Invoke<typeof IpcChannel.RemoveMount>;
  chooseFolder: Invoke<typeof IpcChannel.ChooseFolder>;
  saveProfile: Invoke<typeof IpcChannel.SaveProfile>;
  removeProfile: Invoke<typeof IpcChannel.RemoveProfile>;
  importProfiles: Invoke<typeof IpcChannel.ImportProfiles>;
  testConnection: Invoke<typeof IpcChannel.TestConnection>;
  listBuckets: Invoke<typeof IpcChannel.ListBuckets>;
  uploadFiles(mountId: string, files: readonly DroppedFile[]): Promise<InvokeResult<typeof IpcChannel.UploadFiles>>;
  cacheUsage: Invoke<typeof IpcChannel.CacheUsage>;
  clearCache: Invoke<typeof IpcChannel.ClearCache>;
  onMountStatus: Subscribe<typeof IpcEvent.MountStatus>;
  onUploadProgress: Subscribe<typeof IpcEvent.UploadProgress>;
}
