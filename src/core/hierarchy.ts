import { ApiError } from './errors.js';
import type { Workspace } from './types.js';

/** How the hierarchy reads a workspace (the store's `get`). */
type Read = (id: string) => Promise<Workspace | undefined>;

/** The A2A access rule for a workspace-token caller: itself, its parent, its children and its siblings. */
export function inFamily(caller: Pick<Workspace, 'id' | 'parentId'>, target: Pick<Workspace, 'id' | 'parentId'>): boolean {
  return target.id === caller.id || target.id === caller.parentId || target.parentId === caller.id || target.parentId === caller.parentId;
}

/** A parent must be a live workspace: on create, and on a move. */
export async function assertLiveParent(get: Read, parentId: string): Promise<void> {
  const parent = await get(parentId);
  if (!parent || parent.status === 'removed') throw new ApiError(400, 'unknown_parent', `parent_id ${parentId} is not a live workspace`);
}

/** A new parent for `id` must be live, and neither `id` itself nor one of its descendants. */
export async function assertNewParent(get: Read, id: string, parentId: string): Promise<void> {
  await assertLiveParent(get, parentId);
  const cycle = await cycleThrough(get, id, parentId);
  if (cycle) throw cycleError(cycle);
}

/**
 * The cycle that `id` under `parentId` makes, as the workspaces from `id` up through its would-be ancestors back
 * to `id`; null when there is none. Walks up from the parent, one read per ancestor.
 */
export async function cycleThrough(get: Read, id: string, parentId: string): Promise<Workspace[] | null> {
  const self = await get(id);
  if (!self) return null;
  const chain: Workspace[] = [self];
  const seen = new Set<string>([id]);
  let next: string | null = parentId;
  while (next) {
    const ws: Workspace | undefined = next === id ? self : await get(next);
    if (!ws) return null;
    chain.push(ws);
    if (ws.id === id) return chain;
    // A loop above that does not pass through `id` is not this move's doing (and should not exist): stop there.
    if (seen.has(ws.id)) return null;
    seen.add(ws.id);
    next = ws.parentId;
  }
  return null;
}

/** 409 parent_cycle, naming the chain. */
export function cycleError(chain: Workspace[]): ApiError {
  const names = chain.map((w) => w.name).join(' → ');
  return new ApiError(409, 'parent_cycle', `moving ${chain[0]!.name} under ${chain[1]!.name} would make a cycle: ${names} (each under the next)`, {
    chain: chain.map((w) => ({ id: w.id, name: w.name })),
  });
}
