/**
 * GET …/wait, a long poll. A client that goes away aborts the wait, so the machine does not keep a waiter for
 * a request nobody will read (and the request log shows 499, as nginx would).
 */
import type { FastifyPluginAsync } from 'fastify';
import { MACHINE_BASE, route, type RouteDeps } from '../route.js';

export const waitRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', `${MACHINE_BASE}/wait`, 'wait', async (req, reply) => {
    const ac = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) ac.abort();
    });
    const r = await engine.wait(req.params.app, req.params.id, req.query, ac.signal);
    if (ac.signal.aborted) return reply.code(499).send(r.body);
    return reply.code(r.status).send(r.body);
  });
};
