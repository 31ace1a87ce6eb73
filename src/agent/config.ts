import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AGENT_ENV, AGENT_PORT } from './contract.js';
import type { WorkspaceIdentity } from './workspace.js';

export const DEFAULT_PORT = AGENT_PORT;
export const DEFAULT_HEARTBEAT_INTERVAL_S = 10;
export const DEFAULT_HOST = '::';
export const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';
export const DEFAULT_ANTHROPIC_MODEL = 'claude-sonnet-4-5';

export type ModelConfig =
  | { provider: 'openai'; apiKey: string; baseUrl?: string; model: string }
  | { provider: 'anthropic'; apiKey: string; baseUrl?: string; model: string };

export interface PlatformConfig {
  url: string;
  /** Agent → platform bearer (MOLECULE_WORKSPACE_TOKEN). */
  token: string;
}

export interface AgentConfig {
  workspace: WorkspaceIdentity;
  /** 0 asks the OS for a free port; the registered URL then carries the real one. */
  port: number;
  /** `::` listens on every interface (falls back to 0.0.0.0 without IPv6). */
  host: string;
  /** Platform → agent bearer (MOLECULE_AGENT_TOKEN) required on `POST /`. */
  agentToken: string;
  /** null = standalone: serve A2A but never register. */
  platform: PlatformConfig | null;
  heartbeatIntervalS: number;
  /** Fly's 6PN address; preferred over the listen host when building the URL we register. */
  privateIp?: string;
  /** null = no model: the built-in responder answers. */
  model: ModelConfig | null;
  logLevel: string;
  /**
   * Where state that must survive a restart is kept (the A2A task store). Unset (tests, embedding) = in memory only.
   * loadConfig always sets it: MOLECULE_STATE_DIR, else /workspace/.molecule (the Docker volume) when /workspace
   * is writable, else ~/.molecule-agent/<workspace id> when HOME is writable, else <tmpdir>/molecule-agent/<id>.
   */
  stateDir?: string;
  /** Non-fatal problems found while reading the environment, logged once at startup. */
  warnings: string[];
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Empty strings count as unset: backends often pass `FOO=` for "no value". */
function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function required(env: Env, name: string): string {
  const value = read(env, name);
  if (!value) throw new ConfigError(name, `${name} is required but not set`);
  return value;
}

/** Reads the agent contract's environment. Throws ConfigError (naming the variable) for what makes startup pointless. */
export function loadConfig(env: Env = process.env): AgentConfig {
  const warnings: string[] = [];
  const agentToken = required(env, AGENT_ENV.agentToken);
  const id = required(env, AGENT_ENV.workspaceId);

  const portRaw = read(env, AGENT_ENV.port);
  let port = DEFAULT_PORT;
  if (portRaw !== undefined) {
    port = Number(portRaw);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new ConfigError(AGENT_ENV.port, `${AGENT_ENV.port} must be an integer between 0 and 65535, got "${portRaw}"`);
    }
  }

  let tier = 2;
  const tierRaw = read(env, AGENT_ENV.workspaceTier);
  if (tierRaw !== undefined) {
    const parsed = Number(tierRaw);
    if (Number.isInteger(parsed) && parsed >= 1 && parsed <= 4) tier = parsed;
    else warnings.push(`${AGENT_ENV.workspaceTier}="${tierRaw}" is not a tier 1-4; assuming 2`);
  }

  let heartbeatIntervalS = DEFAULT_HEARTBEAT_INTERVAL_S;
  const hbRaw = read(env, AGENT_ENV.heartbeatIntervalS);
  if (hbRaw !== undefined) {
    const parsed = Number(hbRaw);
    if (Number.isFinite(parsed) && parsed > 0) heartbeatIntervalS = parsed;
    else warnings.push(`${AGENT_ENV.heartbeatIntervalS}="${hbRaw}" is not a positive number; using ${DEFAULT_HEARTBEAT_INTERVAL_S}`);
  }

