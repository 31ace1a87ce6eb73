import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, killRecordedAgents, tempDir, waitFor, waitReady, type Api } from '../support/harness.js';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.js';

/** The proxy against a real agent whose model is a local OpenAI-compatible server. */
describe('A2A proxy with a model provider', () => {
  const dataDir = tempDir('a2a');
  let platform: Platform;
  let http: Api;
  let model: FakeOpenAI;
  let ws: string;

  beforeAll(async () => {
    model = await startFakeOpenAI((body) => {
      const last = body.messages[body.messages.length - 1];
      return `Model heard: ${typeof last.content === 'string' ? last.content : JSON.stringify(last.content)} (turn ${body.messages.filter((m: any) => m.role === 'user').length})`;
    });
    platform = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_A2A_MAX_BODY_BYTES: '65536' },
      logger: pino({ level: 'warn' }),
    });
    http = api(platform.url);
    const r = await http.call('POST', '/workspaces', {
      name: 'modelled',
      role: 'answers with a model',
      env: { OPENAI_BASE_URL: model.url, MODEL: 'fake-model' },
      secrets: { OPENAI_API_KEY: 'sk-test-123' },
    });
    expect(r.status).toBe(201);
    expect(JSON.stringify(r.body)).not.toContain('sk-test-123');
    ws = r.body.id;
    await waitReady(http, ws);
  });

  afterAll(async () => {
    await http?.call('DELETE', `/workspaces/${ws}`);
    await waitFor('removed', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410).catch(() => undefined);
    await platform?.close();
    killRecordedAgents(dataDir);
    await model?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('sends the conversation to the model and returns its text', async () => {
    const send = (text: string, contextId?: string) =>
      http.call('POST', `/workspaces/${ws}/a2a`, {
        jsonrpc: '2.0',
        id: 7,
        method: 'message/send',
        params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), contextId, parts: [{ kind: 'text', text }] } },
      });
    const first = await send('Hello model');
    expect(first.status).toBe(200);
    expect(first.body.id).toBe(7);
    expect(first.body.result.parts[0].text).toBe('Model heard: Hello model (turn 1)');
    const ctx = first.body.result.contextId;
    const second = await send('And again', ctx);
    expect(second.body.result.parts[0].text).toBe('Model heard: And again (turn 2)');
    const req = model.requests[model.requests.length - 1];
    expect(req.authorization).toBe('Bearer sk-test-123');
    expect(req.model).toBe('fake-model');
    const roles = req.messages.map((m: any) => m.role);
    expect(roles[0]).toBe('system');
    const texts = JSON.stringify(req.messages);
    expect(texts).toContain('Hello model');
    expect(texts).toContain('Model heard: Hello model (turn 1)');
    expect(texts).toContain('And again');
  });

  it('wraps a bare message into message/send and fills in the messageId', async () => {
    const r = await http.call('POST', `/workspaces/${ws}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'bare' }] });
    expect(r.status).toBe(200);
    expect(r.body.jsonrpc).toBe('2.0');
    expect(r.body.result.parts[0].text).toContain('Model heard: bare');
  });

  it('streams message/stream through the proxy, first event before the agent finishes', async () => {
    model.holdNextStream();
    const gate = model.gate!;
    const res = await fetch(`${platform.url}/workspaces/${ws}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 's1',
        method: 'message/stream',
        params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'stream this please now' }] } },
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    const events: any[] = [];
    const pump = async () => {
      const { value, done } = await reader.read();
      if (done) return false;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
        if (data) events.push(JSON.parse(data));
      }
      return true;
    };
    // The model is holding its final chunk: events must already arrive.
    while (events.length < 2) expect(await pump()).toBe(true);
    expect(gate).not.toBeNull();
    const beforeRelease = events.length;
    expect(events.every((e) => e.id === 's1')).toBe(true);
    expect(events.some((e) => e.result?.status?.state === 'completed')).toBe(false);
    gate.release();
    while (await pump());
    expect(events.length).toBeGreaterThan(beforeRelease);
    const last = events[events.length - 1].result;
    expect(last.kind === 'status-update' ? last.status.state : last.status?.state).toBe('completed');
    const streamed = events
      .filter((e) => e.result?.kind === 'artifact-update')
      .flatMap((e) => e.result.artifact.parts.map((p: any) => p.text))
      .join('');
    expect(streamed).toContain('Model heard: stream this please now');
  });

  it('answers JSON-RPC errors for bad requests', async () => {
    const parse = await http.call('POST', `/workspaces/${ws}/a2a`, '{"jsonrpc":');
    // JSON-RPC errors travel in HTTP 200 (as the agent sends them); the reason is in error.data.code.
    expect(parse.status).toBe(200);
    expect(parse.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700, data: { code: 'parse_error' } } });
    const notRpc = await http.call('POST', `/workspaces/${ws}/a2a`, { hello: 'world' });
    expect(notRpc.body.error.code).toBe(-32600);
    const noMessage = await http.call('POST', `/workspaces/${ws}/a2a`, { jsonrpc: '2.0', id: 3, method: 'message/send', params: {} });
    expect(noMessage.body).toMatchObject({ id: 3, error: { code: -32602 } });
    const huge = await http.call('POST', `/workspaces/${ws}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'x'.repeat(70_000) }] });
    expect(huge.status).toBe(200);
    expect(huge.body.error).toMatchObject({ code: -32033, data: { code: 'payload_too_large' } });
    const unknownMethod = await http.call('POST', `/workspaces/${ws}/a2a`, { jsonrpc: '2.0', id: 4, method: 'nope/nothing', params: {} });
    expect(unknownMethod.body).toMatchObject({ id: 4, error: { code: -32601 } });
    const unknownWs = await http.call('POST', `/workspaces/${crypto.randomUUID()}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'x' }] });
    expect(unknownWs.status).toBe(200);
    expect(unknownWs.body.error).toMatchObject({ code: -32034, data: { code: 'workspace_not_found' } });
  });

  it('serves v1.0 methods with the A2A-Version header', async () => {
    const r = await http.call(
      'POST',
      `/workspaces/${ws}/a2a`,
      { jsonrpc: '2.0', id: 'v1', method: 'SendMessage', params: { message: { role: 'ROLE_USER', messageId: crypto.randomUUID(), parts: [{ text: 'version one' }] } } },
      { 'A2A-Version': '1.0' },
    );
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body.result)).toContain('Model heard: version one');
  });

  it('gives up on an agent that does not answer in time (-32032 agent_timeout, HTTP 200)', async () => {
    const dir = tempDir('a2a-timeout');
    const slow = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dir, CONTAINER_BACKEND: 'process', MOLECULE_A2A_TIMEOUT_S: '1' },
      logger: pino({ level: 'silent' }),
    });
    try {
      const h = api(slow.url);
      const id = (await h.call('POST', '/workspaces', { name: 'slow', env: { OPENAI_BASE_URL: model.url }, secrets: { OPENAI_API_KEY: 'sk-x' } })).body.id;
      await waitReady(h, id);
      const r = await h.call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: 'slow-1', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'HANG FOREVER' }] } } });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id: 'slow-1', error: { code: -32032, message: 'the agent did not answer within 1 s', data: { code: 'agent_timeout' } } });
      await h.call('DELETE', `/workspaces/${id}`);
      await waitFor('removed', async () => (await h.call('GET', `/workspaces/${id}`)).status === 410);
    } finally {
      await slow.close();
      killRecordedAgents(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never shows a secret value in the API, the events or the logs', async () => {
    const all = JSON.stringify([
      (await http.call('GET', `/workspaces/${ws}`)).body,
      (await http.call('GET', `/workspaces/${ws}/events`)).body,
      (await http.call('GET', `/workspaces/${ws}/secrets`)).body,
      (await http.call('GET', `/workspaces/${ws}/logs`)).text,
    ]);
    expect(all).toContain('OPENAI_API_KEY');
    expect(all).not.toContain('sk-test-123');
  });
});
