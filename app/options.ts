/**
 * `sosmount [OPTIONS] BUCKET DIRECTORY`: argv to a validated MountOptions.
 *
 * Flags keep mount-s3's spelling, value syntax and defaults (its
 * mountpoint-s3-fs/src/cli.rs), so a mount-s3 command line works unchanged;
 * `--zone` is ours. Nothing is accepted and ignored: an unknown flag, a
 * mount-s3 flag we do not implement, or a bad value is a UsageError that
 * names the flag. One table (FLAGS) drives both parsing and `--help`.
 *
 * Two ways in, one set of checks: {@link parseMountArgs} reads argv with
 * `node:util` parseArgs, and {@link buildMountOptions} takes the same
 * values already named (the tray's settings). Both end in buildMountOptions,
 * so defaults and error messages cannot drift apart.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { EXOSCALE_ZONES, UnknownZoneError, exoscaleZone, zoneForEndpoint, type ExoscaleZone } from './s3/zones.js';

export type MetadataTtl = { kind: 'minimal' } | { kind: 'indefinite' } | { kind: 'seconds'; seconds: number };

export interface MountOptions {
  bucket: string;
  /** Absolute: resolved against the caller's cwd, since the worker may run elsewhere. */
  mountPoint: string;
  /** `--endpoint-url`, or the endpoint of `--zone`. */
  endpointUrl: string | undefined;
  /**
   * `--region`, else the region of `--zone` or of a recognised Exoscale
   * endpoint; undefined lets the SDK chain decide (us-east-1 at last).
   */
  region: string | undefined;
  /** `--zone` as given (ours). */
  zone: string | undefined;
  /** `--profile`; AWS_PROFILE is left to the credential chain. */
  profile: string | undefined;
  forcePathStyle: boolean;
  /** '' (whole bucket) or ending in '/'. */
  prefix: string;
  readOnly: boolean;
  allowDelete: boolean;
  allowOverwrite: boolean;
  /**
   * `--allow-edit`: editing mode (staged writes, rename, offset writes,
   * truncate, set times); implies allowDelete and allowOverwrite.
   */
  allowEdit: boolean;
  /** Editing mode's local copies of files being written; absolute. undefined: the default under the state directory. */
  stagingDirectory: string | undefined;
  /** Editing mode: quiet time after the last close before a file is uploaded. */
  uploadDelayMs: number;
  /** `--cache`: the local disk cache of object content; absolute. undefined: no cache. */
  cacheDirectory: string | undefined;
  /** `--max-cache-size`; undefined: the cache keeps 5 % of its disk free. */
  maxCacheSizeBytes: number | undefined;
  /** `--cache-block-size`: the unit the cache stores, checks and evicts. */
  cacheBlockSizeBytes: number;
  uid: number;
  gid: number;
  fileMode: number;
  dirMode: number;
  allowOther: boolean;
  allowRoot: boolean;
  autoUnmount: boolean;
  foreground: boolean;
  metadataTtl: MetadataTtl;
  /** undefined: follows metadataTtl. */
  negativeMetadataTtl: MetadataTtl | undefined;
  debug: boolean;
  /** Absolute, resolved like mountPoint. */
  logDirectory: string | undefined;
  noLog: boolean;
  /** Requests in flight per mount. */
  maxThreads: number;
  readPartSizeBytes: number;
  writePartSizeBytes: number;
  /**
   * Explicit `--upload-checksums`, else mount-s3's default: crc32c where the
   * endpoint is AWS, off elsewhere (its "S3 personality" check), because
   * S3-compatible stores such as SOS reject the additional-checksum headers.
   */
  uploadChecksums: 'crc32c' | 'off';
  storageClass: string | undefined;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The flag (`--region`) or positional argument (`BUCKET`) at fault, when there is one. */
  readonly flag: string | undefined;

  constructor(flag: string | undefined, problem: string, options?: { cause?: unknown }) {
    super(flag === undefined ? problem : `${flag}: ${problem}`, options);
    this.flag = flag;
  }
}

export type ParseResult =
  | { kind: 'mount'; options: MountOptions }
  | { kind: 'help'; text: string }
  | { kind: 'version'; text: string };

export interface ParseEnv {
  cwd: string;
  uid: number;
  gid: number;
}

/** What each flag that takes a value yields once checked, under its MountOptions name. */
interface FlagValues {
  prefix: string;
  region: string;
  endpointUrl: string;
  zone: string;
  storageClass: string;
  uploadChecksums: 'crc32c' | 'off';
  profile: string;
  uid: number;
  gid: number;
  dirMode: number;
  fileMode: number;
  maxThreads: number;
  partSize: number;
  readPartSize: number;
  writePartSize: number;
  metadataTtl: MetadataTtl;
  negativeMetadataTtl: MetadataTtl;
  logDirectory: string;
  stagingDirectory: string;
  uploadDelay: number;
  cache: string;
  maxCacheSize: number;
  cacheBlockSize: number;
}

type ValueKey = keyof FlagValues;

type SwitchKey =
  | 'forcePathStyle'
  | 'readOnly'
  | 'allowDelete'
  | 'allowOverwrite'
  | 'allowEdit'
  | 'autoUnmount'
  | 'allowRoot'
  | 'allowOther'
  | 'foreground'
  | 'debug'
  | 'noLog';

/** The flags of a mount, named as in MountOptions: a value flag's text as typed, a switch as a boolean. */
export type MountFlags = { [K in ValueKey]?: string | undefined } & { [K in SwitchKey]?: boolean | undefined };

