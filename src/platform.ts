import fs from 'node:fs';
import type { Logger } from 'pino';
import { createProvisioner } from './backends/index.js';
import { ProvisionError, type Provisioner } from './backends/provisioner.js';
import { loadConfig, type Config } from './core/config.js';
import { Sealer } from './core/crypto.js';
import { platformLogger } from './core/logging.js';
import { EventBus } from './core/events.js';
import { LivenessMonitor } from './core/liveness.js';
import { reconcile } from './core/reconcile.js';
import { WorkspaceService } from './core/workspaces.js';
import { listenForAgents, type AgentListener } from './server/agent-listener.js';
import { buildApp, type App } from './server/app.js';
import { createMetrics } from './server/metrics.js';
import { openStore } from './store/db.js';
import { EventRepo, SecretRepo, TokenRepo, WorkspaceRepo } from './store/repositories.js';

export interface Platform {
  app: App;
  url: string;
  config: Config;
  svc: WorkspaceService;
  provisioner: Provisioner;
  monitor: LivenessMonitor;
  /** Stops the API and timers; workspace instances keep running (a restarted platform adopts them). */
  close(): Promise<void>;
}

const version = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version as string;

/** Composition root: store, backend, lifecycle service, monitor, API. */
export async function startPlatform(opts: { env?: NodeJS.ProcessEnv; logger?: Logger; provisioner?: Provisioner } = {}): Promise<Platform> {
  const config = loadConfig(opts.env ?? process.env);
  const logger = opts.logger ?? platformLogger(config.logLevel);
  // The key first: a bad one stops startup before anything is opened.
  const sealer = Sealer.load(config.dataDir, config.secretsKey);
  const store = await openStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    onConnectionError: (err) => logger.warn({ err: err.message }, 'database connection dropped; the next query reconnects'),
  });
  const workspaces = new WorkspaceRepo(store.db);
  const tokens = new TokenRepo(store.db);
  const secrets = new SecretRepo(store.db);
  const bus = new EventBus(new EventRepo(store.db));
  const provisioner = opts.provisioner ?? (await createProvisioner(config, logger));
  logger.info({ backend: provisioner.describe() }, `backend: ${provisioner.name}`);

  let platformUrl = config.platformUrl ?? '';
  // Instances that cannot reach our loopback address (containers) get a listener on their network, opened on first need.
  let agentListener: Promise<AgentListener> | undefined;
  const agentPlatformUrl = async (): Promise<string> => {
    if (config.platformUrl || !provisioner.agentNetwork) return platformUrl;
    agentListener ??= openAgentListener().catch((e) => {
      agentListener = undefined;
      throw e;
    });
    return (await agentListener).url;
  };
  const openAgentListener = async (): Promise<AgentListener> => {
    const net = await provisioner.agentNetwork!();
    const port = listenPort();
    if (config.host === '0.0.0.0' || config.host === '::') {
      // The main listener already answers on every address, the network's gateway included.
      return { url: `http://${net.host}:${port}`, close: async () => {} };
    }
    const l = await listenForAgents(app, { host: net.host, port, subnets: net.subnets, logger });
    logger.info({ url: l.url, subnets: net.subnets }, `agents of the ${provisioner.name} backend reach the platform at ${l.url} (agent-facing routes only)`);
    return l;
  };
  const svc = new WorkspaceService({ config, workspaces, tokens, secrets, bus, provisioner, sealer, logger, platformUrl: agentPlatformUrl });
  const unwatch = provisioner.watch((ev) => svc.spawn(svc.onInstanceEvent(ev)));
  const metrics = createMetrics(workspaces, bus);
  const monitor = new LivenessMonitor(svc, provisioner, config, logger);
  const app = await buildApp({ config, logger, store, workspaces, secrets, sealer, bus, svc, provisioner, metrics, version });

  await app.listen({ port: config.port, host: config.host });
  const listenPort = () => {
    const addr = app.server.address();
    return typeof addr === 'object' && addr ? addr.port : config.port;
  };
  const port = listenPort();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  if (!config.platformUrl) platformUrl = `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : host}:${port}`;

  if (provisioner.agentNetwork && !config.platformUrl) {
    await agentPlatformUrl().catch((e) => logger.warn({ err: (e as Error).message }, 'agent listener not open yet; retried when a workspace starts'));
  }
  // Reconcile only once agents can reach us: adopted agents heartbeat right away.
  await reconcile(svc, provisioner, logger).catch((e) => {
    // A backend that cannot answer now (engine down) is reconciled by the periodic sweep once it does.
    if (!(e instanceof ProvisionError && e.code === 'BACKEND_UNAVAILABLE')) throw e;
    logger.error({ err: e.message }, 'reconcile at startup skipped: the backend is unavailable');
  });
  monitor.start();
  const agentUrl = agentListener ? await agentListener.then((l) => l.url, () => null) : platformUrl;
  logger.info({ url, platform_url: agentUrl, database: store.kind }, 'platform listening');

  return {
    app,
    url,
    config,
    svc,
    provisioner,
    monitor,
    async close() {
      await monitor.stop();
      await agentListener?.then((l) => l.close(), () => undefined);
      await app.close();
      await svc.close();
      unwatch();
      metrics.close();
      await provisioner.close();
      await store.close();
    },
  };
}
