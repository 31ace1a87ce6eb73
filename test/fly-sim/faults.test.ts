import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock, startFlySim, type FlySim } from '../../tools/fly-sim/index.js';
import { client, createMachine, fixtureCommand, IMAGE, SERVICES, waitFor, withTestSim, type Api } from './helpers.js';

describe('rate limits (reference §7)', () => {
  let sim: FlySim;
  let api: Api;
  let clock: ManualClock;
  beforeAll(async () => {
    clock = new ManualClock();
    // startFlySim's default: rate limits on
    sim = await startFlySim({ clock, agentCommand: fixtureCommand });
    api = client(sim);
  });
  afterAll(async () => {
    await sim?.close();
  });

  it('get machine: bursts to 10, then 429; 5 more per second', async () => {
    const m = await createMachine(api, 'rl', { skip_launch: true });
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) codes.push((await api.get(`/v1/apps/rl/machines/${m.id}`)).status);
    expect(codes).toEqual([...Array(10).fill(200), 429]);
    const r = await api.get(`/v1/apps/rl/machines/${m.id}`);
    expect(r.body).toEqual({ error: 'rate limit exceeded' });
    clock.advance(1000);
    const next: number[] = [];
    for (let i = 0; i < 6; i++) next.push((await api.get(`/v1/apps/rl/machines/${m.id}`)).status);
    expect(next).toEqual([200, 200, 200, 200, 200, 429]);
  });

  it('actions: 1/s with bursts of 3, per action and per machine', async () => {
    const a = await createMachine(api, 'rl2', { skip_launch: true });
    const b = await createMachine(api, 'rl2', { skip_launch: true });
    const cordon = async (id: string) => (await api.post(`/v1/apps/rl2/machines/${id}/cordon`)).status;
    expect([await cordon(a.id), await cordon(a.id), await cordon(a.id), await cordon(a.id)]).toEqual([200, 200, 200, 429]);
    expect(await cordon(b.id)).toBe(200); // another machine has its own bucket
    expect((await api.post(`/v1/apps/rl2/machines/${a.id}/uncordon`)).status).toBe(200); // another action too
    clock.advance(1000);
    expect([await cordon(a.id), await cordon(a.id)]).toEqual([200, 429]);
  });

  it('app-level actions (create, list) are limited per app', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await api.post('/v1/apps/rl3/machines', { config: { image: IMAGE }, skip_launch: true })).status);
    expect(codes).toEqual([200, 200, 200, 429]);
    expect((await api.post('/v1/apps/rl4/machines', { config: { image: IMAGE }, skip_launch: true })).status).toBe(200);
  });

  it('can be switched off and on (programmatically and over HTTP)', async () => {
    const m = await createMachine(api, 'rl5', { skip_launch: true });
    sim.setRateLimits(false);
    for (let i = 0; i < 30; i++) expect((await api.get(`/v1/apps/rl5/machines/${m.id}`)).status).toBe(200);
    const on = await api.req('PATCH', '/__sim/settings', { rateLimits: true });
    expect(on.body.rateLimits).toBe(true);
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) codes.push((await api.get(`/v1/apps/rl5/machines/${m.id}`)).status);
    expect(codes.at(-1)).toBe(429);
    expect((await api.req('PATCH', '/__sim/settings', { rateLimits: 'maybe' })).status).toBe(400);
  });
});

