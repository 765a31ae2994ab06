/**
 * The settings window for tests: the real page (renderer/settings.html and
 * the built dist/renderer/*.js, served from disk by a localhost static
 * server that sends the window's CSP header) in headless Chromium, driven by
 * playwright-core. Behind it, the real preload (dist/main/preload.cjs) runs
 * with a stand-in `require('electron')` whose ipcRenderer reaches the real
 * main-side handlers and dispatcher in this test process (through
 * Playwright's exposeFunction), over a real settings store in a temp folder.
 * So the page calls exactly what it calls in the app, and every request goes
 * through main's payload validation.
 */
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { BRIDGE_NAME, type IpcEvent, type IpcEventContract } from '../../main/ipc-contract.js';
import { createIpcDispatcher } from '../../main/ipc-validate.js';
import type { MountStatus, SecretStore } from '../../main/model.js';
import { createSettingsHandlers, type CacheControl, type MountStatusSource, type S3ClientFactory } from '../../main/settings-handlers.js';
import { SettingsStore } from '../../main/settings-store.js';
import { Supervisor } from '../../main/supervisor.js';
import { withCspHeader } from '../../main/settings-window.js';
import { createS3Client } from '../../app/s3/sdk-client.js';

/** The package root: this file is dist/test/helpers/settings-page.js. */
export const ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
export const PRELOAD = path.join(ROOT, 'dist', 'main', 'preload.cjs');
export const PAGE_PATH = '/renderer/settings.html';

const CHROMIUM = process.env['SOSMOUNT_CHROMIUM'] ?? '/usr/bin/chromium';

interface PageElement {
  id: string;
  value: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
}

/**
 * The few browser globals that code passed to page.evaluate touches. The
 * test program is compiled without the DOM lib (it is Node code), so such
 * code reads them as `(globalThis as unknown as PageGlobals)`.
 */
