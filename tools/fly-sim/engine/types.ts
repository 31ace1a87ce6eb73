/**
 * The engine's vocabulary: machine states, records, options, timing and the ApiError every module throws.
 * Kept apart so the behaviour modules can share the types without importing each other.
 */
import type { RateLimitConfig } from '../ratelimit.js';
import type { BootCommand, ExitInfo, LogBuffer, LogLine, MainProcess } from '../runner.js';
import type { Clock, ImageRef, TimerHandle } from '../util.js';

export type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export type MachineState =
  | 'created'
  | 'starting'
  | 'started'
  | 'stopping'
  | 'stopped'
  | 'suspending'
  | 'suspended'
  | 'restarting'
  | 'replacing'
  | 'destroying'
  | 'destroyed'
  | 'failed';

/** Non-transient states (what `wait?state=settled` accepts). */
export const SETTLED_STATES: ReadonlySet<string> = new Set(['created', 'started', 'stopped', 'suspended', 'failed', 'destroyed']);

export interface MachineEvent {
  id: string;
  type: 'launch' | 'start' | 'exit' | 'stop' | 'update' | 'restart' | 'destroy' | 'suspend';
  status: string;
  source: 'user' | 'flyd';
  timestamp: number;
  request?: Record<string, unknown>;
}

export interface Lease {
  nonce: string;
  expiresAt: number;
  owner: string;
  description: string;
  version: string;
}

/** Timing knobs (milliseconds unless noted). */
export interface SimTiming {
  /** After a create (without skip_launch), how long the machine rests in `created` before booting. In that window
   * `start` answers 412 `unable to start machine from current state: 'created'`. Default 50. */
  launchDelayMs: number;
  /** Extra time in `starting` before the process is spawned (image pull, VM boot). Default 0. */
  slowBootMs: number;
  /** After reaching `stopped`, `start` answers 412 `machine still active, refusing to start` for this long. Default 400. */
  stillActiveMs: number;
  /** Extra time an update spends in `replacing` (after the old process is gone). Default 100. */
  replacingMs: number;
  /** How long a destroyed machine stays visible (state `destroyed`) before GET answers 404. Default 2000. */
  destroyedVisibleMs: number;
  /** Extra time a destroy spends in `destroying` after the process is gone (a slow host). Default 0. */
  slowDestroyMs: number;
  /** Delay before a restart-policy restart after the process exited. Default 200. */
  restartBackoffMs: number;
  /** With services or checks, `started` waits until the internal port accepts connections, at most this long
   * (then it is `started` anyway, with failing checks). Real time. Default 30000. */
  portTimeoutMs: number;
  /** Lease TTL when neither body `ttl` nor `?ttl=` is given (seconds). Fly's default is undocumented. Default 30. */
  defaultLeaseTtlS: number;
}

export const DEFAULT_TIMING: SimTiming = {
  launchDelayMs: 50,
  slowBootMs: 0,
  stillActiveMs: 400,
  replacingMs: 100,
  destroyedVisibleMs: 2000,
  slowDestroyMs: 0,
  restartBackoffMs: 200,
  portTimeoutMs: 30_000,
  defaultLeaseTtlS: 30,
};

export interface BootContext {
  app: string;
  machineId: string;
  image: string;
  imageRef: ImageRef;
  memoryMb: number;
  config: Json;
}

export type ImageMapping = BootCommand | 'agent' | ((ctx: BootContext) => BootCommand);

