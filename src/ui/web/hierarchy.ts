import { ApiFailure, api, request } from './api.js';
import type { Status, Workspace } from './types.js';

/** The API's largest page: the tree and the map walk the whole (filtered) fleet in as few requests as it allows. */
export const TREE_PAGE = 500;

export interface Filters {
  status?: Status | '';
  q?: string;
}

/** Every workspace the filters match, a page of 500 at a time following X-Next-Cursor. */
export async function fetchAll(filters: Filters = {}): Promise<Workspace[]> {
  const out: Workspace[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ limit: String(TREE_PAGE) });
    if (filters.status) q.set('status', filters.status);
    if (filters.q) q.set('q', filters.q);
    if (cursor) q.set('cursor', cursor);
    const res = await request('GET', `/workspaces?${q}`);
    out.push(...((await res.json()) as Workspace[]));
    cursor = res.headers.get('x-next-cursor');
  } while (cursor);
  return out;
}

/**
 * The ancestors of `found` that are not in it, fetched by id (a filter matches a child without its parent), level by
 * level, a few requests at a time. A parent that is gone (410/404) ends its branch: the child then shows at the top.
 */
export async function missingAncestors(found: Workspace[]): Promise<Workspace[]> {
  const known = new Map(found.map((w) => [w.id, w]));
  const added: Workspace[] = [];
  let wanted = [...new Set(found.map((w) => w.parent_id).filter((p): p is string => !!p && !known.has(p)))];
  while (wanted.length) {
    const got: Workspace[] = [];
    for (let i = 0; i < wanted.length; i += 8) {
      const batch = await Promise.all(
        wanted.slice(i, i + 8).map((id) =>
          api<Workspace>('GET', `/workspaces/${id}`).catch((e) => {
            if (e instanceof ApiFailure && (e.status === 404 || e.status === 410)) return null;
            throw e;
          }),
        ),
      );
      for (const w of batch) if (w && !known.has(w.id)) (known.set(w.id, w), got.push(w));
    }
    added.push(...got);
    wanted = [...new Set(got.map((w) => w.parent_id).filter((p): p is string => !!p && !known.has(p)))];
  }
  return added;
}

export interface Forest {
  roots: Workspace[];
  children: Map<string, Workspace[]>;
}

/** Parents to children, in the list's order (oldest first); a workspace whose parent is not listed is a root. */
export function forestOf(list: Workspace[]): Forest {
  const ids = new Set(list.map((w) => w.id));
  const children = new Map<string, Workspace[]>();
  const roots: Workspace[] = [];
  for (const w of list) {
    if (w.parent_id && ids.has(w.parent_id) && w.parent_id !== w.id) {
      const c = children.get(w.parent_id);
      if (c) c.push(w);
      else children.set(w.parent_id, [w]);
    } else roots.push(w);
  }
  return { roots, children };
}
