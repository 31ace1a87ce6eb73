/**
 * Memory per light agent (the Fly simulator's `--light` agents, src/agent/embedded.ts), in two measurements:
 *
 * 1. agents alone: N EmbeddedAgents on one EmbeddedAgentHost, registered with a tiny fake platform and heart-
 *    beating; the heap and RSS they add, divided by N. This is the cost the 20 KB target is about.
 * 2. through the simulator: N machines created through the Machines API of `startFlySim({light: true})`; the same
 *    division, now including what the simulator keeps per machine (record, events, log lines, config versions).
 *
 * Baseline in the same run: the same process after one agent (or machine) was booted and killed, so module loading
 * and JIT warm-up are not counted. Heap after a forced GC (the script re-runs itself with --expose-gc).
 *
 *   npx tsx bench/light-agents.ts [--agents 2000] [--heartbeat-s 10] [--rate 200 (agents booted a second; 0 = all at once)] [--only agents|sim]
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/agent/config.js';
import { EmbeddedAgent, EmbeddedAgentHost } from '../src/agent/embedded.js';
import { createLineLogger } from '../src/agent/logger.js';
import { startFlySim } from '../tools/fly-sim/index.js';

if (typeof globalThis.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const gc = globalThis.gc as () => void;

const { values } = parseArgs({ options: { agents: { type: 'string', default: '2000' }, 'heartbeat-s': { type: 'string', default: '10' }, rate: { type: 'string', default: '200' }, only: { type: 'string' } } });
const RATE = Number(values.rate);
const N = Number(values.agents);
const HEARTBEAT_S = values['heartbeat-s']!;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

interface Sample {
  heap: number;
  heapTotal: number;
  rss: number;
}
async function settle(): Promise<Sample> {
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(50);
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, heapTotal: m.heapTotal, rss: m.rss };
}

/**
 * The platform's two agent-facing endpoints, answering as the platform does and counting what arrives — in its own
 * process, as the platform is, so its sockets and CPU are not counted here. `GET /__counts` reads the counters.
 */
const FAKE_PLATFORM = `
const http = require('node:http');
const registered = new Set(); let heartbeats = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/__counts') { res.end(JSON.stringify({ registered: registered.size, heartbeats })); return; }
  if (req.url === '/__reset') { registered.clear(); heartbeats = 0; res.end('{}'); return; }
  const token = (req.headers.authorization || '').replace(/^Bearer /, '');
  req.resume();
  req.on('end', () => {
    if (req.url === '/registry/register') registered.add(token);
    else if (req.url === '/registry/heartbeat') heartbeats++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ workspace_id: token, status: 'ready', heartbeat_interval_s: Number(process.env.HB) }));
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

interface FakePlatform {
  url: string;
  counts(): Promise<{ registered: number; heartbeats: number }>;
  reset(): Promise<void>;
  close(): void;
}

async function fakePlatform(): Promise<FakePlatform> {
  const child = spawn(process.execPath, ['-e', FAKE_PLATFORM], { env: { ...process.env, HB: HEARTBEAT_S }, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const url = `http://127.0.0.1:${line.toString().trim()}`;
  return {
    url,
    counts: async () => (await (await fetch(`${url}/__counts`)).json()) as { registered: number; heartbeats: number },
    reset: async () => void (await fetch(`${url}/__reset`)).arrayBuffer(),
    close: () => child.kill('SIGKILL'),
  };
}

/**
 * Steady state: every agent registered, then a heartbeat period in which (nearly) every agent's heartbeat arrived —
 * no backlog of requests queued from the registration burst is left to be counted as the agents' memory.
 */
async function steady(platform: FakePlatform): Promise<{ registeredMs: number; beatsPerPeriod: number }> {
  const t0 = Date.now();
  await untilAsync(`${N} registrations`, async () => (await platform.counts()).registered >= N);
  const registeredMs = Date.now() - t0;
  const periodMs = Number(HEARTBEAT_S) * 1000;
  let beatsPerPeriod = 0;
  for (let round = 0; round < 12; round++) {
    const before = (await platform.counts()).heartbeats;
    await sleep(periodMs);
    beatsPerPeriod = (await platform.counts()).heartbeats - before;
    if (round >= 1 && beatsPerPeriod >= 0.97 * N) break;
  }
  return { registeredMs, beatsPerPeriod };
}

