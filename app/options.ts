/**
 * `sosmount [OPTIONS] BUCKET DIRECTORY`: argv to a validated MountOptions.
 *
 * Flags keep mount-s3's spelling, value syntax and defaults (its
 * mountpoint-s3-fs/src/cli.rs), so a mount-s3 command line works unchanged;
 * `--zone` is ours. Nothing is accepted and ignored: an unknown flag, a
 * mount-s3 flag we do not implement, or a bad value is a UsageError that
 * names the flag. One table (FLAGS) drives both parsing and `--help`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

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

interface FlagSpec {
  /** Without the leading dashes. */
  readonly long: string;
  readonly short?: string;
  /** Value name shown in help; absent for a switch. */
  readonly value?: string;
  readonly group: Group;
  readonly help: string;
}

const FLAGS: readonly FlagSpec[] = [
  { long: 'foreground', short: 'f', group: 'Options', help: 'Run as foreground process' },
  { long: 'help', short: 'h', group: 'Options', help: 'Print help' },
  { long: 'version', short: 'V', group: 'Options', help: 'Print version' },

  {
    long: 'prefix',
    value: 'PREFIX',
    group: 'Bucket options',
    help: "Prefix inside the bucket to mount, ending in '/' [default: mount the entire bucket]",
  },
  {
    long: 'region',
    value: 'REGION',
    group: 'Bucket options',
    help: "Region of the bucket [default: the zone's region, else auto-detect region]",
  },
  {
    long: 'endpoint-url',
    value: 'ENDPOINT_URL',
    group: 'Bucket options',
    help: 'S3 endpoint URL [default: auto-detect endpoint]',
  },
  {
    long: 'zone',
    value: 'ZONE',
    group: 'Bucket options',
    help: [
      'Exoscale SOS zone: sets the endpoint https://sos-ZONE.exo.io and the region (ours, not in mount-s3)',
      ...EXOSCALE_ZONES.map((z) => `  ${z.zone.padEnd(10)}${z.label}`),
    ].join('\n'),
  },
  { long: 'force-path-style', group: 'Bucket options', help: 'Force path-style addressing' },
  {
    long: 'storage-class',
    value: 'STORAGE_CLASS',
    group: 'Bucket options',
    help: 'Set the storage class for new objects',
  },
  {
    long: 'upload-checksums',
    value: 'ALGORITHM',
    group: 'Bucket options',
    help: 'Checksum algorithm to use for S3 uploads: crc32c or off [default: crc32c on AWS, off on other endpoints]',
  },

  {
    long: 'profile',
    value: 'PROFILE',
    group: 'AWS credentials options',
    help: 'Use a specific profile from your credential file.',
  },

  { long: 'read-only', group: 'Mount options', help: 'Mount file system in read-only mode' },
  { long: 'allow-delete', group: 'Mount options', help: 'Allow delete operations on file system' },
  { long: 'allow-overwrite', group: 'Mount options', help: 'Allow overwrite operations on file system' },
  { long: 'auto-unmount', group: 'Mount options', help: 'Automatically unmount on exit' },
  { long: 'allow-root', group: 'Mount options', help: 'Allow root user to access file system' },
  {
    long: 'allow-other',
    group: 'Mount options',
    help: 'Allow other users, including root, to access file system',
  },
  { long: 'uid', value: 'UID', group: 'Mount options', help: "Owner UID [default: current user's UID]" },
  { long: 'gid', value: 'GID', group: 'Mount options', help: "Owner GID [default: current user's GID]" },
  { long: 'dir-mode', value: 'DIR_MODE', group: 'Mount options', help: 'Directory permissions [default: 0755]' },
  { long: 'file-mode', value: 'FILE_MODE', group: 'Mount options', help: 'File permissions [default: 0644]' },

  {
    long: 'max-threads',
    value: 'N',
    group: 'Client options',
    help: `Maximum number of S3 requests in flight, 1 to ${MAX_MAX_THREADS} [default: ${DEFAULT_MAX_THREADS}]`,
  },
  {
    long: 'part-size',
    value: 'SIZE',
    group: 'Client options',
    help: `Part size for multi-part GET and PUT in bytes [default: ${DEFAULT_PART_SIZE_BYTES}]`,
  },
  {
    long: 'read-part-size',
    value: 'SIZE',
    group: 'Client options',
    help: `Part size for GET in bytes; overrides --part-size [default: ${DEFAULT_PART_SIZE_BYTES}]`,
  },
  {
    long: 'write-part-size',
    value: 'SIZE',
    group: 'Client options',
    help:
      `Part size for multi-part PUT in bytes, at least ${MIN_WRITE_PART_SIZE_BYTES}; overrides --part-size ` +
      `[default: ${DEFAULT_PART_SIZE_BYTES}]; parts double in size every 1000 parts, so 10000 parts hold multi-TiB files`,
  },

  {
    long: 'metadata-ttl',
    value: 'SECONDS|indefinite|minimal',
    group: 'Caching options',
    help: 'Time-to-live (TTL) for cached metadata in seconds [default: minimal]',
  },
  {
    long: 'negative-metadata-ttl',
    value: 'SECONDS|indefinite|minimal',
    group: 'Caching options',
    help: 'Time-to-live (TTL) for cached negative entries in seconds [default: same as metadata TTL]',
  },

  {
    long: 'log-directory',
    short: 'l',
    value: 'DIRECTORY',
    group: 'Logging options',
    help: 'Write log files to a directory [default: ~/.local/state/sos-mount/logs; on macOS ~/Library/Logs/sos-mount]',
  },
  { long: 'debug', short: 'd', group: 'Logging options', help: 'Enable debug logging' },
  { long: 'no-log', group: 'Logging options', help: 'Disable all logging. You will still see stdout messages.' },
];

