/** Shapes of the platform's API as the UI reads them (GET /openapi.json is the full description). */

export type Status = 'provisioning' | 'ready' | 'degraded' | 'offline' | 'failed' | 'paused' | 'removing' | 'removed';
export type Action = 'restart' | 'pause' | 'resume' | 'delete';

export interface Workspace {
  id: string;
  name: string;
  role: string;
  runtime: string;
  tier: number;
  region: string | null;
  parent_id: string | null;
  env: Record<string, string>;
  status: Status;
  status_reason: string | null;
  status_changed_at: string;
  backend: string;
  instance: ({ id: string; url: string | null } & Record<string, unknown>) | null;
  agent: { url: string | null; name: string | null };
  last_heartbeat_at: string | null;
  heartbeat: { active_tasks?: number; current_task?: string | null; error_rate?: number; uptime_s?: number } | null;
  restart_count: number;
  next_restart_at: string | null;
  needs_restart: boolean;
  created_at: string;
  updated_at: string;
  ready_at: string | null;
  removed_at: string | null;
}

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

export interface PlatformEvent {
  id: number;
  type: string;
  workspace_id: string | null;
  at: string;
  data: Record<string, unknown>;
}

/** A heartbeat's news, pushed over /ws?heartbeats=1 (not an event: no id, not in the timeline). */
export interface HeartbeatPulse {
  type: 'workspace.heartbeat';
  workspace_id: string;
  at: string;
  data: { last_heartbeat_at: string; heartbeat: Workspace['heartbeat'] };
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
