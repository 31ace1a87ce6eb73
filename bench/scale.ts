/**
 * Many workspaces on one platform (issue 13): N workspaces on the Fly simulator's light agents (each an agent inside
 * the simulator process: registers, heartbeats, answers A2A), created through the REST API at concurrency 32, then
 * 60 s of steady state. Reports create throughput, time until all are ready, the platform's CPU (% of one core) and
 * RSS, heartbeats ingested per second, GET /workspaces (a page of 100) and GET /workspaces/:id latency, A2A
 * message/send latency through the proxy, and how long an event takes to reach 10 SSE clients.
 *
 *   npx tsx bench/scale.ts --workspaces 1000 [--store sqlite|postgres] [--steady-s 60] [--heartbeat-s 10]
 *                          [--fly-rate-limits on|off]
 *
 * The platform and the simulator are each their own process (the platform as `npm start` runs it); Postgres, when
 * asked for, is a throwaway server; all are stopped by pid at the end. Fly's published rate limits allow one
 * machine create a second per app, so with them (--fly-rate-limits on) N workspaces need at least N seconds to
 * start; the default runs the simulator and the platform's client without them (MOLECULE_FLY_RATE_LIMITS=off), to
 * measure the platform rather than Fly's pacing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { freePort } from '../src/util/net.js';
import { launchPlatform, ROOT, tempDir, type PlatformProcess } from '../test/support/harness.js';
import { startTestPostgres, type TestPostgres } from '../test/support/postgres.js';
import { openSse } from '../test/support/replicas.js';
import { A2A_BODY, median, quantile } from './support.js';

const { values } = parseArgs({
  options: {
    workspaces: { type: 'string', default: '1000' },
    store: { type: 'string', default: 'sqlite' },
    'steady-s': { type: 'string', default: '60' },
    'heartbeat-s': { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '32' },
    'fly-rate-limits': { type: 'string', default: 'off' },
    'ready-timeout-s': { type: 'string', default: '900' },
  },
});
const N = Number(values.workspaces);
const STORE = values.store;
const STEADY_S = Number(values['steady-s']);
const HEARTBEAT_S = Number(values['heartbeat-s']);
const C = Number(values.concurrency);
const LIMITS = values['fly-rate-limits'] === 'on';
if (!['sqlite', 'postgres'].includes(STORE!)) throw new Error('--store is sqlite or postgres');

const children: ChildProcess[] = [];
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** User + system CPU of a process so far, in ms (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
function rssMb(pid: number): number {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'latin1').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The simulator as its own process, with light agents. */
async function startSim(): Promise<{ url: string; proxyUrl: string; child: ChildProcess }> {
  const port = await freePort();
  const proxyPort = await freePort();
  const args = ['--import', 'tsx', path.join(ROOT, 'tools/fly-sim/main.ts'), '--light', '--quiet', '--port', String(port), '--proxy-port', String(proxyPort)];
  if (!LIMITS) args.push('--no-rate-limits');
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/v1/regions`, { headers: { authorization: 'Bearer sim-token' } })).status < 500) break;
    } catch {
      if (i > 200 || child.exitCode !== null) throw new Error('the simulator did not start');
      await sleep(100);
    }
  }
  return { url, proxyUrl: `http://127.0.0.1:${proxyPort}`, child };
}

