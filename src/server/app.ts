import crypto from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Provisioner } from '../core/provisioner.js';
import type { ClusterView } from '../core/membership.js';
import type { Config } from '../core/config.js';
import { ApiError } from '../core/errors.js';
import type { EventBus } from '../core/events.js';
import type { SecretService } from '../core/secrets.js';
import type { WorkspaceService } from '../core/workspaces.js';
import type { Store } from '../store/db.js';
import type { WorkspaceStore } from '../core/ports.js';
import type { Metrics } from './metrics.js';
import { A2AProxy } from './a2a/proxy.js';
import { CallTraffic } from './a2a/traffic.js';
import { a2aRoutes } from './routes/a2a.js';
import { cardRoutes } from './routes/cards.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { metaRoutes } from './routes/meta.js';
import { registryRoutes } from './routes/registry.js';
import { secretRoutes } from './routes/secrets.js';
import { workspaceRoutes } from './routes/workspaces.js';
import { Guard, installSecurity } from './security.js';
import { isUiPath, uiRoutes } from './ui.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  store: Store;
  workspaces: WorkspaceStore;
  bus: EventBus;
  svc: WorkspaceService;
  secretService: SecretService;
  provisioner: Provisioner;
  metrics: Metrics;
  version: string;
  /** This replica's view of the cluster (replicas seen within the lease TTL, the reconciler's holder). */
  cluster: () => Promise<ClusterView>;
  /** Why this backend was chosen (CONTAINER_BACKEND, or what auto-selection found), for /healthz. */
  backendSelected?: string;
}

