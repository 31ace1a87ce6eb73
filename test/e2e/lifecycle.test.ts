import fs from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import WebSocket from 'ws';
import { ProcessProvisioner } from '../../src/backends/process/index.js';
import { ProvisionError, type InstanceSpec } from '../../src/core/provisioner.js';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, killRecordedAgents, pidAlive, tempDir, waitFor, waitReady, waitStatus, type Api } from '../support/harness.js';
import { instanceSpec } from '../support/instance.js';

const logger = pino({ level: 'silent' });
const dirs: string[] = [];
const platforms: Platform[] = [];

async function platformWith(env: Record<string, string> = {}, command?: ConstructorParameters<typeof ProcessProvisioner>[0]['command']) {
  const dataDir = tempDir('life');
  dirs.push(dataDir);
  const provisioner = command ? new ProcessProvisioner({ dataDir, logger, command, stopGraceMs: 1000 }) : undefined;
  const p = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', ...env }, logger, provisioner });
  platforms.push(p);
  return { p, http: api(p.url), dataDir };
}

const statusOf = async (http: Api, id: string) => (await http.call('GET', `/workspaces/${id}`)).body;

afterEach(async () => {
  for (const p of platforms.splice(0)) await p.close();
  for (const d of dirs) killRecordedAgents(d);
});
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('lifecycle failures and recovery', () => {
  it('ends a crash loop in failed with the reason, keeps the logs, and retries on restart', async () => {
    const crash = () => ({ command: process.execPath, args: ['-e', 'console.error("boom: no config"); process.exit(3)'] });
    const { http } = await platformWith({ MOLECULE_CRASH_LOOP_MAX: '3' }, crash);
    const ws = (await http.call('POST', '/workspaces', { name: 'crashy' })).body.id;
    const failed = await waitStatus(http, ws, 'failed', { what: 'failed' });
    expect(failed.status_reason).toMatch(/crash loop/);
    expect(failed.status_reason).toMatch(/exited with code 3/);
    expect(failed.restart_count).toBe(3);
    const logs = await http.call('GET', `/workspaces/${ws}/logs`);
    expect(logs.text).toContain('boom: no config');
    const retry = await http.call('POST', `/workspaces/${ws}/restart`);
    expect(retry.status).toBe(202);
    expect(retry.body.status).toBe('provisioning');
  });

  it('rides out a backend outage longer than the crash-loop budget: retried, never failed, not counted as crashes', async () => {
    class FlakyBackend extends ProcessProvisioner {
      down = false;
      refused = 0;
      private refuse(): void {
        if (!this.down) return;
        this.refused++;
        throw new ProvisionError('BACKEND_UNAVAILABLE', 'the engine is away', true);
      }
      override async start(spec: InstanceSpec) {
        this.refuse();
        return super.start(spec);
      }
      override async restart(id: string | null, spec: InstanceSpec) {
        this.refuse();
        return super.restart(id, spec);
      }
    }
    const dataDir = tempDir('life-outage');
    dirs.push(dataDir);
    const backend = new FlakyBackend({ dataDir, logger });
    const p = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_CRASH_LOOP_MAX: '2', MOLECULE_RESTART_BACKOFF_MAX_MS: '400' },
      logger,
      provisioner: backend,
    });
    platforms.push(p);
    const http = api(p.url);
    const ws = (await http.call('POST', '/workspaces', { name: 'outage' })).body.id;
    const ready = await waitReady(http, ws);
    backend.down = true;
    process.kill(ready.instance.pid, 'SIGKILL');
    await waitFor('starts refused well past the crash-loop budget', async () => backend.refused >= 5, 30_000);
    expect((await statusOf(http, ws)).status).not.toBe('failed');
    backend.down = false;
    const back = await waitFor('ready again once the backend answers', async () => {
      const w = await statusOf(http, ws);
      expect(w.status).not.toBe('failed');
      return w.status === 'ready' && w;
    }, 30_000);
    // Only the real crash counts: one more crash is still inside the budget of 2.
    process.kill(back.instance.pid, 'SIGKILL');
    await waitFor('ready after a single real crash', async () => {
      const w = await statusOf(http, ws);
      expect(w.status).not.toBe('failed');
      return w.status === 'ready' && w.instance.pid !== back.instance.pid;
    }, 30_000);
  });

  it('retries a failing delete without adding an event per retry, and finishes it once the backend lets it', async () => {
    class StuckBackend extends ProcessProvisioner {
      refusals = 2;
      attempts = 0;
      override async destroy(id: string) {
        this.attempts++;
        if (this.refusals-- > 0) throw new ProvisionError('BACKEND_UNAVAILABLE', 'the engine is away', true);
        return super.destroy(id);
      }
    }
    const dataDir = tempDir('life-stuck-delete');
    dirs.push(dataDir);
    const backend = new StuckBackend({ dataDir, logger });
    const p = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' }, logger, provisioner: backend });
    platforms.push(p);
    const http = api(p.url);
    const ws = (await http.call('POST', '/workspaces', { name: 'stuck' })).body.id;
    await waitReady(http, ws);
    expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
    await waitFor('removed', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 30_000, 250);
    expect(backend.attempts).toBe(3);
    const failures = ((await http.call('GET', `/workspaces/${ws}/events`)).body as any[]).filter(
      (e) => e.type === 'workspace.status' && /destroying the instance failed/.test(String(e.data.reason)),
    );
    expect(failures).toHaveLength(1);
  }, 45_000);

  it('fails a workspace whose agent never registers, and stops its instance', async () => {
    const { http } = await platformWith({ MOLECULE_PROVISION_TIMEOUT_S: '2', PLATFORM_URL: 'http://127.0.0.1:9' });
    const ws = (await http.call('POST', '/workspaces', { name: 'lonely' })).body.id;
    await waitFor('instance started', async () => (await statusOf(http, ws)).instance?.pid);
    const pid = (await statusOf(http, ws)).instance.pid;
    const failed = await waitStatus(http, ws, 'failed', { what: 'failed' });
    expect(failed.status_reason).toMatch(/^AGENT_NEVER_REGISTERED/);
    expect(pidAlive(pid)).toBe(false);
  });

  it('takes a frozen agent offline only after the backend and probes confirm, then restarts it', async () => {
    const { http } = await platformWith({ MOLECULE_PROBE_CONFIRMATIONS: '2' });
    const ws = (await http.call('POST', '/workspaces', { name: 'frozen' })).body.id;
    await waitReady(http, ws);
    const pid = (await statusOf(http, ws)).instance.pid;
    process.kill(pid, 'SIGSTOP'); // alive for the backend, silent for heartbeats and probes
    try {
      await waitReady(http, ws, { what: 'ready again with a new process', until: (w) => w.instance.pid !== pid, timeoutMs: 45_000 });
    } finally {
      if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    const evs = (await http.call('GET', `/workspaces/${ws}/events`)).body;
    const offline = evs.find((e: any) => e.type === 'workspace.status' && e.data.to === 'offline');
    expect(offline.data.reason).toMatch(/no heartbeat for \d+ s and \/healthz did not answer 2 probes \(backend: running\)/);
  }, 60_000);
});

