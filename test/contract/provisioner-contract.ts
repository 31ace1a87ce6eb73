import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { suspends, type InstanceEvent, type InstanceSpec, type Provisioner } from '../../src/core/provisioner.js';
import { waitFor } from '../support/harness.js';
import { agentHealthy, instanceSpec } from '../support/instance.js';

/** What a backend's test file gives the shared suite. */
export interface ContractSubject {
  provisioner: Provisioner;
  /** Kills an instance behind the backend's back (as a crash or an operator would). */
  crash(instanceId: string): Promise<void>;
  /** The runtime image to start (container backends need one that exists locally). */
  image?: string;
  close(): Promise<void>;
}

const AGENT_TOKEN = 'contract-agent-token';

let image = 'ghcr.io/molecule-ai/workspace-hermes:latest';

function spec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  const base = instanceSpec({ name: 'contract', image, agent: { agentToken: AGENT_TOKEN, region: 'test', port: '8000' } });
  return { ...base, ...overrides };
}

/**
 * The behaviour every backend owes the core (design.md, "Backends"). Each backend's test file calls this with
 * a subject; the same assertions run against all of them.
 */
export function provisionerContract(name: string, makeSubject: () => Promise<ContractSubject>) {
  describe(`Provisioner contract: ${name}`, () => {
    let s: ContractSubject;
    const events: InstanceEvent[] = [];
    const started: string[] = [];

    beforeAll(async () => {
      s = await makeSubject();
      if (s.image) image = s.image;
      s.provisioner.watch((ev) => events.push(ev));
    });
    afterAll(async () => {
      for (const id of started) await s.provisioner.destroy(id).catch(() => undefined);
      await s.close();
    });

    it('describes itself for /healthz', () => {
      const d = s.provisioner.describe();
      expect(d.name).toBe(s.provisioner.name);
      expect(typeof s.provisioner.defaultRegion).toBe('string');
    });

    it('starts an agent that answers, lists it, and serves its logs', async () => {
      const sp = spec();
      const h = await s.provisioner.start(sp);
      started.push(h.instanceId);
      await waitFor('agent /healthz', () => agentHealthy(h.url, h.headers), 60_000);
      expect((await s.provisioner.inspect(h.instanceId)).state).toBe('running');
      const owned = await s.provisioner.list();
      expect(owned).toContainEqual(expect.objectContaining({ instanceId: h.instanceId, workspaceId: sp.workspaceId }));
      const lines: string[] = [];
      for await (const l of s.provisioner.logs(h.instanceId, { tail: 50 })) lines.push(l);
      expect(lines.join('\n')).toMatch(/\S/);
    }, 90_000);

    it('stops and resumes, restarts, and destroys idempotently', async () => {
      const sp = spec();
      const h = await s.provisioner.start(sp);
      started.push(h.instanceId);
      await waitFor('up', () => agentHealthy(h.url, h.headers), 60_000);

      await s.provisioner.stop(h.instanceId);
      expect(['stopped', 'failed']).toContain((await s.provisioner.inspect(h.instanceId)).state);
      expect(await agentHealthy(h.url, h.headers)).toBe(false);
      await s.provisioner.stop(h.instanceId); // again: not an error

      const resumed = await s.provisioner.resume(h.instanceId, sp);
      await waitFor('resumed', () => agentHealthy(resumed.url, resumed.headers), 60_000);

      const restarted = await s.provisioner.restart(resumed.instanceId, sp);
      await waitFor('restarted', () => agentHealthy(restarted.url, restarted.headers), 60_000);
      expect((await s.provisioner.inspect(restarted.instanceId)).state).toBe('running');

      await s.provisioner.destroy(restarted.instanceId);
      expect((await s.provisioner.inspect(restarted.instanceId)).state).toBe('gone');
      expect((await s.provisioner.list()).map((o) => o.instanceId)).not.toContain(restarted.instanceId);
      await s.provisioner.destroy(restarted.instanceId);
      expect(await agentHealthy(restarted.url, restarted.headers)).toBe(false);
    }, 120_000);

    it('treats unknown instances as absent, not as errors', async () => {
      const ghost = `ws-${crypto.randomBytes(6).toString('hex')}`;
      await s.provisioner.destroy(ghost);
      await s.provisioner.stop(ghost);
      expect((await s.provisioner.inspect(ghost)).state).toBe('gone');
    });

    it('reports an instance that dies on its own, without being asked', async () => {
      const sp = spec();
      const h = await s.provisioner.start(sp);
      started.push(h.instanceId);
      await waitFor('up', () => agentHealthy(h.url, h.headers), 60_000);
      const before = events.length;
      await s.crash(h.instanceId);
      const ev = await waitFor('an instance event', async () => events.slice(before).find((e) => e.instanceId === h.instanceId && e.state !== 'running'), 30_000);
      expect(ev.workspaceId).toBe(sp.workspaceId);
      expect(['failed', 'stopped', 'gone']).toContain(ev.state);
      expect(['failed', 'stopped', 'gone']).toContain((await s.provisioner.inspect(h.instanceId)).state);
    }, 90_000);

    it('runs a restarted or resumed instance with the spec it is given (the platform rotates tokens on every restart)', async () => {
      const sp = spec();
      const h = await s.provisioner.start(sp);
      started.push(h.instanceId);
      await waitFor('up', () => agentHealthy(h.url, h.headers), 60_000);
      const accepts = async (handle: { url: string | null; headers?: Record<string, string> }, token: string) => {
        const res = await fetch(new URL('/', handle.url!), {
          method: 'POST',
          headers: { ...handle.headers, 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { id: 'none' } }),
          signal: AbortSignal.timeout(5000),
        });
        return res.status !== 401;
      };
      expect(await accepts(h, AGENT_TOKEN)).toBe(true);

      const rotated = { ...sp, env: { ...sp.env, MOLECULE_AGENT_TOKEN: 'contract-agent-token-2' } };
      const restarted = await s.provisioner.restart(h.instanceId, rotated);
      if (restarted.instanceId !== h.instanceId) started.push(restarted.instanceId);
      await waitFor('restarted with the new token', () => accepts(restarted, 'contract-agent-token-2'), 60_000);
      expect(await accepts(restarted, AGENT_TOKEN)).toBe(false);

      await s.provisioner.stop(restarted.instanceId);
      const again = { ...sp, env: { ...sp.env, MOLECULE_AGENT_TOKEN: 'contract-agent-token-3' } };
      const resumed = await s.provisioner.resume(restarted.instanceId, again);
      if (resumed.instanceId !== restarted.instanceId) started.push(resumed.instanceId);
      await waitFor('resumed with the newest token', () => accepts(resumed, 'contract-agent-token-3'), 60_000);
      expect(await accepts(resumed, 'contract-agent-token-2')).toBe(false);
    }, 120_000);

    it('sleeps (suspended where the backend can, else stopped), quietly, and wakes by resume with a new spec', async () => {
      const p = s.provisioner;
      const sleep = async (id: string) => (suspends(p) ? p.suspend(id) : (await p.stop(id), 'stopped' as const));
      const sp = spec();
      const h = await p.start(sp);
      started.push(h.instanceId);
      await waitFor('up', () => agentHealthy(h.url, h.headers), 60_000);
      const before = events.length;
      // Fly snapshots machines of at most 2 GB (tier 2: 512 MB); the others stop.
      expect(await sleep(h.instanceId)).toBe(suspends(p) ? 'suspended' : 'stopped');
      expect((await p.inspect(h.instanceId)).state).toBe('stopped');
      expect(await agentHealthy(h.url, h.headers)).toBe(false);
      expect(events.slice(before).filter((e) => e.instanceId === h.instanceId && e.state !== 'running')).toEqual([]);
      // Waking: every launch mints new tokens, so the instance must run with the spec it is given.
      const woken = await p.resume(h.instanceId, { ...sp, env: { ...sp.env, MOLECULE_AGENT_TOKEN: 'contract-agent-token-wake' } });
      if (woken.instanceId !== h.instanceId) started.push(woken.instanceId);
      await waitFor('woken with the new token', async () => {
        const res = await fetch(new URL('/', woken.url!), {
          method: 'POST',
          headers: { ...woken.headers, 'content-type': 'application/json', authorization: 'Bearer contract-agent-token-wake' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { id: 'none' } }),
          signal: AbortSignal.timeout(5000),
        });
        return res.status !== 401;
      }, 60_000);
      if (suspends(p)) {
        // Over Fly's snapshot limit: stopped instead.
        const big = await p.start(spec({ tier: 4 }));
        started.push(big.instanceId);
        await waitFor('up', () => agentHealthy(big.url, big.headers), 60_000);
        expect(await p.suspend(big.instanceId)).toBe('stopped');
      }
    }, 180_000);

    it('does not report stops it was asked for', async () => {
      const sp = spec();
      const h = await s.provisioner.start(sp);
      started.push(h.instanceId);
      await waitFor('up', () => agentHealthy(h.url, h.headers), 60_000);
      const before = events.length;
      await s.provisioner.stop(h.instanceId);
      await s.provisioner.destroy(h.instanceId);
      expect(events.slice(before).filter((e) => e.instanceId === h.instanceId && e.state !== 'running')).toEqual([]);
    }, 90_000);
  });
}
