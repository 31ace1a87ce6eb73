/**
 * A2A proxy overhead: the same `message/send` sent straight to an agent (baseline), through nginx as a plain
 * reverse proxy, and through the platform's `POST /workspaces/:id/a2a`. All three run in this process's run,
 * against one agent, interleaved over several rounds; the table prints medians and ratios to the direct call.
 *
 *   npx tsx bench/a2a-proxy.ts [--requests 2000] [--concurrency 16] [--rounds 3]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { freePort } from '../src/util/net.js';
import { killRecordedAgents } from '../test/support/harness.js';
import { load, startNginx, summarize, type Target } from './support.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
  },
});
const N = Number(values.requests);
const C = Number(values.concurrency);
const ROUNDS = Number(values.rounds);

/** The platform as its own process (as `npm start` runs it), so it does not share this client's event loop. */
async function startPlatformProcess(dataDir: string) {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../src/main.ts')], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', LOG_LEVEL: 'warn', MOLECULE_RATE_LIMIT_PER_MIN: '0' },
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
    async close() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** The agent's own token, read from its environment: only the baselines need it, to bypass the platform. */
function agentToken(pid: number): string {
  const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith('MOLECULE_AGENT_TOKEN='))!.slice('MOLECULE_AGENT_TOKEN='.length);
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-a2a-'));
const platform = await startPlatformProcess(dataDir);
let nginx: Awaited<ReturnType<typeof startNginx>> = null;
try {
  const created = await (await fetch(`${platform.url}/workspaces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench', tier: 4 }) })).json();
  const id = created.id as string;
  let ws;
  for (;;) {
    ws = await (await fetch(`${platform.url}/workspaces/${id}`)).json();
    if (ws.status === 'ready') break;
    if (ws.status === 'failed') throw new Error(`workspace failed: ${ws.status_reason}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const agentUrl = new URL(ws.instance.url);
  nginx = await startNginx([agentUrl.origin]);
  const auth = { authorization: `Bearer ${agentToken(ws.instance.pid)}` };
  const targets: Target[] = [
    { name: 'direct to agent (baseline)', origin: agentUrl.origin, path: '/', headers: auth },
    ...(nginx ? [{ name: 'nginx reverse proxy', origin: nginx.origin, path: '/', headers: auth }] : []),
    { name: 'platform A2A proxy', origin: platform.url, path: `/workspaces/${id}/a2a`, headers: {} },
  ];
  const results = new Map<string, Awaited<ReturnType<typeof load>>[]>();
  for (const t of targets) await load(t, Math.min(300, N), C); // warm up JITs and connection pools
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) results.set(t.name, [...(results.get(t.name) ?? []), await load(t, N, C)]);
  }
  const summary = targets.map((t) => ({ name: t.name, ...summarize(results.get(t.name)!) }));
  const base = summary[0];
  console.log(`A2A message/send, ${N} requests × ${ROUNDS} rounds, concurrency ${C}, node ${process.version}, ${os.cpus().length} CPUs (medians of rounds)`);
  console.log('| path | req/s | p50 ms | p95 ms | p99 ms | throughput vs direct | p50 vs direct | errors |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const s of summary) {
    console.log(
      `| ${s.name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p95.toFixed(2)} | ${s.p99.toFixed(2)} | ${(s.rps / base.rps).toFixed(2)}× | ${(s.p50 / base.p50).toFixed(2)}× | ${s.errors} |`,
    );
  }
  if (!nginx) console.log('(nginx not installed: apt-get install nginx-light to add the nginx baseline)');
  await fetch(`${platform.url}/workspaces/${id}`, { method: 'DELETE' });
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`${platform.url}/workspaces/${id}`)).status === 410) break;
    await new Promise((r) => setTimeout(r, 100));
  }
} finally {
  await nginx?.stop();
  await platform.close();
  killRecordedAgents(dataDir); // the platform leaves workspaces running on exit; a run that threw may have some
  fs.rmSync(dataDir, { recursive: true, force: true });
}
