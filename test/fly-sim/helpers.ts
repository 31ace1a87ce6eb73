import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { startFlySim, type FlySim, type FlySimOptions } from '../../tools/fly-sim/index.js';

export const FIXTURE = fileURLToPath(new URL('./fixtures/fixture-agent.mjs', import.meta.url));
export const fixtureCommand = () => ({ command: process.execPath, args: [FIXTURE] });

export const IMAGE = 'ghcr.io/molecule-ai/workspace-hermes:latest';
export const SERVICES = [{ internal_port: 8000, protocol: 'tcp', ports: [{ port: 443, handlers: ['tls', 'http'] }] }];

/** A simulator whose `workspace-*` images run the fixture agent; rate limits off, short windows. */
export function startTestSim(opts: FlySimOptions = {}): Promise<FlySim> {
  return startFlySim({
    rateLimits: false,
    agentCommand: fixtureCommand,
    ...opts,
    timing: { launchDelayMs: 0, stillActiveMs: 0, replacingMs: 0, destroyedVisibleMs: 300, restartBackoffMs: 50, ...opts.timing },
  });
}

/**
 * A test simulator (startTestSim) and a client on it for the enclosing file or describe block: started before its
 * tests, closed after them. `bind` receives both once started; `opts` may be a function, read then.
 */
export function withTestSim(bind: (sim: FlySim, api: Api) => void, opts: FlySimOptions | (() => FlySimOptions) = {}): void {
  let sim: FlySim | undefined;
  beforeAll(async () => {
    sim = await startTestSim(typeof opts === 'function' ? opts() : opts);
    bind(sim, client(sim));
  });
  afterAll(async () => {
    await sim?.close();
  });
}

/** Paths of one app's machines: `M(id)`, `M(id, '/stop')`. */
export const machinePaths = (app: string) => (id: string, rest = '') => `/v1/apps/${app}/machines/${id}${rest}`;

export interface Res<T = any> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

export function client(sim: FlySim, token: string | null = sim.token, scheme = 'Bearer') {
  const req = async <T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res<T>> => {
    const h: Record<string, string> = { ...headers };
    if (token !== null) h.authorization = `${scheme} ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const r = await fetch(sim.url + path, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: parsed as T, text, headers: r.headers };
  };
  return {
    req,
    get: <T = any>(p: string, headers?: Record<string, string>) => req<T>('GET', p, undefined, headers),
    post: <T = any>(p: string, body?: unknown, headers?: Record<string, string>) => req<T>('POST', p, body, headers),
    del: <T = any>(p: string, headers?: Record<string, string>) => req<T>('DELETE', p, undefined, headers),
  };
}

export type Api = ReturnType<typeof client>;

/** Creates a machine and returns the 200 body (throws on another status). */
export async function createMachine(api: Api, app: string, body: Record<string, any> = {}): Promise<any> {
  const r = await api.post(`/v1/apps/${app}/machines`, { ...body, config: { image: IMAGE, ...(body.config ?? {}) } });
  if (r.status !== 200) throw new Error(`create answered ${r.status}: ${r.text}`);
  return r.body;
}

/** GET …/wait for one state (adds the version for `stopped`); returns the response. */
export async function waitFor(api: Api, app: string, id: string, state: string, timeoutS = 30): Promise<Res> {
  let q = `state=${state}&timeout=${timeoutS}`;
  if (state.split(',').includes('stopped')) {
    const m = await api.get(`/v1/apps/${app}/machines/${id}`);
    q += `&version=${m.body.version}`;
  }
  return api.get(`/v1/apps/${app}/machines/${id}/wait?${q}`);
}

/** Polls fn until it returns a truthy value or the deadline passes (then throws with the last value). */
export async function until<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 15_000, everyMs = 20): Promise<Exclude<T, null | undefined | false | '' | 0>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await fn();
    if (last) return last as Exclude<T, null | undefined | false | '' | 0>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether a pid is alive (signal 0). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Through the proxy stand-in to a machine. */
export function viaProxy(sim: FlySim, id: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('fly-force-instance-id', id);
  return fetch(sim.proxyUrl + path, { ...init, headers });
}
