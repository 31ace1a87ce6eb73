import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Agent } from 'undici';
import type { Config } from '../../core/config.js';
import { ApiError } from '../../core/errors.js';
import { Wakes, type Held } from '../../core/idle.js';
import type { WorkspaceService } from '../../core/workspaces.js';
import type { Metrics } from '../metrics.js';
import { A2A_PATH, bearer, type Guard } from '../security.js';
import { relay } from './relay.js';
import type { CallTraffic } from './traffic.js';
import { isRpcError, normalise, STREAM_METHODS, outcomeOf, PROXY_ERRORS, RpcError, rpcErrorBody, toRpcError, upstreamError, type RpcId } from './jsonrpc.js';

export interface A2AProxyDeps {
  svc: WorkspaceService;
  metrics: Metrics;
  config: Config;
  guard: Guard;
  logger: Logger;
  /** Where agent-to-agent calls are counted for the live `a2a.calls` pulses; none: not counted. */
  traffic?: CallTraffic;
}

const ROUTE = '/workspaces/:id/a2a';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FORWARDED_HEADERS = ['a2a-version', 'a2a-extensions', 'x-a2a-extensions'];
const SSE_HEADERS = ['content-type', 'text/event-stream', 'cache-control', 'no-cache', 'connection', 'keep-alive', 'x-accel-buffering', 'no'];

/** The path of a request URL, without its query. */
const pathOf = (url: string | undefined) => {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
};

/**
 * POST /workspaces/:id/a2a — forwards A2A JSON-RPC to the workspace's agent with the agent token.
 *
 * Every agent-to-agent call and chat turn pays for this path, so it is served in front of Fastify's route stack
 * (app.ts hands these requests here first) and does only what it must, with the same Guard as every other route:
 * security headers (precomputed), the caller (token lookups cached, dropped by events), the rate limit, the A2A
 * access rules (from the cached route), then one forward on a keep-alive pool per agent. The body is forwarded
 * byte for byte unless it must be completed (a bare message wrapped into JSON-RPC, a missing messageId filled
 * in). JSON answers are read whole (to bound their size and turn an agent's failure into JSON-RPC) and written
 * with their headers in one write; SSE answers are piped through unbuffered with backpressure; a client that
 * leaves aborts the upstream request.
 */
