/**
 * The settings window's security: its BrowserWindow options (from the one
 * function), its Content-Security-Policy (the header, the meta tag, and what
 * the meta tag alone blocks in a real browser), refused navigation and new
 * windows, the narrow bridge object, and main refusing malformed IPC
 * payloads with a specific error while nothing changes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BRIDGE_NAME, IpcChannel, IpcEvent, type IpcHandlers, type IpcResponse } from '../main/ipc-contract.js';
import { createIpcDispatcher } from '../main/ipc-validate.js';
import { MemorySecretStore } from '../main/secret-store.js';
import { registerSettingsIpc, type IpcMainLike } from '../main/settings-handlers.js';
import {
  CSP_DIRECTIVES,
  SETTINGS_CSP,
  SETTINGS_CSP_META,
  guardWebContents,
  installSessionPolicy,
  isSettingsPageUrl,
  settingsPagePaths,
  settingsWindowOptions,
  withCspHeader,
} from '../main/settings-window.js';
import { tempDir } from './helpers/processes.js';
import {
  ROOT,
  launchBrowser,
  openSettingsPage,
  startStaticServer,
  type Browser,
  type PageGlobals,
  type SettingsPage,
  type StaticServer,
} from './helpers/settings-page.js';

// ---------------------------------------------------------------------------
// Without a browser

describe('window options', () => {
  test('come from one function: sandboxed, context-isolated, no Node, web security on, drops do not navigate', () => {
    const options = settingsWindowOptions({ preload: '/app/dist/main/preload.cjs' });
    assert.deepEqual(options.webPreferences, {
      preload: '/app/dist/main/preload.cjs',
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      enableWebSQL: false,
    });
    assert.equal(options.width, 900);
    assert.equal(options.height, 640);
    assert.equal(options.show, false, 'shown on ready-to-show');
  });

  test('point at the built page and the CommonJS preload', () => {
    const paths = settingsPagePaths(pathToFileURL(path.join(ROOT, 'dist', 'main', 'settings-window.js')).href);
    assert.equal(paths.html, path.join(ROOT, 'renderer', 'settings.html'));
    assert.equal(paths.preload, path.join(ROOT, 'dist', 'main', 'preload.cjs'));
    assert.ok(existsSync(paths.html) && existsSync(paths.preload));
    assert.ok(isSettingsPageUrl(pathToFileURL(paths.html).href, paths.html));
    assert.ok(!isSettingsPageUrl('https://example.com/renderer/settings.html', paths.html));
    assert.ok(!isSettingsPageUrl(pathToFileURL(path.join(ROOT, 'README.md')).href, paths.html));
    assert.ok(!isSettingsPageUrl('not a url', paths.html));
  });
});

describe('content security policy', () => {
  test('allows the page\'s own files only: no inline code, nothing remote, no network', () => {
    assert.equal(SETTINGS_CSP, [
      "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "font-src 'self'",
      "connect-src 'none'", "media-src 'none'", "object-src 'none'", "frame-src 'none'", "worker-src 'none'",
      "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].join('; '));
    assert.doesNotMatch(SETTINGS_CSP, /unsafe-inline|unsafe-eval|https?:|\*/);
    assert.equal(CSP_DIRECTIVES.length, 13);
  });

  test('the page\'s meta tag carries the same policy (less frame-ancestors, which only a header can set)', async () => {
    const html = await readFile(path.join(ROOT, 'renderer', 'settings.html'), 'utf8');
    const meta = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(html);
    assert.ok(meta, 'a CSP meta tag');
    assert.equal(meta[1], SETTINGS_CSP_META);
    assert.equal(SETTINGS_CSP_META, SETTINGS_CSP.replace("; frame-ancestors 'none'", ''));
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(html, /\sstyle="/, 'no inline style');
    assert.doesNotMatch(html, /\son[a-z]+="/, 'no inline event handler');
  });

  test('the session sends it as a header on every response, replacing any other, and refuses every permission', () => {
    let listener: ((details: { responseHeaders?: Record<string, string[]> }, callback: (r: { responseHeaders?: Record<string, string[]> }) => void) => void) | undefined;
    let requestHandler: ((contents: unknown, permission: string, callback: (granted: boolean) => void) => void) | undefined;
    let checkHandler: (() => boolean) | undefined;
    const session = {
      webRequest: { onHeadersReceived: (l: typeof listener) => { listener = l; } },
      setPermissionRequestHandler: (h: typeof requestHandler) => { requestHandler = h; },
      setPermissionCheckHandler: (h: typeof checkHandler) => { checkHandler = h; },
    };
    installSessionPolicy(session as unknown as Parameters<typeof installSessionPolicy>[0]);
    let response: { responseHeaders?: Record<string, string[]> } | undefined;
    listener!({ responseHeaders: { 'content-security-policy': ["script-src 'unsafe-inline'"], 'Content-Type': ['text/html'] } }, (r) => { response = r; });
    assert.deepEqual(response, { responseHeaders: { 'Content-Type': ['text/html'], 'Content-Security-Policy': [SETTINGS_CSP] } });
    assert.deepEqual(withCspHeader(undefined), { 'Content-Security-Policy': [SETTINGS_CSP] });
    let granted: boolean | undefined;
    requestHandler!({}, 'media', (g) => { granted = g; });
    assert.equal(granted, false);
    assert.equal(checkHandler!(), false);
  });
});

