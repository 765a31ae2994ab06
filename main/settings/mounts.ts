/**
 * The Mounts pane: checking a mount draft field by field (main/validation.ts
 * plus what only the disk can tell: whether the folder exists and is empty),
 * saving and removing mount rows, and the folder dialog.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { IpcChannel, type IpcHandlers, type MountDraft, type MountProblems } from '../ipc-contract.js';
import { SettingsActionError } from '../ipc-validate.js';
import { DEFAULT_CACHE_SIZE_MIB, type MountConfig, type MountStatus, type Settings } from '../model.js';
import { cacheSizeProblem, mountConfigProblems } from '../validation.js';
import type { MountStatusSource, SettingsAccess, SettingsContext } from './context.js';
import { expandHome } from './home-paths.js';
import { errnoOf, plural, sentence } from './messages.js';

export type MountHandlers = Pick<IpcHandlers, typeof IpcChannel.ValidateMount | typeof IpcChannel.SaveMount | typeof IpcChannel.RemoveMount | typeof IpcChannel.ChooseFolder>;

function isBusy(status: MountStatus): boolean {
  return status.state === 'mounted' || status.state === 'mounting' || status.state === 'unmounting';
}

/** The saved mount, or the refusal the window shows when it was removed behind its back. */
export function mountById(settings: SettingsAccess, id: string): MountConfig {
  const mount = settings.get().mounts.find((m) => m.id === id);
  if (mount === undefined) throw new SettingsActionError('NotFound', 'That mount no longer exists; it may have been removed elsewhere.');
  return mount;
}

/** Trims what a user may have typed around a value; the form shows the trimmed value after saving. */
function normaliseDraft(draft: MountDraft, home: string): MountDraft {
  return {
    ...draft,
    name: draft.name.trim(),
    bucket: draft.bucket.trim(),
    endpointUrl: draft.endpointUrl === undefined ? undefined : draft.endpointUrl.trim(),
    mountPoint: expandHome(draft.mountPoint.trim(), home),
    prefix: draft.prefix.trim(),
    // With the cache off its size field is disabled and not checked; what
    // it held (an emptied field arrives as NaN) must still be storable.
    cacheSizeMiB: draft.cacheEnabled || cacheSizeProblem(draft.cacheSizeMiB) === undefined ? draft.cacheSizeMiB : DEFAULT_CACHE_SIZE_MIB,
  };
}

/** Whether the folder can be mounted on: exists, is a folder, is empty (the mount's own live folder excepted). */
async function folderProblem(draft: MountDraft, settings: Settings, statuses: MountStatusSource): Promise<string | undefined> {
  if (!path.isAbsolute(draft.mountPoint)) return undefined; // validation.ts words that one
  if (draft.id !== undefined) {
    const saved = settings.mounts.find((m) => m.id === draft.id);
    if (saved !== undefined && path.resolve(saved.mountPoint) === path.resolve(draft.mountPoint) && isBusy(statuses.status(saved.id))) {
      return undefined; // its own mount is there now; it was empty when mounted
    }
  }
  let stat;
  try {
    stat = await fsp.stat(draft.mountPoint);
  } catch (err) {
    switch (errnoOf(err)) {
      case 'ENOENT': return 'the folder does not exist';
      case 'ENOTDIR': return 'part of this path is a file, not a folder';
      case 'EACCES': return 'the folder cannot be opened: permission denied';
      case 'ENOTCONN': return 'a mount left behind here is broken; it is cleaned up when you mount';
      default: return `the folder cannot be checked: ${errnoOf(err) ?? String(err)}`;
    }
  }
  if (!stat.isDirectory()) return 'this is a file, not a folder';
  let entries: string[];
  try {
    entries = await fsp.readdir(draft.mountPoint);
  } catch (err) {
    return errnoOf(err) === 'EACCES' ? 'the folder cannot be read: permission denied' : `the folder cannot be read: ${errnoOf(err) ?? String(err)}`;
  }
  if (entries.length > 0) return `the folder is not empty (${plural(entries.length, 'item')}); a mount needs an empty folder`;
  return undefined;
}

async function mountProblems(draft: MountDraft, settings: Settings, statuses: MountStatusSource): Promise<MountProblems> {
  const problems: MountProblems = {};
  const config: MountConfig = { ...draft, id: draft.id ?? '(new)' };
  // A custom endpoint left empty: say so there, not on the hidden zone field.
  const emptyEndpoint = draft.zone === undefined && draft.endpointUrl === '';
  if (emptyEndpoint) config.endpointUrl = undefined;
  for (const problem of mountConfigProblems(config, settings.mounts, settings.profiles)) {
    if (emptyEndpoint && problem.field === 'zone') continue;
    problems[problem.field] ??= sentence(problem.message);
  }
  if (emptyEndpoint) problems.endpointUrl = 'Enter the endpoint URL, e.g. https://s3.example.com';
  if (draft.bucket === '') problems.bucket = 'Enter a bucket name, or choose one';
  else if (draft.bucket.startsWith('s3://')) problems.bucket = 'Give the bare bucket name; put a folder inside it under Prefix';
  if (problems.mountPoint === undefined) {
    const folder = await folderProblem(draft, settings, statuses);
    if (folder !== undefined) problems.mountPoint = sentence(folder);
  }
  return problems;
}

export function mountHandlers(ctx: SettingsContext): MountHandlers {
  return {
    async [IpcChannel.ValidateMount](draft) {
      return mountProblems(normaliseDraft(draft, ctx.home), ctx.settings.get(), ctx.statuses);
    },

    async [IpcChannel.SaveMount](rawDraft) {
      const draft = normaliseDraft(rawDraft, ctx.home);
      const settings = ctx.settings.get();
      if (draft.id !== undefined) mountById(ctx.settings, draft.id);
      const problems = await mountProblems(draft, settings, ctx.statuses);
      if (Object.keys(problems).length > 0) return { saved: false, problems };
      const mount: MountConfig = { ...draft, id: draft.id ?? ctx.newId() };
      ctx.settings.update((s) => {
        const at = s.mounts.findIndex((m) => m.id === mount.id);
        if (at >= 0) s.mounts[at] = mount;
        else s.mounts.push(mount);
      });
      return { saved: true, mount };
    },

    async [IpcChannel.RemoveMount](id) {
      const mount = mountById(ctx.settings, id);
      if (isBusy(ctx.statuses.status(id))) {
        throw new SettingsActionError('Refused', `'${mount.name}' is mounted. Unmount it from the tray first.`);
      }
      ctx.settings.update((s) => {
        s.mounts = s.mounts.filter((m) => m.id !== id);
      });
      // Its cache is named by its id, which no mount will have again: left,
      // it would take disk space nothing can reach. A folder another process
      // still uses (a sosmount given it by hand) is left alone.
      try {
        await ctx.caches.clearCache(id);
        await fsp.rm(ctx.caches.cacheDirectory(id), { recursive: true, force: true });
      } catch {
        // The mount is removed either way; the folder is only space.
      }
    },

    async [IpcChannel.ChooseFolder](raw) {
      const current = raw === undefined ? undefined : expandHome(raw.trim(), ctx.home);
      return ctx.dialog.chooseFolder(current !== undefined && path.isAbsolute(current) ? current : undefined);
    },
  };
}
