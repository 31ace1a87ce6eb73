import type { Logger } from 'pino';
import { ProvisionError, type InstanceState, type Provisioner } from './provisioner.js';
import type { SecretStore, WorkspaceStore } from './ports.js';
import type { Config } from './config.js';
import type { Sealer } from './crypto.js';
import type { EventBus } from './events.js';
import type { PlatformEvent, Workspace } from './types.js';
import type { WorkspaceService } from './workspaces.js';
import { WorkQueue } from './work-queue.js';
import { RETRY_MS, WorkspaceSteps } from './workspace-steps.js';

/** What set a reconcile off: a backend's news about the instance, or a request to look at the backend now. */
export interface Trigger {
  /** The instance's state as a backend watch reported it (no need to ask again)… */
  observed?: InstanceState;
  /** When the backend saw it (epoch ms): news older than the workspace's last status change is stale. */
  observedAt?: number;
  /** …and which instance it was about. */
  instanceId?: string;
  /** Ask the backend how the instance is, even if nothing suggests a problem (startup, takeover). */
  observe?: boolean;
  /** Set off by this person's request (the status event's `action`): they wait to hear it was done. */
  action?: string;
}

export interface ReconcilerDeps {
  config: Config;
  workspaces: WorkspaceStore;
  secrets: SecretStore;
  bus: EventBus;
  provisioner: Provisioner;
  sealer: Sealer;
  logger: Logger;
  svc: WorkspaceService;
  /** The URL agents use to reach the platform. */
  platformUrl: () => string | Promise<string>;
  /** Whether this replica may act on workspaces now (holds the reconciler lease). */
  mayAct: () => boolean;
  /** How reachable an agent's /healthz is; injectable for tests. */
  probe?: (ws: Workspace) => Promise<boolean>;
}

/** Reconciles running at once: launches wait on the backend, so this bounds backend calls in flight. */
const CONCURRENCY = 64;

/**
 * The lifecycle as one level-triggered reconciler. `reconcileWorkspace(id)` takes the next step for one workspace
 * (workspace-steps.ts); this loop decides when: a work queue fed by status events (API actions on any replica reach
 * it through the event bus), backend watch events, timers and a periodic pass over due workspaces.
 *
 * Only the replica holding the reconciler lease runs it (`activate` / `deactivate`); every step re-reads the row and
 * writes with compare-and-set on the status, so a step that lost a race with an API action changes nothing.
 */
export class Reconciler {
  private readonly queue: WorkQueue<Trigger>;
  private readonly steps: WorkspaceSteps;
  private passTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private passing: Promise<void> | undefined;
  private sweeping: Promise<void> | undefined;
  private active = false;
  private readonly unsubscribe: () => void;
  private readonly unwatch: () => void;

  constructor(private readonly d: ReconcilerDeps) {
    this.steps = new WorkspaceSteps({ ...d, requeue: (id, trigger, at) => this.queue.addAt(id, trigger, at), isActive: () => this.active });
    this.queue = new WorkQueue<Trigger>(CONCURRENCY, (id, t) => this.run(id, t), (a, b) => ({
      observed: b.observed ?? a.observed,
      instanceId: b.observed ? b.instanceId : a.instanceId,
      observedAt: b.observed ? b.observedAt : a.observedAt,
      observe: a.observe || b.observe,
      action: b.action ?? a.action,
    }));
    this.unsubscribe = d.bus.subscribe((ev) => this.onEvent(ev));
    this.unwatch = d.provisioner.watch((ev) => {
      if (this.active) this.queue.add(ev.workspaceId, { observed: { state: ev.state, reason: ev.reason, exitCode: ev.exitCode }, instanceId: ev.instanceId, observedAt: Date.now() });
    });
  }

  get isActive(): boolean {
    return this.active;
  }

  /**
   * This replica now acts on workspaces: re-attach to instances, remove orphans, and look at every live workspace
   * once with the backend's view (whatever the previous holder left half done — a launch, a delete — is picked up).
   */
  async activate(): Promise<void> {
    if (this.active) return;
    this.active = true;
    const t = this.d.config.timing;
    this.passTimer = setInterval(() => void this.pass(), t.livenessIntervalMs);
    this.passTimer.unref();
    this.sweepTimer = setInterval(() => void this.sweep(), t.reconcileIntervalMs);
    this.sweepTimer.unref();
    const live = await this.d.svc.list({});
    try {
      await this.steps.adopt(live);
    } catch (e) {
      this.d.logger.error({ err: e }, 'adopting running instances failed; their liveness is still watched by heartbeats');
    }
    await this.sweep();
    if (!this.active) return;
    this.queue.resume();
    for (const w of live) this.queue.add(w.id, { observe: w.status !== 'removing' });
  }