describe('navigation and new windows', () => {
  test('are refused; an https link goes to the system browser, anything else nowhere', () => {
    const listeners = new Map<string, (event: { preventDefault(): void }, url?: string) => void>();
    let openHandler: ((details: { url: string }) => { action: string }) | undefined;
    const contents = {
      on: (event: string, listener: (event: { preventDefault(): void }) => void) => {
        listeners.set(event, listener);
        return contents;
      },
      setWindowOpenHandler: (handler: typeof openHandler) => { openHandler = handler; },
    };
    const opened: string[] = [];
    guardWebContents(contents as unknown as Parameters<typeof guardWebContents>[0], (url) => opened.push(url));
    for (const event of ['will-navigate', 'will-redirect', 'will-attach-webview']) {
      let prevented = false;
      listeners.get(event)!({ preventDefault: () => { prevented = true; } }, 'https://evil.example');
      assert.equal(prevented, true, event);
    }
    assert.deepEqual(openHandler!({ url: 'https://www.exoscale.com/syslog/' }), { action: 'deny' });
    assert.deepEqual(openHandler!({ url: 'file:///etc/passwd' }), { action: 'deny' });
    assert.deepEqual(openHandler!({ url: 'javascript:alert(1)' }), { action: 'deny' });
    assert.deepEqual(opened, ['https://www.exoscale.com/syslog/']);
  });
});

