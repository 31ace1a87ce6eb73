import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ClientRateLimiter, FLY_LIMITS, type RateLimits } from './ratelimit.js';

/**
 * A small Fly Machines API client (reference: /work/shared/reference/fly-machines-api.md; official spec
 * fly-machines-openapi3.json). It owns the transport rules every caller would otherwise get wrong: the
 * bearer token, typed errors that keep `fly-request-id`, retries with backoff and jitter, client-side rate limits,
 * `/wait` in ≤ 60 s slices, leases, idempotent create, and the transient 412s of `start`.
 *
 * What is sent again: a 429 always (Fly refuses it before doing anything). After a failure that may have been
 * applied (408, 5xx, network — "ambiguous"), only what is idempotent: GETs and DELETEs (destroy, lease release,
 * secret delete) and the secrets write. Every other call is made idempotent by looking first, or not resent at
 * all: create (by its metadata), lease acquisition (by a token in its description), update (by the version under
 * our lease), start and stop (by the machine's state); restart and signal are never resent. Each method says why.
 * An operation that retries has one deadline for all of it: the calls inside it do not bring loops of their own.
 */

export const DEFAULT_API_BASE = 'https://api.machines.dev';

// ---- shapes (the fields we read; Fly sends more) ----------------------------------------------------------

export interface FlyGuestConfig {
  cpu_kind?: string;
  cpus?: number;
  memory_mb?: number;
  [k: string]: unknown;
}

export interface FlyMachineConfig {
  image: string;
  env?: Record<string, string>;
  guest?: FlyGuestConfig;
  metadata?: Record<string, string>;
  services?: unknown[];
  restart?: { policy?: string; max_retries?: number };
  auto_destroy?: boolean;
  stop_config?: { signal?: string; timeout?: string };
  [k: string]: unknown;
}

export interface FlyMachineEvent {
  id?: string;
  type: string;
  status: string;
  source?: string;
  /** Epoch ms. */
  timestamp: number;
  request?: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface FlyMachine {
  id: string;
  name: string;
  state: string;
  region: string;
  /** The machine version (a 26-char ULID, new on every config update). */
  instance_id: string;
  version?: string;
  private_ip?: string;
  created_at?: string;
  updated_at?: string;
  config?: FlyMachineConfig;
  incomplete_config?: FlyMachineConfig | null;
  image_ref?: Record<string, unknown>;
  /** Newest first. */
  events?: FlyMachineEvent[];
  nonce?: string;
  host_status?: string;
}

export interface CreateMachineRequest {
  name?: string;
  region?: string;
  config: FlyMachineConfig;
  skip_launch?: boolean;
  lease_ttl?: number;
  /** Boot only once the app's secrets are at least this version (the `version` a secrets write answered). */
  min_secrets_version?: number;
}

export interface UpdateMachineRequest extends CreateMachineRequest {
  current_version?: string;
}

/** An app secret as listed (AppSecret): Fly answers names and digests, never values unless asked to show them. */
export interface FlyAppSecret {
  name: string;
  digest?: string;
  created_at?: string;
  updated_at?: string;
}

export interface FlyLease {
  nonce: string;
  /** Unix seconds. */
  expires_at: number;
  owner?: string;
  description?: string;
  version?: string;
}

// ---- errors -------------------------------------------------------------------------------------------------

/** A Machines API call that failed. `status` 0 means no HTTP answer (network error or client timeout). */
export class FlyApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly flyRequestId: string | null,
    readonly body: unknown,
    readonly method: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlyApiError';
  }

  get isNetwork(): boolean {
    return this.status === 0;
  }

  /** Fly's many capacity answers (reference §14.7): 503 insufficient_capacity, 409/412 insufficient resources, 403 quota. */
  get isCapacity(): boolean {
    const b = this.body as { status?: unknown } | null;
    if (b && typeof b === 'object' && b.status === 'insufficient_capacity') return true;
    if (![403, 409, 412, 503].includes(this.status)) return false;
    return /insufficient (capacity|resources|memory)|over the allowed quota|deploys to this host are temporarily disabled|could not reserve resource/i.test(
      this.message,
    );
  }

  /** Transient by Fly's own rules (flyctl: 408, 429, 5xx) and network errors — except capacity answers. */
  get retryable(): boolean {
    if (this.isCapacity) return false;
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }

  /** A failure after which the request may or may not have been applied (never a 429 or a capacity answer). */
  get ambiguous(): boolean {
    if (this.isCapacity) return false;
    return this.status === 0 || this.status === 408 || this.status >= 500;
  }

  /** 412 answers of `start` that go away by themselves a moment later (reference §4). */
  get transientStart(): boolean {
    return (
      this.status === 412 &&
      /machine still active, refusing to start|machine getting replaced, refusing to start|unable to start machine from current state: '(created|stopping|replacing)'/.test(
        this.message,
      )
    );
  }
}

