import type { Logger } from 'pino';
import type { BackendCallObserver } from '../core/backend-calls.js';
import { ConfigError, type Config } from '../core/config.js';
import { DockerProvisioner, loadDockerPlatformId } from './docker/index.js';
import { dockerSocketPath, engineClient, pingEngine } from './docker/engine.js';
import { FlyProvisioner } from './flyio/index.js';
import { ProcessProvisioner } from './process/index.js';
import type { Provisioner } from '../core/provisioner.js';
import { imageFor, RUNTIMES } from '../core/runtimes.js';

/** How long CONTAINER_BACKEND unset waits for a Docker engine before settling for the process backend. */
const AUTO_PING_TIMEOUT_MS = 1000;

export interface ProvisionerOptions {
  /**
   * The cluster's identity (core/cluster.ts), which labels containers and machines so that every replica sharing
   * the database sees the same instances as its own. Undefined (SQLite, one process): each backend keeps the id
   * it generated into its file in the data dir.
   */
  platformId?: string;
  /** The observer of each backend's API calls, by backend name (molecule_backend_call_seconds); none: not observed. */
  onBackendCall?: (backend: string) => BackendCallObserver;
}

/** A backend, and why it was chosen (for /healthz `backend.selected`). */
export interface SelectedBackend {
  provisioner: Provisioner;
  selected: string;
}

export async function createProvisioner(config: Config, logger: Logger, opts: ProvisionerOptions = {}): Promise<Provisioner> {
  return (await selectBackend(config, logger, opts)).provisioner;
}

/** Picks the backend named by CONTAINER_BACKEND. The only place that knows every backend. */
export async function selectBackend(config: Config, logger: Logger, opts: ProvisionerOptions = {}): Promise<SelectedBackend> {
  switch (config.backend) {
    case 'process':
      return { provisioner: new ProcessProvisioner({ dataDir: config.dataDir, logger }), selected: 'CONTAINER_BACKEND=process' };
    case 'auto':
      return autoSelect(config, logger, opts);
    case 'docker': {
      const docker = await dockerProvisioner(config, logger, dockerSocketPath(config.docker.host), opts);
      const down = docker.unavailable();
      if (down) logger.error(`CONTAINER_BACKEND=docker: ${down}. Creating workspaces answers 503 until the engine answers.`);
      return { provisioner: docker, selected: 'CONTAINER_BACKEND=docker' };
    }
    case 'flyio': {
      const fly = FlyProvisioner.fromConfig(config, logger, { platformId: opts.platformId, onCall: opts.onBackendCall?.('flyio') });
      if (!config.platformUrl && fly.usesRealFly) {
        logger.warn(
          `PLATFORM_URL is not set: Fly machines would be told to reach the platform at 127.0.0.1:${config.port}, which is the machine itself. ` +
            'Set PLATFORM_URL to an address the machines can reach (a public https URL, or http://<platform-app>.internal:<port> when the platform runs on Fly); until then agents cannot register.',
        );
      }
      return { provisioner: fly, selected: 'CONTAINER_BACKEND=flyio' };
    }
  }
}

/** CONTAINER_BACKEND unset: Docker when an engine answers a ping quickly, else local processes. */
async function autoSelect(config: Config, logger: Logger, opts: ProvisionerOptions): Promise<SelectedBackend> {
  let socket: string;
  try {
    socket = dockerSocketPath(config.docker.host);
  } catch (e) {
    const why = `${(e as ConfigError).message}, so no Docker engine was tried`;
    logger.info(`CONTAINER_BACKEND unset: using the process backend (${why})`);
    return { provisioner: new ProcessProvisioner({ dataDir: config.dataDir, logger }), selected: `auto: ${why}` };
  }
  const ping = await pingEngine(engineClient(socket), AUTO_PING_TIMEOUT_MS);
  let why: string;
  if (ping.ok) {
    const docker = await dockerProvisioner(config, logger, socket, opts);
    const missing = docker.missingImages();
    // Unasked, Docker is only chosen when it can run workspaces now: a first `npm start` on a laptop with Docker
    // must not turn the walkthrough into a failed pull. CONTAINER_BACKEND=docker still uses it (and pulls).
    if (missing.length === 0) {
      logger.info(`CONTAINER_BACKEND unset: a Docker engine answers at unix://${socket}, using the docker backend`);
      return { provisioner: docker, selected: `auto: a Docker engine answered at unix://${socket}` };
    }
    await docker.close();
    why = `a Docker engine answers at unix://${socket} but lacks the runtime image ${missing.join(', ')} (build it with npm run build:images, or set CONTAINER_BACKEND=docker to pull it)`;
  } else {
    why = `no Docker engine answered at unix://${socket} (${ping.error})`;
  }
  logger.info(`CONTAINER_BACKEND unset: using the process backend; ${why}`);
  return { provisioner: new ProcessProvisioner({ dataDir: config.dataDir, logger }), selected: `auto: ${why}` };
}

async function dockerProvisioner(config: Config, logger: Logger, socketPath: string, opts: ProvisionerOptions): Promise<DockerProvisioner> {
  return new DockerProvisioner({
    socketPath,
    logger,
    platformId: opts.platformId ?? loadDockerPlatformId(config.dataDir),
    network: config.docker.network,
    agentAddress: config.docker.agentAddress,
    stopTimeoutS: config.docker.stopTimeoutS,
    pullTimeoutS: config.docker.pullTimeoutS,
    images: RUNTIMES.map((r) => imageFor(r, config.runtimeImage)),
    onCall: opts.onBackendCall?.('docker'),
  }).init();
}
