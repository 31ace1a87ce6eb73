import crypto from 'node:crypto';
import fs from 'node:fs';
import { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.js';
import { EventRepo, SecretRepo, TokenRepo, WorkspaceRepo } from '../../src/store/repositories.js';
import type { Workspace } from '../../src/core/types.js';
import { tempDir } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

function workspace(over: Partial<Workspace> = {}): Workspace {
  const now = new Date().toISOString();
  return {
    id: crypto.randomUUID(), name: 'w', role: '', runtime: 'hermes', tier: 2, region: null, parentId: null, env: { A: '1' },
    status: 'provisioning', statusReason: 'created', statusChangedAt: now, backend: 'process', instanceId: null, instance: null,
    agentUrl: null, agentCard: null, idempotencyKey: null, restarts: [], restartCount: 0, nextRestartAt: null, lastHeartbeatAt: null,
    heartbeat: null, needsRestart: false, createdAt: now, updatedAt: now, readyAt: null, removedAt: null, pendingLaunch: null, ...over,
  };
}

/** The same assertions against SQLite and a real Postgres: the store must behave identically on both. */
function storeSuite(kind: string, open: () => Promise<Store>) {
  describe(`store on ${kind}`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store?.close();
    });

    it('round-trips a workspace, including its JSON fields', async () => {
      const repo = new WorkspaceRepo(store.db);
      const w = workspace({ instance: { url: 'http://x', details: { pid: 1 } }, agentCard: { name: 'n' } });
      await repo.insert(w);
      const back = await repo.get(w.id);
      expect(back).toMatchObject({ id: w.id, env: { A: '1' }, instance: { url: 'http://x', details: { pid: 1 } }, agentCard: { name: 'n' }, needsRestart: false, tier: 2 });
    });

    it('answers what the reconciler pass must look at, and only that, from indexes', async () => {
      const repo = new WorkspaceRepo(store.db);
      const t = (ago: number) => new Date(Date.now() - ago).toISOString();
      const rows = {
        launchRequested: workspace({ status: 'provisioning', pendingLaunch: 'start' }),
        provisioningLong: workspace({ status: 'provisioning', statusChangedAt: t(600_000) }),
        provisioningNew: workspace({ status: 'provisioning' }),
        readyStale: workspace({ status: 'ready', statusChangedAt: t(900_000), lastHeartbeatAt: t(120_000) }),
        readyFresh: workspace({ status: 'ready', statusChangedAt: t(900_000), lastHeartbeatAt: t(1_000) }),
        degradedSilent: workspace({ status: 'degraded', statusChangedAt: t(120_000) }),
        readyJustNow: workspace({ status: 'ready' }),
        offlineDue: workspace({ status: 'offline', nextRestartAt: t(1_000) }),
        offlineLater: workspace({ status: 'offline', nextRestartAt: t(-60_000) }),
        removingLong: workspace({ status: 'removing', statusChangedAt: t(60_000) }),
        removingNew: workspace({ status: 'removing' }),
        paused: workspace({ status: 'paused', statusChangedAt: t(900_000) }),
      };
      for (const w of Object.values(rows)) await repo.insert(w);
      const due = await repo.due({ now: t(0), provisioningSince: t(300_000), heartbeatBefore: t(30_000), removingSince: t(30_000) });
      const mine = new Map(Object.entries(rows).map(([k, w]) => [w.id, k]));
      expect(due.map((w) => mine.get(w.id)).filter(Boolean).sort()).toEqual(['degradedSilent', 'launchRequested', 'offlineDue', 'provisioningLong', 'readyStale', 'removingLong']);
      if (kind === 'sqlite') {
        // Each term is a range on one index (migration 0004), never a scan of the table.
        const { rows: plan } = await store.db.executeQuery<any>(
          CompiledQuery.raw("explain query plan select * from workspaces where status in ('ready', 'degraded') and (last_heartbeat_at < ? or (last_heartbeat_at is null and status_changed_at < ?))", [t(0), t(0)]),
        );
        const text = plan.map((r: any) => r.detail).join('\n');
        expect(text).toMatch(/workspaces_status_heartbeat/);
        expect(text).not.toMatch(/^SCAN workspaces$/m);
      }
    });

    it('answers the idle check with the workspaces that have an idle timeout and run, from the partial index', async () => {
      const repo = new WorkspaceRepo(store.db);
      const rows = {
        readyTimed: workspace({ status: 'ready', idleTimeoutS: 60 }),
        degradedTimed: workspace({ status: 'degraded', idleTimeoutS: 60 }),
        pausedTimed: workspace({ status: 'paused', idleTimeoutS: 60 }),
        readyForever: workspace({ status: 'ready', idleTimeoutS: null }),
      };
      for (const w of Object.values(rows)) await repo.insert(w);
      const mine = new Map(Object.entries(rows).map(([k, w]) => [w.id, k]));
      expect((await repo.sleepCandidates()).map((w) => mine.get(w.id)).filter(Boolean).sort()).toEqual(['degradedTimed', 'readyTimed']);
      if (kind === 'sqlite') {
        const { rows: plan } = await store.db.executeQuery<any>(CompiledQuery.raw('explain query plan select * from workspaces where idle_timeout_s is not null'));
        expect(plan.map((r: any) => r.detail).join('\n')).toMatch(/workspaces_idle/);
      }
    });

    it('writes a batch of heartbeats in one statement: times, bodies, and activity decided per row', async () => {
      const repo = new WorkspaceRepo(store.db);
      const [idle, busy, calmed, justCalm] = [0, 1, 2, 3].map(() => workspace({ status: 'ready' }));
      for (const w of [idle, busy, calmed, justCalm]) await repo.insert(w);
      const t0 = '2026-01-01T00:00:00.000Z';
      // calmed was busy at its previous heartbeat (stored); justCalm was busy earlier in this same batch.
      await repo.recordHeartbeats([{ id: calmed.id, at: t0, heartbeat: { n: 0 }, busy: true, wasBusy: false }]);
      const t1 = '2026-01-01T00:00:05.000Z';
      await repo.recordHeartbeats([
        { id: idle.id, at: t1, heartbeat: { n: 1 }, busy: false, wasBusy: false },
        { id: busy.id, at: t1, heartbeat: { n: 2 }, busy: true, wasBusy: false },
        { id: calmed.id, at: t1, heartbeat: { n: 3 }, busy: false, wasBusy: false },
        { id: justCalm.id, at: t1, heartbeat: { n: 4 }, busy: false, wasBusy: true },
        { id: crypto.randomUUID(), at: t1, heartbeat: { n: 5 }, busy: true, wasBusy: false },
      ]);
      const got = await Promise.all([idle, busy, calmed, justCalm].map(async (w) => (await repo.get(w.id))!));
      expect(got.map((w) => w.lastHeartbeatAt)).toEqual([t1, t1, t1, t1]);
      expect(got.map((w) => (w.heartbeat as { n: number }).n)).toEqual([1, 2, 3, 4]);
      expect(got.map((w) => w.activeAt ?? null)).toEqual([null, t1, t1, t1]);
      // calmed is not busy any more: its next quiet heartbeat is no activity.
      await repo.recordHeartbeats([{ id: calmed.id, at: '2026-01-01T00:00:10.000Z', heartbeat: { n: 6 }, busy: false, wasBusy: false }]);
      expect((await repo.get(calmed.id))!.activeAt).toBe(t1);
    });

    it('updates status only through compare-and-set', async () => {
      const repo = new WorkspaceRepo(store.db);
      const w = workspace();
      await repo.insert(w);
      expect(await repo.updateIfStatus(w.id, ['provisioning'], { status: 'ready' })).toBe(true);
      expect(await repo.updateIfStatus(w.id, ['provisioning'], { status: 'failed' })).toBe(false);
      expect((await repo.get(w.id))!.status).toBe('ready');
    });

    it('rejects a status or tier outside the shared lists at the database too', async () => {
      const repo = new WorkspaceRepo(store.db);
      await expect(repo.insert(workspace({ status: 'hibernating' as any }))).rejects.toThrow();
      await expect(repo.insert(workspace({ tier: 9 as any }))).rejects.toThrow();
    });

    it('enforces unique idempotency keys and counts by status', async () => {
      const repo = new WorkspaceRepo(store.db);
      const key = `k-${crypto.randomUUID()}`;
      await repo.insert(workspace({ idempotencyKey: key }));
      await expect(repo.insert(workspace({ idempotencyKey: key }))).rejects.toThrow();
      const before = (await repo.countByStatus()).paused ?? 0;
      await repo.insert(workspace({ status: 'paused' }));
      expect((await repo.countByStatus()).paused).toBe(before + 1);
    });

    it('numbers events in order and filters them', async () => {
      const events = new EventRepo(store.db);
      const a = await events.append({ type: 't', workspace_id: 'w1', at: new Date().toISOString(), data: { n: 1 } });
      const b = await events.append({ type: 't', workspace_id: 'w2', at: new Date().toISOString(), data: { n: 2 } });
      expect(typeof a.id).toBe('number');
      expect(b.id).toBeGreaterThan(a.id);
      expect((await events.list({ workspaceId: 'w2' })).map((e) => e.data)).toEqual([{ n: 2 }]);
      expect((await events.list({ afterId: a.id })).map((e) => e.id)).toEqual([b.id]);
    });

    it('stores tokens by hash and revokes them; secrets by scope', async () => {
      const repo = new WorkspaceRepo(store.db);
      const w = workspace();
      await repo.insert(w);
      const tokens = new TokenRepo(store.db);
      await tokens.insert({ id: crypto.randomUUID(), workspaceId: w.id, kind: 'workspace', hash: `h-${w.id}`, sealed: 's' });
      expect((await tokens.findActiveByHash(`h-${w.id}`))?.workspaceId).toBe(w.id);
      await tokens.revokeAll(w.id);
      expect(await tokens.findActiveByHash(`h-${w.id}`)).toBeUndefined();
      const secrets = new SecretRepo(store.db);
      expect(await secrets.put(w.id, 'K', 'v1')).toBe('created');
      expect(await secrets.put(w.id, 'K', 'v2')).toBe('updated');
      expect((await secrets.list(w.id)).map((s) => s.sealed)).toEqual(['v2']);
      expect(await secrets.delete(w.id, 'K')).toBe(true);
      expect(await secrets.delete(w.id, 'K')).toBe(false);
    });

    it('applies migrations once: opening again is a no-op', async () => {
      const again = await open();
      await again.close();
    });
  });
}

const sqliteDir = tempDir('store');
afterAll(() => fs.rmSync(sqliteDir, { recursive: true, force: true }));
storeSuite('sqlite', () => openStore({ dataDir: sqliteDir }));

let postgres: TestPostgres | null = null;
let postgresUrl: string | undefined;
beforeAll(async () => {
  postgres = await startTestPostgres();
  postgresUrl = postgres?.url;
}, 60_000);
afterAll(async () => {
  await postgres?.stop();
});
// Without Postgres server binaries (a plain dev machine) this part skips; CI installs Postgres, so it runs there.
describe.runIf(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL)('with Postgres', () => {
  storeSuite('postgres', () => {
    if (!postgresUrl) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    return openStore({ dataDir: sqliteDir, databaseUrl: postgresUrl });
  });
});