export interface EngineOptions {
  clock?: Clock;
  /** Create apps on first use (default true). With false, an unknown app answers 404 until `POST /v1/apps`. */
  autoCreateApps?: boolean;
  /** Apps that exist from the start. */
  apps?: string[];
  /** Region used when a create names none (Fly: "near you"). Also `nearest` in /v1/platform/regions. Default ord. */
  defaultRegion?: string;
  /** Lease owner shown in lease envelopes and 409 texts. */
  leaseOwner?: string;
  /** Image → what to run. Keys: the full image reference, or the reference without tag, or the repository path. */
  images?: Record<string, ImageMapping>;
  /** Images whose repository matches run the agent. Default: last path segment `workspace-<runtime>`. */
  agentImagePattern?: RegExp;
  /**
   * Light agents: machines whose image is the agent (a `workspace-<runtime>` image, or an `images` entry `'agent'`)
   * run it inside the simulator (src/agent/embedded.ts) instead of as a child process: no pid, no port, a few KB
   * each. Same contract (register, heartbeat, A2A, card, healthz behind the proxy); dies with the machine.
   */
  light?: boolean;
  /** How to run the agent (default: agentCommand() from src/agent/launch.ts). */
  agentCommand?: (opts: { heapMb?: number }) => { command: string; args: string[] };
  timing?: Partial<SimTiming>;
  /** Token buckets: true (Fly's published limits, the default), false, or a custom config. */
  rateLimits?: boolean | Partial<RateLimitConfig>;
  /** Spec file (default: FLY_OPENAPI_SPEC or the bundled copy). */
  specPath?: string;
  /** Reject unknown body fields (Fly ignores them). Default false. */
  strictSpec?: boolean;
  /** Called with every line a machine prints (and the simulator's own lines about it). */
  onMachineLog?: (machineId: string, line: LogLine) => void;
  /** Called on every state transition. */
  onTransition?: (m: { app: string; id: string; state: MachineState; event: MachineEvent }) => void;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(typeof body === 'object' && body && 'error' in body ? String((body as { error: unknown }).error) : `HTTP ${status}`);
  }
}

export const err = (status: number, error: string, extra: Record<string, unknown> = {}) => new ApiError(status, { error, ...extra });
/** Lease routes answer in their own envelope (`status`/`message`/`code`), not `{error}`. */
export const leaseErr = (status: number, message: string, code = 'invalid') => new ApiError(status, { status: 'error', message, code });

export interface AppRecord {
  name: string;
  orgSlug: string;
  network: string;
  createdAt: number;
}

export interface Waiter {
  states: Set<string>;
  version?: string;
  fromEventId?: string;
  resolve: (r: { status: number; body: unknown }) => void;
}

export interface CheckState {
  name: string;
  status: 'passing' | 'warning' | 'critical';
  output: string;
  updatedAt: number;
}

export interface MachineRecord {
  id: string;
  app: string;
  name: string;
  region: string;
  privateIp: string;
  createdAt: number;
  updatedAt: number;
  config: Json;
  version: string;
  versions: Array<{ version: string; config: Json; createdAt: number }>;
  state: MachineState;
  stateEventId: string;
  events: MachineEvent[];
  cordoned: boolean;
  lease?: Lease;
  /** Created without skip_launch and not yet booting. */
  launchPending: boolean;
  stillActiveUntil: number;
  destroyedAt?: number;
  /** Bumped by every lifecycle operation; async continuations of an older operation stop when it changed. */
  epoch: number;
  proc?: MainProcess;
  /** Local port of a child process; undefined for a light agent (the proxy dispatches to it in memory). */
  hostPort?: number;
  internalPort: number;
  failureTimes: number[];
  restarts: number;
  lastExit?: ExitInfo;
  logs: LogBuffer;
  waiters: Set<Waiter>;
  checks: Map<string, CheckState>;
  checkTimer?: TimerHandle;
}

/** A machine as the simulator sees it, beyond the API view: pid, local port, restarts. */
export interface MachineSnapshot {
  id: string;
  app: string;
  name: string;
  state: MachineState;
  region: string;
  version: string;
  image: string;
  pid: number | null;
  /** Local port the process listens on (internal port → 127.0.0.1:hostPort). */
  hostPort: number | null;
  internalPort: number;
  restarts: number;
  cordoned: boolean;
  leased: boolean;
  lastExit: ExitInfo | null;
  metadata: Record<string, string>;
  env: Record<string, string>;
}
