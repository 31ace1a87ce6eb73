import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../src/platform.js';
import { FAST_ENV, killRecordedAgents, ROOT, tempDir } from '../support/harness.js';

/** Runs the real `molecule` binary against a real platform, as a person at a terminal would. */
function molecule(url: string, args: string[], opts: { token?: string; stdin?: string } = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, MOLECULE_URL: url };
    delete env.MOLECULE_ADMIN_TOKEN;
    if (opts.token) env.MOLECULE_ADMIN_TOKEN = opts.token;
    const child = execFile(process.execPath, [path.join(ROOT, 'bin/molecule.mjs'), ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
    else child.stdin!.end();
  });
}

const logger = pino({ level: 'silent' });

describe('molecule CLI', { shuffle: false }, () => {
  const dataDir = tempDir('cli');
  let platform: Platform;
  let url: string;
  const run = (...args: string[]) => molecule(url, args);

  beforeAll(async () => {
    platform = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' }, logger });
    url = platform.url;
  });
  afterAll(async () => {
    await platform?.close();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates a workspace, follows its boot to ready, lists it and asks it a question', async () => {
    const created = await run('create', 'cli-alpha', '--role', 'tester', '--tier', '1', '--wait');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/provisioning → ready/);
    expect(created.stdout.trim().split('\n').at(-1)).toMatch(/cli-alpha\s+ready$/);

    const ls = await run('ls');
    expect(ls.stdout).toMatch(/^ID\s+NAME\s+STATUS/);
    expect(ls.stdout).toMatch(/cli-alpha\s+ready\s+T1/);

    const streamed = await run('ask', 'cli-alpha', 'What region are you running in?');
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toMatch(/region/i);
    const sent = await run('ask', '--no-stream', 'cli-alpha', 'What is your name?');
    expect(sent.stdout.trim()).toContain('cli-alpha');

    const json = JSON.parse((await run('--json', 'show', 'cli-alpha')).stdout);
    expect(json).toMatchObject({ name: 'cli-alpha', status: 'ready', tier: 1, role: 'tester' });
    // An id prefix, as `ls` prints it, names the same workspace.
    const byPrefix = JSON.parse((await run('--json', 'show', json.id.slice(0, 8))).stdout);
    expect(byPrefix.id).toBe(json.id);

    const events = await run('events', json.id);
    expect(events.stdout).toMatch(/instance started/);
    expect(events.stdout).toMatch(/registered/);
    const logs = await run('logs', '--tail', '5', 'cli-alpha');
    expect(logs.stdout).toMatch(/registered with the platform|a2a call/);
  });

  it('reads a secret from standard input, never prints it, and marks the running workspace needs_restart', async () => {
    const set = await molecule(url, ['secrets', 'set', '--workspace', 'cli-alpha', 'MODEL_KEY'], { stdin: 'value-that-must-not-show\n' });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout + set.stderr).not.toContain('value-that-must-not-show');
    const ls = await run('secrets', 'ls', '--workspace', 'cli-alpha');
    expect(ls.stdout).toMatch(/MODEL_KEY/);
    expect(ls.stdout).not.toContain('value-that-must-not-show');
    expect((await run('ls')).stdout).toMatch(/cli-alpha\s+ready, needs restart/);
  });

  it('says clearly what went wrong, with a non-zero exit', async () => {
    const badTier = await run('create', 'x', '--tier', '9');
    expect(badTier.code).toBe(1);
    expect(badTier.stderr).toMatch(/^molecule: .*tier.*1 to 4.*\(validation_error|HTTP 400\)/s);
    const unknown = await run('show', 'no-such-workspace');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no workspace with id, id prefix .* or name "no-such-workspace"/);
    const badPair = await run('create', 'x', '--env', 'NOEQUALS');
    expect(badPair.code).toBe(2);
    expect(badPair.stderr).toMatch(/expected KEY=VALUE/);
    const down = await molecule('http://127.0.0.1:1', ['ls']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach the platform at http:\/\/127\.0\.0\.1:1/);
  });

  it('moves a workspace under another one and back to the top level, and refuses a cycle', async () => {
    const parent = await run('--json', 'create', 'cli-parent');
    const child = await run('--json', 'create', 'cli-child');
    expect(parent.code, parent.stderr).toBe(0);
    const [p, c] = [JSON.parse(parent.stdout), JSON.parse(child.stdout)];
    const moved = await run('mv', 'cli-child', '--parent', 'cli-parent');
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toContain(`parent: ${p.id}`);
    const cycle = await run('mv', 'cli-parent', '--parent', 'cli-child');
    expect(cycle.code).toBe(1);
    expect(cycle.stderr).toMatch(/parent_cycle/);
    expect(cycle.stderr).toContain('cli-parent → cli-child → cli-parent');
    const top = JSON.parse((await run('--json', 'mv', c.id, '--parent', 'none')).stdout);
    expect(top.parent_id).toBeNull();
    await run('rm', 'cli-child');
    await run('rm', 'cli-parent');
  });

  it('refuses an ambiguous name and lists the candidates', async () => {
    expect((await run('create', 'twin')).code).toBe(0);
    expect((await run('create', 'twin')).code).toBe(0);
    const r = await run('pause', 'twin');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/"twin" matches 2 workspaces/);
  });

  it('restarts, pauses, resumes and deletes', async () => {
    expect((await run('restart', 'cli-alpha')).stdout).toMatch(/provisioning/);
    expect((await run('pause', 'cli-alpha')).stdout).toMatch(/paused/);
    // The proxy answers a paused workspace with a JSON-RPC error in HTTP 200: the CLI still fails, naming the reason.
    for (const args of [['ask', '--no-stream', 'cli-alpha', 'hello?'], ['ask', 'cli-alpha', 'hello?']]) {
      const refused = await run(...args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toMatch(/^molecule: the platform answered an error: .*paused.*\(workspace_not_ready\)/);
    }
    const refusedJson = await run('--json', 'ask', '--no-stream', 'cli-alpha', 'hello?');
    expect(refusedJson.code).toBe(1);
    expect(JSON.parse(refusedJson.stdout).error.data).toMatchObject({ code: 'workspace_not_ready', status: 'paused' });
    expect((await run('resume', 'cli-alpha')).stdout).toMatch(/cli-alpha/);
    const rm = await run('rm', 'cli-alpha');
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toMatch(/removing|removed/);
    const removed = await run('ls', '--status', 'removed');
    expect(removed.stdout).toMatch(/cli-alpha\s+removed/);
  });
});

describe('molecule CLI with an admin token', () => {
  const dataDir = tempDir('cli-auth');
  let platform: Platform;
  beforeAll(async () => {
    platform = await startPlatform({
      env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', MOLECULE_ADMIN_TOKEN: 'cli-test-admin-token' },
      logger,
    });
  });
  afterAll(async () => {
    await platform?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('fails with 401 without the token and works with it from MOLECULE_ADMIN_TOKEN', async () => {
    const without = await molecule(platform.url, ['ls']);
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/HTTP 401/);
    const withToken = await molecule(platform.url, ['ls'], { token: 'cli-test-admin-token' });
    expect(withToken.code, withToken.stderr).toBe(0);
    expect(withToken.stdout).toMatch(/no workspaces/);
  });
});
