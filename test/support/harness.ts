import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { freePort } from '../../src/util/net.js';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export { freePort };

export const ROOT = path.resolve(import.meta.dirname, '..', '..');

/** Timings that make liveness and recovery observable in seconds instead of minutes. */
export const FAST_ENV = {
  HEARTBEAT_INTERVAL_S: '1',
  MOLECULE_HEARTBEAT_TTL_S: '3',
  MOLECULE_LIVENESS_INTERVAL_MS: '250',
  MOLECULE_RESTART_BACKOFF_MS: '200',
  MOLECULE_RESTART_BACKOFF_MAX_MS: '2000',
  LOG_LEVEL: 'info',
};

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `molecule-${prefix}-`));
}

/** Polls until fn returns a truthy value; fails with the last value seen when the deadline passes. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

export interface Api {
  url: string;
  call(method: string, p: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; text: string; headers: Headers }>;
}

export function api(url: string, token?: string): Api {
  return {
    url,
    async call(method, p, body, headers = {}) {
      const res = await fetch(url + p, {
        method,
        headers: {
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = undefined;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed, text, headers: res.headers };
    },
  };
}

export interface WaitStatusOptions {
  /** Named in the timeout error; default "workspace <id> <status>". */
  what?: string;
  timeoutMs?: number;
  everyMs?: number;
  /** A further condition on the workspace (a new pid, a new version …) that must hold too. */
  until?: (workspace: any) => unknown;
}

/** Polls GET /workspaces/:id until its status is `status` (and `until` holds); returns the workspace as then read. */
export function waitStatus(http: Api, id: string, status: string, opts: WaitStatusOptions = {}): Promise<any> {
  return waitFor(
    opts.what ?? `workspace ${id} ${status}`,
    async () => {
      const w = (await http.call('GET', `/workspaces/${id}`)).body;
      return w?.status === status && (!opts.until || (await opts.until(w))) && w;
    },
    opts.timeoutMs,
    opts.everyMs,
  );
}

/** Polls until workspace `id` is ready (see waitStatus); returns it. */
export function waitReady(http: Api, id: string, opts: WaitStatusOptions = {}): Promise<any> {
  return waitStatus(http, id, 'ready', opts);
}

/**
 * How tests run a platform process: the build (`node dist/main.js`, what `npm start` and the image run; the test
 * setup builds it from the current sources), or with MOLECULE_TEST_PLATFORM=tsx the sources through tsx.
 */
export function platformCommand(): string[] {
  return process.env.MOLECULE_TEST_PLATFORM === 'tsx'
    ? ['--import', 'tsx', path.join(ROOT, 'src/main.ts')]
    : ['--enable-source-maps', path.join(ROOT, 'dist/main.js')];
}

/** A platform started the way a user starts it (`npm start`: `node dist/main.js`), as its own process. */
export interface PlatformProcess {
  url: string;
  port: number;
  dataDir: string;
  child: ChildProcess;
  logFile: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function launchPlatform(opts: { dataDir: string; port?: number; env?: Record<string, string> }): Promise<PlatformProcess> {
  // Ports are picked free and bound a moment later; a parallel test can take one in between. Make sure the
  // platform answering /healthz is the one we started (its pid), and try another port when it is not.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOnce(opts);
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt >= 5) throw e;
      await sleep(opts.port ? 500 : 0);
    }
  }
}

class PortTaken extends Error {}

async function launchOnce(opts: { dataDir: string; port?: number; env?: Record<string, string> }): Promise<PlatformProcess> {
  const port = opts.port ?? (await freePort());
  const logFile = path.join(opts.dataDir, `platform-${port}-${Date.now()}.log`);
  fs.mkdirSync(opts.dataDir, { recursive: true });
  const out = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, platformCommand(), {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...FAST_ENV, PORT: String(port), MOLECULE_DATA_DIR: opts.dataDir, CONTAINER_BACKEND: 'process', ...opts.env },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const url = `http://127.0.0.1:${port}`;
  const exited = once(child, 'exit');
  await Promise.race([
    waitFor('platform /healthz', async () => {
      const res = await fetch(`${url}/healthz`);
      return res.ok && ((await res.json()) as { pid?: number }).pid;
    }, 30_000).then((pid) => {
      if (pid === child.pid) return;
      child.kill('SIGKILL');
      throw new PortTaken(`port ${port} is answered by process ${pid}, not ours (${child.pid})`);
    }),
    exited.then(() => {
      const log = fs.readFileSync(logFile, 'utf8');
      if (/EADDRINUSE/.test(log)) throw new PortTaken(`port ${port} was taken`);
      throw new Error(`platform exited during startup:\n${log}`);
    }),
  ]);
  return {
    url,
    port,
    dataDir: opts.dataDir,
    child,
    logFile,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** Kills every agent process a process backend recorded under dataDir (tests must not leave any behind). */
export function killRecordedAgents(dataDir: string): void {
  const dir = path.join(dataDir, 'process');
  if (!fs.existsSync(dir)) return;
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      if (rec.pid) process.kill(-rec.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Reads one variable from a live process's environment (Linux). */
export function processEnv(pid: number, name: string): string | undefined {
  const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
}
