import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFlySim, type FlySim, type FlySimOptions } from '../../tools/fly-sim/index.js';
import { startBalancer, type Balancer } from './balancer.js';
import { api, FAST_ENV, freePort, killRecordedAgents, launchPlatform, pidAlive, platformCommand, ROOT, tempDir, waitFor, type Api, type PlatformProcess } from './harness.js';
import { startTestPostgres, type TestPostgres } from './postgres.js';

/** Whether this machine can run the multi-replica tests (a Postgres server, or CI providing one). */
export const HAVE_POSTGRES = Boolean(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL);

export interface ClusterOptions {
  /** Backend every replica drives. Default `flyio` (against a simulator started here). */
  backend?: 'flyio' | 'process';
  /** MOLECULE_LEASE_TTL_S of every replica. Default 3. */
  leaseTtlS?: number;
  /** Extra env for every replica (after the defaults). */
  env?: Record<string, string>;
  /** Options of the Fly simulator (flyio only). Default: Fly's rate limits on, the real agent. */
  sim?: FlySimOptions;
  /**
   * A simulator running elsewhere (its FLY_FLAPS_BASE_URL, FLY_API_TOKEN, FLY_PROXY_URL), e.g. its own process in
   * a benchmark; then none is started here and `cluster.sim` is null.
   */
  flyEnv?: Record<string, string>;
  /** FLY_WORKSPACE_APP. Default `molecule-cluster-<random>`. */
  app?: string;
  /** Prefix of the temp dir holding every replica's data dir. */
  name?: string;
  /** Print replica log tails when a replica exits without being told to (default true). */
  reportUnexpectedExits?: boolean;
}

export interface Replica {
  index: number;
  /** `A`, `B`, `C` … */
  name: string;
  port: number;
  url: string;
  dataDir: string;
  /** One entry per start (a restarted replica writes a new file), oldest first. */
  logFiles: string[];
  /** The running process, or null while stopped/killed. */
  proc: PlatformProcess | null;
  /** REST client straight to this replica (not through the balancer). */
  api: Api;
}

export interface ClusterView {
  this: string;
  leader: string | null;
  lease_ttl_s: number;
  replicas: Array<{ id: string; host: string; pid: number; backend: string; url: string | null; started_at: string; last_seen: string }>;
}

export interface RefusedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** It did not exit but answered /healthz (then it was killed): the refusal did not happen. */
  started: boolean;
}

const letter = (i: number) => String.fromCharCode(65 + i);

/**
 * N real platform processes (`node dist/main.js`, started by the harness's launchPlatform) sharing one
 * Postgres, one MOLECULE_SECRETS_KEY and — for flyio — one Fly Machines simulator, behind a TCP round-robin
 * balancer whose URL is every replica's PLATFORM_URL (agents register and heartbeat through it, as they would
 * through nginx). Each replica has its own port (kept across restarts) and data dir with its output in a log file
 * there. Everything started here is stopped by pid in stopAll().
 */
export class ReplicaCluster {
  readonly root: string;
  readonly secretsKey = crypto.randomBytes(32).toString('base64');
  readonly app: string;
  readonly replicas: Replica[] = [];
  /** REST client through the balancer. */
  readonly lb: Api;
  /** Replica starts/exits we did not ask for: `A exited (code 1, signal null)`. */
  readonly unexpectedExits: string[] = [];
  private readonly expectedExit = new Set<PlatformProcess>();
  private readonly extraDirs: string[] = [];

  private constructor(
    readonly pg: TestPostgres,
    readonly sim: FlySim | null,
    readonly balancer: Balancer,
    readonly opts: ClusterOptions,
    root: string,
  ) {
    this.root = root;
    this.app = opts.app ?? `molecule-cluster-${crypto.randomBytes(3).toString('hex')}`;
    this.lb = api(balancer.url);
  }

