import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { AGENT_ENV, type HeartbeatRequest, type RegisterRequest, type RegistryResponse } from '../agent/contract.js';
import { ProvisionError, type InstanceEvent, type InstanceSpec, type Provisioner } from '../backends/provisioner.js';
import type { SecretRepo, TokenRepo, WorkspaceRepo } from '../store/repositories.js';
import type { Config } from './config.js';
import { agentUrlProblem } from './agent-url.js';
import { hashToken, mintToken, safeEqual, type Sealer } from './crypto.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import { imageFor } from './runtimes.js';
import { ACTIONS, canTransition, ROUTABLE, type Action } from './status.js';
import type { Tier, Workspace, WorkspaceStatus } from './types.js';

export interface CreateInput {
  name: string;
  role?: string;
  runtime: string;
  tier: Tier;
  region?: string | null;
  parent_id?: string | null;
  env?: Record<string, string>;
  secrets?: Record<string, string>;
}

export interface PatchInput {
  name?: string;
  role?: string;
  tier?: Tier;
  env?: Record<string, string>;
}

export interface ServiceDeps {
  config: Config;
  workspaces: WorkspaceRepo;
  tokens: TokenRepo;
  secrets: SecretRepo;
  bus: EventBus;
  provisioner: Provisioner;
  sealer: Sealer;
  logger: Logger;
  /** The URL agents use to reach the platform; known once the server listens (a backend's may need setting up). */
  platformUrl: () => string | Promise<string>;
}

/** Where and how to reach a workspace's agent. */
export interface AgentTarget {
  url: string;
  headers: Record<string, string>;
  token: string;
}

const ERROR_RATE_DEGRADED = 0.5;
/** How long a registration waits for the backend to report the instance it comes from (below the agent's timeout). */
const REGISTER_WAIT_MS = 5000;
const tokenAad = (workspaceId: string, kind: string) => `token:${workspaceId}:${kind}`;
export const secretAad = (scope: string, key: string) => `secret:${scope}:${key}`;

/**
 * The workspace lifecycle: create, actions, registration, heartbeats and automatic recovery. Every status change
 * goes through transition(), which checks the status machine, writes compare-and-set and publishes one event.
 * Mutations of one workspace are serialised by a per-workspace lock; registration only needs the CAS.
 */
export class WorkspaceService {
  private readonly locks = new Map<string, Promise<unknown>>();
  /**
   * Routes of routable workspaces, so the proxy's hot path touches neither the database nor the cipher.
   * Any event about a workspace drops its entry: every change of status or instance publishes one.
   */
  private readonly routes = new Map<string, AgentTarget>();
  private readonly unsubscribe: () => void;
  private readonly background = new Set<Promise<unknown>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Starts in flight, so a delete, pause, restart or shutdown does not wait for a slow boot to finish. */
  private readonly launches = new Map<string, AbortController>();
  /** Launches queued or running, so a registration can wait until the backend has said what it started. */
  private readonly launching = new Map<string, Promise<void>>();
  /** Consecutive starts refused because the backend was down, per workspace: the outage backoff. */
  private readonly outageAttempts = new Map<string, number>();
  private closed = false;

  constructor(private readonly d: ServiceDeps) {
    this.unsubscribe = d.bus.subscribe((ev) => {
      if (ev.workspace_id) this.routes.delete(ev.workspace_id);
    });
  }

  // ---- queries -------------------------------------------------------------------------------------------

  /** A live workspace: 404 when unknown, 410 (with its record) when removed. */
  async get(id: string): Promise<Workspace> {
    const ws = await this.d.workspaces.get(id);
    if (!ws) throw new ApiError(404, 'workspace_not_found', `no workspace with id ${id}`);
    if (ws.status === 'removed') {
      throw new ApiError(410, 'workspace_removed', `workspace ${id} was removed at ${ws.removedAt}`, { workspace: ws });
    }
    return ws;
  }

  /** The stored record, whatever its status (internal use: no 404/410 mapping). */
  find(id: string): Promise<Workspace | undefined> {
    return this.d.workspaces.get(id);
  }

  list(filter: { status?: WorkspaceStatus[]; parentId?: string }): Promise<Workspace[]> {
    return this.d.workspaces.list(filter);
  }

  // ---- create --------------------------------------------------------------------------------------------

