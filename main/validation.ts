/**
 * What makes a mount or a profile valid, in one place for the settings
 * store, the app core and the settings window. Each problem names its field,
 * so a form can show it next to the input. Bucket names follow the CLI's
 * rules (app/options.ts) and zones come from the one zone list (app/s3/zones.ts).
 *
 * Note for the renderer: app/options.ts reads package.json through node:fs
 * at load, so a sandboxed renderer reaches these checks through main.
 */
import path from 'node:path';
import { DEFAULT_CACHE_BLOCK_KIB, MIN_CACHE_BLOCKS, bucketNameProblem } from '../app/options.js';
import { EXOSCALE_ZONES, isExoscaleZone } from '../app/s3/zones.js';
import { MAX_CACHE_SIZE_MIB, type MountConfig, type ProfileConfig } from './model.js';

export interface FieldProblem<F extends string> {
  field: F;
  message: string;
}

export type MountProblem = FieldProblem<keyof MountConfig>;
export type ProfileProblem = FieldProblem<keyof ProfileConfig | 'secret'>;

/** Profile names are keychain accounts and `--profile` values: no whitespace, no path separators. */
const PROFILE_NAME = /^[A-Za-z0-9._@+-]{1,64}$/;

export function endpointUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `'${url}' is not a URL (expected e.g. https://s3.example.com)`;
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return `'${url}' must start with https:// or http://`;
  if (parsed.search !== '' || parsed.hash !== '') return `'${url}' must not have a query or fragment`;
  if (parsed.username !== '' || parsed.password !== '') return `'${url}' must not contain a user name or password`;
  return undefined;
}

/** Is `inner` the same folder as `outer`, or inside it? */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The engine's least (app/options.ts) for the tray's caches, which have its default block size. */
const MIN_CACHE_SIZE_MIB = MIN_CACHE_BLOCKS * DEFAULT_CACHE_BLOCK_KIB / 1024;

/**
 * What is wrong with a cache size in MiB, in the settings window's words.
 * Not a number at all is what the form sends for an empty field.
 */
export function cacheSizeProblem(mib: number): string | undefined {
  if (!Number.isFinite(mib)) return 'enter the cache size, e.g. 2 GiB';
  if (!Number.isInteger(mib)) return `the cache size must be a whole number of MiB (${mib} is not)`;
  if (mib < MIN_CACHE_SIZE_MIB) return `the cache needs at least ${MIN_CACHE_SIZE_MIB} MiB`;
  if (mib > MAX_CACHE_SIZE_MIB) return `the cache can be at most ${MAX_CACHE_SIZE_MIB / 1024} GiB (1 TiB)`;
  return undefined;
}

/**
 * Problems with one mount, given the other configured mounts (for unique
 * names and folders) and the profiles (the mount's profile must exist).
 * Whether the folder exists and is empty is checked when mounting, since it
 * can change at any time.
 */
export function mountConfigProblems(config: MountConfig, others: readonly MountConfig[], profiles: readonly ProfileConfig[]): MountProblem[] {
  const problems: MountProblem[] = [];
  const add = (field: keyof MountConfig, message: string): void => {
    problems.push({ field, message });
  };
  const rest = others.filter((m) => m.id !== config.id);

  if (config.id.trim() === '') add('id', 'a mount needs an id');
  if (config.name.trim() === '') add('name', 'give the mount a name');
  else if (rest.some((m) => m.name.trim().toLowerCase() === config.name.trim().toLowerCase())) add('name', `another mount is already named '${config.name}'`);

  const bucket = bucketNameProblem(config.bucket);
  if (bucket !== undefined) add('bucket', bucket);

  if (config.zone !== undefined && config.endpointUrl !== undefined) {
    add('endpointUrl', 'choose either a zone or a custom endpoint, not both');
  } else if (config.zone !== undefined) {
    if (!isExoscaleZone(config.zone)) add('zone', `unknown zone '${config.zone}'; zones: ${EXOSCALE_ZONES.map((z) => z.zone).join(', ')}`);
  } else if (config.endpointUrl !== undefined) {
    const endpoint = endpointUrlProblem(config.endpointUrl);
    if (endpoint !== undefined) add('endpointUrl', endpoint);
  } else {
    add('zone', 'choose a zone or give a custom endpoint');
  }

  if (config.profile === '') add('profile', 'choose a profile (its secret is in the keychain)');
  else if (!profiles.some((p) => p.name === config.profile)) add('profile', `there is no profile named '${config.profile}'`);

  if (!path.isAbsolute(config.mountPoint)) {
    add('mountPoint', config.mountPoint === '' ? 'choose a folder to mount into' : `'${config.mountPoint}' must be an absolute path`);
  } else {
    const mine = path.resolve(config.mountPoint);
    const clash = rest.find((m) => path.isAbsolute(m.mountPoint) && (within(mine, path.resolve(m.mountPoint)) || within(path.resolve(m.mountPoint), mine)));
    if (clash) add('mountPoint', `the folder overlaps the folder of mount '${clash.name}' (${clash.mountPoint})`);
    if (mine === path.parse(mine).root) add('mountPoint', 'the root folder cannot be a mount point');
  }

  if (config.prefix !== '' && !config.prefix.endsWith('/')) add('prefix', `'${config.prefix}' must end in '/'`);
  if (config.prefix.startsWith('/')) add('prefix', `'${config.prefix}' must not start with '/'`);
  if (config.readOnly && (config.allowDelete || config.allowOverwrite)) {
    add(config.allowDelete ? 'allowDelete' : 'allowOverwrite', 'a read-only mount cannot allow deletes or overwrites');
  }
  // The CLI refuses --allow-edit with --read-only (app/options.ts); said here on the field, in the form's words.
  if (config.readOnly && config.allowEdit) add('allowEdit', 'a read-only mount cannot be in editing mode; turn one of them off');
  // A size is only checked while it is used: with the cache off the field is
  // disabled, and a reason there could not be acted on.
  if (config.cacheEnabled) {
    const size = cacheSizeProblem(config.cacheSizeMiB);
    if (size !== undefined) add('cacheSizeMiB', size);
  }
  return problems;
}

/**
 * Problems with one profile. `others` are the profiles besides the one being
 * edited (for a new profile, all of them). `secret` is checked only when
 * given: a new profile needs one, an edit may keep the stored one.
 */
export function profileConfigProblems(profile: ProfileConfig, others: readonly ProfileConfig[], secret?: string): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  if (!PROFILE_NAME.test(profile.name)) {
    problems.push({ field: 'name', message: profile.name === '' ? 'give the profile a name' : `'${profile.name}' may use letters, digits and . _ @ + - only (at most 64)` });
  }
  if (others.some((p) => p.name === profile.name)) {
    // Same name means same keychain entry: the settings window edits the existing profile instead.
    problems.push({ field: 'name', message: `a profile named '${profile.name}' exists already` });
  }
  if (profile.accessKeyId.trim() === '') problems.push({ field: 'accessKeyId', message: 'enter the API key (access key id)' });
  else if (/\s/.test(profile.accessKeyId)) problems.push({ field: 'accessKeyId', message: 'the API key must not contain spaces' });
  if (secret !== undefined) {
    if (secret === '') problems.push({ field: 'secret', message: 'enter the API secret' });
    else if (secret.trim() !== secret) problems.push({ field: 'secret', message: 'the API secret must not start or end with spaces' });
  }
  return problems;
}
