/**
 * The Profiles pane: API keys by name. A secret typed here goes to main and
 * into the keychain; the page never gets one back. It only learns whether
 * one is stored ("Stored in keychain", with a Replace button).
 */
import type { ProfileField, ProfileProblems, ProfileRow } from '../main/ipc-contract.js';
import { reason, type PaneContext } from './bridge.js';
import { ICONS, byId, el, icon, plural, say, whileBusy } from './dom.js';

const FIELDS: ReadonlyArray<{ field: ProfileField; input: string; problem: string }> = [
  { field: 'name', input: 'p-name', problem: 'p-name-problem' },
  { field: 'accessKeyId', input: 'p-key', problem: 'p-key-problem' },
  { field: 'secret', input: 'p-secret', problem: 'p-secret-problem' },
];

/** undefined: adding a profile. */
interface Editing {
  name: string;
  replacingSecret: boolean;
}

export class ProfilesPane {
  private readonly ctx: PaneContext;
  private editing: Editing | undefined;
  private readonly form = byId<HTMLFormElement>('profile-form');
  private readonly name = byId<HTMLInputElement>('p-name');
  private readonly key = byId<HTMLInputElement>('p-key');
  private readonly secret = byId<HTMLInputElement>('p-secret');
  private readonly message = byId('profiles-message');

