/**
 * `window.sosMount`, typed from the one contract (main/ipc-contract.ts):
 * the key is the contract's BRIDGE_NAME, the value its SettingsBridge, so
 * the page cannot call anything the preload does not expose.
 */
import type { BRIDGE_NAME, SettingsBridge } from '../main/ipc-contract.js';

type BridgeGlobal = { readonly [K in typeof BRIDGE_NAME]: SettingsBridge | undefined };

declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-interface
  interface Window extends BridgeGlobal {}
}

export {};
