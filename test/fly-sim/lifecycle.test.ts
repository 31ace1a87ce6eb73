import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { createMachine, IMAGE, machinePaths, pidAlive, SERVICES, until, viaProxy, waitFor, withTestSim, type Api } from './helpers.js';

let sim: FlySim;
let api: Api;
const APP = 'life';
const M = machinePaths(APP);

withTestSim((s, a) => ([sim, api] = [s, a]));

async function started(body: Record<string, any> = {}): Promise<any> {
  const m = await createMachine(api, APP, { ...body, config: { image: IMAGE, services: SERVICES, ...(body.config ?? {}) } });
  const w = await waitFor(api, APP, m.id, 'started');
  expect(w.status, w.text).toBe(200);
  return (await api.get(M(m.id))).body;
}

const TIMEOUT_TEXT = 'invalid_argument: invalid WaitMachineRequest.Timeout: value must be inside range [1s, 1m0s]';

describe('wait (reference §5)', () => {
  it('accepts timeout 1..60 integer seconds only, with the exact 400 text', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    for (const t of ['0', '61', '-1', 'abc', '1.5', '10s']) {
      const r = await api.get(M(m.id, `/wait?state=settled&timeout=${t}`));
      expect(r.status, t).toBe(400);
      expect(r.body).toEqual({ error: TIMEOUT_TEXT });
    }
    for (const t of ['1', '60']) expect((await api.get(M(m.id, `/wait?state=settled&timeout=${t}`))).status).toBe(200);
  });

  it('requires version (or instance_id) to wait for stopped', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    for (const q of ['state=stopped', 'state=started,stopped', 'state=started&state=stopped']) {
      const r = await api.get(M(m.id, `/wait?${q}&timeout=1`));
      expect(r.status, q).toBe(400);
      expect(r.body).toEqual({ error: 'instance_id required when waiting for stopped machine' });
    }
    expect((await api.post(M(m.id, '/stop'))).status).toBe(200);
    const byInstance = await api.get(M(m.id, `/wait?state=stopped&instance_id=${m.instance_id}&timeout=5`));
    expect(byInstance.status).toBe(200);
    expect(byInstance.body).toMatchObject({ ok: true, state: 'stopped', version: m.version });
    expect(byInstance.body.event_id).toMatch(/^[0-9A-Z]{26}$/);
    expect((await api.get(M(m.id, `/wait?state=stopped&version=${m.version}&timeout=5`))).status).toBe(200);
  });

  it('answers 408 with the deadline_exceeded text when the state does not come', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const t0 = Date.now();
    const r = await api.get(M(m.id, '/wait?state=started&timeout=1'));
    expect(r.status).toBe(408);
    expect(r.body).toEqual({ error: 'deadline_exceeded: machine failed to reach desired state, started, currently created' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const two = await api.get(M(m.id, '/wait?state=started,suspended&timeout=1'));
    expect(two.body).toEqual({ error: 'deadline_exceeded: machine failed to reach desired state, started,suspended, currently created' });
  });

  it('takes repeated and comma-separated states, and settled', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const settled = await api.get(M(m.id, '/wait?state=settled&timeout=5'));
    expect(settled.body).toMatchObject({ ok: true, state: 'created' });
    expect((await api.post(M(m.id, '/start'))).status).toBe(200);
    const rep = await api.get(M(m.id, '/wait?state=suspended&state=started&timeout=30'));
    expect(rep.status).toBe(200);
    expect(rep.body.state).toBe('started');
    const comma = await api.get(M(m.id, '/wait?state=failed,started&timeout=5'));
    expect(comma.body.state).toBe('started');
    // default state is started
    expect((await api.get(M(m.id, '/wait?timeout=5'))).body.state).toBe('started');
  });

  it('rejects unknown states and answers 404 for an unknown machine', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    const bad = await api.get(M(m.id, '/wait?state=running&timeout=1'));
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^invalid_argument: invalid WaitMachineRequest.State/);
    const unknown = await api.get(M('0123456789abcd', '/wait?state=started&timeout=1'));
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: 'machine not found' });
  });

  it('scopes to a version: a replaced version counts as stopped, not as started', async () => {
    const m = await started();
    const u = await api.post(M(m.id), { config: { ...m.config, env: { V: '2' } } });
    expect(u.status).toBe(200);
    const v2 = u.body.version;
    expect(v2).not.toBe(m.version);
    const old = await api.get(M(m.id, `/wait?state=stopped&version=${m.version}&timeout=5`));
    expect(old.status).toBe(200);
    expect(old.body).toMatchObject({ ok: true, state: 'replaced', version: m.version });
    expect((await api.get(M(m.id, `/wait?state=started&version=${m.version}&timeout=1`))).status).toBe(400);
    const cur = await api.get(M(m.id, `/wait?state=started&version=${v2}&timeout=30`));
    expect(cur.status).toBe(200);
    expect(cur.body.version).toBe(v2);
    expect((await api.get(M(m.id, '/wait?state=started&version=01ARZ3NDEKTSV4RRFFQ69G5FAV&timeout=1'))).status).toBe(400);
  });

  it('from_event_id waits for a transition after that event', async () => {
    const m = await started();
    const latest = (await api.get(M(m.id, '/events?limit=1'))).body[0].id;
    const none = await api.get(M(m.id, `/wait?state=started&from_event_id=${latest}&timeout=1`));
    expect(none.status).toBe(408);
    expect((await api.post(M(m.id, '/restart'))).status).toBe(200);
    const after = await api.get(M(m.id, `/wait?state=started&from_event_id=${latest}&timeout=30`));
    expect(after.status).toBe(200);
    expect(after.body.event_id > latest).toBe(true);
  });
});

