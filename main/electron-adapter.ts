/**
 * The only module that imports `electron` (and `electron-store`, which
 * loads electron): it gives the plain modules of main/ their Electron parts
 * and nothing else. Everything it decides is decided in main/app-core.ts,
 * which the tests drive under plain Node; this file type-checks against
 * electron's own type definitions.
 *
 * - Tray with the menu of main/menu-model.ts, rebuilt on every change
 *   (Linux AppIndicator has no click events, only menus).
 * - Single instance: a second launch opens the settings window of the first.
 * - macOS: no dock icon, template tray icons, files dropped on the icon
 *   upload into the first mounted bucket.
 * - Workers in utility processes (main/utility-worker.ts).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  nativeImage,
  Notification,
  shell,
  Tray,
  utilityProcess,
  type MenuItemConstructorOptions,
  type NativeImage,
} from 'electron';
import ElectronStore from 'electron-store';
import { createLogger, type Logger } from '../app/log.js';
import { createS3Client } from '../app/s3/sdk-client.js';
import type { ToWorker } from '../app/worker/protocol.js';
import { AppCore, type QuitChoice } from './app-core.js';
import { createAutostart } from './autostart.js';
import type { MenuAction, MenuModel } from './menu-model.js';
import { KeytarSecretStore } from './secret-store.js';
import { createSettingsHandlers, registerSettingsIpc } from './settings-handlers.js';
import { SettingsStore, type SettingsBackendFactory } from './settings-store.js';
import { guardWebContents, installSessionPolicy, isSettingsPageUrl, settingsPagePaths, settingsWindowOptions } from './settings-window.js';
import { workerEnvironment, type WorkerHandle, type WorkerLauncher } from './worker-launcher.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The app's root (the folder, or app.asar, holding package.json). */
const APP_ROOT = path.resolve(HERE, '..', '..');
const UTILITY_WORKER = path.join(HERE, 'utility-worker.js');