  async create(input: CreateInput, idempotencyKey?: string): Promise<{ workspace: Workspace; created: boolean }> {
    if (idempotencyKey) {
      const prior = await this.d.workspaces.byIdempotencyKey(idempotencyKey);
      if (prior) return { workspace: prior, created: false };
    }
    if (input.parent_id) {
      const parent = await this.d.workspaces.get(input.parent_id);
      if (!parent || parent.status === 'removed') {
        throw new ApiError(400, 'unknown_parent', `parent_id ${input.parent_id} is not a live workspace`);
      }
    }
    const problem = this.d.provisioner.validate?.({ region: input.region ?? null, tier: input.tier, runtime: input.runtime });
    if (problem) throw new ApiError(400, 'invalid_for_backend', problem);
    this.assertBackendAvailable();

    const now = new Date().toISOString();
    const ws: Workspace = {
      id: crypto.randomUUID(),
      name: input.name,
      role: input.role ?? '',
      runtime: input.runtime,
      tier: input.tier,
      region: input.region ?? null,
      parentId: input.parent_id ?? null,
      env: input.env ?? {},
      status: 'provisioning',
      statusReason: 'created',
      statusChangedAt: now,
      backend: this.d.provisioner.name,
      instanceId: null,
      instance: null,
      agentUrl: null,
      agentCard: null,
      idempotencyKey: idempotencyKey ?? null,
      restarts: [],
      restartCount: 0,
      nextRestartAt: null,
      lastHeartbeatAt: null,
      heartbeat: null,
      needsRestart: false,
      createdAt: now,
      updatedAt: now,
      readyAt: null,
      removedAt: null,
    };
    try {
      await this.d.workspaces.insert(ws);
    } catch (e) {
      // Two concurrent requests with one Idempotency-Key: the unique index let one through; answer with it.
      if (idempotencyKey) {
        const prior = await this.d.workspaces.byIdempotencyKey(idempotencyKey);
        if (prior) return { workspace: prior, created: false };
      }
      throw e;
    }
    // Secrets are committed before any backend is asked for anything; tokens are minted by each launch.
    for (const [k, v] of Object.entries(input.secrets ?? {})) {
      await this.d.secrets.put(ws.id, k, this.d.sealer.seal(v, secretAad(ws.id, k)));
    }
    await this.d.bus.publish('workspace.created', ws.id, {
      name: ws.name,
      runtime: ws.runtime,
      tier: ws.tier,
      region: ws.region,
      backend: ws.backend,
    });
    await this.d.bus.publish('workspace.status', ws.id, { from: null, to: 'provisioning', reason: 'created' });
    this.spawn(this.launch(ws.id, 'start'));
    return { workspace: ws, created: true };
  }

  // ---- user actions --------------------------------------------------------------------------------------

  async patch(id: string, input: PatchInput): Promise<Workspace> {
    return this.withLock(id, async () => {
      const ws = await this.get(id);
      if (ws.status === 'removing') throw new ApiError(409, 'invalid_state', `workspace ${id} is being removed`);
      const affectsInstance =
        (input.tier !== undefined && input.tier !== ws.tier) ||
        (input.env !== undefined && JSON.stringify(input.env) !== JSON.stringify(ws.env)) ||
        (input.name !== undefined && input.name !== ws.name) ||
        (input.role !== undefined && input.role !== ws.role);
      if (input.tier !== undefined) {
        const problem = this.d.provisioner.validate?.({ region: ws.region, tier: input.tier, runtime: ws.runtime });
        if (problem) throw new ApiError(400, 'invalid_for_backend', problem);
      }
      const hasInstance = ws.instanceId !== null && ws.status !== 'failed';
      await this.d.workspaces.update(id, {
        ...input,
        needsRestart: ws.needsRestart || (affectsInstance && hasInstance),
      });
      const updated = (await this.d.workspaces.get(id))!;
      await this.d.bus.publish('workspace.updated', id, {
        fields: Object.keys(input),
        needs_restart: updated.needsRestart,
      });
      return updated;
    });
  }

  async restart(id: string): Promise<Workspace> {
    this.abortLaunch(id, 'restart requested');
    return this.act(id, 'restart', async (ws) => {
      this.assertBackendAvailable();
      const kind = ws.status === 'paused' ? 'resume' : 'restart';
      await this.transition(ws, 'provisioning', 'restart requested', { restarts: [], nextRestartAt: null });
      this.spawn(this.launch(id, kind));
    });
  }

