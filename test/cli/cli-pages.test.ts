import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { openStore } from '../../src/store/db.js';
import { FakeProvisioner } from '../support/fake-provisioner.js';
import { FAST_ENV, ROOT, tempDir } from '../support/harness.js';
import { insertWorkspaces } from '../support/workspace-rows.js';

function molecule(url: string, args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, MOLECULE_URL: url };
    delete env.MOLECULE_ADMIN_TOKEN;
    execFile(process.execPath, [path.join(ROOT, 'bin/molecule.mjs'), ...args], { env, timeout: 60_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ).stdin!.end();
  });
}

/** `molecule ls` over more workspaces than one page holds: rows in the store of a platform on a fake backend. */
describe('molecule ls pages', () => {
  const dataDir = tempDir('cli-pages');
  let platform: Platform;
  const N = 1100;
  const run = (...args: string[]) => molecule(platform.url, args);

  beforeAll(async () => {
    const store = await openStore({ dataDir });
    const [parent] = await insertWorkspaces(store.db, [{ name: 'the-parent' }]);
    await insertWorkspaces(
      store.db,
      Array.from({ length: N }, (_, i) => ({ name: `cli-${String(i).padStart(4, '0')}`, status: i % 10 === 0 ? ('failed' as const) : ('paused' as const), parentId: i < 3 ? parent.id : null })),
    );
    await store.close();
    platform = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' }, logger: pino({ level: 'silent' }), provisioner: new FakeProvisioner() });
  });
  afterAll(async () => {
    await platform?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('lists every page by default, or --limit; searches, filters and finds a name past the first page', async () => {
    const all = await run('ls');
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trim().split('\n');
    expect(lines).toHaveLength(1 + 1 + N);
    expect(lines.at(-1)).toMatch(/cli-1099\s+paused/);

    const json = JSON.parse((await run('--json', 'ls', '--status', 'failed')).stdout);
    expect(json).toHaveLength(N / 10);
    expect(json.every((w: any) => w.status === 'failed')).toBe(true);

    const five = await run('ls', '--limit', '5');
    expect(five.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[1])).toEqual(['the-parent', 'cli-0000', 'cli-0001', 'cli-0002', 'cli-0003']);

    const search = await run('--json', 'ls', '-q', 'CLI-105');
    expect(JSON.parse(search.stdout).map((w: any) => w.name)).toEqual(Array.from({ length: 10 }, (_, i) => `cli-105${i}`));
    const children = await run('--json', 'ls', '--parent', 'the-parent');
    expect(JSON.parse(children.stdout).map((w: any) => w.name)).toEqual(['cli-0000', 'cli-0001', 'cli-0002']);
    expect((await run('ls', '-q', 'nothing-like-this')).stdout.trim()).toBe('no workspace matches');

    // A name on the last page still resolves (the CLI pages through the list to find it).
    const shown = JSON.parse((await run('--json', 'show', 'cli-1099')).stdout);
    expect(shown.name).toBe('cli-1099');

    const bad = await run('ls', '--limit', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--limit must be a positive integer/);
    expect((await run('ls', '--help')).stdout).toMatch(/--limit <n>.*default: all/s);
  });
});
