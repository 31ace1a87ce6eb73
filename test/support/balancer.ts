import net from 'node:net';

/** A backend as `http://host:port` (any URL; only host and port are used) or `{host, port}`. */
export type BackendAddress = string | { host: string; port: number };

export interface Balancer {
  /** `http://127.0.0.1:<port>`: what clients (and agents, as PLATFORM_URL) use. */
  url: string;
  port: number;
  /** Replaces the backends; open connections keep their backend, new ones use the new list. */
  setBackends(backends: BackendAddress[]): void;
  /** Connections forwarded to each backend so far (key `host:port`). */
  stats(): Record<string, number>;
  /** Stops listening and destroys every open connection (both sides). */
  close(): Promise<void>;
}

interface Addr {
  host: string;
  port: number;
  key: string;
}

function toAddr(b: BackendAddress): Addr {
  if (typeof b === 'string') {
    const u = new URL(b);
    const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    return { host: u.hostname, port, key: `${u.hostname}:${port}` };
  }
  return { host: b.host, port: b.port, key: `${b.host}:${b.port}` };
}

/**
 * A small TCP round-robin balancer, as a test's stand-in for nginx/HAProxy in front of the platform replicas.
 * Each accepted connection goes to the next backend in turn; a backend that refuses (or does not accept within
 * `connectTimeoutMs`) is skipped for the next one, so a killed replica is routed around without any health
 * checks. Bytes are piped both ways, so HTTP keep-alive, SSE and WebSocket connections simply stay on the backend
 * they were given. When no backend accepts, the client connection is closed.
 */
export async function startBalancer(backends: BackendAddress[], opts: { port?: number; connectTimeoutMs?: number } = {}): Promise<Balancer> {
  let list: Addr[] = backends.map(toAddr);
  let next = 0;
  const counts: Record<string, number> = {};
  const sockets = new Set<net.Socket>();
  const connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  const server = net.createServer((client) => {
    track(client);
    client.pause();
    client.on('error', () => client.destroy());
    const candidates = list.slice();
    if (!candidates.length) return void client.destroy();
    const first = next++ % candidates.length;
    let tries = 0;
    const attempt = () => {
      if (client.destroyed) return;
      if (tries >= candidates.length) return void client.destroy();
      const b = candidates[(first + tries++) % candidates.length];
      const upstream = net.connect({ host: b.host, port: b.port });
      track(upstream);
      let connected = false;
      const timer = setTimeout(() => upstream.destroy(new Error('connect timeout')), connectTimeoutMs);
      upstream.once('connect', () => {
        clearTimeout(timer);
        connected = true;
        counts[b.key] = (counts[b.key] ?? 0) + 1;
        if (client.destroyed) return void upstream.destroy();
        upstream.setNoDelay(true);
        client.setNoDelay(true);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        // Either side going away ends the other: a killed replica closes its clients' connections.
        client.once('close', () => upstream.destroy());
        upstream.once('close', () => client.destroy());
      });
      upstream.on('error', () => {
        clearTimeout(timer);
        upstream.destroy();
        if (!connected) attempt();
      });
    };
    attempt();
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setBackends(b) {
      list = b.map(toAddr);
    },
    stats: () => ({ ...counts }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

// As its own process (benchmarks keep it off the load generator's event loop):
//   node --import tsx test/support/balancer.ts <port|0> <backend URL>…   prints `listening <port>`; SIGTERM stops it.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  const [port, ...backends] = process.argv.slice(2);
  const b = await startBalancer(backends, { port: Number(port) || 0 });
  process.stdout.write(`listening ${b.port}\n`);
  const stop = () => void b.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
