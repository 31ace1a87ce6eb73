import fs from 'node:fs';
import http from 'node:http';
import { Client, ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import { isLegacyAgentCard } from '@a2a-js/sdk/compat/v0_3/client';
import { TaskState } from '@a2a-js/sdk';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userMessage } from '../../src/agent/tools.js';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, freePort, killRecordedAgents, tempDir, waitFor, waitReady, type Api } from '../support/harness.js';
import { agentTokens } from '../security/support.js';
import { V1_CARD_REQUIRED, v03Errors } from '../support/a2a-schema.js';

const logger = pino({ level: 'silent' });


const replyText = (r: any): string =>
  (r?.parts ?? r?.status?.message?.parts ?? []).map((p: any) => (p.content?.$case === 'text' ? p.content.value : '')).join('');

/** JSON-RPC method names the SDK clients put on the wire, in order: which protocol version they really spoke. */
const wire: string[] = [];

/** A fetch that carries the token, when there is one, as a bearer on every request (card and JSON-RPC). */
function bearerFetch(token?: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set('authorization', `Bearer ${token}`);
    if (typeof init?.body === 'string') wire.push(JSON.parse(init.body).method);
    return fetch(input, { ...init, headers });
  };
}

/** The official SDK client, v1.0 transport. */
function factory(token?: string): ClientFactory {
  const fetchImpl = bearerFetch(token);
  return new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat: { enabled: true } })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }),
    }),
  );
}

/**
 * The official SDK client as a v0.3 client finds the workspace: the card fetched without A2A-Version (so the
 * platform serves the v0.3 shape), translated by the SDK's own v0.3 compat layer, which makes the client speak
 * the v0.3 JSON-RPC wire format (message/send, tasks/get, tasks/cancel).
 */
async function legacyClient(a2aUrl: string, token?: string): Promise<Client> {
  const fetchImpl = bearerFetch(token);
  const res = await fetchImpl(`${a2aUrl}/.well-known/agent-card.json`);
  expect(res.status).toBe(200);
  // The card carries both shapes; a v0.3 reader knows only url/preferredTransport/additionalInterfaces.
  const { supportedInterfaces: _v1Only, ...raw } = await res.json();
  expect(isLegacyAgentCard(raw)).toBe(true);
  const card = new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }).normalizeAgentCard(raw);
  card.supportedInterfaces = card.supportedInterfaces.filter((i) => i.protocolVersion === '0.3');
  expect(card.supportedInterfaces.map((i) => i.url)).toEqual([a2aUrl]);
  return factory(token).createFromAgentCard(card);
}

const sdkClient = (version: '1.0' | '0.3', a2aUrl: string, token?: string): Promise<Client> =>
  version === '1.0' ? factory(token).createFromUrl(a2aUrl) : legacyClient(a2aUrl, token);

/** Everything a stream says, in order: messages, artifact chunks and status messages. */
async function streamText(client: Client, text: string): Promise<string> {
  let streamed = '';
  for await (const ev of client.sendMessageStream({ tenant: '', message: userMessage(text), configuration: undefined, metadata: undefined })) {
    const p = ev.payload as any;
    if (p?.$case === 'message') streamed += replyText(p.value);
    if (p?.$case === 'artifactUpdate') streamed += replyText(p.value.artifact);
    if (p?.$case === 'statusUpdate') streamed += replyText(p.value.status?.message);
  }
  return streamed;
}

const nonBlocking = { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: true, historyLength: undefined };

/**
 * The task methods through the platform: a question (the built-in responder asks which fact when none is named)
 * waits for input; tasks/get honours historyLength; the task is canceled, and canceling a completed task is refused
 * with the A2A error (not a transport failure); an unknown task id is "task not found".
 */
/** A non-blocking send of a question the built-in responder answers with one of its own: the task, once it waits for input. */
async function askedForInput(client: Client): Promise<any> {
  const first = (await client.sendMessage({ tenant: '', message: userMessage('Tell me a fact'), configuration: nonBlocking, metadata: undefined })) as any;
  expect(first.id, JSON.stringify(first)).toMatch(/\S/);
  return waitFor('the task to wait for input', async () => {
    const t = (await client.getTask({ tenant: '', id: first.id })) as any;
    return t.status?.state === TaskState.TASK_STATE_INPUT_REQUIRED && t;
  }, 10_000, 50);
}

