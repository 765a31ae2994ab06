/**
 * The app's settings file (`settings.json` in the app's config folder):
 * mounts, profiles and "start at login", never a secret (those live in the
 * keychain, main/secret-store.ts). It is a conf store, which is what
 * electron-store is under Electron: a JSON schema checks every read and
 * write, defaults fill a new file, and migrations upgrade an old one.
 *
 * A file that cannot be read (not JSON, or not matching the schema) is not
 * silently reset, as conf's `clearInvalidConfig` would do: it is renamed to
 * `settings.json.corrupt-<timestamp>`, the app starts with empty settings,
 * and {@link SettingsStore.warnings} tells the user where their old file is.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Conf, { type Options as ConfOptions, type Schema } from 'conf';
import { VERSION } from '../app/options.js';
import { DEFAULT_CACHE_SIZE_MIB, type MountConfig, type ProfileConfig, type Settings } from './model.js';

/** The data format in `Settings.version`; bump it with a migration. */
export const SETTINGS_VERSION = 1;
export const SETTINGS_FILE = 'settings.json';

type SettingsData = Record<string, unknown> & Settings;

const MOUNT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'bucket', 'profile', 'mountPoint'],
  properties: {
    id: { type: 'string', minLength: 1 },
    name: { type: 'string', minLength: 1 },
    bucket: { type: 'string', minLength: 1 },
    zone: { type: 'string', minLength: 1 },
    endpointUrl: { type: 'string', minLength: 1 },
    forcePathStyle: { type: 'boolean', default: false },
    profile: { type: 'string' },
    mountPoint: { type: 'string' },
    prefix: { type: 'string', default: '' },
    readOnly: { type: 'boolean', default: false },
    allowDelete: { type: 'boolean', default: false },
    allowOverwrite: { type: 'boolean', default: false },
    // Off for a mount saved before editing mode existed: an upgrade must not
    // change what its folder lets programs do. New mounts start with it on,
    // which is the settings window's choice (renderer/mounts.ts), not a default here.
    allowEdit: { type: 'boolean', default: false },
    // Off for a mount saved before the cache existed, for the same reason:
    // an upgrade must not start writing to the user's disk. New mounts start
    // with it on (renderer/mounts.ts). The size's rules are in
    // main/validation.ts and the CLI's checks, not here: a size out of range
    // in a hand-edited file should fail that mount with a reason, not make
    // the whole file unreadable.
    cacheEnabled: { type: 'boolean', default: false },
    cacheSizeMiB: { type: 'integer', default: DEFAULT_CACHE_SIZE_MIB },
    mountAtLogin: { type: 'boolean', default: false },
  },
} as const;

/** additionalProperties: false is what keeps a secret from ever being stored next to its key id. */
const PROFILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'accessKeyId'],
  properties: {
    name: { type: 'string', minLength: 1 },
    accessKeyId: { type: 'string' },
  },
} as const;

export const SETTINGS_SCHEMA: Schema<SettingsData> = {
  version: { type: 'integer', minimum: 1, default: SETTINGS_VERSION },
  mounts: { type: 'array', items: MOUNT_SCHEMA, default: [] },
  profiles: { type: 'array', items: PROFILE_SCHEMA, default: [] },
  startAtLogin: { type: 'boolean', default: false },
} as Schema<SettingsData>;

export const DEFAULT_SETTINGS: Settings = Object.freeze({ version: SETTINGS_VERSION, mounts: [], profiles: [], startAtLogin: false }) as Settings;

/** What a mount lacked in a file written by hand or before the schema had the field. */
function normaliseMount(raw: Record<string, unknown>): Record<string, unknown> {
  return {
    forcePathStyle: false,
    prefix: '',
    readOnly: false,
    allowDelete: false,
    allowOverwrite: false,
    allowEdit: false,
    cacheEnabled: false,
    cacheSizeMiB: DEFAULT_CACHE_SIZE_MIB,
    mountAtLogin: false,
    ...raw,
  };
}

/**
 * conf migrations run by app version (electron-store takes it from
 * `app.getVersion()`), each once per settings file, oldest first.
 */
type Migrations = NonNullable<ConfOptions<SettingsData>['migrations']>;
export const SETTINGS_MIGRATIONS: Migrations = {
  // 0.1.0, the first schema (version 1): a file without `version` (written
  // by hand, or by a build before the schema) gets its missing flags.
  '0.1.0': (store) => {
    const mounts: unknown = store.get('mounts');
    if (Array.isArray(mounts)) {
      const normalised = mounts.map((m: unknown) => (typeof m === 'object' && m !== null ? normaliseMount(m as Record<string, unknown>) : m));
      store.set('mounts', normalised as unknown as MountConfig[]);
    }
    if (!Array.isArray(store.get('profiles'))) store.set('profiles', []);
    store.set('version', 1);
  },
};

