import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AppDeps } from '../app.js';
import {
  CreateWorkspaceBody,
  DeleteQuery,
  encodeCursor,
  ErrorBody,
  IdParams,
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  ListQuery,
  LogsQuery,
  PatchWorkspaceBody,
  WorkspaceView,
} from '../schemas.js';
import { pipeStream } from '../pipe-stream.js';
import { workspaceView } from '../views.js';
import type { Tier } from '../../core/types.js';

const tags = ['workspaces'];
const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 410: ErrorBody };

export function workspaceRoutes(deps: Pick<AppDeps, 'svc' | 'bus' | 'metrics'>): FastifyPluginAsync {
  const { svc } = deps;
  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();

    app.post(
      '/workspaces',
      {
        schema: {
          tags,
          summary: 'Create a workspace; the backend starts its agent, which registers and turns it ready',
          body: CreateWorkspaceBody,
          headers: z.object({ 'idempotency-key': z.string().min(1).max(255).optional() }),
          // 503: the backend cannot start workspaces now (e.g. its engine is unreachable).
          response: { 201: WorkspaceView, 200: WorkspaceView, ...errors, 503: ErrorBody },
        },
      },
      async (req, reply) => {
        const { workspace, created } = await svc.create(
          { ...req.body, tier: req.body.tier as Tier },
          req.headers['idempotency-key'],
        );
        reply.code(created ? 201 : 200);
        return workspaceView(workspace);
      },
    );

    app.get(
      '/workspaces',
      {
        schema: {
          tags,
          summary: 'List workspaces, a page at a time (removed ones only when asked for by status)',
          description:
            `Oldest first, in (created_at, id) order. The body stays a JSON array (one page); when there is more, the ` +
            `answer carries \`X-Next-Cursor: <cursor>\` and \`Link: </workspaces?…&cursor=<cursor>>; rel="next"\` ` +
            `(the same query with the cursor; without ?token=). \`limit\` defaults to ${LIST_DEFAULT_LIMIT}, at most ` +
            `${LIST_MAX_LIMIT}. Filters (status, parent_id, q) combine with each other and with the cursor; keep them the ` +
            `same from page to page. A row created after the walk began shows up only if it sorts after the cursor.`,
          querystring: ListQuery,
          response: { 200: z.array(WorkspaceView), 400: ErrorBody },
        },
      },
      async (req, reply) => {
        const { status, parent_id, q, cursor } = req.query;
        const limit = req.query.limit ?? LIST_DEFAULT_LIMIT;
        const { items, next } = await svc.page({ status, parentId: parent_id, q: q || undefined }, { limit, after: cursor });
        if (next) {
          const c = encodeCursor(next);
          reply.header('x-next-cursor', c);
          reply.header('link', `<${nextPageUrl(req.url, c)}>; rel="next"`);
        }
        return items.map(workspaceView);
      },
    );

    app.get(
      '/workspaces/:id',
      { schema: { tags, summary: 'One workspace; 410 once removed', params: IdParams, response: { 200: WorkspaceView, ...errors } } },
      async (req) => workspaceView(await svc.get(req.params.id)),
    );

    app.patch(
      '/workspaces/:id',
      {
        schema: {
          tags,
          summary: 'Change name, role, tier, env, idle timeout or parent (parent_id: re-parenting, checked for cycles); needs_restart tells whether the running instance is affected',
          params: IdParams,
          body: PatchWorkspaceBody,
          response: { 200: WorkspaceView, ...errors },
        },
      },
      async (req) => workspaceView(await svc.patch(req.params.id, { ...req.body, tier: req.body.tier as Tier | undefined })),
    );

    app.delete(
      '/workspaces/:id',
      {
        schema: {
          tags,
          summary: 'Destroy the instance and revoke its tokens; the workspace then answers 410',
          params: IdParams,
          querystring: DeleteQuery,
          response: { 202: WorkspaceView, ...errors },
        },
      },
      async (req, reply) => {
        const confirm = req.query.confirm === 'true' || req.query.confirm === '1';
        reply.code(202);
        return workspaceView(await svc.remove(req.params.id, { confirm }));
      },
    );

    for (const action of ['restart', 'pause', 'resume'] as const) {
      app.post(
        `/workspaces/:id/${action}`,
        {
          schema: {
            tags,
            summary: `${action[0].toUpperCase()}${action.slice(1)} the workspace's instance`,
            params: IdParams,
            response: { 200: WorkspaceView, 202: WorkspaceView, ...errors, 503: ErrorBody },
          },
        },
        async (req, reply) => {
          const ws = await svc[action](req.params.id);
          reply.code(action === 'pause' ? 200 : 202);
          return workspaceView(ws);
        },
      );
    }

    app.post(
      '/workspaces/:id/wake',
      {
        schema: {
          tags,
          summary: 'Wake a sleeping workspace without sending it a message (it reads provisioning, then ready)',
          params: IdParams,
          response: { 202: WorkspaceView, ...errors, 503: ErrorBody },
        },
      },
      async (req, reply) => {
        reply.code(202);
        return workspaceView(await svc.wake(req.params.id, 'request'));
      },
    );

    app.get(
      '/workspaces/:id/events',
      {
        schema: {
          tags,
          summary: "The workspace's timeline: provisioning steps, registration, restarts and failures with reasons",
          params: IdParams,
          querystring: z.object({ after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(1000).optional() }).strict(),
        },
      },
      async (req) => {
        const ws = await svc.find(req.params.id);
        if (!ws) await svc.get(req.params.id); // 404 for unknown; a removed workspace keeps its timeline
        return deps.bus.history({ workspaceId: req.params.id, afterId: req.query.after, limit: req.query.limit ?? 500 });
      },
    );

    app.get(
      '/workspaces/:id/logs',
      {
        schema: {
          tags,
          summary: "The instance's output as text lines; ?follow=1 keeps streaming",
          params: IdParams,
          querystring: LogsQuery,
        },
      },
      async (req, reply) => {
        const ws = await svc.get(req.params.id);
        const follow = req.query.follow === '1' || req.query.follow === 'true';
        const abort = new AbortController();
        const lines = svc.logs(ws, { tail: req.query.tail ?? 200, follow, signal: abort.signal });
        if (!follow) {
          const out: string[] = [];
          for await (const l of lines) out.push(l);
          reply.type('text/plain; charset=utf-8');
          return out.length ? `${out.join('\n')}\n` : '';
        }
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
        reply.raw.flushHeaders();
        const outcome = await pipeStream(reply.raw, asLines(lines), abort, { gauge: deps.metrics.openStreams.labels('logs') });
        if (outcome.kind === 'failed') req.log.warn({ err: outcome.error }, 'log stream ended with an error');
        reply.raw.end();
      },
    );
  };
}

/** Log lines as written: one per line. Returning this generator returns the backend's (its finally blocks run). */
async function* asLines(lines: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const l of lines) yield `${l}\n`;
}

/** The request's own path and query with `cursor` set to the next page's (and never the ?token= it may carry). */
function nextPageUrl(url: string, cursor: string): string {
  const u = new URL(url, 'http://x');
  u.searchParams.delete('token');
  u.searchParams.set('cursor', cursor);
  return `${u.pathname}?${u.searchParams}`;
}
