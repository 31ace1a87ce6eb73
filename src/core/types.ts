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