describe('fault injection', () => {
  let sim: FlySim;
  let api: Api;
  withTestSim((s, a) => ([sim, api] = [s, a]));
  beforeEach(() => {
    sim.faults.clear();
    sim.faults.slowBoot(0);
  });

  it('N 429s in a row on an action, then normal answers', async () => {
    const m = await createMachine(api, 'f', { skip_launch: true });
    sim.faults.rateLimit('get', 2);
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push(await api.get(`/v1/apps/f/machines/${m.id}`));
    expect(codes.map((c) => c.status)).toEqual([429, 429, 200]);
    expect(codes[0].body).toEqual({ error: 'rate limit exceeded' });
    // other actions were not affected
    sim.faults.rateLimit('start', 1, { machine: '0123456789abcd' });
    expect((await api.post(`/v1/apps/f/machines/${m.id}/start`)).status).toBe(200);
    sim.faults.clear();
  });

  it('N 5xx on a route: 500 and 503 as JSON, 502 as a non-JSON body', async () => {
    sim.faults.serverError('list', 1, 500);
    sim.faults.serverError('list', 1, 502);
    sim.faults.serverError('list', 1, 503);
    const a = await api.get('/v1/apps/f/machines');
    const b = await api.get('/v1/apps/f/machines');
    const c = await api.get('/v1/apps/f/machines');
    const d = await api.get('/v1/apps/f/machines');
    expect([a.status, b.status, c.status, d.status]).toEqual([500, 502, 503, 200]);
    expect(typeof a.body.error).toBe('string');
    expect(b.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(b.text).toBe('502 Bad Gateway\n');
    expect(c.body.error).toMatch(/^unavailable: /);
    sim.faults.add({ kind: 'status', action: '*', status: 504, count: 1, error: 'custom text' });
    const e = await api.get('/v1/platform/regions');
    expect(e.status).toBe(504);
    expect(e.body).toEqual({ error: 'custom text' });
  });

  it('a 408 on create that still creates (and boots) the machine', async () => {
    sim.faults.createTimeout(1);
    const r = await api.post('/v1/apps/ambiguous/machines', { config: { image: IMAGE, metadata: { provision_id: 'p-1' } } });
    expect(r.status).toBe(408);
    expect(r.body.error).toMatch(/^deadline_exceeded/);
    const found = await api.get('/v1/apps/ambiguous/machines?metadata.provision_id=p-1');
    expect(found.body).toHaveLength(1);
    expect((await waitFor(api, 'ambiguous', found.body[0].id, 'started')).status).toBe(200);
    // the fault fired once
    expect((await api.post('/v1/apps/ambiguous/machines', { config: { image: IMAGE }, skip_launch: true })).status).toBe(200);
  });

  it('503 insufficient_capacity for one region until cleared', async () => {
    const id = sim.faults.insufficientCapacity('syd');
    for (let i = 0; i < 2; i++) {
      const r = await api.post('/v1/apps/cap/machines', { config: { image: IMAGE }, region: 'syd', skip_launch: true });
      expect(r.status).toBe(503);
      expect(r.body.status).toBe('insufficient_capacity');
      expect(r.body.error).toContain('syd');
    }
    expect((await api.post('/v1/apps/cap/machines', { config: { image: IMAGE }, region: 'nrt', skip_launch: true })).status).toBe(200);
    expect((await api.get('/v1/apps/cap/machines?region=syd')).body).toEqual([]); // nothing was created
    sim.faults.clear(id);
    expect((await api.post('/v1/apps/cap/machines', { config: { image: IMAGE }, region: 'syd', skip_launch: true })).status).toBe(200);
  });

  it('409 insufficient memory on create, update and start', async () => {
    sim.faults.insufficientMemory('create', 1);
    const c = await api.post('/v1/apps/mem/machines', { config: { image: IMAGE }, skip_launch: true });
    expect(c.status).toBe(409);
    expect(c.body.error).toContain('insufficient memory');
    const m = await createMachine(api, 'mem', { skip_launch: true });
    sim.faults.insufficientMemory('update', 1, { machine: m.id });
    const u = await api.post(`/v1/apps/mem/machines/${m.id}`, { config: { image: IMAGE } });
    expect(u.status).toBe(409);
    expect(u.body.error).toContain('insufficient memory');
    expect((await api.get(`/v1/apps/mem/machines/${m.id}`)).body.version).toBe(m.version); // nothing changed
    sim.faults.insufficientMemory('start', 1);
    const s = await api.post(`/v1/apps/mem/machines/${m.id}/start`);
    expect(s.status).toBe(409);
    expect((await api.post(`/v1/apps/mem/machines/${m.id}/start`)).status).toBe(200);
  });

  it('an unpullable image: wait for started gives 408, then the machine is failed with an explaining event', async () => {
    const m = await createMachine(api, 'pull', { config: { image: 'registry.fly.io/some-app/unpullable:v1', services: SERVICES } });
    const w = await api.get(`/v1/apps/pull/machines/${m.id}/wait?state=started&timeout=1`);
    expect(w.status).toBe(408);
    expect(w.body.error).toBe('deadline_exceeded: machine failed to reach desired state, started, currently failed');
    const g = (await api.get(`/v1/apps/pull/machines/${m.id}`)).body;
    expect(g.state).toBe('failed');
    expect(g.events[0]).toMatchObject({ type: 'launch', status: 'failed', source: 'flyd' });
    expect(g.events[0].request.error).toMatch(/^failed to pull image registry\.fly\.io\/some-app\/unpullable:v1: /);
    expect((await api.get(`/v1/apps/pull/machines/${m.id}/wait?state=failed&timeout=1`)).status).toBe(200);
    // failed machines can be started (they fail again) and destroyed without force
    expect((await api.post(`/v1/apps/pull/machines/${m.id}/start`)).body.previous_state).toBe('failed');
    expect((await api.get(`/v1/apps/pull/machines/${m.id}/wait?state=failed&timeout=5`)).status).toBe(200);
    expect((await api.del(`/v1/apps/pull/machines/${m.id}`)).status).toBe(200);
  });

  it('unpullable by fault for a given image, and unknown images are unpullable too', async () => {
    sim.faults.unpullable('ghcr.io/molecule-ai/workspace-broken');
    const a = await createMachine(api, 'pull', { config: { image: 'ghcr.io/molecule-ai/workspace-broken:latest' } });
    expect((await api.get(`/v1/apps/pull/machines/${a.id}/wait?state=failed&timeout=5`)).status).toBe(200);
    const b = await createMachine(api, 'pull', { config: { image: 'docker.io/library/nginx:1' } });
    expect((await api.get(`/v1/apps/pull/machines/${b.id}/wait?state=failed&timeout=5`)).status).toBe(200);
    const c = await createMachine(api, 'pull', { config: { image: IMAGE } });
    expect((await waitFor(api, 'pull', c.id, 'started')).status).toBe(200);
  });

  it('slow boots keep the machine in starting', async () => {
    sim.faults.slowBoot(5000);
    try {
      const m = await createMachine(api, 'slow', { config: { image: IMAGE } });
      const early = await api.get(`/v1/apps/slow/machines/${m.id}/wait?state=started&timeout=1`);
      expect(early.status).toBe(408);
      expect(early.body.error).toBe('deadline_exceeded: machine failed to reach desired state, started, currently starting');
      expect((await waitFor(api, 'slow', m.id, 'started')).status).toBe(200);
    } finally {
      sim.faults.slowBoot(0);
    }
  });

  it('over HTTP: POST/GET/DELETE /__sim/faults (token required), 400 for a bad fault', async () => {
    expect((await client(sim, null).post('/__sim/faults', { kind: 'rate_limit', action: 'list', count: 1 })).status).toBe(401);
    const add = await api.post('/__sim/faults', [
      { kind: 'rate_limit', action: 'list', count: 1 },
      { kind: 'server_error', action: 'regions', status: 502, count: 1 },
    ]);
    expect(add.status).toBe(201);
    expect(add.body.ids).toHaveLength(2);
    expect((await api.get('/__sim/faults')).body).toHaveLength(2);
    expect((await api.get('/v1/apps/x/machines')).status).toBe(429);
    expect((await api.get('/v1/apps/x/machines')).status).toBe(200);
    expect((await api.del('/__sim/faults')).status).toBe(200);
    expect((await api.get('/v1/platform/regions')).status).toBe(200);
    const bad = await api.post('/__sim/faults', { kind: 'meteor' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/unknown fault kind "meteor"/);
    expect((await api.post('/__sim/faults', { kind: 'status', action: 'nope', status: 500 })).status).toBe(400);
    const slow = await api.post('/__sim/faults', { kind: 'slow_boot', ms: 5 });
    expect(slow.status).toBe(201);
    expect(sim.timing.slowBootMs).toBe(5);
    sim.faults.slowBoot(0);
  });
});