/** Workers run in Electron utility processes; see main/utility-worker.ts for how app/worker.ts runs there. */
export class UtilityProcessLauncher implements WorkerLauncher {
  launch(name: string, events: Parameters<WorkerLauncher['launch']>[1]): WorkerHandle {
    const child = utilityProcess.fork(UTILITY_WORKER, [], {
      serviceName: name,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: workerEnvironment(),
    });
    // Messages posted before the process exists are held here, in order.
    let pending: ToWorker[] | undefined = [];
    let exited = false;
    child.once('spawn', () => {
      for (const message of pending ?? []) child.postMessage(message);
      pending = undefined;
    });
    child.on('message', (message: unknown) => events.message(message));
    child.once('exit', (code: number) => {
      exited = true;
      events.exit(code, null);
    });
    child.stderr?.on('data', (chunk: Buffer | string) => events.stderr?.(chunk.toString()));
    return {
      get pid() {
        return child.pid;
      },
      send: (message) => {
        if (exited) return false;
        if (pending) pending.push(message);
        else child.postMessage(message);
        return true;
      },
      kill: (signal) => {
        if (exited) return;
        // utilityProcess.kill() sends SIGTERM (or ends the process on Windows); SIGKILL needs the pid.
        if (signal === 'SIGKILL' && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        else child.kill();
      },
    };
  }
}

/** electron-store for the settings: the app's userData folder, the app's version for migrations. */
const electronStoreBackend: SettingsBackendFactory = (options) => {
  const { configName, projectVersion: _fromAppVersion, ...rest } = options;
  return new ElectronStore({ ...rest, name: configName });
};

function fileLogger(directory: string): Logger {
  mkdirSync(directory, { recursive: true });
  const file = path.join(directory, 'app.log');
  return createLogger((line) => appendFileSync(file, line + '\n'), 'info', { part: 'app', pid: process.pid });
}

function trayIcon(): NativeImage {
  const dir = path.join(APP_ROOT, 'build', 'tray');
  if (process.platform === 'darwin') {
    // "Template" images are drawn by macOS in the menu bar's colour (light or dark); @2x is picked up beside it.
    const image = nativeImage.createFromPath(path.join(dir, 'trayTemplate.png'));
    image.setTemplateImage(true);
    return image;
  }
  return nativeImage.createFromPath(path.join(dir, 'tray.png'));
}

function toTemplate(model: MenuModel, dispatch: (action: MenuAction) => void): MenuItemConstructorOptions[] {
  return model.items.map((item): MenuItemConstructorOptions => {
    if (item.type === 'separator') return { id: item.id, type: 'separator' };
    const action = item.action;
    return {
      id: item.id,
      type: item.type,
      label: item.label,
      enabled: item.enabled,
      ...(item.type === 'checkbox' ? { checked: item.checked } : {}),
      ...(action ? { click: () => dispatch(action) } : {}),
    };
  });
}

/** The command "Start at login" runs: the AppImage itself when packaged as one, else this executable (plus the app folder in development). */
function loginCommand(): { command: string; args: string[] } {
  const appImage = process.env['APPIMAGE'];
  if (appImage) return { command: appImage, args: [] };
  return app.isPackaged ? { command: process.execPath, args: [] } : { command: process.execPath, args: [APP_ROOT] };
}

export interface DesktopAppHooks {
  /** Overrides how "Settings…" opens the settings window. */
  openSettings?(core: AppCore): void;
}

export async function runDesktopApp(hooks: DesktopAppHooks = {}): Promise<void> {
  if (process.platform === 'win32') {
    // FUSE on Windows would need a WinFsp backend, which does not exist yet.
    await app.whenReady();
    dialog.showErrorBox('SOS Mount', 'SOS Mount does not support Windows yet: it needs FUSE (a WinFsp backend is planned).');
    app.exit(1);
    return;
  }
  if (!app.requestSingleInstanceLock()) {
    // The first instance gets 'second-instance' and shows itself.
    app.exit(0);
    return;
  }
  // A tray app: closing the settings window must not quit it.
  app.on('window-all-closed', () => { /* stay in the tray */ });
  await app.whenReady();
  app.dock?.hide();

  const logDirectory = app.getPath('logs');
  const log = fileLogger(logDirectory);
  const settings = SettingsStore.open({ directory: app.getPath('userData'), createBackend: electronStoreBackend, projectVersion: app.getVersion() });
  const secrets = new KeytarSecretStore();
  const login = loginCommand();
  let settingsWindow: BrowserWindow | undefined;
  let core!: AppCore;
  let quitting = false;

  const openSettingsWindow = (): void => {
    if (hooks.openSettings) {
      hooks.openSettings(core);
      return;
    }
    if (settingsWindow && !settingsWindow.isDestroyed()) {
      settingsWindow.show();
      settingsWindow.focus();
      return;
    }
    const paths = settingsPagePaths();
    const win = new BrowserWindow(settingsWindowOptions({ preload: paths.preload }));
    settingsWindow = win;
    installSessionPolicy(win.webContents.session);
    guardWebContents(win.webContents, (url) => void shell.openExternal(url));
    const { handlers, dispose } = createSettingsHandlers({
      settings,
      secrets,
      statuses: core.supervisor,
      caches: core.supervisor,
      createS3Client,
      dialog: {
        chooseFolder: async (defaultPath) => {
          const result = await dialog.showOpenDialog(win, { properties: ['openDirectory', 'createDirectory'], ...(defaultPath ? { defaultPath } : {}) });
          return result.canceled ? undefined : result.filePaths[0];
        },
      },
      emit: (event, payload) => {
        if (!win.isDestroyed()) win.webContents.send(event, payload);
      },
    });
    const unregister = registerSettingsIpc(ipcMain, handlers, {
      isTrustedSender: (url) => isSettingsPageUrl(url, paths.html),
      onUnexpected: (channel, err) => log.error('settings request failed', { channel, error: err instanceof Error ? err.message : String(err) }),
    });
    win.once('ready-to-show', () => win.show());
    win.on('closed', () => {
      dispose();
      unregister();
      settingsWindow = undefined;
    });
    void win.loadFile(paths.html);
  };

  core = new AppCore({
    settings,
    secrets,
    launcher: new UtilityProcessLauncher(),
    autostart: createAutostart({ command: login.command, args: login.args, loginItems: app }),
    notifier: {
      notify: ({ title, body }) => {
        log.info('notification', { title, body });
        if (Notification.isSupported()) new Notification({ title, body }).show();
      },
    },
    shell: { openPath: (target) => shell.openPath(target) },
    logDirectory,
    log,
    openSettings: openSettingsWindow,
    confirmQuit: async ({ message, detail }): Promise<QuitChoice> => {
      const { response } = await dialog.showMessageBox({
        type: 'warning',
        title: 'SOS Mount',
        message,
        detail,
        buttons: ['Wait, then quit', 'Quit anyway', 'Cancel'],
        defaultId: 0,
        cancelId: 2,
      });
      return response === 0 ? 'wait' : response === 1 ? 'quit-anyway' : 'cancel';
    },
    exit: () => {
      quitting = true;
      tray.destroy();
      app.exit(0);
    },
  });

  const tray = new Tray(trayIcon());
  const render = (model: MenuModel): void => {
    if (tray.isDestroyed()) return;
    tray.setToolTip(model.tooltip);
    tray.setContextMenu(Menu.buildFromTemplate(toTemplate(model, (action) => {
      // Re-render after every click: a native check box flips itself even when the action changes nothing.
      void core.dispatch(action).finally(() => render(core.menu()));
    })));
  };
  core.onChange(render);
  render(core.menu());

  // macOS: files dropped on the menu-bar icon.
  tray.on('drop-files', (_event, files) => {
    void core.dropFiles(files);
  });
  app.on('second-instance', () => openSettingsWindow());
  // Cmd-Q, the OS asking at logout, app.quit() from anywhere: go through the core's quit, which unmounts.
  app.on('before-quit', (event) => {
    if (quitting) return;
    event.preventDefault();
    void core.requestQuit();
  });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log.info('signal: unmounting everything', { signal });
      void core.quit({ uploads: 'complete' });
    });
  }

  log.info('started', { version: app.getVersion(), atLogin: process.argv.includes('--at-login'), settings: settings.path });
  await core.start();
}
