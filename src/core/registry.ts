import type { Logger } from 'pino';
import type { HeartbeatRequest, RegisterRequest, RegistryResponse } from '../agent/contract.js';
import { agentUrlProblem } from './agent-url.js';
import type { Config } from './config.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import { HeartbeatWrites } from './heartbeat-writes.js';
import type { WorkspaceStore } from './ports.js';
import type { Action } from './status.js';
import type { WorkspaceTokens } from './tokens.js';
import type { Workspace, WorkspaceStatus } from './types.js';

const ERROR_RATE_DEGRADED = 0.5;
/** How long a registration waits for the backend to report the instance it comes from (below the agent's timeout). */
const REGISTER_WAIT_MS = 5000;
const REGISTER_POLL_MS = 100;

export interface RegistryDeps {
  config: Config;
  workspaces: WorkspaceStore;
  tokens: WorkspaceTokens;
  bus: EventBus;
  logger: Logger;
  /** The one way a status changes (WorkspaceService.transition): compare-and-set, one event. */
  transition: (ws: Workspace, to: WorkspaceStatus, reason: string, patch?: Partial<Workspace>, action?: Action) => Promise<boolean>;
}

/**
 * The agent-facing half of the API: an agent registers once its instance is up (its URL checked against what the
 * backend reported) and heartbeats from then on. Either may land on any replica.
 */
export class AgentRegistry {
  private readonly heartbeats: HeartbeatWrites;

  constructor(private readonly d: RegistryDeps) {
    this.heartbeats = new HeartbeatWrites((batch) => d.workspaces.recordHeartbeats(batch));
  }

  /** @param known the workspace the request's token was already resolved to (by the caller check), if any. */
  async register(token: string | undefined, body: RegisterRequest, known?: Workspace): Promise<RegistryResponse> {
    let ws = known ?? (await this.d.tokens.workspaceOf(token));
    // The agent may be faster than the backend's answer (reported to whichever replica launched it): wait until
    // the instance it runs in is recorded. After a wait the launch may have rotated or revoked the token: look again.
    for (const deadline = Date.now() + REGISTER_WAIT_MS; ws.status === 'provisioning' && ws.pendingLaunch && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, REGISTER_POLL_MS));
      ws = await this.d.tokens.workspaceOf(token);
    }
    if (ws.status === 'paused' || ws.status === 'failed' || ws.status === 'sleeping') {
      throw new ApiError(409, 'invalid_state', `workspace ${ws.id} is ${ws.status}; it does not accept registrations`);
    }
    if (ws.status === 'provisioning' && ws.pendingLaunch) {
      throw new ApiError(503, 'instance_starting', `the backend has not reported workspace ${ws.id}'s instance yet; retry`);
    }
    const problem = agentUrlProblem(body.url, { instanceId: ws.instanceId, handle: ws.instance }, this.d.config.externalAgentUrls);
    if (problem) {
      this.d.logger.warn({ workspace_id: ws.id, reported_url: body.url.slice(0, 300), problem }, 'registration refused: agent url');
      throw new ApiError(403, 'agent_url_mismatch', problem);
    }
    const now = new Date().toISOString();
    await this.d.workspaces.update(ws.id, { agentUrl: body.url, agentCard: body.agent_card, lastHeartbeatAt: now });
    await this.d.bus.publish('workspace.step', ws.id, { step: 'registered', agent_url: body.url });
    let status = ws.status;
    if (ws.status !== 'ready') {
      if (await this.d.transition(ws, 'ready', 'agent registered', { readyAt: now, nextRestartAt: null })) status = 'ready';
    }
    return { workspace_id: ws.id, status, heartbeat_interval_s: this.d.config.timing.heartbeatIntervalS };
  }

  /** @param known the workspace the request's token was already resolved to (by the caller check), if any. */
  async heartbeat(token: string | undefined, body: HeartbeatRequest, known?: Workspace): Promise<RegistryResponse> {
    const ws = known ?? (await this.d.tokens.workspaceOf(token));
    if (ws.status === 'paused' || ws.status === 'failed' || ws.status === 'sleeping') {
      throw new ApiError(409, 'invalid_state', `workspace ${ws.id} is ${ws.status}; it does not accept heartbeats`);
    }
    // Only a registered instance (its URL checked) may turn the workspace ready; the agent re-registers on 404.
    if (!ws.agentUrl) throw new ApiError(404, 'not_registered', `register workspace ${ws.id}'s agent before sending heartbeats`);
    const now = new Date().toISOString();
    // A busy agent is active (core/idle.ts): it does not sleep while its heartbeats report running tasks, and the
    // first report of none after some starts the idle time (the last task ended at most one interval before).
    await this.heartbeats.record(ws.id, now, { ...body, at: now }, body.active_tasks);
    this.d.bus.pulse(ws.id, { last_heartbeat_at: now, heartbeat: { ...body, at: now } });
    let target: WorkspaceStatus | null = null;
    let reason = '';
    if (ws.status === 'provisioning' || ws.status === 'offline') {
      [target, reason] = ['ready', 'first heartbeat'];
    } else if (ws.status === 'ready' && body.error_rate >= ERROR_RATE_DEGRADED) {
      [target, reason] = ['degraded', `error rate ${(body.error_rate * 100).toFixed(0)}% over recent turns`];
    } else if (ws.status === 'degraded' && body.error_rate < ERROR_RATE_DEGRADED) {
      [target, reason] = ['ready', `error rate back to ${(body.error_rate * 100).toFixed(0)}%`];
    }
    let status = ws.status;
    if (target && (await this.d.transition(ws, target, reason, target === 'ready' && !ws.readyAt ? { readyAt: now } : {}))) status = target;
    return { workspace_id: ws.id, status, heartbeat_interval_s: this.d.config.timing.heartbeatIntervalS };
  }
}
