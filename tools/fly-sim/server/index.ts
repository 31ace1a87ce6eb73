/**
 * startFlySim(): the Machines API (Fastify) + the proxy stand-in + the /__sim endpoints, around one Engine.
 * The pieces live beside this file: api.ts (hooks), routes/ (one plugin per resource), proxy.ts, handle.ts.
 */
import { Engine } from '../engine/index.js';
import { buildApi } from './api.js';
import { simHandle, type TransitionListener } from './handle.js';
import { startProxy } from './proxy.js';
import { RequestLog } from './request-log.js';
import type { FlySim, FlySimOptions } from './types.js';

export type { FaultController, FlySim, FlySimOptions, RequestLogEntry } from './types.js';

export async function startFlySim(opts: FlySimOptions = {}): Promise<FlySim> {
  const host = opts.host ?? '127.0.0.1';
  const tokens = ([] as string[]).concat(opts.token ?? 'sim-token').filter(Boolean);
  if (!tokens.length) throw new Error('fly-sim: at least one API token is required');
  const transitionListeners = new Set<TransitionListener>();
  const engine = new Engine({
    ...opts,
    onTransition: (t) => {
      opts.onTransition?.(t);
      for (const l of transitionListeners) l(t);
    },
  });
  // Light agents: load the agent runtime now, so the first machine boots as fast as the others.
  if (opts.light) await engine.lightHost();
  const requestLog = new RequestLog(opts.maxRequestLog ?? 10_000, opts.onRequestLogged);
  // The /__sim routes report the URLs, which exist only once both servers listen.
  let sim: FlySim | undefined;
  const app = buildApi({ engine, tokens, requestLog, sim: () => sim!, logger: opts.logger });

  await app.listen({ host, port: opts.port ?? 0 });
  const addr = app.server.address();
  const apiPort = typeof addr === 'object' && addr ? addr.port : opts.port;
  const hostForUrl = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let proxy;
  try {
    proxy = await startProxy(engine, host, opts.proxyPort ?? 0);
  } catch (e) {
    await app.close();
    await engine.close();
    throw e;
  }
  sim = simHandle({
    engine,
    url: `http://${hostForUrl}:${apiPort}`,
    proxyUrl: proxy.url.replace('//0.0.0.0:', '//127.0.0.1:'),
    token: tokens[0],
    requestLog,
    transitionListeners,
    closeServers: () => Promise.all([app.close(), proxy.close()]),
  });
  return sim;
}
