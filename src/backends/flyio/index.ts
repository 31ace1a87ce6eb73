import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ConfigError, type Config } from '../../core/config.js';
import { TIERS, type Tier } from '../../core/types.js';
import {
  ProvisionError,
  type InstanceEvent,
  type InstanceHandle,
  type InstanceSpec,
  type InstanceState,
  type LogOptions,
  type OwnedInstance,
  type Provisioner,
} from '../provisioner.js';
import { DEFAULT_API_BASE, FlyApiError, FlyClient, type FlyMachine, type FlyMachineConfig, type RecordedRequest, type RetryPolicy } from './client.js';
import { FLY_REGIONS, guestForTier, guestProblem, regionProblem } from './limits.js';
import {
  AGENT_PORT,
  configChanges,
  describeNotRunning,
  failureText,
  lastExit,
  loadPlatformId,
  looksLikeImageProblem,
  machineName,
  mapState,
  META,
} from './machines.js';
import type { RateLimits } from './ratelimit.js';
import { ownedSecretWorkspaceTag, splitSecretEnv, workspaceSecretPrefix, workspaceTag } from './secrets.js';


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
}

interface Tracked {
  workspaceId: string;
  /** Report it when it leaves `started`: true once we saw it started after our own start/resume/restart/adopt. */
  armed: boolean;
  /** Operations of ours in flight on this machine: their state changes are not news. */
  busy: number;
}

const STOP_LIKE = new Set(['stopping', 'stopped', 'suspending', 'suspended']);

/**
 * Workspaces as Fly Machines (design.md "Backends", reference fly-machines-api.md). Every operation of the
 * Provisioner interface is wired: start (create + wait), stop (lease, stop, wait), resume, restart (update
 * when the config changed, recreate when gone), destroy (force, confirmed), inspect, list (by metadata),
 * logs (simulator) and watch (polling the machine list).
 */