async function untilAsync(what: string, fn: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function agentEnv(platformUrl: string, i: number): Record<string, string> {
  return {
    WORKSPACE_ID: randomUUID(),
    WORKSPACE_NAME: `light-${i}`,
    WORKSPACE_ROLE: 'benchmark',
    PLATFORM_URL: platformUrl,
    MOLECULE_WORKSPACE_TOKEN: `wt-${i}-${randomBytes(16).toString('hex')}`,
    MOLECULE_AGENT_TOKEN: `at-${i}-${randomBytes(16).toString('hex')}`,
    HEARTBEAT_INTERVAL_S: HEARTBEAT_S,
    FLY_REGION: 'ord',
    FLY_PRIVATE_IP: `fdaa:0:1:a7b:1::${(i + 1).toString(16)}`,
    PORT: '8000',
    HOME: '/nonexistent',
  };
}

async function agentsAlone(): Promise<number> {
  const platform = await fakePlatform();
  const host = new EmbeddedAgentHost();
  await host.start();
  const make = (i: number) => {
    const agent = new EmbeddedAgent(host, loadConfig(agentEnv(platform.url, i)), { logger: createLineLogger('info', () => {}) });
    agent.start();
    return agent;
  };
  // Warm-up: one agent registers, heartbeats and dies, so loading and JIT are in the baseline.
  const warm = make(-1);
  await untilAsync('the warm-up registration', async () => (await platform.counts()).registered === 1);
  await sleep(Number(HEARTBEAT_S) * 1000 + 200);
  warm.kill();
  await platform.reset();
  const before = await settle();

  // Booted at RATE a second (the platform's create target), in steps of a tenth of a second.
  const agents: EmbeddedAgent[] = [];
  const step = Math.max(1, Math.round(RATE / 10));
  for (let i = 0; i < N; i++) {
    agents.push(make(i));
    if (RATE > 0 && i % step === step - 1) await sleep(100);
  }
  const { registeredMs, beatsPerPeriod } = await steady(platform);
  const after = await settle();

  const perHeap = (after.heap - before.heap) / N;
  const perRss = (after.rss - before.rss) / N;
  console.log(`\n1. ${N} light agents alone (EmbeddedAgent on one EmbeddedAgentHost, heartbeat every ${HEARTBEAT_S} s, booted ${RATE > 0 ? `${RATE}/s` : 'all at once'})`);
  console.log(`   all registered ${registeredMs} ms after the last was made; then ${beatsPerPeriod} heartbeats per ${HEARTBEAT_S} s; ${host.scheduler.size} scheduled`);
  console.log(`   heap used ${kb(before.heap)} → ${kb(after.heap)} (V8 heap reserved ${kb(before.heapTotal)} → ${kb(after.heapTotal)}), rss ${kb(before.rss)} → ${kb(after.rss)}`);
  console.log(`   per light agent: heap ${Math.round(perHeap)} bytes (${kb(perHeap)}), rss ${Math.round(perRss)} bytes (${kb(perRss)})`);

  for (const a of agents) a.kill();
  await host.close();
  platform.close();
  return perHeap;
}

async function throughSimulator(): Promise<number> {
  const platform = await fakePlatform();
  const sim = await startFlySim({ light: true, rateLimits: false, timing: { launchDelayMs: 0 } });
  const APP = 'light-bench';
  const create = async (i: number) => {
    const res = await fetch(`${sim.url}/v1/apps/${APP}/machines`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sim.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        region: 'ord',
        config: {
          image: 'ghcr.io/molecule-ai/workspace-hermes:latest',
          guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
          env: agentEnv(platform.url, i),
          services: [{ protocol: 'tcp', internal_port: 8000, ports: [{ port: 443, handlers: ['tls', 'http'] }] }],
          restart: { policy: 'on-failure', max_retries: 0 },
        },
      }),
    });
    if (res.status !== 200) throw new Error(`create ${i}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  };
  await create(-1);
  await untilAsync('the warm-up registration', async () => (await platform.counts()).registered === 1);
  await sleep(Number(HEARTBEAT_S) * 1000 + 200);
  await platform.reset();
  const before = await settle();

  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < N) await create(next++);
    }),
  );
  const createdMs = Date.now() - t0;
  const { registeredMs, beatsPerPeriod } = await steady(platform);
  const after = await settle();
  const registeredAll = registeredMs + createdMs;

  const perHeap = (after.heap - before.heap) / N;
  const perRss = (after.rss - before.rss) / N;
  console.log(`\n2. ${N} machines through the simulator's API (startFlySim({light: true}); rate limits off)`);
  console.log(`   ${N} creates in ${createdMs} ms (${Math.round(N / (createdMs / 1000))}/s, 32 at a time), all registered after ${registeredAll} ms; then ${beatsPerPeriod} heartbeats per ${HEARTBEAT_S} s`);
  console.log(`   ${sim.engine.lightAgents()} light agents running, ${sim.pids().length} processes`);
  console.log(`   heap used ${kb(before.heap)} → ${kb(after.heap)} (V8 heap reserved ${kb(before.heapTotal)} → ${kb(after.heapTotal)}), rss ${kb(before.rss)} → ${kb(after.rss)}`);
  console.log(`   per machine (light agent + the simulator's machine record): heap ${Math.round(perHeap)} bytes (${kb(perHeap)}), rss ${Math.round(perRss)} bytes (${kb(perRss)})`);

  await sim.close();
  platform.close();
  return perHeap;
}

console.log(`light agents: ${N} agents, Node ${process.version}`);
if (values.only !== 'sim') await agentsAlone();
if (values.only !== 'agents') await throughSimulator();
process.exit(0);