  constructor(ctx: PaneContext) {
    this.ctx = ctx;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void whileBusy(byId('p-save'), () => this.save());
    });
    byId('p-cancel').addEventListener('click', () => this.startAdding());
    byId('p-replace-secret').addEventListener('click', () => this.replaceSecret());
    byId('import-profiles').addEventListener('click', () => void whileBusy(byId('import-profiles'), () => this.importProfiles()));
    this.form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.editing !== undefined) {
        event.preventDefault();
        this.startAdding();
      }
    });
    this.startAdding();
  }

  render(): void {
    const { profiles, credentialsFile } = this.ctx.snapshot();
    const list = byId('profile-list');
    list.replaceChildren(...profiles.map((p) => this.rowFor(p)));
    list.hidden = profiles.length === 0;
    byId('profiles-empty').hidden = profiles.length > 0;
    byId('credentials-file-empty').textContent = credentialsFile;
    const importButton = byId('import-profiles');
    importButton.textContent = `Import from ${credentialsFile}`;
  }

  private rowFor(profile: ProfileRow): HTMLLIElement {
    const keychain = el('span', {
      className: 'keychain',
      attrs: { 'data-stored': String(profile.secretStored) },
    });
    keychain.append(icon(['M6.5 9V6.5a3.5 3.5 0 0 1 7 0V9', 'M5 9h10v8H5z']), profile.secretStored ? 'Stored in keychain' : 'No secret in keychain');
    const used = profile.usedBy.length > 0 ? el('div', { className: 'row-note', text: `Used by ${profile.usedBy.join(', ')}` }) : undefined;
    const edit = el('button', { className: 'button', text: 'Edit…', attrs: { type: 'button', 'aria-label': `Edit profile ${profile.name}` } });
    edit.addEventListener('click', () => this.startEditing(profile));
    const remove = el('button', { className: 'button destructive', text: 'Remove…', attrs: { type: 'button', 'aria-label': `Remove profile ${profile.name}` } });
    const actions = el('div', { className: 'row-actions' }, keychain, edit, remove);
    const row = el(
      'li',
      { className: 'row profile-row', attrs: { 'data-profile': profile.name } },
      el('div', { className: 'row-icon' }, icon(ICONS.key)),
      el('div', { className: 'row-main' },
        el('div', { className: 'row-title', text: profile.name }),
        el('div', { className: 'row-sub mono', text: profile.accessKeyId }),
        used),
      actions,
    );
    remove.addEventListener('click', () => {
      const keep = el('button', { className: 'button', text: 'Keep', attrs: { type: 'button' } });
      const yes = el('button', { className: 'button destructive-filled', text: 'Remove', attrs: { type: 'button' } });
      const question = el('span', { className: 'confirm', text: 'Remove it and its keychain entry?' });
      keep.addEventListener('click', () => {
        confirm.replaceWith(actions);
        remove.focus();
      });
      yes.addEventListener('click', () => void this.remove(profile.name, () => {
        confirm.replaceWith(actions);
        remove.focus();
      }));
      const confirm = el('div', { className: 'row-actions' }, question, keep, yes);
      actions.replaceWith(confirm);
      keep.focus();
    });
    return row;
  }

  private startAdding(): void {
    this.editing = undefined;
    byId('profile-form-title').textContent = 'Add Profile';
    byId('p-save').textContent = 'Add Profile';
    byId('p-cancel').hidden = true;
    this.name.readOnly = false;
    this.name.value = '';
    this.key.value = '';
    this.secret.value = '';
    this.secret.hidden = false;
    this.secret.placeholder = 'Shown once by your provider';
    byId('p-secret-stored').hidden = true;
    this.showProblems({});
  }

  private startEditing(profile: ProfileRow): void {
    this.editing = { name: profile.name, replacingSecret: !profile.secretStored };
    byId('profile-form-title').textContent = `Edit Profile '${profile.name}'`;
    byId('p-save').textContent = 'Save';
    byId('p-cancel').hidden = false;
    this.name.readOnly = true; // the name is the keychain account
    this.name.value = profile.name;
    this.key.value = profile.accessKeyId;
    this.secret.value = '';
    this.secret.placeholder = 'New secret';
    byId('p-secret-stored').hidden = !profile.secretStored;
    this.secret.hidden = profile.secretStored;
    this.showProblems({});
    say(this.message, '');
    this.key.focus();
  }

  private replaceSecret(): void {
    if (this.editing === undefined) return;
    this.editing.replacingSecret = true;
    byId('p-secret-stored').hidden = true;
    this.secret.hidden = false;
    this.secret.focus();
  }

  private showProblems(problems: ProfileProblems): void {
    for (const { field, input, problem } of FIELDS) {
      byId(problem).textContent = problems[field] ?? '';
      if (problems[field] !== undefined) byId(input).setAttribute('aria-invalid', 'true');
      else byId(input).removeAttribute('aria-invalid');
    }
  }

  private async save(): Promise<void> {
    const adding = this.editing === undefined;
    const sendSecret = adding || this.editing?.replacingSecret === true;
    try {
      const result = await this.ctx.bridge.saveProfile({
        name: this.name.value,
        accessKeyId: this.key.value,
        secret: sendSecret ? this.secret.value : undefined,
        isNew: adding,
      });
      if (!result.saved) {
        this.showProblems(result.problems);
        const first = FIELDS.find((f) => result.problems[f.field] !== undefined);
        if (first !== undefined) byId(first.input).focus();
        return;
      }
      // The secret leaves the page as soon as main has it.
      this.secret.value = '';
      await this.ctx.refresh();
      this.startAdding();
      say(this.message, adding ? `Added profile '${result.profile.name}'. Its secret is in the keychain.` : `Saved profile '${result.profile.name}'.`, 'ok');
    } catch (err) {
      say(this.message, reason(err), 'bad');
    }
  }

  private async remove(name: string, restore: () => void): Promise<void> {
    try {
      await this.ctx.bridge.removeProfile(name);
      if (this.editing?.name === name) this.startAdding();
      await this.ctx.refresh();
      say(this.message, `Removed profile '${name}' and its keychain entry.`, 'ok');
    } catch (err) {
      restore();
      say(this.message, reason(err), 'bad');
    }
  }

  private async importProfiles(): Promise<void> {
    try {
      const result = await this.ctx.bridge.importProfiles();
      await this.ctx.refresh();
      const parts: string[] = [];
      parts.push(result.imported.length > 0
        ? `Imported ${plural(result.imported.length, 'profile')} from ${result.file}: ${result.imported.join(', ')}.`
        : `No new profiles in ${result.file}.`);
      for (const skipped of result.skipped) parts.push(`Skipped ${skipped.name}: ${skipped.reason}.`);
      say(this.message, parts.join(' '), result.imported.length > 0 ? 'ok' : undefined);
    } catch (err) {
      say(this.message, reason(err), 'bad');
    }
  }
}
