import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import { legacySend, rpc, rpcRaw, streamedText, testConfig } from './support/agent.js';
import { FakeAnthropic } from './support/fake-models.js';
import { gate } from './support/http.js';
import { captureLogs } from './support/logs.js';
import { resultOf, SseReader } from './support/sse.js';

const API_KEY = 'sk-ant-test-0a9b7c';

/** The Anthropic SDK sends the key as a bearer or x-api-key header depending on version; accept either. */
function keyOf(headers: Record<string, unknown>): unknown {
  const auth = headers.authorization;
  return typeof auth === 'string' ? auth.replace(/^Bearer /, '') : headers['x-api-key'];
}

describe('Anthropic provider', () => {
  const model = new FakeAnthropic();
  let agent: AgentHandle;

  beforeAll(async () => {
    await model.listen();
    agent = await startAgent(
      testConfig({ model: { provider: 'anthropic', apiKey: API_KEY, baseUrl: model.url, model: 'claude-fake' } }),
      { logger: captureLogs().logger },
    );
  });
  afterAll(async () => {
    await agent?.close();
    await model.close();
  });
  beforeEach(() => {
    model.requests.length = 0;
  });

  it('sends the system prompt and the conversation, returns the model text', async () => {
    model.script = (_b, i) => ({ text: i === 0 ? 'Hi, I am alpha.' : 'You asked who I am.' });
    const first = await rpc(agent.url, legacySend('Who are you?'));
    expect(first.json.result.parts[0].text).toBe('Hi, I am alpha.');
    const second = await rpc(agent.url, legacySend('What did I ask?', { contextId: first.json.result.contextId }));
    expect(second.json.result.parts[0].text).toBe('You asked who I am.');

    const req = model.requests[1]!;
    expect(keyOf(req.headers)).toBe(API_KEY);
    expect(req.body.model).toBe('claude-fake');
    expect(req.body.max_tokens).toBeGreaterThan(0);
    expect(req.body.system).toContain('alpha');
    expect(req.body.system).toContain('region ord');
    expect(req.body.tools.map((t: any) => t.name)).toEqual(['get_workspace_info', 'list_my_team', 'send_message_to_agent']);
    expect(req.body.messages).toEqual([
      { role: 'user', content: 'Who are you?' },
      { role: 'assistant', content: 'Hi, I am alpha.' },
      { role: 'user', content: 'What did I ask?' },
    ]);
  });

  it('runs tool_use and returns the tool_result to the model', async () => {
    model.script = (_b, i) => (i === 0 ? { toolCall: { id: 'toolu_1', name: 'get_workspace_info', input: {} } } : { text: 'Tier 2, region ord.' });
    const { json } = await rpc(agent.url, legacySend('What are your specs?'));
    expect(json.result.parts[0].text).toBe('Tier 2, region ord.');
    const messages = model.requests[1]!.body.messages;
    expect(messages.at(-2)).toEqual({ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_workspace_info', input: {} }] });
    const result = messages.at(-1);
    expect(result.role).toBe('user');
    expect(result.content[0]).toMatchObject({ type: 'tool_result', tool_use_id: 'toolu_1' });
    expect(JSON.parse(result.content[0].content)).toMatchObject({ id: 'ws-test-1', region: 'ord', tier: 2, runtime: 'hermes' });
  });

  it('streams text deltas before the model has finished', async () => {
    const hold = gate();
    model.script = () => ({ text: '', chunks: ['Streaming', ' from', ' Claude.'], hold: hold.promise });
    const res = await rpcRaw(agent.url, legacySend('stream', { method: 'message/stream' }));
    const sse = new SseReader(res);
    try {
      expect(resultOf(await sse.next()).status.state).toBe('working');
      const chunk = resultOf(await sse.until((e) => resultOf(e).kind === 'artifact-update'));
      expect(chunk.artifact.parts[0].text).toBe('Streaming');
      expect(sse.events.some((e) => resultOf(e).kind === 'status-update')).toBe(false);
    } finally {
      hold.open();
    }
    const rest = (await sse.rest()).map(resultOf);
    expect(rest.at(-1)).toMatchObject({ kind: 'status-update', final: true, status: { state: 'completed' } });
    expect(streamedText(sse.events)).toBe('Streaming from Claude.');
    expect(model.requests[0]!.body.stream).toBe(true);
  });

  it('streams after a tool_use round', async () => {
    model.script = (_b, i) => (i === 0 ? { toolCall: { id: 'toolu_s', name: 'get_workspace_info', input: {} } } : { text: '', chunks: ['Up', ' and running.'] });
    const res = await rpcRaw(agent.url, legacySend('status?', { method: 'message/stream' }));
    const events = await new SseReader(res).rest();
    expect(streamedText(events)).toBe('Up and running.');
    expect(model.requests[1]!.body.messages.at(-1).content[0].tool_use_id).toBe('toolu_s');
  });

  it('reports the API error message and counts the failure', async () => {
    model.script = () => ({ error: { status: 401, message: 'invalid x-api-key' } });
    const before = agent.turns.totals.failed;
    const { json } = await rpc(agent.url, legacySend('hi'));
    expect(json.result.parts[0].text).toBe('The model call failed (anthropic): 401 invalid x-api-key');
    expect(agent.turns.totals.failed).toBe(before + 1);
  });
});
