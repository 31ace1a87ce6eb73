import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { AgentCardStore } from './card.js';
import { rpcHandler, type RpcDeps, type RpcHandler } from './rpc.js';

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

/** What the routes need of the agent answering a request. */
export interface AgentRoutes {
  card: AgentCardStore;
  health: () => HealthBody;
  rpc: RpcHandler;
}

/** The agent's HTTP surface. Card and healthz are open (the platform probes them); `POST /` needs the agent token. */
export function buildServer(deps: ServerDeps): FastifyInstance {
  const app = agentApp({
    // Shutdown stops accepting, lets running turns finish, and answers late requests on kept-alive sockets with 503.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  const routes: AgentRoutes = { card: deps.card, health: deps.health, rpc: rpcHandler(deps) };
  registerAgentRoutes(app, () => routes);
  return app;
}

/** The Fastify instance the agent's routes run on (also the one embedded agents share, see embedded.ts). */
export function agentApp(options: FastifyServerOptions = {}): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024, ...options });
  // JSON-RPC wants the raw text: we answer bad JSON with -32700 ourselves, and the SDK parses what is valid.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  return app;
}

/**
 * `/healthz`, the card paths and `POST /`, answered by the agent `agentFor` picks for the request: always the same
 * one in an agent's own server, the addressed one where several agents share an instance. `undefined` → 404.
 */
export function registerAgentRoutes(app: FastifyInstance, agentFor: (req: FastifyRequest) => AgentRoutes | undefined): void {
  const notFound = (reply: FastifyReply) => reply.code(404).send({ error: 'no agent here' });

  app.get('/healthz', async (req, reply) => {
    const agent = agentFor(req);
    return agent ? agent.health() : notFound(reply);
  });

  for (const path of CARD_PATHS) {
    app.get(path, async (req, reply) => {
      const agent = agentFor(req);
      if (!agent) return notFound(reply);
      const version = req.headers['a2a-version'];
      const inm = req.headers['if-none-match'];
      const out = agent.card.respond(Array.isArray(version) ? version[0] : version, Array.isArray(inm) ? inm.join(',') : inm);
      reply.code(out.status).headers(out.headers);
      return out.status === 304 ? reply.send() : reply.send(out.body);
    });
  }

  app.post('/', async (req, reply) => {
    const agent = agentFor(req);
    return agent ? agent.rpc(req, reply) : notFound(reply);
  });
}
