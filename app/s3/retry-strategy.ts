/**
 * Retries and deadlines of every S3 request, stated here once.
 *
 * Transient faults (resets, refused or timed out connections), throttling
 * (SlowDown, 503) and 5xx are retried with capped exponential backoff, for
 * long enough to ride out an outage of several seconds (docs/reliability.md:
 * the server gone for 5 s). Client errors (403, 404, ...) are not retried.
 * Each request has one owner of its retries: the SDK, with
 * {@link OutageRetryStrategy}, for the requests it sends; requests.ts for
 * GETs and small PUTs. Unlike the SDK's standard strategy there is no
 * shared retry quota: during an outage every in-flight request of the
 * mount fails at once, and a quota would turn that into immediate EIOs.
 */
import type { RetryErrorInfo, RetryStrategyV2, RetryToken } from '@smithy/types';

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Opening a connection (TCP and TLS). */
export const CONNECT_TIMEOUT_MS = 10_000;
/** A request whose connection is silent this long (before or during its answer) is failed, and retried. */
export const INACTIVITY_TIMEOUT_MS = 10_000;
/** An unused connection is closed after this long: before the 5 s after which many servers (Node's among them) close theirs. */
export const IDLE_CONNECTION_MS = 4_000;

/**
 * 8 attempts with delays capped at 4 s wait 7 to 14 s in all; with the
 * inactivity timeout per attempt an SDK request fails within about 95 s,
 * under {@link FUSE_OP_TIMEOUT_MS}.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 100, maxDelayMs: 4_000 };

/**
 * A GET (a read, a lookup's first block) fails once this long passes
 * without a byte of its answer, whatever the attempts: a read's worst case
 * when the endpoint never recovers. Time waiting for a free connection
 * does not count. Long enough to ride out a 5 s outage and a stalled
 * connection or two (each cut after {@link INACTIVITY_TIMEOUT_MS}).
 */
export const READ_DEADLINE_MS = 30_000;

/**
 * When FUSE itself answers an operation EIO (fuse-adapter.ts): above every
 * bound here (a GET's deadline, an SDK request's ~95 s), so it only catches
 * our own bugs, never a slow request that is still being retried.
 */
export const FUSE_OP_TIMEOUT_MS = 120_000;

/** The delay before retry number `retry` (1-based), before jitter. */
export function backoffMs(retry: number, policy: RetryPolicy): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
}

/**
 * Equal jitter: half the backoff is always waited, so the retries of one
 * request span at least half the schedule (about 7 s), which a 5 s outage
 * needs; full jitter can add up to almost nothing.
 */
export function retryDelayMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const backoff = backoffMs(retry, policy);
  return Math.floor(backoff / 2 + random() * backoff / 2);
}

class Token implements RetryToken {
  constructor(private readonly count: number, private readonly delayMs: number) {}
  getRetryCount(): number {
    return this.count;
  }
  getRetryDelay(): number {
    return this.delayMs;
  }
}

export class OutageRetryStrategy implements RetryStrategyV2 {
  readonly mode = 'standard';
  private readonly policy: RetryPolicy;
  private readonly random: () => number;

  constructor(policy: RetryPolicy = DEFAULT_RETRY_POLICY, random: () => number = Math.random) {
    this.policy = policy;
    this.random = random;
  }

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return new Token(0, 0);
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const retry = token.getRetryCount() + 1;
    if (info.errorType === 'CLIENT_ERROR' || retry >= this.policy.maxAttempts) {
      throw info.error ?? new Error('request failed');
    }
    const hinted = info.retryAfterHint ? Math.max(0, info.retryAfterHint.getTime() - Date.now()) : 0;
    const delay = Math.max(hinted, retryDelayMs(retry, this.policy, this.random));
    return new Token(retry, Math.min(delay, this.policy.maxDelayMs));
  }

  recordSuccess(): void {
    // No quota to refill.
  }
}
