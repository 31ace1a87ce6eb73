import fs from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { TIERS } from '../../src/core/types.js';
import { ACTIONS } from '../../src/core/status.js';
import { uiRoutes } from '../../src/server/ui.js';
import { UI_DIST } from '../../src/ui/paths.js';
import { FAST_ENV, api, tempDir as makeTempDir } from '../support/harness.js';

const dirs: string[] = [];
const tempDir = (prefix: string) => {
  const d = makeTempDir(prefix);
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('serving the web UI', () => {
  it('answers / with how to build the UI when there is no build, and never a 500', async () => {
    const app = Fastify();
    await app.register(uiRoutes, { dir: path.join(tempDir('ui-none'), 'ui') });
    const res = await app.inject({ url: '/' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toContain('npm run build:ui');
    expect((await app.inject({ url: '/assets/index-abc.js' })).statusCode).toBe(404);
    await app.close();
  });

  it('serves index.html revalidated and hashed assets as immutable; a build made while running is picked up', async () => {
    const dir = path.join(tempDir('ui-built'), 'ui');
    const app = Fastify();
    await app.register(uiRoutes, { dir });
    expect((await app.inject({ url: '/' })).statusCode).toBe(503);

    fs.mkdirSync(path.join(dir, 'assets'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><script type="module" src="/assets/index-abc.js"></script>');
    fs.writeFileSync(path.join(dir, 'assets', 'index-abc.js'), 'console.log(1)');
    fs.writeFileSync(path.join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');

    const page = await app.inject({ url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['cache-control']).toBe('no-cache');
    const js = await app.inject({ url: '/assets/index-abc.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toContain('javascript');
    expect(js.headers['cache-control']).toContain('immutable');
    expect((await app.inject({ url: '/favicon.svg' })).headers['content-type']).toContain('image/svg+xml');
    expect((await app.inject({ url: '/assets/../index.html' })).statusCode).not.toBe(500);
    await app.close();
  });

  it('the real build has no inline script, so a strict script-src CSP allows it', () => {
    const html = fs.readFileSync(path.join(UI_DIST, 'index.html'), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/src="\/assets\//);
      expect(body.trim()).toBe('');
    }
    expect(html).not.toMatch(/\son[a-z]+=/i);
  });

  it('the real build is React\'s production build, also when the test setup made it (NODE_ENV=test)', () => {
    const js = fs.readdirSync(path.join(UI_DIST, 'assets')).filter((f) => f.endsWith('.js'));
    expect(js.length).toBeGreaterThan(0);
    for (const f of js) {
      const code = fs.readFileSync(path.join(UI_DIST, 'assets', f), 'utf8');
      expect(code).not.toContain('is deprecated in plain JavaScript React classes');
      expect(code).not.toContain('jsxDEV');
    }
  });
});

describe('GET /meta and the agent card on a platform', () => {
  let platform: Platform;
  const token = 'meta-admin-token-0123456789';
  beforeAll(async () => {
    platform = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: tempDir('meta'), CONTAINER_BACKEND: 'process', MOLECULE_ADMIN_TOKEN: token },
      logger: pino({ level: 'warn' }),
    });
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('tells clients the runtimes, tiers, regions and actions the platform accepts', async () => {
    const r = await api(platform.url, token).call('GET', '/meta');
    expect(r.status).toBe(200);
    expect(r.body.backend).toEqual({ name: 'process', default_region: 'local', regions: null });
    expect(r.body.runtimes).toEqual(['hermes']);
    expect(r.body.default_runtime).toBe('hermes');
    expect(r.body.default_tier).toBe(2);
    expect(r.body.tiers).toEqual(Object.entries(TIERS).map(([t, v]) => ({ tier: Number(t), memory_mb: v.memoryMb, cpus: v.cpus })));
    expect(r.body.actions).toEqual(JSON.parse(JSON.stringify(ACTIONS)));
    const openapi = (await api(platform.url, token).call('GET', '/openapi.json')).body;
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/meta', '/workspaces/{id}/agent-card']));
  });

  it('needs the admin token for /meta, but not for the UI page itself', async () => {
    expect((await api(platform.url).call('GET', '/meta')).status).toBe(401);
    const page = await fetch(`${platform.url}/`);
    expect([200, 503]).toContain(page.status);
    expect(page.status).not.toBe(401);
  });

  it('answers agent-card 404 for an unknown workspace and 400 for a malformed id', async () => {
    const h = api(platform.url, token);
    const unknown = await h.call('GET', '/workspaces/00000000-0000-4000-8000-000000000000/agent-card');
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('workspace_not_found');
    expect((await h.call('GET', '/workspaces/nope/agent-card')).status).toBe(400);
  });

  it('names what is wrong with a reserved secret or env key instead of "Invalid key in record"', async () => {
    const r = await api(platform.url, token).call('POST', '/workspaces', { name: 'x', secrets: { MOLECULE_X: 'v' } });
    expect(r.status).toBe(400);
    expect(r.body.issues).toEqual([expect.stringMatching(/^body\.secrets\.MOLECULE_X: is reserved for the platform/)]);
  });
});
