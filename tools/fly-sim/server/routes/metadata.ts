/** Machine metadata: the whole map (PUT replaces, PATCH merges) or one key. Writes answer 204 as on Fly. */
import type { FastifyPluginAsync } from 'fastify';
import { MACHINE_BASE, route, type RouteDeps } from '../route.js';

const BASE = `${MACHINE_BASE}/metadata`;

export const metadataRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', BASE, 'metadata_get', async (req) => engine.metadataGet(req.params.app, req.params.id));
  for (const [method, merge] of [['PUT', false], ['PATCH', true]] as const) {
    route(app, method, BASE, 'metadata_replace', async (req, reply) => {
      engine.metadataReplace(req.params.app, req.params.id, req.body, merge);
      return reply.code(204).send();
    });
  }
  route(app, 'GET', `${BASE}/:key`, 'metadata_get', async (req) => engine.metadataGetKey(req.params.app, req.params.id, req.params.key));
  route(app, 'POST', `${BASE}/:key`, 'metadata_set', async (req, reply) => {
    engine.metadataSet(req.params.app, req.params.id, req.params.key, req.body);
    return reply.code(204).send();
  });
  route(app, 'DELETE', `${BASE}/:key`, 'metadata_delete', async (req, reply) => {
    engine.metadataDelete(req.params.app, req.params.id, req.params.key);
    return reply.code(204).send();
  });
};
