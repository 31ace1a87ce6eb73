import Docker from 'dockerode';
import { httpCallOutcome, type BackendCallObserver } from '../../core/backend-calls.js';
import { ConfigError } from '../../core/config.js';

/** Where the engine listens when DOCKER_HOST is unset. */
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/**
 * The engine's unix socket from DOCKER_HOST: a path or a `unix://` URL. TCP/SSH engines are refused on purpose:
 * the backend publishes agent ports on 127.0.0.1 and listens for agents on the bridge gateway, which only works
 * when the engine runs on this host.
 */
export function dockerSocketPath(dockerHost: string | undefined): string {
  const v = dockerHost?.trim();
  if (!v) return DEFAULT_DOCKER_SOCKET;
  if (v.startsWith('unix://')) return v.slice('unix://'.length);
  if (v.startsWith('/')) return v;
  throw new ConfigError(`DOCKER_HOST must be a local unix socket (unix:///path/to/docker.sock or a path); got "${v}"`);
}

/** An engine API error, decided on the HTTP status (Docker and Podman word their messages differently). */
export interface EngineFailure {
  /** HTTP status, or null when the engine could not be reached at all. */
  status: number | null;
  message: string;
}

/** Classifies what dockerode threw: an HTTP status from the engine, or a socket-level failure. */
export function engineFailure(e: unknown): EngineFailure {
  const err = e as { statusCode?: number; json?: unknown; message?: string; code?: string };
  if (typeof err?.statusCode === 'number') {
    const body = err.json as { message?: string; cause?: string } | Buffer | null | undefined;
    const text = body && !Buffer.isBuffer(body) && typeof body === 'object' ? (body.message ?? body.cause) : undefined;
    return { status: err.statusCode, message: (text ?? err.message ?? 'engine error').trim() };
  }
  return { status: null, message: err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? e) };
}

export function statusOf(e: unknown): number | null {
  return engineFailure(e).status;
}

/**
 * A client for the engine on a local socket. No API version is pinned: the engine answers in its own. With
 * `onCall`, every engine request is observed: dockerode sends each one through `modem.dial`, the one place to
 * time them all (a stream until its answer begins).
 */
export function engineClient(socketPath: string, onCall?: BackendCallObserver): Docker {
  const docker = new Docker({ socketPath });
  if (!onCall) return docker;
  const modem = docker.modem as unknown as { dial(o: { method?: string; path?: string }, cb: (err: unknown, data: unknown) => void): unknown };
  const dial = modem.dial.bind(modem);
  modem.dial = (o, cb) => {
    const action = engineAction(o.method ?? 'GET', o.path ?? '');
    const t0 = performance.now();
    return dial(o, (err, data) => {
      try {
        onCall(action, err ? httpCallOutcome(statusOf(err) ?? 0) : 'ok', (performance.now() - t0) / 1000);
      } catch {
        /* an observer must not break a call */
      }
      cb(err, data);
    });
  };
  return docker;
}

const ENGINE_RESOURCES = new Set(['containers', 'images', 'networks', 'volumes', 'exec', 'events', '_ping', 'info', 'version', 'system', 'distribution', 'build']);
const ENGINE_VERBS = new Set(['create', 'start', 'stop', 'restart', 'kill', 'wait', 'logs', 'pause', 'unpause', 'attach', 'resize', 'top', 'stats', 'changes', 'export', 'archive', 'update', 'rename', 'exec', 'push', 'tag', 'history', 'get', 'connect', 'disconnect', 'prune', 'df']);

/**
 * An engine request's action for metrics (containers_start, images_inspect, networks_connect, ping …), from a
 * fixed set whatever the ids and image names in its path: anything else is `other`.
 */
export function engineAction(method: string, path: string): string {
  const segs = path.split('?')[0]!.split('/').filter(Boolean);
  if (/^v\d/.test(segs[0] ?? '')) segs.shift();
  const resource = segs[0] ?? '';
  if (!ENGINE_RESOURCES.has(resource)) return 'other';
  const name = resource.replace(/^_/, '');
  if (segs.length === 1) return method === 'GET' ? name : `${name}_${method.toLowerCase()}`;
  const last = segs.at(-1)!;
  if (last === 'json') return `${name}_${segs.length === 2 ? 'list' : 'inspect'}`;
  if (ENGINE_VERBS.has(last)) return `${name}_${last}`;
  // An id or an image name: the request is about the thing itself.
  if (method === 'DELETE') return `${name}_remove`;
  if (method === 'GET') return `${name}_inspect`;
  return `${name}_other`;
}

/** True when the engine answers `/_ping` within the timeout. */
export async function pingEngine(docker: Docker, timeoutMs: number): Promise<{ ok: true } | { ok: false; error: string }> {
  try {
    // dockerode 5 takes an abort signal here; its type definitions predate that.
    await (docker.ping as unknown as (o: { abortSignal: AbortSignal }) => Promise<unknown>)({ abortSignal: AbortSignal.timeout(timeoutMs) });
    return { ok: true };
  } catch (e) {
    const f = engineFailure(e);
    const error = (e as Error)?.name === 'TimeoutError' || /abort/i.test(f.message) ? `no answer within ${timeoutMs} ms` : f.message;
    return { ok: false, error };
  }
}

/** A streaming GET on the engine (logs, events), decided on the status code. */
export function streamGet(docker: Docker, p: string, options: Record<string, unknown>, signal: AbortSignal): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      { path: p, method: 'GET', options, isStream: true, abortSignal: signal, statusCodes: { 200: true, 404: 'not found', 500: 'server error' } } as unknown as Parameters<Docker['modem']['dial']>[0],
      (err, stream) => (err ? reject(err) : resolve(stream as NodeJS.ReadableStream)),
    );
  });
}
