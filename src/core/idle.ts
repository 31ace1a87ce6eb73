import type { Logger } from 'pino';
import type { Config } from './config.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import type { WorkspaceStore } from './ports.js';
import { suspends, type InstanceState, type Provisioner } from './provisioner.js';
import { ROUTABLE } from './status.js';
import type { Workspace } from './types.js';

/**
 * Idle workspaces sleep, and wake on the next message (issue 14).
 *
 * A workspace with an `idle_timeout_s` is idle when, for that long, no A2A call went through the platform to it, no
 * stream to it was open and its heartbeats reported no active task. Then the leader's IdleWatcher moves it to
 * `sleeping` (tokens revoked) and the reconciler's `sleeping` step stops or suspends its instance (sleepStep). An
 * A2A request to a sleeping workspace wakes it (`provisioning`, "woken by A2A", pendingLaunch `resume`) and is held
 * until it is `ready` (Wakes); `paused` stays the explicit off that messages do not wake.
 *
 * Where activity is known: any replica may proxy a call, and only the leader decides on sleep, so the last activity
 * must be in the database (`active_at`). Writing it on every call would put a write on the A2A hot path; the event
 * bus would persist and fan out an event per call to every client. So each replica writes a workspace's activity at
 * most once per `activityFlushMs`, trailing edge (the latest time is written when the window ends, so none is
 * lost), with an UPDATE that only moves it forward. The database may thus trail the truth by up to two windows, so
 * the watcher waits that much past the timeout (sleepDue): a workspace sleeps between its timeout and its timeout
 * plus two windows (10 s by default) after its last activity, never earlier.
 */

/** The idle rule: how long the workspace has been idle (ms), or null when it is busy or never sleeps. */
export function idleMs(ws: Workspace, now: number): number | null {
  if (ws.idleTimeoutS == null || !ROUTABLE.includes(ws.status)) return null;
  if (activeTasks(ws) > 0) return null;
  const last = Math.max(Date.parse(ws.statusChangedAt), ws.activeAt ? Date.parse(ws.activeAt) : 0);
  return now - last;
}

/**
 * Whether the workspace should sleep now. `flushMs` is Activity's window: a replica writes an activity within one
 * window, and a write may carry a time up to one window older than itself, so the stored time may trail the true
 * last activity by up to two windows. Sleeping only past the timeout plus that margin means a workspace never sleeps
 * less than its timeout after a call on any replica (a call in flight is refreshed every window while open).
 */
export function sleepDue(ws: Workspace, now: number, flushMs: number): boolean {
  const idle = idleMs(ws, now);
  return idle !== null && idle > ws.idleTimeoutS! * 1000 + 2 * flushMs;
}

export function activeTasks(ws: Workspace): number {
  const n = Number(ws.heartbeat?.active_tasks ?? 0);
  return Number.isFinite(n) ? n : 0;
}

interface Entry {
  /** When this replica last wrote the workspace's activity (epoch ms). */
  written: number;
  /** Activity not written yet (epoch ms; 0: none). */
  pending: number;
  /** Calls and streams to it open through this replica. */
  open: number;
  timer: NodeJS.Timeout | undefined;
}

/** This replica's record of activity: a map lookup per call, at most one write per workspace per window. */
export class Activity {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(private readonly d: { workspaces: WorkspaceStore; config: Config; logger: Logger }) {}

  private get flushMs(): number {
    return this.d.config.idle.activityFlushMs;
  }

  /** An A2A call to the workspace went through this replica now. */
  touch(id: string, at = Date.now()): void {
    if (this.closed) return;
    let e = this.entries.get(id);
    if (!e) this.entries.set(id, (e = { written: 0, pending: 0, open: 0, timer: undefined }));
    if (at > e.pending) e.pending = at;
    if (e.timer) return;
    const wait = e.written + this.flushMs - at;
    if (wait <= 0) this.flush(id, e);
    else e.timer = setTimeout(() => this.fire(id), wait).unref();
  }

