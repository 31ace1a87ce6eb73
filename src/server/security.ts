import crypto from 'node:crypto';
import helmet from 'helmet';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TokenBuckets } from '../util/token-bucket.js';
import type { Config } from '../core/config.js';
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

/** A refusal by the rate limiter: the error to send, and Retry-After in seconds. */
export interface Limited {
  error: ApiError;
  retryAfterS: number;
}

/**
 * What every request goes through, shared by the Fastify hooks and the A2A proxy's own front door (which runs
 * outside Fastify's hook chain for speed, see src/server/a2a/proxy.ts): the security headers, who the caller is,
 * their rate-limit budget, and whether they may call a path.
 */
export class Guard {
  /** helmet's headers, computed once (helmet builds them per request, re-parsing the CSP: measurable on the proxy). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The same, flat (name, value, name, value…), for `writeHead`. */
  readonly flatHeaders: readonly string[];
  private readonly buckets = new TokenBuckets(() => Date.now());
  private readonly prune: NodeJS.Timeout;
  /** The admin token's digest, so each request hashes only what it presents (compared in constant time). */
  private readonly adminDigest: Buffer | undefined;

  constructor(
    private readonly config: Config,
    private readonly svc: WorkspaceService,
  ) {
    this.adminDigest = config.adminToken ? digest(config.adminToken) : undefined;
    this.headers = securityHeaders();
    this.flatHeaders = this.headers.flat();
    this.prune = setInterval(() => this.buckets.prune(), 60_000).unref();
  }

  close(): void {
    clearInterval(this.prune);
  }

  /** Who presents `token` (nobody: open on a loopback platform without an admin token, else anonymous). */
  async identify(token: string | undefined): Promise<Caller> {
    if (!token) return this.config.adminToken ? { kind: 'anonymous' } : { kind: 'open' };
    if (this.adminDigest && crypto.timingSafeEqual(digest(token), this.adminDigest)) return { kind: 'admin' };
    const ws = await this.svc.tokens.workspaceForToken(token);
    if (ws) return { kind: 'workspace', workspaceId: ws.id, workspace: ws };
    return { kind: 'invalid' };
  }

  /**
   * Counts a request against its budget: per token (per client address when there is none), at most the limit a
   * minute, as a token bucket (the limit at once, refilled evenly over the minute). Undefined: go ahead.
   */
  limit(caller: Caller, ip: string | undefined): Limited | undefined {
    const max = caller.kind === 'workspace' ? this.config.limits.agentRatePerMin : this.config.limits.ratePerMin;
    if (max <= 0) return undefined;
    const key = caller.kind === 'admin' ? 'admin' : caller.kind === 'workspace' ? `ws:${caller.workspaceId}` : `ip:${ip}`;
    const waitMs = this.buckets.take(key, { ratePerSec: max / 60, burst: max });
    if (waitMs === 0) return undefined;
    const retryAfterS = Math.max(1, Math.ceil(waitMs / 1000));
    return { retryAfterS, error: new ApiError(429, 'rate_limited', `too many requests: at most ${max} a minute for this token; retry in ${retryAfterS} s`) };
  }

  /** Why this caller may not call this admin-API path (the agent routes are checked by the registry itself). */
  refusal(caller: Caller, method: string, path: string): ApiError | undefined {
    if (caller.kind === 'invalid') return new ApiError(401, 'invalid_token', 'the bearer token is not valid (wrong, revoked, or for another platform)');
    if (caller.kind === 'anonymous') return new ApiError(401, 'unauthorized', 'this API needs Authorization: Bearer <MOLECULE_ADMIN_TOKEN>');
    if (caller.kind === 'workspace' && !workspaceTokenRoute(method, path)) {
      return new ApiError(403, 'forbidden', 'a workspace token is accepted only by the registry, POST /workspaces/:id/a2a, and A2A discovery (agent cards, GET /agents)');
    }
    return undefined;
  }
}

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();

/** The headers helmet would set, read off it once. */
function securityHeaders(): Array<[string, string]> {
  const middleware = helmet({
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
  const set = new Map<string, string>();
  const res = {
    setHeader: (name: string, value: string | number | readonly string[]) => set.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => set.delete(name.toLowerCase()),
  };
  let called = false;
  middleware({} as any, res as any, () => (called = true));
  if (!called) throw new Error('helmet did not finish synchronously: its headers cannot be precomputed');
  return [...set];
}

/**
 * Security headers, authentication and rate limits, installed on the root instance before any route, in one hook:
 * 0. the security headers (a strict CSP for the UI) on every answer;
 * 1. identify the caller;
 * 2. rate-limit per token (per client address when there is none);
 * 3. enforce: 401 without valid credentials, 403 for valid ones that may not do this (410 for a removed
 *    workspace's token on the agent routes).
 * All of it runs in onRequest, before the body is read and long before the schemas validate it: a caller who may
 * not use a route learns nothing about what the route expects. The A2A proxy does the same itself, with the same
 * Guard, in front of Fastify.
 */
export async function installSecurity(app: FastifyInstance<any, any, any, any, any>, deps: SecurityDeps & { guard: Guard }): Promise<void> {
  const { svc, guard } = deps;
  const isPublic = (path: string) => OPEN_PATHS.has(path) || (deps.isPublicPath?.(path) ?? false);

  app.decorateRequest('caller', null as any);
  app.addHook('onRequest', async (req, reply) => {
    // Headers first, so refusals (401, 403, 429) carry them too.
    for (const [name, value] of guard.headers) reply.raw.setHeader(name, value);
    const path = req.url.split('?')[0]!;
    if (req.method === 'POST' && A2A_PATH.test(path)) return; // the proxy guards itself, with the same Guard
    req.caller = await guard.identify(bearer(req.headers.authorization) ?? queryToken(req));
    // Health probes (load balancers, orchestrators) must not be starved by a busy client sharing their address.
    if (path !== '/healthz') {
      const limited = guard.limit(req.caller, req.ip);
      if (limited) {
        reply.header('retry-after', String(limited.retryAfterS));
        throw limited.error;
      }
    }
    if (AGENT_PATHS.has(path)) {
      // Refused here with the registry's own answers (401 missing/invalid, 403 wrong kind of token, 410 removed).
      if (req.caller.kind !== 'workspace') await svc.tokens.workspaceOf(bearer(req.headers.authorization));
      return;
    }
    if (isPublic(path)) return;
    const refused = guard.refusal(req.caller, req.method, path);
    if (refused) throw refused;
  });
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