export interface PageGlobals {
  document: {
    documentElement: { dataset: Record<string, string | undefined>; outerHTML: string };
    body: { innerText: string };
    activeElement: PageElement | null;
    getElementById(id: string): PageElement | null;
    querySelector(selector: string): PageElement | null;
    querySelectorAll(selector: string): ArrayLike<PageElement>;
    createElement(tag: string): PageElement & Record<string, unknown> & { addEventListener(type: string, listener: () => void): void };
    head: { append(node: unknown): void };
    addEventListener(type: string, listener: (event: { violatedDirective: string; blockedURI: string }) => void): void;
  };
  DataTransfer: new () => { items: { add(file: unknown): void } };
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------
// The browser

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Headless Debian Chromium with a fresh profile folder. */
export async function launchBrowser(): Promise<Browser> {
  const profile = await fsp.mkdtemp(path.join(os.tmpdir(), 'sosmount-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 900, height: 640 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      await fsp.rm(profile, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------
// The static server: the page's own files, with the window's CSP header

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
};

/** Only what the window loads is served; anything else is a 404. */
const SERVED = ['/renderer/', '/dist/renderer/'];

export interface StaticServer {
  origin: string;
  requests: string[];
  stop(): Promise<void>;
}

/**
 * `cspHeader: false` serves the page without the header, as Electron loads it
 * from file:// (no response headers): then only the page's meta tag applies.
 */
export async function startStaticServer(options: { cspHeader?: boolean } = {}): Promise<StaticServer> {
  const sendCsp = options.cspHeader ?? true;
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push(url.pathname);
    const file = path.join(ROOT, path.normalize(decodeURIComponent(url.pathname)));
    const allowed = SERVED.some((prefix) => url.pathname.startsWith(prefix)) && file.startsWith(ROOT + path.sep);
    if (!allowed) {
      res.writeHead(404).end();
      return;
    }
    fsp.readFile(file).then(
      (body) => {
        const base = { 'Content-Type': [TYPES[path.extname(file)] ?? 'application/octet-stream'], 'Cache-Control': ['no-store'] };
        const headers = sendCsp ? withCspHeader(base) : base;
        res.writeHead(200, Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.join(', ')])));
        res.end(body);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ---------------------------------------------------------------------------
// What stands in for the supervisor and the folder dialog

/** Mount states as the supervisor would report them; set() notifies like a state change. */
export class TestStatusSource implements MountStatusSource {
  private readonly states = new Map<string, MountStatus>();
  private readonly listeners = new Set<(id: string, status: MountStatus) => void>();

  status(id: string): MountStatus {
    return this.states.get(id) ?? { state: 'unmounted' };
  }

  onStatus(listener: (id: string, status: MountStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(id: string, status: MountStatus): void {
    this.states.set(id, status);
    for (const listener of this.listeners) listener(id, status);
  }
}

/**
 * The supervisor's cache side, real: each mount's cache folder is under
 * `root`, and Clear Cache runs the supervisor's own clearCache, which for a
 * mount without a worker (none runs here) empties the folder on disk.
 */
export class TestCaches implements CacheControl {
  readonly root: string;
  /** Mount ids Clear Cache was asked for, in order. */
  readonly cleared: string[] = [];
  private readonly supervisor: Supervisor;

  constructor(root: string) {
    this.root = root;
    this.supervisor = new Supervisor({
      launcher: { launch: () => { throw new Error('the settings window tests start no worker'); } },
      credentialsFor: async () => { throw new Error('the settings window tests start no worker'); },
      logDirectory: root,
      cacheDirectoryFor: (id) => path.join(root, id),
    });
  }

  cacheDirectory(mountId: string): string {
    return this.supervisor.cacheDirectory(mountId);
  }

  clearCache(mountId: string): Promise<number> {
    this.cleared.push(mountId);
    return this.supervisor.clearCache(mountId);
  }
}

// ---------------------------------------------------------------------------
// The page with its main side

/**
 * Runs the compiled preload as Electron runs a sandboxed one: a function of
 * (require, process, Buffer, global, setImmediate, clearImmediate, exports,
 * module), where require('electron') is all it may load. The stand-in
 * ipcRenderer forwards invoke() to main's dispatcher in the test process and
 * delivers events that the test process pushes with __sosMountEmit.
 */
function bridgeInitScript(preloadSource: string): string {
  return `(() => {
  const listeners = new Map();
  const ipcRenderer = {
    invoke: (channel, ...args) => window.__sosMountInvoke(channel, args),
    on(channel, listener) {
      if (!listeners.has(channel)) listeners.set(channel, new Set());
      listeners.get(channel).add(listener);
      return ipcRenderer;
    },
    removeListener(channel, listener) {
      listeners.get(channel)?.delete(listener);
      return ipcRenderer;
    },
  };
  Object.defineProperty(window, '__sosMountEmit', {
    value: (channel, payload) => {
      for (const listener of [...(listeners.get(channel) ?? [])]) listener({ sender: null }, payload);
    },
  });
  Object.defineProperty(window, '__sosMountListenerCount', {
    value: (channel) => listeners.get(channel)?.size ?? 0,
  });
  const contextBridge = {
    exposeInMainWorld(key, api) {
      Object.defineProperty(window, key, { value: Object.freeze(api), enumerable: false });
    },
  };
  // Electron answers with the file's path on disk; tests say which path each dropped name stands for.
  const webUtils = { getPathForFile: (file) => (window.__sosMountDropPaths || {})[file.name] || '' };
  const require = (id) => {
    if (id === 'electron') return { contextBridge, ipcRenderer, webUtils };
    throw new Error('a sandboxed preload cannot require ' + id);
  };
  const module = { exports: {} };
  (function (require, process, Buffer, global, setImmediate, clearImmediate, exports, module) {
${preloadSource}
  })(require, { platform: 'linux', sandboxed: true, contextIsolated: true }, undefined, window, undefined, undefined, module.exports, module);
})();`;
}

export interface SettingsPageOptions {
  secrets: SecretStore;
  /** The settings folder; a fresh temp folder when omitted. */
  settingsDirectory?: string;
  credentialsFile?: string;
  homeDir?: string;
  createS3Client?: S3ClientFactory;
  colorScheme?: 'light' | 'dark';
  connectionTimeoutMs?: number;
  /** Least time between upload progress events (main's default is 100 ms). */
  progressIntervalMs?: number;
}

export interface SettingsPage {
  page: Page;
  settings: SettingsStore;
  settingsFile: string;
  statuses: TestStatusSource;
  caches: TestCaches;
  /** What the folder dialog answers next (undefined: the user cancels). */
  dialog: { next: string | undefined; calls: Array<string | undefined> };
  /** Every console message and page error, as text. */
  console: string[];
  /** Every event main sent to the page. */
  events: Array<{ event: IpcEvent; payload: unknown }>;
  /** Every answer main gave the page, as JSON. */
  responses: string[];
  /** Calls main's dispatcher directly, as a compromised page could through ipcRenderer. */
  invoke(channel: unknown, args: unknown): Promise<unknown>;
  /** Reloads the page (after changing settings behind its back) and waits until it is ready. */
  reload(): Promise<void>;
  /** Tells the stand-in webUtils which file on disk each dropped file name is. */
  setDropPaths(paths: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export async function openSettingsPage(browser: Browser, server: StaticServer, options: SettingsPageOptions): Promise<SettingsPage> {
  const ownsDirectory = options.settingsDirectory === undefined;
  const directory = options.settingsDirectory ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'sosmount-settings-')));
  const settings = SettingsStore.open({ directory });
  const statuses = new TestStatusSource();
  const caches = new TestCaches(await fsp.mkdtemp(path.join(os.tmpdir(), 'sosmount-caches-')));
  const dialog: SettingsPage['dialog'] = { next: undefined, calls: [] };
  const consoleLines: string[] = [];
  const events: SettingsPage['events'] = [];
  const page = await browser.context.newPage();
  await page.emulateMedia({ colorScheme: options.colorScheme ?? 'light', reducedMotion: 'reduce' });
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));

  const emit = <E extends IpcEvent>(event: E, payload: IpcEventContract[E]): void => {
    events.push({ event, payload });
    if (page.isClosed()) return;
    page.evaluate(([name, data]) => {
      (globalThis as unknown as { __sosMountEmit(c: string, p: unknown): void }).__sosMountEmit(name, data);
    }, [event, payload] as const).catch(() => undefined);
  };

  const { handlers, dispose } = createSettingsHandlers({
    settings,
    secrets: options.secrets,
    statuses,
    caches,
    createS3Client: options.createS3Client ?? createS3Client,
    dialog: {
      chooseFolder: async (defaultPath) => {
        dialog.calls.push(defaultPath);
        return dialog.next;
      },
    },
    emit,
    ...(options.credentialsFile !== undefined ? { credentialsFile: options.credentialsFile } : {}),
    ...(options.homeDir !== undefined ? { homeDir: options.homeDir } : {}),
    ...(options.connectionTimeoutMs !== undefined ? { connectionTimeoutMs: options.connectionTimeoutMs } : {}),
    ...(options.progressIntervalMs !== undefined ? { progressIntervalMs: options.progressIntervalMs } : {}),
  });
  const dispatch = createIpcDispatcher(handlers, (channel, err) => {
    consoleLines.push(`main: ${channel} failed: ${err instanceof Error ? err.message : String(err)}`);
  });
  const responses: string[] = [];
  await page.exposeFunction('__sosMountInvoke', async (channel: unknown, args: unknown) => {
    const response = await dispatch(channel, args);
    responses.push(JSON.stringify(response));
    return response;
  });
  await page.addInitScript(bridgeInitScript(await fsp.readFile(PRELOAD, 'utf8')));
  /** The page sets data-ready once it has its snapshot and its listeners. */
  const untilReady = async (): Promise<void> => {
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.documentElement.dataset['ready'] !== undefined);
    const ready = await page.evaluate(() => (globalThis as unknown as PageGlobals).document.documentElement.dataset['ready']);
    if (ready !== 'true') throw new Error(`the settings page did not start: ${await page.textContent('body')}\n${consoleLines.join('\n')}`);
  };
  await page.goto(server.origin + PAGE_PATH);
  await untilReady();
  const hasBridge = await page.evaluate((name) => name in globalThis, BRIDGE_NAME);
  if (!hasBridge) throw new Error('the preload did not expose the bridge');

  return {
    page,
    settings,
    settingsFile: settings.path,
    statuses,
    caches,
    dialog,
    console: consoleLines,
    events,
    responses,
    reload: async () => {
      await page.reload();
      await untilReady();
    },
    invoke: (channel, args) => dispatch(channel, args),
    setDropPaths: async (paths) => {
      await page.evaluate((map) => {
        (globalThis as unknown as { __sosMountDropPaths: Record<string, string> }).__sosMountDropPaths = map;
      }, paths);
    },
    close: async () => {
      dispose();
      await page.close();
      await fsp.rm(caches.root, { recursive: true, force: true });
      if (ownsDirectory) await fsp.rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * Drops files on an element the way a file manager does: a DataTransfer with
 * File objects, through dragenter, dragover and drop. The stand-in webUtils
 * maps each name to its path (see setDropPaths).
 */
export async function dropFiles(page: Page, selector: string, files: Array<{ name: string; content: string }>): Promise<void> {
  const transfer = await page.evaluateHandle((list) => {
    const data = new (globalThis as unknown as PageGlobals).DataTransfer();
    for (const file of list) data.items.add(new File([file.content], file.name, { type: 'application/octet-stream' }));
    return data;
  }, files);
  for (const type of ['dragenter', 'dragover', 'drop']) {
    await page.dispatchEvent(selector, type, { dataTransfer: transfer });
  }
}

/**
 * Waits until the element's text is `expected` (or matches it), and returns
 * the text; fails with what it was instead. The page answers through async
 * IPC, so tests wait for conditions rather than sleeping.
 */
export async function waitForText(page: Page, selector: string, expected: string | RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: string | undefined;
  for (;;) {
    last = await page.evaluate((sel) => (globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent ?? undefined, selector);
    if (last !== undefined && (typeof expected === 'string' ? last === expected : expected.test(last))) return last;
    if (Date.now() > deadline) {
      throw new Error(`${selector}: expected ${typeof expected === 'string' ? JSON.stringify(expected) : String(expected)}, got ${last === undefined ? '(no such element)' : JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
}

/** Everything a secret could hide in: the markup, every field's current value, and the page's text. */
export async function pageTextAndValues(page: Page): Promise<string> {
  return page.evaluate(() => {
    const { document } = globalThis as unknown as PageGlobals;
    const values = Array.from(document.querySelectorAll('input, select, textarea'), (e) => e.value);
    return [document.documentElement.outerHTML, document.body.innerText, ...values].join('\n');
  });
}
