import { describe, expect, it } from 'vitest';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms } from './support.js';

const start = securityPlatforms();

describe('rule 3: the agent checks its inbound token', () => {
  it('refuses A2A calls without the agent token, the proxy injects it, and the agent card stays public', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ws = await createReady(s.admin, { name: 'guarded-agent' });
    const { workspace, agent } = agentTokens(ws);
    const direct = (headers: Record<string, string>, body: unknown = a2aMessage('What region are you running in?')) =>
      fetch(ws.instance.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

    for (const [what, headers] of [
      ['no token', {}],
      ['a wrong token', { authorization: 'Bearer mag_wrong' }],
      ['the workspace token', { authorization: `Bearer ${workspace}` }],
      ['the admin token', { authorization: `Bearer ${ADMIN}` }],
      ['the token without Bearer', { authorization: agent }],
    ] as const) {
      const r = await direct(headers);
      expect(`${what}: ${r.status}`).toBe(`${what}: 401`);
      const body = await r.json();
      expect(body).toMatchObject({ jsonrpc: '2.0', error: { code: -32040 } });
    }
    // Every method is guarded, not only message/send.
    for (const method of ['tasks/get', 'tasks/cancel', 'message/stream', 'GetTask', 'SendMessage']) {
      expect((await direct({}, { jsonrpc: '2.0', id: 2, method, params: {} })).status).toBe(401);
    }
    expect((await direct({ authorization: `Bearer ${agent}` })).status).toBe(200);

    // The proxy adds the token itself; the caller never needs (or sees) it.
    const viaProxy = await s.admin.call('POST', `/workspaces/${ws.id}/a2a`, a2aMessage('What region are you running in?'));
    expect(viaProxy.status).toBe(200);
    expect(viaProxy.body.result.parts[0].text).toMatch(/local/);
    expect(viaProxy.text).not.toContain(agent);

    const card = await fetch(new URL('/.well-known/agent-card.json', ws.instance.url));
    expect(card.status).toBe(200);
    expect((await card.json()).name).toBeTruthy();
    expect((await fetch(new URL('/healthz', ws.instance.url))).status).toBe(200);
  });
});
