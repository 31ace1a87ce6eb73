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
  private heartbeatTimer: NodeJS.Timeout | undefined;
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
    this.heartbeatTimer = setInterval(() => void this.beat(), this.opts.heartbeatIntervalMs);
  }

  private clearHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
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
    const signal = AbortSignal.any([this.stopController.signal, AbortSignal.timeout(this.opts.requestTimeoutMs ?? 10_000)]);
    try {
      const res = await fetch(`${this.opts.platformUrl}${path}`, {
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
