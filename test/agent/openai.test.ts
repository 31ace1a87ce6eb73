import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import { legacySend, rpc, rpcRaw, streamedText, testConfig } from './support/agent.js';
import { FakeOpenAI } from './support/fake-models.js';
import { gate } from './support/http.js';
import { captureLogs } from './support/logs.js';
import { resultOf, SseReader } from './support/sse.js';

const API_KEY = 'sk-test-openai-5d1e88';

describe('OpenAI-compatible provider', () => {
  const model = new FakeOpenAI();
  const logs = captureLogs();
  let agent: AgentHandle;

  beforeAll(async () => {
    await model.listen();
    agent = await startAgent(
      testConfig({ model: { provider: 'openai', apiKey: API_KEY, baseUrl: `${model.url}/v1`, model: 'fake-gpt' } }),
      { logger: logs.logger },
    );
  });
  afterAll(async () => {
    await agent?.close();
    await model.close();
  });
  beforeEach(() => {
    model.requests.length = 0;
  });

  it('sends system prompt, earlier turns of the context and the new text; returns the model text', async () => {
    model.script = (_b, i) => ({ text: i === 0 ? 'Paris.' : 'About 2.1 million.' });
    const first = await rpc(agent.url, legacySend('What is the capital of France?'));
    expect(first.json.result.parts[0].text).toBe('Paris.');
    const contextId = first.json.result.contextId;
    const second = await rpc(agent.url, legacySend('And its population?', { contextId }));
    expect(second.json.result.parts[0].text).toBe('About 2.1 million.');
    expect(second.json.result.contextId).toBe(contextId);

    expect(model.requests).toHaveLength(2);
    const req = model.requests[1]!;
    expect(req.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(req.body.model).toBe('fake-gpt');
    expect(req.body.stream).toBeFalsy();
    expect(req.body.tools.map((t: any) => t.function.name)).toEqual(['get_workspace_info', 'list_my_team', 'send_message_to_agent']);
    const messages = req.body.messages;
    expect(messages.map((m: any) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(messages[0].content).toContain('alpha');
    expect(messages[0].content).toContain('ws-test-1');
    expect(messages[0].content).toContain('region ord');
    expect(messages.slice(1).map((m: any) => m.content)).toEqual(['What is the capital of France?', 'Paris.', 'And its population?']);
  });

  it('keeps separate contexts apart', async () => {
    model.script = () => ({ text: 'fresh' });
    await rpc(agent.url, legacySend('new conversation'));
    expect(model.requests[0]!.body.messages.map((m: any) => m.role)).toEqual(['system', 'user']);
  });

  it('runs the get_workspace_info tool and sends its result back to the model', async () => {
    model.script = (body, i) =>
      i === 0 ? { toolCall: { id: 'call_abc', name: 'get_workspace_info' } } : { text: 'You are talking to alpha in ord.' };
    const { json } = await rpc(agent.url, legacySend('Describe your workspace'));
    expect(json.result.parts[0].text).toBe('You are talking to alpha in ord.');
    expect(model.requests).toHaveLength(2);
    const followUp = model.requests[1]!.body.messages;
    const assistant = followUp.at(-2);
    expect(assistant.role).toBe('assistant');
    expect(assistant.tool_calls[0]).toMatchObject({ id: 'call_abc', type: 'function', function: { name: 'get_workspace_info' } });
    const tool = followUp.at(-1);
    expect(tool.role).toBe('tool');
    expect(tool.tool_call_id).toBe('call_abc');
    expect(JSON.parse(tool.content)).toEqual({
      id: 'ws-test-1',
      name: 'alpha',
      role: 'Research assistant',
      region: 'ord',
      tier: 2,
      runtime: 'hermes',
      uptime_s: expect.any(Number),
    });
  });

  it('bounds the tool loop: after 4 rounds the model is asked without tools', async () => {
    model.script = (body) => (body.tools ? { toolCall: { id: `call_${Math.random()}`, name: 'get_workspace_info' } } : { text: 'finally' });
    const { json } = await rpc(agent.url, legacySend('loop forever'));
    expect(json.result.parts[0].text).toBe('finally');
    expect(model.requests).toHaveLength(5);
    expect(model.requests[4]!.body.tools).toBeUndefined();
  });

  it('streams tokens as they arrive: events reach the caller while the model still holds its last chunk', async () => {
    const hold = gate();
    model.script = () => ({ text: '', chunks: ['Hello', ' from', ' the model!'], hold: hold.promise });
    const res = await rpcRaw(agent.url, legacySend('stream please', { method: 'message/stream', id: 'st' }));
    const sse = new SseReader(res);
    try {
      const task = resultOf(await sse.next());
      expect(task).toMatchObject({ kind: 'task', status: { state: 'working' } });
      const firstChunk = resultOf(await sse.next());
      expect(firstChunk).toMatchObject({ kind: 'artifact-update', append: false, lastChunk: false });
      expect(firstChunk.artifact.parts[0].text).toBe('Hello');
      const secondChunk = resultOf(await sse.next());
      expect(secondChunk.artifact.parts[0].text).toBe(' from');
      // Nothing has completed: the model is still holding ' the model!'.
      expect(sse.events.some((e) => resultOf(e).kind === 'status-update')).toBe(false);
      expect(model.requests[0]!.body.stream).toBe(true);
    } finally {
      hold.open();
    }
    const rest = (await sse.rest()).map(resultOf);
    expect(rest.at(-1)).toMatchObject({ kind: 'status-update', final: true, status: { state: 'completed' } });
    expect(streamedText(sse.events)).toBe('Hello from the model!');

    const taskId = resultOf(sse.events[0]).id;
    const got = await rpc(agent.url, { jsonrpc: '2.0', id: 'g', method: 'tasks/get', params: { id: taskId } });
    expect(got.json.result.status.state).toBe('completed');
    expect(got.json.result.artifacts[0].parts.map((p: any) => p.text).join('')).toBe('Hello from the model!');
  });

  it('handles a streamed tool call, then streams the answer', async () => {
    model.script = (_b, i) =>
      i === 0 ? { toolCall: { id: 'call_s1', name: 'get_workspace_info', input: {} } } : { text: '', chunks: ['Region', ': ord'] };
    const res = await rpcRaw(agent.url, legacySend('where?', { method: 'message/stream' }));
    const events = await new SseReader(res).rest();
    expect(streamedText(events)).toBe('Region: ord');
    expect(resultOf(events.at(-1)).status.state).toBe('completed');
    const tool = model.requests[1]!.body.messages.at(-1);
    expect(tool).toMatchObject({ role: 'tool', tool_call_id: 'call_s1' });
    expect(JSON.parse(tool.content).region).toBe('ord');
  });

  it('tasks/cancel stops a streaming turn: canceled status, and the model request is aborted', async () => {
    const hold = gate();
    model.script = () => ({ text: '', chunks: ['Thinking', ' very', ' hard'], hold: hold.promise });
    const res = await rpcRaw(agent.url, legacySend('long task', { method: 'message/stream' }));
    const sse = new SseReader(res);
    try {
      const taskId = resultOf(await sse.next()).id;
      await sse.until((e) => resultOf(e).kind === 'artifact-update');
      expect(agent.turns.activeCount).toBe(1);
      const cancel = await rpc(agent.url, { jsonrpc: '2.0', id: 'c1', method: 'tasks/cancel', params: { id: taskId } });
      expect(cancel.json.error).toBeUndefined();
      expect(cancel.json.result).toMatchObject({ kind: 'task', id: taskId, status: { state: 'canceled' } });
      const last = resultOf((await sse.rest()).at(-1));
      expect(last).toMatchObject({ kind: 'status-update', final: true, status: { state: 'canceled' } });
      await model.waitForAbort();
      expect(agent.turns.activeCount).toBe(0);
      const got = await rpc(agent.url, { jsonrpc: '2.0', id: 'g', method: 'tasks/get', params: { id: taskId } });
      expect(got.json.result.status.state).toBe('canceled');
    } finally {
      hold.open();
    }
  });

  it('turns a model error into a clear reply without leaking the key, and counts it as a failed turn', async () => {
    model.script = () => ({ error: { status: 401, message: `Incorrect API key provided: ${API_KEY}.` } });
    const before = agent.turns.totals.failed;
    const { json } = await rpc(agent.url, legacySend('hello?'));
    const text: string = json.result.parts[0].text;
    expect(text).toContain('The model call failed (openai)');
    expect(text).toContain('401 Incorrect API key provided');
    expect(text).not.toContain(API_KEY);
    expect(json.result.metadata).toEqual({ error: true });
    expect(agent.turns.totals.failed).toBe(before + 1);

    const res = await rpcRaw(agent.url, legacySend('hello stream', { method: 'message/stream' }));
    const last = resultOf((await new SseReader(res).rest()).at(-1));
    expect(last.status.state).toBe('failed');
    expect(last.status.message.parts[0].text).toContain('Incorrect API key provided');
    expect(last.status.message.parts[0].text).not.toContain(API_KEY);
    expect(agent.turns.totals.failed).toBe(before + 2);
    expect(logs.raw.join('')).not.toContain(API_KEY);
  });

  it('reports an unreachable model endpoint as a failed turn', async () => {
    const dead = await startAgent(
      testConfig({ model: { provider: 'openai', apiKey: API_KEY, baseUrl: 'http://127.0.0.1:9/v1', model: 'x' } }),
      { logger: captureLogs().logger },
    );
    try {
      const { json } = await rpc(dead.url, legacySend('anyone there?'));
      expect(json.result.parts[0].text).toMatch(/The model call failed \(openai\): could not reach the model endpoint/);
      expect(dead.turns.errorRate).toBe(1);
    } finally {
      await dead.close();
    }
  });
});
