/**
 * What core needs from storage, in core's own terms (domain objects, camelCase). src/store implements these;
 * core never imports the store, so the dependencies point one way: store → core, backends → core.
 */
import type { PlatformEvent, Workspace, WorkspaceStatus } from './types.js';
import type { HeartbeatWrite } from './heartbeat-writes.js';

/** Where a page walk stands: the last row's creation time and id (both never change). */
export interface PagePosition {
  createdAt: string;
  id: string;
}

export interface WorkspacePageFilter {
  status?: WorkspaceStatus[];
  parentId?: string;
  /** Case-insensitive substring of the name. */
  q?: string;
}

/** The cut-offs of the reconciler's periodic pass (see WorkspaceStore.due). */
export interface DueCutoffs {
  /** Offline workspaces whose automatic restart is due (next_restart_at <= now). */
  now: string;
  /** Provisioning since before this: timed out (those with a launch requested are always due). */
  provisioningSince: string;
  /** Ready or degraded with no heartbeat since this. */
  heartbeatBefore: string;
  /** Removing since before this: the destroy is retried. */
  removingSince: string;
}

export interface WorkspaceStore {
  insert(w: Workspace): Promise<void>;
  get(id: string): Promise<Workspace | undefined>;
  byIdempotencyKey(key: string): Promise<Workspace | undefined>;
  /** In creation order; removed ones only when asked for (or named in `status`). */
  list(filter?: { status?: WorkspaceStatus[]; parentId?: string; includeRemoved?: boolean }): Promise<Workspace[]>;
  /**
   * One page in (created_at, id) order, strictly after `after`: a keyset walk on indexes, so its cost is the page,
   * not the table. `q` matches names case-insensitively anywhere in them. `limit + 1` rows are read to know whether
   * there is a next page; `next` is the last row's position when there is.
   */
  page(filter: WorkspacePageFilter, opts: { limit: number; after?: PagePosition }): Promise<{ items: Workspace[]; next: PagePosition | null }>;
  /**
   * The workspaces the reconciler's periodic pass must look at: each term is one index range, so the pass costs
   * what is due, not the number of workspaces. Times are ISO strings (as stored).
   */
  due(at: DueCutoffs): Promise<Workspace[]>;
  countByStatus(): Promise<Record<string, number>>;
  update(id: string, patch: Partial<Workspace>): Promise<void>;
  /** Compare-and-set on the status and the time it was set: applies only while neither has changed. */
  updateIf(id: string, expect: { status: WorkspaceStatus; statusChangedAt: string }, patch: Partial<Workspace>): Promise<boolean>;
  /** Compare-and-set on status: applies only while the status is still one of `from`. */
  updateIfStatus(id: string, from: WorkspaceStatus[], patch: Partial<Workspace>): Promise<boolean>;
  /** Records activity at `at` unless a later one is recorded already (core/idle.ts); updated_at stays. */
  touchActive(id: string, at: string): Promise<void>;
  /** Heartbeats: each one's time and body; activity when it reports tasks, or none for the first time after some. */
  recordHeartbeats(batch: HeartbeatWrite[]): Promise<void>;
  /** Ready or degraded workspaces that have an idle timeout. */
  sleepCandidates(): Promise<Workspace[]>;
  /** The oldest last heartbeat (ISO) among workspaces in `status`, or null: for /metrics, one index seek. */
  oldestHeartbeat(status: WorkspaceStatus): Promise<string | null>;
}

export type TokenKind = 'workspace' | 'agent';

export interface TokenRecord {
  id: string;
  workspaceId: string;
  kind: TokenKind;
  /** SHA-256 of the token: how a presented token is found. */
  hash: string;
  /** The token sealed (agent tokens, which the proxy presents); empty once revoked or when never needed. */
  sealed: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface TokenStore {
  insert(t: Pick<TokenRecord, 'id' | 'workspaceId' | 'kind' | 'hash' | 'sealed'>): Promise<void>;
  findActiveByHash(hash: string): Promise<TokenRecord | undefined>;
  /** The newest unrevoked token of that kind. */
  active(workspaceId: string, kind: TokenKind): Promise<TokenRecord | undefined>;
  revokeAll(workspaceId: string): Promise<void>;
}

export interface SecretRecord {
  scope: string;
  key: string;
  sealed: string;
  createdAt: string;
  updatedAt: string;
}

export interface SecretStore {
  put(scope: string, key: string, sealed: string): Promise<'created' | 'updated'>;
  /** By key. */
  list(scope: string): Promise<SecretRecord[]>;
  delete(scope: string, key: string): Promise<boolean>;
  deleteScope(scope: string): Promise<void>;
  /** Any one secret (to check a key opens what is stored). */
  any(): Promise<SecretRecord | undefined>;
}

export interface EventLog {
  append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent>;
  /** Several events in one transaction, numbered in the order given. */
  appendAll(es: Omit<PlatformEvent, 'id'>[]): Promise<PlatformEvent[]>;
  /** In id order, after `afterId`, optionally of one workspace. */
  list(opts: { workspaceId?: string; afterId?: number; limit?: number }): Promise<PlatformEvent[]>;
  get(id: number): Promise<PlatformEvent | undefined>;
  lastId(): Promise<number>;
}

/** The stores a unit of work may write through. */
export interface Stores {
  workspaces: WorkspaceStore;
  tokens: TokenStore;
  secrets: SecretStore;
}

/** Runs `fn` against stores bound to one transaction: all of its writes happen, or none. */
export type Transact = <T>(fn: (s: Stores) => Promise<T>) => Promise<T>;

export interface ReplicaInfo {
  id: string;
  host: string;
  pid: number;
  backend: string;
  url: string | null;
  startedAt: string;
  lastSeen: string;
}

/** The platform processes of a cluster, as each announced itself. */
export interface ReplicaRegistry {
  announce(r: ReplicaInfo): Promise<void>;
  seen(id: string, at: string): Promise<void>;
  /** Seen since `since` (ISO time), oldest first. */
  liveSince(since: string): Promise<ReplicaInfo[]>;
  remove(id: string): Promise<void>;
  /** Forgets replicas not seen since `before`. */
  prune(before: string): Promise<void>;
}

/** Named leases with an owner and an expiry (epoch ms). */
export interface LeaseStore {
  /** Takes or renews the lease for `owner` until `expiresAt`; true when `owner` holds it afterwards. */
  acquire(name: string, owner: string, now: number, expiresAt: number): Promise<boolean>;
  release(name: string, owner: string): Promise<void>;
  holder(name: string, now: number): Promise<string | null>;
}

/** Facts stored once per cluster (its identity, the key check value): the first writer wins. */
export interface ClusterFacts {
  get(key: string): Promise<string | undefined>;
  /** Writes the value unless one exists; returns what is stored. */
  insertOnce(key: string, value: string): Promise<string>;
}
