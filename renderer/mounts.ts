/**
 * The Mounts pane: the list (live state from the supervisor, drop files on a
 * mounted row to upload them) and the editor of one mount (validated by
 * main as you type, each reason next to its field).
 */
import type {
  ConnectionTarget,
  MountDraft,
  MountField,
  MountProblems,
  MountRow,
  MountStatus,
  UploadProgress,
  UploadResult,
} from '../main/ipc-contract.js';
import { reason, type PaneContext } from './bridge.js';
import { ICONS, byId, el, homeRelative, icon, plural, say, whileBusy } from './dom.js';

/** Each field that main may find a problem with: its control and where the reason goes. */
const FIELDS: ReadonlyArray<{ field: MountField; input: string; problem: string }> = [
  { field: 'name', input: 'm-name', problem: 'm-name-problem' },
  { field: 'profile', input: 'm-profile', problem: 'm-profile-problem' },
  { field: 'zone', input: 'm-zone', problem: 'm-zone-problem' },
  { field: 'endpointUrl', input: 'm-endpoint', problem: 'm-endpoint-problem' },
  { field: 'bucket', input: 'm-bucket', problem: 'm-bucket-problem' },
  { field: 'prefix', input: 'm-prefix', problem: 'm-prefix-problem' },
  { field: 'mountPoint', input: 'm-folder', problem: 'm-folder-problem' },
  { field: 'readOnly', input: 'm-read-only', problem: 'm-read-only-problem' },
  { field: 'allowEdit', input: 'm-allow-edit', problem: 'm-allow-edit-problem' },
  { field: 'allowDelete', input: 'm-allow-delete', problem: 'm-allow-delete-problem' },
  { field: 'allowOverwrite', input: 'm-allow-overwrite', problem: 'm-allow-overwrite-problem' },
  { field: 'cacheSizeMiB', input: 'm-cache-size', problem: 'm-cache-size-problem' },
];

/**
 * Switches that read-only contradicts (main/validation.ts): turning it on
 * shows their reasons at once, not only after Save.
 */
const EXCLUDED_BY_READ_ONLY: readonly MountField[] = ['allowEdit', 'allowDelete', 'allowOverwrite'];

/**
 * A new mount starts in editing mode. A mount saved before editing mode
 * existed reads as off (main/settings-store.ts), so an upgrade changes no
 * existing mount.
 */
const NEW_MOUNT_ALLOW_EDIT = true;

/**
 * A new mount keeps a local copy of what it reads; its size is main's
 * default (SettingsSnapshot.defaultCacheSizeMiB). A mount saved before the
 * cache existed reads as off, for the same reason as editing mode.
 */
const NEW_MOUNT_CACHE = true;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Bytes in the units people read sizes in: KiB below a MiB, MiB below a GiB, then GiB with one decimal. */
export function formatSize(bytes: number): string {
  if (bytes < MiB) return bytes === 0 ? '0 MiB' : `${Math.max(1, Math.round(bytes / KiB))} KiB`;
  if (bytes < GiB) return `${Math.round(bytes / MiB)} MiB`;
  return `${(bytes / GiB).toFixed(1).replace(/\.0$/, '')} GiB`;
}

/** A stored size as the form shows it: whole GiB as GiB (2 GiB, not 2048 MiB), anything else in MiB. */
function sizeForForm(mib: number): { value: string; unit: 'MiB' | 'GiB' } {
  return mib >= 1024 && mib % 1024 === 0 ? { value: String(mib / 1024), unit: 'GiB' } : { value: String(mib), unit: 'MiB' };
}

/**
 * The form's size in MiB, as stored. GiB are rounded to whole MiB (1.3 GiB
 * is 1331 MiB; nobody means a fraction of a MiB); MiB go as typed, so main
 * can say that 4.5 is not whole. An empty or unreadable field is NaN, which
 * main words next to the field.
 */
function sizeFromForm(value: number, unit: string): number {
  return unit === 'GiB' ? Math.round(value * 1024) : value;
}

