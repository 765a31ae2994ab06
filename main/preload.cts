/**
 * The settings window's preload: gives the page one object,
 * `window.sosMount` (see main/ipc-contract.ts `SettingsBridge`), with one
 * method per capability and no raw ipcRenderer.
 *
 * Why `.cts`: a sandboxed preload is run as a plain script with a CommonJS
 * `require` that loads only `electron` and a few built-ins, never a file of
 * ours; this package is `"type": "module"`, so a `.ts` file would compile to
 * an ES module, which a sandboxed preload cannot be. Hence the channel table
 * below is a copy, and `satisfies` makes the compiler prove it equal to the
 * contract's: a channel renamed there fails to compile here.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import type {
  BRIDGE_NAME as ContractBridgeName,
  IpcChannel as ContractChannels,
  IpcEvent as ContractEvents,
  IpcEventContract,
  IpcInvokeContract,
  IpcResponse,
  SettingsBridge,
  Unsubscribe,
} from './ipc-contract.js';

const BRIDGE_NAME = 'sosMount' satisfies typeof ContractBridgeName;

const IpcChannel = {
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
} as const satisfies typeof ContractChannels;

const IpcEvent = {
  MountStatus: 'sos-mount:event:mount-status',
  UploadProgress: 'sos-mount:event:upload-progress',
} as const satisfies typeof ContractEvents;

type Channel = keyof IpcInvokeContract;
type EventName = keyof IpcEventContract;

/**
 * Invokes a channel and unwraps main's {@link IpcResponse}: a failure
 * becomes an Error whose message is main's plain-words reason (an Error
 * crosses contextBridge with its message).
 */
async function invoke<C extends Channel>(channel: C, ...args: IpcInvokeContract[C]['args']): Promise<IpcInvokeContract[C]['result']> {
  const response = (await ipcRenderer.invoke(channel, ...args)) as IpcResponse<IpcInvokeContract[C]['result']>;
  if (response.ok) return response.value;
  throw new Error(response.error.message);
}

function subscribe<E extends EventName>(event: E, listener: (payload: IpcEventContract[E]) => void): Unsubscribe {
  // The listener never sees Electron's event object (it carries the sender).
  const forward = (_event: IpcRendererEvent, payload: IpcEventContract[E]): void => {
    listener(payload);
  };
  ipcRenderer.on(event, forward);
  return () => {
    ipcRenderer.removeListener(event, forward);
  };
}

const bridge: SettingsBridge = {
  getSnapshot: () => invoke(IpcChannel.GetSnapshot),
  validateMount: (draft) => invoke(IpcChannel.ValidateMount, draft),
  saveMount: (draft) => invoke(IpcChannel.SaveMount, draft),
  removeMount: (id) => invoke(IpcChannel.RemoveMount, id),
  chooseFolder: (current) => invoke(IpcChannel.ChooseFolder, current),
  saveProfile: (draft) => invoke(IpcChannel.SaveProfile, draft),
  removeProfile: (name) => invoke(IpcChannel.RemoveProfile, name),
  importProfiles: () => invoke(IpcChannel.ImportProfiles),
  testConnection: (target) => invoke(IpcChannel.TestConnection, target),
  listBuckets: (target) => invoke(IpcChannel.ListBuckets, target),
  // Electron no longer puts a path on File objects; only the preload can ask for it.
  uploadFiles: (mountId, files) =>
    invoke(IpcChannel.UploadFiles, mountId, files.map((file) => webUtils.getPathForFile(file as unknown as Parameters<typeof webUtils.getPathForFile>[0]))),
  cacheUsage: (mountId) => invoke(IpcChannel.CacheUsage, mountId),
  clearCache: (mountId) => invoke(IpcChannel.ClearCache, mountId),
  onMountStatus: (listener) => subscribe(IpcEvent.MountStatus, listener),
  onUploadProgress: (listener) => subscribe(IpcEvent.UploadProgress, listener),
};

contextBridge.exposeInMainWorld(BRIDGE_NAME, bridge);