async function cancelAndHistory(client: Client, version: '1.0' | '0.3'): Promise<void> {
  wire.length = 0;
  const asked = await askedForInput(client);
  const first = { id: asked.id };
  expect(asked.history.length).toBeGreaterThanOrEqual(2);
  const one = (await client.getTask({ tenant: '', id: first.id, historyLength: 1 })) as any;
  expect(one.history).toHaveLength(1);
  expect(one.history[0]).toEqual(asked.history.at(-1));
  expect(((await client.getTask({ tenant: '', id: first.id, historyLength: 0 })) as any).history).toEqual([]);
  const canceled = (await client.cancelTask({ tenant: '', id: first.id, metadata: undefined })) as any;
  expect(canceled).toMatchObject({ id: first.id, contextId: asked.contextId, status: { state: TaskState.TASK_STATE_CANCELED } });
  expect(((await client.getTask({ tenant: '', id: first.id })) as any).status.state).toBe(TaskState.TASK_STATE_CANCELED);
  // Canceling a canceled task is idempotent (the SDK's rule); a completed task cannot be canceled.
  expect(((await client.cancelTask({ tenant: '', id: first.id, metadata: undefined })) as any).status.state).toBe(TaskState.TASK_STATE_CANCELED);
  const quick = (await client.sendMessage({ tenant: '', message: userMessage('What is your name?'), configuration: nonBlocking, metadata: undefined })) as any;
  await waitFor('the quick task to complete', async () =>
    ((await client.getTask({ tenant: '', id: quick.id })) as any).status?.state === TaskState.TASK_STATE_COMPLETED, 10_000, 50);
  await expect(client.cancelTask({ tenant: '', id: quick.id, metadata: undefined })).rejects.toThrow(/cancel/i);
  await expect(client.getTask({ tenant: '', id: crypto.randomUUID() })).rejects.toThrow(/not found/i);
  const methods = version === '1.0' ? ['SendMessage', 'GetTask', 'CancelTask'] : ['message/send', 'tasks/get', 'tasks/cancel'];
  expect([...new Set(wire)].sort()).toEqual(methods.sort());
}

/** A GET with a Host header of our choosing (fetch may not set one). */
function getWithHost(url: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host, ...headers } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
  });
}

/**
 *   root ── a ── a1        other        doomed
 */
