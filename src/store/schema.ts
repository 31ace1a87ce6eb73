import type { Generated } from 'kysely';

/** Row types as stored. Timestamps are ISO-8601 UTC strings (sortable as text on SQLite and Postgres). JSON is text. */
export interface WorkspaceRow {
  id: string;
  name: string;
  role: string;
  runtime: string;
  tier: number;
  region: string | null;
  parent_id: string | null;
  env: string;
  status: string;
  status_reason: string | null;
  status_changed_at: string;
  backend: string;
  instance_id: string | null;
  /** JSON InstanceHandle minus instanceId: {url, headers, details}. */
  instance: string | null;
  agent_url: string | null;
  agent_card: string | null;
  idempotency_key: string | null;
  /** JSON array of ISO times of automatic restarts inside the crash window. */
  restarts: string;
  restart_count: number;
  next_restart_at: string | null;
  last_heartbeat_at: string | null;
  heartbeat: string | null;
  needs_restart: number;
  created_at: string;
  updated_at: string;
  ready_at: string | null;
  removed_at: string | null;
  /** The launch this workspace waits for ('start' | 'restart' | 'resume'); null once the backend has answered. */
  pending_launch: string | null;
  /** Seconds without activity after which the workspace sleeps; null = never (0005). */
  idle_timeout_s: number | null;
  /** ISO time of the last activity any replica recorded (0005). */
  active_at: string | null;
  // Also `busy` (0005, integer, 1 when the last heartbeat reported active tasks): written by recordHeartbeat only.
}

export interface TokenRow {
  id: string;
  workspace_id: string;
  kind: string;
  hash: string;
  /** Agent tokens: the plaintext sealed with the secrets key, since the proxy presents it. Workspace tokens and
   *  revoked ones: '' (only the hash is kept). */
  sealed: string;
  created_at: string;
  revoked_at: string | null;
}

export interface SecretRow {
  /** 'global' or a workspace id. */
  scope: string;
  key: string;
  sealed: string;
  created_at: string;
  updated_at: string;
}

export interface EventRow {
  id: Generated<number>;
  workspace_id: string | null;
  type: string;
  at: string;
  data: string;
}

export interface ClusterRow {
  key: string;
  value: string;
  created_at: string;
}

export interface ReplicaRow {
  id: string;
  host: string;
  pid: number;
  backend: string;
  url: string | null;
  started_at: string;
  last_seen: string;
}

export interface LeaseRow {
  name: string;
  owner: string;
  /** Epoch milliseconds. */
  acquired_at: number;
  expires_at: number;
}

export interface Database {
  workspaces: WorkspaceRow;
  tokens: TokenRow;
  secrets: SecretRow;
  events: EventRow;
  cluster: ClusterRow;
  replicas: ReplicaRow;
  leases: LeaseRow;
}
