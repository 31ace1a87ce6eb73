import { PostgresAdapter, sql, type Kysely, type Selectable } from 'kysely';
import type { HeartbeatWrite } from '../core/heartbeat-writes.js';
import type { Database, SecretRow, TokenRow, WorkspaceRow } from './schema.js';
import type { DueCutoffs, EventLog, PagePosition, SecretRecord, SecretStore, Stores, TokenKind, TokenRecord, TokenStore, Transact, WorkspacePageFilter, WorkspaceStore } from '../core/ports.js';
import type { PlatformEvent, Workspace, WorkspaceStatus } from '../core/types.js';

const json = <T>(s: string | null, fallback: T): T => (s == null ? fallback : (JSON.parse(s) as T));

function toWorkspace(r: Selectable<WorkspaceRow>): Workspace {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    runtime: r.runtime,
    tier: r.tier as Workspace['tier'],
    region: r.region,
    parentId: r.parent_id,
    env: json(r.env, {}),
    status: r.status as WorkspaceStatus,
    statusReason: r.status_reason,
    statusChangedAt: r.status_changed_at,
    backend: r.backend,
    instanceId: r.instance_id,
    instance: json(r.instance, null),
    agentUrl: r.agent_url,
    agentCard: json(r.agent_card, null),
    idempotencyKey: r.idempotency_key,
    restarts: json(r.restarts, []),
    restartCount: r.restart_count,
    nextRestartAt: r.next_restart_at,
    lastHeartbeatAt: r.last_heartbeat_at,
    heartbeat: json(r.heartbeat, null),
    needsRestart: !!r.needs_restart,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    readyAt: r.ready_at,
    removedAt: r.removed_at,
    pendingLaunch: (r.pending_launch as Workspace['pendingLaunch']) ?? null,
    idleTimeoutS: r.idle_timeout_s ?? null,
    activeAt: r.active_at ?? null,
  };
}

/** Maps a partial domain patch to column values. */
function toColumns(p: Partial<Workspace>): Partial<WorkspaceRow> {
  const c: Partial<WorkspaceRow> = {};
  const set = <K extends keyof WorkspaceRow>(k: K, v: WorkspaceRow[K]) => (c[k] = v);
  if (p.name !== undefined) set('name', p.name);
  if (p.role !== undefined) set('role', p.role);
  if (p.runtime !== undefined) set('runtime', p.runtime);
  if (p.tier !== undefined) set('tier', p.tier);
  if (p.region !== undefined) set('region', p.region);
  if (p.parentId !== undefined) set('parent_id', p.parentId);
  if (p.env !== undefined) set('env', JSON.stringify(p.env));
  if (p.status !== undefined) set('status', p.status);
  if (p.statusReason !== undefined) set('status_reason', p.statusReason);
  if (p.statusChangedAt !== undefined) set('status_changed_at', p.statusChangedAt);
  if (p.backend !== undefined) set('backend', p.backend);
  if (p.instanceId !== undefined) set('instance_id', p.instanceId);
  if (p.instance !== undefined) set('instance', p.instance == null ? null : JSON.stringify(p.instance));
  if (p.agentUrl !== undefined) set('agent_url', p.agentUrl);
  if (p.agentCard !== undefined) set('agent_card', p.agentCard == null ? null : JSON.stringify(p.agentCard));
  if (p.idempotencyKey !== undefined) set('idempotency_key', p.idempotencyKey);
  if (p.restarts !== undefined) set('restarts', JSON.stringify(p.restarts));
  if (p.restartCount !== undefined) set('restart_count', p.restartCount);
  if (p.nextRestartAt !== undefined) set('next_restart_at', p.nextRestartAt);
  if (p.lastHeartbeatAt !== undefined) set('last_heartbeat_at', p.lastHeartbeatAt);
  if (p.heartbeat !== undefined) set('heartbeat', p.heartbeat == null ? null : JSON.stringify(p.heartbeat));
  if (p.needsRestart !== undefined) set('needs_restart', p.needsRestart ? 1 : 0);
  if (p.readyAt !== undefined) set('ready_at', p.readyAt);
  if (p.removedAt !== undefined) set('removed_at', p.removedAt);
  if (p.pendingLaunch !== undefined) set('pending_launch', p.pendingLaunch);
  if (p.idleTimeoutS !== undefined) set('idle_timeout_s', p.idleTimeoutS);
  if (p.activeAt !== undefined) set('active_at', p.activeAt);
  return c;
}

/** A LIKE pattern matching `s` anywhere, with LIKE's own wildcards in `s` taken literally (escape character '!'). */
function likeSubstring(s: string): string {
  return `%${s.replace(/[!%_]/g, (c) => `!${c}`)}%`;
}

