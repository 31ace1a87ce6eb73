import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';
import type { Logger } from 'pino';
import { advertisedUrl } from './agent.js';
import type { AgentConfig } from './config.js';
import { AgentCore } from './core.js';
import { SharedHeartbeatScheduler, type HeartbeatScheduler, type PlatformClient, type PlatformState } from './platform-client.js';
import type { ChatProvider } from './providers/types.js';
import { agentApp, registerAgentRoutes, type AgentRoutes } from './server.js';

/**
 * Many agents in one process (the Fly simulator's light agents): the same AgentCore as a real agent — config,
 * responder, card, JSON-RPC handling, registration and heartbeats — without a process, a port or a timer each.
 * One EmbeddedAgentHost holds the one Fastify instance (never listening) whose routes answer for whichever agent
 * a request is dispatched to, and one heartbeat scheduler for all of them.
 */

const AGENT = Symbol('molecule.embeddedAgent');
type Tagged = IncomingMessage & { [AGENT]?: EmbeddedAgent };
const PROBE_HEADER = 'x-molecule-embedded-probe';

export class EmbeddedAgentHost {
  readonly scheduler: SharedHeartbeatScheduler;
  /** Registration and heartbeats of every agent here, over one bounded pool of keep-alive connections per origin. */
  readonly fetch: typeof fetch;
  private readonly dispatcher: UndiciAgent;
  private readonly app: FastifyInstance;
  private readonly ready: Promise<unknown>;
  /** Agents addressed by a probe (inject) while it runs; empty otherwise. */
  private readonly probes = new Map<string, EmbeddedAgent>();