/** The space-used line: what the cache holds now, against its size when the cache is on and the size is one. */
export function cacheUsageText(usedBytes: number, enabled: boolean, sizeMiB: number): string {
  if (usedBytes === 0) return 'Nothing stored yet';
  const limit = enabled && Number.isInteger(sizeMiB) && sizeMiB > 0 ? ` of ${formatSize(sizeMiB * MiB)}` : '';
  return `Using ${formatSize(usedBytes)}${limit}`;
}
export function statusText(status: MountStatus): string {
  switch (status.state) {
    case 'unmounted':
      return 'Not mounted';
    case 'mounting':
      return status.attempt > 1 ? `Mounting… (attempt ${status.attempt})` : 'Mounting…';
    case 'mounted':
      return status.uploadsInProgress > 0 ? `Mounted · uploading ${status.uploadsInProgress}` : 'Mounted';
    case 'unmounting':
      return 'Unmounting…';
    case 'error':
      return 'Error';
  }
}

function errorLine(status: MountStatus): string {
  if (status.state !== 'error') return '';
  return status.requestId !== undefined ? `${status.message} (request id ${status.requestId})` : status.message;
}

interface RowRefs {
  row: HTMLLIElement;
  status: HTMLSpanElement;
  error: HTMLDivElement;
  note: HTMLDivElement;
  progress: HTMLDivElement;
  bar: HTMLProgressElement;
  progressText: HTMLSpanElement;
}

interface Editing {
  id: string | undefined;
  touched: Set<MountField>;
  submitted: boolean;
  /** Drops answers to validations that a newer one overtook. */
  seq: number;
}

export class MountsPane {
  private readonly ctx: PaneContext;
  private readonly rows = new Map<string, RowRefs>();
  private readonly uploading = new Set<string>();
  private editing: Editing | undefined;

  private readonly form = byId<HTMLFormElement>('mount-form');
  private readonly listView = byId('mounts-list-view');
  private readonly name = byId<HTMLInputElement>('m-name');
  private readonly profile = byId<HTMLSelectElement>('m-profile');
  private readonly locationZone = byId<HTMLInputElement>('m-location-zone');
  private readonly locationCustom = byId<HTMLInputElement>('m-location-custom');
  private readonly zone = byId<HTMLSelectElement>('m-zone');
  private readonly endpoint = byId<HTMLInputElement>('m-endpoint');
  private readonly pathStyle = byId<HTMLInputElement>('m-path-style');
  private readonly bucket = byId<HTMLInputElement>('m-bucket');
  private readonly prefix = byId<HTMLInputElement>('m-prefix');
  private readonly folder = byId<HTMLInputElement>('m-folder');
  private readonly readOnly = byId<HTMLInputElement>('m-read-only');
  private readonly allowDelete = byId<HTMLInputElement>('m-allow-delete');
  private readonly allowOverwrite = byId<HTMLInputElement>('m-allow-overwrite');
  private readonly allowEdit = byId<HTMLInputElement>('m-allow-edit');
  /**
   * The user's own Allow delete and Allow overwrite. Editing mode implies
   * both, so while it is on the switches show on and cannot be changed; these
   * are saved, and shown again when editing mode is turned off.
   */
  private readonly ownFlags = { allowDelete: false, allowOverwrite: false };
  private readonly atLogin = byId<HTMLInputElement>('m-at-login');
  private readonly cache = byId<HTMLInputElement>('m-cache');
  private readonly cacheSize = byId<HTMLInputElement>('m-cache-size');
  private readonly cacheUnit = byId<HTMLSelectElement>('m-cache-unit');
  private readonly cacheUsage = byId('m-cache-usage');
  private readonly cacheResult = byId('m-cache-result');
  /** What the saved mount's cache held when main was last asked; undefined until it answers. */
  private cacheUsedBytes: number | undefined;
  private readonly picker = byId('m-bucket-picker');
  private readonly pickerTitle = byId('m-bucket-picker-title');
  private readonly pickerList = byId('m-bucket-picker-list');
  private readonly testResult = byId('m-test-result');
  private readonly message = byId('m-message');