  async pause(id: string): Promise<Workspace> {
    this.abortLaunch(id, 'pause requested');
    return this.act(id, 'pause', async (ws) => {
      if (ws.instanceId) await this.d.provisioner.stop(ws.instanceId);
      await this.transition(ws, 'paused', 'paused by request', { nextRestartAt: null });
    });
  }

  async resume(id: string): Promise<Workspace> {
    return this.act(id, 'resume', async (ws) => {
      this.assertBackendAvailable();
      await this.transition(ws, 'provisioning', 'resume requested', { restarts: [] });
      this.spawn(this.launch(id, 'resume'));
    });
  }

  /** Starts removal; the instance is destroyed in the background and the workspace then reads `removed` (410). */
  async remove(id: string, opts: { confirm?: boolean } = {}): Promise<Workspace> {
    await this.get(id);
    const children = (await this.d.workspaces.list({ parentId: id })).filter((c) => c.status !== 'removed');
    if (children.length && !opts.confirm) {
      throw new ApiError(409, 'confirmation_required', `workspace ${id} has ${children.length} child workspace(s); repeat with ?confirm=true to remove them too`, {
        children: children.map((c) => ({ id: c.id, name: c.name, status: c.status })),
      });
    }
    for (const c of children) await this.remove(c.id, opts);
    // Revoke first: from here on the agent can neither register nor heartbeat.
    this.abortLaunch(id, 'delete requested');
    await this.d.tokens.revokeAll(id);
    this.routes.delete(id);
    const res = await this.act(id, 'delete', async (cur) => {
      if (cur.status !== 'removing') await this.transition(cur, 'removing', 'delete requested', { nextRestartAt: null });
    });
    this.spawn(this.destroy(id));
    return res;
  }

  /** 503 before anything is recorded when the backend cannot take work (e.g. its engine is unreachable). */
  private assertBackendAvailable(): void {
    const down = this.d.provisioner.unavailable?.();
    if (down) throw new ApiError(503, 'backend_unavailable', `the ${this.d.provisioner.name} backend cannot start workspaces now: ${down}`);
  }

  /** Runs a user action under the workspace lock after checking it is allowed from the current status. */
  private async act(id: string, action: Action, fn: (ws: Workspace) => Promise<void>): Promise<Workspace> {
    return this.withLock(id, async () => {
      const ws = await this.get(id);
      const allowed = ACTIONS[action] as readonly WorkspaceStatus[];
      if (!allowed.includes(ws.status)) {
        throw new ApiError(409, 'invalid_state', `cannot ${action} workspace ${id} while it is ${ws.status}; allowed from: ${allowed.join(', ')}`, {
          status: ws.status,
        });
      }
      await fn(ws);
      return (await this.d.workspaces.get(id))!;
    });
  }

  // ---- secrets -------------------------------------------------------------------------------------------

  /** Marks workspaces whose instance would see a changed secret (all of them for a global secret). */
  async secretsChanged(scope: string): Promise<void> {
    const affected = scope === 'global' ? await this.d.workspaces.list({}) : [await this.get(scope)];
    for (const ws of affected) {
      if (ws.instanceId && !ws.needsRestart && ws.status !== 'removing') {
        await this.d.workspaces.update(ws.id, { needsRestart: true });
      }
    }
  }

  // ---- agent-facing --------------------------------------------------------------------------------------

  /** @param known the workspace the request's token was already resolved to (by the caller check), if any. */
  async register(token: string | undefined, body: RegisterRequest, known?: Workspace): Promise<RegistryResponse> {
    const first = known ?? (await this.byWorkspaceToken(token));
    // The agent may be faster than the backend's answer: wait until the instance it runs in is recorded.
    const pending = this.launching.get(first.id);
    if (pending) await settledWithin(pending, REGISTER_WAIT_MS);
    // After a wait the launch may have rotated or revoked the token: look again.
    const ws = pending ? await this.byWorkspaceToken(token) : first;
    if (ws.status === 'paused' || ws.status === 'failed') {
      throw new ApiError(409, 'invalid_state', `workspace ${ws.id} is ${ws.status}; it does not accept registrations`);
    }
    if (this.launching.has(ws.id)) {
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
      if (await this.transition(ws, 'ready', 'agent registered', { readyAt: now, nextRestartAt: null })) status = 'ready';
    }
    return { workspace_id: ws.id, status, heartbeat_interval_s: this.d.config.timing.heartbeatIntervalS };
  }