/**
 * A mount before validation: BUCKET_NAME, DIRECTORY and the flags. Value
 * flags stay text, exactly as on a command line, so that values from
 * settings and from argv meet the same checks and fail with the same
 * message. A relative mountPoint or logDirectory resolves against env.cwd.
 */
export type MountArgs = { bucket: string; mountPoint: string } & MountFlags;

export const VERSION: string = readVersion();

function readVersion(): string {
  // Compiled to dist/app/options.js, so the package root is two levels up.
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string') {
    return pkg.version;
  }
  throw new Error('package.json has no version string');
}

// ---------------------------------------------------------------------------
// Limits and defaults

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** mount-s3's default part size for both GET and PUT. */
export const DEFAULT_PART_SIZE_BYTES = 8 * MiB;
/** S3 rejects a multipart upload whose non-final parts are smaller. */
export const MIN_WRITE_PART_SIZE_BYTES = 5 * MiB;
/** S3's largest part; also our cap for GET parts, which are buffered whole. */
export const MAX_PART_SIZE_BYTES = 5 * GiB;
export const DEFAULT_MAX_THREADS = 16;
/** Beyond this, more sockets to one endpoint stop helping and cost memory (parts in flight x part size). */
export const MAX_MAX_THREADS = 256;
/** (uid_t)-1 means "unchanged" to chown(2), so it cannot name an owner. */
const MAX_ID = 2 ** 32 - 2;
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;
/** mount-s3's cache block: 1 MiB. */
export const DEFAULT_CACHE_BLOCK_KIB = 1024;
const MIN_CACHE_BLOCK_KIB = 16;
/** A block is read and checked whole: larger ones would cost memory per read. */
const MAX_CACHE_BLOCK_KIB = 64 * 1024;
/** A cache smaller than this many blocks would evict what a single read just stored. */
export const MIN_CACHE_BLOCKS = 4;
/** 1 PiB in MiB: beyond any disk, and exact in a double once in bytes. */
const MAX_CACHE_SIZE_MIB = 1024 * 1024 * 1024;
/** mount-s3's metadata TTL when --cache is set. */
const CACHE_METADATA_TTL_SECONDS = 60;
/** mount-s3's cap: "practically forever" without overflowing a deadline. */
const MAX_TTL_SECONDS = 100 * 365 * 24 * 60 * 60;

/**
 * mount-s3's "minimal" keeps kernel caching as short as Linux tolerates:
 * with a TTL of exactly 0 every readdir result expires at once and the kernel
 * re-looks up each entry. It uses 100 ms for files and 1 s for folders; we
 * use one TTL, 1 s, so an `ls -l` served from a listing is not immediately
 * followed by a HeadObject per file.
 */
const MINIMAL_TTL_MS = 1000;

export function metadataTtlMs(ttl: MetadataTtl): number {
  switch (ttl.kind) {
    case 'minimal':
      return MINIMAL_TTL_MS;
    case 'indefinite':
      // Same 100-year cap as mount-s3, so `Date.now() + ttl` stays an exact integer.
      return MAX_TTL_SECONDS * 1000;
    case 'seconds':
      return ttl.seconds * 1000;
  }
}

// ---------------------------------------------------------------------------
// The flag table

type Group =
  | 'Options'
  | 'Bucket options'
  | 'AWS credentials options'
  | 'Mount options'
  | 'Client options'
  | 'Caching options'
  | 'Logging options';

const GROUP_ORDER: readonly Group[] = [
  'Options',
  'Bucket options',
  'AWS credentials options',
  'Mount options',
  'Client options',
  'Caching options',
  'Logging options',
];

interface FlagBase {
  /** Without the leading dashes. */
  readonly long: string;
  readonly short?: string;
  readonly group: Group;
  /** mount-s3's wording where the flag is mount-s3's. */
  readonly help: string;
}

/**
 * A switch (a boolean to parseArgs) names the MountFlags field it sets; a
 * flag that takes a value (a string to parseArgs) also names its value in
 * help and usage errors. Its check is in CHECKS, its default in
 * buildMountOptions.
 */
type FlagSpec = FlagBase &
  (
    | { readonly key: SwitchKey | 'help' | 'version'; readonly value?: undefined }
    | { readonly key: ValueKey; readonly value: string }
  );

