import type { Logger } from 'pino';
import { ConfigError, type Config } from '../../core/config.js';
import { TIERS, type Tier } from '../../core/types.js';
import type { InstanceEvent, InstanceHandle, InstanceSpec, InstanceState, LogOptions, OwnedInstance, Provisioner, AdoptsInstances, KeepsWorkspaceState, ValidatesSpecs } from '../../core/provisioner.js';
import { AppSecrets } from './app-secrets.js';
import { DEFAULT_API_BASE, FlyClient, type FlyMachine, type FlyMachineConfig } from './client/index.js';
import { timingsFrom, type FlyContext, type FlyProvisionerOptions } from './context.js';
import { inspectMachine, listOwnedMachines, machineOutput } from './inventory.js';
import { MachineLifecycle } from './lifecycle.js';
import { FLY_REGIONS, guestForTier, regionProblem, specProblem } from './limits.js';
import { AGENT_PORT, loadPlatformId } from './machines.js';
import { MachineTeardown } from './teardown.js';
import { MachineWatch } from './watch.js';

export type { FlyProvisionerOptions } from './context.js';

/**
 * Workspaces as Fly Machines (design.md "Backends", reference fly-machines-api.md). This class wires the parts
 * together and answers the Provisioner interface; each concern lives in its own module:
 *
 * - client/         the Machines API client (laid out like fly-go's flaps)
 * - lifecycle.ts    start (create + wait), restart and resume (update when the config changed, recreate when gone)
 * - teardown.ts     stop (lease, stop, wait) and destroy (force, confirmed)
 * - watch.ts        noticing machines that leave `started` on their own, and adopting them after a restart
 * - app-secrets.ts  workspace secrets as Fly app secrets, and their sweep
 * - inventory.ts    inspect, list (by metadata), logs (simulator)
 * - machine-config.ts, machines.ts, secrets.ts, limits.ts: pure helpers (config, states, names, Fly's limits)
 */
export class FlyProvisioner implements Provisioner, AdoptsInstances, ValidatesSpecs, KeepsWorkspaceState {
  readonly name = 'flyio';
  readonly defaultRegion: string;
  readonly regions = FLY_REGIONS;
  readonly app: string;
  readonly platformId: string;
  readonly client: FlyClient;
  private readonly apiBase: string;
  private readonly ctx: FlyContext;
  private readonly watcher: MachineWatch;
  private readonly secrets: AppSecrets;
  private readonly teardown: MachineTeardown;
  private readonly lifecycle: MachineLifecycle;

  constructor(opts: FlyProvisionerOptions) {
    if (!opts.token) throw new ConfigError('FLY_API_TOKEN is required for CONTAINER_BACKEND=flyio (create one with: flyctl tokens create deploy)');
    if (!opts.app) throw new ConfigError('FLY_WORKSPACE_APP is required for CONTAINER_BACKEND=flyio (the Fly app that holds workspace machines: flyctl apps create <name>)');
    this.app = opts.app;
    this.defaultRegion = opts.region || 'ord';
    const bad = regionProblem(this.defaultRegion);
    if (bad) throw new ConfigError(`FLY_REGION: ${bad}`);
    this.apiBase = (opts.apiBase || DEFAULT_API_BASE).replace(/\/+$/, '');
    this.platformId = FlyProvisioner.platformIdFrom(opts);
    this.client = new FlyClient({ app: opts.app, token: opts.token, baseUrl: this.apiBase, rateLimits: opts.rateLimits, retry: opts.retry, onRequest: opts.onRequest, onCall: opts.onCall, logger: opts.logger });
    this.ctx = {
      client: this.client,
      app: this.app,
      defaultRegion: this.defaultRegion,
      platformId: this.platformId,
      logger: opts.logger,
      timings: timingsFrom(opts),
      reach: { proxyUrl: (opts.proxyUrl || `https://${opts.app}.fly.dev`).replace(/\/+$/, ''), platformAppName: opts.platformAppName },
    };
    this.watcher = new MachineWatch(this.ctx);
    this.secrets = new AppSecrets(this.ctx);
    this.teardown = new MachineTeardown(this.ctx, this.watcher);
    this.lifecycle = new MachineLifecycle(this.ctx, this.watcher, this.secrets, this.teardown);
  }