  constructor(opts: { heartbeatTickMs?: number; connections?: number } = {}) {
    this.scheduler = new SharedHeartbeatScheduler(opts.heartbeatTickMs);
    const dispatcher = new UndiciAgent({ connections: opts.connections ?? 32 });
    this.dispatcher = dispatcher;
    this.fetch = ((url: string, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch;
    this.app = agentApp();
    registerAgentRoutes(this.app, (req) => this.agentFor(req));
    this.ready = Promise.resolve(this.app.ready());
  }

  private agentFor(req: FastifyRequest): AgentRoutes | undefined {
    const probe = req.headers[PROBE_HEADER];
    const agent = (req.raw as Tagged)[AGENT] ?? (typeof probe === 'string' ? this.probes.get(probe) : undefined);
    return agent?.routes();
  }

  /** Resolves once requests can be dispatched. */
  async start(): Promise<void> {
    await this.ready;
  }

  /** Answers `req` as `agent` would on its own port: same routes, same handlers, streamed replies. */
  dispatch(agent: EmbeddedAgent, req: IncomingMessage, res: ServerResponse): void {
    (req as Tagged)[AGENT] = agent;
    agent.track(res);
    this.app.routing(req, res);
  }

  /** A request answered in memory (health checks): status and body. */
  async probe(agent: EmbeddedAgent, method: 'GET' | 'HEAD' | 'POST', url: string): Promise<{ status: number; body: string }> {
    await this.ready;
    const key = randomUUID();
    this.probes.set(key, agent);
    try {
      const res = await this.app.inject({ method, url, headers: { [PROBE_HEADER]: key } });
      return { status: res.statusCode, body: res.body };
    } finally {
      this.probes.delete(key);
    }
  }

  async close(): Promise<void> {
    this.scheduler.clear();
    await this.app.close();
    await this.dispatcher.destroy().catch(() => undefined);
  }
}

export interface EmbeddedAgentOptions {
  logger: Logger;
  provider?: ChatProvider;
}

export type EmbeddedAgentState = 'running' | 'suspended' | 'closing' | 'stopped';

/**
 * One agent on an EmbeddedAgentHost. Its lifecycle is a process's: start(), suspend()/resume() (frozen: no
 * heartbeats), close() (SIGTERM: stop heartbeats, let running turns finish), kill() (SIGKILL: everything ends now).
 * Tasks live in memory only (no state directory).
 */
export class EmbeddedAgent implements HeartbeatScheduler {
  readonly core: AgentCore;
  private readonly platform: PlatformClient | null;
  private responses: Set<ServerResponse> | undefined;
  private stateValue: EmbeddedAgentState = 'running';
  private closing: Promise<void> | undefined;

  constructor(
    private readonly host: EmbeddedAgentHost,
    config: AgentConfig,
    opts: EmbeddedAgentOptions,
  ) {
    const logger = opts.logger;
    this.core = new AgentCore({ ...config, stateDir: undefined }, { logger, provider: opts.provider });
    // No listening socket: the address is the one the agent is reached at (Fly: its private IP and internal port).
    this.core.setUrl(advertisedUrl(config, config.host, config.port));
    this.platform = this.core.platformClient(this, host.fetch);
  }

  get url(): string {
    return this.core.url;
  }

  get state(): EmbeddedAgentState {
    return this.stateValue;
  }

  /** Resolves when the platform says the workspace was removed (heartbeat 410); never in standalone mode. */
  get removed(): Promise<void> {
    return this.platform ? this.platform.removed : new Promise<void>(() => {});
  }

  platformState(): PlatformState | 'standalone' {
    return this.platform?.state ?? 'standalone';
  }

  start(): void {
    const { config, provider } = this.core;
    for (const warning of config.warnings) this.core.logger.warn(warning);
    this.core.logger.info(
      {
        url: this.url,
        embedded: true,
        region: config.workspace.region,
        tier: config.workspace.tier,
        runtime: config.workspace.runtime,
        provider: provider.name,
        model: provider.model,
        platform_url: config.platform?.url ?? null,
        heartbeat_interval_s: config.heartbeatIntervalS,
      },
      'agent listening',
    );
    this.platform?.start();
  }

  /** HeartbeatScheduler for this agent's PlatformClient: the host's shared timer, silent while suspended. */
  every(ms: number, fn: () => void): () => void {
    return this.host.scheduler.every(ms, () => {
      if (this.stateValue === 'running') fn();
    });
  }

  /** The routes' view of this agent; undefined (404) unless it is running. */
  routes(): AgentRoutes | undefined {
    return this.stateValue === 'running' ? this.core : undefined;
  }

  dispatch(req: IncomingMessage, res: ServerResponse): void {
    this.host.dispatch(this, req, res);
  }

  probe(method: 'GET' | 'HEAD' | 'POST', url: string): Promise<{ status: number; body: string }> {
    return this.host.probe(this, method, url);
  }

  /** Remembers a response in progress, so kill() can cut it as a dying process would. */
  track(res: ServerResponse): void {
    const set = (this.responses ??= new Set());
    set.add(res);
    res.once('close', () => {
      set.delete(res);
      if (set.size === 0 && this.responses === set) this.responses = undefined;
    });
  }

  suspend(): void {
    if (this.stateValue === 'running') this.stateValue = 'suspended';
  }

  resume(): void {
    if (this.stateValue === 'suspended') this.stateValue = 'running';
  }

  /** SIGTERM: stop heartbeats and new requests, wait up to graceMs for running turns, then abort them. */
  close(opts: { graceMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      const graceMs = opts.graceMs ?? 5000;
      const logger = this.core.logger;
      logger.info({ active_tasks: this.core.turns.activeCount, grace_ms: graceMs }, 'shutting down');
      this.stateValue = 'closing';
      this.platform?.stop();
      await this.core.drain(graceMs);
      this.cutResponses();
      await this.core.persist();
      this.stateValue = 'stopped';
      logger.info({ turns: this.core.turns.totals }, 'agent stopped');
    })();
    return this.closing;
  }

  /** SIGKILL: no more heartbeats, turns aborted, open responses cut. */
  kill(): void {
    this.stateValue = 'stopped';
    this.platform?.stop();
    this.core.turns.abortAll('the agent was killed');
    this.cutResponses();
  }

  private cutResponses(): void {
    const open = this.responses;
    this.responses = undefined;
    for (const res of open ?? []) res.destroy();
  }
}
