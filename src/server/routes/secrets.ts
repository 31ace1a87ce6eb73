import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';
import { z } from 'zod';
import { ErrorBody, IdParams, SecretBody, SecretKeyParams, WorkspaceSecretParams } from '../schemas.js';

const SecretList = z.array(z.object({ key: z.string(), created_at: z.string(), updated_at: z.string() }));
const SecretPut = z.object({ key: z.string(), result: z.enum(['created', 'updated']) });
const NoContent = z.null().describe('no content');

const tags = ['secrets'];

/** Secrets are write-only (core/secrets.ts): values go in, only names and times come out. */
export function secretRoutes(deps: Pick<AppDeps, 'secretService'>): FastifyPluginAsync {
  const secrets = deps.secretService;
  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();
    app.get('/settings/secrets', { schema: { tags, summary: 'Names of the global secrets (every workspace gets them)', response: { 200: SecretList } } }, () => secrets.list('global'));
    app.put(
      '/settings/secrets/:key',
      { schema: { tags, summary: 'Set a global secret', params: SecretKeyParams, body: SecretBody, response: { 200: SecretPut, 400: ErrorBody } } },
      (req) => secrets.put('global', req.params.key, req.body.value),
    );
    app.delete(
      '/settings/secrets/:key',
      { schema: { tags, summary: 'Delete a global secret', params: SecretKeyParams, response: { 204: NoContent, 400: ErrorBody, 404: ErrorBody } } },
      async (req, reply) => {
        await secrets.delete('global', req.params.key);
        reply.code(204);
      },
    );
    app.get(
      '/workspaces/:id/secrets',
      { schema: { tags, summary: "Names of a workspace's secrets", params: IdParams, response: { 200: SecretList, 404: ErrorBody, 410: ErrorBody } } },
      (req) => secrets.list(req.params.id),
    );
    app.put(
      '/workspaces/:id/secrets/:key',
      { schema: { tags, summary: 'Set a workspace secret', params: WorkspaceSecretParams, body: SecretBody, response: { 200: SecretPut, 400: ErrorBody, 404: ErrorBody, 410: ErrorBody } } },
      (req) => secrets.put(req.params.id, req.params.key, req.body.value),
    );
    app.delete(
      '/workspaces/:id/secrets/:key',
      { schema: { tags, summary: 'Delete a workspace secret', params: WorkspaceSecretParams, response: { 204: NoContent, 400: ErrorBody, 404: ErrorBody, 410: ErrorBody } } },
      async (req, reply) => {
        await secrets.delete(req.params.id, req.params.key);
        reply.code(204);
      },
    );
  };
}
