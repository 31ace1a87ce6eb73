/**
 * A2A proxy overhead (issue 12): the same `message/send` sent straight to an agent (baseline), through nginx as a
 * plain reverse proxy, and through the platform's `POST /workspaces/:id/a2a` — with the admin token, and with a
 * workspace token calling a sibling (the A2A access rules). All in one run, against one agent, interleaved over
 * rounds; medians of rounds. Also: the first SSE event of `message/stream`, direct and through the platform, and
 * the CPU time the platform and the agent spend per request (from /proc/<pid>/stat).
 *
 *   npx tsx bench/a2a-proxy.ts [--requests 2000] [--rounds 3] [--profile DIR]
 *
 * The platform runs as its own process, as `npm start` runs it (`node dist/main.js`: run `npm run build` first;
 * MOLECULE_TEST_PLATFORM=tsx runs the sources), with MOLECULE_ADMIN_TOKEN set and rate limits off.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { freePort } from '../src/util/net.js';
import { killRecordedAgents, platformCommand } from '../test/support/harness.js';
import { A2A_BODY, load, median, startNginx, summarize, type Load, type Target } from './support.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    /** Write a V8 CPU profile of the platform process into this directory (node --cpu-prof). */
    profile: { type: 'string' },
  },
});
const N = Number(values.requests);
const ROUNDS = Number(values.rounds);
const ADMIN = 'bench-admin-token-0123456789abcdef';

/** The platform as its own process (as `npm start` runs it), so it does not share this client's event loop. */
async function startPlatformProcess(dataDir: string) {
  const port = await freePort();
  const prof = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const child = spawn(process.execPath, [...prof, ...platformCommand()], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(port),
      MOLECULE_DATA_DIR: dataDir,
      CONTAINER_BACKEND: 'process',
      LOG_LEVEL: 'warn',
      MOLECULE_RATE_LIMIT_PER_MIN: '0',
      MOLECULE_AGENT_RATE_LIMIT_PER_MIN: '0',
      MOLECULE_ADMIN_TOKEN: ADMIN,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      if (i > 300) throw new Error('platform did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    child,
    async close() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** The agent's tokens, read from its environment: the baselines need the agent token, the sibling its workspace token. */
function envOf(pid: number, name: string): string {
  const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith(`${name}=`))!.slice(name.length + 1);
}

/** User + system CPU time of a process so far, in µs (Linux /proc; clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/** A load with the CPU time each watched process spent on it, per request. */
async function measured(t: Target, n: number, c: number, pids: Record<string, number>) {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
  const result = await load(t, n, c);
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuMicros(pid) - before[k]!) / n]));
  return { ...result, cpu };
}

