/**
 * startFlySim(): the Machines API (Fastify) + the proxy stand-in + admin endpoints, around one Engine.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError, Engine, type EngineOptions, type MachineEvent, type MachineSnapshot, type MachineState, type SimTiming } from './engine.js';
import { APP_LEVEL_ACTIONS, statusFaultResponse, validateFaultSpec, type Action, type FaultSpec } from './faults.js';
import { startProxy } from './proxy.js';
import { FLY_RATE_LIMITS } from './ratelimit.js';
import type { LogLine } from './runner.js';
import { isPlainObject, newRequestId, truthyQuery } from './util.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface FlySimOptions extends EngineOptions {
  /** Listen address for both servers. Default 127.0.0.1. */
  host?: string;
  /** Machines API port. Default 0 (a free port). */
  port?: number;
  /** Proxy port. Default 0 (a free port). */
  proxyPort?: number;
  /** Accepted API token(s) (`Authorization: Bearer <t>` or `FlyV1 <t>`). Default `sim-token`. */
  token?: string | string[];
  /** Fastify logger option. Default false. */
  logger?: boolean | Record<string, unknown>;
  /** Request log capacity (oldest dropped first). Default 10000. */
  maxRequestLog?: number;
  /** Called after every API response is sent. */
  onRequestLogged?: (entry: RequestLogEntry) => void;
}

export interface RequestLogEntry {
  seq: number;
  requestId: string;
  /** Epoch ms (simulator clock) when the request arrived. */
  at: number;
  method: string;
  /** Path without the query string. */
  path: string;
  url: string;
  query: Record<string, unknown>;
  /** Parsed JSON body (or the raw text when it was not JSON); undefined without a body. */
  body: unknown;
  status: number;
  /** Simulator action name (`create`, `stop`, `wait` …) — also the names used by faults. */
  action?: string;
  app?: string;
  machineId?: string;
  leaseNonce?: string;
  durationMs: number;
}

export interface FaultController {
  /** Adds any FaultSpec; returns its id (0 for settings-type faults such as slow_boot). */
  add(spec: FaultSpec): number;
  list(): ReturnType<Engine['faults']['list']>;
  /** Removes one fault, or all. */
  clear(id?: number): void;
  /** The next `count` requests of `action` answer 429 `{"error":"rate limit exceeded"}`. */
  rateLimit(action: Action | '*', count?: number, scope?: { app?: string; machine?: string }): number;
  /** The next `count` requests of `action` answer `status` (500/502/503/504). */
  serverError(action: Action | '*', count?: number, status?: 500 | 502 | 503 | 504, scope?: { app?: string; machine?: string }): number;
  /** The next `count` requests of `action` are carried out, then answer `status` (default 503) instead. */
  lostResponse(action: Action | '*', count?: number, status?: 408 | 500 | 502 | 503 | 504, scope?: { app?: string; machine?: string }): number;
  /** The next `count` creates commit the machine, then answer 408. */
  createTimeout(count?: number, opts?: { app?: string; delayMs?: number }): number;
  /** Creates in `region` answer 503 insufficient_capacity (until cleared, or `count` times). */
  insufficientCapacity(region: string, count?: number): number;
  /** The next `count` create/update/start calls answer 409 insufficient memory. */
  insufficientMemory(action?: 'create' | 'update' | 'start', count?: number, scope?: { app?: string; machine?: string }): number;
  /** This image (reference or repository) cannot be pulled: machines using it end in `failed`. */
  unpullable(image: string): number;
  /** Every boot waits `ms` in `starting` before the process is spawned. */
  slowBoot(ms: number): void;
}

export interface FlySim {
  /** Machines API base URL (what FLY_FLAPS_BASE_URL should be). Paths are under `/v1`. */
  url: string;
  /** The proxy stand-in: send requests with `fly-force-instance-id: <machine id>`. */
  proxyUrl: string;
  /** First accepted token. */
  token: string;
  /** Environment for a platform using this simulator. */
  env: { FLY_FLAPS_BASE_URL: string; FLY_API_TOKEN: string; FLY_PROXY_URL: string };
  engine: Engine;
  faults: FaultController;
  timing: SimTiming;
  /** Every machine (optionally of one app), including pid and local port. */
  machines(app?: string): MachineSnapshot[];
  machine(id: string): MachineSnapshot | undefined;
  apps(): string[];
  /** The request log, oldest first, optionally filtered. */
  requests(filter?: { method?: string; action?: string; app?: string; machineId?: string }): RequestLogEntry[];
  clearRequests(): void;
  /** A machine's captured output (stdout, stderr and the simulator's own lines). */
  logs(machineId: string): LogLine[];
  /** Resolves when the machine reaches one of `states` (rejects after timeoutMs, real time). */
  waitForState(machineId: string, states: MachineState | MachineState[], timeoutMs?: number): Promise<MachineSnapshot>;
  /** Live child process ids. */
  pids(): number[];
  setRateLimits(on: boolean): void;
  /** Stops both servers and kills every child process. */
  close(): Promise<void>;
}

