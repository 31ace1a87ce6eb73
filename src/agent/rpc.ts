import { randomUUID } from 'node:crypto';
import { formatSSEErrorEvent, formatSSEEvent, SSE_HEADERS } from '@a2a-js/sdk';
import { isV1JsonRpcMethod } from '@a2a-js/sdk/compat/v0_3';
import { LegacyJsonRpcTransportHandler } from '@a2a-js/sdk/compat/v0_3/server';
import {
  defaultServerCallContextBuilder,
  JsonRpcTransportHandler,
  validateVersion,
  type DefaultRequestHandler,
} from '@a2a-js/sdk/server';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { bearerMatches, PLATFORM_CALLER, UNAUTHORIZED_CODE, UNAUTHORIZED_MESSAGE } from './auth.js';
import type { AgentCardStore } from './card.js';
import type { Inflight } from './turns.js';

/**
 * `POST /`: A2A JSON-RPC, v0.3 and v1.0, on Fastify. The SDK's express adapter is not usable here, so this does
 * what it does (version check, legacy routing, SSE framing) plus what the agent contract adds: bearer auth,
 * -32700 for bad JSON, and a missing messageId filled in (the seed's walkthrough omits it).
 */

export interface RpcDeps {
  agentToken: string;
  card: AgentCardStore;
  /** Handler whose executor answers with a single Message (blocking message/send and SendMessage, task reads, cancel). */
  sendHandler: DefaultRequestHandler;
  /**
   * Handler whose executor answers with a Task, artifact chunks and a final status: the streaming methods, and
   * sends that are non-blocking or continue a task (see taskSend).
   */
  streamHandler: DefaultRequestHandler;
  logger: Logger;
  inflight: Inflight;
}

const STREAM_METHODS = new Set(['message/stream', 'tasks/resubscribe', 'SendStreamingMessage', 'SubscribeToTask']);
const SEND_METHODS = new Set(['message/send', 'message/stream', 'SendMessage', 'SendStreamingMessage']);

