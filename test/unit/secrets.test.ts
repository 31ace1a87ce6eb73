import { afterEach, describe, expect, it } from 'vitest';
import { closeWorlds, ready, world } from '../support/world.js';

afterEach(closeWorlds);

async function secretsWorld() {
  const w = await world();
  return { ...w, secrets: w.secretService };
}

describe('secret service', () => {
  it('keeps values write-only, marks the instances that would see a change, and announces it', async () => {
    const w = await secretsWorld();
    const running = await w.create('running');
    await ready(w, running);
    const waiting = await w.create('not launched yet');
    expect(await w.secrets.put('global', 'API_KEY', 'sk-123')).toEqual({ key: 'API_KEY', result: 'created' });
    expect(await w.secrets.put('global', 'API_KEY', 'sk-456')).toEqual({ key: 'API_KEY', result: 'updated' });
    const listed = await w.secrets.list('global');
    expect(listed.map((s) => s.key)).toEqual(['API_KEY']);
    expect(JSON.stringify(listed)).not.toContain('sk-');
    expect((await w.get(running)).needsRestart).toBe(true);
    expect((await w.get(waiting)).needsRestart).toBe(false); // its first instance will get the secret anyway
    const changes = (await w.bus.history({})).filter((e) => e.type === 'secret.changed').map((e) => e.data.change);
    expect(changes).toEqual(['created', 'updated']);
    expect(JSON.stringify(await w.bus.history({}))).not.toContain('sk-');
  });

  it('scopes a workspace secret to a live workspace: 404 unknown, 410 removed, 404 for a missing name', async () => {
    const w = await secretsWorld();
    const id = await w.create('scoped');
    await w.secrets.put(id, 'TOKEN', 'v');
    expect((await w.secrets.list(id)).map((s) => s.key)).toEqual(['TOKEN']);
    await expect(w.secrets.delete(id, 'NOPE')).rejects.toMatchObject({ statusCode: 404, code: 'secret_not_found' });
    await expect(w.secrets.list('00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({ statusCode: 404 });
    await w.svc.remove(id);
    await w.reconciler.reconcileWorkspace(id);
    await expect(w.secrets.put(id, 'TOKEN', 'w')).rejects.toMatchObject({ statusCode: 410 });
  });
});
