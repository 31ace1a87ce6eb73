/**
 * The simulator's state: apps, machines, the reference §4 state machine with its preconditions and texts,
 * events, waits, leases, metadata — and the real local process behind every booted machine.
 * HTTP-agnostic: handlers call these methods; failures are thrown as ApiError(status, body).
 */
import { agentCommand as defaultAgentCommand } from '../../src/agent/launch.js';
import { freePort } from '../../src/util/net.js';
import { FaultRegistry, type FaultSpec } from './faults.js';
import { FLY_RATE_LIMITS, RateLimiter, type RateLimitConfig } from './ratelimit.js';
import {
  canConnect,
  LogBuffer,
  MachineProcess,
  waitForPort,
  type BootCommand,
  type ExitInfo,
  type LogLine,
  type LogStream,
} from './runner.js';
import { AppSecrets, secretNameProblem } from './secrets.js';
import { loadSpec, stripNulls, type FlySpec } from './spec.js';
import {
  clockSleep,
  deepClone,
  goTimeString,
  GUEST_LIMITS,
  imageRefString,
  isoSeconds,
  isPlainObject,
  truthyQuery,
  newMachineId,
  newMachineName,
  newNonce,
  newPrivateIp,
  newUlid,
  normalizeSignal,
  parseGoDuration,
  parseImageRef,
  parseSecondsOrDuration,
  presetGuest,
  realClock,
  REGION_CODES,
  REGIONS,
  signalNumber,
  type Clock,
  type ImageRef,
  type TimerHandle,
} from './util.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

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
const WAITABLE = new Set(['started', 'stopped', 'suspended', 'destroyed', 'failed', 'settled']);

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

const err = (status: number, error: string, extra: Record<string, unknown> = {}) => new ApiError(status, { error, ...extra });
const leaseErr = (status: number, message: string, code = 'invalid') => new ApiError(status, { status: 'error', message, code });

interface AppRecord {
  name: string;
  orgSlug: string;
  network: string;
  createdAt: number;
}

interface Waiter {
  states: Set<string>;
  version?: string;
  fromEventId?: string;
  resolve: (r: { status: number; body: unknown }) => void;
}

interface CheckState {
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
  proc?: MachineProcess;
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

const OLD_VERSION_OK = new Set(['stopped', 'destroyed', 'settled']);

export class Engine {
  readonly clock: Clock;
  readonly faults = new FaultRegistry();
  readonly rateLimiter: RateLimiter;
  rateLimitsEnabled: boolean;
  readonly timing: SimTiming;
  readonly spec: FlySpec;
  readonly strictSpec: boolean;
  readonly defaultRegion: string;
  private readonly apps = new Map<string, AppRecord>();
  private readonly appSecrets = new Map<string, AppSecrets>();
  private readonly machines = new Map<string, MachineRecord>();
  /** Destroyed machines after their visible window (include_deleted). */
  private readonly graveyard = new Map<string, MachineRecord>();
  private readonly timers = new Set<TimerHandle>();
  private closed = false;

