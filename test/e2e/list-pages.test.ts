import crypto from 'node:crypto';
import fs from 'node:fs';
import pino from 'pino';
import { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { openStore, type Store } from '../../src/store/db.js';
import { WorkspaceRepo } from '../../src/store/repositories.js';
import { encodeCursor } from '../../src/server/schemas.js';
import { FakeProvisioner } from '../support/fake-provisioner.js';
import { api, FAST_ENV, tempDir, waitFor, type Api } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { insertWorkspaces, walkPages, type SeedRow } from '../support/workspace-rows.js';

/**
 * GET /workspaces a page at a time: limit, cursor, filters and bad input, through the API of a platform on a fake
 * backend (rows are written straight into its store: no agents), the same on SQLite and on Postgres. Then the
 * plans: at 10,000 workspaces every page is an index walk.
 */
const hasPostgres = !!(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL);

function pagesSuite(kind: 'sqlite' | 'postgres', databaseUrl: () => string | undefined) {
  describe(`GET /workspaces pages on ${kind}`, { shuffle: false }, () => {
    const dataDir = tempDir(`pages-${kind}`);
    let platform: Platform;
    let store: Store;
    let http: Api;
    const seeded: Array<Required<SeedRow>> = [];
    const secretsKey = crypto.randomBytes(32).toString('base64');

    beforeAll(async () => {
      const url = databaseUrl();
      platform = await startPlatform({
        env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', ...(url ? { DATABASE_URL: url, MOLECULE_SECRETS_KEY: secretsKey } : {}) },
        logger: pino({ level: 'silent' }),
        provisioner: new FakeProvisioner(),
      });
      http = api(platform.url);
      store = await openStore({ dataDir, databaseUrl: url });
      // 250 live ones (paused / failed: states the reconciler leaves alone), 30 removed, 2 parents with children.
      const parents = await insertWorkspaces(store.db, [{ name: 'Parent-One' }, { name: 'parent-two', status: 'failed' }]);
      const rows: SeedRow[] = [];
      for (let i = 0; i < 280; i++) {
        rows.push({
          name: i % 10 === 0 ? `Alpha_${i}%` : `worker-${String(i).padStart(3, '0')}`,
          status: i % 28 === 27 ? 'removed' : i % 4 === 0 ? 'failed' : 'paused',
          parentId: i % 7 === 0 ? parents[0].id : i % 7 === 1 ? parents[1].id : null,
        });
      }
      seeded.push(...parents, ...(await insertWorkspaces(store.db, rows)));
    });
    afterAll(async () => {
      await store?.close();
      await platform?.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    const live = () => seeded.filter((r) => r.status !== 'removed');

    it('gives 100 by default, oldest first, with X-Next-Cursor and a Link to the next page; the last page has neither', async () => {
      const first = await http.call('GET', '/workspaces');
      expect(first.status).toBe(200);
      expect(Array.isArray(first.body)).toBe(true);
      expect(first.body.map((w: any) => w.id)).toEqual(live().slice(0, 100).map((r) => r.id));
      const cursor = first.headers.get('x-next-cursor');
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(first.headers.get('link')).toBe(`</workspaces?cursor=${cursor}>; rel="next"`);

      const all = await walkPages(http);
      expect(all.pages.map((p) => p.length)).toEqual([100, 100, live().length - 200]);
      expect(all.ids).toEqual(live().map((r) => r.id));

      const max = await http.call('GET', '/workspaces?limit=500');
      expect(max.body).toHaveLength(live().length);
      expect(max.headers.get('x-next-cursor')).toBeNull();
      expect(max.headers.get('link')).toBeNull();
    });

    it('walks every page of any size exactly once, each filter combined with the cursor', async () => {
      const parentOne = seeded[0].id;
      const cases: Array<[Record<string, string>, (r: Required<SeedRow>) => boolean]> = [
        [{ limit: '7' }, (r) => r.status !== 'removed'],
        [{ limit: '13', status: 'failed' }, (r) => r.status === 'failed'],
        [{ limit: '9', status: 'paused,removed' }, (r) => r.status === 'paused' || r.status === 'removed'],
        [{ limit: '5', status: 'removed' }, (r) => r.status === 'removed'],
        [{ limit: '4', parent_id: parentOne }, (r) => r.parentId === parentOne && r.status !== 'removed'],
        [{ limit: '3', parent_id: parentOne, status: 'failed' }, (r) => r.parentId === parentOne && r.status === 'failed'],
        [{ limit: '6', q: 'WORKER-1' }, (r) => r.name.toLowerCase().includes('worker-1') && r.status !== 'removed'],
        [{ limit: '2', q: 'parent' }, (r) => /parent/i.test(r.name) && r.status !== 'removed'],
        // LIKE's wildcards are literal in q: "_1" and "%" match only names that contain them.
        [{ limit: '8', q: 'r_1' }, () => false],
        [{ limit: '8', q: 'A_1' }, (r) => r.name.toLowerCase().includes('a_1') && r.status !== 'removed'],
        [{ limit: '8', q: '0%' }, (r) => r.name.includes('0%') && r.status !== 'removed'],
        [{ limit: '50', q: 'no such name' }, () => false],
      ];
      for (const [query, want] of cases) {
        const expected = seeded.filter(want).map((r) => r.id);
        const { pages, ids } = await walkPages(http, query);
        expect(ids, JSON.stringify(query)).toEqual(expected);
        expect(pages.length, JSON.stringify(query)).toBe(Math.max(1, Math.ceil(expected.length / Number(query.limit))));
        // The Link carries the filters on to the next page (and ids the caller can follow as given).
        if (expected.length > Number(query.limit)) {
          const r = await http.call('GET', `/workspaces?${new URLSearchParams(query)}`);
          const link = r.headers.get('link')!;
          const next = new URL(link.slice(1, link.indexOf('>')), platform.url);
          for (const [k, v] of Object.entries(query)) expect(next.searchParams.get(k)).toBe(v);
          const followed = await http.call('GET', next.pathname + next.search);
          expect(followed.body.map((w: any) => w.id)).toEqual(expected.slice(Number(query.limit), 2 * Number(query.limit)));
        }
      }
      expect(seeded.filter((r) => r.name.includes('0%')).length).toBeGreaterThan(0);
    });

    it('never repeats or skips a row while workspaces are created and deleted during the walk', async () => {
      const before = (await walkPages(http, { limit: '500' })).ids;
      const seen: string[] = [];
      const made: string[] = [];
      const doomed = before[before.length - 5];
      let cursor: string | null = null;
      let n = 0;
      do {
        const r = await http.call('GET', `/workspaces?limit=10${cursor ? `&cursor=${cursor}` : ''}`);
        seen.push(...r.body.map((w: any) => w.id));
        cursor = r.headers.get('x-next-cursor');
        // Meanwhile: a create through the API (sorts last), a row that commits late with an older created_at (sorts
        // before the cursor: this walk does not see it, and nothing shifts), and a delete of a row not seen yet.
        if (n === 1) expect((await http.call('DELETE', `/workspaces/${doomed}`)).status).toBe(202);
        if (n < 5) {
          const c = await http.call('POST', '/workspaces', { name: `during-walk-${n}` });
          expect(c.status).toBe(201);
          made.push(c.body.id);
          await insertWorkspaces(store.db, [{ name: `late-${n}`, createdAt: new Date(Date.parse(seeded[0].createdAt) - 1000).toISOString() }]);
        }
        n++;
      } while (cursor);
      expect(new Set(seen).size).toBe(seen.length);
      // Everything that was there at the start, then the creates, in order; the late rows sort first and are not seen.
      // The deleted one shows only if its page came while it was still 'removing'.
      expect(seen.filter((id) => id !== doomed)).toEqual([...before.filter((id) => id !== doomed), ...made]);
      await waitFor('the delete done', async () => (await http.call('GET', `/workspaces/${doomed}`)).status === 410);
      const after = (await walkPages(http, { limit: '500' })).ids;
      expect(after.length).toBe(before.length + 10 - 1);
    });

    it('answers a bad limit, cursor or filter with 400 {error, code}', async () => {
      const bad = [
        'limit=0',
        'limit=501',
        'limit=-1',
        'limit=abc',
        'limit=1.5',
        'limit=',
        'cursor=not-a-cursor!',
        'cursor=abc',
        `cursor=${Buffer.from('["yesterday","x"]').toString('base64url')}`,
        `cursor=${Buffer.from(JSON.stringify({ createdAt: new Date().toISOString(), id: crypto.randomUUID() })).toString('base64url')}`,
        `cursor=${encodeCursor({ createdAt: new Date().toISOString(), id: 'not-a-uuid' })}`,
        'status=asleep',
        'parent_id=nope',
        `q=${'x'.repeat(256)}`,
        'page=2',
      ];
      for (const q of bad) {
        const r = await http.call('GET', `/workspaces?${q}`);
        expect(r.status, q).toBe(400);
        expect(r.body, q).toMatchObject({ code: 'invalid_request', error: expect.any(String) });
      }
      expect((await http.call('GET', '/workspaces?limit=0')).body.error).toMatch(/querystring\.limit: must be an integer from 1 to 500/);
      expect((await http.call('GET', '/workspaces?cursor=abc')).body.error).toMatch(/querystring\.cursor: is not a cursor/);
      // A well-formed cursor past the end is simply an empty last page.
      const end = await http.call('GET', `/workspaces?cursor=${encodeCursor({ createdAt: '2999-01-01T00:00:00.000Z', id: crypto.randomUUID() })}`);
      expect(end.status).toBe(200);
      expect(end.body).toEqual([]);
      expect(end.headers.get('x-next-cursor')).toBeNull();
    });

    it('describes limit, cursor and q in /openapi.json', async () => {
      const doc = (await http.call('GET', '/openapi.json')).body;
      const params = doc.paths['/workspaces'].get.parameters.map((p: any) => p.name);
      expect(params).toEqual(expect.arrayContaining(['status', 'parent_id', 'q', 'limit', 'cursor']));
      expect(doc.paths['/workspaces'].get.description).toMatch(/X-Next-Cursor/);
    });
  });
}

pagesSuite('sqlite', () => undefined);

let postgres: TestPostgres | null = null;
describe.runIf(hasPostgres)('with Postgres', () => {
  beforeAll(async () => {
    postgres = await startTestPostgres();
    if (!postgres) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
  }, 60_000);
  afterAll(async () => {
    await postgres?.stop();
  });
  pagesSuite('postgres', () => postgres!.url);
  plansSuite('postgres', () => openStore({ dataDir: '', databaseUrl: postgres!.url }));
});

plansSuite('sqlite', () => openStore({ dataDir: '', memory: true }));

/**
 * At 10,000 workspaces a page is an index walk for every filter: no full scan of the table, no sort of all rows.
 * (A name search walks the live index, reading names from it, and stops when the page is full.)
 */
function plansSuite(kind: 'sqlite' | 'postgres', open: () => Promise<Store>) {
  describe(`page plans at 10,000 workspaces on ${kind}`, () => {
    let store: Store;
    let repo: WorkspaceRepo;
    let parentId: string;
    beforeAll(async () => {
      store = await open();
      // The Postgres database is the pages suite's: its rows are there too; these make it 10,000 more.
      const [parent] = await insertWorkspaces(store.db, [{ name: 'plan-parent' }]);
      parentId = parent.id;
      const statuses = ['paused', 'failed', 'removed', 'ready', 'offline'] as const;
      await insertWorkspaces(
        store.db,
        Array.from({ length: 10_000 }, (_, i) => ({ name: `plan-${i}`, status: statuses[i % 5], parentId: i % 3 === 0 ? parentId : null })),
      );
      if (kind === 'postgres') await store.db.executeQuery(CompiledQuery.raw('analyze workspaces'));
    }, 60_000);
    afterAll(async () => {
      await store?.close();
    });

    async function plan(filter: Parameters<WorkspaceRepo['page']>[0], withCursor = true): Promise<string> {
      const after = withCursor ? (await repo.page({}, { limit: 100 })).next! : undefined;
      const c = repo.pageQuery(filter, { limit: 100, after }).compile();
      const prefix = kind === 'sqlite' ? 'explain query plan ' : 'explain (costs off) ';
      const r = await store.db.executeQuery<any>(CompiledQuery.raw(prefix + c.sql, [...c.parameters]));
      return r.rows.map((x) => x.detail ?? x['QUERY PLAN']).join('\n');
    }

    it('uses an index for every filter', async () => {
      repo = new WorkspaceRepo(store.db);
      // Which index is the planner's choice (Postgres weighs them by its statistics); that it walks one is the point.
      const cases: Array<[Parameters<WorkspaceRepo['page']>[0], string]> = [
        [{}, 'workspaces_live_page'],
        [{ status: ['paused'] }, kind === 'sqlite' ? 'workspaces_status_page' : '_page'],
        [{ status: ['removed'] }, 'workspaces_status_page'],
        [{ parentId }, kind === 'sqlite' ? 'workspaces_parent_page' : '_page'],
        [{ status: ['ready'], parentId }, '_page'],
      ];
      if (kind === 'sqlite') cases.push([{ q: 'plan-12' }, 'workspaces_live_page']);
      for (const [filter, index] of cases) {
        for (const withCursor of [false, true]) {
          const p = await plan(filter, withCursor);
          expect(p, `${JSON.stringify(filter)}\n${p}`).toContain(index);
          expect(p, `${JSON.stringify(filter)}\n${p}`).not.toMatch(/Seq Scan|SCAN workspaces$|SCAN workspaces\n|TEMP B-TREE|Sort/m);
        }
      }
      // Several statuses: each one's index range, merged (SQLite sorts only the matching rows after the cursor).
      expect(await plan({ status: ['paused', 'failed'] })).toMatch(/workspaces_(status|live)_page/);
    });
  });
}
