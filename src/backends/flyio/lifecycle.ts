import { setTimeout as sleep } from 'node:timers/promises';
import { ProvisionError, type InstanceHandle, type InstanceSpec } from '../../core/provisioner.js';
import type { AppSecrets } from './app-secrets.js';
import { FlyApiError, type FlyLease, type FlyMachine, type FlyMachineConfig } from './client/index.js';
import type { FlyContext } from './context.js';
import { specProblem } from './limits.js';
import { desiredConfig, instanceHandle, newProvisionId, startedFacts } from './machine-config.js';
import { configChanges, machineName, META } from './machines.js';
import { bootFailure, toProvisionError } from './provision-errors.js';
import type { MachineTeardown } from './teardown.js';
import type { MachineWatch } from './watch.js';

type Mode = 'start' | 'restart' | 'resume';

/** One start, restart or resume as it runs: its spec, its deadline and when it began (for the timeline). */
interface Run {
  spec: InstanceSpec;
  mode: Mode;
  deadline: number;
  t0: number;
}

/** What converging an existing machine means: which fields change, and the state it was found in. */
interface Plan {
  wanted: FlyMachineConfig;
  current: FlyMachineConfig | null;
  changes: string[];
  running: boolean;
  wasFailed: boolean;
  secretsVersion: number | undefined;
}

/** Fly states that need no waiting before we act on the machine. */
const SETTLED = ['started', 'stopped', 'suspended', 'failed', 'created'];
/** Fly states in which the machine is up or on its way up (an update boots the new version by itself). */
const RUNNING_LIKE = ['started', 'starting', 'restarting', 'replacing', 'updating', 'created'];

/**
 * Bringing a workspace's machine up: create it (start), or bring an existing one to the spec (restart, resume).
 * Every path ends waiting for `started` of the version it booted, and arms the watch only then.
 */
