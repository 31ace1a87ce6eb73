/**
 * Platform start time and memory (issue 15): the sources through tsx (`tsx src/main.ts`, what `npm start` ran
 * before) against the build (`node dist/main.js`, what `npm start` and the image run now), in one run, interleaved.
 *
 *   npx tsx bench/startup.ts [--rounds 7]
 *
 * Each start is a fresh process on a free port with a fresh SQLite data dir and the process backend (no
 * workspaces). Start time: spawn → the first `GET /healthz` answering 200 (polled every 5 ms). RSS: VmRSS from
 * /proc/<pid>/status once /healthz answers, and again after 2 s idle (tsx's compile cache and the loader stay
 * resident). Medians of the rounds; ratios are build ÷ tsx. The build is refreshed first (tools/build/bundle.mjs).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { freePort } from '../src/util/net.js';
import { buildBundle } from '../tools/build/bundle.mjs';
import { median } from './support.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const ROUNDS = Number(values.rounds);
const ROOT = path.resolve(import.meta.dirname, '..');

const VARIANTS = {
  tsx: ['--import', 'tsx', path.join(ROOT, 'src/main.ts')],
  built: ['--enable-source-maps', path.join(ROOT, 'dist/main.js')],
} as const;
type Variant = keyof typeof VARIANTS;

const rssMb = (pid: number) => {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) / 1024 : NaN;
};

async function startOnce(variant: Variant): Promise<{ ms: number; rss: number; rssIdle: number }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-bench-start-'));
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...VARIANTS[variant]], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const exited = once(child, 'exit');
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${variant}: the platform exited during startup`);
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
      if (ok) break;
      await sleep(5);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const rss = rssMb(child.pid!);
    await sleep(2000);
    return { ms, rss, rssIdle: rssMb(child.pid!) };
  } finally {
    child.kill('SIGTERM');
    await exited;
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await buildBundle('platform');
// One warm-up each: the file cache, and tsx's own transform cache (what a second `npm start` would find).
await startOnce('tsx');
await startOnce('built');
const results: Record<Variant, { ms: number[]; rss: number[]; rssIdle: number[] }> = { tsx: { ms: [], rss: [], rssIdle: [] }, built: { ms: [], rss: [], rssIdle: [] } };
for (let r = 0; r < ROUNDS; r++) {
  for (const v of (r % 2 ? ['built', 'tsx'] : ['tsx', 'built']) as Variant[]) {
    const x = await startOnce(v);
    results[v].ms.push(x.ms);
    results[v].rss.push(x.rss);
    results[v].rssIdle.push(x.rssIdle);
  }
}
const row = (v: Variant) => ({ start: median(results[v].ms), rss: median(results[v].rss), idle: median(results[v].rssIdle) });
const t = row('tsx');
const b = row('built');
process.stdout.write(`node ${process.version}, ${os.cpus().length} CPUs, ${ROUNDS} rounds (medians)\n`);
process.stdout.write(`                       start → /healthz   RSS at /healthz   RSS after 2 s\n`);
process.stdout.write(`tsx src/main.ts        ${t.start.toFixed(0).padStart(8)} ms       ${t.rss.toFixed(1).padStart(7)} MB        ${t.idle.toFixed(1).padStart(7)} MB\n`);
process.stdout.write(`node dist/main.js      ${b.start.toFixed(0).padStart(8)} ms       ${b.rss.toFixed(1).padStart(7)} MB        ${b.idle.toFixed(1).padStart(7)} MB\n`);
process.stdout.write(`build ÷ tsx            ${(b.start / t.start).toFixed(2).padStart(8)} ×        ${(b.rss / t.rss).toFixed(2).padStart(7)} ×         ${(b.idle / t.idle).toFixed(2).padStart(7)} ×\n`);
