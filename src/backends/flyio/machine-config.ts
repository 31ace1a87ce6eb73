import crypto from 'node:crypto';
import type { InstanceHandle, InstanceSpec } from '../../core/provisioner.js';
import type { FlyMachine, FlyMachineConfig } from './client/index.js';
import type { AgentReach } from './context.js';
import { guestForTier } from './limits.js';
import { AGENT_PORT, META } from './machines.js';
import { splitSecretEnv } from './secrets.js';

/** What a workspace machine is made of (spec → config) and how the platform reaches it (machine → handle). */

/** Unique to one start: with the workspace id it lets an ambiguous create be recognised (client createMachine). */
export function newProvisionId(): string {
  return crypto.randomBytes(8).toString('hex');
}

/**
 * The machine config a spec produces. Secret values are not in it: `processes[0].secrets` names the app secrets
 * that hold them, and `ignore_app_secrets` keeps the app's other secrets (other workspaces') out of the machine.
 */
export function desiredConfig(spec: InstanceSpec, provisionId: string, platformId: string, restartMaxRetries: number): FlyMachineConfig {
  const { env, refs } = splitSecretEnv(platformId, spec.workspaceId, spec.env, spec.secretKeys);
  return {
    image: spec.image,
    env: { ...env, PORT: String(AGENT_PORT) },
    processes: [{ ignore_app_secrets: true, secrets: refs }],
    guest: { ...guestForTier(spec.tier) },
    metadata: {
      [META.workspaceId]: spec.workspaceId,
      [META.platformId]: platformId,
      [META.provisionId]: provisionId,
    },
    services: [
      {
        protocol: 'tcp',
        internal_port: AGENT_PORT,
        // The platform manages the lifecycle: Fly's proxy must neither stop idle workspaces nor wake paused ones.
        autostop: 'off',
        autostart: false,
        ports: [{ port: 443, handlers: ['tls', 'http'] }],
      },
    ],
    restart: { policy: 'on-failure', max_retries: restartMaxRetries },
    auto_destroy: false,
    stop_config: { signal: 'SIGTERM', timeout: '10s' },
  };
}

export function instanceHandle(m: FlyMachine, app: string, reach: AgentReach): InstanceHandle {
  const details: Record<string, unknown> = {
    machine_id: m.id,
    name: m.name,
    app,
    region: m.region,
    instance_version: m.instance_id,
    private_ip: m.private_ip ?? null,
    image: m.config?.image ?? null,
    guest: m.config?.guest ?? null,
  };
  if (reach.platformAppName) {
    return { instanceId: m.id, url: `http://${m.id}.vm.${app}.internal:${AGENT_PORT}`, details: { ...details, reached_via: '6pn' } };
  }
  return { instanceId: m.id, url: reach.proxyUrl, headers: { 'fly-force-instance-id': m.id }, details: { ...details, reached_via: 'fly-proxy' } };
}

/** What the boot timeline shows about a machine that came up. */
export function startedFacts(m: FlyMachine, t0: number): Record<string, unknown> {
  return { machine_id: m.id, region: m.region, instance_version: m.instance_id, private_ip: m.private_ip ?? null, elapsed_ms: Date.now() - t0 };
}
