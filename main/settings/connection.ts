/**
 * "Test connection" and the bucket picker: where a target's requests go
 * (zone or endpoint URL), an S3 client for its profile with the secret from
 * the keychain, and each S3 failure in plain words with its request id, so a
 * user can quote it.
 */
import { HeadBucketCommand, ListBucketsCommand, type S3Client } from '@aws-sdk/client-s3';
import { describeKind, toS3Error, type S3RequestError } from '../../app/s3/errors.js';
import { exoscaleZone, isExoscaleZone, zoneForEndpoint } from '../../app/s3/zones.js';
import { IpcChannel, type ConnectionResult, type ConnectionTarget, type IpcHandlers } from '../ipc-contract.js';
import type { SettingsContext } from './context.js';
import { plural, sentence } from './messages.js';

export type ConnectionHandlers = Pick<IpcHandlers, typeof IpcChannel.TestConnection | typeof IpcChannel.ListBuckets>;

export const DEFAULT_CONNECTION_TIMEOUT_MS = 15_000;

function connectionFailure(err: S3RequestError, where: string): ConnectionResult {
  const requestId = err.requestId;
  const quote = requestId !== undefined ? ` (request id ${requestId})` : '';
  switch (err.kind) {
    case 'AccessDenied':
      return { outcome: 'access-denied', message: `Access denied${quote}. The key is valid but may not do this; check its permissions.`, bucketCount: undefined, requestId };
    case 'InvalidCredentials':
      return { outcome: 'invalid-credentials', message: `The server rejected the access key or secret${quote}. Check the profile's key and replace its secret.`, bucketCount: undefined, requestId };
    case 'ClockSkew':
      return { outcome: 'clock-skew', message: `This computer's clock differs too much from the server's${quote}. Set the date and time automatically, then try again.`, bucketCount: undefined, requestId };
    case 'Network':
    case 'Aborted': {
      const why = err.code !== undefined && err.code !== 'AbortError' ? ` (${err.code})` : err.kind === 'Aborted' ? ' (no answer in time)' : '';
      return { outcome: 'unreachable', message: `Could not reach ${where}${why}. Check the zone or endpoint URL and your network.`, bucketCount: undefined, requestId };
    }
    case 'NoSuchBucket':
    case 'NoSuchKey':
      return { outcome: 'bucket-not-found', message: `There is no bucket '${err.bucket}' at ${where}${quote}.`, bucketCount: undefined, requestId };
    default:
      return { outcome: 'failed', message: `${sentence(describeKind(err.kind))}${err.status !== undefined ? ` (HTTP ${err.status}${err.code ? ' ' + err.code : ''})` : ''}${quote}.`, bucketCount: undefined, requestId };
  }
}

