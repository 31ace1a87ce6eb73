import crypto from 'node:crypto';
import pino from 'pino';
import { DockerProvisioner } from '../../src/backends/docker/index.js';
import { DOCKER_SOCKET, docker, dockerDescribe, removeByPlatformId, TEST_IMAGE } from '../docker/support.js';
import { provisionerContract } from './provisioner-contract.js';

/**
 * The shared contract against the Docker backend on a real engine (DOCKER_HOST). A crash is a SIGKILL sent
 * through the engine by someone else, as `docker kill` does.
 */
dockerDescribe('docker backend', () => {
  provisionerContract('docker', async () => {
    const platformId = `contract-${crypto.randomBytes(4).toString('hex')}`;
    const provisioner = await new DockerProvisioner({ socketPath: DOCKER_SOCKET, logger: pino({ level: 'silent' }), platformId, stopTimeoutS: 3 }).init();
    return {
      provisioner,
      image: TEST_IMAGE,
      async crash(instanceId) {
        await docker.getContainer(instanceId).kill({ signal: 'SIGKILL' });
      },
      async close() {
        await provisioner.close();
        await removeByPlatformId(platformId);
      },
    };
  });
});
