import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIST_TEAM_TOOL, parseSendArgs, relationOf, runTool, SEND_MESSAGE_TOOL, TOOLS } from '../../src/agent/tools.js';
import { Workspace } from '../../src/agent/workspace.js';

const SELF = '11111111-1111-4111-8111-111111111111';
const PARENT = '22222222-2222-4222-8222-222222222222';
const CHILD = '33333333-3333-4333-8333-333333333333';
const SIBLING = '44444444-4444-4444-8444-444444444444';
const workspace = new Workspace({ id: SELF, name: 'me', role: 'tester', region: 'local', tier: 1, runtime: 'hermes' });

describe('team tools: argument validation', () => {
  it('declares both tools with JSON-schema parameters', () => {
    expect(TOOLS.map((t) => t.name)).toEqual(['get_workspace_info', 'list_my_team', 'send_message_to_agent']);
    expect(SEND_MESSAGE_TOOL.parameters.required).toEqual(['text']);
    expect(LIST_TEAM_TOOL.parameters.properties).toEqual({});
  });

  it('accepts workspace_id or agent with a text, and refuses everything else with a reason', () => {
    expect(parseSendArgs({ workspace_id: CHILD, text: 'hi' })).toEqual({ workspace_id: CHILD, text: 'hi' });
    expect(parseSendArgs({ agent: ' child ', text: 'hi' })).toEqual({ agent: 'child', text: 'hi' });
    const bad: [unknown, RegExp][] = [
      [null, /JSON object/],
      [[], /JSON object/],
      ['x', /JSON object/],
      [{ workspace_id: CHILD }, /text is required/],
      [{ workspace_id: CHILD, text: '   ' }, /text is required/],
      [{ workspace_id: CHILD, text: 42 }, /text is required/],
      [{ workspace_id: CHILD, text: 'x'.repeat(16_001) }, /longer than/],
      [{ text: 'hi' }, /give workspace_id/],
      [{ workspace_id: '', agent: '', text: 'hi' }, /give workspace_id/],
      [{ workspace_id: '../../admin', text: 'hi' }, /workspace_id must be/],
      [{ workspace_id: 7, text: 'hi' }, /workspace_id must be/],
      [{ agent: 5, text: 'hi' }, /agent must be/],
      [{ workspace_id: CHILD, text: 'hi', urgent: true }, /unknown argument\(s\): urgent/],
    ];
    for (const [args, reason] of bad) {
      const r = parseSendArgs(args);
      expect('error' in r && r.error, JSON.stringify(args)).toMatch(reason);
    }
  });

  it('returns validation, JSON and platform errors as JSON text, never throwing', async () => {
    const ctx = { workspace, platform: { url: 'http://127.0.0.1:9', token: 't' } };
    expect(JSON.parse(await runTool('send_message_to_agent', '{"text":', ctx))).toMatchObject({ code: 'invalid_arguments' });
    expect(JSON.parse(await runTool('send_message_to_agent', '{"workspace_id":"x"}', ctx))).toMatchObject({ code: 'invalid_arguments', error: expect.stringMatching(/text/) });
    expect(JSON.parse(await runTool('send_message_to_agent', JSON.stringify({ workspace_id: SELF, text: 'hi' }), ctx))).toMatchObject({ code: 'self_message' });
    expect(JSON.parse(await runTool('nope', '{}', ctx))).toMatchObject({ code: 'unknown_tool' });
    expect(JSON.parse(await runTool('list_my_team', '{}', ctx))).toMatchObject({ code: 'platform_unreachable' });
    const alone = { workspace, platform: null };
    expect(JSON.parse(await runTool('list_my_team', '{}', alone))).toMatchObject({ code: 'no_platform' });
    expect(JSON.parse(await runTool('send_message_to_agent', JSON.stringify({ workspace_id: CHILD, text: 'hi' }), alone))).toMatchObject({ code: 'no_platform' });
  });

  it('derives the relation from parent ids', () => {
    expect(relationOf({ workspace_id: SELF, parent_id: PARENT }, SELF, PARENT)).toBe('self');
    expect(relationOf({ workspace_id: PARENT, parent_id: null }, SELF, PARENT)).toBe('parent');
    expect(relationOf({ workspace_id: CHILD, parent_id: SELF }, SELF, PARENT)).toBe('child');
    expect(relationOf({ workspace_id: SIBLING, parent_id: PARENT }, SELF, PARENT)).toBe('sibling');
    expect(relationOf({ workspace_id: SIBLING, parent_id: null }, SELF, null)).toBe('sibling');
    expect(relationOf({ workspace_id: SIBLING, parent_id: CHILD }, SELF, PARENT)).toBe('other');
  });
});

