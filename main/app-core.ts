/**
 * The app's state machine, with no Electron in it: settings, keychain,
 * supervisor, autostart and the tray menu tied together. The Electron
 * adapter (main/electron-adapter.ts) only turns its menu model into a native
 * menu, forwards clicks to {@link AppCore.dispatch}, and passes in what needs
 * Electron (notifications, opening folders, the quit dialog, exiting);
 * tests drive the same object under plain Node.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { KeptReason } from '../app/data/staging.js';
import { silentLogger, type Logger } from '../app/log.js';
import type { Autostart } from './autostart.js';
import { buildMenu, quitQuestion, type AppState, type MenuAction, type MenuModel, type QuitQuestion } from './menu-model.js';
import type { MountConfig, PendingUploads, ProfileConfig, SecretStore } from './model.js';
import { SecretStoreError } from './secret-store.js';
import type { SettingsStore } from './settings-store.js';
import { CredentialsError, Supervisor, type SupervisorEvent } from './supervisor.js';
import { mountConfigProblems, profileConfigProblems, type FieldProblem } from './validation.js';
import type { WorkerLauncher } from './worker-launcher.js';

export interface Notification {
  title: string;
  body: string;
}

export interface Notifier {
  notify(notification: Notification): void;
}

export interface Shell {
  /** Opens a folder in the file manager; resolves with an error message, or '' on success (Electron's shell.openPath). */
  openPath(target: string): Promise<string>;
}

export type QuitChoice = 'wait' | 'quit-anyway' | 'cancel';
export type QuitMode = 'wait' | 'abandon' | 'complete';

export interface AppCoreOptions {
  settings: SettingsStore;
  secrets: SecretStore;
  launcher: WorkerLauncher;
  autostart: Autostart;
  notifier: Notifier;
  shell: Shell;
  /** The app's log folder: the workers' logs and the app's own. */
  logDirectory: string;
  /** Opens (or focuses) the settings window. */
  openSettings(): void;
  /** Asked at Quit while files are uploading: wait for them, quit anyway (lost, or kept for the next mount in editing mode), or don't quit. */
  confirmQuit(question: QuitQuestion): Promise<QuitChoice>;
  /** Ends the process once everything is unmounted. */
  exit(): void;
  log?: Logger;
  backoffMs?(attempt: number): number;
  unmountTimeoutMs?: number;
}

/** A settings change was refused; each problem names its field. */
export class SettingsValidationError extends Error {
  override readonly name = 'SettingsValidationError';
  readonly problems: FieldProblem<string>[];

  constructor(problems: FieldProblem<string>[]) {
    super(problems.map((p) => `${p.field}: ${p.message}`).join('; '));
    this.problems = problems;
  }
}

export interface DropResult {
  /** The mount the files went to, or undefined when none was mounted. */
  mountName: string | undefined;
  copied: number;
  failed: Array<{ path: string; message: string }>;
}

export class AppCore {
  readonly supervisor: Supervisor;
  private readonly options: AppCoreOptions;
  private readonly settings: SettingsStore;
  private readonly log: Logger;
  private readonly listeners = new Set<(menu: MenuModel) => void>();
  private warnings: string[];
  private startAtLogin = false;
  private quitting: PendingUploads | undefined;
  private quitNow: (() => void) | undefined;
  private quitPromise: Promise<void> | undefined;

  constructor(options: AppCoreOptions) {
    this.options = options;
    this.settings = options.settings;
    this.log = options.log ?? silentLogger;
    this.warnings = [...options.settings.warnings];
    this.startAtLogin = options.settings.get().startAtLogin;
    this.supervisor = new Supervisor({
      launcher: options.launcher,
      logDirectory: options.logDirectory,
      log: this.log.child({ part: 'supervisor' }),
      credentialsFor: (profile) => this.credentialsFor(profile),
      ...(options.backoffMs ? { backoffMs: options.backoffMs } : {}),
      ...(options.unmountTimeoutMs !== undefined ? { unmountTimeoutMs: options.unmountTimeoutMs } : {}),
    });
    this.supervisor.onStatus(() => this.changed());
    this.supervisor.onEvent((event) => this.onSupervisorEvent(event));
    // The settings window may edit the settings directly: running mounts
    // follow (new flags for the next remount; a removed mount is unmounted).
    this.settings.onChange((settings) => {
      const ids = new Set(settings.mounts.map((m) => m.id));
      for (const m of settings.mounts) this.supervisor.updateConfig(m, { keepMounted: m.mountAtLogin });
      for (const id of this.supervisor.mountIds()) if (!ids.has(id)) void this.supervisor.remove(id);
      this.changed();
    });
  }

