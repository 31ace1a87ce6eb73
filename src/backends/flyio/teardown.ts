import { ProvisionError } from '../../core/provisioner.js';
import { FlyApiError, type FlyMachine } from './client/index.js';
import type { FlyContext } from './context.js';
import { toProvisionError } from './provision-errors.js';
import type { MachineWatch } from './watch.js';

const STOP_LIKE = new Set(['stopping', 'stopped', 'suspending', 'suspended']);
/** Fly refuses to stop a machine in these: it settles first. */
const MID_TRANSITION = ['replacing', 'restarting', 'updating', 'suspending'];
/** Nothing to stop. */
const DOWN = ['destroying', 'stopped', 'failed', 'suspended'];

/** Fly snapshots machines of at most this much memory on suspend (and stops larger ones). */
const SUSPEND_MAX_MEMORY_MB = 2048;

/** Stopping and destroying machines. Both are idempotent: a machine that is gone already is a success. */
export class MachineTeardown {
  constructor(
    private readonly ctx: FlyContext,
    private readonly watch: MachineWatch,
  ) {}

  async stop(instanceId: string): Promise<void> {
    this.watch.disarm(instanceId);
    const end = this.watch.begin(instanceId);
    try {
      const m = await this.settled(instanceId);
      if (!m || DOWN.includes(m.state)) return;
      await this.ctx.client.withLease(instanceId, 'molecule: stop', (nonce, lease) => this.stopUnderLease(m, nonce, m.instance_id || lease.version), 60);
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return;
      throw toProvisionError(e, this.ctx.app);
    } finally {
      end();
    }
  }

  /**
   * Sleep (core/idle.ts): suspend where Fly can snapshot the machine — at most 2 GB of memory, no GPU, no schedule
   * (reference: fly-machines-api.md, suspend) — else stop. Resolves once it is down.
   */
  async suspend(instanceId: string): Promise<'suspended' | 'stopped'> {
    const m = await this.settled(instanceId);
    if (!m || DOWN.includes(m.state)) return m?.state === 'suspended' ? 'suspended' : 'stopped';
    const guest = m.config?.guest;
    if (m.state !== 'started' || (guest?.memory_mb ?? 256) > SUSPEND_MAX_MEMORY_MB || guest?.gpus || m.config?.schedule) {
      await this.stop(instanceId);
      return 'stopped';
    }
    this.watch.disarm(instanceId);
    const end = this.watch.begin(instanceId);
    try {
      const { client, timings } = this.ctx;
      await client.withLease(
        instanceId,
        'molecule: suspend',
        async (nonce) => {
          await client.suspend(instanceId, nonce);
          await client.waitFor(instanceId, { states: ['suspended'], version: m.instance_id, deadline: Date.now() + timings.stopTimeoutMs }).catch(async (e) => {
            const now = await client.find(instanceId);
            if (!now || STOP_LIKE.has(now.state)) return;
            throw e;
          });
        },
        60,
      );
      const now = await this.ctx.client.find(instanceId);
      return now?.state === 'suspended' ? 'suspended' : 'stopped';
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return 'stopped';
      throw toProvisionError(e, this.ctx.app);
    } finally {
      end();
    }
  }

  async destroy(instanceId: string): Promise<void> {
    this.watch.disarm(instanceId);
    const end = this.watch.begin(instanceId);
    try {
      if (!(await this.destroyForced(instanceId))) return;
      await this.waitDestroyed(instanceId);
    } catch (e) {
      throw toProvisionError(e, this.ctx.app);
    } finally {
      end();
      this.watch.disarm(instanceId);
    }
  }

  /** The machine, once it is out of a transition Fly would refuse a stop in (null: gone). */
  private async settled(instanceId: string): Promise<FlyMachine | null> {
    const { client, timings } = this.ctx;
    const m = await client.find(instanceId).catch((e) => {
      throw toProvisionError(e, this.ctx.app);
    });
    if (!m || !MID_TRANSITION.includes(m.state)) return m;
    await client.waitFor(instanceId, { states: ['settled'], deadline: Date.now() + timings.stopTimeoutMs }).catch(() => undefined);
    return client.find(instanceId);
  }

  private async stopUnderLease(m: FlyMachine, nonce: string, version: string | undefined): Promise<void> {
    const { client, timings } = this.ctx;
    if (m.state !== 'stopping') await client.stop(m.id, { signal: 'SIGTERM', timeout: '10s' }, nonce);
    await client.waitFor(m.id, { states: ['stopped'], version, deadline: Date.now() + timings.stopTimeoutMs }).catch(async (e) => {
      // 400 when the version moved on; 404 when it was destroyed meanwhile: look instead of guessing.
      const now = await client.find(m.id);
      if (!now || STOP_LIKE.has(now.state) || now.state === 'failed') return;
      throw e;
    });
  }

  /** Returns false when there was no such machine. */
  private async destroyForced(instanceId: string): Promise<boolean> {
    const { client } = this.ctx;
    try {
      return await client.destroy(instanceId, { force: true });
    } catch (e) {
      if (!(e instanceof FlyApiError) || e.status !== 409 || !/lease/i.test(e.message)) throw e;
      // Leased (e.g. by a platform that died mid-operation): wait for the lease, then destroy with its nonce.
      return client.withLease(instanceId, 'molecule: destroy', (nonce) => client.destroy(instanceId, { force: true, nonce }), 30);
    }
  }

  private async waitDestroyed(instanceId: string): Promise<void> {
    const { client, timings } = this.ctx;
    try {
      await client.waitFor(instanceId, { states: ['destroyed'], deadline: Date.now() + timings.destroyTimeoutMs });
    } catch (e) {
      if (e instanceof FlyApiError && e.status === 404) return;
      const now = await client.find(instanceId);
      if (now) throw new ProvisionError('DESTROY_FAILED', `machine ${instanceId} is still ${now.state} after destroy: ${(e as Error).message}`, true);
    }
  }
}
