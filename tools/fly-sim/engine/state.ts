/**
 * What every engine module works on: options, clock, timers, the app and machine tables, and the state
 * transition that all of them go through (it feeds events, logs, listeners and waits in one place).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FaultRegistry, type FaultSpec } from '../faults.js';
import { FLY_RATE_LIMITS, RateLimiter } from '../ratelimit.js';
import type { EmbeddedAgentHost } from '../light.js';
import type { LogStream } from '../runner.js';
import type { AppSecrets } from '../secrets.js';
import { loadSpec, type FlySpec } from '../spec.js';
import { newUlid, realClock, REGION_CODES, type Clock, type TimerHandle } from '../util.js';
import { DEFAULT_TIMING, err, type AppRecord, type EngineOptions, type MachineEvent, type MachineRecord, type MachineState, type SimTiming } from './types.js';
import { checkWaiters } from './waits.js';

export class EngineState {
  readonly clock: Clock;
  readonly faults = new FaultRegistry();
  readonly rateLimiter: RateLimiter;
  rateLimitsEnabled: boolean;
  readonly timing: SimTiming;
  readonly spec: FlySpec;
  readonly strictSpec: boolean;
  readonly defaultRegion: string;
  // Not private: the engine's modules are functions over this state. Outside tools/fly-sim/engine/, use Engine's methods.
  readonly apps = new Map<string, AppRecord>();
  readonly appSecrets = new Map<string, AppSecrets>();
  readonly machines = new Map<string, MachineRecord>();
  /** Destroyed machines after their visible window, kept for list?include_deleted. */
  readonly graveyard = new Map<string, MachineRecord>();
  readonly timers = new Set<TimerHandle>();
  closed = false;
  /** Where light agents run (made on the first light boot; see light.ts). */
  private lightHostValue: Promise<EmbeddedAgentHost> | undefined;
  /** Each machine's disk (its HOME): kept across restarts, gone with the machine, as a Fly rootfs is. */
  private disks: string | undefined;

  constructor(readonly opts: EngineOptions = {}) {
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
  after(ms: number, fn: () => void): TimerHandle {
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

  cancel(h: TimerHandle | undefined): void {
    if (!h) return;
    const imm = (h as { immediate?: NodeJS.Immediate }).immediate;
    if (imm) clearImmediate(imm);
    else {
      this.clock.clearTimeout(h);
      this.timers.delete(h);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // lookup
  // ---------------------------------------------------------------------------------------------------------------

  ensureApp(name: string, orgSlug = 'personal', network = 'default'): AppRecord {
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

  validateBody(operationId: string, body: unknown): void {
    const r = this.spec.validate(operationId, body, { strict: this.strictSpec });
    if (!r.ok) throw err(400, r.error ?? 'invalid request body');
  }

  // ---------------------------------------------------------------------------------------------------------------
  // transitions
  // ---------------------------------------------------------------------------------------------------------------

  transition(m: MachineRecord, state: MachineState, type: MachineEvent['type'], source: MachineEvent['source'], request?: Record<string, unknown>): void {
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
    checkWaiters(m);
  }

  log(m: MachineRecord, stream: LogStream, message: string): void {
    const prefix = stream === 'sim' ? '[fly-sim] ' : '';
    m.logs.push(stream, prefix + message, m.version, this.clock.now());
    if (this.opts.onMachineLog) {
      const lines = m.logs.tail(1);
      if (lines[0]) this.opts.onMachineLog(m.id, lines[0]);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // shutdown
  // ---------------------------------------------------------------------------------------------------------------

  /** Live child pids, so a test can check that none outlives close(). */
  pids(): number[] {
    return [...this.machines.values()].map((m) => (m.proc?.alive ? m.proc.pid : undefined)).filter((p): p is number => p !== undefined);
  }

  /** The machine's disk directory, made on first use. */
  diskOf(m: MachineRecord): string {
    this.disks ??= fs.mkdtempSync(path.join(os.tmpdir(), 'fly-sim-disks-'));
    const dir = path.join(this.disks, m.id);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  dropDisk(m: MachineRecord): void {
    if (this.disks) fs.rmSync(path.join(this.disks, m.id), { recursive: true, force: true });
  }

  /** The one host of every light agent of this simulator, loaded on first use (plain simulators never load the agent). */
  lightHost(): Promise<EmbeddedAgentHost> {
    this.lightHostValue ??= import('../light.js').then(async ({ EmbeddedAgentHost }) => {
      const host = new EmbeddedAgentHost();
      await host.start();
      return host;
    });
    return this.lightHostValue;
  }

  /** Light agents running now. */
  lightAgents(): number {
    let n = 0;
    for (const m of this.machines.values()) if (m.proc?.alive && m.proc.dispatch) n++;
    return n;
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
    if (this.lightHostValue) await (await this.lightHostValue).close();
    if (this.disks) fs.rmSync(this.disks, { recursive: true, force: true });
  }
}
