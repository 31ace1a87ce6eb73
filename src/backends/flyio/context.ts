import type { Logger } from 'pino';
import type { BackendCallObserver } from '../../core/backend-calls.js';
import type { FlyClient, RateLimits, RecordedRequest, RetryPolicy } from './client/index.js';

export interface FlyProvisionerOptions {
  /** FLY_API_TOKEN. */
  token: string;
  /** FLY_WORKSPACE_APP: the Fly app the workspace machines live in. */
  app: string;
  /** FLY_REGION: region of workspaces that do not ask for one. Default ord. */
  region?: string;
  /** FLY_FLAPS_BASE_URL. Default https://api.machines.dev. */
  apiBase?: string;
  /** FLY_PROXY_URL: how a platform outside Fly reaches machines. Default https://<app>.fly.dev. */
  proxyUrl?: string;
  /**
   * FLY_APP_NAME of the platform itself: set (by Fly) when the platform runs on Fly, and then machines are reached
   * over the private network at http://<machine_id>.vm.<app>.internal:8000 instead of through the proxy.
   */
  platformAppName?: string;
  /** Stable id of this platform (machine metadata). Default: generated once into `<dataDir>/flyio-platform-id`. */
  platformId?: string;
  dataDir?: string;
  logger: Logger;
  /** How long start/resume/restart wait for `started` (default 600 s, the provision timeout). */
  startTimeoutMs?: number;
  /** How long stop waits for `stopped` (default 60 s). */
  stopTimeoutMs?: number;
  /** How long destroy waits for `destroyed` (default 60 s). */
  destroyTimeoutMs?: number;
  /** How often the machine list is polled for unsolicited changes (default 3000 ms). */
  watchIntervalMs?: number;
  /**
   * `restart.max_retries` with policy `on-failure`. Default 0: a crashed agent's machine stops and the platform
   * restarts it (with its own backoff, crash-loop detection and a reason in the timeline) — one restart policy
   * for every backend. Raise it to let Fly restart crashed agents itself first.
   */
  restartMaxRetries?: number;
  /** Client knobs (tests). */
  rateLimits?: RateLimits | false;
  retry?: Partial<RetryPolicy>;
  onRequest?: (r: RecordedRequest) => void;
  /** Told of every Machines API request (molecule_backend_call_seconds). */
  onCall?: BackendCallObserver;
}

export interface FlyTimings {
  startTimeoutMs: number;
  stopTimeoutMs: number;
  destroyTimeoutMs: number;
  watchIntervalMs: number;
  restartMaxRetries: number;
}

export function timingsFrom(opts: FlyProvisionerOptions): FlyTimings {
  return {
    startTimeoutMs: opts.startTimeoutMs ?? 600_000,
    stopTimeoutMs: opts.stopTimeoutMs ?? 60_000,
    destroyTimeoutMs: opts.destroyTimeoutMs ?? 60_000,
    watchIntervalMs: opts.watchIntervalMs ?? 3000,
    restartMaxRetries: opts.restartMaxRetries ?? 0,
  };
}

/** How the platform reaches an agent: through Fly's proxy, or over the private network when it runs on Fly. */
export interface AgentReach {
  proxyUrl: string;
  /** The platform's own Fly app, when it runs on Fly. */
  platformAppName?: string;
}

/** What every part of the Fly backend shares; FlyProvisioner builds it once. */
export interface FlyContext {
  readonly client: FlyClient;
  /** The Fly app that holds the workspace machines. */
  readonly app: string;
  /** The region of workspaces that do not ask for one. */
  readonly defaultRegion: string;
  /** This platform's id: in machine metadata and app secret names, so platforms sharing an app keep apart. */
  readonly platformId: string;
  readonly logger: Logger;
  readonly timings: FlyTimings;
  readonly reach: AgentReach;
}
