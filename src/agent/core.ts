import { DefaultExecutionEventBusManager, DefaultRequestHandler } from '@a2a-js/sdk/server';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { AgentCardStore } from './card.js';
import type { AgentConfig } from './config.js';
import type { HeartbeatRequest, RegisterRequest } from './contract.js';
import { ConversationStore } from './conversation.js';
import { WorkspaceExecutor } from './executor.js';
import { PlatformClient, type HeartbeatScheduler } from './platform-client.js';
import { createProvider, systemPrompt } from './providers/index.js';
import type { ChatProvider } from './providers/types.js';
import { rpcHandler, type RpcDeps, type RpcHandler } from './rpc.js';
import type { AgentRoutes, HealthBody } from './server.js';
import { BoundedTaskStore } from './task-store.js';
import { Inflight, TurnTracker } from './turns.js';
import { Workspace } from './workspace.js';

export interface AgentCoreOptions {
  /** Already bound to the workspace (startAgent adds workspace_id). */
  logger: Logger;
  /** Replaces the provider chosen from config.model (tests, embedding). */
  provider?: ChatProvider;
  /** The A2A task store; default an in-memory one, made when the first A2A call needs it. */
  taskStore?: BoundedTaskStore;
}

/**
 * Everything an agent is apart from its HTTP server and its process: identity, provider, turns, card, the A2A
 * request handlers, the healthz / register / heartbeat bodies and the shutdown drain. `startAgent` (agent.ts) puts
 * it behind its own Fastify server; `EmbeddedAgent` (embedded.ts) behind a server shared by many agents.
 *
 * The card and the A2A machinery are made on first use, so an agent nobody talks to stays small.
 */
export class AgentCore implements AgentRoutes {
  readonly workspace: Workspace;
  readonly provider: ChatProvider;
  readonly turns = new TurnTracker();
  readonly inflight = new Inflight();
  /** Where the agent believes it can be reached (registered, and on the card with a trailing slash). */
  url = 'http://localhost';
  private cardStore: AgentCardStore | undefined;
  private deps: RpcDeps | undefined;
  private rpcFn: RpcHandler | undefined;
  private taskStoreValue: BoundedTaskStore | undefined;

  constructor(
    readonly config: AgentConfig,
    private readonly options: AgentCoreOptions,
  ) {
    this.workspace = new Workspace(config.workspace);
    this.provider = options.provider ?? createProvider(config.model, this.workspace, config.platform);
    this.taskStoreValue = options.taskStore;
  }

  get logger(): Logger {
    return this.options.logger;
  }

  get card(): AgentCardStore {
    this.cardStore ??= new AgentCardStore(this.config.workspace, `${this.url}/`);
    return this.cardStore;
  }

  get taskStore(): BoundedTaskStore | undefined {
    return this.taskStoreValue;
  }

  setUrl(url: string): void {
    this.url = url;
    this.cardStore?.setUrl(`${url}/`);
  }

  /**
   * The request handlers of `POST /`. Both share the task store and the event buses, so a task streamed by one can
   * be read or canceled through the other; they differ only in how their executor answers.
   */
  rpcDeps(): RpcDeps {
    if (this.deps) return this.deps;
    const logger = this.logger;
    const card = this.card;
    const taskStore = (this.taskStoreValue ??= new BoundedTaskStore());
    const busManager = new DefaultExecutionEventBusManager();
    const executorDeps = {
      provider: this.provider,
      turns: this.turns,
      conversations: new ConversationStore(),
      systemPrompt: () => systemPrompt(this.workspace),
      logger,
    };
    this.deps = {
      agentToken: this.config.agentToken,
      card,
      sendHandler: new DefaultRequestHandler(card.card, taskStore, new WorkspaceExecutor('message', executorDeps), busManager),
      streamHandler: new DefaultRequestHandler(card.card, taskStore, new WorkspaceExecutor('stream', executorDeps), busManager),
      logger,
      inflight: this.inflight,
    };
    return this.deps;
  }

  rpc(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    this.rpcFn ??= rpcHandler(this.rpcDeps());
    return this.rpcFn(req, reply);
  }

  health(): HealthBody {
    return {
      status: 'ok',
      workspace_id: this.config.workspace.id,
      region: this.config.workspace.region,
      uptime_s: this.workspace.uptimeS(),
      active_tasks: this.turns.activeCount,
    };
  }

  registration(): RegisterRequest {
    // Without a card made yet, a throw-away one: registering must not keep a card alive for an agent nobody asks.
    const card = this.cardStore ?? new AgentCardStore(this.config.workspace, `${this.url}/`);
    return { url: this.url, agent_card: card.v1Json() };
  }

  heartbeat(): HeartbeatRequest {
    return {
      active_tasks: this.turns.activeCount,
      current_task: this.turns.currentTask,
      error_rate: this.turns.errorRate,
      uptime_s: this.workspace.uptimeS(),
    };
  }

  /** Registration and heartbeats at config.platform; null in standalone mode. Not started. */
  platformClient(scheduler?: HeartbeatScheduler, fetchFn?: typeof fetch): PlatformClient | null {
    const { platform } = this.config;
    if (!platform) return null;
    return new PlatformClient({
      platformUrl: platform.url,
      token: platform.token,
      logger: this.logger,
      heartbeatIntervalMs: this.config.heartbeatIntervalS * 1000,
      registration: () => this.registration(),
      heartbeat: () => this.heartbeat(),
      scheduler,
      fetch: fetchFn,
    });
  }

  /** Waits up to graceMs for running turns and calls, then aborts the turns and gives them a second to end. */
  async drain(graceMs: number): Promise<void> {
    const idle = Promise.all([this.turns.whenIdle(), this.inflight.whenIdle()]).then(() => true);
    if (!(await within(idle, graceMs))) {
      const aborted = this.turns.abortAll('the agent is shutting down');
      this.logger.warn({ aborted }, 'turns still running after the grace period; aborting them');
      await within(idle, 1000);
    }
  }

  /** Writes the task store (file-backed stores only); a failure is logged, not thrown. */
  async persist(): Promise<void> {
    await this.taskStoreValue?.persist().catch((err: unknown) =>
      this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'could not write the task file'),
    );
  }
}

/** True if `p` settled within `ms`; the timer is cleared so it never holds the process open. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