  /** @param known the workspace the request's token was already resolved to (by the caller check), if any. */
  async heartbeat(token: string | undefined, body: HeartbeatRequest, known?: Workspace): Promise<RegistryResponse> {
    const ws = known ?? (await this.byWorkspaceToken(token));
    if (ws.status === 'paused' || ws.status === 'failed') {
      throw new ApiError(409, 'invalid_state', `workspace ${ws.id} is ${ws.status}; it does not accept heartbeats`);
    }
    // Only a registered instance (its URL checked) may turn the workspace ready; the agent re-registers on 404.
    if (!ws.agentUrl) throw new ApiError(404, 'not_registered', `register workspace ${ws.id}'s agent before sending heartbeats`);
    const now = new Date().toISOString();
    await this.d.workspaces.update(ws.id, { lastHeartbeatAt: now, heartbeat: { ...body, at: now } });
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
    if (target && (await this.transition(ws, target, reason, target === 'ready' && !ws.readyAt ? { readyAt: now } : {}))) status = target;
    return { workspace_id: ws.id, status, heartbeat_interval_s: this.d.config.timing.heartbeatIntervalS };
  }

  private async byWorkspaceToken(token: string | undefined): Promise<Workspace> {
    if (!token) throw new ApiError(401, 'missing_token', 'Authorization: Bearer <workspace token> is required');
    if (this.d.config.adminToken && safeEqual(token, this.d.config.adminToken)) {
      throw new ApiError(403, 'wrong_token', 'the admin token does not identify a workspace; agents use their MOLECULE_WORKSPACE_TOKEN');
    }
    const row = await this.d.tokens.findActiveByHash(hashToken(token));
    if (row && row.kind !== 'workspace') {
      throw new ApiError(403, 'wrong_token', 'an agent token is for calls from the platform to the agent; send the workspace token');
    }
    if (!row) {
      throw new ApiError(401, 'invalid_token', 'the workspace token is not valid (revoked, or never issued)');
    }
    const ws = await this.d.workspaces.get(row.workspace_id);
    if (!ws || ws.status === 'removed' || ws.status === 'removing') {
      throw new ApiError(410, 'workspace_removed', `workspace ${row.workspace_id} was removed`);
    }
    return ws;
  }

  /** The live workspace an active workspace token belongs to (the caller's identity on the API), if any. */
  /** The live workspace a workspace token belongs to, or undefined for any token the registry would refuse. */
  async workspaceForToken(token: string): Promise<Workspace | undefined> {
    return this.byWorkspaceToken(token).catch((e) => {
      if (e instanceof ApiError) return undefined;
      throw e;
    });
  }

  /**
   * A2A access rule for workspace callers: a workspace may call itself, its parent, its children and its siblings
   * (same parent; top-level workspaces are siblings of each other). Admin callers are not limited.
   */
  async mayCall(caller: Workspace, targetId: string): Promise<boolean> {
    if (caller.id === targetId) return true;
    const target = await this.d.workspaces.get(targetId);
    if (!target) return false;
    return target.id === caller.parentId || target.parentId === caller.id || target.parentId === caller.parentId;
  }

  /** How the proxy reaches a routable workspace's agent; 503 with the status while it is not routable. */
  async agentTarget(id: string): Promise<AgentTarget> {
    const cached = this.routes.get(id);
    if (cached) return cached;
    const ws = await this.get(id);
    if (!ROUTABLE.includes(ws.status) || !ws.instance?.url) {
      throw new ApiError(503, 'workspace_not_ready', `workspace ${id} is ${ws.status}${ws.statusReason ? ` (${ws.statusReason})` : ''}; A2A needs it ready`, {
        status: ws.status,
      });
    }
    const row = await this.d.tokens.active(id, 'agent');
    if (!row) throw new ApiError(503, 'workspace_not_ready', `workspace ${id} has no agent token`);
    const target = { url: ws.instance.url, headers: ws.instance.headers ?? {}, token: this.d.sealer.open(row.sealed, tokenAad(id, 'agent')) };
    // Only cache if nothing changed while we read; a concurrent event would have found no entry to drop.
    const again = await this.d.workspaces.get(id);
    if (again && again.status === ws.status && again.updatedAt === ws.updatedAt) this.routes.set(id, target);
    return target;
  }

