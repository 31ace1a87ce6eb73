import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFlySim, type FlySim } from '../../tools/fly-sim/index.js';
import { api, launchPlatform, processEnv, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { runSeedSteps } from '../support/seed.js';

/**
 * The seed page as a user meets it with CONTAINER_BACKEND=flyio: the platform as its own process (`npm start`),
 * the Fly Machines API simulator (real agent processes, Fly's rate limits on) in place of Fly, the seed's curl
 * steps as written — then every lifecycle path, and a platform killed in the middle of provisioning.
 */
// One story, told in order: each step starts where the previous one left the workspace (never shuffled).
describe('flyio backend, end to end (Fly Machines API simulator)', { shuffle: false }, () => {
  const dataDir = tempDir('e2e-flyio');
  const APP = 'my-molecule-workspaces';
  let sim: FlySim;
  let platform: PlatformProcess;
  let http: Api;
  let ws: string;

  const flyEnv = () => ({
    CONTAINER_BACKEND: 'flyio',
    FLY_WORKSPACE_APP: APP,
    ...sim.env,
    MOLECULE_RECONCILE_INTERVAL_S: '2',
  });
  const get = async (id = ws) => (await http.call('GET', `/workspaces/${id}`)).body;
  const status = async (id = ws) => (await get(id))?.status;
  const machineOf = async (id = ws) => (await get(id)).instance?.id as string;
  const ask = (text: string, id = ws) =>
    http.call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: 'q', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text }] } } });
  const events = async (id = ws) => (await http.call('GET', `/workspaces/${id}/events`)).body as any[];
  /** What `flyctl machines list --app $FLY_WORKSPACE_APP` shows: the simulator's list endpoint. */
  const flyList = async (query = '') => {
    // The platform's reconcile shares the list bucket (1 req/s, burst 3); like flyctl, back off on 429.
    let r: Response;
    for (let attempt = 0; ; attempt++) {
      r = await fetch(`${sim.url}/v1/apps/${APP}/machines${query}`, { headers: { authorization: `Bearer ${sim.token}` } });
      if (r.status !== 429 || attempt >= 10) break;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(r.status).toBe(200);
    return (await r.json()) as any[];
  };
  const liveMachinesOf = (workspaceId: string) =>
    sim.machines(APP).filter((m) => m.metadata.molecule_workspace_id === workspaceId && m.state !== 'destroyed' && m.state !== 'destroying');

  beforeAll(async () => {
    sim = await startFlySim({});
    platform = await launchPlatform({ dataDir, env: flyEnv() });
    http = api(platform.url);
  });

  afterAll(async () => {
    await platform?.stop();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the seed walkthrough steps 3 and 4 as written; step 5 (the machine list) shows the machine', async () => {
    const run = await runSeedSteps([3, 4], platform.port);
    expect(run.code, run.stderr).toBe(0);
    const health = JSON.parse(run.stdout.slice(0, run.stdout.indexOf('\nWorkspace ID:')));
    expect(health).toMatchObject({ status: 'ok', backend: { name: 'flyio', app: APP, region: 'ord', api_base: sim.url }, database: { kind: 'sqlite' } });
    ws = run.stdout.match(/Workspace ID: ([0-9a-f-]{36})/)![1];

    // Step 5, `flyctl machines list --app $FLY_WORKSPACE_APP`: the machine appears and reaches started.
    const name = `ws-${ws.replace(/-/g, '').slice(0, 12)}`;
    const listed = await waitFor('the machine in the list', async () => (await flyList()).find((m) => m.name === name), 30_000, 250);
    expect(listed).toMatchObject({ region: 'ord', config: { guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 }, metadata: { molecule_workspace_id: ws } } });
    await waitFor('machine started', async () => (await flyList()).find((m) => m.name === name)?.state === 'started', 60_000, 500);
  }, 120_000);

  it('then steps 6 and 7: ready, and the agent answers with its Fly region (ord)', async () => {
    const run = await runSeedSteps([6, 7], platform.port, { WS: ws });
    expect(run.code, run.stderr).toBe(0);
    const reply = run.stdout.trim().split('\n').pop()!;
    expect(JSON.parse(reply)).toMatch(/\bord\b/);
    expect(await status()).toBe('ready');
    const w = await get();
    expect(w.instance).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{14}$/), url: sim.proxyUrl, region: 'ord', reached_via: 'fly-proxy' });
    expect(sim.machine(w.instance.id)!.env).toMatchObject({ WORKSPACE_ID: ws, PLATFORM_URL: `http://127.0.0.1:${platform.port}`, MOLECULE_REGION: 'ord', PORT: '8000' });
  }, 120_000);

  it('records the boot timeline with the Fly steps', async () => {
    const steps = (await events()).filter((e) => e.type === 'workspace.step').map((e) => e.data.step);
    expect(steps).toEqual(expect.arrayContaining(['instance requested', 'machine created', 'machine started', 'instance started', 'registered']));
  });

  it('places a workspace created with "region":"ams" in ams, and the agent says so', async () => {
    const r = await http.call('POST', '/workspaces', { name: 'in-ams', region: 'ams' });
    expect(r.status).toBe(201);
    const other = r.body.id;
    await waitReady(http, other, { what: 'ams workspace ready', timeoutMs: 60_000 });
    expect(sim.machine(await machineOf(other))!.region).toBe('ams');
    const a = await ask('What region are you running in?', other);
    expect(a.status).toBe(200);
    expect(a.body.result.parts[0].text).toMatch(/\bams\b/);
    // An unknown region is refused before anything reaches Fly.
    const bad = await http.call('POST', '/workspaces', { name: 'nowhere', region: 'xyz' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/not a Fly region/);
    expect((await http.call('DELETE', `/workspaces/${other}`)).status).toBe(202);
  }, 90_000);

  it('restarts on request: same machine, a new agent process', async () => {
    await waitReady(http, ws, { what: 'ready before the restart', timeoutMs: 60_000 });
    const id = await machineOf();
    const before = sim.machine(id);
    expect(before, `machine ${id} of ${JSON.stringify(await get())}`).toBeTruthy();
    const pid = before!.pid;
    const tokenBefore = processEnv(pid!, 'MOLECULE_WORKSPACE_TOKEN');
    expect(tokenBefore).toMatch(/\S/);
    const r = await http.call('POST', `/workspaces/${ws}/restart`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    await waitReady(http, ws, { what: 'ready after restart', until: () => sim.machine(id)!.pid !== pid, timeoutMs: 60_000 });
    expect(await machineOf()).toBe(id);
    // Every restart hands the instance fresh tokens (Fly app secrets), so a new machine version boots with them.
    const update = (await events()).filter((e) => e.type === 'workspace.step' && e.data.step === 'machine config updated').at(-1);
    expect(update?.data, JSON.stringify((await events()).slice(-12))).toMatchObject({ machine_id: id, changed: expect.arrayContaining(['secrets']) });
    expect(processEnv(sim.machine(id)!.pid!, 'MOLECULE_WORKSPACE_TOKEN')).not.toBe(tokenBefore);
    expect(sim.machine(id)!.env.MOLECULE_WORKSPACE_TOKEN).toBeUndefined(); // not in the machine config
    expect((await ask('What region are you running in?')).body.result.parts[0].text).toMatch(/ord/);
  }, 90_000);

  it('a changed secret reaches the machine on restart (config update, new version)', async () => {
    const id = await machineOf();
    const before = sim.machine(id)!.version;
    expect((await http.call('PUT', `/workspaces/${ws}/secrets/SOME_API_KEY`, { value: 'v1' })).status).toBeLessThan(300);
    expect((await get()).needs_restart).toBe(true);
    expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(202);
    await waitReady(http, ws, { what: 'ready after the update', until: () => sim.machine(id)!.version !== before, timeoutMs: 60_000 });
    expect(processEnv(sim.machine(id)!.pid!, 'SOME_API_KEY')).toBe('v1');
    expect(sim.machine(id)!.env.SOME_API_KEY).toBeUndefined(); // an app secret, referenced by name
    expect(await machineOf()).toBe(id);
    expect((await events()).some((e) => e.data?.step === 'machine config updated')).toBe(true);
  }, 90_000);

  it('pauses (machine stopped, A2A workspace_not_ready) and resumes (same machine started)', async () => {
    const id = await machineOf();
    const p = await http.call('POST', `/workspaces/${ws}/pause`);
    expect(p.status).toBe(200);
    expect(p.body.status).toBe('paused');
    expect(sim.machine(id)!.state).toBe('stopped');
    const refused = await ask('hello?');
    expect(refused.status).toBe(200);
    expect(refused.body.error.data).toMatchObject({ code: 'workspace_not_ready', status: 'paused' });
    expect((await http.call('POST', `/workspaces/${ws}/resume`)).status).toBe(202);
    await waitReady(http, ws, { what: 'ready after resume', timeoutMs: 60_000 });
    expect(sim.machine(id)!.state).toBe('started');
    expect((await ask('What is your name?')).body.result.parts[0].text).toMatch(/fly-worker/);
  }, 90_000);

  it('a machine killed behind the platform’s back: offline, automatic restart, ready', async () => {
    const id = await machineOf();
    const pid = sim.machine(id)!.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor('offline', async () => (await events()).some((e) => e.type === 'workspace.status' && e.data.to === 'offline' && /137/.test(e.data.reason)), 30_000, 200);
    await waitReady(http, ws, { what: 'ready again with a new agent', until: () => !!sim.machine(id)!.pid && sim.machine(id)!.pid !== pid, timeoutMs: 60_000 });
    const evs = await events();
    expect(evs.some((e) => e.type === 'workspace.status' && /automatic restart/.test(e.data.reason))).toBe(true);
    expect((await get()).restart_count).toBeGreaterThanOrEqual(1);
    expect(await machineOf()).toBe(id);
    expect((await ask('What region are you running in?')).status).toBe(200);
  }, 90_000);

  it('deletes: the machine is destroyed in Fly, then 410', async () => {
    const id = await machineOf();
    expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
    await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 60_000);
    expect(sim.machine(id)?.state ?? 'gone').toMatch(/^(destroyed|gone)$/);
    expect((await flyList()).map((m) => m.id)).not.toContain(id);
    const gone = await ask('still there?');
    expect(gone.status).toBe(200); // a JSON-RPC error: HTTP 200, the reason in error.data.code
    expect(gone.body.error).toMatchObject({ code: -32035, data: { code: 'workspace_removed' } });
  }, 90_000);

  it('deletes a workspace whose machine is still booting without waiting for the boot', async () => {
    sim.faults.slowBoot(120_000); // far longer than this test may take
    try {
      const id = (await http.call('POST', '/workspaces', { name: 'never-booted', tier: 1 })).body.id as string;
      await waitFor('a machine booting', async () => liveMachinesOf(id)[0], 30_000, 100);
      expect((await http.call('DELETE', `/workspaces/${id}`)).status).toBe(202);
      await waitFor('410 long before the boot would end', async () => (await http.call('GET', `/workspaces/${id}`)).status === 410, 30_000);
      await waitFor('no machine left', async () => liveMachinesOf(id).length === 0, 30_000);
      const steps = (await events(id)).filter((e) => e.type === 'workspace.step').map((e) => e.data.step);
      expect(steps).toContain('start abandoned');
    } finally {
      sim.faults.slowBoot(0);
    }
  }, 90_000);

  it('reconciles after the platform is killed mid-provision: one machine, ready; orphans of ours destroyed, others left alone', async () => {
    const platformId = (await http.call('GET', '/healthz')).body.backend.platform_id as string;
    expect(platformId).toMatch(/\S/);

    // A slow boot keeps the machine in `starting` while the platform dies.
    sim.faults.slowBoot(8000);
    const r = await http.call('POST', '/workspaces', { name: 'interrupted', tier: 1 });
    expect(r.status).toBe(201);
    const w2 = r.body.id as string;
    const first = await waitFor('the machine being created', async () => liveMachinesOf(w2)[0], 30_000, 100);
    expect(['created', 'starting']).toContain(first.state);
    await platform.stop('SIGKILL');
    sim.faults.slowBoot(0);

    // Machines of ours without a live workspace (one of the deleted workspace, one unknown), and one of
    // another platform sharing the app.
    // (Created the way an operator's script would, respecting Fly's 1 create/s per app: a 429 is retried.)
    const orphan = async (workspaceId: string, pid: string): Promise<string> => {
      const res = await fetch(`${sim.url}/v1/apps/${APP}/machines`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sim.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          region: 'ord',
          config: {
            image: 'ghcr.io/molecule-ai/workspace-hermes:latest',
            env: { WORKSPACE_ID: workspaceId, MOLECULE_AGENT_TOKEN: 'x' },
            guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
            metadata: { molecule_workspace_id: workspaceId, molecule_platform_id: pid, molecule_provision_id: 'manual' },
          },
        }),
      });
      if (res.status === 429) {
        await new Promise((r) => setTimeout(r, 1100));
        return orphan(workspaceId, pid);
      }
      expect(res.status).toBe(200);
      return ((await res.json()) as { id: string }).id;
    };
    const ofDeleted = await orphan(ws, platformId);
    const ofUnknown = await orphan(crypto.randomUUID(), platformId);
    const foreign = await orphan(crypto.randomUUID(), 'mp-someone-else');

    platform = await launchPlatform({ dataDir, port: platform.port, env: flyEnv() });
    http = api(platform.url);
    await waitReady(http, w2, { what: 'the interrupted workspace ready', timeoutMs: 90_000, everyMs: 250 });
    const live = liveMachinesOf(w2);
    expect(live.map((m) => m.id)).toEqual([await machineOf(w2)]);
    expect(live[0].state).toBe('started');
    for (const id of [first.id, ofDeleted, ofUnknown]) {
      await waitFor(`machine ${id} destroyed`, async () => (sim.machine(id)?.state ?? 'gone') === 'destroyed' || !sim.machine(id), 30_000);
    }
    expect(sim.machine(foreign)?.state).not.toMatch(/destroy/);

    // While the platform runs, the periodic reconcile catches an orphan made behind its back.
    const lateOrphan = await orphan(crypto.randomUUID(), platformId);
    await waitFor(`late orphan ${lateOrphan} destroyed`, async () => (sim.machine(lateOrphan)?.state ?? 'gone') === 'destroyed' || !sim.machine(lateOrphan), 30_000);
    expect(sim.machine(foreign)?.state).not.toMatch(/destroy/);
    expect(liveMachinesOf(w2).map((m) => m.id)).toEqual([await machineOf(w2)]);
    expect((await ask('What region are you running in?', w2)).body.result.parts[0].text).toMatch(/\bord\b/);
    await http.call('DELETE', `/workspaces/${w2}`);
    await waitFor('w2 removed', async () => (await http.call('GET', `/workspaces/${w2}`)).status === 410, 60_000);
  }, 240_000);
});
