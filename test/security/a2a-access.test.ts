import { describe, expect, it } from 'vitest';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms } from './support.js';

const start = securityPlatforms();

/**
 *   root ─┬─ a ── a1          other ── o1
 *         └─ b
 */
async function tree(s: Awaited<ReturnType<typeof start>>) {
  const root = await createReady(s.admin, { name: 'root' });
  const [a, b] = await Promise.all([createReady(s.admin, { name: 'a', parent_id: root.id }), createReady(s.admin, { name: 'b', parent_id: root.id })]);
  const a1 = await createReady(s.admin, { name: 'a1', parent_id: a.id });
  const other = await createReady(s.admin, { name: 'other' });
  const o1 = await createReady(s.admin, { name: 'o1', parent_id: other.id });
  return { root, a, b, a1, other, o1 };
}

describe('rule 5: A2A access between workspaces', () => {
  it('lets a workspace reach its parent, children and siblings with its own token; others get a JSON-RPC a2a_forbidden error (HTTP 200); admin reaches all', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const t = await tree(s);
    const token = (ws: any) => agentTokens(ws).workspace;
    const callAs = (from: any, to: any) => s.as(token(from)).call('POST', `/workspaces/${to.id}/a2a`, a2aMessage('What is your name?'));

    const allowed: [string, any, any][] = [
      ['child → parent', t.a, t.root],
      ['parent → child', t.root, t.a],
      ['sibling → sibling', t.a, t.b],
      ['grandchild → its parent', t.a1, t.a],
      ['top-level → top-level (siblings at the top)', t.root, t.other],
      ['itself', t.b, t.b],
    ];
    for (const [what, from, to] of allowed) {
      const r = await callAs(from, to);
      expect(`${what}: ${r.status}`).toBe(`${what}: 200`);
      expect(r.body.result.parts[0].text).toContain(to.name);
    }

    const refused: [string, any, any][] = [
      ['grandchild → grandparent', t.a1, t.root],
      ['grandparent → grandchild', t.root, t.a1],
      ['nephew → uncle', t.a1, t.b],
      ['cousin tree', t.a, t.o1],
      ['cousin tree, other way', t.o1, t.b],
      ['top-level → another tree’s child', t.root, t.o1],
    ];
    for (const [what, from, to] of refused) {
      const r = await callAs(from, to);
      expect(`${what}: ${r.status}`).toBe(`${what}: 200`);
      expect(r.body).toMatchObject({ jsonrpc: '2.0', id: '1', error: { code: -32037, data: { code: 'a2a_forbidden' } } });
      expect(r.body.error.message).toContain(from.id);
    }
    // A streaming call is refused the same way, before anything reaches the agent.
    const stream = await s.as(token(t.a1)).call('POST', `/workspaces/${t.root.id}/a2a`, { ...a2aMessage('hi'), method: 'message/stream' }, { accept: 'text/event-stream' });
    expect(stream.status).toBe(200);
    expect(stream.body).toMatchObject({ error: { code: -32037, data: { code: 'a2a_forbidden' } } });

    for (const ws of Object.values(t)) {
      const r = await s.admin.call('POST', `/workspaces/${ws.id}/a2a`, a2aMessage('What is your name?'));
      expect(r.status).toBe(200);
    }
    // Unknown credentials are not a caller at all.
    const bad = await s.as('mws_nope').call('POST', `/workspaces/${t.a.id}/a2a`, a2aMessage('hi'));
    expect(bad.status).toBe(401);
    const none = await s.anon.call('POST', `/workspaces/${t.a.id}/a2a`, a2aMessage('hi'));
    expect(none.status).toBe(401);
  });

  it('applies the same rules when the API is open on loopback (no admin token)', async () => {
    const s = await start();
    const root = await createReady(s.admin, { name: 'root' });
    const child = await createReady(s.admin, { name: 'child', parent_id: root.id });
    const grandchild = await createReady(s.admin, { name: 'grandchild', parent_id: child.id });
    const asGrandchild = s.as(agentTokens(grandchild).workspace);
    expect((await asGrandchild.call('POST', `/workspaces/${child.id}/a2a`, a2aMessage('hi'))).status).toBe(200);
    const refused = await asGrandchild.call('POST', `/workspaces/${root.id}/a2a`, a2aMessage('hi'));
    expect(refused.status).toBe(200);
    expect(refused.body.error.data.code).toBe('a2a_forbidden');
    // The walkthrough's anonymous caller is the operator on loopback.
    expect((await s.anon.call('POST', `/workspaces/${root.id}/a2a`, a2aMessage('hi'))).status).toBe(200);
  });
});