  const platformUrl = read(env, AGENT_ENV.platformUrl);
  const workspaceToken = read(env, AGENT_ENV.workspaceToken);
  let platform: PlatformConfig | null = null;
  if (platformUrl && workspaceToken) {
    platform = { url: platformUrl.replace(/\/+$/, ''), token: workspaceToken };
  } else {
    const missing = [!platformUrl && AGENT_ENV.platformUrl, !workspaceToken && AGENT_ENV.workspaceToken].filter(Boolean);
    warnings.push(`${missing.join(' and ')} not set: running standalone, without registration or heartbeats`);
  }

  return {
    workspace: {
      id,
      name: read(env, AGENT_ENV.workspaceName) ?? id,
      role: read(env, AGENT_ENV.workspaceRole) ?? '',
      runtime: read(env, AGENT_ENV.workspaceRuntime) ?? 'hermes',
      tier,
      // Fly sets FLY_REGION inside a machine; it is the truth even if the platform asked for another region.
      region: read(env, 'FLY_REGION') ?? read(env, AGENT_ENV.region) ?? 'local',
    },
    port,
    host: read(env, 'AGENT_HOST') ?? DEFAULT_HOST,
    agentToken,
    platform,
    heartbeatIntervalS,
    privateIp: read(env, 'FLY_PRIVATE_IP'),
    model: modelFromEnv(env, warnings),
    logLevel: read(env, 'LOG_LEVEL') ?? 'info',
    stateDir: stateDirFromEnv(env, id),
    warnings,
  };
}

/** The Docker backend mounts the workspace's named volume here; other backends may have it too. */
export const WORKSPACE_VOLUME = '/workspace';

function writableDir(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

export function stateDirFromEnv(env: Env, workspaceId: string, volume: string = WORKSPACE_VOLUME): string {
  const explicit = read(env, AGENT_ENV.stateDir);
  if (explicit) return path.resolve(explicit);
  if (writableDir(volume)) return path.join(volume, '.molecule');
  const safeId = workspaceId.replace(/[^A-Za-z0-9._-]/g, '_');
  const home = read(env, 'HOME') ?? os.homedir();
  if (writableDir(home)) return path.join(home, '.molecule-agent', safeId);
  return path.join(os.tmpdir(), 'molecule-agent', safeId);
}

function modelFromEnv(env: Env, warnings: string[]): ModelConfig | null {
  const openaiKey = read(env, 'OPENAI_API_KEY');
  const anthropicKey = read(env, 'ANTHROPIC_API_KEY');
  const model = read(env, 'MODEL');
  const explicit = read(env, 'MODEL_PROVIDER')?.toLowerCase();

  let provider: 'openai' | 'anthropic' | null = null;
  if (explicit === 'openai' || explicit === 'anthropic') provider = explicit;
  else if (explicit) warnings.push(`MODEL_PROVIDER="${explicit}" is not "openai" or "anthropic"; choosing from the API keys`);
  if (!provider) {
    // With both keys present, a Claude model name is the clearest hint of intent.
    if (openaiKey && anthropicKey) provider = model?.startsWith('claude') ? 'anthropic' : 'openai';
    else if (openaiKey) provider = 'openai';
    else if (anthropicKey) provider = 'anthropic';
  }

  if (provider === 'openai') {
    if (!openaiKey) {
      warnings.push('MODEL_PROVIDER=openai but OPENAI_API_KEY is not set; using the built-in responder');
      return null;
    }
    return { provider, apiKey: openaiKey, baseUrl: read(env, 'OPENAI_BASE_URL'), model: model ?? DEFAULT_OPENAI_MODEL };
  }
  if (provider === 'anthropic') {
    if (!anthropicKey) {
      warnings.push('MODEL_PROVIDER=anthropic but ANTHROPIC_API_KEY is not set; using the built-in responder');
      return null;
    }
    return { provider, apiKey: anthropicKey, baseUrl: read(env, 'ANTHROPIC_BASE_URL'), model: model ?? DEFAULT_ANTHROPIC_MODEL };
  }
  return null;
}
