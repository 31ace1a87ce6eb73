import fs from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { a2aCall, a2aRequest } from '../support/a2a-client.js';
import { api, FAST_ENV, killRecordedAgents, tempDir, waitFor, waitReady, type Api } from '../support/harness.js';
import { sample } from '../support/metrics.js';

/**
 * The metrics for running at scale (README "Metrics"), on the process backend: provisioning time, a restart by
 * reason after the agent is killed, A2A proxy latency and in-flight, and the stalest heartbeat.
 */
describe('metrics at scale, on the process backend', { shuffle: false }, () => {
  const dataDir = tempDir('scale-metrics');
  let p: Platform;
  let http: Api;
  const scrape = async () => (await http.call('GET', '/metrics')).text;

  afterAll(async () => {
    await p?.close();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('counts a provisioning, an A2A call, a restart after a kill, and shows the stalest heartbeat', async () => {
    p = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' }, logger: pino({ level: 'silent' }) });
    http = api(p.url);
    let text = await scrape();
    expect(sample(text, 'molecule_stalest_heartbeat_age_seconds')).toBe(0); // none ready yet
    expect(sample(text, 'molecule_a2a_in_flight')).toBe(0);
    expect(sample(text, 'molecule_workspace_restarts_total', { reason: 'instance_exited' })).toBe(0);

    const id = (await http.call('POST', '/workspaces', { name: 'measured' })).body.id as string;
    const ready = await waitReady(http, id);
    text = await scrape();
    expect(sample(text, 'molecule_workspace_provision_seconds_count', { backend: 'process', kind: 'create' })).toBe(1);
    const took = sample(text, 'molecule_workspace_provision_seconds_sum', { backend: 'process', kind: 'create' })!;
    expect(took).toBeGreaterThan(0);
    expect(took).toBeLessThan((Date.parse(ready.ready_at) - Date.parse(ready.created_at)) / 1000 + 1);
    const age = sample(text, 'molecule_stalest_heartbeat_age_seconds')!;
    expect(age).toBeGreaterThan(0);
    expect(age).toBeLessThan(10);

    const sent = await a2aCall(`${p.url}/workspaces/${id}/a2a`, a2aRequest('message/send', 'What region are you running in?'));
    expect(sent.status).toBe(200);
    text = await scrape();
    expect(sample(text, 'molecule_a2a_proxy_seconds_count', { mode: 'unary', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'molecule_a2a_in_flight')).toBe(0);

    process.kill(ready.instance.pid, 'SIGKILL');
    await waitReady(http, id, { until: (w) => w.instance?.pid !== ready.instance.pid, timeoutMs: 30_000 });
    text = await waitFor('the restart counted', async () => {
      const t = await scrape();
      return sample(t, 'molecule_workspace_provision_seconds_count', { backend: 'process', kind: 'restart' }) === 1 && t;
    });
    expect(sample(text, 'molecule_workspace_restarts_total', { reason: 'instance_exited' })).toBe(1);
    // A restart is not a second creation.
    expect(sample(text, 'molecule_workspace_provision_seconds_count', { backend: 'process', kind: 'create' })).toBe(1);
    expect(sample(text, 'molecule_workspace_failures_total', { reason: 'crash_loop' })).toBe(0);
  }, 60_000);
});
