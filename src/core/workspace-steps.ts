import { adoptsInstances, keepsWorkspaceState, ProvisionError, type InstanceSpec } from './provisioner.js';
import { buildInstanceSpec } from './instance-spec.js';
import type { ReconcilerDeps, Trigger } from './reconciler.js';
import { restartDecision } from './restart-policy.js';
import { sleepStep } from './idle.js';
import type { Workspace } from './types.js';

/** A failing destroy (or an instance whose state the backend cannot tell) is looked at again after this long. */
export const RETRY_MS = 5000;
const DEAD = new Set(['gone', 'stopped', 'failed']);

export interface StepsDeps extends ReconcilerDeps {
  /** Look at the workspace again at `at` (epoch ms), with this trigger. */
  requeue: (id: string, trigger: Trigger, at: number) => void;
  /** Whether this replica still acts (a sweep stops half way when it does not). */
  isActive: () => boolean;
}

/**
 * What the reconciler does for one workspace: read what should be (the row) and, when needed, what is (the
 * backend), and take the next step — launch, fail a registration that never came, take a silent agent offline,
 * restart it with backoff or fail a crash loop, stop a paused instance, destroy a removed one — plus the sweep of
 * instances nobody claims. Every write is compare-and-set on the status, so a step that lost a race with an API
 * action changes nothing.
 */
export class WorkspaceSteps {
  /** Launches in flight, so a request that supersedes one (pause, delete, restart) can abort it. */
  private readonly launches = new Map<string, AbortController>();
  /** Consecutive starts refused because the backend was down, per workspace: the outage backoff. */
  private readonly outageAttempts = new Map<string, number>();
  private readonly probeFailures = new Map<string, number>();
  private readonly lateNoted = new Set<string>();
  /** When each workspace's last launch got its instance back (epoch ms): backend news older than that is stale. */
  private readonly launchedAt = new Map<string, number>();

  constructor(private readonly d: StepsDeps) {}

  launching(id: string): boolean {
    return this.launches.has(id);
  }

  abortLaunch(id: string, reason: string): void {
    this.launches.get(id)?.abort(reason);
  }

  abortAll(reason: string): void {
    for (const c of this.launches.values()) c.abort(reason);
  }

  /** Workspaces with probes counted or a lateness noted: the pass checks whether their heartbeats came back. */
  noted(): string[] {
    return [...new Set([...this.probeFailures.keys(), ...this.lateNoted])];
  }

  /** Heartbeats are on time again: forget the probes and warnings about this workspace. */
  heartbeatsFresh(id: string): void {
    this.probeFailures.delete(id);
    this.lateNoted.delete(id);
  }

  /** Re-attaches to the instances of live workspaces (a new leader, or a platform restart). */
  async adopt(live: Workspace[]): Promise<void> {
    const withInstance = live.filter((w) => w.instanceId && ['provisioning', 'ready', 'degraded'].includes(w.status));
    const p = this.d.provisioner;
    if (adoptsInstances(p)) await p.adopt(withInstance.map((w) => ({ workspaceId: w.id, instanceId: w.instanceId! })));
  }

  /** One step towards what the workspace row says. Safe to call any time, any number of times. */
  async reconcileWorkspace(id: string, trigger: Trigger = {}): Promise<void> {
    const ws = await this.d.svc.find(id);
    if (!ws) return;
    const t = this.d.config.timing;
    const now = Date.now();
    // A watch event about an instance the workspace no longer has says nothing about the workspace.
    // Nor does news from before the workspace last changed or its last launch came back: a backend may restart the
    // same instance (Fly restarts the same machine), and a death seen before the restart — even one seen after the
    // restart was asked for, while the old instance still lay dead — must not end the restart.
    const since = Math.max(Date.parse(ws.statusChangedAt), this.launchedAt.get(id) ?? 0);
    const fresh = trigger.observedAt === undefined || trigger.observedAt >= since;
    const observed = trigger.instanceId === ws.instanceId && fresh ? trigger.observed : undefined;
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
        this.d.requeue(id, {}, deadline + 1);
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
        if (at > now) return this.d.requeue(id, {}, at + 1);
        return this.autoRestart(ws);
      }
      case 'paused': {
        if (!ws.instanceId) return;
        const state = observed ?? (await this.d.provisioner.inspect(ws.instanceId));
        if (state.state === 'unknown') return this.d.requeue(id, { action: trigger.action }, now + RETRY_MS);
        const running = state.state === 'running' || state.state === 'starting';
        if (running) await this.d.provisioner.stop(ws.instanceId);
        // The pause request waits for this (on whichever replica it was made).
        if (running || trigger.action === 'pause') await this.d.bus.publish('workspace.step', id, { step: 'instance stopped', instance_id: ws.instanceId });
        return;
      }
      case 'sleeping':
        // Stopped or suspended by the idle timeout (core/idle.ts); a wake's launch brings it back.
        return sleepStep({ ...this.d, requeue: (i, at) => this.d.requeue(i, {}, at) }, ws, observed, RETRY_MS);
      case 'removing':
        return this.destroy(ws);
      default:
        return;
    }
  }

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
      this.launchedAt.set(id, Date.now());
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
      this.d.requeue(ws.id, {}, Date.now() + RETRY_MS);
      return;
    }
    await this.d.secrets.deleteScope(ws.id);
    this.launchedAt.delete(ws.id);
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
    this.d.requeue(ws.id, {}, now + d.delayMs + 1);
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
      if (!this.d.isActive()) return;
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
