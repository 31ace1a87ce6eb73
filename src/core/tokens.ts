import crypto from 'node:crypto';
import type { Config } from './config.js';
import { hashToken, mintToken, safeEqual, type Sealer } from './crypto.js';
import { ApiError } from './errors.js';
import type { TokenStore, Transact, WorkspaceStore } from './ports.js';
import type { Workspace } from './types.js';

const CACHE_TTL_MS = 30_000;
const CACHE_MAX = 100_000;

/** Sealed agent tokens are bound to their workspace and kind. */
const tokenAad = (workspaceId: string, kind: string) => `token:${workspaceId}:${kind}`;

export interface TokenDeps {
  config: Pick<Config, 'adminToken'>;
  tokens: TokenStore;
  workspaces: WorkspaceStore;
  sealer: Sealer;
  transact: Transact;
}

/**
 * A workspace's credentials: the workspace token (agent → platform, kept only as its hash: the agent gets it once,
 * in its environment) and the agent token (platform → agent, also sealed, since the proxy presents it on every
 * call). Every launch gets a new pair and the previous pair is revoked.
 */
export class WorkspaceTokens {
  /**
   * Who presented workspace tokens are, by token hash, so the A2A proxy's hot path skips two database reads. Any
   * event about a workspace drops its entries (`forget`), on every replica; an entry is only kept if no event came
   * while it was read, and lives at most CACHE_TTL_MS as a bound on anything missed.
   */
  private readonly cache = new Map<string, { ws: Workspace; until: number }>();
  private readonly cachedBy = new Map<string, Set<string>>();
  private epoch = 0;

  constructor(private readonly d: TokenDeps) {}

  /** Drops what is cached about a workspace's tokens: called for every event about it. */
  forget(workspaceId: string): void {
    this.epoch++;
    const hashes = this.cachedBy.get(workspaceId);
    if (!hashes) return;
    for (const h of hashes) this.cache.delete(h);
    this.cachedBy.delete(workspaceId);
  }

  /** Revokes the workspace's tokens and mints a new pair, in one transaction (a workspace is never left without). */
  async rotate(workspaceId: string): Promise<{ workspace: string; agent: string }> {
    const workspace = mintToken('workspace');
    const agent = mintToken('agent');
    await this.d.transact(async ({ tokens }) => {
      await tokens.revokeAll(workspaceId);
      await tokens.insert({ id: crypto.randomUUID(), workspaceId, kind: 'workspace', hash: hashToken(workspace), sealed: '' });
      await tokens.insert({ id: crypto.randomUUID(), workspaceId, kind: 'agent', hash: hashToken(agent), sealed: this.d.sealer.seal(agent, tokenAad(workspaceId, 'agent')) });
    });
    return { workspace, agent };
  }

  async revokeAll(workspaceId: string): Promise<void> {
    await this.d.tokens.revokeAll(workspaceId);
    this.forget(workspaceId);
  }

  /** The live workspace a workspace token belongs to; 401, 403 or 410 (ApiError) for any other credential. */
  async workspaceOf(token: string | undefined): Promise<Workspace> {
    if (!token) throw new ApiError(401, 'missing_token', 'Authorization: Bearer <workspace token> is required');
    if (this.d.config.adminToken && safeEqual(token, this.d.config.adminToken)) {
      throw new ApiError(403, 'wrong_token', 'the admin token does not identify a workspace; agents use their MOLECULE_WORKSPACE_TOKEN');
    }
    const hash = hashToken(token);
    const hit = this.cache.get(hash);
    if (hit && hit.until > Date.now()) return { ...hit.ws }; // a copy: callers may change theirs (transition does)
    const epoch = this.epoch;
    const row = await this.d.tokens.findActiveByHash(hash);
    if (row && row.kind !== 'workspace') {
      throw new ApiError(403, 'wrong_token', 'an agent token is for calls from the platform to the agent; send the workspace token');
    }
    if (!row) throw new ApiError(401, 'invalid_token', 'the workspace token is not valid (revoked, or never issued)');
    const ws = await this.d.workspaces.get(row.workspaceId);
    if (!ws || ws.status === 'removed' || ws.status === 'removing') {
      throw new ApiError(410, 'workspace_removed', `workspace ${row.workspaceId} was removed`);
    }
    if (epoch === this.epoch) this.remember(hash, ws);
    return ws;
  }

  private remember(hash: string, ws: Workspace): void {
    if (this.cache.size >= CACHE_MAX) {
      // Full (more live tokens than workspaces should have): start over rather than track recency.
      this.cache.clear();
      this.cachedBy.clear();
    }
    this.cache.set(hash, { ws: { ...ws }, until: Date.now() + CACHE_TTL_MS });
    let set = this.cachedBy.get(ws.id);
    if (!set) this.cachedBy.set(ws.id, (set = new Set()));
    set.add(hash);
  }

  /** The live workspace a workspace token belongs to, or undefined for any token the registry would refuse. */
  async workspaceForToken(token: string): Promise<Workspace | undefined> {
    return this.workspaceOf(token).catch((e) => {
      if (e instanceof ApiError) return undefined;
      throw e;
    });
  }

  /** The current agent token of a workspace, opened; undefined when it has none. */
  async agentToken(workspaceId: string): Promise<string | undefined> {
    const row = await this.d.tokens.active(workspaceId, 'agent');
    return row ? this.d.sealer.open(row.sealed, tokenAad(workspaceId, 'agent')) : undefined;
  }
}