type JsonRpcId = string | number | null;
interface JsonRpcErrorBody {
  code: number;
  message: string;
  data?: unknown;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rpcId(body: unknown): JsonRpcId {
  if (!isObject(body)) return null;
  const id = body.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function requestedVersion(req: FastifyRequest): string | undefined {
  const header = req.headers['a2a-version'];
  const fromHeader = (Array.isArray(header) ? header[0] : header)?.trim();
  if (fromHeader) return fromHeader;
  // The spec also allows the version as a query parameter.
  const query = req.query as Record<string, unknown> | undefined;
  const fromQuery = query?.['A2A-Version'] ?? query?.['a2a-version'];
  return typeof fromQuery === 'string' && fromQuery.trim() ? fromQuery.trim() : undefined;
}

const V1_ROLES: Record<string, string> = { user: 'ROLE_USER', agent: 'ROLE_AGENT' };

/**
 * Fills in what lenient clients leave out, before the SDK's strict parsers see it: messageId (required by the
 * SDK, absent from the seed's request), v0.3 `kind` discriminators, and v0.3-style roles in a v1 request.
 */
export function normalizeSendParams(body: Record<string, unknown>, legacy: boolean): void {
  const params = body.params;
  if (!isObject(params) || !isObject(params.message)) return;
  const message = params.message;
  if (typeof message.messageId !== 'string' || message.messageId === '') message.messageId = randomUUID();
  if (legacy) {
    if (message.kind === undefined) message.kind = 'message';
    if (Array.isArray(message.parts)) {
      for (const part of message.parts) {
        if (!isObject(part) || part.kind !== undefined) continue;
        if ('text' in part) part.kind = 'text';
        else if ('file' in part) part.kind = 'file';
        else if ('data' in part) part.kind = 'data';
      }
    }
    // The SDK reads a v0.3 configuration without `blocking` as non-blocking; v0.3 clients (and v1) expect blocking.
    if (isObject(params.configuration) && params.configuration.blocking === undefined) params.configuration.blocking = true;
  } else if (typeof message.role === 'string' && V1_ROLES[message.role]) {
    message.role = V1_ROLES[message.role];
  }
}

/**
 * A send that must be answered with a Task rather than a Message: non-blocking (v0.3 `configuration.blocking:
 * false`, v1 `configuration.returnImmediately: true`), or continuing a task (`message.taskId`). A plain blocking
 * send stays a Message, because the seed walkthrough reads `.result.parts[0].text`.
 */
export function taskSend(body: Record<string, unknown>, legacy: boolean): boolean {
  const params = body.params;
  if (!isObject(params)) return false;
  if (isObject(params.message) && typeof params.message.taskId === 'string' && params.message.taskId !== '') return true;
  const config = params.configuration;
  if (!isObject(config)) return false;
  return legacy ? config.blocking === false : config.returnImmediately === true;
}

export function registerRpcRoute(app: FastifyInstance, deps: RpcDeps): void {
  app.post('/', rpcHandler(deps));
}

export type RpcHandler = (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>;

/** The handler of `POST /` for one agent; routes serving several agents (embedded.ts) call one of these per agent. */
export function rpcHandler(deps: RpcDeps): RpcHandler {
  const transports = {
    send: { v1: new JsonRpcTransportHandler(deps.sendHandler), legacy: new LegacyJsonRpcTransportHandler(deps.sendHandler) },
    stream: { v1: new JsonRpcTransportHandler(deps.streamHandler), legacy: new LegacyJsonRpcTransportHandler(deps.streamHandler) },
  };

  return async (req, reply) => {
    const started = performance.now();
    const raw = typeof req.body === 'string' ? req.body : '';
    let body: unknown;
    let parsed = true;
    try {
      body = JSON.parse(raw);
    } catch {
      parsed = false;
    }
    const id = rpcId(body);

    if (!bearerMatches(req.headers.authorization, deps.agentToken)) {
      deps.logger.warn({ remote: req.ip, has_auth: req.headers.authorization !== undefined }, 'A2A call rejected: bad agent token');
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ jsonrpc: '2.0', id, error: { code: UNAUTHORIZED_CODE, message: UNAUTHORIZED_MESSAGE } });
    }
    if (!parsed) {
      return reply.send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error: the request body is not valid JSON' } });
    }
    // Batches and bare values are valid JSON but not requests the SDK serves (and a bare string it would re-parse).
    if (!isObject(body)) {
      return reply.send({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid Request: expected one JSON-RPC request object' } });
    }

    const method = typeof body.method === 'string' ? body.method : undefined;
    const header = requestedVersion(req);
    // Absent header means 0.3 (spec), except for a v1 method name: the grammars are disjoint, so it is unambiguous.
    const version = header ?? (isV1JsonRpcMethod(method) ? '1.0' : '0.3');
    const legacy = version.startsWith('0.');
    const mapError = legacy ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError : JsonRpcTransportHandler.mapToJSONRPCError;
    const log = (outcome: Record<string, unknown>) =>
      deps.logger.info(
        { method: method ?? null, rpc_id: id, a2a_version: version, duration_ms: Math.round(performance.now() - started), ...outcome },
        'a2a call',
      );

    const leave = deps.inflight.enter();
    reply.raw.once('close', leave);
    try {
      try {
        validateVersion(version, deps.card.card, 'JSONRPC');
      } catch (err) {
        const error = mapError(err);
        log({ error_code: error.code });
        return reply.send({ jsonrpc: '2.0', id, error });
      }
      if (method && SEND_METHODS.has(method)) normalizeSendParams(body, legacy);

      const context = defaultServerCallContextBuilder({
        user: PLATFORM_CALLER,
        headers: req.headers,
        requestedVersion: version,
        extensions: undefined,
      });
      const streaming = method !== undefined && STREAM_METHODS.has(method);
      const mode = streaming || (method && SEND_METHODS.has(method) && taskSend(body, legacy)) ? 'stream' : 'send';
      const transport = legacy ? transports[mode].legacy : transports[mode].v1;
      const out = await transport.handle(body, context);

      if (out && typeof (out as AsyncGenerator)[Symbol.asyncIterator] === 'function') {
        await streamSse(reply, out as AsyncGenerator<unknown>, id, mapError, log);
        return reply;
      }
      const error = (out as { error?: JsonRpcErrorBody }).error;
      log(error ? { error_code: error.code, error: error.message } : { outcome: resultKind(out) });
      return reply.send(out);
    } catch (err) {
      const error = mapError(err);
      deps.logger.error({ method, rpc_id: id, err: err instanceof Error ? err.message : String(err) }, 'a2a call crashed');
      if (reply.sent || reply.raw.headersSent) return reply;
      return reply.code(error.code === -32603 ? 500 : 200).send({ jsonrpc: '2.0', id, error });
    }
  };
}

function resultKind(out: unknown): string {
  const result = (out as { result?: Record<string, unknown> }).result;
  if (!isObject(result)) return 'ok';
  if (typeof result.kind === 'string') return result.kind;
  return Object.keys(result)[0] ?? 'ok';
}

/**
 * Writes each event as its own SSE frame the moment the SDK yields it (never buffered). The first event is
 * awaited before the headers go out, so an error that happens before the stream starts is a plain JSON reply.
 */
async function streamSse(
  reply: FastifyReply,
  stream: AsyncGenerator<unknown>,
  id: JsonRpcId,
  mapError: (e: unknown) => JsonRpcErrorBody,
  log: (outcome: Record<string, unknown>) => void,
): Promise<void> {
  const iterator = stream[Symbol.asyncIterator]();
  let first: IteratorResult<unknown>;
  try {
    first = await iterator.next();
  } catch (err) {
    const error = mapError(err);
    log({ error_code: error.code, error: error.message });
    await reply.send({ jsonrpc: '2.0', id, error });
    return;
  }

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, SSE_HEADERS);
  res.socket?.setNoDelay(true);
  let clientGone = false;
  res.once('close', () => {
    clientGone = !res.writableFinished;
  });
  let events = 0;
  let lastState: string | undefined;
  try {
    let next = first;
    while (!next.done) {
      res.write(formatSSEEvent(next.value));
      events++;
      lastState = streamState(next.value) ?? lastState;
      if (clientGone) break;
      next = await iterator.next();
    }
  } catch (err) {
    const error = mapError(err);
    if (!res.writableEnded) res.write(formatSSEErrorEvent({ jsonrpc: '2.0', id, error }));
    lastState = `error ${error.code}`;
  } finally {
    // Stops listening to the task's event bus; the turn itself keeps running so tasks/get can return its result.
    if (clientGone) await iterator.return?.(undefined);
    if (!res.writableEnded) res.end();
  }
  log({ stream: true, events, final_state: lastState ?? null, client_gone: clientGone });
}

/** The task state carried by a stream event, for the log line (v0.3 bare objects and v1 wrappers). */
function streamState(event: unknown): string | undefined {
  const result = (event as { result?: Record<string, unknown> }).result;
  if (!isObject(result)) return undefined;
  const holder = (isObject(result.statusUpdate) ? result.statusUpdate : isObject(result.task) ? result.task : result) as Record<string, unknown>;
  const status = holder.status;
  return isObject(status) && typeof status.state === 'string' ? status.state : undefined;
}
