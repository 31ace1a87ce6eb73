import fs from 'node:fs';
import type { Logger } from 'pino';
import { selectBackend } from './backends/index.js';
import { hasAgentNetwork, type Provisioner } from './core/provisioner.js';
import { joinCluster } from './core/cluster.js';
import { loadConfig, type Config } from './core/config.js';
import { platformLogger } from './core/logging.js';
import { EventBus } from './core/events.js';
import { Membership } from './core/membership.js';
import { createLifecycle } from './core/lifecycle.js';
import type { Reconciler } from './core/reconciler.js';
import type { WorkspaceService } from './core/workspaces.js';
import { listenForAgents, type AgentListener } from './server/agent-listener.js';
import { buildApp, type App } from './server/app.js';
import { createMetrics } from './server/metrics.js';
import { openStore } from './store/db.js';
import { PgEventFeed } from './store/pg-event-feed.js';
import { clusterStoreOf, LeaseRepo, ReplicaRepo } from './store/cluster-repos.js';
import { storesOf } from './store/repositories.js';

export interface Platform {
  app: App;
  url: string;
  config: Config;
  svc: WorkspaceService;
  provisioner: Provisioner;
  reconciler: Reconciler;
  membership: Membership;
  /**
   * Graceful shutdown's first half (main.ts on SIGTERM): refuses new requests (503, /healthz `draining`) and waits
   * up to `graceMs` (default MOLECULE_SHUTDOWN_GRACE_S) for the A2A calls and streams in flight; then call close().
   */
  drain(graceMs?: number): Promise<{ drained: boolean; inFlight: number }>;
  /** Stops the API and timers; workspace instances keep running (a restarted platform adopts them). */
  close(): Promise<void>;
}

const version = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version as string;

/** Composition root: store, cluster membership, backend, lifecycle service, reconciler, API. */
export async function startPlatform(opts: { env?: NodeJS.ProcessEnv; logger?: Logger; provisioner?: Provisioner } = {}): Promise<Platform> {
  const config = loadConfig(opts.env ?? process.env);
  const logger = opts.logger ?? platformLogger(config.logLevel);
  const store = await openStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    onConnectionError: (err) => logger.warn({ err: err.message }, 'database connection dropped; the next query reconnects'),
  });
  // The key and the cluster identity: a key that does not match the cluster's stops startup here.
  const { sealer, platformId } = await joinCluster(clusterStoreOf(store), config, { logger }).catch(async (e) => {
    await store.close();
    throw e;
  });
  const stores = storesOf(store.db);
  const { workspaces, events } = stores;
  const bus = store.kind === 'postgres' ? new EventBus(events, new PgEventFeed(store.db, store.databaseUrl!, logger)) : new EventBus(events);
  await bus.start().catch(async (e) => {
    await store.close();
    throw e;
  });
  // Before the backend: it is handed its API-call observer when it is built.
  const metrics = createMetrics(workspaces, bus);
  const { provisioner, selected } = opts.provisioner
    ? { provisioner: opts.provisioner, selected: undefined }
    : await selectBackend(config, logger, { platformId, onBackendCall: metrics.backendCall });
  metrics.setBackend(provisioner.name);
  logger.info({ backend: provisioner.describe() }, `backend: ${provisioner.name}`);
  const membership = new Membership({
    replicas: new ReplicaRepo(store.db),
    leases: new LeaseRepo(store.db),
    logger,
    backend: provisioner.name,
    leaseTtlMs: config.timing.leaseTtlMs,
    sole: store.kind === 'sqlite',
  });

  let platformUrl = config.platformUrl ?? '';
  // Instances that cannot reach our loopback address (containers) get a listener on their network, opened on first need.
  let agentListener: Promise<AgentListener> | undefined;
  const agentPlatformUrl = async (): Promise<string> => {
    if (config.platformUrl || !hasAgentNetwork(provisioner)) return platformUrl;
    agentListener ??= openAgentListener().catch((e) => {
      agentListener = undefined;
      throw e;
    });
    return (await agentListener).url;
  };
  const openAgentListener = async (): Promise<AgentListener> => {
    if (!hasAgentNetwork(provisioner)) throw new Error(`the ${provisioner.name} backend has no agent network`);
    const net = await provisioner.agentNetwork();
    const port = listenPort();
    if (config.host === '0.0.0.0' || config.host === '::') {
      // The main listener already answers on every address, the network's gateway included.
      return { url: `http://${net.host}:${port}`, close: async () => {} };
    }
    const l = await listenForAgents(app, { host: net.host, port, subnets: net.subnets, logger });
    logger.info({ url: l.url, subnets: net.subnets }, `agents of the ${provisioner.name} backend reach the platform at ${l.url} (agent-facing routes only)`);
    return l;
  };
  const { svc, secretService, reconciler, idle } = createLifecycle({
    config,
    stores,
    bus,
    provisioner,
    sealer,
    logger,
    platformUrl: agentPlatformUrl,
    mayAct: () => membership.isLeader(),
  });
  const app = await buildApp({ config, logger, store, workspaces, bus, svc, provisioner, metrics, version, secretService, cluster: () => membership.view(), backendSelected: selected });

  await app.listen({ port: config.port, host: config.host });
  const listenPort = () => {
    const addr = app.server.address();
    return typeof addr === 'object' && addr ? addr.port : config.port;
  };
  const port = listenPort();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  if (!config.platformUrl) platformUrl = `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : host}:${port}`;

  if (hasAgentNetwork(provisioner) && !config.platformUrl) {
    await agentPlatformUrl().catch((e) => logger.warn({ err: (e as Error).message }, 'agent listener not open yet; retried when a workspace starts'));
  }
  // Join (and perhaps lead) only once agents can reach us: adopted agents heartbeat right away.
  let leadership = Promise.resolve();
  membership.onLeadership((leader) => {
    leadership = leadership.then(() => (leader ? reconciler.activate() : reconciler.deactivate())).catch((e) => logger.error({ err: e }, 'reconciler (de)activation failed'));
  });
  try {
    await membership.join(url);
  } catch (e) {
    await app.close();
    await agentListener?.then((l) => l.close(), () => undefined);
    await idle.close();
    await reconciler.close();
    if (!opts.provisioner) await provisioner.close();
    await bus.close();
    await store.close();
    throw e;
  }
  await leadership;
  membership.start();
  const agentUrl = agentListener ? await agentListener.then((l) => l.url, () => null) : platformUrl;
  logger.info({ url, platform_url: agentUrl, database: store.kind }, 'platform listening');

  return {
    app,
    url,
    config,
    svc,
    provisioner,
    reconciler,
    membership,
    drain(graceMs = config.shutdownGraceMs) {
      return app.drain(graceMs);
    },
    async close() {
      await membership.leave();
      await leadership;
      await idle.close();
      await reconciler.close();
      await agentListener?.then((l) => l.close(), () => undefined);
      await app.close();
      svc.close();
      metrics.close();
      await provisioner.close();
      await bus.close();
      await store.close();
    },
  };
}