export class FlyProvisioner implements Provisioner {
  readonly name = 'flyio';
  readonly defaultRegion: string;
  readonly regions = FLY_REGIONS;
  readonly app: string;
  readonly platformId: string;
  readonly client: FlyClient;
  private readonly apiBase: string;
  private readonly proxyUrl: string;
  private readonly logger: Logger;
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();
  private readonly tracked = new Map<string, Tracked>();
  private pollTimer: NodeJS.Timeout | undefined;
  private pollBackoff = 1;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: FlyProvisionerOptions) {
    if (!opts.token) throw new ConfigError('FLY_API_TOKEN is required for CONTAINER_BACKEND=flyio (create one with: flyctl tokens create deploy)');
    if (!opts.app) throw new ConfigError('FLY_WORKSPACE_APP is required for CONTAINER_BACKEND=flyio (the Fly app that holds workspace machines: flyctl apps create <name>)');
    this.app = opts.app;
    this.defaultRegion = opts.region || 'ord';
    const bad = regionProblem(this.defaultRegion);
    if (bad) throw new ConfigError(`FLY_REGION: ${bad}`);
    this.apiBase = (opts.apiBase || DEFAULT_API_BASE).replace(/\/+$/, '');
    this.proxyUrl = (opts.proxyUrl || `https://${opts.app}.fly.dev`).replace(/\/+$/, '');
    this.logger = opts.logger;
    if (opts.platformId) this.platformId = opts.platformId;
    else if (opts.dataDir) this.platformId = loadPlatformId(opts.dataDir);
    else throw new Error('FlyProvisioner needs platformId or dataDir');
    this.client = new FlyClient({
      app: opts.app,
      token: opts.token,
      baseUrl: this.apiBase,
      rateLimits: opts.rateLimits,
      retry: opts.retry,
      onRequest: opts.onRequest,
      logger: opts.logger,
    });
  }

  /**
   * From the platform configuration (FLY_* variables); a ConfigError names what is missing. `platformId` is the
   * cluster's identity when replicas share a database; without it the id file in the data dir is used.
   */
  static fromConfig(config: Config, logger: Logger, opts: { platformId?: string } = {}): FlyProvisioner {
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
      dataDir: config.dataDir,
      logger,
      startTimeoutMs: config.timing.provisionTimeoutMs,
    });
  }

  /** True when the API base is Fly's own (not a simulator). */
  get usesRealFly(): boolean {
    return /(^https?:\/\/)(api\.machines\.dev|_api\.internal)(:\d+)?$/.test(this.apiBase);
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      app: this.app,
      region: this.defaultRegion,
      api_base: this.apiBase,
      platform_id: this.platformId,
      agent_address: this.opts.platformAppName
        ? `http://<machine_id>.vm.${this.app}.internal:${AGENT_PORT} (private network; the platform runs on Fly as ${this.opts.platformAppName})`
        : `${this.proxyUrl} with header fly-force-instance-id: <machine_id>`,
      restart_policy: { policy: 'on-failure', max_retries: this.restartMaxRetries },
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
    if (spec.region !== null && spec.region !== undefined) {
      const bad = regionProblem(spec.region);
      if (bad) return `region ${bad}`;
    }
    if (!(spec.tier in TIERS)) return `tier ${spec.tier} is not one of ${Object.keys(TIERS).join(', ')}`;
    const g = guestProblem(guestForTier(spec.tier as Tier));
    return g ? `tier ${spec.tier}: ${g}` : null;
  }

  watch(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- start -----------------------------------------------------------------------------------------------

  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const t0 = Date.now();
    const deadline = t0 + this.startTimeoutMs;
    const region = spec.region ?? this.defaultRegion;
    const problem = this.validate({ region, tier: spec.tier, runtime: spec.runtime });
    if (problem) throw new ProvisionError('INVALID_CONFIG', problem);
    const provisionId = newProvisionId();
    const config = this.desiredConfig(spec, provisionId);
    const name = machineName(spec.workspaceId);
    const secretsVersion = await this.writeSecrets(spec, region);

    let machine: FlyMachine;
    let adopted = false;
    let attempts = 1;
    for (let nameTries = 0; ; nameTries++) {
      try {
        ({ machine, adopted, attempts } = await this.client.create(
          { name, region, config, ...(secretsVersion !== undefined ? { min_secrets_version: secretsVersion } : {}) },
          { [META.workspaceId]: spec.workspaceId, [META.provisionId]: provisionId },
        ));
        break;
      } catch (e) {
        if (e instanceof FlyApiError && e.status === 409 && /already.exists|unique machine name/i.test(e.message)) {
          // A machine of this name exists: this workspace's, from an earlier attempt → bring it to the spec.
          const existing = await this.client.findByMetadata({ [META.workspaceId]: spec.workspaceId });
          if (existing) {
            this.logger.info({ workspace_id: spec.workspaceId, machine_id: existing.id }, 'fly: a machine for this workspace exists already; adopting it');
            spec.progress?.('machine adopted', { machine_id: existing.id, region: existing.region, state: existing.state, instance_version: existing.instance_id });
            return this.converge(existing, spec, 'start', deadline, t0, secretsVersion);
          }
          // The name is held by a machine being destroyed (or by someone else's machine): give it a moment.
          if (nameTries < 10 && Date.now() < deadline) {
            await sleep(1000);
            continue;
          }
          throw new ProvisionError('INVALID_CONFIG', `the machine name ${name} is taken in Fly app ${this.app} by a machine that is not this workspace's: ${e.message}`);
        }
        throw this.toProvisionError(e, region, spec.image);
      }
    }
    spec.progress?.('machine created', {
      machine_id: machine.id,
      name: machine.name,
      region: machine.region,
      instance_version: machine.instance_id,
      image: spec.image,
      guest: config.guest,
      adopted_after_ambiguous_create: adopted,
      create_attempts: attempts,
      elapsed_ms: Date.now() - t0,
    });
    const t = this.track(machine.id, spec.workspaceId);
    t.busy++;
    try {
      const started = await this.waitStarted(machine.id, machine.instance_id, deadline, spec.image, true, spec.signal);
      spec.progress?.('machine started', this.progressFacts(started, t0));
      t.armed = true;
      return this.handleFor(started);
    } catch (e) {
      // Nothing will use a machine that never started: do not leave it behind.
      this.logger.warn({ machine_id: machine.id, err: (e as Error).message }, 'fly: machine did not start; destroying it');
      await this.destroy(machine.id).catch((d) => this.logger.warn({ machine_id: machine.id, err: (d as Error).message }, 'fly: destroying the failed machine failed'));
      throw e;
    } finally {
      t.busy--;
    }
  }

  // ---- stop / resume / restart -----------------------------------------------------------------------------

  async stop(instanceId: string): Promise<void> {
    const t = this.tracked.get(instanceId);
    if (t) {
      t.armed = false;
      t.busy++;
    }
    try {
      let m = await this.client.find(instanceId).catch((e) => {
        throw this.toProvisionError(e);
      });
      if (m && ['replacing', 'restarting', 'updating', 'suspending'].includes(m.state)) {
        // Fly refuses to stop mid-transition: let it settle first.
        await this.client.waitFor(instanceId, { states: ['settled'], deadline: Date.now() + this.stopTimeoutMs }).catch(() => undefined);
        m = await this.client.find(instanceId);
      }
      if (!m || m.state === 'destroying' || m.state === 'stopped' || m.state === 'failed' || m.state === 'suspended') return;
      const machine = m;
      await this.client.withLease(
        instanceId,
        'molecule: stop',
        async (nonce, lease) => {
          const cur = machine.instance_id || lease.version;
          if (machine.state !== 'stopping') await this.client.stop(instanceId, { signal: 'SIGTERM', timeout: '10s' }, nonce);
          await this.client.waitFor(instanceId, { states: ['stopped'], version: cur, deadline: Date.now() + this.stopTimeoutMs }).catch(async (e) => {
            // 400 when the version moved on; 404 when it was destroyed meanwhile: look instead of guessing.
            const now = await this.client.find(instanceId);
            if (!now || STOP_LIKE.has(now.state) || now.state === 'failed') return;
            throw e;
          });
        },
        60,
      );
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return;
      throw e instanceof ProvisionError ? e : this.toProvisionError(e);
    } finally {
      if (t) t.busy--;
    }
  }

  async resume(instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.restartOrResume(instanceId, spec, 'resume');
  }

  async restart(instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    if (!instanceId) return this.start(spec);
    return this.restartOrResume(instanceId, spec, 'restart');
  }

  private async restartOrResume(instanceId: string, spec: InstanceSpec, mode: 'restart' | 'resume'): Promise<InstanceHandle> {
    const t0 = Date.now();
    const deadline = t0 + this.startTimeoutMs;
    const problem = this.validate({ region: spec.region ?? this.defaultRegion, tier: spec.tier, runtime: spec.runtime });
    if (problem) throw new ProvisionError('INVALID_CONFIG', problem);
    let m: FlyMachine | null;
    try {
      m = await this.client.find(instanceId);
    } catch (e) {
      throw this.toProvisionError(e);
    }
    if (!m || m.state === 'destroying') {
      this.untrack(instanceId);
      spec.progress?.('machine gone; creating a new one', { old_machine_id: instanceId });
      return this.start(spec);
    }
    return this.converge(m, spec, mode, deadline, t0);
  }

  /**
   * Brings an existing machine to "running what the spec says": update its config when image/env/guest changed
   * (Fly boots the new version), else start it when it is not running, or restart it when asked to.
   */
  private async converge(
    m: FlyMachine,
    spec: InstanceSpec,
    mode: 'start' | 'restart' | 'resume',
    deadline: number,
    t0: number,
    writtenSecretsVersion?: number,
  ): Promise<InstanceHandle> {
    const secretsVersion = writtenSecretsVersion ?? (await this.writeSecrets(spec, m.region));
    const t = this.track(m.id, spec.workspaceId);
    t.armed = false;
    t.busy++;
    let gone = false;
    try {
      if (!['started', 'stopped', 'suspended', 'failed', 'created'].includes(m.state)) {
        // Mid-transition (stopping, replacing, restarting …): let it settle before acting on it.
        await this.client.waitFor(m.id, { states: ['settled'], deadline: Math.min(deadline, Date.now() + 60_000) }).catch(() => undefined);
        m = (await this.client.find(m.id)) ?? m;
      }
      const wanted = this.desiredConfig(spec, newProvisionId());
      const current = m.config ?? m.incomplete_config ?? null;
      const changes = configChanges(current, wanted);
      // New secret values (every launch mints new tokens) reach a machine only when a new version boots.
      if (secretsVersion !== undefined && !changes.length) changes.push('secrets');
      const running = ['started', 'starting', 'restarting', 'replacing', 'updating', 'created'].includes(m.state);
      const wasFailed = m.state === 'failed';
      let version = m.instance_id;
      try {
        await this.client.withLease(
          m.id,
          `molecule: ${mode}`,
          async (nonce, lease) => {
            const startIt = async () => {
              await this.client.start(m.id, { nonce, transientDeadlineMs: Math.max(5000, Math.min(60_000, deadline - Date.now())) });
              spec.progress?.('machine starting', { machine_id: m.id, instance_version: version, previous_state: m.state, elapsed_ms: Date.now() - t0 });
            };
            if (changes.length) {
              // Conditional on the version the lease saw: a lost answer is then recognised, never sent twice.
              const updated = await this.client.update(
                m.id,
                {
                  config: { ...(current ?? {}), ...wanted },
                  ...(lease.version ? { current_version: lease.version } : {}),
                  ...(secretsVersion !== undefined ? { min_secrets_version: secretsVersion } : {}),
                },
                nonce,
              );
              version = updated.instance_id;
              spec.progress?.('machine config updated', { machine_id: m.id, changed: changes, instance_version: version, elapsed_ms: Date.now() - t0 });
              if (!running) await startIt(); // an update leaves a machine that was not running stopped
            } else if (m.state === 'started' && mode === 'restart') {
              await this.client.restart(m.id, { nonce });
              spec.progress?.('machine restarting', { machine_id: m.id, instance_version: version, elapsed_ms: Date.now() - t0 });
            } else if (!running) {
              await startIt();
            }
          },
          60,
        );
      } catch (e) {
        if (e instanceof FlyApiError && e.status === 404) gone = true;
        else throw this.toProvisionError(e, m.region, spec.image);
      }
      if (!gone) {
        const started = await this.waitStarted(m.id, version, deadline, spec.image, !(wasFailed && !changes.length), spec.signal);
        spec.progress?.('machine started', this.progressFacts(started, t0));
        t.armed = true;
        return this.handleFor(started);
      }
    } finally {
      t.busy = Math.max(0, t.busy - 1);
    }
    this.untrack(m.id);
    spec.progress?.('machine gone; creating a new one', { old_machine_id: m.id });
    return this.start(spec);
  }

  // ---- destroy / inspect / list / logs ---------------------------------------------------------------------

  async destroy(instanceId: string): Promise<void> {
    const t = this.tracked.get(instanceId);
    if (t) {
      t.armed = false;
      t.busy++;
    }
    try {
      let existed: boolean;
      try {
        existed = await this.client.destroy(instanceId, { force: true });
      } catch (e) {
        if (!(e instanceof FlyApiError) || e.status !== 409 || !/lease/i.test(e.message)) throw e;
        // Leased (e.g. by a platform that died mid-operation): wait for the lease, then destroy with its nonce.
        existed = await this.client.withLease(instanceId, 'molecule: destroy', (nonce) => this.client.destroy(instanceId, { force: true, nonce }), 30);
      }
      if (!existed) return;
      try {
        await this.client.waitFor(instanceId, { states: ['destroyed'], deadline: Date.now() + this.destroyTimeoutMs });
      } catch (e) {
        if (!(e instanceof FlyApiError) || e.status !== 404) {
          const now = await this.client.find(instanceId);
          if (now) throw new ProvisionError('DESTROY_FAILED', `machine ${instanceId} is still ${now.state} after destroy: ${(e as Error).message}`, true);
        }
      }
    } catch (e) {
      throw e instanceof ProvisionError ? e : this.toProvisionError(e);
    } finally {
      this.untrack(instanceId);
    }
  }

  /** Deletes the workspace's app secrets (after its machine is destroyed, when the workspace is removed). */
  async forget(workspaceId: string): Promise<void> {
    const prefix = workspaceSecretPrefix(this.platformId, workspaceId);
    try {
      const names = (await this.client.listSecrets()).map((x) => x.name).filter((n) => n.startsWith(prefix));
      for (const n of names) await this.client.deleteSecret(n);
      if (names.length) this.logger.info({ workspace_id: workspaceId, secrets: names.length }, 'fly: deleted the workspace app secrets');
    } catch (e) {
      throw this.toProvisionError(e);
    }
  }

  /** Deletes app secrets of this platform whose workspace is not live; secrets of others are never touched. */
  async forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void> {
    const ours = (await this.client.listSecrets())
      .map((x) => ({ name: x.name, tag: ownedSecretWorkspaceTag(this.platformId, x.name) }))
      .filter((x): x is { name: string; tag: string } => x.tag !== null);
    if (!ours.length) return;
    const live = new Set((await liveWorkspaceIds()).map(workspaceTag));
    for (const x of ours) {
      if (live.has(x.tag)) continue;
      this.logger.info({ secret: x.name }, 'fly: deleting the app secret of a workspace that is gone');
      await this.client.deleteSecret(x.name);
    }
  }

  async inspect(instanceId: string): Promise<InstanceState> {
    let m: FlyMachine;
    try {
      // Short retry budget: the liveness monitor asks this and must not hang for a minute on an outage.
      m = await this.client.get(instanceId, { retry: { maxAttempts: 3, maxElapsedMs: 5000 } });
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return { state: 'gone', reason: `machine ${instanceId} does not exist in Fly app ${this.app}` };
      return { state: 'unknown', reason: `Fly API: ${(e as Error).message}` };
    }
    const state = mapState(m.state);
    if (state === 'running' || state === 'starting') return { state };
    const x = lastExit(m);
    return { state, reason: describeNotRunning(m), exitCode: x?.exitCode ?? null };
  }

  async list(): Promise<OwnedInstance[]> {
    const ms = await this.client.list({ metadata: { [META.platformId]: this.platformId } });
    return ms
      .filter((m) => m.state !== 'destroyed' && m.state !== 'destroying' && m.config?.metadata?.[META.workspaceId])
      .map((m) => ({ instanceId: m.id, workspaceId: m.config!.metadata![META.workspaceId], state: mapState(m.state) }));
  }

  logs(instanceId: string, opts: LogOptions): AsyncIterable<string> {
    const self = this;
    return (async function* () {
      try {
        yield* self.client.logs(instanceId, { tail: opts.tail ?? 200, follow: opts.follow, signal: opts.signal });
      } catch (e) {
        if (opts.signal?.aborted) return;
        if (!(e instanceof FlyApiError) || e.status !== 404) throw e;
        // 404: either the machine is gone, or this API has no logs route (real Fly serves logs elsewhere).
        const m = await self.client.find(instanceId).catch(() => null);
        if (!m) {
          yield `[molecule] machine ${instanceId} no longer exists in Fly app ${self.app}`;
          return;
        }
        yield `[molecule] the Fly Machines API does not serve machine output; run: flyctl logs --app ${self.app} --machine ${instanceId}`;
      }
    })();
  }

  // ---- watch / adopt ---------------------------------------------------------------------------------------

  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    if (!handles.length) return;
    let byId = new Map<string, FlyMachine>();
    try {
      byId = new Map((await this.client.list({ metadata: { [META.platformId]: this.platformId } })).map((m) => [m.id, m]));
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'fly: could not list machines while adopting; watching them anyway');
    }
    for (const h of handles) {
      const t = this.track(h.instanceId, h.workspaceId);
      const m = byId.get(h.instanceId);
      // Only a machine seen running is watched for leaving `started`; reconcile inspects the others itself.
      t.armed = m?.state === 'started';
      this.logger.info({ machine_id: h.instanceId, workspace_id: h.workspaceId, state: m?.state ?? 'not listed' }, 'fly: adopted machine');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    await this.polling?.catch(() => undefined);
  }

  private track(id: string, workspaceId: string): Tracked {
    let t = this.tracked.get(id);
    if (!t) {
      t = { workspaceId, armed: false, busy: 0 };
      this.tracked.set(id, t);
    }
    this.schedulePoll();
    return t;
  }

  private untrack(id: string): void {
    this.tracked.delete(id);
  }

  private schedulePoll(): void {
    if (this.closed || this.pollTimer || this.polling) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.polling = this.pollOnce()
        .then(() => {
          this.pollBackoff = 1;
        })
        .catch((e) => {
          // A failed look costs nothing: the next one comes. Over the rate limit, look less often for a while.
          if (e instanceof FlyApiError && e.status === 429) this.pollBackoff = Math.min(this.pollBackoff * 2, 8);
          this.logger.debug({ err: (e as Error).message }, 'fly: watch poll failed; trying again');
        })
        .finally(() => {
          this.polling = undefined;
          if (this.tracked.size) this.schedulePoll();
        });
    }, this.watchIntervalMs * this.pollBackoff);
    this.pollTimer.unref();
  }

  /** One look at our machines: report those that left `started` while no operation of ours was running. */
  private async pollOnce(): Promise<void> {
    const candidates = [...this.tracked.entries()].filter(([, t]) => t.armed && t.busy === 0);
    if (!candidates.length || this.closed) return;
    // One list call per look, not retried (the next look is the retry), so watching never crowds out real work.
    const byId = new Map((await this.client.list({ metadata: { [META.platformId]: this.platformId } }, { retry: false })).map((m) => [m.id, m]));
    for (const [id, t] of candidates) {
      let m: FlyMachine | null | undefined = byId.get(id);
      // Not listed: destroyed (lists leave those out) — confirm before calling it gone.
      if (!m) m = await this.client.find(id, { retry: false }).catch(() => undefined);
      if (m === undefined) continue; // could not tell
      const state = m ? m.state : 'destroyed';
      if (state === 'started' || mapState(state) === 'starting') continue; // running, or Fly's restart policy at work
      if (!t.armed || t.busy > 0 || this.tracked.get(id) !== t || this.closed) continue; // one of our operations began meanwhile
      t.armed = false;
      const ev: InstanceEvent = {
        workspaceId: t.workspaceId,
        instanceId: id,
        state: m ? mapState(state) : 'gone',
        reason: m ? describeNotRunning(m) : `machine ${id} was destroyed outside this platform`,
        exitCode: m ? (lastExit(m)?.exitCode ?? null) : null,
      };
      if (ev.state === 'unknown') ev.state = 'failed';
      this.logger.info({ machine_id: id, workspace_id: t.workspaceId, state, reason: ev.reason }, 'fly: machine left started on its own');
      for (const l of this.listeners) l(ev);
    }
  }

  // ---- internals -------------------------------------------------------------------------------------------

  private get startTimeoutMs(): number {
    return this.opts.startTimeoutMs ?? 600_000;
  }
  private get stopTimeoutMs(): number {
    return this.opts.stopTimeoutMs ?? 60_000;
  }
  private get destroyTimeoutMs(): number {
    return this.opts.destroyTimeoutMs ?? 60_000;
  }
  private get watchIntervalMs(): number {
    return this.opts.watchIntervalMs ?? 3000;
  }
  private get restartMaxRetries(): number {
    return this.opts.restartMaxRetries ?? 0;
  }

  /**
   * Writes the spec's secret values as app secrets and deletes this workspace's secrets it no longer has. Returns
   * the app's secrets version after the write (for min_secrets_version), or undefined when nothing was written.
   */
  private async writeSecrets(spec: InstanceSpec, region?: string): Promise<number | undefined> {
    const { values } = splitSecretEnv(this.platformId, spec.workspaceId, spec.env, spec.secretKeys);
    const prefix = workspaceSecretPrefix(this.platformId, spec.workspaceId);
    try {
      let version: number | undefined;
      if (Object.keys(values).length) {
        // A version is what proves the write happened; an API without one still gets the values referenced.
        version = (await this.client.setSecrets(values)) ?? 0;
        spec.progress?.('app secrets written', { secrets: Object.keys(values).length, secrets_version: version });
      }
      const stale = (await this.client.listSecrets()).map((x) => x.name).filter((n) => n.startsWith(prefix) && !Object.hasOwn(values, n));
      for (const n of stale) await this.client.deleteSecret(n);
      return version;
    } catch (e) {
      throw this.toProvisionError(e, region);
    }
  }

  /**
   * The machine config a spec produces. Secret values are not in it: `processes[0].secrets` names the app secrets
   * that hold them, and `ignore_app_secrets` keeps the app's other secrets (other workspaces') out of the machine.
   */
  desiredConfig(spec: InstanceSpec, provisionId: string): FlyMachineConfig {
    const { env, refs } = splitSecretEnv(this.platformId, spec.workspaceId, spec.env, spec.secretKeys);
    return {
      image: spec.image,
      env: { ...env, PORT: String(AGENT_PORT) },
      processes: [{ ignore_app_secrets: true, secrets: refs }],
      guest: { ...guestForTier(spec.tier) },
      metadata: {
        [META.workspaceId]: spec.workspaceId,
        [META.platformId]: this.platformId,
        [META.provisionId]: provisionId,
      },
      services: [
        {
          protocol: 'tcp',
          internal_port: AGENT_PORT,
          // The platform manages the lifecycle: Fly's proxy must neither stop idle workspaces nor wake paused ones.
          autostop: 'off',
          autostart: false,
          ports: [{ port: 443, handlers: ['tls', 'http'] }],
        },
      ],
      restart: { policy: 'on-failure', max_retries: this.restartMaxRetries },
      auto_destroy: false,
      stop_config: { signal: 'SIGTERM', timeout: '10s' },
    };
  }

  /** Waits for `started` (or `failed`) of one version until the deadline; failures become ProvisionErrors. */
  private async waitStarted(id: string, version: string, deadline: number, image: string, orFailed = true, signal?: AbortSignal): Promise<FlyMachine> {
    const fail = (m: FlyMachine): ProvisionError => {
      if (m.state === 'failed') {
        const text = failureText(m) ?? 'machine failed';
        return new ProvisionError(looksLikeImageProblem(text) ? 'IMAGE_NOT_FOUND' : 'START_FAILED', `machine ${id} failed to boot ${image}: ${text}`);
      }
      return new ProvisionError('START_FAILED', `machine ${id} did not start: ${describeNotRunning(m)}`);
    };
    try {
      const r = await this.client.waitFor(id, {
        // Not `failed` right after starting a failed machine: that answer could be about the old attempt.
        states: orFailed ? ['started', 'failed'] : ['started'],
        version,
        deadline,
        signal,
        // Between slices, look: a machine that failed/stopped will not start by waiting longer.
        onSlice: async () => {
          const m = await this.client.find(id).catch(() => undefined);
          if (m === null) throw new ProvisionError('START_FAILED', `machine ${id} was destroyed while starting`);
          if (m && (m.state === 'failed' || m.state === 'stopped')) throw fail(m);
        },
      });
      const m = await this.client.get(id);
      if (r.state === 'failed' || m.state === 'failed') throw fail(m);
      return m;
    } catch (e) {
      if (e instanceof ProvisionError) throw e;
      if (e instanceof FlyApiError) {
        const m = await this.client.find(id).catch(() => undefined);
        if (m === null) throw new ProvisionError('START_FAILED', `machine ${id} disappeared while starting`);
        if (m && m.state === 'started') return m;
        if (m && ['failed', 'stopped'].includes(m.state)) throw fail(m);
        if (e.status === 408) {
          throw new ProvisionError('START_FAILED', `machine ${id} did not reach started within ${Math.round(this.startTimeoutMs / 1000)} s (it is ${m?.state ?? 'unknown'})`);
        }
        if (e.retryable) throw new ProvisionError('BACKEND_UNAVAILABLE', `Fly Machines API unavailable while waiting for machine ${id} to start: ${e.message}`, true);
        throw new ProvisionError('START_FAILED', `waiting for machine ${id} to start failed (it is ${m?.state ?? 'unknown'}): ${e.message}`);
      }
      throw this.toProvisionError(e);
    }
  }

  private handleFor(m: FlyMachine): InstanceHandle {
    const details: Record<string, unknown> = {
      machine_id: m.id,
      name: m.name,
      app: this.app,
      region: m.region,
      instance_version: m.instance_id,
      private_ip: m.private_ip ?? null,
      image: m.config?.image ?? null,
      guest: m.config?.guest ?? null,
    };
    if (this.opts.platformAppName) {
      return { instanceId: m.id, url: `http://${m.id}.vm.${this.app}.internal:${AGENT_PORT}`, details: { ...details, reached_via: '6pn' } };
    }
    return { instanceId: m.id, url: this.proxyUrl, headers: { 'fly-force-instance-id': m.id }, details: { ...details, reached_via: 'fly-proxy' } };
  }

  private progressFacts(m: FlyMachine, t0: number): Record<string, unknown> {
    return { machine_id: m.id, region: m.region, instance_version: m.instance_id, private_ip: m.private_ip ?? null, elapsed_ms: Date.now() - t0 };
  }

  /** A Fly API failure as a typed ProvisionError with Fly's message as the reason. */
  private toProvisionError(e: unknown, region?: string, image?: string): ProvisionError {
    if (e instanceof ProvisionError) return e;
    if (!(e instanceof FlyApiError)) return new ProvisionError('START_FAILED', (e as Error)?.message ?? String(e));
    const where = `Fly app ${this.app}${region ? `, region ${region}` : ''}`;
    const rid = e.flyRequestId ? `; fly-request-id ${e.flyRequestId}` : '';
    if (e.isCapacity) return new ProvisionError('CAPACITY', `${e.message} (${where}; try another region${rid})`, true);
    if (e.status === 401 || e.status === 403) return new ProvisionError('BACKEND_UNAVAILABLE', `Fly refused the API token (FLY_API_TOKEN): ${e.message}${rid}`);
    if (e.status === 404 && /app/i.test(e.message)) return new ProvisionError('INVALID_CONFIG', `${e.message} (${where}: does FLY_WORKSPACE_APP exist?)${rid}`);
    if ((e.status === 400 || e.status === 422) && image && looksLikeImageProblem(e.message) && /manifest|pull|image/i.test(e.message)) {
      return new ProvisionError('IMAGE_NOT_FOUND', `${e.message} (image ${image}${rid})`);
    }
    if (e.status === 400 || e.status === 422) return new ProvisionError('INVALID_CONFIG', `${e.message} (${where}${rid})`);
    if (e.retryable) return new ProvisionError('BACKEND_UNAVAILABLE', `Fly Machines API unavailable: ${e.message}${rid}`, true);
    return new ProvisionError('START_FAILED', `${e.message} (${where}${rid})`);
  }
}

function newProvisionId(): string {
  return crypto.randomBytes(8).toString('hex');
}