export class WorkspaceRepo implements WorkspaceStore {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(w: Workspace): Promise<void> {
    await this.db
      .insertInto('workspaces')
      .values({ ...(toColumns(w) as WorkspaceRow), id: w.id, created_at: w.createdAt, updated_at: w.updatedAt })
      .execute();
  }

  async get(id: string): Promise<Workspace | undefined> {
    const r = await this.db.selectFrom('workspaces').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toWorkspace(r);
  }

  async byIdempotencyKey(key: string): Promise<Workspace | undefined> {
    const r = await this.db.selectFrom('workspaces').selectAll().where('idempotency_key', '=', key).executeTakeFirst();
    return r && toWorkspace(r);
  }

  async list(filter: { status?: WorkspaceStatus[]; parentId?: string; includeRemoved?: boolean } = {}): Promise<Workspace[]> {
    let q = this.db.selectFrom('workspaces').selectAll().orderBy('created_at', 'asc').orderBy('id', 'asc');
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    else if (!filter.includeRemoved) q = q.where('status', '!=', 'removed');
    if (filter.parentId) q = q.where('parent_id', '=', filter.parentId);
    return (await q.execute()).map(toWorkspace);
  }

  async due(at: DueCutoffs): Promise<Workspace[]> {
    const from = () => this.db.selectFrom('workspaces').selectAll();
    const rows = await Promise.all([
      // (status, status_changed_at); launches requested are few, and all of them are provisioning.
      from()
        .where('status', '=', 'provisioning')
        .where((eb) => eb.or([eb('pending_launch', 'is not', null), eb('status_changed_at', '<', at.provisioningSince)]))
        .execute(),
      // (status, last_heartbeat_at): the stale ones only. Never heard from: measured from the status change.
      from()
        .where('status', 'in', ['ready', 'degraded'])
        .where((eb) => eb.or([eb('last_heartbeat_at', '<', at.heartbeatBefore), eb.and([eb('last_heartbeat_at', 'is', null), eb('status_changed_at', '<', at.heartbeatBefore)])]))
        .execute(),
      // (status, next_restart_at)
      from().where('status', '=', 'offline').where('next_restart_at', '<=', at.now).execute(),
      from().where('status', '=', 'removing').where('status_changed_at', '<', at.removingSince).execute(),
    ]);
    return rows.flat().map(toWorkspace);
  }

  /**
   * A keyset page: `(created_at, id) > after`, in that order, `limit + 1` rows. Each filter has an index that walks
   * in this order (migration 0003): no filter or `q` alone the partial index on live workspaces, `status` (one)
   * (status, created_at, id), `parent_id` (parent_id, created_at, id). 'removed' is written as a literal, not a
   * parameter, so both planners can match it against the partial index's predicate.
   */
  async page(filter: WorkspacePageFilter, opts: { limit: number; after?: PagePosition }): Promise<{ items: Workspace[]; next: PagePosition | null }> {
    const rows = await this.pageQuery(filter, opts).execute();
    const items = rows.slice(0, opts.limit).map(toWorkspace);
    const last = items.at(-1);
    return { items, next: rows.length > opts.limit && last ? { createdAt: last.createdAt, id: last.id } : null };
  }

