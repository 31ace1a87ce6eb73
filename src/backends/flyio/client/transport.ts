import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { httpCallOutcome, type BackendCallObserver } from '../../../core/backend-calls.js';
import { errorFromAnswer, FlyApiError } from './errors.js';
import { ClientRateLimiter, FLY_LIMITS, type RateLimits } from './ratelimit.js';

/**
 * How every Machines API request is sent: the bearer token, client-side rate limits, timeouts, typed errors that
 * keep `fly-request-id`, and retries with backoff and jitter within one deadline.
 *
 * A 429 is always sent again: Fly refuses it before doing anything. After a failure that may have been applied
 * (408, 5xx, network: "ambiguous") only an idempotent call is sent again; the others are made safe to repeat by
 * the operation that sends them (see machines.ts and leases.ts), or never repeated.
 */

export const DEFAULT_API_BASE = 'https://api.machines.dev';

export interface RetryPolicy {
  /** Attempts in all (first try included). */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** No new attempt starts after this much time has passed since the first. */
  maxElapsedMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 5000, maxElapsedMs: 60_000 };

/** For a look after an ambiguous failure: it only decides what to do next, so it must be quick. */
export const LOOK: Partial<RetryPolicy> = { maxAttempts: 3, maxElapsedMs: 5000 };

/** One request as sent (per attempt), for tests that validate bodies against the official spec. */
export interface RecordedRequest {
  method: string;
  /** Path including `/v1`, without the query string. */
  path: string;
  query: Record<string, string | string[]>;
  body: unknown;
}

export interface FlyClientOptions {
  app: string;
  token: string;
  /** Default https://api.machines.dev (what FLY_FLAPS_BASE_URL overrides). */
  baseUrl?: string;
  /** Fly's published limits by default; false turns the client-side limiter off. */
  rateLimits?: RateLimits | false;
  retry?: Partial<RetryPolicy>;
  /** HTTP timeout of an ordinary call (a wait call gets its own wait timeout plus a margin). Default 30 s. */
  requestTimeoutMs?: number;
  /** Called before every attempt with what is sent. */
  onRequest?: (r: RecordedRequest) => void;
  /** Called after every attempt with its action, outcome and duration (the wait for the rate limiter excluded). */
  onCall?: BackendCallObserver;
  logger?: Logger;
}

export type Query = Record<string, string | number | boolean | string[] | undefined>;

