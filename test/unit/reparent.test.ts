import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/core/errors.js';
import { closeWorlds, ready, world, type World } from '../support/world.js';

afterEach(closeWorlds);

const refusal = async (p: Promise<unknown>) => {
  const e = await p.then(
    () => undefined,
    (err) => err,
  );
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
};

/**
 *   root ─┬─ a ── a1
 *         └─ b
 *   other
 */
async function tree(w: World) {
  const root = await w.create('root');
  const a = await w.create('a', { parent_id: root });
  const b = await w.create('b', { parent_id: root });
  const a1 = await w.create('a1', { parent_id: a });
  const other = await w.create('other');
  return { root, a, b, a1, other };
}

describe('re-parenting (PATCH parent_id)', () => {
  it('moves a workspace to a sibling, to the top level and back, publishing from/to without needs_restart', async () => {
    const w = await world();
    const t = await tree(w);
    await ready(w, t.a1);
    const moved = await w.svc.patch(t.a1, { parent_id: t.b });
    expect(moved).toMatchObject({ parentId: t.b, needsRestart: false });
    expect((await w.svc.list({ parentId: t.b })).map((x) => x.id)).toEqual([t.a1]);
    const top = await w.svc.patch(t.a1, { parent_id: null });
    expect(top).toMatchObject({ parentId: null, needsRestart: false });
    const updates = (await w.bus.history({ workspaceId: t.a1 })).filter((e) => e.type === 'workspace.updated');
    expect(updates.map((e) => e.data)).toEqual([
      { fields: ['parent_id'], needs_restart: false, from: t.a, to: t.b },
      { fields: ['parent_id'], needs_restart: false, from: t.b, to: null },
    ]);
    // The same parent again changes nothing and names no move.
    await w.svc.patch(t.a1, { parent_id: null });
    expect((await w.bus.history({ workspaceId: t.a1 })).at(-1)!.data).toEqual({ fields: ['parent_id'], needs_restart: false });
  });

  it('refuses an unknown or removed parent (400 unknown_parent), itself or a descendant (409 parent_cycle, naming the chain)', async () => {
    const w = await world();
    const t = await tree(w);
    const unknown = await refusal(w.svc.patch(t.a, { parent_id: '00000000-0000-4000-8000-000000000000' }));
    expect([unknown.statusCode, unknown.code]).toEqual([400, 'unknown_parent']);

    const self = await refusal(w.svc.patch(t.a, { parent_id: t.a }));
    expect([self.statusCode, self.code]).toEqual([409, 'parent_cycle']);
    expect(self.message).toContain('a → a');

    const grandchild = await refusal(w.svc.patch(t.root, { parent_id: t.a1 }));
    expect([grandchild.statusCode, grandchild.code]).toEqual([409, 'parent_cycle']);
    expect(grandchild.message).toContain('root → a1 → a → root');
    expect((grandchild.extra.chain as { id: string }[]).map((x) => x.id)).toEqual([t.root, t.a1, t.a, t.root]);
    expect((await w.get(t.root)).parentId).toBeNull();

    await w.svc.remove(t.other);
    await w.reconciler.reconcileWorkspace(t.other);
    expect((await w.get(t.other)).status).toBe('removed');
    const removed = await refusal(w.svc.patch(t.b, { parent_id: t.other }));
    expect([removed.statusCode, removed.code]).toEqual([400, 'unknown_parent']);
    expect((await w.get(t.b)).parentId).toBe(t.root);
  });

  it('never lets two concurrent moves close a cycle between them', async () => {
    const w = await world();
    for (let round = 0; round < 10; round++) {
      const x = await w.create(`x${round}`);
      const y = await w.create(`y${round}`);
      const results = await Promise.allSettled([w.svc.patch(x, { parent_id: y }), w.svc.patch(y, { parent_id: x })]);
      const kept = results.filter((r) => r.status === 'fulfilled');
      expect(kept.length).toBeLessThanOrEqual(1);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as ApiError).code).toBe('parent_cycle');
      const [px, py] = [(await w.get(x)).parentId, (await w.get(y)).parentId];
      expect(px === y && py === x).toBe(false);
    }
  });

  it('changes the A2A access rule at once, though the caller and the route are cached', async () => {
    const w = await world();
    const t = await tree(w);
    for (const id of [t.a1, t.b, t.other]) await ready(w, id);
    const token = (id: string) => [...w.provisioner.instances.values()].find((i) => i.workspaceId === id)!.env.MOLECULE_WORKSPACE_TOKEN!;
    const mayCall = async (from: string, to: string) => w.svc.mayCall(await w.svc.tokens.workspaceOf(token(from)), to);
    // Warm both caches: the caller's token and the target's route.
    await w.svc.agentTarget(t.b);
    await w.svc.agentTarget(t.other);
    expect(await mayCall(t.a1, t.b)).toBe(false); // nephew → uncle
    expect(await mayCall(t.a1, t.other)).toBe(false);

    await w.svc.patch(t.a1, { parent_id: t.root }); // now b's sibling
    expect(await mayCall(t.a1, t.b)).toBe(true);
    expect(await mayCall(t.b, t.a1)).toBe(true);
    expect(await mayCall(t.a1, t.other)).toBe(false);

    await w.svc.patch(t.b, { parent_id: t.other }); // b leaves a1's family, into other's
    expect(await mayCall(t.a1, t.b)).toBe(false);
    expect(await mayCall(t.b, t.other)).toBe(true);
    expect(await mayCall(t.other, t.b)).toBe(true);
  });
});
