/**
 * One error type for every S3 failure. It carries what a user or an operator
 * needs to quote the failure (operation, bucket, key, HTTP status, S3 code,
 * request ids) and keeps the SDK error as `cause`.
 */

/** What the file system needs to decide an errno; see app/fs/errors.ts. */
export type S3ErrorKind =
  | 'NoSuchKey'
  | 'NoSuchBucket'
  | 'NoSuchUpload'
  | 'AccessDenied'
  | 'InvalidCredentials'
  | 'ClockSkew'
  | 'PreconditionFailed'
  /** 409 ConditionalRequestConflict: a conditional write raced another write to the key. */
  | 'Conflict'
  | 'Throttled'
  | 'ServerError'
  | 'Network'
  | 'Aborted'
  | 'Other';

export interface S3ErrorDetails {
  operation: string;
  bucket: string;
  key?: string | undefined;
  status?: number | undefined;
  code?: string | undefined;
  requestId?: string | undefined;
  extendedRequestId?: string | undefined;
}

export class S3RequestError extends Error {
  override readonly name = 'S3RequestError';
  readonly kind: S3ErrorKind;
  readonly operation: string;
  readonly bucket: string;
  readonly key: string | undefined;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  readonly extendedRequestId: string | undefined;

  constructor(kind: S3ErrorKind, details: S3ErrorDetails, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.kind = kind;
    this.operation = details.operation;
    this.bucket = details.bucket;
    this.key = details.key;
    this.status = details.status;
    this.code = details.code;
    this.requestId = details.requestId;
    this.extendedRequestId = details.extendedRequestId;
  }

  /** Fields for a structured log line. */
  toLogFields(): Record<string, unknown> {
    return {
      kind: this.kind,
      operation: this.operation,
      bucket: this.bucket,
      key: this.key,
      status: this.status,
      code: this.code,
      requestId: this.requestId,
      extendedRequestId: this.extendedRequestId,
    };
  }
}

interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: number; requestId?: string; extendedRequestId?: string };
  $response?: { statusCode?: number; headers?: Record<string, string> };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
  'ENETUNREACH', 'ECONNABORTED', 'TimeoutError', 'RequestTimeout',
]);

function classify(code: string | undefined, status: number | undefined): S3ErrorKind {
  switch (code) {
    case 'NoSuchKey':
    case 'NotFound':
      return status === 404 || code === 'NoSuchKey' ? 'NoSuchKey' : 'Other';
    case 'NoSuchBucket':
      return 'NoSuchBucket';
    case 'NoSuchUpload':
      return 'NoSuchUpload';
    case 'AccessDenied':
    case 'AllAccessDisabled':
    case 'Forbidden':
      return 'AccessDenied';
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'ExpiredToken':
    case 'InvalidToken':
    case 'CredentialsProviderError':
      return 'InvalidCredentials';
    case 'RequestTimeTooSkewed':
      return 'ClockSkew';
    case 'PreconditionFailed':
      return 'PreconditionFailed';
    case 'ConditionalRequestConflict':
      return 'Conflict';
    // S3 documents it inside a 200 answer of CopyObject, UploadPartCopy and
    // CompleteMultipartUpload; the SDK gives that one status 503, which
    // would otherwise read as throttling.
    case 'InternalError':
      return 'ServerError';
    case 'SlowDown':
    case 'Throttling':
    case 'ThrottlingException':
    case 'TooManyRequestsException':
      return 'Throttled';
    case 'AbortError':
      return 'Aborted';
    default:
      break;
  }
  if (code !== undefined && NETWORK_CODES.has(code)) return 'Network';
  if (status === 404) return 'NoSuchKey';
  if (status === 403) return 'AccessDenied';
  if (status === 412) return 'PreconditionFailed';
  if (status === 503) return 'Throttled';
  if (status !== undefined && status >= 500) return 'ServerError';
  return 'Other';
}

/** Converts anything the SDK throws into an {@link S3RequestError}. */
export function toS3Error(err: unknown, details: S3ErrorDetails): S3RequestError {
  if (err instanceof S3RequestError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as SdkErrorShape & { errno?: unknown };
  const status = e.$metadata?.httpStatusCode ?? e.$response?.statusCode;
  let code = typeof e.Code === 'string' ? e.Code : typeof e.name === 'string' ? e.name : undefined;
  const sysCode = typeof e.code === 'string' ? e.code : undefined;
  if (sysCode !== undefined && NETWORK_CODES.has(sysCode)) code = sysCode;
  // The SDK names HEAD 404s "NotFound" and unknown ones "UnknownError" or the bare status.
  if (code === 'Error' || code === 'UnknownError') code = undefined;
  const kind = classify(code, status);
  const requestId = e.$metadata?.requestId;
  const extendedRequestId = e.$metadata?.extendedRequestId;
  const full: S3ErrorDetails = { ...details, status, code, requestId, extendedRequestId };
  const rawMessage = typeof e.message === 'string' && e.message !== '' && e.message !== 'UnknownError' ? e.message : undefined;
  const where = details.key !== undefined ? `s3://${details.bucket}/${details.key}` : `s3://${details.bucket}`;
  const parts = [`${details.operation} ${where} failed: ${describeKind(kind)}`];
  if (rawMessage !== undefined && rawMessage !== describeKind(kind)) parts.push(`(${rawMessage})`);
  if (status !== undefined) parts.push(`[HTTP ${status}${code ? ' ' + code : ''}]`);
  if (requestId) parts.push(`request id ${requestId}`);
  return new S3RequestError(kind, full, parts.join(' '), err);
}

export function describeKind(kind: S3ErrorKind): string {
  switch (kind) {
    case 'NoSuchKey': return 'no such key';
    case 'NoSuchBucket': return 'the bucket does not exist';
    case 'NoSuchUpload': return 'the multipart upload no longer exists';
    case 'AccessDenied': return 'access denied';
    case 'InvalidCredentials': return 'the credentials were rejected';
    case 'ClockSkew': return "this computer's clock differs too much from the server's";
    case 'PreconditionFailed': return 'the object is not the version the request expected';
    case 'Conflict': return 'another write to the key was in progress';
    case 'Throttled': return 'the server asked us to slow down';
    case 'ServerError': return 'server error';
    case 'Network': return 'the endpoint could not be reached';
    case 'Aborted': return 'aborted';
    case 'Other': return 'request failed';
  }
}

/**
 * Whether another attempt may succeed: server-side, throttling and transport
 * faults. A conditional PutObject or CopyObject that met a concurrent write
 * (409 ConditionalRequestConflict) may be sent again, as AWS documents; a
 * CompleteMultipartUpload may not (AWS: start a new multipart upload).
 */
export function isRetryable(err: S3RequestError): boolean {
  if (err.kind === 'Conflict') return err.operation === 'PutObject' || err.operation === 'CopyObject';
  return err.kind === 'ServerError' || err.kind === 'Throttled' || err.kind === 'Network';
}