describe('periodic reconcile', () => {
  it('destroys an instance that no workspace claims, and leaves the claimed ones alone', async () => {
    const { p, http } = await platformWith({ MOLECULE_RECONCILE_INTERVAL_S: '1' });
    const kept = (await http.call('POST', '/workspaces', { name: 'kept' })).body.id;
    await waitReady(http, kept);
    const stray = crypto.randomUUID();
    const handle = await p.provisioner.start(instanceSpec({ workspaceId: stray, name: 'stray', image: 'unused', agent: { agentToken: 'x' } }));
    const pid = handle.details.pid as number;
    await waitFor('the stray instance destroyed', async () => !(await p.provisioner.list()).some((i) => i.workspaceId === stray), 15_000);
    expect(pidAlive(pid)).toBe(false);
    expect((await statusOf(http, kept)).status).toBe('ready');
    expect((await p.provisioner.inspect((await statusOf(http, kept)).instance.id)).state).toBe('running');
  });
});

describe('API behaviour', () => {
  it('returns the same workspace for a repeated Idempotency-Key', async () => {
    const { http } = await platformWith();
    const a = await http.call('POST', '/workspaces', { name: 'once' }, { 'Idempotency-Key': 'k-1' });
    const b = await http.call('POST', '/workspaces', { name: 'once' }, { 'Idempotency-Key': 'k-1' });
    expect(a.status).toBe(201);
    expect(b.status).toBe(200);
    expect(b.body.id).toBe(a.body.id);
    expect((await http.call('GET', '/workspaces')).body).toHaveLength(1);
  });

  it('marks needs_restart on a patch that affects the instance, and clears it on restart', async () => {
    const { http } = await platformWith();
    const ws = (await http.call('POST', '/workspaces', { name: 'patchy' })).body.id;
    await waitReady(http, ws);
    const p = await http.call('PATCH', `/workspaces/${ws}`, { tier: 3, env: { GREETING: 'hi' } });
    expect(p.status).toBe(200);
    expect(p.body).toMatchObject({ tier: 3, env: { GREETING: 'hi' }, needs_restart: true });
    expect((await http.call('PATCH', `/workspaces/${ws}`, { tier: 9 })).status).toBe(400);
    await http.call('POST', `/workspaces/${ws}/restart`);
    await waitReady(http, ws, { what: 'ready after restart' });
    expect((await statusOf(http, ws)).needs_restart).toBe(false);
  });

  it('restarting a paused workspace resumes its instance', async () => {
    const { http } = await platformWith();
    const ws = (await http.call('POST', '/workspaces', { name: 'napper' })).body.id;
    await waitReady(http, ws);
    expect((await http.call('POST', `/workspaces/${ws}/pause`)).body.status).toBe('paused');
    expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(202);
    await waitReady(http, ws, { what: 'ready again' });
    const requested = (await http.call('GET', `/workspaces/${ws}/events`)).body.filter((e: any) => e.data.step === 'instance requested');
    expect(requested.map((e: any) => e.data.action)).toEqual(['start', 'resume']);
  });

  it('asks for confirmation before deleting a workspace with children, and cascades when confirmed', async () => {
    const { http } = await platformWith();
    const parent = (await http.call('POST', '/workspaces', { name: 'parent' })).body.id;
    const child = (await http.call('POST', '/workspaces', { name: 'child', parent_id: parent })).body.id;
    const refused = await http.call('DELETE', `/workspaces/${parent}`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'confirmation_required', children: [{ id: child }] });
    expect((await http.call('DELETE', `/workspaces/${parent}?confirm=true`)).status).toBe(202);
    await waitFor('both removed', async () => (await http.call('GET', `/workspaces/${child}`)).status === 410 && (await http.call('GET', `/workspaces/${parent}`)).status === 410);
  });

  it('answers caller mistakes with 4xx {error, code} and unknown things with 404', async () => {
    const { http } = await platformWith();
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/workspaces', { name: '' }, 400, 'invalid_request'],
      ['POST', '/workspaces', { name: 'x', tier: 5 }, 400, 'invalid_request'],
      ['POST', '/workspaces', { name: 'x', runtime: 'nope' }, 400, 'invalid_request'],
      ['POST', '/workspaces', { name: 'x', env: { PLATFORM_URL: 'http://evil' } }, 400, 'invalid_request'],
      ['POST', '/workspaces', '{"name": ', 400, 'invalid_json'],
      ['POST', '/workspaces', { name: 'x', parent_id: crypto.randomUUID() }, 400, 'unknown_parent'],
      ['GET', '/workspaces/not-an-id', undefined, 400, 'invalid_request'],
      ['GET', `/workspaces/${crypto.randomUUID()}`, undefined, 404, 'workspace_not_found'],
      ['DELETE', `/workspaces/${crypto.randomUUID()}`, undefined, 404, 'workspace_not_found'],
      ['GET', '/workspaces?status=asleep', undefined, 400, 'invalid_request'],
      ['POST', '/registry/register', { url: 'http://x', agent_card: {} }, 401, 'missing_token'],
      ['GET', '/nowhere', undefined, 404, 'route_not_found'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const r = await http.call(method, path, body);
      expect(`${method} ${path} → ${r.status} ${r.body?.code}`).toBe(`${method} ${path} → ${status} ${code}`);
      expect(typeof r.body.error).toBe('string');
    }
    const notJson = await http.call('POST', '/workspaces', 'name=x', { 'content-type': 'text/plain' });
    expect(notJson.status).toBe(400);
    const wrongType = await http.call('POST', '/workspaces', '<name>x</name>', { 'content-type': 'application/xml' });
    expect(wrongType.status).toBe(415);
    expect(wrongType.body.code).toBe('unsupported_media_type');
    expect((await http.call('GET', '/workspaces')).body).toEqual([]);
  });

  it('requires the admin token when one is configured, except for health and agents', async () => {
    const { p } = await platformWith({ MOLECULE_ADMIN_TOKEN: 'admin-secret' });
    const anon = api(p.url);
    expect((await anon.call('GET', '/workspaces')).status).toBe(401);
    expect((await anon.call('GET', '/healthz')).status).toBe(200);
    const admin = api(p.url, 'admin-secret');
    const ws = (await admin.call('POST', '/workspaces', { name: 'guarded' })).body.id;
    await waitReady(admin, ws, { what: 'ready (the agent registers without the admin token)' });
  });

  it('publishes every transition on /events (SSE) and /ws (WebSocket)', async () => {
    const { p, http } = await platformWith();
    const ws = new WebSocket(`${p.url.replace('http', 'ws')}/ws`);
    const wsEvents: any[] = [];
    ws.on('message', (m) => wsEvents.push(JSON.parse(String(m))));
    await new Promise((r) => ws.once('open', r));
    const sse = await fetch(`${p.url}/events`);
    const reader = sse.body!.getReader();
    const id = (await http.call('POST', '/workspaces', { name: 'watched' })).body.id;
    let text = '';
    await waitFor('ready seen on SSE', async () => {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
      return text.includes('"to":"ready"');
    });
    await reader.cancel();
    expect(text).toMatch(/event: workspace.created\n/);
    expect(text).toContain(`"workspace_id":"${id}"`);
    await waitFor('ready seen on WS', async () => wsEvents.some((e) => e.type === 'workspace.status' && e.data.to === 'ready'));
    expect(wsEvents[0]).toMatchObject({ type: 'workspace.created', workspace_id: id });
    ws.close();
    // Resume from an event id: the history is replayed.
    const replay = await fetch(`${p.url}/events?after=1`);
    const r2 = replay.body!.getReader();
    let replayed = '';
    await waitFor('replayed history', async () => {
      replayed += new TextDecoder().decode((await r2.read()).value);
      return replayed.includes('"to":"ready"');
    });
    await r2.cancel();
    expect(replayed).toContain('id: 2\n');
    expect(replayed).not.toContain('id: 1\n');
  });

  it('pushes heartbeat pulses on /ws?heartbeats=1 only, and never stores them as events', async () => {
    const { p, http } = await platformWith();
    const id = (await http.call('POST', '/workspaces', { name: 'pulsing' })).body.id;
    await waitReady(http, id);
    const listen = (query: string) => {
      const sock = new WebSocket(`${p.url.replace('http', 'ws')}/ws${query}`);
      const got: any[] = [];
      sock.on('message', (m) => got.push(JSON.parse(String(m))));
      return { sock, got, open: new Promise((r) => sock.once('open', r)) };
    };
    const withPulses = listen(`?heartbeats=1&workspace_id=${id}`);
    const plain = listen('');
    await Promise.all([withPulses.open, plain.open]);
    // FAST_ENV heartbeats every second.
    const pulses = await waitFor('two pulses', async () => {
      const ps = withPulses.got.filter((m) => m.type === 'workspace.heartbeat');
      return ps.length >= 2 && ps;
    }, 10_000);
    expect(pulses[0]).toMatchObject({ workspace_id: id, data: { last_heartbeat_at: expect.any(String), heartbeat: { current_task: null } } });
    expect(pulses[0].id).toBeUndefined();
    expect(Date.parse(pulses[1].data.last_heartbeat_at)).toBeGreaterThan(Date.parse(pulses[0].data.last_heartbeat_at));
    expect((await statusOf(http, id)).last_heartbeat_at >= pulses[1].data.last_heartbeat_at).toBe(true);
    expect(plain.got.filter((m) => m.type === 'workspace.heartbeat')).toEqual([]);
    withPulses.sock.close();
    plain.sock.close();
    const stored = (await http.call('GET', `/workspaces/${id}/events`)).body as any[];
    expect(stored.some((e) => e.type === 'workspace.heartbeat')).toBe(false);
  });

  it('describes itself: /healthz, /openapi.json, /metrics', async () => {
    const { http } = await platformWith();
    const h = (await http.call('GET', '/healthz')).body;
    expect(h).toMatchObject({ status: 'ok', backend: { name: 'process' }, database: { kind: 'sqlite' } });
    expect(h.backend.limits.heap).toBe(true);
    const spec = (await http.call('GET', '/openapi.json')).body;
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/workspaces', '/workspaces/{id}', '/workspaces/{id}/a2a', '/registry/register']));
    expect(spec.paths['/workspaces'].post.requestBody.content['application/json'].schema.properties.tier).toMatchObject({ minimum: 1, maximum: 4 });
    const m = await http.call('GET', '/metrics');
    expect(m.text).toContain('molecule_workspaces{status="ready"}');
  });
});