describe('IPC registration', () => {
  test('one handler per channel, replaced and never stacked; a frame other than the settings page is refused', async () => {
    const registered = new Map<string, (event: { senderFrame: { url: string } | null }, ...args: unknown[]) => Promise<unknown>>();
    const ipcMain: IpcMainLike = {
      handle: (channel, listener) => {
        if (registered.has(channel)) throw new Error(`a second handler for ${channel}`);
        registered.set(channel, listener);
      },
      removeHandler: (channel) => { registered.delete(channel); },
    };
    const handlers = { [IpcChannel.RemoveProfile]: async () => undefined } as unknown as IpcHandlers;
    const trusted = 'file:///app/renderer/settings.html';
    registerSettingsIpc(ipcMain, handlers, { isTrustedSender: (url) => url === trusted });
    const unregister = registerSettingsIpc(ipcMain, handlers, { isTrustedSender: (url) => url === trusted });
    assert.deepEqual([...registered.keys()].sort(), Object.values(IpcChannel).sort());
    const removeProfile = registered.get(IpcChannel.RemoveProfile)!;
    assert.deepEqual(await removeProfile({ senderFrame: { url: trusted } }, 'exo'), { ok: true, value: undefined });
    assert.deepEqual(await removeProfile({ senderFrame: { url: 'https://evil.example/' } }, 'exo'), {
      ok: false, error: { code: 'UntrustedSender', message: `${IpcChannel.RemoveProfile}: refused for a frame that is not the settings page` },
    });
    assert.deepEqual(await removeProfile({ senderFrame: null }, 'exo'), await removeProfile({ senderFrame: { url: '' } }, 'exo'));
    unregister();
    assert.equal(registered.size, 0);
  });

  test('a payload that is not a plain object of the contract\'s shape never reaches a handler', async () => {
    let calls = 0;
    const spy = new Proxy({}, { get: () => async () => { calls++; } }) as IpcHandlers;
    const dispatch = createIpcDispatcher(spy);
    const draft = (extra: Record<string, unknown>): Record<string, unknown> => ({
      id: undefined, name: 'n', bucket: 'bucket', zone: 'ch-gva-2', endpointUrl: undefined, forcePathStyle: false, profile: 'p',
      mountPoint: '/m', prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, allowEdit: false, cacheEnabled: false, cacheSizeMiB: 2048, mountAtLogin: false, ...extra,
    });
    const cases: Array<[unknown, unknown, string]> = [
      [IpcChannel.SaveMount, [JSON.parse('{"__proto__": {"polluted": true}}')], 'args[0].__proto__: unknown property'],
      [IpcChannel.SaveMount, [Object.assign(Object.create({ inherited: 1 }) as object, draft({}))], 'args[0]: expected a plain object'],
      [IpcChannel.SaveMount, [new Date()], 'args[0]: expected a plain object'],
      [IpcChannel.SaveMount, [draft({ prefix: null })], 'args[0].prefix: expected a string, got null'],
      [IpcChannel.ValidateMount, [draft({ readOnly: 'yes' })], 'args[0].readOnly: expected true or false, got a string'],
      [IpcChannel.RemoveMount, [], 'args[0]: expected a string, got nothing'],
    ];
    for (const [channel, args, message] of cases) {
      assert.deepEqual(await dispatch(channel, args), { ok: false, error: { code: 'InvalidPayload', message: `${String(channel)}: ${message}` } });
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.equal(calls, 0);
    assert.deepEqual(await dispatch(IpcChannel.RemoveMount, ['id']), { ok: true, value: undefined });
    assert.equal(calls, 1);
  });
});

// ---------------------------------------------------------------------------
// In the browser: the page served WITHOUT the CSP header (as from file://),
// so what is blocked is blocked by the meta tag alone.

let browser: Browser;
let site: StaticServer;
let remote: http.Server;
let remoteOrigin: string;
const remoteRequests: string[] = [];
let ui: SettingsPage;
const secrets = new MemorySecretStore();

before(async () => {
  remote = http.createServer((req, res) => {
    remoteRequests.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'image/png', 'access-control-allow-origin': '*' }).end();
  });
  await new Promise<void>((resolve) => remote.listen(0, '127.0.0.1', resolve));
  remoteOrigin = `http://127.0.0.1:${(remote.address() as AddressInfo).port}`;
  [browser, site] = await Promise.all([launchBrowser(), startStaticServer({ cspHeader: false })]);
  ui = await openSettingsPage(browser, site, { secrets });
});

after(async () => {
  await ui?.close();
  await browser?.close();
  await site?.stop();
  await new Promise<void>((resolve) => remote?.close(() => resolve()));
});

