/** App secrets (spec tag Secrets): names and digests come back, values only with show_secrets. */
import type { FastifyPluginAsync } from 'fastify';
import { route, type RouteDeps } from '../route.js';

const BASE = '/v1/apps/:app/secrets';

export const secretRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', BASE, 'secrets_list', async (req) => engine.secretsList(req.params.app, req.query));
  route(app, 'POST', BASE, 'secrets_update', async (req) => engine.secretsUpdate(req.params.app, req.body));
  route(app, 'GET', `${BASE}/:key`, 'secret_get', async (req) => engine.secretGet(req.params.app, req.params.key, req.query));
  route(app, 'POST', `${BASE}/:key`, 'secret_set', async (req, reply) => reply.code(201).send(engine.secretSet(req.params.app, req.params.key, req.body)));
  route(app, 'DELETE', `${BASE}/:key`, 'secret_delete', async (req) => engine.secretDelete(req.params.app, req.params.key));
};
