import crypto from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { flyctl } from '../flyio/support.js';
import { waitFor, waitReady } from '../support/harness.js';
import { HAVE_POSTGRES, openSse, ReplicaCluster, type SseEvent } from '../support/replicas.js';

/**
 * Issue 9: several platform processes on one Postgres act as one cluster. Three real replicas (A, B, C) behind a
 * TCP round-robin balancer (their PLATFORM_URL: agents register and heartbeat through it), the Fly backend
 * against the Machines API simulator (Fly's rate limits on). Steps build on each other, in order.
 */
const A = 0;
const B = 1;
const C = 2;

const ask = (text: string) => ({ jsonrpc: '2.0', id: 'q', method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text }] } } });
const isStatus = (id: string, to: string) => (e: SseEvent) => e.data?.workspace_id === id && e.data?.type === 'workspace.status' && e.data?.data?.to === to;

/** Checks `fn` stays true for `ms` (a second replica acting twice would show up within it); fails on the first false. */
async function steady(what: string, fn: () => Promise<boolean>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!(await fn())) throw new Error(`no longer true: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.runIf(HAVE_POSTGRES)('many replicas on one Postgres (Fly simulator, balancer)', { shuffle: false }, () => {
  let c: ReplicaCluster;
  let walk: string; // the workspace of the first step, kept running for the later ones

  const r = (i: number) => c.replicas[i].api;
  const get = async (i: number, id: string) => (await r(i).call('GET', `/workspaces/${id}`)).body;
  /** The app's machines as the Machines API lists them (a 429 is waited out), per workspace id. */
  const machinesOf = async (id: string) => {
    // The test shares the app's rate limit with three replicas: a 429 is a reason to wait, not a failure.
    const res = await waitFor('the machine list (past any 429)', async () => {
      const got = await flyctl(c.sim!, 'GET', `/v1/apps/${c.app}/machines`);
      return got.status !== 429 && got;
    }, 30_000, 500);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body as any[]).filter((m) => m.config?.metadata?.molecule_workspace_id === id && !/destroy/.test(m.state));
  };

  /** The same from the simulator's memory: free of the rate limiter, for polling. */
  const liveMachines = (id: string) => c.sim!.machines(c.app).filter((m) => m.metadata.molecule_workspace_id === id && !/destroy/.test(m.state));

  beforeAll(async () => {
    const started = await ReplicaCluster.start(3, { name: 'cluster-fly', leaseTtlS: 3 });
    if (!started) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    c = started;
  }, 180_000);

  afterAll(async () => {
    await c?.stopAll();
  }, 60_000);

  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      if (c) process.stderr.write(`\n--- replica logs (${ctx.task.name}) ---\n${c.tails(60)}\n`);
    });
  });

  it('a workspace created through A is read, called and watched through B and C; an SSE client resumes on another replica without a gap', async () => {
    const sseC = await openSse(`${c.replicas[C].url}/events`);
    const wsB = new WebSocket(`${c.replicas[B].url.replace('http', 'ws')}/ws`);
    const onB: any[] = [];
    wsB.on('message', (m) => onB.push(JSON.parse(String(m))));
    await new Promise((resolve, reject) => (wsB.once('open', resolve), wsB.once('error', reject)));
    try {
      const created = await r(A).call('POST', '/workspaces', { name: 'cluster-walk', role: 'multi-replica walkthrough', runtime: 'hermes', tier: 2 });
      expect(created.status, created.text).toBe(201);
      walk = created.body.id;

      // Changes made through A reach C's SSE client and B's WebSocket client.
      await sseC.next('workspace.created on C', (e) => e.data?.workspace_id === walk && e.data?.type === 'workspace.created');
      await sseC.next('provisioning → ready on C', isStatus(walk, 'ready'), 120_000);
      await waitFor('ready on B’s WebSocket', async () => onB.some((e) => e.workspace_id === walk && e.type === 'workspace.status' && e.data?.to === 'ready'), 30_000);
      expect(onB.find((e) => e.workspace_id === walk)?.type).toBe('workspace.created');

      for (const i of [B, C]) {
        const w = await get(i, walk);
        expect(w, c.replicas[i].name).toMatchObject({ id: walk, name: 'cluster-walk', status: 'ready' });
        const a2a = await r(i).call('POST', `/workspaces/${walk}/a2a`, ask('What region are you running in?'));
        expect(a2a.status, `A2A through ${c.replicas[i].name}: ${a2a.text}`).toBe(200);
        expect(a2a.body.result.parts[0].text).toMatch(/\bord\b/);
      }

      // C's client goes away; changes keep coming through A; it resumes on B from the last id it saw.
      const last = sseC.lastId();
      expect(last).toEqual(expect.any(Number));
      sseC.close();
      expect((await r(A).call('PATCH', `/workspaces/${walk}`, { role: 'watched from elsewhere' })).status).toBe(200);
      expect((await r(A).call('POST', `/workspaces/${walk}/restart`)).status).toBe(202);
      const sseB = await openSse(`${c.replicas[B].url}/events`, { lastEventId: last });
      try {
        await sseB.next('ready again (after the restart) on B', (e) => isStatus(walk, 'ready')(e) && (e.id ?? 0) > last!, 120_000);
        // And live, not only replayed: a change through A after the resume.
        expect((await r(A).call('PATCH', `/workspaces/${walk}`, { name: 'cluster-walk-2' })).status).toBe(200);
        const live = await sseB.next('the rename on B', (e) => e.data?.workspace_id === walk && e.data?.type === 'workspace.updated' && e.data.data?.fields?.includes('name'), 30_000);

        const received = [...sseC.events, ...sseB.events].filter((e) => e.data?.workspace_id === walk && e.id! <= live.id!).map((e) => e.id!);
        for (let k = 1; k < received.length; k++) expect(received[k], `ids in order, no repeats: ${received.join(',')}`).toBeGreaterThan(received[k - 1]);
        for (const i of [A, B, C]) {
          const timeline = ((await r(i).call('GET', `/workspaces/${walk}/events`)).body as any[]).map((e) => e.id as number).filter((id) => id <= live.id!);
          expect(received, `SSE on C then B vs the timeline on ${c.replicas[i].name}`).toEqual(timeline);
        }
      } finally {
        sseB.close();
      }
    } finally {
      sseC.close();
      wsB.close();
    }
  }, 240_000);

  it('/healthz on every replica lists all three and names the same leader', async () => {
    const views = await Promise.all([A, B, C].map((i) => c.health(i)));
    const ids = views.map((h) => h.cluster.this);
    expect(new Set(ids).size).toBe(3);
    for (const [k, h] of views.entries()) {
      expect(h.cluster.lease_ttl_s, c.replicas[k].name).toBe(3);
      expect(h.cluster.replicas.map((x) => x.id).sort(), c.replicas[k].name).toEqual([...ids].sort());
      for (const [j, other] of views.entries()) {
        expect(h.cluster.replicas.find((x) => x.id === other.cluster.this)).toMatchObject({ pid: c.replicas[j].proc!.child.pid, backend: 'flyio' });
      }
    }
    const { id: leader } = await c.agreedLeader();
    expect(ids).toContain(leader);
    for (const h of await Promise.all([A, B, C].map((i) => c.health(i)))) expect(h.cluster.leader).toBe(leader);
  }, 60_000);

  it('heartbeat pulses reach the live-view clients of every replica, whichever replica the heartbeat landed on', async () => {
    // The agent heartbeats through the balancer (every second here), so its heartbeats land on all three replicas.
    const clients = await Promise.all([A, B, C].map(async (i) => {
      const pulses: string[] = [];
      const ws = new WebSocket(`${c.replicas[i].url.replace('http', 'ws')}/ws?heartbeats=1&workspace_id=${walk}`);
      ws.on('message', (m) => {
        const p = JSON.parse(String(m));
        if (p.type === 'workspace.heartbeat') pulses.push(p.at);
      });
      await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
      return { ws, pulses };
    }));
    try {
      // The same pulses everywhere: had each replica kept its own, no pulse would be on all three.
      const onAll = () => clients[0].pulses.filter((at) => clients.every((x) => x.pulses.includes(at)));
      await waitFor('four pulses seen on every replica', async () => onAll().length >= 4, 30_000, 50);
      // And nothing twice.
      for (const x of clients) expect(new Set(x.pulses).size).toBe(x.pulses.length);
    } finally {
      for (const x of clients) x.ws.close();
    }
  }, 60_000);

  it('kill -9 of the leader while it provisions: the survivors take over and bring every workspace to ready, one machine each', async () => {
    const old = await c.agreedLeader();
    const created: string[] = [];
    for (let k = 0; k < 4; k++) {
      const res = await c.lb.call('POST', '/workspaces', { name: `takeover-${k}`, tier: 1 });
      expect(res.status, res.text).toBe(201);
      created.push(res.body.id);
    }
    const t0 = performance.now();
    await c.kill9(old.index);
    const next = await c.agreedLeader(90_000, old.id);
    const takeoverMs = performance.now() - t0;
    console.log(`[cluster] leader ${c.replicas[old.index].name} (${old.id}) killed; ${c.replicas[next.index].name} (${next.id}) leads after ${takeoverMs.toFixed(0)} ms (lease TTL 3 s)`);
    expect(next.index).not.toBe(old.index);

    const survivors = [A, B, C].filter((i) => i !== old.index);
    for (const id of created) {
      await waitReady(r(survivors[0]), id, { what: `${id} ready`, timeoutMs: 180_000, everyMs: 250 });
      for (const i of survivors) expect((await get(i, id)).status).toBe('ready');
    }
    // Exactly one live machine per workspace: the one it records (a machine the dead leader had asked for and
    // that no workspace claims is the reconciler's to destroy).
    for (const id of created) {
      const instance = (await get(survivors[0], id)).instance?.id;
      await waitFor(`one machine for ${id}`, async () => liveMachines(id).length === 1, 60_000, 250);
      expect((await machinesOf(id)).map((m) => m.id)).toEqual([instance]);
    }
    const a2a = await c.lb.call('POST', `/workspaces/${created[0]}/a2a`, ask('What region are you running in?'));
    expect(a2a.status, a2a.text).toBe(200);

    // The killed replica comes back and rejoins (later steps use all three again).
    await c.start(old.index);
    await waitFor('three replicas on every /healthz', async () => {
      for (const i of [A, B, C]) {
        const h = await c.health(i);
        if (!h.cluster.replicas.some((x) => x.pid === c.replicas[old.index].proc!.child.pid)) return false;
      }
      return true;
    }, 30_000);
    await c.agreedLeader();
    for (const id of created) await c.lb.call('DELETE', `/workspaces/${id}`);
    for (const id of created) await waitFor(`${id} removed`, async () => (await r(A).call('GET', `/workspaces/${id}`)).status === 410, 90_000, 250);
    for (const id of created) await waitFor(`${id}: no machine left`, async () => liveMachines(id).length === 0, 60_000, 250);
  }, 420_000);

  it('a machine killed from outside is restarted exactly once, not once per replica', async () => {
    await waitReady(r(A), walk, { what: 'walk ready', timeoutMs: 60_000 });
    const before = await get(B, walk);
    const machineId = before.instance.id as string;
    const m = c.sim!.machine(machineId)!;
    const pid = m.pid!;
    const seq = Math.max(0, ...c.sim!.requests().map((q) => q.seq));
    const lastEvent = Math.max(0, ...((await r(C).call('GET', `/workspaces/${walk}/events`)).body as any[]).map((e) => e.id));

    process.kill(pid, 'SIGKILL');
    await waitReady(r(C), walk, {
      what: 'ready again with a new agent',
      until: (w) => {
        const now = c.sim!.machine(machineId);
        return !!now?.pid && now.pid !== pid && w.restart_count > before.restart_count;
      },
      timeoutMs: 120_000,
      everyMs: 250,
    });
    // Long enough for a second replica's liveness check (TTL 3 s, checks every 250 ms) to have acted too.
    await steady('ready with one restart more', async () => {
      const w = await get(A, walk);
      return w.status === 'ready' && w.restart_count === before.restart_count + 1;
    }, 6_000);

    const boots = c.sim!.requests({ machineId }).filter((q) => q.seq > seq && ['start', 'restart'].includes(q.action ?? '') && q.status === 200);
    expect(boots.map((q) => `${q.action} ${q.status}`), JSON.stringify(c.sim!.requests({ machineId }).filter((q) => q.seq > seq).map((q) => `${q.method} ${q.action} ${q.status}`))).toHaveLength(1);
    const evs = ((await r(B).call('GET', `/workspaces/${walk}/events?after=${lastEvent}`)).body as any[]).filter((e) => e.type === 'workspace.status');
    expect(evs.filter((e) => e.data.to === 'offline'), JSON.stringify(evs)).toHaveLength(1);
    expect(evs.filter((e) => /automatic restart/.test(e.data.reason ?? '')), JSON.stringify(evs)).toHaveLength(1);
    expect((await get(A, walk)).instance.id).toBe(machineId);
    expect((await r(C).call('POST', `/workspaces/${walk}/a2a`, ask('What region are you running in?'))).status).toBe(200);
  }, 240_000);

  it('a delete through any replica destroys the machine once; the workspace is 410 on every replica', async () => {
    const machineId = (await get(A, walk)).instance.id as string;
    const seq = Math.max(0, ...c.sim!.requests().map((q) => q.seq));
    const lastEvent = Math.max(0, ...((await r(A).call('GET', `/workspaces/${walk}/events`)).body as any[]).map((e) => e.id));
    const del = await r(C).call('DELETE', `/workspaces/${walk}`);
    expect(del.status, del.text).toBe(202);
    for (const i of [A, B, C]) await waitFor(`410 on ${c.replicas[i].name}`, async () => (await r(i).call('GET', `/workspaces/${walk}`)).status === 410, 90_000, 250);
    await waitFor('machine destroyed', async () => (c.sim!.machine(machineId)?.state ?? 'gone').match(/^(destroyed|gone)$/), 60_000);
    expect((await machinesOf(walk)).length).toBe(0);
    // Let any other replica that would also act on it have its go.
    await steady('no second destroy', async () => c.sim!.requests({ action: 'destroy', machineId }).filter((q) => q.seq > seq && q.status !== 429).length === 1, 4_000);
    const evs = ((await r(B).call('GET', `/workspaces/${walk}/events?after=${lastEvent}`)).body as any[]);
    expect(evs.filter((e) => e.type === 'workspace.status').map((e) => e.data.to)).toEqual(['removing', 'removed']);
    expect(evs.filter((e) => /error|fail/i.test(JSON.stringify(e.data))), JSON.stringify(evs)).toEqual([]);
  }, 180_000);

  it('refuses to join without MOLECULE_SECRETS_KEY, or with another key than the cluster’s', async () => {
    const members = async () => (await Promise.all([A, B, C].map(async (i) => (await c.health(i)).cluster.replicas.map((x) => x.id).sort())));
    const before = await members();
    const none = await c.runRefused({ MOLECULE_SECRETS_KEY: null });
    expect(none.started, 'started without a key').toBe(false);
    expect(none.code, none.stderr).not.toBe(0);
    expect(none.stderr).toMatch(/MOLECULE_SECRETS_KEY/);

    const other = await c.runRefused({ MOLECULE_SECRETS_KEY: crypto.randomBytes(32).toString('base64') });
    expect(other.started, 'started with a different key').toBe(false);
    expect(other.code, other.stderr).not.toBe(0);
    expect(other.stderr).toMatch(/MOLECULE_SECRETS_KEY/);
    expect(other.stderr).toMatch(/(does not|doesn't|not) match|differs|mismatch/i);

    // The refused processes never joined, and the cluster did not notice.
    const known = new Set(before.flat());
    for (const ids of await members()) expect(ids.filter((id) => !known.has(id))).toEqual([]);
    expect(c.unexpectedExits).toEqual([]);
  }, 120_000);
});

describe.runIf(HAVE_POSTGRES)('the process backend stays one replica', () => {
  let c: ReplicaCluster;

  beforeAll(async () => {
    const started = await ReplicaCluster.start(1, { name: 'cluster-process', backend: 'process' });
    if (!started) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    c = started;
  }, 120_000);

  afterAll(async () => {
    await c?.stopAll();
  }, 60_000);

  it('refuses a second process-backend replica on the same database, saying why', async () => {
    const id = (await c.replicas[0].api.call('POST', '/workspaces', { name: 'only-one' })).body.id;
    await waitReady(c.replicas[0].api, id, { timeoutMs: 60_000 });
    const second = await c.runRefused({});
    expect(second.started, `a second process replica started:\n${second.stdout.slice(-2000)}`).toBe(false);
    expect(second.code, second.stderr).not.toBe(0);
    expect(second.stderr).toMatch(/process/i);
    expect(second.stderr).toMatch(/replica|already|another|one platform/i);
    // The first one is untouched.
    expect((await c.replicas[0].api.call('GET', `/workspaces/${id}`)).body.status).toBe('ready');
    expect((await c.health(0)).cluster.replicas).toHaveLength(1);
    expect(c.unexpectedExits).toEqual([]);
  }, 120_000);
});