describe('the page in a browser', () => {
  test('loads its own files with no CSP complaint, then the meta tag alone blocks an inline script, an inline style, a remote image and fetch', async () => {
    assert.deepEqual(ui.console.filter((line) => /Content Security Policy|Refused to/i.test(line)), []);
    const result = await ui.page.evaluate(async (remoteUrl) => {
      const g = globalThis as unknown as PageGlobals & { fetch(url: string): Promise<unknown> };
      const violations: string[] = [];
      g.document.addEventListener('securitypolicyviolation', (event) => violations.push(event.violatedDirective));
      const script = g.document.createElement('script');
      script['textContent'] = 'globalThis.__inlineRan = true;';
      g.document.head.append(script);
      const styled = g.document.createElement('div');
      (styled as unknown as { setAttribute(n: string, v: string): void }).setAttribute('style', 'color: red');
      g.document.head.append(styled);
      const img = g.document.createElement('img');
      const loaded = new Promise<string>((resolve) => {
        img.addEventListener('load', () => resolve('loaded'));
        img.addEventListener('error', () => resolve('blocked'));
      });
      img['src'] = `${remoteUrl}/pixel.png`;
      g.document.head.append(img);
      let fetchBlocked = false;
      try {
        await g.fetch(`${remoteUrl}/data`);
      } catch {
        fetchBlocked = true;
      }
      const image = await loaded;
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { inlineRan: g['__inlineRan'] === true, fetchBlocked, image, violations: [...new Set(violations)].sort() };
    }, remoteOrigin);
    assert.deepEqual(result, {
      inlineRan: false,
      fetchBlocked: true,
      image: 'blocked',
      violations: ['connect-src', 'img-src', 'script-src-elem', 'style-src-attr'],
    });
    assert.deepEqual(remoteRequests, [], 'nothing reached the remote server');
  });

  test('the page sees one narrow bridge object and nothing of Node or Electron', async () => {
    const shape = await ui.page.evaluate((name) => {
      const g = globalThis as unknown as Record<string, unknown>;
      const bridge = g[name] as Record<string, unknown>;
      return {
        methods: Object.keys(bridge).sort(),
        allFunctions: Object.values(bridge).every((v) => typeof v === 'function'),
        frozen: Object.isFrozen(bridge),
        leaks: ['ipcRenderer', 'require', 'process', 'module', 'Buffer', 'electron'].filter((k) => k in g),
      };
    }, BRIDGE_NAME);
    assert.deepEqual(shape, {
      methods: [
        'cacheUsage', 'chooseFolder', 'clearCache', 'getSnapshot', 'importProfiles', 'listBuckets', 'onMountStatus', 'onUploadProgress',
        'removeMount', 'removeProfile', 'saveMount', 'saveProfile', 'testConnection', 'uploadFiles', 'validateMount',
      ],
      allFunctions: true,
      frozen: true,
      leaks: [],
    });
  });

  test('a subscription ends with the function it returns', async () => {
    const before = await ui.page.evaluate((channel) => (globalThis as unknown as { __sosMountListenerCount(c: string): number }).__sosMountListenerCount(channel), IpcEvent.MountStatus);
    await ui.page.evaluate((name) => {
      const g = globalThis as unknown as Record<string, unknown> & { __seen: string[]; __off: () => void };
      g.__seen = [];
      const bridge = g[name] as { onMountStatus(l: (e: { id: string }) => void): () => void };
      g.__off = bridge.onMountStatus((e) => g.__seen.push(e.id));
    }, BRIDGE_NAME);
    ui.statuses.set('first', { state: 'mounted', uploadsInProgress: 0, editing: false });
    await ui.page.waitForFunction(() => (globalThis as unknown as { __seen: string[] }).__seen.length === 1);
    await ui.page.evaluate((name) => {
      const g = globalThis as unknown as Record<string, unknown> & { __off(): void; __later: string[] };
      g.__off();
      // A second listener shows when later events have been delivered.
      g.__later = [];
      (g[name] as { onMountStatus(l: (e: { id: string }) => void): () => void }).onMountStatus((e) => g.__later.push(e.id));
    }, BRIDGE_NAME);
    ui.statuses.set('second', { state: 'unmounted' });
    await ui.page.waitForFunction(() => (globalThis as unknown as { __later: string[] }).__later.includes('second'));
    assert.deepEqual(await ui.page.evaluate(() => (globalThis as unknown as { __seen: string[] }).__seen), ['first']);
    const afterCount = await ui.page.evaluate((channel) => (globalThis as unknown as { __sosMountListenerCount(c: string): number }).__sosMountListenerCount(channel), IpcEvent.MountStatus);
    assert.equal(afterCount, before + 1, 'only the second listener is left besides the page\'s own');
  });

  test('malformed IPC payloads are refused with a specific error, and nothing changes', async () => {
    const work = await tempDir('security');
    const folder = path.join(work, 'mnt');
    await mkdir(folder);
    const ok = async (channel: string, args: unknown[]): Promise<void> => {
      const r = await ui.invoke(channel, args) as IpcResponse<unknown>;
      assert.equal(r.ok, true, JSON.stringify(r));
    };
    await ok(IpcChannel.SaveProfile, [{ name: 'exo', accessKeyId: 'EXO1', secret: 'kept-secret', isNew: true }]);
    await ok(IpcChannel.SaveMount, [{
      id: undefined, name: 'Photos', bucket: 'photos', zone: 'ch-gva-2', endpointUrl: undefined, forcePathStyle: false, profile: 'exo',
      mountPoint: folder, prefix: '', readOnly: false, allowDelete: false, allowOverwrite: false, allowEdit: false, cacheEnabled: true, cacheSizeMiB: 2048, mountAtLogin: false,
    }]);
    const settingsBefore = await readFile(ui.settingsFile, 'utf8');
    const mountId = ui.settings.get().mounts[0]!.id;
    const validMount = { ...ui.settings.get().mounts[0]! };

    // What a compromised page could send through ipcRenderer.invoke (the stand-in's raw channel).
    const cases: Array<[string, unknown, string, string]> = [
      ['sos-mount:delete-everything', [], 'UnknownChannel', 'unknown channel "sos-mount:delete-everything"'],
      ['', [], 'UnknownChannel', 'unknown channel ""'],
      [IpcChannel.SaveMount, [], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0]: expected an object, got nothing`],
      [IpcChannel.SaveMount, 'not a list', 'InvalidPayload', `${IpcChannel.SaveMount}: args: expected an argument list, got a string`],
      [IpcChannel.SaveMount, [{ ...validMount, bucket: 42 }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].bucket: expected a string, got a number`],
      [IpcChannel.SaveMount, [{ ...validMount, name: 'Renamed', secret: 'x' }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].secret: unknown property`],
      [IpcChannel.SaveMount, [{ ...validMount, name: 'x'.repeat(5000) }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].name: longer than 200 characters`],
      [IpcChannel.SaveMount, [{ ...validMount, allowDelete: 'true' }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].allowDelete: expected true or false, got a string`],
      [IpcChannel.SaveMount, [{ ...validMount, allowEdit: undefined }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].allowEdit: expected true or false, got nothing`],
      [IpcChannel.SaveMount, [{ ...validMount, allowEdit: 1 }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].allowEdit: expected true or false, got a number`],
      [IpcChannel.SaveMount, [{ ...validMount, cacheEnabled: 'on' }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].cacheEnabled: expected true or false, got a string`],
      [IpcChannel.SaveMount, [{ ...validMount, cacheSizeMiB: '2048' }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].cacheSizeMiB: expected a number, got a string`],
      [IpcChannel.SaveMount, [{ ...validMount, cacheSizeMiB: undefined }], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0].cacheSizeMiB: expected a number, got nothing`],
      [IpcChannel.SaveMount, [validMount, 'extra'], 'InvalidPayload', `${IpcChannel.SaveMount}: args: expected at most 1 argument, got 2`],
      [IpcChannel.SaveMount, [[validMount]], 'InvalidPayload', `${IpcChannel.SaveMount}: args[0]: expected an object, got an array`],
      [IpcChannel.RemoveMount, [{ id: mountId }], 'InvalidPayload', `${IpcChannel.RemoveMount}: args[0]: expected a string, got an object`],
      [IpcChannel.CacheUsage, [], 'InvalidPayload', `${IpcChannel.CacheUsage}: args[0]: expected a string, got nothing`],
      [IpcChannel.ClearCache, [mountId, mountId], 'InvalidPayload', `${IpcChannel.ClearCache}: args: expected at most 1 argument, got 2`],
      [IpcChannel.ClearCache, [{ id: mountId }], 'InvalidPayload', `${IpcChannel.ClearCache}: args[0]: expected a string, got an object`],
      [IpcChannel.ClearCache, ['x'.repeat(65)], 'InvalidPayload', `${IpcChannel.ClearCache}: args[0]: longer than 64 characters`],
      [IpcChannel.RemoveProfile, [7], 'InvalidPayload', `${IpcChannel.RemoveProfile}: args[0]: expected a string, got a number`],
      [IpcChannel.SaveProfile, [{ name: 'exo', accessKeyId: 'EXO2', secret: { toString: 'x' }, isNew: false }], 'InvalidPayload', `${IpcChannel.SaveProfile}: args[0].secret: expected a string, got an object`],
      [IpcChannel.SaveProfile, [{ name: 'exo', accessKeyId: 'EXO2', secret: 'new-secret' }], 'InvalidPayload', `${IpcChannel.SaveProfile}: args[0].isNew: expected true or false, got nothing`],
      [IpcChannel.ChooseFolder, [['/etc']], 'InvalidPayload', `${IpcChannel.ChooseFolder}: args[0]: expected a string, got an array`],
      [IpcChannel.TestConnection, [{ profile: 'exo', zone: 'ch-gva-2' }], 'InvalidPayload', `${IpcChannel.TestConnection}: args[0].forcePathStyle: expected true or false, got nothing`],
      [IpcChannel.UploadFiles, [mountId, Array.from({ length: 1001 }, () => '/etc/passwd')], 'InvalidPayload', `${IpcChannel.UploadFiles}: args[1]: more than 1000 items`],
      [IpcChannel.UploadFiles, [mountId, ['/etc/passwd', 3]], 'InvalidPayload', `${IpcChannel.UploadFiles}: args[1][1]: expected a string, got a number`],
    ];
    for (const [channel, args, code, message] of cases) {
      const response = await ui.page.evaluate(([c, a]) => (globalThis as unknown as { __sosMountInvoke(c: unknown, a: unknown): Promise<unknown> }).__sosMountInvoke(c, a), [channel, args] as const);
      assert.deepEqual(response, { ok: false, error: { code, message } }, `${channel} ${JSON.stringify(args).slice(0, 80)}`);
    }
    // Through the bridge, a refused payload is a rejected promise with main's reason.
    const viaBridge = await ui.page.evaluate(async (name) => {
      const bridge = (globalThis as unknown as Record<string, { saveMount(d: unknown): Promise<unknown> }>)[name]!;
      try {
        await bridge.saveMount({ bogus: true });
        return 'resolved';
      } catch (err) {
        return (err as Error).message;
      }
    }, BRIDGE_NAME);
    assert.equal(viaBridge, `${IpcChannel.SaveMount}: args[0].bogus: unknown property`);

    assert.equal(await readFile(ui.settingsFile, 'utf8'), settingsBefore, 'the settings file is unchanged');
    assert.equal(await secrets.get('exo'), 'kept-secret', 'the keychain is unchanged');
    assert.deepEqual(ui.dialog.calls, [], 'no dialog was opened');
    assert.deepEqual(ui.caches.cleared, [], 'no cache was cleared');
  });
});