  /** A call or stream is open: the workspace counts as active until the returned function is called. */
  open(id: string): () => void {
    this.touch(id);
    const e = this.entries.get(id);
    if (!e) return () => {};
    e.open++;
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      e.open--;
      this.touch(id);
    };
  }

  /** Whether a call or stream to the workspace is open through this replica. */
  isOpen(id: string): boolean {
    return (this.entries.get(id)?.open ?? 0) > 0;
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
  }

  private fire(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    e.timer = undefined;
    if (e.open > 0) e.pending = Math.max(e.pending, Date.now());
    if (e.pending) this.flush(id, e);
    else this.entries.delete(id);
  }

  private flush(id: string, e: Entry): void {
    const at = e.pending;
    e.pending = 0;
    e.written = Date.now();
    this.d.workspaces.touchActive(id, new Date(at).toISOString()).catch((err) => this.d.logger.warn({ workspace_id: id, err }, 'recording activity failed'));
    // The window: later activity waits for it; an open stream is written again when it ends; then forgotten.
    if (!this.closed) e.timer = setTimeout(() => this.fire(id), this.flushMs).unref();
  }
}

export interface IdleWatcherDeps {
  config: Config;
  workspaces: WorkspaceStore;
  logger: Logger;
  activity: Activity;
  /** Whether this replica acts on workspaces now (the reconciler's leader). */
  isActive: () => boolean;
  /** Puts one workspace to sleep (WorkspaceService.sleep): compare-and-set, one event, tokens revoked. */
  sleep: (ws: Workspace, reason: string) => Promise<boolean>;
}

