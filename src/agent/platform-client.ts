import type { Logger } from 'pino';
import type { HeartbeatRequest, RegisterRequest, RegistryResponse } from './contract.js';

/**
 * Registration and heartbeats. Runs on its own timers, so a long model call never delays a heartbeat (the
 * platform would otherwise take a busy agent for a dead one).
 *
 * States: registering → registered → (401/404 on heartbeat) registering … ; 410 → removed (terminal);
 * stop() → stopped.
 */

export type PlatformState = 'registering' | 'registered' | 'removed' | 'stopped';

export interface PlatformClientOptions {
  platformUrl: string;
  /** MOLECULE_WORKSPACE_TOKEN. Only ever placed in the Authorization header, never logged. */
  token: string;
  logger: Logger;
  registration: () => RegisterRequest;
  heartbeat: () => HeartbeatRequest;
  heartbeatIntervalMs: number;
  backoff?: { initialMs: number; maxMs: number };
  requestTimeoutMs?: number;
  /** Sends the requests; default the global fetch. Agents embedded by the thousand share a bounded connection pool. */
  fetch?: typeof fetch;
  /** Runs the heartbeat timer. Default: one setInterval per client; many agents in one process share one instead. */
  scheduler?: HeartbeatScheduler;
}

/** Calls `fn` every `ms` (first call after `ms`) until the returned function is called. */
export interface HeartbeatScheduler {
  every(ms: number, fn: () => void): () => void;
}

/** What a lone agent uses: its own setInterval. */
export const intervalScheduler: HeartbeatScheduler = {
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
};

/**
 * One timer for any number of periodic callbacks (agents embedded in one process): per period, a wheel of slots
 * `tickMs` wide; a callback sits in the slot where it was added and is called once per turn of the wheel, so the
 * callers keep the phases they started with (no lockstep) and each tick touches only the callbacks due.
 */
export class SharedHeartbeatScheduler implements HeartbeatScheduler {
  private readonly wheels = new Map<number, Wheel>();

  constructor(private readonly tickMs = 100) {}

  every(ms: number, fn: () => void): () => void {
    let wheel = this.wheels.get(ms);
    if (!wheel) {
      wheel = new Wheel(ms, this.tickMs, () => this.wheels.delete(ms));
      this.wheels.set(ms, wheel);
    }
    return wheel.add(fn);
  }

  /** Callbacks registered, over all periods. */
  get size(): number {
    let n = 0;
    for (const w of this.wheels.values()) n += w.size;
    return n;
  }

  /** Drops every callback and timer. */
  clear(): void {
    for (const w of this.wheels.values()) w.clear();
    this.wheels.clear();
  }
}

class Wheel {
  private readonly slots: Set<() => void>[];
  private readonly tick: number;
  private pos = 0;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(periodMs: number, tickMs: number, private readonly onEmpty: () => void) {
    const n = Math.max(1, Math.round(periodMs / tickMs));
    this.tick = periodMs / n;
    this.slots = Array.from({ length: n }, () => new Set<() => void>());
  }

  get size(): number {
    return this.count;
  }

  add(fn: () => void): () => void {
    // The slot the wheel reaches last, so the first call comes one period from now (as setInterval's does).
    const slot = this.slots[(this.pos + this.slots.length - 1) % this.slots.length]!;
    const entry = () => fn();
    slot.add(entry);
    this.count++;
    if (!this.timer) {
      this.timer = setInterval(() => this.turn(), this.tick);
      this.timer.unref();
    }
    return () => {
      if (!slot.delete(entry)) return;
      if (--this.count === 0) this.clear();
    };
  }

  private turn(): void {
    const slot = this.slots[this.pos]!;
    this.pos = (this.pos + 1) % this.slots.length;
    for (const fn of slot) fn();
  }

  clear(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const s of this.slots) s.clear();
    this.count = 0;
    this.onEmpty();
  }
}

export const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 5000 };

