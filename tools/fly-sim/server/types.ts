/**
 * The public shapes of startFlySim: its options, the handle it returns, the request log and the fault controller.
 * Apart from the server code so route modules and tests can name them without pulling in Fastify.
 */
import type { Engine, EngineOptions, MachineSnapshot, MachineState, SimTiming } from '../engine/index.js';
import type { Action, FaultSpec } from '../faults.js';
import type { LogLine } from '../runner.js';

export interface FlySimOptions extends EngineOptions {
  /** Listen address for both servers. Default 127.0.0.1. */
  host?: string;
  /** Machines API port. Default 0 (a free port). */
  port?: number;
  /** Proxy port. Default 0 (a free port). */
  proxyPort?: number;
  /** Accepted API token(s) (`Authorization: Bearer <t>` or `FlyV1 <t>`). Default `sim-token`. */
  token?: string | string[];
  /** Fastify logger option. Default false. */
  logger?: boolean | Record<string, unknown>;
  /** Request log capacity (oldest dropped first). Default 10000. */
  maxRequestLog?: number;
  /** Called after every API response is sent. */
  onRequestLogged?: (entry: RequestLogEntry) => void;
}

export interface RequestLogEntry {
  seq: number;
  requestId: string;
  /** Epoch ms (simulator clock) when the request arrived. */
  at: number;
  method: string;
  /** Path without the query string. */
  path: string;
  url: string;
  query: Record<string, unknown>;
  /** Parsed JSON body (or the raw text when it was not JSON); undefined without a body. */
  body: unknown;
  status: number;
  /** Simulator action name (`create`, `stop`, `wait` …) — also the names used by faults. */
  action?: string;
  app?: string;
  machineId?: string;
  leaseNonce?: string;
  durationMs: number;
}

export interface FaultController {
  /** Adds any FaultSpec; returns its id (0 for settings-type faults such as slow_boot). */
  add(spec: FaultSpec): number;
  list(): ReturnType<Engine['faults']['list']>;
  /** Removes one fault, or all. */
  clear(id?: number): void;
  /** The next `count` requests of `action` answer 429 `{"error":"rate limit exceeded"}`. */
  rateLimit(action: Action | '*', count?: number, scope?: { app?: string; machine?: string }): number;
  /** The next `count` requests of `action` answer `status` (500/502/503/504). */
  serverError(action: Action | '*', count?: number, status?: 500 | 502 | 503 | 504, scope?: { app?: string; machine?: string }): number;
  /** The next `count` requests of `action` are carried out, then answer `status` (default 503) instead. */
  lostResponse(action: Action | '*', count?: number, status?: 408 | 500 | 502 | 503 | 504, scope?: { app?: string; machine?: string }): number;
  /** The next `count` creates commit the machine, then answer 408. */
  createTimeout(count?: number, opts?: { app?: string; delayMs?: number }): number;
  /** Creates in `region` answer 503 insufficient_capacity (until cleared, or `count` times). */
  insufficientCapacity(region: string, count?: number): number;
  /** The next `count` create/update/start calls answer 409 insufficient memory. */
  insufficientMemory(action?: 'create' | 'update' | 'start', count?: number, scope?: { app?: string; machine?: string }): number;
  /** This image (reference or repository) cannot be pulled: machines using it end in `failed`. */
  unpullable(image: string): number;
  /** Every boot waits `ms` in `starting` before the process is spawned. */
  slowBoot(ms: number): void;
}

export interface FlySim {
  /** Machines API base URL (what FLY_FLAPS_BASE_URL should be). Paths are under `/v1`. */
  url: string;
  /** The proxy stand-in: send requests with `fly-force-instance-id: <machine id>`. */
  proxyUrl: string;
  /** First accepted token. */
  token: string;
  /** Environment for a platform using this simulator. */
  env: { FLY_FLAPS_BASE_URL: string; FLY_API_TOKEN: string; FLY_PROXY_URL: string };
  engine: Engine;
  faults: FaultController;
  timing: SimTiming;
  /** Every machine (optionally of one app), including pid and local port. */
  machines(app?: string): MachineSnapshot[];
  machine(id: string): MachineSnapshot | undefined;
  apps(): string[];
  /** The request log, oldest first, optionally filtered. */
  requests(filter?: { method?: string; action?: string; app?: string; machineId?: string }): RequestLogEntry[];
  clearRequests(): void;
  /** A machine's captured output (stdout, stderr and the simulator's own lines). */
  logs(machineId: string): LogLine[];
  /** Resolves when the machine reaches one of `states` (rejects after timeoutMs, real time). */
  waitForState(machineId: string, states: MachineState | MachineState[], timeoutMs?: number): Promise<MachineSnapshot>;
  /** Live child process ids. */
  pids(): number[];
  setRateLimits(on: boolean): void;
  /** Stops both servers and kills every child process. */
  close(): Promise<void>;
}