  /**
   * Postgres (a throwaway server, or a fresh database on MOLECULE_TEST_POSTGRES_URL), the simulator and the
   * balancer; `n` replicas are started one after another (0 = none yet). Null when there is no Postgres here.
   */
  static async start(n: number, opts: ClusterOptions = {}): Promise<ReplicaCluster | null> {
    const root = tempDir(opts.name ?? 'cluster');
    let pg: TestPostgres | null = null;
    let sim: FlySim | null = null;
    let balancer: Balancer | null = null;
    try {
      pg = await startTestPostgres();
      if (pg && (opts.backend ?? 'flyio') === 'flyio' && !opts.flyEnv) sim = await startFlySim({ ...opts.sim });
      if (pg) balancer = await startBalancer([]);
    } catch (e) {
      await sim?.close().catch(() => undefined);
      await pg?.stop().catch(() => undefined);
      fs.rmSync(root, { recursive: true, force: true });
      throw e;
    }
    if (!pg || !balancer) {
      fs.rmSync(root, { recursive: true, force: true });
      return null;
    }
    const c = new ReplicaCluster(pg, sim, balancer, opts, root);
    try {
      for (let i = 0; i < n; i++) await c.start(i);
    } catch (e) {
      process.stderr.write(`${c.tails(80)}\n`);
      await c.stopAll();
      throw e;
    }
    return c;
  }

  /** The environment every replica gets (DATABASE_URL, key, lease TTL, PLATFORM_URL, backend), plus `extra`. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    const backend = this.opts.backend ?? 'flyio';
    return {
      DATABASE_URL: this.pg.url,
      MOLECULE_SECRETS_KEY: this.secretsKey,
      MOLECULE_LEASE_TTL_S: String(this.opts.leaseTtlS ?? 3),
      PLATFORM_URL: this.balancer.url,
      CONTAINER_BACKEND: backend,
      MOLECULE_RECONCILE_INTERVAL_S: '2',
      ...(backend === 'flyio' ? { FLY_WORKSPACE_APP: this.app, ...(this.sim?.env ?? this.opts.flyEnv) } : {}),
      ...this.opts.env,
      ...extra,
    };
  }

  /** Starts (or restarts, on its old port and data dir) replica `i`, and puts it behind the balancer. */
  async start(i: number, extraEnv: Record<string, string> = {}): Promise<Replica> {
    let r = this.replicas[i];
    if (r?.proc) throw new Error(`replica ${r.name} is already running (pid ${r.proc.child.pid})`);
    if (!r) {
      const port = await freePort();
      const dataDir = path.join(this.root, letter(i));
      r = { index: i, name: letter(i), port, url: `http://127.0.0.1:${port}`, dataDir, logFiles: [], proc: null, api: api(`http://127.0.0.1:${port}`) };
      this.replicas[i] = r;
    }
    let proc: PlatformProcess;
    try {
      proc = await launchPlatform({ dataDir: r.dataDir, port: r.port, env: this.env(extraEnv) });
    } catch (e) {
      // launchPlatform's error carries the whole log of a platform that exited during startup.
      throw new Error(`replica ${r.name} did not start: ${(e as Error).message}`);
    }
    // A port taken meanwhile makes launchPlatform retry on the same port; it never moves us. Keep the URL honest.
    r.port = proc.port;
    r.url = proc.url;
    r.api = api(proc.url);
    r.proc = proc;
    r.logFiles.push(proc.logFile);
    proc.child.once('exit', (code, signal) => {
      if (r.proc === proc) r.proc = null;
      if (this.expectedExit.has(proc)) return;
      const what = `replica ${r.name} (pid ${proc.child.pid}) exited unexpectedly (code ${code}, signal ${signal})`;
      this.unexpectedExits.push(what);
      if (this.opts.reportUnexpectedExits !== false) process.stderr.write(`\n${what}\n${this.tail(i, 60)}\n`);
    });
    this.syncBackends();
    return r;
  }

  /** SIGKILL by pid; resolves when the process is gone. The balancer keeps it in its list and routes around it. */
  async kill9(i: number): Promise<void> {
    const proc = this.replicas[i]?.proc;
    if (!proc) return;
    this.expectedExit.add(proc);
    const exited = once(proc.child, 'exit');
    process.kill(proc.child.pid!, 'SIGKILL');
    await exited;
  }

