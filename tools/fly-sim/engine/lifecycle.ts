/**
 * start / stop / suspend / restart / signal / cordon / destroy, with Fly's preconditions and texts. Each
 * operation bumps the machine's epoch, so the async tail of an older operation sees it was overtaken and stops.
 */
import type { ExitInfo } from '../runner.js';
import { stripNulls } from '../spec.js';
import { clockSleep, isPlainObject, normalizeSignal, parseGoDuration, parseSecondsOrDuration, signalNumber } from '../util.js';
import { boot } from './boot.js';
import { stopChecks } from './checks.js';
import { requireNonce } from './leases.js';
import { first, truthy } from './query.js';
import type { EngineState } from './state.js';
import { err, type Json, type MachineEvent, type MachineRecord } from './types.js';

export function stopParams(cfg: Json, override: { signal?: unknown; timeout?: unknown } = {}): { signal: NodeJS.Signals; timeoutMs: number } {
  const signal = normalizeSignal(override.signal ?? cfg.stop_config?.signal ?? 'SIGTERM') ?? 'SIGTERM';
  let timeoutMs = 10_000;
  const t = override.timeout ?? cfg.stop_config?.timeout;
  if (t !== undefined) {
    const d = parseGoDuration(t);
    if (!(d instanceof Error)) timeoutMs = d;
  }
  return { signal, timeoutMs };
}

export function start(e: EngineState, app: string, id: string, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  requireNonce(e, m, nonce);
  const s = m.state;
  if (s === 'replacing') throw err(412, 'failed_precondition: machine getting replaced, refusing to start');
  if (s === 'created' && m.launchPending) throw err(412, "failed_precondition: unable to start machine from current state: 'created'");
  if (s === 'stopped' && e.clock.now() < m.stillActiveUntil) throw err(412, 'failed_precondition: machine still active, refusing to start');
  if (!['stopped', 'suspended', 'created', 'failed'].includes(s)) {
    throw err(412, `failed_precondition: unable to start machine from current state: '${s}'`);
  }
  if (e.faults.take(['insufficient_memory'], { action: 'start', app, machine: id })) {
    throw err(409, 'aborted: could not reserve resource for machine: insufficient memory available to fulfill request on the current host');
  }
  void boot(e, m, 'user');
  return { previous_state: s, migrated: false, new_host: '' };
}

export function stop(e: EngineState, app: string, id: string, body: unknown, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  e.validateBody('Machines_stop', body);
  requireNonce(e, m, nonce);
  const b: Json = isPlainObject(body) ? stripNulls(body) : {};
  if (b.timeout !== undefined) {
    const d = parseGoDuration(b.timeout);
    if (d instanceof Error) throw err(400, `invalid timeout: ${d.message}`);
  }
  const s = m.state;
  switch (s) {
    case 'started':
    case 'starting':
    case 'suspended': {
      const epoch = ++m.epoch;
      m.launchPending = false;
      stopChecks(e, m);
      e.transition(m, 'stopping', 'stop', 'user');
      const proc = m.proc;
      const { signal, timeoutMs } = stopParams(m.config, b);
      void (async () => {
        const info = proc?.alive ? await (s === 'suspended' ? proc.kill() : proc.stop(signal, timeoutMs)) : undefined;
        if (m.epoch !== epoch || e.closed) return;
        finishStopped(e, m, info);
      })();
      break;
    }
    case 'created':
    case 'failed':
      m.epoch++;
      m.launchPending = false;
      e.transition(m, 'stopped', 'stop', 'user');
      break;
    case 'stopping':
    case 'stopped':
      break; // already there (undocumented on Fly; answered ok here)
    default:
      throw err(412, `failed_precondition: unable to stop machine from current state: '${s}'`);
  }
  return { ok: true };
}

export function suspend(e: EngineState, app: string, id: string, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  requireNonce(e, m, nonce);
  if (m.state !== 'started') throw err(412, `failed_precondition: unable to suspend machine from current state: '${m.state}'`);
  if ((m.config.guest?.memory_mb ?? 256) > 2048 || m.config.guest?.gpus || m.config.schedule) {
    e.log(m, 'sim', 'suspend is not supported for this machine (> 2 GB RAM, GPU or schedule); falling back to stop');
    return stop(e, app, id, undefined, nonce);
  }
  const epoch = ++m.epoch;
  stopChecks(e, m);
  e.transition(m, 'suspending', 'suspend', 'user');
  const proc = m.proc;
  proc?.suspend();
  void (async () => {
    if (proc) await proc.confirmStopped();
    if (m.epoch === epoch && !e.closed) e.transition(m, 'suspended', 'suspend', 'flyd');
  })();
  return { ok: true };
}

