import type {
  InstanceEvent,
  InstanceHandle,
  InstanceSpec,
  InstanceState,
  InstanceStateName,
  OwnedInstance,
  Provisioner,
} from '../../src/core/provisioner.js';

interface FakeInstance {
  id: string;
  workspaceId: string;
  state: InstanceStateName;
  env: Record<string, string>;
}

/**
 * A backend in memory for the reconciler's unit tests: instances are records, every call is counted, and a test
 * can fail the next calls, hold a start until it lets go, or report an instance's death as a watch event.
 * Like the Fly backend, `start` adopts an instance the workspace already has instead of making a second one.
 */
export class FakeProvisioner implements Provisioner {
  readonly name = 'fake';
  readonly defaultRegion = 'local';
  readonly instances = new Map<string, FakeInstance>();
  readonly calls: Array<{ op: string; id: string }> = [];
  /** Thrown by the next start/restart/resume (and then cleared unless `sticky`). */
  failStart: { error: Error; sticky?: boolean } | undefined;
  failDestroy: Error | undefined;
  /** While set, start/restart/resume wait for it (or for the launch's abort signal). */
  hold: Promise<void> | undefined;
  /** Where the instances' agents answer; a test may point them at an HTTP server of its own. */
  agentUrl: (instanceId: string) => string = (id) => `http://fake.invalid/${id}`;
  private seq = 0;
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();

  count(op: string): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** Instances that are not destroyed, per workspace. */
  liveFor(workspaceId: string): FakeInstance[] {
    return [...this.instances.values()].filter((i) => i.workspaceId === workspaceId);
  }

  /** The instance dies; the backend tells its watchers (as a process exit or engine event would). */
  kill(instanceId: string, state: InstanceStateName = 'stopped', reason = 'killed by the test'): void {
    const inst = this.instances.get(instanceId);
    if (!inst) throw new Error(`no instance ${instanceId}`);
    inst.state = state;
    for (const l of this.listeners) l({ workspaceId: inst.workspaceId, instanceId, state, reason });
  }

  private async launched(op: string, spec: InstanceSpec, reuse?: FakeInstance): Promise<InstanceHandle> {
    this.calls.push({ op, id: spec.workspaceId });
    if (this.hold) {
      const aborted = new Promise<never>((_r, reject) => spec.signal?.addEventListener('abort', () => reject(new Error(`aborted: ${spec.signal?.reason}`)), { once: true }));
      await Promise.race([this.hold, aborted]);
    }
    if (spec.signal?.aborted) throw new Error(`aborted: ${spec.signal.reason}`);
    if (this.failStart) {
      const { error, sticky } = this.failStart;
      if (!sticky) this.failStart = undefined;
      throw error;
    }
    // Several steps in one tick, as a backend reporting a fast boot would: the timeline must keep their order.
    for (const step of ['fake image ready', 'fake instance created', 'fake instance booted']) spec.progress?.(step);
    const inst = reuse ?? { id: `fake-${++this.seq}`, workspaceId: spec.workspaceId, state: 'running' as const, env: {} };
    inst.state = 'running';
    inst.env = spec.env;
    this.instances.set(inst.id, inst);
    return { instanceId: inst.id, url: this.agentUrl(inst.id), details: { fake: true } };
  }

  start(spec: InstanceSpec): Promise<InstanceHandle> {
    return this.launched('start', spec, this.liveFor(spec.workspaceId)[0]);
  }
  restart(instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.launched('restart', spec, instanceId ? this.instances.get(instanceId) : undefined);
  }
  resume(instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.launched('resume', spec, this.instances.get(instanceId));
  }
  async stop(instanceId: string): Promise<void> {
    this.calls.push({ op: 'stop', id: instanceId });
    const inst = this.instances.get(instanceId);
    if (inst) inst.state = 'stopped';
  }
  async destroy(instanceId: string): Promise<void> {
    this.calls.push({ op: 'destroy', id: instanceId });
    if (this.failDestroy) throw this.failDestroy;
    this.instances.delete(instanceId);
  }
  /** Like Fly's app secrets: something kept per workspace outside its instance (KeepsWorkspaceState). */
  async forget(workspaceId: string): Promise<void> {
    this.calls.push({ op: 'forget', id: workspaceId });
  }
  async forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void> {
    this.calls.push({ op: 'forgetUnclaimed', id: (await liveWorkspaceIds()).join(',') });
  }
  async inspect(instanceId: string): Promise<InstanceState> {
    this.calls.push({ op: 'inspect', id: instanceId });
    const inst = this.instances.get(instanceId);
    return inst ? { state: inst.state } : { state: 'gone' };
  }
  async list(): Promise<OwnedInstance[]> {
    return [...this.instances.values()].map((i) => ({ instanceId: i.id, workspaceId: i.workspaceId, state: i.state }));
  }
  async *logs(): AsyncIterable<string> {}
  describe(): Record<string, unknown> {
    return { name: this.name };
  }
  watch(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async close(): Promise<void> {}
}
