import crypto from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, killRecordedAgents, tempDir, waitFor, waitReady } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

/** The whole lifecycle with DATABASE_URL pointing at a real Postgres, across a platform restart. */
describe.runIf(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL)('platform on Postgres', () => {
  const dataDir = tempDir('pg-platform');
  let pgServer: TestPostgres | null;
  let platform: Platform | undefined;
  // Postgres requires the key (every replica shares it); the same one for every start, as a real cluster would.
  const secretsKey = crypto.randomBytes(32).toString('base64');
  const env = () => ({
    ...FAST_ENV,
    PORT: '0',
    MOLECULE_DATA_DIR: dataDir,
    CONTAINER_BACKEND: 'process',
    DATABASE_URL: pgServer!.url,
    MOLECULE_SECRETS_KEY: secretsKey,
  });

  beforeAll(async () => {
    pgServer = await startTestPostgres();
    if (!pgServer) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
  }, 60_000);
  afterAll(async () => {
    await platform?.close();
    killRecordedAgents(dataDir);
    await pgServer?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates, serves, survives a restart and deletes', async () => {
    platform = await startPlatform({ env: env(), logger: pino({ level: 'silent' }) });
    let http = api(platform.url);
    expect((await http.call('GET', '/healthz')).body.database.kind).toBe('postgres');
    const id = (await http.call('POST', '/workspaces', { name: 'on-postgres', region: 'fra' })).body.id;
    await waitReady(http, id);
    await platform.close();

    platform = await startPlatform({ env: env(), logger: pino({ level: 'silent' }) });
    http = api(platform.url);
    // Everything came back from Postgres: the workspace, its route and its agent token.
    const a2a = await waitFor('A2A through the new platform', async () => {
      const r = await http.call('POST', `/workspaces/${id}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] });
      return r.status === 200 && r.body;
    });
    expect(a2a.result.parts[0].text).toMatch(/fra/);
    const events = (await http.call('GET', `/workspaces/${id}/events`)).body;
    expect(events.filter((e: any) => e.type === 'workspace.status').map((e: any) => e.data.to).slice(0, 2)).toEqual(['provisioning', 'ready']);
    expect((await http.call('DELETE', `/workspaces/${id}`)).status).toBe(202);
    await waitFor('410', async () => (await http.call('GET', `/workspaces/${id}`)).status === 410);
  }, 90_000);

  it('keeps serving when Postgres drops its connections (restart, failover, admin shutdown)', async () => {
    await platform?.close();
    platform = await startPlatform({ env: env(), logger: pino({ level: 'silent' }) });
    const http = api(platform.url);
    expect((await http.call('GET', '/workspaces')).status).toBe(200);
    const admin = new pg.Client({ connectionString: pgServer!.url });
    await admin.connect();
    try {
      const { rowCount } = await admin.query(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
      );
      expect(rowCount).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    // The dropped idle connections must not crash the process; the next request reconnects.
    await new Promise((r) => setTimeout(r, 200));
    const after = await waitFor('a query on a fresh connection', async () => {
      const r = await http.call('GET', '/workspaces');
      return r.status === 200 && r;
    });
    expect(Array.isArray(after.body)).toBe(true);
  }, 60_000);
});
