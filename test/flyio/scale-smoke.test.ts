import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { api, launchPlatform, tempDir, waitFor, type Api, type PlatformProcess } from '../support/harness.js';
import { sample } from '../support/metrics.js';
import { startSim } from './support.js';

const N = 500;
const CONCURRENCY = 32;

/**
 * The CI-sized run of bench/scale.ts (issue 13): 500 workspaces on the simulator's light agents, created through the
 * API at concurrency 32, all ready, every one listed once by the paged list, heartbeating, and counted by the
 * provisioning histogram. Fly's rate limits are off on both sides, as in the benchmark (with them, 500 creates take
 * 500 s). Timing is not asserted: bench/scale.ts measures it.
 */
describe('flyio: 500 workspaces on light agents', { shuffle: false }, () => {
  const dataDir = tempDir('flyio-scale');
  let sim: FlySim;
  let platform: PlatformProcess;
  let http: Api;
  const ids: string[] = [];

  beforeAll(async () => {
    sim = await startSim({ light: true, rateLimits: false });
    platform = await launchPlatform({
      dataDir,
      env: { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: `scale-app-${process.pid}`, ...sim.env, MOLECULE_FLY_RATE_LIMITS: 'off', MOLECULE_RATE_LIMIT_PER_MIN: '0', MOLECULE_AGENT_RATE_LIMIT_PER_MIN: '0' },
    });
    http = api(platform.url);
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it(`creates ${N} through the API at concurrency ${CONCURRENCY}, and all of them become ready`, async () => {
    let next = 0;
    const refused: string[] = [];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) {
          const i = next++;
          const r = await http.call('POST', '/workspaces', { name: `scale-${i}`, tier: 1 });
          if (r.status === 201) ids.push(r.body.id);
          else refused.push(`${r.status} ${JSON.stringify(r.body)}`);
        }
      }),
    );
    expect(refused).toEqual([]);
    const counts = await waitFor(
      `all ${N} ready`,
      async () => {
        const w = (await http.call('GET', '/healthz')).body.workspaces as Record<string, number>;
        return (w.ready ?? 0) + (w.failed ?? 0) >= N ? w : undefined;
      },
      240_000,
      500,
    );
    expect(counts).toEqual({ ready: N });
  }, 300_000);

  /** Every workspace, a page of 100 at a time. */
  const listAll = async () => {
    const seen: { id: string; last_heartbeat_at: string }[] = [];
    let cursor: string | undefined;
    do {
      const r = await http.call('GET', `/workspaces?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body);
      cursor = r.headers.get('x-next-cursor') ?? undefined;
    } while (cursor);
    return seen;
  };

  it('lists every one exactly once, a page of 100 at a time', async () => {
    const seen = (await listAll()).map((w) => w.id);
    expect(seen).toHaveLength(N);
    expect(new Set(seen)).toEqual(new Set(ids));
  });

  it('hears every agent heartbeat, and counts each provisioning once', async () => {
    const started = new Date().toISOString();
    await waitFor('a heartbeat from every workspace after this point', async () => (await listAll()).every((w) => w.last_heartbeat_at > started), 60_000, 1000);
    const metrics = await (await fetch(`${platform.url}/metrics`)).text();
    expect(sample(metrics, 'molecule_workspace_provision_seconds_count', { backend: 'flyio', kind: 'create' })).toBe(N);
    expect(sample(metrics, 'molecule_stalest_heartbeat_age_seconds')).toBeLessThan(30);
  }, 90_000);
});
