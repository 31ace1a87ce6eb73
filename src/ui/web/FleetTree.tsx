import { useCallback, useEffect, useMemo, useRef, useState, type CSSProperties } from 'react';
import { ApiFailure, api } from './api.js';
import { Ago, ErrorNote, StatusBadge } from './bits.js';
import { fetchAll, forestOf, missingAncestors, type Forest } from './hierarchy.js';
import { useLiveHeartbeats, useLiveRefresh } from './live.js';
import { href } from './router.js';
import type { Status, Workspace } from './types.js';

/** Siblings shown at first under one parent (and at the top): a flat fleet of thousands renders in steps. */
const CHUNK = 200;
/** Above this many workspaces the unfiltered tree opens with its branches collapsed (a filter opens them: the matches are what was asked for). */
const OPEN_UP_TO = 300;

interface TreeData {
  list: Workspace[];
  /** Under a filter, the ids that match it; the others are ancestors shown (dimmed) to keep the tree. Null: no filter. */
  matches: Set<string> | null;
}

const byAge = (a: Workspace, b: Workspace) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * The fleet as a tree of parents and children. It holds the whole (filtered) fleet, fetched 500 at a time, because a
 * page of the table cannot say who a row's parent is; only expanded branches are rendered.
 */
export function FleetTree({ status, search, now, created, reloadKey }: { status: Status | ''; search: string; now: number; created: string | null; reloadKey: number }) {
  const [data, setData] = useState<TreeData | null>(null);
  const [error, setError] = useState<string | null>(null);
  // The branches toggled away from how they start (open, or closed in a large unfiltered tree); when that changes, the
  // toggles are forgotten.
  const [toggled, setToggled] = useState<{ open: boolean; ids: Set<string> }>(() => ({ open: true, ids: new Set() }));
  const filtered = !!(status || search);

  const seq = useRef(0);
  // Kept in step with the data as it is set; null while the tree is being fetched (its answer may miss an event).
  const known = useRef<Set<string> | null>(null);
  const load = useCallback(async () => {
    const mine = ++seq.current;
    known.current = null;
    try {
      const found = await fetchAll({ status, q: search });
      const extra = status || search ? await missingAncestors(found) : [];
      if (mine !== seq.current) return;
      const list = [...found, ...extra].sort(byAge);
      known.current = new Set(list.map((w) => w.id));
      setData({ list, matches: status || search ? new Set(found.map((w) => w.id)) : null });
      setError(null);
    } catch (e) {
      if (mine !== seq.current) return;
      known.current = new Set();
      setError(`Could not list workspaces: ${(e as Error).message}`);
    }
  }, [status, search]);

  useEffect(() => {
    void load();
  }, [load, reloadKey]);

  useLiveHeartbeats((p) =>
    setData((d) =>
      d && d.list.some((w) => w.id === p.workspace_id)
        ? { ...d, list: d.list.map((w) => (w.id === p.workspace_id ? { ...w, last_heartbeat_at: p.data.last_heartbeat_at, heartbeat: p.data.heartbeat } : w)) }
        : d,
    ),
  );

  // As the table does: events for shown workspaces become one fetch of each; anything else (a new workspace, one that
  // moved, one that now matches the filter) or an event during a fetch reloads the tree, at most every 500 ms.
  const loadLatest = useRef(load);
  loadLatest.current = load;
  const dataRef = useRef(data);
  dataRef.current = data;
  const refreshOne = useCallback(
    async (id: string) => {
      let ws: Workspace | null;
      try {
        ws = await api<Workspace>('GET', `/workspaces/${id}`);
      } catch (e) {
        if (!(e instanceof ApiFailure && (e.status === 410 || e.status === 404))) return;
        ws = null;
      }
      const d = dataRef.current;
      const before = d?.list.find((w) => w.id === id);
      if (!d || !before) return;
      const gone = !ws || ws.status === 'removed';
      const matched = d.matches ? d.matches.has(id) : true;
      const matches = ws && !gone && (!status || ws.status === status) && (!search || ws.name.toLowerCase().includes(search.toLowerCase()));
      // Where it sits in the tree, or whether it is shown at all, changed: the tree is fetched again.
      if (gone || ws!.parent_id !== before.parent_id || (d.matches && !!matches !== matched)) {
        if (gone && !d.list.some((w) => w.parent_id === id) && (!d.matches || matched)) {
          setData((cur) => (cur ? { ...cur, list: cur.list.filter((w) => w.id !== id) } : cur));
          known.current?.delete(id);
        } else void loadLatest.current();
        return;
      }
      setData((cur) => (cur ? { ...cur, list: cur.list.map((w) => (w.id === id ? ws! : w)) } : cur));
    },
    [status, search],
  );
  useLiveRefresh((ev) => (known.current?.has(ev.workspace_id) ? 'one' : 'all'), refreshOne, load);

  const forest = useMemo(() => (data ? forestOf(data.list) : null), [data]);
  const startOpen = filtered || (data?.list.length ?? 0) <= OPEN_UP_TO;
  const toggle = useCallback(
    (id: string) =>
      setToggled((t) => {
        const ids = new Set(t.open === startOpen ? t.ids : []);
        if (ids.has(id)) ids.delete(id);
        else ids.add(id);
        return { open: startOpen, ids };
      }),
    [startOpen],
  );
  const isOpen = useCallback((id: string) => (toggled.open === startOpen && toggled.ids.has(id) ? !startOpen : startOpen), [toggled, startOpen]);

  if (!data || !forest) return error ? <ErrorNote error={error} /> : <p className="muted">Loading workspaces…</p>;
  const matching = data.matches ? data.matches.size : data.list.length;
  const context = data.list.length - matching;
  return (
    <>
      <ErrorNote error={error} />
      <p className="muted count" aria-live="polite">
        {matching === 0
          ? ''
          : `${matching} ${filtered ? 'matching ' : ''}workspace${matching === 1 ? '' : 's'}` +
            (context ? `, under ${context} ancestor${context === 1 ? '' : 's'} that do${context === 1 ? 'es' : ''} not match (dimmed)` : '')}
      </p>
      <div className="tree-wrap">
        <div className="tree-head" aria-hidden="true">
          <span>Name</span>
          <span>Status</span>
          <span>Runtime</span>
          <span>Last heartbeat</span>
          <span>Current task</span>
        </div>
        {matching === 0 ? (
          <p className="muted tree-empty">No workspace matches.</p>
        ) : (
          <Branch items={forest.roots} depth={0} ctx={{ forest, matches: data.matches, isOpen, toggle, now, created }} />
        )}
      </div>
    </>
  );
}

