import fs from 'node:fs';
import path from 'node:path';

/** Platform configuration, read once from the environment (README "Configuration" lists every variable). */
/** The runtime image template when MOLECULE_RUNTIME_IMAGE is unset or empty (`{runtime}` is replaced). */
export const DEFAULT_RUNTIME_IMAGE = 'ghcr.io/molecule-ai/workspace-{runtime}:latest';

export interface Config {
  port: number;
  host: string;
  /** Explicit PLATFORM_URL, or null to derive it per backend from the listen address. */
  platformUrl: string | null;
  /** MOLECULE_PUBLIC_URL: the external base published in agent cards and the catalog; null = the request's origin. */
  publicUrl: string | null;
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
    /** How long the reconciler lease lasts unrenewed: a replica that died is replaced within this. */
    leaseTtlMs: number;
  };
  /** MOLECULE_SHUTDOWN_GRACE_S: on SIGTERM, how long in-flight A2A calls and streams may take before the process exits. */
  shutdownGraceMs: number;
  a2a: {
    maxBodyBytes: number;
    maxResponseBytes: number;
    timeoutMs: number;
  };
  /** Idle workspaces sleep and wake on a message (core/idle.ts). */
  idle: {
    /** MOLECULE_IDLE_TIMEOUT_S: the idle timeout of workspaces created without one; null = never sleep. */
    defaultTimeoutS: number | null;
    /** MOLECULE_WAKE_TIMEOUT_S: how long an A2A request to a sleeping workspace is held for its wake. */
    wakeTimeoutMs: number;
    /** How often one replica writes a workspace's activity to the database at most (trailing edge: none is lost). */
    activityFlushMs: number;
  };
  /** Limits of the REST API (README "Security"). */
  limits: {
    maxBodyBytes: number;
    /** Time a client gets to send a whole request (headers and body); answers and streams are not limited. */
    requestTimeoutMs: number;
    /** Requests per minute per admin token or, without one, per client address; 0 turns limiting off. */
    ratePerMin: number;
    /** Requests per minute per workspace token (registry, heartbeats, agent-to-agent calls); 0 = off. */
    agentRatePerMin: number;
  };
  /** Agent URLs accepted on register although no backend instance reports them (agents outside our backends). */
  externalAgentUrls: string[];
  /** CONTAINER_BACKEND=docker settings (also used to probe for an engine when CONTAINER_BACKEND is unset). */
  docker: {
    /** DOCKER_HOST as given (a socket path or unix:// URL); unset means /var/run/docker.sock. */
    host: string | undefined;
    /** MOLECULE_DOCKER_NETWORK as given; unset: `bridge`, or the platform's own network when it runs in a container. */
    network: string | undefined;
    /**
     * MOLECULE_DOCKER_AGENT_ADDRESS, how the platform reaches agents: `published` (port 8000 published on an
     * ephemeral 127.0.0.1 port: the platform runs on the engine's host), `network` (by container name on the
     * network, which the platform's own container joins: the platform runs in a container of that engine), or
     * `auto` (default): `network` when this process is a container of the engine it drives, else `published`.
     */
    agentAddress: 'auto' | 'published' | 'network';
    stopTimeoutS: number;
    pullTimeoutS: number;
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
    /** Pace calls to Fly's published rate limits (MOLECULE_FLY_RATE_LIMITS=off: only where they do not apply). */
    clientRateLimits: boolean;
  };
}

export class ConfigError extends Error {}