describe('A2A discovery and errors through the platform (open loopback platform)', () => {
  const dataDir = tempDir('a2a-disc');
  let platform: Platform;
  let h: Api;
  const ws: Record<string, any> = {};

  beforeAll(async () => {
    platform = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_A2A_MAX_BODY_BYTES: '65536', MOLECULE_A2A_TIMEOUT_S: '1' },
      logger,
    });
    h = api(platform.url);
    const create = async (name: string, parent?: string) => {
      const r = await h.call('POST', '/workspaces', { name, role: `the ${name} agent`, ...(parent ? { parent_id: parent } : {}) });
      expect(r.status, r.text).toBe(201);
      return r.body.id as string;
    };
    const ids = { root: await create('root'), other: await create('other'), doomed: await create('doomed') };
    await waitReady(h, ids.root);
    const a = await create('a', ids.root);
    await waitReady(h, a);
    const a1 = await create('a1', a);
    for (const [name, id] of Object.entries({ ...ids, a, a1 })) ws[name] = await waitReady(h, id);
  });

  afterAll(async () => {
    await platform?.close();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('tasks through the platform with the official SDK client: non-blocking send, tasks/get, multi-turn with input-required', async () => {
    const client = await factory().createFromUrl(`${platform.url}/workspaces/${ws.root.id}/a2a`);
    // The built-in responder asks which fact when none is named: the task waits for input.
    const asked = await askedForInput(client);
    const first = { id: asked.id };
    expect(replyText(asked)).toMatch(/\?$/);
    // The answer continues the same task, in the same context.
    const next = { ...userMessage('your region'), taskId: first.id, contextId: asked.contextId };
    const done = (await client.sendMessage({ tenant: '', message: next, configuration: undefined, metadata: undefined })) as any;
    expect(done.id).toBe(first.id);
    expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(replyText(done)).toMatch(/region local/);
    const again = (await client.getTask({ tenant: '', id: first.id })) as any;
    expect(again.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(again.contextId).toBe(asked.contextId);
  });

  it.each(['1.0', '0.3'] as const)('tasks/cancel and historyLength through the platform, SDK client on v%s', async (version) => {
    await cancelAndHistory(await sdkClient(version, `${platform.url}/workspaces/${ws.root.id}/a2a`), version);
  });

  it('is discovered and called by the official SDK client from the workspace A2A URL: send and stream', async () => {
    const client = await factory().createFromUrl(`${platform.url}/workspaces/${ws.root.id}/a2a`);
    const sent = await client.sendMessage({ tenant: '', message: userMessage('What is your name?'), configuration: undefined, metadata: undefined });
    expect(replyText(sent)).toContain('root');
    const streamed = await streamText(client, 'Who are you?');
    expect(streamed).toContain('root');
  });

  it('serves the rewritten card at both well-known places and at /agent-card; ?as=registered gives the card as registered', async () => {
    const id = ws.root.id;
    const a2aUrl = `${platform.url}/workspaces/${id}/a2a`;
    const first = await h.call('GET', `/workspaces/${id}/a2a/.well-known/agent-card.json`);
    const second = await h.call('GET', `/workspaces/${id}/.well-known/agent-card.json`);
    const rest = await h.call('GET', `/workspaces/${id}/agent-card`);
    expect(first.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(rest.body).toEqual(first.body);
    const card = first.body;
    // v0.3 (no A2A-Version): valid against the official schema; every interface is the platform's.
    expect(v03Errors('AgentCard', card)).toBe('');
    expect(card.url).toBe(a2aUrl);
    expect(card.additionalInterfaces.map((i: any) => i.url)).toEqual([a2aUrl]);
    expect(card.supportedInterfaces.map((i: any) => [i.url, i.protocolVersion])).toEqual([
      [a2aUrl, '1.0'],
      [a2aUrl, '0.3'],
    ]);
    const privateUrl = new URL(ws.root.instance.url).host;
    expect(JSON.stringify(card)).not.toContain(privateUrl);
    expect(JSON.stringify(card)).not.toContain('MOLECULE_AGENT_TOKEN');
    // Open loopback platform: no credentials required; a workspace token is accepted for agent-to-agent calls.
    expect(card.security).toEqual([{}, { bearer: [] }]);
    expect(card.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer', description: expect.stringMatching(/workspace token/) });
    // v1.0 with the header: the proto's required fields, interfaces rewritten, no v0.3 url.
    const v1 = await h.call('GET', `/workspaces/${id}/a2a/.well-known/agent-card.json`, undefined, { 'A2A-Version': '1.0' });
    for (const k of V1_CARD_REQUIRED) expect(v1.body, k).toHaveProperty(k);
    expect(v1.body.url).toBeUndefined();
    expect(v1.body.supportedInterfaces.every((i: any) => i.url === a2aUrl && i.protocolBinding === 'JSONRPC')).toBe(true);
    expect(v1.headers.get('vary')).toMatch(/A2A-Version/);
    // Caching: an ETag, and 304 on If-None-Match.
    const etag = first.headers.get('etag')!;
    expect(first.headers.get('cache-control')).toMatch(/max-age=\d+/);
    expect((await h.call('GET', `/workspaces/${id}/a2a/.well-known/agent-card.json`, undefined, { 'if-none-match': etag })).status).toBe(304);
    // The card exactly as the agent registered it, for debugging.
    const registered = await h.call('GET', `/workspaces/${id}/agent-card?as=registered`);
    expect(registered.status).toBe(200);
    expect(JSON.stringify(registered.body.supportedInterfaces)).toContain(privateUrl);
    expect((await h.call('GET', `/workspaces/${id}/agent-card?as=nonsense`)).status).toBe(400);
    // Without MOLECULE_PUBLIC_URL the base is the request's own scheme and host.
    const viaHost = await getWithHost(`${platform.url}/workspaces/${id}/.well-known/agent-card.json`, 'agents.example.test:8443');
    expect(viaHost.body.url).toBe(`http://agents.example.test:8443/workspaces/${id}/a2a`);
    // Unknown workspace, not registered yet: REST errors on the REST route.
    expect((await h.call('GET', `/workspaces/${crypto.randomUUID()}/a2a/.well-known/agent-card.json`)).status).toBe(404);
  });

  it('lists the catalog under the A2A access rules: everything for the operator, its family for a workspace token', async () => {
    const names = (r: any) => r.body.agents.map((x: any) => x.workspace_name).sort();
    const all = await h.call('GET', '/agents');
    expect(all.status).toBe(200);
    expect(names(all)).toEqual(['a', 'a1', 'doomed', 'other', 'root']);
    const entry = all.body.agents.find((x: any) => x.workspace_id === ws.a.id);
    expect(entry).toMatchObject({
      name: 'a',
      description: 'the a agent',
      parent_id: ws.root.id,
      url: `${platform.url}/workspaces/${ws.a.id}/a2a`,
      card_url: `${platform.url}/workspaces/${ws.a.id}/a2a/.well-known/agent-card.json`,
      skills: [expect.objectContaining({ id: 'chat', name: 'Chat' })],
    });
    const as = (name: string) => api(platform.url, agentTokens(ws[name]).workspace);
    expect(names(await as('a').call('GET', '/agents'))).toEqual(['a', 'a1', 'root']);
    expect(names(await as('a1').call('GET', '/agents'))).toEqual(['a', 'a1']);
    expect(names(await as('root').call('GET', '/agents'))).toEqual(['a', 'doomed', 'other', 'root']);
    // Cards too: within the family yes, outside it 403 a2a_forbidden; other admin routes stay closed to it.
    expect((await as('a1').call('GET', `/workspaces/${ws.a.id}/a2a/.well-known/agent-card.json`)).status).toBe(200);
    const refused = await as('a1').call('GET', `/workspaces/${ws.root.id}/a2a/.well-known/agent-card.json`);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('a2a_forbidden');
    expect((await as('a1').call('GET', '/workspaces')).status).toBe(403);
    // Agent to agent with the standard client: the workspace token as bearer reaches the parent, not the grandparent.
    const toParent = await factory(agentTokens(ws.a1).workspace).createFromUrl(`${platform.url}/workspaces/${ws.a.id}/a2a`);
    expect(replyText(await toParent.sendMessage({ tenant: '', message: userMessage('What is your name?'), configuration: undefined, metadata: undefined }))).toMatch(/\ba\b/);
    await expect(factory(agentTokens(ws.a1).workspace).createFromUrl(`${platform.url}/workspaces/${ws.root.id}/a2a`)).rejects.toThrow(/403/);
  });

  it('answers every platform-made JSON-RPC error with HTTP 200 and its error.data.code', async () => {
    const post = (id: string, body: unknown, token?: string) => api(platform.url, token).call('POST', `/workspaces/${id}/a2a`, body);
    const msg = (text: string) => ({ jsonrpc: '2.0', id: 'e', method: 'message/send', params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } } });
    const expectRpc = (r: { status: number; body: any }, code: number, reason: string, id: unknown = 'e') => {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ jsonrpc: '2.0', id, error: { code, message: expect.any(String), data: { code: reason } } });
    };
    // The example: no method. The platform answers as the agent does: 200 and -32600.
    expectRpc(await post(ws.root.id, { jsonrpc: '2.0', id: 7 }), -32600, 'invalid_request', 7);
    const direct = await fetch(ws.root.instance.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${agentTokens(ws.root).agent}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7 }),
    });
    expect(direct.status).toBe(200);
    expect((await direct.json()).error.code).toBe(-32600);
    expectRpc(await post(ws.root.id, '{"jsonrpc":'), -32700, 'parse_error', null);
    expectRpc(await post(ws.root.id, { jsonrpc: '2.0', id: 'e', method: 'message/send', params: {} }), -32602, 'invalid_params');
    expectRpc(await post(ws.root.id, { role: 'user', parts: [{ kind: 'text', text: 'x'.repeat(70_000) }] }), -32033, 'payload_too_large', null);
    expectRpc(await post(crypto.randomUUID(), msg('hi')), -32034, 'workspace_not_found');
    expectRpc(await post('not-a-uuid', msg('hi')), -32034, 'invalid_workspace_id', null);
    expectRpc(await post(ws.root.id, msg('hi'), agentTokens(ws.a1).workspace), -32037, 'a2a_forbidden');
    // An agent that does not answer in time (stopped, then resumed).
    const pid = ws.other.instance.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      expectRpc(await post(ws.other.id, msg('hi')), -32032, 'agent_timeout');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // An agent that is gone: unreachable (or, once the platform has noticed, not ready), both with a retry hint.
    process.kill(ws.doomed.instance.pid, 'SIGKILL');
    const gone = await post(ws.doomed.id, msg('hi'));
    expect(gone.status).toBe(200);
    expect(['agent_unreachable', 'workspace_not_ready']).toContain(gone.body.error.data.code);
    await waitReady(h, ws.doomed.id, { until: (w: any) => w.instance?.pid !== ws.doomed.instance.pid });
    // Not ready: paused, with its status; then removed.
    expect((await h.call('POST', `/workspaces/${ws.doomed.id}/pause`)).status).toBe(200);
    const paused = await post(ws.doomed.id, msg('hi'));
    expectRpc(paused, -32030, 'workspace_not_ready');
    expect(paused.body.error.data.status).toBe('paused');
    expect(paused.body.error.data.retry_after_s).toBeUndefined();
    expect((await h.call('DELETE', `/workspaces/${ws.doomed.id}`)).status).toBe(202);
    await waitFor('removed', async () => (await h.call('GET', `/workspaces/${ws.doomed.id}`)).status === 410);
    expectRpc(await post(ws.doomed.id, msg('hi')), -32035, 'workspace_removed');
    // A workspace still starting: not ready, retry later.
    const fresh = (await h.call('POST', '/workspaces', { name: 'fresh' })).body.id;
    const starting = await post(fresh, msg('hi'));
    if (starting.body.error) {
      expectRpc(starting, -32030, 'workspace_not_ready');
      expect(starting.body.error.data).toMatchObject({ status: 'provisioning', retry_after_s: expect.any(Number) });
    }
    await waitReady(h, fresh);
  });
});

