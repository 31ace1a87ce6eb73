/**
 * Stand-in for Fly's public proxy (`https://<app>.fly.dev`): a request carrying `fly-force-instance-id: <machine id>`
 * is forwarded to that machine's internal port (mapped to a local port), streaming both ways without buffering
 * (SSE passes through as it is produced).
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Engine } from '../engine/index.js';
import { newRequestId } from '../util.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

const EXPLANATION = `fly-sim proxy (stand-in for Fly's public proxy, https://<app>.fly.dev)

Send requests here with the header
  fly-force-instance-id: <machine id>
and they are forwarded to that machine's internal port (services[].internal_port, default 8000), which the
simulator maps to a local port. Responses stream through unbuffered (SSE works).

  curl -H 'fly-force-instance-id: 1857156b526dd8' <this url>/healthz

404: no machine with that id. 503: the machine exists but is not started.
`;

export interface ProxyHandle {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startProxy(engine: Engine, host: string, port: number): Promise<ProxyHandle> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => handle(engine, req, res));
  server.on('connection', (s) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function text(res: ServerResponse, status: number, body: string, requestId: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'fly-request-id': requestId, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function handle(engine: Engine, req: IncomingMessage, res: ServerResponse): void {
  const requestId = newRequestId(engine.clock.now());
  const raw = req.headers['fly-force-instance-id'];
  const id = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  if (!id) {
    if ((req.url === '/' || req.url === '') && (req.method === 'GET' || req.method === 'HEAD')) {
      text(res, 200, EXPLANATION, requestId);
    } else {
      text(res, 400, 'fly-sim proxy: add the header fly-force-instance-id: <machine id> to choose the machine (GET / explains)\n', requestId);
    }
    req.resume();
    return;
  }
  const m = engine.machineById(id);
  if (!m) {
    text(res, 404, `fly-sim proxy: no machine with id ${id} (fly-force-instance-id)\n`, requestId);
    req.resume();
    return;
  }
  const proc = m.proc;
  if (m.state !== 'started' || !proc?.alive || (m.hostPort === undefined && !proc.dispatch)) {
    text(res, 503, `fly-sim proxy: machine ${id} is ${m.state}, not started; nothing to forward to\n`, requestId);
    req.resume();
    return;
  }
  if (proc.dispatch) {
    // A light agent: answered in memory by the agent's own routes, streamed as they write.
    res.setHeader('fly-request-id', requestId);
    res.setHeader('via', '1.1 fly.io (fly-sim)');
    proc.dispatch(req, res);
    return;
  }
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  headers.host = `127.0.0.1:${m.hostPort}`;
  headers['fly-request-id'] = requestId;
  headers['fly-forwarded-port'] = String(req.socket.localPort ?? '');
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '127.0.0.1';
  headers['fly-client-ip'] = req.socket.remoteAddress ?? '127.0.0.1';
  headers['x-forwarded-proto'] = 'http';
  headers.via = '1.1 fly.io (fly-sim)';
  const upstream = httpRequest(
    { host: '127.0.0.1', port: m.hostPort, method: req.method, path: req.url, headers },
    (up) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
      out['fly-request-id'] = requestId;
      out.via = '1.1 fly.io (fly-sim)';
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      res.flushHeaders();
      up.on('data', (chunk: Buffer) => {
        res.write(chunk);
      });
      up.on('end', () => res.end());
      up.on('error', () => res.destroy());
    },
  );
  upstream.on('socket', (s) => s.setNoDelay(true));
  upstream.on('error', (e) => {
    if (!res.headersSent) text(res, 502, `fly-sim proxy: could not reach machine ${id} on 127.0.0.1:${m.hostPort}: ${e.message}\n`, requestId);
    else res.destroy();
  });
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}
