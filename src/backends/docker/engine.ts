import Docker from 'dockerode';
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

/** A client for the engine on a local socket. No API version is pinned: the engine answers in its own. */
export function engineClient(socketPath: string): Docker {
  return new Docker({ socketPath });
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
