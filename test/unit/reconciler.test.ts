import { afterEach, describe, expect, it } from 'vitest';
import { ProvisionError } from '../../src/core/provisioner.js';
import { Membership } from '../../src/core/membership.js';
import type { Workspace } from '../../src/core/types.js';
import { LeaseRepo, ReplicaRepo } from '../../src/store/cluster-repos.js';
import { openStore, type Store } from '../../src/store/db.js';
import { waitFor } from '../support/harness.js';
import { closeWorlds, onCleanup, ready, silentLogger, world } from '../support/world.js';

afterEach(closeWorlds);
const logger = silentLogger;


describe('reconciler: provisioning', () => {
  it('launches what a new workspace waits for, with fresh tokens, and the agent registering makes it ready', async () => {
    const w = await world();
    const id = await w.create('first', { secrets: { API_KEY: 'sk-1' } });
    expect((await w.get(id)).pendingLaunch).toBe('start');
    await w.reconciler.reconcileWorkspace(id);
    const ws = await w.get(id);
    expect(ws.pendingLaunch).toBeNull();
    expect(ws.instanceId).toBe('fake-1');
    const env = w.provisioner.instances.get('fake-1')!.env;
    expect(env.API_KEY).toBe('sk-1');
    expect(env.MOLECULE_WORKSPACE_TOKEN).toMatch(/^mws_/);
    expect(env.PLATFORM_URL).toBe('http://platform.invalid');
    // Reconciling again changes nothing: the launch happened once.
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('start')).toBe(1);
    expect((await w.register(id)).status).toBe('ready');
    expect(await w.statuses(id)).toEqual(['provisioning', 'ready']);
  });

  it('answers a registration that comes before the launch is recorded with "retry" (503)', async () => {
    const w = await world();
    const id = await w.create();
    const tokens = await w.svc.rotateTokens(id);
    await expect(w.svc.registry.register(tokens.workspace, { url: 'http://fake.invalid/x', agent_card: {} })).rejects.toMatchObject({ statusCode: 503, code: 'instance_starting' });
  }, 15_000);

  it('fails a workspace whose agent never registers, and stops the instance', async () => {
    const w = await world({ provisionTimeoutMs: 50 });
    const id = await w.create();
    await w.reconciler.reconcileWorkspace(id);
    await new Promise((r) => setTimeout(r, 80));
    await w.reconciler.reconcileWorkspace(id);
    const ws = await w.get(id);
    expect(ws.status).toBe('failed');
    expect(ws.statusReason).toMatch(/^AGENT_NEVER_REGISTERED/);
    expect(w.provisioner.instances.get(ws.instanceId!)!.state).toBe('stopped');
  });

  it('fails on a backend error with its reason, and retries a backend outage without counting it as a crash', async () => {
    const w = await world();
    const id = await w.create();
    w.provisioner.failStart = { error: new ProvisionError('IMAGE_NOT_FOUND', 'no such image') };
    await w.reconciler.reconcileWorkspace(id);
    expect(await w.get(id)).toMatchObject({ status: 'failed', statusReason: 'IMAGE_NOT_FOUND: no such image', pendingLaunch: null });

    const id2 = await w.create('outage');
    w.provisioner.failStart = { error: new ProvisionError('BACKEND_UNAVAILABLE', 'engine away', true) };
    await w.reconciler.reconcileWorkspace(id2);
    const off = await w.get(id2);
    expect(off.status).toBe('offline');
    expect(off.restarts).toEqual([]);
    expect(off.nextRestartAt).not.toBeNull();
  });
});