interface Ctx {
  forest: Forest;
  matches: Set<string> | null;
  isOpen: (id: string) => boolean;
  toggle: (id: string) => void;
  now: number;
  created: string | null;
}

function Branch({ items, depth, ctx, id }: { items: Workspace[]; depth: number; ctx: Ctx; id?: string }) {
  const [limit, setLimit] = useState(CHUNK);
  const rest = items.length - limit;
  return (
    <ul className="tree" id={id} aria-label={depth === 0 ? 'Workspaces by parent' : undefined}>
      {items.slice(0, limit).map((w) => (
        <TreeItem key={w.id} w={w} depth={depth} ctx={ctx} />
      ))}
      {rest > 0 && (
        <li className="tree-more" style={{ '--depth': depth } as CSSProperties}>
          <button type="button" className="quiet" onClick={() => setLimit((l) => l + CHUNK)}>
            Show {Math.min(CHUNK, rest)} more ({rest} not shown)
          </button>
        </li>
      )}
    </ul>
  );
}

function TreeItem({ w, depth, ctx }: { w: Workspace; depth: number; ctx: Ctx }) {
  const kids = ctx.forest.children.get(w.id) ?? [];
  const open = ctx.isOpen(w.id);
  const dim = ctx.matches !== null && !ctx.matches.has(w.id);
  const branchId = `tree-children-${w.id}`;
  return (
    <li data-workspace-id={w.id} data-match={dim ? 'false' : undefined} className={w.id === ctx.created ? 'fresh' : undefined}>
      <div className={`tree-row${dim ? ' dim' : ''}`} style={{ '--depth': depth } as CSSProperties}>
        <div className="tree-name">
          {kids.length > 0 ? (
            <button type="button" className="tree-toggle" aria-expanded={open} aria-controls={open ? branchId : undefined} aria-label={`Children of ${w.name}`} onClick={() => ctx.toggle(w.id)}>
              <span aria-hidden="true">{open ? '▾' : '▸'}</span>
            </button>
          ) : (
            <span className="tree-toggle-space" aria-hidden="true" />
          )}
          <div>
            <a href={href.workspace(w.id)} className="ws-name">
              {w.name}
            </a>
            {kids.length > 0 && (
              <span className="child-count muted small">
                {' '}
                · {kids.length} {kids.length === 1 ? 'child' : 'children'}
              </span>
            )}
            {dim && <span className="visually-hidden"> (does not match the filter; shown for its children)</span>}
            {w.role && <div className="muted role">{w.role}</div>}
          </div>
        </div>
        <div>
          <StatusBadge status={w.status} />
          {w.status_reason && <div className="muted reason">{w.status_reason}</div>}
        </div>
        <div className="small">{w.runtime}</div>
        <div className="small">
          <span className="visually-hidden">Last heartbeat </span>
          <Ago iso={w.last_heartbeat_at} now={ctx.now} />
        </div>
        <div className="small task">{w.heartbeat?.current_task ?? <span className="muted">idle</span>}</div>
      </div>
      {kids.length > 0 && open && <Branch items={kids} depth={depth + 1} ctx={ctx} id={branchId} />}
    </li>
  );
}
