import { createServer } from 'node:net';
import path from 'node:path';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import { AgentCore } from './core.js';
import { createLogger } from './logger.js';
import type { PlatformState } from './platform-client.js';
import type { ChatProvider } from './providers/types.js';
import { buildServer } from './server.js';
import { BoundedTaskStore, TASKS_FILE } from './task-store.js';
import type { TurnTracker } from './turns.js';

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

  // With a state directory, tasks are kept in a file there and survive restarts (README, "The agent runtime").
  const taskStore = await openTaskStore(config.stateDir, logger);
  const core = new AgentCore(config, { logger, provider: options.provider, taskStore });
  const { provider, turns } = core;
  const card = core.card;

  const app = buildServer({ ...core.rpcDeps(), card, health: () => core.health() });

  let host = config.host;
  if ((host === '::' || host === '::0') && !(await ipv6Available())) {
    logger.warn({ wanted: host }, 'IPv6 is not available here; listening on 0.0.0.0 instead');
    host = '0.0.0.0';
  }
  await app.listen({ host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = advertisedUrl(config, host, port);
  core.setUrl(url);

  const platform = core.platformClient();

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
      await core.drain(graceMs);
      // Anything left (a caller that stopped reading, an idle keep-alive socket) must not keep us alive.
      app.server.closeAllConnections();
      await serverClosed;
      await core.persist();
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