describe('reconciler: liveness and recovery', () => {
  it('takes a workspace whose instance died offline, restarts it after the backoff, once', async () => {
    const w = await world({ restartBackoffMs: 30 });
    const id = await w.create();
    const first = await ready(w, id);
    w.provisioner.kill(first.instanceId!, 'stopped', 'exited with code 137');
    // The watch event carries the news; the reconcile it causes acts on it.
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped', reason: 'exited with code 137' }, instanceId: first.instanceId! });
    const off = await w.get(id);
    expect(off.status).toBe('offline');
    expect(off.statusReason).toMatch(/instance stopped: exited with code 137; restarting in 0.0 s/);
    // Before the backoff: nothing happens.
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('restart')).toBe(0);
    await new Promise((r) => setTimeout(r, 40));
    await w.reconciler.reconcileWorkspace(id);
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('restart')).toBe(1);
    const again = await w.get(id);
    expect(again).toMatchObject({ status: 'provisioning', restartCount: 1, pendingLaunch: null, statusReason: 'automatic restart (attempt 1)' });
    expect((await w.register(id)).status).toBe('ready');
  });

  it('ignores news about an instance the workspace no longer has', async () => {
    const w = await world();
    const id = await w.create();
    await ready(w, id);
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped' }, instanceId: 'fake-old' });
    expect((await w.get(id)).status).toBe('ready');
  });

  it('ignores news from before the workspace last changed: a death seen before a restart of the same instance (Fly restarts the same machine)', async () => {
    const w = await world();
    const id = await w.create();
    const ws = await ready(w, id);
    // The backend saw the instance die; the news waits in the queue while the workspace is restarted.
    const seenAt = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await w.svc.restart(id);
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).instanceId).toBe(ws.instanceId);
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped', reason: 'killed before the restart' }, instanceId: ws.instanceId!, observedAt: seenAt });
    expect((await w.get(id)).status).toBe('provisioning');
    // The same news seen after the restart is news.
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped', reason: 'died after the restart' }, instanceId: ws.instanceId!, observedAt: Date.now() });
    expect((await w.get(id)).status).toBe('offline');
  });

  it('ignores a death seen after a restart was asked for but before its launch came back (the old instance still lay dead)', async () => {
    const w = await world();
    const id = await w.create();
    const ws = await ready(w, id);
    await w.svc.restart(id);
    await new Promise((r) => setTimeout(r, 5));
    // A watch looked while the restart waited for its launch: the same instance, still dead from before.
    const seenAt = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).instanceId).toBe(ws.instanceId);
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped', reason: 'still dead from before' }, instanceId: ws.instanceId!, observedAt: seenAt });
    expect((await w.get(id)).status).toBe('provisioning');
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'stopped', reason: 'died after the launch' }, instanceId: ws.instanceId!, observedAt: Date.now() });
    expect((await w.get(id)).status).toBe('offline');
  });

  it('doubles the backoff per restart in the window and ends a crash loop in failed', async () => {
    const w = await world({ crashLoopMax: 3, restartBackoffMs: 100, restartBackoffMaxMs: 100_000 });
    const id = await w.create();
    await ready(w, id);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const ws = await w.get(id);
      await w.reconciler.reconcileWorkspace(id, { observed: { state: 'failed', reason: `crash ${i}` }, instanceId: ws.instanceId! });
      const off = await w.get(id);
      delays.push(Math.round((Date.parse(off.nextRestartAt!) - Date.parse(off.statusChangedAt)) / 100) * 100);
      // Skip the wait: make the restart due now.
      await w.store.db.updateTable('workspaces').set({ next_restart_at: new Date(0).toISOString() }).where('id', '=', id).execute();
      await w.reconciler.reconcileWorkspace(id);
      await w.register(id);
    }
    expect(delays).toEqual([100, 200, 400]);
    const ws = await w.get(id);
    await w.reconciler.reconcileWorkspace(id, { observed: { state: 'failed', reason: 'crash 3' }, instanceId: ws.instanceId! });
    const failed = await w.get(id);
    expect(failed.status).toBe('failed');
    expect(failed.statusReason).toMatch(/^crash loop: the agent stopped 4 times within 1 min; last: instance failed: crash 3/);
    expect(failed.restartCount).toBe(3);
    expect((await w.statuses(id)).slice(-2)).toEqual(['offline', 'failed']);
  });

  it('keeps a silent agent whose backend says it runs and whose /healthz answers; takes it offline after failed probes', async () => {
    const w = await world({ heartbeatTtlMs: 30, probeConfirmations: 2 });
    const id = await w.create();
    await ready(w, id);
    await new Promise((r) => setTimeout(r, 50));
    w.probe.ok = true;
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).status).toBe('ready');
    w.probe.ok = false;
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).status).toBe('ready'); // one failed probe is not proof
    await w.reconciler.reconcileWorkspace(id);
    const off = await w.get(id);
    expect(off.status).toBe('offline');
    expect(off.statusReason).toMatch(/did not answer 2 probes \(backend: running\)/);
  });

  it('takes a silent agent offline at once when the backend says its instance is gone', async () => {
    const w = await world({ heartbeatTtlMs: 30 });
    const id = await w.create();
    const ws = await ready(w, id);
    w.provisioner.instances.delete(ws.instanceId!);
    await new Promise((r) => setTimeout(r, 50));
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).statusReason).toMatch(/backend reports the instance gone/);
    expect(w.probe.calls).toBe(0);
  });
});

