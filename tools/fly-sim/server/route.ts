/**
 * What every route module shares. Each route names its action in its config: the hooks in api.ts key auth,
 * faults, rate limits and the request log on it, so a route without an action is treated as unknown.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Engine } from '../engine/index.js';
import type { Action } from '../faults.js';

export type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface RouteConfig {
  action?: Action | 'logs' | 'admin';
}

/** Options every route plugin is registered with. */
export interface RouteDeps {
  engine: Engine;
}

export const MACHINE_BASE = '/v1/apps/:app/machines/:id';

type Params = { app: string; id: string; key: string };
export type RouteRequest = FastifyRequest<{ Params: Params; Querystring: Record<string, Json>; Body: Json }>;
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export function route(
  app: FastifyInstance,
  method: Method,
  url: string,
  action: RouteConfig['action'],
  handler: (req: RouteRequest, reply: FastifyReply) => unknown,
): void {
  app.route({ method, url, config: { action } satisfies RouteConfig, handler: handler as never });
}

/** The lease nonce a mutation carries (fly-machine-lease-nonce), trimmed; undefined when absent or empty. */
export function nonceOf(req: FastifyRequest): string | undefined {
  const n = req.headers['fly-machine-lease-nonce'];
  const v = Array.isArray(n) ? n[0] : n;
  return v ? v.trim() : undefined;
}
