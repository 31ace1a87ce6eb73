import type { Tier } from '../core/types.js';

/** Everything a backend needs to start one instance of a workspace. Env is complete: contract vars, secrets, user env. */
export interface InstanceSpec {
  workspaceId: string;
  name: string;
  runtime: string;
  tier: Tier;
  /** Requested region, or null for the backend's default. */
  region: string | null;
  /** Resolved runtime image (ignored by the process backend, which runs the built-in agent). */
  image: string;
  env: Record<string, string>;
  /**
   * Keys of `env` whose values are secret (workspace secrets, the workspace and agent tokens). A backend whose
   * instance config is readable by others (Fly's machine config) keeps these values out of it; others may ignore it.
   */
  secretKeys?: string[];
  /** Boot timeline: a backend reports each step ("machine created", "machine started" …) as it happens. */
  progress?: (step: string, data?: Record<string, unknown>) => void;
  /**
   * Aborted when the start is no longer wanted (the workspace is being deleted or paused, or the platform stops):
   * a backend stops waiting for the boot and throws; whatever it created is cleaned up by it or by reconcile.
   */
  signal?: AbortSignal;
}

/** How the platform reaches a running instance. Stored on the workspace so a restarted platform can route. */
export interface InstanceHandle {
  /** Backend-specific id: pid record key, container id, machine id. */
  instanceId: string;
  /** Base URL of the agent's A2A server, as the platform reaches it. Null while unknown. */
  url: string | null;
  /** Extra headers the platform must send to reach the agent (e.g. Fly's `fly-force-instance-id`). */
  headers?: Record<string, string>;
  /** Backend facts worth showing on the workspace (region, machine version, private address, port, pid …). */
  details: Record<string, unknown>;
}

export type InstanceStateName = 'starting' | 'running' | 'stopped' | 'failed' | 'gone' | 'unknown';

export interface InstanceState {
  state: InstanceStateName;
  /** For failed/stopped: why, in words a person can act on (e.g. "exited with code 137 (OOM)"). */
  reason?: string;
  exitCode?: number | null;
}

/** One instance this platform owns, as the backend sees it (for reconcile). */
export interface OwnedInstance {
  instanceId: string;
  workspaceId: string;
  state: InstanceStateName;
}

export interface LogOptions {
  /** Number of most recent lines to return first (default 200). */
  tail?: number;
  /** Keep streaming new lines until the signal aborts. */
  follow?: boolean;
  signal?: AbortSignal;
}

/** Pushed by a backend when it learns an instance changed state without being asked (a process exited, a machine stopped). */
export interface InstanceEvent {
  workspaceId: string;
  instanceId: string;
  state: InstanceStateName;
  reason?: string;
  exitCode?: number | null;
}

/**
 * One interface for every backend; the shared contract suite in test/contract runs against each implementation.
 * Every operation is idempotent where it can be: destroy/stop of an unknown instance is not an error.
 */
export interface Provisioner {
  readonly name: string;
  /** Region given to workspaces that do not ask for one (the agent reports it as MOLECULE_REGION). */
  readonly defaultRegion: string;
  /** Regions a workspace may ask for (code → place), for pickers; absent when the backend takes any region code. */
  readonly regions?: Readonly<Record<string, string>>;
  /** Caller mistakes this backend can see before starting anything (e.g. an unknown Fly region). */
  validate?(spec: { region: string | null; tier: number; runtime: string }): string | null;
  /** Start a new instance. Throws ProvisionError with a typed code on failure. */
  start(spec: InstanceSpec): Promise<InstanceHandle>;
  /** Stop the instance, keeping what resume needs (disk, pid record, machine). */
  stop(instanceId: string): Promise<void>;
  /** Start a stopped instance again. */
  resume(instanceId: string, spec: InstanceSpec): Promise<InstanceHandle>;
  /** Restart the instance (or recreate it when it is gone). */
  restart(instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle>;
  /** Stop and remove the instance and everything it owns. Unknown instance = success. */
  destroy(instanceId: string): Promise<void>;
  /** What the backend sees now. 'unknown' on transient errors, never a guess of 'gone'. */
  inspect(instanceId: string): Promise<InstanceState>;
  /**
   * Drops what the backend keeps for a workspace outside its instance (Fly: the workspace's app secrets). Called
   * when the workspace is removed, after its instance is destroyed. Idempotent.
   */
  forget?(workspaceId: string): Promise<void>;
  /**
   * The periodic sweep's counterpart of `forget`: drops what the backend keeps for workspaces that are not live.
   * `liveWorkspaceIds` is asked only after the backend has listed what it keeps, so a workspace created meanwhile
   * is in the answer.
   */
  forgetUnclaimed?(liveWorkspaceIds: () => Promise<string[]>): Promise<void>;
  /** Every instance this platform owns (label / metadata / pid records). */
  list(): Promise<OwnedInstance[]>;
  /** The instance's output, a line at a time. */
  logs(instanceId: string, opts: LogOptions): AsyncIterable<string>;
  /** For /healthz: name plus details (what limits are enforced, app, region, API base …). */
  describe(): Record<string, unknown>;
  /** Subscribe to unsolicited instance changes. Returns an unsubscribe function. */
  watch(listener: (ev: InstanceEvent) => void): () => void;
  /** Re-attach to instances that survived a platform restart; called once at startup. */
  adopt?(handles: { workspaceId: string; instanceId: string }[]): Promise<void>;
  /** Why the backend cannot take work right now (e.g. its engine is unreachable), or null when it can. */
  unavailable?(): string | null;
  /**
   * For backends whose instances cannot reach the platform's loopback address (containers): a host-local address
   * the platform should also listen on for the agent-facing routes, and the subnets its instances connect from.
   * Only used when PLATFORM_URL is not set.
   */
  agentNetwork?(): Promise<AgentNetwork>;
  /** Release timers and connections; instances keep running. */
  close(): Promise<void>;
}

/** Where instances reach the platform: an address of this host, and the subnets they connect from. */
export interface AgentNetwork {
  host: string;
  subnets: string[];
}

export type ProvisionErrorCode =
  | 'IMAGE_NOT_FOUND'
  | 'CAPACITY'
  | 'INVALID_CONFIG'
  | 'BACKEND_UNAVAILABLE'
  | 'START_FAILED'
  /** An instance that would not go away (e.g. still being destroyed after the backend's wait); retryable. */
  | 'DESTROY_FAILED'
  | 'NOT_FOUND';

/** A backend failure with a typed code and a reason a person can act on. */
export class ProvisionError extends Error {
  constructor(
    readonly code: ProvisionErrorCode,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'ProvisionError';
  }
}
