import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import { ProviderError, type ChatProvider, type RespondRequest } from '../../src/agent/providers/types.js';
import { AGENT_TOKEN, legacySend, rpc, testConfig, WORKSPACE_TOKEN } from './support/agent.js';
import { FakePlatform } from './support/fake-platform.js';
import { gate, reservePort } from './support/http.js';
import { captureLogs } from './support/logs.js';

describe('registration and heartbeats', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  async function platformOn(port = 0): Promise<FakePlatform> {
    const platform = new FakePlatform();
    await platform.listen(port);
    cleanups.push(() => platform.close());
    return platform;
  }

  async function agentFor(platformUrl: string, logs = captureLogs(), extra: { provider?: ChatProvider } = {}): Promise<AgentHandle> {
    const agent = await startAgent(testConfig({ platform: { url: platformUrl, token: WORKSPACE_TOKEN } }), { logger: logs.logger, ...extra });
    cleanups.push(() => agent.close());
    return agent;
  }

  it('retries registration until the platform comes up, then heartbeats with the workspace token', async () => {
    const port = await reservePort();
    const logs = captureLogs();
    const agent = await agentFor(`http://127.0.0.1:${port}`, logs);
    // The platform is down: wait until the agent has failed to connect twice.
    await logs.waitForCount((l) => l.msg === 'platform unreachable; retrying registration', 2);
    expect(agent.platformState()).toBe('registering');
    expect(logs.lines.find((l) => l.msg === 'platform unreachable; retrying registration')?.error).toMatch(/ECONNREFUSED/);

    const platform = await platformOn(port);
    const [register] = await platform.waitFor('register');
    expect(register!.authorization).toBe(`Bearer ${WORKSPACE_TOKEN}`);
    expect(register!.body.url).toBe(agent.url);
    const card = register!.body.agent_card as Record<string, any>;
    expect(card.name).toBe('alpha');
    expect(card.capabilities.streaming).toBe(true);
    expect(card.supportedInterfaces[0].url).toBe(`${agent.url}/`);
    await logs.waitFor((l) => l.msg === 'registered with the platform');

    const heartbeats = await platform.waitFor('heartbeat', 2);
    for (const hb of heartbeats) {
      expect(hb.authorization).toBe(`Bearer ${WORKSPACE_TOKEN}`);
      expect(hb.body).toEqual({ active_tasks: 0, current_task: null, error_rate: 0, uptime_s: expect.any(Number) });
    }
    expect(agent.platformState()).toBe('registered');
    const everything = logs.raw.join('');
    expect(everything).not.toContain(WORKSPACE_TOKEN);
    expect(everything).not.toContain(AGENT_TOKEN);
  });

  it('keeps retrying (and says why) while the platform refuses the token', async () => {
    const platform = await platformOn();
    platform.registerStatus = (_c, i) => (i < 2 ? 401 : 200);
    const logs = captureLogs();
    await agentFor(platform.url, logs);
    const registers = await platform.waitFor('register', 3);
    expect(registers).toHaveLength(3);
    await platform.waitFor('heartbeat', 1);
    const refused = logs.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('registration refused'));
    expect(refused).toMatchObject({ status: 401, level: 40 });
  });

  it('retries registration on 5xx', async () => {
    const platform = await platformOn();
    platform.registerStatus = (_c, i) => (i === 0 ? 503 : 200);
    await agentFor(platform.url);
    await platform.waitFor('heartbeat', 1);
    expect(platform.registers()).toHaveLength(2);
  });

  it('registers again when a heartbeat answers 401 or 404', async () => {
    const platform = await platformOn();
    platform.heartbeatStatus = (_c, i) => (i === 0 ? 401 : i === 1 ? 404 : 200);
    const agent = await agentFor(platform.url);
    await platform.waitFor('register', 3);
    await platform.waitFor('heartbeat', 3);
    const paths = platform.calls.map((c) => c.path.replace('/registry/', ''));
    expect(paths.slice(0, 5)).toEqual(['register', 'heartbeat', 'register', 'heartbeat', 'register']);
    expect(agent.platformState()).toBe('registered');
  });

  it('stops when a heartbeat answers 410 (workspace removed)', async () => {
    const platform = await platformOn();
    platform.heartbeatStatus = (_c, i) => (i >= 1 ? 410 : 200);
    const logs = captureLogs();
    const agent = await agentFor(platform.url, logs);
    await agent.removed;
    expect(agent.platformState()).toBe('removed');
    expect(platform.heartbeats().map((h) => h.path)).toHaveLength(2);
    expect(logs.lines.some((l) => l.msg === 'the platform says this workspace was removed; stopping')).toBe(true);
  });

  it('heartbeats keep flowing during a long model call and report the running task', async () => {
    const hold = gate();
    let started!: () => void;
    const turnStarted = new Promise<void>((r) => (started = r));
    const slow: ChatProvider = {
      name: 'slow',
      model: 'slow-1',
      async respond(req: RespondRequest) {
        started();
        await hold.promise;
        return `done: ${req.userText}`;
      },
    };
    const platform = await platformOn();
    const agent = await agentFor(platform.url, captureLogs(), { provider: slow });
    await platform.waitFor('heartbeat', 1);
    const reply = rpc(agent.url, legacySend('take your time'));
    try {
      await turnStarted;
      const before = platform.heartbeats().length;
      const beats = await platform.waitFor('heartbeat', before + 3);
      const during = beats.slice(before);
      expect(during.every((h) => h.body.active_tasks === 1)).toBe(true);
      expect(during.every((h) => typeof h.body.current_task === 'string' && h.body.current_task.length > 0)).toBe(true);
    } finally {
      hold.open();
    }
    expect((await reply).json.result.parts[0].text).toBe('done: take your time');
  });

  it('reports error_rate over recent turns; failed turns answer with the provider error', async () => {
    let n = 0;
    const flaky: ChatProvider = {
      name: 'flaky',
      model: 'flaky-1',
      async respond() {
        n++;
        if (n <= 2) throw new ProviderError('flaky', '503 upstream overloaded', 503);
        return 'fine';
      },
    };
    const platform = await platformOn();
    const agent = await agentFor(platform.url, captureLogs(), { provider: flaky });
    const first = await rpc(agent.url, legacySend('one'));
    expect(first.json.result.parts[0].text).toBe('The model call failed (flaky): 503 upstream overloaded');
    expect(first.json.result.metadata).toEqual({ error: true });
    await rpc(agent.url, legacySend('two'));
    const third = await rpc(agent.url, legacySend('three'));
    expect(third.json.result.parts[0].text).toBe('fine');
    expect(agent.turns.errorRate).toBeCloseTo(2 / 3);
    const before = platform.heartbeats().length;
    const beats = await platform.waitFor('heartbeat', before + 1);
    expect(beats.at(-1)!.body.error_rate).toBeCloseTo(2 / 3);
  });
});