export class MachineLifecycle {
  constructor(
    private readonly ctx: FlyContext,
    private readonly watch: MachineWatch,
    private readonly secrets: AppSecrets,
    private readonly teardown: MachineTeardown,
  ) {}

  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const run = this.begin(spec, 'start');
    const region = spec.region ?? this.ctx.defaultRegion;
    this.check(spec, region);
    const provisionId = newProvisionId();
    const config = this.configFor(spec, provisionId);
    const secretsVersion = await this.secrets.write(spec, region);
    const created = await this.create(run, region, config, provisionId, secretsVersion);
    if ('existing' in created) return this.converge(created.existing, run, secretsVersion);
    const { machine, adopted, attempts } = created;
    spec.progress?.('machine created', {
      machine_id: machine.id,
      name: machine.name,
      region: machine.region,
      instance_version: machine.instance_id,
      image: spec.image,
      guest: config.guest,
      adopted_after_ambiguous_create: adopted,
      create_attempts: attempts,
      elapsed_ms: Date.now() - run.t0,
    });
    return this.bootCreated(machine, run);
  }

  /** Restart or resume a machine; one that is gone is created anew. */
  async startExisting(instanceId: string, spec: InstanceSpec, mode: 'restart' | 'resume'): Promise<InstanceHandle> {
    const run = this.begin(spec, mode);
    this.check(spec, spec.region ?? this.ctx.defaultRegion);
    let m: FlyMachine | null;
    try {
      m = await this.ctx.client.find(instanceId);
    } catch (e) {
      throw toProvisionError(e, this.ctx.app);
    }
    if (!m || m.state === 'destroying') {
      this.watch.disarm(instanceId);
      spec.progress?.('machine gone; creating a new one', { old_machine_id: instanceId });
      return this.start(spec);
    }
    return this.converge(m, run);
  }

  configFor(spec: InstanceSpec, provisionId: string): FlyMachineConfig {
    return desiredConfig(spec, provisionId, this.ctx.platformId, this.ctx.timings.restartMaxRetries);
  }

  handleFor(m: FlyMachine): InstanceHandle {
    return instanceHandle(m, this.ctx.app, this.ctx.reach);
  }

  private begin(spec: InstanceSpec, mode: Mode): Run {
    const t0 = Date.now();
    return { spec, mode, t0, deadline: t0 + this.ctx.timings.startTimeoutMs };
  }

  private check(spec: InstanceSpec, region: string): void {
    const problem = specProblem({ region, tier: spec.tier });
    if (problem) throw new ProvisionError('INVALID_CONFIG', problem);
  }

  /**
   * Creates the workspace's machine. A machine of its name that is this workspace's already (an earlier attempt)
   * comes back as `existing`, to be brought to the spec instead.
   */
  private async create(
    run: Run,
    region: string,
    config: FlyMachineConfig,
    provisionId: string,
    secretsVersion: number | undefined,
  ): Promise<{ machine: FlyMachine; adopted: boolean; attempts: number } | { existing: FlyMachine }> {
    const { client, app, logger } = this.ctx;
    const { spec } = run;
    const name = machineName(spec.workspaceId);
    const req = { name, region, config, ...(secretsVersion !== undefined ? { min_secrets_version: secretsVersion } : {}) };
    for (let nameTries = 0; ; nameTries++) {
      try {
        return await client.create(req, { [META.workspaceId]: spec.workspaceId, [META.provisionId]: provisionId });
      } catch (e) {
        if (!(e instanceof FlyApiError && e.status === 409 && /already.exists|unique machine name/i.test(e.message))) throw toProvisionError(e, app, region, spec.image);
        const existing = await client.findByMetadata({ [META.workspaceId]: spec.workspaceId });
        if (existing) {
          logger.info({ workspace_id: spec.workspaceId, machine_id: existing.id }, 'fly: a machine for this workspace exists already; adopting it');
          spec.progress?.('machine adopted', { machine_id: existing.id, region: existing.region, state: existing.state, instance_version: existing.instance_id });
          return { existing };
        }
        // The name is held by a machine being destroyed (or by someone else's machine): give it a moment.
        if (nameTries < 10 && Date.now() < run.deadline) {
          await sleep(1000);
          continue;
        }
        throw new ProvisionError('INVALID_CONFIG', `the machine name ${name} is taken in Fly app ${app} by a machine that is not this workspace's: ${e.message}`);
      }
    }
  }

  private async bootCreated(machine: FlyMachine, run: Run): Promise<InstanceHandle> {
    const end = this.watch.begin(machine.id);
    try {
      return await this.startedHandle(machine.id, machine.instance_id, run, true);
    } catch (e) {
      // Nothing will use a machine that never started: do not leave it behind.
      this.ctx.logger.warn({ machine_id: machine.id, err: (e as Error).message }, 'fly: machine did not start; destroying it');
      await this.teardown.destroy(machine.id).catch((d) => this.ctx.logger.warn({ machine_id: machine.id, err: (d as Error).message }, 'fly: destroying the failed machine failed'));
      throw e;
    } finally {
      end();
    }
  }

  /**
   * Brings an existing machine to "running what the spec says": update its config when image/env/guest changed
   * (Fly boots the new version), else start it when it is not running, or restart it when asked to.
   */
  private async converge(found: FlyMachine, run: Run, writtenSecretsVersion?: number): Promise<InstanceHandle> {
    const secretsVersion = writtenSecretsVersion ?? (await this.secrets.write(run.spec, found.region));
    this.watch.disarm(found.id);
    const end = this.watch.begin(found.id);
    try {
      const m = await this.settle(found, run.deadline);
      const plan = this.planFor(m, run.spec, secretsVersion);
      const version = await this.applyUnderLease(m, plan, run);
      // Not `failed` right after starting a failed machine as it was: that answer could be about the old attempt.
      if (version !== null) return await this.startedHandle(m.id, version, run, !(plan.wasFailed && !plan.changes.length));
    } finally {
      end();
    }
    this.watch.disarm(found.id);
    run.spec.progress?.('machine gone; creating a new one', { old_machine_id: found.id });
    return this.start(run.spec);
  }

  /** Mid-transition (stopping, replacing, restarting …): lets it settle before acting on it. */
  private async settle(m: FlyMachine, deadline: number): Promise<FlyMachine> {
    if (SETTLED.includes(m.state)) return m;
    const { client } = this.ctx;
    await client.waitFor(m.id, { states: ['settled'], deadline: Math.min(deadline, Date.now() + 60_000) }).catch(() => undefined);
    return (await client.find(m.id)) ?? m;
  }

  private planFor(m: FlyMachine, spec: InstanceSpec, secretsVersion: number | undefined): Plan {
    const wanted = this.configFor(spec, newProvisionId());
    const current = m.config ?? m.incomplete_config ?? null;
    const changes = configChanges(current, wanted);
    // New secret values (every launch mints new tokens) reach a machine only when a new version boots.
    if (secretsVersion !== undefined && !changes.length) changes.push('secrets');
    return { wanted, current, changes, running: RUNNING_LIKE.includes(m.state), wasFailed: m.state === 'failed', secretsVersion };
  }

  /** Updates, starts or restarts the machine under its lease. Returns the version to wait for; null when it is gone. */
  private async applyUnderLease(m: FlyMachine, plan: Plan, run: Run): Promise<string | null> {
    try {
      return await this.ctx.client.withLease(m.id, `molecule: ${run.mode}`, (nonce, lease) => this.apply(m, plan, run, nonce, lease), 60);
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return null;
      throw toProvisionError(e, this.ctx.app, m.region, run.spec.image);
    }
  }

  private async apply(m: FlyMachine, plan: Plan, run: Run, nonce: string, lease: FlyLease): Promise<string> {
    const { client } = this.ctx;
    const progress = (step: string, data: Record<string, unknown>) => run.spec.progress?.(step, { machine_id: m.id, ...data, elapsed_ms: Date.now() - run.t0 });
    if (plan.changes.length) {
      // Conditional on the version the lease saw: a lost answer is then recognised, never sent twice.
      const updated = await client.update(
        m.id,
        {
          config: { ...(plan.current ?? {}), ...plan.wanted },
          ...(lease.version ? { current_version: lease.version } : {}),
          ...(plan.secretsVersion !== undefined ? { min_secrets_version: plan.secretsVersion } : {}),
        },
        nonce,
      );
      progress('machine config updated', { changed: plan.changes, instance_version: updated.instance_id });
      // An update leaves a machine that was not running stopped.
      if (!plan.running) await this.startUnderLease(m, nonce, updated.instance_id, run);
      return updated.instance_id;
    }
    if (m.state === 'started' && run.mode === 'restart') {
      await client.restart(m.id, { nonce });
      progress('machine restarting', { instance_version: m.instance_id });
    } else if (!plan.running) {
      await this.startUnderLease(m, nonce, m.instance_id, run);
    }
    return m.instance_id;
  }

  private async startUnderLease(m: FlyMachine, nonce: string, version: string, run: Run): Promise<void> {
    await this.ctx.client.start(m.id, { nonce, transientDeadlineMs: Math.max(5000, Math.min(60_000, run.deadline - Date.now())) });
    run.spec.progress?.('machine starting', { machine_id: m.id, instance_version: version, previous_state: m.state, elapsed_ms: Date.now() - run.t0 });
  }

  /** Waits for `started`, reports it in the timeline and arms the watch: from now on a stop is news. */
  private async startedHandle(id: string, version: string, run: Run, orFailed: boolean): Promise<InstanceHandle> {
    const started = await this.waitStarted(id, version, run, orFailed);
    run.spec.progress?.('machine started', startedFacts(started, run.t0));
    this.watch.arm(id, run.spec.workspaceId);
    return this.handleFor(started);
  }

  /** Waits for `started` (or `failed`) of one version until the deadline; failures become ProvisionErrors. */
  private async waitStarted(id: string, version: string, run: Run, orFailed: boolean): Promise<FlyMachine> {
    const { client } = this.ctx;
    const { image, signal } = run.spec;
    try {
      const r = await client.waitFor(id, {
        states: orFailed ? ['started', 'failed'] : ['started'],
        version,
        deadline: run.deadline,
        signal,
        // Between slices, look: a machine that failed/stopped will not start by waiting longer.
        onSlice: async () => {
          const m = await client.find(id).catch(() => undefined);
          if (m === null) throw new ProvisionError('START_FAILED', `machine ${id} was destroyed while starting`);
          if (m && (m.state === 'failed' || m.state === 'stopped')) throw bootFailure(m, image);
        },
      });
      const m = await client.get(id);
      if (r.state === 'failed' || m.state === 'failed') throw bootFailure(m, image);
      return m;
    } catch (e) {
      if (!(e instanceof FlyApiError)) throw toProvisionError(e, this.ctx.app);
      return this.afterFailedWait(id, image, e);
    }
  }

  /** The wait failed: the machine itself says whether it started after all, failed, or we cannot tell. */
  private async afterFailedWait(id: string, image: string, e: FlyApiError): Promise<FlyMachine> {
    const m = await this.ctx.client.find(id).catch(() => undefined);
    if (m === null) throw new ProvisionError('START_FAILED', `machine ${id} disappeared while starting`);
    if (m && m.state === 'started') return m;
    if (m && ['failed', 'stopped'].includes(m.state)) throw bootFailure(m, image);
    const state = m?.state ?? 'unknown';
    if (e.status === 408) {
      throw new ProvisionError('START_FAILED', `machine ${id} did not reach started within ${Math.round(this.ctx.timings.startTimeoutMs / 1000)} s (it is ${state})`);
    }
    if (e.retryable) throw new ProvisionError('BACKEND_UNAVAILABLE', `Fly Machines API unavailable while waiting for machine ${id} to start: ${e.message}`, true);
    throw new ProvisionError('START_FAILED', `waiting for machine ${id} to start failed (it is ${state}): ${e.message}`);
  }
}
