import fs from 'node:fs';
import pino from 'pino';
import { ProcessProvisioner } from '../../src/backends/process/index.js';
import { killRecordedAgents, tempDir } from '../support/harness.js';
import { provisionerContract } from './provisioner-contract.js';

provisionerContract('process', async () => {
  const dataDir = tempDir('contract-process');
  const provisioner = new ProcessProvisioner({ dataDir, logger: pino({ level: 'silent' }), stopGraceMs: 3000 });
  return {
    provisioner,
    async crash(instanceId) {
      const rec = JSON.parse(fs.readFileSync(`${dataDir}/process/${instanceId}.json`, 'utf8'));
      process.kill(rec.pid, 'SIGKILL');
    },
    async close() {
      await provisioner.close();
      killRecordedAgents(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
});
