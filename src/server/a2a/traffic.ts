import type { PulseType } from '../../core/events.js';

/** One pulse per edge per this interval, per replica. */
export const CALLS_INTERVAL_MS = 1000;
/** Latency samples a pulse carries at most: enough for a p50 in the UI, small enough for a NOTIFY (Postgres). */
export const MAX_LATENCY_SAMPLES = 64;

/** The calls of one caller → target edge in the current interval. */
interface Edge {
  calls: number;
  errors: number;
  /** Samples held (≤ the cap). */
  n: number;
  samples: Float64Array;
}

export interface CallTrafficDeps {
  /** Where pulses go (EventBus.pulse): `workspace_id` is the target. */
  pulse(workspaceId: string, data: Record<string, unknown>, type: PulseType, at: string): void;
  intervalMs?: number;
  maxSamples?: number;
  /** For tests: the clock (`at` of a pulse), the timer and the sampling's randomness. */
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
  random?: () => number;
}

const unrefTimer = (fn: () => void, ms: number) => {
  const t = setTimeout(fn, ms);
  // News only: a pending pulse must not keep the process alive.
  t.unref();
  return t;
};

/**
 * Agent-to-agent call traffic for live views (the UI's team map): the proxy records each call of one workspace to
 * another; every interval each edge that had calls becomes one `a2a.calls` pulse with its count, errors and up to
 * `maxSamples` latencies (a uniform sample when there were more calls, so a p50 from them is unbiased).
 *
 * record() is on the proxy's hot path: two map lookups and a few numbers, no allocation once an edge is known in
 * the interval. The timer runs only while something waits to be flushed.
 */
export class CallTraffic {
  private edges = new Map<string, Map<string, Edge>>();
  private timer: unknown = undefined;
  private readonly intervalMs: number;
  private readonly maxSamples: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (t: unknown) => void;
  private readonly random: () => number;
  private readonly onTimer = () => {
    this.timer = undefined;
    this.flush();
  };

  constructor(private readonly d: CallTrafficDeps) {
    this.intervalMs = d.intervalMs ?? CALLS_INTERVAL_MS;
    this.maxSamples = d.maxSamples ?? MAX_LATENCY_SAMPLES;
    this.now = d.now ?? Date.now;
    this.setTimer = d.setTimer ?? unrefTimer;
    this.clearTimer = d.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
    this.random = d.random ?? Math.random;
  }

  /** Whether a flush is pending (tests: no traffic, no timer). */
  get pending(): boolean {
    return this.timer !== undefined;
  }

  /** One call from → to that took `ms` (to its answer, or a stream's first event), failed or not. */
  record(from: string, to: string, ms: number, failed: boolean): void {
    let byTarget = this.edges.get(from);
    if (!byTarget) this.edges.set(from, (byTarget = new Map()));
    let e = byTarget.get(to);
    if (!e) byTarget.set(to, (e = { calls: 0, errors: 0, n: 0, samples: new Float64Array(this.maxSamples) }));
    e.calls++;
    if (failed) e.errors++;
    if (e.n < this.maxSamples) e.samples[e.n++] = ms;
    else {
      // Reservoir sampling: every call of the interval has the same chance to be among the samples.
      const j = Math.floor(this.random() * e.calls);
      if (j < this.maxSamples) e.samples[j] = ms;
    }
    if (this.timer === undefined) this.timer = this.setTimer(this.onTimer, this.intervalMs);
  }

  /**
   * A call counted already failed later (a stream that broke after its first event). Counted only while its
   * interval is still open, so that every pulse has errors ≤ calls.
   */
  fail(from: string, to: string): void {
    const e = this.edges.get(from)?.get(to);
    if (e && e.errors < e.calls) e.errors++;
  }

  /** Emits one pulse per edge with calls in this interval, and starts the next interval empty. */
  flush(): void {
    if (this.timer !== undefined) {
      this.clearTimer(this.timer);
      this.timer = undefined;
    }
    if (this.edges.size === 0) return;
    const at = new Date(this.now()).toISOString();
    // Swapped first: a subscriber that throws must not leave the interval to be flushed again.
    const edges = this.edges;
    this.edges = new Map();
    for (const [from, byTarget] of edges) {
      for (const [to, e] of byTarget) {
        const latencies = new Array<number>(e.n);
        for (let i = 0; i < e.n; i++) latencies[i] = Math.round(e.samples[i]! * 10) / 10;
        this.d.pulse(to, { from, to, calls: e.calls, errors: e.errors, latencies_ms: latencies, interval_ms: this.intervalMs }, 'a2a.calls', at);
      }
    }
  }

  /** Drops what was not flushed: pulses are news, not records. */
  close(): void {
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
    this.edges.clear();
  }
}
