import crypto from 'node:crypto';
import fs from 'node:fs';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.js';
import { api, killRecordedAgents, launchPlatform, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';

/**
 * Issue 15, item 5: SIGTERM drains. The platform is the build (`node dist/main.js`, as npm start and the image run
 * it). A stream in flight when the signal arrives completes; requests that arrive during the drain are refused
 * (REST 503, A2A JSON-RPC not-ready, /healthz 503 draining); the process exits once the drain is over, and within
 * MOLECULE_SHUTDOWN_GRACE_S when a stream outlasts it.
 */
describe('graceful shutdown of the built platform (node dist/main.js)', () => {
  const dataDir = tempDir('shutdown');
  let model: FakeOpenAI;
  const platforms: PlatformProcess[] = [];

  beforeAll(async () => {
    model = await startFakeOpenAI(() => 'alpha beta gamma delta epsilon zeta eta theta iota omega');
  });

  afterAll(async () => {
    for (const p of platforms) await p.stop('SIGKILL');
    killRecordedAgents(dataDir);
    await model?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function platformWithStreamingAgent(graceS: number): Promise<{ platform: PlatformProcess; admin: Api; ws: any }> {
    const platform = await launchPlatform({ dataDir, env: { MOLECULE_SHUTDOWN_GRACE_S: String(graceS), HEARTBEAT_INTERVAL_S: '30' } });
    platforms.push(platform);
    const admin = api(platform.url);
    const r = await admin.call('POST', '/workspaces', { name: `streamer-${graceS}`, env: { OPENAI_BASE_URL: model.url, MODEL: 'fake' }, secrets: { OPENAI_API_KEY: 'sk-test' } });
    expect(r.status, r.text).toBe(201);
    return { platform, admin, ws: await waitReady(admin, r.body.id) };
  }

  /** Opens a message/stream and resolves once the first event arrived; `rest` is the rest of the body. */
  async function openStream(url: string, wsId: string) {
    const res = await fetch(`${url}/workspaces/${wsId}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'drain-1',
        method: 'message/stream',
        params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'count to ten' }] } },
      }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const rest = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return { text, complete: true };
          text += decoder.decode(value, { stream: true });
        }
      } catch (e) {
        return { text, complete: false, error: (e as Error).message };
      }
    })();
    return { first: text, rest };
  }

  it('SIGTERM: the stream in flight completes, new requests are refused during the drain, then the process exits', async () => {
    const { platform, admin, ws } = await platformWithStreamingAgent(10);
    model.holdNextStream(); // the model stops before its last word until released
    const gate = model.gate!;
    const stream = await openStream(platform.url, ws.id);
    expect(stream.first).toContain('data:');
    const exited = once(platform.child, 'exit');
    const signalledAt = Date.now();
    platform.child.kill('SIGTERM');

    // /healthz says draining (balancers stop sending), REST is refused, a new A2A call gets JSON-RPC not-ready.
    const health = await waitFor('/healthz to say draining', async () => {
      const h = await admin.call('GET', '/healthz');
      return h.status === 503 && h;
    }, 5000, 50);
    expect(health.body.status).toBe('draining');
    const rest = await admin.call('GET', '/workspaces');
    expect(rest.status).toBe(503);
    expect(rest.body.code).toBe('shutting_down');
    expect(rest.headers.get('retry-after')).toBe('1');
    const a2a = await admin.call('POST', `/workspaces/${ws.id}/a2a`, { jsonrpc: '2.0', id: 'late', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'hi' }] } } });
    expect(a2a.status).toBe(200);
    expect(a2a.body.error.code).toBe(-32030);
    expect(a2a.body.error.data.code).toBe('shutting_down');
    expect(platform.child.exitCode).toBeNull(); // still draining: the stream is open

    gate.release();
    const done = await stream.rest;
    expect(done.complete, done.error).toBe(true);
    expect(done.text).toContain('omega');
    expect(done.text).toMatch(/"final":\s*true|"state":\s*"completed"/);
    const [code] = await exited;
    expect(code).toBe(0);
    // It did not wait for the grace once nothing was in flight.
    expect(Date.now() - signalledAt).toBeLessThan(9000);
    const log = fs.readFileSync(platform.logFile, 'utf8');
    expect(log).toMatch(/SIGTERM: draining for up to 10 s/);
  }, 60_000);

  it('a stream that outlasts MOLECULE_SHUTDOWN_GRACE_S is cut and the process exits within the grace', async () => {
    const { platform, ws } = await platformWithStreamingAgent(2);
    model.holdNextStream(); // released only after the process is gone
    const gate = model.gate!;
    const stream = await openStream(platform.url, ws.id);
    const exited = once(platform.child, 'exit');
    const signalledAt = Date.now();
    platform.child.kill('SIGTERM');
    const [code] = await exited;
    const took = Date.now() - signalledAt;
    expect(code).toBe(0);
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(2000 + 3000);
    const done = await stream.rest;
    expect(done.text).not.toContain('omega');
    expect(fs.readFileSync(platform.logFile, 'utf8')).toMatch(/1 A2A call\(s\) still open after the grace/);
    gate.release();
  }, 60_000);
});
