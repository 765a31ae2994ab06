/**
 * The Profiles pane: profile rows (whether the keychain holds each secret,
 * which mounts use it), saving and removing a profile with its keychain
 * entry, and importing key pairs from the AWS shared files.
 *
 * A secret goes from the window (or ~/.aws) to the keychain and stays there:
 * nothing here returns, logs or stores one anywhere else.
 */
import { IpcChannel, type ImportResult, type IpcHandlers, type ProfileProblems, type ProfileRow } from '../ipc-contract.js';
import { SettingsActionError } from '../ipc-validate.js';
import type { ProfileConfig, SecretStore, Settings } from '../model.js';
import { profileConfigProblems } from '../validation.js';
import { AwsFileUnreadableError, readAwsProfiles, type AwsProfiles } from './aws-shared-files.js';
import type { SettingsContext } from './context.js';
import { displayPath } from './home-paths.js';
import { sentence } from './messages.js';

export type ProfileHandlers = Pick<IpcHandlers, typeof IpcChannel.SaveProfile | typeof IpcChannel.RemoveProfile | typeof IpcChannel.ImportProfiles>;

async function secretStored(secrets: SecretStore, profile: string): Promise<boolean> {
  try {
    return (await secrets.get(profile)) !== undefined;
  } catch {
    // A locked or missing keychain: the window says "not in keychain" and offers to store it.
    return false;
  }
}

export async function profileRow(secrets: SecretStore, profile: ProfileConfig, settings: Settings): Promise<ProfileRow> {
  return {
    name: profile.name,
    accessKeyId: profile.accessKeyId,
    secretStored: await secretStored(secrets, profile.name),
    usedBy: settings.mounts.filter((m) => m.profile === profile.name).map((m) => m.name),
  };
}

/** Reads the AWS shared files, or refuses in the words the window shows. */
async function awsProfiles(ctx: SettingsContext): Promise<AwsProfiles> {
  let read: AwsProfiles;
  try {
    read = await readAwsProfiles(ctx.awsFiles);
  } catch (err) {
    if (err instanceof AwsFileUnreadableError) {
      throw new SettingsActionError('Refused', `${displayPath(err.file, ctx.home)} cannot be read (${err.code ?? String(err.cause)}).`);
    }
    throw err;
  }
  if (read.found.length === 0) {
    throw new SettingsActionError('NotFound', `There is no credentials file at ${displayPath(ctx.awsFiles.credentials, ctx.home)}.`);
  }
  return read;
}

export function profileHandlers(ctx: SettingsContext): ProfileHandlers {
  return {
    async [IpcChannel.SaveProfile](draft) {
      const settings = ctx.settings.get();
      const name = draft.name.trim();
      const accessKeyId = draft.accessKeyId.trim();
      const existing = settings.profiles.find((p) => p.name === name);
      if (!draft.isNew && existing === undefined) {
        throw new SettingsActionError('NotFound', `There is no profile named '${name}' any more.`);
      }
      const others = draft.isNew ? settings.profiles : settings.profiles.filter((p) => p.name !== name);
      // A new profile needs a secret; an edit without one keeps the stored secret.
      const secret = draft.isNew ? draft.secret ?? '' : draft.secret;
      const problems: ProfileProblems = {};
      for (const problem of profileConfigProblems({ name, accessKeyId }, others, secret)) {
        problems[problem.field] ??= sentence(problem.message);
      }
      if (Object.keys(problems).length > 0) return { saved: false, problems };
      // Keychain first: a profile is never saved pointing at a secret that was not stored.
      if (secret !== undefined) await ctx.secrets.set(name, secret);
      try {
        ctx.settings.update((s) => {
          const at = s.profiles.findIndex((p) => p.name === name);
          if (at >= 0) s.profiles[at] = { name, accessKeyId };
          else s.profiles.push({ name, accessKeyId });
        });
      } catch (err) {
        if (draft.isNew) await ctx.secrets.delete(name).catch(() => false);
        throw err;
      }
      const after = ctx.settings.get();
      return { saved: true, profile: await profileRow(ctx.secrets, { name, accessKeyId }, after) };
    },

    async [IpcChannel.RemoveProfile](name) {
      const settings = ctx.settings.get();
      if (!settings.profiles.some((p) => p.name === name)) {
        throw new SettingsActionError('NotFound', `There is no profile named '${name}' any more.`);
      }
      const users = settings.mounts.filter((m) => m.profile === name).map((m) => `'${m.name}'`);
      if (users.length > 0) {
        throw new SettingsActionError('Refused', `Profile '${name}' is used by ${users.length === 1 ? 'mount' : 'mounts'} ${users.join(', ')}. Change or remove ${users.length === 1 ? 'that mount' : 'those mounts'} first.`);
      }
      // Keychain first: if it fails, the profile stays listed and removal can be retried.
      await ctx.secrets.delete(name);
      ctx.settings.update((s) => {
        s.profiles = s.profiles.filter((p) => p.name !== name);
      });
    },

    async [IpcChannel.ImportProfiles](): Promise<ImportResult> {
      const { profiles, found } = await awsProfiles(ctx);
      const file = found.map((which) => displayPath(ctx.awsFiles[which], ctx.home)).join(' and ');
      const result: ImportResult = { file, imported: [], skipped: [] };
      for (const { name, accessKeyId = '', secretAccessKey: secret = '', hasSessionToken } of profiles) {
        const settings = ctx.settings.get();
        if (settings.profiles.some((p) => p.name === name)) {
          result.skipped.push({ name, reason: 'a profile with this name exists' });
          continue;
        }
        if (hasSessionToken) {
          result.skipped.push({ name, reason: 'temporary credentials (aws_session_token) expire; not imported' });
          continue;
        }
        if (accessKeyId === '' || secret === '') {
          result.skipped.push({ name, reason: 'no aws_access_key_id and aws_secret_access_key' });
          continue;
        }
        const problem = profileConfigProblems({ name, accessKeyId }, settings.profiles, secret)[0];
        if (problem !== undefined) {
          result.skipped.push({ name, reason: problem.message });
          continue;
        }
        await ctx.secrets.set(name, secret);
        ctx.settings.update((s) => {
          s.profiles.push({ name, accessKeyId });
        });
        result.imported.push(name);
      }
      return result;
    },
  };
}
