import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import type { Database } from './schema.js';
import { migrationProvider, type DialectKind } from './migrations.js';

export interface Store {
  db: Kysely<Database>;
  kind: DialectKind;
  /** Where the data lives, for /healthz (a file path, or the Postgres host/db without credentials). */
  location: string;
  /** The Postgres connection string (with credentials: never log it), for connections of their own (LISTEN). */
  databaseUrl?: string;
  close(): Promise<void>;
}

/** Opens SQLite in the data dir, or Postgres when a postgres:// URL is given, and applies pending migrations. */
export async function openStore(opts: {
  dataDir: string;
  databaseUrl?: string;
  /** SQLite in memory (unit tests): nothing is written to the data dir. */
  memory?: boolean;
  onConnectionError?: (err: Error) => void;
}): Promise<Store> {
  let db: Kysely<Database>;
  let kind: DialectKind;
  let location: string;
  if (opts.databaseUrl) {
    kind = 'postgres';
    const url = new URL(opts.databaseUrl);
    location = `${url.hostname}:${url.port || 5432}${url.pathname}`;
    // bigserial ids come back as strings by default; event ids stay well inside 2^53.
    pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
    // Launches, creates and heartbeats share it: 10 left creates waiting on the pool at scale. Three replicas at 20
    // (and a LISTEN each) stay well inside Postgres's default 100 connections.
    const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 20 });
    // An idle connection the server drops (restart, failover, admin shutdown) is discarded by the pool and the
    // next query reconnects; without a listener the 'error' event would crash the platform instead.
    pool.on('error', (err) => (opts.onConnectionError ?? (() => {}))(err));
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    kind = 'sqlite';
    if (opts.memory) location = ':memory:';
    else {
      fs.mkdirSync(opts.dataDir, { recursive: true });
      location = path.resolve(opts.dataDir, 'molecule.db');
    }
    const sqlite = new SQLite(location);
    sqlite.pragma('journal_mode = WAL');
    // In WAL mode NORMAL syncs at checkpoints rather than on every commit: a commit costs ~35 µs instead of an
    // fsync (~600 µs here), which heartbeats pay a thousand times a second at 10,000 workspaces. The database
    // cannot be corrupted this way; a power loss (not a crash of the platform) may lose the last commits.
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    keepStatements(sqlite);
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  const migrator = new Migrator({ db, provider: migrationProvider(kind) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(`database migration ${failed ?? ''} failed: ${(error as Error).message ?? error}`);
  }
  return { db, kind, location, databaseUrl: opts.databaseUrl, close: () => db.destroy() };
}

/**
 * Kysely prepares every query anew, and better-sqlite3 compiles a statement on each prepare (a sixth of the
 * platform's SQLite time at 1,000 workspaces): keep the compiled ones, by their SQL, up to `max` (oldest out
 * first). Safe because every query runs to completion synchronously (nothing here iterates a statement lazily),
 * and SQLite recompiles a kept statement itself after a schema change.
 */
function keepStatements(db: SQLite.Database, max = 1000): void {
  const kept = new Map<string, SQLite.Statement>();
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let st = kept.get(sql);
    if (!st) {
      st = prepare(sql);
      if (kept.size >= max) kept.delete(kept.keys().next().value!);
      kept.set(sql, st);
    }
    return st;
  }) as typeof db.prepare;
}
