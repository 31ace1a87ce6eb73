import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/server/metrics.js';
import { A2AProxy } from '../../src/server/a2a/proxy.js';
import { Guard } from '../../src/server/security.js';
import { storesOf } from '../../src/store/repositories.js';
import { closeWorlds, ready, silentLogger, world, type World } from '../support/world.js';

/**
 * The proxy against an agent that misbehaves in ways a real agent rarely does: the A2A proxy alone on an HTTP
 * server, with the real workspace service (fake backend), in front of an agent whose answer each test chooses.
 */
type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

describe('A2A proxy: what a misbehaving agent gets the caller', () => {
  let behaviour: Behaviour;
  let seen: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const agent = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      behaviour(req, res, body);
    });
  });
  let w: World;
  let proxy: http.Server;
  let a2a: A2AProxy;
  let guard: Guard;
  let id: string;
  const MAX_RESPONSE = 4096;

  beforeAll(async () => {
    await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    await new Promise((r) => agent.close(r));
  });

  const setUp = async () => {
    w = await world();
    w.config.a2a.maxResponseBytes = MAX_RESPONSE;
    w.config.a2a.timeoutMs = 2_000;
    w.provisioner.agentUrl = () => `http://127.0.0.1:${(agent.address() as AddressInfo).port}/`;
    id = await w.create('target');
    expect((await ready(w, id)).status).toBe('ready');
    guard = new Guard(w.config, w.svc);
    a2a = new A2AProxy({ svc: w.svc, config: w.config, guard, logger: silentLogger, metrics: createMetrics(storesOf(w.store.db).workspaces, w.bus) });
    proxy = http.createServer((req, res) => a2a.handle(req, res));
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    seen = [];
  };
  afterEach(async () => {
    await new Promise((r) => proxy.close(r));
    await a2a.close();
    guard.close();
    await closeWorlds();
  });

  const call = async (body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}/workspaces/${id}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, type: res.headers.get('content-type'), body: await res.json() };
  };
  const send = { jsonrpc: '2.0', id: 'r1', method: 'message/send', params: { message: { kind: 'message', role: 'user', messageId: 'm1', parts: [{ kind: 'text', text: 'hi' }] } } };

  it('forwards with the agent token and passes a success through untouched', async () => {
    await setUp();
    const answer = { jsonrpc: '2.0', id: 'r1', result: { kind: 'message', role: 'agent', messageId: 'a1', parts: [{ kind: 'text', text: 'hello' }] } };
    behaviour = (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    const r = await call(send);
    expect(r).toMatchObject({ status: 200, body: answer });
    expect(seen[0].headers.authorization).toMatch(/^Bearer \S{20,}/);
    expect(JSON.parse(seen[0].body)).toEqual(send);
  });

  it('an agent’s JSON-RPC error sent with a non-2xx status reaches the caller in HTTP 200, code and data kept', async () => {
    await setUp();
    const error = { jsonrpc: '2.0', id: 'r1', error: { code: -32001, message: 'Task not found', data: { taskId: 't' } } };
    behaviour = (_q, res) => res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(error));
    expect(await call(send)).toMatchObject({ status: 200, body: error });
  });

  it('a non-JSON-RPC failure (an HTML 500) becomes the proxy’s own error: -32031 agent_bad_response with the status', async () => {
    await setUp();
    behaviour = (_q, res) => res.writeHead(500, { 'content-type': 'text/html' }).end('<h1>Internal Server Error</h1>');
    const r = await call(send);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ jsonrpc: '2.0', id: 'r1', error: { code: -32031, data: { code: 'agent_bad_response', agent_status: 500 } } });
  });

  it('an agent that refuses the platform’s agent token: -32036 agent_auth_failed', async () => {
    await setUp();
    behaviour = (_q, res) => res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
    const r = await call(send);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'r1', error: { code: -32036, data: { code: 'agent_auth_failed' } } });
  });

  it('an answer over MOLECULE_A2A_MAX_RESPONSE_BYTES: -32033 response_too_large, the rest not read', async () => {
    await setUp();
    behaviour = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`{"jsonrpc":"2.0","id":"r1","result":{"text":"`);
      const chunk = 'x'.repeat(1024);
      let sent = 0;
      const more = () => {
        while (sent < 64 && !res.destroyed) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end('"}}');
      };
      more();
    };
    const r = await call(send);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'r1', error: { code: -32033, data: { code: 'response_too_large' } } });
  });

  it('an agent that drops the connection mid-answer: -32031 agent_unreachable', async () => {
    await setUp();
    behaviour = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' });
      res.write('{"jsonrpc":"2.0",');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const r = await call(send);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'r1', error: { code: -32031, data: { code: 'agent_unreachable' } } });
  });

  it('a stream that breaks after its first event ends with a JSON-RPC error event', async () => {
    await setUp();
    behaviour = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 's1', result: { kind: 'status-update', final: false } })}\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const res = await fetch(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}/workspaces/${id}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ ...send, id: 's1', method: 'message/stream' }),
    });
    expect(res.status).toBe(200);
    const events = (await res.text()).split('\n\n').filter(Boolean).map((f) => JSON.parse(f.replace(/^data: /, '')));
    expect(events[0].result.kind).toBe('status-update');
    expect(events.at(-1)).toMatchObject({ id: 's1', error: { code: -32031, data: { code: 'agent_unreachable' } } });
  });
});
