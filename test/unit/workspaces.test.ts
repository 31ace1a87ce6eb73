import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { LocalFeed } from '../../src/core/events.js';
import type { PlatformEvent } from '../../src/core/types.js';
import { closeWorlds, ready, world } from '../support/world.js';

afterEach(closeWorlds);

/** The workspace service (what the API asks for), with no platform: in-memory store, fake backend. */
describe('workspace service', () => {
  it('marks needs_restart only when the env really changed, not when only its key order did', async () => {
    const w = await world();
    const id = await w.create('env', { env: { A: '1', B: '2' } });
    await ready(w, id);
    const same = await w.svc.patch(id, { env: { B: '2', A: '1' } });
    expect(same.needsRestart).toBe(false);
    const changed = await w.svc.patch(id, { env: { A: '1', B: '3' } });
    expect(changed.needsRestart).toBe(true);
  });
});

describe('writes that belong together', () => {
  it('rotates tokens all or nothing: a failure half way leaves the old tokens working', async () => {
    const w = await world();
    const id = await w.create('rotate');
    const ws = await ready(w, id);
    const oldToken = w.provisioner.instances.get(ws.instanceId!)!.env.MOLECULE_WORKSPACE_TOKEN;
    // A real failure of the database after the revoke and the first insert: the agent token's insert aborts.
    await sql`create trigger fail_agent_token before insert on tokens when new.kind = 'agent' begin select raise(abort, 'disk full'); end`.execute(w.store.db);
    await expect(w.svc.rotateTokens(id)).rejects.toThrow(/disk full/);
    await sql`drop trigger fail_agent_token`.execute(w.store.db);
    const hb = { active_tasks: 0, current_task: null, error_rate: 0, uptime_s: 1 };
    expect(await w.svc.registry.heartbeat(oldToken, hb)).toMatchObject({ workspace_id: id, status: 'ready' });
  });

  it('creates a workspace with its secrets all or nothing: a failing secret leaves no half-made workspace', async () => {
    const w = await world();
    await sql`create trigger fail_secret before insert on secrets begin select raise(abort, 'disk full'); end`.execute(w.store.db);
    await expect(w.svc.create({ name: 'half', runtime: 'hermes', tier: 2, secrets: { API_KEY: 'v' } })).rejects.toThrow(/disk full/);
    expect(await w.svc.list({})).toEqual([]);
    expect(await w.bus.history({})).toEqual([]);
  });
});

describe('the timeline', () => {
  it('keeps a launch’s steps in the order they happened', async () => {
    // A store that is slow to write the first progress step: publishing steps without waiting would let the
    // later ones overtake it.
    class SlowFirstStep extends LocalFeed {
      override async append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent> {
        if (e.data.step === 'fake image ready') await new Promise((r) => setTimeout(r, 30));
        return super.append(e);
      }
    }
    const w = await world({}, undefined, { feed: (repo) => new SlowFirstStep(repo) });
    const id = await w.create('order');
    await w.reconciler.reconcileWorkspace(id);
    const steps = (await w.bus.history({ workspaceId: id })).filter((e) => e.type === 'workspace.step').map((e) => e.data.step);
    expect(steps).toEqual(['instance requested', 'fake image ready', 'fake instance created', 'fake instance booted', 'instance started']);
  });
});
