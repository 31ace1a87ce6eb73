/** Shapes of the platform's API as the UI reads them (GET /openapi.json is the full description). */

// Type-only imports of the platform's own definitions: erased from the bundle, and they cannot drift.
import type { z } from 'zod';
import type { HeartbeatBody, WorkspaceView } from '../../server/schemas.js';
export type { Action } from '../../core/status.js';
export type { PlatformEvent, WorkspaceStatus as Status } from '../../core/types.js';
import type { Action } from '../../core/status.js';
import type { WorkspaceStatus as Status } from '../../core/types.js';

/** GET /workspaces/:id, with the heartbeat the agent contract sends. */
export type Workspace = Omit<z.infer<typeof WorkspaceView>, 'heartbeat'> & { heartbeat: Partial<z.infer<typeof HeartbeatBody>> | null };

export interface TierInfo {
  tier: number;
  memory_mb: number;
  cpus: number;
}

export interface Meta {
  version: string;
  backend: { name: string; default_region: string; regions: { code: string; name: string }[] | null };
  runtimes: string[];
  default_runtime: string;
  tiers: TierInfo[];
  default_tier: number;
  statuses: Status[];
  actions: Record<Action, Status[]>;
}

/** A heartbeat's news, pushed over /ws?heartbeats=1 (not an event: no id, not in the timeline). */
export interface HeartbeatPulse {
  type: 'workspace.heartbeat';
  workspace_id: string;
  at: string;
  data: { last_heartbeat_at: string; heartbeat: Workspace['heartbeat'] };
}

/**
 * Agent-to-agent traffic on one edge, pushed over /ws?calls=1 by the A2A proxy: aggregated to at most one per edge
 * per second, not stored (the map keeps what it saw since it was opened).
 */
export interface CallsPulse {
  type: 'a2a.calls';
  workspace_id: string;
  at: string;
  data: { from: string; to: string; calls: number; errors: number; latencies_ms: number[]; interval_ms: number };
}

export interface SecretName {
  key: string;
  created_at: string;
  updated_at: string;
}

export interface Health {
  status: string;
  version: string;
  uptime_s: number;
  backend: { name: string } & Record<string, unknown>;
  database: { kind: string };
  workspaces: Record<string, number>;
}
