import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import type { ChatProvider, RespondRequest } from '../../src/agent/providers/types.js';
import { legacySend, rpc, rpcRaw, testConfig } from './support/agent.js';
import { gate } from './support/http.js';
import { captureLogs } from './support/logs.js';
import { resultOf, SseReader } from './support/sse.js';

/** A provider that streams one chunk, then waits for the gate (or an abort) before finishing. */
function gatedProvider(hold: Promise<void>, onStart?: () => void): ChatProvider {
  return {
    name: 'gated',
    model: 'gated-1',
    async respond(req: RespondRequest) {
      onStart?.();
      req.onText?.('first ');
      await new Promise<void>((resolve, reject) => {
        req.signal.addEventListener('abort', () => reject(req.signal.reason), { once: true });
        void hold.then(resolve);
      });
      req.onText?.('second');
      return req.onText ? 'first second' : 'done';
    },
  };
}

describe('agent lifecycle', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  async function start(provider: ChatProvider): Promise<AgentHandle> {
    const agent = await startAgent(testConfig(), { logger: captureLogs().logger, provider });
    cleanups.push(() => agent.close());
    return agent;
  }

  it('close() aborts turns still running after the grace period and still answers their callers', async () => {
    const never = new Promise<void>(() => {});
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const agent = await start(gatedProvider(never, started));
    const reply = rpc(agent.url, legacySend('this will never finish'));
    await running;
    expect(agent.turns.activeCount).toBe(1);
    await agent.close({ graceMs: 100 });
    const { json } = await reply;
    expect(json.result.parts[0].text).toBe('The turn failed: the agent is shutting down');
    expect(agent.turns.activeCount).toBe(0);
    await expect(fetch(`${agent.url}/healthz`)).rejects.toThrow();
  });

  it('a stream whose caller disconnects keeps running; tasks/get returns the finished task', async () => {
    const hold = gate();
    const agent = await start(gatedProvider(hold.promise));
    const res = await rpcRaw(agent.url, legacySend('keep going', { method: 'message/stream' }));
    const sse = new SseReader(res);
    const taskId = resultOf(await sse.next()).id;
    await sse.until((e) => resultOf(e).kind === 'artifact-update');
    await sse.cancel();
    hold.open();
    await agent.turns.whenIdle();
    const got = await rpc(agent.url, { jsonrpc: '2.0', id: 'g', method: 'tasks/get', params: { id: taskId } });
    expect(got.json.result.status.state).toBe('completed');
    expect(got.json.result.artifacts[0].parts.map((p: any) => p.text).join('')).toBe('first second');
  });

  it('/healthz reports running turns', async () => {
    const hold = gate();
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const agent = await start(gatedProvider(hold.promise, started));
    const reply = rpc(agent.url, legacySend('busy'));
    try {
      await running;
      const health = await (await fetch(`${agent.url}/healthz`)).json();
      expect(health.active_tasks).toBe(1);
    } finally {
      hold.open();
    }
    expect((await reply).json.result.parts[0].text).toBe('done');
  });
});
