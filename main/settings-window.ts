/**
 * The settings window's security in one place: its BrowserWindow options
 * come from one function, its Content-Security-Policy from one table (sent
 * as a response header and written as a meta tag in the page), and its web
 * contents refuse navigation, new windows, webviews and permission
 * requests. Only types come from electron, so this runs (and is tested)
 * under plain Node; main/electron-adapter.ts passes the real objects.
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type {
  BrowserWindowConstructorOptions,
  HandlerDetails,
  OnHeadersReceivedListenerDetails,
  HeadersReceivedResponse,
  Session,
  WebContents,
  WindowOpenHandlerResponse,
} from 'electron';

/**
 * The policy. No inline script or style, nothing remote: the page's own
 * files only. `connect-src 'none'` because the page talks to main only
 * through the preload's bridge, never over the network.
 */
export const CSP_DIRECTIVES: ReadonlyArray<readonly [string, string]> = [
  ['default-src', "'none'"],
  ['script-src', "'self'"],
  ['style-src', "'self'"],
  ['img-src', "'self'"],
  ['font-src', "'self'"],
  ['connect-src', "'none'"],
  ['media-src', "'none'"],
  ['object-src', "'none'"],
  ['frame-src', "'none'"],
  ['worker-src', "'none'"],
  ['base-uri', "'none'"],
  ['form-action', "'none'"],
  // Honoured only as a header (a meta tag's frame-ancestors is ignored, with a console warning).
  ['frame-ancestors', "'none'"],
];

const HEADER_ONLY = new Set(['frame-ancestors']);

/** The Content-Security-Policy response header. */
export const SETTINGS_CSP = CSP_DIRECTIVES.map(([name, value]) => `${name} ${value}`).join('; ');

/** The same policy for `<meta http-equiv="Content-Security-Policy">` in renderer/settings.html. */
export const SETTINGS_CSP_META = CSP_DIRECTIVES.filter(([name]) => !HEADER_ONLY.has(name))
  .map(([name, value]) => `${name} ${value}`)
  .join('; ');

export interface SettingsPagePaths {
  /** renderer/settings.html in the package. */
  html: string;
  /** dist/main/preload.cjs. */
  preload: string;
}

/** Where the page and the preload are, from this compiled file's place (dist/main/settings-window.js). */
export function settingsPagePaths(moduleUrl: string = import.meta.url): SettingsPagePaths {
  const here = path.dirname(fileURLToPath(moduleUrl));
  const root = path.resolve(here, '..', '..');
  return {
    html: path.join(root, 'renderer', 'settings.html'),
    preload: path.join(here, 'preload.cjs'),
  };
}

export const SETTINGS_WINDOW_SIZE = { width: 900, height: 640, minWidth: 760, minHeight: 520 } as const;

/**
 * The one place the window's options are made. Every security-relevant
 * preference is spelled out even where Electron's default agrees, so a
 * change of default, or of this function, shows in the test that checks it.
 */
export function settingsWindowOptions(options: { preload: string; backgroundColor?: string }): BrowserWindowConstructorOptions {
  return {
    ...SETTINGS_WINDOW_SIZE,
    title: 'SOS Mount Settings',
    show: false, // shown on ready-to-show: no white flash in dark mode
    autoHideMenuBar: true,
    ...(options.backgroundColor !== undefined ? { backgroundColor: options.backgroundColor } : {}),
    webPreferences: {
      preload: options.preload,
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      // Files dropped outside a mount row must not replace the page.
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      enableWebSQL: false,
    },
  };
}

/** Whether `url` is the settings page itself (the only frame whose IPC main answers). */
export function isSettingsPageUrl(url: string, html: string = settingsPagePaths().html): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const expected = pathToFileURL(html);
  return parsed.protocol === 'file:' && parsed.pathname === expected.pathname;
}

/** Adds the CSP header to a response's headers (and drops any other CSP). */
export function withCspHeader(headers: Record<string, string[]> | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() !== 'content-security-policy') out[name] = value;
  }
  out['Content-Security-Policy'] = [SETTINGS_CSP];
  return out;
}

/**
 * Sends the policy as a header on every response of the window's session
 * and refuses every permission request (camera, notifications, ...). The
 * meta tag in the page covers file:// loads, for which Chromium has no
 * response headers.
 */
export function installSessionPolicy(session: Pick<Session, 'webRequest' | 'setPermissionRequestHandler' | 'setPermissionCheckHandler'>): void {
  session.webRequest.onHeadersReceived((details: OnHeadersReceivedListenerDetails, callback: (response: HeadersReceivedResponse) => void) => {
    callback({ responseHeaders: withCspHeader(details.responseHeaders) });
  });
  session.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  session.setPermissionCheckHandler(() => false);
}

/**
 * Refuses navigation away from the page, new windows, redirects and
 * webviews. A link to an https page (there are none today) goes to the
 * system browser through `openExternal`, never into this window.
 */
export function guardWebContents(
  contents: Pick<WebContents, 'on' | 'setWindowOpenHandler'>,
  openExternal: (url: string) => void,
): void {
  const refuse = (event: { preventDefault(): void }): void => {
    event.preventDefault();
  };
  contents.on('will-navigate', refuse);
  contents.on('will-redirect', refuse);
  contents.on('will-attach-webview', refuse);
  contents.setWindowOpenHandler((details: HandlerDetails): WindowOpenHandlerResponse => {
    if (details.url.startsWith('https://')) openExternal(details.url);
    return { action: 'deny' };
  });
}