  /**
   * From the platform configuration (FLY_* variables); a ConfigError names what is missing. `platformId` is the
   * cluster's identity when replicas share a database; without it the id file in the data dir is used.
   */
  static fromConfig(config: Config, logger: Logger, opts: Pick<FlyProvisionerOptions, 'platformId' | 'onCall'> = {}): FlyProvisioner {
    const f = config.fly;
    // Missing ones are named by the constructor's checks.
    return new FlyProvisioner({
      token: f.apiToken ?? '',
      app: f.app ?? '',
      region: f.region,
      apiBase: f.apiBase,
      proxyUrl: f.proxyUrl,
      platformAppName: f.platformAppName,
      platformId: opts.platformId,
      onCall: opts.onCall,
      dataDir: config.dataDir,
      logger,
      startTimeoutMs: config.timing.provisionTimeoutMs,
      ...(f.clientRateLimits ? {} : { rateLimits: false as const }),
    });
  }

  private static platformIdFrom(opts: FlyProvisionerOptions): string {
    if (opts.platformId) return opts.platformId;
    if (opts.dataDir) return loadPlatformId(opts.dataDir);
    throw new Error('FlyProvisioner needs platformId or dataDir');
  }

  /** True when the API base is Fly's own (not a simulator). */
  get usesRealFly(): boolean {
    return /(^https?:\/\/)(api\.machines\.dev|_api\.internal)(:\d+)?$/.test(this.apiBase);
  }

  describe(): Record<string, unknown> {
    const { reach, timings } = this.ctx;
    return {
      name: this.name,
      app: this.app,
      region: this.defaultRegion,
      api_base: this.apiBase,
      platform_id: this.platformId,
      agent_address: reach.platformAppName
        ? `http://<machine_id>.vm.${this.app}.internal:${AGENT_PORT} (private network; the platform runs on Fly as ${reach.platformAppName})`
        : `${reach.proxyUrl} with header fly-force-instance-id: <machine_id>`,
      restart_policy: { policy: 'on-failure', max_retries: timings.restartMaxRetries },
      limits: {
        memory: 'Fly guest memory_mb (VM)',
        cpu: 'Fly guest cpus, shared',
        read_only_root: false,
        tiers: Object.fromEntries(Object.keys(TIERS).map((t) => [t, guestForTier(Number(t) as Tier)])),
        note: 'each workspace is its own Fly Machine (Firecracker VM) sized by its tier',
      },
    };
  }

  validate(spec: { region: string | null; tier: number; runtime: string }): string | null {
    return specProblem(spec);
  }

  // ---- lifecycle (lifecycle.ts, teardown.ts) ----------------------------------------------------------------

  start(spec: InstanceSpec): Promise<InstanceHandle> {
    return this.lifecycle.start(spec);
  }

  stop(instanceId: string): Promise<void> {
    return this.teardown.stop(instanceId);
  }

  /** Sleep: suspend within Fly's limits, else stop (SuspendsInstances); resume starts it either way. */
  suspend(instanceId: string): Promise<'suspended' | 'stopped'> {
    return this.teardown.suspend(instanceId);
  }

  resume(instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.lifecycle.startExisting(instanceId, spec, 'resume');
  }

  restart(instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    if (!instanceId) return this.start(spec);
    return this.lifecycle.startExisting(instanceId, spec, 'restart');
  }

  destroy(instanceId: string): Promise<void> {
    return this.teardown.destroy(instanceId);
  }

  /** The machine config a spec produces (secret values stay out of it; see machine-config.ts). */
  desiredConfig(spec: InstanceSpec, provisionId: string): FlyMachineConfig {
    return this.lifecycle.configFor(spec, provisionId);
  }

  // ---- app secrets (app-secrets.ts) ---------------------------------------------------------------------------

  /** Deletes the workspace's app secrets (after its machine is destroyed, when the workspace is removed). */
  forget(workspaceId: string): Promise<void> {
    return this.secrets.forget(workspaceId);
  }

  /** Deletes app secrets of this platform whose workspace is not live; secrets of others are never touched. */
  forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void> {
    return this.secrets.forgetUnclaimed(liveWorkspaceIds);
  }

  // ---- reading (inventory.ts) ---------------------------------------------------------------------------------

  inspect(instanceId: string): Promise<InstanceState> {
    return inspectMachine(this.ctx, instanceId);
  }

  list(): Promise<OwnedInstance[]> {
    return listOwnedMachines(this.ctx);
  }

  logs(instanceId: string, opts: LogOptions): AsyncIterable<string> {
    return machineOutput(this.ctx, instanceId, opts);
  }

  // ---- watch (watch.ts) ---------------------------------------------------------------------------------------

  watch(listener: (ev: InstanceEvent) => void): () => void {
    return this.watcher.subscribe(listener);
  }

  adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    return this.watcher.adopt(handles);
  }

  close(): Promise<void> {
    return this.watcher.close();
  }

  /** How the platform reaches a machine's agent (kept on the class: tests check it on a provisioner). */
  private handleFor(m: FlyMachine): InstanceHandle {
    return this.lifecycle.handleFor(m);
  }
}