  logs(ws: Workspace, opts: { tail?: number; follow?: boolean; signal?: AbortSignal }): AsyncIterable<string> {
    if (!ws.instanceId) return (async function* () {})();
    return this.d.provisioner.logs(ws.instanceId, opts);
  }

  // ---- lifecycle internals (also used by the liveness monitor and the reconciler) ------------------------

  /**
   * Moves a workspace to `to` if it is still in the status we read. Returns false when someone else moved it
   * first. Every successful change is one event with its reason.
   */
  async transition(ws: Workspace, to: WorkspaceStatus, reason: string, patch: Partial<Workspace> = {}): Promise<boolean> {
    if (!canTransition(ws.status, to)) {
      throw new Error(`status machine: ${ws.status} → ${to} is not a transition (${reason})`);
    }
    const now = new Date().toISOString();
    const ok = await this.d.workspaces.updateIfStatus(ws.id, [ws.status], {
      ...patch,
      status: to,
      statusReason: reason,
      statusChangedAt: now,
    });
    if (!ok) return false;
    this.d.logger.info({ workspace_id: ws.id, from: ws.status, to, reason }, 'workspace status');
    await this.d.bus.publish('workspace.status', ws.id, { from: ws.status, to, reason });
    ws.status = to;
    return true;
  }

  /**
   * Asks the backend for an instance; the workspace must be `provisioning`. Failures end in `failed` with the reason.
   * Every start, restart and resume (by request, automatic, or after a platform restart) comes through here, so
   * every instance gets fresh tokens and the previous instance's are revoked before the backend is called.
   */
  /** @param crashStamp the restart stamp an automatic restart added: taken back if the backend turns out to be down. */
  async launch(id: string, kind: 'start' | 'restart' | 'resume', crashStamp?: string): Promise<void> {
    const run = this.withLock(id, () => this.launchLocked(id, kind, crashStamp));
    this.launching.set(id, run);
    try {
      await run;
    } finally {
      if (this.launching.get(id) === run) this.launching.delete(id);
    }
  }

  private async launchLocked(id: string, kind: 'start' | 'restart' | 'resume', crashStamp?: string): Promise<void> {
    const ws = await this.d.workspaces.get(id);
    if (!ws || ws.status !== 'provisioning') return;
    const tokens = await this.rotateTokens(id);
    // The new instance is unknown until it registers; its URL is checked then.
    await this.d.workspaces.update(id, { agentUrl: null });
    let spec: InstanceSpec;
    try {
      spec = await this.spec(ws, tokens);
    } catch (e) {
      // E.g. the address agents reach the platform on could not be set up (the backend's engine is down).
      const reason = e instanceof ProvisionError ? `${e.code}: ${e.message}` : `could not prepare the instance: ${(e as Error).message}`;
      const cur = await this.d.workspaces.get(id);
      if (cur && cur.status === 'provisioning') await this.transition(cur, 'failed', reason);
      return;
    }
    spec.progress = (step, data = {}) => {
      this.spawn(this.d.bus.publish('workspace.step', id, { step, ...data }));
    };
    const abort = new AbortController();
    this.launches.set(id, abort);
    spec.signal = abort.signal;
    await this.d.bus.publish('workspace.step', id, {
      step: 'instance requested',
      action: kind,
      backend: this.d.provisioner.name,
      image: spec.image,
      tier: ws.tier,
      region: spec.region,
    });
    try {
      const p = this.d.provisioner;
      const handle =
        kind === 'start' || !ws.instanceId
          ? await p.start(spec)
          : kind === 'resume'
            ? await p.resume(ws.instanceId, spec)
            : await p.restart(ws.instanceId, spec);
      await this.d.workspaces.update(id, {
        instanceId: handle.instanceId,
        instance: { url: handle.url, headers: handle.headers, details: handle.details },
        needsRestart: false,
      });
      this.outageAttempts.delete(id);
      await this.d.bus.publish('workspace.step', id, {
        step: 'instance started',
        instance_id: handle.instanceId,
        ...handle.details,
      });
    } catch (e) {
      if (abort.signal.aborted) {
        // Whoever aborted it decides what happens next; reconcile relaunches after a shutdown.
        await this.d.bus.publish('workspace.step', id, { step: 'start abandoned', reason: String(abort.signal.reason) });
        return;
      }
      const reason = e instanceof ProvisionError ? `${e.code}: ${e.message}` : `backend error: ${(e as Error).message}`;
      this.d.logger.warn({ workspace_id: id, err: (e as Error).message }, 'instance start failed');
      const cur = await this.d.workspaces.get(id);
      if (cur && cur.status === 'provisioning') {
        // A backend that is down for a while (engine restarting, API outage) is retried with the restart backoff,
        // which ends in `failed` if it stays down; anything else is final until someone restarts the workspace.
        if (e instanceof ProvisionError && e.code === 'BACKEND_UNAVAILABLE' && e.retryable) await this.markOffline(cur, reason, { outage: true, crashStamp });
        else await this.transition(cur, 'failed', reason);
      }
    } finally {
      if (this.launches.get(id) === abort) this.launches.delete(id);
    }
  }

