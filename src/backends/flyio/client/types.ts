/**
 * The Machines API shapes this client reads and sends (reference fly-machines-openapi3.json). Only the fields we
 * use are named: Fly sends more, and the index signatures keep them when a config is sent back.
 */

export interface FlyGuestConfig {
  cpu_kind?: string;
  cpus?: number;
  memory_mb?: number;
  [k: string]: unknown;
}

export interface FlyMachineConfig {
  image: string;
  env?: Record<string, string>;
  guest?: FlyGuestConfig;
  metadata?: Record<string, string>;
  services?: unknown[];
  restart?: { policy?: string; max_retries?: number };
  auto_destroy?: boolean;
  stop_config?: { signal?: string; timeout?: string };
  [k: string]: unknown;
}

export interface FlyMachineEvent {
  id?: string;
  type: string;
  status: string;
  source?: string;
  /** Epoch ms. */
  timestamp: number;
  request?: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface FlyMachine {
  id: string;
  name: string;
  state: string;
  region: string;
  /** The machine version (a 26-char ULID, new on every config update). */
  instance_id: string;
  version?: string;
  private_ip?: string;
  created_at?: string;
  updated_at?: string;
  config?: FlyMachineConfig;
  incomplete_config?: FlyMachineConfig | null;
  image_ref?: Record<string, unknown>;
  /** Newest first. */
  events?: FlyMachineEvent[];
  nonce?: string;
  host_status?: string;
}

export interface CreateMachineRequest {
  name?: string;
  region?: string;
  config: FlyMachineConfig;
  skip_launch?: boolean;
  lease_ttl?: number;
  /** Boot only once the app's secrets are at least this version (the `version` a secrets write answered). */
  min_secrets_version?: number;
}

export interface UpdateMachineRequest extends CreateMachineRequest {
  current_version?: string;
}

/** An app secret as listed (AppSecret): Fly answers names and digests, never values unless asked to show them. */
export interface FlyAppSecret {
  name: string;
  digest?: string;
  created_at?: string;
  updated_at?: string;
}

export interface FlyLease {
  nonce: string;
  /** Unix seconds. */
  expires_at: number;
  owner?: string;
  description?: string;
  version?: string;
}
