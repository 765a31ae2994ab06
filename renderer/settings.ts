/**
 * The settings window's entry: loads the settings from main, renders the
 * Mounts and Profiles panes, keeps mount states live, and handles the
 * sidebar. Main is reached only through `window.sosMount` (the preload's
 * bridge; see main/ipc-contract.ts).
 */
import type { SettingsSnapshot } from '../main/ipc-contract.js';
import { listen, reason, settingsBridge } from './bridge.js';
import { byId } from './dom.js';
import { MountsPane } from './mounts.js';
import { ProfilesPane } from './profiles.js';

type Section = 'mounts' | 'profiles';
const SECTIONS: readonly Section[] = ['mounts', 'profiles'];

function showSection(section: Section, focus: boolean): void {
  for (const name of SECTIONS) {
    const selected = name === section;
    byId(`section-${name}`).hidden = !selected;
    const nav = byId(`nav-${name}`);
    if (selected) nav.setAttribute('aria-current', 'page');
    else nav.removeAttribute('aria-current');
    if (selected && focus) nav.focus();
  }
}

function setUpSidebar(): void {
  for (const section of SECTIONS) {
    byId(`nav-${section}`).addEventListener('click', () => showSection(section, false));
  }
  // Up/Down move between sections, as in a native sidebar.
  byId('nav-mounts').parentElement?.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    const current = SECTIONS.findIndex((s) => byId(`nav-${s}`) === document.activeElement);
    if (current < 0) return;
    event.preventDefault();
    const next = SECTIONS[(current + (event.key === 'ArrowDown' ? 1 : SECTIONS.length - 1)) % SECTIONS.length] ?? 'mounts';
    showSection(next, true);
  });
}

async function start(): Promise<void> {
  const bridge = settingsBridge();
  // Ends every subscription when the window goes away.
  const lifetime = new AbortController();
  window.addEventListener('pagehide', () => lifetime.abort(), { once: true });
  // A file dropped anywhere but on a mount row must do nothing (not open the file in the window).
  for (const type of ['dragover', 'drop'] as const) {
    document.addEventListener(type, (event) => event.preventDefault());
  }

  let snapshot: SettingsSnapshot = await bridge.getSnapshot();
  const context = {
    bridge,
    snapshot: () => snapshot,
    refresh: async (): Promise<void> => {
      snapshot = await bridge.getSnapshot();
      mounts.render();
      profiles.render();
    },
  };
  const mounts = new MountsPane(context);
  const profiles = new ProfilesPane(context);
  setUpSidebar();
  mounts.render();
  profiles.render();

  listen(lifetime.signal, bridge.onMountStatus, ({ id, status }) => {
    const row = snapshot.mounts.find((m) => m.config.id === id);
    if (row !== undefined) row.status = status;
    mounts.updateStatus(id, status);
  });
  listen(lifetime.signal, bridge.onUploadProgress, (progress) => mounts.uploadProgress(progress));
  document.documentElement.dataset['ready'] = 'true';
}

start().catch((err: unknown) => {
  document.body.textContent = `The settings could not be loaded: ${reason(err)}`;
  document.documentElement.dataset['ready'] = 'failed';
});
