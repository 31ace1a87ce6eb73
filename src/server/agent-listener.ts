import http from 'node:http';
import net from 'node:net';
import { workspaceTokenRoute } from './security.js';
import type { Logger } from 'pino';
import type { App } from './app.js';

/**
 * What the agent listener serves: the calls an agent makes on the platform. Registry calls authenticate with the
 * workspace token; the A2A proxy is served only to a caller presenting a bearer token, so that it is identified
 * (a workspace token may reach its parent, children and siblings; anything else is refused by the API itself).
 * A2A discovery (agent cards, GET /agents) is served the same way. Nothing else of the API is reachable there, whatever the admin-token setting.
 */
export function servedToAgents(method: string | undefined, path: string, authorization: string | undefined): boolean {
  if (method === 'POST' && (path === '/registry/register' || path === '/registry/heartbeat')) return true;
  return workspaceTokenRoute(method ?? '', path) && /^Bearer\s+\S+/i.test(authorization ?? '');
}

export interface AgentListener {
  /** The PLATFORM_URL to give instances. */
  url: string;
  close(): Promise<void>;
}

/**
 * A second listener for agents that cannot reach the platform's loopback address (containers). It binds an address
 * of this host on the backend's own network (the Docker bridge gateway), accepts connections only from that
 * network's subnets, and hands the agent-facing routes to the same Fastify app.
 */
export async function listenForAgents(app: App, opts: { host: string; port: number; subnets: string[]; logger: Logger }): Promise<AgentListener> {
  const allowed = new net.BlockList();
  for (const cidr of opts.subnets) {
    const [addr, bits] = cidr.split('/');
    allowed.addSubnet(addr, Number(bits), net.isIPv6(addr) ? 'ipv6' : 'ipv4');
  }
  const server = http.createServer((req, res) => {
    const from = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const path = (req.url ?? '').split('?')[0];
    if (!net.isIP(from) || !allowed.check(from, net.isIPv6(from) ? 'ipv6' : 'ipv4')) {
      return refuse(res, 403, 'forbidden', `this listener serves agents on ${opts.subnets.join(', ')} only`);
    }
    if (!servedToAgents(req.method, path, req.headers.authorization)) {
      return refuse(res, 404, 'route_not_found', "only the agent-facing routes are served here (POST /registry/register, POST /registry/heartbeat, and with a workspace token POST /workspaces/:id/a2a and A2A discovery); use the platform's main address for the API");
    }
    app.serve(req, res);
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;

  const bind = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host, port }, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  let port: number;
  try {
    // The platform's own port when free, so a restarted platform is found where its running agents look.
    port = await bind(opts.port);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    port = await bind(0);
    opts.logger.warn({ host: opts.host, wanted: opts.port, port }, 'agent listener: the platform port is taken on this address; using another');
  }
  const host = net.isIPv6(opts.host) ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function refuse(res: http.ServerResponse, status: number, code: string, error: string): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ error, code }));
}
