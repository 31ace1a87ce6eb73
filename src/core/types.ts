/** Workspace statuses: one list shared by code, the database check constraint and the API schema. */
export const WORKSPACE_STATUSES = [
  'provisioning',
  'ready',
  'degraded',
  'offline',
  'failed',
  'paused',
  'sleeping',
  'removing',
  'removed',
] as const;
export type WorkspaceStatus = (typeof WORKSPACE_STATUSES)[number];

// The tier table is part of the agent contract, so the agent describes itself from the same numbers.
import type { Tier } from '../agent/contract.js';
export { TIERS, type Tier } from '../agent/contract.js';

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
  /** The launch this workspace waits for; set with the status change that asks for it, cleared once the backend answered. */
  pendingLaunch: LaunchKind | null;
  /** Sleep after this many seconds without activity (core/idle.ts); null = never. */
  idleTimeoutS?: number | null;
  /** The last activity known cluster-wide: an A2A call through the platform, a stream, a busy heartbeat (ISO). */
  activeAt?: string | null;
}

/** What a launch asks of the backend: a new instance, a restart of the current one, or a resume of a stopped one. */
export type LaunchKind = 'start' | 'restart' | 'resume';

/** A lifecycle event, persisted and fanned out on /events, /ws and /workspaces/:id/events. */
export interface PlatformEvent {
  id: number;
  type: string;
  workspace_id: string | null;
  at: string;
  data: Record<string, unknown>;
}
