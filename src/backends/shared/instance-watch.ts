import type { InstanceEvent, InstanceState } from '../../core/provisioner.js';

/**
 * One life of an instance: a container id, a pid, or a token `arm` makes up. An instance id outlives its
 * incarnations (a restart makes a new container under the same name), and the death of an old one is no news
 * about the new one.
 */
export type Incarnation = string | number;

/** An instance whose death would be news, as sweeps and polls need it. */
export interface WatchedInstance {
  instanceId: string;
  workspaceId: string;
  incarnation: Incarnation;
}

/**
 * Listeners, and which deaths are news. Backends learn of deaths in racy ways (event streams, exit events, polls,
 * sweeps), often more than once and often while doing something to the instance themselves; the core wants each
 * unsolicited death once. So a death is reported only for the incarnation last armed, only while no operation of
 * ours is changing the instance, and only once: reporting disarms.
 *
 * How a backend uses it:
 * - `arm` when an instance is seen running after our start/resume/restart, or adopted running;
 * - `disarm` when we stop or remove it, so its exit is ours and not news;
 * - `begin` around operations whose intermediate states must not be read as deaths; what is seen meanwhile is
 *   dropped, not kept for later;
 * - `report` whenever anything suggests it died.
 */
export class InstanceWatch {
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();
  private readonly armed = new Map<string, { workspaceId: string; incarnation: Incarnation }>();
  private readonly busy = new Map<string, number>();
  private lastToken = 0;

  /** For `Provisioner.watch`. */
  subscribe(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Makes this incarnation's death news (replacing any earlier one of the instance). Without an incarnation each
   * call makes a new one, so a check begun before a re-arm cannot report across it. Returns the incarnation.
   */
  arm(instanceId: string, workspaceId: string, incarnation: Incarnation = `arm-${++this.lastToken}`): Incarnation {
    this.armed.set(instanceId, { workspaceId, incarnation });
    return incarnation;
  }

  disarm(instanceId: string): void {
    this.armed.delete(instanceId);
  }

  /** Marks an operation of ours on the instance; returns its end (safe to call more than once). Operations nest. */
  begin(instanceId: string): () => void {
    this.busy.set(instanceId, (this.busy.get(instanceId) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.busy.get(instanceId) ?? 1) - 1;
      if (n > 0) this.busy.set(instanceId, n);
      else this.busy.delete(instanceId);
    };
  }

  /** Whether a death of this incarnation would be reported now: a cheap test before looking closer. */
  isNews(instanceId: string, incarnation: Incarnation): boolean {
    return this.armed.get(instanceId)?.incarnation === incarnation && !this.busy.has(instanceId);
  }

  /** What a sweep or poll should look at: armed instances that no operation of ours is changing. */
  watched(): WatchedInstance[] {
    return [...this.armed]
      .filter(([id]) => !this.busy.has(id))
      .map(([instanceId, { workspaceId, incarnation }]) => ({ instanceId, workspaceId, incarnation }));
  }

  /** How many instances are armed or being operated on: a poller can stop when there are none. */
  get size(): number {
    return new Set([...this.armed.keys(), ...this.busy.keys()]).size;
  }

  /**
   * Tells the listeners that the incarnation died, when that is news; it is then no longer watched. Returns the
   * event sent (for the backend's own log line), or null when it was not news.
   */
  report(instanceId: string, incarnation: Incarnation, s: InstanceState): InstanceEvent | null {
    const w = this.armed.get(instanceId);
    if (!w || !this.isNews(instanceId, incarnation)) return null;
    this.armed.delete(instanceId);
    const ev: InstanceEvent = { workspaceId: w.workspaceId, instanceId, state: s.state, reason: s.reason, exitCode: s.exitCode };
    for (const l of this.listeners) l(ev);
    return ev;
  }
}
