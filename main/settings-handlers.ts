/**
 * What the settings window can ask of main, as plain functions over injected
 * parts (main/settings/context.ts). No electron import: the Electron adapter
 * passes the real parts and registers these handlers with
 * {@link registerSettingsIpc}; the renderer tests run the same handlers in
 * the test process behind the real page.
 *
 * Each pane's handlers live in main/settings/: mounts.ts, profiles.ts (with
 * aws-shared-files.ts for Import), connection.ts (Test connection and the
 * bucket picker), uploads.ts (files dropped on a mount row) and cache.ts
 * (a mount's local disk cache: space used, Clear Cache). This file
 * joins them into one handler per channel of main/ipc-contract.ts.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { EXOSCALE_ZONES } from '../app/s3/zones.js';
import { IpcChannel, IpcEvent, type IpcHandlers, type IpcResponse, type SettingsSnapshot } from './ipc-contract.js';
import { createIpcDispatcher } from './ipc-validate.js';
import { DEFAULT_CACHE_SIZE_MIB } from './model.js';
import { awsSharedFiles } from './settings/aws-shared-files.js';
import { cacheHandlers } from './settings/cache.js';
import { DEFAULT_CONNECTION_TIMEOUT_MS, connectionHandlers } from './settings/connection.js';
import type { SettingsContext, SettingsHandlerDeps } from './settings/context.js';
import { displayPath } from './settings/home-paths.js';
import { mountHandlers } from './settings/mounts.js';
import { profileHandlers, profileRow } from './settings/profiles.js';
import { DEFAULT_PROGRESS_INTERVAL_MS, uploadHandlers } from './settings/uploads.js';

export type {
  CacheControl,
  EventSink,
  FolderDialog,
  MountStatusSource,
  S3ClientFactory,
  SettingsAccess,
  SettingsHandlerDeps,
} from './settings/context.js';

export interface SettingsHandlers {
  handlers: IpcHandlers;
  /** Stops forwarding mount states and aborts uploads and connection tests in flight. */
  dispose(): void;
}

export function createSettingsHandlers(deps: SettingsHandlerDeps): SettingsHandlers {
  const home = deps.homeDir ?? os.homedir();
  const lifetime = new AbortController();
  const ctx: SettingsContext = {
    settings: deps.settings,
    secrets: deps.secrets,
    statuses: deps.statuses,
    caches: deps.caches,
    createS3Client: deps.createS3Client,
    dialog: deps.dialog,
    emit: deps.emit,
    home,
    awsFiles: awsSharedFiles({ credentialsFile: deps.credentialsFile, configFile: deps.configFile }, deps.env, home),
    connectionTimeoutMs: deps.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    progressIntervalMs: deps.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS,
    newId: deps.newId ?? randomUUID,
    lifetime: lifetime.signal,
  };

  const stopForwarding = deps.statuses.onStatus((id, status) => {
    deps.emit(IpcEvent.MountStatus, { id, status });
  });

  const handlers: IpcHandlers = {
    async [IpcChannel.GetSnapshot](): Promise<SettingsSnapshot> {
      const settings = ctx.settings.get();
      return {
        mounts: settings.mounts.map((config) => ({ config, status: ctx.statuses.status(config.id) })),
        profiles: await Promise.all(settings.profiles.map((p) => profileRow(ctx.secrets, p, settings))),
        zones: EXOSCALE_ZONES.map((z) => ({ zone: z.zone, label: z.label, endpoint: z.endpoint })),
        credentialsFile: displayPath(ctx.awsFiles.credentials, home),
        homeDir: home,
        defaultCacheSizeMiB: DEFAULT_CACHE_SIZE_MIB,
      };
    },
    ...mountHandlers(ctx),
    ...profileHandlers(ctx),
    ...connectionHandlers(ctx),
    ...uploadHandlers(ctx),
    ...cacheHandlers(ctx),
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
