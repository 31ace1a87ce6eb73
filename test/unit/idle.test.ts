import { afterEach, describe, expect, it } from 'vitest';
import { idleMs, sleepDue } from '../../src/core/idle.js';
import type { Workspace } from '../../src/core/types.js';
import { openStore } from '../../src/store/db.js';
import { waitFor } from '../support/harness.js';
import { closeWorlds, ready, world, type World } from '../support/world.js';

afterEach(closeWorlds);

const at = (ms: number) => new Date(ms).toISOString();

/** A world whose idle rules run fast: activity written at most every 20 ms, wakes held for 300 ms. */
async function idleWorld() {
  const w = await world();
  Object.assign(w.config.idle, { activityFlushMs: 20, wakeTimeoutMs: 300 });
  return w;
}

/** The agent heartbeats with `active` tasks running. */
async function heartbeat(w: World, id: string, active: number) {
  const ws = await w.get(id);
  const token = w.provisioner.instances.get(ws.instanceId!)!.env.MOLECULE_WORKSPACE_TOKEN;
  return w.svc.registry.heartbeat(token, { active_tasks: active, current_task: active ? 'turn' : null, error_rate: 0, uptime_s: 1 });
}

/** Makes it look idle since `agoMs`, as if its last activity and status change were that long ago. */
async function idleSince(w: World, id: string, agoMs: number) {
  await w.store.db.updateTable('workspaces').set({ status_changed_at: at(Date.now() - agoMs), active_at: at(Date.now() - agoMs) }).where('id', '=', id).execute();
}

describe('idle rule', () => {
  const base = { status: 'ready', idleTimeoutS: 10, statusChangedAt: at(0), activeAt: at(1000), heartbeat: { active_tasks: 0 } } as unknown as Workspace;

  it('counts from the later of the last activity and the last status change', () => {
    expect(idleMs(base, 11_000)).toBe(10_000);
    expect(sleepDue(base, 11_020, 10)).toBe(false);
    expect(sleepDue(base, 11_021, 10)).toBe(true);
    expect(idleMs({ ...base, statusChangedAt: at(5000) }, 11_000)).toBe(6000);
  });

  it('never sleeps a busy agent, one without a timeout, or one that is not running', () => {
    expect(idleMs({ ...base, heartbeat: { active_tasks: 1 } }, 1e9)).toBeNull();
    expect(idleMs({ ...base, idleTimeoutS: null }, 1e9)).toBeNull();
    for (const status of ['provisioning', 'paused', 'offline', 'sleeping', 'failed'] as const) expect(idleMs({ ...base, status }, 1e9)).toBeNull();
  });

  it('waits two activity windows past the timeout, which the stored activity may trail the truth by', () => {
    expect(sleepDue({ ...base, idleTimeoutS: 1 }, 12_000, 5000)).toBe(false);
    expect(sleepDue({ ...base, idleTimeoutS: 1 }, 12_001, 5000)).toBe(true);
  });
});