/** What one request is: the rate-limit bucket it counts against, and what is sent. */
interface RequestOptions {
  /** Rate-limit action name (the Machines API action: list, create, get, start …). */
  action: string;
  machineId?: string;
  query?: Query;
  body?: unknown;
  nonce?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface CallOptions extends RequestOptions {
  /** false: one attempt only; an object: a different policy for this call. */
  retry?: boolean | Partial<RetryPolicy>;
  /**
   * Whether sending it again after an ambiguous failure is harmless. Default: GET and DELETE yes, anything else no.
   */
  idempotent?: boolean;
  /** Epoch ms: the deadline of the whole operation this call belongs to. No retry starts (or sleeps) past it. */
  deadline?: number;
}

export interface Answer<T> {
  status: number;
  body: T;
  requestId: string | null;
}

/** Exponential backoff with jitter: half the capped exponential delay fixed, half random. */
export function backoff(attempt: number, p: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>): number {
  const cap = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

/** The backoff before sending again after `err`: a 429 waits at least 500 ms, as Fly's limiter refills slowly. */
export function retryDelay(attempt: number, err: FlyApiError, p: RetryPolicy): number {
  return backoff(attempt, err.status === 429 ? { ...p, baseDelayMs: Math.max(p.baseDelayMs, 500) } : p);
}

export class FlyTransport {
  readonly app: string;
  readonly baseUrl: string;
  readonly retryPolicy: RetryPolicy;
  readonly logger: Logger | undefined;
  private readonly limiter: ClientRateLimiter;
  private readonly requestTimeoutMs: number;

  constructor(private readonly opts: FlyClientOptions) {
    this.app = opts.app;
    this.baseUrl = (opts.baseUrl || DEFAULT_API_BASE).replace(/\/+$/, '');
    this.retryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
    this.logger = opts.logger;
    this.limiter = new ClientRateLimiter(opts.rateLimits === undefined ? FLY_LIMITS : opts.rateLimits);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  machinesPath(): string {
    return `/v1/apps/${encodeURIComponent(this.app)}/machines`;
  }

  machinePath(id: string): string {
    return `${this.machinesPath()}/${encodeURIComponent(id)}`;
  }

  secretsPath(): string {
    return `/v1/apps/${encodeURIComponent(this.app)}/secrets`;
  }

  /** One call, sent again by the retry policy (unless `retry: false`) when that is harmless; see the top. */
  async call<T>(method: string, path: string, o: CallOptions): Promise<Answer<T>> {
    const p = typeof o.retry === 'object' ? { ...this.retryPolicy, ...o.retry } : this.retryPolicy;
    const deadline = Math.min(o.deadline ?? Infinity, Date.now() + p.maxElapsedMs);
    const idempotent = o.idempotent ?? (method === 'GET' || method === 'DELETE');
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, path, o);
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.retryable || o.retry === false || o.signal?.aborted) throw e;
        if (!idempotent && e.status !== 429) throw e;
        const delay = retryDelay(attempt, e, p);
        if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
        this.logger?.debug({ method, path, status: e.status, err: e.message, fly_request_id: e.flyRequestId, attempt, delay_ms: delay }, 'fly api: retrying');
        await sleep(delay, undefined, { signal: o.signal });
      }
    }
  }

  /**
   * A GET whose answer is read as it arrives (the simulator's log stream): one attempt, and no HTTP timeout when
   * `endless` (a followed stream ends only when the caller aborts). Throws FlyApiError on a failure status;
   * network errors are thrown as they are.
   */
  async openStream(path: string, o: Pick<RequestOptions, 'action' | 'machineId' | 'query' | 'signal'> & { endless?: boolean }): Promise<Response> {
    await this.limiter.take(o.action, this.scopeOf(o), o.signal);
    this.record('GET', path, o.query ?? {}, undefined);
    const t0 = performance.now();
    let res: Response;
    try {
      res = await this.fetch('GET', path, { ...o, timeoutMs: o.endless ? undefined : this.requestTimeoutMs });
    } catch (e) {
      this.observed(o.action, 0, t0);
      throw e;
    }
    // A stream's time is until its answer begins: it then lasts as long as someone follows it.
    this.observed(o.action, res.status, t0);
    if (res.status < 300) return res;
    const body = parseMaybeJson(await res.text().catch(() => ''));
    throw errorFromAnswer(res.status, body, res.headers.get('fly-request-id'), 'GET', path);
  }

  private async once<T>(method: string, path: string, o: RequestOptions): Promise<Answer<T>> {
    await this.limiter.take(o.action, this.scopeOf(o), o.signal);
    this.record(method, path, o.query ?? {}, o.body);
    const t0 = performance.now();
    let res: Response;
    try {
      res = await this.fetchOrFail(method, path, o);
    } catch (e) {
      this.observed(o.action, 0, t0);
      throw e;
    }
    const requestId = res.headers.get('fly-request-id');
    let text: string;
    try {
      text = await res.text();
      this.observed(o.action, res.status, t0);
    } catch (e) {
      this.observed(o.action, 0, t0);
      throw new FlyApiError(0, `${method} ${path}: reading the answer failed: ${(e as Error).message}`, requestId, null, method, path, { cause: e });
    }
    const body = parseMaybeJson(text);
    if (res.status >= 300) {
      const err = errorFromAnswer(res.status, body, requestId, method, path);
      // 404 and 408 are ordinary answers (a gone machine, a wait slice over), not worth a line each.
      if (res.status !== 404 && res.status !== 408) {
        this.logger?.debug({ method, path, status: res.status, err: err.message, fly_request_id: requestId }, 'fly api error');
      }
      throw err;
    }
    return { status: res.status, body: body as T, requestId };
  }

  /** `fetch`, with a failure to get any answer as a FlyApiError 0 (retryable) unless the caller aborted. */
  private async fetchOrFail(method: string, path: string, o: RequestOptions): Promise<Response> {
    try {
      return await this.fetch(method, path, { ...o, timeoutMs: o.timeoutMs ?? this.requestTimeoutMs });
    } catch (e) {
      if (o.signal?.aborted) throw e;
      const cause = (e as { cause?: Error }).cause;
      const why = (e as Error).name === 'TimeoutError' ? 'timed out' : `${(e as Error).message}${cause ? `: ${cause.message}` : ''}`;
      throw new FlyApiError(0, `${method} ${path}: ${why}`, null, null, method, path, { cause: e });
    }
  }

  /** Rate limits count per machine for machine actions, per app for the others (Fly's buckets). */
  private scopeOf(o: { machineId?: string }): string {
    return o.machineId ? `machine:${o.machineId}` : `app:${this.app}`;
  }

  private observed(action: string, status: number, t0: number): void {
    if (!this.opts.onCall) return;
    try {
      this.opts.onCall(action, httpCallOutcome(status), (performance.now() - t0) / 1000);
    } catch {
      /* an observer must not break a call */
    }
  }

  private record(method: string, path: string, query: Query, body: unknown): void {
    if (!this.opts.onRequest) return;
    const q: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(query)) if (v !== undefined) q[k] = Array.isArray(v) ? v : String(v);
    try {
      this.opts.onRequest({ method, path, query: q, body: body === undefined ? undefined : JSON.parse(JSON.stringify(body)) });
    } catch {
      /* a recorder must not break a call */
    }
  }

  private fetch(method: string, path: string, o: Pick<RequestOptions, 'query' | 'body' | 'nonce' | 'timeoutMs' | 'signal'>): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}`, accept: 'application/json' };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    if (o.nonce) headers['fly-machine-lease-nonce'] = o.nonce;
    const signals = [o.timeoutMs ? AbortSignal.timeout(o.timeoutMs) : undefined, o.signal].filter((s): s is AbortSignal => !!s);
    return fetch(this.urlOf(path, o.query ?? {}), {
      method,
      headers,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      signal: signals.length ? AbortSignal.any(signals) : undefined,
    });
  }

  private urlOf(path: string, query: Query): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) qs.append(k, x);
      else qs.append(k, String(v));
    }
    return `${this.baseUrl}${path}${qs.size ? `?${qs}` : ''}`;
  }
}

function parseMaybeJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
