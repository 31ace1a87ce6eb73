import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startFlySim, type FlySim } from '../../tools/fly-sim/index.js';
import { agentEnv } from '../support/instance.js';
import { client, createMachine, FIXTURE, IMAGE, machinePaths, pidAlive, SERVICES, startTestSim, until, viaProxy, waitFor, withTestSim, type Api } from './helpers.js';

let sim: FlySim;
let api: Api;
const APP = 'procs';
const M = machinePaths(APP);

withTestSim((s, a) => ([sim, api] = [s, a]));

const exitEvents = async (id: string) =>
  ((await api.get(M(id, '/events?limit=50'))).body as any[]).filter((e) => e.type === 'exit').reverse();

describe('restart policy on process exit', () => {
  it('on-failure (default max_retries from config): restarts a non-zero exit, then stops', async () => {
    const m = await createMachine(api, APP, { config: { image: IMAGE, env: { FIXTURE_EXIT_CODE: '3' }, restart: { policy: 'on-failure', max_retries: 2 } } });
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
    const exits = await exitEvents(m.id);
    expect(exits.map((e) => [e.status, e.request.exit_event.exit_code, e.request.exit_event.restarting])).toEqual([
      ['starting', 3, true],
      ['starting', 3, true],
      ['stopped', 3, false],
    ]);
    expect(sim.machine(m.id)!.restarts).toBe(2);
    expect(sim.logs(m.id).filter((l) => l.message === 'fixture-agent exiting with code 3')).toHaveLength(3);
  });

  it('on-failure does not restart a clean exit; policy no never restarts', async () => {
    const clean = await createMachine(api, APP, { config: { image: IMAGE, env: { FIXTURE_EXIT_CODE: '0' } } });
    expect((await waitFor(api, APP, clean.id, 'stopped')).status).toBe(200);
    expect((await exitEvents(clean.id)).map((e) => e.status)).toEqual(['stopped']);
    const no = await createMachine(api, APP, { config: { image: IMAGE, env: { FIXTURE_EXIT_CODE: '1' }, restart: { policy: 'no' } } });
    expect((await waitFor(api, APP, no.id, 'stopped')).status).toBe(200);
    const exits = await exitEvents(no.id);
    expect(exits).toHaveLength(1);
    expect(exits[0].request.exit_event).toMatchObject({ exit_code: 1, requested_stop: false, restarting: false, oom_killed: false });
  });

  it('always restarts, even after exit code 0', async () => {
    const m = await createMachine(api, APP, { config: { image: IMAGE, env: { FIXTURE_EXIT_CODE: '0' }, restart: { policy: 'always' } } });
    await until(async () => (await exitEvents(m.id)).length >= 3, 'three exits with restarts');
    expect((await exitEvents(m.id)).slice(0, 3).every((e) => e.request.exit_event.restarting === true)).toBe(true);
    expect((await api.post(M(m.id, '/stop'))).status).toBe(200);
    expect((await waitFor(api, APP, m.id, 'stopped')).status).toBe(200);
  });

  it('auto_destroy destroys the machine when the process exits and is not restarted', async () => {
    const m = await createMachine(api, APP, { config: { image: IMAGE, env: { FIXTURE_EXIT_CODE: '0' }, auto_destroy: true, restart: { policy: 'no' } } });
    const w = await api.get(M(m.id, '/wait?state=destroyed&timeout=30'));
    expect(w.status).toBe(200);
    await until(async () => (await api.get(M(m.id))).status === 404, 'the destroyed machine to disappear');
  });

  it('reports oom_killed when the process runs out of its guest memory', async () => {
    const oom = await startFlySim({
      rateLimits: false,
      timing: { launchDelayMs: 0 },
      images: { 'registry.fly.io/oom:1': (ctx) => ({ command: process.execPath, args: [`--max-old-space-size=${ctx.memoryMb}`, FIXTURE] }) },
    });
    try {
      const c = client(oom);
      const m = (await c.post('/v1/apps/o/machines', { config: { image: 'registry.fly.io/oom:1', services: SERVICES, restart: { policy: 'no' } } })).body;
      expect((await waitFor(c, 'o', m.id, 'started')).status).toBe(200);
      expect((await viaProxy(oom, m.id, '/oom')).status).toBe(200);
      expect((await waitFor(c, 'o', m.id, 'stopped', 60)).status).toBe(200);
      const exit = (await c.get(`/v1/apps/o/machines/${m.id}/events?limit=1`)).body[0].request.exit_event;
      expect(exit.oom_killed).toBe(true);
      expect(exit.exit_code).not.toBe(0);
    } finally {
      await oom.close();
    }
  });
});