export type App = FastifyInstance<any, any, any, any, ZodTypeProvider> & {
  /** Serves a request that arrived elsewhere (the agent listener) exactly as the app's own server would. */
  serve(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Graceful shutdown, first half: from now on new requests get 503 (REST; the A2A proxy's JSON-RPC not-ready)
   * and /healthz answers 503 `draining`; resolves when the A2A calls and streams in flight are done, or after
   * `graceMs` (`drained: false`, `inFlight` still open). Event streams and log follows are not waited for.
   */
  drain(graceMs: number): Promise<{ drained: boolean; inFlight: number }>;
};

/** Each route plugin takes only the services it uses (a Pick of these). */
export async function buildApp(deps: AppDeps): Promise<App> {
  const guard = new Guard(deps.config, deps.svc);
  // Agent-to-agent calls become `a2a.calls` pulses (live views only, like heartbeat pulses).
  const traffic = new CallTraffic({ pulse: (id, data, type, at) => deps.bus.pulse(id, data, type, at) });
  const proxy = new A2AProxy({ svc: deps.svc, metrics: deps.metrics, config: deps.config, guard, logger: deps.logger, traffic });
  const app = Fastify({
    // The A2A proxy is served before Fastify's route stack: it is the hot path (see src/server/a2a/proxy.ts).
    serverFactory: (handler, options) => {
      const o = options as { http?: http.ServerOptions; keepAliveTimeout: number; requestTimeout: number; connectionTimeout: number };
      const server = http.createServer(o.http ?? {}, (req, res) => (A2AProxy.matches(req) ? proxy.handle(req, res) : handler(req, res)));
      // What Fastify sets on a server it makes itself.
      server.keepAliveTimeout = o.keepAliveTimeout;
      server.requestTimeout = o.requestTimeout;
      server.setTimeout(o.connectionTimeout);
      return server;
    },
    loggerInstance: deps.logger,
    // Heartbeats would drown the log; errors and lifecycle changes are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.config.limits.maxBodyBytes,
    // A client must send its whole request within this time (slow-loris); answers and streams are not limited.
    requestTimeout: deps.config.limits.requestTimeoutMs,
    http: { headersTimeout: Math.min(deps.config.limits.requestTimeoutMs, 60_000), connectionsCheckingInterval: Math.min(deps.config.limits.requestTimeoutMs, 30_000) / 2 } as any,
    // Event streams and log follows never end by themselves; shutdown must not wait for them.
    forceCloseConnections: true,
    // Never log or echo Authorization headers.
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler as any);
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}`, code: 'route_not_found' });
  });

  app.addHook('onRequest', async (req) => {
    (req as any).startedAt = process.hrtime.bigint();
  });
  // While draining for shutdown: everything but /healthz (which says so) is refused, and the connection closed.
  let draining = false;
  app.addHook('onRequest', async (req, reply) => {
    if (!draining || req.url === '/healthz' || req.url.startsWith('/healthz?')) return;
    reply.header('connection', 'close').header('retry-after', '1');
    return reply.code(503).send({ error: 'the platform is shutting down; retry (another replica answers)', code: 'shutting_down' });
  });
  app.decorate('drain', async (graceMs: number) => {
    draining = true;
    const drained = await proxy.drain(graceMs);
    return { drained, inFlight: proxy.inFlight };
  });
  // Before security: its hook marks upgrade requests, so a refused upgrade's socket is closed, not leaked.
  await app.register(fastifyWebsocket);
  await installSecurity(app, { config: deps.config, svc: deps.svc, isPublicPath: isUiPath, guard });
  app.decorate('serve', (req: IncomingMessage, res: ServerResponse) => (A2AProxy.matches(req) ? proxy.handle(req, res) : app.routing(req, res)));
  app.addHook('onClose', async () => {
    guard.close();
    traffic.close();
    await proxy.close();
  });
  app.addHook('onResponse', async (req, reply) => {
    const started = (req as any).startedAt as bigint | undefined;
    if (!started) return;
    const route = req.routeOptions.url ?? 'unmatched';
    deps.metrics.httpDuration.observe(
      { method: req.method, route, status: String(reply.statusCode) },
      Number(process.hrtime.bigint() - started) / 1e9,
    );
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Molecule platform API',
        version: deps.version,
        description: 'Provisions AI-agent workspaces on a pluggable backend and routes A2A JSON-RPC to them.',
      },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  await app.register(healthRoutes({ ...deps, draining: () => draining }));
  await app.register(workspaceRoutes(deps));
  await app.register(secretRoutes(deps));
  await app.register(registryRoutes(deps));
  await app.register(eventRoutes(deps));
  await app.register(a2aRoutes({ config: deps.config, proxy }));
  await app.register(cardRoutes(deps));
  await app.register(metaRoutes(deps));
  await app.register(uiRoutes);
  return app as App;
}


/** A bad record key is reported by zod as "Invalid key in record"; the key's own issue says what is wrong with it. */
function nestedMessage(v: { keyword?: string; params?: Record<string, unknown> }): string | undefined {
  const inner = v.keyword === 'invalid_key' ? v.params?.issues : undefined;
  if (!Array.isArray(inner) || inner.length === 0) return undefined;
  return inner.map((i: { message?: string }) => i.message).filter(Boolean).join('; ') || undefined;
}

/** Every error leaves as {error, code}. Caller mistakes are 4xx; only our own faults are 5xx. */
function errorHandler(this: FastifyInstance, err: FastifyError, req: any, reply: any) {
  if (err instanceof ApiError) {
    return reply.code(err.statusCode).send({ error: err.message, code: err.code, ...err.extra });
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = err.validationContext ?? 'request';
    const issues = err.validation.map((v) => {
      const path = (v.instancePath || '').replace(/^\//, '').replaceAll('/', '.');
      return `${where}${path ? `.${path}` : ''}: ${nestedMessage(v) ?? v.message}`;
    });
    return reply.code(400).send({ error: issues.join('; '), code: 'invalid_request', issues });
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return reply.code(413).send({ error: 'request body is too large', code: 'payload_too_large' });
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return reply.code(415).send({ error: 'send the body as application/json', code: 'unsupported_media_type' });
  }
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (err.statusCode === 400 && err instanceof SyntaxError) || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return reply.code(400).send({ error: `the body is not valid JSON: ${err.message}`, code: 'invalid_json' });
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return reply.code(err.statusCode).send({ error: err.message, code: (err.code ?? 'bad_request').toLowerCase() });
  }
  req.log.error({ err }, 'unhandled error');
  return reply.code(500).send({ error: 'internal error; see the platform log', code: 'internal' });
}
