/**
 * Token buckets as published by Fly (reference §7): per action and machine (per app for app-level actions)
 * 1 req/s sustained with bursts to 3; Get Machine 5 req/s with bursts to 10.
 */
import { TokenBuckets, type BucketSpec } from '../../src/util/token-bucket.js';
import type { Clock } from './util.js';

export type { BucketSpec };

export interface RateLimitConfig {
  /** Default for every action (1/s, burst 3). */
  action: BucketSpec;
  /** GET one machine (5/s, burst 10). */
  getMachine: BucketSpec;
  /** Per-action overrides by action name. */
  overrides?: Record<string, BucketSpec>;
}

export const FLY_RATE_LIMITS: RateLimitConfig = {
  action: { ratePerSec: 1, burst: 3 },
  getMachine: { ratePerSec: 5, burst: 10 },
};

/** The simulator's side of Fly's limits: refuse (429) when the bucket is empty. The client paces with the same buckets. */
export class RateLimiter {
  private readonly buckets: TokenBuckets;

  constructor(
    clock: Clock,
    public config: RateLimitConfig = FLY_RATE_LIMITS,
  ) {
    this.buckets = new TokenBuckets(() => clock.now());
  }

  private specFor(action: string): BucketSpec {
    return this.config.overrides?.[action] ?? (action === 'get' ? this.config.getMachine : this.config.action);
  }

  /** Takes one token for (action, scope). False means: answer 429. */
  take(action: string, scope: string): boolean {
    return this.buckets.tryTake(`${action} ${scope}`, this.specFor(action));
  }

  reset(): void {
    this.buckets.clear();
  }
}