  /**
   * Starts the app: shows what the settings file said, reads the real
   * "start at login" state, and mounts every mount flagged "mount at login".
   */
  async start(): Promise<void> {
    for (const warning of this.warnings) this.options.notifier.notify({ title: 'SOS Mount settings', body: warning });
    try {
      this.startAtLogin = await this.options.autostart.isEnabled();
      if (this.startAtLogin !== this.settings.get().startAtLogin) this.settings.update((s) => { s.startAtLogin = this.startAtLogin; });
    } catch (err) {
      this.log.warn('cannot read the start-at-login state', { error: (err as Error).message });
    }
    for (const mount of this.settings.get().mounts) {
      if (mount.mountAtLogin) this.supervisor.mount(mount, { keepMounted: true });
    }
    this.changed();
  }

  state(): AppState {
    return {
      mounts: this.settings.get().mounts.map((config) => ({ config, status: this.supervisor.status(config.id), wanted: this.supervisor.wanted(config.id) })),
      startAtLogin: this.startAtLogin,
      warnings: [...this.warnings],
      quitting: this.quitting ? { ...this.quitting } : undefined,
    };
  }

  menu(): MenuModel {
    return buildMenu(this.state());
  }

  /** Called with the new menu after every change (status, settings, start at login, quitting). */
  onChange(listener: (menu: MenuModel) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    if (this.quitting) this.quitting = this.supervisor.pendingUploads();
    const menu = this.menu();
    for (const listener of this.listeners) listener(menu);
  }

  /** Runs a menu click. Never throws: failures become notifications. */
  async dispatch(action: MenuAction): Promise<void> {
    try {
      switch (action.type) {
        case 'toggle-mount':
          await this.toggleMount(action.mountId);
          return;
        case 'open-folder': {
          const mount = this.settings.mount(action.mountId);
          if (mount) await this.open(mount.mountPoint, `Cannot open the folder of ${mount.name}`);
          return;
        }
        case 'open-settings':
          this.options.openSettings();
          return;
        case 'toggle-start-at-login':
          await this.setStartAtLogin(!this.startAtLogin);
          return;
        case 'show-logs':
          await mkdir(this.options.logDirectory, { recursive: true });
          await this.open(this.options.logDirectory, 'Cannot open the log folder');
          return;
        case 'dismiss-warnings':
          this.warnings = [];
          this.changed();
          return;
        case 'quit':
          await this.requestQuit();
          return;
        case 'quit-now':
          this.quitNow?.();
          return;
      }
    } catch (err) {
      this.log.error('menu action failed', { action: action.type, error: (err as Error).message });
      this.options.notifier.notify({ title: 'SOS Mount', body: (err as Error).message });
    }
  }

  private async open(target: string, failure: string): Promise<void> {
    const error = await this.options.shell.openPath(target);
    if (error) this.options.notifier.notify({ title: failure, body: error });
  }

  // -------------------------------------------------------------------------
  // Mounts

  async toggleMount(mountId: string): Promise<void> {
    if (this.supervisor.wanted(mountId)) await this.unmount(mountId);
    else this.mount(mountId);
  }

  mount(mountId: string): void {
    if (this.quitting) return;
    const config = this.settings.mount(mountId);
    if (!config) throw new Error(`there is no mount with id ${mountId}`);
    this.supervisor.mount(config, { keepMounted: config.mountAtLogin });
  }

  unmount(mountId: string): Promise<void> {
    return this.supervisor.unmount(mountId);
  }

  private async credentialsFor(profileName: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
    const profile = this.settings.profile(profileName);
    if (!profile) throw new CredentialsError(`there is no profile named ${profileName}; add it in Settings`);
    let secret: string | undefined;
    try {
      secret = await this.options.secrets.get(profileName);
    } catch (err) {
      // At login the keychain may not be unlocked yet: worth another try.
      const message = err instanceof SecretStoreError ? err.message : `the keychain failed: ${(err as Error).message}`;
      throw new CredentialsError(message, { retryable: true, cause: err });
    }
    if (secret === undefined) throw new CredentialsError(`the keychain holds no API secret for profile ${profileName}; enter it in Settings`);
    return { accessKeyId: profile.accessKeyId, secretAccessKey: secret };
  }

