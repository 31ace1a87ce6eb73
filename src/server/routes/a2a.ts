import crypto from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { Agent, errors as undiciErrors, request } from 'undici';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../core/errors.js';
import { pipeStream } from '../pipe-stream.js';
import { IdParams } from '../schemas.js';

type Json = Record<string, unknown>;
type RpcId = string | number | null;

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

const SEND_METHODS = new Set(['message/send', 'message/stream', 'SendMessage', 'SendStreamingMessage']);

/**
 * A JSON-RPC error made by the proxy. It always leaves with HTTP 200, as JSON-RPC over HTTP and the A2A SDKs
 * expect; `httpStatus` is what a REST answer would have said, and `data.code` carries the machine-readable reason.
 */
class RpcError extends Error {
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

/**
 * POST /workspaces/:id/a2a — forwards A2A JSON-RPC to the workspace's agent with the agent token.
 * The body is forwarded byte for byte unless it must be completed (a bare message wrapped into JSON-RPC, a
 * missing messageId filled in). SSE responses are piped through unbuffered; client disconnects abort upstream.
 */
export function a2aRoutes(deps: Pick<AppDeps, 'svc' | 'metrics' | 'config'>): FastifyPluginAsync {
  const { config } = deps;
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 256 });

  return async (plain) => {
    plain.addHook('onClose', () => dispatcher.close());
    // A JSON-RPC parse error must be answered as JSON-RPC, so take the raw bytes and parse here.
    plain.removeAllContentTypeParsers();
    plain.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.a2a.maxBodyBytes }, (_req, body, done) => done(null, body));
    const app = plain.withTypeProvider<ZodTypeProvider>();

    app.post(
      '/workspaces/:id/a2a',
      {
        bodyLimit: config.a2a.maxBodyBytes,
        schema: {
          tags: ['a2a'],
          summary: 'A2A JSON-RPC proxy (v0.3 and v1.0 methods); a bare Message is wrapped into message/send',
          params: IdParams,
        },
        errorHandler: (err, req, reply) => {
          if ((err as any).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
            return sendRpcError(
              reply,
              null,
              new RpcError(413, PROXY_ERRORS.tooLarge, `request body exceeds ${config.a2a.maxBodyBytes} bytes`, { code: 'payload_too_large' }),
            );
          }
          if ((err as any).validation) {
            // The only validated part is the path's workspace id: a malformed one names no workspace.
            return sendRpcError(reply, null, new RpcError(400, PROXY_ERRORS.notFound, `no workspace with id ${req.params && (req.params as any).id}: ${err.message}`, { code: 'invalid_workspace_id' }));
          }
          throw err;
        },
      },
      async (req, reply) => {
        let id: RpcId = null;
        try {
          const parsed = normalise(req.body as Buffer | undefined, req.headers.accept);
          id = parsed.id;
          const caller = req.caller;
          if (caller?.kind === 'workspace' && !(await deps.svc.mayCall(caller.workspace, req.params.id))) {
            throw new RpcError(403, PROXY_ERRORS.forbidden, `workspace ${caller.workspaceId} may call only its parent, its children and its siblings`, {
              code: 'a2a_forbidden',
            });
          }
          const target = await deps.svc.agentTarget(req.params.id).catch((e) => {
            throw toRpcError(e);
          });
          const abort = new AbortController();
          reply.raw.on('close', () => {
            if (!reply.raw.writableFinished) abort.abort();
          });
          const headers: Record<string, string> = {
            ...target.headers,
            'content-type': 'application/json',
            authorization: `Bearer ${target.token}`,
            accept: req.headers.accept ?? 'application/json, text/event-stream',
          };
          for (const h of ['a2a-version', 'a2a-extensions', 'x-a2a-extensions']) {
            const v = req.headers[h];
            if (typeof v === 'string') headers[h] = v;
          }
          let upstream;
          try {
            upstream = await request(new URL('/', target.url), {
              method: 'POST',
              headers,
              body: parsed.body,
              dispatcher,
              signal: abort.signal,
              headersTimeout: config.a2a.timeoutMs,
              bodyTimeout: config.a2a.timeoutMs,
            });
          } catch (e) {
            throw upstreamError(e, config.a2a.timeoutMs);
          }
          if (upstream.statusCode === 401) {
            await upstream.body.dump();
            throw new RpcError(502, PROXY_ERRORS.agentAuth, 'the agent rejected the platform\'s agent token', { code: 'agent_auth_failed' });
          }
          const type = String(upstream.headers['content-type'] ?? '');
          if (type.startsWith('text/event-stream')) {
            deps.metrics.a2a.inc({ outcome: 'stream' });
            reply.hijack();
            reply.raw.writeHead(upstream.statusCode, {
              'content-type': 'text/event-stream',
              'cache-control': 'no-cache',
              connection: 'keep-alive',
              'x-accel-buffering': 'no',
            });
            reply.raw.flushHeaders();
            // Backpressure both ways: a slow client slows the agent; a client that leaves closes the agent's stream.
            const outcome = await pipeStream(reply.raw, upstream.body, abort, { gauge: deps.metrics.openStreams.labels('a2a') });
            if (outcome.kind === 'failed') {
              const err = upstreamError(outcome.error, config.a2a.timeoutMs);
              reply.raw.write(`data: ${JSON.stringify(rpcErrorBody(id, err))}\n\n`);
            }
            reply.raw.end();
            return reply;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          try {
            for await (const chunk of upstream.body) {
              size += chunk.length;
              if (size > config.a2a.maxResponseBytes) {
                abort.abort();
                throw new RpcError(502, PROXY_ERRORS.tooLarge, `the agent's response exceeds ${config.a2a.maxResponseBytes} bytes`, {
                  code: 'response_too_large',
                });
              }
              chunks.push(chunk);
            }
          } catch (e) {
            throw e instanceof RpcError ? e : upstreamError(e, config.a2a.timeoutMs);
          }
          const answer = Buffer.concat(chunks);
          let status = upstream.statusCode;
          if (status < 200 || status >= 300) {
            // JSON-RPC errors travel in HTTP 200 (the agent does so already); anything else from a failing agent
            // becomes the proxy's own error, so a client always gets JSON-RPC.
            if (!isRpcError(answer)) {
              throw new RpcError(502, PROXY_ERRORS.unreachable, `the workspace agent answered HTTP ${status}`, { code: 'agent_bad_response', agent_status: status });
            }
            status = 200;
          }
          deps.metrics.a2a.inc({ outcome: 'ok' });
          reply.code(status).type(type || 'application/json');
          return reply.send(answer);
        } catch (e) {
          if (!(e instanceof RpcError)) throw e;
          deps.metrics.a2a.inc({ outcome: outcomeOf(e) });
          return sendRpcError(reply, e.id ?? id, e);
        }
      },
    );
  };
}

