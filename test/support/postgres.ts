import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import pg from 'pg';
import { freePort, waitFor } from './harness.js';

/** Where Debian puts the server binaries (initdb and postgres are not on PATH there). */
function pgBin(name: string): string | null {
  const candidates = [
    ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, name)),
    ...['17', '16', '15', '14', '13'].map((v) => `/usr/lib/postgresql/${v}/bin/${name}`),
  ];
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

export interface TestPostgres {
  url: string;
  stop(): Promise<void>;
}

/**
 * A real Postgres for tests: MOLECULE_TEST_POSTGRES_URL when CI provides one, otherwise a throwaway cluster
 * started here (as the `postgres` user when running as root, since initdb refuses root). Null when the machine
 * has no Postgres server binaries.
 */
export async function startTestPostgres(): Promise<TestPostgres | null> {
  const given = process.env.MOLECULE_TEST_POSTGRES_URL;
  if (given) return { url: await freshDatabase(given), stop: async () => undefined };
  const initdb = pgBin('initdb');
  const postgres = pgBin('postgres');
  if (!initdb || !postgres) return null;
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-pg-'));
  const data = path.join(dir, 'data');
  const wrap = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);
  if (asRoot) spawnSync('chown', ['postgres', dir]);
  const [c1, a1] = wrap(initdb, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const init = spawnSync(c1, a1, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const [c2, a2] = wrap(postgres, ['-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir, '-c', 'fsync=off']);
  const child: ChildProcess = spawn(c2, a2, { stdio: 'ignore' });
  const base = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitFor('postgres accepting connections', async () => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.end();
    return true;
  }, 30_000, 200);
  return {
    url: await freshDatabase(base),
    async stop() {
      // runuser does not pass signals on; signal the postmaster itself (fast shutdown), by its recorded pid.
      const pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const exited = child.exitCode === null ? once(child, 'exit') : Promise.resolve();
      process.kill(pid, 'SIGINT');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A new empty database on the server, so runs never see each other's rows. */
async function freshDatabase(serverUrl: string): Promise<string> {
  const name = `molecule_test_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