/** On the leader: looks for idle workspaces every liveness interval and puts them to sleep. */
export class IdleWatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly d: IdleWatcherDeps) {
    this.timer = setInterval(() => void this.tick(), d.config.timing.livenessIntervalMs);
    this.timer.unref();
  }

  /** One look (never overlapping itself). */
  tick(): Promise<void> {
    this.running ??= this.check()
      .catch((e) => this.d.logger.error({ err: e }, 'idle check failed'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async check(): Promise<void> {
    if (!this.d.isActive()) return;
    const now = Date.now();
    for (const ws of await this.d.workspaces.sleepCandidates()) {
      if (!this.d.isActive()) return;
      if (!sleepDue(ws, now, this.d.config.idle.activityFlushMs) || this.d.activity.isOpen(ws.id)) continue;
      const idleS = Math.round(idleMs(ws, now)! / 1000);
      await this.d.sleep(ws, `idle for ${idleS} s (idle_timeout_s ${ws.idleTimeoutS}): no A2A call, no open stream, no active task`);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}

/**
 * The reconciler's step for a `sleeping` workspace: its instance stopped, or suspended where the backend can
 * (Fly, within its limits), state kept. Returns when it is down; 'unknown' is looked at again later.
 */
export async function sleepStep(
  d: { provisioner: Provisioner; bus: EventBus; requeue: (id: string, at: number) => void },
  ws: Workspace,
  observed: InstanceState | undefined,
  retryMs: number,
): Promise<void> {
  if (!ws.instanceId) return;
  const p = d.provisioner;
  const state = observed ?? (await p.inspect(ws.instanceId));
  if (state.state === 'unknown') return d.requeue(ws.id, Date.now() + retryMs);
  if (state.state !== 'running' && state.state !== 'starting') return;
  const how = suspends(p) ? await p.suspend(ws.instanceId) : (await p.stop(ws.instanceId), 'stopped' as const);
  await d.bus.publish('workspace.step', ws.id, { step: how === 'suspended' ? 'instance suspended' : 'instance stopped', instance_id: ws.instanceId, sleeping: true });
}

/** Reasons of a wake in progress: A2A requests that find the workspace `provisioning` with one are held too. */
export const WAKE_REASONS = { a2a: 'woken by A2A', request: 'wake requested' } as const;

export interface WakesDeps {
  bus: EventBus;
  config: Config;
  find: (id: string) => Promise<Workspace | undefined>;
  /** Asks for the wake (WorkspaceService.wake): compare-and-set, so of many replicas one wakes it. */
  wake: (id: string) => Promise<unknown>;
}

interface Waiting {
  done: Promise<void>;
  waiters: number;
  startedAt: number;
  replied: boolean;
  stop: () => void;
}

/** What a held request learns: the wake it shared, and how to report its first reply (once per wake). */
export interface Held {
  /** Call when the request's answer starts: the first one of a wake gives the wake-to-first-reply time (s). */
  replied(): number | null;
}

/**
 * Wakes on this replica: concurrent requests to one sleeping workspace share one wake and one wait; each waits
 * at most `timeoutMs` and then gets `workspace_not_ready`.
 */
export class Wakes {
  private readonly waiting = new Map<string, Waiting>();

  constructor(private readonly d: WakesDeps) {}

  /** Whether a request finding the workspace in this state should be held for a wake. */
  static wakes(ws: Pick<Workspace, 'status' | 'statusReason'>): boolean {
    return ws.status === 'sleeping' || (ws.status === 'provisioning' && Object.values(WAKE_REASONS).includes(ws.statusReason as never));
  }

  /** Wakes the workspace (if it still sleeps) and resolves once it is routable; ApiError 503 otherwise. */
  async hold(id: string): Promise<Held> {
    let w = this.waiting.get(id);
    if (!w) this.waiting.set(id, (w = this.begin(id)));
    w.waiters++;
    const entry = w;
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.d.config.idle.wakeTimeoutMs;
    const timedOut = new Promise<never>((_r, reject) => {
      timer = setTimeout(async () => {
        const ws = await this.d.find(id).catch(() => undefined);
        reject(new ApiError(503, 'workspace_not_ready', `workspace ${id} did not wake within ${timeoutMs / 1000} s${ws ? ` (it is ${ws.status})` : ''}`, { status: ws?.status ?? 'sleeping' }));
      }, timeoutMs);
    });
    timedOut.catch(() => undefined);
    try {
      await Promise.race([entry.done, timedOut]);
    } finally {
      clearTimeout(timer);
      if (--entry.waiters === 0 && this.waiting.get(id) === entry) {
        entry.stop();
        this.waiting.delete(id);
      }
    }
    return {
      replied: () => {
        if (entry.replied) return null;
        entry.replied = true;
        return (Date.now() - entry.startedAt) / 1000;
      },
    };
  }

  private begin(id: string): Waiting {
    let unsubscribe = () => {};
    const entry: Waiting = { done: Promise.resolve(), waiters: 0, startedAt: Date.now(), replied: false, stop: () => unsubscribe() };
    entry.done = new Promise<void>((resolve, reject) => {
      const settle = (ws: Pick<Workspace, 'status' | 'statusReason'> | undefined, reason?: string) => {
        if (!ws) return reject(new ApiError(404, 'workspace_not_found', `no workspace with id ${id}`));
        if (ROUTABLE.includes(ws.status)) return resolve();
        if (Wakes.wakes(ws)) return;
        reject(new ApiError(503, 'workspace_not_ready', `workspace ${id} is ${ws.status}${reason ? ` (${reason})` : ''}; it did not wake`, { status: ws.status }));
      };
      unsubscribe = this.d.bus.subscribe((ev) => {
        if (ev.workspace_id !== id || ev.type !== 'workspace.status') return;
        settle({ status: ev.data.to as Workspace['status'], statusReason: String(ev.data.reason ?? '') }, String(ev.data.reason ?? ''));
      });
      void (async () => {
        try {
          await this.d.wake(id);
          const ws = await this.d.find(id);
          settle(ws, ws?.statusReason ?? undefined);
        } catch (e) {
          reject(e);
        }
      })();
    });
    // Nobody may be waiting when it settles (all timed out): no unhandled rejection.
    entry.done.catch(() => undefined).finally(() => entry.stop());
    return entry;
  }
}