describe('reconciler: requests', () => {
  it('stops a paused workspace, resumes it, and restarts on request', async () => {
    const w = await world();
    const id = await w.create();
    const ws = await ready(w, id);
    // The pause answers once the instance is stopped (the reconciler says so in an event), not before.
    let answered = false;
    const pausing = w.svc.pause(id).then((r) => ((answered = true), r));
    await waitFor('paused recorded', async () => (await w.get(id)).status === 'paused');
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    await w.reconciler.reconcileWorkspace(id, { action: 'pause' });
    expect(w.provisioner.instances.get(ws.instanceId!)!.state).toBe('stopped');
    expect((await pausing).status).toBe('paused');
    await w.svc.resume(id);
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('resume')).toBe(1);
    await w.register(id);
    await w.svc.restart(id);
    expect((await w.get(id)).pendingLaunch).toBe('restart');
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('restart')).toBe(1);
    expect(w.provisioner.liveFor(id)).toHaveLength(1);
  });

  it('destroys a deleted workspace once, and retries a failing destroy without an event per retry', async () => {
    const w = await world();
    const id = await w.create();
    await ready(w, id);
    await w.svc.remove(id);
    w.provisioner.failDestroy = new Error('engine away');
    await w.reconciler.reconcileWorkspace(id);
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).status).toBe('removing');
    w.provisioner.failDestroy = undefined;
    await w.reconciler.reconcileWorkspace(id);
    expect((await w.get(id)).status).toBe('removed');
    await w.reconciler.reconcileWorkspace(id);
    expect(w.provisioner.count('destroy')).toBe(3);
    expect(w.provisioner.count('forget')).toBe(1);
    expect(w.provisioner.liveFor(id)).toHaveLength(0);
    expect((await w.statuses(id)).filter((s) => s === 'removing')).toHaveLength(2);
  });

  it('runs on its own once active: a request made anywhere reaches it through the events, and a newer request abandons a launch in flight', async () => {
    const w = await world();
    await w.reconciler.activate();
    let release!: () => void;
    w.provisioner.hold = new Promise<void>((r) => (release = r));
    const id = await w.create();
    await waitFor('launch in flight', async () => w.provisioner.count('start') === 1);
    await w.svc.restart(id);
    await waitFor('restart launched', async () => w.provisioner.count('restart') === 1 || w.provisioner.count('start') === 2);
    release();
    w.provisioner.hold = undefined;
    await waitFor('instance recorded', async () => (await w.get(id)).pendingLaunch === null && (await w.get(id)).instanceId);
    const steps = (await w.bus.history({ workspaceId: id })).filter((e) => e.type === 'workspace.step').map((e) => e.data.step);
    expect(steps).toContain('start abandoned');
    expect(w.provisioner.liveFor(id)).toHaveLength(1);
    await w.register(id);
    expect((await w.get(id)).status).toBe('ready');
  });

  it('restarts a dead instance by itself when active (watch event → offline → backoff → provisioning)', async () => {
    const w = await world();
    await w.reconciler.activate();
    const id = await w.create();
    await waitFor('launched', async () => (await w.get(id)).instanceId);
    await w.register(id);
    w.provisioner.kill((await w.get(id)).instanceId!);
    await waitFor('restarted', async () => w.provisioner.count('restart') === 1);
    await w.register(id);
    expect(await w.get(id)).toMatchObject({ status: 'ready', restartCount: 1 });
  });
});