export class A2AProxy {
  private readonly dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 256 });
  /** Metric children bound once: labelling per request hashes the label set every time. */
  private readonly outcomes = new Map<string, { inc(): void }>();
  private readonly durations = new Map<number, { observe(v: number): void }>();
  private readonly latency: Record<'unary' | 'stream', Record<'ok' | 'error', { observe(v: number): void }>>;
  private readonly unwatch: () => void;
  /** Graceful shutdown: requests being served, and whether new ones are refused (drain()). */
  private active = 0;
  private draining = false;
  private readonly onIdle: (() => void)[] = [];

  constructor(private readonly d: A2AProxyDeps) {
    const h = d.metrics.a2aProxySeconds;
    this.latency = {
      unary: { ok: h.labels('unary', 'ok'), error: h.labels('unary', 'error') },
      stream: { ok: h.labels('stream', 'ok'), error: h.labels('stream', 'error') },
    };
    this.unwatch = d.metrics.watchA2AInFlight(() => this.active);
  }

  /** Calls and streams being served now. */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Refuses new requests from now on (JSON-RPC not-ready, data.code shutting_down) and resolves once the ones in
   * flight are done (true), or after `timeoutMs` with some still open (false).
   */
  drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.onIdle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Whether a request is this proxy's (any query string). */
  static matches(req: IncomingMessage): boolean {
    return req.method === 'POST' && A2A_PATH.test(pathOf(req.url));
  }

  close(): Promise<void> {
    this.unwatch();
    return this.dispatcher.close();
  }

  /** Serves one request; `body` when someone (Fastify's inject) has read it already. Never throws. */
  handle(req: IncomingMessage, res: ServerResponse, body?: Buffer): void {
    const started = process.hrtime.bigint();
    if (this.draining) {
      // The body is not read: the connection closes with the answer, and the caller retries elsewhere.
      const e = new RpcError(503, PROXY_ERRORS.notReady, 'the platform is shutting down; retry (another replica answers)', { code: 'shutting_down', retry_after_s: 1 });
      return this.rpcError(res, started, null, e, ['connection', 'close', 'retry-after', '1']);
    }
    this.active++;
    this.serve(req, res, body, started)
      .catch((e) => {
        this.d.logger.error({ err: e }, 'a2a proxy: unexpected failure');
        if (!res.headersSent) this.rest(res, started, 500, { error: 'internal error', code: 'internal_error' });
        else res.destroy();
      })
      .finally(() => {
        if (--this.active === 0) for (const f of this.onIdle.splice(0)) f();
      });
  }

  /** What a caller's mistake or a refusal of the platform's earns before any JSON-RPC: a REST error. */
  private refuse(res: ServerResponse, started: bigint, e: ApiError, extra: string[] = []): void {
    this.rest(res, started, e.statusCode, { error: e.message, code: e.code, ...e.extra }, extra);
  }

  private rest(res: ServerResponse, started: bigint, status: number, body: unknown, extra: string[] = []): void {
    const payload = JSON.stringify(body);
    res.writeHead(status, [...this.d.guard.flatHeaders, ...extra, 'content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(payload))]);
    res.end(payload);
    this.observe(status, started);
  }

  /** JSON-RPC errors always leave with HTTP 200, as JSON-RPC clients and the A2A SDKs expect; the reason is in data.code. */
  private rpcError(res: ServerResponse, started: bigint, id: RpcId, e: RpcError, extra: string[] = []): void {
    this.count(outcomeOf(e));
    this.rest(res, started, 200, rpcErrorBody(e.id ?? id, e), extra);
  }

  private count(outcome: string): void {
    let c = this.outcomes.get(outcome);
    if (!c) this.outcomes.set(outcome, (c = this.d.metrics.a2a.labels(outcome)));
    c.inc();
  }

  private observe(status: number, started: bigint): void {
    let h = this.durations.get(status);
    if (!h) this.durations.set(status, (h = this.d.metrics.httpDuration.labels('POST', ROUTE, String(status))));
    h.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  /** A forwarded call's latency (molecule_a2a_proxy_seconds). */
  private timed(mode: 'unary' | 'stream', outcome: 'ok' | 'error', started: bigint): void {
    this.latency[mode][outcome].observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  private async serve(req: IncomingMessage, res: ServerResponse, preread: Buffer | undefined, started: bigint): Promise<void> {
    const { guard, svc, config } = this.d;
    const path = pathOf(req.url);
    // Who, within budget, allowed here: before the body is read.
    const caller = await guard.identify(bearer(req.headers.authorization));
    const limited = guard.limit(caller, req.socket.remoteAddress);
    if (limited) return this.refuse(res, started, limited.error, ['retry-after', String(limited.retryAfterS)]);
    const refused = guard.refusal(caller, 'POST', path);
    if (refused) return this.refuse(res, started, refused);

    const raw = preread ? (preread.length > config.a2a.maxBodyBytes ? TOO_LARGE : preread) : await readBody(req, config.a2a.maxBodyBytes);
    if (raw === GONE) return; // the client left while sending
    if (raw === TOO_LARGE) {
      // The rest of the body is not read: the connection goes with the answer.
      const e = new RpcError(413, PROXY_ERRORS.tooLarge, `request body exceeds ${config.a2a.maxBodyBytes} bytes`, { code: 'payload_too_large' });
      res.once('finish', () => req.destroy());
      return this.rpcError(res, started, null, e, ['connection', 'close']);
    }
    const workspaceId = path.slice('/workspaces/'.length, -'/a2a'.length);
    if (!UUID.test(workspaceId)) {
      const e = new RpcError(400, PROXY_ERRORS.notFound, `no workspace with id ${workspaceId}: must be a workspace id (a UUID)`, { code: 'invalid_workspace_id' });
      return this.rpcError(res, started, null, e);
    }

    // An edge of the team map: a workspace calling another one (admin and user calls are not edges).
    const from = caller.kind === 'workspace' && caller.workspaceId !== workspaceId ? caller.workspaceId : null;
    let id: RpcId = null;
    let mode: 'unary' | 'stream' | undefined;
    try {
      const parsed = normalise(raw, req.headers.accept);
      id = parsed.id;
      mode = STREAM_METHODS.has(parsed.method) ? 'stream' : 'unary';
      if (caller.kind === 'workspace' && !(await svc.mayCall(caller.workspace, workspaceId))) {
        throw new RpcError(403, PROXY_ERRORS.forbidden, `workspace ${caller.workspaceId} may call only its parent, its children and its siblings`, { code: 'a2a_forbidden' });
      }
      // Any call counts as activity (written sparingly, core/idle.ts); open ones keep the workspace awake.
      const end = svc.activity.open(workspaceId);
      let held: Held | undefined;
      const target = await svc.agentTarget(workspaceId)
        .catch(async (e) => {
          // A sleeping workspace (or one a message is waking) is woken, and the request held until it is ready.
          if (!(e instanceof ApiError) || e.code !== 'workspace_not_ready') throw e;
          const ws = await svc.find(workspaceId);
          if (!ws || !Wakes.wakes(ws)) throw e;
          held = await svc.wakes.hold(workspaceId);
          return svc.agentTarget(workspaceId);
        })
        .catch((e) => {
          end();
          throw toRpcError(e);
        });
      const replied = held ? () => this.replied(held!) : undefined;
      const headers: Record<string, string> = {
        ...target.headers,
        'content-type': 'application/json',
        authorization: `Bearer ${target.token}`,
        accept: req.headers.accept ?? 'application/json, text/event-stream',
      };
      for (const h of FORWARDED_HEADERS) {
        const v = req.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      try {
        await this.forward(res, started, id, target.url, headers, parsed.body, mode === 'stream', replied, from, workspaceId);
      } finally {
        end();
      }
    } catch (e) {
      if (!(e instanceof RpcError)) throw e;
      this.rpcError(res, started, id, e);
      if (mode) this.timed(mode, 'error', started);
      if (from) this.called(from, workspaceId, started, true);
    }
  }

  /** The first answer after a wake: its time since the wake began (once per wake). */
  private replied(held: Held): void {
    const s = held.replied();
    if (s !== null) this.d.metrics.wakeToFirstReply.observe(s);
  }

  /**
   * One call to the agent. A unary answer is read whole and written with its headers in one write; a streaming
   * call's SSE answer is relayed as it comes (any other answer to it, such as an error, is passed on whole).
   */
  private async forward(
    res: ServerResponse,
    started: bigint,
    id: RpcId,
    url: string,
    headers: Record<string, string>,
    body: Buffer | string,
    streaming: boolean,
    replied: (() => void) | undefined,
    from: string | null,
    to: string,
  ): Promise<void> {
    const { config, metrics, guard } = this.d;
    let streamStatus = 200;
    /** A stream's call is counted at its first event (its latency); a later failure only adds an error. */
    let counted = false;
    let outcome;
    try {
      outcome = await relay(this.dispatcher, {
        url,
        headers,
        body,
        timeoutMs: config.a2a.timeoutMs,
        maxBytes: config.a2a.maxResponseBytes,
        tooLarge: () => new RpcError(502, PROXY_ERRORS.tooLarge, `the agent's response exceeds ${config.a2a.maxResponseBytes} bytes`, { code: 'response_too_large' }),
        res,
        stream: streaming
          ? {
              gauge: metrics.openStreams.labels('a2a'),
              start: (s) => {
                streamStatus = s;
                replied?.();
                this.count('stream');
                this.timed('stream', 'ok', started);
                res.writeHead(s, [...guard.flatHeaders, ...SSE_HEADERS]);
                res.flushHeaders();
              },
              first: from
                ? () => {
                    counted = true;
                    this.called(from, to, started, false);
                  }
                : undefined,
            }
          : undefined,
      });
    } catch (e) {
      throw upstreamError(e, config.a2a.timeoutMs);
    }
    if (outcome.kind === 'answer') {
      this.checkAgentAnswer(outcome.status, outcome.body);
      const status = outcome.status >= 200 && outcome.status < 300 ? outcome.status : 200;
      this.count('ok');
      replied?.();
      res.writeHead(status, [...guard.flatHeaders, 'content-type', outcome.type || 'application/json', 'content-length', String(outcome.body.length)]);
      res.end(outcome.body);
      this.observe(status, started);
      this.timed(streaming ? 'stream' : 'unary', 'ok', started);
      if (from) this.called(from, to, started, status !== outcome.status || startsAsRpcError(outcome.body));
      return;
    }
    if (outcome.kind === 'failed') {
      const err = upstreamError(outcome.error, config.a2a.timeoutMs);
      res.write(`data: ${JSON.stringify(rpcErrorBody(id, err))}\n\n`);
    }
    res.end();
    this.observe(streamStatus, started);
    if (from) {
      if (!counted) this.called(from, to, started, outcome.kind === 'failed');
      else if (outcome.kind === 'failed') this.d.traffic?.fail(from, to);
    }
  }

  /** One agent-to-agent call for the `a2a.calls` pulses: its latency so far, and whether it failed. */
  private called(from: string, to: string, started: bigint, failed: boolean): void {
    this.d.traffic?.record(from, to, Number(process.hrtime.bigint() - started) / 1e6, failed);
  }

  /**
   * An agent's answer that is not the caller's to see: a refused agent token, or a failure that is not JSON-RPC.
   * JSON-RPC errors travel in HTTP 200 (the agent does so already); anything else from a failing agent becomes
   * the proxy's own error, so a client always gets JSON-RPC.
   */
  private checkAgentAnswer(status: number, body: Buffer): void {
    if (status === 401) throw new RpcError(502, PROXY_ERRORS.agentAuth, "the agent rejected the platform's agent token", { code: 'agent_auth_failed' });
    if ((status < 200 || status >= 300) && !isRpcError(body)) {
      throw new RpcError(502, PROXY_ERRORS.unreachable, `the workspace agent answered HTTP ${status}`, { code: 'agent_bad_response', agent_status: status });
    }
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const ERROR_KEY = Buffer.from('"error"');
const RESULT_KEY = Buffer.from('"result"');
/** How far into an answer its result or error member is looked for (after jsonrpc and id). */
const SCAN_BYTES = 256;

/**
 * Whether a JSON-RPC answer is an error, from its first bytes alone (no parse: this is every call's path).
 * Answers put `"error"` or `"result"` near the start, after `jsonrpc` and `id`; whichever comes first as a key
 * decides. An answer that says neither there counts as a success.
 */
export function startsAsRpcError(body: Buffer): boolean {
  const end = Math.min(body.length, SCAN_BYTES);
  for (let i = 0; i < end; i++) {
    if (body[i] !== QUOTE || (i > 0 && body[i - 1] === BACKSLASH)) continue;
    if (keyAt(body, i, ERROR_KEY)) return true;
    if (keyAt(body, i, RESULT_KEY)) return false;
  }
  return false;
}

/** `key` (quoted) at `i`, followed by a colon: a member name, not a string value. */
function keyAt(body: Buffer, i: number, key: Buffer): boolean {
  if (i + key.length > body.length) return false;
  for (let k = 0; k < key.length; k++) if (body[i + k] !== key[k]) return false;
  for (let j = i + key.length; j < body.length; j++) {
    const c = body[j]!;
    if (c === 0x3a) return true; // :
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return false;
}

const TOO_LARGE = Symbol('too large');
const GONE = Symbol('gone');

/**
 * The request's body; TOO_LARGE as soon as it is known to exceed `max` bytes (by its Content-Length, or while
 * read); GONE if the client left before sending all of it.
 */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | typeof TOO_LARGE | typeof GONE> {
  const declared = Number(req.headers['content-length']);
  if (declared > max) return Promise.resolve(TOO_LARGE);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.off('data', onData);
        req.pause();
        resolve(TOO_LARGE);
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('close', () => resolve(GONE)); // after 'end' this changes nothing
    req.once('error', () => resolve(GONE));
  });
}
