import fs from 'node:fs';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNAUTHORIZED_CODE } from '../../src/agent/auth.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import type { LightProcess } from '../../tools/fly-sim/light.js';
import { a2aCall, a2aRequest, streamedText } from '../support/a2a-client.js';
import { api, launchPlatform, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { flyctl, startSim } from './support.js';

/**
 * The platform (its own process) on the Fly backend against the simulator with light agents (`light: true`): each
 * machine's agent runs inside the simulator, yet keeps the agent contract — registration, heartbeats, A2A through
 * the platform, the agent token, card and healthz behind the proxy, death with the machine.
 */
describe('flyio: light agents in the simulator, through the platform', { shuffle: false }, () => {
  const dataDir = tempDir('flyio-light');
  const APP = `light-app-${process.pid}`;
  let sim: FlySim;
  let platform: PlatformProcess;
  let http: Api;
  let ws: string;

  const get = async (id = ws) => (await http.call('GET', `/workspaces/${id}`)).body;
  const machineOf = async (id = ws) => (await get(id)).instance?.id as string;
  const lightOf = (machineId: string) => sim.engine.machineById(machineId)?.proc as LightProcess | undefined;
  const viaPlatform = (method: 'message/send' | 'message/stream', text: string, id = ws) =>
    a2aCall(`${platform.url}/workspaces/${id}/a2a`, a2aRequest(method, text), method === 'message/stream' ? { accept: 'text/event-stream' } : {});
  /** Straight at the machine, as the platform's proxy calls it: the simulator's proxy with fly-force-instance-id. */
  const viaFlyProxy = (machineId: string, path: string, init: RequestInit = {}) =>
    fetch(`${sim.proxyUrl}${path}`, { ...init, headers: { 'fly-force-instance-id': machineId, ...(init.headers as Record<string, string>) } });

  beforeAll(async () => {
    sim = await startSim({ light: true });
    platform = await launchPlatform({
      dataDir,
      env: { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: APP, ...sim.env, MOLECULE_RECONCILE_INTERVAL_S: '2' },
    });
    http = api(platform.url);
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('a workspace reaches ready: its light agent registered, with no process behind the machine', async () => {
    const r = await http.call('POST', '/workspaces', { name: 'light-worker', role: 'a light agent', region: 'ams' });
    expect(r.status).toBe(201);
    ws = r.body.id;
    const w = await waitReady(http, ws, { timeoutMs: 30_000 });
    expect(w.instance).toMatchObject({ url: sim.proxyUrl, region: 'ams', reached_via: 'fly-proxy' });
    const machine = sim.machine(w.instance.id)!;
    expect(machine).toMatchObject({ state: 'started', region: 'ams', pid: null, hostPort: null });
    expect(sim.pids()).toEqual([]);
    const proc = lightOf(machine.id)!;
    expect(proc.agent!.platformState()).toBe('registered');
    // It registered the address it is reached at on Fly: its private IP and internal port.
    expect(proc.agent!.url).toMatch(/^http:\/\/\[fdaa:[0-9a-f:]+\]:8000$/);
    expect(sim.logs(machine.id).map((l) => l.message).join('\n')).toMatch(/registered with the platform/);
  }, 60_000);

  it('heartbeats every HEARTBEAT_INTERVAL_S', async () => {
    const first = (await get()).last_heartbeat_at;
    await waitFor('a later heartbeat', async () => {
      const next = (await get()).last_heartbeat_at;
      return next && next !== first;
    }, 10_000, 200);
  }, 20_000);

  it('answers message/send and message/stream through POST /workspaces/:id/a2a with its region', async () => {
    const sent = await viaPlatform('message/send', 'What region are you running in?');
    expect(sent.status).toBe(200);
    expect(sent.json.result.parts[0].text).toBe("I'm running in region ams.");

    const streamed = await viaPlatform('message/stream', 'What region are you running in?');
    expect(streamed.status).toBe(200);
    expect(streamed.contentType).toMatch(/text\/event-stream/);
    expect(streamed.events[0].result).toMatchObject({ kind: 'task', status: { state: 'working' } });
    expect(streamed.events.at(-1).result).toMatchObject({ kind: 'status-update', final: true, status: { state: 'completed' } });
    expect(streamedText(streamed.events)).toBe("I'm running in region ams.");
  }, 20_000);

  it('serves its card and /healthz behind the proxy, and refuses A2A without the agent token', async () => {
    const id = await machineOf();
    const health = await viaFlyProxy(id, '/healthz');
    expect(health.status).toBe(200);
    expect(health.headers.get('fly-request-id')).toBeTruthy();
    expect(await health.json()).toMatchObject({ status: 'ok', workspace_id: ws, region: 'ams', active_tasks: 0 });

    const card = await viaFlyProxy(id, '/.well-known/agent-card.json');
    expect(card.status).toBe(200);
    expect(await card.json()).toMatchObject({ name: 'light-worker', description: 'a light agent', url: expect.stringMatching(/:8000\/$/) });

    const body = JSON.stringify(a2aRequest('message/send', 'What region are you running in?', 'x'));
    for (const headers of [{}, { authorization: 'Bearer not-the-agent-token' }] as Record<string, string>[]) {
      const refused = await viaFlyProxy(id, '/', { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
      expect(refused.status).toBe(401);
      expect(await refused.json()).toMatchObject({ id: 'x', error: { code: UNAUTHORIZED_CODE } });
    }
    const token = lightOf(id)!.agent!.core.config.agentToken;
    const ok = await viaFlyProxy(id, '/', { method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect((await ok.json()).result.parts[0].text).toBe("I'm running in region ams.");
  }, 20_000);

  it('pause stops the machine and the light agent dies (no proxy answer, no heartbeats); resume brings it back', async () => {
    const id = await machineOf();
    const before = lightOf(id)!;
    const p = await http.call('POST', `/workspaces/${ws}/pause`);
    expect(p.status).toBe(200);
    expect(p.body.status).toBe('paused');
    expect(sim.machine(id)!.state).toBe('stopped');
    expect(before.alive).toBe(false);
    expect(before.agent!.platformState()).toBe('stopped');
    expect((await viaFlyProxy(id, '/healthz')).status).toBe(503);
    const hb = (await get()).last_heartbeat_at;
    await new Promise((r) => setTimeout(r, 2500)); // more than two heartbeat intervals
    expect((await get()).last_heartbeat_at).toBe(hb);
    const refused = await viaPlatform('message/send', 'hello?');
    expect(refused.json.error.data).toMatchObject({ code: 'workspace_not_ready', status: 'paused' });

    expect((await http.call('POST', `/workspaces/${ws}/resume`)).status).toBe(202);
    await waitReady(http, ws, { what: 'ready after resume', until: () => lightOf(id)?.alive && lightOf(id) !== before, timeoutMs: 30_000 });
    expect(sim.machine(id)!.state).toBe('started');
    expect((await viaPlatform('message/send', 'What region are you running in?')).json.result.parts[0].text).toMatch(/\bams\b/);
  }, 60_000);

  it('a light agent killed behind the platform’s back: offline, automatic restart, ready', async () => {
    const id = await machineOf();
    const before = lightOf(id)!;
    before.signal('SIGKILL');
    await waitFor('offline', async () => (await http.call('GET', `/workspaces/${ws}/events`)).body.some((e: any) => e.type === 'workspace.status' && e.data.to === 'offline'), 30_000, 200);
    await waitReady(http, ws, { what: 'ready with a new light agent', until: () => lightOf(id)?.alive && lightOf(id) !== before, timeoutMs: 30_000 });
    expect((await viaPlatform('message/send', 'What region are you running in?')).json.result.parts[0].text).toMatch(/\bams\b/);
  }, 60_000);

  it('deletes: the machine is destroyed, the agent is gone, then 410', async () => {
    const id = await machineOf();
    const agent = lightOf(id)!;
    expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
    await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 30_000);
    await waitFor('machine destroyed', async () => (sim.machine(id)?.state ?? 'destroyed') === 'destroyed', 30_000);
    expect(agent.alive).toBe(false);
    expect(sim.engine.lightAgents()).toBe(0);
    expect((await viaFlyProxy(id, '/healthz')).status).toBeGreaterThanOrEqual(404);
  }, 60_000);
});

/**
 * The simulator alone, with a stand-in for the platform's two agent-facing endpoints: what the platform does not
 * drive — suspend, a signal, health checks — and the registration body, as a light agent sends them.
 */
describe('flyio: a light agent against a stand-in platform', { shuffle: false }, () => {
  const APP = `light-sim-${process.pid}`;
  let sim: FlySim;
  let server: Server;
  let platformUrl: string;
  const received: { path: string; token: string; body: any; at: number }[] = [];
  const heartbeats = (token: string) => received.filter((r) => r.path === '/registry/heartbeat' && r.token === token).length;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', token: (req.headers.authorization ?? '').replace(/^Bearer /, ''), body: JSON.parse(body || 'null'), at: Date.now() });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ workspace_id: 'w', status: 'ready', heartbeat_interval_s: 1 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    platformUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    sim = await startSim({ light: true });
  });

  afterAll(async () => {
    await sim?.close();
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  const create = async (token: string, extra: Record<string, unknown> = {}) => {
    const r = await flyctl(sim, 'POST', `/v1/apps/${APP}/machines`, {
      region: 'syd',
      config: {
        image: 'ghcr.io/molecule-ai/workspace-hermes:latest',
        guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
        env: { WORKSPACE_ID: `ws-${token}`, WORKSPACE_NAME: `light-${token}`, PLATFORM_URL: platformUrl, MOLECULE_WORKSPACE_TOKEN: token, MOLECULE_AGENT_TOKEN: `agent-${token}`, HEARTBEAT_INTERVAL_S: '0.2' },
        services: [{ protocol: 'tcp', internal_port: 8000, ports: [{ port: 443, handlers: ['tls', 'http'] }] }],
        ...extra,
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    await sim.waitForState(r.body.id, 'started', 10_000);
    await waitFor('registration', async () => received.some((x) => x.path === '/registry/register' && x.token === token), 10_000, 20);
    return r.body.id as string;
  };
  const proxied = (id: string, path: string) => fetch(`${sim.proxyUrl}${path}`, { headers: { 'fly-force-instance-id': id } });

  it('registers with the real agent\'s body (its Fly address, the v1 card) and heartbeats with the real body', async () => {
    const id = await create('t-register');
    const reg = received.find((x) => x.path === '/registry/register' && x.token === 't-register')!;
    expect(reg.body.url).toBe(`http://[${sim.engine.machineById(id)!.privateIp}]:8000`);
    expect(reg.body.agent_card).toMatchObject({ name: 'light-t-register', capabilities: { streaming: true }, supportedInterfaces: expect.any(Array) });
    await waitFor('two heartbeats', async () => heartbeats('t-register') >= 2, 5000, 20);
    const hb = received.filter((x) => x.path === '/registry/heartbeat' && x.token === 't-register').at(-1)!;
    expect(hb.body).toEqual({ active_tasks: 0, current_task: null, error_rate: 0, uptime_s: expect.any(Number) });
    expect(await (await proxied(id, '/healthz')).json()).toMatchObject({ region: 'syd' });
  });

  it('suspend freezes it (no heartbeats, the proxy answers as for a stopped machine); start resumes the same agent', async () => {
    const id = await create('t-suspend');
    const proc = sim.engine.machineById(id)!.proc as LightProcess;
    expect((await flyctl(sim, 'POST', `/v1/apps/${APP}/machines/${id}/suspend`)).status).toBe(200);
    await sim.waitForState(id, 'suspended', 5000);
    const n = heartbeats('t-suspend');
    await new Promise((r) => setTimeout(r, 800));
    expect(heartbeats('t-suspend')).toBe(n);
    expect((await proxied(id, '/healthz')).status).toBe(503);
    expect((await flyctl(sim, 'POST', `/v1/apps/${APP}/machines/${id}/start`)).status).toBe(200);
    await sim.waitForState(id, 'started', 5000);
    await waitFor('heartbeats again', async () => heartbeats('t-suspend') > n, 5000, 20);
    expect(sim.engine.machineById(id)!.proc).toBe(proc);
    expect((await proxied(id, '/healthz')).status).toBe(200);
  });

  it('SIGTERM through the signal endpoint: a clean exit 0 and no more heartbeats', async () => {
    const id = await create('t-signal', { restart: { policy: 'no' } });
    expect((await flyctl(sim, 'POST', `/v1/apps/${APP}/machines/${id}/signal`, { signal: 'SIGTERM' })).status).toBe(200);
    await sim.waitForState(id, 'stopped', 10_000);
    expect(sim.machine(id)!.lastExit).toMatchObject({ exitCode: 0, signal: null, requestedStop: false });
    const n = heartbeats('t-signal');
    await new Promise((r) => setTimeout(r, 600));
    expect(heartbeats('t-signal')).toBe(n);
    expect((await proxied(id, '/healthz')).status).toBe(503);
  });

  it('runs config.checks against the light agent in memory', async () => {
    const id = await create('t-checks', { checks: { alive: { type: 'http', port: 8000, path: '/healthz', interval: '1s', timeout: '1s' } } });
    await waitFor('check passing', async () => {
      const m = (await flyctl(sim, 'GET', `/v1/apps/${APP}/machines/${id}`)).body;
      return m.checks?.[0]?.status === 'passing' && m.checks[0];
    }, 10_000, 100);
  });
});
