/**
 * GET …/wait (reference §5). A wait is answered at once when the machine is already there, else parked on the
 * machine and answered by the transition that gets it there, by its timeout, or by the client going away.
 */
import type { TimerHandle } from '../util.js';
import type { EngineState } from './state.js';
import { err, SETTLED_STATES, type Json, type MachineRecord, type Waiter } from './types.js';

const WAITABLE = new Set(['started', 'stopped', 'suspended', 'destroyed', 'failed', 'settled']);
/** Waits an old (replaced) version can still satisfy: it is stopped for good. */
const OLD_VERSION_OK = new Set(['stopped', 'destroyed', 'settled']);

function waitResult(m: MachineRecord, w: Waiter): { status: number; body: unknown } | null {
  if (w.version && w.version !== m.version) {
    if ([...w.states].some((s) => OLD_VERSION_OK.has(s))) {
      return { status: 200, body: { ok: true, state: 'replaced', version: w.version, event_id: m.stateEventId } };
    }
    return null;
  }
  if (w.fromEventId && !(m.stateEventId > w.fromEventId)) return null;
  const hit = w.states.has(m.state) || (w.states.has('settled') && SETTLED_STATES.has(m.state));
  if (!hit) return null;
  return { status: 200, body: { ok: true, state: m.state, version: m.version, event_id: m.stateEventId } };
}

export function checkWaiters(m: MachineRecord): void {
  for (const w of [...m.waiters]) {
    const r = waitResult(m, w);
    if (r) {
      m.waiters.delete(w);
      w.resolve(r);
    }
  }
}

/** Resolves with the HTTP answer; `signal` aborts when the client goes away. */
export async function wait(e: EngineState, app: string, id: string, query: Json, signal?: AbortSignal): Promise<{ status: number; body: unknown }> {
  const m = e.machine(app, id);
  const raw: string[] = ([] as unknown[])
    .concat(query.state ?? [])
    .flatMap((s) => String(s).split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  const states = raw.length ? raw : ['started'];
  for (const s of states) {
    if (!WAITABLE.has(s)) {
      throw err(400, `invalid_argument: invalid WaitMachineRequest.State: "${s}" is not one of started, stopped, suspended, destroyed, failed, settled`);
    }
  }
  let timeoutS = 60;
  const t = Array.isArray(query.timeout) ? query.timeout[query.timeout.length - 1] : query.timeout;
  if (t !== undefined && t !== '') {
    if (!/^-?\d+$/.test(String(t).trim()) || Number(t) < 1 || Number(t) > 60) {
      throw err(400, 'invalid_argument: invalid WaitMachineRequest.Timeout: value must be inside range [1s, 1m0s]');
    }
    timeoutS = Number(t);
  }
  const version = (query.version ?? query.instance_id) as string | undefined;
  if (states.includes('stopped') && !version) throw err(400, 'instance_id required when waiting for stopped machine');
  if (version && version !== m.version && !m.versions.some((v) => v.version === version)) {
    throw err(400, `invalid_argument: machine ${m.id} has no version ${version}`);
  }
  const w: Waiter = {
    states: new Set(states),
    version,
    fromEventId: typeof query.from_event_id === 'string' && query.from_event_id ? query.from_event_id : undefined,
    resolve: () => undefined,
  };
  if (version && version !== m.version && !states.some((s) => OLD_VERSION_OK.has(s))) {
    throw err(400, `invalid_argument: machine version ${version} was replaced by ${m.version}; it will not reach ${states.join(',')}`);
  }
  const now = waitResult(m, w);
  if (now) return now;
  return new Promise((resolve) => {
    let timer: TimerHandle | undefined = undefined;
    const finish = (r: { status: number; body: unknown }) => {
      e.cancel(timer);
      signal?.removeEventListener('abort', onAbort);
      m.waiters.delete(w);
      resolve(r);
    };
    const onAbort = () => finish({ status: 499, body: { error: 'client closed request' } });
    w.resolve = finish;
    m.waiters.add(w);
    timer = e.after(timeoutS * 1000, () =>
      finish({
        status: 408,
        body: { error: `deadline_exceeded: machine failed to reach desired state, ${states.join(',')}, currently ${m.state}` },
      }),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}