  /** The query of one page (also for tests that EXPLAIN it). */
  pageQuery(filter: WorkspacePageFilter, opts: { limit: number; after?: PagePosition }) {
    let q = this.db.selectFrom('workspaces').selectAll();
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    else q = q.where(sql<boolean>`status <> 'removed'`);
    if (filter.parentId) q = q.where('parent_id', '=', filter.parentId);
    if (filter.q) q = q.where(sql<boolean>`lower(name) like ${likeSubstring(filter.q.toLowerCase())} escape '!'`);
    const after = opts.after;
    if (after) q = q.where(({ eb, refTuple, tuple }) => eb(refTuple('created_at', 'id'), '>', tuple(after.createdAt, after.id)));
    return q.orderBy('created_at', 'asc').orderBy('id', 'asc').limit(opts.limit + 1);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('workspaces')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('status')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  /** Plain update (no read-back: most callers, heartbeats among them, do not need the row). */
  async update(id: string, patch: Partial<Workspace>): Promise<void> {
    await this.db
      .updateTable('workspaces')
      .set({ ...toColumns(patch), updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .execute();
  }

  /** Compare-and-set on the status and the time it was set: applies only while neither has changed. */
  async updateIf(id: string, expect: { status: WorkspaceStatus; statusChangedAt: string }, patch: Partial<Workspace>): Promise<boolean> {
    const res = await this.db
      .updateTable('workspaces')
      .set({ ...toColumns(patch), updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .where('status', '=', expect.status)
      .where('status_changed_at', '=', expect.statusChangedAt)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  /** Compare-and-set on status: applies only while the status is still one of `from`. */
  async updateIfStatus(id: string, from: WorkspaceStatus[], patch: Partial<Workspace>): Promise<boolean> {
    const res = await this.db
      .updateTable('workspaces')
      .set({ ...toColumns(patch), updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .where('status', 'in', from)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  /** Moves active_at forward to `at` (never back); not a change of the record, so updated_at stays. */
  async touchActive(id: string, at: string): Promise<void> {
    await this.db
      .updateTable('workspaces')
      .set({ active_at: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('active_at', 'is', null), eb('active_at', '<', at)]))
      .execute();
  }

  /**
   * Heartbeats, one statement for the batch (core/heartbeat-writes.ts): each row's time and body, and activity
   * (active_at) when it reports active tasks or is the first report of none after some — decided in the row, whichever
   * replica took the previous heartbeat. In the assignments the right-hand `busy` is the stored one (the previous
   * heartbeat's), on both dialects.
   */
  async recordHeartbeats(batch: HeartbeatWrite[]): Promise<void> {
    if (!batch.length) return;
    const set = sql`last_heartbeat_at = v.at, heartbeat = v.hb, updated_at = v.at,
      active_at = case when v.busy = 1 or v.was_busy = 1 or workspaces.busy = 1 then v.at else workspaces.active_at end, busy = v.busy`;
    const col = <T>(f: (h: HeartbeatWrite) => T) => batch.map(f);
    if (this.db.getExecutor().adapter instanceof PostgresAdapter) {
      // Five array parameters, whatever the batch size.
      await sql`update workspaces set ${set}
        from unnest(${col((h) => h.id)}::text[], ${col((h) => h.at)}::text[], ${col((h) => JSON.stringify(h.heartbeat))}::text[],
          ${col((h) => (h.busy ? 1 : 0))}::int[], ${col((h) => (h.wasBusy ? 1 : 0))}::int[]) as v(id, at, hb, busy, was_busy)
        where workspaces.id = v.id`.execute(this.db);
      return;
    }
    const rows = sql.join(batch.map((h) => sql`(${h.id}, ${h.at}, ${JSON.stringify(h.heartbeat)}, ${h.busy ? 1 : 0}, ${h.wasBusy ? 1 : 0})`));
    await sql`with v(id, at, hb, busy, was_busy) as (values ${rows}) update workspaces set ${set} from v where workspaces.id = v.id`.execute(this.db);
  }

  /** Running workspaces with an idle timeout (index workspaces_idle): the ones the idle check looks at. */
  async sleepCandidates(): Promise<Workspace[]> {
    // The status is checked here, not in SQL: with it there, SQLite's planner walks the status index through every
    // ready workspace (12 ms every 2 s at 10,000) instead of the partial index on the few with an idle timeout.
    const rows = await this.db.selectFrom('workspaces').selectAll().where('idle_timeout_s', 'is not', null).execute();
    return rows.filter((r) => r.status === 'ready' || r.status === 'degraded').map(toWorkspace);
  }

  /** min() over the (status, last_heartbeat_at) index: read from the index, never the table. */
  async oldestHeartbeat(status: WorkspaceStatus): Promise<string | null> {
    const r = await this.db
      .selectFrom('workspaces')
      .select((eb) => eb.fn.min('last_heartbeat_at').as('oldest'))
      .where('status', '=', status)
      .executeTakeFirst();
    return r?.oldest ?? null;
  }
}

export class TokenRepo implements TokenStore {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(t: { id: string; workspaceId: string; kind: 'workspace' | 'agent'; hash: string; sealed: string }): Promise<void> {
    await this.db
      .insertInto('tokens')
      .values({ id: t.id, workspace_id: t.workspaceId, kind: t.kind, hash: t.hash, sealed: t.sealed, created_at: new Date().toISOString(), revoked_at: null })
      .execute();
  }

  async findActiveByHash(hash: string): Promise<TokenRecord | undefined> {
    const r = await this.db.selectFrom('tokens').selectAll().where('hash', '=', hash).where('revoked_at', 'is', null).executeTakeFirst();
    return r && toToken(r);
  }

  async active(workspaceId: string, kind: TokenKind): Promise<TokenRecord | undefined> {
    const r = await this.db
      .selectFrom('tokens')
      .selectAll()
      .where('workspace_id', '=', workspaceId)
      .where('kind', '=', kind)
      .where('revoked_at', 'is', null)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    return r && toToken(r);
  }

  /** Revoked tokens keep only their hash (for "revoked" answers); the sealed plaintext is dropped. */
  async revokeAll(workspaceId: string): Promise<void> {
    await this.db
      .updateTable('tokens')
      .set({ revoked_at: new Date().toISOString(), sealed: '' })
      .where('workspace_id', '=', workspaceId)
      .where('revoked_at', 'is', null)
      .execute();
  }
}

export class SecretRepo implements SecretStore {
  constructor(private readonly db: Kysely<Database>) {}

  async put(scope: string, key: string, sealed: string): Promise<'created' | 'updated'> {
    const now = new Date().toISOString();
    const existing = await this.db.selectFrom('secrets').select('key').where('scope', '=', scope).where('key', '=', key).executeTakeFirst();
    // An upsert, so two first writes of one key racing each other both succeed instead of one hitting the key.
    await this.db
      .insertInto('secrets')
      .values({ scope, key, sealed, created_at: now, updated_at: now })
      .onConflict((oc) => oc.columns(['scope', 'key']).doUpdateSet({ sealed, updated_at: now }))
      .execute();
    return existing ? 'updated' : 'created';
  }

  async list(scope: string): Promise<SecretRecord[]> {
    return (await this.db.selectFrom('secrets').selectAll().where('scope', '=', scope).orderBy('key').execute()).map(toSecret);
  }

  async any(): Promise<SecretRecord | undefined> {
    const r = await this.db.selectFrom('secrets').selectAll().limit(1).executeTakeFirst();
    return r && toSecret(r);
  }

  async delete(scope: string, key: string): Promise<boolean> {
    const r = await this.db.deleteFrom('secrets').where('scope', '=', scope).where('key', '=', key).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async deleteScope(scope: string): Promise<void> {
    await this.db.deleteFrom('secrets').where('scope', '=', scope).execute();
  }
}

export class EventRepo implements EventLog {
  constructor(private readonly db: Kysely<Database>) {}

  async append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent> {
    const r = await this.db
      .insertInto('events')
      .values({ workspace_id: e.workspace_id, type: e.type, at: e.at, data: JSON.stringify(e.data) })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { ...e, id: Number(r.id) };
  }

  async appendAll(es: Omit<PlatformEvent, 'id'>[]): Promise<PlatformEvent[]> {
    if (es.length === 1) return [await this.append(es[0]!)];
    return this.db.transaction().execute(async (trx) => {
      const repo = new EventRepo(trx);
      const out: PlatformEvent[] = [];
      for (const e of es) out.push(await repo.append(e));
      return out;
    });
  }

  /** Events in id order, after `afterId`, optionally for one workspace. */
  async list(opts: { workspaceId?: string; afterId?: number; limit?: number }): Promise<PlatformEvent[]> {
    let q = this.db.selectFrom('events').selectAll().orderBy('id', 'asc');
    if (opts.workspaceId) q = q.where('workspace_id', '=', opts.workspaceId);
    if (opts.afterId) q = q.where('id', '>', opts.afterId);
    if (opts.limit) q = q.limit(opts.limit);
    const rows = await q.execute();
    return rows.map(toEvent);
  }

  async get(id: number): Promise<PlatformEvent | undefined> {
    const r = await this.db.selectFrom('events').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toEvent(r);
  }

  async lastId(): Promise<number> {
    const r = await this.db.selectFrom('events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst();
    return Number(r?.id ?? 0);
  }
}

function toToken(r: Selectable<TokenRow>): TokenRecord {
  return { id: r.id, workspaceId: r.workspace_id, kind: r.kind as TokenKind, hash: r.hash, sealed: r.sealed, createdAt: r.created_at, revokedAt: r.revoked_at };
}

function toSecret(r: Selectable<SecretRow>): SecretRecord {
  return { scope: r.scope, key: r.key, sealed: r.sealed, createdAt: r.created_at, updatedAt: r.updated_at };
}

/** The stores of one database, and units of work over them (Kysely transactions, on SQLite and Postgres alike). */
export function storesOf(db: Kysely<Database>): Stores & { events: EventRepo; transact: Transact } {
  const bound = (d: Kysely<Database>): Stores => ({ workspaces: new WorkspaceRepo(d), tokens: new TokenRepo(d), secrets: new SecretRepo(d) });
  return { ...bound(db), events: new EventRepo(db), transact: (fn) => db.transaction().execute((trx) => fn(bound(trx))) };
}

function toEvent(r: Selectable<Database['events']>): PlatformEvent {
  return { id: Number(r.id), type: r.type, workspace_id: r.workspace_id, at: r.at, data: JSON.parse(r.data) };
}
