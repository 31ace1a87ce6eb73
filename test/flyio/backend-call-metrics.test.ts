import fs from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { api, tempDir, waitReady } from '../support/harness.js';
import { sample } from '../support/metrics.js';
import { startSim } from './support.js';

/** The Fly backend's Machines API calls on /metrics, by action, against the simulator (light agents). */
describe('flyio: backend call metrics', () => {
  const dataDir = tempDir('flyio-call-metrics');
  let sim: FlySim | undefined;
  let p: Platform | undefined;

  afterAll(async () => {
    await p?.close();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('times each Machines API request by action and outcome, and the provisioning by backend', async () => {
    sim = await startSim({ light: true });
    p = await startPlatform({
      env: { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: `metrics-app-${process.pid}`, ...sim.env, PORT: '0', MOLECULE_DATA_DIR: dataDir, MOLECULE_RECONCILE_INTERVAL_S: '2' },
      logger: pino({ level: 'silent' }),
    });
    const http = api(p.url);
    const id = (await http.call('POST', '/workspaces', { name: 'counted' })).body.id as string;
    await waitReady(http, id, { timeoutMs: 30_000 });
    const text = (await http.call('GET', '/metrics')).text;
    for (const action of ['create', 'wait']) {
      expect(sample(text, 'molecule_backend_call_seconds_count', { backend: 'flyio', action, outcome: 'ok' }), action).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'molecule_backend_call_seconds_sum', { backend: 'flyio', action, outcome: 'ok' }), action).toBeGreaterThan(0);
    }
    expect(sample(text, 'molecule_workspace_provision_seconds_count', { backend: 'flyio', kind: 'create' })).toBe(1);
  }, 60_000);
});
