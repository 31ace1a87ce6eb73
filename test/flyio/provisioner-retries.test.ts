import { afterEach, describe, expect, it } from 'vitest';
import { ProvisionError } from '../../src/core/provisioner.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { waitFor } from '../support/harness.js';
import { simWithProvisioners, spec } from './support.js';

/** The Fly provisioner when answers are lost or slow: no mutation sent twice, and failures named for what they are. */
describe('Fly provisioner: lost answers and slow destroys', () => {
  let sim: FlySim;
  const make = simWithProvisioners((s) => (sim = s));

  // Runs before the helper's spec check (after-hooks run last-registered first).
  afterEach(() => {
    sim.faults.clear();
    sim.timing.slowDestroyMs = 0;
  });

  it('restart with a changed config whose update answer was lost after it applied: one update, and the machine runs it', async () => {
    const s = make();
    const sp = spec();
    const h = await s.p.start(sp);
    sim.faults.lostResponse('update', 1, 503, { machine: h.instanceId });
    const r = await s.p.restart(h.instanceId, { ...sp, env: { ...sp.env, NEW_KEY: 'x' } });
    expect(sim.requests({ app: s.app, action: 'update' }).map((x) => x.status)).toEqual([503]);
    expect(sim.machine(h.instanceId)).toMatchObject({ state: 'started', env: expect.objectContaining({ NEW_KEY: 'x' }) });
    expect(r.details.instance_version).toBe(sim.machine(h.instanceId)!.version);
    // The update was conditional on the version the lease saw.
    const sent = s.recorded.filter((x) => x.method === 'POST' && x.path.endsWith(`/machines/${h.instanceId}`));
    expect(sent.map((x) => (x.body as { current_version?: string }).current_version)).toEqual([h.details.instance_version]);
    await s.p.destroy(h.instanceId);
  });

  it('restart whose update was refused with a 500: not resent; a retryable BACKEND_UNAVAILABLE, the machine untouched', async () => {
    const s = make();
    const sp = spec();
    const h = await s.p.start(sp);
    sim.faults.serverError('update', 1, 500, { machine: h.instanceId });
    const e = await s.p.restart(h.instanceId, { ...sp, env: { ...sp.env, NEW_KEY: 'y' } }).catch((x) => x);
    expect(e).toBeInstanceOf(ProvisionError);
    expect(e).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
    expect(sim.requests({ app: s.app, action: 'update' }).map((x) => x.status)).toEqual([500]);
    expect(sim.machine(h.instanceId)).toMatchObject({ state: 'started', version: h.details.instance_version, leased: false });
    // Asked again (as the platform does after a retryable failure), it converges.
    await s.p.restart(h.instanceId, { ...sp, env: { ...sp.env, NEW_KEY: 'y' } });
    expect(sim.machine(h.instanceId)!.env.NEW_KEY).toBe('y');
    await s.p.destroy(h.instanceId);
  });

  it('a destroy that does not finish in time is DESTROY_FAILED (retryable), not START_FAILED', async () => {
    const s = make({ destroyTimeoutMs: 1000 });
    const h = await s.p.start(spec());
    sim.timing.slowDestroyMs = 4000;
    const e = await s.p.destroy(h.instanceId).catch((x) => x);
    expect(e).toBeInstanceOf(ProvisionError);
    expect(e).toMatchObject({ code: 'DESTROY_FAILED', retryable: true });
    expect(e.message).toMatch(/still destroying/);
    sim.timing.slowDestroyMs = 0;
    await waitFor('destroyed', async () => sim.machine(h.instanceId)?.state !== 'destroying', 10_000);
    await s.p.destroy(h.instanceId); // gone now: success
  });
});
