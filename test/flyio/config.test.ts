import fs from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createProvisioner } from '../../src/backends/index.js';
import { FlyProvisioner } from '../../src/backends/flyio/index.js';
import { guestForTier, guestProblem } from '../../src/backends/flyio/limits.js';
import { loadPlatformId, machineName, mapState } from '../../src/backends/flyio/machines.js';
import { ConfigError, loadConfig } from '../../src/core/config.js';
import { launchPlatform, tempDir } from '../support/harness.js';

/** Configuration, startup errors, addressing and the pieces that need no simulator. */
describe('Fly backend configuration', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = tempDir('flyio-config');
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  const silent = pino({ level: 'silent' });
  const env = (extra: Record<string, string>) => ({ CONTAINER_BACKEND: 'flyio', MOLECULE_DATA_DIR: dir(), ...extra });

  it('a missing FLY_API_TOKEN or FLY_WORKSPACE_APP is a ConfigError naming the variable', async () => {
    const noToken = await createProvisioner(loadConfig(env({ FLY_WORKSPACE_APP: 'a' })), silent).catch((e) => e);
    expect(noToken).toBeInstanceOf(ConfigError);
    expect(noToken.message).toMatch(/^FLY_API_TOKEN is required/);
    const noApp = await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't' })), silent).catch((e) => e);
    expect(noApp).toBeInstanceOf(ConfigError);
    expect(noApp.message).toMatch(/^FLY_WORKSPACE_APP is required/);
    const badRegion = await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't', FLY_WORKSPACE_APP: 'a', FLY_REGION: 'mars' })), silent).catch((e) => e);
    expect(badRegion).toBeInstanceOf(ConfigError);
    expect(badRegion.message).toMatch(/^FLY_REGION: "mars" is not a Fly region/);
  });

  it('npm start stops with that message', async () => {
    const d = dir();
    const e = await launchPlatform({ dataDir: d, env: { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: 'my-molecule-workspaces' } }).catch((x) => x);
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toMatch(/platform exited during startup/);
    expect(e.message).toMatch(/molecule: FLY_API_TOKEN is required for CONTAINER_BACKEND=flyio/);
  }, 60_000);

  it('defaults: region ord, api.machines.dev, proxy https://<app>.fly.dev; a stable platform id in the data dir', async () => {
    const d = dir();
    const cfg = loadConfig({ CONTAINER_BACKEND: 'flyio', FLY_API_TOKEN: 'secret-token', FLY_WORKSPACE_APP: 'my-ws', MOLECULE_DATA_DIR: d, PLATFORM_URL: 'https://molecule.example.com' });
    const p = (await createProvisioner(cfg, silent)) as FlyProvisioner;
    expect(p).toBeInstanceOf(FlyProvisioner);
    expect(p.defaultRegion).toBe('ord');
    const desc = p.describe();
    expect(desc).toMatchObject({ name: 'flyio', app: 'my-ws', region: 'ord', api_base: 'https://api.machines.dev' });
    expect(String(desc.agent_address)).toMatch(/^https:\/\/my-ws\.fly\.dev with header fly-force-instance-id/);
    expect(JSON.stringify(desc)).not.toContain('secret-token');
    expect(p.usesRealFly).toBe(true);
    const again = (await createProvisioner(cfg, silent)) as FlyProvisioner;
    expect(again.platformId).toBe(p.platformId);
    expect(fs.readFileSync(`${d}/flyio-platform-id`, 'utf8').trim()).toBe(p.platformId);
    expect(loadPlatformId(dir())).not.toBe(p.platformId);
  });

  it('warns when PLATFORM_URL is unset against the real Fly API (machines cannot reach 127.0.0.1)', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't', FLY_WORKSPACE_APP: 'a' })), logger);
    expect(lines.join('')).toMatch(/PLATFORM_URL is not set: Fly machines would be told to reach the platform at 127\.0\.0\.1/);
    lines.length = 0;
    await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't', FLY_WORKSPACE_APP: 'a', PLATFORM_URL: 'https://p.example.com' })), logger);
    await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't', FLY_WORKSPACE_APP: 'a', FLY_FLAPS_BASE_URL: 'http://127.0.0.1:4280' })), logger);
    expect(lines.join('')).not.toMatch(/PLATFORM_URL is not set/);
  });

  it('a platform running on Fly (FLY_APP_NAME) reaches machines at <id>.vm.<app>.internal:8000', async () => {
    const p = (await createProvisioner(loadConfig(env({ FLY_API_TOKEN: 't', FLY_WORKSPACE_APP: 'ws-app', FLY_APP_NAME: 'molecule-platform' })), silent)) as FlyProvisioner;
    const h = (p as unknown as { handleFor(m: object): { url: string; headers?: object } }).handleFor({ id: '1857156b526dd8', name: 'n', state: 'started', region: 'ord', instance_id: 'v' });
    expect(h.url).toBe('http://1857156b526dd8.vm.ws-app.internal:8000');
    expect(h.headers).toBeUndefined();
  });

  it('logs on the real Fly API (no log route) say how to get them with flyctl', async () => {
    const srv = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/v1/apps/ws-app/machines/1857156b526dd8/logs')) {
        res.statusCode = 404;
        return res.end(JSON.stringify({ error: 'not found' }));
      }
      if (req.url === '/v1/apps/ws-app/machines/1857156b526dd8') {
        return res.end(JSON.stringify({ id: '1857156b526dd8', name: 'ws-x', state: 'started', region: 'ord', instance_id: 'v' }));
      }
      res.statusCode = 404;
      res.end(JSON.stringify({ error: 'machine not found' }));
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    try {
      const p = new FlyProvisioner({ token: 't', app: 'ws-app', apiBase: base, platformId: 'mp-x', logger: silent });
      const lines: string[] = [];
      for await (const l of p.logs('1857156b526dd8', { tail: 10 })) lines.push(l);
      expect(lines).toEqual(['[molecule] the Fly Machines API does not serve machine output; run: flyctl logs --app ws-app --machine 1857156b526dd8']);
      const gone: string[] = [];
      for await (const l of p.logs('00000000000000', {})) gone.push(l);
      expect(gone).toEqual(['[molecule] machine 00000000000000 no longer exists in Fly app ws-app']);
    } finally {
      srv.close();
    }
  });

  it('names, states and guests', () => {
    expect(machineName('3F2A1B4C-5D6E-4F70-8192-A3B4C5D6E7F8')).toBe('ws-3f2a1b4c5d6e');
    expect(['started', 'created', 'starting', 'restarting', 'replacing', 'updating', 'stopped', 'stopping', 'suspended', 'failed', 'destroyed', 'destroying', 'weird'].map(mapState)).toEqual([
      'running',
      'starting',
      'starting',
      'starting',
      'starting',
      'starting',
      'stopped',
      'stopped',
      'stopped',
      'failed',
      'gone',
      'gone',
      'unknown',
    ]);
    for (const t of [1, 2, 3, 4] as const) expect(guestProblem(guestForTier(t))).toBeNull();
    expect(guestProblem({ cpu_kind: 'shared', cpus: 4, memory_mb: 512 })).toMatch(/at least 1024 MB/);
    expect(guestProblem({ cpu_kind: 'shared', cpus: 1, memory_mb: 4096 })).toMatch(/at most 2048 MB/);
    expect(guestProblem({ cpu_kind: 'shared', cpus: 3, memory_mb: 768 })).toMatch(/not 3/);
    expect(guestProblem({ cpu_kind: 'shared', cpus: 1, memory_mb: 300 })).toMatch(/256 MB steps/);
  });
});