describe('A2A discovery with an admin token and MOLECULE_PUBLIC_URL', () => {
  const ADMIN = 'discovery-admin-token-0123456789';
  const dataDir = tempDir('a2a-disc-admin');
  let platform: Platform;
  let h: Api;
  let publicUrl: string;
  let id: string;

  beforeAll(async () => {
    const port = await freePort();
    publicUrl = `http://127.0.0.1:${port}`;
    platform = await startPlatform({
      env: { ...FAST_ENV, PORT: String(port), MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_PUBLIC_URL: `${publicUrl}/` },
      logger,
    });
    h = api(platform.url, ADMIN);
    id = (await h.call('POST', '/workspaces', { name: 'guarded' })).body.id;
    await waitReady(h, id);
  });

  afterAll(async () => {
    await platform?.close();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('works with the SDK client given the admin token as bearer, and refuses it without (401)', async () => {
    const a2a = `${platform.url}/workspaces/${id}/a2a`;
    await expect(factory().createFromUrl(a2a)).rejects.toThrow(/401/);
    const client = await factory(ADMIN).createFromUrl(a2a);
    expect(replyText(await client.sendMessage({ tenant: '', message: userMessage('What is your name?'), configuration: undefined, metadata: undefined }))).toContain('guarded');
    // Authentication failures come before any JSON-RPC handling: still 401.
    const bad = await api(platform.url, 'nope').call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: 1, method: 'message/send', params: {} });
    expect(bad.status).toBe(401);
    expect((await api(platform.url).call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: 1 })).status).toBe(401);
    expect((await api(platform.url).call('GET', '/agents')).status).toBe(401);
  });

  it.each(['1.0', '0.3'] as const)('with the admin token: send, stream and the task methods, SDK client on v%s', async (version) => {
    const client = await sdkClient(version, `${publicUrl}/workspaces/${id}/a2a`, ADMIN);
    expect(replyText(await client.sendMessage({ tenant: '', message: userMessage('What is your name?'), configuration: undefined, metadata: undefined }))).toContain('guarded');
    const streamed = await streamText(client, 'Who are you?');
    expect(streamed).toContain('guarded');
    await cancelAndHistory(client, version);
  });

  it('publishes MOLECULE_PUBLIC_URL and a required bearer in the card, whatever the Host', async () => {
    const r = await getWithHost(`${platform.url}/workspaces/${id}/a2a/.well-known/agent-card.json`, 'elsewhere.test', { authorization: `Bearer ${ADMIN}` });
    expect(r.status).toBe(200);
    expect(v03Errors('AgentCard', r.body)).toBe('');
    expect(r.body.url).toBe(`${publicUrl}/workspaces/${id}/a2a`);
    expect(r.body.security).toEqual([{ bearer: [] }]);
    expect(r.body.securitySchemes.bearer.description).toMatch(/MOLECULE_ADMIN_TOKEN/);
    const catalog = await h.call('GET', '/agents');
    expect(catalog.body.agents).toEqual([expect.objectContaining({ workspace_id: id, card_url: `${publicUrl}/workspaces/${id}/a2a/.well-known/agent-card.json` })]);
  });
});

describe('A2A proxy limits before JSON-RPC handling', () => {
  const dataDir = tempDir('a2a-disc-rate');
  let platform: Platform;

  beforeAll(async () => {
    platform = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_RATE_LIMIT_PER_MIN: '3' }, logger });
  });
  afterAll(async () => {
    await platform?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps 429 with Retry-After for rate limiting, while JSON-RPC errors before it were HTTP 200', async () => {
    const h = api(platform.url);
    const id = crypto.randomUUID();
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 4; i++) {
      last = await h.call('POST', `/workspaces/${id}/a2a`, { jsonrpc: '2.0', id: i, method: 'message/send', params: { message: { role: 'user', parts: [] } } });
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(last!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(last!.body.code).toBe('rate_limited');
  });
});
