/**
 * The desktop app's shared model: what the settings hold, what the tray
 * shows, and the narrow interfaces the Electron glue, the tray, the settings
 * window and the tests all code against. No electron import here.
 */

/** One configured bucket mount, as stored in the settings (never a secret). */
export interface MountConfig {
  /** Stable id (uuid); names may change. */
  id: string;
  /** What the tray shows. Unique. */
  name: string;
  bucket: string;
  /** An Exoscale zone from app/s3/zones.ts, or undefined when endpointUrl is set. */
  zone: string | undefined;
  /** A custom S3 endpoint (MinIO, Ceph, AWS), or undefined when zone is set. */
  endpointUrl: string | undefined;
  forcePathStyle: boolean;
  /** Profile name: the keychain account holding the secret. */
  profile: string;
  /** Absolute path of an existing empty folder. Unique among mounts. */
  mountPoint: string;
  /** '' or ending in '/'. */
  prefix: string;
  readOnly: boolean;
  allowDelete: boolean;
  allowOverwrite: boolean;
  /**
   * Editing mode (`--allow-edit`): staged writes, rename, writes anywhere in
   * a file. It implies delete and overwrite, whatever the two flags above
   * say: they keep the user's own choice for when editing mode is off.
   */
  allowEdit: boolean;
  /**
   * Keep a local copy of what is read (`--cache`): blocks of the objects
   * read, in the mount's own folder under the XDG cache directory
   * (main/cache-folders.ts), served from disk while the object is unchanged.
   */
  cacheEnabled: boolean;
  /** The cache's limit in MiB (`--max-cache-size`); kept while the cache is off, for when it is turned on again. */
  cacheSizeMiB: number;
  mountAtLogin: boolean;
}

/** What a mount's cache may hold unless the user says otherwise: room for many files, small beside a disk. */
export const DEFAULT_CACHE_SIZE_MIB = 2048;
/** 1 TiB. The engine takes more; beyond this a size is far more likely a typo (extra zeros) than a wish. */
export const MAX_CACHE_SIZE_MIB = 1024 * 1024;

/** A credentials profile; its secret lives only in the keychain. */
export interface ProfileConfig {
  name: string;
  accessKeyId: string;
}

export interface Settings {
  /** Schema version, for migrations. */
  version: number;
  mounts: MountConfig[];
  profiles: ProfileConfig[];
  startAtLogin: boolean;
}

/** Where API secrets live: keytar (service `sos-mount`, account = profile name) in the app. */
export interface SecretStore {
  get(profile: string): Promise<string | undefined>;
  set(profile: string, secret: string): Promise<void>;
  /** Resolves true when something was deleted. */
  delete(profile: string): Promise<boolean>;
}

export const SECRET_SERVICE = 'sos-mount';

/** A folder rename under way in editing mode: the engine copies `total` objects one by one, `done` so far. */
export interface FolderRename {
  from: string;
  to: string;
  done: number;
  total: number;
}

/**
 * A mount's live state, as the supervisor knows it and the tray and settings
 * window show it. `editing` is what the running worker was started with,
 * which may differ from the settings: a saved change applies at the next
 * mount. It says what Quit does to uploads still waiting (editing mode keeps
 * them on disk for the next mount; otherwise they are lost).
 */
export type MountStatus =
  | { state: 'unmounted' }
  | { state: 'mounting'; attempt: number }
  | { state: 'mounted'; uploadsInProgress: number; editing: boolean; renaming?: FolderRename | undefined }
  | { state: 'unmounting'; uploadsInProgress: number; editing: boolean }
  | { state: 'error'; message: string; requestId?: string | undefined; retryInMs?: number | undefined };

/** Files still uploading, by what quitting now would do to them. */
export interface PendingUploads {
  /** Uploads of mounts not in editing mode: quitting now aborts them and their data is lost. */
  lost: number;
  /** Staged files of mounts in editing mode: they stay on this computer and upload at the bucket's next mount. */
  kept: number;
}
