import { describe, expect, it } from 'vitest';
import { startFlySim, validateRecordedRequest, type FlySim } from '../../tools/fly-sim/index.js';
import { client, createMachine, IMAGE, withTestSim, type Api } from './helpers.js';

let sim: FlySim;
let api: Api;

withTestSim((s, a) => ([sim, api] = [s, a]));

const AUTH_ERROR = { error: 'Authenticate: token validation error' };

describe('auth, routing, headers', () => {
  it('answers 401 with Fly\'s text for a missing or bad token, and accepts Bearer and FlyV1', async () => {
    const none = await client(sim, null).get('/v1/apps/a/machines');
    expect(none.status).toBe(401);
    expect(none.body).toEqual(AUTH_ERROR);
    const bad = await client(sim, 'nope').get('/v1/apps/a/machines');
    expect(bad.status).toBe(401);
    expect(bad.body).toEqual(AUTH_ERROR);
    const garbage = await client(sim, 'sim-token', 'Basic').get('/v1/apps/a/machines');
    expect(garbage.status).toBe(401);
    expect((await client(sim, 'sim-token', 'FlyV1').get('/v1/apps/a/machines')).status).toBe(200);
    expect((await api.get('/v1/apps/a/machines')).status).toBe(200);
  });

  it('accepts a configured token and rejects the default one then', async () => {
    const other = await startFlySim({ token: ['secret-1', 'secret-2'], rateLimits: false });
    try {
      expect((await client(other, 'sim-token').get('/v1/platform/regions')).status).toBe(401);
      expect((await client(other, 'secret-2').get('/v1/platform/regions')).status).toBe(200);
      expect(other.env).toEqual({ FLY_FLAPS_BASE_URL: other.url, FLY_API_TOKEN: 'secret-1', FLY_PROXY_URL: other.proxyUrl });
    } finally {
      await other.close();
    }
  });

  it('puts fly-request-id on every response (200, 401, 404)', async () => {
    for (const r of [await api.get('/v1/platform/regions'), await client(sim, null).get('/v1/apps/a/machines'), await api.get('/v1/nope')]) {
      expect(r.headers.get('fly-request-id')).toMatch(/^[0-9A-Z]{26}-sim$/);
    }
  });

  it('answers unknown routes and machines with 404 {"error": …}', async () => {
    const r = await api.get('/v1/apps/a/machines/0123456789abcd/nonsense');
    expect(r.status).toBe(404);
    expect(typeof r.body.error).toBe('string');
    const m = await api.get('/v1/apps/a/machines/0123456789abcd');
    expect(m.status).toBe(404);
    expect(m.body).toEqual({ error: 'machine not found' });
  });

  it('serves the 18 regions of the reference', async () => {
    const r = await api.get('/v1/platform/regions');
    expect(r.status).toBe(200);
    expect(r.body.regions.map((x: { code: string }) => x.code).sort()).toEqual(
      ['ams', 'arn', 'bom', 'cdg', 'dfw', 'ewr', 'fra', 'gru', 'iad', 'jnb', 'lax', 'lhr', 'nrt', 'ord', 'sin', 'sjc', 'syd', 'yyz'],
    );
    expect(r.body.nearest).toBe('ord');
    expect(r.body.regions.find((x: { code: string }) => x.code === 'gru').gateway_available).toBe(false);
  });
});

