import crypto from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { ProvisionError, type InstanceEvent } from '../../src/core/provisioner.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { waitFor } from '../support/harness.js';
import { agentHealthy } from '../support/instance.js';
import { flyctl, IMAGE, machinesOf, simWithProvisioners, spec, type Subject } from './support.js';

/**
 * The Fly provisioner against the simulator (real agent processes, Fly's rate limits on): what it sends, what it
 * does on every lifecycle path, and the outcome of every fault the simulator can inject.
 */
describe('Fly provisioner', () => {
  let sim: FlySim;
  const make = simWithProvisioners((s) => (sim = s));
  let main: Subject;

  beforeAll(() => {
    main = make();
  });

  const creates = (s: Subject) => s.recorded.filter((r) => r.method === 'POST' && /\/machines$/.test(r.path));

  it('sizes machines by tier (T1–T4, shared CPUs) and names and labels them', async () => {
    const s = make();
    const want = { 1: [1, 256], 2: [1, 512], 3: [2, 2048], 4: [4, 4096] } as const;
    for (const tier of [1, 2, 3, 4] as const) {
      const sp = spec({ tier });
      const h = await s.p.start(sp);
      const body = creates(s).pop()!.body as any;
      expect(body.config.guest).toEqual({ cpu_kind: 'shared', cpus: want[tier][0], memory_mb: want[tier][1] });
      expect(body.name).toBe(`ws-${sp.workspaceId.replace(/-/g, '').slice(0, 12)}`);
      expect(body.config.image).toBe(IMAGE);
      expect(body.config.env).toMatchObject({ ...sp.env, PORT: '8000' });
      expect(body.config.metadata).toEqual({
        molecule_workspace_id: sp.workspaceId,
        molecule_platform_id: s.p.platformId,
        molecule_provision_id: expect.stringMatching(/^[0-9a-f]{16}$/),
      });
      expect(body.config.services).toEqual([expect.objectContaining({ internal_port: 8000 })]);
      expect(body.config.restart).toEqual({ policy: 'on-failure', max_retries: 0 });
      expect(body.config.auto_destroy).toBe(false);
      expect(sim.machine(h.instanceId)).toMatchObject({ state: 'started', name: body.name });
      expect(h.details).toMatchObject({ machine_id: h.instanceId, name: body.name, region: 'ord', instance_version: expect.stringMatching(/^[0-9A-Z]{26}$/), private_ip: expect.stringMatching(/^fdaa:/), image: IMAGE });
      expect(h.headers).toEqual({ 'fly-force-instance-id': h.instanceId });
      expect(h.url).toBe(sim.proxyUrl);
      await waitFor('agent through the proxy', () => agentHealthy(h.url, h.headers), 30_000);
      await s.p.destroy(h.instanceId);
    }
  }, 120_000);

  it('reports the boot timeline through spec.progress', async () => {
    const steps: { step: string; data?: Record<string, unknown> }[] = [];
    const h = await main.p.start(spec({ progress: (step, data) => steps.push({ step, data }) }));
    expect(steps.map((x) => x.step)).toEqual(['machine created', 'machine started']);
    expect(steps[0].data).toMatchObject({ machine_id: h.instanceId, region: 'ord', instance_version: expect.any(String), elapsed_ms: expect.any(Number) });
    expect(steps[1].data).toMatchObject({ machine_id: h.instanceId, private_ip: expect.any(String), elapsed_ms: expect.any(Number) });
    await main.p.destroy(h.instanceId);
  });

  it('places machines in the workspace’s region, else FLY_REGION; refuses unknown regions before sending anything', async () => {
    const s = make({ region: 'ams' });
    expect(s.p.defaultRegion).toBe('ams');
    const a = await s.p.start(spec());
    const b = await s.p.start(spec({ region: 'syd' }));
    expect(sim.machine(a.instanceId)!.region).toBe('ams');
    expect(sim.machine(b.instanceId)!.region).toBe('syd');
    // Inside the machine, Fly's FLY_REGION says where it runs.
    const env = await (await fetch(new URL('/healthz', b.url!), { headers: b.headers })).json();
    expect(env.region).toBe('syd');

    expect(s.p.validate({ region: 'xyz', tier: 2, runtime: 'hermes' })).toMatch(/"xyz" is not a Fly region/);
    expect(s.p.validate({ region: 'lhr', tier: 2, runtime: 'hermes' })).toBeNull();
    expect(s.p.validate({ region: null, tier: 9, runtime: 'hermes' })).toMatch(/tier 9/);
    const sent = s.recorded.length;
    const e = await s.p.start(spec({ region: 'mars' })).catch((x) => x);
    expect(e).toBeInstanceOf(ProvisionError);
    expect(e.code).toBe('INVALID_CONFIG');
    expect(s.recorded.length).toBe(sent);
    await s.p.destroy(a.instanceId);
    await s.p.destroy(b.instanceId);
  });

  it('pauses with a lease (stop, wait for stopped with the version, release) and resumes', async () => {
    const s = make();
    const sp = spec();
    const h = await s.p.start(sp);
    const from = s.recorded.length;
    await s.p.stop(h.instanceId);
    expect(sim.machine(h.instanceId)!.state).toBe('stopped');
    const seq = s.recorded.slice(from).map((r) => `${r.method} ${r.path.replace(/^.*\/machines\/[0-9a-f]+/, '')}`);
    expect(seq).toEqual(['GET ', 'POST /lease', 'POST /stop', 'GET /wait', 'DELETE /lease']);
    const wait = s.recorded.slice(from).find((r) => r.path.endsWith('/wait'))!;
    expect(wait.query).toMatchObject({ state: 'stopped', version: h.details.instance_version });
    const stopLog = sim.requests({ app: s.app, action: 'stop' }).pop()!;
    const leaseLog = sim.requests({ app: s.app, action: 'lease_acquire' }).pop()!;
    expect(stopLog.leaseNonce).toBeTruthy();
    expect(leaseLog.status).toBe(201);
    expect(sim.machine(h.instanceId)!.leased).toBe(false);
    expect((await s.p.inspect(h.instanceId)).state).toBe('stopped');

    const r = await s.p.resume(h.instanceId, sp);
    expect(r.instanceId).toBe(h.instanceId);
    expect(sim.machine(h.instanceId)!.state).toBe('started');
    await waitFor('resumed agent', () => agentHealthy(r.url, r.headers), 30_000);
    await s.p.destroy(h.instanceId);
  });

  it('restart: POST /restart when nothing changed; an update when env or tier changed; a new machine when gone', async () => {
    const s = make();
    const sp = spec();
    const h = await s.p.start(sp);
    const pid = sim.machine(h.instanceId)!.pid;

    let from = s.recorded.length;
    const r1 = await s.p.restart(h.instanceId, sp);
    expect(r1.instanceId).toBe(h.instanceId);
    expect(s.recorded.slice(from).some((r) => r.path.endsWith('/restart'))).toBe(true);
    expect(s.recorded.slice(from).some((r) => r.method === 'POST' && r.path.endsWith(h.instanceId))).toBe(false);
    expect(sim.machine(h.instanceId)!.pid).not.toBe(pid);
    expect(r1.details.instance_version).toBe(h.details.instance_version);

    // A new secret and another tier: the config is replaced, so the change reaches the machine.
    const changed = { ...sp, tier: 3 as const, env: { ...sp.env, OPENAI_API_KEY: 'sk-new' } };
    from = s.recorded.length;
    const steps: string[] = [];
    const r2 = await s.p.restart(h.instanceId, { ...changed, progress: (step) => steps.push(step) });
    expect(r2.instanceId).toBe(h.instanceId);
    const update = s.recorded.slice(from).find((r) => r.method === 'POST' && r.path.endsWith(`/machines/${h.instanceId}`))!;
    expect(update).toBeTruthy();
    expect(s.recorded.slice(from).some((r) => r.path.endsWith('/restart'))).toBe(false);
    expect(steps).toContain('machine config updated');
    expect(sim.machine(h.instanceId)!.env.OPENAI_API_KEY).toBe('sk-new');
    expect(sim.machine(h.instanceId)!.state).toBe('started');
    expect(r2.details.instance_version).not.toBe(h.details.instance_version);
    expect(r2.details.guest).toEqual({ cpu_kind: 'shared', cpus: 2, memory_mb: 2048 });
    await waitFor('updated agent', () => agentHealthy(r2.url, r2.headers), 30_000);

    // A paused machine whose config changed: updated (stays stopped), then started.
    await s.p.stop(h.instanceId);
    const r3 = await s.p.resume(h.instanceId, { ...changed, env: { ...changed.env, OPENAI_API_KEY: 'sk-newer' } });
    expect(sim.machine(h.instanceId)).toMatchObject({ state: 'started', env: expect.objectContaining({ OPENAI_API_KEY: 'sk-newer' }) });
    expect(r3.instanceId).toBe(h.instanceId);

    // Destroyed behind our back: restart creates a new machine for the workspace.
    expect((await flyctl(sim, 'DELETE', `/v1/apps/${s.app}/machines/${h.instanceId}?force=true`)).status).toBe(200);
    await sim.waitForState(h.instanceId, 'destroyed');
    const r4 = await s.p.restart(h.instanceId, changed);
    expect(r4.instanceId).not.toBe(h.instanceId);
    expect(machinesOf(sim, s.app, sp.workspaceId).map((m) => m.id)).toEqual([r4.instanceId]);
    await s.p.destroy(r4.instanceId);
  }, 90_000);

  it('destroys with force and confirms; gone is success; waits out a lease someone else holds', async () => {
    const s = make();
    const h = await s.p.start(spec());
    await s.p.destroy(h.instanceId);
    const del = s.recorded.find((r) => r.method === 'DELETE' && r.path.endsWith(h.instanceId))!;
    expect(del.query).toEqual({ force: 'true' });
    expect(sim.machine(h.instanceId)?.state ?? 'gone').toMatch(/destroyed|gone/);
    expect((await s.p.inspect(h.instanceId)).state).toBe('gone');
    await s.p.destroy(h.instanceId); // again
    await s.p.destroy('00000000000000'); // never existed

    const h2 = await s.p.start(spec());
    const lease = await flyctl(sim, 'POST', `/v1/apps/${s.app}/machines/${h2.instanceId}/lease`, { ttl: 2 });
    expect(lease.status).toBe(201);
    await s.p.destroy(h2.instanceId);
    expect(sim.machine(h2.instanceId)?.state ?? 'gone').toMatch(/destroyed|gone/);
  });

  it('inspect maps Fly states, with reasons from the machine’s events', async () => {
    const s = make();
    const h = await s.p.start(spec());
    expect(await s.p.inspect(h.instanceId)).toEqual({ state: 'running' });
    process.kill(sim.machine(h.instanceId)!.pid!, 'SIGKILL');
    await sim.waitForState(h.instanceId, 'stopped');
    const st = await s.p.inspect(h.instanceId);
    expect(st).toMatchObject({ state: 'stopped', exitCode: 137 });
    expect(st.reason).toMatch(/exited with code 137.*SIGKILL/);
    expect((await s.p.inspect('00000000000000')).state).toBe('gone');
    // The API failing is "unknown", never a guess of gone.
    sim.faults.serverError('get', 20, 503, { machine: h.instanceId });
    const u = await make({ retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 10 } }).p.inspect(h.instanceId);
    sim.faults.clear();
    expect(u.state).toBe('unknown');
    await s.p.destroy(h.instanceId);
  });

  it('lists only this platform’s machines, all states', async () => {
    const a = make();
    const b = make({ app: a.app }); // same app, another platform
    const ha = await a.p.start(spec());
    const hs = await a.p.start(spec());
    await a.p.stop(hs.instanceId);
    const hb = await b.p.start(spec());
    const la = await a.p.list();
    expect(la.map((o) => o.instanceId).sort()).toEqual([ha.instanceId, hs.instanceId].sort());
    expect(la.find((o) => o.instanceId === hs.instanceId)!.state).toBe('stopped');
    expect((await b.p.list()).map((o) => o.instanceId)).toEqual([hb.instanceId]);
    for (const [p, h] of [[a, ha], [a, hs], [b, hb]] as const) await p.p.destroy(h.instanceId);
  });

  describe('watch', () => {
    it('reports a machine that stops on its own (a crash, an operator), never its own stops; ignores Fly’s own restarts', async () => {
      const s = make({ watchIntervalMs: 500 });
      const events: InstanceEvent[] = [];
      s.p.watch((e) => events.push(e));
      const sp = spec();
      const h = await s.p.start(sp);
      process.kill(sim.machine(h.instanceId)!.pid!, 'SIGKILL');
      const ev = await waitFor('crash event', async () => events.find((e) => e.instanceId === h.instanceId), 15_000);
      expect(ev).toMatchObject({ workspaceId: sp.workspaceId, state: 'stopped', exitCode: 137 });
      expect(ev.reason).toMatch(/137/);

      await s.p.restart(h.instanceId, sp);
      const n = events.length;
      // An operator stops it with the API (flyctl machine stop).
      expect((await flyctl(sim, 'POST', `/v1/apps/${s.app}/machines/${h.instanceId}/stop`, {})).status).toBe(200);
      const op = await waitFor('operator stop event', async () => events.slice(n).find((e) => e.instanceId === h.instanceId), 15_000);
      expect(op.reason).toMatch(/stopped through the Fly API/);

      // Our own stop and destroy: silence.
      const h2 = await s.p.start(spec());
      const m = events.length;
      await s.p.stop(h2.instanceId);
      await s.p.resume(h2.instanceId, spec({ workspaceId: sim.machine(h2.instanceId)!.metadata.molecule_workspace_id }));
      await s.p.destroy(h2.instanceId);
      // Destroyed behind our back: gone.
      const h3 = await s.p.start(spec());
      await flyctl(sim, 'DELETE', `/v1/apps/${s.app}/machines/${h3.instanceId}?force=true`);
      const gone = await waitFor('gone event', async () => events.slice(m).find((e) => e.instanceId === h3.instanceId), 15_000);
      expect(gone.state).toBe('gone');
      expect(events.slice(m).filter((e) => e.instanceId === h2.instanceId)).toEqual([]);

      // With Fly's restart policy allowed to retry, a crash is absorbed by Fly and is not news.
      const f = make({ watchIntervalMs: 500, restartMaxRetries: 2 });
      const fe: InstanceEvent[] = [];
      f.p.watch((e) => fe.push(e));
      const hf = await f.p.start(spec());
      const pid = sim.machine(hf.instanceId)!.pid!;
      process.kill(pid, 'SIGKILL');
      await waitFor('Fly restarted it', async () => sim.machine(hf.instanceId)!.state === 'started' && sim.machine(hf.instanceId)!.pid !== pid, 15_000);
      const seen = sim.requests({ app: f.app, action: 'list' }).length;
      await waitFor('two more watch polls', async () => sim.requests({ app: f.app, action: 'list' }).length >= seen + 2, 10_000);
      expect(fe).toEqual([]);
      await f.p.destroy(hf.instanceId);
    }, 90_000);

    it('adopt arms machines that are running, for a platform that restarted', async () => {
      const a = make();
      const sp = spec();
      const h = await a.p.start(sp);
      await a.p.close();
      const b = make({ app: a.app, platformId: a.p.platformId, watchIntervalMs: 500 });
      const events: InstanceEvent[] = [];
      b.p.watch((e) => events.push(e));
      expect((await b.p.list()).map((o) => o.instanceId)).toEqual([h.instanceId]);
      await b.p.adopt([{ workspaceId: sp.workspaceId, instanceId: h.instanceId }]);
      process.kill(sim.machine(h.instanceId)!.pid!, 'SIGKILL');
      const ev = await waitFor('event for the adopted machine', async () => events.find((e) => e.instanceId === h.instanceId), 15_000);
      expect(ev.workspaceId).toBe(sp.workspaceId);
      await b.p.destroy(h.instanceId);
    });
  });

  describe('faults', () => {
    it('429 bursts and 5xx on every action are recovered transparently', async () => {
      const s = make();
      const sp = spec();
      sim.faults.rateLimit('create', 2, { app: s.app });
      sim.faults.rateLimit('list', 2, { app: s.app });
      sim.faults.serverError('create', 1, 502, { app: s.app });
      const h = await s.p.start(sp);
      expect(machinesOf(sim, s.app, sp.workspaceId)).toHaveLength(1);
      sim.faults.rateLimit('*', 3, { machine: h.instanceId });
      sim.faults.serverError('*', 3, 503, { machine: h.instanceId });
      await s.p.stop(h.instanceId);
      sim.faults.serverError('start', 2, 500, { machine: h.instanceId });
      sim.faults.rateLimit('wait', 2, { machine: h.instanceId });
      await s.p.resume(h.instanceId, sp);
      sim.faults.serverError('destroy', 2, 504, { machine: h.instanceId });
      await s.p.destroy(h.instanceId);
      expect(sim.requests({ app: s.app }).filter((r) => r.status === 429 || r.status >= 500).length).toBeGreaterThanOrEqual(15);
      expect(machinesOf(sim, s.app, sp.workspaceId)).toHaveLength(0);
    });

    it('a 408 on create that still created the machine: exactly one machine', async () => {
      const s = make();
      const sp = spec();
      sim.faults.createTimeout(1, { app: s.app });
      const h = await s.p.start(sp);
      const listed = await flyctl(sim, 'GET', `/v1/apps/${s.app}/machines?metadata.molecule_workspace_id=${sp.workspaceId}`);
      expect(listed.body.map((m: { id: string }) => m.id)).toEqual([h.instanceId]);
      expect(sim.requests({ app: s.app, action: 'create' }).map((r) => r.status)).toEqual([408]);
      await waitFor('agent', () => agentHealthy(h.url, h.headers), 30_000);
      await s.p.destroy(h.instanceId);
    });

    it('an unpullable image: ProvisionError IMAGE_NOT_FOUND with the machine’s event text, and no machine left', async () => {
      const s = make();
      const sp = spec({ image: 'ghcr.io/molecule-ai/workspace-nope:latest' });
      const id = sim.faults.unpullable('ghcr.io/molecule-ai/workspace-nope');
      const e = await s.p.start(sp).catch((x) => x);
      sim.faults.clear(id);
      expect(e).toBeInstanceOf(ProvisionError);
      expect(e.code).toBe('IMAGE_NOT_FOUND');
      expect(e.message).toMatch(/failed to pull image ghcr\.io\/molecule-ai\/workspace-nope:latest: manifest unknown/);
      await waitFor('failed machine destroyed', async () => machinesOf(sim, s.app, sp.workspaceId).length === 0, 10_000);
    });

    it('no capacity (503 in a region, 409 host memory): ProvisionError CAPACITY with Fly’s message, create not retried', async () => {
      const s = make();
      const id = sim.faults.insufficientCapacity('fra');
      const e = await s.p.start(spec({ region: 'fra' })).catch((x) => x);
      sim.faults.clear(id);
      expect(e).toBeInstanceOf(ProvisionError);
      expect(e.code).toBe('CAPACITY');
      expect(e.message).toMatch(/^insufficient resources to create machine in region fra: could not find a candidate host/);
      expect(sim.requests({ app: s.app, action: 'create' })).toHaveLength(1);

      sim.faults.insufficientMemory('create', 1, { app: s.app });
      const e2 = await s.p.start(spec()).catch((x) => x);
      expect(e2.code).toBe('CAPACITY');
      expect(e2.message).toMatch(/insufficient memory/);
      expect(sim.machines(s.app)).toHaveLength(0);
    });

    it('a slow boot still starts; a boot slower than the start deadline fails cleanly', async () => {
      const s = make();
      sim.faults.slowBoot(2500);
      try {
        const t0 = Date.now();
        const h = await s.p.start(spec());
        expect(Date.now() - t0).toBeGreaterThanOrEqual(2500);
        expect(sim.machine(h.instanceId)!.state).toBe('started');
        await s.p.destroy(h.instanceId);

        const quick = make({ startTimeoutMs: 1200 });
        const sp = spec();
        const e = await quick.p.start(sp).catch((x) => x);
        expect(e).toBeInstanceOf(ProvisionError);
        expect(e.code).toBe('START_FAILED');
        expect(e.message).toMatch(/did not reach started within 1 s/);
        await waitFor('slow machine destroyed', async () => machinesOf(sim, quick.app, sp.workspaceId).length === 0, 10_000);
      } finally {
        sim.faults.slowBoot(0);
      }
    });

    it('Fly refusing the config is INVALID_CONFIG with Fly’s message', async () => {
      const s = make();
      sim.faults.add({ kind: 'status', action: 'create', status: 400, count: 1, app: s.app, error: 'invalid config.guest.memory_mb, cannot exceed 2048 MiB' });
      const e = await s.p.start(spec()).catch((x) => x);
      expect(e.code).toBe('INVALID_CONFIG');
      expect(e.message).toMatch(/^invalid config\.guest\.memory_mb, cannot exceed 2048 MiB/);
    });
  });

  it('logs: the simulator’s log endpoint, tail and follow', async () => {
    const h = await main.p.start(spec());
    const lines: string[] = [];
    for await (const l of main.p.logs(h.instanceId, { tail: 5 })) lines.push(l);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(5);
    expect(lines.join('\n')).toMatch(new RegExp(`app\\[${h.instanceId}\\]`));
    const ac = new AbortController();
    const followed: string[] = [];
    const done = (async () => {
      for await (const l of main.p.logs(h.instanceId, { tail: 0, follow: true, signal: ac.signal })) {
        followed.push(l);
        if (/restart/.test(l)) ac.abort();
      }
    })();
    await main.p.restart(h.instanceId, spec({ workspaceId: sim.machine(h.instanceId)!.metadata.molecule_workspace_id }));
    await waitFor('a followed line about the restart', async () => followed.some((l) => /restart/.test(l)), 10_000);
    ac.abort();
    await done;
    await main.p.destroy(h.instanceId);
    const after: string[] = [];
    for await (const l of main.p.logs(h.instanceId, {})) after.push(l);
    expect(after.join('\n')).toMatch(/no longer exists|\S/);
  });

  it('describes itself without the token', () => {
    const d = main.p.describe();
    expect(d).toMatchObject({ name: 'flyio', app: main.app, region: 'ord', api_base: sim.url, platform_id: main.p.platformId });
    expect(JSON.stringify(d)).not.toContain(sim.token);
  });

  it('sends only spec-valid bodies through a whole lifecycle (create, stop, resume, update, restart, destroy)', async () => {
    const s = make();
    const sp = spec();
    const h = await s.p.start(sp);
    await s.p.stop(h.instanceId);
    await s.p.resume(h.instanceId, { ...sp, env: { ...sp.env, NEW_SECRET: 'x' } });
    await s.p.restart(h.instanceId, { ...sp, env: { ...sp.env, NEW_SECRET: 'x' } });
    await s.p.destroy(h.instanceId);
    const kinds = new Set(s.recorded.filter((r) => r.body !== undefined).map((r) => `${r.method} ${r.path.replace(/^.*\/machines/, '')}`.replace(/[0-9a-f]{14}/, '{id}')));
    expect([...kinds].sort()).toEqual(['POST ', 'POST /{id}', 'POST /{id}/lease', 'POST /{id}/stop'].sort());
    expect(s.violations).toEqual([]);
  });
});