  constructor(ctx: PaneContext) {
    this.ctx = ctx;
    byId('add-mount').addEventListener('click', () => this.openEditor(undefined));
    byId('mount-back').addEventListener('click', () => this.closeEditor());
    byId('m-cancel').addEventListener('click', () => this.closeEditor());
    byId('m-pick-bucket').addEventListener('click', () => void whileBusy(byId('m-pick-bucket'), () => this.pickBucket()));
    byId('m-choose-folder').addEventListener('click', () => void this.chooseFolder());
    byId('m-test').addEventListener('click', () => void whileBusy(byId('m-test'), () => this.testConnection()));
    byId('m-clear-cache').addEventListener('click', () => void whileBusy(byId('m-clear-cache'), () => this.clearCache()));
    byId('m-remove').addEventListener('click', () => this.confirmRemove(true));
    byId('m-remove-cancel').addEventListener('click', () => this.confirmRemove(false));
    byId('m-remove-yes').addEventListener('click', () => void whileBusy(byId('m-remove-yes'), () => this.remove()));
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void whileBusy(byId('m-save'), () => this.save());
    });
    this.form.addEventListener('input', (event) => this.edited(event));
    this.form.addEventListener('change', (event) => this.edited(event));
    this.form.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape') return;
      event.preventDefault();
      if (!this.picker.hidden) {
        this.picker.hidden = true;
        byId('m-pick-bucket').focus();
      } else {
        this.closeEditor();
      }
    });
  }

  // ------------------------------------------------------------------ list

  render(): void {
    const { mounts } = this.ctx.snapshot();
    const list = byId('mount-list');
    this.rows.clear();
    list.replaceChildren(...mounts.map((row) => this.rowFor(row)));
    list.hidden = mounts.length === 0;
    byId('mounts-empty').hidden = mounts.length > 0;
  }

  private location(row: MountRow): string {
    const { zone, endpointUrl } = row.config;
    if (zone !== undefined) return this.ctx.snapshot().zones.find((z) => z.zone === zone)?.label ?? zone;
    try {
      return new URL(endpointUrl ?? '').host;
    } catch {
      return endpointUrl ?? '';
    }
  }

  private rowFor(mountRow: MountRow): HTMLLIElement {
    const { config, status } = mountRow;
    const statusEl = el('span', { className: 'status', text: statusText(status), attrs: { 'data-state': status.state } });
    const error = el('div', { className: 'row-error', text: errorLine(status) });
    error.hidden = status.state !== 'error';
    const note = el('div', { className: 'row-note', attrs: { role: 'status' } });
    const bar = el('progress', { attrs: { max: '1', value: '0', 'aria-label': `Upload to ${config.name}` } });
    const progressText = el('span');
    const progress = el('div', { className: 'row-progress' }, bar, progressText);
    progress.hidden = true;
    const folder = homeRelative(config.mountPoint, this.ctx.snapshot().homeDir);
    const where = [config.bucket + (config.prefix !== '' ? `/${config.prefix}` : ''), this.location(mountRow), folder].join(' · ');
    const edit = el('button', { className: 'button', text: 'Edit…', attrs: { type: 'button', 'aria-label': `Edit ${config.name}` } });
    edit.addEventListener('click', () => this.openEditor(config.id));
    const row = el(
      'li',
      { className: 'row mount-row', attrs: { 'data-mount-id': config.id } },
      el('div', { className: 'row-icon' }, icon(ICONS.bucket)),
      el('div', { className: 'row-main' },
        el('div', { className: 'row-title', text: config.name }),
        el('div', { className: 'row-sub', text: where, attrs: { title: where } }),
        error, progress, note),
      el('div', { className: 'row-actions' }, statusEl, edit),
    );
    this.rows.set(config.id, { row, status: statusEl, error, note, progress, bar, progressText });
    this.acceptDrops(row, config.id);
    return row;
  }

  updateStatus(id: string, status: MountStatus): void {
    const refs = this.rows.get(id);
    if (refs === undefined) return;
    refs.status.textContent = statusText(status);
    refs.status.dataset['state'] = status.state;
    refs.error.textContent = errorLine(status);
    refs.error.hidden = status.state !== 'error';
  }

  // ------------------------------------------------------------------ uploads

  private acceptDrops(row: HTMLLIElement, id: string): void {
    const carriesFiles = (event: DragEvent): boolean => event.dataTransfer?.types.includes('Files') ?? false;
    row.addEventListener('dragover', (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
      row.classList.add('drop-target');
    });
    row.addEventListener('dragleave', (event) => {
      if (!(event.relatedTarget instanceof Node) || !row.contains(event.relatedTarget)) row.classList.remove('drop-target');
    });
    row.addEventListener('drop', (event) => {
      event.preventDefault();
      row.classList.remove('drop-target');
      const files = Array.from(event.dataTransfer?.files ?? []);
      if (files.length > 0) void this.upload(id, files);
    });
  }

  private async upload(id: string, files: File[]): Promise<void> {
    const refs = this.rows.get(id);
    if (refs === undefined) return;
    if (this.uploading.has(id)) {
      say(refs.note, 'Still uploading the last drop; drop again when it is done.', 'bad');
      return;
    }
    this.uploading.add(id);
    say(refs.note, '');
    refs.bar.max = 1;
    refs.bar.value = 0;
    refs.progressText.textContent = `Uploading ${plural(files.length, 'file')}…`;
    refs.progress.hidden = false;
    try {
      const result = await this.ctx.bridge.uploadFiles(id, files);
      say(refs.note, uploadSummary(result), result.failed.length === 0 ? 'ok' : 'bad');
    } catch (err) {
      say(refs.note, reason(err), 'bad');
    } finally {
      this.uploading.delete(id);
      // Look the row up again: a refresh may have rebuilt it meanwhile.
      const current = this.rows.get(id);
      if (current !== undefined) current.progress.hidden = true;
    }
  }

  uploadProgress(progress: UploadProgress): void {
    const refs = this.rows.get(progress.mountId);
    if (refs === undefined || !this.uploading.has(progress.mountId)) return;
    refs.progress.hidden = false;
    refs.bar.max = Math.max(progress.bytesTotal, 1);
    refs.bar.value = progress.bytesTotal === 0 ? (progress.done ? 1 : 0) : progress.bytesDone;
    const percent = progress.bytesTotal === 0 ? 100 : Math.floor((progress.bytesDone / progress.bytesTotal) * 100);
    refs.progressText.textContent = progress.fileCount > 1
      ? `Uploading ${progress.file} (${progress.fileIndex + 1} of ${progress.fileCount}) · ${percent}%`
      : `Uploading ${progress.file} · ${percent}%`;
  }

  // ------------------------------------------------------------------ editor

  private fillChoices(selectedProfile: string, selectedZone: string | undefined): void {
    const { profiles, zones } = this.ctx.snapshot();
    const profileOptions = profiles.map((p) => el('option', { text: p.name, attrs: { value: p.name } }));
    if (profiles.length === 0) {
      profileOptions.push(el('option', { text: 'No profiles yet: add one under Profiles', attrs: { value: '' } }));
    }
    this.profile.replaceChildren(...profileOptions);
    this.profile.value = profiles.some((p) => p.name === selectedProfile) ? selectedProfile : profiles[0]?.name ?? '';
    this.zone.replaceChildren(...zones.map((z) => el('option', { text: `${z.label} · ${z.zone}`, attrs: { value: z.zone } })));
    this.zone.value = selectedZone ?? zones[0]?.zone ?? '';
  }

  openEditor(id: string | undefined): void {
    const existing = id === undefined ? undefined : this.ctx.snapshot().mounts.find((m) => m.config.id === id)?.config;
    this.editing = { id: existing?.id, touched: new Set(), submitted: false, seq: 0 };
    byId('mount-form-title').textContent = existing === undefined ? 'New Mount' : existing.name;
    byId('m-save').textContent = existing === undefined ? 'Add Mount' : 'Save';
    byId('m-remove').hidden = existing === undefined;
    byId('m-remove-confirm').hidden = true;
    this.fillChoices(existing?.profile ?? '', existing?.zone);
    this.name.value = existing?.name ?? '';
    const custom = existing !== undefined && existing.zone === undefined;
    this.locationZone.checked = !custom;
    this.locationCustom.checked = custom;
    this.endpoint.value = existing?.endpointUrl ?? '';
    this.pathStyle.checked = existing?.forcePathStyle ?? false;
    this.bucket.value = existing?.bucket ?? '';
    this.prefix.value = existing?.prefix ?? '';
    this.folder.value = existing === undefined ? '' : homeRelative(existing.mountPoint, this.ctx.snapshot().homeDir);
    this.readOnly.checked = existing?.readOnly ?? false;
    this.allowEdit.checked = existing?.allowEdit ?? NEW_MOUNT_ALLOW_EDIT;
    this.ownFlags.allowDelete = existing?.allowDelete ?? false;
    this.ownFlags.allowOverwrite = existing?.allowOverwrite ?? false;
    this.showImplied();
    this.atLogin.checked = existing?.mountAtLogin ?? false;
    this.cache.checked = existing?.cacheEnabled ?? NEW_MOUNT_CACHE;
    const size = sizeForForm(existing?.cacheSizeMiB ?? this.ctx.snapshot().defaultCacheSizeMiB);
    this.cacheSize.value = size.value;
    this.cacheUnit.value = size.unit;
    this.showCache();
    // A new mount has no cache yet: nothing to measure or clear.
    byId('m-cache-usage-field').hidden = existing === undefined;
    this.cacheUsedBytes = undefined;
    this.cacheUsage.textContent = '';
    say(this.cacheResult, '');
    if (existing !== undefined) void this.loadCacheUsage(existing.id);
    this.showLocation();
    this.picker.hidden = true;
    say(this.testResult, '');
    delete this.testResult.dataset['outcome'];
    say(this.message, '');
    this.showProblems({});
    this.listView.hidden = true;
    this.form.hidden = false;
    byId('section-mounts').parentElement?.scrollTo({ top: 0 });
    this.name.focus();
  }

  private closeEditor(): void {
    const id = this.editing?.id;
    this.editing = undefined;
    this.form.hidden = true;
    this.listView.hidden = false;
    const back = id !== undefined ? this.rows.get(id)?.row.querySelector<HTMLButtonElement>('button') : undefined;
    (back ?? byId('add-mount')).focus();
  }

  private showImplied(): void {
    const implied = this.allowEdit.checked;
    for (const [input, own] of [[this.allowDelete, this.ownFlags.allowDelete], [this.allowOverwrite, this.ownFlags.allowOverwrite]] as const) {
      input.disabled = implied;
      input.checked = implied || own;
    }
  }

  /** The size applies only with the cache on; with it off it is kept, greyed, for when it is turned on again. */
  private showCache(): void {
    this.cacheSize.disabled = !this.cache.checked;
    this.cacheUnit.disabled = !this.cache.checked;
    this.showCacheUsage();
  }

  private showCacheUsage(): void {
    if (this.cacheUsedBytes === undefined) return;
    this.cacheUsage.textContent = cacheUsageText(this.cacheUsedBytes, this.cache.checked, sizeFromForm(this.cacheSize.valueAsNumber, this.cacheUnit.value));
  }

  private async loadCacheUsage(id: string): Promise<void> {
    try {
      const usage = await this.ctx.bridge.cacheUsage(id);
      if (this.editing?.id !== id) return;
      this.cacheUsedBytes = usage.usedBytes;
      this.cacheUsage.title = usage.directory;
      this.showCacheUsage();
    } catch (err) {
      if (this.editing?.id !== id) return;
      this.cacheUsedBytes = undefined;
      this.cacheUsage.textContent = reason(err);
    }
  }

  private async clearCache(): Promise<void> {
    const id = this.editing?.id;
    if (id === undefined) return;
    say(this.cacheResult, 'Clearing…');
    try {
      const { freedBytes } = await this.ctx.bridge.clearCache(id);
      if (this.editing?.id !== id) return;
      say(this.cacheResult, freedBytes === 0 ? 'The cache was already empty.' : `Cleared ${formatSize(freedBytes)}.`, 'ok');
    } catch (err) {
      if (this.editing?.id !== id) return;
      say(this.cacheResult, reason(err), 'bad');
    }
    await this.loadCacheUsage(id);
  }

  private showLocation(): void {
    const custom = this.locationCustom.checked;
    byId('m-zone-field').hidden = custom;
    byId('m-endpoint-field').hidden = !custom;
    byId('m-path-style-field').hidden = !custom;
  }

  private draft(): MountDraft {
    const custom = this.locationCustom.checked;
    return {
      id: this.editing?.id,
      name: this.name.value,
      bucket: this.bucket.value,
      zone: custom ? undefined : this.zone.value,
      endpointUrl: custom ? this.endpoint.value : undefined,
      forcePathStyle: custom && this.pathStyle.checked,
      profile: this.profile.value,
      mountPoint: this.folder.value,
      prefix: this.prefix.value,
      readOnly: this.readOnly.checked,
      allowDelete: this.ownFlags.allowDelete,
      allowOverwrite: this.ownFlags.allowOverwrite,
      allowEdit: this.allowEdit.checked,
      cacheEnabled: this.cache.checked,
      cacheSizeMiB: sizeFromForm(this.cacheSize.valueAsNumber, this.cacheUnit.value),
      mountAtLogin: this.atLogin.checked,
    };
  }

  private target(withBucket: boolean): ConnectionTarget {
    const draft = this.draft();
    const bucket = draft.bucket.trim();
    return {
      profile: draft.profile,
      zone: draft.zone,
      endpointUrl: draft.endpointUrl,
      forcePathStyle: draft.forcePathStyle,
      bucket: withBucket && bucket !== '' ? bucket : undefined,
    };
  }

  private edited(event: Event): void {
    if (this.editing === undefined) return;
    const target = event.target;
    if (!(target instanceof HTMLInputElement || target instanceof HTMLSelectElement)) return;
    if (target.name === 'location') {
      this.showLocation();
      // Focus stays in the radio group: arrow keys must be able to go back.
      this.editing.touched.add('zone');
    } else if (target === this.cache || target === this.cacheUnit) {
      // Turning the cache on puts its size in force: a bad one shows at once.
      this.editing.touched.add('cacheSizeMiB');
    } else {
      this.editing.touched.add(target.name as MountField);
    }
    if (target === this.allowDelete || target === this.allowOverwrite) this.ownFlags[target.name as 'allowDelete' | 'allowOverwrite'] = target.checked;
    if (target === this.allowEdit) this.showImplied();
    if (target === this.cache || target === this.cacheSize || target === this.cacheUnit) this.showCache();
    if (target === this.readOnly) for (const field of EXCLUDED_BY_READ_ONLY) this.editing.touched.add(field);
    // The answer to the last test no longer describes what the form says.
    if (['profile', 'location', 'zone', 'endpointUrl', 'forcePathStyle', 'bucket'].includes(target.name)) {
      say(this.testResult, '');
      delete this.testResult.dataset['outcome'];
    }
    void this.validate();
  }

  private async validate(): Promise<void> {
    const editing = this.editing;
    if (editing === undefined) return;
    const seq = ++editing.seq;
    let problems: MountProblems;
    try {
      problems = await this.ctx.bridge.validateMount(this.draft());
    } catch (err) {
      say(this.message, reason(err), 'bad');
      return;
    }
    if (this.editing !== editing || seq !== editing.seq) return;
    this.showProblems(problems);
  }

  private showProblems(problems: MountProblems): void {
    const editing = this.editing;
    for (const { field, input, problem } of FIELDS) {
      const shown = editing !== undefined && (editing.submitted || editing.touched.has(field)) ? problems[field] : undefined;
      byId(problem).textContent = shown ?? '';
      const control = byId(input);
      if (shown !== undefined) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    }
  }

  private async save(): Promise<void> {
    const editing = this.editing;
    if (editing === undefined) return;
    editing.submitted = true;
    editing.seq++; // a validation still in flight must not overwrite the save's answer
    try {
      const result = await this.ctx.bridge.saveMount(this.draft());
      if (!result.saved) {
        this.showProblems(result.problems);
        say(this.message, 'Some fields need attention.', 'bad');
        const first = FIELDS.find((f) => result.problems[f.field] !== undefined);
        if (first !== undefined) byId(first.input).focus();
        return;
      }
      say(this.message, '');
      await this.ctx.refresh();
      this.closeEditor();
      const refs = this.rows.get(result.mount.id);
      if (refs !== undefined) say(refs.note, editing.id === undefined ? 'Added.' : 'Saved.', 'ok');
    } catch (err) {
      say(this.message, reason(err), 'bad');
    }
  }

  private confirmRemove(show: boolean): void {
    byId('m-remove').hidden = show;
    byId('m-remove-confirm').hidden = !show;
    (show ? byId('m-remove-cancel') : byId('m-remove')).focus();
  }

  private async remove(): Promise<void> {
    const id = this.editing?.id;
    if (id === undefined) return;
    try {
      await this.ctx.bridge.removeMount(id);
      await this.ctx.refresh();
      this.closeEditor();
    } catch (err) {
      this.confirmRemove(false);
      say(this.message, reason(err), 'bad');
    }
  }

  private async chooseFolder(): Promise<void> {
    if (this.editing === undefined) return;
    try {
      const chosen = await this.ctx.bridge.chooseFolder(this.folder.value.trim() === '' ? undefined : this.folder.value.trim());
      if (chosen === undefined) return;
      this.folder.value = homeRelative(chosen, this.ctx.snapshot().homeDir);
      this.editing.touched.add('mountPoint');
      await this.validate();
    } catch (err) {
      say(this.message, reason(err), 'bad');
    }
  }

  private async testConnection(): Promise<void> {
    this.testResult.dataset['outcome'] = 'pending';
    this.testResult.textContent = 'Connecting…';
    try {
      const result = await this.ctx.bridge.testConnection(this.target(true));
      this.testResult.dataset['outcome'] = result.outcome;
      this.testResult.textContent = result.message;
    } catch (err) {
      this.testResult.dataset['outcome'] = 'failed';
      this.testResult.textContent = reason(err);
    }
  }

  private async pickBucket(): Promise<void> {
    this.picker.hidden = false;
    this.pickerTitle.textContent = 'Listing buckets…';
    delete this.pickerTitle.dataset['tone'];
    this.pickerList.replaceChildren();
    try {
      const result = await this.ctx.bridge.listBuckets(this.target(false));
      if (!result.ok) {
        say(this.pickerTitle, result.failure.message, 'bad');
        return;
      }
      if (result.buckets.length === 0) {
        this.pickerTitle.textContent = 'This key sees no buckets. Type the bucket name instead.';
        return;
      }
      this.pickerTitle.textContent = `Choose a bucket (${plural(result.buckets.length, 'bucket')})`;
      this.pickerList.replaceChildren(...result.buckets.map((name) => {
        const choice = el('button', { className: 'button small', text: name, attrs: { type: 'button' } });
        choice.addEventListener('click', () => {
          this.bucket.value = name;
          this.picker.hidden = true;
          this.editing?.touched.add('bucket');
          this.bucket.focus();
          void this.validate();
        });
        return choice;
      }));
      this.pickerList.querySelector('button')?.focus();
    } catch (err) {
      say(this.pickerTitle, reason(err), 'bad');
    }
  }
}

export function uploadSummary(result: UploadResult): string {
  const parts: string[] = [];
  if (result.uploaded.length > 0) parts.push(`Uploaded ${plural(result.uploaded.length, 'file')}.`);
  for (const failure of result.failed) parts.push(`${failure.file}: ${failure.reason}.`);
  return parts.join(' ') || 'Nothing to upload.';
}