describe('apps', () => {
  it('creates, shows and refuses a taken name', async () => {
    const c = await api.post('/v1/apps', { name: 'made-app', org_slug: 'personal' });
    expect(c.status).toBe(201);
    const again = await api.post('/v1/apps', { name: 'made-app', org_slug: 'personal' });
    expect(again.status).toBe(422);
    expect(again.body).toEqual({ error: 'Validation failed: Name has already been taken', status: 'name_taken' });
    const g = await api.get('/v1/apps/made-app');
    expect(g.status).toBe(200);
    expect(g.body).toMatchObject({ name: 'made-app', machine_count: 0, organization: { slug: 'personal' } });
    const bad = await api.post('/v1/apps', { name: 'Not_Valid' });
    expect(bad.status).toBe(422);
  });

  it('with autoCreateApps false, an unknown app is 404 until it is created', async () => {
    const strict = await startFlySim({ autoCreateApps: false, rateLimits: false });
    try {
      const c = client(strict);
      const r = await c.post('/v1/apps/ghost/machines', { config: { image: IMAGE }, skip_launch: true });
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ error: 'app not found' });
      expect((await c.post('/v1/apps', { name: 'ghost', org_slug: 'personal' })).status).toBe(201);
      expect((await c.post('/v1/apps/ghost/machines', { config: { image: IMAGE }, skip_launch: true })).status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});

describe('create, get, list', () => {
  it('creates a machine in `created` with one launch event and Fly-shaped ids', async () => {
    const m = await createMachine(api, 'ids', { skip_launch: true, region: 'ams', config: { image: IMAGE, guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 } } });
    expect(m.id).toMatch(/^[0-9a-f]{14}$/);
    expect(m.instance_id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(m.version).toBe(m.instance_id);
    expect(m.name).toMatch(/^[a-z]+-[a-z]+-\d{4}$/);
    expect(m.private_ip).toMatch(/^fdaa(:[0-9a-f]{1,4}){7}$/);
    expect(m.state).toBe('created');
    expect(m.region).toBe('ams');
    expect(m.config.guest).toEqual({ cpu_kind: 'shared', cpus: 1, memory_mb: 512 });
    expect(m.config.init).toEqual({});
    expect(m.image_ref).toMatchObject({ registry: 'ghcr.io', repository: 'molecule-ai/workspace-hermes', tag: 'latest' });
    expect(m.events).toHaveLength(1);
    expect(m.events[0]).toMatchObject({ type: 'launch', status: 'created', source: 'user' });
    expect(typeof m.events[0].timestamp).toBe('number');
    expect(m.nonce).toBeUndefined();
    const g = await api.get(`/v1/apps/ids/machines/${m.id}`);
    expect(g.status).toBe(200);
    expect(g.body.private_ip).toBe(m.private_ip);
    expect(g.body.id).toBe(m.id);
  });

  it('fills guest defaults (shared-cpu-1x) and maps the deprecated size presets', async () => {
    const d = await createMachine(api, 'sizes', { skip_launch: true });
    expect(d.config.guest).toEqual({ cpu_kind: 'shared', cpus: 1, memory_mb: 256 });
    const p = await createMachine(api, 'sizes', { skip_launch: true, config: { image: IMAGE, size: 'performance-2x' } });
    expect(p.config.guest).toEqual({ cpu_kind: 'performance', cpus: 2, memory_mb: 4096 });
  });

  it('lists with region, state, metadata.<key>, summary and include_deleted', async () => {
    const app = 'listing';
    const a = await createMachine(api, app, { skip_launch: true, region: 'ord', config: { image: IMAGE, metadata: { workspace_id: 'w-a', team: 'x' } } });
    const b = await createMachine(api, app, { skip_launch: true, region: 'fra', config: { image: IMAGE, metadata: { workspace_id: 'w-b', team: 'x' } } });
    const all = await api.get(`/v1/apps/${app}/machines`);
    expect(all.body.map((m: { id: string }) => m.id)).toEqual([a.id, b.id]);
    expect((await api.get(`/v1/apps/${app}/machines?region=fra`)).body.map((m: { id: string }) => m.id)).toEqual([b.id]);
    expect((await api.get(`/v1/apps/${app}/machines?metadata.workspace_id=w-a`)).body.map((m: { id: string }) => m.id)).toEqual([a.id]);
    expect((await api.get(`/v1/apps/${app}/machines?metadata.team=x&metadata.workspace_id=w-b`)).body.map((m: { id: string }) => m.id)).toEqual([b.id]);
    expect((await api.get(`/v1/apps/${app}/machines?metadata.workspace_id=nope`)).body).toEqual([]);
    expect((await api.get(`/v1/apps/${app}/machines?state=started`)).body).toEqual([]);
    expect((await api.get(`/v1/apps/${app}/machines?state=started,created`)).body).toHaveLength(2);
    const summary = (await api.get(`/v1/apps/${app}/machines?summary=true`)).body;
    expect(summary[0].events).toBeUndefined();
    expect(summary[0].config).toEqual({ image: IMAGE, guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 }, metadata: { workspace_id: 'w-a', team: 'x' } });
    // destroyed machines: hidden by default, shown with include_deleted
    expect((await api.del(`/v1/apps/${app}/machines/${a.id}`)).status).toBe(200);
    await sim.waitForState(a.id, 'destroyed');
    expect((await api.get(`/v1/apps/${app}/machines`)).body.map((m: { id: string }) => m.id)).toEqual([b.id]);
    const withDeleted = (await api.get(`/v1/apps/${app}/machines?include_deleted=true`)).body;
    expect(withDeleted.map((m: { id: string; state: string }) => [m.id, m.state])).toEqual([
      [a.id, 'destroyed'],
      [b.id, 'created'],
    ]);
  });
});

describe('validation (spec + semantic checks)', () => {
  const post = (body: unknown) => api.post('/v1/apps/val/machines', body);

  it('rejects wrong types with Go\'s wording, naming the field', async () => {
    const r = await post({ config: { image: IMAGE, guest: { memory_mb: '512' } } });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: 'json: cannot unmarshal string into Go struct field MachineGuest.config.guest.memory_mb of type int' });
    const env = await post({ config: { image: IMAGE, env: { A: 1 } } });
    expect(env.status).toBe(400);
    expect(env.body.error).toContain('config.env');
    const region = await post({ config: { image: IMAGE }, region: 5 });
    expect(region.body.error).toBe('json: cannot unmarshal number into Go struct field CreateMachineRequest.region of type string');
    const restart = await post({ config: { image: IMAGE, restart: { policy: 'sometimes' } } });
    expect(restart.status).toBe(400);
    expect(restart.body.error).toContain('config.restart.policy');
  });

  it('requires config.image', async () => {
    for (const body of [{}, { config: {} }, { config: { image: '' } }]) {
      const r = await post(body);
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ error: 'invalid config.image, image is required' });
    }
  });

  it('enforces the guest limits with Fly\'s texts', async () => {
    const cases: Array<[object, string]> = [
      [{ cpu_kind: 'shared', cpus: 4, memory_mb: 512 }, 'invalid config.guest.memory_mb, minimum required 1024 MiB'],
      [{ cpu_kind: 'shared', cpus: 1, memory_mb: 4096 }, 'invalid config.guest.memory_mb, cannot exceed 2048 MiB'],
      [{ cpu_kind: 'performance', cpus: 8, memory_mb: 8192 }, 'invalid config.guest.memory_mb, minimum required 16384 MiB'],
      [{ cpu_kind: 'shared', cpus: 1, memory_mb: 300 }, 'invalid config.guest.memory_mb, must be a multiple of 256 MiB'],
    ];
    for (const [guest, text] of cases) {
      const r = await post({ config: { image: IMAGE, guest }, skip_launch: true });
      expect(r.status, JSON.stringify(guest)).toBe(400);
      expect(r.body).toEqual({ error: text });
    }
    const cpus = await post({ config: { image: IMAGE, guest: { cpu_kind: 'shared', cpus: 3, memory_mb: 768 } } });
    expect(cpus.status).toBe(400);
    expect(cpus.body.error).toMatch(/^invalid config\.guest\.cpus/);
    for (const guest of [{ cpu_kind: 'shared', cpus: 4, memory_mb: 1024 }, { cpu_kind: 'shared', cpus: 2, memory_mb: 512 }, { cpu_kind: 'shared', cpus: 8, memory_mb: 2048 }]) {
      expect((await post({ config: { image: IMAGE, guest }, skip_launch: true })).status).toBe(200);
    }
  });

  it('rejects unknown regions and bad durations', async () => {
    const r = await post({ config: { image: IMAGE }, region: 'xyz' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/^invalid region "xyz"/);
    const d = await post({ config: { image: IMAGE, stop_config: { timeout: 'ten seconds' } } });
    expect(d.status).toBe(400);
    expect(d.body.error).toBe('invalid config.stop_config.timeout: time: invalid duration "ten seconds"');
  });

  it('rejects a body that is not JSON', async () => {
    const r = await api.post('/v1/apps/val/machines', '{"config": ');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/^invalid JSON body/);
  });

  it('accepts the client dialects of reference §13', async () => {
    const m = await createMachine(api, 'dialects', {
      skip_launch: true,
      config: {
        image: IMAGE,
        stop_config: { signal: 'SIGINT', timeout: 5_000_000_000 },
        services: [{ internal_port: 8000, protocol: 'tcp', autostop: true, autostart: true, ports: [{ port: 443 }] }],
        checks: { alive: { type: 'http', port: 8000, path: '/healthz', interval: 15_000_000_000, timeout: '2s' } },
      },
    });
    expect(m.config.stop_config.timeout).toBe(5_000_000_000);
    expect(m.config.services[0].autostop).toBe(true);
    const s = await createMachine(api, 'dialects', { skip_launch: true, config: { image: IMAGE, services: [{ internal_port: 8000, autostop: 'stop' }, { internal_port: 9000, autostop: 'suspend' }] } });
    // responses use booleans for "off"/"stop" (spec description), strings otherwise
    expect(s.config.services.map((x: { autostop: unknown }) => x.autostop)).toEqual([true, 'suspend']);
    // null fields are accepted (Go leaves them at their zero value)
    expect((await post({ config: { image: IMAGE, env: null }, region: null, name: null, skip_launch: true })).status).toBe(200);
    // destroy with kill=true (fly-go) as well as force=true (spec)
    expect((await api.post(`/v1/apps/dialects/machines/${m.id}/start`)).status).toBe(200);
    expect((await api.del(`/v1/apps/dialects/machines/${m.id}?kill=true`)).status).toBe(200);
  });
});