const BY_LONG = new Map(FLAGS.map((f) => [f.long, f]));
const BY_SHORT = new Map<string, FlagSpec>();
for (const f of FLAGS) if (f.short !== undefined) BY_SHORT.set(f.short, f);
// mount-s3 only knows -V; -v is accepted because users type it by habit and it cannot mean anything else here.
BY_SHORT.set('v', BY_LONG.get('version') as FlagSpec);

/**
 * mount-s3 flags we do not implement. Refusing them by name (rather than as
 * unknown) tells a user coming from mount-s3 why, instead of suggesting a typo.
 */
const UNSUPPORTED: ReadonlyMap<string, string> = new Map([
  ['cache', 'local data caching is not implemented'],
  ['max-cache-size', 'local data caching is not implemented'],
  ['cache-block-size', 'local data caching is not implemented'],
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
  values: Map<string, string[]>;
  switches: Set<string>;
  positionals: string[];
  help: boolean;
  version: boolean;
  /** The first problem; held back so that `--help` anywhere still prints help, as with clap. */
  error: UsageError | undefined;
}

function scanArgs(argv: readonly string[]): Scan {
  const scan: Scan = {
    values: new Map(),
    switches: new Set(),
    positionals: [],
    help: false,
    version: false,
    error: undefined,
  };
  const fail = (err: UsageError): void => {
    scan.error ??= err;
  };
  const take = (spec: FlagSpec, value: string): void => {
    const list = scan.values.get(spec.long);
    if (list === undefined) scan.values.set(spec.long, [value]);
    else list.push(value);
  };
  const setSwitch = (spec: FlagSpec): void => {
    if (spec.long === 'help') scan.help = true;
    else if (spec.long === 'version') scan.version = true;
    else scan.switches.add(spec.long);
  };
  /** The next argument as a flag's value, unless it is missing or is itself a flag. */
  const nextValue = (spec: FlagSpec, i: number): string | undefined => {
    const next = argv[i + 1];
    if (next === undefined) {
      fail(new UsageError(`--${spec.long}`, `requires a value <${spec.value ?? 'VALUE'}>`));
      return undefined;
    }
    if (next.length > 1 && next.startsWith('-')) {
      fail(
        new UsageError(
          `--${spec.long}`,
          `requires a value <${spec.value ?? 'VALUE'}> but was followed by '${next}' ` +
            `(write --${spec.long}=${next} if that is the value)`,
        ),
      );
      return undefined;
    }
    return next;
  };

  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (onlyPositionals || arg === '-' || !arg.startsWith('-')) {
      scan.positionals.push(arg);
      continue;
    }
    if (arg === '--') {
      onlyPositionals = true;
      continue;
    }

    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const inline = eq === -1 ? undefined : arg.slice(eq + 1);
      const spec = BY_LONG.get(name);
      if (spec === undefined) {
        fail(unknownLongFlag(name));
        continue;
      }
      if (spec.value === undefined) {
        if (inline !== undefined) fail(new UsageError(`--${name}`, `takes no value (got '${inline}')`));
        else setSwitch(spec);
        continue;
      }
      if (inline !== undefined) {
        take(spec, inline);
        continue;
      }
      const value = nextValue(spec, i);
      if (value !== undefined) {
        take(spec, value);
        i++;
      }
      continue;
    }

    // A cluster of short flags, clap-style: -fd, -l DIR, -lDIR.
    for (let j = 1; j < arg.length; j++) {
      const ch = arg[j] as string;
      const spec = BY_SHORT.get(ch);
      if (spec === undefined) {
        fail(new UsageError(`-${ch}`, `unknown flag (see sosmount --help)`));
        break;
      }
      if (spec.value === undefined) {
        setSwitch(spec);
        continue;
      }
      const rest = arg.slice(j + 1);
      if (rest !== '') {
        take(spec, rest.startsWith('=') ? rest.slice(1) : rest);
      } else {
        const value = nextValue(spec, i);
        if (value !== undefined) {
          take(spec, value);
          i++;
        }
      }
      break;
    }
  }
  return scan;
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
// Value parsers: each returns the value or throws a UsageError naming the flag.

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
    // Secrets never travel in argv (DESIGN.md); the SDK would not use them anyway.
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