const FLAGS: readonly FlagSpec[] = [
  { long: 'foreground', key: 'foreground', short: 'f', group: 'Options', help: 'Run as foreground process' },
  { long: 'help', key: 'help', short: 'h', group: 'Options', help: 'Print help' },
  { long: 'version', key: 'version', short: 'V', group: 'Options', help: 'Print version' },

  {
    long: 'prefix',
    key: 'prefix',
    value: 'PREFIX',
    group: 'Bucket options',
    help: "Prefix inside the bucket to mount, ending in '/' [default: mount the entire bucket]",
  },
  {
    long: 'region',
    key: 'region',
    value: 'REGION',
    group: 'Bucket options',
    help: "Region of the bucket [default: the zone's region, else auto-detect region]",
  },
  {
    long: 'endpoint-url',
    key: 'endpointUrl',
    value: 'ENDPOINT_URL',
    group: 'Bucket options',
    help: 'S3 endpoint URL [default: auto-detect endpoint]',
  },
  {
    long: 'zone',
    key: 'zone',
    value: 'ZONE',
    group: 'Bucket options',
    help: [
      'Exoscale SOS zone: sets the endpoint https://sos-ZONE.exo.io and the region (ours, not in mount-s3)',
      ...EXOSCALE_ZONES.map((z) => `  ${z.zone.padEnd(10)}${z.label}`),
    ].join('\n'),
  },
  { long: 'force-path-style', key: 'forcePathStyle', group: 'Bucket options', help: 'Force path-style addressing' },
  {
    long: 'storage-class',
    key: 'storageClass',
    value: 'STORAGE_CLASS',
    group: 'Bucket options',
    help: 'Set the storage class for new objects',
  },
  {
    long: 'upload-checksums',
    key: 'uploadChecksums',
    value: 'ALGORITHM',
    group: 'Bucket options',
    help: 'Checksum algorithm to use for S3 uploads: crc32c or off [default: crc32c on AWS, off on other endpoints]',
  },

  {
    long: 'profile',
    key: 'profile',
    value: 'PROFILE',
    group: 'AWS credentials options',
    help: 'Use a specific profile from your credential file.',
  },

  { long: 'read-only', key: 'readOnly', group: 'Mount options', help: 'Mount file system in read-only mode' },
  { long: 'allow-delete', key: 'allowDelete', group: 'Mount options', help: 'Allow delete operations on file system' },
  {
    long: 'allow-overwrite',
    key: 'allowOverwrite',
    group: 'Mount options',
    help: 'Allow overwrite operations on file system',
  },
  {
    long: 'allow-edit',
    key: 'allowEdit',
    group: 'Mount options',
    help: 'Editing mode: programs can save, rename, append, write anywhere in\nand truncate files; writes are staged on local disk and uploaded\nafter close (implies --allow-delete and --allow-overwrite)',
  },
  {
    long: 'staging-directory',
    key: 'stagingDirectory',
    value: 'DIRECTORY',
    group: 'Mount options',
    help: 'Where editing mode keeps files being written until they are uploaded\n[default: $XDG_STATE_HOME/sos-mount/staging/<bucket>-<hash>]',
  },
  {
    long: 'upload-delay',
    key: 'uploadDelay',
    value: 'SECONDS',
    group: 'Mount options',
    help: 'Editing mode: quiet time after a file is closed before it is uploaded\n[default: 0.1]',
  },
  { long: 'auto-unmount', key: 'autoUnmount', group: 'Mount options', help: 'Automatically unmount on exit' },
  { long: 'allow-root', key: 'allowRoot', group: 'Mount options', help: 'Allow root user to access file system' },
  {
    long: 'allow-other',
    key: 'allowOther',
    group: 'Mount options',
    help: 'Allow other users, including root, to access file system',
  },
  { long: 'uid', key: 'uid', value: 'UID', group: 'Mount options', help: "Owner UID [default: current user's UID]" },
  { long: 'gid', key: 'gid', value: 'GID', group: 'Mount options', help: "Owner GID [default: current user's GID]" },
  {
    long: 'dir-mode',
    key: 'dirMode',
    value: 'DIR_MODE',
    group: 'Mount options',
    help: 'Directory permissions [default: 0755]',
  },
  {
    long: 'file-mode',
    key: 'fileMode',
    value: 'FILE_MODE',
    group: 'Mount options',
    help: 'File permissions [default: 0644]',
  },

  {
    long: 'max-threads',
    key: 'maxThreads',
    value: 'N',
    group: 'Client options',
    help: `Maximum number of S3 requests in flight, 1 to ${MAX_MAX_THREADS} [default: ${DEFAULT_MAX_THREADS}]`,
  },
  {
    long: 'part-size',
    key: 'partSize',
    value: 'SIZE',
    group: 'Client options',
    help: `Part size for multi-part GET and PUT in bytes [default: ${DEFAULT_PART_SIZE_BYTES}]`,
  },
  {
    long: 'read-part-size',
    key: 'readPartSize',
    value: 'SIZE',
    group: 'Client options',
    help: `Part size for GET in bytes; overrides --part-size [default: ${DEFAULT_PART_SIZE_BYTES}]`,
  },
  {
    long: 'write-part-size',
    key: 'writePartSize',
    value: 'SIZE',
    group: 'Client options',
    help:
      `Part size for multi-part PUT in bytes, at least ${MIN_WRITE_PART_SIZE_BYTES}; overrides --part-size ` +
      `[default: ${DEFAULT_PART_SIZE_BYTES}]; parts double in size every 1000 parts, so 10000 parts hold multi-TiB files`,
  },

  {
    long: 'metadata-ttl',
    key: 'metadataTtl',
    value: 'SECONDS|indefinite|minimal',
    group: 'Caching options',
    help: 'Time-to-live (TTL) for cached metadata in seconds [default: minimal]',
  },
  {
    long: 'negative-metadata-ttl',
    key: 'negativeMetadataTtl',
    value: 'SECONDS|indefinite|minimal',
    group: 'Caching options',
    help: 'Time-to-live (TTL) for cached negative entries in seconds [default: same as metadata TTL]',
  },
  {
    long: 'cache',
    key: 'cache',
    value: 'DIRECTORY',
    group: 'Caching options',
    help: 'Enable caching of object content to the given directory and set metadata TTL to 60 seconds;\nthe cache is kept across mounts and checked block by block',
  },
  {
    long: 'max-cache-size',
    key: 'maxCacheSize',
    value: 'MiB',
    group: 'Caching options',
    help: 'Maximum size of the cache directory in MiB [default: preserve 5% of available space]',
  },
  {
    long: 'cache-block-size',
    key: 'cacheBlockSize',
    value: 'KiB',
    group: 'Caching options',
    help: `Size of a cache block in KiB, ${MIN_CACHE_BLOCK_KIB} to ${MAX_CACHE_BLOCK_KIB} [default: ${DEFAULT_CACHE_BLOCK_KIB} (1 MiB)]`,
  },

  {
    long: 'log-directory',
    key: 'logDirectory',
    short: 'l',
    value: 'DIRECTORY',
    group: 'Logging options',
    help: 'Write log files to a directory [default: ~/.local/state/sos-mount/logs; on macOS ~/Library/Logs/sos-mount]',
  },
  { long: 'debug', key: 'debug', short: 'd', group: 'Logging options', help: 'Enable debug logging' },
  {
    long: 'no-log',
    key: 'noLog',
    group: 'Logging options',
    help: 'Disable all logging. You will still see stdout messages.',
  },
];