/** Exponential back-off with "equal jitter": half the delay is fixed, half random, so agents do not retry in lockstep. */
export function backoffDelay(attempt: number, backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

type Outcome = { kind: 'ok'; status: number; body: unknown } | { kind: 'http'; status: number; text: string } | { kind: 'network'; error: string };

export class PlatformClient {
  private stateValue: PlatformState = 'registering';
  private readonly stopController = new AbortController();
  private cancelHeartbeat: (() => void) | undefined;
  private heartbeatInFlight = false;
  private heartbeatFailures = 0;
  private resolveRemoved!: () => void;
  /** Resolves when the platform answers a heartbeat with 410 Gone: the workspace was deleted. */
  readonly removed: Promise<void> = new Promise((resolve) => (this.resolveRemoved = resolve));
  readonly stats = { registrations: 0, registerAttempts: 0, heartbeatsSent: 0, heartbeatsFailed: 0 };

  constructor(private readonly opts: PlatformClientOptions) {}

  get state(): PlatformState {
    return this.stateValue;
  }

  start(): void {
    void this.registerLoop();
  }

  /** Stops timers and aborts any request in flight. Idempotent. */
  stop(): void {
    if (this.stateValue !== 'removed') this.stateValue = 'stopped';
    this.clearHeartbeat();
    this.stopController.abort();
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private async registerLoop(): Promise<void> {
    const { logger } = this.opts;
    this.stateValue = 'registering';
    let attempt = 0;
    let lastProblem = '';
    while (!this.stopped) {
      attempt++;
      this.stats.registerAttempts++;
      const outcome = await this.post('/registry/register', this.opts.registration());
      if (this.stopped) return;
      if (outcome.kind === 'ok') {
        this.stats.registrations++;
        this.stateValue = 'registered';
        const body = outcome.body as Partial<RegistryResponse> | undefined;
        logger.info({ attempt, status: outcome.status, platform_status: body?.status ?? null }, 'registered with the platform');
        this.scheduleHeartbeats();
        return;
      }
      // Log each new kind of problem at warn, repeats only every tenth attempt, so a long outage stays readable.
      const problem = outcome.kind === 'network' ? `network: ${outcome.error}` : `http ${outcome.status}`;
      const level = problem !== lastProblem || attempt % 10 === 0 ? 'warn' : 'debug';
      lastProblem = problem;
      const delay = backoffDelay(attempt, this.opts.backoff);
      if (outcome.kind === 'http' && (outcome.status === 401 || outcome.status === 403)) {
        // The platform's answer says which: a token it does not accept, or a URL it does not vouch for.
        logger[level](
          { attempt, status: outcome.status, body: outcome.text.slice(0, 300), retry_in_ms: delay },
          'registration refused by the platform; retrying',
        );
      } else if (outcome.kind === 'http') {
        logger[level]({ attempt, status: outcome.status, body: outcome.text.slice(0, 200), retry_in_ms: delay }, 'registration failed; retrying');
      } else {
        logger[level]({ attempt, error: outcome.error, retry_in_ms: delay }, 'platform unreachable; retrying registration');
      }
      await this.sleep(delay);
    }
  }

  private scheduleHeartbeats(): void {
    this.clearHeartbeat();
    this.cancelHeartbeat = (this.opts.scheduler ?? intervalScheduler).every(this.opts.heartbeatIntervalMs, () => void this.beat());
  }

  private clearHeartbeat(): void {
    this.cancelHeartbeat?.();
    this.cancelHeartbeat = undefined;
  }

  private async beat(): Promise<void> {
    // A slow platform must not pile up concurrent heartbeats; the next tick carries fresher numbers anyway.
    if (this.heartbeatInFlight || this.stateValue !== 'registered') return;
    this.heartbeatInFlight = true;
    try {
      const outcome = await this.post('/registry/heartbeat', this.opts.heartbeat());
      if (this.stopped || this.stateValue !== 'registered') return;
      this.stats.heartbeatsSent++;
      this.handleHeartbeat(outcome);
    } finally {
      this.heartbeatInFlight = false;
    }
  }

  private handleHeartbeat(outcome: Outcome): void {
    const { logger } = this.opts;
    if (outcome.kind === 'ok') {
      if (this.heartbeatFailures > 0) logger.info({ failures: this.heartbeatFailures }, 'heartbeats recovered');
      this.heartbeatFailures = 0;
      return;
    }
    this.stats.heartbeatsFailed++;
    if (outcome.kind === 'http' && outcome.status === 410) {
      logger.warn({ status: 410 }, 'the platform says this workspace was removed; stopping');
      this.stateValue = 'removed';
      this.clearHeartbeat();
      this.stopController.abort();
      this.resolveRemoved();
      return;
    }
    if (outcome.kind === 'http' && (outcome.status === 401 || outcome.status === 404)) {
      logger.warn({ status: outcome.status }, 'the platform no longer knows this agent; registering again');
      this.clearHeartbeat();
      void this.registerLoop();
      return;
    }
    this.heartbeatFailures++;
    if (this.heartbeatFailures === 1 || this.heartbeatFailures % 10 === 0) {
      logger.warn(
        { failures: this.heartbeatFailures, ...(outcome.kind === 'http' ? { status: outcome.status } : { error: outcome.error }) },
        'heartbeat failed',
      );
    }
  }

  private async post(path: string, body: unknown): Promise<Outcome> {
    // Aborted by stop() or after the timeout; both are released as soon as the request ends, so nothing of a request
    // outlives it (AbortSignal.timeout would keep its timer, and AbortSignal.any its link, for the whole timeout).
    const request = new AbortController();
    const stop = this.stopController.signal;
    const onStop = () => request.abort(stop.reason);
    stop.addEventListener('abort', onStop, { once: true });
    const timer = setTimeout(
      () => request.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      this.opts.requestTimeoutMs ?? 10_000,
    );
    const signal = request.signal;
    if (stop.aborted) request.abort(stop.reason);
    try {
      const res = await (this.opts.fetch ?? fetch)(`${this.opts.platformUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.opts.token}` },
        body: JSON.stringify(body),
        signal,
      });
      const text = await res.text();
      if (res.ok) {
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined;
        }
        return { kind: 'ok', status: res.status, body: parsed };
      }
      return { kind: 'http', status: res.status, text };
    } catch (err) {
      return { kind: 'network', error: describeFetchError(err) };
    } finally {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const timer = setTimeout(done, ms);
      const signal = this.stopController.signal;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** fetch hides the useful part (ECONNREFUSED, ENOTFOUND…) in `cause`. */
function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: string; message?: string } | undefined;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  if (err.name === 'TimeoutError') return 'request timed out';
  return cause?.message ?? err.message;
}
