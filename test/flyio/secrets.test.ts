import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { appSecretName, ownedSecretWorkspaceTag, platformSecretPrefix, splitSecretEnv } from '../../src/backends/flyio/secrets.js';
import type { FlySim } from '../../tools/fly-sim/index.js';
import { processEnv, waitFor } from '../support/harness.js';
import { agentEnv } from '../support/instance.js';
import { flyctl, simWithProvisioners, spec } from './support.js';

/**
 * Workspace secrets and tokens reach a Fly machine as app secrets referenced from its config, never as plaintext
 * in `config.env` (which anyone who can read the machine through the Machines API can see).
 */
describe('Fly backend: secrets as Fly app secrets', () => {
  let sim: FlySim;
  const make = simWithProvisioners((s) => (sim = s));

  const secretSpec = (values: { token: string; agent: string; api: string; lower?: string }, workspaceId: string = crypto.randomUUID()) => {
    const base = spec({ workspaceId });
    const secrets: Record<string, string> = { ...agentEnv({ workspaceToken: values.token, agentToken: values.agent }), OPENAI_API_KEY: values.api };
    if (values.lower !== undefined) secrets.lower_key = values.lower;
    return { ...base, env: { ...base.env, ...secrets, USER_SETTING: 'plain' }, secretKeys: Object.keys(secrets) };
  };
  const secretNames = async (app: string) => ((await flyctl(sim, 'GET', `/v1/apps/${app}/secrets`)).body.secrets as { name: string }[]).map((x) => x.name);
  const envOf = (id: string, k: string) => processEnv(sim.machine(id)!.pid!, k);
  const fresh = () => ({ token: `mol_ws_${crypto.randomBytes(12).toString('hex')}`, agent: `mol_ag_${crypto.randomBytes(12).toString('hex')}`, api: `sk-${crypto.randomBytes(8).toString('hex')}` });

  it('names secrets per platform and workspace, as Fly secret names; hashes keys that are not upper-case names', () => {
    const ws = '0123abcd-ef45-4678-9abc-def012345678';
    const a = appSecretName('mp-one', ws, 'OPENAI_API_KEY');
    expect(a).toMatch(/^MOLECULE_[0-9A-F]{8}_0123ABCDEF45_K_OPENAI_API_KEY$/);
    expect(a.startsWith(platformSecretPrefix('mp-one'))).toBe(true);
    const lower = appSecretName('mp-one', ws, 'openai_api_key');
    expect(lower).toMatch(/^MOLECULE_[0-9A-F]{8}_0123ABCDEF45_H_[0-9A-F]{24}$/);
    expect(lower).not.toBe(appSecretName('mp-one', ws, 'OpenAI_API_KEY'));
    expect(appSecretName('mp-two', ws, 'OPENAI_API_KEY')).not.toBe(a);
    expect(ownedSecretWorkspaceTag('mp-one', a)).toBe('0123ABCDEF45');
    expect(ownedSecretWorkspaceTag('mp-two', a)).toBeNull();
    expect(ownedSecretWorkspaceTag('mp-one', 'DATABASE_URL')).toBeNull();
    const split = splitSecretEnv('mp-one', ws, { A: 'plain', SECRET: 's' }, ['SECRET', 'ABSENT']);
    expect(split.env).toEqual({ A: 'plain' });
    expect(split.refs).toEqual([{ env_var: 'SECRET', name: appSecretName('mp-one', ws, 'SECRET') }]);
  });

  it('boots with the values in the agent’s env while the machine config (as the API shows it) holds none of them', async () => {
    const s = make();
    const v = { ...fresh(), lower: 'lower-secret-value' };
    const sp = secretSpec(v);
    const h = await s.p.start(sp);
    for (const [k, val] of [['MOLECULE_WORKSPACE_TOKEN', v.token], ['MOLECULE_AGENT_TOKEN', v.agent], ['OPENAI_API_KEY', v.api], ['lower_key', v.lower], ['USER_SETTING', 'plain']]) {
      expect(envOf(h.instanceId, k), k).toBe(val);
    }
    // What anyone with read access to the app sees: GET machine, the machine list, the secrets list.
    const shown = await flyctl(sim, 'GET', `/v1/apps/${s.app}/machines/${h.instanceId}`);
    const listed = await flyctl(sim, 'GET', `/v1/apps/${s.app}/machines`);
    const secrets = await flyctl(sim, 'GET', `/v1/apps/${s.app}/secrets`);
    for (const text of [JSON.stringify(shown.body), JSON.stringify(listed.body), JSON.stringify(secrets.body)]) {
      for (const val of [v.token, v.agent, v.api, v.lower]) expect(text).not.toContain(val);
    }
    expect(Object.keys(shown.body.config.env).sort()).toEqual(['MOLECULE_REGION', 'PORT', 'USER_SETTING', 'WORKSPACE_ID', 'WORKSPACE_NAME']);
    const refs = shown.body.config.processes[0];
    expect(refs.ignore_app_secrets).toBe(true);
    expect(refs.secrets.map((r: any) => r.env_var).sort()).toEqual(['MOLECULE_AGENT_TOKEN', 'MOLECULE_WORKSPACE_TOKEN', 'OPENAI_API_KEY', 'lower_key']);
    expect((await secretNames(s.app)).sort()).toEqual(refs.secrets.map((r: any) => r.name).sort());
    // The create asked for the secrets version the write answered.
    const write = s.recorded.find((r) => r.method === 'POST' && r.path.endsWith('/secrets'))!;
    const create = s.recorded.find((r) => r.method === 'POST' && r.path.endsWith('/machines'))!;
    expect(s.recorded.indexOf(write)).toBeLessThan(s.recorded.indexOf(create));
    expect((create.body as any).min_secrets_version).toBeGreaterThan(0);
    // Another workspace's machine sees its own secrets only, not this one's (ignore_app_secrets).
    const other = await s.p.start(secretSpec(fresh()));
    expect(envOf(other.instanceId, 'OPENAI_API_KEY')).not.toBe(v.api);
    expect(processEnv(sim.machine(other.instanceId)!.pid!, 'lower_key')).toBeUndefined();
    for (const name of refs.secrets.map((r: any) => r.name)) expect(envOf(other.instanceId, name)).toBeUndefined();
    await s.p.destroy(other.instanceId);
    await s.p.destroy(h.instanceId);
  }, 60_000);

  it('restart and resume rotate the token secrets into the machine (a new version boots); a dropped secret is deleted', async () => {
    const s = make();
    const v1 = fresh();
    const sp1 = secretSpec(v1);
    const h = await s.p.start(sp1);
    const v2 = fresh();
    const sp2 = secretSpec(v2, sp1.workspaceId);
    const from = s.recorded.length;
    const r = await s.p.restart(h.instanceId, sp2);
    expect(r.instanceId).toBe(h.instanceId);
    expect(envOf(h.instanceId, 'MOLECULE_WORKSPACE_TOKEN')).toBe(v2.token);
    expect(envOf(h.instanceId, 'MOLECULE_AGENT_TOKEN')).toBe(v2.agent);
    const update = s.recorded.slice(from).find((x) => x.method === 'POST' && x.path.endsWith(`/machines/${h.instanceId}`))!;
    expect((update.body as any).min_secrets_version).toBeGreaterThan(0);
    expect(JSON.stringify(update.body)).not.toContain(v2.token);

    // Paused, then resumed with new tokens and without OPENAI_API_KEY: its app secret goes.
    await s.p.stop(h.instanceId);
    const v3 = fresh();
    const sp3 = secretSpec(v3, sp1.workspaceId);
    delete (sp3.env as Record<string, string>).OPENAI_API_KEY;
    await s.p.resume(h.instanceId, sp3);
    expect(envOf(h.instanceId, 'MOLECULE_AGENT_TOKEN')).toBe(v3.agent);
    expect(envOf(h.instanceId, 'OPENAI_API_KEY')).toBeUndefined();
    expect((await secretNames(s.app)).filter((n) => n.endsWith('_K_OPENAI_API_KEY'))).toEqual([]);
    await s.p.destroy(h.instanceId);
  }, 60_000);

  it('lists the app’s secrets once, not per launch: what is ours is followed through our own writes and deletes', async () => {
    const s = make();
    const lists = () => s.recorded.filter((x) => x.method === 'GET' && x.path.endsWith('/secrets')).length;
    const specs = [0, 1, 2].map(() => secretSpec(fresh()));
    const started = [];
    for (const sp of specs) started.push(await s.p.start(sp));
    expect(lists()).toBe(1);
    // A restart without one of its secrets still deletes that one, from what it knows.
    const sp = secretSpec(fresh(), specs[0]!.workspaceId);
    delete (sp.env as Record<string, string>).OPENAI_API_KEY;
    await s.p.restart(started[0]!.instanceId, sp);
    expect(lists()).toBe(1);
    expect(envOf(started[0]!.instanceId, 'OPENAI_API_KEY')).toBeUndefined();
    expect((await secretNames(s.app)).filter((n) => n.endsWith('_K_OPENAI_API_KEY'))).toHaveLength(2);
    for (const h of started) await s.p.destroy(h.instanceId);
  }, 60_000);

  it('forget removes the workspace’s app secrets and nothing else', async () => {
    const s = make();
    const a = secretSpec(fresh());
    const b = secretSpec(fresh());
    const ha = await s.p.start(a);
    const hb = await s.p.start(b);
    expect((await flyctl(sim, 'POST', `/v1/apps/${s.app}/secrets`, { values: { DATABASE_URL: 'postgres://x' } })).status).toBe(200);
    const before = await secretNames(s.app);
    await s.p.destroy(ha.instanceId);
    await s.p.forget(a.workspaceId);
    const after = await secretNames(s.app);
    const tagA = a.workspaceId.replace(/-/g, '').slice(0, 12).toUpperCase();
    expect(after.filter((n) => n.includes(`_${tagA}_`))).toEqual([]);
    expect(after.sort()).toEqual(before.filter((n) => !n.includes(`_${tagA}_`)).sort());
    expect(after).toContain('DATABASE_URL');
    await s.p.forget(a.workspaceId); // idempotent
    await s.p.destroy(hb.instanceId);
  }, 60_000);

  it('the sweep deletes this platform’s secrets of workspaces that are not live; other secrets are left alone', async () => {
    const s = make();
    const neighbour = make({ app: s.app }); // another platform sharing the app
    const live = secretSpec(fresh());
    const gone = secretSpec(fresh());
    const theirs = secretSpec(fresh());
    const hl = await s.p.start(live);
    const hg = await s.p.start(gone);
    const ht = await neighbour.p.start(theirs);
    await s.p.destroy(hg.instanceId); // destroyed without forget: a platform that died before cleaning up
    await flyctl(sim, 'POST', `/v1/apps/${s.app}/secrets`, { values: { DATABASE_URL: 'x', MOLECULE_NOT_OURS: 'y' } });
    const tag = (id: string) => `_${id.replace(/-/g, '').slice(0, 12).toUpperCase()}_`;
    const before = await secretNames(s.app);
    expect(before.some((n) => n.includes(tag(gone.workspaceId)))).toBe(true);
    let asked = 0;
    await s.p.forgetUnclaimed(async () => {
      asked++;
      return [live.workspaceId];
    });
    expect(asked).toBe(1);
    const after = await secretNames(s.app);
    expect(after.some((n) => n.includes(tag(gone.workspaceId)))).toBe(false);
    expect(after.filter((n) => n.includes(tag(live.workspaceId)))).toHaveLength(3);
    expect(after.filter((n) => n.includes(tag(theirs.workspaceId)))).toHaveLength(3);
    expect(after).toEqual(expect.arrayContaining(['DATABASE_URL', 'MOLECULE_NOT_OURS']));
    // The neighbour's machine still boots with its secrets.
    await neighbour.p.restart(ht.instanceId, secretSpec(fresh(), theirs.workspaceId));
    expect(sim.machine(ht.instanceId)!.state).toBe('started');
    await s.p.destroy(hl.instanceId);
    await neighbour.p.destroy(ht.instanceId);
  }, 60_000);

  it('a secret deleted behind the platform’s back: the machine fails to boot and says which secret', async () => {
    const s = make();
    const sp = secretSpec(fresh());
    const h = await s.p.start(sp);
    await s.p.stop(h.instanceId);
    const name = appSecretName(s.p.platformId, sp.workspaceId, 'OPENAI_API_KEY');
    expect((await flyctl(sim, 'DELETE', `/v1/apps/${s.app}/secrets/${name}`)).status).toBe(200);
    // Plain start (no new spec values): the machine config still references the deleted secret.
    // (Fly answers 412 "machine still active" for a moment after a stop, as flyctl users see.)
    await waitFor('start accepted', async () => (await flyctl(sim, 'POST', `/v1/apps/${s.app}/machines/${h.instanceId}/start`)).status === 200, 10_000, 200);
    await sim.waitForState(h.instanceId, 'failed');
    const st = await s.p.inspect(h.instanceId);
    expect(st.state).toBe('failed');
    expect(st.reason).toContain(`secret ${name}`);
    // A restart writes the secrets again and the machine boots.
    await s.p.restart(h.instanceId, secretSpec(fresh(), sp.workspaceId));
    expect(sim.machine(h.instanceId)!.state).toBe('started');
    await s.p.destroy(h.instanceId);
  }, 60_000);
});