/** Time to the first SSE event of a message/stream, `n` times one after another; p50 in ms. */
async function firstEvent(t: Target, n: number): Promise<number> {
  const pool = new Pool(t.origin, { connections: 1 });
  const body = A2A_BODY.replace('"message/send"', '"message/stream"');
  const lat: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      const res = await pool.request({ method: 'POST', path: t.path, headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...t.headers }, body });
      let first = true;
      for await (const chunk of res.body) {
        if (first && String(chunk).includes('data:')) {
          lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
          first = false;
        }
      }
      if (first) throw new Error(`${t.name}: a stream without events (HTTP ${res.statusCode})`);
    }
  } finally {
    await pool.close();
  }
  return median(lat);
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-a2a-'));
const platform = await startPlatformProcess(dataDir);
let nginx: Awaited<ReturnType<typeof startNginx>> = null;
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
try {
  const createReady = async (name: string) => {
    const created = await (await fetch(`${platform.url}/workspaces`, { method: 'POST', headers: admin, body: JSON.stringify({ name, tier: 4 }) })).json();
    for (;;) {
      const ws = await (await fetch(`${platform.url}/workspaces/${created.id}`, { headers: admin })).json();
      if (ws.status === 'ready') return ws;
      if (ws.status === 'failed') throw new Error(`workspace failed: ${ws.status_reason}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // Two top-level workspaces are siblings: the caller's token may reach the target.
  const [ws, caller] = [await createReady('bench'), await createReady('bench-caller')];
  const agentUrl = new URL(ws.instance.url);
  nginx = await startNginx([agentUrl.origin]);
  const auth = { authorization: `Bearer ${envOf(ws.instance.pid, 'MOLECULE_AGENT_TOKEN')}` };
  const a2aPath = `/workspaces/${ws.id}/a2a`;
  const targets: Target[] = [
    { name: 'direct to agent (baseline)', origin: agentUrl.origin, path: '/', headers: auth },
    ...(nginx ? [{ name: 'nginx reverse proxy', origin: nginx.origin, path: '/', headers: auth }] : []),
    { name: 'platform, admin token', origin: platform.url, path: a2aPath, headers: { authorization: `Bearer ${ADMIN}` } },
    { name: 'platform, sibling’s workspace token', origin: platform.url, path: a2aPath, headers: { authorization: `Bearer ${envOf(caller.instance.pid, 'MOLECULE_WORKSPACE_TOKEN')}` } },
  ];
  const pids = { platform: platform.child.pid!, agent: ws.instance.pid as number, ...(nginx ? { nginx: nginx.child.pid! } : {}) };

  for (const c of [1, 16]) {
    const n = c === 1 ? Math.max(200, Math.floor(N / 2)) : N;
    const results = new Map<string, (Load & { cpu: Record<string, number> })[]>();
    for (const t of targets) await load(t, Math.min(300, n), c); // warm up JITs and connection pools
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of targets) results.set(t.name, [...(results.get(t.name) ?? []), await measured(t, n, c, pids)]);
    }
    const summary = targets.map((t) => {
      const rs = results.get(t.name)!;
      return { name: t.name, ...summarize(rs), cpu: (k: string) => median(rs.map((x) => x.cpu[k] ?? 0)) };
    });
    const base = summary[0]!;
    const ng = summary.find((s) => s.name.startsWith('nginx'));
    console.log(`\nA2A message/send, ${n} requests × ${ROUNDS} rounds, concurrency ${c}, node ${process.version}, ${os.cpus().length} CPUs (medians of rounds)`);
    console.log('| path | req/s | p50 ms | p99 ms | p50 added ms | throughput vs direct | vs nginx | platform CPU µs/req | agent CPU µs/req | errors |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const s of summary) {
      const onPlatform = s.name.startsWith('platform');
      console.log(
        `| ${s.name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(2)} | ${(s.p50 - base.p50).toFixed(3)} | ${(s.rps / base.rps).toFixed(2)}× | ${ng ? `${(s.rps / ng.rps).toFixed(2)}×` : '–'} | ${onPlatform ? s.cpu('platform').toFixed(0) : '–'} | ${s.cpu('agent').toFixed(0)} | ${s.errors} |`,
      );
    }
  }

  const streamTargets = [targets[0]!, targets.find((t) => t.name === 'platform, admin token')!];
  const firsts = new Map<string, number[]>();
  for (const t of streamTargets) await firstEvent(t, 50);
  for (let r = 0; r < ROUNDS; r++) for (const t of streamTargets) firsts.set(t.name, [...(firsts.get(t.name) ?? []), await firstEvent(t, 200)]);
  const [d, p] = streamTargets.map((t) => median(firsts.get(t.name)!));
  console.log(`\nmessage/stream, first SSE event, 200 streams × ${ROUNDS} rounds one at a time (p50 ms): direct ${d!.toFixed(3)}, platform ${p!.toFixed(3)}, added ${(p! - d!).toFixed(3)}`);
  if (!nginx) console.log('(nginx not installed: apt-get install nginx-light to add the nginx baseline)');
  for (const w of [ws, caller]) await fetch(`${platform.url}/workspaces/${w.id}`, { method: 'DELETE', headers: admin });
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`${platform.url}/workspaces/${ws.id}`, { headers: admin })).status === 410) break;
    await new Promise((r) => setTimeout(r, 100));
  }
} finally {
  await nginx?.stop();
  await platform.close();
  killRecordedAgents(dataDir); // the platform leaves workspaces running on exit; a run that threw may have some
  fs.rmSync(dataDir, { recursive: true, force: true });
}
