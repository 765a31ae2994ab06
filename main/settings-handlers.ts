/**
 * What the settings window can ask of main, as plain functions over injected
 * parts: the settings store, the keychain, the supervisor's mount states, an
 * S3 client factory and a folder dialog. No electron import: the Electron
 * adapter passes the real parts and registers these handlers with
 * {@link registerSettingsIpc}; the renderer tests run the same handlers in
 * the test process behind the real page.
 *
 * A secret goes from the window to the keychain and stays there: no handler
 * returns, logs or stores one anywhere else (DESIGN.md, "Desktop shell").
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HeadBucketCommand, ListBucketsCommand, type S3Client } from '@aws-sdk/client-s3';
import { describeKind, toS3Error, type S3RequestError } from '../app/s3/errors.js';
import type { S3ConnectionConfig } from '../app/s3/sdk-client.js';
import { EXOSCALE_ZONES, exoscaleZone, isExoscaleZone, zoneForEndpoint } from '../app/s3/zones.js';
import {
  IpcChannel,
  IpcEvent,
  type ConnectionResult,
  type ConnectionTarget,
  type ImportResult,
  type IpcEventContract,
  type IpcHandlers,
  type IpcResponse,
  type MountDraft,
  type MountProblems,
  type ProfileProblems,
  type ProfileRow,
  type SettingsSnapshot,
  type UploadResult,
} from './ipc-contract.js';
import { SettingsActionError, createIpcDispatcher } from './ipc-validate.js';
import type { MountConfig, MountStatus, ProfileConfig, SecretStore, Settings } from './model.js';
import { mountConfigProblems, profileConfigProblems } from './validation.js';

// ---------------------------------------------------------------------------
// What the handlers are given

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
  createS3Client: S3ClientFactory;
  dialog: FolderDialog;
  /** Delivers events to the window (webContents.send in the app). */
  emit: EventSink;
  /** Where "Import" reads; default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials. */
  credentialsFile?: string;
  /** For showing paths with `~`; default os.homedir(). */
  homeDir?: string;
  /** Per request of "Test connection" and the bucket picker. */
  connectionTimeoutMs?: number;
  /** Least time between two progress events of one upload. */
  progressIntervalMs?: number;
  newId?: () => string;
}

export interface SettingsHandlers {
  handlers: IpcHandlers;
  /** Stops forwarding mount states and aborts uploads and connection tests in flight. */
  dispose(): void;
}

const DEFAULT_CONNECTION_TIMEOUT_MS = 15_000;
const DEFAULT_PROGRESS_INTERVAL_MS = 100;

// ---------------------------------------------------------------------------
// Small helpers

