import { setTimeout as sleep } from 'node:timers/promises';
import { FlyApiError, isNotFound } from './errors.js';
import { backoff, LOOK, retryDelay, type FlyTransport, type Query, type RetryPolicy } from './transport.js';
import type { CreateMachineRequest, FlyMachine, FlyMachineEvent, UpdateMachineRequest } from './types.js';

/**
 * The machine endpoints (reference fly-machines-api.md §3–§8). Only GETs and DELETEs are safe for the transport to
 * send again after an ambiguous failure (408, 5xx, network); every other call here is made safe by looking at the
 * machine first: create (by its metadata), update (by the version under our lease), start and stop (by the
 * machine's state). Restart and signal are never sent twice. Each function says why.
 */

export interface MachineFilter {
  /** `metadata.<k>=<v>` filters; all must match. */
  metadata?: Record<string, string>;
  state?: string[];
  region?: string;
  includeDeleted?: boolean;
  /** Only summary info (no config, checks, events…): what a caller that needs ids, states and metadata asks for. */
  summary?: boolean;
}

export interface ReadOptions {
  retry?: boolean | Partial<RetryPolicy>;
  signal?: AbortSignal;
  deadline?: number;
}

/** Destroyed machines are not listed. */
export async function listMachines(t: FlyTransport, filter: MachineFilter = {}, opts: ReadOptions = {}): Promise<FlyMachine[]> {
  const query: Query = {};
  for (const [k, v] of Object.entries(filter.metadata ?? {})) query[`metadata.${k}`] = v;
  if (filter.state?.length) query.state = filter.state.join(',');
  if (filter.region) query.region = filter.region;
  if (filter.includeDeleted) query.include_deleted = true;
  if (filter.summary) query.summary = true;
  const r = await t.call<FlyMachine[]>('GET', t.machinesPath(), { action: 'list', query, ...opts });
  return Array.isArray(r.body) ? r.body : [];
}

export async function getMachine(t: FlyTransport, id: string, opts: ReadOptions = {}): Promise<FlyMachine> {
  return (await t.call<FlyMachine>('GET', t.machinePath(id), { action: 'get', machineId: id, ...opts })).body;
}

/** A GET with 404 (and a machine that is already `destroyed`) as null. */
export async function findMachine(t: FlyTransport, id: string, opts: ReadOptions = {}): Promise<FlyMachine | null> {
  try {
    const m = await getMachine(t, id, opts);
    return m.state === 'destroyed' ? null : m;
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

/**
 * Creates a machine, never blindly twice (reference §8). Create has no request id, so `identity` (metadata keys
 * unique to this attempt, e.g. workspace id + provision id) must be in `req.config.metadata`: after a failure the
 * machines carrying it are listed, and one that exists is adopted instead of creating another.
 */
export async function createMachine(
  t: FlyTransport,
  req: CreateMachineRequest,
  identity: Record<string, string>,
): Promise<{ machine: FlyMachine; adopted: boolean; attempts: number }> {
  for (const [k, v] of Object.entries(identity)) {
    if (req.config.metadata?.[k] !== v) throw new Error(`create: identity ${k}=${v} must be in config.metadata`);
  }
  const p = t.retryPolicy;
  const deadline = Date.now() + p.maxElapsedMs; // one for the creates and the looks between them
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await t.call<FlyMachine>('POST', t.machinesPath(), { action: 'create', body: req, retry: false });
      return { machine: r.body, adopted: false, attempts: attempt };
    } catch (e) {
      if (!(e instanceof FlyApiError) || !e.retryable) throw e;
      t.logger?.warn({ err: e.message, status: e.status, fly_request_id: e.flyRequestId, attempt }, 'fly create failed; checking whether the machine exists');
      // A 429 is looked at too: the machine of an earlier ambiguous attempt may only show up now. The look is made
      // even at the deadline, so a create that happened is adopted rather than left behind.
      const found = await findMachineByMetadata(t, identity, { deadline });
      if (found) return { machine: found, adopted: true, attempts: attempt };
      const delay = retryDelay(attempt, e, p);
      if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
      await sleep(delay);
    }
  }
}

/**
 * The oldest live machine carrying all of `metadata`, or null. Machines can take a moment to show up in the list
 * after a create, so an empty answer is asked again (`attempts`, default 2).
 */
