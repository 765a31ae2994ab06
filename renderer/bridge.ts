/**
 * The page's way to main: the preload's bridge object, and the one helper
 * that ties an event subscription to an AbortSignal.
 */
import type { SettingsBridge, SettingsSnapshot, Unsubscribe } from '../main/ipc-contract.js';

/** What the page gives each pane: the bridge and the settings it shows. */
export interface PaneContext {
  bridge: SettingsBridge;
  snapshot(): SettingsSnapshot;
  /** Fetches a new snapshot and renders every pane. */
  refresh(): Promise<void>;
}

export function settingsBridge(): SettingsBridge {
  const bridge = window.sosMount;
  if (bridge === undefined) throw new Error('the settings bridge is missing: the page must be opened by SOS Mount');
  return bridge;
}

/**
 * Subscribes until `signal` aborts. (The bridge's subscriptions return their
 * unsubscribe function, because an AbortSignal cannot cross contextBridge;
 * see main/ipc-contract.ts.)
 */
export function listen<T>(
  signal: AbortSignal,
  subscribe: (listener: (payload: T) => void) => Unsubscribe,
  listener: (payload: T) => void,
): void {
  if (signal.aborted) return;
  const unsubscribe = subscribe(listener);
  signal.addEventListener('abort', () => unsubscribe(), { once: true });
}

/** An Error from the bridge carries main's plain-words reason as its message. */
export function reason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // Electron prefixes errors thrown across invoke; ours travel as data, but be safe.
  return message.replace(/^Error invoking remote method '[^']*': (Error: )?/, '');
}
