import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { FlyApiError, FlyClient } from '../../src/backends/flyio/client/index.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { flyctl, IMAGE, simForClients } from './support.js';

/**
 * What the client sends again after a failure, against the simulator: only what is idempotent (GETs, DELETEs) or
 * made so by looking first (create by metadata, a lease by the token in its description, an update by the version
 * under our lease, a start by the machine's state); never a blind resend of a mutation whose answer was lost; and
 * one deadline per operation, not retry loops nested inside each other.
 */
describe('Fly client: what is retried after an ambiguous failure', () => {
  let sim: FlySim;
  const { recorded, onRequest, newApp } = simForClients('retry-test', (s) => (sim = s));
  const clientFor = (app: string, extra: Partial<ConstructorParameters<typeof FlyClient>[0]> = {}) =>
    new FlyClient({ app, token: sim.token, baseUrl: sim.url, onRequest, ...extra });
  const body = (workspaceId = crypto.randomUUID(), provisionId = crypto.randomBytes(6).toString('hex'), name?: string) => ({
    name: name ?? `ws-${crypto.randomBytes(6).toString('hex')}`,
    region: 'ord',
    config: {
      image: IMAGE,
      env: { WORKSPACE_ID: workspaceId, PORT: '8000' },
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
      metadata: { molecule_workspace_id: workspaceId, molecule_provision_id: provisionId },
      restart: { policy: 'on-failure', max_retries: 0 },
    },
  });
  /** A machine resting in `created` (skip_launch): startable, nothing booted. */
  const idle = async (c: FlyClient) => {
    const b = { ...body(), skip_launch: true };
    return (await c.create(b, { molecule_provision_id: b.config.metadata.molecule_provision_id })).machine;
  };
  const statuses = (app: string, action: string) => sim.requests({ app, action }).map((r) => r.status);

  // Runs before the helper's spec check (after-hooks run last-registered first).
  afterEach(() => {
    sim.faults.clear();
  });

  it('an update answered 500 is sent exactly once (a second one would mint and boot another version)', async () => {
    const app = newApp();
    const c = clientFor(app);
    const m = await idle(c);
    sim.faults.serverError('update', 1, 500, { machine: m.id });
    const e = await c.update(m.id, { config: { ...m.config!, env: { A: '1' } }, skip_launch: true }).catch((x) => x);
    expect(e).toBeInstanceOf(FlyApiError);
    expect(e).toMatchObject({ status: 500, retryable: true });
    expect(statuses(app, 'update')).toEqual([500]);
    expect(sim.machine(m.id)!.version).toBe(m.instance_id);
    await c.destroy(m.id);
  });

  it('an update whose answer was lost after it applied is recognised by the version it moved under our lease, not resent', async () => {
    const app = newApp();
    const c = clientFor(app);
    const m = await idle(c);
    sim.faults.lostResponse('update', 1, 503, { machine: m.id });
    const updated = await c.withLease(m.id, 'test', (nonce, lease) =>
      c.update(m.id, { config: { ...m.config!, env: { A: '2' } }, skip_launch: true, current_version: lease.version }, nonce),
    );
    expect(statuses(app, 'update')).toEqual([503]);
    expect(updated.instance_id).not.toBe(m.instance_id);
    expect(updated.instance_id).toBe(sim.machine(m.id)!.version);
    expect(updated.config?.env).toEqual({ A: '2' });
    await c.destroy(m.id);
  });

  it('a restart answered 500 is not resent', async () => {
    const app = newApp();
    const c = clientFor(app);
    const b = body();
    const { machine: m } = await c.create(b, { molecule_provision_id: b.config.metadata.molecule_provision_id });
    await c.waitFor(m.id, { states: ['started'], deadline: Date.now() + 30_000 });
    sim.faults.serverError('restart', 1, 500, { machine: m.id });
    const e = await c.restart(m.id).catch((x) => x);
    expect(e).toMatchObject({ status: 500 });
    expect(statuses(app, 'restart')).toEqual([500]);
    await c.destroy(m.id);
  });

  it('start: a lost answer of a start that happened is recognised (machine starting/started), never answered with a 412', async () => {
    const app = newApp();
    const c = clientFor(app);
    const m = await idle(c);
    sim.faults.lostResponse('start', 1, 503, { machine: m.id });
    await c.start(m.id);
    expect(statuses(app, 'start')).toEqual([503]);
    await c.waitFor(m.id, { states: ['started'], deadline: Date.now() + 30_000 });

    // A start refused before it happened (5xx): the machine is looked at first, then the start is sent again.
    await c.stop(m.id);
    await c.waitFor(m.id, { states: ['stopped'], version: m.instance_id, deadline: Date.now() + 30_000 });
    await sleep(sim.timing.stillActiveMs + 100);
    const from = recorded.length;
    sim.faults.serverError('start', 1, 500, { machine: m.id });
    await c.start(m.id);
    expect(recorded.slice(from).map((r) => `${r.method} ${r.path.replace(/^.*\/machines\/[0-9a-f]+/, '')}`)).toEqual(['POST /start', 'GET ', 'POST /start']);
    await c.destroy(m.id);
  });

  it('stop: a lost answer of a stop that happened is recognised, not resent', async () => {
    const app = newApp();
    const c = clientFor(app);
    const b = body();
    const { machine: m } = await c.create(b, { molecule_provision_id: b.config.metadata.molecule_provision_id });
    await c.waitFor(m.id, { states: ['started'], deadline: Date.now() + 30_000 });
    sim.faults.lostResponse('stop', 1, 502, { machine: m.id });
    await c.stop(m.id, { signal: 'SIGTERM', timeout: '5s' });
    expect(statuses(app, 'stop')).toEqual([502]);
    await c.waitFor(m.id, { states: ['stopped'], version: m.instance_id, deadline: Date.now() + 30_000 });
    await c.destroy(m.id);
  });

  it('a lease taken although its answer was lost is recognised as ours (not a 409, not a second lease)', async () => {
    const app = newApp();
    const c = clientFor(app);
    const m = await idle(c);
    sim.faults.lostResponse('lease_acquire', 1, 503, { machine: m.id });
    const t0 = Date.now();
    const lease = await c.acquireLease(m.id, { ttlS: 30, description: 'molecule: test', maxWaitMs: 5000 });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(statuses(app, 'lease_acquire')).toEqual([503]);
    const held = await flyctl(sim, 'GET', `/v1/apps/${app}/machines/${m.id}/lease`);
    expect(held.status).toBe(200);
    expect(lease.nonce).toBe(held.body.data.nonce);
    // It works as our lease: a mutation with its nonce passes, and it releases.
    await c.update(m.id, { config: { ...m.config!, env: { B: '1' } }, skip_launch: true }, lease.nonce);
    await c.releaseLease(m.id, lease.nonce);
    expect(sim.machine(m.id)!.leased).toBe(false);

    // Someone else's lease is never taken for ours, even after a lost answer.
    const other = await flyctl(sim, 'POST', `/v1/apps/${app}/machines/${m.id}/lease`, { ttl: 30, description: 'molecule: test' });
    expect(other.status).toBe(201);
    sim.faults.serverError('lease_acquire', 1, 503, { machine: m.id });
    const e = await c.acquireLease(m.id, { ttlS: 30, description: 'molecule: test', maxWaitMs: 1500 }).catch((x) => x);
    expect(e).toMatchObject({ status: 409 });
    expect(statuses(app, 'lease_get').length).toBeGreaterThanOrEqual(1); // it did look
    await c.destroy(m.id, { nonce: other.body.data.nonce });
  });

  it('start’s transient-412 loop and its 5xx handling share one deadline (no retry loop inside another)', async () => {
    const app = newApp();
    const c = clientFor(app); // the default retry policy: 8 attempts, up to 60 s
    const m = await idle(c);
    sim.faults.add({ kind: 'status', action: 'start', status: 412, count: 1, machine: m.id, error: 'failed_precondition: machine still active, refusing to start' });
    sim.faults.add({ kind: 'server_error', action: 'start', status: 503, count: null, machine: m.id });
    const t0 = Date.now();
    const e = await c.start(m.id, { transientDeadlineMs: 1500 }).catch((x) => x);
    const elapsed = Date.now() - t0;
    expect(e).toBeInstanceOf(FlyApiError);
    expect(e.status).toBe(503);
    expect(elapsed).toBeLessThan(4000);
    expect(statuses(app, 'start').length).toBeLessThanOrEqual(6);
    sim.faults.clear();
    await c.destroy(m.id);
  });

  it('the lease’s 409 wait and its 5xx handling share one deadline', async () => {
    const app = newApp();
    const c = clientFor(app);
    const m = await idle(c);
    sim.faults.add({ kind: 'server_error', action: 'lease_acquire', status: 503, count: null, machine: m.id });
    const t0 = Date.now();
    const e = await c.acquireLease(m.id, { ttlS: 30, maxWaitMs: 1500 }).catch((x) => x);
    expect(e).toMatchObject({ status: 503 });
    expect(Date.now() - t0).toBeLessThan(4000);
    sim.faults.clear();
    await c.destroy(m.id);
  });

  it('findByMetadata returns the oldest machine, whatever order the API lists them in', async () => {
    const app = newApp();
    const c = clientFor(app);
    const ws = crypto.randomUUID();
    const older = await c.create({ ...body(ws, 'a'), skip_launch: true }, { molecule_provision_id: 'a' });
    await sleep(1100); // created_at has second resolution
    const newer = await c.create({ ...body(ws, 'b'), skip_launch: true }, { molecule_provision_id: 'b' });
    sim.faults.add({ kind: 'list_order', order: 'newest_first', app });
    expect((await c.list({ metadata: { molecule_workspace_id: ws } })).map((m) => m.id)).toEqual([newer.machine.id, older.machine.id]);
    expect((await c.findByMetadata({ molecule_workspace_id: ws }))?.id).toBe(older.machine.id);
    sim.faults.clear();
    await c.destroy(older.machine.id);
    await c.destroy(newer.machine.id);
  });
});