const BY_LONG: ReadonlyMap<string, FlagSpec> = new Map(FLAGS.map((f) => [f.long, f]));
const LONG_BY_KEY: ReadonlyMap<FlagSpec['key'], string> = new Map(FLAGS.map((f) => [f.key, f.long]));

/** The flag a value was given for, as usage errors name it. */
function flagOf(key: ValueKey): string {
  return `--${LONG_BY_KEY.get(key) ?? key}`;
}

/** The table as parseArgs knows it: a value flag is a string, a switch a boolean. */
const PARSE_ARGS_OPTIONS: NonNullable<ParseArgsConfig['options']> = Object.fromEntries(
  FLAGS.map((f) => {
    const type = f.value === undefined ? 'boolean' : 'string';
    // parseArgs refuses `short: undefined`; it must be absent.
    return [f.long, f.short === undefined ? { type } : { type, short: f.short }];
  }),
);

/**
 * mount-s3 flags we do not implement. Refusing them by name (rather than as
 * unknown) tells a user coming from mount-s3 why, instead of suggesting a typo.
 */
const UNSUPPORTED: ReadonlyMap<string, string> = new Map([
  ['cache-xz', 'S3 Express One Zone caching is AWS-only'],
  ['sse', 'server-side encryption is not supported (Exoscale SOS does not support it with Mountpoint)'],
  ['sse-kms-key-id', 'server-side encryption is not supported (Exoscale SOS does not support it with Mountpoint)'],
  ['transfer-acceleration', 'S3 Transfer Acceleration is AWS-only'],
  ['dual-stack', 'dual-stack endpoints are AWS-only; pass --endpoint-url instead'],
  ['requester-pays', 'requester-pays buckets are not supported'],
  ['expected-bucket-owner', 'bucket owner checks are AWS-only'],
  ['bucket-type', 'S3 Express One Zone directory buckets are AWS-only'],
  ['no-sign-request', 'unsigned requests are not supported yet'],
  ['incremental-upload', 'appending to existing objects is not supported'],
  ['maximum-throughput-gbps', 'throughput is bounded by --max-threads and --part-size instead'],
  ['max-memory-target', 'memory is bounded by --max-threads and --part-size instead'],
  ['bind', 'binding to network interfaces is not supported'],
  ['user-agent-prefix', 'a custom User-Agent prefix is not supported'],
  ['log-metrics', 'metrics logging is not supported'],
  ['debug-crt', 'there is no AWS Common Runtime in sosmount; use --debug'],
]);

// ---------------------------------------------------------------------------
// Help and version

export function helpText(): string {
  const label = (f: FlagSpec): string =>
    `${f.short !== undefined ? `-${f.short}, ` : '    '}--${f.long}${f.value !== undefined ? ` <${f.value}>` : ''}`;
  const width = Math.min(40, Math.max(...FLAGS.map((f) => label(f).length)));
  const indent = ' '.repeat(width + 4);
  const line = (left: string, help: string): string => {
    const body = help.split('\n').join(`\n${indent}`);
    return left.length > width ? `  ${left}\n${indent}${body}` : `  ${left.padEnd(width)}  ${body}`;
  };

  const out: string[] = [
    `SOS Mount ${VERSION}: an S3 bucket (Exoscale SOS or any S3-compatible store) as a folder, through FUSE.`,
    'Flags follow AWS Mountpoint (mount-s3).',
    '',
    'Usage: sosmount [OPTIONS] <BUCKET_NAME> <DIRECTORY>',
    '',
    'Arguments:',
    line('<BUCKET_NAME>', 'Name of bucket to mount'),
    line('<DIRECTORY>', 'Directory to mount the bucket at'),
  ];
  for (const group of GROUP_ORDER) {
    out.push('', `${group}:`);
    for (const f of FLAGS) if (f.group === group) out.push(line(label(f), f.help));
  }
  out.push(
    '',
    'Examples:',
    '  sosmount --zone ch-dk-2 --profile exomount mybucket ~/mnt',
    '  sosmount --profile exomount --endpoint-url https://sos-ch-dk-2.exo.io mybucket mnt',
    '',
  );
  return out.join('\n');
}

function versionText(): string {
  return `sosmount ${VERSION}`;
}

// ---------------------------------------------------------------------------
// Scanning argv into flags and positionals

