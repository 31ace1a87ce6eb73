import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../core/errors.js';
import { secretAad } from '../../core/workspaces.js';
import { z } from 'zod';
import { ErrorBody, IdParams, SecretBody, SecretKeyParams, WorkspaceSecretParams } from '../schemas.js';

const SecretList = z.array(z.object({ key: z.string(), created_at: z.string(), updated_at: z.string() }));
const SecretPut = z.object({ key: z.string(), result: z.enum(['created', 'updated']) });
const NoContent = z.null().describe('no content');

const tags = ['secrets'];

/** Secrets are write-only: values go in, only names and times come out. Changes mark instances needs_restart. */
export function secretRoutes(deps: AppDeps): FastifyPluginAsync {
  const listView = async (scope: string) =>
    (await deps.secrets.list(scope)).map((s) => ({ key: s.key, created_at: s.created_at, updated_at: s.updated_at }));
  const put = async (scope: string, key: string, value: string) => {
    const result = await deps.secrets.put(scope, key, deps.sealer.seal(value, secretAad(scope, key)));
    await deps.svc.secretsChanged(scope);
    await deps.bus.publish('secret.changed', scope === 'global' ? null : scope, { scope, key, change: result });
    return { key, result };
  };
  const del = async (scope: string, key: string) => {
    if (!(await deps.secrets.delete(scope, key))) throw new ApiError(404, 'secret_not_found', `no secret named ${key}`);
    await deps.svc.secretsChanged(scope);
    await deps.bus.publish('secret.changed', scope === 'global' ? null : scope, { scope, key, change: 'deleted' });
  };

  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();
    app.get('/settings/secrets', { schema: { tags, summary: 'Names of the global secrets (every workspace gets them)', response: { 200: SecretList } } }, () => listView('global'));
    app.put(
      '/settings/secrets/:key',
      { schema: { tags, summary: 'Set a global secret', params: SecretKeyParams, body: SecretBody, response: { 200: SecretPut, 400: ErrorBody } } },
      (req) => put('global', req.params.key, req.body.value),
    );
    app.delete(
      '/settings/secrets/:key',
      { schema: { tags, summary: 'Delete a global secret', params: SecretKeyParams, response: { 204: NoContent, 400: ErrorBody, 404: ErrorBody } } },
      async (req, reply) => {
        await del('global', req.params.key);
        reply.code(204);
      },
    );
    app.get(
      '/workspaces/:id/secrets',
      { schema: { tags, summary: "Names of a workspace's secrets", params: IdParams, response: { 200: SecretList, 404: ErrorBody, 410: ErrorBody } } },
      async (req) => {
        await deps.svc.get(req.params.id);
        return listView(req.params.id);
      },
    );
    app.put(
      '/workspaces/:id/secrets/:key',
      { schema: { tags, summary: 'Set a workspace secret', params: WorkspaceSecretParams, body: SecretBody, response: { 200: SecretPut, 400: ErrorBody, 404: ErrorBody, 410: ErrorBody } } },
      async (req) => {
        await deps.svc.get(req.params.id);
        return put(req.params.id, req.params.key, req.body.value);
      },
    );
    app.delete(
      '/workspaces/:id/secrets/:key',
      { schema: { tags, summary: 'Delete a workspace secret', params: WorkspaceSecretParams, response: { 204: NoContent, 400: ErrorBody, 404: ErrorBody, 410: ErrorBody } } },
      async (req, reply) => {
        await deps.svc.get(req.params.id);
        await del(req.params.id, req.params.key);
        reply.code(204);
      },
    );
  };
}
