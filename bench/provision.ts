/**
 * Time from `POST /workspaces` to `ready` (agent registered), from `resume` to the first A2A reply, and from a
 * message to a sleeping workspace (idle timeout, issue 14) to its reply — the wake included — on the
 * process backend, on docker (a real engine at DOCKER_HOST, runtime image from `npm run build:images`), or on flyio
 * against the Fly Machines simulator (its rate limits on, as Fly's). Baseline in the
 * same run: starting the same agent directly (no platform) and waiting for its /healthz — the floor any backend
 * pays for booting Node and the agent.
 *
 *   npx tsx bench/provision.ts [--iterations 20] [--backend process|docker|flyio]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { agentCommand } from '../src/agent/launch.js';
import { freePort } from '../src/util/net.js';
import { killRecordedAgents } from '../test/support/harness.js';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '20' }, backend: { type: 'string', default: 'process' } } });
const N = Number(values.iterations);
const backend = values.backend as 'process' | 'docker' | 'flyio';

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Polls until fn is true; a minute without it (a workspace that failed, say) ends the run instead of hanging it. */
async function poll(fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error('gave up after 60 s: the workspace never got there (see the platform log)');
    try {
      if (await fn()) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function directAgentBoot(): Promise<number> {
  const port = await freePort();
  const { command, args } = agentCommand({ heapMb: 384 });
  const t0 = process.hrtime.bigint();
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH, WORKSPACE_ID: 'bench', MOLECULE_AGENT_TOKEN: 't', PORT: String(port), AGENT_HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  await poll(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
  const t = ms(t0);
  child.kill('SIGTERM');
  await once(child, 'exit');
  return t;
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-provision-'));
const port = await freePort();
const sim = backend === 'flyio' ? await (await import('../tools/fly-sim/index.js')).startFlySim({}) : null;
const dockerEnv = { CONTAINER_BACKEND: 'docker', DOCKER_HOST: process.env.DOCKER_HOST ?? '', MOLECULE_RUNTIME_IMAGE: process.env.MOLECULE_RUNTIME_IMAGE ?? '' };
const backendEnv = sim
  ? { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: 'bench', ...sim.env }
  : backend === 'docker'
    ? dockerEnv
    : { CONTAINER_BACKEND: 'process' };
const platformChild = spawn(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../src/main.ts')], {
  // Idle checks every 100 ms and activity written at most every 100 ms, so a workspace sleeps ~1 s after its reply.
  env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), MOLECULE_DATA_DIR: dataDir, LOG_LEVEL: 'warn', MOLECULE_LIVENESS_INTERVAL_MS: '100', MOLECULE_ACTIVITY_FLUSH_MS: '100', ...backendEnv },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const base = `http://127.0.0.1:${port}`;
const json = async (method: string, p: string, body?: unknown) =>
  (await fetch(base + p, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined })).json();
await poll(async () => (await fetch(`${base}/healthz`)).ok);

const direct: number[] = [];
const create: number[] = [];
const resume: number[] = [];
const wake: number[] = [];
try {
  await directAgentBoot(); // warm the file cache and tsx's transform cache
  for (let i = 0; i < N; i++) {
    direct.push(await directAgentBoot());

    let t0 = process.hrtime.bigint();
    const ws = await json('POST', '/workspaces', { name: `bench-${i}` });
    await poll(async () => (await json('GET', `/workspaces/${ws.id}`)).status === 'ready');
    create.push(ms(t0));

    await json('POST', `/workspaces/${ws.id}/pause`);
    t0 = process.hrtime.bigint();
    await json('POST', `/workspaces/${ws.id}/resume`);
    await poll(async () => {
      const r = await fetch(`${base}/workspaces/${ws.id}/a2a`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] }),
      });
      return r.status === 200;
    });
    resume.push(ms(t0));

    // Asleep (idle 1 s, instance stopped or suspended), then one message: held through the wake, then answered.
    await json('PATCH', `/workspaces/${ws.id}`, { idle_timeout_s: 1 });
    await poll(async () => {
      const evs = (await json('GET', `/workspaces/${ws.id}/events`)) as { type: string; data: { step?: string; to?: string } }[];
      const i = evs.map((e) => e.type === 'workspace.status' && e.data.to === 'sleeping').lastIndexOf(true);
      return i >= 0 && evs.slice(i).some((e) => e.data.step === 'instance stopped' || e.data.step === 'instance suspended');
    });
    t0 = process.hrtime.bigint();
    const r = await fetch(`${base}/workspaces/${ws.id}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] }),
    });
    const answer = (await r.json()) as { result?: unknown; error?: unknown };
    if (!answer.result) throw new Error(`the woken workspace did not answer: ${JSON.stringify(answer)}`);
    wake.push(ms(t0));
    await json('DELETE', `/workspaces/${ws.id}`);
  }
} finally {
  platformChild.kill('SIGTERM');
  await once(platformChild, 'exit');
  await sim?.close();
  killRecordedAgents(dataDir); // the platform leaves workspaces running on exit; a run that threw may have some
  fs.rmSync(dataDir, { recursive: true, force: true });
}

const row = (name: string, xs: number[]) =>
  `| ${name} | ${quantile(xs, 0.5).toFixed(0)} | ${quantile(xs, 0.95).toFixed(0)} | ${Math.max(...xs).toFixed(0)} | ${(quantile(xs, 0.5) / quantile(direct, 0.5)).toFixed(2)}× |`;
const label = { flyio: 'flyio backend against the Fly Machines simulator', docker: 'docker backend on a local engine', process: 'process backend' }[backend];
console.log(`${label}, ${N} iterations, node ${process.version}, ${os.cpus().length} CPUs (all ${N} succeeded)`);
console.log('| measurement | p50 ms | p95 ms | max ms | p50 vs direct boot |');
console.log('|---|---|---|---|---|');
console.log(row('direct agent boot to /healthz (baseline)', direct));
console.log(row('POST /workspaces → ready', create));
console.log(row('resume → first A2A reply', resume));
console.log(row('sleeping → first A2A reply (message wakes it)', wake));
console.log(`sleeping → first A2A reply vs POST → ready (p50): ${(quantile(wake, 0.5) / quantile(create, 0.5)).toFixed(2)}× (target ≤ 1.2× on process and docker)`);
