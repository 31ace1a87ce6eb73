import type { Tier } from './types.js';

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
 * What every backend does; the shared contract suite in test/contract runs against each implementation. Every
 * operation is idempotent where it can be: destroy/stop of an unknown instance is not an error. What only some
 * backends do is a capability below, which core checks with its type guard.
 */
export interface Provisioner {
  readonly name: string;
  /** Region given to workspaces that do not ask for one (the agent reports it as MOLECULE_REGION). */
  readonly defaultRegion: string;
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
  /** Every instance this platform owns (label / metadata / pid records / agents carrying our marker). */
  list(): Promise<OwnedInstance[]>;
  /** The instance's output, a line at a time. */
  logs(instanceId: string, opts: LogOptions): AsyncIterable<string>;
  /** For /healthz: name plus details (what limits are enforced, app, region, API base …). */
  describe(): Record<string, unknown>;
  /** Subscribe to unsolicited instance changes. Returns an unsubscribe function. */
  watch(listener: (ev: InstanceEvent) => void): () => void;
  /** Release timers and connections; instances keep running. */
  close(): Promise<void>;
}

/** Re-attaches to instances that survived a platform restart (or another replica's leadership). */
export interface AdoptsInstances {
  adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void>;
}

/**
 * Instances cannot reach the platform's loopback address (containers): a host-local address the platform should
 * also listen on for the agent-facing routes, and the subnets its instances connect from. Only used when
 * PLATFORM_URL is not set.
 */
export interface HasAgentNetwork {
  agentNetwork(): Promise<AgentNetwork>;
}

/** Can be down while the platform runs (an engine that stops answering). */
export interface ReportsHealth {
  /** Why the backend cannot take work right now, or null when it can. */
  unavailable(): string | null;
}

/** Sees caller mistakes before starting anything (e.g. an unknown Fly region, a tier it cannot size). */
export interface ValidatesSpecs {
  validate(spec: { region: string | null; tier: number; runtime: string }): string | null;
  /** Regions a workspace may ask for (code → place), for pickers; absent when any region code goes. */
  readonly regions?: Readonly<Record<string, string>>;
}

/** Keeps something per workspace outside its instance (Fly: the workspace's app secrets). */
export interface KeepsWorkspaceState {
  /** Drops it when the workspace is removed, after its instance is destroyed. Idempotent. */
  forget(workspaceId: string): Promise<void>;
  /**
   * The periodic sweep's counterpart of `forget`: drops what is kept for workspaces that are not live.
   * `liveWorkspaceIds` is asked only after the backend has listed what it keeps, so a workspace created meanwhile
   * is in the answer.
   */
  forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void>;
}

/**
 * Can keep an instance's memory while it sleeps (Fly's suspend): `suspend` saves it where the backend can, and stops
 * the instance where it cannot (says which); `resume` brings it back either way. Without it, sleeping is `stop`.
 */
export interface SuspendsInstances {
  suspend(instanceId: string): Promise<'suspended' | 'stopped'>;
}

const has = (p: object, method: string) => typeof (p as Record<string, unknown>)[method] === 'function';
export const adoptsInstances = (p: Provisioner): p is Provisioner & AdoptsInstances => has(p, 'adopt');
export const hasAgentNetwork = (p: Provisioner): p is Provisioner & HasAgentNetwork => has(p, 'agentNetwork');
export const reportsHealth = (p: Provisioner): p is Provisioner & ReportsHealth => has(p, 'unavailable');
export const validatesSpecs = (p: Provisioner): p is Provisioner & ValidatesSpecs => has(p, 'validate');
export const suspends = (p: Provisioner): p is Provisioner & SuspendsInstances => has(p, 'suspend');
export const keepsWorkspaceState = (p: Provisioner): p is Provisioner & KeepsWorkspaceState => has(p, 'forget') && has(p, 'forgetUnclaimed');

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
