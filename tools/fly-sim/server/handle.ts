/**
 * The in-process handle startFlySim returns: what a test wants to see or change without going through HTTP
 * (snapshots with pids and ports, the request log, faults by name, waiting for a state).
 */
import type { Engine, MachineEvent, MachineState } from '../engine/index.js';
import type { RequestLog } from './request-log.js';
import type { FaultController, FlySim } from './types.js';

export type TransitionListener = (m: { app: string; id: string; state: MachineState; event: MachineEvent }) => void;

export function faultController(engine: Engine): FaultController {
  const add = engine.faults.add.bind(engine.faults);
  return {
    add,
    list: () => engine.faults.list(),
    clear: (id) => engine.faults.clear(id),
    rateLimit: (action, count = 1, scope = {}) => add({ kind: 'rate_limit', action, count, ...scope }),
    serverError: (action, count = 1, status = 503, scope = {}) => add({ kind: 'server_error', action, count, status, ...scope }),
    lostResponse: (action, count = 1, status = 503, scope = {}) => add({ kind: 'lost_response', action, count, status, ...scope }),
    createTimeout: (count = 1, o = {}) => add({ kind: 'create_timeout', count, ...o }),
    insufficientCapacity: (region, count) => add({ kind: 'insufficient_capacity', region, count: count ?? null }),
    insufficientMemory: (action = 'create', count = 1, scope = {}) => add({ kind: 'insufficient_memory', action, count, ...scope }),
    unpullable: (image) => add({ kind: 'unpullable_image', image }),
    slowBoot: (ms) => void add({ kind: 'slow_boot', ms }),
  };
}

export interface HandleDeps {
  engine: Engine;
  url: string;
  proxyUrl: string;
  token: string;
  requestLog: RequestLog;
  /** Transition listeners; waitForState adds itself here while it waits. */
  transitionListeners: Set<TransitionListener>;
  /** Stops the servers after the engine has killed every child. */
  closeServers: () => Promise<unknown>;
}

export function simHandle({ engine, url, proxyUrl, token, requestLog, transitionListeners, closeServers }: HandleDeps): FlySim {
  let closing: Promise<void> | undefined;
  return {
    url,
    proxyUrl,
    token,
    env: { FLY_FLAPS_BASE_URL: url, FLY_API_TOKEN: token, FLY_PROXY_URL: proxyUrl },
    engine,
    faults: faultController(engine),
    timing: engine.timing,
    machines: (a) => engine.allMachines(a).map((m) => engine.snapshot(m)),
    machine: (id) => {
      const m = engine.machineById(id);
      return m ? engine.snapshot(m) : undefined;
    },
    apps: () => engine.appNames(),
    requests: (f = {}) => requestLog.filter(f),
    clearRequests: () => requestLog.clear(),
    logs: (id) => {
      const m = engine.machineById(id);
      return m ? engine.logs(m).tail() : [];
    },
    waitForState: (id, statesIn, timeoutMs = 30_000) => {
      const states = new Set<string>(([] as string[]).concat(statesIn));
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = engine.machineById(id);
          if (m && states.has(m.state)) {
            done();
            resolve(engine.snapshot(m));
            return true;
          }
          return false;
        };
        const listener: TransitionListener = (t) => {
          if (t.id === id) check();
        };
        const timer = setTimeout(() => {
          done();
          const m = engine.machineById(id);
          reject(new Error(`machine ${id} did not reach ${[...states].join('|')} within ${timeoutMs} ms (it is ${m?.state ?? 'gone'})`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          transitionListeners.delete(listener);
        };
        transitionListeners.add(listener);
        check();
      });
    },
    pids: () => engine.pids(),
    setRateLimits: (on) => {
      engine.rateLimitsEnabled = on;
      engine.rateLimiter.reset();
    },
    close: () => {
      closing ??= (async () => {
        await engine.close();
        await closeServers();
      })();
      return closing;
    },
  };
}
