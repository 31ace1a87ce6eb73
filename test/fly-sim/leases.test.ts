import { describe, expect, it } from 'vitest';
import { ManualClock, type FlySim } from '../../tools/fly-sim/index.js';
import { createMachine, IMAGE, machinePaths, until, withTestSim, type Api } from './helpers.js';

let sim: FlySim;
let api: Api;
let clock: ManualClock;
const APP = 'leases';
const M = machinePaths(APP);
const NONCE = 'fly-machine-lease-nonce';

withTestSim(
  (s, a) => {
    sim = s;
    api = a;
  },
  () => {
    clock = new ManualClock(Date.UTC(2026, 2, 1, 12, 0, 0));
    return { clock, leaseOwner: 'me@example.com' };
  },
);

describe('leases (reference §3.4, §6)', () => {
  it('acquire → 201 envelope; someone else → 409 envelope; refresh keeps the nonce', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const a = await api.post(M(m.id, '/lease'), { ttl: 60, description: 'deploy' });
    expect(a.status).toBe(201);
    expect(a.body.status).toBe('success');
    expect(a.body.data).toEqual({
      nonce: expect.stringMatching(/^[0-9a-f]{12}$/),
      expires_at: Math.floor(clock.now() / 1000) + 60,
      owner: 'me@example.com',
      description: 'deploy',
      version: m.version,
    });
    const nonce = a.body.data.nonce;
    const iso = new Date(Math.floor(clock.now() / 1000) * 1000 + 60_000).toISOString(); // e.g. 2026-03-01T12:01:00.000Z
    const goTime = `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC`;
    const other = await api.post(M(m.id, '/lease'), { ttl: 60 });
    expect(other.status).toBe(409);
    expect(other.body).toEqual({
      status: 'error',
      message: `machine ID ${m.id} lease currently held by me@example.com, expires at ${goTime}`,
      code: 'invalid',
    });
    clock.advance(30_000);
    const refresh = await api.post(M(m.id, '/lease'), { ttl: 60 }, { [NONCE]: nonce });
    expect(refresh.status).toBe(201);
    expect(refresh.body.data.nonce).toBe(nonce);
    expect(refresh.body.data.expires_at).toBe(Math.floor(clock.now() / 1000) + 60);
    const shown = await api.get(M(m.id, '/lease'));
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual(refresh.body);
  });

  it('takes ?ttl= without a body (fly-go) and answers 404 when there is no lease', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const none = await api.get(M(m.id, '/lease'));
    expect(none.status).toBe(404);
    expect(none.body).toMatchObject({ status: 'error', message: 'lease not found' });
    const a = await api.post(M(m.id, '/lease?ttl=5'));
    expect(a.status).toBe(201);
    expect(a.body.data.expires_at).toBe(Math.floor(clock.now() / 1000) + 5);
    const bad = await api.post(M(m.id, '/lease'), { ttl: 'soon' });
    expect(bad.status).toBe(400);
    expect(bad.body.status).toBe('error');
  });

  it('requires the nonce on mutations of a leased machine (409 otherwise), not on reads', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const nonce = (await api.post(M(m.id, '/lease'), { ttl: 120 })).body.data.nonce;
    const held = `machine ID ${m.id} lease currently held by me@example.com`;
    const attempts: Array<[string, () => Promise<any>]> = [
      ['start', () => api.post(M(m.id, '/start'))],
      ['stop', () => api.post(M(m.id, '/stop'))],
      ['update', () => api.post(M(m.id), { config: { image: IMAGE } })],
      ['restart', () => api.post(M(m.id, '/restart'))],
      ['suspend', () => api.post(M(m.id, '/suspend'))],
      ['cordon', () => api.post(M(m.id, '/cordon'))],
      ['destroy', () => api.del(M(m.id))],
    ];
    for (const [what, call] of attempts) {
      const r = await call();
      expect(r.status, what).toBe(409);
      expect(r.body.error, what).toContain(held);
      expect(r.body.error, what).toContain('fly-machine-lease-nonce');
    }
    const wrong = await api.post(M(m.id, '/cordon'), undefined, { [NONCE]: '000000000000' });
    expect(wrong.status).toBe(409);
    expect((await api.get(M(m.id))).status).toBe(200);
    expect((await api.post(M(m.id, '/cordon'), undefined, { [NONCE]: nonce })).status).toBe(200);
    expect((await api.post(M(m.id, '/stop'), undefined, { [NONCE]: nonce })).status).toBe(200);
    expect((await api.del(M(m.id), { [NONCE]: nonce })).status).toBe(200);
  });

  it('release needs the nonce; after release the machine is free', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const nonce = (await api.post(M(m.id, '/lease'), { ttl: 60 })).body.data.nonce;
    const missing = await api.del(M(m.id, '/lease'));
    expect(missing.status).toBe(400);
    expect(missing.body.status).toBe('error');
    const wrong = await api.del(M(m.id, '/lease'), { [NONCE]: 'abcdefabcdef' });
    expect(wrong.status).toBe(409);
    const rel = await api.del(M(m.id, '/lease'), { [NONCE]: nonce });
    expect(rel.status).toBe(200);
    expect(rel.body).toEqual({ status: 'success', data: { ok: true } });
    expect((await api.get(M(m.id, '/lease'))).status).toBe(404);
    expect((await api.del(M(m.id, '/lease'), { [NONCE]: nonce })).body.message).toBe('lease not found');
    expect((await api.post(M(m.id, '/cordon'))).status).toBe(200);
  });

  it('expires after its TTL on the simulator clock', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const nonce = (await api.post(M(m.id, '/lease'), { ttl: 10 })).body.data.nonce;
    clock.advance(9_000);
    expect((await api.post(M(m.id, '/cordon'))).status).toBe(409);
    clock.advance(1_000);
    expect((await api.get(M(m.id, '/lease'))).status).toBe(404);
    expect((await api.post(M(m.id, '/cordon'))).status).toBe(200);
    // releasing an expired lease: "lease not found"
    const rel = await api.del(M(m.id, '/lease'), { [NONCE]: nonce });
    expect(rel.status).toBe(404);
    expect(rel.body.message).toBe('lease not found');
    // a new lease by someone else is possible now
    expect((await api.post(M(m.id, '/lease'), { ttl: 10 })).status).toBe(201);
  });

  it('create and update with lease_ttl return the nonce in Machine.nonce', async () => {
    const r = await api.post(`/v1/apps/${APP}/machines`, { config: { image: IMAGE }, skip_launch: true, lease_ttl: 30 });
    expect(r.status).toBe(200);
    expect(r.body.nonce).toMatch(/^[0-9a-f]{12}$/);
    expect((await api.get(M(r.body.id))).body.nonce).toBeUndefined();
    const lease = await api.get(M(r.body.id, '/lease'));
    expect(lease.body.data.nonce).toBe(r.body.nonce);
    const u = await api.post(M(r.body.id), { config: { image: IMAGE }, skip_launch: true, lease_ttl: 30 }, { [NONCE]: r.body.nonce });
    expect(u.status).toBe(200);
    expect(u.body.nonce).toBe(r.body.nonce);
  });
});

describe('the injectable clock drives timestamps and windows', () => {
  it('stamps events and created_at with the simulator clock', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    expect(m.events[0].timestamp).toBe(clock.now());
    expect(m.created_at).toBe(new Date(Math.floor(clock.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z'));
  });

  it('times out a wait only when the clock passes the deadline', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    let settled = false;
    const pending = api.get(M(m.id, '/wait?state=started&timeout=5')).then((r) => {
      settled = true;
      return r;
    });
    // the wait is registered once the request reached the simulator (real time is not the simulator's time)
    const record = sim.engine.machineById(m.id)!;
    await until(() => record.waiters.size === 1, 'the wait to be registered');
    clock.advance(4_000);
    expect(record.waiters.size).toBe(1); // timers run synchronously inside advance(): not timed out yet
    expect(settled).toBe(false);
    clock.advance(1_000);
    expect(record.waiters.size).toBe(0);
    const r = await pending;
    expect(r.status).toBe(408);
    expect(r.body.error).toBe('deadline_exceeded: machine failed to reach desired state, started, currently created');
  });
});
