import type { InstanceState } from '../../core/provisioner.js';
import { InstanceWatch, type Incarnation } from '../shared/instance-watch.js';
import { FlyApiError, type FlyMachine } from './client/index.js';
import type { FlyContext } from './context.js';
import { describeNotRunning, lastExit, mapState, META } from './machines.js';

/**
 * Noticing machines that stop, fail or vanish on their own (a crash, `flyctl machine stop`, a host problem). Fly
 * pushes nothing, so the machine list is polled while anything is watched; which deaths are news is the
 * InstanceWatch's call: the lifecycle operations `begin` what they do themselves and `arm` a machine once they saw
 * it started, so that only what nobody here asked for is reported, once.
 */
export class MachineWatch extends InstanceWatch {
  private pollTimer: NodeJS.Timeout | undefined;
  private pollBackoff = 1;
  private looks = 0;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly ctx: FlyContext) {
    super();
  }

  /** Makes the machine's leaving `started` news; polling starts again if it had stopped for want of machines. */
  override arm(id: string, workspaceId: string, incarnation?: Incarnation): Incarnation {
    const armed = super.arm(id, workspaceId, incarnation);
    this.schedulePoll();
    return armed;
  }

  /** Watches machines that survived a platform restart. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    if (!handles.length) return;
    let byId = new Map<string, FlyMachine>();
    try {
      byId = await this.ourMachines();
    } catch (e) {
      this.ctx.logger.warn({ err: (e as Error).message }, 'fly: could not list machines while adopting; reconcile looks at them instead');
    }
    for (const h of handles) {
      const m = byId.get(h.instanceId);
      // Only a machine seen running is watched for leaving `started`; reconcile inspects the others itself.
      if (m?.state === 'started') this.arm(h.instanceId, h.workspaceId);
      else this.disarm(h.instanceId);
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
          if (this.size) this.schedulePoll();
        });
    }, this.ctx.timings.watchIntervalMs * this.pollBackoff);
    this.pollTimer.unref();
  }

  /**
   * One look at our machines: report those that left `started`. Most looks list only machines that are not running,
   * in summary, so a look costs what changed, not the size of the fleet; every FULL_LOOK_EVERY-th lists them all (in
   * summary) to notice machines that vanished or sit in states the filter cannot name. A machine that looks dead is
   * then read whole, for how it ended.
   */
  private async pollOnce(): Promise<void> {
    const candidates = this.watched();
    if (!candidates.length || this.closed) return;
    const full = this.looks++ % FULL_LOOK_EVERY === 0;
    // Not retried (the next look is the retry), so watching never crowds out real work.
    const listed = await this.ourMachines({ retry: false }, full ? undefined : NOT_RUNNING);
    for (const { instanceId: id, incarnation } of candidates) {
      const seen = listed.get(id);
      if (seen && (seen.state === 'started' || mapState(seen.state) === 'starting')) continue;
      if (!seen && !full) continue; // not among the stopped ones
      // Lists leave destroyed machines out: confirm before calling it gone.
      const m: FlyMachine | null | undefined = await this.ctx.client.find(id, { retry: false }).catch(() => undefined);
      if (m === undefined) continue; // could not tell
      const state = m ? m.state : 'destroyed';
      if (state === 'started' || mapState(state) === 'starting') continue; // running, or Fly's restart policy at work
      if (this.closed) return;
      // Not news when one of our operations began meanwhile, or armed it anew.
      const ev = this.report(id, incarnation, deathOf(id, m));
      if (ev) this.ctx.logger.info({ machine_id: id, workspace_id: ev.workspaceId, state, reason: ev.reason }, 'fly: machine left started on its own');
    }
  }

  private async ourMachines(opts: { retry?: boolean } = {}, state?: string[]): Promise<Map<string, FlyMachine>> {
    const ms = await this.ctx.client.list({ metadata: { [META.platformId]: this.ctx.platformId }, summary: true, ...(state ? { state } : {}) }, opts);
    return new Map(ms.map((m) => [m.id, m]));
  }
}

/** The states a quick look lists (the API's state filter knows created, started, stopped, suspended). */
const NOT_RUNNING = ['created', 'stopped', 'suspended'];
/** One look in this many lists every machine (at the default 3 s: every 15 s). */
const FULL_LOOK_EVERY = 5;

/** How a machine that left `started` is reported (null: destroyed); a state we cannot place counts as failed. */
function deathOf(id: string, m: FlyMachine | null): InstanceState {
  if (!m) return { state: 'gone', reason: `machine ${id} was destroyed outside this platform`, exitCode: null };
  const state = mapState(m.state);
  return { state: state === 'unknown' ? 'failed' : state, reason: describeNotRunning(m), exitCode: lastExit(m)?.exitCode ?? null };
}
