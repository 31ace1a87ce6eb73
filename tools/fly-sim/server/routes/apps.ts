/** Apps and the platform routes (spec tags Apps, Platform). */
import type { FastifyPluginAsync } from 'fastify';
import { route, type RouteDeps } from '../route.js';

export const appRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', '/v1/apps', 'apps_list', async (req) => engine.listApps(req.query.org_slug));
  route(app, 'POST', '/v1/apps', 'app_create', async (req, reply) => reply.code(201).send(engine.createApp(req.body)));
  route(app, 'GET', '/v1/apps/:app', 'app_get', async (req) => engine.appJson(engine.app(req.params.app)));
  route(app, 'DELETE', '/v1/apps/:app', 'app_delete', async (req, reply) => {
    await engine.deleteApp(req.params.app);
    return reply.code(202).send();
  });
  route(app, 'GET', '/v1/platform/regions', 'regions', async () => engine.regions());
};
