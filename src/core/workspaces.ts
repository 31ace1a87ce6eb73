import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { reportsHealth, validatesSpecs, type Provisioner } from './provisioner.js';
import type { Config } from './config.js';
import type { Sealer } from './crypto.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import { Activity, WAKE_REASONS, Wakes } from './idle.js';
import { assertLiveParent, assertNewParent, cycleError, cycleThrough, inFamily } from './hierarchy.js';
import { AgentRegistry } from './registry.js';
import { WorkspaceTokens } from './tokens.js';
import type { PagePosition, SecretStore, TokenStore, Transact, WorkspacePageFilter, WorkspaceStore } from './ports.js';
import { secretAad } from './secrets.js';
import { ACTIONS, canTransition, ROUTABLE, type Action } from './status.js';
import type { LaunchKind, Tier, Workspace, WorkspaceStatus } from './types.js';

/** The same variables with the same values, whatever their order. */
function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

/** How long a pause request waits to hear that the instance is stopped. */
const PAUSE_WAIT_MS = 15_000;

export interface CreateInput {
  name: string;
  role?: string;
  runtime: string;
  tier: Tier;
  region?: string | null;
  parent_id?: string | null;
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  /** Sleep after this many idle seconds; null = never; absent = MOLECULE_IDLE_TIMEOUT_S. */
  idle_timeout_s?: number | null;
}

export interface PatchInput {
  name?: string;
  role?: string;
  tier?: Tier;
  env?: Record<string, string>;
  /** null = never sleep. Takes effect at once, on no restart. */
  idle_timeout_s?: number | null;
  /** Moves the workspace under another one (null: top-level). Takes effect at once, on no restart. */
  parent_id?: string | null;
}

export interface ServiceDeps {
  config: Config;
  /** For writes that belong together (create with its secrets, token rotation): one transaction. */
  transact: Transact;
  workspaces: WorkspaceStore;
  tokens: TokenStore;
  secrets: SecretStore;
  bus: EventBus;
  provisioner: Provisioner;
  sealer: Sealer;
  logger: Logger;
}

/** Where and how to reach a workspace's agent. */
export interface AgentTarget {
  url: string;
  headers: Record<string, string>;
  token: string;
  /** For the A2A access rules, without another read. */
  parentId: string | null;
}

/**
 * The workspace API: create, actions, routing; registration and heartbeats through `registry`, credentials through `tokens`. Requests only write what should be (the
 * status, and the launch a workspace waits for); the reconciler, on whichever replica holds its lease, makes the
 * backend match. Every status change goes through transition(), which checks the status machine, writes
 * compare-and-set and publishes one event. This replica's requests on one workspace are serialised by a lock;
 * across replicas the compare-and-set decides.
 */
export class WorkspaceService {
  private readonly locks = new Map<string, Promise<unknown>>();
  /**
   * Routes of routable workspaces, so the proxy's hot path touches neither the database nor the cipher.
   * Any event about a workspace drops its entry: every change of status or instance publishes one.
   */
  private readonly routes = new Map<string, AgentTarget>();
  private readonly unsubscribe: () => void;

  /** Credentials of workspaces: minting, rotation, and who a presented token is. */
  readonly tokens: WorkspaceTokens;
  /** Registration and heartbeats of agents. */
  readonly registry: AgentRegistry;
  /** A2A activity seen by this replica, written to the database sparingly (core/idle.ts). */
  readonly activity: Activity;
  /** Wakes of sleeping workspaces that A2A requests wait for on this replica. */
  readonly wakes: Wakes;