  /** The complete environment and shape of the instance. Reserved contract variables always win. */
  private async spec(ws: Workspace, tokens: { workspace: string; agent: string }): Promise<InstanceSpec> {
    const env: Record<string, string> = { ...ws.env };
    const secretKeys = new Set<string>();
    for (const scope of ['global', ws.id]) {
      for (const s of await this.d.secrets.list(scope)) {
        env[s.key] = this.d.sealer.open(s.sealed, secretAad(scope, s.key));
        secretKeys.add(s.key);
      }
    }
    const contract = {
      [AGENT_ENV.workspaceId]: ws.id,
      [AGENT_ENV.workspaceName]: ws.name,
      [AGENT_ENV.workspaceRole]: ws.role,
      [AGENT_ENV.workspaceRuntime]: ws.runtime,
      [AGENT_ENV.workspaceTier]: String(ws.tier),
      [AGENT_ENV.platformUrl]: await this.d.platformUrl(),
      [AGENT_ENV.workspaceToken]: tokens.workspace,
      [AGENT_ENV.agentToken]: tokens.agent,
      [AGENT_ENV.region]: ws.region ?? this.d.provisioner.defaultRegion,
      [AGENT_ENV.heartbeatIntervalS]: String(this.d.config.timing.heartbeatIntervalS),
      [AGENT_ENV.port]: '8000',
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
      image: imageFor(ws.runtime, this.d.config.runtimeImage),
      env,
      secretKeys: [...secretKeys],
    };
  }

  /**
   * Revokes the workspace's tokens and mints a new pair. The workspace token (agent → platform) is stored only as
   * its hash: the agent gets it once, in its environment. The agent token (platform → agent) is also sealed, since
   * the proxy presents it on every call.
   */
  private async rotateTokens(workspaceId: string): Promise<{ workspace: string; agent: string }> {
    await this.d.tokens.revokeAll(workspaceId);
    this.routes.delete(workspaceId);
    const workspace = mintToken('workspace');
    const agent = mintToken('agent');
    await this.d.tokens.insert({ id: crypto.randomUUID(), workspaceId, kind: 'workspace', hash: hashToken(workspace), sealed: '' });
    await this.d.tokens.insert({
      id: crypto.randomUUID(),
      workspaceId,
      kind: 'agent',
      hash: hashToken(agent),
      sealed: this.d.sealer.seal(agent, tokenAad(workspaceId, 'agent')),
    });
    return { workspace, agent };
  }

  /** Destroys the instance of a `removing` workspace; on failure it stays `removing` and the monitor retries. */
  async destroy(id: string): Promise<void> {
    await this.withLock(id, async () => {
      const ws = await this.d.workspaces.get(id);
      if (!ws || ws.status !== 'removing') return;
      try {
        if (ws.instanceId) await this.d.provisioner.destroy(ws.instanceId);
        await this.d.provisioner.forget?.(id);
      } catch (e) {
        const reason = `delete requested; destroying the instance failed, will retry: ${(e as Error).message}`;
        // The same failure again (a backend down for a while) only restarts the retry clock: no event every 5 s.
        if (ws.statusReason === reason) await this.d.workspaces.update(id, { statusChangedAt: new Date().toISOString() });
        else await this.transition(ws, 'removing', reason);
        return;
      }
      await this.d.secrets.deleteScope(id);
      await this.transition(ws, 'removed', 'instance destroyed', { removedAt: new Date().toISOString() });
    });
  }