function sentence(message: string): string {
  return message === '' ? message : message[0]!.toUpperCase() + message.slice(1);
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isBusy(status: MountStatus): boolean {
  return status.state === 'mounted' || status.state === 'mounting' || status.state === 'unmounting';
}

export function defaultCredentialsFile(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  const fromEnv = env['AWS_SHARED_CREDENTIALS_FILE'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : path.join(home, '.aws', 'credentials');
}

function displayPath(file: string, home: string): string {
  return file === home || file.startsWith(home + path.sep) ? `~${file.slice(home.length)}` : file;
}

/** A leading `~/` (as the page shows paths under home, and as people type them) means the home folder. */
export function expandHome(file: string, home: string): string {
  if (file === '~') return home;
  return file.startsWith('~/') ? path.join(home, file.slice(2)) : file;
}

/** Trims what a user may have typed around a value; the form shows the trimmed value after saving. */
function normaliseDraft(draft: MountDraft, home: string): MountDraft {
  return {
    ...draft,
    name: draft.name.trim(),
    bucket: draft.bucket.trim(),
    endpointUrl: draft.endpointUrl === undefined ? undefined : draft.endpointUrl.trim(),
    mountPoint: expandHome(draft.mountPoint.trim(), home),
    prefix: draft.prefix.trim(),
  };
}

// ---------------------------------------------------------------------------
// ~/.aws/credentials

export interface CredentialsSection {
  name: string;
  values: Map<string, string>;
}

/**
 * The INI dialect of the AWS shared credentials file: `[name]` sections,
 * `key = value` lines, `#` and `;` comment lines. In the config file
 * sections are `[profile name]`; that form is accepted too. Keys are
 * compared lower-case, as the SDKs do.
 */
export function parseCredentialsFile(text: string): CredentialsSection[] {
  const sections: CredentialsSection[] = [];
  let current: CredentialsSection | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[\s*(?:profile\s+)?([^\]]*?)\s*\]$/.exec(line);
    if (header) {
      const name = header[1] ?? '';
      current = sections.find((s) => s.name === name);
      if (current === undefined) {
        current = { name, values: new Map() };
        sections.push(current);
      }
      continue;
    }
    const eq = line.indexOf('=');
    if (current === undefined || eq <= 0) continue;
    current.values.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return sections;
}

// ---------------------------------------------------------------------------
// S3 outcomes in plain words

function connectionFailure(err: S3RequestError, where: string): ConnectionResult {
  const requestId = err.requestId;
  const quote = requestId !== undefined ? ` (request id ${requestId})` : '';
  switch (err.kind) {
    case 'AccessDenied':
      return { outcome: 'access-denied', message: `Access denied${quote}. The key is valid but may not do this; check its permissions.`, bucketCount: undefined, requestId };
    case 'InvalidCredentials':
      return { outcome: 'invalid-credentials', message: `The server rejected the access key or secret${quote}. Check the profile's key and replace its secret.`, bucketCount: undefined, requestId };
    case 'ClockSkew':
      return { outcome: 'clock-skew', message: `This computer's clock differs too much from the server's${quote}. Set the date and time automatically, then try again.`, bucketCount: undefined, requestId };
    case 'Network':
    case 'Aborted': {
      const why = err.code !== undefined && err.code !== 'AbortError' ? ` (${err.code})` : err.kind === 'Aborted' ? ' (no answer in time)' : '';
      return { outcome: 'unreachable', message: `Could not reach ${where}${why}. Check the zone or endpoint URL and your network.`, bucketCount: undefined, requestId };
    }
    case 'NoSuchBucket':
    case 'NoSuchKey':
      return { outcome: 'bucket-not-found', message: `There is no bucket '${err.bucket}' at ${where}${quote}.`, bucketCount: undefined, requestId };
    default:
      return { outcome: 'failed', message: `${sentence(describeKind(err.kind))}${err.status !== undefined ? ` (HTTP ${err.status}${err.code ? ' ' + err.code : ''})` : ''}${quote}.`, bucketCount: undefined, requestId };
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

// ---------------------------------------------------------------------------
// Uploads: copying dropped files into a mounted folder

function copyFailure(err: unknown, file: string): string {
  switch (errnoOf(err)) {
    case 'EEXIST': return `'${file}' already exists in the mount`;
    case 'EROFS': return 'the mount is read-only';
    case 'EPERM': return 'the mount refused the file (overwriting and deleting are off by default)';
    case 'EACCES': return `'${file}' could not be read: permission denied`;
    case 'ENOENT': return `'${file}' is gone`;
    case 'ENOSPC':
    case 'EFBIG': return `'${file}' is too large for the mount's write part size`;
    case 'EIO': return 'the upload failed; the mount\'s log has the S3 error';
    case 'ENOTCONN': return 'the mount is not connected any more';
    case 'ABORT_ERR': return 'cancelled';
    default: return err instanceof Error ? err.message : String(err);
  }
}

// ---------------------------------------------------------------------------
// The handlers

export function createSettingsHandlers(deps: SettingsHandlerDeps): SettingsHandlers {
  const home = deps.homeDir ?? os.homedir();
  const credentialsFile = deps.credentialsFile ?? defaultCredentialsFile(process.env, home);
  const timeoutMs = deps.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS;
  const progressIntervalMs = deps.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
  const newId = deps.newId ?? randomUUID;
  /** Aborted by dispose(): uploads and S3 requests in flight. */
  const lifetime = new AbortController();

  const stopForwarding = deps.statuses.onStatus((id, status) => {
    deps.emit(IpcEvent.MountStatus, { id, status });
  });

  async function secretStored(profile: string): Promise<boolean> {
    try {
      return (await deps.secrets.get(profile)) !== undefined;
    } catch {
      // A locked or missing keychain: the window says "not in keychain" and offers to store it.
      return false;
    }
  }

  async function profileRow(profile: ProfileConfig, settings: Settings): Promise<ProfileRow> {
    return {
      name: profile.name,
      accessKeyId: profile.accessKeyId,
      secretStored: await secretStored(profile.name),
      usedBy: settings.mounts.filter((m) => m.profile === profile.name).map((m) => m.name),
    };
  }

  /** Whether the folder can be mounted on: exists, is a folder, is empty (the mount's own live folder excepted). */
  async function folderProblem(draft: MountDraft, settings: Settings): Promise<string | undefined> {
    if (!path.isAbsolute(draft.mountPoint)) return undefined; // validation.ts words that one
    if (draft.id !== undefined) {
      const saved = settings.mounts.find((m) => m.id === draft.id);
      if (saved !== undefined && path.resolve(saved.mountPoint) === path.resolve(draft.mountPoint) && isBusy(deps.statuses.status(saved.id))) {
        return undefined; // its own mount is there now; it was empty when mounted
      }
    }
    let stat;
    try {
      stat = await fsp.stat(draft.mountPoint);
    } catch (err) {
      switch (errnoOf(err)) {
        case 'ENOENT': return 'the folder does not exist';
        case 'ENOTDIR': return 'part of this path is a file, not a folder';
        case 'EACCES': return 'the folder cannot be opened: permission denied';
        case 'ENOTCONN': return 'a mount left behind here is broken; it is cleaned up when you mount';
        default: return `the folder cannot be checked: ${errnoOf(err) ?? String(err)}`;
      }
    }
    if (!stat.isDirectory()) return 'this is a file, not a folder';
    let entries: string[];
    try {
      entries = await fsp.readdir(draft.mountPoint);
    } catch (err) {
      return errnoOf(err) === 'EACCES' ? 'the folder cannot be read: permission denied' : `the folder cannot be read: ${errnoOf(err) ?? String(err)}`;
    }
    if (entries.length > 0) return `the folder is not empty (${plural(entries.length, 'item')}); a mount needs an empty folder`;
    return undefined;
  }

  async function mountProblems(draft: MountDraft, settings: Settings): Promise<MountProblems> {
    const problems: MountProblems = {};
    const config: MountConfig = { ...draft, id: draft.id ?? '(new)' };
    // A custom endpoint left empty: say so there, not on the hidden zone field.
    const emptyEndpoint = draft.zone === undefined && draft.endpointUrl === '';
    if (emptyEndpoint) config.endpointUrl = undefined;
    for (const problem of mountConfigProblems(config, settings.mounts, settings.profiles)) {
      if (emptyEndpoint && problem.field === 'zone') continue;
      problems[problem.field] ??= sentence(problem.message);
    }
    if (emptyEndpoint) problems.endpointUrl = 'Enter the endpoint URL, e.g. https://s3.example.com';
    if (draft.bucket === '') problems.bucket = 'Enter a bucket name, or choose one';
    else if (draft.bucket.startsWith('s3://')) problems.bucket = 'Give the bare bucket name; put a folder inside it under Prefix';
    if (problems.mountPoint === undefined) {
      const folder = await folderProblem(draft, settings);
      if (folder !== undefined) problems.mountPoint = sentence(folder);
    }
    return problems;
  }

  function mountById(id: string): MountConfig {
    const mount = deps.settings.get().mounts.find((m) => m.id === id);
    if (mount === undefined) throw new SettingsActionError('NotFound', 'That mount no longer exists; it may have been removed elsewhere.');
    return mount;
  }

  /** The endpoint, region and a label for messages; or why the target cannot be tried. */
  function resolveTarget(target: ConnectionTarget): { endpointUrl: string; region: string; where: string } | ConnectionResult {
    const invalid = (message: string): ConnectionResult => ({ outcome: 'invalid-target', message, bucketCount: undefined, requestId: undefined });
    if (target.zone !== undefined) {
      if (!isExoscaleZone(target.zone)) return invalid(`Unknown zone '${target.zone}'.`);
      const zone = exoscaleZone(target.zone);
      return { endpointUrl: zone.endpoint, region: zone.region, where: zone.endpoint };
    }
    const raw = target.endpointUrl?.trim() ?? '';
    if (raw === '') return invalid('Choose a zone or enter an endpoint URL first.');
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return invalid(`'${raw}' is not a URL.`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return invalid(`'${raw}' must start with https:// or http://.`);
    return { endpointUrl: raw, region: zoneForEndpoint(raw)?.region ?? 'us-east-1', where: url.host };
  }

  /** Runs `work` with an S3 client for the target's profile, or says why it cannot. */
  async function withClient<T>(
    target: ConnectionTarget,
    work: (client: S3Client, signal: AbortSignal, where: string) => Promise<T>,
  ): Promise<T | ConnectionResult> {
    const resolved = resolveTarget(target);
    if ('outcome' in resolved) return resolved;
    const profile = deps.settings.get().profiles.find((p) => p.name === target.profile);
    if (profile === undefined) {
      return { outcome: 'invalid-target', message: target.profile === '' ? 'Choose a profile first.' : `There is no profile named '${target.profile}'.`, bucketCount: undefined, requestId: undefined };
    }
    const secret = await deps.secrets.get(profile.name);
    if (secret === undefined) {
      return { outcome: 'no-secret', message: `The keychain has no secret for profile '${profile.name}'. Store it under Profiles.`, bucketCount: undefined, requestId: undefined };
    }
    const client = deps.createS3Client({
      bucket: target.bucket ?? '',
      endpointUrl: resolved.endpointUrl,
      region: resolved.region,
      forcePathStyle: target.forcePathStyle,
      profile: undefined,
      credentials: { accessKeyId: profile.accessKeyId, secretAccessKey: secret },
      maxConnections: 2,
      uploadChecksums: 'off',
      // One attempt: the user is waiting for an answer, and retries would
      // hide a wrong port behind backoff (and correct a skewed clock silently).
      maxAttempts: 1,
      connectTimeoutMs: timeoutMs,
      requestTimeoutMs: timeoutMs,
    });
    const signal = AbortSignal.any([lifetime.signal, AbortSignal.timeout(timeoutMs)]);
    try {
      return await work(client, signal, resolved.where);
    } finally {
      client.destroy();
    }
  }

  const handlers: IpcHandlers = {
    async [IpcChannel.GetSnapshot](): Promise<SettingsSnapshot> {
      const settings = deps.settings.get();
      return {
        mounts: settings.mounts.map((config) => ({ config, status: deps.statuses.status(config.id) })),
        profiles: await Promise.all(settings.profiles.map((p) => profileRow(p, settings))),
        zones: EXOSCALE_ZONES.map((z) => ({ zone: z.zone, label: z.label, endpoint: z.endpoint })),
        credentialsFile: displayPath(credentialsFile, home),
        homeDir: home,
      };
    },

    async [IpcChannel.ValidateMount](draft) {
      return mountProblems(normaliseDraft(draft, home), deps.settings.get());
    },

    async [IpcChannel.SaveMount](rawDraft) {
      const draft = normaliseDraft(rawDraft, home);
      const settings = deps.settings.get();
      if (draft.id !== undefined) mountById(draft.id);
      const problems = await mountProblems(draft, settings);
      if (Object.keys(problems).length > 0) return { saved: false, problems };
      const mount: MountConfig = { ...draft, id: draft.id ?? newId() };
      deps.settings.update((s) => {
        const at = s.mounts.findIndex((m) => m.id === mount.id);
        if (at >= 0) s.mounts[at] = mount;
        else s.mounts.push(mount);
      });
      return { saved: true, mount };
    },

    async [IpcChannel.RemoveMount](id) {
      const mount = mountById(id);
      if (isBusy(deps.statuses.status(id))) {
        throw new SettingsActionError('Refused', `'${mount.name}' is mounted. Unmount it from the tray first.`);
      }
      deps.settings.update((s) => {
        s.mounts = s.mounts.filter((m) => m.id !== id);
      });
    },

    async [IpcChannel.ChooseFolder](raw) {
      const current = raw === undefined ? undefined : expandHome(raw.trim(), home);
      return deps.dialog.chooseFolder(current !== undefined && path.isAbsolute(current) ? current : undefined);
    },

    async [IpcChannel.SaveProfile](draft) {
      const settings = deps.settings.get();
      const name = draft.name.trim();
      const accessKeyId = draft.accessKeyId.trim();
      const existing = settings.profiles.find((p) => p.name === name);
      if (!draft.isNew && existing === undefined) {
        throw new SettingsActionError('NotFound', `There is no profile named '${name}' any more.`);
      }
      const others = draft.isNew ? settings.profiles : settings.profiles.filter((p) => p.name !== name);
      // A new profile needs a secret; an edit without one keeps the stored secret.
      const secret = draft.isNew ? draft.secret ?? '' : draft.secret;
      const problems: ProfileProblems = {};
      for (const problem of profileConfigProblems({ name, accessKeyId }, others, secret)) {
        problems[problem.field] ??= sentence(problem.message);
      }
      if (Object.keys(problems).length > 0) return { saved: false, problems };
      // Keychain first: a profile is never saved pointing at a secret that was not stored.
      if (secret !== undefined) await deps.secrets.set(name, secret);
      try {
        deps.settings.update((s) => {
          const at = s.profiles.findIndex((p) => p.name === name);
          if (at >= 0) s.profiles[at] = { name, accessKeyId };
          else s.profiles.push({ name, accessKeyId });
        });
      } catch (err) {
        if (draft.isNew) await deps.secrets.delete(name).catch(() => false);
        throw err;
      }
      const after = deps.settings.get();
      return { saved: true, profile: await profileRow({ name, accessKeyId }, after) };
    },

    async [IpcChannel.RemoveProfile](name) {
      const settings = deps.settings.get();
      if (!settings.profiles.some((p) => p.name === name)) {
        throw new SettingsActionError('NotFound', `There is no profile named '${name}' any more.`);
      }
      const users = settings.mounts.filter((m) => m.profile === name).map((m) => `'${m.name}'`);
      if (users.length > 0) {
        throw new SettingsActionError('Refused', `Profile '${name}' is used by ${users.length === 1 ? 'mount' : 'mounts'} ${users.join(', ')}. Change or remove ${users.length === 1 ? 'that mount' : 'those mounts'} first.`);
      }
      // Keychain first: if it fails, the profile stays listed and removal can be retried.
      await deps.secrets.delete(name);
      deps.settings.update((s) => {
        s.profiles = s.profiles.filter((p) => p.name !== name);
      });
    },

    async [IpcChannel.ImportProfiles](): Promise<ImportResult> {
      const file = displayPath(credentialsFile, home);
      let text: string;
      try {
        text = await fsp.readFile(credentialsFile, 'utf8');
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') throw new SettingsActionError('NotFound', `There is no credentials file at ${file}.`);
        throw new SettingsActionError('Refused', `${file} cannot be read (${errnoOf(err) ?? String(err)}).`);
      }
      const result: ImportResult = { file, imported: [], skipped: [] };
      for (const section of parseCredentialsFile(text)) {
        const name = section.name;
        const accessKeyId = section.values.get('aws_access_key_id') ?? '';
        const secret = section.values.get('aws_secret_access_key') ?? '';
        const settings = deps.settings.get();
        if (settings.profiles.some((p) => p.name === name)) {
          result.skipped.push({ name, reason: 'a profile with this name exists' });
          continue;
        }
        if (section.values.has('aws_session_token')) {
          result.skipped.push({ name, reason: 'temporary credentials (aws_session_token) expire; not imported' });
          continue;
        }
        if (accessKeyId === '' || secret === '') {
          result.skipped.push({ name, reason: 'no aws_access_key_id and aws_secret_access_key' });
          continue;
        }
        const problem = profileConfigProblems({ name, accessKeyId }, settings.profiles, secret)[0];
        if (problem !== undefined) {
          result.skipped.push({ name, reason: problem.message });
          continue;
        }
        await deps.secrets.set(name, secret);
        deps.settings.update((s) => {
          s.profiles.push({ name, accessKeyId });
        });
        result.imported.push(name);
      }
      return result;
    },

    async [IpcChannel.TestConnection](target) {
      return withClient(target, async (client, signal, where) => {
        let bucketCount: number;
        try {
          const out = await client.send(new ListBucketsCommand({}), { abortSignal: signal });
          bucketCount = out.Buckets?.length ?? 0;
        } catch (err) {
          const failure = connectionFailure(toS3Error(err, { operation: 'ListBuckets', bucket: target.bucket ?? '' }), where);
          // A key limited to one bucket may not list buckets; the bucket itself may still be fine.
          if (failure.outcome !== 'access-denied' || target.bucket === undefined || target.bucket === '') return failure;
          try {
            await client.send(new HeadBucketCommand({ Bucket: target.bucket }), { abortSignal: signal });
          } catch {
            return failure;
          }
          return { outcome: 'ok', message: `Connected. Bucket '${target.bucket}' is there (this key may not list buckets).`, bucketCount: undefined, requestId: undefined };
        }
        const count = plural(bucketCount, 'bucket');
        if (target.bucket === undefined || target.bucket === '') {
          return { outcome: 'ok', message: `Connected: ${count}.`, bucketCount, requestId: undefined };
        }
        try {
          await client.send(new HeadBucketCommand({ Bucket: target.bucket }), { abortSignal: signal });
        } catch (err) {
          const failure = connectionFailure(toS3Error(err, { operation: 'HeadBucket', bucket: target.bucket }), where);
          if (failure.outcome === 'bucket-not-found') {
            return { ...failure, bucketCount, message: `Connected (${count}), but there is no bucket '${target.bucket}'.` };
          }
          return failure;
        }
        return { outcome: 'ok', message: `Connected: ${count}. Bucket '${target.bucket}' is there.`, bucketCount, requestId: undefined };
      });
    },

    async [IpcChannel.ListBuckets](target) {
      const result = await withClient(target, async (client, signal, where) => {
        try {
          const out = await client.send(new ListBucketsCommand({}), { abortSignal: signal });
          const buckets = (out.Buckets ?? []).map((b) => b.Name ?? '').filter((n) => n !== '').sort();
          return { ok: true as const, buckets };
        } catch (err) {
          return connectionFailure(toS3Error(err, { operation: 'ListBuckets', bucket: '' }), where);
        }
      });
      return 'outcome' in result ? { ok: false, failure: result } : result;
    },

    async [IpcChannel.UploadFiles](mountId, paths): Promise<UploadResult> {
      const mount = mountById(mountId);
      const status = deps.statuses.status(mountId);
      if (status.state !== 'mounted') {
        throw new SettingsActionError('Refused', `'${mount.name}' is not mounted. Mount it from the tray, then drop the files again.`);
      }
      if (mount.readOnly) throw new SettingsActionError('Refused', `'${mount.name}' is read-only.`);
      const result: UploadResult = { uploaded: [], failed: [] };
      const files: Array<{ source: string; name: string; size: number }> = [];
      for (const source of paths) {
        const name = path.basename(source);
        if (!path.isAbsolute(source)) {
          result.failed.push({ file: name, reason: 'not a file on this computer' });
          continue;
        }
        try {
          const stat = await fsp.stat(source);
          if (stat.isDirectory()) result.failed.push({ file: name, reason: 'folders are not uploaded; drop the files inside it' });
          else if (!stat.isFile()) result.failed.push({ file: name, reason: 'not a regular file' });
          else files.push({ source, name, size: stat.size });
        } catch (err) {
          result.failed.push({ file: name, reason: copyFailure(err, name) });
        }
      }
      const uploadId = newId();
      const bytesTotal = files.reduce((sum, f) => sum + f.size, 0);
      let bytesDone = 0;
      let lastEmit = 0;
      const progress = (file: string, fileIndex: number, done: boolean, force: boolean): void => {
        const now = Date.now();
        if (!force && now - lastEmit < progressIntervalMs) return;
        lastEmit = now;
        deps.emit(IpcEvent.UploadProgress, { uploadId, mountId, file, fileIndex, fileCount: files.length, bytesDone, bytesTotal, done });
      };
      // One file after another: each is one sequential write (one multipart upload) in the mount.
      for (const [index, file] of files.entries()) {
        const destination = path.join(mount.mountPoint, file.name);
        progress(file.name, index, false, true);
        let created = false;
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            bytesDone += chunk.length;
            progress(file.name, index, false, false);
            callback(null, chunk);
          },
        });
        const fileStart = bytesDone;
        try {
          const out = createWriteStream(destination, { flags: 'wx' });
          out.once('open', () => {
            created = true;
          });
          await pipeline(createReadStream(file.source), counter, out, { signal: lifetime.signal });
          result.uploaded.push(file.name);
        } catch (err) {
          bytesDone = fileStart + file.size; // count it as handled, so the bar still ends full
          result.failed.push({ file: file.name, reason: copyFailure(err, file.name) });
          // Only what this copy created; an existing file (EEXIST) is never touched.
          if (created) await fsp.rm(destination, { force: true }).catch(() => undefined);
        }
      }
      progress(files.at(-1)?.name ?? '', Math.max(files.length - 1, 0), true, true);
      return result;
    },
  };

  return {
    handlers,
    dispose(): void {
      stopForwarding();
      lifetime.abort(new Error('the settings window closed'));
    },
  };
}

// ---------------------------------------------------------------------------
// Registration (the Electron adapter passes ipcMain)

/** The part of Electron's ipcMain used here, so this module need not import electron. */
export interface IpcMainLike {
  handle(channel: string, listener: (event: { senderFrame: { url: string } | null }, ...args: unknown[]) => Promise<unknown>): void;
  removeHandler(channel: string): void;
}

/**
 * Registers one handler per channel of the contract, replacing (never
 * stacking) any earlier one. Requests from a frame other than the settings
 * page (`isTrustedSender`) are refused. Returns the unregister function.
 */
export function registerSettingsIpc(
  ipcMain: IpcMainLike,
  handlers: IpcHandlers,
  options: { isTrustedSender(url: string): boolean; onUnexpected?: (channel: string, err: unknown) => void },
): () => void {
  const dispatch = createIpcDispatcher(handlers, options.onUnexpected);
  const channels = Object.values(IpcChannel);
  for (const channel of channels) {
    ipcMain.removeHandler(channel);
    ipcMain.handle(channel, async (event, ...args): Promise<IpcResponse<unknown>> => {
      const url = event.senderFrame?.url ?? '';
      if (!options.isTrustedSender(url)) {
        return { ok: false, error: { code: 'UntrustedSender', message: `${channel}: refused for a frame that is not the settings page` } };
      }
      return dispatch(channel, args);
    });
  }
  return () => {
    for (const channel of channels) ipcMain.removeHandler(channel);
  };
}
