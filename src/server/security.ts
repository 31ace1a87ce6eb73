import fastifyRateLimit from '@fastify/rate-limit';
import helmet from 'helmet';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../core/config.js';
import { safeEqual } from '../core/crypto.js';
import { ApiError } from '../core/errors.js';
import type { Workspace } from '../core/types.js';
import type { WorkspaceService } from '../core/workspaces.js';

/**
 * Who is calling. `admin`: the admin token. `open`: no admin token is configured (loopback only) and none was
 * needed. `workspace`: an agent with its own workspace token, which only the registry and the A2A proxy accept.
 * `anonymous`: nothing presented while an admin token is configured.
 */
export type Caller =
  | { kind: 'admin' }
  | { kind: 'open' }
  | { kind: 'workspace'; workspaceId: string; workspace: Workspace }
  | { kind: 'anonymous' }
  | { kind: 'invalid' };

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

/** Paths that need no credentials: probes need health. */
const OPEN_PATHS = new Set(['/healthz']);
/** The agent-facing routes: never the admin token, always a workspace token, whatever the admin-token setting. */
const AGENT_PATHS = new Set(['/registry/register', '/registry/heartbeat']);
/** The A2A proxy: the one admin-API route a workspace token may call. */
export const A2A_PATH = /^\/workspaces\/[^/]+\/a2a$/;
/** A2A discovery (agent cards and the catalog): GETs a workspace token may make too, within its family. */
export const DISCOVERY_PATH = /^(\/agents|\/workspaces\/[^/]+\/(a2a\/)?\.well-known\/agent-card\.json|\/workspaces\/[^/]+\/agent-card)$/;

/** What a workspace token may call besides the registry: the A2A proxy, and discovery. */
export function workspaceTokenRoute(method: string, path: string): boolean {
  return (method === 'POST' && A2A_PATH.test(path)) || ((method === 'GET' || method === 'HEAD') && DISCOVERY_PATH.test(path));
}

export interface SecurityDeps {
  config: Config;
  svc: WorkspaceService;
  /** Paths of the web UI's files: public, so the sign-in page loads before anyone has a token. */
  isPublicPath?: (path: string) => boolean;
}

/**
 * Security headers, authentication and rate limits, installed on the root instance before any route:
 * 0. helmet's headers (a strict CSP for the UI) on every answer;
 * 1. identify the caller (never throws, so the rate limiter can key on who it is);
 * 2. rate-limit per token (per client address when there is none);
 * 3. enforce: 401 without valid credentials, 403 for valid ones that may not do this (410 for a removed
 *    workspace's token on the agent routes).
 * All of it runs in onRequest, before the body is read and long before the schemas validate it: a caller who may
 * not use a route learns nothing about what the route expects.
 */
export async function installSecurity(app: FastifyInstance<any, any, any, any, any>, deps: SecurityDeps): Promise<void> {
  const { config, svc } = deps;
  const isPublic = (path: string) => OPEN_PATHS.has(path) || (deps.isPublicPath?.(path) ?? false);

  // Headers first, so refusals (401, 403, 429) carry them too. One helmet middleware, built once: the fastify
  // plugin rebuilds it (re-parsing the CSP) on every request, a measurable share of the A2A proxy's CPU.
  const headers = helmet({
    // The UI is served from this origin only, with no inline script; nothing may frame it.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    // Served over plain HTTP on loopback by default; HSTS belongs to the TLS terminator in front.
    strictTransportSecurity: false,
    crossOriginEmbedderPolicy: false,
  });
  app.addHook('onRequest', (req, reply, done) => headers(req.raw, reply.raw, () => done()));

  app.decorateRequest('caller', null as any);
  app.addHook('onRequest', async (req) => {
    req.caller = await identify(req, config, svc);
  });

  const off = (limit: number) => limit <= 0;
  // Not per route (route hooks run after instance hooks, i.e. after the auth check): one instance hook, in order.
  await app.register(fastifyRateLimit, {
    global: false,
    timeWindow: 60_000,
    keyGenerator: (req) => rateKey(req),
    max: (req) => (req.caller?.kind === 'workspace' ? config.limits.agentRatePerMin : config.limits.ratePerMin),
    // Health probes (load balancers, orchestrators) must not be starved by a busy client sharing their address.
    allowList: (req) =>
      req.url === '/healthz' || off(req.caller?.kind === 'workspace' ? config.limits.agentRatePerMin : config.limits.ratePerMin),
    errorResponseBuilder: (_req, ctx) =>
      new ApiError(429, 'rate_limited', `too many requests: at most ${ctx.max} a minute for this token; retry in ${ctx.after}`),
  });
  app.addHook('onRequest', app.rateLimit());

  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!;
    if (AGENT_PATHS.has(path)) {
      // Refused here with the registry's own answers (401 missing/invalid, 403 wrong kind of token, 410 removed).
      if (req.caller.kind !== 'workspace') await svc.tokens.workspaceOf(bearer(req.headers.authorization));
      return;
    }
    if (isPublic(path)) return;
    const c = req.caller;
    if (c.kind === 'invalid') throw new ApiError(401, 'invalid_token', 'the bearer token is not valid (wrong, revoked, or for another platform)');
    if (c.kind === 'anonymous') throw new ApiError(401, 'unauthorized', 'this API needs Authorization: Bearer <MOLECULE_ADMIN_TOKEN>');
    if (c.kind === 'workspace' && !workspaceTokenRoute(req.method, path)) {
      throw new ApiError(403, 'forbidden', 'a workspace token is accepted only by the registry, POST /workspaces/:id/a2a, and A2A discovery (agent cards, GET /agents)');
    }
  });
}

async function identify(req: FastifyRequest, config: Config, svc: WorkspaceService): Promise<Caller> {
  const token = bearer(req.headers.authorization) ?? queryToken(req);
  if (!token) return config.adminToken ? { kind: 'anonymous' } : { kind: 'open' };
  if (config.adminToken && safeEqual(token, config.adminToken)) return { kind: 'admin' };
  const ws = await svc.tokens.workspaceForToken(token);
  if (ws) return { kind: 'workspace', workspaceId: ws.id, workspace: ws };
  return { kind: 'invalid' };
}

function rateKey(req: FastifyRequest): string {
  const c = req.caller;
  if (c?.kind === 'admin') return 'admin';
  if (c?.kind === 'workspace') return `ws:${c.workspaceId}`;
  return `ip:${req.ip}`;
}

export function bearer(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return m?.[1];
}

/**
 * Browsers cannot set headers on EventSource or WebSocket, so GETs may carry `?token=`. It is taken out of the
 * query before validation (strict query schemas would refuse it) so no handler ever sees it.
 */
function queryToken(req: FastifyRequest): string | undefined {
  if (req.method !== 'GET') return undefined;
  const q = req.query as Record<string, unknown> | undefined;
  const t = q?.token;
  if (q && 'token' in q) delete q.token;
  return typeof t === 'string' && t ? t : undefined;
}