interface Scan {
  flags: MountFlags;
  positionals: string[];
  help: boolean;
  version: boolean;
  /** The first problem; held back so that `--help` anywhere still prints help, as with clap. */
  error: UsageError | undefined;
}

type Token = ReturnType<typeof parseArgs<{ strict: false; allowPositionals: true; tokens: true }>>['tokens'][number];
type OptionToken = Extract<Token, { kind: 'option' }>;

/**
 * parseArgs finds the flags, values and positionals; we read its tokens
 * rather than use its strict mode, because strict mode throws at the first
 * problem in Node's words: it would stop `--help` later on the line from
 * winning, and it cannot refuse mount-s3's flags by name or suggest a
 * spelling. Every check strict mode makes is made here instead, naming the
 * flag as the user typed it.
 */
function scanArgs(argv: readonly string[]): Scan {
  const scan: Scan = { flags: {}, positionals: [], help: false, version: false, error: undefined };
  const fail = (err: UsageError): void => {
    scan.error ??= err;
  };
  const given = new Map<ValueKey, string[]>();

  let args = argv;
  for (;;) {
    const { tokens } = parseArgs({
      args: [...args],
      options: PARSE_ARGS_OPTIONS,
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    let resumeAt: number | undefined;
    for (const token of tokens) {
      if (token.kind === 'positional') scan.positionals.push(token.value);
      if (token.kind !== 'option') continue;

      const spec = specOf(token);
      if (spec === undefined) {
        fail(unknownFlag(token));
        continue;
      }
      if (spec.value === undefined) {
        if (token.value !== undefined) fail(new UsageError(`--${spec.long}`, `takes no value (got '${token.value}')`));
        else if (spec.key === 'help') scan.help = true;
        else if (spec.key === 'version') scan.version = true;
        else scan.flags[spec.key] = true;
        continue;
      }
      if (token.value === undefined) {
        fail(new UsageError(`--${spec.long}`, `requires a value <${spec.value}>`));
        continue;
      }
      if (!token.inlineValue && token.value.length > 1 && token.value.startsWith('-')) {
        fail(
          new UsageError(
            `--${spec.long}`,
            `requires a value <${spec.value}> but was followed by '${token.value}' ` +
              `(write --${spec.long}=${token.value} if that is the value)`,
          ),
        );
        // parseArgs took the next flag as this one's value; read on from
        // that flag, so that a --help there still wins.
        resumeAt = token.index + 1;
        break;
      }
      // clap reads -l=DIR as DIR; parseArgs would keep the '='.
      const shortEquals = token.inlineValue && !token.rawName.startsWith('--') && token.value.startsWith('=');
      const raw = shortEquals ? token.value.slice(1) : token.value;
      const list = given.get(spec.key);
      if (list === undefined) given.set(spec.key, [raw]);
      else list.push(raw);
    }
    if (resumeAt === undefined) break;
    args = args.slice(resumeAt);
  }

  for (const [key, raws] of given) {
    scan.flags[key] = raws[0];
    try {
      checkRepeats(key, raws);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      fail(err);
    }
  }
  return scan;
}

function specOf(token: OptionToken): FlagSpec | undefined {
  // mount-s3 only knows -V; -v is accepted because users type it by habit and it cannot mean anything else here.
  if (token.rawName === '-v') return BY_LONG.get('version');
  // A known short flag comes back under its long name; an unknown one as its letter, which no long flag is.
  return BY_LONG.get(token.name);
}

/** A flag given twice must mean the same thing both times (`--file-mode 644 --file-mode 0644` does). */
function checkRepeats(key: ValueKey, raws: readonly string[]): void {
  const [first, ...rest] = raws;
  if (first === undefined || rest.length === 0) return;
  const flag = flagOf(key);
  const check = CHECKS[key];
  const meaning = JSON.stringify(check(flag, first));
  for (const raw of rest) {
    if (JSON.stringify(check(flag, raw)) !== meaning) {
      throw new UsageError(flag, `given twice with different values ('${first}' and '${raw}')`);
    }
  }
}

function unknownFlag(token: OptionToken): UsageError {
  if (!token.rawName.startsWith('--')) return new UsageError(token.rawName, 'unknown flag (see sosmount --help)');
  return unknownLongFlag(token.name);
}

function unknownLongFlag(name: string): UsageError {
  const flag = `--${name}`;
  const reason = UNSUPPORTED.get(name);
  if (reason !== undefined) return new UsageError(flag, `mount-s3's flag is not supported by sosmount: ${reason}`);
  let best: string | undefined;
  let bestDistance = 3;
  for (const f of FLAGS) {
    const d = editDistance(name, f.long);
    if (d < bestDistance) {
      best = f.long;
      bestDistance = d;
    }
  }
  return new UsageError(
    flag,
    best === undefined ? 'unknown flag (see sosmount --help)' : `unknown flag; did you mean --${best}?`,
  );
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost));
    }
    prev = row;
  }
  return prev[b.length] as number;
}

// ---------------------------------------------------------------------------
// Value checks: each returns the value or throws a UsageError naming the flag.