interface RouteConfig {
  action?: Action | 'logs' | 'admin';
}

const MACHINE_BASE = '/v1/apps/:app/machines/:id';

export async function startFlySim(opts: FlySimOptions = {}): Promise<FlySim> {
  const host = opts.host ?? '127.0.0.1';
  const tokens = ([] as string[]).concat(opts.token ?? 'sim-token').filter(Boolean);
  if (!tokens.length) throw new Error('fly-sim: at least one API token is required');
  const transitionListeners = new Set<(m: { app: string; id: string; state: MachineState; event: MachineEvent }) => void>();
  const engine = new Engine({
    ...opts,
    onTransition: (t) => {
      opts.onTransition?.(t);
      for (const l of transitionListeners) l(t);
    },
  });
  const requestLog: RequestLogEntry[] = [];
  const maxLog = opts.maxRequestLog ?? 10_000;
  let seq = 0;

  const app: FastifyInstance = Fastify({
    logger: (opts.logger ?? false) as boolean,
    forceCloseConnections: true,
    return503OnClosing: false,
  });

  // Bodies: JSON whatever the content type (Go's server does not look at it); empty → no body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    const text = String(body);
    (req as FastifyRequest & { rawBodyText?: string }).rawBodyText = text;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new ApiError(400, { error: `invalid JSON body: ${(e as Error).message}` }), undefined);
    }
  });

  const started = new WeakMap<FastifyRequest, number>();

  app.addHook('onRequest', async (req, reply) => {
    started.set(req, Date.now());
    reply.header('fly-request-id', newRequestId(engine.clock.now()));
    const cfg = req.routeOptions.config as RouteConfig;
    if (!cfg?.action) return; // unknown route: the 404 handler answers
    if (!authorized(req.headers.authorization, tokens)) {
      return reply.code(401).send({ error: 'Authenticate: token validation error' });
    }
  });

  app.addHook('preHandler', async (req, reply) => {
    const cfg = req.routeOptions.config as RouteConfig;
    const action = cfg?.action;
    if (!action || action === 'logs' || action === 'admin') return;
    const params = req.params as { app?: string; id?: string };
    const fault = engine.faults.take(['status', 'rate_limit', 'server_error'], { action, app: params.app, machine: params.id });
    if (fault) {
      const r = statusFaultResponse(fault);
      return reply.code(r.status).type(r.contentType).send(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    }
    if (engine.rateLimitsEnabled) {
      const scope = action === 'regions' || action === 'apps_list' ? 'global' : APP_LEVEL_ACTIONS.has(action) ? `app:${params.app}` : `machine:${params.app}/${params.id}`;
      if (!engine.rateLimiter.take(action, scope)) return reply.code(429).send({ error: 'rate limit exceeded' });
    }
    // The handler runs (the change happens); onSend then swaps its answer for the failure.
    const lost = engine.faults.take(['lost_response'], { action, app: params.app, machine: params.id });
    if (lost) lostAnswers.set(req, lost);
  });

  const lostAnswers = new WeakMap<FastifyRequest, FaultSpec>();
  app.addHook('onSend', async (req, reply, payload) => {
    const lost = lostAnswers.get(req);
    if (!lost) return payload;
    lostAnswers.delete(req);
    const r = statusFaultResponse(lost);
    reply.code(r.status).type(r.contentType);
    return typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  });

  app.addHook('onResponse', async (req, reply) => {
    const cfg = req.routeOptions.config as RouteConfig;
    if (cfg?.action === 'admin') return;
    const params = (req.params ?? {}) as { app?: string; id?: string };
    const nonce = req.headers['fly-machine-lease-nonce'];
    const rawText = (req as FastifyRequest & { rawBodyText?: string }).rawBodyText;
    const entry: RequestLogEntry = {
      seq: ++seq,
      requestId: String(reply.getHeader('fly-request-id') ?? ''),
      at: engine.clock.now(),
      method: req.method,
      path: req.url.split('?')[0],
      url: req.url,
      query: { ...((req.query ?? {}) as Record<string, unknown>) },
      body: req.body !== undefined ? req.body : rawText && rawText.trim() ? rawText : undefined,
      status: reply.statusCode,
      action: cfg?.action,
      app: params.app,
      machineId: params.id,
      leaseNonce: Array.isArray(nonce) ? nonce[0] : nonce,
      durationMs: Date.now() - (started.get(req) ?? Date.now()),
    };
    requestLog.push(entry);
    if (requestLog.length > maxLog) requestLog.splice(0, requestLog.length - maxLog);
    opts.onRequestLogged?.(entry);
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, _req, reply) => {
    if (error instanceof ApiError) return reply.code(error.status).send(error.body);
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    return reply.code(status).send({ error: status === 500 ? `internal error: ${error.message}` : error.message });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `not found: ${req.method} ${req.url.split('?')[0]} is not a route of the Machines API (fly-sim)` });
  });

  const nonceOf = (req: FastifyRequest) => {
    const n = req.headers['fly-machine-lease-nonce'];
    const v = Array.isArray(n) ? n[0] : n;
    return v ? v.trim() : undefined;
  };
  type P = { app: string; id: string; key: string };
  const route = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, action: RouteConfig['action'], handler: (req: FastifyRequest<{ Params: P; Querystring: Record<string, Json>; Body: Json }>, reply: FastifyReply) => unknown) => {
    app.route({ method, url, config: { action } satisfies RouteConfig, handler: handler as never });
  };

  // --- apps, platform ----------------------------------------------------------------------------------------------
  route('GET', '/v1/apps', 'apps_list', async (req) => engine.listApps(req.query.org_slug));
  route('POST', '/v1/apps', 'app_create', async (req, reply) => reply.code(201).send(engine.createApp(req.body)));
  route('GET', '/v1/apps/:app', 'app_get', async (req) => engine.appJson(engine.app(req.params.app)));
  route('DELETE', '/v1/apps/:app', 'app_delete', async (req, reply) => {
    await engine.deleteApp(req.params.app);
    return reply.code(202).send();
  });
  route('GET', '/v1/platform/regions', 'regions', async () => engine.regions());

  // --- app secrets (spec tag Secrets) ------------------------------------------------------------------------------
  route('GET', '/v1/apps/:app/secrets', 'secrets_list', async (req) => engine.secretsList(req.params.app, req.query));
  route('POST', '/v1/apps/:app/secrets', 'secrets_update', async (req) => engine.secretsUpdate(req.params.app, req.body));
  route('GET', '/v1/apps/:app/secrets/:key', 'secret_get', async (req) => engine.secretGet(req.params.app, req.params.key, req.query));
  route('POST', '/v1/apps/:app/secrets/:key', 'secret_set', async (req, reply) => reply.code(201).send(engine.secretSet(req.params.app, req.params.key, req.body)));
  route('DELETE', '/v1/apps/:app/secrets/:key', 'secret_delete', async (req) => engine.secretDelete(req.params.app, req.params.key));

  // --- machines ----------------------------------------------------------------------------------------------------
  route('GET', '/v1/apps/:app/machines', 'list', async (req) => engine.list(req.params.app, req.query));
  route('POST', '/v1/apps/:app/machines', 'create', async (req, reply) => {
    const r = engine.create(req.params.app, req.body);
    if (r.timeout) {
      if (r.timeout.delayMs > 0) await new Promise((res) => setTimeout(res, r.timeout!.delayMs));
      return reply.code(408).send({ error: 'deadline_exceeded: request timed out (the machine may have been created)' });
    }
    return r.machine;
  });
  route('GET', MACHINE_BASE, 'get', async (req) => engine.machineJson(engine.machine(req.params.app, req.params.id)));
  route('POST', MACHINE_BASE, 'update', async (req) => engine.update(req.params.app, req.params.id, req.body, nonceOf(req)));
  route('DELETE', MACHINE_BASE, 'destroy', async (req) =>
    engine.destroy(req.params.app, req.params.id, truthyQuery(req.query.force) || truthyQuery(req.query.kill), nonceOf(req)),
  );
  route('POST', `${MACHINE_BASE}/start`, 'start', async (req) => engine.start(req.params.app, req.params.id, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/stop`, 'stop', async (req) => engine.stop(req.params.app, req.params.id, req.body, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/suspend`, 'suspend', async (req) => engine.suspend(req.params.app, req.params.id, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/restart`, 'restart', async (req) => engine.restart(req.params.app, req.params.id, req.query, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/signal`, 'signal', async (req) => engine.signal(req.params.app, req.params.id, req.body, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/cordon`, 'cordon', async (req) => engine.cordon(req.params.app, req.params.id, true, nonceOf(req)));
  route('POST', `${MACHINE_BASE}/uncordon`, 'uncordon', async (req) => engine.cordon(req.params.app, req.params.id, false, nonceOf(req)));
  route('GET', `${MACHINE_BASE}/wait`, 'wait', async (req, reply) => {
    const ac = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) ac.abort();
    });
    const r = await engine.wait(req.params.app, req.params.id, req.query, ac.signal);
    if (ac.signal.aborted) return reply.code(499).send(r.body);
    return reply.code(r.status).send(r.body);
  });
  route('GET', `${MACHINE_BASE}/lease`, 'lease_get', async (req) => engine.leaseGet(req.params.app, req.params.id));
  route('POST', `${MACHINE_BASE}/lease`, 'lease_acquire', async (req, reply) =>
    reply.code(201).send(engine.leaseAcquire(req.params.app, req.params.id, req.body, req.query, nonceOf(req))),
  );
  route('DELETE', `${MACHINE_BASE}/lease`, 'lease_release', async (req) => engine.leaseRelease(req.params.app, req.params.id, nonceOf(req)));
  route('GET', `${MACHINE_BASE}/events`, 'events', async (req) => engine.events(req.params.app, req.params.id, req.query.limit));
  route('GET', `${MACHINE_BASE}/versions`, 'versions', async (req) => engine.versions(req.params.app, req.params.id));
  route('GET', `${MACHINE_BASE}/metadata`, 'metadata_get', async (req) => engine.metadataGet(req.params.app, req.params.id));
  route('PUT', `${MACHINE_BASE}/metadata`, 'metadata_replace', async (req, reply) => {
    engine.metadataReplace(req.params.app, req.params.id, req.body, false);
    return reply.code(204).send();
  });
  route('PATCH', `${MACHINE_BASE}/metadata`, 'metadata_replace', async (req, reply) => {
    engine.metadataReplace(req.params.app, req.params.id, req.body, true);
    return reply.code(204).send();
  });
  route('GET', `${MACHINE_BASE}/metadata/:key`, 'metadata_get', async (req) => engine.metadataGetKey(req.params.app, req.params.id, req.params.key));
  route('POST', `${MACHINE_BASE}/metadata/:key`, 'metadata_set', async (req, reply) => {
    engine.metadataSet(req.params.app, req.params.id, req.params.key, req.body);
    return reply.code(204).send();
  });
  route('DELETE', `${MACHINE_BASE}/metadata/:key`, 'metadata_delete', async (req, reply) => {
    engine.metadataDelete(req.params.app, req.params.id, req.params.key);
    return reply.code(204).send();
  });
  // Served only as far as validation goes: running commands "inside" a machine would run them on this host.
  route('POST', `${MACHINE_BASE}/exec`, 'exec', async (req, reply) => {
    engine.machine(req.params.app, req.params.id);
    engine.validateBody('Machines_exec', req.body);
    return reply.code(501).send({ error: 'unimplemented: exec is not simulated by fly-sim (the body was valid)' });
  });
  route('GET', `${MACHINE_BASE}/ps`, 'ps', async (req, reply) => {
    engine.machine(req.params.app, req.params.id);
    return reply.code(501).send({ error: 'unimplemented: ps is not simulated by fly-sim' });
  });

  // --- sim-only: machine output (real Fly: `flyctl logs` / NATS) -----------------------------------------------------
  route('GET', `${MACHINE_BASE}/logs`, 'logs', async (req, reply) => {
    const m = engine.machine(req.params.app, req.params.id);
    // format: text (default, flyctl-like prefix), raw (the line only), ndjson/json (one object per line)
    const format = String(req.query.format ?? 'text');
    if (!['text', 'raw', 'json', 'ndjson'].includes(format)) {
      return reply.code(400).send({ error: `invalid format "${format}": one of text, raw, ndjson` });
    }
    const json = format === 'json' || format === 'ndjson';
    const tailRaw = Number(req.query.tail);
    const lines = engine.logs(m).tail(Number.isInteger(tailRaw) && tailRaw >= 0 ? tailRaw : undefined);
    const fmt = (l: LogLine) =>
      json
        ? `${JSON.stringify({ timestamp: new Date(l.timestamp).toISOString(), stream: l.stream, message: l.message, instance: l.instance, machine_id: m.id, region: m.region })}\n`
        : format === 'raw'
          ? `${l.message}\n`
          : `${new Date(l.timestamp).toISOString()} app[${m.id}] ${m.region} [${l.stream === 'stderr' ? 'error' : 'info'}] ${l.message}\n`;
    const type = json ? 'application/x-ndjson' : 'text/plain; charset=utf-8';
    if (!truthyQuery(req.query.follow)) return reply.type(type).send(lines.map(fmt).join(''));
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'fly-request-id': String(reply.getHeader('fly-request-id') ?? '') });
    res.socket?.setNoDelay(true);
    res.flushHeaders();
    for (const l of lines) res.write(fmt(l));
    const unsub = engine.logs(m).subscribe((l) => res.write(fmt(l)));
    res.once('close', unsub);
  });

  // --- admin (sim-only) --------------------------------------------------------------------------------------------
  const admin = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, handler: (req: FastifyRequest<{ Params: { id: string }; Querystring: Record<string, Json>; Body: Json }>, reply: FastifyReply) => unknown) => {
    app.route({ method, url, config: { action: 'admin' } satisfies RouteConfig, handler: handler as never });
  };
  const settings = () => ({
    rateLimits: engine.rateLimitsEnabled,
    rateLimitConfig: engine.rateLimiter.config ?? FLY_RATE_LIMITS,
    timing: { ...engine.timing },
  });
  admin('GET', '/__sim', async () => ({
    url: sim.url,
    proxyUrl: sim.proxyUrl,
    apps: engine.appNames(),
    machines: sim.machines(),
    faults: engine.faults.list(),
    settings: settings(),
  }));
  admin('GET', '/__sim/machines', async () => sim.machines());
  admin('GET', '/__sim/faults', async () => engine.faults.list());
  admin('POST', '/__sim/faults', async (req, reply) => {
    const b = req.body;
    const specs: unknown[] = Array.isArray(b) ? b : isPlainObject(b) && Array.isArray(b.faults) ? b.faults : [b];
    try {
      specs.forEach((s) => validateFaultSpec(s));
    } catch (e) {
      return reply.code(400).send({ error: (e as Error).message });
    }
    const ids = specs.map((s) => engine.faults.add(s as FaultSpec));
    return reply.code(201).send({ ids, faults: engine.faults.list() });
  });
  admin('DELETE', '/__sim/faults', async () => {
    engine.faults.clear();
    return { ok: true };
  });
  admin('DELETE', '/__sim/faults/:id', async (req) => {
    engine.faults.clear(Number(req.params.id));
    return { ok: true };
  });
  admin('GET', '/__sim/requests', async (req) => {
    const since = Number(req.query.since ?? 0);
    return requestLog.filter((e) => e.seq > since);
  });
  admin('DELETE', '/__sim/requests', async () => {
    requestLog.length = 0;
    return { ok: true };
  });
  admin('GET', '/__sim/settings', async () => settings());
  admin('PATCH', '/__sim/settings', async (req, reply) => {
    const b = req.body ?? {};
    if (!isPlainObject(b)) return reply.code(400).send({ error: 'body must be an object: {"rateLimits": bool, "timing": {…}}' });
    if (b.rateLimits !== undefined) {
      if (typeof b.rateLimits !== 'boolean') return reply.code(400).send({ error: 'rateLimits must be a boolean' });
      sim.setRateLimits(b.rateLimits);
    }
    if (b.timing !== undefined) {
      if (!isPlainObject(b.timing)) return reply.code(400).send({ error: 'timing must be an object' });
      for (const [k, v] of Object.entries(b.timing)) {
        if (!(k in engine.timing)) return reply.code(400).send({ error: `unknown timing ${k}; one of ${Object.keys(engine.timing).join(', ')}` });
        if (typeof v !== 'number' || v < 0) return reply.code(400).send({ error: `timing.${k} must be a number >= 0` });
      }
      Object.assign(engine.timing, b.timing);
    }
    return settings();
  });

  await app.listen({ host, port: opts.port ?? 0 });
  const addr = app.server.address();
  const apiPort = typeof addr === 'object' && addr ? addr.port : opts.port;
  const hostForUrl = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let proxy;
  try {
    proxy = await startProxy(engine, host, opts.proxyPort ?? 0);
  } catch (e) {
    await app.close();
    await engine.close();
    throw e;
  }
  const url = `http://${hostForUrl}:${apiPort}`;
  const proxyUrl = proxy.url.replace('//0.0.0.0:', '//127.0.0.1:');

  const faults: FaultController = {
    add: (spec) => engine.faults.add(spec),
    list: () => engine.faults.list(),
    clear: (id) => engine.faults.clear(id),
    rateLimit: (action, count = 1, scope = {}) => engine.faults.add({ kind: 'rate_limit', action, count, ...scope }),
    serverError: (action, count = 1, status = 503, scope = {}) => engine.faults.add({ kind: 'server_error', action, count, status, ...scope }),
    lostResponse: (action, count = 1, status = 503, scope = {}) => engine.faults.add({ kind: 'lost_response', action, count, status, ...scope }),
    createTimeout: (count = 1, o = {}) => engine.faults.add({ kind: 'create_timeout', count, ...o }),
    insufficientCapacity: (region, count) => engine.faults.add({ kind: 'insufficient_capacity', region, count: count ?? null }),
    insufficientMemory: (action = 'create', count = 1, scope = {}) => engine.faults.add({ kind: 'insufficient_memory', action, count, ...scope }),
    unpullable: (image) => engine.faults.add({ kind: 'unpullable_image', image }),
    slowBoot: (ms) => void engine.faults.add({ kind: 'slow_boot', ms }),
  };

  let closing: Promise<void> | undefined;
  const sim: FlySim = {
    url,
    proxyUrl,
    token: tokens[0],
    env: { FLY_FLAPS_BASE_URL: url, FLY_API_TOKEN: tokens[0], FLY_PROXY_URL: proxyUrl },
    engine,
    faults,
    timing: engine.timing,
    machines: (a) => engine.allMachines(a).map((m) => engine.snapshot(m)),
    machine: (id) => {
      const m = engine.machineById(id);
      return m ? engine.snapshot(m) : undefined;
    },
    apps: () => engine.appNames(),
    requests: (f = {}) =>
      requestLog.filter(
        (e) =>
          (!f.method || e.method === f.method.toUpperCase()) &&
          (!f.action || e.action === f.action) &&
          (!f.app || e.app === f.app) &&
          (!f.machineId || e.machineId === f.machineId),
      ),
    clearRequests: () => {
      requestLog.length = 0;
    },
    logs: (id) => {
      const m = engine.machineById(id);
      return m ? engine.logs(m).tail() : [];
    },
    waitForState: (id, statesIn, timeoutMs = 30_000) => {
      const states = new Set<string>(([] as string[]).concat(statesIn));
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = engine.machineById(id);
          if (m && states.has(m.state)) {
            done();
            resolve(engine.snapshot(m));
            return true;
          }
          return false;
        };
        const listener = (t: { id: string }) => {
          if (t.id === id) check();
        };
        const timer = setTimeout(() => {
          done();
          const m = engine.machineById(id);
          reject(new Error(`machine ${id} did not reach ${[...states].join('|')} within ${timeoutMs} ms (it is ${m?.state ?? 'gone'})`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          transitionListeners.delete(listener);
        };
        transitionListeners.add(listener);
        check();
      });
    },
    pids: () => engine.pids(),
    setRateLimits: (on) => {
      engine.rateLimitsEnabled = on;
      engine.rateLimiter.reset();
    },
    close: () => {
      closing ??= (async () => {
        await engine.close();
        await Promise.all([app.close(), proxy.close()]);
      })();
      return closing;
    },
  };
  return sim;
}

function authorized(header: string | undefined, tokens: string[]): boolean {
  if (!header) return false;
  const m = /^(Bearer|FlyV1)\s+(.+)$/i.exec(header.trim());
  return !!m && tokens.includes(m[2].trim());
}
