/** Machines: list, create, show, update, destroy, the lifecycle actions, events and versions. */
import type { FastifyPluginAsync } from 'fastify';
import { truthyQuery } from '../../util.js';
import { MACHINE_BASE, nonceOf, route, type RouteDeps } from '../route.js';

export const machineRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', '/v1/apps/:app/machines', 'list', async (req) => engine.list(req.params.app, req.query));
  route(app, 'POST', '/v1/apps/:app/machines', 'create', async (req, reply) => {
    const r = engine.create(req.params.app, req.body);
    if (r.timeout) {
      if (r.timeout.delayMs > 0) await new Promise((res) => setTimeout(res, r.timeout!.delayMs));
      return reply.code(408).send({ error: 'deadline_exceeded: request timed out (the machine may have been created)' });
    }
    return r.machine;
  });
  route(app, 'GET', MACHINE_BASE, 'get', async (req) => engine.machineJson(engine.machine(req.params.app, req.params.id)));
  route(app, 'POST', MACHINE_BASE, 'update', async (req) => engine.update(req.params.app, req.params.id, req.body, nonceOf(req)));
  route(app, 'DELETE', MACHINE_BASE, 'destroy', async (req) =>
    engine.destroy(req.params.app, req.params.id, truthyQuery(req.query.force) || truthyQuery(req.query.kill), nonceOf(req)),
  );
  route(app, 'POST', `${MACHINE_BASE}/start`, 'start', async (req) => engine.start(req.params.app, req.params.id, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/stop`, 'stop', async (req) => engine.stop(req.params.app, req.params.id, req.body, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/suspend`, 'suspend', async (req) => engine.suspend(req.params.app, req.params.id, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/restart`, 'restart', async (req) => engine.restart(req.params.app, req.params.id, req.query, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/signal`, 'signal', async (req) => engine.signal(req.params.app, req.params.id, req.body, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/cordon`, 'cordon', async (req) => engine.cordon(req.params.app, req.params.id, true, nonceOf(req)));
  route(app, 'POST', `${MACHINE_BASE}/uncordon`, 'uncordon', async (req) => engine.cordon(req.params.app, req.params.id, false, nonceOf(req)));
  route(app, 'GET', `${MACHINE_BASE}/events`, 'events', async (req) => engine.events(req.params.app, req.params.id, req.query.limit));
  route(app, 'GET', `${MACHINE_BASE}/versions`, 'versions', async (req) => engine.versions(req.params.app, req.params.id));
  // Served only as far as validation goes: running commands "inside" a machine would run them on this host.
  route(app, 'POST', `${MACHINE_BASE}/exec`, 'exec', async (req, reply) => {
    engine.machine(req.params.app, req.params.id);
    engine.validateBody('Machines_exec', req.body);
    return reply.code(501).send({ error: 'unimplemented: exec is not simulated by fly-sim (the body was valid)' });
  });
  route(app, 'GET', `${MACHINE_BASE}/ps`, 'ps', async (req, reply) => {
    engine.machine(req.params.app, req.params.id);
    return reply.code(501).send({ error: 'unimplemented: ps is not simulated by fly-sim' });
  });
};
