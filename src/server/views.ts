import type { z } from 'zod';
import type { Workspace } from '../core/types.js';
import type { WorkspaceView } from './schemas.js';

/** The API shape of a workspace. Tokens and secret values never appear here. */
export function workspaceView(ws: Workspace): z.infer<typeof WorkspaceView> {
  return {
    id: ws.id,
    name: ws.name,
    role: ws.role,
    runtime: ws.runtime,
    tier: ws.tier,
    region: ws.region,
    parent_id: ws.parentId,
    env: ws.env,
    status: ws.status,
    status_reason: ws.statusReason,
    status_changed_at: ws.statusChangedAt,
    backend: ws.backend,
    instance: ws.instanceId ? { id: ws.instanceId, url: ws.instance?.url ?? null, ...(ws.instance?.details ?? {}) } : null,
    agent: { url: ws.agentUrl, name: typeof ws.agentCard?.name === 'string' ? ws.agentCard.name : null },
    last_heartbeat_at: ws.lastHeartbeatAt,
    heartbeat: ws.heartbeat,
    restart_count: ws.restartCount,
    next_restart_at: ws.nextRestartAt,
    needs_restart: ws.needsRestart,
    created_at: ws.createdAt,
    updated_at: ws.updatedAt,
    ready_at: ws.readyAt,
    removed_at: ws.removedAt,
    idle_timeout_s: ws.idleTimeoutS ?? null,
    active_at: ws.activeAt ?? null,
  };
}