/** The part of conf (and electron-store) this module uses. */
export interface SettingsBackend {
  readonly path: string;
  store: SettingsData;
}

/** Options for the backend; the Electron adapter maps them onto electron-store's. */
export type SettingsBackendOptions = ConfOptions<SettingsData> & { cwd: string; configName: string; projectVersion: string };

export type SettingsBackendFactory = (options: SettingsBackendOptions) => SettingsBackend;

/** The plain-Node backend (tests, tools): conf itself. */
export const confBackend: SettingsBackendFactory = (options) => new Conf<SettingsData>(options);

export interface OpenSettingsOptions {
  /** The folder holding settings.json: Electron's userData folder in the app. */
  directory: string;
  createBackend?: SettingsBackendFactory;
  /** The app version the migrations compare with. */
  projectVersion?: string;
  now?: () => Date;
}

function isUnreadable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return err.name === 'SyntaxError' || err.message.startsWith('Config schema violation:') || err.message.startsWith('Something went wrong during the migration');
}

function copy(settings: Settings): Settings {
  return structuredClone({ version: settings.version, mounts: settings.mounts, profiles: settings.profiles, startAtLogin: settings.startAtLogin });
}

export class SettingsStore {
  readonly path: string;
  /** Messages for the user (shown in the tray menu), e.g. that the file was unreadable and where it was kept. */
  readonly warnings: string[];
  private readonly backend: SettingsBackend;
  private current: Settings;
  private readonly listeners = new Set<(settings: Settings) => void>();

  private constructor(backend: SettingsBackend, warnings: string[]) {
    this.backend = backend;
    this.path = backend.path;
    this.warnings = warnings;
    this.current = copy(backend.store);
  }

  static open(options: OpenSettingsOptions): SettingsStore {
    const create = options.createBackend ?? confBackend;
    const backendOptions: SettingsBackendOptions = {
      cwd: options.directory,
      configName: path.basename(SETTINGS_FILE, '.json'),
      projectVersion: options.projectVersion ?? VERSION,
      schema: SETTINGS_SCHEMA,
      defaults: { ...DEFAULT_SETTINGS } as SettingsData,
      migrations: SETTINGS_MIGRATIONS,
      clearInvalidConfig: false,
      // Not secret, but it names buckets and folders: private to the user.
      configFileMode: 0o600,
    };
    const file = path.join(options.directory, SETTINGS_FILE);
    // The bytes as the user left them: conf may rewrite the file (defaults,
    // migrations) before it finds it invalid, and the backup must be the original.
    let original: Buffer | undefined;
    try {
      original = readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      return new SettingsStore(create(backendOptions), []);
    } catch (err) {
      if (!isUnreadable(err)) throw err;
      const stamp = (options.now ?? (() => new Date()))().toISOString().replace(/[:.]/g, '-');
      const backup = `${file}.corrupt-${stamp}`;
      if (original !== undefined) {
        writeFileSync(backup, original, { mode: 0o600, flag: 'wx' });
        rmSync(file, { force: true });
      } else {
        renameSync(file, backup);
      }
      const reason = (err as Error).message.replace(/^Config schema violation: /, 'not valid: ').slice(0, 200);
      const warning = `The settings file could not be read (${reason}). It was kept as ${backup}; SOS Mount started with empty settings.`;
      return new SettingsStore(create(backendOptions), [warning]);
    }
  }

  /** A copy: changing it changes nothing until passed to {@link update}. */
  get(): Settings {
    return copy(this.current);
  }

  /** Applies a change, checks it against the schema and writes the file; throws (and keeps the old settings) if invalid. */
  update(change: (draft: Settings) => void): Settings {
    const draft = copy(this.current);
    change(draft);
    draft.version = SETTINGS_VERSION;
    this.backend.store = JSON.parse(JSON.stringify(draft)) as SettingsData;
    this.current = copy(this.backend.store);
    for (const listener of this.listeners) listener(this.get());
    return this.get();
  }

  onChange(listener: (settings: Settings) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  mount(id: string): MountConfig | undefined {
    return this.get().mounts.find((m) => m.id === id);
  }

  profile(name: string): ProfileConfig | undefined {
    return this.get().profiles.find((p) => p.name === name);
  }
}
