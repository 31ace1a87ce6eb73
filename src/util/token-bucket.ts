/** A token bucket: `ratePerSec` sustained, up to `burst` at once. */
export interface BucketSpec {
  ratePerSec: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
  spec: BucketSpec;
}

/**
 * Token buckets by key, refilled continuously from the time of their last use. One model for both sides of Fly's
 * rate limits: the simulator refuses a request when its bucket is empty (`tryTake`), the client reserves a token
 * ahead and waits until it is there (`reserve`), so both count the same way.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number) {}

  /** Takes a token if one is there; false means the caller must refuse (the server's side). */
  tryTake(key: string, spec: BucketSpec): boolean {
    const b = this.refilled(key, spec);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Takes a token if one is there and returns 0; otherwise takes nothing and returns the ms until one will be. */
  take(key: string, spec: BucketSpec): number {
    const b = this.refilled(key, spec);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / spec.ratePerSec) * 1000);
  }

  /**
   * Takes a token whether or not it is there yet; returns how long (ms) until it will have been (0: now). Waiters
   * queue in order, since the bucket goes negative (the client's side).
   */
  reserve(key: string, spec: BucketSpec): number {
    const b = this.refilled(key, spec);
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens / spec.ratePerSec) * 1000);
  }

  /** Drops buckets that have refilled completely (they would be recreated full). */
  prune(): void {
    const now = this.now();
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * b.spec.ratePerSec >= b.spec.burst) this.buckets.delete(k);
    }
  }

  clear(): void {
    this.buckets.clear();
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(key: string, spec: BucketSpec): Bucket {
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: spec.burst, at: now, spec };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(spec.burst, b.tokens + ((now - b.at) / 1000) * spec.ratePerSec);
    b.at = now;
    return b;
  }
}
