import type { Logger } from 'pino';
import { ConfigError, type Config } from '../core/config.js';
import { FlyProvisioner } from './flyio/index.js';
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
    case 'flyio': {
      const fly = FlyProvisioner.fromConfig(config, logger);
      if (!config.platformUrl && fly.usesRealFly) {
        logger.warn(
          `PLATFORM_URL is not set: Fly machines would be told to reach the platform at 127.0.0.1:${config.port}, which is the machine itself. ` +
            'Set PLATFORM_URL to an address the machines can reach (a public https URL, or http://<platform-app>.internal:<port> when the platform runs on Fly); until then agents cannot register.',
        );
      }
      return fly;
    }
  }
}
