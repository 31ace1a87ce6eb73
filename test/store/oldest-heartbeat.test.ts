import fs from 'node:fs';
import { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.js';
import { WorkspaceRepo } from '../../src/store/repositories.js';
import { tempDir } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { insertWorkspaces } from '../support/workspace-rows.js';

/** WorkspaceStore.oldestHeartbeat (molecule_stalest_heartbeat_age_seconds): the minimum, from the index. */
function suite(name: string, open: () => Promise<Store>) {
  it(`${name}: the oldest heartbeat of the status asked, never-heard-from and other statuses aside`, async () => {
    const store = await open();
    try {
      const repo = new WorkspaceRepo(store.db);
      expect(await repo.oldestHeartbeat('ready')).toBeNull();
      const rows = await insertWorkspaces(store.db, [
        { name: 'a', status: 'ready' },
        { name: 'b', status: 'ready' },
        { name: 'c', status: 'ready' },
        { name: 'd', status: 'degraded' },
      ]);
      const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
      await repo.update(rows[0]!.id, { lastHeartbeatAt: at(20) });
      await repo.update(rows[1]!.id, { lastHeartbeatAt: at(10) });
      await repo.update(rows[3]!.id, { lastHeartbeatAt: at(1) });
      expect(await repo.oldestHeartbeat('ready')).toBe(at(10));
      expect(await repo.oldestHeartbeat('degraded')).toBe(at(1));
      if (store.kind === 'sqlite') {
        const { rows: plan } = await store.db.executeQuery<any>(CompiledQuery.raw("explain query plan select min(last_heartbeat_at) from workspaces where status = 'ready'"));
        expect(plan.map((r: any) => r.detail).join(' | ')).toMatch(/workspaces_status_heartbeat/);
      }
    } finally {
      await store.close();
    }
  });
}

const sqliteDir = tempDir('oldest-hb');
afterAll(() => fs.rmSync(sqliteDir, { recursive: true, force: true }));
describe('oldestHeartbeat', () => {
  suite('sqlite', () => openStore({ dataDir: sqliteDir }));
});

let postgres: TestPostgres | null = null;
beforeAll(async () => {
  if (process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL) postgres = await startTestPostgres();
}, 60_000);
afterAll(async () => {
  await postgres?.stop();
});
describe.runIf(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL)('oldestHeartbeat with Postgres', () => {
  suite('postgres', () => {
    if (!postgres) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    return openStore({ dataDir: sqliteDir, databaseUrl: postgres.url });
  });
});
