import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { ConfigError, loadConfig } from '../../src/core/config.js';
import { safeEqual } from '../../src/core/crypto.js';
import { platformCommand, ROOT, tempDir } from '../support/harness.js';
import { ADMIN, agentTokens, createReady, securityPlatforms } from './support.js';

const start = securityPlatforms();

describe('rule 1: admin auth', () => {
  it('refuses to listen beyond loopback without MOLECULE_ADMIN_TOKEN, saying what to set', async () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com']) {
      expect(() => loadConfig({ HOST: host })).toThrow(ConfigError);
      expect(() => loadConfig({ HOST: host })).toThrow(/set MOLECULE_ADMIN_TOKEN/);
      expect(() => loadConfig({ HOST: host, MOLECULE_ADMIN_TOKEN: '   ' })).toThrow(/MOLECULE_ADMIN_TOKEN/);
      expect(loadConfig({ HOST: host, MOLECULE_ADMIN_TOKEN: ADMIN }).adminToken).toBe(ADMIN);
    }
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) expect(loadConfig({ HOST: host }).adminToken).toBeUndefined();

    // The real entry point: exit code 2 and the message on stderr, before anything listens.
    const dataDir = tempDir('sec-host');
    onTestFinished(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const child = spawn(process.execPath, platformCommand(), {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '0.0.0.0', PORT: '0', MOLECULE_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toMatch(/HOST=0\.0\.0\.0 listens beyond loopback.*set MOLECULE_ADMIN_TOKEN/);
  });

  it('says on /healthz that the API is open on loopback, or that it needs the token', async () => {
    const open = await start();
    const h = (await open.anon.call('GET', '/healthz')).body;
    expect(h.auth).toEqual({ admin_token: false, api: expect.stringMatching(/^open on loopback/) });
    expect((await open.anon.call('GET', '/workspaces')).status).toBe(200);

    const guarded = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const g = await guarded.anon.call('GET', '/healthz');
    expect(g.status).toBe(200);
    expect(g.body.auth).toMatchObject({ admin_token: true });
    expect(JSON.stringify(g.body)).not.toContain(ADMIN);
  });

  it('answers 401 for missing or wrong credentials, 403 for a workspace token on an admin route', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const ws = await createReady(s.admin, { name: 'agent' });
    const own = agentTokens(ws);

    const missing = await s.anon.call('GET', '/workspaces');
    expect(missing.status).toBe(401);
    expect(missing.body).toMatchObject({ code: 'unauthorized', error: expect.stringContaining('MOLECULE_ADMIN_TOKEN') });
    for (const wrong of [`${ADMIN}x`, ADMIN.slice(0, -1), 'x', ADMIN.toUpperCase()]) {
      const r = await s.as(wrong).call('GET', '/workspaces');
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('invalid_token');
    }
    const notBearer = await s.anon.call('GET', '/workspaces', undefined, { authorization: `Basic ${ADMIN}` });
    expect(notBearer.status).toBe(401);
    // The agent token is a real credential too, but it is the platform's, for calling the agent.
    expect((await s.as(own.agent).call('GET', '/workspaces')).status).toBe(401);

    for (const [method, p, body] of [
      ['GET', '/workspaces', undefined],
      ['GET', `/workspaces/${ws.id}`, undefined],
      ['POST', '/workspaces', { name: 'made-by-an-agent' }],
      ['DELETE', `/workspaces/${ws.id}`, undefined],
      ['PUT', '/settings/secrets/STOLEN', { value: 'x' }],
      ['GET', '/events?after=1', undefined],
    ] as const) {
      const r = await s.as(own.workspace).call(method, p, body);
      expect(`${method} ${p} → ${r.status} ${r.body?.code}`).toBe(`${method} ${p} → 403 forbidden`);
    }
    expect((await s.admin.call('GET', `/workspaces/${ws.id}`)).body.status).toBe('ready');
    expect((await s.admin.call('GET', '/workspaces')).body).toHaveLength(1);
  });

  it('takes ?token= for event streams (browsers cannot set headers there), and only on GET', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN });
    const sse = await fetch(`${s.p.url}/events?token=${ADMIN}&after=0`);
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/text\/event-stream/);
    await sse.body!.cancel();
    expect((await fetch(`${s.p.url}/events?token=wrong`)).status).toBe(401);

    const socket = new WebSocket(`${s.p.url.replace('http', 'ws')}/ws?token=${ADMIN}`);
    await once(socket, 'open');
    socket.close();
    const refused = new WebSocket(`${s.p.url.replace('http', 'ws')}/ws`);
    const [, res] = await once(refused, 'unexpected-response');
    expect(res.statusCode).toBe(401);

    // The token is taken out of the query, so strict query schemas still accept the rest.
    expect((await fetch(`${s.p.url}/workspaces?status=ready&token=${ADMIN}`)).status).toBe(200);
    const post = await fetch(`${s.p.url}/workspaces?token=${ADMIN}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' });
    expect(post.status).toBe(401);
  });

  it('compares tokens in constant time (hash first, then timingSafeEqual) and exactly', () => {
    expect(safeEqual(ADMIN, ADMIN)).toBe(true);
    expect(safeEqual(ADMIN, `${ADMIN} `)).toBe(false);
    expect(safeEqual(ADMIN, '')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('ä', 'a')).toBe(false);
  });
});