/** A metric's value from /metrics text (summed over the series matching `labels`). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function timed(n: number, fn: (i: number) => Promise<void>): Promise<{ p50: number; p99: number }> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    lat.push(ms(t0));
  }
  return { p50: median(lat), p99: quantile(lat, 0.99) };
}

let pg: TestPostgres | null = null;
let platform: PlatformProcess | undefined;
const dataDir = tempDir('bench-scale');
try {
  if (STORE === 'postgres') {
    pg = await startTestPostgres();
    if (!pg) throw new Error('no Postgres server here: apt-get install postgresql');
  }
  const sim = await startSim();
  const app = `scale-${crypto.randomBytes(3).toString('hex')}`;
  platform = await launchPlatform({
    dataDir,
    env: {
      CONTAINER_BACKEND: 'flyio',
      FLY_FLAPS_BASE_URL: sim.url,
      FLY_API_TOKEN: 'sim-token',
      FLY_PROXY_URL: sim.proxyUrl,
      FLY_WORKSPACE_APP: app,
      MOLECULE_FLY_RATE_LIMITS: LIMITS ? 'on' : 'off',
      // launchPlatform starts from the tests' fast timings: back to the defaults, but for the heartbeat asked for.
      HEARTBEAT_INTERVAL_S: String(HEARTBEAT_S),
      MOLECULE_HEARTBEAT_TTL_S: '',
      MOLECULE_LIVENESS_INTERVAL_MS: '',
      MOLECULE_RESTART_BACKOFF_MS: '',
      MOLECULE_RESTART_BACKOFF_MAX_MS: '',
      MOLECULE_RATE_LIMIT_PER_MIN: '0',
      MOLECULE_AGENT_RATE_LIMIT_PER_MIN: '0',
      LOG_LEVEL: 'warn',
      // e.g. --require a-profiler-hook.cjs (node refuses --cpu-prof here)
      ...(process.env.BENCH_PLATFORM_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_PLATFORM_NODE_OPTIONS } : {}),
      ...(pg ? { DATABASE_URL: pg.url, MOLECULE_SECRETS_KEY: crypto.randomBytes(32).toString('base64') } : {}),
    },
  });
  const pid = platform.child.pid!;
  const base = platform.url;
  const pool = new Pool(base, { connections: C });
  const call = async (method: string, p: string, body?: unknown) => {
    const res = await pool.request({ method: method as 'GET', path: p, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : undefined };
  };
  const rss0 = rssMb(pid);

  // Creates through the API, at concurrency C.
  const ids: string[] = [];
  let next = 0;
  let refused = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < N) {
        const i = next++;
        const r = await call('POST', '/workspaces', { name: `scale-${i}`, tier: 1 });
        if (r.status === 201) ids.push(r.body.id);
        else refused++;
      }
    }),
  );
  const createS = ms(t0) / 1000;
  if (refused) console.log(`(${refused} creates refused)`);

  // Until every one is ready or failed (counts from /healthz, once a second); the failed ones are named.
  let counts: Record<string, number> = {};
  const deadline = Date.now() + Number(values['ready-timeout-s']) * 1000;
  for (;;) {
    counts = (await call('GET', '/healthz')).body.workspaces;
    if ((counts.ready ?? 0) + (counts.failed ?? 0) >= ids.length) break;
    if (Date.now() > deadline) throw new Error(`not all ready in time: ${JSON.stringify(counts)}`);
    await sleep(1000);
  }
  if (counts.failed) {
    const failed = (await call('GET', '/workspaces?status=failed&limit=500')).body as { id: string; status_reason: string }[];
    console.log(`(${counts.failed} failed: ${failed.slice(0, 5).map((w) => `${w.id}: ${w.status_reason}`).join('; ')})`);
    const gone = new Set(failed.map((w) => w.id));
    ids.splice(0, ids.length, ...ids.filter((id) => !gone.has(id)));
  }
  const readyS = ms(t0) / 1000;
  const cpuReady = cpuMs(pid);

  // Steady state: CPU, RSS and heartbeats over STEADY_S, with the probes below spread over it.
  const m0 = await (await fetch(`${base}/metrics`)).text();
  const c0 = cpuMs(pid);
  const s0 = process.hrtime.bigint();
  await sleep(Math.max(0, STEADY_S * 1000 - 25_000) / 2);
  const page = await timed(200, async () => {
    const r = await call('GET', '/workspaces?limit=100');
    if (r.status !== 200 || r.body.length !== Math.min(100, ids.length)) throw new Error(`GET /workspaces: ${r.status}`);
  });
  const one = await timed(200, async (i) => {
    const r = await call('GET', `/workspaces/${ids[(i * 7919) % ids.length]}`);
    if (r.status !== 200) throw new Error(`GET /workspaces/:id: ${r.status}`);
  });
  const a2aLat = async (origin: string, p: (id: string) => string, headers: (id: string) => Record<string, string>) => {
    const a2a = new Pool(origin, { connections: 1 });
    try {
      return await timed(200, async (i) => {
        const id = ids[(i * 104729) % ids.length]!;
        const res = await a2a.request({ method: 'POST', path: p(id), headers: { 'content-type': 'application/json', ...headers(id) }, body: A2A_BODY });
        const text = await res.body.text();
        if (res.statusCode !== 200 || !text.includes('"parts"')) throw new Error(`A2A: ${res.statusCode} ${text.slice(0, 200)}`);
      });
    } finally {
      await a2a.close();
    }
  };
  const viaPlatform = await a2aLat(base, (id) => `/workspaces/${id}/a2a`, () => ({}));
  // Fanout: 10 SSE clients; each change is a PATCH; the time until the last client has it.
  const clients = await Promise.all(Array.from({ length: 10 }, () => openSse(`${base}/events`)));
  const fan: number[] = [];
  for (let i = 0; i < 20; i++) {
    const id = ids[i % ids.length]!;
    const seen = clients.map((c) => c.events.length);
    const f0 = performance.now();
    const r = await call('PATCH', `/workspaces/${id}`, { role: `role ${i}` });
    if (r.status !== 200) throw new Error(`PATCH: ${r.status} ${JSON.stringify(r.body)}`);
    const got = await Promise.all(
      clients.map((c, k) => c.next('the change', (e) => c.events.indexOf(e) >= seen[k]! && e.event === 'workspace.updated' && e.data?.workspace_id === id, 30_000)),
    );
    fan.push(Math.max(...got.map((e) => e.receivedAt)) - f0);
  }
  for (const c of clients) c.close();
  const left = STEADY_S * 1000 - ms(s0);
  if (left > 0) await sleep(left);
  const steadyS = ms(s0) / 1000;
  const c1 = cpuMs(pid);
  const m1 = await (await fetch(`${base}/metrics`)).text();
  const hb = (t: string) => metric(t, 'molecule_http_request_duration_seconds_count', { route: '/registry/heartbeat' });
  const rss1 = rssMb(pid);

  const st = STORE === 'postgres' ? 'Postgres' : 'SQLite';
  console.log(`\n${N} workspaces on the Fly simulator's light agents, ${st}, heartbeat every ${HEARTBEAT_S} s, Fly rate limits ${LIMITS ? 'on' : 'off'}, node ${process.version}, ${os.cpus().length} CPUs`);
  console.log('| N | creates/s | all ready (s) | steady CPU % of a core | RSS MB (start → steady) | heartbeats/s | GET page p50/p99 ms | GET one p50/p99 ms | A2A p50 ms | fan-out to 10 SSE p50/p99 ms |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${N} | ${(N / createS).toFixed(0)} | ${readyS.toFixed(1)} | ${((100 * (c1 - c0)) / (steadyS * 1000)).toFixed(1)} | ${rss0.toFixed(0)} → ${rss1.toFixed(0)} | ${((hb(m1) - hb(m0)) / steadyS).toFixed(0)} | ${page.p50.toFixed(2)} / ${page.p99.toFixed(2)} | ${one.p50.toFixed(2)} / ${one.p99.toFixed(2)} | ${viaPlatform.p50.toFixed(2)} | ${median(fan).toFixed(1)} / ${quantile(fan, 0.99).toFixed(1)} |`,
  );
  const mb = (name: string) => (metric(m1, name) / 2 ** 20).toFixed(0);
  console.log(`(platform CPU from start to all ready: ${(cpuReady / 1000).toFixed(1)} s; sim RSS ${rssMb(sim.child.pid!).toFixed(0)} MB)`);
  // Where the RSS is: V8's heap (used of total) and what lives outside it (Buffers, SQLite, native code).
  console.log(`(platform heap ${mb('nodejs_heap_size_used_bytes')} of ${mb('nodejs_heap_size_total_bytes')} MB, external ${mb('nodejs_external_memory_bytes')} MB)`);
  await pool.close();
} finally {
  await platform?.stop().catch(() => undefined);
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      const exited = once(c, 'exit');
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (c.exitCode === null) c.kill('SIGKILL');
    }
  }
  await pg?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
