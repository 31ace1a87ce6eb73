import Fastify, { type FastifyInstance } from 'fastify';
import type { AgentCardStore } from './card.js';
import { registerRpcRoute, type RpcDeps } from './rpc.js';

export interface HealthBody {
  status: 'ok';
  workspace_id: string;
  region: string;
  uptime_s: number;
  active_tasks: number;
}

export interface ServerDeps extends RpcDeps {
  card: AgentCardStore;
  health: () => HealthBody;
}

const CARD_PATHS = [
  '/.well-known/agent-card.json',
  // v0.1–v0.2 path; some older runtimes still probe it.
  '/.well-known/agent.json',
];

/** The agent's HTTP surface. Card and healthz are open (the platform probes them); `POST /` needs the agent token. */
export function buildServer(deps: ServerDeps): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: 4 * 1024 * 1024,
    // Shutdown stops accepting, lets running turns finish, and answers late requests on kept-alive sockets with 503.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  // JSON-RPC wants the raw text: we answer bad JSON with -32700 ourselves, and the SDK parses what is valid.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.get('/healthz', async () => deps.health());

  for (const path of CARD_PATHS) {
    app.get(path, async (req, reply) => {
      const version = req.headers['a2a-version'];
      const inm = req.headers['if-none-match'];
      const out = deps.card.respond(Array.isArray(version) ? version[0] : version, Array.isArray(inm) ? inm.join(',') : inm);
      reply.code(out.status).headers(out.headers);
      return out.status === 304 ? reply.send() : reply.send(out.body);
    });
  }

  registerRpcRoute(app, deps);
  return app;
}
