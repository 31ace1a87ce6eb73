import type { Logger } from 'pino';
import type { Provisioner } from '../backends/provisioner.js';
import type { Config } from './config.js';
import type { Workspace } from './types.js';
import type { WorkspaceService } from './workspaces.js';
import { sweepOrphans } from './reconcile.js';

/**
 * Periodic checks: provision timeouts, missed heartbeats (confirmed with the backend and an agent probe before
 * anything is declared dead), due automatic restarts, and removals that need another try.
 * A busy agent is not a dead agent: heartbeats come from their own timer, and a late heartbeat alone never
 * takes a workspace offline while the backend says the instance runs and its /healthz answers.
 */
export class LivenessMonitor {
  private timer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;
  private running: Promise<void> | undefined;
  private readonly probeFailures = new Map<string, number>();
  private readonly lateNoted = new Set<string>();

  constructor(
    private readonly svc: WorkspaceService,
    private readonly provisioner: Provisioner,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    svc.onWake = () => void this.tick();
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.config.timing.livenessIntervalMs);
    this.timer.unref();
    // Periodic reconcile: instances nobody claims (made behind our back, or left by a failed destroy) go away.
    this.sweepTimer = setInterval(() => {
      this.sweeping ??= sweepOrphans(this.svc, this.provisioner, this.logger, { running: true })
        .catch((e) => this.logger.warn({ err: e }, 'orphan sweep failed'))
        .finally(() => (this.sweeping = undefined));
    }, this.config.timing.reconcileIntervalMs);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.sweepTimer);
    await Promise.all([this.running, this.sweeping]);
  }

  /** One pass over the workspaces that need watching. Never overlaps itself. */
  tick(): Promise<void> {
    this.running ??= this.pass()
      .catch((e) => this.logger.error({ err: e }, 'liveness pass failed'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    const watched = await this.svc.list({ status: ['provisioning', 'ready', 'degraded', 'offline', 'removing'] });
    await Promise.all(watched.map((ws) => this.check(ws).catch((e) => this.logger.warn({ workspace_id: ws.id, err: e }, 'liveness check failed'))));
  }

  private async check(snapshot: Workspace): Promise<void> {
    const t = this.config.timing;
    const now = Date.now();
    switch (snapshot.status) {
      case 'provisioning': {
        if (now - Date.parse(snapshot.statusChangedAt) <= t.provisionTimeoutMs) return;
        await this.svc.withLock(snapshot.id, async () => {
          const ws = await this.fresh(snapshot, 'provisioning');
          if (!ws || now - Date.parse(ws.statusChangedAt) <= t.provisionTimeoutMs) return;
          // Stop it, so a late registration cannot contradict `failed`; logs stay readable.
          if (ws.instanceId) await this.provisioner.stop(ws.instanceId).catch(() => undefined);
          await this.svc.transition(ws, 'failed', `AGENT_NEVER_REGISTERED: the agent did not register within ${Math.round(t.provisionTimeoutMs / 1000)} s; see GET /workspaces/${ws.id}/logs`);
        });
        return;
      }
      case 'ready':
      case 'degraded': {
        const last = Date.parse(snapshot.lastHeartbeatAt ?? snapshot.statusChangedAt);
        if (now - last <= t.heartbeatTtlMs) {
          this.probeFailures.delete(snapshot.id);
          this.lateNoted.delete(snapshot.id);
          return;
        }
        await this.confirmGone(snapshot, Math.round((now - last) / 1000));
        return;
      }
      case 'offline': {
        if (snapshot.nextRestartAt && Date.parse(snapshot.nextRestartAt) <= now) {
          await this.svc.withLock(snapshot.id, async () => {
            const ws = await this.fresh(snapshot, 'offline');
            if (ws?.nextRestartAt && Date.parse(ws.nextRestartAt) <= Date.now()) await this.svc.autoRestart(ws);
          });
        }
        return;
      }
      case 'removing': {
        // A delete whose destroy failed (or was interrupted by a platform restart) is retried.
        if (now - Date.parse(snapshot.statusChangedAt) > 5000) await this.svc.destroy(snapshot.id);
        return;
      }
    }
  }

  /** Missed heartbeats: ask the backend, then the agent itself; only repeated confirmation means offline. */
  private async confirmGone(snapshot: Workspace, silentS: number): Promise<void> {
    const inst = snapshot.instanceId ? await this.provisioner.inspect(snapshot.instanceId) : { state: 'gone' as const, reason: 'no instance' };
    if (inst.state === 'gone' || inst.state === 'stopped' || inst.state === 'failed') {
      await this.offline(snapshot, `no heartbeat for ${silentS} s and the backend reports the instance ${inst.state}${inst.reason ? ` (${inst.reason})` : ''}`);
      return;
    }
    if (await this.probe(snapshot)) {
      this.probeFailures.delete(snapshot.id);
      if (!this.lateNoted.has(snapshot.id)) {
        this.lateNoted.add(snapshot.id);
        this.logger.warn({ workspace_id: snapshot.id, silent_s: silentS }, 'heartbeats late, but the agent answers /healthz: keeping it');
      }
      return;
    }
    const failures = (this.probeFailures.get(snapshot.id) ?? 0) + 1;
    this.probeFailures.set(snapshot.id, failures);
    if (failures >= this.config.timing.probeConfirmations) {
      this.probeFailures.delete(snapshot.id);
      await this.offline(snapshot, `no heartbeat for ${silentS} s and /healthz did not answer ${failures} probes (backend: ${inst.state})`);
    }
  }

  private async offline(snapshot: Workspace, reason: string): Promise<void> {
    await this.svc.withLock(snapshot.id, async () => {
      const ws = await this.fresh(snapshot, snapshot.status);
      if (ws) await this.svc.markOffline(ws, reason);
    });
  }

  private async probe(ws: Workspace): Promise<boolean> {
    if (!ws.instance?.url) return false;
    try {
      const res = await fetch(new URL('/healthz', ws.instance.url), {
        headers: ws.instance.headers,
        signal: AbortSignal.timeout(2000),
      });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** Re-reads a workspace under the lock; undefined when it has moved on from the status we acted on. */
  private async fresh(snapshot: Workspace, status: Workspace['status']): Promise<Workspace | undefined> {
    const ws = await this.svc.find(snapshot.id);
    return ws?.status === status ? ws : undefined;
  }
}