function parseWholeNumber(flag: string, raw: string, min: number, max: number, what = 'a whole number'): number {
  if (!/^[0-9]+$/.test(raw)) throw new UsageError(flag, `'${raw}' is not ${what}`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(flag, `${raw} is out of range (${min} to ${max})`);
  return n;
}

function parseBytes(flag: string, raw: string): number {
  // mount-s3 takes plain byte counts; "8M" or "8MiB" would be a silent unit mistake.
  return parseWholeNumber(flag, raw, 1, MAX_PART_SIZE_BYTES, 'a number of bytes (e.g. 8388608 for 8 MiB)');
}

function parseMode(flag: string, raw: string): number {
  if (!/^[0-7]{1,6}$/.test(raw)) throw new UsageError(flag, `'${raw}' is not an octal mode (expected e.g. 0644)`);
  const mode = parseInt(raw, 8);
  if (mode > 0o777) {
    // As mount-s3: setuid, setgid and sticky bits mean nothing on an object store.
    throw new UsageError(flag, `'${raw}' is above 0777 (only user/group/other permissions are supported)`);
  }
  return mode;
}

function parseTtl(flag: string, raw: string): MetadataTtl {
  if (raw === 'minimal') return { kind: 'minimal' };
  if (raw === 'indefinite') return { kind: 'indefinite' };
  if (!/^[0-9]+$/.test(raw)) {
    throw new UsageError(flag, `'${raw}' is not a number of seconds, 'indefinite' or 'minimal'`);
  }
  const seconds = Number(raw);
  if (seconds > MAX_TTL_SECONDS) {
    throw new UsageError(flag, `${raw} is more than ${MAX_TTL_SECONDS} seconds (100 years); use 'indefinite'`);
  }
  // mount-s3 reads 0 as 'minimal' (deprecated there, but still accepted).
  if (seconds === 0) return { kind: 'minimal' };
  return { kind: 'seconds', seconds };
}

/**
 * Editing mode's default quiet time: "write a temporary file, rename it"
 * takes milliseconds; one arriving later costs a server-side copy, not a
 * second upload, and every 0.1 s here is a tenth of a second more before
 * a copied folder is all in the bucket.
 */
export const DEFAULT_UPLOAD_DELAY_MS = 100;
/** Longer would leave saved files off the bucket for a surprising time. */
const MAX_UPLOAD_DELAY_SECONDS = 3600;

function parseDelay(flag: string, raw: string): number {
  if (!/^[0-9]+(\.[0-9]{1,3})?$/.test(raw)) throw new UsageError(flag, `'${raw}' is not a number of seconds (e.g. 0.1 or 5)`);
  const seconds = Number(raw);
  if (seconds > MAX_UPLOAD_DELAY_SECONDS) throw new UsageError(flag, `${raw} is more than ${MAX_UPLOAD_DELAY_SECONDS} seconds`);
  return Math.round(seconds * 1000);
}

function parseNonEmpty(flag: string, raw: string, pattern?: RegExp, expected?: string): string {
  if (raw === '') throw new UsageError(flag, 'must not be empty');
  if (pattern !== undefined && !pattern.test(raw)) {
    throw new UsageError(flag, `'${raw}' is not valid${expected !== undefined ? ` (expected ${expected})` : ''}`);
  }
  return raw;
}

function parseEndpoint(flag: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(flag, `'${raw}' is not a URL (expected e.g. https://sos-ch-dk-2.exo.io)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UsageError(flag, `'${raw}' is not an http(s) URL (expected e.g. https://sos-ch-dk-2.exo.io)`);
  }
  if (url.username !== '' || url.password !== '') {
    // Secrets never travel in argv (visible to every user in ps); the SDK would not use them anyway.
    throw new UsageError(flag, 'must not contain credentials; use --profile or the credential chain');
  }
  if (url.search !== '' || url.hash !== '') {
    throw new UsageError(flag, `'${raw}' must not have a query or fragment`);
  }
  return raw;
}

function parsePrefix(flag: string, raw: string): string {
  // mount-s3 requires the slash so that "a" cannot silently also mount "ab/...".
  if (raw !== '' && !raw.endsWith('/')) throw new UsageError(flag, `'${raw}' must end in '/'`);
  return raw;
}

function parseUploadChecksums(flag: string, raw: string): 'crc32c' | 'off' {
  if (raw === 'crc32c' || raw === 'off') return raw;
  throw new UsageError(flag, `'${raw}' is not supported (expected crc32c or off)`);
}

/**
 * Why the name cannot be an S3 bucket, or undefined if it can. Follows S3's
 * naming rules, which SOS shares; the settings window uses it too.
 */
export function bucketNameProblem(name: string): string | undefined {
  if (name.startsWith('s3://')) {
    return `'${name}' is an s3:// URI; give the bare bucket name and use --prefix for a folder inside it`;
  }
  if (name.length < 3 || name.length > 63) return `'${name}' must be 3 to 63 characters long`;
  if (!/^[a-z0-9.-]+$/.test(name)) {
    return `'${name}' may contain only lowercase letters, digits, dots and hyphens`;
  }
  if (!/^[a-z0-9]/.test(name) || !/[a-z0-9]$/.test(name)) {
    return `'${name}' must start and end with a letter or digit`;
  }
  if (name.includes('..')) return `'${name}' must not contain two dots in a row`;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return `'${name}' must not be an IP address`;
  return undefined;
}

/**
 * Each value flag's own check: its text to its value, or a UsageError naming
 * the flag. Checks that involve two flags are in buildMountOptions.
 */
const CHECKS: { readonly [K in ValueKey]: (flag: string, raw: string) => FlagValues[K] } = {
  prefix: parsePrefix,
  // Region ends up in SigV4's credential scope, which '/' and whitespace would break.
  region: (flag, raw) => parseNonEmpty(flag, raw, /^[A-Za-z0-9_-]+$/, 'e.g. ch-dk-2'),
  endpointUrl: parseEndpoint,
  // Whether it names a zone is checked with --endpoint-url and --region, in buildMountOptions.
  zone: (flag, raw) => parseNonEmpty(flag, raw),
  storageClass: (flag, raw) => parseNonEmpty(flag, raw, /^[A-Za-z0-9_-]+$/, 'e.g. STANDARD or STANDARD_IA'),
  uploadChecksums: parseUploadChecksums,
  profile: (flag, raw) => parseNonEmpty(flag, raw, /^\S+$/, 'a profile name without spaces'),
  uid: (flag, raw) => parseWholeNumber(flag, raw, 0, MAX_ID),
  gid: (flag, raw) => parseWholeNumber(flag, raw, 0, MAX_ID),
  dirMode: parseMode,
  fileMode: parseMode,
  maxThreads: (flag, raw) => parseWholeNumber(flag, raw, 1, MAX_MAX_THREADS),
  partSize: parseBytes,
  readPartSize: parseBytes,
  writePartSize: parseBytes,
  metadataTtl: parseTtl,
  negativeMetadataTtl: parseTtl,
  logDirectory: (flag, raw) => parseNonEmpty(flag, raw),
  stagingDirectory: (flag, raw) => parseNonEmpty(flag, raw),
  uploadDelay: parseDelay,
  cache: (flag, raw) => parseNonEmpty(flag, raw),
  maxCacheSize: (flag, raw) => parseWholeNumber(flag, raw, 1, MAX_CACHE_SIZE_MIB),
  cacheBlockSize: (flag, raw) => parseWholeNumber(flag, raw, MIN_CACHE_BLOCK_KIB, MAX_CACHE_BLOCK_KIB),
};

// ---------------------------------------------------------------------------
// Building MountOptions

export function parseMountArgs(argv: readonly string[], env?: ParseEnv): ParseResult {
  const scan = scanArgs(argv);
  if (scan.help) return { kind: 'help', text: helpText() };
  if (scan.version) return { kind: 'version', text: versionText() };
  if (scan.error !== undefined) throw scan.error;

  const [bucket, mountPoint, ...extra] = scan.positionals;
  if (bucket === undefined) throw new UsageError(undefined, 'missing arguments <BUCKET_NAME> <DIRECTORY>');
  if (mountPoint === undefined) throw new UsageError(undefined, 'missing argument <DIRECTORY>');
  if (extra.length > 0) {
    throw new UsageError(
      undefined,
      `unexpected argument '${extra[0] as string}' (expected only <BUCKET_NAME> <DIRECTORY>; flags go before or after them)`,
    );
  }
  return { kind: 'mount', options: buildMountOptions({ ...scan.flags, bucket, mountPoint }, env) };
}

function processEnv(): ParseEnv {
  // getuid/getgid do not exist on Windows, where FUSE ownership is moot.
  return { cwd: process.cwd(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/**
 * A mount's arguments to a validated MountOptions: the only place that
 * applies defaults and checks values, for argv (through parseMountArgs) and
 * for the tray's settings alike. Throws a UsageError naming the flag, or
 * BUCKET_NAME or DIRECTORY, at fault.
 */
export function buildMountOptions(args: MountArgs, env: ParseEnv = processEnv()): MountOptions {
  const on = (key: SwitchKey): boolean => args[key] === true;
  const value = <K extends ValueKey>(key: K): FlagValues[K] | undefined => {
    const raw = args[key];
    return raw === undefined ? undefined : CHECKS[key](flagOf(key), raw);
  };

  const bucketProblem = bucketNameProblem(args.bucket);
  if (bucketProblem !== undefined) throw new UsageError('BUCKET_NAME', bucketProblem);
  if (args.mountPoint === '') throw new UsageError('DIRECTORY', 'must not be empty');
  if (/^\/dev\/fd\/\d+$/.test(args.mountPoint)) {
    throw new UsageError('DIRECTORY', 'mounting on a FUSE file descriptor is not supported; give a directory');
  }

  const endpointArg = value('endpointUrl');
  const zoneArg = value('zone');
  const regionArg = value('region');

  let endpointUrl = endpointArg;
  let region = regionArg;
  if (zoneArg !== undefined) {
    if (endpointArg !== undefined) {
      throw new UsageError('--zone', 'cannot be combined with --endpoint-url (the zone sets the endpoint)');
    }
    const zone = zoneFromFlag(zoneArg);
    if (regionArg !== undefined && regionArg !== zone.region) {
      throw new UsageError(
        '--region',
        `'${regionArg}' contradicts --zone ${zone.zone}, whose region is ${zone.region}`,
      );
    }
    endpointUrl = zone.endpoint;
    region = zone.region;
  } else if (endpointArg !== undefined && regionArg === undefined) {
    // SOS signs with the zone as region; without this the tutorial's command
    // line would sign for the SDK's us-east-1 fallback.
    region = zoneForEndpoint(endpointArg)?.region;
  }

  if (on('allowOther') && on('allowRoot')) {
    throw new UsageError(
      '--allow-other',
      'cannot be combined with --allow-root (libfuse refuses both; --allow-other already admits root)',
    );
  }

  const stagingDirectoryArg = value('stagingDirectory');
  if (on('allowEdit') && on('readOnly')) throw new UsageError('--allow-edit', 'cannot be combined with --read-only');
  if (!on('allowEdit')) {
    const needsEdit = stagingDirectoryArg !== undefined ? '--staging-directory' : value('uploadDelay') !== undefined ? '--upload-delay' : undefined;
    if (needsEdit !== undefined) throw new UsageError(needsEdit, 'only applies with --allow-edit');
  }

  const cacheArg = value('cache');
  const maxCacheSizeMiB = value('maxCacheSize');
  const cacheBlockKiB = value('cacheBlockSize');
  if (cacheArg === undefined) {
    const needsCache = maxCacheSizeMiB !== undefined ? '--max-cache-size' : cacheBlockKiB !== undefined ? '--cache-block-size' : undefined;
    if (needsCache !== undefined) throw new UsageError(needsCache, 'only applies with --cache');
  }
  const cacheBlockSizeBytes = (cacheBlockKiB ?? DEFAULT_CACHE_BLOCK_KIB) * 1024;
  if (maxCacheSizeMiB !== undefined && maxCacheSizeMiB * MiB < MIN_CACHE_BLOCKS * cacheBlockSizeBytes) {
    throw new UsageError('--max-cache-size', `${maxCacheSizeMiB} MiB holds fewer than ${MIN_CACHE_BLOCKS} blocks of ${cacheBlockSizeBytes / 1024} KiB; give at least ${Math.ceil(MIN_CACHE_BLOCKS * cacheBlockSizeBytes / MiB)}`);
  }

  const logDirectoryArg = value('logDirectory');
  if (on('noLog')) {
    // As mount-s3: asking for no logs and for logs at once is a mistake, not a preference.
    const clash = on('debug') ? '--debug' : logDirectoryArg !== undefined ? '--log-directory' : undefined;
    if (clash !== undefined) throw new UsageError('--no-log', `cannot be combined with ${clash}`);
  }

  const partSize = value('partSize');
  const readPartSize = value('readPartSize');
  const writePartSize = value('writePartSize');
  const readPartSizeBytes = readPartSize ?? partSize ?? DEFAULT_PART_SIZE_BYTES;
  const writePartSizeBytes = writePartSize ?? partSize ?? DEFAULT_PART_SIZE_BYTES;
  if (writePartSizeBytes < MIN_WRITE_PART_SIZE_BYTES) {
    const flag = writePartSize !== undefined ? '--write-part-size' : '--part-size';
    throw new UsageError(
      flag,
      `${writePartSizeBytes} is below S3's minimum upload part size of ${MIN_WRITE_PART_SIZE_BYTES} bytes (5 MiB)` +
        (flag === '--part-size' ? '; use --read-part-size to make only GET parts smaller' : ''),
    );
  }

  return {
    bucket: args.bucket,
    mountPoint: path.resolve(env.cwd, args.mountPoint),
    endpointUrl,
    region,
    zone: zoneArg,
    profile: value('profile'),
    forcePathStyle: on('forcePathStyle'),
    prefix: value('prefix') ?? '',
    readOnly: on('readOnly'),
    allowDelete: on('allowDelete') || on('allowEdit'),
    allowOverwrite: on('allowOverwrite') || on('allowEdit'),
    allowEdit: on('allowEdit'),
    stagingDirectory: stagingDirectoryArg === undefined ? undefined : path.resolve(env.cwd, stagingDirectoryArg),
    uploadDelayMs: value('uploadDelay') ?? DEFAULT_UPLOAD_DELAY_MS,
    cacheDirectory: cacheArg === undefined ? undefined : path.resolve(env.cwd, cacheArg),
    maxCacheSizeBytes: maxCacheSizeMiB === undefined ? undefined : maxCacheSizeMiB * MiB,
    cacheBlockSizeBytes,
    uid: value('uid') ?? env.uid,
    gid: value('gid') ?? env.gid,
    fileMode: value('fileMode') ?? DEFAULT_FILE_MODE,
    dirMode: value('dirMode') ?? DEFAULT_DIR_MODE,
    allowOther: on('allowOther'),
    allowRoot: on('allowRoot'),
    autoUnmount: on('autoUnmount'),
    foreground: on('foreground'),
    // As mount-s3: a data cache is worth little if every open asks the bucket again.
    metadataTtl: value('metadataTtl') ?? (cacheArg === undefined ? { kind: 'minimal' } : { kind: 'seconds', seconds: CACHE_METADATA_TTL_SECONDS }),
    negativeMetadataTtl: value('negativeMetadataTtl'),
    debug: on('debug'),
    logDirectory: logDirectoryArg === undefined ? undefined : path.resolve(env.cwd, logDirectoryArg),
    noLog: on('noLog'),
    maxThreads: value('maxThreads') ?? DEFAULT_MAX_THREADS,
    readPartSizeBytes,
    writePartSizeBytes,
    uploadChecksums: value('uploadChecksums') ?? (isAwsEndpoint(endpointUrl) ? 'crc32c' : 'off'),
    storageClass: value('storageClass'),
  };
}

function zoneFromFlag(name: string): ExoscaleZone {
  try {
    return exoscaleZone(name);
  } catch (err) {
    if (err instanceof UnknownZoneError) throw new UsageError('--zone', err.message, { cause: err });
    throw err;
  }
}

function isAwsEndpoint(endpointUrl: string | undefined): boolean {
  if (endpointUrl === undefined) return true;
  const host = new URL(endpointUrl).hostname.toLowerCase();
  return host.endsWith('.amazonaws.com') || host.endsWith('.amazonaws.com.cn');
}