describe('names', () => {
  it('are unique per app, with Fly\'s 409 text; a destroyed machine frees its name', async () => {
    const a = await createMachine(api, 'names', { name: 'ws-123', skip_launch: true });
    const dup = await api.post('/v1/apps/names/machines', { name: 'ws-123', config: { image: IMAGE } });
    expect(dup.status).toBe(409);
    expect(dup.body).toEqual({ error: `already_exists: unique machine name violation, machine ID ${a.id} already exists with name "ws-123"` });
    // same name in another app is fine
    expect((await api.post('/v1/apps/names-2/machines', { name: 'ws-123', config: { image: IMAGE }, skip_launch: true })).status).toBe(200);
    expect((await api.del(`/v1/apps/names/machines/${a.id}`)).status).toBe(200);
    await sim.waitForState(a.id, 'destroyed');
    expect((await api.post('/v1/apps/names/machines', { name: 'ws-123', config: { image: IMAGE }, skip_launch: true })).status).toBe(200);
  });
});

describe('request log', () => {
  it('records method, path, query, body and status, and entries validate against the spec', async () => {
    sim.clearRequests();
    await api.post('/v1/apps/log/machines', { config: { image: IMAGE, metadata: { k: 'v' } }, skip_launch: true });
    await api.post('/v1/apps/log/machines', { config: { image: IMAGE, guest: { cpus: 'two' } } });
    await api.get('/v1/apps/log/machines?metadata.k=v');
    const entries = sim.requests({ app: 'log' });
    expect(entries.map((e) => [e.method, e.path, e.status, e.action])).toEqual([
      ['POST', '/v1/apps/log/machines', 200, 'create'],
      ['POST', '/v1/apps/log/machines', 400, 'create'],
      ['GET', '/v1/apps/log/machines', 200, 'list'],
    ]);
    expect(entries[0].body).toEqual({ config: { image: IMAGE, metadata: { k: 'v' } }, skip_launch: true });
    expect(entries[2].query).toEqual({ 'metadata.k': 'v' });
    expect(validateRecordedRequest(entries[0]).ok).toBe(true);
    const bad = validateRecordedRequest(entries[1]);
    expect(bad.ok).toBe(false);
    expect(bad.error).toBe('json: cannot unmarshal string into Go struct field MachineGuest.config.guest.cpus of type int');
    // also over HTTP, for a test in another process
    const http = await api.get('/__sim/requests');
    expect(http.status).toBe(200);
    expect(http.body.filter((e: { app?: string }) => e.app === 'log')).toHaveLength(3);
  });
});