  constructor(private readonly d: ServiceDeps) {
    this.tokens = new WorkspaceTokens(d);
    this.registry = new AgentRegistry({ ...d, tokens: this.tokens, transition: (...a) => this.transition(...a) });
    this.activity = new Activity({ workspaces: d.workspaces, config: d.config, logger: d.logger });
    this.wakes = new Wakes({ bus: d.bus, config: d.config, find: (id) => this.find(id), wake: (id) => this.wake(id, 'a2a') });
    this.unsubscribe = d.bus.subscribe((ev) => {
      if (!ev.workspace_id) return;
      this.routes.delete(ev.workspace_id);
      this.tokens.forget(ev.workspace_id);
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

  /** One page of the list (GET /workspaces): removed ones only when asked for by status. */
  page(filter: WorkspacePageFilter, opts: { limit: number; after?: PagePosition }): Promise<{ items: Workspace[]; next: PagePosition | null }> {
    return this.d.workspaces.page(filter, opts);
  }

  // ---- create --------------------------------------------------------------------------------------------

  async create(input: CreateInput, idempotencyKey?: string): Promise<{ workspace: Workspace; created: boolean }> {
    if (idempotencyKey) {
      const prior = await this.d.workspaces.byIdempotencyKey(idempotencyKey);
      if (prior) return { workspace: prior, created: false };
    }
    if (input.parent_id) await assertLiveParent(this.read, input.parent_id);
    const problem = this.specProblem({ region: input.region ?? null, tier: input.tier, runtime: input.runtime });
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
      pendingLaunch: 'start',
      idleTimeoutS: input.idle_timeout_s === undefined ? this.d.config.idle.defaultTimeoutS : input.idle_timeout_s,
      activeAt: null,
    };
    try {
      // The workspace and its secrets are one write: a workspace never exists without the secrets it was given.
      // Without secrets it is one statement, atomic by itself (no BEGIN and COMMIT round trips on Postgres).
      const secretEntries = Object.entries(input.secrets ?? {});
      if (!secretEntries.length) await this.d.workspaces.insert(ws);
      else
        await this.d.transact(async ({ workspaces, secrets }) => {
          await workspaces.insert(ws);
          for (const [k, v] of secretEntries) await secrets.put(ws.id, k, this.d.sealer.seal(v, secretAad(ws.id, k)));
        });
    } catch (e) {
      // Two concurrent requests with one Idempotency-Key: the unique index let one through; answer with it.
      if (idempotencyKey) {
        const prior = await this.d.workspaces.byIdempotencyKey(idempotencyKey);
        if (prior) return { workspace: prior, created: false };
      }
      throw e;
    }
    // Tokens are minted by each launch. The status event sets the reconciler off.
    await this.d.bus.publish('workspace.created', ws.id, {
      name: ws.name,
      runtime: ws.runtime,
      tier: ws.tier,
      region: ws.region,
      backend: ws.backend,
    });
    await this.d.bus.publish('workspace.status', ws.id, { from: null, to: 'provisioning', reason: 'created' });
    return { workspace: ws, created: true };
  }

  // ---- user actions --------------------------------------------------------------------------------------

  async patch(id: string, input: PatchInput): Promise<Workspace> {
    return this.withLock(id, async () => {
      const ws = await this.get(id);
      if (ws.status === 'removing') throw new ApiError(409, 'invalid_state', `workspace ${id} is being removed`);
      const { idle_timeout_s, parent_id, ...fields } = input;
      const from = ws.parentId ?? null;
      const moving = parent_id !== undefined && parent_id !== from;
      if (moving && parent_id !== null) await assertNewParent(this.read, id, parent_id);
      const affectsInstance =
        (input.tier !== undefined && input.tier !== ws.tier) ||
        (input.env !== undefined && !sameEnv(input.env, ws.env)) ||
        (input.name !== undefined && input.name !== ws.name) ||
        (input.role !== undefined && input.role !== ws.role);
      if (input.tier !== undefined) {
        const problem = this.specProblem({ region: ws.region, tier: input.tier, runtime: ws.runtime });
        if (problem) throw new ApiError(400, 'invalid_for_backend', problem);
      }
      const hasInstance = ws.instanceId !== null && ws.status !== 'failed';
      // The parent is not part of the instance (agents read their team from the API when they use it): no restart.
      await this.d.workspaces.update(id, {
        ...fields,
        ...(idle_timeout_s !== undefined ? { idleTimeoutS: idle_timeout_s } : {}),
        ...(moving ? { parentId: parent_id } : {}),
        needsRestart: ws.needsRestart || (affectsInstance && hasInstance),
      });
      if (moving && parent_id !== null) {
        // Two moves checked at once (on this replica under different locks, or on two replicas) can each pass the
        // check above and together close a cycle (a under b while b goes under a). Each move looks again once its
        // write is in: the last write of a cycle sees the cycle, and its move is undone. Both may be undone (then
        // neither caller gets a cycle, and both are told to retry), never both kept.
        const cycle = await cycleThrough(this.read, id, parent_id);
        if (cycle) {
          await this.d.workspaces.update(id, { parentId: from });
          this.forgetCached(id);
          throw cycleError(cycle);
        }
      }
      // The A2A rules read the parent from the route and token caches: this replica drops them now, the others
      // (and this one again) on the event.
      if (moving) this.forgetCached(id);
      const updated = (await this.d.workspaces.get(id))!;
      await this.d.bus.publish('workspace.updated', id, {
        fields: Object.keys(input),
        needs_restart: updated.needsRestart,
        ...(moving ? { from, to: parent_id } : {}),
      });
      return updated;
    });
  }

  /** How the hierarchy checks read a workspace. */
  private readonly read = (id: string) => this.d.workspaces.get(id);

  /** What is cached about a workspace for the A2A rules (its route, its token's caller): read afresh next time. */
  private forgetCached(id: string): void {
    this.routes.delete(id);
    this.tokens.forget(id);
  }

  async restart(id: string): Promise<Workspace> {
    return this.act(id, 'restart', async (ws) => {
      this.assertBackendAvailable();
      const kind: LaunchKind = ws.status === 'paused' ? 'resume' : 'restart';
      await this.requested(ws, 'provisioning', 'restart requested', { restarts: [], nextRestartAt: null, pendingLaunch: kind }, 'restart');
    });
  }

  /** The instance is stopped by the reconciler; the workspace reads `paused` at once. */
  /**
   * Records the pause, then waits (up to PAUSE_WAIT_MS) for the reconciler — on whichever replica leads — to say
   * the instance is stopped, so a caller that gets the answer can count on it; after that it goes on without us.
   */
  async pause(id: string): Promise<Workspace> {
    let stopped!: () => void;
    const done = new Promise<void>((resolve) => (stopped = resolve));
    const unsubscribe = this.d.bus.subscribe((ev) => {
      if (ev.workspace_id !== id) return;
      if ((ev.type === 'workspace.step' && ev.data.step === 'instance stopped') || (ev.type === 'workspace.status' && ev.data.from === 'paused')) stopped();
    });
    try {
      const ws = await this.act(id, 'pause', async (cur) => {
        await this.requested(cur, 'paused', 'paused by request', { nextRestartAt: null, pendingLaunch: null }, 'pause');
      });
      if (!ws.instanceId) return ws;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, PAUSE_WAIT_MS)))]);
      clearTimeout(timer);
      return (await this.d.workspaces.get(id))!;
    } finally {
      unsubscribe();
    }
  }

  async resume(id: string): Promise<Workspace> {
    return this.act(id, 'resume', async (ws) => {
      this.assertBackendAvailable();
      await this.requested(ws, 'provisioning', 'resume requested', { restarts: [], pendingLaunch: 'resume' }, 'resume');
    });
  }

  /**
   * Wakes a sleeping workspace: `provisioning` with the resume launch. `request` is a person's (POST …/wake: 409
   * unless sleeping); `a2a` is a message's, and a no-op unless it still sleeps (another replica may have woken it).
   */
  async wake(id: string, via: 'a2a' | 'request'): Promise<Workspace> {
    const patch = { restarts: [], nextRestartAt: null, pendingLaunch: 'resume' as const };
    if (via === 'request') {
      return this.act(id, 'wake', async (ws) => {
        this.assertBackendAvailable();
        await this.requested(ws, 'provisioning', WAKE_REASONS.request, patch, 'wake');
      });
    }
    return this.withLock(id, async () => {
      const ws = await this.get(id);
      if (ws.status === 'sleeping') await this.transition(ws, 'provisioning', WAKE_REASONS.a2a, patch, 'wake');
      return (await this.d.workspaces.get(id))!;
    });
  }

  /**
   * The idle watcher's (on the leader): a ready workspace that is idle sleeps. Its tokens are revoked once it reads
   * `sleeping`; the reconciler then stops or suspends its instance, and a wake's launch mints new ones.
   */
  async sleep(ws: Workspace, reason: string): Promise<boolean> {
    return this.withLock(ws.id, async () => {
      if (!(await this.transition(ws, 'sleeping', reason, { pendingLaunch: null, nextRestartAt: null }))) return false;
      await this.tokens.revokeAll(ws.id);
      this.routes.delete(ws.id);
      return true;
    });
  }

  /** A person's request moves the workspace; losing the compare-and-set to another replica's change is a 409. */
  private async requested(ws: Workspace, to: WorkspaceStatus, reason: string, patch: Partial<Workspace>, action: Action): Promise<void> {
    if (!(await this.transition(ws, to, reason, patch, action))) {
      throw new ApiError(409, 'invalid_state', `workspace ${ws.id} changed while the ${action} was being recorded; look at it again and retry`);
    }
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
    await this.tokens.revokeAll(id);
    this.routes.delete(id);
    return this.act(id, 'delete', async (cur) => {
      if (cur.status !== 'removing') await this.requested(cur, 'removing', 'delete requested', { nextRestartAt: null, pendingLaunch: null }, 'delete');
    });
  }

  /** A mistake the backend can see in what was asked before anything starts, or null. */
  private specProblem(spec: { region: string | null; tier: number; runtime: string }): string | null {
    const p = this.d.provisioner;
    return validatesSpecs(p) ? p.validate(spec) : null;
  }

  /** 503 before anything is recorded when the backend cannot take work (e.g. its engine is unreachable). */
  private assertBackendAvailable(): void {
    const p = this.d.provisioner;
    const down = reportsHealth(p) ? p.unavailable() : null;
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

  // ---- agent-facing --------------------------------------------------------------------------------------

  /**
   * A2A access rule for workspace callers: a workspace may call itself, its parent, its children and its siblings
   * (same parent; top-level workspaces are siblings of each other). Admin callers are not limited.
   */
  async mayCall(caller: Workspace, targetId: string): Promise<boolean> {
    if (caller.id === targetId) return true;
    const route = this.routes.get(targetId);
    if (route) return inFamily(caller, { id: targetId, parentId: route.parentId });
    const target = await this.d.workspaces.get(targetId);
    if (!target) return false;
    return inFamily(caller, target);
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
    const token = await this.tokens.agentToken(id);
    if (!token) throw new ApiError(503, 'workspace_not_ready', `workspace ${id} has no agent token`);
    const target = { url: ws.instance.url, headers: ws.instance.headers ?? {}, token, parentId: ws.parentId ?? null };
    // Only cache if nothing changed while we read; a concurrent event would have found no entry to drop.
    const again = await this.d.workspaces.get(id);
    if (again && again.status === ws.status && again.updatedAt === ws.updatedAt) this.routes.set(id, target);
    return target;
  }

  logs(ws: Workspace, opts: { tail?: number; follow?: boolean; signal?: AbortSignal }): AsyncIterable<string> {
    if (!ws.instanceId) return (async function* () {})();
    return this.d.provisioner.logs(ws.instanceId, opts);
  }

  // ---- lifecycle internals (shared with the reconciler) ---------------------------------------------------

  /**
   * Moves a workspace to `to` if it is still in the status we read. Returns false when someone else moved it
   * first. Every successful change is one event with its reason; `action` marks a person's request (restart, pause,
   * resume, delete), which supersedes a launch in flight.
   */
  async transition(ws: Workspace, to: WorkspaceStatus, reason: string, patch: Partial<Workspace> = {}, action?: Action): Promise<boolean> {
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
    this.routes.delete(ws.id);
    this.d.logger.info({ workspace_id: ws.id, from: ws.status, to, reason }, 'workspace status');
    await this.d.bus.publish('workspace.status', ws.id, { from: ws.status, to, reason, ...(action ? { action } : {}) });
    ws.status = to;
    ws.statusChangedAt = now;
    return true;
  }

  /** New credentials for the next instance (the old ones stop working), and no stale route to the old one. */
  async rotateTokens(workspaceId: string): Promise<{ workspace: string; agent: string }> {
    const pair = await this.tokens.rotate(workspaceId);
    this.routes.delete(workspaceId);
    return pair;
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

  close(): void {
    this.unsubscribe();
    this.activity.close();
  }
}