describe('idle workspaces sleep', () => {
  it('sleeps a ready workspace after its timeout: status event with the reason, tokens revoked, instance stopped', async () => {
    const w = await idleWorld();
    await w.reconciler.activate();
    const id = await w.create('sleepy', { idle_timeout_s: 1 });
    const ws = await ready(w, id);
    const token = w.provisioner.instances.get(ws.instanceId!)!.env.MOLECULE_WORKSPACE_TOKEN;
    await idleSince(w, id, 1500);
    await w.idle.tick();
    const slept = await w.get(id);
    expect(slept.status).toBe('sleeping');
    expect(slept.statusReason).toMatch(/^idle for \d+ s \(idle_timeout_s 1\)/);
    await expect(w.svc.tokens.workspaceOf(token)).rejects.toMatchObject({ statusCode: 401 });
    await waitFor('stopped', async () => w.provisioner.instances.get(ws.instanceId!)!.state === 'stopped', 2000, 10);
    expect(w.provisioner.count('destroy')).toBe(0);
    expect(await w.statuses(id)).toEqual(['provisioning', 'ready', 'sleeping']);
  });

  it('does not sleep before the timeout, without a timeout, or while heartbeats report an active task', async () => {
    const w = await idleWorld();
    await w.reconciler.activate();
    const young = await w.create('young', { idle_timeout_s: 60 });
    const never = await w.create('never');
    const busy = await w.create('busy', { idle_timeout_s: 1 });
    for (const id of [young, never, busy]) await ready(w, id);
    await idleSince(w, young, 1500);
    await idleSince(w, never, 1e7);
    await heartbeat(w, busy, 1);
    await idleSince(w, busy, 1500);
    // The heartbeat said busy: still busy by the last report, however long ago it came.
    await w.store.db.updateTable('workspaces').set({ active_at: at(Date.now() - 5000) }).where('id', '=', busy).execute();
    await w.idle.tick();
    for (const id of [young, never, busy]) expect((await w.get(id)).status).toBe('ready');
    // The task ends: a heartbeat with none counts as the last activity, so the timeout starts again.
    await heartbeat(w, busy, 0);
    await w.idle.tick();
    expect((await w.get(busy)).status).toBe('ready');
    await idleSince(w, busy, 1500);
    await w.idle.tick();
    expect((await w.get(busy)).status).toBe('sleeping');
  });

  it('takes the default timeout from MOLECULE_IDLE_TIMEOUT_S; PATCH sets and clears it', async () => {
    const w = await idleWorld();
    w.config.idle.defaultTimeoutS = 300;
    const a = await w.create('a');
    const b = await w.create('b', { idle_timeout_s: null });
    expect((await w.get(a)).idleTimeoutS).toBe(300);
    expect((await w.get(b)).idleTimeoutS).toBeNull();
    expect((await w.svc.patch(a, { idle_timeout_s: null })).idleTimeoutS).toBeNull();
    const patched = await w.svc.patch(b, { idle_timeout_s: 5 });
    expect(patched).toMatchObject({ idleTimeoutS: 5, needsRestart: false });
  });

  it('records A2A activity at most once per window, and the last one of a burst is written', async () => {
    const w = await idleWorld();
    w.config.idle.activityFlushMs = 100;
    const id = await w.create('chatty', { idle_timeout_s: 1 });
    const t0 = Date.now();
    w.svc.activity.touch(id, t0);
    await waitFor('first write', async () => (await w.get(id)).activeAt === at(t0), 1000, 10);
    for (let i = 1; i <= 5; i++) w.svc.activity.touch(id, t0 + i);
    expect((await w.get(id)).activeAt).toBe(at(t0));
    await waitFor('trailing write', async () => (await w.get(id)).activeAt === at(t0 + 5), 1000, 10);
  });

  it('an open stream keeps it awake on the replica that serves it, and is written while open', async () => {
    const w = await idleWorld();
    await w.reconciler.activate();
    const id = await w.create('streaming', { idle_timeout_s: 1 });
    await ready(w, id);
    const end = w.svc.activity.open(id);
    await idleSince(w, id, 1500);
    await w.idle.tick();
    expect((await w.get(id)).status).toBe('ready');
    // Another replica (the leader) learns it from the database: active_at keeps moving while the stream is open.
    await waitFor('written while open', async () => Date.now() - Date.parse((await w.get(id)).activeAt!) < 500, 2000, 10);
    end();
    await idleSince(w, id, 1500);
    await w.idle.tick();
    expect((await w.get(id)).status).toBe('sleeping');
  });
});