  /** SIGTERM (a clean shutdown: the lease is given up), then SIGKILL after `graceMs`. */
  async stop(i: number, graceMs = 10_000): Promise<void> {
    const proc = this.replicas[i]?.proc;
    if (!proc) return;
    this.expectedExit.add(proc);
    await terminate(proc, graceMs);
  }

  /** Every replica stopped (SIGTERM, SIGKILL after the grace), the balancer, simulator and Postgres stopped, dirs removed. */
  async stopAll(graceMs = 10_000): Promise<void> {
    await Promise.all(this.replicas.map((r) => (r.proc ? this.stop(r.index, graceMs) : undefined)));
    await this.balancer.close().catch(() => undefined);
    await this.sim?.close().catch(() => undefined);
    if ((this.opts.backend ?? 'flyio') === 'process') for (const d of [...this.replicas.map((r) => r.dataDir), ...this.extraDirs]) killRecordedAgents(d);
    await this.pg.stop().catch(() => undefined);
    const left = this.replicas.filter((r) => r.proc && pidAlive(r.proc.child.pid!));
    fs.rmSync(this.root, { recursive: true, force: true });
    if (left.length) throw new Error(`replicas still running after stopAll: ${left.map((r) => `${r.name} pid ${r.proc!.child.pid}`).join(', ')}`);
  }

  /** Replicas that are running. */
  live(): Replica[] {
    return this.replicas.filter((r) => r?.proc);
  }

  private syncBackends(): void {
    // Every replica ever started stays listed: a killed one is skipped on connect, as a real balancer's passive
    // checks would; a restarted one is back without a reload.
    this.balancer.setBackends(this.replicas.filter(Boolean).map((r) => r.url));
  }

  /** GET /healthz of replica i (throws when it does not answer 200). */
  async health(i: number): Promise<{ pid: number; cluster: ClusterView; [k: string]: any }> {
    const r = await this.replicas[i].api.call('GET', '/healthz');
    if (r.status !== 200) throw new Error(`healthz of ${this.replicas[i].name}: ${r.status} ${r.text}`);
    return r.body;
  }

  /** The replica index whose id is `id` (from any live replica's /healthz `cluster.this`). */
  async indexOf(id: string): Promise<number> {
    for (const r of this.live()) if ((await this.health(r.index)).cluster.this === id) return r.index;
    return -1;
  }

  /**
   * Waits until every live replica's /healthz names the same leader, that leader is a live replica and, when
   * given, it is not `except`; returns its index and id.
   */
  async agreedLeader(timeoutMs = 60_000, except?: string): Promise<{ index: number; id: string }> {
    return waitFor('one leader all live replicas agree on', async () => {
      const views = await Promise.all(this.live().map(async (r) => ({ r, h: await this.health(r.index) })));
      const leaders = new Set(views.map((v) => v.h.cluster?.leader ?? null));
      if (leaders.size !== 1) return false;
      const [leader] = leaders;
      if (!leader || leader === except) return false;
      const holder = views.find((v) => v.h.cluster.this === leader);
      return holder ? { index: holder.r.index, id: leader } : false;
    }, timeoutMs, 100);
  }