/** Fly's error text: `message` first (lease envelopes), then `error`, else the raw body. */
export function flyErrorMessage(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const b = body as { message?: unknown; error?: unknown };
    if (typeof b.message === 'string' && b.message) return b.message;
    if (typeof b.error === 'string' && b.error) return b.error;
  }
  if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 500);
  return `HTTP ${status}`;
}

// ---- options ------------------------------------------------------------------------------------------------

export interface RetryPolicy {
  /** Attempts in all (first try included). */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** No new attempt starts after this much time has passed since the first. */
  maxElapsedMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 5000, maxElapsedMs: 60_000 };

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
  logger?: Logger;
}

type Query = Record<string, string | number | boolean | string[] | undefined>;

interface CallOptions {
  /** Rate-limit action name (the Machines API action: list, create, get, start …). */
  action: string;
  machineId?: string;
  query?: Query;
  body?: unknown;
  nonce?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** false: one attempt only; an object: a different policy for this call. */
  retry?: boolean | Partial<RetryPolicy>;
  /**
   * Whether sending it again after an ambiguous failure (408, 5xx, network: it may have been applied) is harmless.
   * Default: GET and DELETE yes, anything else no. A 429 is sent again either way (nothing happened).
   */
  idempotent?: boolean;
  /** Epoch ms: the deadline of the whole operation this call belongs to. No retry starts (or sleeps) past it. */
  deadline?: number;
}

/** The retry policy of a look after an ambiguous failure: short, it only decides what to do next. */
const LOOK: Partial<RetryPolicy> = { maxAttempts: 3, maxElapsedMs: 5000 };
/** A start has landed (the machine is on its way up, or up). */
const STARTED_LIKE = new Set(['starting', 'started']);
/** A stop has landed, or the machine is down anyway. */
const STOPPED_LIKE = new Set(['stopping', 'stopped', 'suspending', 'suspended', 'destroying', 'destroyed']);
/** A restart has landed and is under way. */
const RESTARTING = new Set(['restarting', 'starting']);

interface Answer<T> {
  status: number;
  body: T;
  requestId: string | null;
}

export const WAIT_SLICE_MAX_S = 60;

export class FlyClient {
  readonly app: string;
  readonly baseUrl: string;
  private readonly token: string;
  private readonly limiter: ClientRateLimiter;
  private readonly retryPolicy: RetryPolicy;
  private readonly requestTimeoutMs: number;
  /** Set when the server refused repeated `state` params on /wait (the pre-2026 API took one state). */
  private singleStateWait = false;