export async function findMachineByMetadata(
  t: FlyTransport,
  metadata: Record<string, string>,
  opts: { attempts?: number; deadline?: number } = {},
): Promise<FlyMachine | null> {
  const attempts = opts.attempts ?? 2;
  for (let i = 0; i < attempts; i++) {
    const ms = (await listMachines(t, { metadata }, { deadline: opts.deadline })).filter((m) => m.state !== 'destroyed' && m.state !== 'destroying');
    if (ms.length) return oldest(ms);
    if (i + 1 < attempts) await sleep(300);
  }
  return null;
}

/**
 * Replaces the whole config (reference §3.1): mints a new version and boots it if the machine was running.
 *
 * Never sent twice, as a second update would mint (and boot) another version. With `req.current_version` and the
 * nonce of our lease a lost answer is recognised instead: nobody else can update the machine under our lease, so
 * a machine found at another version carries our update. Otherwise the caller gets the failure and looks itself.
 */
export async function updateMachine(t: FlyTransport, id: string, req: UpdateMachineRequest, nonce?: string): Promise<FlyMachine> {
  try {
    return (await t.call<FlyMachine>('POST', t.machinePath(id), { action: 'update', machineId: id, body: req, nonce })).body;
  } catch (e) {
    if (!(e instanceof FlyApiError) || !e.ambiguous || !req.current_version || !nonce) throw e;
    const m = await look(t, id);
    if (m && m.instance_id && m.instance_id !== req.current_version && m.config?.image === req.config.image) {
      t.logger?.warn({ machine_id: id, err: e.message, version: m.instance_id }, 'fly update: the answer was lost, but the machine has the new version');
      return m;
    }
    throw e;
  }
}

/**
 * POST …/start, all within one deadline (`transientDeadlineMs`, default 30 s). The documented transient 412s
 * (right after create/update/stop, reference §4) are sent again with backoff. After an ambiguous failure the
 * machine is looked at, and a start is sent again only when the machine is not on its way up. That is safe: Fly
 * answers 412 to a start in any state but stopped, suspended, created or failed, so no running machine is booted
 * again.
 */
export async function startMachine(t: FlyTransport, id: string, opts: { nonce?: string; transientDeadlineMs?: number } = {}): Promise<{ previous_state?: string }> {
  const deadline = Date.now() + (opts.transientDeadlineMs ?? 30_000);
  let maybeApplied = false;
  for (let attempt = 1; ; attempt++) {
    let err: FlyApiError;
    try {
      return (await t.call<{ previous_state?: string }>('POST', `${t.machinePath(id)}/start`, { action: 'start', machineId: id, nonce: opts.nonce, deadline })).body ?? {};
    } catch (e) {
      if (!(e instanceof FlyApiError)) throw e;
      err = e;
    }
    // Once a start may have landed, a non-transient 412 may be the answer to it: look at that too.
    if (err.ambiguous || (maybeApplied && err.status === 412 && !err.transientStart)) {
      maybeApplied = true;
      if (await landed(t, id, err, START_LANDED, deadline)) return {};
      if (!err.ambiguous) throw err;
    } else if (!err.transientStart) {
      throw err;
    }
    const delay = err.transientStart ? Math.min(2000, 250 * attempt) + Math.floor(Math.random() * 100) : backoff(attempt, t.retryPolicy);
    if (Date.now() + delay > deadline) throw err;
    t.logger?.debug({ machine_id: id, err: err.message, status: err.status, attempt }, 'fly start: retrying');
    await sleep(delay);
  }
}

/**
 * POST …/stop with an object body (an array is a 400 on Fly). After an ambiguous failure a machine that is not
 * already stopping (or down) gets the stop again, within the retry policy's deadline.
 */
export async function stopMachine(t: FlyTransport, id: string, body: { signal?: string; timeout?: string } = {}, nonce?: string): Promise<void> {
  const p = t.retryPolicy;
  const deadline = Date.now() + p.maxElapsedMs;
  for (let attempt = 1; ; attempt++) {
    try {
      await t.call('POST', `${t.machinePath(id)}/stop`, { action: 'stop', machineId: id, body, nonce, deadline });
      return;
    } catch (e) {
      if (!(e instanceof FlyApiError) || !e.ambiguous) throw e;
      if (await landed(t, id, e, STOP_LANDED, deadline)) return;
      const delay = backoff(attempt, p);
      if (attempt >= p.maxAttempts || Date.now() + delay > deadline) throw e;
      await sleep(delay);
    }
  }
}