describe('the machine process', () => {
  it('gets config.env plus Fly\'s in-machine variables (read through the proxy with fly-force-instance-id)', async () => {
    const m = await createMachine(api, APP, {
      region: 'ams',
      config: { image: IMAGE, services: SERVICES, env: { WORKSPACE_ID: 'ws-1', PORT: '8000' }, guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 } },
    });
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
    const r = await viaProxy(sim, m.id, '/env');
    expect(r.status).toBe(200);
    expect(r.headers.get('fly-request-id')).toBeTruthy();
    const env = await r.json();
    const snap = sim.machine(m.id)!;
    expect(env).toMatchObject({
      WORKSPACE_ID: 'ws-1',
      FLY_APP_NAME: APP,
      FLY_MACHINE_ID: m.id,
      FLY_ALLOC_ID: m.id,
      FLY_REGION: 'ams',
      FLY_PRIVATE_IP: m.private_ip,
      FLY_MACHINE_VERSION: m.version,
      FLY_VM_MEMORY_MB: '512',
      FLY_PROCESS_GROUP: 'app',
      HOSTNAME: m.id,
      AGENT_HOST: '127.0.0.1',
      PORT: String(snap.hostPort),
      PATH: process.env.PATH,
    });
    expect(env.FLY_IMAGE_REF).toBe('ghcr.io/molecule-ai/workspace-hermes:latest');
    expect(snap.internalPort).toBe(8000);
    expect(snap.hostPort).not.toBe(8000);
    // the host's environment is not inherited
    expect(env.VITEST).toBeUndefined();
  });

  it('streams SSE through the proxy as it is produced', async () => {
    const m = await createMachine(api, APP, { config: { image: IMAGE, services: SERVICES } });
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
    const res = await viaProxy(sim, m.id, '/sse', { headers: { accept: 'text/event-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    const readUntil = async (needle: string) => {
      while (!seen.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}; got ${seen}`);
        seen += decoder.decode(value, { stream: true });
      }
    };
    // the first event arrives while the upstream response is still open (the fixture holds it at the gate)
    await readUntil('event: first');
    expect(seen).not.toContain('event: second');
    expect((await viaProxy(sim, m.id, '/gate', { method: 'POST' })).status).toBe(200);
    await readUntil('event: second');
    expect((await reader.read()).done).toBe(true);
  });

  it('the proxy answers 404 for an unknown machine, 503 for a stopped one, explains itself on /', async () => {
    const unknown = await viaProxy(sim, '0123456789abcd', '/healthz');
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain('no machine with id 0123456789abcd');
    const m = await createMachine(api, APP, { skip_launch: true });
    const stopped = await viaProxy(sim, m.id, '/healthz');
    expect(stopped.status).toBe(503);
    expect(await stopped.text()).toContain(`machine ${m.id} is created, not started`);
    const root = await fetch(`${sim.proxyUrl}/`);
    expect(root.status).toBe(200);
    expect(await root.text()).toContain('fly-force-instance-id');
    expect((await fetch(`${sim.proxyUrl}/healthz`)).status).toBe(400);
  });

  it('captures stdout and stderr; the logs endpoint serves them, and follows', async () => {
    const m = await createMachine(api, APP, { config: { image: IMAGE, services: SERVICES } });
    expect((await waitFor(api, APP, m.id, 'started')).status).toBe(200);
    const text = (await api.get(M(m.id, '/logs'))).text;
    expect(text).toContain(`app[${m.id}] ord [info] fixture-agent boot pid=`);
    expect(text).toContain('[error] fixture-agent: a line on stderr');
    const nd = (await api.get(M(m.id, '/logs?format=ndjson&tail=200'))).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(nd.find((l) => l.stream === 'stderr')).toMatchObject({ message: 'fixture-agent: a line on stderr', machine_id: m.id, instance: m.version });
    const raw = (await api.get(M(m.id, '/logs?format=raw'))).text.split('\n');
    expect(raw).toContain('fixture-agent: a line on stderr');
    expect((await api.get(M(m.id, '/logs?format=xml'))).status).toBe(400);
    // follow: a line printed later arrives on the open stream
    const ac = new AbortController();
    const res = await fetch(`${sim.url}${M(m.id, '/logs?follow=1&tail=0')}`, { headers: { authorization: `Bearer ${sim.token}` }, signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect((await api.post(M(m.id, '/stop'))).status).toBe(200);
    let got = '';
    while (!got.includes('SIGTERM, shutting down')) {
      const { value, done } = await reader.read();
      if (done) break;
      got += new TextDecoder().decode(value);
    }
    expect(got).toContain('fixture-agent: SIGTERM, shutting down');
    ac.abort();
  });

  it('exec is validated, then answered 501 (not simulated)', async () => {
    const m = await createMachine(api, APP, { skip_launch: true });
    expect((await api.post(M(m.id, '/exec'), { command: 'ls' })).status).toBe(400);
    const r = await api.post(M(m.id, '/exec'), { command: ['ls'] });
    expect(r.status).toBe(501);
    expect(r.body.error).toContain('not simulated');
  });
});

describe('close()', () => {
  it('kills every child process', async () => {
    const own = await startTestSim();
    const c = client(own);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createMachine(c, 'close', { config: { image: IMAGE, services: SERVICES, env: i === 0 ? { FIXTURE_IGNORE_SIGTERM: '1' } : {} } })).id);
    for (const id of ids) expect((await waitFor(c, 'close', id, 'started')).status).toBe(200);
    // one suspended (SIGSTOPped) child too
    expect((await c.post(`/v1/apps/close/machines/${ids[1]}/suspend`)).status).toBe(200);
    expect((await waitFor(c, 'close', ids[1], 'suspended')).status).toBe(200);
    const pids = own.pids();
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(pidAlive(pid)).toBe(true);
    await own.close();
    for (const pid of pids) expect(pidAlive(pid)).toBe(false);
    expect(own.pids()).toEqual([]);
    await expect(fetch(`${own.url}/v1/platform/regions`)).rejects.toThrow();
  });
});

describe('the real agent (src/agent/main.ts)', () => {
  it('boots from a workspace-<runtime> image with agentCommand() and serves /healthz through the proxy', async () => {
    const real = await startFlySim({ rateLimits: false, timing: { launchDelayMs: 0 } });
    try {
      const c = client(real);
      const m = (
        await c.post('/v1/apps/real/machines', {
          region: 'fra',
          config: {
            image: 'ghcr.io/molecule-ai/workspace-hermes:latest',
            env: agentEnv({ workspaceId: 'ws-real', agentToken: 'agent-secret', workspaceName: 'real', port: '8000' }),
            services: SERVICES,
            guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 },
            restart: { policy: 'no' },
          },
        })
      ).body;
      const w = await waitFor(c, 'real', m.id, 'started', 60);
      const logs = real.logs(m.id).map((l) => l.message).join('\n');
      expect(w.status, logs).toBe(200);
      const h = await viaProxy(real, m.id, '/healthz');
      expect(h.status, logs).toBe(200);
      // the process runs the agent with the guest memory as its heap limit
      const pid = real.machine(m.id)!.pid!;
      if (existsSync(`/proc/${pid}/cmdline`)) {
        const { readFileSync } = await import('node:fs');
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        expect(argv).toContain('--max-old-space-size=512');
        // the agent runtime: its bundle when fresh, else its sources under tsx
        expect(argv.some((a) => a.endsWith('src/agent/main.ts') || a.endsWith('dist/agent.mjs'))).toBe(true);
      }
    } finally {
      await real.close();
    }
  });
});