  /** The orphan sweep, never overlapping itself; a backend that cannot answer now is swept next time. */
  private sweep(): Promise<void> {
    this.sweeping ??= this.sweepOrphans()
      .catch((e) => {
        const down = e instanceof ProvisionError && e.code === 'BACKEND_UNAVAILABLE';
        this.d.logger[down ? 'error' : 'warn']({ err: down ? e.message : e }, down ? 'orphan sweep skipped: the backend is unavailable' : 'orphan sweep failed');
      })
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  /** This replica stops acting: launches in flight are abandoned (the next holder launches again). */
  async deactivate(reason = 'no longer the reconciler'): Promise<void> {
    if (!this.active) return;
    this.active = false;
    clearInterval(this.passTimer);
    clearInterval(this.sweepTimer);
    this.queue.pause();
    this.steps.abortAll(reason);
    await Promise.all([this.queue.idle(), this.passing, this.sweeping]);
  }

  async close(): Promise<void> {
    await this.deactivate('platform stopping');
    this.unsubscribe();
    this.unwatch();
  }

  /** Asks for a reconcile of one workspace (no-op unless active). */
  enqueue(id: string, trigger: Trigger = {}): void {
    if (this.active) this.queue.add(id, trigger);
  }

  /** Resolves when no reconcile is waiting or running (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  private onEvent(ev: PlatformEvent): void {
    if (!ev.workspace_id || ev.type !== 'workspace.status') return;
    // A request that supersedes a launch in flight (pause, delete, restart) abandons it; the reconcile it sets off
    // then does what the request asked.
    if (ev.data.action) this.steps.abortLaunch(ev.workspace_id, String(ev.data.reason ?? ev.data.action));
    this.enqueue(ev.workspace_id, ev.data.action ? { action: String(ev.data.action) } : {});
  }

  /**
   * The periodic pass: the store answers what is due (one index range per status, see WorkspaceStore.due), so it
   * costs what changed, not the number of workspaces. Workspaces with probes or a lateness noted are re-read to
   * forget those once their heartbeats are back.
   */
  pass(): Promise<void> {
    this.passing ??= (async () => {
      const now = Date.now();
      const t = this.d.config.timing;
      const iso = (ms: number) => new Date(ms).toISOString();
      const due = await this.d.workspaces.due({
        now: iso(now),
        provisioningSince: iso(now - t.provisionTimeoutMs),
        heartbeatBefore: iso(now - t.heartbeatTtlMs),
        removingSince: iso(now - RETRY_MS),
      });
      const dueIds = new Set<string>();
      for (const ws of due) {
        // A launch this leader is making is not due for another; a timed-out one is.
        if (ws.status === 'provisioning' && ws.pendingLaunch && this.steps.launching(ws.id) && now - Date.parse(ws.statusChangedAt) <= t.provisionTimeoutMs) continue;
        dueIds.add(ws.id);
        this.queue.add(ws.id, {});
      }
      for (const id of this.steps.noted()) {
        if (dueIds.has(id)) continue;
        const ws = await this.d.workspaces.get(id);
        if (!ws || !['ready', 'degraded'].includes(ws.status) || now - Date.parse(ws.lastHeartbeatAt ?? ws.statusChangedAt) <= t.heartbeatTtlMs) this.steps.heartbeatsFresh(id);
      }
    })()
      .catch((e) => this.d.logger.error({ err: e }, 'reconcile pass failed'))
      .finally(() => (this.passing = undefined));
    return this.passing;
  }

  private async run(id: string, trigger: Trigger): Promise<void> {
    if (!this.active || !this.d.mayAct()) return;
    try {
      await this.reconcileWorkspace(id, trigger);
    } catch (e) {
      this.d.logger.warn({ workspace_id: id, err: e }, 'reconcile failed; retrying');
      this.queue.addAt(id, {}, Date.now() + 1000);
    }
  }

  /** One step towards what the workspace row says. Safe to call any time, any number of times. */
  reconcileWorkspace(id: string, trigger: Trigger = {}): Promise<void> {
    return this.steps.reconcileWorkspace(id, trigger);
  }

  /** Destroys instances of this cluster that no live workspace claims. */
  sweepOrphans(): Promise<void> {
    return this.steps.sweepOrphans();
  }
}