export function restart(e: EngineState, app: string, id: string, query: Json, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  requireNonce(e, m, nonce);
  if (m.state !== 'started') throw err(412, `failed_precondition: unable to restart machine from current state: '${m.state}'`);
  let timeout: number | undefined;
  const qt = first(query.timeout);
  if (qt !== undefined && qt !== '') {
    const d = parseSecondsOrDuration(qt);
    if (d instanceof Error) throw err(400, `invalid timeout: ${d.message}`);
    timeout = d;
  }
  const qs = first(query.signal);
  if (qs !== undefined && qs !== '' && !normalizeSignal(qs)) throw err(400, `invalid signal "${qs}"`);
  const { signal, timeoutMs } = stopParams(m.config, { signal: qs || undefined });
  const forceStop = truthy(query.force_stop);
  const epoch = ++m.epoch;
  stopChecks(e, m);
  e.transition(m, 'restarting', 'restart', 'user');
  const proc = m.proc;
  void (async () => {
    if (proc?.alive) await (forceStop ? proc.kill() : proc.stop(signal, timeout ?? timeoutMs));
    if (m.epoch !== epoch || e.closed) return;
    m.restarts++;
    void boot(e, m, 'flyd');
  })();
  return { ok: true };
}

export function signal(e: EngineState, app: string, id: string, body: unknown, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  e.validateBody('Machines_signal', body);
  requireNonce(e, m, nonce);
  const b: Json = isPlainObject(body) ? body : {};
  if (b.signal === undefined || b.signal === null) throw err(400, 'invalid_argument: signal is required');
  const sig = normalizeSignal(b.signal);
  if (!sig) throw err(400, `invalid_argument: invalid signal ${JSON.stringify(b.signal)}`);
  if (!m.proc?.alive || !['started', 'starting'].includes(m.state)) {
    throw err(412, `failed_precondition: unable to signal machine from current state: '${m.state}'`);
  }
  e.log(m, 'sim', `signal ${sig} sent to the main process`);
  m.proc.signal(sig);
  return { ok: true };
}

export function cordon(e: EngineState, app: string, id: string, on: boolean, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  requireNonce(e, m, nonce);
  if (m.state === 'destroyed') throw err(412, "failed_precondition: unable to cordon machine from current state: 'destroyed'");
  m.cordoned = on;
  m.updatedAt = e.clock.now();
  return { ok: true };
}

export function destroy(e: EngineState, app: string, id: string, force: boolean, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  if (m.state === 'destroyed') throw err(404, 'machine not found');
  requireNonce(e, m, nonce);
  if (!force && !['stopped', 'suspended', 'failed', 'created'].includes(m.state)) {
    throw err(412, 'failed_precondition: unable to destroy machine, not currently stopped, suspended, failed or created');
  }
  startDestroy(e, m, 'user');
  return { ok: true };
}

function startDestroy(e: EngineState, m: MachineRecord, source: MachineEvent['source']): void {
  const epoch = ++m.epoch;
  m.launchPending = false;
  m.lease = undefined;
  stopChecks(e, m);
  if (m.state !== 'destroying') e.transition(m, 'destroying', 'destroy', source);
  const proc = m.proc;
  void (async () => {
    if (proc?.alive) await proc.kill();
    if (e.timing.slowDestroyMs > 0) await clockSleep(e.clock, e.timing.slowDestroyMs);
    if (m.epoch !== epoch) return;
    m.destroyedAt = e.clock.now();
    e.dropDisk(m);
    e.transition(m, 'destroyed', 'destroy', 'flyd');
    e.after(e.timing.destroyedVisibleMs, () => {
      if (e.machines.get(m.id) === m && m.state === 'destroyed') {
        e.machines.delete(m.id);
        e.graveyard.set(m.id, m);
      }
    });
  })();
}

/** The main process is gone for good (requested stop, or an exit the restart policy does not restart). */
export function finishStopped(e: EngineState, m: MachineRecord, info: ExitInfo | undefined): void {
  const request = info ? { exit_event: exitEvent(info, false) } : undefined;
  e.transition(m, 'stopped', 'exit', 'flyd', request);
  m.stillActiveUntil = e.clock.now() + e.timing.stillActiveMs;
  if (m.config.auto_destroy) {
    e.log(m, 'sim', 'auto_destroy: the main process exited and is not restarted; destroying the machine');
    startDestroy(e, m, 'flyd');
  }
}

export function exitEvent(info: ExitInfo, restarting: boolean): Json {
  const sig = info.signal ? signalNumber(info.signal) : -1;
  return {
    exit_code: info.exitCode,
    guest_exit_code: info.exitCode,
    guest_signal: sig,
    oom_killed: info.oomKilled,
    requested_stop: info.requestedStop,
    restarting,
    signal: sig,
    exited_at: new Date(info.exitedAt).toISOString(),
  };
}
