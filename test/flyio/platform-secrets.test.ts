import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appSecretName } from '../../src/backends/flyio/secrets.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { api, launchPlatform, processEnv, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { flyctl, startSim } from './support.js';

/**
 * The platform (its own process) on the Fly backend against the simulator with the real agent: a workspace's
 * secrets and tokens reach its agent, and nobody reading the app through the Machines API sees them.
 */
describe('flyio: workspace secrets as Fly app secrets, through the platform', { shuffle: false }, () => {
  const dataDir = tempDir('flyio-secrets');
  const APP = `secrets-app-${process.pid}`;
  const SECRET = `sk-${crypto.randomBytes(12).toString('hex')}`;
  let sim: FlySim;
  let platform: PlatformProcess;
  let http: Api;
  let ws: string;
  let platformId: string;

  /** flyctl's view; it shares Fly's per-app buckets with the platform's sweep, so it waits out 429s as flyctl does. */
  const fly = async (method: string, path: string, body?: unknown) => {
    for (let i = 0; ; i++) {
      const r = await flyctl(sim, method, path, body);
      if (r.status !== 429 || i >= 5) return r;
    }
  };
  const get = async (id = ws) => (await http.call('GET', `/workspaces/${id}`)).body;
  const machineOf = async () => (await get()).instance?.id as string;
  const agentEnv = (id: string, k: string) => processEnv(sim.machine(id)!.pid!, k);
  const secretNames = async () => ((await fly('GET', `/v1/apps/${APP}/secrets`)).body.secrets as { name: string }[]).map((x) => x.name);
  const tag = (id: string) => `_${id.replace(/-/g, '').slice(0, 12).toUpperCase()}_`;
  /** Everything about the app a Machines API reader can see. */
  const readable = async (id: string) =>
    JSON.stringify([
      (await fly('GET', `/v1/apps/${APP}/machines/${id}`)).body,
      (await fly('GET', `/v1/apps/${APP}/machines`)).body,
      (await fly('GET', `/v1/apps/${APP}/machines/${id}/versions`)).body,
      (await fly('GET', `/v1/apps/${APP}/secrets`)).body,
    ]);

  beforeAll(async () => {
    sim = await startSim({ agent: 'real' });
    platform = await launchPlatform({
      dataDir,
      env: {
        CONTAINER_BACKEND: 'flyio',
        FLY_WORKSPACE_APP: APP,
        ...sim.env,
        MOLECULE_RECONCILE_INTERVAL_S: '2',
      },
    });
    http = api(platform.url);
    platformId = (await http.call('GET', '/healthz')).body.backend.platform_id;
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('a workspace with a secret boots; its agent sees the value; the machine config holds no secret and no token', async () => {
    const r = await http.call('POST', '/workspaces', { name: 'secret-keeper', tier: 1, env: { USER_SETTING: 'visible' }, secrets: { OPENAI_API_KEY: SECRET } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    ws = r.body.id;
    await waitReady(http, ws, { timeoutMs: 60_000, everyMs: 200 });
    const id = await machineOf();
    expect(agentEnv(id, 'OPENAI_API_KEY')).toBe(SECRET);
    const token = agentEnv(id, 'MOLECULE_WORKSPACE_TOKEN')!;
    const agentToken = agentEnv(id, 'MOLECULE_AGENT_TOKEN')!;
    expect(token).toMatch(/\S{16}/);
    expect(agentToken).toMatch(/\S{16}/);
    const seen = await readable(id);
    for (const v of [SECRET, token, agentToken]) expect(seen).not.toContain(v);
    const shown = (await fly('GET', `/v1/apps/${APP}/machines/${id}`)).body;
    expect(shown.config.env).toMatchObject({ WORKSPACE_ID: ws, USER_SETTING: 'visible', MOLECULE_REGION: 'ord', PLATFORM_URL: expect.any(String) });
    for (const k of ['OPENAI_API_KEY', 'MOLECULE_WORKSPACE_TOKEN', 'MOLECULE_AGENT_TOKEN']) expect(shown.config.env).not.toHaveProperty(k);
    expect(shown.config.processes[0].secrets.map((x: any) => x.env_var).sort()).toEqual(['MOLECULE_AGENT_TOKEN', 'MOLECULE_WORKSPACE_TOKEN', 'OPENAI_API_KEY']);
    // The agent uses its token: it registered and heartbeats (ready), and answers through the proxy.
    const a = await http.call('POST', `/workspaces/${ws}/a2a`, { jsonrpc: '2.0', id: 'q', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'hi' }] } } });
    expect(a.status).toBe(200);
  }, 90_000);

  it('restart rotates the token secrets: the agent gets new tokens, still none in the machine config', async () => {
    const id = await machineOf();
    const pid = sim.machine(id)!.pid;
    const before = { ws: agentEnv(id, 'MOLECULE_WORKSPACE_TOKEN'), agent: agentEnv(id, 'MOLECULE_AGENT_TOKEN') };
    const digests = async () => Object.fromEntries(((await fly('GET', `/v1/apps/${APP}/secrets`)).body.secrets as any[]).map((x) => [x.name, x.digest]));
    const d1 = await digests();
    expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(202);
    await waitReady(http, ws, { what: 'ready with a new agent', until: () => !!sim.machine(id)?.pid && sim.machine(id)!.pid !== pid, timeoutMs: 60_000, everyMs: 200 });
    const after = { ws: agentEnv(id, 'MOLECULE_WORKSPACE_TOKEN')!, agent: agentEnv(id, 'MOLECULE_AGENT_TOKEN')! };
    expect(after.ws).not.toBe(before.ws);
    expect(after.agent).not.toBe(before.agent);
    expect(agentEnv(id, 'OPENAI_API_KEY')).toBe(SECRET);
    const d2 = await digests();
    expect(d2[appSecretName(platformId, ws, 'MOLECULE_WORKSPACE_TOKEN')]).not.toBe(d1[appSecretName(platformId, ws, 'MOLECULE_WORKSPACE_TOKEN')]);
    expect(d2[appSecretName(platformId, ws, 'MOLECULE_AGENT_TOKEN')]).not.toBe(d1[appSecretName(platformId, ws, 'MOLECULE_AGENT_TOKEN')]);
    expect(d2[appSecretName(platformId, ws, 'OPENAI_API_KEY')]).toBe(d1[appSecretName(platformId, ws, 'OPENAI_API_KEY')]);
    const seen = await readable(id);
    for (const v of [SECRET, after.ws, after.agent]) expect(seen).not.toContain(v);
  }, 90_000);

  it('the sweep removes app secrets of workspaces this platform does not know, and leaves other secrets alone', async () => {
    const unknown = appSecretName(platformId, crypto.randomUUID(), 'OPENAI_API_KEY');
    const otherPlatform = appSecretName('mp-someone-else', crypto.randomUUID(), 'OPENAI_API_KEY');
    const w = await fly('POST', `/v1/apps/${APP}/secrets`, { values: { [unknown]: 'u', [otherPlatform]: 'o', DATABASE_URL: 'postgres://db' } });
    expect(w.status).toBe(200);
    await waitFor('the unknown workspace’s secret swept', async () => !(await secretNames()).includes(unknown), 30_000, 300);
    const names = await secretNames();
    expect(names).toEqual(expect.arrayContaining([otherPlatform, 'DATABASE_URL']));
    expect(names.filter((n) => n.includes(tag(ws)))).toHaveLength(3);
  }, 60_000);

  it('deleting the workspace removes its app secrets', async () => {
    expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
    await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 60_000, 200);
    const names = await secretNames();
    expect(names.filter((n) => n.includes(tag(ws)))).toEqual([]);
    expect(names).toContain('DATABASE_URL');
  }, 90_000);
});
