/** Workspace statuses: one list shared by code, the database check constraint and the API schema. */
export const WORKSPACE_STATUSES = [
  'provisioning',
  'ready',
  'degraded',
  'offline',
  'failed',
  'paused',
  'removing',
  'removed',
] as const;
export type WorkspaceStatus = (typeof WORKSPACE_STATUSES)[number];

export type Tier = 1 | 2 | 3 | 4;

/** The same on every backend (design.md, "Tiers"). */
export const TIERS: Record<Tier, { memoryMb: number; cpus: number }> = {
  1: { memoryMb: 256, cpus: 1 },
  2: { memoryMb: 512, cpus: 1 },
  3: { memoryMb: 2048, cpus: 2 },
  4: { memoryMb: 4096, cpus: 4 },
};

/** The workspace as the core sees it (JSON columns parsed). */
export interface Workspace {
  id: string;
  name: string;
  role: string;
  runtime: string;
  tier: Tier;
  region: string | null;
  parentId: string | null;
  env: Record<string, string>;
  status: WorkspaceStatus;
  statusReason: string | null;
  statusChangedAt: string;
  backend: string;
  instanceId: string | null;
  instance: { url: string | null; headers?: Record<string, string>; details: Record<string, unknown> } | null;
  agentUrl: string | null;
  agentCard: Record<string, unknown> | null;
  idempotencyKey: string | null;
  restarts: string[];
  restartCount: number;
  nextRestartAt: string | null;
  lastHeartbeatAt: string | null;
  heartbeat: Record<string, unknown> | null;
  needsRestart: boolean;
  createdAt: string;
  updatedAt: string;
  readyAt: string | null;
  removedAt: string | null;
}

/** A lifecycle event, persisted and fanned out on /events, /ws and /workspaces/:id/events. */
export interface PlatformEvent {
  id: number;
  type: string;
  workspace_id: string | null;
  at: string;
  data: Record<string, unknown>;
}
