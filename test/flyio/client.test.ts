import crypto from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FlyApiError, FlyClient, flyErrorMessage } from '../../src/backends/flyio/client/index.js';
import { ClientRateLimiter } from '../../src/backends/flyio/client/index.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { flyctl, IMAGE, simForClients, specProblem } from './support.js';

/** The Machines API client against the simulator: errors, retries, limits, waits, leases, idempotent create. */
describe('Fly client', () => {
  let sim: FlySim;
  const { recorded, onRequest, newApp } = simForClients('client-test', (s) => (sim = s));
  const clientFor = (app: string, extra: Partial<ConstructorParameters<typeof FlyClient>[0]> = {}) =>
    new FlyClient({ app, token: sim.token, baseUrl: sim.url, onRequest, ...extra });
  const machineBody = (workspaceId: string, provisionId: string) => ({
    name: `ws-${workspaceId.replace(/-/g, '').slice(0, 12)}`,
    region: 'ord',
    config: {
      image: IMAGE,
      env: { WORKSPACE_ID: workspaceId, MOLECULE_AGENT_TOKEN: 't', PORT: '8000' },
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
      metadata: { molecule_workspace_id: workspaceId, molecule_provision_id: provisionId },
      services: [{ protocol: 'tcp', internal_port: 8000, autostop: 'off', autostart: false, ports: [{ port: 443, handlers: ['tls', 'http'] }] }],
      restart: { policy: 'on-failure', max_retries: 0 },
    },
  });
  const identity = (b: ReturnType<typeof machineBody>) => ({
    molecule_workspace_id: b.config.metadata.molecule_workspace_id,
    molecule_provision_id: b.config.metadata.molecule_provision_id,
  });

  it('sends the bearer token, and types errors: status, message (then error), fly-request-id, body', async () => {
    const bad = new FlyClient({ app: newApp(), token: 'wrong', baseUrl: sim.url });
    const e = await bad.list().catch((x) => x);
    expect(e).toBeInstanceOf(FlyApiError);
    expect(e).toMatchObject({ status: 401, message: 'Authenticate: token validation error' });
    expect(e.flyRequestId).toMatch(/\S+/);
    expect(e.body).toEqual({ error: 'Authenticate: token validation error' });

    const c = clientFor(newApp());
    const missing = await c.get('00000000000000').catch((x) => x);
    expect(missing).toMatchObject({ status: 404, message: 'machine not found' });
    // Lease answers use {"status":"error","message":…}: message wins over error.
    expect(flyErrorMessage(409, { status: 'error', message: 'lease currently held', error: 'x' })).toBe('lease currently held');
    expect(flyErrorMessage(502, '502 Bad Gateway\n')).toBe('502 Bad Gateway');
  });

  it('recovers transparently from 429 bursts and 5xx (including a non-JSON 502), within bounds', async () => {
    const app = newApp();
    const c = clientFor(app);
    sim.faults.rateLimit('list', 4, { app });
    expect(await c.list()).toEqual([]);
    expect(sim.requests({ app, action: 'list' }).map((r) => r.status)).toEqual([429, 429, 429, 429, 200]);

    sim.faults.serverError('list', 2, 503, { app });
    sim.faults.serverError('list', 1, 502, { app });
    expect(await c.list()).toEqual([]);
    expect(sim.requests({ app, action: 'list' }).slice(5).map((r) => r.status)).toEqual([503, 503, 502, 200]);

    // Bounded: a server that keeps failing is reported, not retried forever.
    const bounded = clientFor(app, { retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 20 } });
    const id = sim.faults.serverError('list', null as unknown as number, 500, { app });
    const before = sim.requests({ app, action: 'list' }).length;
    const e = await bounded.list().catch((x) => x);
    sim.faults.clear(id);
    expect(e).toMatchObject({ status: 500 });
    expect(e.retryable).toBe(true);
    expect(sim.requests({ app, action: 'list' }).length - before).toBe(3);
  });

  it('a create answered 408 after it happened is adopted, never duplicated', async () => {
    const app = newApp();
    const c = clientFor(app);
    const ws = crypto.randomUUID();
    const body = machineBody(ws, crypto.randomBytes(6).toString('hex'));
    sim.faults.createTimeout(1, { app });
    const r = await c.create(body, identity(body));
    expect(r.adopted).toBe(true);
    const live = sim.machines(app).filter((m) => m.metadata.molecule_workspace_id === ws);
    expect(live.map((m) => m.id)).toEqual([r.machine.id]);
    expect(sim.requests({ app, action: 'create' }).map((x) => x.status)).toEqual([408]);
    // and it was looked up by its metadata before anything else was created
    const list = sim.requests({ app, action: 'list' }).pop()!;
    expect(list.query).toMatchObject({ 'metadata.molecule_workspace_id': ws, 'metadata.molecule_provision_id': body.config.metadata.molecule_provision_id });
    await c.destroy(r.machine.id, { force: true });
  });

  it('a create that failed before it happened (5xx) is tried again once nothing was found', async () => {
    const app = newApp();
    const c = clientFor(app);
    const ws = crypto.randomUUID();
    const body = machineBody(ws, crypto.randomBytes(6).toString('hex'));
    sim.faults.serverError('create', 2, 503, { app });
    const r = await c.create(body, identity(body));
    expect(r).toMatchObject({ adopted: false, attempts: 3 });
    expect(sim.requests({ app, action: 'create' }).map((x) => x.status)).toEqual([503, 503, 200]);
    expect(sim.machines(app).filter((m) => m.metadata.molecule_workspace_id === ws)).toHaveLength(1);
    await c.destroy(r.machine.id, { force: true });
  });

  it('capacity answers are typed and not retried', async () => {
    const app = newApp();
    const c = clientFor(app);
    const body = machineBody(crypto.randomUUID(), 'p1');
    const id = sim.faults.insufficientCapacity('ord');
    const e = await c.create(body, identity(body)).catch((x) => x);
    sim.faults.clear(id);
    expect(e).toBeInstanceOf(FlyApiError);
    expect(e).toMatchObject({ status: 503, isCapacity: true, retryable: false });
    expect(e.message).toMatch(/insufficient resources/);
    expect(sim.requests({ app, action: 'create' })).toHaveLength(1);
    expect(sim.machines(app)).toHaveLength(0);
  });

  it('waits in slices of at most 60 s, with an HTTP timeout above the slice, looping on 408 until its own deadline', async () => {
    const app = newApp();
    const c = clientFor(app);
    const body = machineBody(crypto.randomUUID(), 'p2');
    const { machine } = await c.create(body, identity(body));
    // Two injected 408s (slices that ran out) before the real wait.
    sim.faults.add({ kind: 'status', action: 'wait', status: 408, count: 2, app, error: 'deadline_exceeded: machine failed to reach desired state, started, currently starting' });
    let slices = 0;
    const r = await c.waitFor(machine.id, { states: ['started'], version: machine.instance_id, deadline: Date.now() + 10 * 60_000, onSlice: () => void slices++ });
    expect(r.state).toBe('started');
    expect(slices).toBe(2);
    const waits = recorded.filter((x) => x.path.endsWith(`${machine.id}/wait`));
    expect(waits.length).toBe(3);
    for (const w of waits) {
      expect(Number(w.query.timeout)).toBeGreaterThanOrEqual(1);
      expect(Number(w.query.timeout)).toBeLessThanOrEqual(60);
      expect(w.query.version).toBe(machine.instance_id);
    }
    // A deadline that passes ends in a 408 of our own (machine stays started; wait for stopped never comes).
    const e = await c.waitFor(machine.id, { states: ['stopped'], version: machine.instance_id, deadline: Date.now() + 1500 }).catch((x) => x);
    expect(e).toMatchObject({ status: 408 });
    expect(e.message).toMatch(/did not reach stopped/);
    await c.destroy(machine.id);
  });

  it('leases: nonce on mutations while held, someone else’s lease waited out, release tolerant of expiry', async () => {
    const app = newApp();
    const c = clientFor(app);
    const body = machineBody(crypto.randomUUID(), 'p3');
    const { machine } = await c.create(body, identity(body));
    await c.waitFor(machine.id, { states: ['started'], deadline: Date.now() + 30_000 });
    await c.withLease(machine.id, 'test', async (nonce) => {
      const without = await flyctl(sim, 'POST', `/v1/apps/${app}/machines/${machine.id}/stop`, {});
      expect(without.status).toBe(409);
      await c.stop(machine.id, {}, nonce);
    });
    const stop = sim.requests({ app, action: 'stop' }).filter((r) => r.status === 200).pop()!;
    expect(stop.leaseNonce).toMatch(/^[0-9a-f]{12}$/);
    expect(sim.requests({ app, action: 'lease_release' }).pop()!.status).toBe(200);

    // An operator holds a 2 s lease: acquire waits for it to expire instead of failing.
    const held = await flyctl(sim, 'POST', `/v1/apps/${app}/machines/${machine.id}/lease`, { ttl: 2 });
    expect(held.status).toBe(201);
    const t0 = Date.now();
    const lease = await c.acquireLease(machine.id, { ttlS: 5 });
    expect(Date.now() - t0).toBeGreaterThan(1000);
    expect(lease.nonce).not.toBe(held.body.data.nonce);
    await c.releaseLease(machine.id, lease.nonce);
    await c.releaseLease(machine.id, lease.nonce); // already released: "lease not found" is fine
    await c.destroy(machine.id);
  });

  it('retries start on the transient 412s', async () => {
    const app = newApp();
    const c = clientFor(app);
    const body = machineBody(crypto.randomUUID(), 'p4');
    const { machine } = await c.create(body, identity(body));
    // Right after create: "unable to start machine from current state: 'created'" (the sim's 50 ms launch window).
    const first = await flyctl(sim, 'POST', `/v1/apps/${app}/machines/${machine.id}/start`);
    expect([412, 200]).toContain(first.status);
    await c.waitFor(machine.id, { states: ['started'], deadline: Date.now() + 30_000 });
    // Shortly after reaching stopped: "machine still active, refusing to start" — retried, then it starts.
    // (The simulator's window is widened to 2 s so a loaded test machine cannot miss it.)
    const window = sim.timing.stillActiveMs;
    sim.timing.stillActiveMs = 2000;
    try {
      await c.stop(machine.id);
      await c.waitFor(machine.id, { states: ['stopped'], version: machine.instance_id, deadline: Date.now() + 30_000 });
      await c.start(machine.id);
    } finally {
      sim.timing.stillActiveMs = window;
    }
    const starts = sim.requests({ app, action: 'start' }).slice(1).map((r) => r.status);
    expect(starts[0]).toBe(412);
    expect(starts.pop()).toBe(200);
    await c.waitFor(machine.id, { states: ['started'], deadline: Date.now() + 30_000 });
    // A 412 that is not transient is thrown at once.
    const e = await c.start(machine.id).catch((x) => x);
    expect(e).toMatchObject({ status: 412, transientStart: false });
    await c.destroy(machine.id);
  });

  it('keeps each action within Fly’s limits on its own (the simulator’s buckets on)', async () => {
    const app = newApp();
    const c = clientFor(app);
    const body = machineBody(crypto.randomUUID(), 'p5');
    const { machine } = await c.create(body, identity(body));
    const before = sim.requests({ app }).length;
    const t0 = Date.now();
    // 6 event reads of one machine: 3 at once, then 1/s. 14 gets: 10 at once, then 5/s.
    const answers = await Promise.all([...Array.from({ length: 6 }, () => c.events(machine.id)), ...Array.from({ length: 14 }, () => c.get(machine.id))]);
    const elapsed = Date.now() - t0;
    expect(answers).toHaveLength(20);
    const reqs = sim.requests({ app }).slice(before);
    // Sent all at once, these would draw 7 answers of 429 (3 events + 4 gets over the bursts). Paced by the
    // client they draw none — unless a loaded machine delays one request and bunches it with the next on
    // arrival, which the exact server bucket may refuse; the client then retries. So: at most a stray one or two.
    expect(reqs.filter((r) => r.status === 429).length).toBeLessThanOrEqual(2);
    expect(reqs.filter((r) => r.action === 'events' && r.status === 200)).toHaveLength(6);
    expect(elapsed).toBeGreaterThanOrEqual(2500);
    await c.destroy(machine.id);
  });

  it('the limiter: burst then rate, per action and scope', () => {
    let now = 0;
    const l = new ClientRateLimiter({ action: { ratePerSec: 1, burst: 3 }, getMachine: { ratePerSec: 5, burst: 10 } }, () => now, 0);
    expect([1, 2, 3].map(() => l.reserve('stop', 'machine:a'))).toEqual([0, 0, 0]);
    expect(l.reserve('stop', 'machine:a')).toBe(1000);
    expect(l.reserve('stop', 'machine:a')).toBe(2000);
    expect(l.reserve('stop', 'machine:b')).toBe(0); // another machine has its own bucket
    expect(l.reserve('start', 'machine:a')).toBe(0); // another action too
    expect(Array.from({ length: 10 }, () => l.reserve('get', 'machine:a')).every((d) => d === 0)).toBe(true);
    expect(l.reserve('get', 'machine:a')).toBe(200);
    now += 10_000;
    expect(l.reserve('stop', 'machine:a')).toBe(0);
    expect(new ClientRateLimiter(false).reserve('stop', 'x')).toBe(0);
  });

  it('network errors are retried and then typed as status 0', async () => {
    const srv = http.createServer((req) => req.socket.destroy()).listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    let attempts = 0;
    const c = new FlyClient({ app: 'x', token: 't', baseUrl: `http://127.0.0.1:${port}`, retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 }, onRequest: () => attempts++ });
    const e = await c.list().catch((x) => x);
    srv.close();
    expect(e).toBeInstanceOf(FlyApiError);
    expect(e).toMatchObject({ status: 0, isNetwork: true, retryable: true });
    expect(attempts).toBe(3);
  });


  it('the spec check used after every test does catch bad requests', () => {
    const path = '/v1/apps/a/machines';
    expect(specProblem({ method: 'POST', path, query: {}, body: { config: { image: IMAGE, guest: { memory_mb: '512' } } } })).toMatch(/memory_mb/);
    expect(specProblem({ method: 'POST', path, query: {}, body: { config: { image: IMAGE, gest: {} } } })).toMatch(/unknown field/);
    expect(specProblem({ method: 'POST', path: `${path}/0123/stop`, query: {}, body: [] })).toMatch(/cannot unmarshal array/);
    expect(specProblem({ method: 'GET', path: '/v1/apps/a/nonsense', query: {}, body: undefined })).toMatch(/not an operation/);
    expect(specProblem({ method: 'POST', path, query: {}, body: { config: { image: IMAGE } } })).toBeNull();
  });
});
