import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinCluster } from '../../src/core/cluster.js';
import { ConfigError, loadConfig } from '../../src/core/config.js';
import { Sealer } from '../../src/core/crypto.js';
import { secretAad } from '../../src/core/secrets.js';
import { openStore, type Store } from '../../src/store/db.js';
import { clusterStoreOf } from '../../src/store/cluster-repos.js';
import { tempDir } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

const newKey = () => crypto.randomBytes(32).toString('base64');
const dirs: string[] = [];
const dir = (prefix: string) => {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

describe('loadConfig with DATABASE_URL', () => {
  it('requires MOLECULE_SECRETS_KEY and says how to make one', () => {
    let err: unknown;
    try {
      loadConfig({ DATABASE_URL: 'postgres://db/molecule', MOLECULE_DATA_DIR: dir('cfg') });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/MOLECULE_SECRETS_KEY/);
    expect((err as Error).message).toContain('openssl rand -base64 32');
    expect((err as Error).message).toMatch(/every replica/);
  });

  it('points a platform that generated its key before at that key file, without printing it', () => {
    const d = dir('cfg-upgrade');
    Sealer.load(d);
    const key = fs.readFileSync(path.join(d, 'secrets.key'), 'utf8').trim();
    const msg = (() => {
      try {
        loadConfig({ DATABASE_URL: 'postgres://db/molecule', MOLECULE_DATA_DIR: d });
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(msg).toContain(path.join(d, 'secrets.key'));
    expect(msg).not.toContain(key);
  });

  it('accepts a key, and refuses one of the wrong size before anything is opened', () => {
    const key = newKey();
    expect(loadConfig({ DATABASE_URL: 'postgres://db/molecule', MOLECULE_SECRETS_KEY: key }).secretsKey).toBe(key);
    expect(() => loadConfig({ MOLECULE_SECRETS_KEY: 'c2hvcnQ=' })).toThrow(/32 bytes/);
  });
});

describe.runIf(process.env.CI || fs.existsSync('/usr/lib/postgresql') || process.env.MOLECULE_TEST_POSTGRES_URL)('joinCluster on Postgres', () => {
  let pgServer: TestPostgres | null;
  const stores: Store[] = [];

  beforeAll(async () => {
    pgServer = await startTestPostgres();
    if (!pgServer) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
  }, 60_000);
  afterAll(async () => {
    for (const s of stores) await s.close();
    await pgServer?.stop();
  });

  /** A fresh database on the test server for each case, so the cases do not share a cluster. */
  const database = async (): Promise<string> => {
    const name = `cluster_${crypto.randomBytes(6).toString('hex')}`;
    const c = new pg.Client({ connectionString: pgServer!.url });
    await c.connect();
    await c.query(`create database ${name}`);
    await c.end();
    const u = new URL(pgServer!.url);
    u.pathname = `/${name}`;
    return u.toString();
  };
  /** One replica: its own data dir and store, the shared database. */
  const replica = async (url: string, key: string, dataDir = dir('replica')) => {
    const config = loadConfig({ DATABASE_URL: url, MOLECULE_SECRETS_KEY: key, MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' });
    const store = await openStore({ dataDir, databaseUrl: url });
    stores.push(store);
    return { config, store };
  };

  it('gives replicas with the same key the same platform id and a working sealer, and writes nothing to the data dir', async () => {
    const url = await database();
    const key = newKey();
    const a = await replica(url, key);
    const b = await replica(url, key);
    const ja = await joinCluster(clusterStoreOf(a.store), a.config);
    const jb = await joinCluster(clusterStoreOf(b.store), b.config);
    expect(ja.platformId).toMatch(/^mp-[0-9a-f]{16}$/);
    expect(jb.platformId).toBe(ja.platformId);
    expect(jb.sealer.open(ja.sealer.seal('v', 'aad'), 'aad')).toBe('v');
    // A restarted replica joins again and finds the same cluster.
    expect((await joinCluster(clusterStoreOf(a.store), a.config)).platformId).toBe(ja.platformId);
    expect(fs.readdirSync(a.config.dataDir)).toEqual([]);
  });

  it('refuses a replica whose key differs from the cluster one, without printing either key', async () => {
    const url = await database();
    const good = newKey();
    const a = await replica(url, good);
    await joinCluster(clusterStoreOf(a.store), a.config);
    const bad = newKey();
    const b = await replica(url, bad);
    const err = await joinCluster(clusterStoreOf(b.store), b.config).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/MOLECULE_SECRETS_KEY differs from the key the data in this database was sealed with/);
    expect(msg).toMatch(/same MOLECULE_SECRETS_KEY as the other replicas/);
    expect(msg).not.toContain(good);
    expect(msg).not.toContain(bad);
  });

  it('agrees on one key check and one platform id when the first replicas start at once', async () => {
    const url = await database();
    const key = newKey();
    const replicas = await Promise.all(Array.from({ length: 4 }, () => replica(url, key)));
    const joined = await Promise.all(replicas.map((r) => joinCluster(clusterStoreOf(r.store), r.config)));
    expect(new Set(joined.map((j) => j.platformId)).size).toBe(1);
    const rows = await replicas[0].store.db.selectFrom('cluster').select(['key']).orderBy('key').execute();
    expect(rows.map((r) => r.key)).toEqual(['key_check', 'platform_id']);
  });

  it('starts the cluster with the platform id this data dir already has, so its instances stay its own', async () => {
    const url = await database();
    const key = newKey();
    const first = dir('seeded');
    fs.writeFileSync(path.join(first, 'docker-platform-id'), 'mp-00112233aabbccdd\n');
    const a = await replica(url, key, first);
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (_o: unknown, m?: string) => void warnings.push(String(m)) };
    expect((await joinCluster(clusterStoreOf(a.store), a.config, { logger: logger as never })).platformId).toBe('mp-00112233aabbccdd');
    // A later replica with another id file keeps the cluster's id, and is told its old instances are not managed.
    const second = dir('seeded-other');
    fs.writeFileSync(path.join(second, 'docker-platform-id'), 'mp-ffffffffffffffff\n');
    const b = await replica(url, key, second);
    expect((await joinCluster(clusterStoreOf(b.store), b.config, { logger: logger as never })).platformId).toBe('mp-00112233aabbccdd');
    expect(warnings.join('\n')).toMatch(/mp-ffffffffffffffff.*no longer managed/);
  });

  it('seeds from the Fly id file when the backend is flyio', async () => {
    const url = await database();
    const d = dir('seeded-fly');
    fs.writeFileSync(path.join(d, 'flyio-platform-id'), 'mp-fly0000fly00000\n');
    fs.writeFileSync(path.join(d, 'docker-platform-id'), 'mp-dock000dock0000\n');
    const config = { ...loadConfig({ DATABASE_URL: url, MOLECULE_SECRETS_KEY: newKey(), MOLECULE_DATA_DIR: d }), backend: 'flyio' as const };
    const store = await openStore({ dataDir: d, databaseUrl: url });
    stores.push(store);
    expect((await joinCluster(clusterStoreOf(store), config)).platformId).toBe('mp-fly0000fly00000');
  });

  it('refuses a first key that does not open secrets already in the database, and names the generated key file', async () => {
    const url = await database();
    const d = dir('upgrade');
    // A platform that ran on Postgres alone: its secrets sealed with the key generated into its data dir.
    const oldSealer = Sealer.load(d);
    const { store } = await replica(url, newKey(), d);
    const now = new Date().toISOString();
    await store.db
      .insertInto('secrets')
      .values({ scope: 'global', key: 'OPENAI_API_KEY', sealed: oldSealer.seal('sk-x', secretAad('global', 'OPENAI_API_KEY')), created_at: now, updated_at: now })
      .execute();
    const wrong = loadConfig({ DATABASE_URL: url, MOLECULE_SECRETS_KEY: newKey(), MOLECULE_DATA_DIR: d });
    await expect(joinCluster(clusterStoreOf(store), wrong)).rejects.toThrow(/does not open the secrets already stored[\s\S]*secrets\.key/);
    expect(await store.db.selectFrom('cluster').selectAll().execute()).toEqual([]);
    // With the old key the cluster starts, and that key becomes the cluster's.
    const oldKey = fs.readFileSync(path.join(d, 'secrets.key'), 'utf8').trim();
    const right = loadConfig({ DATABASE_URL: url, MOLECULE_SECRETS_KEY: oldKey, MOLECULE_DATA_DIR: d });
    const j = await joinCluster(clusterStoreOf(store), right);
    expect(j.sealer.open((await store.db.selectFrom('secrets').select('sealed').executeTakeFirstOrThrow()).sealed, secretAad('global', 'OPENAI_API_KEY'))).toBe('sk-x');
  });
});

describe('joinCluster on SQLite', () => {
  it('keeps the single-process behaviour: a generated key file and no cluster platform id', async () => {
    const d = dir('sqlite');
    const store = await openStore({ dataDir: d, memory: true });
    try {
      const config = loadConfig({ MOLECULE_DATA_DIR: d, CONTAINER_BACKEND: 'process' });
      const j = await joinCluster(clusterStoreOf(store), config);
      expect(j.platformId).toBeUndefined();
      const file = path.join(d, 'secrets.key');
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      // The same key as Sealer.load finds in the data dir, as before.
      expect(Sealer.load(d).open(j.sealer.seal('v', 'aad'), 'aad')).toBe('v');
      expect(await store.db.selectFrom('cluster').selectAll().execute()).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('uses MOLECULE_SECRETS_KEY when set, as before', async () => {
    const d = dir('sqlite-key');
    const store = await openStore({ dataDir: d, memory: true });
    try {
      const key = newKey();
      const j = await joinCluster(clusterStoreOf(store), loadConfig({ MOLECULE_DATA_DIR: d, MOLECULE_SECRETS_KEY: key }));
      expect(Sealer.load(dir('other'), key).open(j.sealer.seal('v', 'aad'), 'aad')).toBe('v');
      expect(fs.existsSync(path.join(d, 'secrets.key'))).toBe(false);
    } finally {
      await store.close();
    }
  });
});