describe('preconditions (reference §4) with Fly\'s windows', () => {
  let slow: FlySim;
  let sapi: Api;
  withTestSim(
    (s, a) => {
      slow = s;
      sapi = a;
    },
    { timing: { launchDelayMs: 2500, stillActiveMs: 3000, replacingMs: 2500 } },
  );

  it("start right after create: 412 unable to start machine from current state: 'created'", async () => {
    const m = await createMachine(sapi, 'pre', { config: { image: IMAGE } });
    const r = await sapi.post(`/v1/apps/pre/machines/${m.id}/start`);
    expect(r.status).toBe(412);
    expect(r.body).toEqual({ error: "failed_precondition: unable to start machine from current state: 'created'" });
    expect((await waitFor(sapi, 'pre', m.id, 'started')).status).toBe(200);
    const again = await sapi.post(`/v1/apps/pre/machines/${m.id}/start`);
    expect(again.status).toBe(412);
    expect(again.body).toEqual({ error: "failed_precondition: unable to start machine from current state: 'started'" });
  });

  it('start during replacing: 412 machine getting replaced; right after stop: 412 machine still active', async () => {
    const m = await createMachine(sapi, 'pre', { skip_launch: true, config: { image: IMAGE } });
    expect((await sapi.post(`/v1/apps/pre/machines/${m.id}/start`)).status).toBe(200);
    expect((await waitFor(sapi, 'pre', m.id, 'started')).status).toBe(200);
    const u = await sapi.post(`/v1/apps/pre/machines/${m.id}`, { config: { image: IMAGE, env: { X: '1' } } });
    expect(u.body.state).toBe('replacing');
    const r = await sapi.post(`/v1/apps/pre/machines/${m.id}/start`);
    expect(r.status).toBe(412);
    expect(r.body).toEqual({ error: 'failed_precondition: machine getting replaced, refusing to start' });
    expect((await waitFor(sapi, 'pre', m.id, 'started')).status).toBe(200);

    expect((await sapi.post(`/v1/apps/pre/machines/${m.id}/stop`)).status).toBe(200);
    expect((await waitFor(sapi, 'pre', m.id, 'stopped')).status).toBe(200);
    const active = await sapi.post(`/v1/apps/pre/machines/${m.id}/start`);
    expect(active.status).toBe(412);
    expect(active.body).toEqual({ error: 'failed_precondition: machine still active, refusing to start' });
    // retrying a little later works (what a client is expected to do)
    const ok = await until(async () => {
      const s = await sapi.post(`/v1/apps/pre/machines/${m.id}/start`);
      return s.status === 200 ? s : null;
    }, 'start to be accepted after the still-active window', 15_000, 200);
    expect(ok.body).toEqual({ previous_state: 'stopped', migrated: false, new_host: '' });
  });

  it('destroy needs force unless stopped/suspended/failed/created; suspend and restart need started', async () => {
    const m = await createMachine(sapi, 'pre', { config: { image: IMAGE } });
    expect((await waitFor(sapi, 'pre', m.id, 'started')).status).toBe(200);
    const d = await sapi.del(`/v1/apps/pre/machines/${m.id}`);
    expect(d.status).toBe(412);
    expect(d.body).toEqual({ error: 'failed_precondition: unable to destroy machine, not currently stopped, suspended, failed or created' });
    expect((await sapi.del(`/v1/apps/pre/machines/${m.id}?force=true`)).body).toEqual({ ok: true });
    const c = await createMachine(sapi, 'pre', { skip_launch: true, config: { image: IMAGE } });
    const s = await sapi.post(`/v1/apps/pre/machines/${c.id}/suspend`);
    expect(s.status).toBe(412);
    expect(s.body).toEqual({ error: "failed_precondition: unable to suspend machine from current state: 'created'" });
    const r = await sapi.post(`/v1/apps/pre/machines/${c.id}/restart`);
    expect(r.status).toBe(412);
    expect(r.body).toEqual({ error: "failed_precondition: unable to restart machine from current state: 'created'" });
    expect((await sapi.del(`/v1/apps/pre/machines/${c.id}`)).status).toBe(200);
  });
});

