import { describe, expect, it } from 'vitest';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { createMachine, until, withTestSim, type Api } from './helpers.js';

/** Faults for a client's retry rules: answers lost after the change happened, list order, slow destroys. */
describe('fault injection: lost answers, list order, slow destroy', () => {
  let sim: FlySim;
  let api: Api;
  withTestSim((s, a) => ([sim, api] = [s, a]));

  it('lost_response: the request is carried out, then answers the failure', async () => {
    const m = await createMachine(api, 'lost', { skip_launch: true });
    sim.faults.lostResponse('lease_acquire', 1, 503, { machine: m.id });
    const r = await api.post(`/v1/apps/lost/machines/${m.id}/lease`, { ttl: 30, description: 'mine' });
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ error: expect.stringMatching(/unavailable/) });
    // … but the lease was taken.
    const held = await api.get(`/v1/apps/lost/machines/${m.id}/lease`);
    expect(held.status).toBe(200);
    expect(held.body.data).toMatchObject({ nonce: expect.stringMatching(/^[0-9a-f]{12}$/), description: 'mine' });
    expect(sim.requests({ action: 'lease_acquire', machineId: m.id }).map((x) => x.status)).toEqual([503]);
    // One firing only; over HTTP it validates like every fault.
    expect((await api.del(`/v1/apps/lost/machines/${m.id}/lease`, { 'fly-machine-lease-nonce': held.body.data.nonce })).status).toBe(200);
    expect((await api.post('/__sim/faults', { kind: 'lost_response', action: 'update', status: 418 })).status).toBe(400);
    const ok = await api.post('/__sim/faults', { kind: 'lost_response', action: 'update', status: 408, machine: m.id });
    expect(ok.status).toBe(201);
    const u = await api.post(`/v1/apps/lost/machines/${m.id}`, { config: { image: m.config.image, env: { A: '1' } }, skip_launch: true });
    expect(u.status).toBe(408);
    expect((await api.get(`/v1/apps/lost/machines/${m.id}`)).body.config.env).toEqual({ A: '1' });
  });

  it('list_order: newest first until cleared', async () => {
    const a = await createMachine(api, 'order', { skip_launch: true });
    const b = await createMachine(api, 'order', { skip_launch: true });
    const ids = async () => ((await api.get('/v1/apps/order/machines')).body as { id: string }[]).map((m) => m.id);
    expect(await ids()).toEqual([a.id, b.id]);
    const id = sim.faults.add({ kind: 'list_order', order: 'newest_first', app: 'order' });
    expect(await ids()).toEqual([b.id, a.id]);
    expect(await ids()).toEqual([b.id, a.id]);
    sim.faults.clear(id);
    expect(await ids()).toEqual([a.id, b.id]);
  });

  it('timing.slowDestroyMs keeps a destroyed machine in destroying that long', async () => {
    const m = await createMachine(api, 'slowdestroy', { skip_launch: true });
    sim.timing.slowDestroyMs = 400;
    try {
      const t0 = Date.now();
      expect((await api.del(`/v1/apps/slowdestroy/machines/${m.id}?force=true`)).status).toBe(200);
      expect(sim.machine(m.id)!.state).toBe('destroying');
      await until(() => sim.machine(m.id)?.state === 'destroyed', 'destroyed', 5000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    } finally {
      sim.timing.slowDestroyMs = 0;
    }
  });
});