describe('waking', () => {
  async function sleeping(w: World) {
    await w.reconciler.activate();
    const id = await w.create('sleeper', { idle_timeout_s: 1 });
    await ready(w, id);
    await idleSince(w, id, 1500);
    await w.idle.tick();
    expect((await w.get(id)).status).toBe('sleeping');
    await w.reconciler.idle();
    return id;
  }

  /** The booted agent of each resumed instance registers, as a real one would. */
  function agentsRegister(w: World) {
    return w.bus.subscribe((ev) => {
      if (ev.type === 'workspace.step' && ev.data.step === 'instance started' && ev.workspace_id) void w.register(ev.workspace_id);
    });
  }

  it('a held request wakes it (provisioning, "woken by A2A", then ready) with a resume and fresh tokens', async () => {
    const w = await idleWorld();
    const id = await sleeping(w);
    const before = w.provisioner.instances.get((await w.get(id)).instanceId!)!.env.MOLECULE_WORKSPACE_TOKEN;
    const stop = agentsRegister(w);
    const held = await w.svc.wakes.hold(id);
    stop();
    expect((await w.get(id)).status).toBe('ready');
    expect(await w.statuses(id)).toEqual(['provisioning', 'ready', 'sleeping', 'provisioning', 'ready']);
    const history = (await w.bus.history({ workspaceId: id })).filter((e) => e.type === 'workspace.status');
    expect(history[3]!.data).toMatchObject({ from: 'sleeping', to: 'provisioning', reason: 'woken by A2A' });
    expect(w.provisioner.count('resume')).toBe(1);
    const after = w.provisioner.instances.get((await w.get(id)).instanceId!)!.env.MOLECULE_WORKSPACE_TOKEN;
    expect(after).not.toBe(before);
    expect(held.replied()).toBeGreaterThanOrEqual(0);
    expect(held.replied()).toBeNull(); // once per wake
  });

  it('10 concurrent requests share one wake', async () => {
    const w = await idleWorld();
    const id = await sleeping(w);
    let release!: () => void;
    w.provisioner.hold = new Promise((r) => (release = r));
    const stop = agentsRegister(w);
    const all = Promise.all(Array.from({ length: 10 }, () => w.svc.wakes.hold(id)));
    await waitFor('one resume', async () => w.provisioner.count('resume') === 1, 2000, 10);
    release();
    w.provisioner.hold = undefined;
    await all;
    stop();
    expect(w.provisioner.count('resume')).toBe(1);
    expect((await w.statuses(id)).filter((s) => s === 'provisioning')).toHaveLength(2);
  });

  it('a wake that never completes ends in workspace_not_ready after the wake timeout', async () => {
    const w = await idleWorld();
    const id = await sleeping(w);
    w.provisioner.hold = new Promise(() => {});
    const t0 = Date.now();
    await expect(w.svc.wakes.hold(id)).rejects.toMatchObject({ code: 'workspace_not_ready', extra: { status: 'provisioning' } });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    w.provisioner.hold = undefined;
  });

  it('a message does not wake a paused workspace; POST wake wakes a sleeping one and is refused otherwise', async () => {
    const w = await idleWorld();
    const id = await sleeping(w);
    await expect(w.svc.wake(id, 'request')).resolves.toMatchObject({ status: 'provisioning', statusReason: 'wake requested' });
    await expect(w.svc.wake(id, 'request')).rejects.toMatchObject({ statusCode: 409 });
    await w.reconciler.idle();
    await w.register(id);
    await w.svc.pause(id);
    await expect(w.svc.wakes.hold(id)).rejects.toMatchObject({ code: 'workspace_not_ready', extra: { status: 'paused' } });
    expect((await w.get(id)).status).toBe('paused');
  });

  it('a sleeping workspace may be paused, restarted or deleted', async () => {
    const w = await idleWorld();
    const id = await sleeping(w);
    await expect(w.svc.pause(id)).resolves.toMatchObject({ status: 'paused' });
    const id2 = await sleeping(w);
    await expect(w.svc.remove(id2)).resolves.toMatchObject({ status: 'removing' });
  });

  it('stays asleep across a platform restart, with no instance started', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    const w1 = await world({}, store);
    Object.assign(w1.config.idle, { activityFlushMs: 20 });
    const id = await sleeping(w1);
    await w1.reconciler.deactivate();
    const w2 = await world({}, store);
    // The new platform's backend still has the stopped instance (as Docker, Fly and pid records do).
    const inst = (await w1.get(id)).instanceId!;
    w2.provisioner.instances.set(inst, { ...w1.provisioner.instances.get(inst)!, state: 'stopped' });
    await w2.reconciler.activate();
    await w2.reconciler.idle();
    expect((await w2.get(id)).status).toBe('sleeping');
    expect(w2.provisioner.calls.filter((c) => ['start', 'restart', 'resume', 'destroy'].includes(c.op))).toEqual([]);
    await store.close();
  });

  it('with several replicas on one store, one wakes it', async () => {
    const store = await openStore({ dataDir: '', memory: true });
    const a = await world({}, store);
    Object.assign(a.config.idle, { activityFlushMs: 20, wakeTimeoutMs: 300 });
    const id = await sleeping(a);
    const b = await world({}, store);
    // Both replicas get a message at once; they share the store's compare-and-set (and, on Postgres, the event feed).
    await Promise.allSettled([a.svc.wake(id, 'a2a'), b.svc.wake(id, 'a2a')]);
    const wakes = (await a.bus.history({ workspaceId: id })).filter((e) => e.type === 'workspace.status' && e.data.reason === 'woken by A2A');
    expect(wakes).toHaveLength(1);
    await store.close();
  });
});
