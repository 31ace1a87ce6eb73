/**
 * Many replicas on one Postgres (issue 9): what a second replica buys and what the cluster costs.
 *
 * - A2A `message/send` throughput and latency to one Fly workspace (the simulator's real agent): straight to the
 *   agent (baseline), through the simulator's Fly-proxy stand-in (the path every replica takes to the agent), one
 *   replica directly, the TCP balancer (test/support/balancer.ts) in front of 1 and of 2 replicas, and nginx in
 *   front of 1 and 2 replicas when nginx is installed. Concurrency 16 for throughput, 1 for latency; targets are
 *   interleaved over rounds; medians of rounds.
 * - Event fan-out: a change made through A (PATCH), seen by an SSE client on A and one on B: p50/p99 of each and
 *   of the cross-replica extra (B − A).
 * - Leader takeover after `kill -9` of the lease holder: until every survivor names a new leader.
 *
 *   npx tsx bench/replicas.ts [--requests 2000] [--rounds 3] [--latency-requests 300] [--events 200]
 *                             [--takeovers 3] [--lease-ttl 3] [--max-minutes 15]
 *
 * Everything runs on this machine: the load generator here; the simulator, each balancer, nginx and each replica
 * as its own process (Postgres too), all killed by pid at the end (or after --max-minutes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { freePort } from '../src/util/net.js';
import { pidAlive, ROOT, waitFor } from '../test/support/harness.js';
import { openSse, ReplicaCluster, type SseClient } from '../test/support/replicas.js';
import { load, median, quantile, startNginx, summarize, type Load, type Nginx, type Target } from './support.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    'latency-requests': { type: 'string', default: '300' },
    events: { type: 'string', default: '200' },
    takeovers: { type: 'string', default: '3' },
    'lease-ttl': { type: 'string', default: '3' },
    'max-minutes': { type: 'string', default: '15' },
  },
});
const N = Number(values.requests);
const ROUNDS = Number(values.rounds);
const C = Number(values.concurrency);
const N1 = Number(values['latency-requests']);
const EVENTS = Number(values.events);
const TAKEOVERS = Number(values.takeovers);
const LEASE_TTL_S = Number(values['lease-ttl']);

// ---- processes this run starts (each killed by pid in cleanup) ----------------------------------------------------

const children = new Set<ChildProcess>();
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
async function killChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  process.kill(child.pid!, 'SIGTERM');
  const t = setTimeout(() => child.exitCode === null && child.signalCode === null && process.kill(child.pid!, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

async function waitHttp(url: string, what: string): Promise<void> {
  await waitFor(what, async () => {
    await fetch(url, { signal: AbortSignal.timeout(1000) });
    return true;
  }, 60_000, 50);
}

/** The Fly Machines simulator as its own process (its proxy stand-in carries every A2A call to the agent). */
async function startSimProcess() {
  const port = await freePort();
  const proxyPort = await freePort();
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tools/fly-sim/main.ts'), '--port', String(port), '--proxy-port', String(proxyPort), '--quiet'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/v1/platform/regions`, 'fly-sim');
  return { child, url, token: 'sim-token', env: { FLY_FLAPS_BASE_URL: url, FLY_API_TOKEN: 'sim-token', FLY_PROXY_URL: `http://127.0.0.1:${proxyPort}` } };
}

/** test/support/balancer.ts as its own process, so its piping does not share the load generator's event loop. */
async function startBalancerProcess(backends: string[]): Promise<{ origin: string; child: ChildProcess }> {
  const child = track(spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/support/balancer.ts'), '0', ...backends], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }));
  const [line] = (await once(child.stdout!.setEncoding('utf8'), 'data')) as [string];
  const port = Number(/listening (\d+)/.exec(line)?.[1]);
  if (!port) throw new Error(`balancer said: ${line}`);
  return { origin: `http://127.0.0.1:${port}`, child };
}

// ---- the run -------------------------------------------------------------------------------------------------------

const deadline = setTimeout(() => {
  process.stderr.write(`bench/replicas: still running after ${values['max-minutes']} minutes; stopping\n`);
  void cleanup().finally(() => process.exit(1));
}, Number(values['max-minutes']) * 60_000);

let cluster: ReplicaCluster | null = null;
let sim: Awaited<ReturnType<typeof startSimProcess>> | null = null;
const nginxes: Nginx[] = [];
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    const machinePids: number[] = [];
    if (sim) {
      try {
        const ms = (await (await fetch(`${sim.url}/__sim/machines`, { headers: { authorization: `Bearer ${sim.token}` }, signal: AbortSignal.timeout(2000) })).json()) as Array<{ pid: number | null }>;
        machinePids.push(...ms.map((m) => m.pid).filter((p): p is number => !!p));
      } catch {
        /* the simulator is gone already */
      }
    }
    await Promise.all([...children].filter((c) => c !== sim?.child).map((c) => killChild(c)));
    await cluster?.stopAll().catch((e) => process.stderr.write(`${e}\n`));
    if (sim) await killChild(sim.child, 10_000); // SIGTERM: the simulator kills its machines' processes
    for (const pid of machinePids) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    for (const n of nginxes) await n.stop().catch(() => undefined);
    clearTimeout(deadline);
  })();
  return cleaning;
}
process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));

