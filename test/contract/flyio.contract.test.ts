import { provisionerContract } from './provisioner-contract.js';
import { flyctl, provisionerFor, startSim } from '../flyio/support.js';

/**
 * The shared contract against the Fly backend, on the Fly Machines API simulator started in-process (real agent
 * processes, Fly's rate limits on). A crash is a SIGKILL sent through the Machines API by someone else (as
 * `flyctl machine kill` does): with the backend's default restart policy (on-failure, 0 retries) the machine
 * then stops on its own.
 */
provisionerContract('flyio', async () => {
  const sim = await startSim();
  const { p, app } = provisionerFor(sim);
  return {
    provisioner: p,
    async crash(instanceId) {
      const r = await flyctl(sim, 'POST', `/v1/apps/${app}/machines/${instanceId}/signal`, { signal: 'SIGKILL' });
      if (r.status !== 200) throw new Error(`signal answered ${r.status}: ${JSON.stringify(r.body)}`);
    },
    async close() {
      await p.close();
      await sim.close();
    },
  };
});