function onOff(env: NodeJS.ProcessEnv, name: string, def: boolean): boolean {
  const v = env[name]?.trim().toLowerCase();
  if (!v) return def;
  if (['on', 'true', '1'].includes(v)) return true;
  if (['off', 'false', '0'].includes(v)) return false;
  throw new ConfigError(`${name} must be on or off, got "${env[name]}"`);
}

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
  const adminToken = env.MOLECULE_ADMIN_TOKEN?.trim() || undefined;
  if (!isLoopback(host) && !adminToken) {
    throw new ConfigError(
      `HOST=${host} listens beyond loopback, where an open API would let anyone drive the platform; ` +
        'set MOLECULE_ADMIN_TOKEN (e.g. MOLECULE_ADMIN_TOKEN=$(openssl rand -hex 32)) or listen on HOST=127.0.0.1',
    );
  }
  const dataDir = path.resolve(env.MOLECULE_DATA_DIR || '.molecule');
  const databaseUrl = env.DATABASE_URL || undefined;
  const secretsKey = secretsKeyFrom(env, dataDir, databaseUrl);
  const agentAddress = (env.MOLECULE_DOCKER_AGENT_ADDRESS?.trim() || 'auto') as Config['docker']['agentAddress'];
  if (!['auto', 'published', 'network'].includes(agentAddress)) {
    throw new ConfigError(`MOLECULE_DOCKER_AGENT_ADDRESS must be auto, published or network, got "${env.MOLECULE_DOCKER_AGENT_ADDRESS}"`);
  }
  return {
    port: int(env, 'PORT', 8080),
    host,
    platformUrl: env.PLATFORM_URL || null,
    publicUrl: publicUrl(env),
    dataDir,
    databaseUrl,
    backend: backend as Config['backend'],
    adminToken,
    secretsKey,
    runtimeImage: env.MOLECULE_RUNTIME_IMAGE || DEFAULT_RUNTIME_IMAGE,
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
      leaseTtlMs: int(env, 'MOLECULE_LEASE_TTL_S', 15, 1) * 1000,
    },
    shutdownGraceMs: int(env, 'MOLECULE_SHUTDOWN_GRACE_S', 10, 0) * 1000,
    a2a: {
      maxBodyBytes: int(env, 'MOLECULE_A2A_MAX_BODY_BYTES', 1024 * 1024, 1024),
      maxResponseBytes: int(env, 'MOLECULE_A2A_MAX_RESPONSE_BYTES', 10 * 1024 * 1024, 1024),
      timeoutMs: int(env, 'MOLECULE_A2A_TIMEOUT_S', 300, 1) * 1000,
    },
    idle: {
      defaultTimeoutS: env.MOLECULE_IDLE_TIMEOUT_S === undefined || env.MOLECULE_IDLE_TIMEOUT_S === '' ? null : int(env, 'MOLECULE_IDLE_TIMEOUT_S', 0, 1),
      wakeTimeoutMs: int(env, 'MOLECULE_WAKE_TIMEOUT_S', 60, 1) * 1000,
      activityFlushMs: int(env, 'MOLECULE_ACTIVITY_FLUSH_MS', 5000, 10),
    },
    limits: {
      maxBodyBytes: int(env, 'MOLECULE_MAX_BODY_BYTES', 256 * 1024, 1024),
      requestTimeoutMs: int(env, 'MOLECULE_REQUEST_TIMEOUT_S', 30, 1) * 1000,
      ratePerMin: int(env, 'MOLECULE_RATE_LIMIT_PER_MIN', 6000, 0),
      agentRatePerMin: int(env, 'MOLECULE_AGENT_RATE_LIMIT_PER_MIN', 1200, 0),
    },
    externalAgentUrls: urlList(env, 'MOLECULE_EXTERNAL_AGENT_URLS'),
    docker: {
      host: env.DOCKER_HOST?.trim() || undefined,
      network: env.MOLECULE_DOCKER_NETWORK?.trim() || undefined,
      agentAddress,
      stopTimeoutS: int(env, 'MOLECULE_DOCKER_STOP_TIMEOUT_S', 5, 0),
      pullTimeoutS: int(env, 'MOLECULE_DOCKER_PULL_TIMEOUT_S', 300, 1),
    },
    fly: {
      apiToken: env.FLY_API_TOKEN?.trim() || undefined,
      app: env.FLY_WORKSPACE_APP?.trim() || undefined,
      region: env.FLY_REGION?.trim() || 'ord',
      apiBase: env.FLY_FLAPS_BASE_URL?.trim() || 'https://api.machines.dev',
      proxyUrl: env.FLY_PROXY_URL?.trim() || undefined,
      platformAppName: env.FLY_APP_NAME?.trim() || undefined,
      clientRateLimits: onOff(env, 'MOLECULE_FLY_RATE_LIMITS', true),
    },
  };
}

/**
 * MOLECULE_SECRETS_KEY, checked here so a bad or missing key stops startup before anything is opened. With
 * DATABASE_URL the database may be shared by several replicas, and each must open what the others sealed, so
 * a per-replica generated key will not do: the key is required (core/cluster.ts checks it against the cluster's).
 */
function secretsKeyFrom(env: NodeJS.ProcessEnv, dataDir: string, databaseUrl: string | undefined): string | undefined {
  const key = env.MOLECULE_SECRETS_KEY?.trim() || undefined;
  if (key && Buffer.from(key, 'base64').length !== 32) {
    throw new ConfigError('MOLECULE_SECRETS_KEY must be 32 bytes, base64-encoded (make one with: openssl rand -base64 32)');
  }
  if (databaseUrl && !key) {
    // A platform that already ran on Postgres sealed its secrets with the key generated into its data dir.
    const generated = path.join(dataDir, 'secrets.key');
    const upgrade = fs.existsSync(generated)
      ? ` This data dir holds the key this platform generated before; to keep its secrets readable, use it: MOLECULE_SECRETS_KEY=$(cat ${generated}).`
      : '';
    throw new ConfigError(
      'DATABASE_URL is set, so MOLECULE_SECRETS_KEY is required: every replica sharing the database must use the same key ' +
        'to open the secrets the others sealed, so none is generated per data dir. Make one with `openssl rand -base64 32` ' +
        `and give the same value to every replica.${upgrade}`,
    );
  }
  return key;
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.startsWith('::ffff:127.');
}

/** Comma-separated absolute http(s) URLs, normalised to their origin plus path without a trailing slash. */
function publicUrl(env: NodeJS.ProcessEnv): string | null {
  const raw = env.MOLECULE_PUBLIC_URL?.trim();
  if (!raw) return null;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`MOLECULE_PUBLIC_URL: "${raw}" is not an absolute URL (e.g. https://molecule.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError('MOLECULE_PUBLIC_URL must be an http(s) URL');
  if (u.search || u.hash) throw new ConfigError('MOLECULE_PUBLIC_URL must not have a query or fragment');
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

function urlList(env: NodeJS.ProcessEnv, name: string): string[] {
  const raw = env[name]?.trim();
  if (!raw) return [];
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      let u: URL;
      try {
        u = new URL(s);
      } catch {
        throw new ConfigError(`${name}: "${s}" is not an absolute URL (e.g. https://agent.example.com:8443)`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`${name}: "${s}" must be http or https`);
      return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
    });
}
