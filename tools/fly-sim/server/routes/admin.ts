/**
 * Sim-only test endpoints under /__sim: what the FlySim handle offers in process, for tests and people that
 * drive the simulator over HTTP (faults, request log, settings). They take the API token like every route, but
 * faults, rate limits and the request log pass them by: they are not part of Fly's API.
 */
import type { FastifyPluginAsync } from 'fastify';
import { validateFaultSpec, type FaultSpec } from '../../faults.js';
import { FLY_RATE_LIMITS } from '../../ratelimit.js';
import { isPlainObject } from '../../util.js';
import type { RequestLog } from '../request-log.js';
import { route, type RouteDeps } from '../route.js';
import type { FlySim } from '../types.js';

export interface AdminDeps extends RouteDeps {
  requestLog: RequestLog;
  /** The handle, built after the routes are (it needs the listening URLs). */
  sim: () => FlySim;
}

export const adminRoutes: FastifyPluginAsync<AdminDeps> = async (app, { engine, requestLog, sim }) => {
  const settings = () => ({
    rateLimits: engine.rateLimitsEnabled,
    rateLimitConfig: engine.rateLimiter.config ?? FLY_RATE_LIMITS,
    timing: { ...engine.timing },
  });
  route(app, 'GET', '/__sim', 'admin', async () => ({
    url: sim().url,
    proxyUrl: sim().proxyUrl,
    apps: engine.appNames(),
    machines: sim().machines(),
    faults: engine.faults.list(),
    settings: settings(),
  }));
  route(app, 'GET', '/__sim/machines', 'admin', async () => sim().machines());
  route(app, 'GET', '/__sim/faults', 'admin', async () => engine.faults.list());
  route(app, 'POST', '/__sim/faults', 'admin', async (req, reply) => {
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
  route(app, 'DELETE', '/__sim/faults', 'admin', async () => {
    engine.faults.clear();
    return { ok: true };
  });
  route(app, 'DELETE', '/__sim/faults/:id', 'admin', async (req) => {
    engine.faults.clear(Number(req.params.id));
    return { ok: true };
  });
  route(app, 'GET', '/__sim/requests', 'admin', async (req) => requestLog.since(Number(req.query.since ?? 0)));
  route(app, 'DELETE', '/__sim/requests', 'admin', async () => {
    requestLog.clear();
    return { ok: true };
  });
  route(app, 'GET', '/__sim/settings', 'admin', async () => settings());
  route(app, 'PATCH', '/__sim/settings', 'admin', async (req, reply) => {
    const b = req.body ?? {};
    if (!isPlainObject(b)) return reply.code(400).send({ error: 'body must be an object: {"rateLimits": bool, "timing": {…}}' });
    if (b.rateLimits !== undefined) {
      if (typeof b.rateLimits !== 'boolean') return reply.code(400).send({ error: 'rateLimits must be a boolean' });
      sim().setRateLimits(b.rateLimits);
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
};
