import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashToken, mintToken } from '../../src/core/crypto.js';
import { waitFor, waitReady } from '../support/harness.js';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms, type SecPlatform } from './support.js';

const start = securityPlatforms();

const heartbeat = { active_tasks: 0, current_task: null, error_rate: 0, uptime_s: 1 };

function tokenRows(s: SecPlatform, workspaceId: string) {
  const db = new Database(path.join(s.dataDir, 'molecule.db'), { readonly: true });
  try {
    return db.prepare('select kind, hash, sealed, revoked_at from tokens where workspace_id = ? order by created_at').all(workspaceId) as {
      kind: string;
      hash: string;
      sealed: string;
      revoked_at: string | null;
    }[];
  } finally {
    db.close();
  }
}

describe('rule 2: workspace tokens', () => {
  it('are 256-bit random values of which only the hash is stored', async () => {
    const t = mintToken('workspace');
    expect(Buffer.from(t.slice(4), 'base64url')).toHaveLength(32);
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ws = await createReady(s.admin, { name: 'hashed' });
    const { workspace, agent } = agentTokens(ws);
    const rows = tokenRows(s, ws.id).filter((r) => !r.revoked_at);
    const wsRow = rows.find((r) => r.kind === 'workspace')!;
    expect(wsRow.hash).toBe(hashToken(workspace));
    expect(wsRow.sealed).toBe('');
    // The agent token is the platform's own credential for calling the agent: sealed (AES-GCM), never plain.
    const agentRow = rows.find((r) => r.kind === 'agent')!;
    expect(agentRow.hash).toBe(hashToken(agent));
    expect(agentRow.sealed).toMatch(/^v1:/);
    expect(agentRow.sealed).not.toContain(agent);
    // Never shown by the API.
    for (const p of ['/workspaces', `/workspaces/${ws.id}`, `/workspaces/${ws.id}/events`, `/workspaces/${ws.id}/logs?tail=1000`]) {
      const text = (await s.admin.call('GET', p)).text;
      expect(text).not.toContain(workspace);
      expect(text).not.toContain(agent);
    }
  });

  it('rotates both tokens on every restart (requested, resume, automatic) and revokes the old ones', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    let ws = await createReady(s.admin, { name: 'rotating' });
    const seen: { workspace: string; agent: string }[] = [agentTokens(ws)];
    const oldUrl = ws.instance.url;

    const restart = async (how: string) => {
      const before = ws.ready_at;
      if (how === 'restart') expect((await s.admin.call('POST', `/workspaces/${ws.id}/restart`)).status).toBe(202);
      if (how === 'resume') {
        expect((await s.admin.call('POST', `/workspaces/${ws.id}/pause`)).status).toBe(200);
        expect((await s.admin.call('POST', `/workspaces/${ws.id}/resume`)).status).toBe(202);
      }
      if (how === 'crash') process.kill(ws.instance.pid, 'SIGKILL');
      ws = await waitReady(s.admin, ws.id, { until: (w) => w.ready_at > before });
      seen.push(agentTokens(ws));
    };
    for (const how of ['restart', 'resume', 'crash']) await restart(how);

    const all = seen.flatMap((t) => [t.workspace, t.agent]);
    expect(new Set(all).size).toBe(all.length);
    const rows = tokenRows(s, ws.id);
    expect(rows.filter((r) => !r.revoked_at)).toHaveLength(2);
    expect(rows.filter((r) => r.revoked_at).every((r) => r.sealed === '')).toBe(true);

    // The old workspace tokens are refused; only the current one works.
    for (const old of seen.slice(0, -1)) {
      const r = await s.as(old.workspace).call('POST', '/registry/heartbeat', heartbeat);
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('invalid_token');
    }
    expect((await s.as(seen.at(-1)!.workspace).call('POST', '/registry/heartbeat', heartbeat)).status).toBe(200);

    // The running agent only accepts the newest agent token.
    const direct = async (token: string) =>
      (await fetch(ws.instance.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(a2aMessage('hi')) })).status;
    expect(await direct(seen[0]!.agent)).toBe(401);
    expect(await direct(seen.at(-1)!.agent)).toBe(200);
    expect(ws.instance.url).not.toBe(oldUrl);
  });

  it('refuses a spoofed register: no token, made-up token, admin token, agent token, revoked token', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ws = await createReady(s.admin, { name: 'victim' });
    const { agent } = agentTokens(ws);
    const body = { url: 'http://127.0.0.1:1/', agent_card: { name: 'evil' } };
    const cases: [string | undefined, number, string][] = [
      [undefined, 401, 'missing_token'],
      [mintToken('workspace'), 401, 'invalid_token'],
      [`mws_${crypto.randomBytes(32).toString('base64url')}`, 401, 'invalid_token'],
      [ADMIN, 403, 'wrong_token'],
      [agent, 403, 'wrong_token'],
    ];
    const rowsBefore = tokenRows(s, ws.id).length;
    for (const [token, status, code] of cases) {
      const r = await (token ? s.as(token) : s.anon).call('POST', '/registry/register', body);
      expect(`${r.status} ${r.body.code}`).toBe(`${status} ${code}`);
    }
    // Nothing was minted or changed by those attempts (no first-come registration).
    expect(tokenRows(s, ws.id)).toHaveLength(rowsBefore);
    const after = (await s.admin.call('GET', `/workspaces/${ws.id}`)).body;
    expect(after.agent).toEqual(ws.agent);
    expect(after.status).toBe('ready');
    expect((await s.admin.call('GET', '/workspaces')).body).toHaveLength(1);
  });

  it("accepts only a workspace's own token: another workspace's token reaches neither its record nor its registration", async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const a = await createReady(s.admin, { name: 'a' });
    const b = await createReady(s.admin, { name: 'b' });
    const ta = agentTokens(a).workspace;
    // A's token identifies A: registering with it can only ever register A, never B.
    const reg = await s.as(ta).call('POST', '/registry/register', { url: b.instance.url, agent_card: { name: 'b-spoof' } });
    expect(reg.status).toBe(403);
    expect(reg.body.code).toBe('agent_url_mismatch');
    expect((await s.admin.call('GET', `/workspaces/${b.id}`)).body.agent).toEqual(b.agent);
    for (const [method, p] of [
      ['GET', `/workspaces/${b.id}`],
      ['POST', `/workspaces/${b.id}/restart`],
      ['GET', `/workspaces/${b.id}/secrets`],
      ['DELETE', `/workspaces/${b.id}`],
    ] as const) {
      const r = await s.as(ta).call(method, p);
      expect(`${method} ${p} ${r.status}`).toBe(`${method} ${p} 403`);
    }
    expect((await s.admin.call('GET', `/workspaces/${b.id}`)).body.status).toBe('ready');
  });

  it('revokes the tokens on delete', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ws = await createReady(s.admin, { name: 'doomed' });
    const { workspace } = agentTokens(ws);
    expect((await s.admin.call('DELETE', `/workspaces/${ws.id}`)).status).toBe(202);
    const r = await s.as(workspace).call('POST', '/registry/heartbeat', heartbeat);
    expect(r.status).toBe(401);
    expect(tokenRows(s, ws.id).every((row) => row.revoked_at && row.sealed === '')).toBe(true);
    await waitFor('removed', async () => (await s.admin.call('GET', `/workspaces/${ws.id}`)).status === 410);
  });
});
