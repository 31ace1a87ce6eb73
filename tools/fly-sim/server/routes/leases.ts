/** Machine leases. Acquire answers 201 (also when it extends a lease the caller already holds). */
import type { FastifyPluginAsync } from 'fastify';
import { MACHINE_BASE, nonceOf, route, type RouteDeps } from '../route.js';

const BASE = `${MACHINE_BASE}/lease`;

export const leaseRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', BASE, 'lease_get', async (req) => engine.leaseGet(req.params.app, req.params.id));
  route(app, 'POST', BASE, 'lease_acquire', async (req, reply) =>
    reply.code(201).send(engine.leaseAcquire(req.params.app, req.params.id, req.body, req.query, nonceOf(req))),
  );
  route(app, 'DELETE', BASE, 'lease_release', async (req) => engine.leaseRelease(req.params.app, req.params.id, nonceOf(req)));
};
