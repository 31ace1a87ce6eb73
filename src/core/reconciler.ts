import type { Logger } from 'pino';
import { adoptsInstances, keepsWorkspaceState, ProvisionError, type InstanceSpec, type InstanceState, type Provisioner } from '../backends/provisioner.js';
import type { SecretStore, WorkspaceStore } from './ports.js';
import type { Config } from './config.js';
import type { Sealer } from './crypto.js';
import type { EventBus } from './events.js';
import { buildInstanceSpec } from './instance-spec.js';
import { restartDecision } from './restart-policy.js';
import type { PlatformEvent, Workspace } from './types.js';
import type { WorkspaceService } from './workspaces.js';
import { WorkQueue } from './work-queue.js';

/** What set a reconcile off: a backend's news about the instance, or a request to look at the backend now. */
export interface Trigger {
  /** The instance's state as a backend watch reported it (no need to ask again)… */
  observed?: InstanceState;
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

/** Statuses the periodic pass looks at; the others change only by request. */
const WATCHED = ['provisioning', 'ready', 'degraded', 'offline', 'removing'] as const;
/** A failing destroy is tried again after this long. */
const DESTROY_RETRY_MS = 5000;
/** Reconciles running at once: launches wait on the backend, so this bounds backend calls in flight. */
const CONCURRENCY = 64;
const DEAD = new Set(['gone', 'stopped', 'failed']);

/**
 * The lifecycle as one level-triggered reconciler. `reconcileWorkspace(id)` reads the workspace (what should be) and,
 * when it needs to, what the backend says about its instance (what is), and takes the next step: launch, fail a
 * registration that never came, take a silent agent offline, restart it with backoff or fail a crash loop, stop a
 * paused instance, destroy a removed one. A work queue feeds it from status events (API actions on any replica
 * reach it through the event bus), backend watch events, timers and a periodic pass over due workspaces.
 *
 * Only the replica holding the reconciler lease runs it (`activate` / `deactivate`); every step re-reads the row and
 * writes with compare-and-set on the status, so a step that lost a race with an API action changes nothing.
 */
export class Reconciler {
  private readonly queue: WorkQueue<Trigger>;
  /** Launches in flight, so a request that supersedes one (pause, delete, restart) can abort it. */
  private readonly launches = new Map<string, AbortController>();
  /** Consecutive starts refused because the backend was down, per workspace: the outage backoff. */
  private readonly outageAttempts = new Map<string, number>();
  private readonly probeFailures = new Map<string, number>();
  private readonly lateNoted = new Set<string>();
  private passTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private passing: Promise<void> | undefined;
  private sweeping: Promise<void> | undefined;
  private active = false;
  private readonly unsubscribe: () => void;
  private readonly unwatch: () => void;

