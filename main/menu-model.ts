/**
 * The tray menu as a pure function of the app state (README.md,
 * "Desktop app"). The Electron adapter turns the model into a native menu and
 * rebuilds it on every change, because Linux AppIndicator trays have no
 * click events, only menus: whatever a user can see or do is in here.
 */
import type { FolderRename, MountConfig, MountStatus, PendingUploads } from './model.js';

export interface MountView {
  config: MountConfig;
  status: MountStatus;
  /** The user wants it mounted (mounting, mounted, or waiting to retry): the check mark. */
  wanted: boolean;
}

export interface AppState {
  /** In the settings' order. */
  mounts: MountView[];
  startAtLogin: boolean;
  /** Problems the user must know about (an unreadable settings file...). */
  warnings: string[];
  /** Set while Quit waits for uploads to finish. */
  quitting: PendingUploads | undefined;
}

export type MenuAction =
  | { type: 'toggle-mount'; mountId: string }
  | { type: 'open-folder'; mountId: string }
  | { type: 'open-settings' }
  | { type: 'toggle-start-at-login' }
  | { type: 'show-logs' }
  | { type: 'dismiss-warnings' }
  | { type: 'quit' }
  /** While waiting for uploads at Quit: stop waiting, abandon them. */
  | { type: 'quit-now' };

export type MenuItemModel =
  | { type: 'separator'; id: string }
  | { type: 'normal'; id: string; label: string; enabled: boolean; action?: MenuAction | undefined }
  | { type: 'checkbox'; id: string; label: string; checked: boolean; enabled: boolean; action: MenuAction };

export interface MenuModel {
  items: MenuItemModel[];
  /** The tray icon's tooltip (where the platform shows one). */
  tooltip: string;
}

