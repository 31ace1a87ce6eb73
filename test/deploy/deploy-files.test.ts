import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { ROOT } from '../support/harness.js';

/**
 * Issue 15, items 3 and 4: the deployment files' shape. Neither can run here — Fly needs an account, and compose
 * needs the postgres and nginx images from a registry — so they are parsed and checked against what the platform
 * needs: the settings it reads, secrets kept out of the files, the drain fitting in the stop timeout, health checks
 * on /healthz, and the same port everywhere.
 */
const SECRETS = ['MOLECULE_SECRETS_KEY', 'MOLECULE_ADMIN_TOKEN', 'FLY_API_TOKEN', 'DATABASE_URL'];
const seconds = (v: string | number) => (typeof v === 'number' ? v : Number(/^(\d+)s$/.exec(v)?.[1] ?? NaN));

describe('deploy/fly/fly.toml', () => {
  const toml = parseToml(fs.readFileSync(path.join(ROOT, 'deploy/fly/fly.toml'), 'utf8')) as any;

  it('runs the platform image on the Fly backend, reaching agents over the private network', () => {
    expect(toml.app).toMatch(/^[a-z0-9-]+$/);
    expect(toml.build.image).toBe('ghcr.io/molecule-ai/platform:latest');
    expect(toml.env.CONTAINER_BACKEND).toBe('flyio');
    expect(toml.env.FLY_WORKSPACE_APP).toMatch(/^[a-z0-9-]+$/);
    expect(toml.env.FLY_WORKSPACE_APP).not.toBe(toml.app);
    // Agents are machines of the workspace app: they reach the platform at its private (Flycast / 6PN) address.
    const platformUrl = new URL(toml.env.PLATFORM_URL);
    expect(platformUrl.hostname).toMatch(new RegExp(`^${toml.app}\\.(flycast|internal)$`));
    const ports = [toml.http_service.internal_port, ...toml.services.map((s: any) => s.internal_port)];
    expect(new Set(ports)).toEqual(new Set([Number(toml.env.PORT)]));
    expect(toml.services.some((s: any) => s.ports.some((p: any) => String(p.port) === (platformUrl.port || '80')))).toBe(true);
  });

  it('keeps secrets out of the file (fly secrets set) and gives the drain room before Fly kills', () => {
    for (const s of SECRETS) expect(toml.env[s], s).toBeUndefined();
    expect(toml.kill_signal).toBe('SIGTERM');
    expect(toml.kill_timeout).toBeGreaterThan(Number(toml.env.MOLECULE_SHUTDOWN_GRACE_S));
    expect(toml.http_service.checks[0]).toMatchObject({ path: '/healthz', method: 'GET' });
  });

  it('is a configuration the platform accepts once the secrets are set', () => {
    const env = { ...toml.env, MOLECULE_SECRETS_KEY: Buffer.alloc(32, 1).toString('base64'), MOLECULE_ADMIN_TOKEN: 'x'.repeat(64), FLY_API_TOKEN: 'fo1_x', DATABASE_URL: 'postgres://u:p@my-molecule-db.flycast:5432/db', FLY_APP_NAME: toml.app };
    const config = loadConfig(env);
    expect(config).toMatchObject({ backend: 'flyio', port: 8080, host: '::', shutdownGraceMs: 10_000, fly: { app: toml.env.FLY_WORKSPACE_APP, platformAppName: toml.app } });
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = parseYaml(fs.readFileSync(path.join(ROOT, 'deploy/docker-compose.yml'), 'utf8'), { merge: true }) as any;
  const nginx = fs.readFileSync(path.join(ROOT, 'deploy/nginx.conf'), 'utf8');
  const replicas = Object.entries(compose.services).filter(([, s]: [string, any]) => s.image?.includes('molecule-ai/platform')) as [string, any][];

  it('has Postgres, two platform replicas and an nginx balancer in front of both', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['balancer', 'platform-1', 'platform-2', 'postgres']);
    expect(replicas.map(([n]) => n)).toEqual(['platform-1', 'platform-2']);
    for (const [name] of replicas) expect(nginx).toMatch(new RegExp(`server ${name}:8080`));
    expect(compose.services.balancer.volumes).toContain('./nginx.conf:/etc/nginx/conf.d/default.conf:ro');
    expect(nginx).toMatch(/proxy_buffering off/);
    expect(nginx).toMatch(/proxy_next_upstream [^;]*http_503/);
  });

  it('gives every replica the shared database, the key and token from .env, the engine and an init', () => {
    for (const [, s] of replicas) {
      expect(s.init).toBe(true);
      expect(seconds(s.stop_grace_period)).toBeGreaterThan(Number(s.environment.MOLECULE_SHUTDOWN_GRACE_S));
      expect(s.environment.MOLECULE_SECRETS_KEY).toMatch(/^\$\{MOLECULE_SECRETS_KEY:\?/);
      expect(s.environment.MOLECULE_ADMIN_TOKEN).toMatch(/^\$\{MOLECULE_ADMIN_TOKEN:\?/);
      expect(s.environment.DATABASE_URL).toMatch(/^postgres:\/\/molecule:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432\/molecule$/);
      expect(s.environment.CONTAINER_BACKEND).toBe('docker');
      expect(s.environment.MOLECULE_DOCKER_NETWORK).toBe(compose.networks.molecule.name);
      expect(new URL(s.environment.PLATFORM_URL).hostname).toBe('balancer');
      expect(s.volumes.some((v: string) => v.endsWith(':/var/run/docker.sock'))).toBe(true);
      expect(s.networks).toEqual(['molecule']);
    }
    // What a replica would be started with (compose substitutes ${…} from .env): the platform accepts it.
    const dotenv: Record<string, string> = { MOLECULE_SECRETS_KEY: Buffer.alloc(32, 2).toString('base64'), MOLECULE_ADMIN_TOKEN: 'a'.repeat(64), POSTGRES_PASSWORD: 'pw' };
    const substitute = (v: string) =>
      v.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
        if (dotenv[name] !== undefined) return dotenv[name]!;
        if (op === '-') return arg ?? '';
        throw new Error(`compose would stop: ${arg}`);
      });
    const env = Object.fromEntries(Object.entries(replicas[0]![1].environment as Record<string, string>).map(([k, v]) => [k, substitute(String(v))]));
    expect(env.DATABASE_URL).toBe('postgres://molecule:pw@postgres:5432/molecule');
    // Compose ends ${VAR:-default} at the first "}": a default must not contain braces (e.g. an image template).
    for (const v of Object.values(replicas[0]![1].environment as Record<string, string>)) expect(String(v)).not.toMatch(/\$\{[^}]*\{/);
    const config = loadConfig({ ...env, HOST: '0.0.0.0' });
    expect(config).toMatchObject({ backend: 'docker', docker: { network: 'molecule', agentAddress: 'auto' }, platformUrl: 'http://balancer:8080' });
  });
});

/** Debian's docker-compose (1.29; `.ci/run` installs it) reads the file as compose would, without pulling anything. */
const compose = spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' });
describe.skipIf(compose.status !== 0)(`docker-compose config${compose.status === 0 ? '' : ' (skipped: docker-compose is not installed)'}`, () => {
  it('accepts deploy/docker-compose.yml with the .env the README describes, and refuses it without', () => {
    const dotenv = { MOLECULE_SECRETS_KEY: Buffer.alloc(32, 3).toString('base64'), MOLECULE_ADMIN_TOKEN: 'b'.repeat(64), POSTGRES_PASSWORD: 'pw', DOCKER_GID: '999' };
    const run = (env: Record<string, string>) =>
      spawnSync('docker-compose', ['-f', path.join(ROOT, 'deploy/docker-compose.yml'), '--project-directory', path.join(ROOT, 'deploy'), 'config'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      });
    const ok = run(dotenv);
    expect(ok.status, ok.stderr).toBe(0);
    const config = parseYaml(ok.stdout) as any;
    expect(config.services['platform-2'].environment.MOLECULE_SECRETS_KEY).toBe(dotenv.MOLECULE_SECRETS_KEY);
    expect(config.services['platform-1'].init).toBe(true);
    const missing = run({ ...dotenv, MOLECULE_ADMIN_TOKEN: '' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/MOLECULE_ADMIN_TOKEN/);
  });
});
