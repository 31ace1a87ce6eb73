import type { Logger } from 'pino';
import { ConfigError, type Config } from '../core/config.js';
import { ProcessProvisioner } from './process/index.js';
import type { Provisioner } from './provisioner.js';

/** Picks the backend named by CONTAINER_BACKEND. The only place that knows every backend. */
export async function createProvisioner(config: Config, logger: Logger): Promise<Provisioner> {
  switch (config.backend) {
    case 'process':
      return new ProcessProvisioner({ dataDir: config.dataDir, logger });
    case 'auto':
      logger.info('CONTAINER_BACKEND unset: using the process backend (this build has no Docker backend yet)');
      return new ProcessProvisioner({ dataDir: config.dataDir, logger });
    case 'docker':
      throw new ConfigError('CONTAINER_BACKEND=docker: the Docker backend is not built yet; use process or flyio');
    case 'flyio':
      throw new ConfigError('CONTAINER_BACKEND=flyio: the Fly Machines backend is not built yet');
  }
}
