import type { InstanceState, LogOptions, OwnedInstance } from '../../core/provisioner.js';
import { FlyApiError, type FlyMachine } from './client/index.js';
import type { FlyContext } from './context.js';
import { describeNotRunning, lastExit, mapState, META } from './machines.js';

/** Reading what is there: one machine's state, this platform's machines, a machine's output. */

export async function inspectMachine(ctx: FlyContext, instanceId: string): Promise<InstanceState> {
  let m: FlyMachine;
  try {
    // Short retry budget: the liveness monitor asks this and must not hang for a minute on an outage.
    m = await ctx.client.get(instanceId, { retry: { maxAttempts: 3, maxElapsedMs: 5000 } });
  } catch (e) {
    if (e instanceof FlyApiError && e.status === 404) return { state: 'gone', reason: `machine ${instanceId} does not exist in Fly app ${ctx.app}` };
    return { state: 'unknown', reason: `Fly API: ${(e as Error).message}` };
  }
  const state = mapState(m.state);
  if (state === 'running' || state === 'starting') return { state };
  const x = lastExit(m);
  return { state, reason: describeNotRunning(m), exitCode: x?.exitCode ?? null };
}

/** The live machines carrying this platform's id, for reconcile. */
export async function listOwnedMachines(ctx: FlyContext): Promise<OwnedInstance[]> {
  const ms = await ctx.client.list({ metadata: { [META.platformId]: ctx.platformId } });
  return ms
    .filter((m) => m.state !== 'destroyed' && m.state !== 'destroying' && m.config?.metadata?.[META.workspaceId])
    .map((m) => ({ instanceId: m.id, workspaceId: m.config!.metadata![META.workspaceId], state: mapState(m.state) }));
}

/** The machine's output where the API serves it (the simulator); otherwise one line saying where to look. */
export async function* machineOutput(ctx: FlyContext, instanceId: string, opts: LogOptions): AsyncGenerator<string> {
  try {
    yield* ctx.client.logs(instanceId, { tail: opts.tail ?? 200, follow: opts.follow, signal: opts.signal });
  } catch (e) {
    if (opts.signal?.aborted) return;
    if (!(e instanceof FlyApiError) || e.status !== 404) throw e;
    // 404: either the machine is gone, or this API has no logs route (real Fly serves logs elsewhere).
    const m = await ctx.client.find(instanceId).catch(() => null);
    if (!m) {
      yield `[molecule] machine ${instanceId} no longer exists in Fly app ${ctx.app}`;
      return;
    }
    yield `[molecule] the Fly Machines API does not serve machine output; run: flyctl logs --app ${ctx.app} --machine ${instanceId}`;
  }
}