  constructor(private readonly opts: EngineOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    const rl = opts.rateLimits ?? true;
    this.rateLimitsEnabled = rl !== false;
    this.rateLimiter = new RateLimiter(this.clock, typeof rl === 'object' ? { ...FLY_RATE_LIMITS, ...rl } : FLY_RATE_LIMITS);
    this.spec = loadSpec(opts.specPath);
    this.strictSpec = opts.strictSpec === true;
    this.defaultRegion = opts.defaultRegion ?? 'ord';
    if (!REGION_CODES.has(this.defaultRegion)) throw new Error(`defaultRegion ${this.defaultRegion} is not one of ${[...REGION_CODES].join(' ')}`);
    for (const a of opts.apps ?? []) this.ensureApp(a);
    this.faults.onSettings = (spec: FaultSpec) => {
      if (spec.kind === 'slow_boot') this.timing.slowBootMs = spec.ms;
    };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // timers
  // ---------------------------------------------------------------------------------------------------------------

  /** Runs fn after ms on the clock (0 → next macrotask, real time), unless the simulator closed. */
  private after(ms: number, fn: () => void): TimerHandle {
    if (ms <= 0) {
      const h = { immediate: setImmediate(() => !this.closed && fn()) };
      return h;
    }
    const h = this.clock.setTimeout(() => {
      this.timers.delete(h);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(h);
    return h;
  }

  private cancel(h: TimerHandle | undefined): void {
    if (!h) return;
    const imm = (h as { immediate?: NodeJS.Immediate }).immediate;
    if (imm) clearImmediate(imm);
    else {
      this.clock.clearTimeout(h);
      this.timers.delete(h);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // apps
  // ---------------------------------------------------------------------------------------------------------------

  private ensureApp(name: string, orgSlug = 'personal', network = 'default'): AppRecord {
    let a = this.apps.get(name);
    if (!a) {
      a = { name, orgSlug, network, createdAt: this.clock.now() };
      this.apps.set(name, a);
    }
    return a;
  }

  /** The app, created on first use when autoCreateApps (default), else 404. */
  app(name: string): AppRecord {
    const a = this.apps.get(name);
    if (a) return a;
    if (this.opts.autoCreateApps === false) throw err(404, 'app not found');
    return this.ensureApp(name);
  }

  createApp(body: unknown): Json {
    this.validateBody('Apps_create', body);
    const b = (stripNulls(body ?? {}) as Json) ?? {};
    const name = b.name ?? b.app_name; // the docs example says app_name; spec and fly-go send name
    if (typeof name !== 'string' || !name) throw err(400, 'name is required');
    if (!/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]?$/.test(name)) {
      throw err(422, 'Validation failed: Name under 63 chars using numbers, lowercase letters and dashes');
    }
    if (this.apps.has(name)) throw err(422, 'Validation failed: Name has already been taken', { status: 'name_taken' });
    return this.appJson(this.ensureApp(name, b.org_slug ?? 'personal', b.network ?? 'default'));
  }

  appJson(a: AppRecord): Json {
    const count = [...this.machines.values()].filter((m) => m.app === a.name && m.state !== 'destroyed').length;
    return {
      id: a.name,
      name: a.name,
      status: count > 0 ? 'deployed' : 'pending',
      machine_count: count,
      volume_count: 0,
      network: a.network,
      organization: { name: a.orgSlug, slug: a.orgSlug },
    };
  }

  listApps(orgSlug?: string): Json {
    const apps = [...this.apps.values()].filter((a) => !orgSlug || a.orgSlug === orgSlug).map((a) => this.appJson(a));
    return { total_apps: apps.length, apps };
  }

  async deleteApp(name: string): Promise<void> {
    this.app(name);
    const ms = [...this.machines.values()].filter((m) => m.app === name);
    for (const m of ms) {
      m.epoch++;
      m.launchPending = false;
      this.cancel(m.checkTimer);
      await m.proc?.kill();
      this.machines.delete(m.id);
    }
    for (const [id, m] of this.graveyard) if (m.app === name) this.graveyard.delete(id);
    this.apps.delete(name);
    this.appSecrets.delete(name);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // app secrets
  // ---------------------------------------------------------------------------------------------------------------

  /** The app's secrets (the app is looked up, or auto-created, as for machines). */
  secrets(app: string): AppSecrets {
    const a = this.app(app);
    let s = this.appSecrets.get(a.name);
    if (!s) {
      s = new AppSecrets(() => this.clock.now());
      this.appSecrets.set(a.name, s);
    }
    return s;
  }

  secretsList(app: string, query: Record<string, unknown> = {}): Json {
    const s = this.secrets(app);
    const show = truthyQuery(query.show_secrets);
    return { secrets: s.names().map((n) => s.json(n, show)) };
  }

  secretsUpdate(app: string, body: unknown): Json {
    const s = this.secrets(app);
    const raw = isPlainObject(body) ? (body as Json).values : undefined;
    // Fly's Go type is map[string]*string: null unsets. The schema says string, so nulls are taken out first.
    const withoutNulls = isPlainObject(raw) ? Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null)) : raw;
    this.validateBody('Secrets_update', isPlainObject(body) ? { ...(body as Json), values: withoutNulls } : body);
    const values = (isPlainObject(raw) ? raw : {}) as Record<string, string | null>;
    for (const name of Object.keys(values)) {
      const bad = secretNameProblem(name);
      if (bad) throw err(400, bad);
    }
    const version = s.apply(values);
    const secrets = Object.keys(values)
      .map((n) => s.json(n))
      .filter((x) => x !== null);
    return { version, Version: version, secrets };
  }

  secretGet(app: string, name: string, query: Record<string, unknown> = {}): Json {
    const j = this.secrets(app).json(name, truthyQuery(query.show_secrets));
    if (!j) throw err(404, `secret ${name} not found`);
    return j;
  }

  secretSet(app: string, name: string, body: unknown): Json {
    const s = this.secrets(app);
    this.validateBody('Secret_create', body);
    const bad = secretNameProblem(name);
    if (bad) throw err(400, bad);
    const value = isPlainObject(body) ? (body as Json).value : undefined;
    if (typeof value !== 'string') throw err(400, 'value is required');
    const version = s.apply({ [name]: value });
    return { ...s.json(name), version, Version: version };
  }

  secretDelete(app: string, name: string): Json {
    const version = this.secrets(app).delete(name);
    if (version === null) throw err(404, `secret ${name} not found`);
    return { version, Version: version };
  }

  /** create/update with `min_secrets_version` newer than the app's secrets: the machine could not get them. */
  private requireSecretsVersion(app: string, min: unknown): void {
    if (typeof min !== 'number' || min <= 0) return;
    const have = this.secrets(app).version;
    if (min > have) throw err(400, `min_secrets_version ${min} is newer than the app's secrets (version ${have})`);
  }

  /**
   * The env a boot adds from app secrets: every app secret by name (Fly's default), unless the first process sets
   * `ignore_app_secrets`; plus each `processes[0].secrets` reference ({env_var, name?}). A referenced secret that
   * does not exist is an error (the boot fails with it).
   */
  private secretEnv(m: MachineRecord): { env: Record<string, string> } | { error: string } {
    const s = this.secrets(m.app);
    const proc: Json = Array.isArray(m.config.processes) ? m.config.processes[0] : undefined;
    const env: Record<string, string> = {};
    if (proc?.ignore_app_secrets !== true) for (const n of s.names()) env[n] = s.get(n)!;
    const refs: Json[] = Array.isArray(proc?.secrets) ? proc.secrets : [];
    for (const [i, r] of refs.entries()) {
      const name = r?.name || r?.env_var;
      if (!r?.env_var) return { error: `config.processes[0].secrets[${i}]: env_var is required` };
      if (!s.has(name)) {
        return { error: `secret ${name} (env ${r.env_var}, config.processes[0].secrets[${i}]) does not exist in app ${m.app}; set it with POST /v1/apps/${m.app}/secrets` };
      }
      env[r.env_var] = s.get(name)!;
    }
    return { env };
  }

  regions(): Json {
    return { regions: REGIONS.map((r) => ({ ...r })), nearest: this.defaultRegion };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // lookup, serialisation
  // ---------------------------------------------------------------------------------------------------------------

  /** Live machine (including `destroyed` during its visible window) of the app, else 404. */
  machine(app: string, id: string): MachineRecord {
    this.app(app);
    const m = this.machines.get(id);
    if (!m || m.app !== app) throw err(404, 'machine not found');
    return m;
  }

  /** Any live machine by id (the proxy's view; ids are unique across apps). */
  machineById(id: string): MachineRecord | undefined {
    return this.machines.get(id);
  }

  allMachines(app?: string): MachineRecord[] {
    return [...this.machines.values()].filter((m) => !app || m.app === app);
  }

  appNames(): string[] {
    return [...this.apps.keys()];
  }

  snapshot(m: MachineRecord): MachineSnapshot {
    return {
      id: m.id,
      app: m.app,
      name: m.name,
      state: m.state,
      region: m.region,
      version: m.version,
      image: m.config.image,
      pid: m.proc?.alive ? (m.proc.pid ?? null) : null,
      hostPort: m.proc?.alive ? (m.hostPort ?? null) : null,
      internalPort: m.internalPort,
      restarts: m.restarts,
      cordoned: m.cordoned,
      leased: !!this.activeLease(m),
      lastExit: m.lastExit ?? null,
      metadata: { ...(m.config.metadata ?? {}) },
      env: { ...(m.config.env ?? {}) },
    };
  }

  machineJson(m: MachineRecord, opts: { summary?: boolean; nonce?: string } = {}): Json {
    const imageRef = parseImageRef(m.config.image);
    const base: Json = {
      id: m.id,
      name: m.name,
      state: m.state,
      region: m.region,
      instance_id: m.version,
      version: m.version,
      private_ip: m.privateIp,
      created_at: isoSeconds(m.createdAt),
      updated_at: isoSeconds(m.updatedAt),
    };
    if (opts.summary) {
      return {
        ...base,
        image_ref: imageRef,
        config: { image: m.config.image, guest: m.config.guest, metadata: m.config.metadata ?? {} },
      };
    }
    const out: Json = {
      ...base,
      config: deepClone(m.config),
      incomplete_config: null,
      image_ref: imageRef,
      events: this.eventsJson(m, 20),
      host_status: 'ok',
      cordoned: m.cordoned,
    };
    if (m.config.checks && Object.keys(m.config.checks).length) {
      out.checks = Object.keys(m.config.checks).map((name) => {
        const c = m.checks.get(name);
        return {
          name,
          status: c?.status ?? 'critical',
          output: c?.output ?? 'not started',
          updated_at: isoSeconds(c?.updatedAt ?? m.updatedAt),
        };
      });
    }
    if (opts.nonce) out.nonce = opts.nonce;
    return out;
  }

  eventsJson(m: MachineRecord, limit: number): Json[] {
    return m.events
      .slice(-limit)
      .reverse()
      .map((e) => ({ ...e }));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // validation
  // ---------------------------------------------------------------------------------------------------------------

  validateBody(operationId: string, body: unknown): void {
    const r = this.spec.validate(operationId, body, { strict: this.strictSpec });
    if (!r.ok) throw err(400, r.error ?? 'invalid request body');
  }

  /** Semantic checks the schema cannot express (image, guest limits, durations, restart, ports). */
  private normalizeConfig(cfgIn: unknown): Json {
    const cfg: Json = deepClone(stripNulls(cfgIn ?? {})) ?? {};
    if (typeof cfg.image !== 'string' || cfg.image.trim() === '') throw err(400, 'invalid config.image, image is required');
    // guest
    let guest: Json = cfg.guest;
    if (!guest || Object.keys(guest).length === 0) {
      if (cfg.size !== undefined) {
        const p = presetGuest(String(cfg.size));
        if (!p) throw err(400, `invalid config.size, unknown machine size "${cfg.size}"`);
        guest = p;
      } else guest = {};
    }
    const kind = guest.cpu_kind || 'shared';
    const limits = GUEST_LIMITS[kind];
    if (!limits) throw err(400, `invalid config.guest.cpu_kind, "${kind}" is not one of shared, performance`);
    const cpus = guest.cpus || 1;
    if (!limits.cpus.includes(cpus)) {
      throw err(400, `invalid config.guest.cpus, ${kind} machines support ${limits.cpus.join(', ')} CPUs, not ${cpus}`);
    }
    const min = limits.minPerCpu * cpus;
    const max = limits.maxPerCpu * cpus;
    const mem = guest.memory_mb || min;
    if (mem < min) throw err(400, `invalid config.guest.memory_mb, minimum required ${min} MiB`);
    if (mem > max) throw err(400, `invalid config.guest.memory_mb, cannot exceed ${max} MiB`);
    if (mem % 256 !== 0) throw err(400, 'invalid config.guest.memory_mb, must be a multiple of 256 MiB');
    cfg.guest = { ...guest, cpu_kind: kind, cpus, memory_mb: mem };
    // durations
    const dur = (v: unknown, path: string) => {
      if (v === undefined) return;
      const d = parseGoDuration(v);
      if (d instanceof Error) throw err(400, `invalid ${path}: ${d.message}`);
    };
    dur(cfg.stop_config?.timeout, 'config.stop_config.timeout');
    for (const [name, c] of Object.entries<Json>(cfg.checks ?? {})) {
      for (const k of ['interval', 'timeout', 'grace_period']) dur(c?.[k], `config.checks.${name}.${k}`);
    }
    (cfg.services ?? []).forEach((s: Json, i: number) => {
      if (s.internal_port !== undefined && (s.internal_port < 1 || s.internal_port > 65535)) {
        throw err(400, `invalid config.services[${i}].internal_port, must be between 1 and 65535`);
      }
      for (const c of s.checks ?? []) for (const k of ['interval', 'timeout', 'grace_period']) dur(c?.[k], `config.services[${i}].checks.${k}`);
      // The API answers with booleans for "off"/"stop" (backward compatibility, per the spec's description).
      if (s.autostop === 'off') s.autostop = false;
      else if (s.autostop === 'stop') s.autostop = true;
    });
    if (cfg.restart?.max_retries !== undefined && cfg.restart.max_retries < 0) {
      throw err(400, 'invalid config.restart.max_retries, must be >= 0');
    }
    if (cfg.stop_config?.signal !== undefined && !normalizeSignal(cfg.stop_config.signal)) {
      throw err(400, `invalid config.stop_config.signal "${cfg.stop_config.signal}"`);
    }
    cfg.init ??= {};
    return cfg;
  }

  private internalPortOf(cfg: Json): number {
    const svc = (cfg.services ?? []).find((s: Json) => typeof s.internal_port === 'number');
    if (svc) return svc.internal_port;
    const chk = Object.values<Json>(cfg.checks ?? {}).find((c) => typeof c?.port === 'number');
    if (chk) return chk.port;
    const envPort = Number(cfg.env?.PORT);
    return Number.isInteger(envPort) && envPort > 0 ? envPort : 8000;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // transitions, events, waits
  // ---------------------------------------------------------------------------------------------------------------

  private transition(m: MachineRecord, state: MachineState, type: MachineEvent['type'], source: MachineEvent['source'], request?: Record<string, unknown>): void {
    const now = this.clock.now();
    m.state = state;
    m.updatedAt = now;
    const ev: MachineEvent = { id: newUlid(now), type, status: state, source, timestamp: now };
    if (request) ev.request = request;
    m.events.push(ev);
    if (m.events.length > 200) m.events.splice(0, m.events.length - 200);
    m.stateEventId = ev.id;
    this.log(m, 'sim', `${type} → ${state} (${source})`);
    this.opts.onTransition?.({ app: m.app, id: m.id, state, event: ev });
    this.checkWaiters(m);
  }

  private log(m: MachineRecord, stream: LogStream, message: string): void {
    const prefix = stream === 'sim' ? '[fly-sim] ' : '';
    m.logs.push(stream, prefix + message, m.version, this.clock.now());
    if (this.opts.onMachineLog) {
      const lines = m.logs.tail(1);
      if (lines[0]) this.opts.onMachineLog(m.id, lines[0]);
    }
  }

  private waitResult(m: MachineRecord, w: Waiter): { status: number; body: unknown } | null {
    if (w.version && w.version !== m.version) {
      // the version we wait on was replaced by an update: it is stopped for good
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

  private checkWaiters(m: MachineRecord): void {
    for (const w of [...m.waiters]) {
      const r = this.waitResult(m, w);
      if (r) {
        m.waiters.delete(w);
        w.resolve(r);
      }
    }
  }

  /** GET …/wait (reference §5). Resolves with the HTTP answer; `signal` aborts when the client goes away. */
  async wait(app: string, id: string, query: Json, signal?: AbortSignal): Promise<{ status: number; body: unknown }> {
    const m = this.machine(app, id);
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
    const now = this.waitResult(m, w);
    if (now) return now;
    return new Promise((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const finish = (r: { status: number; body: unknown }) => {
        this.cancel(timer);
        signal?.removeEventListener('abort', onAbort);
        m.waiters.delete(w);
        resolve(r);
      };
      const onAbort = () => finish({ status: 499, body: { error: 'client closed request' } });
      w.resolve = finish;
      m.waiters.add(w);
      timer = this.after(timeoutS * 1000, () =>
        finish({
          status: 408,
          body: { error: `deadline_exceeded: machine failed to reach desired state, ${states.join(',')}, currently ${m.state}` },
        }),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // leases
  // ---------------------------------------------------------------------------------------------------------------

  activeLease(m: MachineRecord): Lease | undefined {
    if (m.lease && m.lease.expiresAt > this.clock.now()) return m.lease;
    return undefined;
  }

  private leaseHeldText(m: MachineRecord, l: Lease): string {
    return `machine ID ${m.id} lease currently held by ${l.owner}, expires at ${goTimeString(l.expiresAt)}`;
  }

  /** Mutations of a leased machine need the lease's nonce (fly-machine-lease-nonce). 409 otherwise. */
  requireNonce(m: MachineRecord, nonce: string | undefined): void {
    const l = this.activeLease(m);
    if (!l || nonce === l.nonce) return;
    const why = nonce ? 'the fly-machine-lease-nonce header does not match the lease' : 'send its nonce in the fly-machine-lease-nonce header';
    throw err(409, `${this.leaseHeldText(m, l)}; ${why}`);
  }

  private leaseData(l: Lease): Json {
    return { nonce: l.nonce, expires_at: Math.floor(l.expiresAt / 1000), owner: l.owner, description: l.description, version: l.version };
  }

  private newLease(m: MachineRecord, ttlS: number, description = ''): Lease {
    m.lease = {
      nonce: newNonce(),
      expiresAt: this.clock.now() + ttlS * 1000,
      owner: this.opts.leaseOwner ?? 'sim-user@example.com',
      description,
      version: m.version,
    };
    return m.lease;
  }

  leaseGet(app: string, id: string): Json {
    const m = this.machine(app, id);
    const l = this.activeLease(m);
    if (!l) throw leaseErr(404, 'lease not found', 'not_found');
    return { status: 'success', data: this.leaseData(l) };
  }

  leaseAcquire(app: string, id: string, body: unknown, query: Json, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    if (body !== undefined) {
      const r = this.spec.validate('Machines_create_lease', body, { strict: this.strictSpec });
      if (!r.ok) throw leaseErr(400, r.error ?? 'invalid request body');
    }
    const b: Json = isPlainObject(body) ? stripNulls(body) : {};
    let ttl: number = this.timing.defaultLeaseTtlS;
    const qttl = Array.isArray(query.ttl) ? query.ttl[0] : query.ttl;
    if (b.ttl !== undefined && b.ttl !== 0) ttl = b.ttl;
    else if (qttl !== undefined && qttl !== '') {
      if (!/^\d+$/.test(String(qttl))) throw leaseErr(400, `invalid ttl "${qttl}", must be a number of seconds`);
      ttl = Number(qttl);
    }
    if (!(ttl > 0)) throw leaseErr(400, `invalid ttl ${ttl}, must be a positive number of seconds`);
    if (m.state === 'destroyed' || m.state === 'destroying') throw leaseErr(412, `failed_precondition: machine ${m.id} is ${m.state}`);
    const held = this.activeLease(m);
    if (held) {
      if (nonce !== held.nonce) throw leaseErr(409, this.leaseHeldText(m, held));
      held.expiresAt = this.clock.now() + ttl * 1000;
      if (typeof b.description === 'string') held.description = b.description;
      return { status: 'success', data: this.leaseData(held) };
    }
    return { status: 'success', data: this.leaseData(this.newLease(m, ttl, typeof b.description === 'string' ? b.description : '')) };
  }

  leaseRelease(app: string, id: string, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    const l = this.activeLease(m);
    if (!l) throw leaseErr(404, 'lease not found', 'not_found');
    if (!nonce) throw leaseErr(400, 'fly-machine-lease-nonce header is required to release a lease');
    if (nonce !== l.nonce) throw leaseErr(409, this.leaseHeldText(m, l));
    m.lease = undefined;
    return { status: 'success', data: { ok: true } };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // list / create / update
  // ---------------------------------------------------------------------------------------------------------------

  list(app: string, query: Json): Json[] {
    this.app(app);
    const includeDeleted = truthy(query.include_deleted);
    const summary = truthy(query.summary);
    const region = first(query.region);
    const states = ([] as unknown[])
      .concat(query.state ?? [])
      .flatMap((s) => String(s).split(','))
      .map((s) => s.trim())
      .filter(Boolean);
    const meta: Array<[string, string]> = Object.entries(query)
      .filter(([k]) => k.startsWith('metadata.'))
      .map(([k, v]) => [k.slice('metadata.'.length), String(first(v) ?? '')]);
    let ms = [...this.machines.values()].filter((m) => m.app === app);
    if (includeDeleted) ms = ms.concat([...this.graveyard.values()].filter((m) => m.app === app));
    else ms = ms.filter((m) => m.state !== 'destroyed');
    if (region) ms = ms.filter((m) => m.region === region);
    if (states.length) ms = ms.filter((m) => states.includes(m.state));
    for (const [k, v] of meta) ms = ms.filter((m) => m.config.metadata?.[k] === v);
    ms.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
    if (this.faults.take(['list_order'], { action: 'list', app })) ms.reverse();
    return ms.map((m) => this.machineJson(m, { summary }));
  }

  /** POST …/machines. `timeout` set when a create_timeout fault wants this (committed) create answered with 408. */
  create(app: string, body: unknown): { machine: Json; timeout?: { delayMs: number } } {
    const a = this.app(app);
    this.validateBody('Machines_create', body);
    const b: Json = stripNulls(body ?? {});
    const config = this.normalizeConfig(b.config);
    this.requireSecretsVersion(app, b.min_secrets_version);
    const region: string = b.region || this.defaultRegion;
    if (!REGION_CODES.has(region)) {
      throw err(400, `invalid region "${region}"; known regions: ${[...REGION_CODES].join(', ')} (GET /v1/platform/regions)`);
    }
    if (this.faults.take(['insufficient_capacity'], { action: 'create', app, region })) {
      throw err(503, `insufficient resources to create machine in region ${region}: could not find a candidate host`, {
        status: 'insufficient_capacity',
      });
    }
    if (this.faults.take(['insufficient_memory'], { action: 'create', app })) {
      throw err(409, 'aborted: insufficient resources available to fulfill request: insufficient memory available to fulfill request');
    }
    let name: string = b.name;
    if (name) {
      const clash = [...this.machines.values()].find((x) => x.app === app && x.name === name && x.state !== 'destroyed');
      if (clash) throw err(409, `already_exists: unique machine name violation, machine ID ${clash.id} already exists with name "${name}"`);
    } else {
      do name = newMachineName();
      while ([...this.machines.values()].some((x) => x.app === app && x.name === name));
    }
    let id: string;
    do id = newMachineId();
    while (this.machines.has(id) || this.graveyard.has(id));
    const now = this.clock.now();
    const version = newUlid(now);
    const m: MachineRecord = {
      id,
      app: a.name,
      name,
      region,
      privateIp: newPrivateIp(a.name),
      createdAt: now,
      updatedAt: now,
      config,
      version,
      versions: [{ version, config: deepClone(config), createdAt: now }],
      state: 'created',
      stateEventId: '',
      events: [],
      cordoned: false,
      launchPending: !b.skip_launch,
      stillActiveUntil: 0,
      epoch: 0,
      internalPort: this.internalPortOf(config),
      failureTimes: [],
      restarts: 0,
      logs: new LogBuffer(),
      waiters: new Set(),
      checks: new Map(),
    };
    this.machines.set(id, m);
    this.transition(m, 'created', 'launch', 'user');
    let nonce: string | undefined;
    if (typeof b.lease_ttl === 'number' && b.lease_ttl > 0) nonce = this.newLease(m, b.lease_ttl).nonce;
    if (m.launchPending) {
      const epoch = m.epoch;
      this.after(this.timing.launchDelayMs, () => {
        if (m.epoch === epoch && m.launchPending && m.state === 'created') void this.boot(m, 'flyd');
      });
    }
    const machine = this.machineJson(m, { nonce });
    const fault = this.faults.take(['create_timeout'], { action: 'create', app });
    if (fault && fault.kind === 'create_timeout') return { machine, timeout: { delayMs: fault.delayMs ?? 0 } };
    return { machine };
  }

  update(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    if (m.state === 'destroyed' || m.state === 'destroying') {
      throw err(412, `failed_precondition: unable to update machine from current state: '${m.state}'`);
    }
    this.requireNonce(m, nonce);
    this.validateBody('Machines_update', body);
    const b: Json = stripNulls(body ?? {});
    const config = this.normalizeConfig(b.config);
    this.requireSecretsVersion(app, b.min_secrets_version);
    if (b.region && b.region !== m.region) throw err(400, `invalid_argument: region is immutable (machine ${m.id} is in ${m.region})`);
    if (b.name && b.name !== m.name) throw err(400, `invalid_argument: name is immutable (machine ${m.id} is named ${m.name})`);
    if (b.current_version && b.current_version !== m.version) {
      throw err(412, `failed_precondition: machine version mismatch: current_version ${b.current_version}, machine is at ${m.version}`);
    }
    if (this.faults.take(['insufficient_memory'], { action: 'update', app, machine: id })) {
      throw err(409, 'aborted: could not reserve resource for machine: insufficient memory available to fulfill request on the current host');
    }
    const wasRunning = ['started', 'starting', 'restarting'].includes(m.state) || (m.state === 'created' && m.launchPending);
    const oldConfig = m.config;
    const now = this.clock.now();
    m.version = newUlid(now);
    m.config = config;
    m.versions.push({ version: m.version, config: deepClone(config), createdAt: now });
    m.internalPort = this.internalPortOf(config);
    m.launchPending = false;
    const epoch = ++m.epoch;
    this.stopChecks(m);
    this.transition(m, 'replacing', 'update', 'user');
    let leaseNonce: string | undefined;
    if (typeof b.lease_ttl === 'number' && b.lease_ttl > 0) {
      const held = this.activeLease(m);
      if (held) {
        held.expiresAt = now + b.lease_ttl * 1000;
        leaseNonce = held.nonce;
      } else leaseNonce = this.newLease(m, b.lease_ttl).nonce;
    }
    const proc = m.proc;
    void (async () => {
      if (proc?.alive) {
        const { signal, timeoutMs } = this.stopParams(oldConfig);
        await (proc.suspended ? proc.kill() : proc.stop(signal, timeoutMs));
      }
      await clockSleep(this.clock, this.timing.replacingMs);
      if (m.epoch !== epoch || this.closed) return;
      if (b.skip_launch) this.transition(m, 'created', 'update', 'flyd');
      else if (wasRunning) void this.boot(m, 'flyd');
      else this.transition(m, 'stopped', 'update', 'flyd');
    })();
    return this.machineJson(m, { nonce: leaseNonce });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // lifecycle actions
  // ---------------------------------------------------------------------------------------------------------------

  private stopParams(cfg: Json, override: { signal?: unknown; timeout?: unknown } = {}): { signal: NodeJS.Signals; timeoutMs: number } {
    const signal = normalizeSignal(override.signal ?? cfg.stop_config?.signal ?? 'SIGTERM') ?? 'SIGTERM';
    let timeoutMs = 10_000;
    const t = override.timeout ?? cfg.stop_config?.timeout;
    if (t !== undefined) {
      const d = parseGoDuration(t);
      if (!(d instanceof Error)) timeoutMs = d;
    }
    return { signal, timeoutMs };
  }

  start(app: string, id: string, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.requireNonce(m, nonce);
    const s = m.state;
    if (s === 'replacing') throw err(412, 'failed_precondition: machine getting replaced, refusing to start');
    if (s === 'created' && m.launchPending) throw err(412, "failed_precondition: unable to start machine from current state: 'created'");
    if (s === 'stopped' && this.clock.now() < m.stillActiveUntil) throw err(412, 'failed_precondition: machine still active, refusing to start');
    if (!['stopped', 'suspended', 'created', 'failed'].includes(s)) {
      throw err(412, `failed_precondition: unable to start machine from current state: '${s}'`);
    }
    if (this.faults.take(['insufficient_memory'], { action: 'start', app, machine: id })) {
      throw err(409, 'aborted: could not reserve resource for machine: insufficient memory available to fulfill request on the current host');
    }
    void this.boot(m, 'user');
    return { previous_state: s, migrated: false, new_host: '' };
  }

  stop(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.validateBody('Machines_stop', body);
    this.requireNonce(m, nonce);
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
        this.stopChecks(m);
        this.transition(m, 'stopping', 'stop', 'user');
        const proc = m.proc;
        const { signal, timeoutMs } = this.stopParams(m.config, b);
        void (async () => {
          const info = proc?.alive ? await (s === 'suspended' ? proc.kill() : proc.stop(signal, timeoutMs)) : undefined;
          if (m.epoch !== epoch || this.closed) return;
          this.finishStopped(m, info);
        })();
        break;
      }
      case 'created':
      case 'failed':
        m.epoch++;
        m.launchPending = false;
        this.transition(m, 'stopped', 'stop', 'user');
        break;
      case 'stopping':
      case 'stopped':
        break; // already there (undocumented on Fly; answered ok here)
      default:
        throw err(412, `failed_precondition: unable to stop machine from current state: '${s}'`);
    }
    return { ok: true };
  }

  suspend(app: string, id: string, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.requireNonce(m, nonce);
    if (m.state !== 'started') throw err(412, `failed_precondition: unable to suspend machine from current state: '${m.state}'`);
    if ((m.config.guest?.memory_mb ?? 256) > 2048 || m.config.guest?.gpus || m.config.schedule) {
      this.log(m, 'sim', 'suspend is not supported for this machine (> 2 GB RAM, GPU or schedule); falling back to stop');
      return this.stop(app, id, undefined, nonce);
    }
    const epoch = ++m.epoch;
    this.stopChecks(m);
    this.transition(m, 'suspending', 'suspend', 'user');
    const proc = m.proc;
    proc?.suspend();
    void (async () => {
      if (proc) await proc.confirmStopped();
      if (m.epoch === epoch && !this.closed) this.transition(m, 'suspended', 'suspend', 'flyd');
    })();
    return { ok: true };
  }

  restart(app: string, id: string, query: Json, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.requireNonce(m, nonce);
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
    const { signal, timeoutMs } = this.stopParams(m.config, { signal: qs || undefined });
    const forceStop = truthy(query.force_stop);
    const epoch = ++m.epoch;
    this.stopChecks(m);
    this.transition(m, 'restarting', 'restart', 'user');
    const proc = m.proc;
    void (async () => {
      if (proc?.alive) await (forceStop ? proc.kill() : proc.stop(signal, timeout ?? timeoutMs));
      if (m.epoch !== epoch || this.closed) return;
      m.restarts++;
      void this.boot(m, 'flyd');
    })();
    return { ok: true };
  }

  signal(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.validateBody('Machines_signal', body);
    this.requireNonce(m, nonce);
    const b: Json = isPlainObject(body) ? body : {};
    if (b.signal === undefined || b.signal === null) throw err(400, 'invalid_argument: signal is required');
    const sig = normalizeSignal(b.signal);
    if (!sig) throw err(400, `invalid_argument: invalid signal ${JSON.stringify(b.signal)}`);
    if (!m.proc?.alive || !['started', 'starting'].includes(m.state)) {
      throw err(412, `failed_precondition: unable to signal machine from current state: '${m.state}'`);
    }
    this.log(m, 'sim', `signal ${sig} sent to the main process`);
    m.proc.signal(sig);
    return { ok: true };
  }

  cordon(app: string, id: string, on: boolean, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    this.requireNonce(m, nonce);
    if (m.state === 'destroyed') throw err(412, "failed_precondition: unable to cordon machine from current state: 'destroyed'");
    m.cordoned = on;
    m.updatedAt = this.clock.now();
    return { ok: true };
  }

  destroy(app: string, id: string, force: boolean, nonce: string | undefined): Json {
    const m = this.machine(app, id);
    if (m.state === 'destroyed') throw err(404, 'machine not found');
    this.requireNonce(m, nonce);
    if (!force && !['stopped', 'suspended', 'failed', 'created'].includes(m.state)) {
      throw err(412, 'failed_precondition: unable to destroy machine, not currently stopped, suspended, failed or created');
    }
    this.startDestroy(m, 'user');
    return { ok: true };
  }

  private startDestroy(m: MachineRecord, source: MachineEvent['source']): void {
    const epoch = ++m.epoch;
    m.launchPending = false;
    m.lease = undefined;
    this.stopChecks(m);
    if (m.state !== 'destroying') this.transition(m, 'destroying', 'destroy', source);
    const proc = m.proc;
    void (async () => {
      if (proc?.alive) await proc.kill();
      if (this.timing.slowDestroyMs > 0) await clockSleep(this.clock, this.timing.slowDestroyMs);
      if (m.epoch !== epoch) return;
      m.destroyedAt = this.clock.now();
      this.transition(m, 'destroyed', 'destroy', 'flyd');
      this.after(this.timing.destroyedVisibleMs, () => {
        if (this.machines.get(m.id) === m && m.state === 'destroyed') {
          this.machines.delete(m.id);
          this.graveyard.set(m.id, m);
        }
      });
    })();
  }

  /** The main process is gone for good (requested stop, or an exit the restart policy does not restart). */
  private finishStopped(m: MachineRecord, info: ExitInfo | undefined): void {
    const request = info ? { exit_event: this.exitEvent(info, false) } : undefined;
    this.transition(m, 'stopped', 'exit', 'flyd', request);
    m.stillActiveUntil = this.clock.now() + this.timing.stillActiveMs;
    if (m.config.auto_destroy) {
      this.log(m, 'sim', 'auto_destroy: the main process exited and is not restarted; destroying the machine');
      this.startDestroy(m, 'flyd');
    }
  }

  private exitEvent(info: ExitInfo, restarting: boolean): Json {
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

  // ---------------------------------------------------------------------------------------------------------------
  // metadata, events, versions
  // ---------------------------------------------------------------------------------------------------------------

  metadataGet(app: string, id: string): Record<string, string> {
    return { ...(this.machine(app, id).config.metadata ?? {}) };
  }

  metadataGetKey(app: string, id: string, key: string): Json {
    const md = this.machine(app, id).config.metadata ?? {};
    if (!(key in md)) throw err(404, `metadata key ${key} not found`);
    return { value: md[key] };
  }

  private setMetadata(m: MachineRecord, md: Record<string, string>): void {
    m.config.metadata = md;
    const cur = m.versions[m.versions.length - 1];
    if (cur) cur.config.metadata = { ...md };
    m.updatedAt = this.clock.now();
  }

  metadataSet(app: string, id: string, key: string, body: unknown): void {
    const m = this.machine(app, id);
    this.validateBody('Machines_upsert_metadata', body);
    const b: Json = isPlainObject(body) ? stripNulls(body) : {};
    if (typeof b.value !== 'string') throw err(400, 'invalid_argument: value is required');
    if (m.state === 'destroyed') throw err(404, 'machine not found');
    this.setMetadata(m, { ...(m.config.metadata ?? {}), [key]: b.value });
  }

  metadataDelete(app: string, id: string, key: string): void {
    const m = this.machine(app, id);
    const md = { ...(m.config.metadata ?? {}) };
    delete md[key];
    this.setMetadata(m, md);
  }

  metadataReplace(app: string, id: string, body: unknown, merge: boolean): void {
    const m = this.machine(app, id);
    this.validateBody('Machines_update_metadata', body);
    const b: Json = isPlainObject(body) ? stripNulls(body) : {};
    if (b.machine_version && b.machine_version !== m.version) {
      throw err(412, `failed_precondition: machine_version ${b.machine_version} is stale, machine is at ${m.version}`);
    }
    const md = (b.metadata ?? {}) as Record<string, string>;
    this.setMetadata(m, merge ? { ...(m.config.metadata ?? {}), ...md } : { ...md });
  }

  events(app: string, id: string, limitRaw: unknown): Json[] {
    const m = this.machine(app, id);
    let limit = 20;
    const l = first(limitRaw);
    if (l !== undefined && /^\d+$/.test(l)) limit = Math.min(50, Math.max(1, Number(l)));
    return this.eventsJson(m, limit);
  }

  versions(app: string, id: string): Json[] {
    const m = this.machine(app, id);
    return [...m.versions].reverse().map((v) => ({ version: v.version, user_config: deepClone(v.config) }));
  }

  logs(m: MachineRecord): LogBuffer {
    return m.logs;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // booting a machine: image → process
  // ---------------------------------------------------------------------------------------------------------------

  private resolveImage(m: MachineRecord): { kind: 'run'; cmd: BootCommand } | { kind: 'unpullable'; reason: string } {
    const image: string = m.config.image;
    const ref = parseImageRef(image);
    const repoLast = ref.repository.split('/').pop() ?? '';
    if (repoLast === 'unpullable') return { kind: 'unpullable', reason: 'manifest unknown (the /unpullable sentinel image)' };
    if (this.faults.isUnpullable(image, ref.repository)) return { kind: 'unpullable', reason: 'manifest unknown (injected unpullable_image fault)' };
    const noTag = image.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
    const mapping = this.opts.images?.[image] ?? this.opts.images?.[noTag] ?? this.opts.images?.[ref.repository];
    const ctx: BootContext = { app: m.app, machineId: m.id, image, imageRef: ref, memoryMb: m.config.guest.memory_mb, config: m.config };
    const agent = (): BootCommand => (this.opts.agentCommand ?? defaultAgentCommand)({ heapMb: m.config.guest.memory_mb });
    if (mapping !== undefined) {
      if (mapping === 'agent') return { kind: 'run', cmd: agent() };
      return { kind: 'run', cmd: typeof mapping === 'function' ? mapping(ctx) : mapping };
    }
    const pattern = this.opts.agentImagePattern ?? /(^|\/)workspace-[a-z0-9][a-z0-9._-]*$/;
    if (pattern.test(ref.repository)) return { kind: 'run', cmd: agent() };
    return {
      kind: 'unpullable',
      reason: 'not found (fly-sim runs only images it maps to a local command: `…/workspace-<runtime>` or the images option)',
    };
  }

  private machineEnv(m: MachineRecord, cmd: BootCommand, hostPort: number, secretEnv: Record<string, string>): Record<string, string> {
    const ref = parseImageRef(m.config.image);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      ...(cmd.env ?? {}),
      ...(m.config.env ?? {}),
      ...secretEnv,
      FLY_APP_NAME: m.app,
      FLY_MACHINE_ID: m.id,
      FLY_ALLOC_ID: m.id,
      FLY_REGION: m.region,
      FLY_PRIVATE_IP: m.privateIp,
      FLY_IMAGE_REF: imageRefString(ref),
      FLY_MACHINE_VERSION: m.version,
      FLY_VM_MEMORY_MB: String(m.config.guest.memory_mb),
      FLY_PROCESS_GROUP: 'app',
      HOSTNAME: m.id,
      // Every machine shares this host, so the internal port is mapped to a free local port.
      PORT: String(hostPort),
      AGENT_HOST: '127.0.0.1',
    };
    return env;
  }

  private needsPort(cfg: Json): boolean {
    return (Array.isArray(cfg.services) && cfg.services.length > 0) || (cfg.checks && Object.keys(cfg.checks).length > 0);
  }

  /** starting → (process) → started; or → failed for an unpullable image. Resumes a suspended process. */
  private async boot(m: MachineRecord, source: MachineEvent['source'], opts: { emitStarting?: boolean } = {}): Promise<void> {
    const epoch = ++m.epoch;
    m.launchPending = false;
    if (opts.emitStarting !== false) this.transition(m, 'starting', 'start', source);
    if (m.proc?.alive && m.proc.suspended) {
      m.proc.resume();
      this.log(m, 'sim', 'resumed from suspend (SIGCONT)');
      this.transition(m, 'started', 'start', 'flyd');
      this.startChecks(m, epoch);
      return;
    }
    if (m.proc?.alive) await m.proc.kill(); // a stale process (should not happen); never run two
    await clockSleep(this.clock, this.timing.slowBootMs);
    if (m.epoch !== epoch || this.closed) return;
    const resolved = this.resolveImage(m);
    if (resolved.kind === 'unpullable') {
      const error = `failed to pull image ${m.config.image}: ${resolved.reason}`;
      this.log(m, 'sim', error);
      this.transition(m, 'failed', 'launch', 'flyd', { error });
      return;
    }
    // Secrets are read at boot: a change reaches a machine only when it boots again.
    const secrets = this.secretEnv(m);
    if ('error' in secrets) {
      const error = `failed to set up the machine's secrets: ${secrets.error}`;
      this.log(m, 'sim', error);
      this.transition(m, 'failed', 'launch', 'flyd', { error });
      return;
    }
    const hostPort = await freePort();
    if (m.epoch !== epoch || this.closed) return;
    const env = this.machineEnv(m, resolved.cmd, hostPort, secrets.env);
    const proc = new MachineProcess(resolved.cmd, env, this.clock, (stream, line) => this.log(m, stream, line));
    m.proc = proc;
    m.hostPort = hostPort;
    void proc.exited.then((info) => this.onExit(m, proc, info));
    const ok = await proc.spawned;
    if (!ok) {
      if (m.proc === proc) m.proc = undefined;
      if (m.epoch !== epoch) return;
      const error = `failed to start the main process (${resolved.cmd.command}): ${proc.spawnError?.message ?? 'spawn failed'}`;
      this.log(m, 'sim', error);
      this.transition(m, 'failed', 'launch', 'flyd', { error });
      return;
    }
    this.log(m, 'sim', `main process pid ${proc.pid}; internal port ${m.internalPort} → 127.0.0.1:${hostPort}`);
    if (m.epoch !== epoch) return;
    if (this.needsPort(m.config)) {
      const r = await waitForPort(hostPort, proc, this.timing.portTimeoutMs, () => m.epoch !== epoch || this.closed);
      if (r === 'cancelled' || r === 'exited') return;
      if (r === 'timeout') this.log(m, 'sim', `port ${m.internalPort} (local ${hostPort}) still closed after ${this.timing.portTimeoutMs} ms; reporting started anyway`);
    }
    if (m.epoch !== epoch || !proc.alive) return;
    this.transition(m, 'started', 'start', 'flyd');
    this.startChecks(m, epoch);
  }

  private onExit(m: MachineRecord, proc: MachineProcess, info: ExitInfo): void {
    if (proc.spawnError) return;
    if (m.proc !== proc) return;
    m.proc = undefined;
    m.lastExit = info;
    this.log(
      m,
      'sim',
      `main process exited with code ${info.exitCode}${info.signal ? ` (signal ${info.signal})` : ''}${info.oomKilled ? ', out of memory' : ''}`,
    );
    if (info.requestedStop || this.closed) return; // the operation that asked for it moves the state
    if (!['started', 'starting'].includes(m.state)) return;
    const epoch = ++m.epoch;
    this.stopChecks(m);
    const policy: string = m.config.restart?.policy ?? 'on-failure';
    const maxRetries: number = m.config.restart?.max_retries ?? 10;
    const now = this.clock.now();
    m.failureTimes = m.failureTimes.filter((t) => now - t < 5 * 60_000);
    let restart = false;
    if (policy === 'always') restart = true;
    else if (policy === 'on-failure' && info.exitCode !== 0) restart = m.failureTimes.length < maxRetries;
    if (restart) {
      if (info.exitCode !== 0) m.failureTimes.push(now);
      m.restarts++;
      this.transition(m, 'starting', 'exit', 'flyd', { exit_event: this.exitEvent(info, true) });
      this.after(this.timing.restartBackoffMs, () => {
        if (m.epoch === epoch) void this.boot(m, 'flyd', { emitStarting: false });
      });
    } else {
      this.finishStopped(m, info);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // health checks (config.checks): run for real against the local port while started
  // ---------------------------------------------------------------------------------------------------------------

  private startChecks(m: MachineRecord, epoch: number): void {
    const checks = Object.entries<Json>(m.config.checks ?? {});
    if (!checks.length) return;
    const run = async () => {
      if (m.epoch !== epoch || m.state !== 'started' || this.closed) return;
      let minInterval = Infinity;
      for (const [name, c] of checks) {
        const iv = parseGoDuration(c.interval ?? '15s');
        minInterval = Math.min(minInterval, iv instanceof Error ? 15_000 : Math.max(1000, iv));
        const to = parseGoDuration(c.timeout ?? '2s');
        const timeoutMs = to instanceof Error ? 2000 : Math.max(100, to);
        const port = m.hostPort;
        let status: CheckState['status'] = 'critical';
        let output = '';
        if (port === undefined) output = 'machine has no local port';
        else if (c.type === 'http') {
          try {
            const res = await fetch(`http://127.0.0.1:${port}${c.path ?? '/'}`, {
              method: c.method ?? 'GET',
              signal: AbortSignal.timeout(timeoutMs),
            });
            await res.arrayBuffer().catch(() => undefined);
            status = res.status >= 200 && res.status < 400 ? 'passing' : 'critical';
            output = `HTTP GET ${c.path ?? '/'}: ${res.status}`;
          } catch (e) {
            output = `HTTP GET ${c.path ?? '/'}: ${(e as Error).message}`;
          }
        } else {
          const ok = await canConnect(port, '127.0.0.1', timeoutMs);
          status = ok ? 'passing' : 'critical';
          output = ok ? 'connection succeeded' : 'connection refused';
        }
        if (m.epoch !== epoch) return;
        m.checks.set(name, { name, status, output, updatedAt: this.clock.now() });
      }
      m.checkTimer = this.after(minInterval, () => void run());
    };
    void run();
  }

  private stopChecks(m: MachineRecord): void {
    this.cancel(m.checkTimer);
    m.checkTimer = undefined;
    for (const [name, c] of m.checks) m.checks.set(name, { ...c, status: 'critical', output: `machine is ${m.state}` });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // shutdown
  // ---------------------------------------------------------------------------------------------------------------

  /** Live child pids. */
  pids(): number[] {
    return [...this.machines.values()].map((m) => (m.proc?.alive ? m.proc.pid : undefined)).filter((p): p is number => p !== undefined);
  }

  /** Kills every child (by pid, SIGKILL to its process group), answers pending waits 503, clears timers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers.clear();
    const exits: Promise<unknown>[] = [];
    for (const m of this.machines.values()) {
      for (const w of [...m.waiters]) w.resolve({ status: 503, body: { error: 'unavailable: simulator shutting down' } });
      m.waiters.clear();
      if (m.proc?.alive) exits.push(m.proc.kill());
    }
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}

function truthy(v: unknown): boolean {
  const s = first(v);
  return s !== undefined && ['1', 'true', 't', 'yes'].includes(s.toLowerCase());
}

function first(v: unknown): string | undefined {
  if (Array.isArray(v)) return v.length ? String(v[0]) : undefined;
  return v === undefined || v === null ? undefined : String(v);
}
