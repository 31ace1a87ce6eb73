import { createHash } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../core/errors.js';
import { platformA2aUrl, platformCardUrl, publicCard, type PublicCardOptions } from '../../core/public-card.js';
import type { Workspace } from '../../core/types.js';
import { inFamily } from '../../core/hierarchy.js';
import { ErrorBody, IdParams } from '../schemas.js';

export const CARD_MAX_AGE_S = 60;

const AgentCardView = z
  .record(z.string(), z.unknown())
  .describe(
    "the workspace's agent card as the platform publishes it: interfaces at the platform's A2A URL, the platform's security schemes " +
      '(v0.3 shape with v1 supportedInterfaces; v1.0 ProtoJSON for A2A-Version: 1.x); ?as=registered gives the card exactly as the agent registered it',
  );

const CardQuery = z
  .object({
    as: z
      .enum(['public', 'registered'])
      .optional()
      .describe('public (default): rewritten for clients of the platform; registered: exactly as the agent registered it, for debugging'),
  })
  .strict();

const CatalogEntry = z.object({
  workspace_id: z.string(),
  workspace_name: z.string(),
  parent_id: z.string().nullable(),
  status: z.string(),
  name: z.string(),
  description: z.string(),
  skills: z.array(z.object({ id: z.string(), name: z.string(), description: z.string(), tags: z.array(z.string()) })),
  url: z.string().describe("the workspace's platform A2A URL (JSON-RPC)"),
  card_url: z.string().describe('where its agent card is served'),
});

const CatalogView = z.object({ agents: z.array(CatalogEntry) });

/**
 * Discovery through the platform: each workspace's agent card at the two places A2A clients look
 * (`<a2a url>/.well-known/agent-card.json`, and relative to the workspace), `GET /workspaces/:id/agent-card`,
 * and the catalog `GET /agents`. Workspace-token callers see their family only (the A2A access rules).
 */
export function cardRoutes(deps: Pick<AppDeps, 'svc' | 'config'>): FastifyPluginAsync {
  const { svc, config } = deps;

  const baseUrl = (req: FastifyRequest) => config.publicUrl ?? `${req.protocol}://${req.host}`;
  const options = (req: FastifyRequest, id: string): PublicCardOptions => ({ baseUrl: baseUrl(req), workspaceId: id, adminToken: !!config.adminToken });

  /** The workspace, if the caller may see it; 403 a2a_forbidden for a workspace token outside its family. */
  async function visible(req: FastifyRequest, id: string): Promise<Workspace> {
    const ws = await svc.get(id);
    const c = req.caller;
    if (c?.kind === 'workspace' && !inFamily(c.workspace, ws)) {
      throw new ApiError(403, 'a2a_forbidden', `workspace ${c.workspaceId} may see only its parent, its children and its siblings`);
    }
    if (!ws.agentCard) throw new ApiError(404, 'agent_not_registered', `the agent of workspace ${ws.id} has not registered yet`);
    return ws;
  }

  function sendCard(req: FastifyRequest, reply: FastifyReply, card: Record<string, unknown>) {
    const body = JSON.stringify(card);
    const etag = `W/"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
    reply.header('etag', etag).header('cache-control', `private, max-age=${CARD_MAX_AGE_S}`).header('vary', 'A2A-Version, Authorization');
    const inm = req.headers['if-none-match'];
    if (typeof inm === 'string' && inm.split(',').some((t) => t.trim() === '*' || t.trim().replace(/^W\//, '') === etag.replace(/^W\//, ''))) {
      return reply.code(304).send();
    }
    return reply.type('application/json; charset=utf-8').send(body);
  }

  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();
    const version = (req: FastifyRequest) => {
      const h = req.headers['a2a-version'];
      return typeof h === 'string' ? h : undefined;
    };

    for (const path of ['/workspaces/:id/a2a/.well-known/agent-card.json', '/workspaces/:id/.well-known/agent-card.json']) {
      app.get(
        path,
        {
          schema: {
            tags: ['a2a'],
            summary: "A2A discovery: the workspace's agent card, pointing at the platform (v0.3 card; v1.0 with A2A-Version: 1.x)",
            params: IdParams,
            response: { 200: AgentCardView, 304: z.null().describe('not modified (If-None-Match)'), 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 410: ErrorBody },
          },
        },
        async (req, reply) => {
          const ws = await visible(req, req.params.id);
          return sendCard(req, reply, publicCard(ws.agentCard!, options(req, ws.id), version(req)));
        },
      );
    }

    app.get(
      '/workspaces/:id/agent-card',
      {
        schema: {
          tags: ['workspaces'],
          summary:
            "The workspace's agent card as the platform publishes it (the same as its .well-known card); ?as=registered for the card exactly as registered; 404 agent_not_registered until its agent has registered",
          params: IdParams,
          querystring: CardQuery,
          response: { 200: AgentCardView, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 410: ErrorBody },
        },
      },
      async (req) => {
        const ws = await visible(req, req.params.id);
        if (req.query.as === 'registered') return ws.agentCard!;
        return publicCard(ws.agentCard!, options(req, ws.id), version(req));
      },
    );

    app.get(
      '/agents',
      {
        schema: {
          tags: ['a2a'],
          summary:
            'Catalog of the agents the caller may reach: every registered workspace agent for the admin (or an open platform); a workspace token sees itself, its parent, its children and its siblings',
          response: { 200: CatalogView },
        },
      },
      async (req) => {
        const c = req.caller;
        const all = await svc.list({});
        const base = baseUrl(req);
        const agents = all
          .filter((ws) => ws.status !== 'removed' && ws.agentCard)
          .filter((ws) => c?.kind !== 'workspace' || inFamily(c.workspace, ws))
          .map((ws) => {
            const card = ws.agentCard!;
            const skills = Array.isArray(card.skills) ? card.skills : [];
            return {
              workspace_id: ws.id,
              workspace_name: ws.name,
              parent_id: ws.parentId,
              status: ws.status,
              name: typeof card.name === 'string' ? card.name : ws.name,
              description: typeof card.description === 'string' ? card.description : '',
              skills: skills
                .filter((s): s is Record<string, unknown> => !!s && typeof s === 'object')
                .map((s) => ({
                  id: String(s.id ?? ''),
                  name: String(s.name ?? ''),
                  description: String(s.description ?? ''),
                  tags: Array.isArray(s.tags) ? s.tags.filter((t): t is string => typeof t === 'string') : [],
                })),
              url: platformA2aUrl(base, ws.id),
              card_url: platformCardUrl(base, ws.id),
            };
          });
        return { agents };
      },
    );
  };
}