/** The endpoint, region and a label for messages; or why the target cannot be tried. */
function resolveTarget(target: ConnectionTarget): { endpointUrl: string; region: string; where: string } | ConnectionResult {
  const invalid = (message: string): ConnectionResult => ({ outcome: 'invalid-target', message, bucketCount: undefined, requestId: undefined });
  if (target.zone !== undefined) {
    if (!isExoscaleZone(target.zone)) return invalid(`Unknown zone '${target.zone}'.`);
    const zone = exoscaleZone(target.zone);
    return { endpointUrl: zone.endpoint, region: zone.region, where: zone.endpoint };
  }
  const raw = target.endpointUrl?.trim() ?? '';
  if (raw === '') return invalid('Choose a zone or enter an endpoint URL first.');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return invalid(`'${raw}' is not a URL.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return invalid(`'${raw}' must start with https:// or http://.`);
  return { endpointUrl: raw, region: zoneForEndpoint(raw)?.region ?? 'us-east-1', where: url.host };
}

/** Runs `work` with an S3 client for the target's profile, or says why it cannot. */
async function withClient<T>(
  ctx: SettingsContext,
  target: ConnectionTarget,
  work: (client: S3Client, signal: AbortSignal, where: string) => Promise<T>,
): Promise<T | ConnectionResult> {
  const resolved = resolveTarget(target);
  if ('outcome' in resolved) return resolved;
  const profile = ctx.settings.get().profiles.find((p) => p.name === target.profile);
  if (profile === undefined) {
    return { outcome: 'invalid-target', message: target.profile === '' ? 'Choose a profile first.' : `There is no profile named '${target.profile}'.`, bucketCount: undefined, requestId: undefined };
  }
  const secret = await ctx.secrets.get(profile.name);
  if (secret === undefined) {
    return { outcome: 'no-secret', message: `The keychain has no secret for profile '${profile.name}'. Store it under Profiles.`, bucketCount: undefined, requestId: undefined };
  }
  const timeoutMs = ctx.connectionTimeoutMs;
  const client = ctx.createS3Client({
    bucket: target.bucket ?? '',
    endpointUrl: resolved.endpointUrl,
    region: resolved.region,
    forcePathStyle: target.forcePathStyle,
    profile: undefined,
    credentials: { accessKeyId: profile.accessKeyId, secretAccessKey: secret },
    maxConnections: 2,
    uploadChecksums: 'off',
    // One attempt: the user is waiting for an answer, and retries would
    // hide a wrong port behind backoff (and correct a skewed clock silently).
    maxAttempts: 1,
    connectTimeoutMs: timeoutMs,
    requestTimeoutMs: timeoutMs,
  });
  const signal = AbortSignal.any([ctx.lifetime, AbortSignal.timeout(timeoutMs)]);
  try {
    return await work(client, signal, resolved.where);
  } finally {
    client.destroy();
  }
}

export function connectionHandlers(ctx: SettingsContext): ConnectionHandlers {
  return {
    async [IpcChannel.TestConnection](target) {
      return withClient(ctx, target, async (client, signal, where) => {
        let bucketCount: number;
        try {
          const out = await client.send(new ListBucketsCommand({}), { abortSignal: signal });
          bucketCount = out.Buckets?.length ?? 0;
        } catch (err) {
          const failure = connectionFailure(toS3Error(err, { operation: 'ListBuckets', bucket: target.bucket ?? '' }), where);
          // A key limited to one bucket may not list buckets; the bucket itself may still be fine.
          if (failure.outcome !== 'access-denied' || target.bucket === undefined || target.bucket === '') return failure;
          try {
            await client.send(new HeadBucketCommand({ Bucket: target.bucket }), { abortSignal: signal });
          } catch {
            return failure;
          }
          return { outcome: 'ok', message: `Connected. Bucket '${target.bucket}' is there (this key may not list buckets).`, bucketCount: undefined, requestId: undefined };
        }
        const count = plural(bucketCount, 'bucket');
        if (target.bucket === undefined || target.bucket === '') {
          return { outcome: 'ok', message: `Connected: ${count}.`, bucketCount, requestId: undefined };
        }
        try {
          await client.send(new HeadBucketCommand({ Bucket: target.bucket }), { abortSignal: signal });
        } catch (err) {
          const failure = connectionFailure(toS3Error(err, { operation: 'HeadBucket', bucket: target.bucket }), where);
          if (failure.outcome === 'bucket-not-found') {
            return { ...failure, bucketCount, message: `Connected (${count}), but there is no bucket '${target.bucket}'.` };
          }
          return failure;
        }
        return { outcome: 'ok', message: `Connected: ${count}. Bucket '${target.bucket}' is there.`, bucketCount, requestId: undefined };
      });
    },

    async [IpcChannel.ListBuckets](target) {
      const result = await withClient(ctx, target, async (client, signal, where) => {
        try {
          const out = await client.send(new ListBucketsCommand({}), { abortSignal: signal });
          const buckets = (out.Buckets ?? []).map((b) => b.Name ?? '').filter((n) => n !== '').sort();
          return { ok: true as const, buckets };
        } catch (err) {
          return connectionFailure(toS3Error(err, { operation: 'ListBuckets', bucket: '' }), where);
        }
      });
      return 'outcome' in result ? { ok: false, failure: result } : result;
    },
  };
}
