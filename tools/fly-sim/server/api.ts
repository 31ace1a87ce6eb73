/**
 * The Machines API's Fastify instance: body parsing, and the hooks that make every route behave like Fly's
 * (token, fault injection, rate limits, lost responses) and land in the request log. Routes come as plugins;
 * the hooks and handlers are set before they are registered, so every route inherits them.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { ApiError, type Engine } from '../engine/index.js';
import { APP_LEVEL_ACTIONS, statusFaultResponse, type FaultSpec } from '../faults.js';
import { newRequestId } from '../util.js';
import type { RequestLog } from './request-log.js';
import type { RouteConfig } from './route.js';
import { adminRoutes } from './routes/admin.js';
import { appRoutes } from './routes/apps.js';
import { leaseRoutes } from './routes/leases.js';
import { logRoutes } from './routes/logs.js';
import { machineRoutes } from './routes/machines.js';
import { metadataRoutes } from './routes/metadata.js';
import { secretRoutes } from './routes/secrets.js';
import { waitRoutes } from './routes/wait.js';
import type { FlySim } from './types.js';

type RawBodyRequest = FastifyRequest & { rawBodyText?: string };

export interface ApiDeps {
  engine: Engine;
  tokens: string[];
  requestLog: RequestLog;
  sim: () => FlySim;
  logger?: boolean | Record<string, unknown>;
}

export function buildApi({ engine, tokens, requestLog, sim, logger }: ApiDeps): FastifyInstance {
  const app: FastifyInstance = Fastify({
    logger: (logger ?? false) as boolean,
    forceCloseConnections: true,
    return503OnClosing: false,
  });

  // Bodies: JSON whatever the content type (Go's server does not look at it); empty → no body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    const text = String(body);
    (req as RawBodyRequest).rawBodyText = text;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new ApiError(400, { error: `invalid JSON body: ${(e as Error).message}` }), undefined);
    }
  });

  const started = new WeakMap<FastifyRequest, number>();
  const lostAnswers = new WeakMap<FastifyRequest, FaultSpec>();
  const faultReply = (fault: FaultSpec) => {
    const r = statusFaultResponse(fault);
    return { ...r, payload: typeof r.body === 'string' ? r.body : JSON.stringify(r.body) };
  };

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
    const action = (req.routeOptions.config as RouteConfig)?.action;
    if (!action || action === 'logs' || action === 'admin') return;
    const params = req.params as { app?: string; id?: string };
    const fault = engine.faults.take(['status', 'rate_limit', 'server_error'], { action, app: params.app, machine: params.id });
    if (fault) {
      const r = faultReply(fault);
      return reply.code(r.status).type(r.contentType).send(r.payload);
    }
    if (engine.rateLimitsEnabled) {
      const scope = action === 'regions' || action === 'apps_list' ? 'global' : APP_LEVEL_ACTIONS.has(action) ? `app:${params.app}` : `machine:${params.app}/${params.id}`;
      if (!engine.rateLimiter.take(action, scope)) return reply.code(429).send({ error: 'rate limit exceeded' });
    }
    // The handler runs (the change happens); onSend then swaps its answer for the failure.
    const lost = engine.faults.take(['lost_response'], { action, app: params.app, machine: params.id });
    if (lost) lostAnswers.set(req, lost);
  });

  app.addHook('onSend', async (req, reply, payload) => {
    const lost = lostAnswers.get(req);
    if (!lost) return payload;
    lostAnswers.delete(req);
    const r = faultReply(lost);
    reply.code(r.status).type(r.contentType);
    return r.payload;
  });

  app.addHook('onResponse', async (req, reply) => {
    const cfg = req.routeOptions.config as RouteConfig;
    if (cfg?.action === 'admin') return;
    const params = (req.params ?? {}) as { app?: string; id?: string };
    const nonce = req.headers['fly-machine-lease-nonce'];
    const rawText = (req as RawBodyRequest).rawBodyText;
    requestLog.add({
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
    });
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, _req, reply) => {
    if (error instanceof ApiError) return reply.code(error.status).send(error.body);
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    return reply.code(status).send({ error: status === 500 ? `internal error: ${error.message}` : error.message });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `not found: ${req.method} ${req.url.split('?')[0]} is not a route of the Machines API (fly-sim)` });
  });

  for (const plugin of [appRoutes, secretRoutes, machineRoutes, waitRoutes, leaseRoutes, metadataRoutes, logRoutes]) {
    void app.register(plugin, { engine });
  }
  void app.register(adminRoutes, { engine, requestLog, sim });
  return app;
}

function authorized(header: string | undefined, tokens: string[]): boolean {
  if (!header) return false;
  const m = /^(Bearer|FlyV1)\s+(.+)$/i.exec(header.trim());
  return !!m && tokens.includes(m[2].trim());
}
