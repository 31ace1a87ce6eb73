import { createServer } from 'node:net';
import path from 'node:path';
import { hostname } from 'node:os';
import { DefaultExecutionEventBusManager, DefaultRequestHandler } from '@a2a-js/sdk/server';
import type { Logger } from 'pino';
import { AgentCardStore } from './card.js';
import type { AgentConfig } from './config.js';
import { ConversationStore } from './conversation.js';
import { WorkspaceExecutor } from './executor.js';
import { createLogger } from './logger.js';
import { PlatformClient, type PlatformState } from './platform-client.js';
import { createProvider, systemPrompt } from './providers/index.js';
import type { ChatProvider } from './providers/types.js';
import { buildServer } from './server.js';
import { BoundedTaskStore, TASKS_FILE } from './task-store.js';
import { Inflight, TurnTracker } from './turns.js';
import { Workspace } from './workspace.js';

export interface StartOptions {
  /** Defaults to JSON lines on stdout at config.logLevel; tests pass a capturing logger. */
  logger?: Logger;
  /** Replaces the provider chosen from config.model (tests, embedding). */
  provider?: ChatProvider;
}

export interface AgentHandle {
  /** Where the agent believes it can be reached (also the URL it registers and puts on its card). */
  url: string;
  port: number;
  /** The address actually bound (`::`, `0.0.0.0`, `127.0.0.1`, …). */
  host: string;
  provider: { name: string; model: string | null };
  /** Resolves when the platform says the workspace was removed (heartbeat 410); never in standalone mode. */
  removed: Promise<void>;
  platformState(): PlatformState | 'standalone';
  turns: TurnTracker;
  /** Stops registering/heartbeats, stops accepting, waits up to graceMs for running turns, then aborts them. */
  close(opts?: { graceMs?: number }): Promise<void>;
}

const WILDCARD_HOSTS = new Set(['::', '0.0.0.0', '', '::0']);

/** The URL we register: Fly's private IP if present, else a concrete listen host, else this machine's name. */
export function advertisedUrl(config: Pick<AgentConfig, 'privateIp'>, host: string, port: number): string {
  const name = config.privateIp ?? (WILDCARD_HOSTS.has(host) ? hostname() : host);
  return `http://${name.includes(':') ? `[${name}]` : name}:${port}`;
}

function ipv6Available(): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: '::', port: 0 }, () => probe.close(() => resolve(true)));
  });
}

export async function startAgent(config: AgentConfig, options: StartOptions = {}): Promise<AgentHandle> {
  const logger = (options.logger ?? createLogger(config.logLevel)).child({ workspace_id: config.workspace.id });
  for (const warning of config.warnings) logger.warn(warning);

  const workspace = new Workspace(config.workspace);
  const provider = options.provider ?? createProvider(config.model, workspace, config.platform);
  const turns = new TurnTracker();
  const inflight = new Inflight();
  const conversations = new ConversationStore();
  const card = new AgentCardStore(config.workspace);

  // Both handlers share the task store and the event buses, so a task streamed by one can be read or canceled
  // through the other; they differ only in how their executor answers.
  // With a state directory, tasks are kept in a file there and survive restarts (README, "The agent runtime").
  const taskStore = await openTaskStore(config.stateDir, logger);
  const busManager = new DefaultExecutionEventBusManager();
  const executorDeps = { provider, turns, conversations, systemPrompt: () => systemPrompt(workspace), logger };
  const sendHandler = new DefaultRequestHandler(card.card, taskStore, new WorkspaceExecutor('message', executorDeps), busManager);
  const streamHandler = new DefaultRequestHandler(card.card, taskStore, new WorkspaceExecutor('stream', executorDeps), busManager);

  const app = buildServer({
    agentToken: config.agentToken,
    card,
    sendHandler,
    streamHandler,
    logger,
    inflight,
    health: () => ({
      status: 'ok',
      workspace_id: config.workspace.id,
      region: config.workspace.region,
      uptime_s: workspace.uptimeS(),
      active_tasks: turns.activeCount,
    }),
  });

  let host = config.host;
  if ((host === '::' || host === '::0') && !(await ipv6Available())) {
    logger.warn({ wanted: host }, 'IPv6 is not available here; listening on 0.0.0.0 instead');
    host = '0.0.0.0';
  }
  await app.listen({ host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = advertisedUrl(config, host, port);
  card.setUrl(`${url}/`);

  let platform: PlatformClient | null = null;
  if (config.platform) {
    platform = new PlatformClient({
      platformUrl: config.platform.url,
      token: config.platform.token,
      logger,
      heartbeatIntervalMs: config.heartbeatIntervalS * 1000,
      registration: () => ({ url, agent_card: card.v1Json() }),
      heartbeat: () => ({
        active_tasks: turns.activeCount,
        current_task: turns.currentTask,
        error_rate: turns.errorRate,
        uptime_s: workspace.uptimeS(),
      }),
    });
  }

  logger.info(
    {
      url,
      host,
      port,
      region: config.workspace.region,
      tier: config.workspace.tier,
      runtime: config.workspace.runtime,
      provider: provider.name,
      model: provider.model,
      platform_url: config.platform?.url ?? null,
      heartbeat_interval_s: config.heartbeatIntervalS,
      state_dir: config.stateDir ?? null,
    },
    'agent listening',
  );
  platform?.start();

  let closing: Promise<void> | undefined;
  const close = (opts: { graceMs?: number } = {}): Promise<void> => {
    closing ??= (async () => {
      const graceMs = opts.graceMs ?? 5000;
      logger.info({ active_tasks: turns.activeCount, grace_ms: graceMs }, 'shutting down');
      platform?.stop();
      const serverClosed = app.close();
      const idle = Promise.all([turns.whenIdle(), inflight.whenIdle()]).then(() => true);
      if (!(await within(idle, graceMs))) {
        const aborted = turns.abortAll('the agent is shutting down');
        logger.warn({ aborted }, 'turns still running after the grace period; aborting them');
        await within(idle, 1000);
      }
      // Anything left (a caller that stopped reading, an idle keep-alive socket) must not keep us alive.
      app.server.closeAllConnections();
      await serverClosed;
      await taskStore.persist().catch((err: unknown) =>
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'could not write the task file'),
      );
      logger.info({ turns: turns.totals }, 'agent stopped');
    })();
    return closing;
  };

  return {
    url,
    port,
    host,
    provider: { name: provider.name, model: provider.model },
    removed: platform ? platform.removed : new Promise<void>(() => {}),
    platformState: () => platform?.state ?? 'standalone',
    turns,
    close,
  };
}

/** The file-backed store in the state directory; an unusable directory costs persistence, not the agent's start. */
async function openTaskStore(stateDir: string | undefined, logger: Logger): Promise<BoundedTaskStore> {
  if (!stateDir) return new BoundedTaskStore();
  const file = path.join(stateDir, TASKS_FILE);
  try {
    return await BoundedTaskStore.open(file, undefined, (msg, detail) =>
      detail.err ? logger.warn(detail, msg) : logger.info(detail, msg),
    );
  } catch (err) {
    logger.warn(
      { file, err: err instanceof Error ? err.message : String(err) },
      'cannot keep tasks in the state directory; tasks will not survive a restart',
    );
    return new BoundedTaskStore();
  }
}

/** True if `p` settled within `ms`; the timer is cleared so it never holds the process open. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
