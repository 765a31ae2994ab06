/**
 * Profiles in the AWS shared files (~/.aws/credentials and ~/.aws/config),
 * read with the SDK's own loader, `loadSharedConfigFiles` (the one
 * @aws-sdk/credential-provider-ini reads them with), so "Import" finds what
 * the SDK and `aws --profile x` would: the same file locations
 * (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), the config's
 * `[profile x]` sections merged with the credentials file's `[x]` (the
 * credentials file winning, as in the SDK's `parseKnownFiles`), and values
 * as its parser reads them: a comment inside a line needs a space before
 * `#` or `;`, and quotes around a value are part of the value.
 *
 * The loader comes from @smithy/core/config, the entry point the SDK's
 * credential providers import it from (its types mark it @internal), so it
 * changes with them when the SDK is updated.
 *
 * What a profile holds here is what the tray keeps: its name, the access
 * key id and the secret, which goes to the keychain and nowhere else.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadSharedConfigFiles } from '@smithy/core/config';
import { IniSectionType, type IniSection, type ParsedIniData } from '@smithy/types';
import { errnoOf } from './messages.js';
import { expandHome } from './home-paths.js';

/** Absolute paths of the two files. */
export interface AwsSharedFiles {
  credentials: string;
  config: string;
}

/**
 * Where the SDK looks (its getCredentialsFilepath and getConfigFilepath):
 * the variable when set and not empty, else under `home`. A given path wins
 * over both, as the loader's `filepath` and `configFilepath` options do.
 */
export function awsSharedFiles(
  given: { credentialsFile?: string | undefined; configFile?: string | undefined } = {},
  env: NodeJS.ProcessEnv = process.env,
  home: string = os.homedir(),
): AwsSharedFiles {
  const pick = (file: string | undefined, variable: string, fallback: string): string => {
    const chosen = file ?? (env[variable] || undefined) ?? path.join(home, '.aws', fallback);
    // The loader expands `~/` too, but with its own idea of home ($HOME); ours is injected.
    return expandHome(chosen, home);
  };
  return {
    credentials: pick(given.credentialsFile, 'AWS_SHARED_CREDENTIALS_FILE', 'credentials'),
    config: pick(given.configFile, 'AWS_CONFIG_FILE', 'config'),
  };
}

export interface AwsProfile {
  name: string;
  /** undefined when the profile has no static keys (SSO, a role to assume, only a region). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** Temporary keys: they expire, so the tray does not keep them. */
  hasSessionToken: boolean;
}

export interface AwsProfiles {
  /** Credentials-file profiles first, in file order, then those only in the config file. */
  profiles: AwsProfile[];
  /** The files that exist (a missing one is no error: many people have only one of them). */
  found: Array<keyof AwsSharedFiles>;
}

/** One of the files exists but cannot be read; `code` is its errno (EACCES, EISDIR). */
export class AwsFileUnreadableError extends Error {
  override readonly name = 'AwsFileUnreadableError';
  readonly file: string;
  readonly code: string | undefined;

  constructor(file: string, cause: unknown) {
    super(`${file} cannot be read (${errnoOf(cause) ?? String(cause)})`, { cause });
    this.file = file;
    this.code = errnoOf(cause);
  }
}

/**
 * The SDK's loader reads a file it cannot open as empty; a user pressing
 * Import should hear why nothing came of it, so each file is opened (and one
 * byte read, which is what fails for a folder) before the loader runs.
 */
async function exists(file: string): Promise<boolean> {
  let handle;
  try {
    handle = await fsp.open(file, 'r');
    await handle.read(Buffer.alloc(1), 0, 1, 0);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw new AwsFileUnreadableError(file, err);
  } finally {
    await handle?.close();
  }
}

/** `[sso-session x]` and `[services x]` sections are not profiles; the loader keeps them under a prefixed name. */
function isProfileName(name: string): boolean {
  return !Object.values(IniSectionType).some((type) => type !== IniSectionType.PROFILE && name.startsWith(`${type}.`));
}

function toProfile(name: string, values: IniSection): AwsProfile {
  return {
    name,
    accessKeyId: values['aws_access_key_id'],
    secretAccessKey: values['aws_secret_access_key'],
    hasSessionToken: values['aws_session_token'] !== undefined,
  };
}

export async function readAwsProfiles(files: AwsSharedFiles): Promise<AwsProfiles> {
  const found: Array<keyof AwsSharedFiles> = [];
  for (const which of ['credentials', 'config'] as const) {
    if (await exists(files[which])) found.push(which);
  }
  // ignoreCache: the loader keeps each file's first read for the life of the
  // process, and a user who edits ~/.aws and imports again expects the edit.
  const { credentialsFile, configFile } = await loadSharedConfigFiles({
    filepath: files.credentials,
    configFilepath: files.config,
    ignoreCache: true,
  });
  const merged: ParsedIniData = {};
  for (const [name, values] of Object.entries(credentialsFile)) merged[name] = { ...configFile[name], ...values };
  for (const [name, values] of Object.entries(configFile)) merged[name] ??= values;
  const profiles = Object.entries(merged)
    .filter(([name]) => isProfileName(name))
    .map(([name, values]) => toProfile(name, values));
  return { profiles, found };
}
