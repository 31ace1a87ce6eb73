import type { Logger } from 'pino';
import type { Provisioner } from '../backends/provisioner.js';
import type { WorkspaceService } from './workspaces.js';

/**
 * Makes the backend match the store at startup: adopt instances of live workspaces, destroy instances nobody
 * owns any more, and treat a live workspace whose instance vanished as offline (so it restarts).
 */
export async function reconcile(svc: WorkspaceService, provisioner: Provisioner, logger: Logger): Promise<void> {
  const live = await sweepOrphans(svc, provisioner, logger, { running: false });

  const adoptable = live.filter((w) => w.instanceId && ['provisioning', 'ready', 'degraded'].includes(w.status));
  await provisioner.adopt?.(adoptable.map((w) => ({ workspaceId: w.id, instanceId: w.instanceId! })));

  for (const snapshot of adoptable) {
    const state = await provisioner.inspect(snapshot.instanceId!);
    if (state.state === 'running' || state.state === 'starting' || state.state === 'unknown') continue;
    await svc.withLock(snapshot.id, async () => {
      const ws = await svc.find(snapshot.id);
      if (ws && ws.status === snapshot.status) {
        await svc.markOffline(ws, `found the instance ${state.state} at platform start${state.reason ? ` (${state.reason})` : ''}`);
      }
    });
  }

  // Provisioning interrupted before the backend answered: ask again.
  for (const ws of live.filter((w) => w.status === 'provisioning' && !w.instanceId)) {
    svc.spawn(svc.launch(ws.id, 'start'));
  }
  for (const ws of live.filter((w) => w.status === 'removing')) svc.spawn(svc.destroy(ws.id));
}


/**
 * Destroys instances this platform owns that no live workspace claims: their workspace was removed, is unknown,
 * or now has another instance. While the platform runs (`running: true`) the instances of workspaces that are
 * `provisioning` are left alone, since a start in flight has not recorded its instance yet.
 * Returns the live workspaces it looked at.
 */
export async function sweepOrphans(svc: WorkspaceService, provisioner: Provisioner, logger: Logger, opts: { running: boolean }) {
  const owned = await provisioner.list();
  const live = await svc.list({});
  const byId = new Map(live.map((w) => [w.id, w]));
  for (const inst of owned) {
    const ws = byId.get(inst.workspaceId);
    if (ws && (ws.instanceId === inst.instanceId || (opts.running && ws.status === 'provisioning'))) continue;
    // Re-read: the workspace may have recorded this instance since the list was taken.
    const now = ws && (await svc.find(ws.id));
    if (now && (now.instanceId === inst.instanceId || (opts.running && now.status === 'provisioning'))) continue;
    logger.info({ instance_id: inst.instanceId, workspace_id: inst.workspaceId }, 'destroying orphaned instance');
    await provisioner.destroy(inst.instanceId).catch((e) => logger.warn({ err: e, instance_id: inst.instanceId }, 'orphan destroy failed'));
  }
  if (provisioner.forgetUnclaimed) {
    const liveIds = async () => (await svc.list({})).map((w) => w.id);
    await provisioner.forgetUnclaimed(liveIds).catch((e) => logger.warn({ err: e }, 'sweeping what removed workspaces left in the backend failed'));
  }
  return live;
}
