import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { agentEnv } from '../support/instance.js';
import { pidAlive, until } from './helpers.js';

const MAIN = fileURLToPath(new URL('../../tools/fly-sim/main.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const running = new Set<ChildProcess>();
afterEach(() => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  running.clear();
});

function runMain(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    env: { ...process.env, FLY_SIM_PORT: '', FLY_SIM_PROXY_PORT: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

describe('npm run fly-sim (tools/fly-sim/main.ts)', () => {
  it('prints the URL and the env a platform needs, serves the API, and stops its machines on SIGTERM', async () => {
    const p = runMain(['--port', '0', '--token', 'cli-token']);
    const base = await until(() => /export FLY_FLAPS_BASE_URL=(http:\/\/\S+)/.exec(p.out())?.[1], 'the printed base URL', 30_000);
    expect(p.out()).toContain('export FLY_API_TOKEN=cli-token');
    expect(p.out()).toMatch(/export FLY_PROXY_URL=http:\/\/127\.0\.0\.1:\d+/);
    const auth = { authorization: 'Bearer cli-token' };
    const list = await fetch(`${base}/v1/apps/my-app/machines`, { headers: auth });
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual([]);
    expect((await (await fetch(`${base}/__sim/settings`, { headers: auth })).json()).rateLimits).toBe(true);
    // request lines are printed for a person watching
    await until(() => p.out().includes('GET /v1/apps/my-app/machines → 200'), 'the request line');

    // A machine boots the real agent (src/agent/main.ts); SIGTERM to the simulator stops it too.
    const c = await fetch(`${base}/v1/apps/my-app/machines`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ config: { image: 'ghcr.io/molecule-ai/workspace-hermes:latest', env: agentEnv({ workspaceId: 'w', agentToken: 't' }) } }),
    });
    const m = await c.json();
    const pid = await until(async () => {
      const ms = await (await fetch(`${base}/__sim/machines`, { headers: auth })).json();
      return ms.find((x: { id: string }) => x.id === m.id)?.pid as number | undefined;
    }, 'the machine process');
    expect(pidAlive(pid)).toBe(true);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.out()).toContain('SIGTERM, stopping');
    expect(pidAlive(pid)).toBe(false);
  });

  it('rejects a bad port with a clear message and exit code 2', async () => {
    const p = runMain(['--port', 'eighty']);
    expect(await p.exited).toBe(2);
    expect(p.err()).toContain('port must be a port number');
  });

  it('reads FLY_SIM_PORT and says when the port is taken', async () => {
    const first = runMain(['--quiet'], { FLY_SIM_PORT: '0', FLY_SIM_PROXY_PORT: '0' });
    const base = await until(() => /export FLY_FLAPS_BASE_URL=(http:\/\/\S+)/.exec(first.out())?.[1], 'the first simulator', 30_000);
    const port = new URL(base).port;
    const second = runMain([], { FLY_SIM_PORT: port, FLY_SIM_PROXY_PORT: '0' });
    expect(await second.exited).toBe(2);
    expect(second.err()).toContain('port in use');
    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);
  });
});
