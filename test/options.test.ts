import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  UsageError,
  VERSION,
  bucketNameProblem,
  buildMountOptions,
  helpText,
  metadataTtlMs,
  parseMountArgs,
  type MountArgs,
  type MountOptions,
} from '../app/options.js';
import {
  EXOSCALE_ZONES,
  UnknownZoneError,
  isExoscaleZone,
  zoneEndpoint,
  zoneForEndpoint,
} from '../app/s3/zones.js';

const ENV = { cwd: '/home/exouser', uid: 1000, gid: 1001 };
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Parses `flags` followed by a valid BUCKET DIRECTORY, expecting a mount. */
function parse(...flags: string[]): MountOptions {
  return parseArgv([...flags, 'mybucket', 'mnt']);
}

function parseArgv(argv: string[]): MountOptions {
  const result = parseMountArgs(argv, ENV);
  assert.equal(result.kind, 'mount');
  if (result.kind !== 'mount') throw new Error('unreachable');
  return result.options;
}

/** Expects a UsageError naming `flag`, whose message matches `message`. */
function rejects(argv: string[], flag: string | undefined, message: RegExp | string): void {
  assert.throws(
    () => parseMountArgs(argv, ENV),
    (err: unknown) => {
      assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
      assert.equal(err.flag, flag);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

function rejectsFlags(flags: string[], flag: string | undefined, message: RegExp | string): void {
  rejects([...flags, 'mybucket', 'mnt'], flag, message);
}

describe('zones', () => {
  test('the zone list holds the seven Exoscale zones, each at https://sos-<zone>.exo.io with region = zone', () => {
    assert.deepEqual(
      EXOSCALE_ZONES.map((z) => z.zone),
      ['ch-gva-2', 'ch-dk-2', 'de-fra-1', 'de-muc-1', 'at-vie-1', 'at-vie-2', 'bg-sof-1'],
    );
    for (const z of EXOSCALE_ZONES) {
      assert.equal(z.endpoint, `https://sos-${z.zone}.exo.io`);
      assert.equal(z.region, z.zone);
      assert.ok(z.label.length > 0);
    }
    assert.equal(EXOSCALE_ZONES[0]?.label, 'Geneva (CH)');
  });

  test('the zone list is frozen', () => {
    assert.ok(Object.isFrozen(EXOSCALE_ZONES));
    assert.ok(Object.isFrozen(EXOSCALE_ZONES[0]));
  });

  test('zoneEndpoint returns the endpoint of a known zone', () => {
    assert.equal(zoneEndpoint('de-fra-1'), 'https://sos-de-fra-1.exo.io');
  });

  test('zoneEndpoint of an unknown zone throws UnknownZoneError listing the known zones', () => {
    assert.throws(
      () => zoneEndpoint('ch-zrh-1'),
      (err: unknown) => {
        assert.ok(err instanceof UnknownZoneError);
        assert.equal(err.zone, 'ch-zrh-1');
        for (const z of EXOSCALE_ZONES) assert.ok(err.message.includes(z.zone), `message lists ${z.zone}`);
        return true;
      },
    );
  });

  test('isExoscaleZone accepts known zones only, case-sensitively', () => {
    assert.equal(isExoscaleZone('at-vie-2'), true);
    assert.equal(isExoscaleZone('AT-VIE-2'), false);
    assert.equal(isExoscaleZone('us-east-1'), false);
  });

  test('zoneForEndpoint recognises an SOS endpoint with or without a trailing slash, and nothing else', () => {
    assert.equal(zoneForEndpoint('https://sos-ch-dk-2.exo.io')?.zone, 'ch-dk-2');
    assert.equal(zoneForEndpoint('https://sos-ch-dk-2.exo.io/')?.zone, 'ch-dk-2');
    assert.equal(zoneForEndpoint('https://s3.eu-west-1.amazonaws.com'), undefined);
    assert.equal(zoneForEndpoint('not a url'), undefined);
  });
});

describe('parseMountArgs: the tutorial and defaults', () => {
  test("the tutorial's command line --profile exomount --endpoint-url https://sos-ch-dk-2.exo.io mybucket mnt mounts mybucket at ./mnt with that profile and endpoint", () => {
    const o = parseArgv(['--profile', 'exomount', '--endpoint-url', 'https://sos-ch-dk-2.exo.io', 'mybucket', 'mnt']);
    assert.equal(o.bucket, 'mybucket');
    assert.equal(o.mountPoint, '/home/exouser/mnt');
    assert.equal(o.profile, 'exomount');
    assert.equal(o.endpointUrl, 'https://sos-ch-dk-2.exo.io');
    assert.equal(o.zone, undefined);
    assert.equal(o.allowDelete, false, 'rm is refused without --allow-delete');
  });

  test('--allow-edit turns on editing mode, deletes and overwrites; its own flags need it', () => {
    const o = parse('--allow-edit', '--staging-directory', 'stage', '--upload-delay', '1.5');
    assert.equal(o.allowEdit, true);
    assert.equal(o.allowDelete, true);
    assert.equal(o.allowOverwrite, true);
    assert.equal(o.stagingDirectory, '/home/exouser/stage');
    assert.equal(o.uploadDelayMs, 1500);
    assert.throws(() => parse('--allow-edit', '--read-only'), /--allow-edit: cannot be combined with --read-only/);
    assert.throws(() => parse('--upload-delay', '1'), /--upload-delay: only applies with --allow-edit/);
    assert.throws(() => parse('--staging-directory', '/x'), /--staging-directory: only applies with --allow-edit/);
    assert.throws(() => parse('--allow-edit', '--upload-delay', '-1'), /--upload-delay/);
    assert.throws(() => parse('--allow-edit', '--upload-delay', '1e3'), /--upload-delay: '1e3' is not a number of seconds/);
    assert.throws(() => parse('--allow-edit', '--upload-delay', '7200'), /more than 3600 seconds/);
  });

  test('--cache takes a folder, sets the metadata TTL to 60 s unless given, and its size flags need it', () => {
    const o = parse('--cache', 'cache-dir');
    assert.equal(o.cacheDirectory, '/home/exouser/cache-dir');
    assert.deepEqual(o.metadataTtl, { kind: 'seconds', seconds: 60 });
    assert.equal(o.maxCacheSizeBytes, undefined);
    assert.equal(o.cacheBlockSizeBytes, 1024 * 1024);
    assert.deepEqual(parse('--cache', '/c', '--metadata-ttl', 'minimal').metadataTtl, { kind: 'minimal' });
    const sized = parse('--cache', '/c', '--max-cache-size', '100', '--cache-block-size', '256');
    assert.equal(sized.maxCacheSizeBytes, 100 * 1024 * 1024);
    assert.equal(sized.cacheBlockSizeBytes, 256 * 1024);
    assert.throws(() => parse('--max-cache-size', '100'), /^UsageError: --max-cache-size: only applies with --cache$/);
    assert.throws(() => parse('--cache-block-size', '64'), /^UsageError: --cache-block-size: only applies with --cache$/);
    assert.throws(() => parse('--cache', ''), /--cache/);
    assert.throws(() => parse('--cache', '/c', '--max-cache-size', '0'), /--max-cache-size/);
    assert.throws(() => parse('--cache', '/c', '--max-cache-size', '10GiB'), /--max-cache-size/);
    assert.throws(() => parse('--cache', '/c', '--max-cache-size', '3'), /--max-cache-size: 3 MiB holds fewer than 4 blocks of 1024 KiB; give at least 4/);
    assert.throws(() => parse('--cache', '/c', '--cache-block-size', '8'), /--cache-block-size/);
    assert.throws(() => parse('--cache', '/c', '--cache-block-size', '100000'), /--cache-block-size/);
  });

  test('an --endpoint-url of a known SOS zone signs for that zone when --region is not given', () => {
    assert.equal(parse('--endpoint-url', 'https://sos-ch-dk-2.exo.io').region, 'ch-dk-2');
    assert.equal(parse('--endpoint-url', 'https://sos-ch-dk-2.exo.io', '--region', 'other').region, 'other');
  });

  test('with no flags every option takes mount-s3 default', () => {
    const o = parse();
    const expected: MountOptions = {
      bucket: 'mybucket',
      mountPoint: '/home/exouser/mnt',
      endpointUrl: undefined,
      region: undefined,
      zone: undefined,
      profile: undefined,
      forcePathStyle: false,
      prefix: '',
      readOnly: false,
      allowDelete: false,
      allowOverwrite: false,
      allowEdit: false,
      stagingDirectory: undefined,
      uploadDelayMs: 100,
      cacheDirectory: undefined,
      maxCacheSizeBytes: undefined,
      cacheBlockSizeBytes: 1048576,
      uid: 1000,
      gid: 1001,
      fileMode: 0o644,
      dirMode: 0o755,
      allowOther: false,
      allowRoot: false,
      autoUnmount: false,
      foreground: false,
      metadataTtl: { kind: 'minimal' },
      negativeMetadataTtl: undefined,
      debug: false,
      logDirectory: undefined,
      noLog: false,
      maxThreads: 16,
      readPartSizeBytes: 8388608,
      writePartSizeBytes: 8388608,
      uploadChecksums: 'crc32c',
      storageClass: undefined,
    };
    assert.deepEqual(o, expected);
  });

  test('without env, uid and gid default to the current process and the mount point resolves against process.cwd()', () => {
    const result = parseMountArgs(['mybucket', 'mnt']);
    assert.equal(result.kind, 'mount');
    if (result.kind !== 'mount') return;
    assert.equal(result.options.uid, process.getuid?.() ?? 0);
    assert.equal(result.options.gid, process.getgid?.() ?? 0);
    assert.equal(result.options.mountPoint, `${process.cwd()}/mnt`);
  });

  test('an absolute DIRECTORY is kept and a relative one is resolved against cwd', () => {
    assert.equal(parseArgv(['mybucket', '/srv/mnt/']).mountPoint, '/srv/mnt');
    assert.equal(parseArgv(['mybucket', '../data/mnt']).mountPoint, '/home/data/mnt');
  });

  test('flags may come before, between or after the positional arguments', () => {
    const o = parseArgv(['--read-only', 'mybucket', '--profile', 'p', 'mnt', '--allow-delete']);
    assert.equal(o.readOnly, true);
    assert.equal(o.profile, 'p');
    assert.equal(o.allowDelete, true);
  });

  test("after '--' every argument is positional, so a DIRECTORY may start with '-'", () => {
    assert.equal(parseArgv(['--', 'mybucket', '-mnt']).mountPoint, '/home/exouser/-mnt');
  });
});

describe('parseMountArgs: positional arguments', () => {
  test('no arguments is a UsageError asking for BUCKET_NAME and DIRECTORY', () => {
    rejects([], undefined, /missing arguments <BUCKET_NAME> <DIRECTORY>/);
  });

  test('a BUCKET_NAME without DIRECTORY is a UsageError asking for DIRECTORY', () => {
    rejects(['mybucket'], undefined, /missing argument <DIRECTORY>/);
  });

  test('a third positional argument is a UsageError naming it', () => {
    rejects(['mybucket', 'mnt', 'extra'], undefined, /unexpected argument 'extra'/);
  });

  test('an empty DIRECTORY is a UsageError', () => {
    rejects(['mybucket', ''], 'DIRECTORY', /must not be empty/);
  });

  test('a /dev/fd/N mount point (mount-s3 on Linux) is refused as unsupported', () => {
    rejects(['mybucket', '/dev/fd/3'], 'DIRECTORY', /file descriptor is not supported/);
  });

  test('valid bucket names follow S3 naming rules', () => {
    for (const name of ['abc', 'my.bucket-1', '1bucket9', 'a'.repeat(63)]) {
      assert.equal(bucketNameProblem(name), undefined, name);
      assert.equal(parseArgv([name, 'mnt']).bucket, name);
    }
  });

  test('bucket names that break S3 naming rules are UsageErrors naming BUCKET_NAME and the rule', () => {
    const cases: [string, RegExp][] = [
      ['ab', /3 to 63 characters/],
      ['a'.repeat(64), /3 to 63 characters/],
      ['MyBucket', /lowercase letters, digits, dots and hyphens/],
      ['my_bucket', /lowercase letters, digits, dots and hyphens/],
      ['-bucket', /start and end with a letter or digit/],
      ['bucket-', /start and end with a letter or digit/],
      ['bucket.', /start and end with a letter or digit/],
      ['my..bucket', /two dots in a row/],
      ['192.168.1.10', /IP address/],
      ['s3://mybucket', /s3:\/\/ URI.*--prefix/],
    ];
    // '--' so that '-bucket' reaches the name check instead of being read as flags.
    for (const [name, message] of cases) rejects(['--', name, 'mnt'], 'BUCKET_NAME', message);
  });
});

describe('parseMountArgs: bucket options', () => {
  for (const z of EXOSCALE_ZONES) {
    test(`--zone ${z.zone} sets the endpoint https://sos-${z.zone}.exo.io and region ${z.zone}`, () => {
      const o = parse('--zone', z.zone);
      assert.equal(o.zone, z.zone);
      assert.equal(o.endpointUrl, `https://sos-${z.zone}.exo.io`);
      assert.equal(o.region, z.zone);
    });
  }

  test('an unknown --zone is a UsageError listing the known zones', () => {
    rejectsFlags(['--zone', 'ch-zrh-1'], '--zone', /unknown Exoscale zone 'ch-zrh-1'; known zones: ch-gva-2, ch-dk-2, de-fra-1, de-muc-1, at-vie-1, at-vie-2, bg-sof-1/);
  });

  test('--zone together with --endpoint-url is a UsageError', () => {
    rejectsFlags(['--zone', 'ch-dk-2', '--endpoint-url', 'https://sos-ch-dk-2.exo.io'], '--zone', /cannot be combined with --endpoint-url/);
  });

  test('--zone with the same --region is accepted; with a different one it is a UsageError naming --region', () => {
    assert.equal(parse('--zone', 'ch-dk-2', '--region', 'ch-dk-2').region, 'ch-dk-2');
    rejectsFlags(['--zone', 'ch-dk-2', '--region', 'de-fra-1'], '--region', /contradicts --zone ch-dk-2/);
  });

  test('--endpoint-url accepts http and https URLs and keeps them as given', () => {
    assert.equal(parse('--endpoint-url', 'http://127.0.0.1:9000').endpointUrl, 'http://127.0.0.1:9000');
    assert.equal(parse('--endpoint-url=https://minio.example.com/').endpointUrl, 'https://minio.example.com/');
  });

  test('--endpoint-url of another S3 store leaves the region to the SDK chain', () => {
    assert.equal(parse('--endpoint-url', 'http://127.0.0.1:9000').region, undefined);
  });

  test('--endpoint-url that is not an http(s) URL is a UsageError', () => {
    rejectsFlags(['--endpoint-url', 'sos-ch-dk-2.exo.io'], '--endpoint-url', /is not a URL/);
    rejectsFlags(['--endpoint-url', 'ftp://sos-ch-dk-2.exo.io'], '--endpoint-url', /is not an http\(s\) URL/);
    rejectsFlags(['--endpoint-url', 'https://key:secret@sos-ch-dk-2.exo.io'], '--endpoint-url', /must not contain credentials/);
    rejectsFlags(['--endpoint-url', 'https://sos-ch-dk-2.exo.io/?x=1'], '--endpoint-url', /query or fragment/);
  });

  test('--region sets the region; an empty region or one with a slash or space is a UsageError', () => {
    assert.equal(parse('--region', 'eu-west-1').region, 'eu-west-1');
    rejectsFlags(['--region='], '--region', /must not be empty/);
    rejectsFlags(['--region', 'eu/west'], '--region', /'eu\/west' is not valid/);
    rejectsFlags(['--region', 'eu west'], '--region', /is not valid/);
  });

  test('--force-path-style sets forcePathStyle', () => {
    assert.equal(parse('--force-path-style').forcePathStyle, true);
  });

  test("--prefix ending in '/' mounts that prefix; an empty prefix mounts the whole bucket", () => {
    assert.equal(parse('--prefix', 'photos/2024/').prefix, 'photos/2024/');
    assert.equal(parse('--prefix=').prefix, '');
  });

  test("--prefix without the trailing '/' is a UsageError, as in mount-s3", () => {
    rejectsFlags(['--prefix', 'photos'], '--prefix', "--prefix: 'photos' must end in '/'");
  });

  test('--storage-class is passed through; empty or malformed is a UsageError', () => {
    assert.equal(parse('--storage-class', 'STANDARD_IA').storageClass, 'STANDARD_IA');
    rejectsFlags(['--storage-class='], '--storage-class', /must not be empty/);
    rejectsFlags(['--storage-class', 'cold storage'], '--storage-class', /is not valid/);
  });

  test('--upload-checksums accepts crc32c and off, whatever the endpoint', () => {
    assert.equal(parse('--upload-checksums', 'off').uploadChecksums, 'off');
    assert.equal(parse('--upload-checksums', 'crc32c', '--zone', 'ch-dk-2').uploadChecksums, 'crc32c');
  });

  test('--upload-checksums defaults to crc32c on AWS and off on SOS or other S3-compatible endpoints', () => {
    assert.equal(parse().uploadChecksums, 'crc32c');
    assert.equal(parse('--endpoint-url', 'https://s3.eu-west-1.amazonaws.com').uploadChecksums, 'crc32c');
    assert.equal(parse('--zone', 'ch-gva-2').uploadChecksums, 'off');
    assert.equal(parse('--endpoint-url', 'http://127.0.0.1:9000').uploadChecksums, 'off');
  });

  test('--upload-checksums with another algorithm is a UsageError', () => {
    rejectsFlags(['--upload-checksums', 'md5'], '--upload-checksums', /'md5' is not supported \(expected crc32c or off\)/);
  });
});

describe('parseMountArgs: credentials', () => {
  test('--profile sets the profile; an empty one or one with spaces is a UsageError', () => {
    assert.equal(parse('--profile=exomount').profile, 'exomount');
    rejectsFlags(['--profile', ''], '--profile', /must not be empty/);
    rejectsFlags(['--profile', 'exo mount'], '--profile', /is not valid/);
  });
});

describe('parseMountArgs: mount options', () => {
  test('--read-only, --allow-delete, --allow-overwrite and --auto-unmount set their options', () => {
    assert.equal(parse('--read-only').readOnly, true);
    assert.equal(parse('--allow-delete').allowDelete, true);
    assert.equal(parse('--allow-overwrite').allowOverwrite, true);
    assert.equal(parse('--auto-unmount').autoUnmount, true);
  });

  test('--read-only with --allow-delete and --allow-overwrite is accepted, as in mount-s3', () => {
    const o = parse('--read-only', '--allow-delete', '--allow-overwrite');
    assert.deepEqual([o.readOnly, o.allowDelete, o.allowOverwrite], [true, true, true]);
  });

  test('--allow-other and --allow-root each set their option', () => {
    assert.equal(parse('--allow-other').allowOther, true);
    assert.equal(parse('--allow-root').allowRoot, true);
  });

  test('--allow-other with --allow-root is a UsageError, since libfuse refuses both', () => {
    rejectsFlags(['--allow-other', '--allow-root'], '--allow-other', /cannot be combined with --allow-root/);
  });

  test('--uid and --gid accept 0 to 4294967294', () => {
    const o = parse('--uid', '0', '--gid=4294967294');
    assert.equal(o.uid, 0);
    assert.equal(o.gid, 4294967294);
    assert.equal(parse('--uid', '501').uid, 501);
  });

  test('--uid and --gid that are not whole numbers in range are UsageErrors', () => {
    rejectsFlags(['--uid', '4294967295'], '--uid', /out of range \(0 to 4294967294\)/);
    rejectsFlags(['--gid', 'staff'], '--gid', "--gid: 'staff' is not a whole number");
    rejectsFlags(['--uid', '1.5'], '--uid', /is not a whole number/);
    rejectsFlags(['--uid', '1e3'], '--uid', /is not a whole number/);
    rejectsFlags(['--uid=-1'], '--uid', /is not a whole number/);
    rejectsFlags(['--uid', '-1'], '--uid', /requires a value <UID> but was followed by '-1'/);
  });

  test('--file-mode and --dir-mode take octal modes with or without the leading 0', () => {
    const o = parse('--file-mode', '0600', '--dir-mode', '700');
    assert.equal(o.fileMode, 0o600);
    assert.equal(o.dirMode, 0o700);
    assert.equal(parse('--file-mode=0').fileMode, 0);
    assert.equal(parse('--dir-mode', '0777').dirMode, 0o777);
  });

  test('--file-mode and --dir-mode that are not octal, or above 0777, are UsageErrors', () => {
    rejectsFlags(['--file-mode', '999'], '--file-mode', "--file-mode: '999' is not an octal mode (expected e.g. 0644)");
    rejectsFlags(['--file-mode', 'rw-r--r--'], '--file-mode', /is not an octal mode/);
    rejectsFlags(['--file-mode', '0o644'], '--file-mode', /is not an octal mode/);
    rejectsFlags(['--dir-mode', '7755'], '--dir-mode', /above 0777/);
    rejectsFlags(['--dir-mode='], '--dir-mode', /is not an octal mode/);
  });

  test('-f and --foreground run in the foreground', () => {
    assert.equal(parse('-f').foreground, true);
    assert.equal(parse('--foreground').foreground, true);
  });
});

describe('parseMountArgs: client options', () => {
  test('--max-threads accepts 1 to 256', () => {
    assert.equal(parse('--max-threads', '1').maxThreads, 1);
    assert.equal(parse('--max-threads=256').maxThreads, 256);
  });

  test('--max-threads out of range or not a number is a UsageError', () => {
    rejectsFlags(['--max-threads', '0'], '--max-threads', '--max-threads: 0 is out of range (1 to 256)');
    rejectsFlags(['--max-threads', '257'], '--max-threads', /out of range/);
    rejectsFlags(['--max-threads', 'many'], '--max-threads', /is not a whole number/);
  });

  test('--part-size sets both read and write part sizes', () => {
    const o = parse('--part-size', String(16 * MiB));
    assert.equal(o.readPartSizeBytes, 16 * MiB);
    assert.equal(o.writePartSizeBytes, 16 * MiB);
  });

  test('--read-part-size and --write-part-size override --part-size each on its own side', () => {
    const o = parse('--part-size', String(16 * MiB), '--read-part-size', String(MiB));
    assert.equal(o.readPartSizeBytes, MiB);
    assert.equal(o.writePartSizeBytes, 16 * MiB);
    const w = parse('--write-part-size', String(64 * MiB));
    assert.equal(w.readPartSizeBytes, 8 * MiB);
    assert.equal(w.writePartSizeBytes, 64 * MiB);
  });

  test('a write part of exactly 5 MiB and of 5 GiB is accepted', () => {
    assert.equal(parse('--write-part-size', String(5 * MiB)).writePartSizeBytes, 5 * MiB);
    assert.equal(parse('--part-size', String(5 * GiB)).writePartSizeBytes, 5 * GiB);
  });

  test('a write part below S3 5 MiB minimum is a UsageError naming the flag that set it', () => {
    rejectsFlags(['--write-part-size', String(5 * MiB - 1)], '--write-part-size', /below S3's minimum upload part size/);
    rejectsFlags(['--part-size', String(MiB)], '--part-size', /below S3's minimum.*--read-part-size/);
  });

  test('--part-size below 5 MiB is fine when --write-part-size sets the upload part', () => {
    const o = parse('--part-size', String(MiB), '--write-part-size', String(8 * MiB));
    assert.equal(o.readPartSizeBytes, MiB);
    assert.equal(o.writePartSizeBytes, 8 * MiB);
  });

  test('part sizes above 5 GiB, zero, or with units are UsageErrors', () => {
    rejectsFlags(['--part-size', String(5 * GiB + 1)], '--part-size', /out of range \(1 to 5368709120\)/);
    rejectsFlags(['--read-part-size', '0'], '--read-part-size', /out of range/);
    rejectsFlags(['--write-part-size', '8M'], '--write-part-size', /'8M' is not a number of bytes/);
    rejectsFlags(['--part-size', '8MiB'], '--part-size', /is not a number of bytes/);
  });
});

describe('parseMountArgs: caching options', () => {
  test('--metadata-ttl accepts minimal, indefinite and a number of seconds', () => {
    assert.deepEqual(parse('--metadata-ttl', 'minimal').metadataTtl, { kind: 'minimal' });
    assert.deepEqual(parse('--metadata-ttl', 'indefinite').metadataTtl, { kind: 'indefinite' });
    assert.deepEqual(parse('--metadata-ttl=60').metadataTtl, { kind: 'seconds', seconds: 60 });
  });

  test('--metadata-ttl 0 means minimal, as in mount-s3', () => {
    assert.deepEqual(parse('--metadata-ttl', '0').metadataTtl, { kind: 'minimal' });
  });

  test('--metadata-ttl that is not seconds, indefinite or minimal, or above 100 years, is a UsageError', () => {
    rejectsFlags(['--metadata-ttl', 'forever'], '--metadata-ttl', /'forever' is not a number of seconds, 'indefinite' or 'minimal'/);
    rejectsFlags(['--metadata-ttl', '1.5'], '--metadata-ttl', /is not a number of seconds/);
    rejectsFlags(['--metadata-ttl', '60s'], '--metadata-ttl', /is not a number of seconds/);
    rejectsFlags(['--metadata-ttl', '3153600001'], '--metadata-ttl', /100 years/);
  });

  test('--negative-metadata-ttl defaults to following --metadata-ttl and can be set on its own', () => {
    assert.equal(parse('--metadata-ttl', '60').negativeMetadataTtl, undefined);
    const o = parse('--metadata-ttl', 'indefinite', '--negative-metadata-ttl', '5');
    assert.deepEqual(o.metadataTtl, { kind: 'indefinite' });
    assert.deepEqual(o.negativeMetadataTtl, { kind: 'seconds', seconds: 5 });
    rejectsFlags(['--negative-metadata-ttl', 'never'], '--negative-metadata-ttl', /is not a number of seconds/);
  });

  test('metadataTtlMs: minimal is 1 s, seconds scale to ms, indefinite is 100 years and stays exact past Date.now()', () => {
    assert.equal(metadataTtlMs({ kind: 'minimal' }), 1000);
    assert.equal(metadataTtlMs({ kind: 'seconds', seconds: 60 }), 60_000);
    const forever = metadataTtlMs({ kind: 'indefinite' });
    assert.equal(forever, 100 * 365 * 24 * 3600 * 1000);
    assert.ok(Number.isSafeInteger(Date.now() + forever));
  });
});

describe('parseMountArgs: logging options', () => {
  test('--debug and -d enable debug logging', () => {
    assert.equal(parse('--debug').debug, true);
    assert.equal(parse('-d').debug, true);
  });

  test('--log-directory and -l resolve against cwd', () => {
    assert.equal(parse('--log-directory', 'logs').logDirectory, '/home/exouser/logs');
    assert.equal(parse('-l', '/var/log/sos').logDirectory, '/var/log/sos');
    assert.equal(parse('-l/var/log/sos').logDirectory, '/var/log/sos');
    rejectsFlags(['--log-directory='], '--log-directory', /must not be empty/);
  });

  test('--no-log disables logging; with --debug or --log-directory it is a UsageError, as in mount-s3', () => {
    assert.equal(parse('--no-log').noLog, true);
    rejectsFlags(['--no-log', '--debug'], '--no-log', /cannot be combined with --debug/);
    rejectsFlags(['--no-log', '--log-directory', 'logs'], '--no-log', /cannot be combined with --log-directory/);
  });
});

describe('parseMountArgs: syntax', () => {
  test('--flag=value and --flag value give the same result', () => {
    assert.deepEqual(parse('--region=ch-dk-2', '--uid=5'), parse('--region', 'ch-dk-2', '--uid', '5'));
  });

  test('short switches can be clustered: -fd is -f -d', () => {
    const o = parse('-fd');
    assert.equal(o.foreground, true);
    assert.equal(o.debug, true);
  });

  test('a switch given a value is a UsageError', () => {
    rejectsFlags(['--read-only=true'], '--read-only', /takes no value \(got 'true'\)/);
  });

  test('a value flag at the end of argv is a UsageError asking for its value', () => {
    rejects(['mybucket', 'mnt', '--region'], '--region', /requires a value <REGION>/);
  });

  test('a value flag followed by another flag is a UsageError rather than taking the flag as its value', () => {
    rejectsFlags(['--endpoint-url', '--profile', 'p'], '--endpoint-url', /followed by '--profile'/);
  });

  test('a flag given twice with the same value is accepted', () => {
    assert.equal(parse('--region', 'x', '--region', 'x').region, 'x');
    assert.equal(parse('--file-mode', '644', '--file-mode', '0644').fileMode, 0o644);
    assert.equal(parse('--read-only', '--read-only').readOnly, true);
  });

  test('a flag given twice with different values is a UsageError naming it', () => {
    rejectsFlags(['--region', 'a', '--region', 'b'], '--region', "--region: given twice with different values ('a' and 'b')");
    rejectsFlags(['--prefix', 'a/', '--prefix=b/'], '--prefix', /given twice/);
  });

  test('an unknown flag close to a known one is a UsageError suggesting it', () => {
    rejectsFlags(['--regoin', 'x'], '--regoin', '--regoin: unknown flag; did you mean --region?');
    rejectsFlags(['--allow-delet'], '--allow-delet', /did you mean --allow-delete\?/);
    rejectsFlags(['--readonly'], '--readonly', /did you mean --read-only\?/);
  });

  test('an unknown flag far from every known one is a UsageError without a suggestion', () => {
    rejectsFlags(['--turbo'], '--turbo', '--turbo: unknown flag (see sosmount --help)');
  });

  test('an unknown short flag is a UsageError naming it', () => {
    rejectsFlags(['-x'], '-x', /unknown flag/);
    rejectsFlags(['-fx'], '-x', /unknown flag/);
  });

  test('mount-s3 flags that sosmount does not implement are refused by name with the reason', () => {
    rejectsFlags(['--cache-xz', 'b'], '--cache-xz', /mount-s3's flag is not supported by sosmount: S3 Express One Zone caching is AWS-only/);
    rejectsFlags(['--sse=AES256'], '--sse', /server-side encryption is not supported/);
    rejectsFlags(['--no-sign-request'], '--no-sign-request', /not supported/);
    rejectsFlags(['--incremental-upload'], '--incremental-upload', /not supported/);
  });
});

describe('parseMountArgs: syntax read by parseArgs', () => {
  test('a short value flag takes the rest of its cluster or the next argument: -fl DIR, -l=DIR', () => {
    const o = parse('-fl', 'logs');
    assert.equal(o.foreground, true);
    assert.equal(o.logDirectory, '/home/exouser/logs');
    assert.equal(parse('-l=/var/log/sos').logDirectory, '/var/log/sos');
    assert.equal(parse('-l', '=logs').logDirectory, '/home/exouser/=logs', 'a separate argument is taken whole');
  });

  test('--help right after a value flag still prints help', () => {
    assert.equal(parseMountArgs(['--region', '--help'], ENV).kind, 'help');
    assert.equal(parseMountArgs(['-l', '-h'], ENV).kind, 'help');
  });

  test('a short or long value flag followed by a known flag is refused, naming the value flag', () => {
    rejectsFlags(['-l', '-d'], '--log-directory', /requires a value <DIRECTORY> but was followed by '-d'/);
    rejectsFlags(['--prefix', '--zone', 'bogus'], '--prefix', /followed by '--zone'/);
  });

  test("a lone '-' is a positional argument", () => {
    assert.equal(parseArgv(['mybucket', '-']).mountPoint, '/home/exouser/-');
  });
});

describe('buildMountOptions: a mount from named values (the tray)', () => {
  /** Expects buildMountOptions(args) and parseMountArgs(argv) to fail alike: same flag, same message. */
  function rejectsAlike(args: MountArgs, argv: string[]): void {
    let expected: UsageError | undefined;
    try {
      parseMountArgs(argv, ENV);
    } catch (err) {
      if (err instanceof UsageError) expected = err;
    }
    assert.ok(expected !== undefined, `sosmount ${argv.join(' ')} is refused`);
    assert.throws(
      () => buildMountOptions(args, ENV),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
        assert.equal(err.flag, expected?.flag);
        assert.equal(err.message, expected?.message);
        return true;
      },
    );
  }

  test('with only a bucket and a mount point every option takes the default the CLI gives with no flags', () => {
    assert.deepEqual(buildMountOptions({ bucket: 'mybucket', mountPoint: 'mnt' }, ENV), parse());
  });

  test("the tray's settings give the same MountOptions as the same flags on the command line", () => {
    assert.deepEqual(
      buildMountOptions(
        { bucket: 'mybucket', mountPoint: 'mnt', zone: 'ch-dk-2', prefix: 'photos/', readOnly: true, allowDelete: true, allowOverwrite: true, debug: true, logDirectory: '/logs' },
        ENV,
      ),
      parse('--zone', 'ch-dk-2', '--prefix', 'photos/', '--read-only', '--allow-delete', '--allow-overwrite', '--debug', '--log-directory', '/logs'),
    );
    assert.deepEqual(
      buildMountOptions({ bucket: 'mybucket', mountPoint: 'mnt', endpointUrl: 'http://127.0.0.1:9000', forcePathStyle: true, prefix: '' }, ENV),
      parse('--endpoint-url', 'http://127.0.0.1:9000', '--force-path-style', '--prefix='),
    );
  });

  test('every flag given as a named value means what it means on the command line', () => {
    const args: MountArgs = {
      bucket: 'mybucket',
      mountPoint: 'mnt',
      endpointUrl: 'https://sos-ch-dk-2.exo.io',
      region: 'ch-dk-2',
      profile: 'exomount',
      storageClass: 'STANDARD_IA',
      uploadChecksums: 'crc32c',
      uid: '501',
      gid: '20',
      fileMode: '0600',
      dirMode: '700',
      allowOther: true,
      autoUnmount: true,
      foreground: true,
      metadataTtl: '60',
      negativeMetadataTtl: 'indefinite',
      logDirectory: 'logs',
      maxThreads: '4',
      partSize: String(16 * MiB),
      readPartSize: String(MiB),
      writePartSize: String(32 * MiB),
    };
    const argv = [
      '--endpoint-url', 'https://sos-ch-dk-2.exo.io', '--region', 'ch-dk-2', '--profile', 'exomount',
      '--storage-class', 'STANDARD_IA', '--upload-checksums', 'crc32c', '--uid', '501', '--gid', '20',
      '--file-mode', '0600', '--dir-mode', '700', '--allow-other', '--auto-unmount', '-f', '--metadata-ttl', '60',
      '--negative-metadata-ttl', 'indefinite', '-l', 'logs', '--max-threads', '4', '--part-size', String(16 * MiB),
      '--read-part-size', String(MiB), '--write-part-size', String(32 * MiB),
    ];
    assert.deepEqual(buildMountOptions(args, ENV), parse(...argv));
    assert.deepEqual(buildMountOptions({ bucket: 'mybucket', mountPoint: 'mnt', noLog: true, allowRoot: true }, ENV), parse('--no-log', '--allow-root'));
  });

  test('a switch set to false or a value left undefined is the same as the flag left out', () => {
    assert.deepEqual(
      buildMountOptions({ bucket: 'mybucket', mountPoint: 'mnt', readOnly: false, debug: false, zone: undefined, prefix: undefined }, ENV),
      parse(),
    );
  });

  test('relative mountPoint and logDirectory resolve against cwd; without env the process gives cwd, uid and gid', () => {
    const o = buildMountOptions({ bucket: 'mybucket', mountPoint: '../mnt', logDirectory: 'logs' }, ENV);
    assert.equal(o.mountPoint, '/home/mnt');
    assert.equal(o.logDirectory, '/home/exouser/logs');
    const p = buildMountOptions({ bucket: 'mybucket', mountPoint: 'mnt' });
    assert.equal(p.mountPoint, `${process.cwd()}/mnt`);
    assert.equal(p.uid, process.getuid?.() ?? 0);
    assert.equal(p.gid, process.getgid?.() ?? 0);
  });

  test('invalid values fail with the same UsageError as on the command line, naming the flag', () => {
    const base = { bucket: 'mybucket', mountPoint: 'mnt' };
    rejectsAlike({ ...base, zone: 'ch-zrh-1' }, ['--zone', 'ch-zrh-1', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, zone: '' }, ['--zone=', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, prefix: 'photos' }, ['--prefix', 'photos', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, endpointUrl: 'ftp://x.example.com' }, ['--endpoint-url', 'ftp://x.example.com', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, zone: 'ch-dk-2', endpointUrl: 'https://sos-ch-dk-2.exo.io' }, ['--zone', 'ch-dk-2', '--endpoint-url', 'https://sos-ch-dk-2.exo.io', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, zone: 'ch-dk-2', region: 'de-fra-1' }, ['--zone', 'ch-dk-2', '--region', 'de-fra-1', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, logDirectory: '' }, ['--log-directory=', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, noLog: true, debug: true }, ['--no-log', '--debug', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, uid: '-1' }, ['--uid=-1', 'mybucket', 'mnt']);
    rejectsAlike({ ...base, partSize: String(MiB) }, ['--part-size', String(MiB), 'mybucket', 'mnt']);
    rejectsAlike({ ...base, allowOther: true, allowRoot: true }, ['--allow-other', '--allow-root', 'mybucket', 'mnt']);
    rejectsAlike({ bucket: 'My_Bucket', mountPoint: 'mnt' }, ['My_Bucket', 'mnt']);
    rejectsAlike({ bucket: 'mybucket', mountPoint: '' }, ['mybucket', '']);
    rejectsAlike({ bucket: 'mybucket', mountPoint: '/dev/fd/3' }, ['mybucket', '/dev/fd/3']);
  });

  test("a value beginning with '-' is a value, as --flag=value would be", () => {
    assert.equal(buildMountOptions({ bucket: 'mybucket', mountPoint: '-mnt', prefix: '-raw/' }, ENV).prefix, '-raw/');
    assert.equal(parse('--prefix=-raw/').prefix, '-raw/');
  });
});

describe('parseMountArgs: help and version', () => {
  test('--help and -h return the help text', () => {
    for (const flag of ['--help', '-h']) {
      const result = parseMountArgs([flag], ENV);
      assert.deepEqual(result, { kind: 'help', text: helpText() });
    }
  });

  test('--help wins over missing arguments and bad flags elsewhere on the line', () => {
    assert.equal(parseMountArgs(['--turbo', '--help'], ENV).kind, 'help');
    assert.equal(parseMountArgs(['mybucket', '--file-mode', '999', '-h'], ENV).kind, 'help');
  });

  test('--version, -V and -v return "sosmount <version from package.json>"', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(VERSION, pkg.version);
    for (const flag of ['--version', '-V', '-v']) {
      assert.deepEqual(parseMountArgs([flag], ENV), { kind: 'version', text: `sosmount ${pkg.version}` });
    }
  });

  test('the help text shows usage and groups the flags like mount-s3 help', () => {
    const text = helpText();
    assert.match(text, /Usage: sosmount \[OPTIONS\] <BUCKET_NAME> <DIRECTORY>/);
    const headings = ['Bucket options:', 'AWS credentials options:', 'Mount options:', 'Client options:', 'Caching options:', 'Logging options:'];
    let last = -1;
    for (const heading of headings) {
      const at = text.indexOf(`\n${heading}\n`);
      assert.ok(at > last, `${heading} present and in order`);
      last = at;
    }
  });

  test('the help text lists every accepted flag and every Exoscale zone', () => {
    const text = helpText();
    const flags = [
      '--endpoint-url', '--region', '--zone', '--profile', '--force-path-style', '--prefix', '--read-only',
      '--allow-delete', '--allow-overwrite', '--uid', '--gid', '--file-mode', '--dir-mode', '--allow-other',
      '--allow-root', '--auto-unmount', '-f, --foreground', '--metadata-ttl', '--negative-metadata-ttl',
      '-d, --debug', '-l, --log-directory', '--no-log', '--max-threads', '--part-size', '--read-part-size',
      '--write-part-size', '--upload-checksums', '--storage-class', '-h, --help', '-V, --version',
    ];
    for (const flag of flags) assert.ok(text.includes(flag), `help mentions ${flag}`);
    for (const z of EXOSCALE_ZONES) assert.ok(text.includes(z.zone) && text.includes(z.label), `help lists ${z.zone}`);
  });
});
