import { describe, expect, it } from 'vitest';
import { validateAgainstSpec, validateRecordedRequest, type FlySim } from '../../tools/fly-sim/index.js';
import { processEnv } from '../support/harness.js';
import { createMachine, SERVICES, until, waitFor, withTestSim, type Api } from './helpers.js';

let sim: FlySim;
let api: Api;
let appSeq = 0;
const newApp = () => `secrets-${process.pid}-${++appSeq}`;

withTestSim((s, a) => ([sim, api] = [s, a]));

const envOf = (id: string, name: string) => processEnv(sim.machine(id)!.pid!, name);

describe('app secrets (spec tag Secrets)', () => {
  it('validates bodies against the spec, as for machines', async () => {
    expect(validateAgainstSpec('Secrets_update', { values: { A: 'x' } }).ok).toBe(true);
    const bad = validateAgainstSpec('Secrets_update', { values: { A: 1 } });
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/cannot unmarshal number/);
    expect(validateAgainstSpec('Secret_create', { value: 'x' }).ok).toBe(true);
    expect(validateAgainstSpec('Secret_create', { value: ['x'] }).ok).toBe(false);
    expect(validateRecordedRequest({ method: 'POST', path: '/v1/apps/a/secrets', body: { values: { A: 'x' } } }).ok).toBe(true);
    expect(validateRecordedRequest({ method: 'POST', path: '/v1/apps/a/secrets/A', body: { value: 'x' } }).ok).toBe(true);
    expect(validateRecordedRequest({ method: 'DELETE', path: '/v1/apps/a/secrets/A', body: undefined }).ok).toBe(true);
    // A machine's secret references are part of the spec's config (processes[].secrets, fly.MachineSecret).
    const cfg = { image: 'x', processes: [{ ignore_app_secrets: true, secrets: [{ env_var: 'TOKEN', name: 'APP_TOKEN' }] }] };
    expect(validateAgainstSpec('create', { config: cfg, min_secrets_version: 3 }).ok).toBe(true);
    expect(validateAgainstSpec('update', { config: cfg, min_secrets_version: '3' }).ok).toBe(false);
    expect(validateAgainstSpec('create', { config: { ...cfg, processes: [{ secrets: [{ env_var: 1 }] }] } }).ok).toBe(false);

    const app = newApp();
    const r = await api.post(`/v1/apps/${app}/secrets`, { values: { A: 1 } });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/cannot unmarshal number into Go struct field .*values/);
    const one = await api.post(`/v1/apps/${app}/secrets/A`, { value: 7 });
    expect(one.status).toBe(400);
    expect((await api.post(`/v1/apps/${app}/secrets`, { values: { 'not-a-name': 'x' } })).status).toBe(400);
    expect((await api.post(`/v1/apps/${app}/secrets`, { values: { FLY_THING: 'x' } })).body.error).toMatch(/FLY_ prefix is reserved/);
    expect((await api.get(`/v1/apps/${app}/secrets`)).body).toEqual({ secrets: [] });
  });

  it('answers names and digests, never values (unless show_secrets); every write is a new version', async () => {
    const app = newApp();
    const w = await api.post(`/v1/apps/${app}/secrets`, { values: { API_KEY: 'sk-live-123', OTHER: 'o' } });
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ version: 1, secrets: [expect.objectContaining({ name: 'API_KEY', digest: expect.any(String) }), expect.objectContaining({ name: 'OTHER' })] });
    expect(w.text).not.toContain('sk-live-123');
    const list = await api.get(`/v1/apps/${app}/secrets`);
    expect(list.body.secrets.map((s: any) => s.name)).toEqual(['API_KEY', 'OTHER']);
    expect(list.text).not.toContain('sk-live-123');
    expect(list.body.secrets[0]).not.toHaveProperty('value');
    const one = await api.get(`/v1/apps/${app}/secrets/API_KEY`);
    expect(one.body).toMatchObject({ name: 'API_KEY', digest: list.body.secrets[0].digest });
    expect(one.text).not.toContain('sk-live-123');
    expect((await api.get(`/v1/apps/${app}/secrets/API_KEY?show_secrets=true`)).body.value).toBe('sk-live-123');

    const set = await api.post(`/v1/apps/${app}/secrets/API_KEY`, { value: 'sk-live-456' });
    expect(set.status).toBe(201);
    expect(set.body).toMatchObject({ name: 'API_KEY', version: 2 });
    expect(set.text).not.toContain('sk-live-456');
    expect(set.body.digest).not.toBe(one.body.digest);
    const del = await api.del(`/v1/apps/${app}/secrets/OTHER`);
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ version: 3 });
    expect((await api.del(`/v1/apps/${app}/secrets/OTHER`)).status).toBe(404);
    expect((await api.get(`/v1/apps/${app}/secrets/OTHER`)).status).toBe(404);
  });

  it('injects referenced secrets as env at boot; the machine config holds only their names', async () => {
    const app = newApp();
    const v = (await api.post(`/v1/apps/${app}/secrets`, { values: { WS1_TOKEN: 'tok-1', WS2_TOKEN: 'tok-2' } })).body.version;
    const m = await createMachine(api, app, {
      min_secrets_version: v,
      config: { services: SERVICES, env: { PLAIN: 'p' }, processes: [{ ignore_app_secrets: true, secrets: [{ env_var: 'TOKEN', name: 'WS1_TOKEN' }] }] },
    });
    expect((await waitFor(api, app, m.id, 'started')).status).toBe(200);
    expect(envOf(m.id, 'TOKEN')).toBe('tok-1');
    expect(envOf(m.id, 'PLAIN')).toBe('p');
    // ignore_app_secrets: the app's other secrets stay out.
    expect(envOf(m.id, 'WS2_TOKEN')).toBeUndefined();
    expect(envOf(m.id, 'WS1_TOKEN')).toBeUndefined();
    const shown = await api.get(`/v1/apps/${app}/machines/${m.id}`);
    expect(shown.text).not.toContain('tok-1');
    expect(shown.body.config.processes[0].secrets).toEqual([{ env_var: 'TOKEN', name: 'WS1_TOKEN' }]);

    // A changed value reaches the machine when it boots again (here: a restart).
    await api.post(`/v1/apps/${app}/secrets`, { values: { WS1_TOKEN: 'tok-1b' } });
    expect(envOf(m.id, 'TOKEN')).toBe('tok-1');
    expect((await api.post(`/v1/apps/${app}/machines/${m.id}/restart`)).status).toBe(200);
    await until(() => sim.machine(m.id)?.state === 'started' && sim.machine(m.id)?.pid && envOf(m.id, 'TOKEN') === 'tok-1b', 'the new value after a restart');

    // Without ignore_app_secrets every app secret is injected by name (Fly's default).
    const all = await createMachine(api, app, { config: { services: SERVICES } });
    expect((await waitFor(api, app, all.id, 'started')).status).toBe(200);
    expect(envOf(all.id, 'WS2_TOKEN')).toBe('tok-2');
  });

  it('a machine referencing a missing secret fails to boot with an event naming it; min_secrets_version from the future is refused', async () => {
    const app = newApp();
    const m = await createMachine(api, app, { config: { services: SERVICES, processes: [{ ignore_app_secrets: true, secrets: [{ env_var: 'TOKEN', name: 'NOPE' }] }] } });
    await until(() => sim.machine(m.id)?.state === 'failed', 'failed');
    const events = (await api.get(`/v1/apps/${app}/machines/${m.id}/events`)).body as any[];
    expect(events[0]).toMatchObject({ type: 'launch', status: 'failed' });
    expect(events[0].request.error).toMatch(/secret NOPE \(env TOKEN.*does not exist in app/);

    const r = await api.post(`/v1/apps/${app}/machines`, { min_secrets_version: 99, config: { image: m.config.image } });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/min_secrets_version 99 is newer than the app's secrets \(version 0\)/);
  });
});