  constructor(private readonly d: ReconcilerDeps) {
    this.queue = new WorkQueue<Trigger>(CONCURRENCY, (id, t) => this.run(id, t), (a, b) => ({
      observed: b.observed ?? a.observed,
      instanceId: b.observed ? b.instanceId : a.instanceId,
      observe: a.observe || b.observe,
      action: b.action ?? a.action,
    }));
    this.unsubscribe = d.bus.subscribe((ev) => this.onEvent(ev));
    this.unwatch = d.provisioner.watch((ev) => {
      if (this.active) this.queue.add(ev.workspaceId, { observed: { state: ev.state, reason: ev.reason, exitCode: ev.exitCode }, instanceId: ev.instanceId });
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
    const withInstance = live.filter((w) => w.instanceId && ['provisioning', 'ready', 'degraded'].includes(w.status));
    try {
      const p = this.d.provisioner;
      if (adoptsInstances(p)) await p.adopt(withInstance.map((w) => ({ workspaceId: w.id, instanceId: w.instanceId! })));
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
    for (const c of this.launches.values()) c.abort(reason);
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
    if (ev.data.action) this.launches.get(ev.workspace_id)?.abort(String(ev.data.reason ?? ev.data.action));
    this.enqueue(ev.workspace_id, ev.data.action ? { action: String(ev.data.action) } : {});
  }

  /** The periodic pass: one query, then only the workspaces with something due are reconciled. */
  pass(): Promise<void> {
    this.passing ??= (async () => {
      const now = Date.now();
      const t = this.d.config.timing;
      for (const ws of await this.d.svc.list({ status: [...WATCHED] })) {
        if (this.due(ws, now, t)) this.queue.add(ws.id, {});
      }
    })()
      .catch((e) => this.d.logger.error({ err: e }, 'reconcile pass failed'))
      .finally(() => (this.passing = undefined));
    return this.passing;
  }

  private due(ws: Workspace, now: number, t: Config['timing']): boolean {
    switch (ws.status) {
      case 'provisioning':
        return (!!ws.pendingLaunch && !this.launches.has(ws.id)) || now - Date.parse(ws.statusChangedAt) > t.provisionTimeoutMs;
      case 'ready':
      case 'degraded': {
        const fresh = now - Date.parse(ws.lastHeartbeatAt ?? ws.statusChangedAt) <= t.heartbeatTtlMs;
        if (fresh) {
          this.probeFailures.delete(ws.id);
          this.lateNoted.delete(ws.id);
        }
        return !fresh;
      }
      case 'offline':
        return !!ws.nextRestartAt && Date.parse(ws.nextRestartAt) <= now;
      case 'removing':
        return now - Date.parse(ws.statusChangedAt) > DESTROY_RETRY_MS;
      default:
        return false;
    }
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
  async reconcileWorkspace(id: string, trigger: Trigger = {}): Promise<void> {
    const ws = await this.d.svc.find(id);
    if (!ws) return;
    const t = this.d.config.timing;
    const now = Date.now();
    // A watch event about an instance the workspace no longer has says nothing about the workspace.
    const observed = trigger.instanceId === ws.instanceId ? trigger.observed : undefined;
    switch (ws.status) {
      case 'provisioning': {
        if (ws.pendingLaunch) return this.launch(ws);
        const deadline = Date.parse(ws.statusChangedAt) + t.provisionTimeoutMs;
        if (now > deadline) {
          // Stop it, so a late registration cannot contradict `failed`; logs stay readable.
          if (ws.instanceId) await this.d.provisioner.stop(ws.instanceId).catch(() => undefined);
          await this.d.svc.transition(ws, 'failed', `AGENT_NEVER_REGISTERED: the agent did not register within ${Math.round(t.provisionTimeoutMs / 1000)} s; see GET /workspaces/${ws.id}/logs`);
          return;
        }
        const state = observed ?? (trigger.observe && ws.instanceId ? await this.d.provisioner.inspect(ws.instanceId) : undefined);
        if (state && DEAD.has(state.state)) return this.markOffline(ws, `instance ${state.state}: ${state.reason ?? 'no reason given'}`);
        this.queue.addAt(id, {}, deadline + 1);
        return;
      }
      case 'ready':
      case 'degraded': {
        if (observed && DEAD.has(observed.state)) return this.markOffline(ws, `instance ${observed.state}: ${observed.reason ?? 'no reason given'}`);
        const last = Date.parse(ws.lastHeartbeatAt ?? ws.statusChangedAt);
        if (now - last > t.heartbeatTtlMs) return this.confirmGone(ws, Math.round((now - last) / 1000));
        if (trigger.observe) {
          const state = ws.instanceId ? await this.d.provisioner.inspect(ws.instanceId) : { state: 'gone' as const, reason: 'no instance' };
          if (DEAD.has(state.state)) await this.markOffline(ws, `found the instance ${state.state}${state.reason ? ` (${state.reason})` : ''}`);
        }
        return;
      }
      case 'offline': {
        if (!ws.nextRestartAt) return;
        const at = Date.parse(ws.nextRestartAt);
        if (at > now) return this.queue.addAt(id, {}, at + 1);
        return this.autoRestart(ws);
      }
      case 'paused': {
        if (!ws.instanceId) return;
        const state = observed ?? (await this.d.provisioner.inspect(ws.instanceId));
        if (state.state === 'unknown') return this.queue.addAt(id, { action: trigger.action }, now + DESTROY_RETRY_MS);
        const running = state.state === 'running' || state.state === 'starting';
        if (running) await this.d.provisioner.stop(ws.instanceId);
        // The pause request waits for this (on whichever replica it was made).
        if (running || trigger.action === 'pause') await this.d.bus.publish('workspace.step', id, { step: 'instance stopped', instance_id: ws.instanceId });
        return;
      }
      case 'removing':
        return this.destroy(ws);
      default:
        return;
    }
  }

  // ---- steps ---------------------------------------------------------------------------------------------

  /**
   * Asks the backend for the instance the workspace waits for (`pendingLaunch`). Every start, restart and resume
   * comes through here, so every instance gets fresh tokens and the previous instance's are revoked first.
   * Failures end in `failed` with the reason, or in `offline` with a retry when the backend is down.
   */
  private async launch(ws: Workspace): Promise<void> {
    const id = ws.id;
    const kind = ws.pendingLaunch!;
    const requestedAt = ws.statusChangedAt;
    const tokens = await this.d.svc.rotateTokens(id);
    // The new instance is unknown until it registers; its URL is checked then.
    await this.d.workspaces.update(id, { agentUrl: null });
    let spec: InstanceSpec;
    try {
      spec = await buildInstanceSpec(ws, tokens, { ...this.d, platformUrl: await this.d.platformUrl() });
    } catch (e) {
      // E.g. the address agents reach the platform on could not be set up (the backend's engine is down).
      const reason = e instanceof ProvisionError ? `${e.code}: ${e.message}` : `could not prepare the instance: ${(e as Error).message}`;
      await this.d.svc.transition(ws, 'failed', reason, { pendingLaunch: null });
      return;
    }
    const abort = new AbortController();
    this.launches.set(id, abort);
    // Progress steps are published in order, after 'instance requested' and before 'instance started'.
    let steps: Promise<unknown> = Promise.resolve();
    spec.progress = (step, data = {}) => {
      steps = steps.then(() => this.d.bus.publish('workspace.step', id, { step, ...data })).catch(() => undefined);
    };
    spec.signal = abort.signal;
    await this.d.bus.publish('workspace.step', id, {
      step: 'instance requested',
      action: kind,
      backend: this.d.provisioner.name,
      image: spec.image,
      tier: ws.tier,
      region: spec.region,
    });
    try {
      const p = this.d.provisioner;
      const handle =
        kind === 'start' || !ws.instanceId ? await p.start(spec) : kind === 'resume' ? await p.resume(ws.instanceId, spec) : await p.restart(ws.instanceId, spec);
      await steps;
      const instance = { instanceId: handle.instanceId, instance: { url: handle.url, headers: handle.headers, details: handle.details }, needsRestart: false };
      // The launch is done unless a request superseded it meanwhile (then the instance is recorded, so the next
      // step can stop or destroy it, and the newer request's launch stays pending).
      const done = await this.d.workspaces.updateIf(id, { status: 'provisioning', statusChangedAt: requestedAt }, { ...instance, pendingLaunch: null });
      if (!done) await this.d.workspaces.update(id, instance);
      this.outageAttempts.delete(id);
      await this.d.bus.publish('workspace.step', id, { step: 'instance started', instance_id: handle.instanceId, ...handle.details });
    } catch (e) {
      await steps;
      if (abort.signal.aborted) {
        // Whoever aborted it decides what happens next.
        await this.d.bus.publish('workspace.step', id, { step: 'start abandoned', reason: String(abort.signal.reason) });
        return;
      }
      const reason = e instanceof ProvisionError ? `${e.code}: ${e.message}` : `backend error: ${(e as Error).message}`;
      this.d.logger.warn({ workspace_id: id, err: (e as Error).message }, 'instance start failed');
      const cur = await this.d.svc.find(id);
      if (cur && cur.status === 'provisioning' && cur.statusChangedAt === requestedAt) {
        // A backend that is down for a while (engine restarting, API outage) is retried with the restart backoff,
        // for as long as the outage lasts; anything else is final until someone restarts the workspace.
        if (e instanceof ProvisionError && e.code === 'BACKEND_UNAVAILABLE' && e.retryable) await this.markOffline(cur, reason, { outage: true });
        else await this.d.svc.transition(cur, 'failed', reason, { pendingLaunch: null });
      }
    } finally {
      if (this.launches.get(id) === abort) this.launches.delete(id);
    }
  }

  /** Destroys the instance of a `removing` workspace; on failure it stays `removing` and is tried again. */
  private async destroy(ws: Workspace): Promise<void> {
    try {
      if (ws.instanceId) await this.d.provisioner.destroy(ws.instanceId);
      const p = this.d.provisioner;
      if (keepsWorkspaceState(p)) await p.forget(ws.id);
    } catch (e) {
      const reason = `delete requested; destroying the instance failed, will retry: ${(e as Error).message}`;
      // The same failure again (a backend down for a while) only restarts the retry clock: no event every 5 s.
      if (ws.statusReason === reason) await this.d.workspaces.update(ws.id, { statusChangedAt: new Date().toISOString() });
      else await this.d.svc.transition(ws, 'removing', reason);
      this.queue.addAt(ws.id, {}, Date.now() + DESTROY_RETRY_MS);
      return;
    }
    await this.d.secrets.deleteScope(ws.id);
    await this.d.svc.transition(ws, 'removed', 'instance destroyed', { removedAt: new Date().toISOString() });
  }

  /** Missed heartbeats: ask the backend, then the agent itself; only repeated confirmation means offline. */
  private async confirmGone(ws: Workspace, silentS: number): Promise<void> {
    const inst = ws.instanceId ? await this.d.provisioner.inspect(ws.instanceId) : { state: 'gone' as const, reason: 'no instance' };
    if (DEAD.has(inst.state)) {
      await this.markOffline(ws, `no heartbeat for ${silentS} s and the backend reports the instance ${inst.state}${inst.reason ? ` (${inst.reason})` : ''}`);
      return;
    }
    if (await (this.d.probe ?? probeHealthz)(ws)) {
      this.probeFailures.delete(ws.id);
      if (!this.lateNoted.has(ws.id)) {
        this.lateNoted.add(ws.id);
        this.d.logger.warn({ workspace_id: ws.id, silent_s: silentS }, 'heartbeats late, but the agent answers /healthz: keeping it');
      }
      return;
    }
    const failures = (this.probeFailures.get(ws.id) ?? 0) + 1;
    this.probeFailures.set(ws.id, failures);
    if (failures >= this.d.config.timing.probeConfirmations) {
      this.probeFailures.delete(ws.id);
      await this.markOffline(ws, `no heartbeat for ${silentS} s and /healthz did not answer ${failures} probes (backend: ${inst.state})`);
    }
  }

  /**
   * The instance is gone while the workspace should be running. Schedules an automatic restart with exponential
   * backoff, or ends in `failed` when it keeps dying (crash loop). A backend outage is not the agent crashing: it
   * does not count toward the crash loop and is retried for as long as it lasts, backing off up to the maximum.
   */
  private async markOffline(ws: Workspace, reason: string, opts: { outage?: boolean } = {}): Promise<void> {
    const now = Date.now();
    const outageAttempts = this.outageAttempts.get(ws.id) ?? 0;
    if (opts.outage) this.outageAttempts.set(ws.id, outageAttempts + 1);
    else this.outageAttempts.delete(ws.id);
    const d = restartDecision(ws, reason, this.d.config.timing, now, opts.outage ? { outageAttempts } : undefined);
    if (d.kind === 'crash loop') {
      if (ws.status !== 'offline' && !(await this.d.svc.transition(ws, 'offline', reason, { pendingLaunch: null }))) return;
      await this.d.svc.transition(ws, 'failed', d.why, { nextRestartAt: null });
      return;
    }
    const next = new Date(now + d.delayMs).toISOString();
    if (ws.status === 'offline') await this.d.workspaces.update(ws.id, { nextRestartAt: next, restarts: d.recent });
    else if (!(await this.d.svc.transition(ws, 'offline', `${reason}; restarting in ${(d.delayMs / 1000).toFixed(1)} s`, { nextRestartAt: next, restarts: d.recent, pendingLaunch: null }))) return;
    this.queue.addAt(ws.id, {}, now + d.delayMs + 1);
  }

  /** Restarts an `offline` workspace whose backoff has passed, and launches at once. */
  private async autoRestart(ws: Workspace): Promise<void> {
    const restarts = [...ws.restarts, new Date().toISOString()];
    const ok = await this.d.svc.transition(ws, 'provisioning', `automatic restart (attempt ${restarts.length})`, {
      restarts,
      restartCount: ws.restartCount + 1,
      nextRestartAt: null,
      pendingLaunch: 'restart',
    });
    if (!ok) return;
    const fresh = await this.d.svc.find(ws.id);
    if (fresh?.status === 'provisioning' && fresh.pendingLaunch) await this.launch(fresh);
  }

  /**
   * Destroys instances of this cluster that no live workspace claims: their workspace was removed, is unknown, or
   * now has another instance, or a launch that made it was interrupted (a dead leader's) and the next replaces it.
   */
  async sweepOrphans(): Promise<void> {
    const { provisioner, logger } = this.d;
    const owned = await provisioner.list();
    const byId = new Map((await this.d.svc.list({})).map((w) => [w.id, w]));
    for (const inst of owned) {
      if (!this.active) return;
      // Its own instance, or one our launch in flight has not recorded yet. Only the leader launches, so an
      // instance no launch of ours is making — say, one an interrupted launch of a dead leader made — is garbage.
      const claimed = (w: Workspace | undefined) => !!w && (w.instanceId === inst.instanceId || this.launches.has(w.id));
      const ws = byId.get(inst.workspaceId);
      if (claimed(ws)) continue;
      // Re-read: the workspace may have recorded this instance since the list was taken.
      if (ws && claimed(await this.d.svc.find(ws.id))) continue;
      logger.info({ instance_id: inst.instanceId, workspace_id: inst.workspaceId }, 'destroying orphaned instance');
      await provisioner.destroy(inst.instanceId).catch((e) => logger.warn({ err: e, instance_id: inst.instanceId }, 'orphan destroy failed'));
    }
    if (keepsWorkspaceState(provisioner)) {
      const liveIds = async () => (await this.d.svc.list({})).map((w) => w.id);
      await provisioner.forgetUnclaimed(liveIds).catch((e) => logger.warn({ err: e }, 'sweeping what removed workspaces left in the backend failed'));
    }
  }
}

async function probeHealthz(ws: Workspace): Promise<boolean> {
  if (!ws.instance?.url) return false;
  try {
    const res = await fetch(new URL('/healthz', ws.instance.url), { headers: ws.instance.headers, signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}