describe('flows', () => {
  it('stop → stopped (SIGTERM, exit event), start → started with a new process', async () => {
    const m = await started();
    const pid1 = sim.machine(m.id)!.pid!;
    expect(pidAlive(pid1)).toBe(true);
    expect((await api.post(M(m.id, '/stop'))).body).toEqual({ ok: true });
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
    expect(pidAlive(pid1)).toBe(false);
    const ev = (await api.get(M(m.id, '/events'))).body;
    expect(ev[0]).toMatchObject({ type: 'exit', status: 'stopped', source: 'flyd' });
    expect(ev[0].request.exit_event).toMatchObject({ exit_code: 0, requested_stop: true, oom_killed: false, restarting: false });
    expect(ev[1]).toMatchObject({ type: 'stop', status: 'stopping', source: 'user' });
    expect(sim.logs(m.id).some((l) => l.message === 'fixture-agent: SIGTERM, shutting down')).toBe(true);
    const s = await api.post(M(m.id, '/start'));
    expect(s.body).toEqual({ previous_state: 'stopped', migrated: false, new_host: '' });
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
    const pid2 = sim.machine(m.id)!.pid!;
    expect(pid2).not.toBe(pid1);
    expect((await viaProxy(sim, m.id, '/healthz')).status).toBe(200);
  });

  it('stop takes an object body or none; an array is 400 with Fly\'s text', async () => {
    const m = await started();
    const arr = await api.post(M(m.id, '/stop'), []);
    expect(arr.status).toBe(400);
    expect(arr.body).toEqual({ error: 'json: cannot unmarshal array into Go value of type main.stopRequest' });
    expect((await api.post(M(m.id, '/stop'), { signal: 'SIGINT', timeout: '5s' })).status).toBe(200);
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
  });

  it('escalates to SIGKILL after the stop timeout when SIGTERM is ignored', async () => {
    const m = await started({ config: { env: { FIXTURE_IGNORE_SIGTERM: '1' }, stop_config: { timeout: '1s' } } });
    const t0 = Date.now();
    expect((await api.post(M(m.id, '/stop'))).status).toBe(200);
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const exit = (await api.get(M(m.id, '/events?limit=1'))).body[0].request.exit_event;
    expect(exit).toMatchObject({ exit_code: 137, signal: 9, requested_stop: true });
    expect(sim.logs(m.id).some((l) => l.message === 'fixture-agent: ignoring SIGTERM')).toBe(true);
  });

  it('suspend freezes the process (SIGSTOP) and start resumes the same process (SIGCONT)', async () => {
    const m = await started();
    const pid = sim.machine(m.id)!.pid!;
    expect((await (await viaProxy(sim, m.id, '/tick')).json()).ticks).toBe(1);
    expect((await api.post(M(m.id, '/suspend'))).body).toEqual({ ok: true });
    expect((await waitFor(api, APP, m.id, 'suspended')).status).toBe(200);
    if (existsSync(`/proc/${pid}/stat`)) {
      const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      expect(state).toBe('T');
    }
    expect((await viaProxy(sim, m.id, '/tick')).status).toBe(503);
    const s = await api.post(M(m.id, '/start'));
    expect(s.body.previous_state).toBe('suspended');
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
    expect(sim.machine(m.id)!.pid).toBe(pid);
    const t = await (await viaProxy(sim, m.id, '/tick')).json();
    expect(t).toEqual({ ticks: 2, pid }); // memory kept
  });

  it('suspend of a machine over 2 GB falls back to stop', async () => {
    const m = await started({ config: { guest: { cpu_kind: 'shared', cpus: 2, memory_mb: 4096 } } });
    expect((await api.post(M(m.id, '/suspend'))).status).toBe(200);
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
  });

  it('restart runs a new process; force_stop kills at once', async () => {
    const m = await started({ config: { env: { FIXTURE_IGNORE_SIGTERM: '1' } } });
    const pid1 = sim.machine(m.id)!.pid!;
    const t0 = Date.now();
    expect((await api.post(M(m.id, '/restart?force_stop=true'))).body).toEqual({ ok: true });
    const w = await api.get(M(m.id, '/wait?state=started&timeout=30'));
    // restarting happened synchronously, so this wait sees the new start
    expect(w.status).toBe(200);
    const pid2 = await until(() => sim.machine(m.id)?.pid, 'a new pid');
    expect(pid2).not.toBe(pid1);
    expect(pidAlive(pid1)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(9000); // no 10 s stop timeout was waited
    const types = (await api.get(M(m.id, '/events?limit=3'))).body.map((e: any) => `${e.type}/${e.status}/${e.source}`);
    expect(types).toEqual(['start/started/flyd', 'start/starting/flyd', 'restart/restarting/user']);
    const sig = await api.post(M(m.id, '/restart?signal=SIGKILL&timeout=5'));
    expect(sig.status).toBe(200);
    expect((await api.post(M('0123456789abcd', '/restart'))).status).toBe(404);
  });

  it('update mints a version, passes through replacing, keeps running with the new config', async () => {
    const m = await started({ config: { env: { A: '1' } } });
    const u = await api.post(M(m.id), { config: { ...m.config, env: { A: '2' } }, current_version: m.version });
    expect(u.status).toBe(200);
    expect(u.body.state).toBe('replacing');
    expect(u.body.version).toMatch(/^[0-9A-Z]{26}$/);
    expect(u.body.version).not.toBe(m.version);
    expect(u.body.instance_id).toBe(u.body.version);
    expect((await api.get(M(m.id, `/wait?state=started&version=${u.body.version}&timeout=30`))).status).toBe(200);
    const env = await (await viaProxy(sim, m.id, '/env')).json();
    expect(env.A).toBe('2');
    expect(env.FLY_MACHINE_VERSION).toBe(u.body.version);
    const events = (await api.get(M(m.id, '/events'))).body.map((e: any) => `${e.type}/${e.status}`);
    expect(events).toContain('update/replacing');
    const versions = (await api.get(M(m.id, '/versions'))).body;
    expect(versions.map((v: any) => v.version)).toEqual([u.body.version, m.version]);
    expect(versions[0].user_config.env).toEqual({ A: '2' });
    const stale = await api.post(M(m.id), { config: m.config, current_version: m.version });
    expect(stale.status).toBe(412);
    const immutable = await api.post(M(m.id), { config: m.config, region: 'fra' });
    expect(immutable.status).toBe(400);
  });

  it('update leaves a stopped machine stopped, and skip_launch leaves it created', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    expect((await api.post(M(m.id, '/stop'))).status).toBe(200);
    const u = await api.post(M(m.id), { config: { image: IMAGE, env: { B: '1' } } });
    expect(u.body.state).toBe('replacing');
    expect((await api.get(M(m.id, `/wait?state=stopped&version=${u.body.version}&timeout=10`))).body.state).toBe('stopped');
    const s = await api.post(M(m.id), { config: { image: IMAGE }, skip_launch: true });
    expect((await api.get(M(m.id, `/wait?state=settled&version=${s.body.version}&timeout=10`))).body.state).toBe('created');
    // a created machine made by an update can be started
    expect((await api.post(M(m.id, '/start'))).status).toBe(200);
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
  });

  it('destroy: the process dies, destroyed is visible briefly, then 404', async () => {
    const m = await started();
    const pid = sim.machine(m.id)!.pid!;
    expect((await api.del(M(m.id, '?force=true'))).body).toEqual({ ok: true });
    const w = await api.get(M(m.id, '/wait?state=destroyed&timeout=10'));
    expect(w.body).toMatchObject({ ok: true, state: 'destroyed' });
    expect(pidAlive(pid)).toBe(false);
    const g = await api.get(M(m.id));
    if (g.status === 200) expect(g.body.state).toBe('destroyed');
    await until(async () => (await api.get(M(m.id))).status === 404, 'GET to answer 404 after destroy', 10_000, 50);
    expect((await api.get(M(m.id))).body).toEqual({ error: 'machine not found' });
    const listed = (await api.get(`/v1/apps/${APP}/machines?include_deleted=true`)).body.find((x: any) => x.id === m.id);
    expect(listed.state).toBe('destroyed');
    expect(listed.events.slice(0, 2).map((e: any) => `${e.type}/${e.status}/${e.source}`)).toEqual(['destroy/destroyed/flyd', 'destroy/destroying/user']);
    expect((await api.del(M(m.id))).status).toBe(404);
  });

  it('signal delivers by name or number; the restart policy then decides', async () => {
    const m = await started({ config: { restart: { policy: 'no' } } });
    const bad = await api.post(M(m.id, '/signal'), { signal: 'SIGNOPE' });
    expect(bad.status).toBe(400);
    expect((await api.post(M(m.id, '/signal'), { signal: 9 })).body).toEqual({ ok: true });
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
    const exit = (await api.get(M(m.id, '/events?limit=1'))).body[0];
    expect(exit.type).toBe('exit');
    expect(exit.request.exit_event).toMatchObject({ exit_code: 137, signal: 9, requested_stop: false, restarting: false });
    const notRunning = await api.post(M(m.id, '/signal'), { signal: 'SIGTERM' });
    expect(notRunning.status).toBe(412);
  });

  it('cordon and uncordon flip cordoned without a state change', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    expect((await api.post(M(m.id, '/cordon'))).body).toEqual({ ok: true });
    expect((await api.get(M(m.id))).body).toMatchObject({ cordoned: true, state: 'created' });
    expect((await api.post(M(m.id, '/uncordon'))).body).toEqual({ ok: true });
    expect((await api.get(M(m.id))).body.cordoned).toBe(false);
  });

  it('metadata: upsert and delete answer 204 and mint no version; replace checks machine_version', async () => {
    const m = await createMachine(api, APP, { skip_launch: true, config: { image: IMAGE, metadata: { a: '1' } } });
    const set = await api.post(M(m.id, '/metadata/team'), { value: 'blue' });
    expect(set.status).toBe(204);
    expect(set.text).toBe('');
    expect((await api.get(M(m.id, '/metadata'))).body).toEqual({ a: '1', team: 'blue' });
    expect((await api.get(M(m.id, '/metadata/team'))).body).toEqual({ value: 'blue' });
    expect((await api.get(M(m.id, '/metadata/none'))).status).toBe(404);
    expect((await api.post(M(m.id, '/metadata/team'), { value: 5 })).status).toBe(400);
    expect((await api.del(M(m.id, '/metadata/a'))).status).toBe(204);
    const after = (await api.get(M(m.id))).body;
    expect(after.version).toBe(m.version);
    expect(after.config.metadata).toEqual({ team: 'blue' });
    expect((await api.get(`/v1/apps/${APP}/machines?metadata.team=blue`)).body.map((x: any) => x.id)).toContain(m.id);
    const stale = await api.req('PUT', M(m.id, '/metadata'), { metadata: { x: 'y' }, machine_version: '01ARZ3NDEKTSV4RRFFQ69G5FAV' });
    expect(stale.status).toBe(412);
    expect((await api.req('PUT', M(m.id, '/metadata'), { metadata: { x: 'y' }, machine_version: m.version })).status).toBe(204);
    expect((await api.get(M(m.id, '/metadata'))).body).toEqual({ x: 'y' });
  });

  it('events come newest first, limited (default 20, at most 50)', async () => {
    const m = await started();
    for (let i = 0; i < 12; i++) {
      await api.post(M(m.id, i % 2 ? '/uncordon' : '/cordon'));
      await api.post(M(m.id, '/restart?force_stop=true'));
      expect((await api.get(M(m.id, '/wait?state=started&timeout=30'))).status).toBe(200);
    }
    const all = (await api.get(M(m.id, '/events'))).body;
    expect(all).toHaveLength(20);
    const ts = all.map((e: any) => e.timestamp);
    expect([...ts].sort((a: number, b: number) => b - a)).toEqual(ts);
    expect(all.map((e: any) => e.id)).toEqual([...all.map((e: any) => e.id)].sort().reverse());
    expect((await api.get(M(m.id, '/events?limit=3'))).body).toHaveLength(3);
    expect((await api.get(M(m.id, '/events?limit=500'))).body.length).toBeLessThanOrEqual(50);
    expect((await api.get(M(m.id, '/events?limit=500'))).body.length).toBeGreaterThan(20);
  });
});