describe('reconciler lease', () => {
  async function members(store: Store, ttl: number, clock: { now: number }) {
    const m = (backend = 'fake') =>
      new Membership({ replicas: new ReplicaRepo(store.db), leases: new LeaseRepo(store.db), logger, backend, leaseTtlMs: ttl, now: () => clock.now });
    return m;
  }

  it('is held by exactly one replica, and taken over once the holder stops renewing', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store.close());
    const clock = { now: 1_000_000 };
    const make = await members(store, 3000, clock);
    const a = make();
    const b = make();
    await a.join('http://a');
    await b.join('http://b');
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    // A renews; B keeps trying and keeps losing.
    clock.now += 1000;
    await a.tick();
    await b.tick();
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    // A stops (killed): within the TTL B holds the lease, and A's own view has run out.
    clock.now += 3000;
    await b.tick();
    expect(b.isLeader()).toBe(true);
    expect(a.isLeader()).toBe(false);
    expect((await b.view()).leader).toBe(b.id);
    // A comes back: B renews in time, so A stays a follower.
    await a.tick();
    expect(a.isLeader()).toBe(false);
  });

  it('gives the lease up at once on a clean leave', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store.close());
    const clock = { now: 5_000_000 };
    const make = await members(store, 15_000, clock);
    const a = make();
    const b = make();
    await a.join(null);
    await b.join(null);
    await a.leave();
    await b.tick();
    expect(b.isLeader()).toBe(true);
    expect((await b.view()).replicas.map((r) => r.id)).toEqual([b.id]);
  });

  it('refuses a replica with another backend, and a second process-backend replica', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store.close());
    const clock = { now: Date.now() };
    const make = await members(store, 15_000, clock);
    await make('flyio').join(null);
    await expect(make('docker').join(null)).rejects.toThrow(/drives the flyio backend, this one docker/);
    const store2 = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store2.close());
    const make2 = await members(store2, 15_000, clock);
    await make2('process').join(null);
    await expect(make2('process').join(null)).rejects.toThrow(/process backend runs one replica per database/);
  });

  it('lets only one of two process-backend replicas started at the same moment join', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store.close());
    const clock = { now: Date.now() };
    const make = await members(store, 300, clock);
    const [a, b] = [make('process'), make('process')];
    const results = await Promise.allSettled([a.join(null), b.join(null)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(String(refused.reason)).toMatch(/process backend runs one replica per database/);
    const joined = results[0].status === 'fulfilled' ? a : b;
    expect(joined.isLeader()).toBe(true);
    expect((await joined.view()).replicas.map((r) => r.id)).toEqual([joined.id]);
  });

  it('a new holder finishes what the old one left half done: the instance of an interrupted launch is destroyed, the workspace launched once', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    onCleanup(() => store.close());
    const a = await world({}, store);
    const id = await a.create();
    // A asked the backend for the instance, then died before recording it.
    a.provisioner.hold = new Promise(() => undefined);
    await a.reconciler.activate();
    await waitFor('A launching', async () => a.provisioner.count('start') === 1);
    a.setLeader(false);
    await a.reconciler.deactivate();
    // B shares the backend (as every replica shares the Fly app): the instance A asked for exists there, made
    // with tokens B has since rotated away. Nothing records it, so it is the sweep's to remove.
    const b = await world({}, store);
    b.provisioner.instances.set('fake-made-by-a', { id: 'fake-made-by-a', workspaceId: id, state: 'running', env: {} });
    await b.reconciler.activate();
    await waitFor('B launched', async () => !!(await b.get(id)).instanceId);
    expect(b.provisioner.instances.get('fake-made-by-a')?.state ?? 'gone').toMatch(/gone|destroyed/);
    expect(b.provisioner.liveFor(id).map((i) => i.id)).toEqual([(await b.get(id)).instanceId]);
    expect(b.provisioner.count('start')).toBe(1);
    await b.register(id);
    expect((await b.get(id)).status).toBe('ready');
  });
});

export type { Workspace };
