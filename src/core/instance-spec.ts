import { AGENT_ENV, AGENT_PORT } from '../agent/contract.js';
import type { InstanceSpec, Provisioner } from './provisioner.js';
import type { SecretStore } from './ports.js';
import type { Config } from './config.js';
import type { Sealer } from './crypto.js';
import { imageFor } from './runtimes.js';
import type { Workspace } from './types.js';
import { secretAad } from './secrets.js';

export interface SpecDeps {
  config: Config;
  secrets: SecretStore;
  sealer: Sealer;
  provisioner: Pick<Provisioner, 'defaultRegion'>;
  /** The URL agents use to reach the platform. */
  platformUrl: string;
}

/** The complete environment and shape of a workspace's instance. Reserved contract variables always win. */
export async function buildInstanceSpec(ws: Workspace, tokens: { workspace: string; agent: string }, d: SpecDeps): Promise<InstanceSpec> {
  const env: Record<string, string> = { ...ws.env };
  const secretKeys = new Set<string>();
  for (const scope of ['global', ws.id]) {
    for (const s of await d.secrets.list(scope)) {
      env[s.key] = d.sealer.open(s.sealed, secretAad(scope, s.key));
      secretKeys.add(s.key);
    }
  }
  const contract = {
    [AGENT_ENV.workspaceId]: ws.id,
    [AGENT_ENV.workspaceName]: ws.name,
    [AGENT_ENV.workspaceRole]: ws.role,
    [AGENT_ENV.workspaceRuntime]: ws.runtime,
    [AGENT_ENV.workspaceTier]: String(ws.tier),
    [AGENT_ENV.platformUrl]: d.platformUrl,
    [AGENT_ENV.workspaceToken]: tokens.workspace,
    [AGENT_ENV.agentToken]: tokens.agent,
    [AGENT_ENV.region]: ws.region ?? d.provisioner.defaultRegion,
    [AGENT_ENV.heartbeatIntervalS]: String(d.config.timing.heartbeatIntervalS),
    [AGENT_ENV.port]: String(AGENT_PORT),
  };
  Object.assign(env, contract);
  for (const k of Object.keys(contract)) secretKeys.delete(k);
  secretKeys.add(AGENT_ENV.workspaceToken).add(AGENT_ENV.agentToken);
  return {
    workspaceId: ws.id,
    name: ws.name,
    runtime: ws.runtime,
    tier: ws.tier,
    region: ws.region,
    image: imageFor(ws.runtime, d.config.runtimeImage),
    env,
    secretKeys: [...secretKeys],
  };
}
