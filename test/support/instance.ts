import crypto from 'node:crypto';
import { AGENT_ENV } from '../../src/agent/contract.js';
import type { InstanceSpec } from '../../src/core/provisioner.js';

/** Values of the agent contract's variables, named by AGENT_ENV's keys (`agentToken`, `region` …). */
export type AgentEnvValues = { [K in keyof typeof AGENT_ENV]?: string };

/** The agent's environment for the given contract values: `{ agentToken: 't' }` → `{ MOLECULE_AGENT_TOKEN: 't' }`. */
export function agentEnv(values: AgentEnvValues): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(values) as [keyof typeof AGENT_ENV, string | undefined][]) {
    if (value !== undefined) env[AGENT_ENV[key]] = value;
  }
  return env;
}

export interface InstanceSpecInit extends Partial<Omit<InstanceSpec, 'env'>> {
  /** Contract variables besides the workspace id and name (always set, from the spec's own). */
  agent?: AgentEnvValues;
  /** Further variables (user env, secrets), set after the contract's. */
  env?: Record<string, string>;
}

/**
 * An InstanceSpec as the core builds one: a fresh workspace id unless given, and an env whose contract variables
 * (AGENT_ENV) carry the spec's workspace id and name plus the `agent` values given.
 */
export function instanceSpec(init: InstanceSpecInit = {}): InstanceSpec {
  const { agent, env, ...rest } = init;
  const workspaceId = rest.workspaceId ?? crypto.randomUUID();
  const name = rest.name ?? 'test';
  return {
    runtime: 'hermes',
    tier: 1,
    region: null,
    image: 'ghcr.io/molecule-ai/workspace-hermes:latest',
    ...rest,
    workspaceId,
    name,
    env: { ...agentEnv({ workspaceId, workspaceName: name, ...agent }), ...env },
  };
}

/** Whether the agent at `url` answers GET /healthz with 2xx within 2 s (false when there is no url yet). */
export async function agentHealthy(url: string | null, headers?: Record<string, string>): Promise<boolean> {
  if (!url) return false;
  try {
    const r = await fetch(new URL('/healthz', url), { headers, signal: AbortSignal.timeout(2000) });
    return r.ok;
  } catch {
    return false;
  }
}