const lines: string[] = [];
const say = (s = '') => {
  lines.push(s);
  console.log(s);
};

try {
  sim = await startSimProcess();
  cluster = await ReplicaCluster.start(0, {
    name: 'bench-replicas',
    flyEnv: sim.env,
    leaseTtlS: LEASE_TTL_S,
    reportUnexpectedExits: true,
    env: { LOG_LEVEL: 'warn', MOLECULE_RATE_LIMIT_PER_MIN: '0', MOLECULE_AGENT_RATE_LIMIT_PER_MIN: '0' },
  });
  if (!cluster) throw new Error('no Postgres server here: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
  const c = cluster;
  const [A, B] = [await c.start(0), await c.start(1)];
  await c.agreedLeader();

  const created = await A.api.call('POST', '/workspaces', { name: 'bench', tier: 4 });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${created.text}`);
  const id = created.body.id as string;
  const ws = await waitFor('the workspace ready', async () => {
    const w = (await A.api.call('GET', `/workspaces/${id}`)).body;
    if (w.status === 'failed') throw new Error(`workspace failed: ${w.status_reason}`);
    return w.status === 'ready' && w;
  }, 120_000, 100);
  const machines = (await (await fetch(`${sim.url}/__sim/machines`, { headers: { authorization: `Bearer ${sim.token}` } })).json()) as Array<{ id: string; pid: number; hostPort: number }>;
  const m = machines.find((x) => x.id === ws.instance.id)!;
  // The agent's own token (an app secret injected at boot): only the baselines need it, to bypass the platform.
  const agentToken = fs.readFileSync(`/proc/${m.pid}/environ`, 'utf8').split('\0').find((e) => e.startsWith('MOLECULE_AGENT_TOKEN='))!.slice('MOLECULE_AGENT_TOKEN='.length);
  const auth = { authorization: `Bearer ${agentToken}` };

  const bal1 = await startBalancerProcess([A.url]);
  const bal2 = await startBalancerProcess([A.url, B.url]);
  const nginx1 = await startNginx([A.url]);
  if (nginx1) nginxes.push(nginx1);
  const nginx2 = nginx1 && (await startNginx([A.url, B.url]));
  if (nginx2) nginxes.push(nginx2);
  const a2a = `/workspaces/${id}/a2a`;
  const targets: Target[] = [
    { name: 'direct to agent (baseline)', origin: `http://127.0.0.1:${m.hostPort}`, path: '/', headers: auth },
    { name: 'Fly proxy stand-in → agent', origin: sim.env.FLY_PROXY_URL, path: '/', headers: { ...auth, 'fly-force-instance-id': m.id } },
    { name: '1 replica, no balancer', origin: A.url, path: a2a, headers: {} },
    { name: 'balancer → 1 replica', origin: bal1.origin, path: a2a, headers: {} },
    { name: 'balancer → 2 replicas', origin: bal2.origin, path: a2a, headers: {} },
    ...(nginx1 ? [{ name: 'nginx → 1 replica', origin: nginx1.origin, path: a2a, headers: {} }] : []),
    ...(nginx2 ? [{ name: 'nginx → 2 replicas', origin: nginx2.origin, path: a2a, headers: {} }] : []),
  ];

  // Throughput (concurrency C) and latency (concurrency 1), interleaved over rounds.
  const thr = new Map<string, Load[]>();
  const lat = new Map<string, Load[]>();
  for (const t of targets) await load(t, Math.min(300, N), C); // warm up JITs and pools
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) thr.set(t.name, [...(thr.get(t.name) ?? []), await load(t, N, C)]);
    for (const t of targets) lat.set(t.name, [...(lat.get(t.name) ?? []), await load(t, N1, 1)]);
  }
  const sum = summarize;
  const base = sum(thr.get(targets[0].name)!);
  const baseLat = sum(lat.get(targets[0].name)!);
  const one = sum(thr.get('balancer → 1 replica')!);
  say(`A2A message/send to one Fly workspace (simulator, real agent), ${N} requests × ${ROUNDS} rounds at concurrency ${C}, ${N1} × ${ROUNDS} at concurrency 1; node ${process.version}, ${os.cpus().length} CPUs (medians of rounds)`);
  say('| path | req/s (c=16) | p50 ms | p99 ms | vs direct | vs balancer → 1 replica | p50 ms (c=1) | p99 ms (c=1) | p50 vs direct (c=1) | errors |');
  say('|---|---|---|---|---|---|---|---|---|---|');
  for (const t of targets) {
    const s = sum(thr.get(t.name)!);
    const l = sum(lat.get(t.name)!);
    say(
      `| ${t.name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${(s.rps / base.rps).toFixed(2)}× | ${(s.rps / one.rps).toFixed(2)}× | ${l.p50.toFixed(2)} | ${l.p99.toFixed(2)} | ${(l.p50 / baseLat.p50).toFixed(2)}× | ${s.errors + l.errors} |`,
    );
  }
  if (!nginx1) say('(nginx not installed: apt-get install nginx-light to add the nginx rows)');
  say('');

  // Event fan-out: PATCH through A; the same event on an SSE client on A and on one on B.
  const sseA = await openSse(`${A.url}/events?workspace_id=${id}`);
  const sseB = await openSse(`${B.url}/events?workspace_id=${id}`);
  const onA: number[] = [];
  const onB: number[] = [];
  const cross: number[] = [];
  let missed = 0;
  // One PATCH in flight at a time and the buffers emptied after each: the update event seen is this PATCH's.
  const seen = (s: SseClient, _tag: string) => s.events.find((e) => e.data?.type === 'workspace.updated');
  for (let k = 0; k < EVENTS; k++) {
    const tag = `fanout-${k}-${Date.now()}`;
    const t0 = performance.now();
    const res = await A.api.call('PATCH', `/workspaces/${id}`, { role: tag });
    if (res.status !== 200) throw new Error(`PATCH: ${res.status} ${res.text}`);
    try {
      const ea = await waitFor('on A', async () => seen(sseA, tag), 5000, 1);
      onA.push(ea.receivedAt - t0);
      const eb = await waitFor('on B', async () => seen(sseB, tag), 5000, 1);
      onB.push(eb.receivedAt - t0);
      cross.push(eb.receivedAt - ea.receivedAt);
    } catch {
      missed++;
      if (missed >= 3 && !onB.length) {
        say(`(events made through A never reached B's SSE client after ${k + 1} tries: no cross-replica fan-out; stopped measuring it)`);
        break;
      }
    }
    // Keep the clients' buffers small.
    sseA.events.length = 0;
    sseB.events.length = 0;
  }
  sseA.close();
  sseB.close();
  const row = (name: string, xs: number[], ref?: number[]) =>
    say(`| ${name} | ${xs.length ? quantile(xs, 0.5).toFixed(2) : '–'} | ${xs.length ? quantile(xs, 0.99).toFixed(2) : '–'} | ${ref && xs.length ? `${(quantile(xs, 0.5) / quantile(ref, 0.5)).toFixed(2)}×` : ''} |`);
  say(`Event fan-out: ${EVENTS} PATCHes through A, one at a time; the event on an SSE client on A and on B (${missed} not seen on both within 5 s)`);
  say('| measurement | p50 ms | p99 ms | p50 vs same replica |');
  say('|---|---|---|---|');
  row('PATCH sent → SSE on A (same replica, baseline)', onA);
  row('PATCH sent → SSE on B (other replica)', onB, onA);
  row('cross-replica extra (B − A)', cross);
  say('');

  // Leader takeover after kill -9, with a third replica so two survive.
  await c.start(2);
  const takeovers: number[] = [];
  for (let k = 0; k < TAKEOVERS; k++) {
    const old = await c.agreedLeader(60_000);
    const t0 = performance.now();
    await c.kill9(old.index);
    await c.agreedLeader(120_000, old.id);
    takeovers.push(performance.now() - t0);
    await c.start(old.index);
    await c.agreedLeader(60_000);
  }
  say(`Leader takeover after kill -9 of the lease holder (MOLECULE_LEASE_TTL_S=${LEASE_TTL_S}, 3 replicas, ${TAKEOVERS} kills)`);
  say('| measurement | min ms | median ms | max ms | median vs TTL |');
  say('|---|---|---|---|---|');
  say(
    `| kill -9 → every survivor names a new leader | ${Math.min(...takeovers).toFixed(0)} | ${median(takeovers).toFixed(0)} | ${Math.max(...takeovers).toFixed(0)} | ${(median(takeovers) / (LEASE_TTL_S * 1000)).toFixed(2)}× |`,
  );

  await A.api.call('DELETE', `/workspaces/${id}`);
  await waitFor('removed', async () => (await c.lb.call('GET', `/workspaces/${id}`)).status === 410, 60_000, 100).catch(() => undefined);
} catch (e) {
  process.stderr.write(`bench/replicas failed: ${(e as Error).stack ?? e}\n`);
  if (cluster) process.stderr.write(`${cluster.tails(40)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
