import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, waitReady } from '../support/harness.js';
import { HAVE_POSTGRES, ReplicaCluster } from '../support/replicas.js';

/**
 * Issue 14 with several replicas on one Postgres (Fly simulator): the leader alone puts an idle workspace to sleep,
 * and messages reaching every replica at once wake it once.
 */
describe.runIf(HAVE_POSTGRES)('idle sleep with three replicas on one Postgres', { shuffle: false }, () => {
  let c: ReplicaCluster;
  const ask = { jsonrpc: '2.0', id: 'q', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] } } };

  beforeAll(async () => {
    const started = await ReplicaCluster.start(3, { name: 'cluster-idle', leaseTtlS: 3, env: { MOLECULE_ACTIVITY_FLUSH_MS: '200' } });
    if (!started) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    c = started;
  }, 180_000);

  afterAll(async () => {
    await c?.stopAll();
  }, 60_000);

  it('sleeps once, and messages on every replica at once wake it once; all get their answer', async () => {
    const r = (i: number) => c.replicas[i]!.api;
    const created = await r(0).call('POST', '/workspaces', { name: 'idle-cluster', idle_timeout_s: 2 });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    await waitReady(r(1), id, { timeoutMs: 120_000 });
    await waitFor('sleeping', async () => (await r(2).call('GET', `/workspaces/${id}`)).body.status === 'sleeping', 60_000, 250);
    await waitFor('suspended', async () => ((await r(0).call('GET', `/workspaces/${id}/events`)).body as any[]).some((e) => e.data.step === 'instance suspended'), 30_000, 250);
    const answers = await Promise.all([0, 1, 2, 0, 1, 2, 0, 1, 2].map((i) => r(i).call('POST', `/workspaces/${id}/a2a`, ask)));
    for (const a of answers) expect(a.body.result?.parts?.[0]?.text, a.text).toMatch(/region/i);
    const events = (await r(0).call('GET', `/workspaces/${id}/events`)).body as any[];
    const status = events.filter((e) => e.type === 'workspace.status').map((e) => e.data);
    // (It may fall asleep again 2 s after the answers: count up to the first sleep after the wake.)
    const woke = status.findIndex((s) => s.reason === 'woken by A2A');
    const next = status.findIndex((s, i) => i > woke && s.to === 'sleeping');
    const round = next < 0 ? status : status.slice(0, next);
    expect(round.filter((s) => s.to === 'sleeping')).toHaveLength(1);
    expect(round.filter((s) => s.reason === 'woken by A2A')).toHaveLength(1);
    const slept = events.findIndex((e) => e.type === 'workspace.status' && e.data.to === 'sleeping');
    const sleptAgain = events.findIndex((e, i) => i > slept && e.type === 'workspace.status' && e.data.to === 'sleeping');
    expect(events.slice(slept, sleptAgain < 0 ? undefined : sleptAgain).filter((e) => e.data.step === 'instance requested')).toHaveLength(1);
  }, 240_000);
});
