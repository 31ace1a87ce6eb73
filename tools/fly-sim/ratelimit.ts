/**
 * Token buckets as published by Fly (reference §7): per action and machine (per app for app-level actions)
 * 1 req/s sustained with bursts to 3; Get Machine 5 req/s with bursts to 10.
 */
import type { Clock } from './util.js';

export interface BucketSpec {
  /** Tokens added per second. */
  ratePerSec: number;
  /** Bucket size. */
  burst: number;
}

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

export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number; spec: BucketSpec }>();

  constructor(
    private readonly clock: Clock,
    public config: RateLimitConfig = FLY_RATE_LIMITS,
  ) {}

  private specFor(action: string): BucketSpec {
    return this.config.overrides?.[action] ?? (action === 'get' ? this.config.getMachine : this.config.action);
  }

  /** Takes one token for (action, scope). False means: answer 429. */
  take(action: string, scope: string): boolean {
    const key = `${action} ${scope}`;
    const now = this.clock.now();
    const spec = this.specFor(action);
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: spec.burst, at: now, spec };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(spec.burst, b.tokens + ((now - b.at) / 1000) * spec.ratePerSec);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    return false;
  }

  reset(): void {
    this.buckets.clear();
  }
}
