import { setTimeout as sleep } from 'node:timers/promises';

/** A token bucket: `ratePerSec` sustained, up to `burst` at once. */
export interface BucketSpec {
  ratePerSec: number;
  burst: number;
}

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

interface Bucket {
  tokens: number;
  at: number;
  spec: BucketSpec;
}

/**
 * Client-side token buckets, one per (action, scope), so this client stays inside Fly's limits instead of
 * collecting 429s. Callers over the limit wait their turn (reservations go negative, so waiters queue in order).
 */
export class ClientRateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /**
   * @param marginMs added to every wait: requests reach Fly a little later and less evenly than they leave, and
   *   Fly's bucket refills from the arrival of the previous request, so a request sent exactly on time can still
   *   find the server's bucket a few milliseconds short.
   */
  constructor(
    private readonly limits: RateLimits | false = FLY_LIMITS,
    private readonly now: () => number = Date.now,
    private readonly marginMs = 100,
  ) {}

  /** How long the caller must wait before sending (ms); the token is reserved already. */
  reserve(action: string, scope: string): number {
    if (!this.limits) return 0;
    const spec = action === 'get' ? this.limits.getMachine : this.limits.action;
    const key = `${action} ${scope}`;
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: spec.burst, at: now, spec };
      this.buckets.set(key, b);
      if (this.buckets.size > 2000) this.prune(now);
    }
    b.tokens = Math.min(spec.burst, b.tokens + ((now - b.at) / 1000) * spec.ratePerSec);
    b.at = now;
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens / spec.ratePerSec) * 1000) + this.marginMs;
  }

  async take(action: string, scope: string, signal?: AbortSignal): Promise<void> {
    const ms = this.reserve(action, scope);
    if (ms > 0) await sleep(ms, undefined, { signal });
  }

  /** Drops buckets that have refilled completely (they would be recreated full). */
  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      const full = b.tokens + ((now - b.at) / 1000) * b.spec.ratePerSec >= b.spec.burst;
      if (full) this.buckets.delete(k);
    }
  }
}
