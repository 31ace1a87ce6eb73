import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';

export function healthRoutes(
  deps: Pick<AppDeps, 'version' | 'provisioner' | 'backendSelected' | 'store' | 'workspaces' | 'cluster' | 'config'> & { draining?: () => boolean },
): FastifyPluginAsync {
  return async (app) => {
    app.withTypeProvider<ZodTypeProvider>().get('/healthz', { schema: { tags: ['platform'], summary: 'Platform health, backend and workspace counts' } }, async (_req, reply) => {
      // Shutting down: 503, so balancers and health checks stop sending here while calls in flight finish.
      if (deps.draining?.()) {
        reply.code(503).header('connection', 'close');
        return { status: 'draining', version: deps.version, pid: process.pid, uptime_s: Math.round(process.uptime()) };
      }
      return {
        status: 'ok',
        version: deps.version,
        pid: process.pid,
        uptime_s: Math.round(process.uptime()),
        backend: { ...deps.provisioner.describe(), ...(deps.backendSelected ? { selected: deps.backendSelected } : {}) },
        database: { kind: deps.store.kind, location: deps.store.location },
        workspaces: await deps.workspaces.countByStatus(),
        cluster: await deps.cluster(),
        auth: deps.config.adminToken
          ? { admin_token: true, api: 'Authorization: Bearer <MOLECULE_ADMIN_TOKEN> required' }
          : { admin_token: false, api: `open on loopback (${deps.config.host}); set MOLECULE_ADMIN_TOKEN to require a token` },
      };
    });
  };
}
