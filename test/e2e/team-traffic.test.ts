import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { waitFor } from '../support/harness.js';
import { a2aMessage, agentTokens, createReady, securityPlatforms } from '../security/support.js';

const start = securityPlatforms();

/** A /ws client that keeps every message it gets. */
function listen(url: string, query: string) {
  const sock = new WebSocket(`${url.replace('http', 'ws')}/ws${query}`);
  const got: any[] = [];
  sock.on('message', (m) => got.push(JSON.parse(String(m))));
  const open = new Promise((resolve, reject) => (sock.once('open', resolve), sock.once('error', reject)));
  return { sock, got, open };
}

describe('the team over the API: re-parenting and live A2A call pulses (process backend)', () => {
  it('pushes a2a.calls pulses for workspace → workspace calls to /ws?calls=1 clients only', async () => {
    const s = await start();
    const [caller, target] = await Promise.all([createReady(s.admin, { name: 'caller' }), createReady(s.admin, { name: 'target' })]);
    const calls = listen(s.p.url, '?calls=1');
    const both = listen(s.p.url, `?calls=1&heartbeats=1&workspace_id=${caller.id}`);
    const plain = listen(s.p.url, '?heartbeats=1');
    await Promise.all([calls.open, both.open, plain.open]);

    const asCaller = s.as(agentTokens(caller).workspace);
    for (let i = 0; i < 3; i++) {
      const r = await asCaller.call('POST', `/workspaces/${target.id}/a2a`, a2aMessage('What is your name?'));
      expect(r.status).toBe(200);
      expect(r.body.result.parts[0].text).toContain('target');
    }
    // A stream counts once, with its time to the first event.
    const stream = await asCaller.call('POST', `/workspaces/${target.id}/a2a`, { ...a2aMessage('What is your name?'), method: 'message/stream' }, { accept: 'text/event-stream' });
    expect(stream.status).toBe(200);
    expect(stream.text).toContain('data:');
    // Not edges: the operator's calls, and a workspace calling itself.
    await s.admin.call('POST', `/workspaces/${target.id}/a2a`, a2aMessage('hi'));
    await asCaller.call('POST', `/workspaces/${caller.id}/a2a`, a2aMessage('hi'));

    const pulses = await waitFor('an a2a.calls pulse', async () => {
      const ps = calls.got.filter((m) => m.type === 'a2a.calls');
      return ps.reduce((n, p) => n + p.data.calls, 0) >= 4 && ps;
    }, 10_000);
    expect(pulses[0]).toMatchObject({ type: 'a2a.calls', workspace_id: target.id, at: expect.any(String), data: { from: caller.id, to: target.id, errors: 0, interval_ms: 1000 } });
    expect(pulses[0].id).toBeUndefined();
    for (const p of pulses) {
      expect(p.data.from).toBe(caller.id);
      expect(p.data.latencies_ms).toHaveLength(p.data.calls);
      for (const ms of p.data.latencies_ms) expect(ms).toBeGreaterThan(0);
    }
    expect(pulses.reduce((n, p) => n + p.data.calls, 0)).toBe(4);

    // A refused call (not in the family) is an edge that failed.
    const child = await createReady(s.admin, { name: 'child', parent_id: target.id });
    const refused = await asCaller.call('POST', `/workspaces/${child.id}/a2a`, a2aMessage('hi'));
    expect(refused.body.error.data.code).toBe('a2a_forbidden');
    await waitFor('the failed call pulse', async () => calls.got.some((m) => m.type === 'a2a.calls' && m.data.to === child.id && m.data.errors === 1), 10_000);

    // The client filtered by workspace gets the calls it makes, and still its heartbeats.
    await waitFor('filtered pulses', async () => both.got.some((m) => m.type === 'workspace.heartbeat'), 10_000);
    expect(both.got.filter((m) => m.type === 'a2a.calls').length).toBeGreaterThan(0);
    expect(both.got.filter((m) => m.type === 'a2a.calls').every((m) => m.data.from === caller.id || m.data.to === caller.id)).toBe(true);
    // Heartbeat pulses only: no calls.
    expect(plain.got.some((m) => m.type === 'workspace.heartbeat')).toBe(true);
    expect(plain.got.filter((m) => m.type === 'a2a.calls')).toEqual([]);
    // Pulses are not events.
    const stored = (await s.admin.call('GET', `/workspaces/${target.id}/events`)).body as any[];
    expect(stored.some((e) => e.type === 'a2a.calls')).toBe(false);
    for (const c of [calls, both, plain]) c.sock.close();
  });

  it('re-parents through PATCH: checks, errors, OpenAPI, and A2A access that follows at once', async () => {
    const s = await start();
    const root = await createReady(s.admin, { name: 'root' });
    const [a, b] = await Promise.all([createReady(s.admin, { name: 'a', parent_id: root.id }), createReady(s.admin, { name: 'b', parent_id: root.id })]);
    const a1 = await createReady(s.admin, { name: 'a1', parent_id: a.id });
    const callAs = (from: any, to: any) => s.as(agentTokens(from).workspace).call('POST', `/workspaces/${to.id}/a2a`, a2aMessage('What is your name?'));
    const patch = (ws: any, body: unknown) => s.admin.call('PATCH', `/workspaces/${ws.id}`, body);

    // Allowed, and cached on the way (caller token, target route).
    expect((await callAs(a1, a)).body.result).toBeDefined();
    expect((await callAs(a1, b)).body.error.data.code).toBe('a2a_forbidden');

    // a1 moves under b: its old parent is out of reach at once, its new parent in.
    const moved = await patch(a1, { parent_id: b.id });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ parent_id: b.id, needs_restart: false, status: 'ready' });
    expect((await callAs(a1, a)).body.error.data.code).toBe('a2a_forbidden');
    expect((await callAs(a, a1)).body.error.data.code).toBe('a2a_forbidden');
    expect((await callAs(a1, b)).body.result.parts[0].text).toContain('b');
    expect((await callAs(b, a1)).body.result).toBeDefined();

    // Top level: a sibling of root.
    const top = await patch(a1, { parent_id: null });
    expect(top.body.parent_id).toBeNull();
    expect((await callAs(a1, root)).body.result).toBeDefined();
    expect((await callAs(a1, b)).body.error.data.code).toBe('a2a_forbidden');

    const unknown = await patch(a, { parent_id: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ code: 'unknown_parent', error: expect.any(String) });
    const malformed = await patch(a, { parent_id: 'nope' });
    expect(malformed.status).toBe(400);
    const self = await patch(a, { parent_id: a.id });
    expect(self.status).toBe(409);
    expect(self.body).toMatchObject({ code: 'parent_cycle', error: expect.stringContaining('a → a') });
    await patch(a1, { parent_id: a.id });
    const descendant = await patch(root, { parent_id: a1.id });
    expect(descendant.status).toBe(409);
    expect(descendant.body).toMatchObject({ code: 'parent_cycle', error: expect.stringContaining('root → a1 → a → root') });

    const spec = (await s.admin.call('GET', '/openapi.json')).body;
    const props = spec.paths['/workspaces/{id}'].patch.requestBody.content['application/json'].schema.properties;
    expect(props.parent_id).toBeDefined();
    expect(JSON.stringify(props.parent_id)).toContain('parent_cycle');
  });
});
