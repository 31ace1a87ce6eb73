import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, killRecordedAgents, tempDir, waitFor, waitReady, type Api } from '../support/harness.js';
import { blockedOn, openFilesUnder, stalledRequest } from '../support/stalled.js';

/**
 * Streams whose client stops reading and then goes away (issue 10, finding 3). A client that does not read fills
 * the socket buffers, so the server waits for 'drain'; when that client then disconnects, 'drain' never comes.
 * The server must notice the close, stop waiting and release what it streams from: the agent's log file, the
 * SSE connection to the agent, the event bus subscription.
 */

/** A model that streams forever (until its client goes away), a few MB a second, and counts open streams. */
async function startEndlessModel() {
  const open = new Set<http.ServerResponse>();
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const c of req) raw += c;
    const body = JSON.parse(raw || '{}');
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: body.model, choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }] }));
      return;
    }
    open.add(res);
    res.on('close', () => open.delete(res));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta: { content: `${'x'.repeat(8000)} ` }, finish_reason: null }] })}\n\n`;
    while (!res.destroyed) {
      if (!res.write(chunk)) await once(res, 'drain').catch(() => undefined);
      await sleep(2);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`,
    open,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('streams whose client stops reading and then disconnects', () => {
  const dataDir = tempDir('streams');
  let platform: Platform;
  let admin: Api;
  let port: number;
  let model: Awaited<ReturnType<typeof startEndlessModel>>;

  beforeAll(async () => {
    model = await startEndlessModel();
    platform = await startPlatform({
      env: { ...FAST_ENV, HEARTBEAT_INTERVAL_S: '30', PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', LOG_LEVEL: 'warn' },
      logger: pino({ level: 'warn' }),
    });
    admin = api(platform.url);
    port = Number(new URL(platform.url).port);
  });

  afterAll(async () => {
    await platform?.close();
    killRecordedAgents(dataDir);
    await model?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function openStreams(kind: string): Promise<number> {
    const text = (await admin.call('GET', '/metrics')).text;
    const m = text.match(new RegExp(`^molecule_open_streams\\{kind="${kind}"\\} (\\d+)$`, 'm'));
    if (!m) throw new Error(`no molecule_open_streams{kind="${kind}"} in /metrics`);
    return Number(m[1]);
  }

  async function readyWorkspace(body: Record<string, unknown>): Promise<any> {
    const r = await admin.call('POST', '/workspaces', body);
    expect(r.status, r.text).toBe(201);
    return waitReady(admin, r.body.id);
  }

  it('GET /workspaces/:id/logs?follow=1 closes the agent\'s log file when the stalled client disconnects', async () => {
    const ws = await readyWorkspace({ name: 'chatty' });
    const logsDir = path.join(dataDir, 'logs');
    const sock = await stalledRequest(port, `GET /workspaces/${ws.id}/logs?follow=1&tail=0 HTTP/1.1`);
    // The agent logs every A2A call with the caller's request id: long ids make it write megabytes of output.
    const id = 'i'.repeat(900 * 1024);
    for (let i = 0; i < 30; i++) {
      const r = await admin.call('POST', `/workspaces/${ws.id}/a2a`, { jsonrpc: '2.0', id: `${i}${id}`, method: 'no/such-method', params: {} });
      expect(r.status).toBe(200);
    }
    expect(fs.statSync(path.join(logsDir, `${ws.instance.id}.log`)).size).toBeGreaterThan(25 * 1024 * 1024);
    // The follower is stuck on the full socket, in the middle of reading the log: the file is held open.
    await blockedOn(port, sock);
    expect(openFilesUnder(logsDir)).toHaveLength(1);
    expect(await openStreams('logs')).toBe(1);
    sock.destroy();
    await waitFor('the log file to be closed after the client left', async () => openFilesUnder(logsDir).length === 0, 10_000).catch((e) => {
      throw new Error(`${(e as Error).message}; still open: ${openFilesUnder(logsDir).join(', ')}`);
    });
    await waitFor('the log stream to end', async () => (await openStreams('logs')) === 0, 5000);
  });

  it('an A2A message/stream ends the agent\'s SSE stream when the stalled client disconnects', async () => {
    const ws = await readyWorkspace({ name: 'streamer', env: { OPENAI_BASE_URL: model.url, MODEL: 'endless' }, secrets: { OPENAI_API_KEY: 'sk-test' } });
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 'stream-1',
      method: 'message/stream',
      params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'talk forever' }] } },
    });
    const sock = await stalledRequest(
      port,
      `POST /workspaces/${ws.id}/a2a HTTP/1.1\r\nContent-Type: application/json\r\nAccept: text/event-stream`,
      body,
    );
    await waitFor('the agent to stream from the model', async () => model.open.size === 1, 10_000);
    // Every buffer between the agent and the stalled client fills up; the proxy then waits for 'drain'.
    await blockedOn(port, sock);
    expect(await openStreams('a2a')).toBe(1);
    sock.destroy();
    await waitFor('the proxy\'s stream to end', async () => (await openStreams('a2a')) === 0, 10_000);
    // The agent notices at its next event that its caller (the proxy) went away, and logs the stream's end.
    await waitFor(
      'the agent to log that the proxy closed its SSE stream',
      async () => /"client_gone":true/.test((await admin.call('GET', `/workspaces/${ws.id}/logs?tail=20`)).text),
      10_000,
    );
    // The turn itself goes on (tasks/get can still read it): stop the model so the agent stops working.
    for (const r of model.open) r.destroy();
  });

  it('GET /events ends its stream when the client disconnects', async () => {
    const sock = await stalledRequest(port, 'GET /events HTTP/1.1');
    await waitFor('the event stream to open', async () => (await openStreams('events')) === 1, 5000);
    sock.destroy();
    await waitFor('the event stream to end', async () => (await openStreams('events')) === 0, 5000);
  });
});
