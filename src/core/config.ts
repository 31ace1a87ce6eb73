import path from 'node:path';

/** Platform configuration, read once from the environment (README "Configuration" lists every variable). */
export interface Config {
  port: number;
  host: string;
  /** Explicit PLATFORM_URL, or null to derive it per backend from the listen address. */
  platformUrl: string | null;
  dataDir: string;
  databaseUrl: string | undefined;
  backend: 'process' | 'docker' | 'flyio' | 'auto';
  adminToken: string | undefined;
  secretsKey: string | undefined;
  runtimeImage: string;
  logLevel: string;
  /** Liveness and lifecycle timing (ms). Defaults suit production; tests shorten them. */
  timing: {
    heartbeatIntervalS: number;
    heartbeatTtlMs: number;
    livenessIntervalMs: number;
    provisionTimeoutMs: number;
    restartBackoffMs: number;
    restartBackoffMaxMs: number;
    crashWindowMs: number;
    crashLoopMax: number;
    probeConfirmations: number;
    reconcileIntervalMs: number;
  };
  a2a: {
    maxBodyBytes: number;
    maxResponseBytes: number;
    timeoutMs: number;
  };
  /** CONTAINER_BACKEND=flyio settings (checked by the Fly backend, which names what is missing). */
  fly: {
    apiToken: string | undefined;
    app: string | undefined;
    region: string;
    apiBase: string;
    /** How a platform outside Fly reaches machines (default https://<app>.fly.dev). */
    proxyUrl: string | undefined;
    /** Set by Fly when the platform itself runs on Fly: machines are then reached over the private network. */
    platformAppName: string | undefined;
  };
}

export class ConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new ConfigError(`${name} must be a number ≥ ${min}, got "${raw}"`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const backend = (env.CONTAINER_BACKEND || 'auto').toLowerCase();
  if (!['process', 'docker', 'flyio', 'auto'].includes(backend)) {
    throw new ConfigError(`CONTAINER_BACKEND must be one of process, docker, flyio (or unset for auto), got "${env.CONTAINER_BACKEND}"`);
  }
  const heartbeatIntervalS = int(env, 'HEARTBEAT_INTERVAL_S', 10, 1);
  const host = env.HOST || '127.0.0.1';
  const adminToken = env.MOLECULE_ADMIN_TOKEN || undefined;
  if (!isLoopback(host) && !adminToken) {
    throw new ConfigError(`HOST=${host} listens beyond loopback; set MOLECULE_ADMIN_TOKEN so the API is not open to the network`);
  }
  return {
    port: int(env, 'PORT', 8080),
    host,
    platformUrl: env.PLATFORM_URL || null,
    dataDir: path.resolve(env.MOLECULE_DATA_DIR || '.molecule'),
    databaseUrl: env.DATABASE_URL || undefined,
    backend: backend as Config['backend'],
    adminToken,
    secretsKey: env.MOLECULE_SECRETS_KEY || undefined,
    runtimeImage: env.MOLECULE_RUNTIME_IMAGE || 'ghcr.io/molecule-ai/workspace-{runtime}:latest',
    logLevel: env.LOG_LEVEL || 'info',
    timing: {
      heartbeatIntervalS,
      heartbeatTtlMs: int(env, 'MOLECULE_HEARTBEAT_TTL_S', heartbeatIntervalS * 3, 1) * 1000,
      livenessIntervalMs: int(env, 'MOLECULE_LIVENESS_INTERVAL_MS', 2000, 50),
      provisionTimeoutMs: int(env, 'MOLECULE_PROVISION_TIMEOUT_S', 600, 1) * 1000,
      restartBackoffMs: int(env, 'MOLECULE_RESTART_BACKOFF_MS', 1000, 0),
      restartBackoffMaxMs: int(env, 'MOLECULE_RESTART_BACKOFF_MAX_MS', 60_000, 0),
      crashWindowMs: int(env, 'MOLECULE_CRASH_WINDOW_S', 600, 1) * 1000,
      crashLoopMax: int(env, 'MOLECULE_CRASH_LOOP_MAX', 5, 1),
      probeConfirmations: int(env, 'MOLECULE_PROBE_CONFIRMATIONS', 2, 1),
      reconcileIntervalMs: int(env, 'MOLECULE_RECONCILE_INTERVAL_S', 60, 1) * 1000,
    },
    a2a: {
      maxBodyBytes: int(env, 'MOLECULE_A2A_MAX_BODY_BYTES', 1024 * 1024, 1024),
      maxResponseBytes: int(env, 'MOLECULE_A2A_MAX_RESPONSE_BYTES', 10 * 1024 * 1024, 1024),
      timeoutMs: int(env, 'MOLECULE_A2A_TIMEOUT_S', 300, 1) * 1000,
    },
    fly: {
      apiToken: env.FLY_API_TOKEN?.trim() || undefined,
      app: env.FLY_WORKSPACE_APP?.trim() || undefined,
      region: env.FLY_REGION?.trim() || 'ord',
      apiBase: env.FLY_FLAPS_BASE_URL?.trim() || 'https://api.machines.dev',
      proxyUrl: env.FLY_PROXY_URL?.trim() || undefined,
      platformAppName: env.FLY_APP_NAME?.trim() || undefined,
    },
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