  private onSupervisorEvent(event: SupervisorEvent): void {
    const name = this.settings.mount(event.mountId)?.name ?? event.mountId;
    const seconds = (ms: number): string => `${Math.max(1, Math.round(ms / 1000))} s`;
    switch (event.type) {
      case 'mount-failed':
        // Once per run of failures: a bucket retried every minute must not notify every minute.
        if (event.attempt === 1) {
          const rid = event.requestId ? ` (request id ${event.requestId})` : '';
          const retry = event.retryInMs !== undefined ? ` Retrying in ${seconds(event.retryInMs)}.` : '';
          this.options.notifier.notify({ title: `Cannot mount ${name}`, body: `${event.message}${rid}.${retry}` });
        }
        return;
      case 'worker-crashed': {
        const then = event.remountInMs !== undefined ? ` Mounting it again in ${seconds(event.remountInMs)}.` : ' Check it in the menu to mount it again.';
        this.options.notifier.notify({ title: `${name} stopped unexpectedly`, body: `${event.message}.${then}` });
        return;
      }
      case 'upload-failed':
        this.options.notifier.notify({ title: `Upload to ${name} failed`, body: `${event.path}: ${event.message}` });
        return;
      case 'unmounted-externally':
        this.log.info('unmounted from outside the app', { mount: name });
        return;
      case 'conflict':
        this.options.notifier.notify({
          title: `Conflict in ${name}`,
          body: `${event.path} changed in the bucket while you edited it; your version was saved as ${event.conflictPath}`,
        });
        return;
      case 'recovered': {
        const body = recoveredText(event.uploading, event.kept, event.stagingDirectory);
        if (body !== undefined) this.options.notifier.notify({ title: `Files saved earlier in ${name}`, body });
        return;
      }
      case 'rename-failed':
        this.options.notifier.notify({
          title: `Renaming a folder in ${name} stopped`,
          body: `${event.from} → ${event.to}: ${event.done} of ${event.total} objects moved, then ${event.message}`,
        });
        return;
    }
  }

  // -------------------------------------------------------------------------
  // Settings (the settings window calls these)

  /** Adds or replaces a profile; a given secret goes to the keychain first, never to the settings file. */
  async saveProfile(profile: ProfileConfig, secret?: string): Promise<void> {
    const others = this.settings.get().profiles.filter((p) => p.name !== profile.name);
    const isNew = others.length === this.settings.get().profiles.length;
    const problems = profileConfigProblems(profile, others, secret ?? (isNew ? '' : undefined));
    if (problems.length > 0) throw new SettingsValidationError(problems);
    if (secret !== undefined) await this.options.secrets.set(profile.name, secret);
    this.settings.update((s) => {
      const i = s.profiles.findIndex((p) => p.name === profile.name);
      const clean: ProfileConfig = { name: profile.name, accessKeyId: profile.accessKeyId.trim() };
      if (i >= 0) s.profiles[i] = clean;
      else s.profiles.push(clean);
    });
  }

  async removeProfile(name: string): Promise<void> {
    const users = this.settings.get().mounts.filter((m) => m.profile === name);
    if (users.length > 0) throw new SettingsValidationError([{ field: 'name', message: `profile ${name} is used by ${users.map((m) => m.name).join(', ')}` }]);
    await this.options.secrets.delete(name);
    this.settings.update((s) => { s.profiles = s.profiles.filter((p) => p.name !== name); });
  }

  /** Adds or replaces a mount. A running mount keeps its old options until it is mounted again. */
  saveMount(config: MountConfig): void {
    const current = this.settings.get();
    const problems = mountConfigProblems(config, current.mounts, current.profiles);
    if (problems.length > 0) throw new SettingsValidationError(problems);
    this.settings.update((s) => {
      const i = s.mounts.findIndex((m) => m.id === config.id);
      if (i >= 0) s.mounts[i] = { ...config };
      else s.mounts.push({ ...config });
    });
    this.supervisor.updateConfig(config, { keepMounted: config.mountAtLogin });
  }

  async removeMount(mountId: string): Promise<void> {
    await this.supervisor.remove(mountId);
    this.settings.update((s) => { s.mounts = s.mounts.filter((m) => m.id !== mountId); });
  }

  async setStartAtLogin(enabled: boolean): Promise<void> {
    await this.options.autostart.setEnabled(enabled);
    this.startAtLogin = await this.options.autostart.isEnabled();
    this.settings.update((s) => { s.startAtLogin = this.startAtLogin; });
    this.changed();
  }

  // -------------------------------------------------------------------------
  // Drop on the tray icon (macOS)

  /**
   * Copies dropped files and folders into the first mounted, writable
   * bucket, as sequential writes (each file streamed once, front to back,
   * which is what the engine accepts). Never overwrites: an existing name
   * is reported as failed.
   */
  async dropFiles(paths: readonly string[]): Promise<DropResult> {
    const target = this.state().mounts.find((m) => m.status.state === 'mounted' && !m.config.readOnly);
    if (!target) {
      this.options.notifier.notify({ title: 'Nothing to upload into', body: 'Mount a bucket (not read-only) first, then drop the files again.' });
      return { mountName: undefined, copied: 0, failed: paths.map((p) => ({ path: p, message: 'no bucket is mounted' })) };
    }
    const result: DropResult = { mountName: target.config.name, copied: 0, failed: [] };
    for (const source of paths) await copyInto(source, target.config.mountPoint, result);
    const summary = `${result.copied} file${result.copied === 1 ? '' : 's'} uploaded to ${target.config.name}`;
    this.options.notifier.notify(result.failed.length === 0
      ? { title: 'Upload complete', body: summary }
      : { title: 'Some files were not uploaded', body: `${summary}; ${result.failed.length} failed: ${result.failed.map((f) => `${path.basename(f.path)} (${f.message})`).join(', ').slice(0, 300)}` });
    return result;
  }

