/** What the benchmarks share: the A2A request they send, a keep-alive load generator, nginx in front of upstreams. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Pool } from 'undici';
import { freePort } from '../src/util/net.js';

export const A2A_BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: '1',
  method: 'message/send',
  params: { message: { kind: 'message', messageId: 'm', role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] } },
});

export interface Target {
  name: string;
  origin: string;
  path: string;
  headers: Record<string, string>;
}

export interface Load {
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

export const quantile = (xs: number[], q: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] : NaN);
export const median = (xs: number[]) => quantile(xs, 0.5);

/** `n` A2A requests from `c` workers, each on its own keep-alive connection; an answer without parts is an error. */
export async function load(t: Target, n: number, c: number): Promise<Load> {
  const pool = new Pool(t.origin, { connections: c, pipelining: 1 });
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        next++;
        const t0 = process.hrtime.bigint();
        try {
          const res = await pool.request({ method: 'POST', path: t.path, headers: { 'content-type': 'application/json', ...t.headers }, body: A2A_BODY, headersTimeout: 30_000, bodyTimeout: 30_000 });
          const text = await res.body.text();
          if (res.statusCode !== 200 || !text.includes('"parts"')) errors++;
        } catch {
          errors++;
        }
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.close();
  return { rps: n / secs, p50: quantile(lat, 0.5), p95: quantile(lat, 0.95), p99: quantile(lat, 0.99), errors };
}

/** Medians over rounds of each figure; errors summed. */
export function summarize(rs: Load[]): Load {
  return { rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50)), p95: median(rs.map((x) => x.p95)), p99: median(rs.map((x) => x.p99)), errors: rs.reduce((a, x) => a + x.errors, 0) };
}

export interface Nginx {
  origin: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** nginx (when installed) as a keep-alive reverse proxy, round robin over `upstreams` (`http://host:port`). */
export async function startNginx(upstreams: string[]): Promise<Nginx | null> {
  const bin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
  if (!bin) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-nginx-'));
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  upstream backends { ${upstreams.map((u) => `server ${new URL(u).host};`).join(' ')} keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`,
  );
  const child = spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await fetch(`${origin}/`, { signal: AbortSignal.timeout(1000) });
      break;
    } catch {
      if (i > 200 || child.exitCode !== null) {
        child.kill('SIGKILL');
        const log = path.join(dir, 'error.log');
        const why = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`nginx did not start: ${why}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    origin,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
