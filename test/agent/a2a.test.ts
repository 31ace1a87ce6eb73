import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import { AGENT_TOKEN, legacySend, rpc, rpcRaw, streamedText, testConfig } from './support/agent.js';
import { captureLogs } from './support/logs.js';
import { resultOf, SseReader } from './support/sse.js';

describe('A2A server (built-in responder, standalone)', () => {
  let agent: AgentHandle;
  const logs = captureLogs();

  beforeAll(async () => {
    agent = await startAgent(testConfig(), { logger: logs.logger });
  });
  afterAll(async () => {
    await agent?.close();
  });

  it('answers the seed request (v0.3, no A2A-Version header) with a Message', async () => {
    const body = {
      jsonrpc: '2.0',
      id: 1,
      method: 'message/send',
      params: { message: { kind: 'message', role: 'user', messageId: 'm1', parts: [{ kind: 'text', text: 'hi' }] } },
    };
    const { status, json } = await rpc(agent.url, body);
    expect(status).toBe(200);
    expect(json.jsonrpc).toBe('2.0');
    expect(json.id).toBe(1);
    expect(json.result.kind).toBe('message');
    expect(json.result.role).toBe('agent');
    expect(typeof json.result.messageId).toBe('string');
    expect(typeof json.result.contextId).toBe('string');
    expect(json.result.parts[0].kind).toBe('text');
    expect(json.result.parts[0].text).toContain('alpha');
  });

  it('accepts a message without kind and messageId and names the region', async () => {
    const raw =
      '{"jsonrpc":"2.0","id":"1","method":"message/send","params":{"message":{"role":"user","parts":[{"kind":"text","text":"What region are you running in?"}]}}}';
    const { json } = await rpc(agent.url, raw);
    expect(json.id).toBe('1');
    expect(json.error).toBeUndefined();
    expect(json.result.parts[0].text).toBe("I'm running in region ord.");
  });

  it('serves v1 SendMessage with A2A-Version: 1.0, and without the header too', async () => {
    const body = {
      jsonrpc: '2.0',
      id: 'v1',
      method: 'SendMessage',
      params: { message: { role: 'ROLE_USER', messageId: 'v1-m', parts: [{ text: 'What region are you running in?' }] } },
    };
    const withHeader = await rpc(agent.url, body, { headers: { 'A2A-Version': '1.0' } });
    expect(withHeader.json.result.message.role).toBe('ROLE_AGENT');
    expect(withHeader.json.result.message.parts[0].text).toBe("I'm running in region ord.");
    const withoutHeader = await rpc(agent.url, { ...body, id: 'v1b' });
    expect(withoutHeader.json.id).toBe('v1b');
    expect(withoutHeader.json.result.message.parts[0].text).toBe("I'm running in region ord.");
  });

  it('rejects an unsupported protocol version with -32009', async () => {
    const { json } = await rpc(agent.url, legacySend('hi'), { headers: { 'A2A-Version': '2.0' } });
    expect(json.error.code).toBe(-32009);
  });

  it('streams message/stream as task, artifact chunks and a final completed status; tasks/get returns the task', async () => {
    const res = await rpcRaw(agent.url, legacySend('Who are you?', { method: 'message/stream', id: 's1' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = await new SseReader(res).rest();
    expect(events.length).toBeGreaterThanOrEqual(4);
    expect(events.every((e) => e.id === 's1' && e.jsonrpc === '2.0')).toBe(true);
    const first = resultOf(events[0]);
    expect(first.kind).toBe('task');
    expect(first.status.state).toBe('working');
    const chunks = events.slice(1, -1).map(resultOf);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunks.every((c) => c.kind === 'artifact-update')).toBe(true);
    expect(chunks[0]!.append).toBe(false);
    expect(chunks.at(-1)!.lastChunk).toBe(true);
    const last = resultOf(events.at(-1));
    expect(last).toMatchObject({ kind: 'status-update', final: true, status: { state: 'completed' } });
    const text = streamedText(events);
    expect(text).toContain("I'm alpha");

    const got = await rpc(agent.url, { jsonrpc: '2.0', id: 'g1', method: 'tasks/get', params: { id: first.id } });
    expect(got.json.result.kind).toBe('task');
    expect(got.json.result.id).toBe(first.id);
    expect(got.json.result.status.state).toBe('completed');
    const storedText = got.json.result.artifacts[0].parts.map((p: any) => p.text).join('');
    expect(storedText).toBe(text);

    const v1 = await rpc(agent.url, { jsonrpc: '2.0', id: 'g2', method: 'GetTask', params: { id: first.id } }, { headers: { 'A2A-Version': '1.0' } });
    expect(v1.json.result.status.state).toBe('TASK_STATE_COMPLETED');
  });

  it('streams v1 SendStreamingMessage with v1 event wrappers', async () => {
    const body = {
      jsonrpc: '2.0',
      id: 7,
      method: 'SendStreamingMessage',
      params: { message: { role: 'ROLE_USER', messageId: 'v1-s', parts: [{ text: 'what is your uptime and tier?' }] } },
    };
    const res = await rpcRaw(agent.url, body, { headers: { 'A2A-Version': '1.0' } });
    const events = (await new SseReader(res).rest()).map(resultOf);
    expect(events[0]!.task.status.state).toBe('TASK_STATE_WORKING');
    expect(events.slice(1, -1).every((e) => e.artifactUpdate)).toBe(true);
    expect(events.at(-1)!.statusUpdate.status.state).toBe('TASK_STATE_COMPLETED');
    const text = events.flatMap((e) => e.artifactUpdate?.artifact.parts ?? []).map((p: any) => p.text ?? '').join('');
    expect(text).toContain('tier 2');
  });

  it('cancel of a finished task answers TaskNotCancelable; unknown task answers TaskNotFound', async () => {
    const res = await rpcRaw(agent.url, legacySend('region?', { method: 'message/stream' }));
    const events = await new SseReader(res).rest();
    const taskId = resultOf(events[0]).id;
    const cancel = await rpc(agent.url, { jsonrpc: '2.0', id: 'c', method: 'tasks/cancel', params: { id: taskId } });
    expect(cancel.json.error.code).toBe(-32002);
    const missing = await rpc(agent.url, { jsonrpc: '2.0', id: 'g', method: 'tasks/get', params: { id: 'no-such-task' } });
    expect(missing.json.error.code).toBe(-32001);
  });

  it('requires the agent bearer token on POST /', async () => {
    const none = await rpc(agent.url, legacySend('hi', { id: 42 }), { token: null });
    expect(none.status).toBe(401);
    expect(none.json).toEqual({ jsonrpc: '2.0', id: 42, error: { code: -32040, message: 'missing or invalid agent token' } });
    const wrong = await rpc(agent.url, legacySend('hi', { id: 'w' }), { token: `${AGENT_TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.json.id).toBe('w');
    const basic = await rpc(agent.url, legacySend('hi'), { token: null, headers: { authorization: `Basic ${AGENT_TOKEN}` } });
    expect(basic.status).toBe(401);
    const badJson = await rpc(agent.url, '{not json', { token: null });
    expect(badJson.status).toBe(401);
    expect(badJson.json.id).toBeNull();
  });

  it('answers bad JSON with -32700 and unknown methods with -32601', async () => {
    const bad = await rpc(agent.url, '{"jsonrpc":"2.0","id":1,');
    expect(bad.status).toBe(200);
    expect(bad.json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700 } });
    const empty = await rpc(agent.url, '');
    expect(empty.json.error.code).toBe(-32700);
    for (const notARequest of ['[]', '"{\\"jsonrpc\\":\\"2.0\\"}"', '42']) {
      const res = await rpc(agent.url, notARequest);
      expect(res.json.error.code).toBe(-32600);
    }
    const unknown = await rpc(agent.url, { jsonrpc: '2.0', id: 3, method: 'tasks/explode', params: {} });
    expect(unknown.json).toMatchObject({ id: 3, error: { code: -32601 } });
  });

  it('serves the v0.3 card to header-less requests and the v1 card with A2A-Version: 1.0', async () => {
    const legacyRes = await fetch(`${agent.url}/.well-known/agent-card.json`);
    expect(legacyRes.status).toBe(200);
    const legacy = await legacyRes.json();
    expect(legacy).toMatchObject({
      name: 'alpha',
      description: 'Research assistant',
      url: `${agent.url}/`,
      protocolVersion: '0.3',
      preferredTransport: 'JSONRPC',
      capabilities: { streaming: true },
    });
    expect(legacy.skills.map((s: any) => s.id)).toEqual(['chat']);

    const v1Res = await fetch(`${agent.url}/.well-known/agent-card.json`, { headers: { 'A2A-Version': '1.0' } });
    const v1 = await v1Res.json();
    expect(v1.name).toBe('alpha');
    expect(v1.protocolVersion).toBeUndefined();
    expect(v1.capabilities.streaming).toBe(true);
    expect(v1.supportedInterfaces).toEqual([
      { url: `${agent.url}/`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
      { url: `${agent.url}/`, protocolBinding: 'JSONRPC', protocolVersion: '0.3' },
    ]);
    expect(v1.skills[0].id).toBe('chat');
    expect(v1Res.headers.get('etag')).not.toBe(legacyRes.headers.get('etag'));
  });

  it('sends ETag and Cache-Control on the card and answers 304 to If-None-Match', async () => {
    const first = await fetch(`${agent.url}/.well-known/agent-card.json`, { headers: { 'A2A-Version': '1.0' } });
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^W\/".+"$/);
    expect(first.headers.get('cache-control')).toMatch(/max-age=\d+/);
    expect(first.headers.get('last-modified')).toBeTruthy();
    const again = await fetch(`${agent.url}/.well-known/agent-card.json`, { headers: { 'A2A-Version': '1.0', 'If-None-Match': etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    const other = await fetch(`${agent.url}/.well-known/agent-card.json`, { headers: { 'If-None-Match': '"something-else"' } });
    expect(other.status).toBe(200);
  });

  it('serves /healthz without auth', async () => {
    const res = await fetch(`${agent.url}/healthz`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toEqual({ status: 'ok', workspace_id: 'ws-test-1', region: 'ord', uptime_s: expect.any(Number), active_tasks: 0 });
  });

  it('logs each turn with method and duration, and never the agent token', async () => {
    await rpc(agent.url, legacySend('region?', { id: 'logged' }));
    const line = await logs.waitFor((l) => l.msg === 'a2a call' && l.rpc_id === 'logged');
    expect(line).toMatchObject({ method: 'message/send', duration_ms: expect.any(Number) });
    expect(logs.raw.join('')).not.toContain(AGENT_TOKEN);
  });
});
