import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agentPids, killPids, pidsWithEnv } from '../support/agents.js';
import { api, killRecordedAgents, launchPlatform, tempDir, waitFor, type PlatformProcess } from '../support/harness.js';

const FREEZE_HOOK = path.resolve(import.meta.dirname, '..', 'process', 'fixtures', 'freeze-before-pid-record.mjs');
const CREATES = 6;
/** The platform freezes writing its 4th pid record: 3 agents recorded, 1 not, the rest maybe not launched yet. */
const FREEZE_AT = 4;

/**
 * A platform killed -9 while it provisions, exactly between an agent's spawn and its pid record (a hook loaded into
 * the platform freezes it there), then started again: every workspace ends with exactly one agent, and deleting
 * them all leaves none.
 */
describe('process backend: kill -9 mid-provision, then restart', () => {
  const dataDir = tempDir('e2e-crash');
  const signalFile = path.join(dataDir, 'frozen');
  const platforms: PlatformProcess[] = [];
  let agentUrl = '';

  afterAll(async () => {
    for (const p of platforms) await p.stop('SIGKILL');
    if (agentUrl) killPids(pidsWithEnv([`PLATFORM_URL=${agentUrl}`]));
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('leaves one agent per workspace, and none once they are deleted', async () => {
    const first = await launchPlatform({ dataDir, env: { NODE_OPTIONS: `--import ${FREEZE_HOOK}`, MOLECULE_TEST_FREEZE_SIGNAL: signalFile, MOLECULE_TEST_FREEZE_AT: String(FREEZE_AT) } });
    platforms.push(first);
    agentUrl = first.url; // agents reach the platform at its loopback URL: that finds every agent it started
    const http = api(first.url);
    // Those the kill cuts off fail (connection reset): only the acknowledged ones are promised a workspace.
    const creates = Promise.allSettled(Array.from({ length: CREATES }, (_, i) => http.call('POST', '/workspaces', { name: `crash-${i}` })));
    await waitFor('the platform to freeze between a spawn and its pid record', async () => fs.existsSync(signalFile), 30_000);
    await first.stop('SIGKILL');
    const acknowledged = (await creates).flatMap((r) => (r.status === 'fulfilled' && r.value.status === 201 ? [r.value.body.id as string] : []));

    // The crash window was hit: an agent runs that no pid record names.
    const recorded = new Set(
      fs.readdirSync(path.join(dataDir, 'process')).flatMap((f) => (f.endsWith('.json') ? [JSON.parse(fs.readFileSync(path.join(dataDir, 'process', f), 'utf8')).pid] : [])),
    );
    expect(pidsWithEnv([`PLATFORM_URL=${agentUrl}`]).filter((pid) => !recorded.has(pid)).length).toBeGreaterThanOrEqual(1);

    const second = await launchPlatform({ dataDir, port: first.port });
    platforms.push(second);
    const again = api(second.url);
    const ids = ((await again.call('GET', '/workspaces')).body as { id: string }[]).map((w) => w.id);
    expect(ids).toEqual(expect.arrayContaining(acknowledged));
    await waitFor(
      'every workspace ready',
      async () => {
        const all = (await again.call('GET', '/workspaces')).body as { status: string }[];
        return all.length === ids.length && all.every((w) => w.status === 'ready');
      },
      40_000,
    );
    const agents = agentPids(ids);
    expect({ workspaces: ids.length, agents: agents.length }).toEqual({ workspaces: ids.length, agents: ids.length });

    for (const id of ids) expect((await again.call('DELETE', `/workspaces/${id}`)).status).toBe(202);
    await waitFor('every workspace removed', async () => {
      for (const id of ids) if ((await again.call('GET', `/workspaces/${id}`)).status !== 410) return false;
      return true;
    });
    expect(pidsWithEnv([`PLATFORM_URL=${agentUrl}`])).toEqual([]);
  }, 90_000);
});
