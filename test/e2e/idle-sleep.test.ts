import fs from 'node:fs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { startFlySim, type FlySim } from '../../tools/fly-sim/index.js';
import { DOCKER_SOCKET, dockerDescribe, removeByPlatformId, TEST_IMAGE_TEMPLATE_ENV } from '../docker/support.js';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.js';
import { api, FAST_ENV, killRecordedAgents, processEnv, tempDir, waitFor, waitReady, type Api } from '../support/harness.js';

/**
 * Issue 14 on each backend, through the real platform and the A2A proxy: an idle workspace sleeps after its
 * timeout, an open stream keeps it awake, a message wakes it and gets its answer, ten messages share one wake, a
 * wake that takes too long ends in workspace_not_ready, and a paused workspace is not woken.
 */
interface Backend {
  env: () => Record<string, string>;
  /** How the instance sleeps here ('instance suspended' on Fly within its limits). */
  sleepStep: string;
  /** Whether agents can reach a model server on the host's loopback (not from inside containers). */
  loopbackModel: boolean;
  before?: () => Promise<void>;
  after?: (platformId: string | undefined) => Promise<void>;
}

const IDLE_S = 2;

function sleepSuite(name: string, b: Backend, wrap: (name: string, fn: () => void) => void = (n, fn) => describe(n, { shuffle: false }, fn)) {
  wrap(`idle workspaces sleep and wake on a message: ${name}`, () => {
    const dataDir = tempDir(`idle-${name}`);
    let platform: Platform;
    let http: Api;
    let model: FakeOpenAI;
    let platformId: string | undefined;

    const get = async (id: string) => (await http.call('GET', `/workspaces/${id}`)).body;
    const events = async (id: string) => (await http.call('GET', `/workspaces/${id}/events`)).body as any[];
    const statusEvents = async (id: string) => (await events(id)).filter((e) => e.type === 'workspace.status').map((e) => e.data);
    const ask = (id: string, text = 'What region are you running in?') =>
      http.call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: 'q', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text }] } } });
    const asleep = (id: string, timeoutMs = 60_000) => waitFor(`${id} sleeping`, async () => (await get(id)).status === 'sleeping', timeoutMs, 200);
    const create = async (body: Record<string, unknown>) => {
      const r = await http.call('POST', '/workspaces', { name: `idle-${name}`, idle_timeout_s: IDLE_S, ...body });
      expect(r.status, r.text).toBe(201);
      await waitReady(http, r.body.id, { timeoutMs: 120_000 });
      return r.body.id as string;
    };
    const platformEnv = () => ({ ...FAST_ENV, ...b.env(), PORT: '0', MOLECULE_DATA_DIR: dataDir, LOG_LEVEL: 'warn', MOLECULE_ACTIVITY_FLUSH_MS: '200', MOLECULE_WAKE_TIMEOUT_S: '90' });
    const metric = async (line: RegExp) => Number((await http.call('GET', '/metrics')).text.match(line)?.[1] ?? NaN);

    beforeAll(async () => {
      await b.before?.();
      model = await startFakeOpenAI(() => 'pong');
      platform = await startPlatform({ env: platformEnv(), logger: pino({ level: 'warn' }) });
      http = api(platform.url);
      platformId = (await http.call('GET', '/healthz')).body.backend.platform_id;
    }, 120_000);

    afterAll(async () => {
      await platform?.close();
      await b.after?.(platformId);
      killRecordedAgents(dataDir);
      await model?.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }, 120_000);

    let ws: string;

    it('sleeps after its timeout: status event with the reason, the instance down, tokens revoked, counted', async () => {
      ws = await create({});
      expect((await get(ws)).idle_timeout_s).toBe(IDLE_S);
      await asleep(ws);
      const slept = await get(ws);
      expect(slept.status_reason).toMatch(/^idle for \d+ s \(idle_timeout_s 2\)/);
      await waitFor('the instance down', async () => (await events(ws)).some((e) => e.type === 'workspace.step' && e.data.step === b.sleepStep), 30_000, 200);
      expect(await metric(/^molecule_workspace_sleeps_total (\d+)/m)).toBeGreaterThanOrEqual(1);
    }, 180_000);

    it('a message wakes it (provisioning "woken by A2A", then ready) and gets its answer', async () => {
      const r = await ask(ws);
      expect(r.status).toBe(200);
      expect(r.body.error, r.text).toBeUndefined();
      expect(r.body.result.parts[0].text).toMatch(/region/i);
      expect((await get(ws)).status).toBe('ready');
      const st = await statusEvents(ws);
      const i = st.findIndex((s) => s.from === 'sleeping');
      expect(st[i]).toMatchObject({ to: 'provisioning', reason: 'woken by A2A' });
      expect(st.slice(i + 1).some((s) => s.to === 'ready')).toBe(true);
      expect(await metric(/^molecule_workspace_wakes_total\{trigger="a2a"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
      expect(await metric(/^molecule_wake_to_first_reply_seconds_count (\d+)/m)).toBeGreaterThanOrEqual(1);
    }, 180_000);

    it('10 concurrent messages cause one wake, and all get their answer', async () => {
      await asleep(ws);
      const before = (await statusEvents(ws)).filter((s) => s.reason === 'woken by A2A').length;
      const answers = await Promise.all(Array.from({ length: 10 }, () => ask(ws)));
      for (const r of answers) expect(r.body.result?.parts?.[0]?.text, r.text).toMatch(/region/i);
      expect((await statusEvents(ws)).filter((s) => s.reason === 'woken by A2A').length).toBe(before + 1);
    }, 180_000);

    it('a wake that does not complete in time ends in the JSON-RPC not-ready error (HTTP 200)', async () => {
      await asleep(ws);
      platform.config.idle.wakeTimeoutMs = 1;
      try {
        const r = await ask(ws);
        expect(r.status).toBe(200);
        expect(r.body.error).toMatchObject({ code: -32030, data: { code: 'workspace_not_ready' } });
        expect(r.body.error.message).toMatch(/did not wake within/);
      } finally {
        platform.config.idle.wakeTimeoutMs = 90_000;
      }
      // The wake goes on without the caller.
      await waitReady(http, ws, { timeoutMs: 120_000 });
    }, 180_000);

    it('a message does not wake a paused workspace; POST /wake wakes a sleeping one', async () => {
      await asleep(ws);
      const woken = await http.call('POST', `/workspaces/${ws}/wake`);
      expect(woken.status).toBe(202);
      expect(woken.body).toMatchObject({ status: 'provisioning', status_reason: 'wake requested' });
      await waitReady(http, ws, { timeoutMs: 120_000 });
      expect((await http.call('POST', `/workspaces/${ws}/pause`)).status).toBe(200);
      const r = await ask(ws);
      expect(r.body.error).toMatchObject({ data: { code: 'workspace_not_ready', status: 'paused' } });
      expect((await get(ws)).status).toBe('paused');
      expect((await http.call('POST', `/workspaces/${ws}/wake`)).status).toBe(409);
    }, 180_000);

    it('stays asleep across a platform restart, with no instance started', async () => {
      expect((await http.call('POST', `/workspaces/${ws}/resume`)).status).toBe(202);
      await waitReady(http, ws, { timeoutMs: 120_000 });
      await asleep(ws);
      await waitFor('the instance down', async () => {
        const evs = await events(ws);
        const i = evs.map((e) => e.type === 'workspace.status' && e.data.to === 'sleeping').lastIndexOf(true);
        return evs.slice(i).some((e) => e.data.step === b.sleepStep);
      }, 30_000, 200);
      const seen = (await events(ws)).length;
      await platform.close();
      platform = await startPlatform({ env: platformEnv(), logger: pino({ level: 'warn' }) });
      http = api(platform.url);
      // Activation looks at every workspace with the backend's view; then a few liveness and idle passes.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await get(ws)).status).toBe('sleeping');
      const after = (await events(ws)).slice(seen);
      expect(after.filter((e) => e.type === 'workspace.status' || /instance (requested|started)/.test(String(e.data.step)))).toEqual([]);
    }, 180_000);

    it.runIf(b.loopbackModel)('a streaming task in flight keeps it awake', async () => {
      const id = await create({ env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: model.url, MODEL: 'fake' } });
      model.holdNextStream();
      const gate = model.gate!;
      const abort = new AbortController();
      const stream = await fetch(`${platform.url}/workspaces/${id}/a2a`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 's', method: 'message/stream', params: { message: { role: 'user', kind: 'message', messageId: 'm1', parts: [{ kind: 'text', text: 'hi' }] } } }),
        signal: abort.signal,
      });
      expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);
      // Well past the timeout (and a heartbeat or two): still awake.
      await new Promise((r) => setTimeout(r, (IDLE_S + 3) * 1000));
      expect((await get(id)).status).toBe('ready');
      gate.release();
      const text = await stream.text();
      expect(text).toContain('pong');
      await asleep(id);
    }, 180_000);

    it.runIf(name === 'process')('an agent-to-agent call (a workspace token) wakes a sleeping sibling', async () => {
      const caller = await create({ name: 'caller', idle_timeout_s: null });
      const callee = await create({ name: 'callee' });
      await asleep(callee);
      const token = processEnv(Number((await get(caller)).instance.pid), 'MOLECULE_WORKSPACE_TOKEN');
      expect(token).toMatch(/^mws_/);
      const r = await api(platform.url, token).call('POST', `/workspaces/${callee}/a2a`, {
        jsonrpc: '2.0',
        id: 'a2a',
        method: 'message/send',
        params: { message: { role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] } },
      });
      expect(r.body.result?.parts?.[0]?.text, r.text).toMatch(/region/i);
      expect((await statusEvents(callee)).some((s) => s.from === 'sleeping' && s.reason === 'woken by A2A')).toBe(true);
      expect((await get(caller)).status).toBe('ready');
    }, 180_000);
  });
}

sleepSuite('process', { env: () => ({ CONTAINER_BACKEND: 'process' }), sleepStep: 'instance stopped', loopbackModel: true });

let sim: FlySim;
sleepSuite('flyio (simulator)', {
  before: async () => {
    sim = await startFlySim({});
  },
  after: async () => {
    await sim?.close();
  },
  env: () => ({ CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: 'idle-sleep', ...sim.env }),
  sleepStep: 'instance suspended',
  loopbackModel: true,
});

sleepSuite(
  'docker',
  {
    env: () => ({ CONTAINER_BACKEND: 'docker', DOCKER_HOST: `unix://${DOCKER_SOCKET}`, MOLECULE_RUNTIME_IMAGE: TEST_IMAGE_TEMPLATE_ENV, MOLECULE_DOCKER_STOP_TIMEOUT_S: '2' }),
    sleepStep: 'instance stopped',
    loopbackModel: false,
    after: async (platformId) => {
      if (platformId) await removeByPlatformId(platformId);
    },
  },
  (n, fn) => dockerDescribe(n, fn, { shuffle: false }),
);
