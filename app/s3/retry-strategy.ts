/**
 * Retries for every S3 request: transient faults (resets, refused or timed
 * out connections), throttling (SlowDown, 503) and 5xx are retried with
 * capped exponential backoff and full jitter, for long enough to ride out an
 * outage of several seconds (issue 7: the server gone for 5 s). Client
 * errors (403, 404, ...) are not retried. Unlike the SDK's standard
 * strategy there is no shared retry quota: during an outage every in-flight
 * request of the mount fails at once, and a quota would turn that into
 * immediate EIOs.
 */
import type { RetryErrorInfo, RetryStrategyV2, RetryToken } from '@smithy/types';

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * 8 attempts with delays capped at 4 s wait 7 to 14 s in all; with the
 * 10 s inactivity timeout per attempt (sdk-client.ts) a request fails within
 * about 95 s, under fuse-native's op timeout (fuse-adapter.ts).
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 100, maxDelayMs: 4_000 };

/** The delay before retry number `retry` (1-based), before jitter. */
export function backoffMs(retry: number, policy: RetryPolicy): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
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
    // Equal jitter: half the backoff is always waited, so the retries of one
    // request span at least half the schedule (about 7 s), which a 5 s outage
    // needs; full jitter can add up to almost nothing.
    const backoff = backoffMs(retry, this.policy);
    const delay = Math.max(hinted, Math.floor(backoff / 2 + this.random() * backoff / 2));
    return new Token(retry, Math.min(delay, this.policy.maxDelayMs));
  }

  recordSuccess(): void {
    // No quota to refill.
  }
}
