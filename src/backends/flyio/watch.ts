import type { InstanceEvent } from '../provisioner.js';
import { FlyApiError, type FlyMachine } from './client/index.js';
import type { FlyContext } from './context.js';
import { describeNotRunning, lastExit, mapState, META } from './machines.js';

/** One machine we watch. */
export interface Tracked {
  workspaceId: string;
  /** Report it when it leaves `started`: true once we saw it started after our own start/resume/restart/adopt. */
  armed: boolean;
  /** Operations of ours in flight on this machine: their state changes are not news. */
  busy: number;
}

/**
 * Noticing machines that stop, fail or vanish on their own (a crash, `flyctl machine stop`, a host problem). Fly
 * pushes nothing, so the machine list is polled; the lifecycle operations mark what they do themselves (`busy`,
 * `armed`) so that only what nobody here asked for is reported, once.
 */
export class MachineWatch {
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();
  private readonly tracked = new Map<string, Tracked>();
  private pollTimer: NodeJS.Timeout | undefined;
  private pollBackoff = 1;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly ctx: FlyContext) {}

  subscribe(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The machine's entry, made (disarmed) when it has none; polling starts with the first one. */
  track(id: string, workspaceId: string): Tracked {
    let t = this.tracked.get(id);
    if (!t) {
      t = { workspaceId, armed: false, busy: 0 };
      this.tracked.set(id, t);
    }
    this.schedulePoll();
    return t;
  }

  /**
   * For an operation of ours on a machine that may be watched (stop, destroy): it is not reported while the
   * operation runs, nor after it until something arms it again. The caller decrements `busy` when done.
   */
  disarm(id: string): Tracked | undefined {
    const t = this.tracked.get(id);
    if (t) {
      t.armed = false;
      t.busy++;
    }
    return t;
  }

  untrack(id: string): void {
    this.tracked.delete(id);
  }

  /** Watches machines that survived a platform restart. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    if (!handles.length) return;
    let byId = new Map<string, FlyMachine>();
    try {
      byId = await this.ourMachines();
    } catch (e) {
      this.ctx.logger.warn({ err: (e as Error).message }, 'fly: could not list machines while adopting; watching them anyway');
    }
    for (const h of handles) {
      const t = this.track(h.instanceId, h.workspaceId);
      const m = byId.get(h.instanceId);
      // Only a machine seen running is watched for leaving `started`; reconcile inspects the others itself.
      t.armed = m?.state === 'started';
      this.ctx.logger.info({ machine_id: h.instanceId, workspace_id: h.workspaceId, state: m?.state ?? 'not listed' }, 'fly: adopted machine');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    await this.polling?.catch(() => undefined);
  }

  private schedulePoll(): void {
    if (this.closed || this.pollTimer || this.polling) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.polling = this.pollOnce()
        .then(() => {
          this.pollBackoff = 1;
        })
        .catch((e) => {
          // A failed look costs nothing: the next one comes. Over the rate limit, look less often for a while.
          if (e instanceof FlyApiError && e.status === 429) this.pollBackoff = Math.min(this.pollBackoff * 2, 8);
          this.ctx.logger.debug({ err: (e as Error).message }, 'fly: watch poll failed; trying again');
        })
        .finally(() => {
          this.polling = undefined;
          if (this.tracked.size) this.schedulePoll();
        });
    }, this.ctx.timings.watchIntervalMs * this.pollBackoff);
    this.pollTimer.unref();
  }

  /** One look at our machines: report those that left `started` while no operation of ours was running. */
  private async pollOnce(): Promise<void> {
    const candidates = [...this.tracked.entries()].filter(([, t]) => t.armed && t.busy === 0);
    if (!candidates.length || this.closed) return;
    // Not retried (the next look is the retry), so watching never crowds out real work.
    const byId = await this.ourMachines({ retry: false });
    for (const [id, t] of candidates) {
      let m: FlyMachine | null | undefined = byId.get(id);
      // Lists leave destroyed machines out: confirm before calling it gone.
      if (!m) m = await this.ctx.client.find(id, { retry: false }).catch(() => undefined);
      if (m === undefined) continue; // could not tell
      const state = m ? m.state : 'destroyed';
      if (state === 'started' || mapState(state) === 'starting') continue; // running, or Fly's restart policy at work
      if (!t.armed || t.busy > 0 || this.tracked.get(id) !== t || this.closed) continue; // one of our operations began meanwhile
      t.armed = false;
      this.report(id, t, m);
    }
  }

  private report(id: string, t: Tracked, m: FlyMachine | null): void {
    const ev: InstanceEvent = {
      workspaceId: t.workspaceId,
      instanceId: id,
      state: m ? mapState(m.state) : 'gone',
      reason: m ? describeNotRunning(m) : `machine ${id} was destroyed outside this platform`,
      exitCode: m ? (lastExit(m)?.exitCode ?? null) : null,
    };
    if (ev.state === 'unknown') ev.state = 'failed';
    this.ctx.logger.info({ machine_id: id, workspace_id: t.workspaceId, state: m ? m.state : 'destroyed', reason: ev.reason }, 'fly: machine left started on its own');
    for (const l of this.listeners) l(ev);
  }

  private async ourMachines(opts: { retry?: boolean } = {}): Promise<Map<string, FlyMachine>> {
    const ms = await this.ctx.client.list({ metadata: { [META.platformId]: this.ctx.platformId } }, opts);
    return new Map(ms.map((m) => [m.id, m]));
  }
}