describe('team tools against a stub catalog', () => {
  let server: http.Server;
  let url: string;
  const seen: { path: string; auth?: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ path: req.url!, auth: req.headers.authorization });
      if (req.url !== '/agents') return void res.writeHead(404).end();
      const entry = (id: string, name: string, parent: string | null) => ({ workspace_id: id, workspace_name: name, parent_id: parent, status: 'ready', name, description: `the ${name} agent`, skills: [{ id: 'chat', name: 'Chat', tags: ['x'] }] });
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ agents: [entry(SELF, 'me', PARENT), entry(PARENT, 'boss', null), entry(CHILD, 'kid', SELF), entry(SIBLING, 'twin', PARENT), entry(crypto.randomUUID(), 'twin', PARENT)] }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as any).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('lists the team with relations, using the workspace token', async () => {
    const out = JSON.parse(await runTool('list_my_team', '', { workspace, platform: { url, token: 'ws-token' } }));
    expect(out.agents.map((a: any) => [a.name, a.relation])).toEqual([['me', 'self'], ['boss', 'parent'], ['kid', 'child'], ['twin', 'sibling'], ['twin', 'sibling']]);
    expect(out.agents[2]).toEqual({ name: 'kid', workspace_id: CHILD, relation: 'child', status: 'ready', description: 'the kid agent', skills: [{ id: 'chat', name: 'Chat' }] });
    expect(seen.at(-1)).toEqual({ path: '/agents', auth: 'Bearer ws-token' });
  });

  it('resolves names: unknown, ambiguous and self are refused as JSON errors', async () => {
    const ctx = { workspace, platform: { url, token: 'ws-token' } };
    const send = async (agent: string) => JSON.parse(await runTool('send_message_to_agent', JSON.stringify({ agent, text: 'hi' }), ctx));
    expect(await send('ghost')).toMatchObject({ code: 'agent_not_found' });
    expect(await send('twin')).toMatchObject({ code: 'ambiguous_agent' });
    expect(await send('ME')).toMatchObject({ code: 'self_message' });
  });
});

describe('send_message_to_agent against a stub A2A endpoint', () => {
  let server: http.Server;
  let url: string;
  /** What the stub does for the target workspace: hang, or answer JSON-RPC with an error in HTTP 200. */
  let mode: 'hang' | 'rpc-error' = 'hang';
  const hung: http.ServerResponse[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const base = `${url}/workspaces/${CHILD}/a2a`;
      if (mode === 'hang') return void hung.push(res);
      if (req.method === 'GET' && req.url!.endsWith('/.well-known/agent-card.json')) {
        const card = {
          name: 'kid', description: 'the kid agent', url: base, version: '1.0.0', protocolVersion: '0.3.0', preferredTransport: 'JSONRPC',
          capabilities: { streaming: false }, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
          skills: [{ id: 'chat', name: 'Chat', description: 'chat', tags: ['chat'] }],
          additionalInterfaces: [{ url: base, transport: 'JSONRPC' }],
          supportedInterfaces: [{ url: base, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
        };
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(card));
      }
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        const id = JSON.parse(raw).id ?? null;
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32037, message: 'workspace is outside your family', data: { code: 'a2a_forbidden' } } }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as any).port}`;
  });
  afterAll(() => {
    for (const res of hung) res.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });

  const args = JSON.stringify({ workspace_id: CHILD, text: 'hello' });

  it('times out a call that does not answer, as a JSON error', async () => {
    mode = 'hang';
    const started = Date.now();
    const out = JSON.parse(await runTool('send_message_to_agent', args, { workspace, platform: { url, token: 't' }, agentCallTimeoutMs: 300 }));
    expect(out).toMatchObject({ code: 'timeout', workspace_id: CHILD });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("stops the call when the turn's signal aborts (the abort propagates: the turn is over)", async () => {
    mode = 'hang';
    const turn = new AbortController();
    const call = runTool('send_message_to_agent', args, { workspace, platform: { url, token: 't' }, signal: turn.signal });
    setTimeout(() => turn.abort(new Error('turn cancelled')), 100);
    await expect(call).rejects.toThrow('turn cancelled');
  });

  it("returns a JSON-RPC error's data.code (a2a_forbidden in HTTP 200) as the tool's error code", async () => {
    mode = 'rpc-error';
    const out = JSON.parse(await runTool('send_message_to_agent', args, { workspace, platform: { url, token: 't' } }));
    expect(out, JSON.stringify(out)).toMatchObject({ code: 'a2a_forbidden', workspace_id: CHILD, rpc_code: -32037 });
  });
});
