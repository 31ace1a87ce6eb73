import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { WORKSPACE_STATUSES } from '../core/types.js';

export type DialectKind = 'sqlite' | 'postgres';

const statusList = WORKSPACE_STATUSES.map((s) => `'${s}'`).join(', ');

/** Versioned migrations, written once for both dialects. Never edit a released migration; add a new one. */
function migrations(kind: DialectKind): Record<string, Migration> {
  return {
    '0001_initial': {
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('workspaces')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('runtime', 'text', (c) => c.notNull())
          .addColumn('tier', 'integer', (c) => c.notNull().check(sql`tier between 1 and 4`))
          .addColumn('region', 'text')
          .addColumn('parent_id', 'text')
          .addColumn('env', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('status', 'text', (c) => c.notNull().check(sql.raw(`status in (${statusList})`)))
          .addColumn('status_reason', 'text')
          .addColumn('status_changed_at', 'text', (c) => c.notNull())
          .addColumn('backend', 'text', (c) => c.notNull())
          .addColumn('instance_id', 'text')
          .addColumn('instance', 'text')
          .addColumn('agent_url', 'text')
          .addColumn('agent_card', 'text')
          .addColumn('idempotency_key', 'text', (c) => c.unique())
          .addColumn('restarts', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('restart_count', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_restart_at', 'text')
          .addColumn('last_heartbeat_at', 'text')
          .addColumn('heartbeat', 'text')
          .addColumn('needs_restart', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('ready_at', 'text')
          .addColumn('removed_at', 'text')
          .execute();
        await db.schema.createIndex('workspaces_status').on('workspaces').column('status').execute();
        await db.schema.createIndex('workspaces_parent').on('workspaces').column('parent_id').execute();

        await db.schema
          .createTable('tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('workspace_id', 'text', (c) => c.notNull().references('workspaces.id'))
          .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('workspace', 'agent')`))
          .addColumn('hash', 'text', (c) => c.notNull().unique())
          .addColumn('sealed', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .execute();
        await db.schema.createIndex('tokens_workspace').on('tokens').column('workspace_id').execute();

        await db.schema
          .createTable('secrets')
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('key', 'text', (c) => c.notNull())
          .addColumn('sealed', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('secrets_pk', ['scope', 'key'])
          .execute();

        await db.schema
          .createTable('events')
          .addColumn('id', kind === 'postgres' ? 'bigserial' : 'integer', (c) =>
            kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('workspace_id', 'text')
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('data', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('events_workspace').on('events').columns(['workspace_id', 'id']).execute();
      },
    },
    '0002_cluster': {
      async up(db: Kysely<any>) {
        // Facts stored once per cluster: its identity (platform_id) and the secrets key's check value.
        await db.schema
          .createTable('cluster')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        // Every platform process announces itself here and renews last_seen; /healthz lists the recent ones.
        await db.schema
          .createTable('replicas')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('host', 'text', (c) => c.notNull())
          .addColumn('pid', 'integer', (c) => c.notNull())
          .addColumn('backend', 'text', (c) => c.notNull())
          .addColumn('url', 'text')
          .addColumn('started_at', 'text', (c) => c.notNull())
          .addColumn('last_seen', 'text', (c) => c.notNull())
          .execute();
        // Named leases: 'reconciler' is held by the one replica that acts on workspaces. Times are epoch ms.
        await db.schema
          .createTable('leases')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('owner', 'text', (c) => c.notNull())
          .addColumn('acquired_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
        // The launch a workspace waits for ('start' | 'restart' | 'resume'), written with the status change that asks
        // for it and cleared when the backend has answered: whichever replica reconciles next knows what to do.
        await db.schema.alterTable('workspaces').addColumn('pending_launch', 'text').execute();
        if (kind === 'postgres') {
          // One round trip per event for every replica's feed (store/pg-event-feed.ts): under one transaction lock,
          // so ids commit in id order, the row and its NOTIFY (the whole event, or only its id when too big).
          await sql`
            create function molecule_append_event(p_workspace_id text, p_type text, p_at text, p_data text, p_max_payload int)
            returns bigint language plpgsql as $$
            declare
              new_id bigint;
              payload text;
            begin
              perform pg_advisory_xact_lock(1836018789);
              insert into events (workspace_id, type, at, data) values (p_workspace_id, p_type, p_at, p_data) returning id into new_id;
              payload := json_build_object('id', new_id, 'type', p_type, 'workspace_id', p_workspace_id, 'at', p_at, 'data', p_data::json)::text;
              if octet_length(payload) > p_max_payload then
                payload := json_build_object('id', new_id)::text;
              end if;
              perform pg_notify('molecule_events', payload);
              return new_id;
            end $$`.execute(db);
        }
      },
    },
    '0003_workspace_pages': {
      async up(db: Kysely<any>) {
        // GET /workspaces is a keyset walk in (created_at, id) order (repositories.ts, page): one index per filter
        // that walks in that order, so a page costs its rows, not the table. These replace the single-column ones.
        await db.schema.dropIndex('workspaces_status').execute();
        await db.schema.dropIndex('workspaces_parent').execute();
        await db.schema.createIndex('workspaces_status_page').on('workspaces').columns(['status', 'created_at', 'id']).execute();
        await db.schema.createIndex('workspaces_parent_page').on('workspaces').columns(['parent_id', 'created_at', 'id']).execute();
        // The unfiltered list (and a name search) leaves removed workspaces out; they pile up over time, so the
        // index holds live ones only. It carries the name, so a search reads the index and only the matching rows.
        await db.schema
          .createIndex('workspaces_live_page')
          .on('workspaces')
          .columns(['created_at', 'id', 'name'])
          .where(sql.ref('status'), '<>', sql.lit('removed'))
          .execute();
      },
    },
    '0004_reconcile_due': {
      async up(db: Kysely<any>) {
        // The reconciler's periodic pass asks for what is due (repositories.ts, due): a range on each of these,
        // so at 10,000 ready workspaces it reads the stale ones, not all of them.
        await db.schema.createIndex('workspaces_status_changed').on('workspaces').columns(['status', 'status_changed_at']).execute();
        await db.schema.createIndex('workspaces_status_heartbeat').on('workspaces').columns(['status', 'last_heartbeat_at']).execute();
        await db.schema.createIndex('workspaces_status_restart').on('workspaces').columns(['status', 'next_restart_at']).execute();
      },
    },
    '0005_idle_sleep': {
      async up(db: Kysely<any>) {
        // Idle workspaces sleep (core/idle.ts): the timeout asked for, and the last activity any replica saw.
        await db.schema.alterTable('workspaces').addColumn('idle_timeout_s', 'integer').execute();
        await db.schema.alterTable('workspaces').addColumn('active_at', 'text').execute();
        // Whether the last heartbeat reported active tasks: the first report of none after some is activity too.
        await db.schema.alterTable('workspaces').addColumn('busy', 'integer', (c) => c.notNull().defaultTo(0)).execute();
        // The idle check looks at workspaces with a timeout only.
        await db.schema.createIndex('workspaces_idle').on('workspaces').columns(['idle_timeout_s', 'status']).where(sql.ref('idle_timeout_s'), 'is not', null).execute();
        await widenStatusCheck(db, kind);
      },
    },
    '0006_event_batches': {
      async up(db: Kysely<any>) {
        if (kind !== 'postgres') return;
        // Several events in one round trip (group commit, store/pg-event-feed.ts): 0002's append for each, in the
        // order given, under the one transaction lock (re-taking it in the same transaction is free).
        await sql`
          create function molecule_append_events(p_workspace_ids text[], p_types text[], p_ats text[], p_datas text[], p_max_payload int)
          returns bigint[] language plpgsql as $$
          declare
            ids bigint[] := '{}';
          begin
            for i in 1 .. coalesce(array_length(p_types, 1), 0) loop
              ids := ids || molecule_append_event(p_workspace_ids[i], p_types[i], p_ats[i], p_datas[i], p_max_payload);
            end loop;
            return ids;
          end $$`.execute(db);
      },
    },
  };
}

/**
 * The status check constraint of 0001 lists the statuses of its day; a database made before 'sleeping' existed
 * gets the current list. A fresh database has it already (0001 reads WORKSPACE_STATUSES).
 */
async function widenStatusCheck(db: Kysely<any>, kind: DialectKind): Promise<void> {
  const check = `status in (${statusList})`;
  if (kind === 'postgres') {
    await sql.raw('alter table workspaces drop constraint if exists workspaces_status_check').execute(db);
    await sql.raw(`alter table workspaces add constraint workspaces_status_check check (${check})`).execute(db);
    return;
  }
  // SQLite cannot alter a constraint: the table is rebuilt as sqlite.org/lang_altertable.html says ("making other
  // kinds of table schema changes"): foreign keys off (outside a transaction: SQLite migrations do not run in one),
  // new table, copy, drop, rename, indexes made again from their own definitions, foreign_key_check, keys on.
  const table = await sql<{ sql: string }>`select sql from sqlite_master where type = 'table' and name = 'workspaces'`.execute(db);
  const ddl = table.rows[0]?.sql ?? '';
  if (ddl.includes(check)) return;
  const widened = ddl.replace(/status in \([^)]*\)/, check).replace(/^create table\s+("?)workspaces\1/i, 'create table "workspaces_0005"');
  if (widened === ddl || !widened.includes('"workspaces_0005"')) throw new Error('0005_idle_sleep: unexpected workspaces table definition');
  const indexes = await sql<{ sql: string }>`select sql from sqlite_master where type in ('index', 'trigger') and tbl_name = 'workspaces' and sql is not null`.execute(db);
  await sql.raw('pragma foreign_keys = off').execute(db);
  try {
    await db.transaction().execute(async (tx) => {
      await sql.raw(widened).execute(tx);
      await sql.raw('insert into "workspaces_0005" select * from "workspaces"').execute(tx);
      await sql.raw('drop table "workspaces"').execute(tx);
      await sql.raw('alter table "workspaces_0005" rename to "workspaces"').execute(tx);
      for (const r of indexes.rows) await sql.raw(r.sql).execute(tx);
      const broken = await sql.raw('pragma foreign_key_check').execute(tx);
      if (broken.rows.length) throw new Error(`0005_idle_sleep: foreign keys broken by the rebuild: ${JSON.stringify(broken.rows.slice(0, 3))}`);
    });
  } finally {
    await sql.raw('pragma foreign_keys = on').execute(db);
  }
}

export function migrationProvider(kind: DialectKind): MigrationProvider {
  return { getMigrations: async () => migrations(kind) };
}