  // -------------------------------------------------------------------------
  // Quit

  /** Quit from the menu: asks first when files are uploading. */
  async requestQuit(): Promise<void> {
    if (this.quitPromise) return this.quitPromise;
    const pending = this.supervisor.pendingUploads();
    let mode: QuitMode = 'wait';
    if (pending.lost + pending.kept > 0) {
      const choice = await this.options.confirmQuit(quitQuestion(pending));
      if (choice === 'cancel') return;
      if (choice === 'quit-anyway') mode = 'abandon';
    }
    return this.quit({ uploads: mode });
  }

  /**
   * Unmounts everything, then calls `exit`. Files still uploading:
   * - 'wait': finish first (the menu says how many; "Quit now" abandons them);
   * - 'abandon': their workers are stopped at once and those uploads lost
   *   (in editing mode the staged files stay and upload at the next mount);
   * - 'complete': each worker completes what it has and unmounts (a signal
   *   at logout: no time to wait for writers, no reason to lose data).
   * In every case no mount is left behind.
   */
  quit(options: { uploads: QuitMode }): Promise<void> {
    this.quitPromise ??= (async () => {
      let mode = options.uploads;
      if (mode === 'wait' && this.supervisor.uploadsInProgress() > 0) {
        this.quitting = this.supervisor.pendingUploads();
        this.changed();
        let off = (): void => {};
        const abandoned = await new Promise<boolean>((resolve) => {
          this.quitNow = () => resolve(true);
          off = this.supervisor.onStatus(() => {
            if (this.supervisor.uploadsInProgress() === 0) resolve(false);
          });
        });
        off();
        this.quitNow = undefined;
        if (abandoned) mode = 'abandon';
      }
      this.quitting = this.supervisor.pendingUploads();
      this.changed();
      this.log.info('quitting', { ...this.quitting, mode });
      await this.supervisor.shutdown({ abandonUploads: mode === 'abandon' });
      this.options.exit();
    })();
    return this.quitPromise;
  }
}

/** Names listed in a notification before "and N more". */
const MAX_NAMED_FILES = 3;

/** Why a staged file was kept, in words; `reason` is a KeptReason code from the worker, or already words. */
const KEPT_REASONS: Readonly<Record<KeptReason, string>> = {
  'never-closed': 'it was still open when SOS Mount stopped',
  'write-failed': 'writing it to disk failed',
  'data-missing': 'its data is missing',
  'data-size-differs': 'its data is incomplete',
  'record-unreadable': 'its record cannot be read',
};

function keptReasonText(reason: string): string {
  return Object.hasOwn(KEPT_REASONS, reason) ? KEPT_REASONS[reason as KeptReason] : reason;
}

/** The notification about an earlier run's files at mount, or undefined when there were none. */
export function recoveredText(uploading: number, kept: ReadonlyArray<{ path: string; reason: string }>, stagingDirectory: string): string | undefined {
  const parts: string[] = [];
  if (uploading > 0) parts.push(`Uploading ${uploading === 1 ? '1 file' : `${uploading} files`} saved before SOS Mount stopped.`);
  if (kept.length > 0) {
    const named = kept.slice(0, MAX_NAMED_FILES).map((k) => `${k.path} (${keptReasonText(k.reason)})`);
    if (kept.length > MAX_NAMED_FILES) named.push(`${kept.length - MAX_NAMED_FILES} more`);
    const were = kept.length === 1 ? '1 file could not be uploaded and is' : `${kept.length} files could not be uploaded and are`;
    parts.push(`${were} kept in ${stagingDirectory}: ${named.join(', ')}.`);
  }
  return parts.length > 0 ? parts.join(' ') : undefined;
}

async function copyInto(source: string, destinationDir: string, result: DropResult): Promise<void> {
  const destination = path.join(destinationDir, path.basename(source));
  try {
    const st = await lstat(source);
    if (st.isDirectory()) {
      await mkdir(destination, { recursive: true });
      for (const entry of (await readdir(source)).sort()) await copyInto(path.join(source, entry), destination, result);
    } else if (st.isFile()) {
      // 'wx': never replace an object that is already there.
      await pipeline(createReadStream(source), createWriteStream(destination, { flags: 'wx' }));
      result.copied += 1;
    } else {
      result.failed.push({ path: source, message: 'only files and folders can be uploaded' });
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    result.failed.push({ path: source, message: e.code === 'EEXIST' ? 'already in the bucket' : e.message });
  }
}