// ---------------------------------------------------------------------------
// Building MountOptions

export function parseMountArgs(argv: readonly string[], env?: ParseEnv): ParseResult {
  const scan = scanArgs(argv);
  if (scan.help) return { kind: 'help', text: helpText() };
  if (scan.version) return { kind: 'version', text: versionText() };
  if (scan.error !== undefined) throw scan.error;
  return { kind: 'mount', options: buildOptions(scan, env ?? processEnv()) };
}

function processEnv(): ParseEnv {
  // getuid/getgid do not exist on Windows, where FUSE ownership is moot.
  return { cwd: process.cwd(), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

function buildOptions(scan: Scan, env: ParseEnv): MountOptions {
  const on = (long: string): boolean => scan.switches.has(long);

  /** The flag's value; a repeat must mean the same thing, or it is an error. */
  function value<T>(long: string, parse: (flag: string, raw: string) => T): T | undefined {
    const raws = scan.values.get(long);
    if (raws === undefined) return undefined;
    const flag = `--${long}`;
    const first = parse(flag, raws[0] as string);
    for (const raw of raws.slice(1)) {
      if (JSON.stringify(parse(flag, raw)) !== JSON.stringify(first)) {
        throw new UsageError(flag, `given twice with different values ('${raws[0] as string}' and '${raw}')`);
      }
    }
    return first;
  }

  const [bucketArg, directoryArg, ...extra] = scan.positionals;
  if (bucketArg === undefined) throw new UsageError(undefined, 'missing arguments <BUCKET_NAME> <DIRECTORY>');
  if (directoryArg === undefined) throw new UsageError(undefined, 'missing argument <DIRECTORY>');
  if (extra.length > 0) {
    throw new UsageError(
      undefined,
      `unexpected argument '${extra[0] as string}' (expected only <BUCKET_NAME> <DIRECTORY>; flags go before or after them)`,
    );
  }
  const bucketProblem = bucketNameProblem(bucketArg);
  if (bucketProblem !== undefined) throw new UsageError('BUCKET_NAME', bucketProblem);
  if (directoryArg === '') throw new UsageError('DIRECTORY', 'must not be empty');
  if (/^\/dev\/fd\/\d+$/.test(directoryArg)) {
    throw new UsageError('DIRECTORY', 'mounting on a FUSE file descriptor is not supported; give a directory');
  }

  const endpointArg = value('endpoint-url', parseEndpoint);
  const zoneArg = value('zone', (flag, raw) => parseNonEmpty(flag, raw));
  // Region ends up in SigV4's credential scope, which '/' and whitespace would break.
  const regionArg = value('region', (flag, raw) => parseNonEmpty(flag, raw, /^[A-Za-z0-9_-]+$/, 'e.g. ch-dk-2'));

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

  if (on('allow-other') && on('allow-root')) {
    throw new UsageError(
      '--allow-other',
      'cannot be combined with --allow-root (libfuse refuses both; --allow-other already admits root)',
    );
  }

  const logDirectoryArg = value('log-directory', (flag, raw) => parseNonEmpty(flag, raw));
  if (on('no-log')) {
    // As mount-s3: asking for no logs and for logs at once is a mistake, not a preference.
    const clash = on('debug') ? '--debug' : logDirectoryArg !== undefined ? '--log-directory' : undefined;
    if (clash !== undefined) throw new UsageError('--no-log', `cannot be combined with ${clash}`);
  }

  const partSize = value('part-size', parseBytes);
  const readPartSize = value('read-part-size', parseBytes);
  const writePartSize = value('write-part-size', parseBytes);
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
    bucket: bucketArg,
    mountPoint: path.resolve(env.cwd, directoryArg),
    endpointUrl,
    region,
    zone: zoneArg,
    profile: value('profile', (flag, raw) => parseNonEmpty(flag, raw, /^\S+$/, 'a profile name without spaces')),
    forcePathStyle: on('force-path-style'),
    prefix: value('prefix', parsePrefix) ?? '',
    readOnly: on('read-only'),
    allowDelete: on('allow-delete'),
    allowOverwrite: on('allow-overwrite'),
    uid: value('uid', (flag, raw) => parseWholeNumber(flag, raw, 0, MAX_ID)) ?? env.uid,
    gid: value('gid', (flag, raw) => parseWholeNumber(flag, raw, 0, MAX_ID)) ?? env.gid,
    fileMode: value('file-mode', parseMode) ?? DEFAULT_FILE_MODE,
    dirMode: value('dir-mode', parseMode) ?? DEFAULT_DIR_MODE,
    allowOther: on('allow-other'),
    allowRoot: on('allow-root'),
    autoUnmount: on('auto-unmount'),
    foreground: on('foreground'),
    metadataTtl: value('metadata-ttl', parseTtl) ?? { kind: 'minimal' },
    negativeMetadataTtl: value('negative-metadata-ttl', parseTtl),
    debug: on('debug'),
    logDirectory: logDirectoryArg === undefined ? undefined : path.resolve(env.cwd, logDirectoryArg),
    noLog: on('no-log'),
    maxThreads:
      value('max-threads', (flag, raw) => parseWholeNumber(flag, raw, 1, MAX_MAX_THREADS)) ?? DEFAULT_MAX_THREADS,
    readPartSizeBytes,
    writePartSizeBytes,
    uploadChecksums: value('upload-checksums', parseUploadChecksums) ?? (isAwsEndpoint(endpointUrl) ? 'crc32c' : 'off'),
    storageClass: value('storage-class', (flag, raw) =>
      parseNonEmpty(flag, raw, /^[A-Za-z0-9_-]+$/, 'e.g. STANDARD or STANDARD_IA'),
    ),
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
