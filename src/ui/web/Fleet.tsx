import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiFailure, api, request } from './api.js';
import { Ago, ErrorNote, StatusBadge, TierBadge } from './bits.js';
import { CreateWorkspace } from './CreateWorkspace.js';
import { FleetTree } from './FleetTree.js';
import { useNow } from './format.js';
import { useLiveHeartbeats, useLiveRefresh } from './live.js';
import { href, useTitle } from './router.js';
import type { Health, Meta, Status, Workspace } from './types.js';

/** Rows per page of the fleet: the server pages (GET /workspaces?limit=&cursor=), filters and searches. */
export const PAGE_SIZE = 100;

interface PageState {
  rows: Workspace[];
  /** The cursor this page was fetched from (undefined: the first page). */
  from: string | undefined;
  /** The next page's cursor (X-Next-Cursor), null on the last page. */
  next: string | null;
}

/** Table or tree; remembered in this browser (localStorage), so the fleet opens the way it was last looked at. */
type View = 'table' | 'tree';
const VIEW_KEY = 'molecule.fleetView';
function storedView(): View {
  try {
    return localStorage.getItem(VIEW_KEY) === 'tree' ? 'tree' : 'table';
  } catch {
    return 'table';
  }
}

export function Fleet({ meta }: { meta: Meta }) {
  const [view, setViewState] = useState<View>(storedView);
  const setView = (v: View) => {
    setViewState(v);
    try {
      localStorage.setItem(VIEW_KEY, v);
    } catch {
      /* storage refused (private mode): the choice lasts for this page only */
    }
  };
  // Bumped to make the tree fetch again (after a create in this tab).
  const [treeKey, setTreeKey] = useState(0);
  const [page, setPage] = useState<PageState | null>(null);
  // Cursors of the pages before this one, for Previous (cursors only go forward).
  const [back, setBack] = useState<Array<string | undefined>>([]);
  const [counts, setCounts] = useState<Partial<Record<Status, number>>>({});
  const [error, setError] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState<Status | ''>('');
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<string | null>(null);
  const now = useNow();
  useTitle('Workspaces');

  // The search box asks the server once typing pauses.
  useEffect(() => {
    const t = setTimeout(() => setSearch(query.trim()), 250);
    return () => clearTimeout(t);
  }, [query]);

  // Only the newest request's answer is shown: a slow earlier page never overwrites a later one.
  const seq = useRef(0);
  // What the live events below compare against, kept in step with the page as it is set (not as it renders: an
  // event may come between the two). Null while a page is being fetched: its answer may miss what the event says.
  const listed = useRef<{ ids: Set<string>; mayGain: boolean } | null>(null);
  const load = useCallback(
    async (from: string | undefined) => {
      const mine = ++seq.current;
      listed.current = null;
      const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (status) q.set('status', status);
      if (search) q.set('q', search);
      if (from) q.set('cursor', from);
      try {
        const res = await request('GET', `/workspaces?${q}`);
        const rows = (await res.json()) as Workspace[];
        if (mine !== seq.current) return;
        const next = res.headers.get('x-next-cursor');
        // New workspaces come last, and under a status filter one may change into it: only then can the page gain a row.
        listed.current = { ids: new Set(rows.map((w) => w.id)), mayGain: next === null || status !== '' };
        setPage({ rows, from, next });
        setError(null);
      } catch (e) {
        if (mine !== seq.current) return;
        listed.current = { ids: new Set(), mayGain: true };
        setError(`Could not list workspaces: ${(e as Error).message}`);
      }
      loadCounts();
    },
    [status, search],
  );
  const loadCounts = () =>
    api<Health>('GET', '/healthz').then(
      (h) => setCounts(h.workspaces as Partial<Record<Status, number>>),
      () => undefined,
    );

  // A new filter or search starts again at the first page. The tree fetches for itself; the table waits until shown.
  useEffect(() => {
    setBack([]);
    if (view === 'table') void load(undefined);
    else {
      seq.current++;
      listed.current = null;
      void loadCounts();
    }
  }, [load, view]);

  const reloadPage = useCallback(() => void load(page?.from), [load, page?.from]);

  const goNext = () => {
    if (!page?.next) return;
    setBack((b) => [...b, page.from]);
    void load(page.next);
  };
  const goPrev = () => {
    if (!back.length) return;
    const from = back[back.length - 1];
    setBack((b) => b.slice(0, -1));
    void load(from);
  };

  const setRows = (fn: (rows: Workspace[]) => Workspace[]) => setPage((p) => (p ? { ...p, rows: fn(p.rows) } : p));

  // Heartbeat times and current tasks arrive as pulses on the same socket; they patch the row in place.
  useLiveHeartbeats((p) =>
    setRows((rows) => (rows.some((w) => w.id === p.workspace_id) ? rows.map((w) => (w.id === p.workspace_id ? { ...w, last_heartbeat_at: p.data.last_heartbeat_at, heartbeat: p.data.heartbeat } : w)) : rows)),
  );

  // A burst of events for one workspace (created, status, steps …) becomes one fetch of it when it is on this page.
  // Events for others can change this page only where it could gain a row; then, or when the event came while the
  // page was being fetched, the page is fetched again, at most every 500 ms.
  const refreshOne = useCallback(
    async (id: string) => {
      try {
        const ws = await api<Workspace>('GET', `/workspaces/${id}`);
        setRows((rows) => rows.flatMap((w) => (w.id !== id ? [w] : ws.status === 'removed' || (status && ws.status !== status) ? [] : [ws])));
      } catch (e) {
        if (e instanceof ApiFailure && (e.status === 410 || e.status === 404)) setRows((rows) => rows.filter((w) => w.id !== id));
      }
    },
    [status],
  );
  useLiveRefresh(
    (ev) => {
      if (view !== 'table') return 'none';
      const now = listed.current;
      if (!now) return 'all';
      if (now.ids.has(ev.workspace_id)) return 'one';
      return now.mayGain ? 'all' : 'none';
    },
    refreshOne,
    () => view === 'table' && reloadPage(),
  );

  const workspaces = page?.rows ?? null;
  const shown = workspaces ?? [];
  const live = Object.entries(counts).reduce((n, [s, c]) => (s === 'removed' ? n : n + (c ?? 0)), 0);
  const total = search ? null : status ? (counts[status] ?? 0) : live;
  const firstIndex = back.length * PAGE_SIZE;
  const filtered = !!(search || status);
  const empty = workspaces !== null && shown.length === 0 && back.length === 0 && !filtered && live === 0;

  return (
    <section aria-labelledby="fleet-title">
      <div className="page-head">
        <h1 id="fleet-title">Workspaces</h1>
        <button type="button" className="primary" onClick={() => setCreating(true)}>
          New workspace
        </button>
      </div>

      <div className="toolbar" role="search">
        <div className="field inline grow">
          <label htmlFor="fleet-search">Search</label>
          <input id="fleet-search" type="search" placeholder="Part of a name" value={query} onChange={(e) => setQuery(e.target.value)} />
        </div>
        <div className="field inline">
          <label htmlFor="fleet-status">Status</label>
          <select id="fleet-status" value={status} onChange={(e) => setStatus(e.target.value as Status | '')}>
            <option value="">All</option>
            {meta.statuses
              .filter((s) => s !== 'removed')
              .map((s) => (
                <option key={s} value={s}>
                  {s}
                  {counts[s] ? ` (${counts[s]})` : ''}
                </option>
              ))}
          </select>
        </div>
        <div className="field inline view-field">
          <span className="label" id="fleet-view">
            View
          </span>
          <div className="segmented" role="group" aria-labelledby="fleet-view">
            <button type="button" aria-pressed={view === 'table'} onClick={() => setView('table')}>
              Table
            </button>
            <button type="button" aria-pressed={view === 'tree'} onClick={() => setView('tree')}>
              Tree
            </button>
          </div>
        </div>
      </div>

      {view === 'tree' ? (
        <FleetTree status={status} search={search} now={now} created={created} reloadKey={treeKey} />
      ) : (
      <>
      <ErrorNote error={error} />

      {workspaces === null ? (
        <p className="muted">Loading workspaces…</p>
      ) : empty ? (
        <div className="empty card">
          <p>No workspaces yet.</p>
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            Create the first one
          </button>
        </div>
      ) : (
        <>
          <p className="muted count" aria-live="polite">
            {shown.length === 0
              ? ''
              : `${firstIndex + 1}–${firstIndex + shown.length}${total !== null ? ` of ${total}` : ''} ${filtered ? 'matching ' : ''}workspace${total === 1 ? '' : 's'}`}
          </p>
          <div className="table-wrap">
            <table className="fleet">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Status</th>
                  <th scope="col">Runtime</th>
                  <th scope="col">Tier</th>
                  <th scope="col">Region</th>
                  <th scope="col">Backend</th>
                  <th scope="col">Last heartbeat</th>
                  <th scope="col">Current task</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((w) => (
                  <tr key={w.id} data-workspace-id={w.id} className={w.id === created ? 'fresh' : undefined}>
                    <td data-label="Name">
                      <a href={href.workspace(w.id)} className="ws-name">
                        {w.name}
                      </a>
                      {w.role && <div className="muted role">{w.role}</div>}
                    </td>
                    <td data-label="Status">
                      <StatusBadge status={w.status} />
                      {w.status_reason && <div className="muted reason">{w.status_reason}</div>}
                    </td>
                    <td data-label="Runtime">{w.runtime}</td>
                    <td data-label="Tier">
                      <TierBadge meta={meta} tier={w.tier} />
                    </td>
                    <td data-label="Region">{w.region ?? <span className="muted">{meta.backend.default_region} (default)</span>}</td>
                    <td data-label="Backend">{w.backend}</td>
                    <td data-label="Last heartbeat">
                      <Ago iso={w.last_heartbeat_at} now={now} />
                    </td>
                    <td data-label="Current task" className="task">
                      {w.heartbeat?.current_task ?? <span className="muted">idle</span>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {shown.length === 0 && <p className="muted">No workspace matches.</p>}
          </div>
          {(back.length > 0 || page?.next) && (
            <nav className="pager" aria-label="Pages">
              <button type="button" onClick={goPrev} disabled={back.length === 0}>
                Previous
              </button>
              <span className="muted">Page {back.length + 1}</span>
              <button type="button" onClick={goNext} disabled={!page?.next}>
                Next
              </button>
            </nav>
          )}
        </>
      )}
      </>
      )}

      {creating && (
        <CreateWorkspace
          meta={meta}
          onClose={() => setCreating(false)}
          onCreated={(ws) => {
            setCreating(false);
            setCreated(ws.id);
            // New workspaces sort last: the last page shows it now; elsewhere the count says it is there.
            if (page?.next === null && (!status || ws.status === status) && (!search || ws.name.toLowerCase().includes(search.toLowerCase()))) {
              setRows((rows) => (rows.some((w) => w.id === ws.id) ? rows : [...rows, ws]));
            }
            if (view === 'tree') setTreeKey((k) => k + 1);
            else reloadPage();
          }}
        />
      )}
    </section>
  );
}
