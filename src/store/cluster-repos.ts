import type { Kysely } from 'kysely';
import type { ClusterFacts, LeaseStore, ReplicaInfo, ReplicaRegistry } from '../core/ports.js';
import type { ClusterStore } from '../core/cluster.js';
import type { Store } from './db.js';
import { SecretRepo } from './repositories.js';
import type { Database } from './schema.js';

/** The platform processes of a cluster, as each announced itself. */
export class ReplicaRepo implements ReplicaRegistry {
  constructor(private readonly db: Kysely<Database>) {}

  async announce(r: ReplicaInfo): Promise<void> {
    await this.db
      .insertInto('replicas')
      .values({ id: r.id, host: r.host, pid: r.pid, backend: r.backend, url: r.url, started_at: r.startedAt, last_seen: r.lastSeen })
      .onConflict((oc) => oc.column('id').doUpdateSet({ last_seen: r.lastSeen, url: r.url }))
      .execute();
  }

  async seen(id: string, at: string): Promise<void> {
    await this.db.updateTable('replicas').set({ last_seen: at }).where('id', '=', id).execute();
  }

  /** Replicas seen since `since` (ISO time), oldest first. */
  async liveSince(since: string): Promise<ReplicaInfo[]> {
    const rows = await this.db.selectFrom('replicas').selectAll().where('last_seen', '>=', since).orderBy('started_at').orderBy('id').execute();
    return rows.map((r) => ({ id: r.id, host: r.host, pid: Number(r.pid), backend: r.backend, url: r.url, startedAt: r.started_at, lastSeen: r.last_seen }));
  }

  async remove(id: string): Promise<void> {
    await this.db.deleteFrom('replicas').where('id', '=', id).execute();
  }

  /** Rows of replicas long gone, so the table does not grow with every restart. */
  async prune(before: string): Promise<void> {
    await this.db.deleteFrom('replicas').where('last_seen', '<', before).execute();
  }
}

/**
 * Named leases with an owner and an expiry (epoch ms). Taking one is a single conditional write, so of several
 * replicas trying at once exactly one gets it: the insert of a new lease, or the update of an expired one.
 */
export class LeaseRepo implements LeaseStore {
  constructor(private readonly db: Kysely<Database>) {}

  /** Takes or renews the lease for `owner` until `expiresAt`; true when `owner` holds it afterwards. */
  async acquire(name: string, owner: string, now: number, expiresAt: number): Promise<boolean> {
    const updated = await this.db
      .updateTable('leases')
      .set((eb) => ({
        owner,
        expires_at: expiresAt,
        acquired_at: eb.case().when('owner', '=', owner).then(eb.ref('acquired_at')).else(now).end(),
      }))
      .where('name', '=', name)
      .where((eb) => eb.or([eb('owner', '=', owner), eb('expires_at', '<', now)]))
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) > 0) return true;
    const inserted = await this.db
      .insertInto('leases')
      .values({ name, owner, acquired_at: now, expires_at: expiresAt })
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Gives the lease up at once (clean shutdown), so another replica need not wait for it to expire. */
  async release(name: string, owner: string): Promise<void> {
    await this.db.deleteFrom('leases').where('name', '=', name).where('owner', '=', owner).execute();
  }

  async holder(name: string, now: number): Promise<string | null> {
    const r = await this.db.selectFrom('leases').select(['owner', 'expires_at']).where('name', '=', name).executeTakeFirst();
    return r && Number(r.expires_at) >= now ? r.owner : null;
  }
}

/** Facts stored once per cluster: its identity and the secrets key's check value. */
export class ClusterFactsRepo implements ClusterFacts {
  constructor(private readonly db: Kysely<Database>) {}

  async get(key: string): Promise<string | undefined> {
    const r = await this.db.selectFrom('cluster').select('value').where('key', '=', key).executeTakeFirst();
    return r?.value;
  }

  async insertOnce(key: string, value: string): Promise<string> {
    await this.db
      .insertInto('cluster')
      .values({ key, value, created_at: new Date().toISOString() })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    const stored = await this.get(key);
    if (stored === undefined) throw new Error(`cluster row ${key} vanished right after it was written`);
    return stored;
  }
}

/** What core/cluster.ts needs to join the cluster this store belongs to. */
export function clusterStoreOf(store: Store): ClusterStore {
  return { kind: store.kind, facts: new ClusterFactsRepo(store.db), secrets: new SecretRepo(store.db) };
}
