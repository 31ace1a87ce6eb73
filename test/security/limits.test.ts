import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms } from './support.js';

const start = securityPlatforms();

/** Sends raw bytes and resolves with whatever the server answers before it closes the connection. */
/** Sends `chunks` and waits; `closedByServer` is false when our own `untilMs` deadline had to close the socket. */
function rawExchange(port: number, chunks: string[], untilMs: number): Promise<{ answer: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    let closedByUs = false;
    const sock = net.connect(port, '127.0.0.1', () => {
      for (const c of chunks) sock.write(c);
    });
    let answer = '';
    sock.on('data', (d) => (answer += d));
    sock.on('close', () => {
      clearTimeout(deadline);
      resolve({ answer, closedByServer: !closedByUs });
    });
    sock.on('error', () => undefined);
    const deadline = setTimeout(() => {
      closedByUs = true;
      sock.destroy();
    }, untilMs);
  });
}

describe('rule 7: limits and headers', () => {
  it('limits body sizes: 413 with {error, code}, on the API and on the A2A proxy', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_MAX_BODY_BYTES: '4096', MOLECULE_A2A_MAX_BODY_BYTES: '8192' });
    const big = await s.admin.call('POST', '/workspaces', { name: 'x', role: 'r'.repeat(5000) });
    expect(big.status).toBe(413);
    expect(big.body).toEqual({ error: expect.any(String), code: 'payload_too_large' });
    const secret = await s.admin.call('PUT', '/settings/secrets/K', { value: 'v'.repeat(5000) });
    expect(secret.status).toBe(413);
    const a2a = await s.admin.call('POST', `/workspaces/${crypto.randomUUID()}/a2a`, a2aMessage('x'.repeat(9000)));
    // The proxy's answer is a JSON-RPC error, so HTTP 200 with the reason in error.data.code.
    expect(a2a.status).toBe(200);
    expect(a2a.body.error).toMatchObject({ code: -32033, data: { code: 'payload_too_large' } });
    // Under the limits everything works.
    expect((await s.admin.call('POST', '/workspaces', { name: 'fits', role: 'r'.repeat(3000) })).status).toBe(201);
  });

  it('rate-limits per token (per address without one): 429 with Retry-After and {error, code}; budgets are separate; /healthz is exempt', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_RATE_LIMIT_PER_MIN: '5' });
    const anonStatuses = [];
    for (let i = 0; i < 6; i++) anonStatuses.push((await s.anon.call('GET', '/workspaces')).status);
    expect(anonStatuses).toEqual([401, 401, 401, 401, 401, 429]);
    const limited = await s.as('wrong-token').call('GET', '/workspaces');
    expect(limited.status).toBe(429); // a made-up token shares the address's budget
    expect(limited.body).toEqual({ error: expect.stringMatching(/too many requests/), code: 'rate_limited' });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(60);

    // The admin token has its own budget.
    const adminStatuses = [];
    for (let i = 0; i < 6; i++) adminStatuses.push((await s.admin.call('GET', '/workspaces')).status);
    expect(adminStatuses).toEqual([200, 200, 200, 200, 200, 429]);
    for (let i = 0; i < 10; i++) expect((await s.anon.call('GET', '/healthz')).status).toBe(200);
  });

  it('gives each workspace token its own budget (MOLECULE_AGENT_RATE_LIMIT_PER_MIN)', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_AGENT_RATE_LIMIT_PER_MIN: '6', HEARTBEAT_INTERVAL_S: '60' });
    const [a, b] = await Promise.all([createReady(s.admin, { name: 'a' }), createReady(s.admin, { name: 'b' })]);
    const call = (from: any, to: any) => s.as(agentTokens(from).workspace).call('POST', `/workspaces/${to.id}/a2a`, a2aMessage('What is your name?'));
    // One request of each budget went to the agent's own registration.
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(a, b)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect((await call(b, a)).status).toBe(200);
    expect((await s.admin.call('POST', `/workspaces/${b.id}/a2a`, a2aMessage('hi'))).status).toBe(200);
  });

  it('times out clients that send a request too slowly, while answers and event streams may run long', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_REQUEST_TIMEOUT_S: '1' });
    const port = Number(new URL(s.p.url).port);
    const slowBody = await rawExchange(
      port,
      [`POST /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`],
      8000,
    );
    expect(slowBody.closedByServer).toBe(true);
    expect(slowBody.answer).toMatch(/^HTTP\/1\.1 408/);
    const slowHeaders = await rawExchange(port, ['GET /workspaces HTTP/1.1\r\nHost: x\r\n'], 8000);
    expect(slowHeaders.closedByServer).toBe(true);
    expect((await s.admin.call('GET', '/workspaces')).body).toEqual([]);

    // An event stream outlives the request timeout and still delivers.
    const sse = await fetch(`${s.p.url}/events`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const reader = sse.body!.getReader();
    await reader.read(); // ": connected"
    await new Promise((r) => setTimeout(r, 2500));
    await s.admin.call('PUT', '/settings/secrets/LATE', { value: 'v' });
    let text = '';
    while (!text.includes('secret.changed')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
  });

  it('sends security headers (strict CSP, no framing) on the UI, and the JSON API, SSE and WebSocket keep working', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ui = await fetch(`${s.p.url}/`);
    const csp = ui.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("object-src 'none'");
    expect(ui.headers.get('x-frame-options')).toBe('DENY');
    expect(ui.headers.get('x-content-type-options')).toBe('nosniff');
    expect(ui.headers.get('referrer-policy')).toBe('no-referrer');
    if (ui.status === 200) {
      // The built page itself obeys the policy: every script comes from a file.
      const html = await ui.text();
      const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
      expect(scripts.length).toBeGreaterThan(0);
      for (const [, attrs, body] of scripts) {
        expect(attrs).toMatch(/\bsrc=/);
        expect(body.trim()).toBe('');
      }
      expect(html).not.toMatch(/\son[a-z]+\s*=/i);
      const asset = html.match(/src="(\/assets\/[^"]+)"/)?.[1];
      if (asset) {
        const a = await fetch(`${s.p.url}${asset}`);
        expect(a.status).toBe(200);
        expect(a.headers.get('x-content-type-options')).toBe('nosniff');
      }
    } else {
      expect(ui.status).toBe(503); // not built: says so, with the same headers
    }

    const refused = await s.anon.call('GET', '/workspaces');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('x-content-type-options')).toBe('nosniff');
    const list = await s.admin.call('GET', '/workspaces');
    expect(list.status).toBe(200);
    expect(list.headers.get('content-type')).toMatch(/application\/json/);
    expect(list.headers.get('x-content-type-options')).toBe('nosniff');

    const sse = await fetch(`${s.p.url}/events?token=${ADMIN}`);
    expect(sse.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = sse.body!.getReader();
    const socket = new WebSocket(`${s.p.url.replace('http', 'ws')}/ws?token=${ADMIN}`);
    const wsMessage = once(socket, 'message');
    await once(socket, 'open');
    await s.admin.call('PUT', '/settings/secrets/PING', { value: 'v' });
    let text = '';
    while (!text.includes('secret.changed')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(JSON.parse(String((await wsMessage)[0]))).toMatchObject({ type: 'secret.changed' });
    socket.close();
  });
});