  /**
   * The instance is gone while the workspace should be running. Schedules an automatic restart with
   * exponential backoff, or ends in `failed` when it keeps dying (crash loop).
   */
  async markOffline(ws: Workspace, reason: string, opts: { outage?: boolean; crashStamp?: string } = {}): Promise<void> {
    const t = this.d.config.timing;
    const now = Date.now();
    let recent = ws.restarts.filter((at) => now - Date.parse(at) < t.crashWindowMs);
    let backoffStep = recent.length;
    if (opts.outage) {
      // The backend being down (engine restarting, API outage) is not the agent crashing: it does not count toward
      // the crash loop, and is retried for as long as it lasts, backing off up to the maximum.
      recent = recent.filter((at) => at !== opts.crashStamp);
      backoffStep = this.outageAttempts.get(ws.id) ?? 0;
      this.outageAttempts.set(ws.id, backoffStep + 1);
    } else this.outageAttempts.delete(ws.id);
    if (!opts.outage && recent.length >= t.crashLoopMax) {
      const mins = Math.round(t.crashWindowMs / 60000);
      const why = `crash loop: the agent stopped ${recent.length + 1} times within ${mins} min; last: ${reason}`;
      if (ws.status !== 'offline') await this.transition(ws, 'offline', reason);
      await this.transition(ws, 'failed', why, { nextRestartAt: null });
      return;
    }
    const delay = Math.min(t.restartBackoffMs * 2 ** backoffStep, t.restartBackoffMaxMs);
    const next = new Date(now + delay).toISOString();
    if (ws.status === 'offline') await this.d.workspaces.update(ws.id, { nextRestartAt: next, restarts: recent });
    else if (!(await this.transition(ws, 'offline', `${reason}; restarting in ${(delay / 1000).toFixed(1)} s`, { nextRestartAt: next, restarts: recent }))) return;
    this.wakeAt(delay);
  }

  /** Restarts an `offline` workspace whose backoff has passed. */
  async autoRestart(ws: Workspace): Promise<void> {
    const stamp = new Date().toISOString();
    const restarts = [...ws.restarts, stamp];
    const attempt = restarts.length;
    const ok = await this.transition(ws, 'provisioning', `automatic restart (attempt ${attempt})`, {
      restarts,
      restartCount: ws.restartCount + 1,
      nextRestartAt: null,
    });
    if (ok) this.spawn(this.launch(ws.id, 'restart', stamp));
  }

  /** Unsolicited news from a backend (a process exited, a machine stopped). */
  async onInstanceEvent(ev: InstanceEvent): Promise<void> {
    await this.withLock(ev.workspaceId, async () => {
      const ws = await this.d.workspaces.get(ev.workspaceId);
      if (!ws || ws.instanceId !== ev.instanceId) return;
      await this.d.bus.publish('workspace.instance', ws.id, { instance_id: ev.instanceId, state: ev.state, reason: ev.reason ?? null });
      if (ev.state === 'running' || ev.state === 'starting' || ev.state === 'unknown') return;
      if (ws.status === 'ready' || ws.status === 'degraded' || ws.status === 'provisioning') {
        await this.markOffline(ws, `instance ${ev.state}: ${ev.reason ?? 'no reason given'}`);
      }
    });
  }

  /** Runs due automatic restarts now rather than at the next monitor tick. */
  onWake: (() => void) | undefined;
  private wakeAt(delayMs: number): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.onWake?.();
    }, delayMs + 5);
    t.unref();
    this.timers.add(t);
  }

  withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }

  /** Background work is tracked so shutdown can wait for it and errors are logged, never lost. */
  spawn(p: Promise<unknown>): void {
    const tracked = p.catch((e) => this.d.logger.error({ err: e }, 'background lifecycle task failed'));
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  private abortLaunch(id: string, reason: string): void {
    this.launches.get(id)?.abort(reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    for (const [id] of this.launches) this.abortLaunch(id, 'platform stopping');
    for (const t of this.timers) clearTimeout(t);
    await Promise.allSettled([...this.background]);
  }
}

/** Waits for p to settle, at most ms; never throws. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