  constructor(private readonly opts: FlyClientOptions) {
    this.app = opts.app;
    this.token = opts.token;
    this.baseUrl = (opts.baseUrl || DEFAULT_API_BASE).replace(/\/+$/, '');
    this.limiter = new ClientRateLimiter(opts.rateLimits === undefined ? FLY_LIMITS : opts.rateLimits);
    this.retryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  // ---- machines -------------------------------------------------------------------------------------------

  /** GET …/machines with `metadata.<k>=<v>` filters (all must match). Destroyed machines are not listed. */
  async list(
    filter: { metadata?: Record<string, string>; state?: string[]; region?: string; includeDeleted?: boolean } = {},
    opts: { retry?: boolean; signal?: AbortSignal; deadline?: number } = {},
  ): Promise<FlyMachine[]> {
    const query: Query = {};
    for (const [k, v] of Object.entries(filter.metadata ?? {})) query[`metadata.${k}`] = v;
    if (filter.state?.length) query.state = filter.state.join(',');
    if (filter.region) query.region = filter.region;
    if (filter.includeDeleted) query.include_deleted = true;
    const r = await this.call<FlyMachine[]>('GET', this.machinesPath(), { action: 'list', query, retry: opts.retry, signal: opts.signal, deadline: opts.deadline });
    return Array.isArray(r.body) ? r.body : [];
  }

  async get(id: string, opts: { retry?: boolean | Partial<RetryPolicy>; signal?: AbortSignal; deadline?: number } = {}): Promise<FlyMachine> {
    return (await this.call<FlyMachine>('GET', this.machinePath(id), { action: 'get', machineId: id, retry: opts.retry, signal: opts.signal, deadline: opts.deadline })).body;
  }

  /** GET, with 404 (and a machine that is already `destroyed`) as null. */
  async find(id: string, opts: { retry?: boolean | Partial<RetryPolicy>; deadline?: number } = {}): Promise<FlyMachine | null> {
    try {
      const m = await this.get(id, opts);
      return m.state === 'destroyed' ? null : m;
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return null;
      throw e;
    }
  }

  /**
   * Creates a machine, never blindly twice (reference §8). Create has no request id, so `identity` (metadata
   * keys unique to this attempt, e.g. workspace id + provision id) must be in `req.config.metadata`. After an
   * ambiguous failure (408, 5xx, network) — or a 429 — the machines carrying that identity are listed and an
   * existing one is adopted instead of creating another. Returns the machine and whether it was adopted.
   */
  async create(req: CreateMachineRequest, identity: Record<string, string>): Promise<{ machine: FlyMachine; adopted: boolean; attempts: number }> {
    for (const [k, v] of Object.entries(identity)) {
      if (req.config.metadata?.[k] !== v) throw new Error(`create: identity ${k}=${v} must be in config.metadata`);
    }
    const p = this.retryPolicy;
    // One deadline for the creates and the look-ups between them.
    const deadline = Date.now() + p.maxElapsedMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.call<FlyMachine>('POST', this.machinesPath(), { action: 'create', body: req, retry: false });
        return { machine: r.body, adopted: false, attempts: attempt };
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.retryable) throw e;
        this.opts.logger?.warn({ err: e.message, status: e.status, fly_request_id: e.flyRequestId, attempt }, 'fly create failed; checking whether the machine exists');
        // Did it happen anyway? Ask before creating again (a 429 is checked too: a machine of an earlier ambiguous
        // attempt may only show up now). The look is made even at the deadline: a create that happened is adopted.
        const found = await this.findByMetadata(identity, { deadline });
        if (found) return { machine: found, adopted: true, attempts: attempt };
        const delay = backoff(attempt, e.status === 429 ? { ...p, baseDelayMs: Math.max(p.baseDelayMs, 500) } : p);
        if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
        await sleep(delay);
      }
    }
  }

  /**
   * The oldest live machine carrying all of `metadata`, or null. Fly documents no order for its list, so the oldest
   * is picked by `created_at` (second resolution: machines created in the same second keep the API's order).
   * Machines can take a moment to show up after a create: an empty answer is asked again (`attempts`, default 2).
   */
  async findByMetadata(metadata: Record<string, string>, opts: { attempts?: number; deadline?: number } = {}): Promise<FlyMachine | null> {
    const attempts = opts.attempts ?? 2;
    for (let i = 0; i < attempts; i++) {
      const ms = (await this.list({ metadata }, { deadline: opts.deadline })).filter((m) => m.state !== 'destroyed' && m.state !== 'destroying');
      if (ms.length) return oldest(ms);
      if (i + 1 < attempts) await sleep(300);
    }
    return null;
  }

  /**
   * Replaces the whole config (reference §3.1). Mints a new version; boots it if the machine was running.
   *
   * Never sent twice: after an ambiguous failure a second update would mint (and boot) another version. With
   * `req.current_version` and the nonce of our lease it is recognised instead: under our lease nobody else can
   * update the machine, so a machine found at another version carries our update, and is returned. Otherwise the
   * failure is thrown, and the caller looks at the machine before doing anything again.
   */
  async update(id: string, req: UpdateMachineRequest, nonce?: string): Promise<FlyMachine> {
    try {
      return (await this.call<FlyMachine>('POST', this.machinePath(id), { action: 'update', machineId: id, body: req, nonce })).body;
    } catch (e) {
      if (!(e instanceof FlyApiError) || !e.ambiguous || !req.current_version || !nonce) throw e;
      const m = await this.find(id, { retry: LOOK }).catch(() => undefined);
      if (m && m.instance_id && m.instance_id !== req.current_version && m.config?.image === req.config.image) {
        this.opts.logger?.warn({ machine_id: id, err: e.message, version: m.instance_id }, 'fly update: the answer was lost, but the machine has the new version');
        return m;
      }
      throw e;
    }
  }

  /**
   * POST …/start, all within one deadline (`transientDeadlineMs`, default 30 s):
   * - the documented transient 412s (right after create/update/stop, reference §4) are retried with backoff;
   * - after an ambiguous failure the machine is looked at first: `starting`/`started` means the start landed, and
   *   it is done. Otherwise the start is sent again. That is safe: Fly starts only a stopped, suspended, created or
   *   failed machine and answers 412 in any other state, so a start never boots a running machine again (a failed
   *   one whose boot failed again before we looked is booted once more — what the caller asked for). A later
   *   non-transient 412 may be the answer to a start of ours that landed meanwhile, so it is looked at too.
   */
  async start(id: string, opts: { nonce?: string; transientDeadlineMs?: number } = {}): Promise<{ previous_state?: string }> {
    const deadline = Date.now() + (opts.transientDeadlineMs ?? 30_000);
    let maybeApplied = false;
    for (let attempt = 1; ; attempt++) {
      let err: FlyApiError;
      try {
        return (await this.call<{ previous_state?: string }>('POST', `${this.machinePath(id)}/start`, { action: 'start', machineId: id, nonce: opts.nonce, deadline })).body ?? {};
      } catch (e) {
        if (!(e instanceof FlyApiError)) throw e;
        err = e;
      }
      if (err.ambiguous || (maybeApplied && err.status === 412 && !err.transientStart)) {
        maybeApplied = true;
        const m = await this.find(id, { retry: LOOK, deadline }).catch(() => undefined);
        if (m && STARTED_LIKE.has(m.state)) {
          this.opts.logger?.info({ machine_id: id, err: err.message, state: m.state }, 'fly start: the answer was lost, but the machine is starting');
          return {};
        }
        if (!err.ambiguous) throw err;
      } else if (!err.transientStart) {
        throw err;
      }
      const delay = err.transientStart ? Math.min(2000, 250 * attempt) + Math.floor(Math.random() * 100) : backoff(attempt, this.retryPolicy);
      if (Date.now() + delay > deadline) throw err;
      this.opts.logger?.debug({ machine_id: id, err: err.message, status: err.status, attempt }, 'fly start: retrying');
      await sleep(delay);
    }
  }

  /**
   * POST …/stop with an object body (an array is a 400 on Fly). After an ambiguous failure the machine is looked
   * at: stopping, stopped, suspended or gone means the stop landed (or the machine is down anyway), and it is done.
   * A machine still running gets the stop again, within one deadline (the retry policy's): harmless, since only a
   * machine that is not stopping is sent it.
   */
  async stop(id: string, body: { signal?: string; timeout?: string } = {}, nonce?: string): Promise<void> {
    const p = this.retryPolicy;
    const deadline = Date.now() + p.maxElapsedMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.call('POST', `${this.machinePath(id)}/stop`, { action: 'stop', machineId: id, body, nonce, deadline });
        return;
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.ambiguous) throw e;
        const m = await this.find(id, { retry: LOOK, deadline }).catch(() => undefined);
        if (m === null || (m && STOPPED_LIKE.has(m.state))) {
          this.opts.logger?.info({ machine_id: id, err: e.message, state: m?.state ?? 'gone' }, 'fly stop: the answer was lost, but the machine is stopping');
          return;
        }
        const delay = backoff(attempt, p);
        if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
        await sleep(delay);
      }
    }
  }

  /**
   * POST …/restart. Never sent twice: a second restart after one that landed restarts the agent again. After an
   * ambiguous failure the machine is looked at: `restarting`/`starting` means it landed, and it is done; otherwise
   * the failure is thrown — also for a restart so quick that the machine is `started` again when we look, which
   * cannot be told from one that never happened.
   */
  async restart(id: string, opts: { timeoutS?: number; signal?: string; nonce?: string } = {}): Promise<void> {
    const query: Query = {};
    if (opts.timeoutS !== undefined) query.timeout = `${opts.timeoutS}s`;
    if (opts.signal) query.signal = opts.signal;
    try {
      await this.call('POST', `${this.machinePath(id)}/restart`, { action: 'restart', machineId: id, query, nonce: opts.nonce });
    } catch (e) {
      if (!(e instanceof FlyApiError) || !e.ambiguous) throw e;
      const m = await this.find(id, { retry: LOOK }).catch(() => undefined);
      if (!m || !RESTARTING.has(m.state)) throw e;
      this.opts.logger?.info({ machine_id: id, err: e.message, state: m.state }, 'fly restart: the answer was lost, but the machine is restarting');
    }
  }

  /** POST …/signal. Never sent again after an ambiguous failure: a signal delivered twice is two signals. */
  async signal(id: string, signal: string, nonce?: string): Promise<void> {
    await this.call('POST', `${this.machinePath(id)}/signal`, { action: 'signal', machineId: id, body: { signal }, nonce });
  }

  /** DELETE …?force=true (idempotent: sent again after an ambiguous failure). Returns false when the machine was already gone (404). */
  async destroy(id: string, opts: { force?: boolean; nonce?: string } = {}): Promise<boolean> {
    try {
      await this.call('DELETE', this.machinePath(id), { action: 'destroy', machineId: id, query: opts.force === false ? {} : { force: true }, nonce: opts.nonce });
      return true;
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return false;
      throw e;
    }
  }

  async events(id: string, limit = 20): Promise<FlyMachineEvent[]> {
    const r = await this.call<FlyMachineEvent[]>('GET', `${this.machinePath(id)}/events`, { action: 'events', machineId: id, query: { limit } });
    return Array.isArray(r.body) ? r.body : [];
  }

  // ---- wait -----------------------------------------------------------------------------------------------

  /**
   * One `/wait` call (≤ 60 s). Resolves with the state reached; throws FlyApiError (408 when the slice ran out).
   * The HTTP timeout is the wait timeout plus a margin, so the long poll is never cut short by the client.
   */
  async waitOnce(id: string, opts: { states: string[]; version?: string; timeoutS: number; signal?: AbortSignal }): Promise<{ state: string; version?: string }> {
    const timeoutS = Math.max(1, Math.min(WAIT_SLICE_MAX_S, Math.ceil(opts.timeoutS)));
    const states = this.singleStateWait ? opts.states.slice(0, 1) : opts.states;
    const query: Query = { state: states.length > 1 ? states : states[0], timeout: timeoutS };
    if (opts.version) query.version = opts.version;
    try {
      const r = await this.call<{ ok?: boolean; state?: string; version?: string }>('GET', `${this.machinePath(id)}/wait`, {
        action: 'wait',
        machineId: id,
        query,
        timeoutMs: timeoutS * 1000 + 15_000,
        signal: opts.signal,
        retry: false,
      });
      return { state: r.body?.state ?? states[0], version: r.body?.version };
    } catch (e) {
      // An API that takes one state answers 400 about the list: remember, and ask for the first state only.
      if (e instanceof FlyApiError && e.status === 400 && states.length > 1 && /state/i.test(e.message) && !/version|instance_id/i.test(e.message)) {
        this.singleStateWait = true;
        return this.waitOnce(id, opts);
      }
      throw e;
    }
  }

  /**
   * Waits for one of `states` until `deadline` (epoch ms), in slices of ≤ 60 s. 408 (slice over), 429, 5xx and
   * network errors loop with a short backoff; 400 and 404 are thrown at once. `onSlice` sees every 408 (e.g. to
   * look at the machine between slices). Throws a FlyApiError 408 when the deadline passes.
   */
  async waitFor(
    id: string,
    opts: { states: string[]; version?: string; deadline: number; signal?: AbortSignal; onSlice?: (err: FlyApiError) => Promise<void> | void },
  ): Promise<{ state: string; version?: string }> {
    let attempt = 0;
    let last: FlyApiError | undefined;
    for (;;) {
      const left = opts.deadline - Date.now();
      if (left <= 0) {
        throw new FlyApiError(
          408,
          `machine ${id} did not reach ${opts.states.join('|')} in time${last ? ` (last answer: ${last.message})` : ''}`,
          last?.flyRequestId ?? null,
          last?.body ?? null,
          'GET',
          `${this.machinePath(id)}/wait`,
        );
      }
      try {
        return await this.waitOnce(id, { states: opts.states, version: opts.version, timeoutS: Math.min(WAIT_SLICE_MAX_S, Math.ceil(left / 1000)), signal: opts.signal });
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.retryable) throw e;
        last = e;
        if (e.status === 408) {
          attempt = 0;
          await opts.onSlice?.(e);
          continue;
        }
        attempt++;
        await sleep(Math.min(2000, 500 * attempt) + Math.floor(Math.random() * 250), undefined, { signal: opts.signal });
      }
    }
  }

  // ---- leases ---------------------------------------------------------------------------------------------

  /**
   * Takes the machine's lease (201 envelope), all within one deadline, `maxWaitMs` (default 60 s, as fly-go):
   * someone else's lease (409) is waited out, as the holder is normally mid-operation.
   *
   * Fly mints the nonce, so a lease whose answer was lost (an ambiguous failure) can only be recognised by what we
   * sent: the description carries a token unique to this acquisition, and GET …/lease shows it — that lease, with
   * its nonce, is ours. Nothing is acquired again before that look; a 409 after it (our own lease, taken by a
   * request whose answer never came) is looked at the same way.
   */
  async acquireLease(id: string, opts: { ttlS?: number; description?: string; maxWaitMs?: number } = {}): Promise<FlyLease> {
    const deadline = Date.now() + (opts.maxWaitMs ?? 60_000);
    const description = `${opts.description ?? 'molecule'} #${crypto.randomBytes(4).toString('hex')}`;
    const path = `${this.machinePath(id)}/lease`;
    let maybeOurs = false;
    for (let attempt = 1; ; attempt++) {
      let err: FlyApiError;
      try {
        const r = await this.call<{ data?: FlyLease } & Partial<FlyLease>>('POST', path, {
          action: 'lease_acquire',
          machineId: id,
          body: { ttl: opts.ttlS ?? 60, description },
          deadline,
        });
        const lease = r.body?.data ?? (r.body as FlyLease);
        if (!lease?.nonce) throw new FlyApiError(r.status, 'lease answer without a nonce', r.requestId, r.body, 'POST', path);
        return lease;
      } catch (e) {
        if (!(e instanceof FlyApiError) || (e.status >= 200 && e.status < 300)) throw e;
        err = e;
      }
      if (err.ambiguous || (maybeOurs && err.status === 409)) {
        maybeOurs = true;
        const mine = await this.ownLease(id, description, deadline);
        if (mine) {
          this.opts.logger?.info({ machine_id: id, err: err.message }, 'fly lease: the answer was lost, but the lease is ours');
          return mine;
        }
      } else if (err.status !== 409) {
        throw err;
      }
      const delay = err.status === 409 ? Math.min(3000, 500 * attempt) + Math.floor(Math.random() * 250) : backoff(attempt, this.retryPolicy);
      if (Date.now() + delay > deadline) throw err;
      await sleep(delay);
    }
  }

  /** The machine's lease when its description is `description` (ours), else null — also when the look fails. */
  private async ownLease(id: string, description: string, deadline: number): Promise<FlyLease | null> {
    try {
      const r = await this.call<{ data?: FlyLease } & Partial<FlyLease>>('GET', `${this.machinePath(id)}/lease`, { action: 'lease_get', machineId: id, retry: LOOK, deadline });
      const lease = r.body?.data ?? (r.body as FlyLease);
      return lease?.nonce && lease.description === description ? lease : null;
    } catch {
      return null;
    }
  }

  /** Releases the lease (idempotent: sent again after an ambiguous failure). A lease that expired or vanished ("lease not found") is not an error. */
  async releaseLease(id: string, nonce: string): Promise<void> {
    try {
      await this.call('DELETE', `${this.machinePath(id)}/lease`, { action: 'lease_release', machineId: id, nonce });
    } catch (e) {
      if (e instanceof FlyApiError && (e.status === 404 || /not found/i.test(e.message))) return;
      throw e;
    }
  }

  /** Runs fn while holding the machine's lease; always releases it (failures to release are logged). */
  async withLease<T>(id: string, description: string, fn: (nonce: string, lease: FlyLease) => Promise<T>, ttlS = 120): Promise<T> {
    const lease = await this.acquireLease(id, { ttlS, description });
    try {
      return await fn(lease.nonce, lease);
    } finally {
      await this.releaseLease(id, lease.nonce).catch((e) =>
        this.opts.logger?.warn({ machine_id: id, err: (e as Error).message }, 'fly lease release failed; it expires by itself'),
      );
    }
  }

  // ---- app secrets (reference §11: injected as env at boot) -------------------------------------------------

  /** GET …/secrets: names and digests (no values). */
  async listSecrets(opts: { retry?: boolean | Partial<RetryPolicy> } = {}): Promise<FlyAppSecret[]> {
    const r = await this.call<{ secrets?: FlyAppSecret[] }>('GET', this.secretsPath(), { action: 'secrets_list', retry: opts.retry });
    return Array.isArray(r.body?.secrets) ? r.body.secrets : [];
  }

  /**
   * POST …/secrets (AppSecretsUpdateRequest): sets several secrets at once. Returns the app's new secrets version.
   * Sent again after an ambiguous failure: setting the same values twice leaves the same secrets (only the version
   * moves on, and the answer of the last write is the version that has them).
   */
  async setSecrets(values: Record<string, string>): Promise<number | undefined> {
    const r = await this.call<{ version?: number; Version?: number }>('POST', this.secretsPath(), { action: 'secrets_update', body: { values }, idempotent: true });
    const v = r.body?.version ?? r.body?.Version;
    return typeof v === 'number' ? v : undefined;
  }

  /** DELETE …/secrets/{name}. Returns false when there was no such secret (404). */
  async deleteSecret(name: string): Promise<boolean> {
    try {
      await this.call('DELETE', `${this.secretsPath()}/${encodeURIComponent(name)}`, { action: 'secret_delete' });
      return true;
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return false;
      throw e;
    }
  }

  // ---- logs (fly-sim only; real Fly serves logs through flyctl / NATS) --------------------------------------

  /** The simulator's `GET …/{id}/logs` as lines. Throws FlyApiError 404 when the API has no such route (real Fly). */
  async *logs(id: string, opts: { tail?: number; follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<string> {
    const query: Query = { tail: opts.tail ?? 200 };
    if (opts.follow) query.follow = 1;
    const path = `${this.machinePath(id)}/logs`;
    await this.limiter.take('logs', `machine:${id}`, opts.signal);
    this.record('GET', path, query, undefined);
    const res = await this.fetchRaw('GET', path, query, undefined, undefined, opts.follow ? undefined : this.requestTimeoutMs, opts.signal);
    if (res.status >= 300) {
      const text = await res.text().catch(() => '');
      const body = parseMaybeJson(text);
      throw new FlyApiError(res.status, flyErrorMessage(res.status, body), res.headers.get('fly-request-id'), body, 'GET', path);
    }
    if (!res.body) return;
    const decoder = new TextDecoder();
    let partial = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const text = partial + decoder.decode(chunk, { stream: true });
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) yield l;
      }
    } catch (e) {
      if (opts.signal?.aborted) return;
      throw e;
    }
    if (partial) yield partial;
  }

  // ---- transport ------------------------------------------------------------------------------------------

  machinesPath(): string {
    return `/v1/apps/${encodeURIComponent(this.app)}/machines`;
  }

  secretsPath(): string {
    return `/v1/apps/${encodeURIComponent(this.app)}/secrets`;
  }

  machinePath(id: string): string {
    return `${this.machinesPath()}/${encodeURIComponent(id)}`;
  }

  /**
   * One call with the retry policy (unless `retry: false`), within `o.deadline` when given: a 429 backs off and is
   * sent again; 408/5xx/network errors too, but only for an idempotent call (`o.idempotent`, default GET/DELETE) —
   * the other calls may have been applied, and their methods decide what to do (see the comment at the top).
   */
  private async call<T>(method: string, path: string, o: CallOptions): Promise<Answer<T>> {
    const p = typeof o.retry === 'object' ? { ...this.retryPolicy, ...o.retry } : this.retryPolicy;
    const deadline = Math.min(o.deadline ?? Infinity, Date.now() + p.maxElapsedMs);
    const idempotent = o.idempotent ?? (method === 'GET' || method === 'DELETE');
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, path, o);
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.retryable || o.retry === false || o.signal?.aborted) throw e;
        if (!idempotent && e.status !== 429) throw e;
        const delay = backoff(attempt, e.status === 429 ? { ...p, baseDelayMs: Math.max(p.baseDelayMs, 500) } : p);
        if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
        this.opts.logger?.debug({ method, path, status: e.status, err: e.message, fly_request_id: e.flyRequestId, attempt, delay_ms: delay }, 'fly api: retrying');
        await sleep(delay, undefined, { signal: o.signal });
      }
    }
  }

  private async once<T>(method: string, path: string, o: CallOptions): Promise<Answer<T>> {
    const scope = o.machineId ? `machine:${o.machineId}` : `app:${this.app}`;
    await this.limiter.take(o.action, scope, o.signal);
    this.record(method, path, o.query ?? {}, o.body);
    let res: Response;
    try {
      res = await this.fetchRaw(method, path, o.query ?? {}, o.body, o.nonce, o.timeoutMs ?? this.requestTimeoutMs, o.signal);
    } catch (e) {
      if (o.signal?.aborted) throw e;
      const why = (e as Error).name === 'TimeoutError' ? 'timed out' : `${(e as Error).message}${(e as { cause?: Error }).cause ? `: ${(e as { cause: Error }).cause.message}` : ''}`;
      throw new FlyApiError(0, `${method} ${path}: ${why}`, null, null, method, path, { cause: e });
    }
    const requestId = res.headers.get('fly-request-id');
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new FlyApiError(0, `${method} ${path}: reading the answer failed: ${(e as Error).message}`, requestId, null, method, path, { cause: e });
    }
    const body = parseMaybeJson(text);
    if (res.status >= 300) {
      const err = new FlyApiError(res.status, flyErrorMessage(res.status, body), requestId, body, method, path);
      if (res.status !== 404 && res.status !== 408) {
        this.opts.logger?.debug({ method, path, status: res.status, err: err.message, fly_request_id: requestId }, 'fly api error');
      }
      throw err;
    }
    return { status: res.status, body: body as T, requestId };
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

  private fetchRaw(method: string, path: string, query: Query, body: unknown, nonce: string | undefined, timeoutMs: number | undefined, signal?: AbortSignal): Promise<Response> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) qs.append(k, x);
      else qs.append(k, String(v));
    }
    const url = `${this.baseUrl}${path}${qs.size ? `?${qs}` : ''}`;
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (nonce) headers['fly-machine-lease-nonce'] = nonce;
    const signals = [timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined, signal].filter((s): s is AbortSignal => !!s);
    return fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signals.length ? AbortSignal.any(signals) : undefined,
    });
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

/** The machine created first (by `created_at`; ties and unknown times keep the given order). */
function oldest(ms: FlyMachine[]): FlyMachine {
  const at = (m: FlyMachine) => {
    const t = Date.parse(m.created_at ?? '');
    return Number.isNaN(t) ? Infinity : t;
  };
  return ms.reduce((a, b) => (at(b) < at(a) ? b : a));
}

/** Exponential backoff with jitter: half the capped exponential delay fixed, half random. */
export function backoff(attempt: number, p: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>): number {
  const cap = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}
