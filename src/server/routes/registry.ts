import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Workspace } from '../../core/types.js';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';
import { bearer } from '../security.js';
import { z } from 'zod';
import { ErrorBody, HeartbeatBody, RegisterBody } from '../schemas.js';

const RegistryResponse = z.object({ workspace_id: z.string(), status: z.string(), heartbeat_interval_s: z.number() });

const tags = ['registry (agent-facing)'];

export function registryRoutes(deps: Pick<AppDeps, 'svc'>): FastifyPluginAsync {
  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();
    app.post(
      '/registry/register',
      {
        schema: {
          tags,
          summary:
            'An agent announces itself with its workspace token; the workspace becomes ready. The url must be an address of the instance its backend started (403 agent_url_mismatch)',
          body: RegisterBody,
          response: { 200: RegistryResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody, 410: ErrorBody, 503: ErrorBody },
        },
      },
      async (req) => deps.svc.registry.register(bearer(req.headers.authorization), req.body, resolved(req)),
    );
    app.post(
      '/registry/heartbeat',
      {
        schema: {
          tags,
          summary: 'Liveness and load from the agent, sent on its own timer',
          body: HeartbeatBody,
          response: { 200: RegistryResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 410: ErrorBody },
        },
      },
      async (req) => deps.svc.registry.heartbeat(bearer(req.headers.authorization), req.body, resolved(req)),
    );
  };
}

/** The workspace the caller check already resolved this request's bearer token to, so it is not looked up twice. */
function resolved(req: FastifyRequest): Workspace | undefined {
  const c = req.caller;
  return c?.kind === 'workspace' && bearer(req.headers.authorization) ? c.workspace : undefined;
}
