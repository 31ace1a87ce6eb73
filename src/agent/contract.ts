/**
 * The agent contract shared by the platform and the agent runtime: the environment a backend gives an agent,
 * and the bodies of the agent-facing registry calls. Keep this file free of platform or agent internals.
 */

/** The port an agent serves A2A on inside its container or machine (PORT), unless told otherwise. */
export const AGENT_PORT = 8000;

/** Environment variables every backend sets for the agent (design.md, "The agent contract"). */
export const AGENT_ENV = {
  workspaceId: 'WORKSPACE_ID',
  workspaceName: 'WORKSPACE_NAME',
  workspaceRole: 'WORKSPACE_ROLE',
  workspaceRuntime: 'WORKSPACE_RUNTIME',
  workspaceTier: 'WORKSPACE_TIER',
  platformUrl: 'PLATFORM_URL',
  workspaceToken: 'MOLECULE_WORKSPACE_TOKEN',
  agentToken: 'MOLECULE_AGENT_TOKEN',
  port: 'PORT',
  region: 'MOLECULE_REGION',
  heartbeatIntervalS: 'HEARTBEAT_INTERVAL_S',
  /** Directory that survives restarts of this workspace's agent (its A2A task store lives there). Optional. */
  stateDir: 'MOLECULE_STATE_DIR',
} as const;

export type Tier = 1 | 2 | 3 | 4;

/** Memory and CPUs per tier, the same on every backend (design.md, "Tiers"). */
export const TIERS: Record<Tier, { memoryMb: number; cpus: number }> = {
  1: { memoryMb: 256, cpus: 1 },
  2: { memoryMb: 512, cpus: 1 },
  3: { memoryMb: 2048, cpus: 2 },
  4: { memoryMb: 4096, cpus: 4 },
};

/** `POST /registry/register`, sent with `Authorization: Bearer $MOLECULE_WORKSPACE_TOKEN`. */
export interface RegisterRequest {
  /** Where the agent believes it can be reached. The platform routes by the backend's handle, not by this. */
  url: string;
  agent_card: Record<string, unknown>;
}

/** `POST /registry/heartbeat`, sent on the agent's own timer, independent of request handling. */
export interface HeartbeatRequest {
  active_tasks: number;
  current_task: string | null;
  /** Fraction of recent turns that failed, 0..1. */
  error_rate: number;
  uptime_s: number;
}

export interface RegistryResponse {
  workspace_id: string;
  status: string;
  heartbeat_interval_s: number;
}
