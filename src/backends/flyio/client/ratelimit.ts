import { setTimeout as sleep } from 'node:timers/promises';
import { TokenBuckets, type BucketSpec } from '../../../util/token-bucket.js';

export type { BucketSpec };

export interface RateLimits {
  /** Every action, per machine (per app for app-level actions): Fly publishes 1 req/s, bursts to 3. */
  action: BucketSpec;
  /** GET one machine: Fly publishes 5 req/s, bursts to 10. */
  getMachine: BucketSpec;
}

/** Fly's published limits (reference fly-machines-api.md §7). */
export const FLY_LIMITS: RateLimits = {
  action: { ratePerSec: 1, burst: 3 },
  getMachine: { ratePerSec: 5, burst: 10 },
};

/**
 * Client-side token buckets, one per (action, scope), so this client stays inside Fly's limits instead of
 * collecting 429s. Callers over the limit wait their turn (reservations go negative, so waiters queue in order).
 */
export class ClientRateLimiter {
  private readonly buckets: TokenBuckets;
  private prunedAt = 0;

  /**
   * @param marginMs added to every wait: requests reach Fly a little later and less evenly than they leave, and
   *   Fly's bucket refills from the arrival of the previous request, so a request sent exactly on time can still
   *   find the server's bucket a few milliseconds short.
   */
  constructor(
    private readonly limits: RateLimits | false = FLY_LIMITS,
    private readonly now: () => number = Date.now,
    private readonly marginMs = 100,
  ) {
    this.buckets = new TokenBuckets(now);
  }

  /** How long the caller must wait before sending (ms); the token is reserved already. */
  reserve(action: string, scope: string): number {
    if (!this.limits) return 0;
    const spec = action === 'get' ? this.limits.getMachine : this.limits.action;
    // Many machines, each with its buckets: forget the full ones now and then, not on every call.
    if (this.buckets.size > 2000 && this.now() - this.prunedAt > 1000) {
      this.prunedAt = this.now();
      this.buckets.prune();
    }
    const ms = this.buckets.reserve(`${action} ${scope}`, spec);
    return ms > 0 ? ms + this.marginMs : 0;
  }

  async take(action: string, scope: string, signal?: AbortSignal): Promise<void> {
    const ms = this.reserve(action, scope);
    if (ms > 0) await sleep(ms, undefined, { signal });
  }
}
