/** The A2A proxy's JSON-RPC side: its error codes, reading and completing a request, and its own errors. */
import crypto from 'node:crypto';
import { errors as undiciErrors } from 'undici';
import { ApiError } from '../../core/errors.js';

type Json = Record<string, unknown>;
export type RpcId = string | number | null;

/** Server-range JSON-RPC codes of the proxy (documented in the README). */
export const PROXY_ERRORS = {
  notReady: -32030,
  unreachable: -32031,
  timeout: -32032,
  tooLarge: -32033,
  notFound: -32034,
  gone: -32035,
  agentAuth: -32036,
  forbidden: -32037,
} as const;

/** Workspace statuses that end by themselves (a start, an automatic restart): worth retrying after a while. */
const TRANSIENT = new Set(['provisioning', 'offline']);
const RETRY_AFTER_S = 5;

/** Methods whose answer is an SSE stream (v0.3 and v1.0 names). */
export const STREAM_METHODS = new Set(['message/stream', 'tasks/resubscribe', 'SendStreamingMessage', 'SubscribeToTask']);

export const SEND_METHODS = new Set(['message/send', 'message/stream', 'SendMessage', 'SendStreamingMessage']);

/**
 * A JSON-RPC error made by the proxy. It always leaves with HTTP 200, as JSON-RPC over HTTP and the A2A SDKs
 * expect; `httpStatus` is what a REST answer would have said, and `data.code` carries the machine-readable reason.
 */
export class RpcError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly rpcCode: number,
    message: string,
    readonly data?: Json,
    /** The request's id, when the error was found after it could be read. */
    public id?: RpcId,
  ) {
    super(message);
  }
}

/** Parses, validates and completes a request; keeps the caller's bytes when nothing needs changing. */
export function normalise(raw: Buffer | undefined, accept: string | undefined): { id: RpcId; method: string; body: Buffer | string } {
  const invalid = { code: 'invalid_request' };
  if (!raw?.length) throw new RpcError(400, -32600, 'empty body: send a JSON-RPC request or an A2A Message', invalid);
  let msg: unknown;
  try {
    msg = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new RpcError(400, -32700, `parse error: ${(e as Error).message}`, { code: 'parse_error' });
  }
  if (Array.isArray(msg)) throw new RpcError(400, -32600, 'batch requests are not supported by A2A', invalid);
  if (!msg || typeof msg !== 'object') throw new RpcError(400, -32600, 'the body must be a JSON object', invalid);
  let req = msg as Json;
  let changed = false;
  if (req.jsonrpc === undefined && req.method === undefined) {
    // A bare Message, or {message, configuration?}: wrap it into message/send (message/stream for SSE callers).
    const params = Array.isArray(req.parts) ? { message: req } : req.message && typeof req.message === 'object' ? req : undefined;
    if (!params) {
      throw new RpcError(400, -32600, 'not a JSON-RPC request: expected {"jsonrpc":"2.0","method":…} or a Message with "parts"', invalid);
    }
    const stream = /text\/event-stream/.test(accept ?? '') && !/application\/json/.test(accept ?? '');
    req = { jsonrpc: '2.0', id: crypto.randomUUID(), method: stream ? 'message/stream' : 'message/send', params };
    changed = true;
  }
  const id = (typeof req.id === 'string' || typeof req.id === 'number' ? req.id : null) as RpcId;
  const fail = (status: number, code: number, message: string) =>
    new RpcError(status, code, message, { code: code === -32602 ? 'invalid_params' : 'invalid_request' }, id);
  if (req.jsonrpc !== '2.0') throw fail(400, -32600, 'jsonrpc must be "2.0"');
  if (typeof req.method !== 'string' || !req.method) throw fail(400, -32600, 'method must be a non-empty string');
  if (SEND_METHODS.has(req.method)) {
    const params = req.params as Json | undefined;
    const message = params?.message as Json | undefined;
    if (!message || typeof message !== 'object' || Array.isArray(message)) {
      throw fail(400, -32602, `${req.method} needs params.message`);
    }
    if (typeof message.messageId !== 'string' || !message.messageId) {
      message.messageId = crypto.randomUUID();
      changed = true;
    }
    if (!req.method.includes('/') || message.kind !== undefined) {
      /* v1 messages have no kind; v0.3 ones already carry it */
    } else {
      message.kind = 'message';
      changed = true;
    }
  }
  return { id, method: req.method, body: changed ? JSON.stringify(req) : raw };
}

export function toRpcError(e: unknown): RpcError {
  if (e instanceof ApiError) {
    const code = e.statusCode === 404 ? PROXY_ERRORS.notFound : e.statusCode === 410 ? PROXY_ERRORS.gone : PROXY_ERRORS.notReady;
    const { workspace: _omit, ...extra } = e.extra;
    const retry = code === PROXY_ERRORS.notReady && TRANSIENT.has(String(extra.status)) ? { retry_after_s: RETRY_AFTER_S } : {};
    return new RpcError(e.statusCode, code, e.message, { code: e.code, ...extra, ...retry });
  }
  return new RpcError(500, -32603, `internal error: ${(e as Error).message}`, { code: 'internal_error' });
}

export function upstreamError(e: unknown, timeoutMs: number): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) {
    return new RpcError(504, PROXY_ERRORS.timeout, `the agent did not answer within ${Math.round(timeoutMs / 1000)} s`, { code: 'agent_timeout' });
  }
  return new RpcError(502, PROXY_ERRORS.unreachable, `the workspace agent is unreachable: ${(e as Error).message}`, {
    code: 'agent_unreachable',
    retry_after_s: RETRY_AFTER_S,
  });
}

export function rpcErrorBody(id: RpcId, e: RpcError) {
  return { jsonrpc: '2.0', id, error: { code: e.rpcCode, message: e.message, ...(e.data ? { data: e.data } : {}) } };
}

/** Whether an agent's answer is a JSON-RPC error response. */
export function isRpcError(body: Buffer): boolean {
  try {
    const v = JSON.parse(body.toString('utf8'));
    return !!v && typeof v === 'object' && v.jsonrpc === '2.0' && !!v.error && typeof v.error === 'object';
  } catch {
    return false;
  }
}

export function outcomeOf(e: RpcError): string {
  switch (e.rpcCode) {
    case PROXY_ERRORS.notReady:
      return 'not_ready';
    case PROXY_ERRORS.unreachable:
      return 'unreachable';
    case PROXY_ERRORS.timeout:
      return 'timeout';
    case PROXY_ERRORS.forbidden:
      return 'forbidden';
    default:
      return 'invalid';
  }
}
