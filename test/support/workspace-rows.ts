import crypto from 'node:crypto';
import type { Kysely } from 'kysely';
import { openStore, type Store } from '../../src/store/db.js';
import type { Database } from '../../src/store/schema.js';
import type { Workspace, WorkspaceStatus } from '../../src/core/types.js';
import type { Api } from './harness.js';

/**
 * Many workspaces without their agents: rows written straight into the store, for tests of the list (pages,
 * filters, the UI's fleet at 1,000+) that must not start 1,000 processes. Use statuses the reconciler leaves
 * alone (paused, failed, removed) when a platform is running on the same store, or it will act on them.
 */
export interface SeedRow {
  name: string;
  status?: WorkspaceStatus;
  parentId?: string | null;
  createdAt?: string;
  id?: string;
}

// Default creation times: a month ago, a millisecond apart, in insertion order across calls (so before anything
// the API creates now).
let clock = Date.now() - 30 * 86_400_000;

/** Inserts the rows (in one transaction, a few hundred per statement); returns them with their ids. */
export async function insertWorkspaces(db: Kysely<Database>, rows: SeedRow[], opts: { backend?: string } = {}): Promise<Array<Required<SeedRow>>> {
  const out = rows.map((r) => ({
    name: r.name,
    status: r.status ?? 'paused',
    parentId: r.parentId ?? null,
    createdAt: r.createdAt ?? new Date(++clock).toISOString(),
    id: r.id ?? crypto.randomUUID(),
  }));
  const values = out.map((r) => ({
    id: r.id,
    name: r.name,
    role: '',
    runtime: 'hermes',
    tier: 2,
    region: null,
    parent_id: r.parentId,
    env: '{}',
    status: r.status,
    status_reason: r.status === 'failed' ? 'seeded as failed' : null,
    status_changed_at: r.createdAt,
    backend: opts.backend ?? 'fake',
    instance_id: null,
    instance: null,
    agent_url: null,
    agent_card: null,
    idempotency_key: null,
    restarts: '[]',
    restart_count: 0,
    next_restart_at: null,
    last_heartbeat_at: null,
    heartbeat: null,
    needs_restart: 0,
    created_at: r.createdAt,
    updated_at: r.createdAt,
    ready_at: null,
    removed_at: r.status === 'removed' ? r.createdAt : null,
    pending_launch: null,
  }));
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < values.length; i += 200) await trx.insertInto('workspaces').values(values.slice(i, i + 200)).execute();
  });
  return out;
}

/** The same, through a store of its own on a platform's data dir (SQLite) or database (Postgres). */
export async function insertIntoPlatformStore(where: { dataDir: string; databaseUrl?: string }, rows: SeedRow[]): Promise<Array<Required<SeedRow>>> {
  const store: Store = await openStore({ dataDir: where.dataDir, databaseUrl: where.databaseUrl });
  try {
    return await insertWorkspaces(store.db, rows);
  } finally {
    await store.close();
  }
}

/**
 * Every page of GET /workspaces with this query, following X-Next-Cursor (and checking that Link says the same);
 * returns the pages' ids.
 */
export async function walkPages(http: Api, query: Record<string, string> = {}, maxPages = 1000): Promise<{ pages: string[][]; ids: string[] }> {
  const pages: string[][] = [];
  let cursor: string | undefined;
  for (let n = 0; n < maxPages; n++) {
    const q = new URLSearchParams({ ...query, ...(cursor ? { cursor } : {}) });
    const r = await http.call('GET', `/workspaces${q.size ? `?${q}` : ''}`);
    if (r.status !== 200) throw new Error(`GET /workspaces?${q} answered ${r.status}: ${JSON.stringify(r.body)}`);
    pages.push((r.body as Array<{ id: string }>).map((w) => w.id));
    const next = r.headers.get('x-next-cursor') ?? undefined;
    const link = r.headers.get('link');
    if (!next) {
      if (link) throw new Error(`a Link header without X-Next-Cursor: ${link}`);
      return { pages, ids: pages.flat() };
    }
    if (!link?.includes(`cursor=${next}>; rel="next"`)) throw new Error(`Link does not carry the next cursor: ${link}`);
    cursor = next;
  }
  throw new Error(`more than ${maxPages} pages`);
}