/** Parses, validates and completes a request; keeps the caller's bytes when nothing needs changing. */
function normalise(raw: Buffer | undefined, accept: string | undefined): { id: RpcId; body: Buffer | string } {
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
  return { id, body: changed ? JSON.stringify(req) : raw };
}

function toRpcError(e: unknown): RpcError {
  if (e instanceof ApiError) {
    const code = e.statusCode === 404 ? PROXY_ERRORS.notFound : e.statusCode === 410 ? PROXY_ERRORS.gone : PROXY_ERRORS.notReady;
    const { workspace: _omit, ...extra } = e.extra;
    const retry = code === PROXY_ERRORS.notReady && TRANSIENT.has(String(extra.status)) ? { retry_after_s: RETRY_AFTER_S } : {};
    return new RpcError(e.statusCode, code, e.message, { code: e.code, ...extra, ...retry });
  }
  return new RpcError(500, -32603, `internal error: ${(e as Error).message}`, { code: 'internal_error' });
}

function upstreamError(e: unknown, timeoutMs: number): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) {
    return new RpcError(504, PROXY_ERRORS.timeout, `the agent did not answer within ${Math.round(timeoutMs / 1000)} s`, { code: 'agent_timeout' });
  }
  return new RpcError(502, PROXY_ERRORS.unreachable, `the workspace agent is unreachable: ${(e as Error).message}`, {
    code: 'agent_unreachable',
    retry_after_s: RETRY_AFTER_S,
  });
}

function rpcErrorBody(id: RpcId, e: RpcError) {
  return { jsonrpc: '2.0', id, error: { code: e.rpcCode, message: e.message, ...(e.data ? { data: e.data } : {}) } };
}

/** Always HTTP 200: JSON-RPC clients read `error`, and the reason is in `error.data.code`. */
function sendRpcError(reply: FastifyReply, id: RpcId, e: RpcError) {
  return reply.code(200).type('application/json').send(rpcErrorBody(id, e));
}

/** Whether an agent's answer is a JSON-RPC error response. */
function isRpcError(body: Buffer): boolean {
  try {
    const v = JSON.parse(body.toString('utf8'));
    return !!v && typeof v === 'object' && v.jsonrpc === '2.0' && !!v.error && typeof v.error === 'object';
  } catch {
    return false;
  }
}

function outcomeOf(e: RpcError): string {
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