  /**
   * Runs one more platform process (own data dir and port) that is expected to refuse to start; collects its
   * stdout and stderr apart. `env` is merged over the cluster's env; a value of null removes the variable.
   */
  async runRefused(env: Record<string, string | null>, timeoutMs = 60_000): Promise<RefusedRun> {
    const dataDir = tempDir('cluster-refused');
    this.extraDirs.push(dataDir);
    const port = await freePort();
    const merged: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...FAST_ENV, PORT: String(port), MOLECULE_DATA_DIR: dataDir, ...this.env() };
    for (const [k, v] of Object.entries(env)) {
      if (v === null) delete merged[k];
      else merged[k] = v;
    }
    const child = spawn(process.execPath, platformCommand(), { cwd: ROOT, env: merged, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let started = false;
    const deadline = Date.now() + timeoutMs;
    const answered = (async () => {
      while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
          if (res.ok && ((await res.json()) as { pid?: number }).pid === child.pid) return true;
        } catch {
          /* not listening (yet) */
        }
        await sleep(200);
      }
      return false;
    })();
    const first = await Promise.race([exited.then(() => 'exited' as const), answered.then((ok) => (ok ? ('started' as const) : ('deadline' as const)))]);
    if (first !== 'exited') {
      started = first === 'started';
      child.kill('SIGKILL');
    }
    const [code, signal] = await exited;
    await answered;
    if (merged.CONTAINER_BACKEND === 'process') killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
    return { code, signal, stdout, stderr, started };
  }

  /** The last `lines` lines of replica i's logs (all its starts), for failure reports. */
  tail(i: number, lines = 40): string {
    const r = this.replicas[i];
    if (!r) return '';
    const out: string[] = [];
    for (const f of r.logFiles) {
      let text = '';
      try {
        text = fs.readFileSync(f, 'utf8');
      } catch {
        continue;
      }
      out.push(`--- ${path.basename(f)} ---`, ...text.trimEnd().split('\n'));
    }
    return [`=== replica ${r.name} (${r.url}) ===`, ...out.slice(-lines)].join('\n');
  }

  /** All replicas' log tails (printed when a test fails). */
  tails(lines = 40): string {
    return this.replicas.filter(Boolean).map((r) => this.tail(r.index, lines)).join('\n');
  }

  /** Lines of replica i's logs (all starts) matching `re`. */
  grep(i: number, re: RegExp): string[] {
    const r = this.replicas[i];
    return r.logFiles.flatMap((f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => re.test(l)) : []));
  }
}

async function terminate(proc: PlatformProcess, graceMs: number): Promise<void> {
  const child = proc.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

export interface SseEvent {
  id: number | null;
  event: string | null;
  data: any;
  /** performance.now() when the event was parsed. */
  receivedAt: number;
}

export interface SseClient {
  events: SseEvent[];
  /** The id of the last event received (what a reconnect sends as Last-Event-ID). */
  lastId(): number | null;
  /** Waits for an event matching `pred` (among those received so far or later). */
  next(what: string, pred: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Set when the stream ended (server gone, or close()). */
  ended: boolean;
  close(): void;
}

/**
 * A minimal EventSource for `GET /events`: resolves once the response headers arrived (the server has subscribed),
 * then collects every event. `lastEventId` resumes, as a browser's EventSource does on reconnect.
 */
export async function openSse(url: string, opts: { lastEventId?: number | null; headers?: Record<string, string>; onEvent?: (e: SseEvent) => void } = {}): Promise<SseClient> {
  const ac = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream', ...opts.headers };
  if (opts.lastEventId != null) headers['last-event-id'] = String(opts.lastEventId);
  const res = await fetch(url, { headers, signal: ac.signal });
  if (res.status !== 200) throw new Error(`SSE ${url}: ${res.status} ${await res.text()}`);
  const events: SseEvent[] = [];
  const client: SseClient = {
    events,
    ended: false,
    lastId: () => [...events].reverse().find((e) => e.id !== null)?.id ?? opts.lastEventId ?? null,
    next: (what, pred, timeoutMs = 60_000) => waitFor(what, async () => events.find(pred) ?? (client.ended ? Promise.reject(new Error('stream ended')) : undefined), timeoutMs, 25),
    close: () => ac.abort(),
  };
  void (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let sep: number;
        while ((sep = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          let id: number | null = null;
          let event: string | null = null;
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'id') id = Number(value);
            else if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
          if (!data.length) continue;
          let parsed: unknown = data.join('\n');
          try {
            parsed = JSON.parse(parsed as string);
          } catch {
            /* not JSON */
          }
          const ev = { id, event, data: parsed, receivedAt: performance.now() };
          events.push(ev);
          opts.onEvent?.(ev);
        }
      }
    } catch {
      /* aborted, or the server went away */
    } finally {
      client.ended = true;
    }
  })();
  return client;
}