/** Long reasons (URLs, request ids) would make the menu as wide as the screen. */
const MAX_REASON_CHARS = 90;
/** Each side of a rename: its end names the folder, so the start is what gives way. */
const MAX_RENAME_PATH_CHARS = 40;

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function shorten(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

function shortenPath(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - max + 1)}`;
}

export function renamingText(rename: FolderRename): string {
  return `renaming ${shortenPath(rename.from, MAX_RENAME_PATH_CHARS)} → ${shortenPath(rename.to, MAX_RENAME_PATH_CHARS)}: ${rename.done}/${rename.total}`;
}

/** What the tray says about a mount: unmounted, mounting, mounted, renaming a folder, uploading N files, error with the reason. */
export function statusText(status: MountStatus): string {
  switch (status.state) {
    case 'unmounted':
      return 'unmounted';
    case 'mounting':
      return status.attempt > 1 ? `mounting (attempt ${status.attempt})…` : 'mounting…';
    case 'mounted': {
      const doing: string[] = [];
      if (status.renaming) doing.push(renamingText(status.renaming));
      if (status.uploadsInProgress > 0) doing.push(`uploading ${plural(status.uploadsInProgress, 'file', 'files')}`);
      return doing.length > 0 ? doing.join(', ') : 'mounted';
    }
    case 'unmounting':
      return status.uploadsInProgress > 0 ? `unmounting, ${plural(status.uploadsInProgress, 'file', 'files')} still uploading` : 'unmounting…';
    case 'error': {
      const rid = status.requestId ? ` (request id ${status.requestId})` : '';
      const retry = status.retryInMs !== undefined ? `; retrying in ${Math.max(1, Math.round(status.retryInMs / 1000))} s` : '';
      return `error: ${shorten(status.message, MAX_REASON_CHARS)}${rid}${retry}`;
    }
  }
}

export function mountLabel(view: MountView): string {
  return `${view.config.name} — ${statusText(view.status)}`;
}

function uploadsOf(status: MountStatus): number {
  return status.state === 'mounted' || status.state === 'unmounting' ? status.uploadsInProgress : 0;
}

export function tooltip(state: AppState): string {
  const mounted = state.mounts.filter((m) => m.status.state === 'mounted').length;
  const errors = state.mounts.filter((m) => m.status.state === 'error').length;
  const uploads = state.mounts.reduce((n, m) => n + uploadsOf(m.status), 0);
  const parts = [state.mounts.length === 0 ? 'no buckets configured' : `${mounted} of ${state.mounts.length} mounted`];
  for (const m of state.mounts) if (m.status.state === 'mounted' && m.status.renaming) parts.push(`${m.config.name} ${renamingText(m.status.renaming)}`);
  if (uploads > 0) parts.push(`uploading ${plural(uploads, 'file', 'files')}`);
  if (errors > 0) parts.push(plural(errors, 'error', 'errors'));
  return `SOS Mount: ${parts.join(', ')}`;
}

export function buildMenu(state: AppState): MenuModel {
  const items: MenuItemModel[] = [];
  const quitting = state.quitting !== undefined;

  if (state.warnings.length > 0) {
    for (const [i, warning] of state.warnings.entries()) {
      items.push({ type: 'normal', id: `warning:${i}`, label: `⚠ ${shorten(warning, 120)}`, enabled: false });
    }
    items.push({ type: 'normal', id: 'dismiss-warnings', label: 'Dismiss', enabled: true, action: { type: 'dismiss-warnings' } });
    items.push({ type: 'separator', id: 'sep:warnings' });
  }

  if (state.mounts.length === 0) {
    items.push({ type: 'normal', id: 'no-mounts', label: 'No buckets yet: add one in Settings…', enabled: false });
  }
  for (const view of state.mounts) {
    const id = view.config.id;
    items.push({
      type: 'checkbox',
      id: `mount:${id}`,
      label: mountLabel(view),
      checked: view.wanted,
      // While unmounting, a click could only queue a remount; while quitting, nothing may start.
      enabled: !quitting && view.status.state !== 'unmounting',
      action: { type: 'toggle-mount', mountId: id },
    });
    if (view.status.state === 'mounted') {
      items.push({ type: 'normal', id: `open:${id}`, label: `Open “${view.config.name}” folder`, enabled: true, action: { type: 'open-folder', mountId: id } });
    }
  }

  items.push({ type: 'separator', id: 'sep:mounts' });
  items.push({ type: 'normal', id: 'settings', label: 'Settings…', enabled: true, action: { type: 'open-settings' } });
  items.push({ type: 'checkbox', id: 'start-at-login', label: 'Start at login', checked: state.startAtLogin, enabled: true, action: { type: 'toggle-start-at-login' } });
  items.push({ type: 'normal', id: 'logs', label: 'Show logs', enabled: true, action: { type: 'show-logs' } });
  items.push({ type: 'separator', id: 'sep:quit' });
  if (state.quitting) {
    const n = state.quitting.lost + state.quitting.kept;
    items.push({ type: 'normal', id: 'quitting', label: `Quitting: waiting for ${plural(n, 'file', 'files')} to upload…`, enabled: false });
    items.push({ type: 'normal', id: 'quit-now', label: `Quit now (${whatQuittingDoes(state.quitting)})`, enabled: true, action: { type: 'quit-now' } });
  } else {
    items.push({ type: 'normal', id: 'quit', label: 'Quit', enabled: true, action: { type: 'quit' } });
  }
  return { items, tooltip: tooltip(state) };
}

/**
 * What quitting now does to the files still uploading, in a few words: a
 * mount in editing mode keeps its staged files on disk and uploads them at
 * its next mount; any other mount's uploads are aborted and lost.
 */
export function whatQuittingDoes(pending: PendingUploads): string {
  const lost = pending.lost === 0 ? undefined : pending.lost === 1 ? '1 upload is lost' : `${pending.lost} uploads are lost`;
  const kept = pending.kept === 0 ? undefined : `${plural(pending.kept, 'file uploads', 'files upload')} at the next mount`;
  if (lost !== undefined && kept !== undefined) return `${lost}, ${kept}`;
  if (kept !== undefined) return kept;
  return pending.lost === 1 ? 'the upload is lost' : 'the uploads are lost';
}

/** What the Quit dialog asks when files are still uploading. */
export interface QuitQuestion {
  pending: PendingUploads;
  /** The headline: how many files are still uploading. */
  message: string;
  /** The choice: wait, or quit now and what that does to them. */
  detail: string;
}

export function quitQuestion(pending: PendingUploads): QuitQuestion {
  const n = pending.lost + pending.kept;
  const them = n === 1 ? 'it' : 'them';
  let now: string;
  if (pending.kept === 0) now = `quit now and lose ${n === 1 ? 'that upload' : 'those uploads'}`;
  else if (pending.lost === 0) now = `quit now: ${n === 1 ? 'it stays' : 'they stay'} on this computer and ${n === 1 ? 'uploads' : 'upload'} at the next mount`;
  else now = `quit now: ${whatQuittingDoes(pending)} (editing mode keeps its files on this computer)`;
  return { pending, message: `${plural(n, 'file', 'files')} still uploading`, detail: `Wait for ${them} to finish and then quit, or ${now}.` };
}