/**
 * POST …/restart. Never sent twice: a second restart restarts the agent again. A restart so quick that the machine
 * is `started` again when we look cannot be told from one that never happened, so that failure is thrown.
 */
export async function restartMachine(t: FlyTransport, id: string, opts: { timeoutS?: number; signal?: string; nonce?: string } = {}): Promise<void> {
  const query: Query = {};
  if (opts.timeoutS !== undefined) query.timeout = `${opts.timeoutS}s`;
  if (opts.signal) query.signal = opts.signal;
  try {
    await t.call('POST', `${t.machinePath(id)}/restart`, { action: 'restart', machineId: id, query, nonce: opts.nonce });
  } catch (e) {
    if (!(e instanceof FlyApiError) || !e.ambiguous) throw e;
    if (!(await landed(t, id, e, RESTART_LANDED))) throw e;
  }
}

/** POST …/signal. Never sent again after an ambiguous failure: a signal delivered twice is two signals. */
export async function signalMachine(t: FlyTransport, id: string, signal: string, nonce?: string): Promise<void> {
  await t.call('POST', `${t.machinePath(id)}/signal`, { action: 'signal', machineId: id, body: { signal }, nonce });
}

/** DELETE, by default with force=true. Returns false when the machine was already gone (404). */
export async function destroyMachine(t: FlyTransport, id: string, opts: { force?: boolean; nonce?: string } = {}): Promise<boolean> {
  try {
    await t.call('DELETE', t.machinePath(id), { action: 'destroy', machineId: id, query: opts.force === false ? {} : { force: true }, nonce: opts.nonce });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

export async function machineEvents(t: FlyTransport, id: string, limit = 20): Promise<FlyMachineEvent[]> {
  const r = await t.call<FlyMachineEvent[]>('GET', `${t.machinePath(id)}/events`, { action: 'events', machineId: id, query: { limit } });
  return Array.isArray(r.body) ? r.body : [];
}

// ---- recognising a request whose answer was lost --------------------------------------------------------------

/** The states that show a request landed, and how the log names it. */
interface Landing {
  request: string;
  underWay: string;
  states: ReadonlySet<string>;
  /** A machine that is gone shows it too (a stop: the machine is down anyway). */
  goneCounts?: boolean;
}

const START_LANDED: Landing = { request: 'start', underWay: 'starting', states: new Set(['starting', 'started']) };
const STOP_LANDED: Landing = {
  request: 'stop',
  underWay: 'stopping',
  states: new Set(['stopping', 'stopped', 'suspending', 'suspended', 'destroying', 'destroyed']),
  goneCounts: true,
};
const RESTART_LANDED: Landing = { request: 'restart', underWay: 'restarting', states: new Set(['restarting', 'starting']) };

/** The machine (null: gone), or undefined when even the look failed. */
function look(t: FlyTransport, id: string, deadline?: number): Promise<FlyMachine | null | undefined> {
  return findMachine(t, id, { retry: LOOK, deadline }).catch(() => undefined);
}

/** After an ambiguous failure: whether the machine shows that the request landed. */
async function landed(t: FlyTransport, id: string, err: FlyApiError, how: Landing, deadline?: number): Promise<boolean> {
  const m = await look(t, id, deadline);
  const yes = m === null ? how.goneCounts === true : m !== undefined && how.states.has(m.state);
  if (yes) t.logger?.info({ machine_id: id, err: err.message, state: m?.state ?? 'gone' }, `fly ${how.request}: the answer was lost, but the machine is ${how.underWay}`);
  return yes;
}

/** Fly documents no order for its list: the machine created first (ties and unknown times keep the API's order). */
function oldest(ms: FlyMachine[]): FlyMachine {
  const at = (m: FlyMachine) => {
    const time = Date.parse(m.created_at ?? '');
    return Number.isNaN(time) ? Infinity : time;
  };
  return ms.reduce((a, b) => (at(b) < at(a) ? b : a));
}
