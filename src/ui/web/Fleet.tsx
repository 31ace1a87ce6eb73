import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiFailure, api } from './api.js';
import { Ago, ErrorNote, StatusBadge, TierBadge } from './bits.js';
import { CreateWorkspace } from './CreateWorkspace.js';
import { useNow } from './format.js';
import { useLiveEvents, useLiveHeartbeats } from './live.js';
import { href, useTitle } from './router.js';
import type { Meta, PlatformEvent, Status, Workspace } from './types.js';

export function Fleet({ meta }: { meta: Meta }) {
  const [workspaces, setWorkspaces] = useState<Workspace[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const [status, setStatus] = useState<Status | ''>('');
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<string | null>(null);
  const now = useNow();
  useTitle('Workspaces');

  const loadAll = useCallback(async () => {
    try {
      setWorkspaces(await api<Workspace[]>('GET', '/workspaces'));
      setError(null);
    } catch (e) {
      setError(`Could not list workspaces: ${(e as Error).message}`);
    }
  }, []);

  useEffect(() => {
    void loadAll();
  }, [loadAll]);

  // Heartbeat times and current tasks arrive as pulses on the same socket; they patch the row in place.
  useLiveHeartbeats((p) =>
    setWorkspaces((list) => list?.map((w) => (w.id === p.workspace_id ? { ...w, last_heartbeat_at: p.data.last_heartbeat_at, heartbeat: p.data.heartbeat } : w)) ?? list),
  );

  // A burst of events for one workspace (created, status, steps …) becomes one fetch of it.
  const pending = useRef(new Set<string>());
  const flush = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refreshOne = useCallback(async (id: string) => {
    try {
      const ws = await api<Workspace>('GET', `/workspaces/${id}`);
      setWorkspaces((list) => upsert(list, ws));
    } catch (e) {
      if (e instanceof ApiFailure && (e.status === 410 || e.status === 404)) {
        setWorkspaces((list) => list?.filter((w) => w.id !== id) ?? list);
      }
    }
  }, []);
  useLiveEvents(
    (ev: PlatformEvent) => {
      if (!ev.workspace_id || !ev.type.startsWith('workspace.')) return;
      pending.current.add(ev.workspace_id);
      clearTimeout(flush.current);
      flush.current = setTimeout(() => {
        const ids = [...pending.current];
        pending.current.clear();
        ids.forEach((id) => void refreshOne(id));
      }, 80);
    },
    () => void loadAll(),
  );

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return (workspaces ?? []).filter((w) => {
      if (status && w.status !== status) return false;
      if (!q) return true;
      return [w.name, w.role, w.id, w.runtime, w.region ?? '', w.backend, w.status, w.heartbeat?.current_task ?? '']
        .some((s) => s.toLowerCase().includes(q));
    });
  }, [workspaces, query, status]);

  const counts = useMemo(() => {
    const c: Partial<Record<Status, number>> = {};
    for (const w of workspaces ?? []) c[w.status] = (c[w.status] ?? 0) + 1;
    return c;
  }, [workspaces]);

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
          <input id="fleet-search" type="search" placeholder="Name, role, id, region, task…" value={query} onChange={(e) => setQuery(e.target.value)} />
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
      </div>

      <ErrorNote error={error} />

      {workspaces === null ? (
        <p className="muted">Loading workspaces…</p>
      ) : workspaces.length === 0 ? (
        <div className="empty card">
          <p>No workspaces yet.</p>
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            Create the first one
          </button>
        </div>
      ) : (
        <>
          <p className="muted count" aria-live="polite">
            {shown.length === workspaces.length ? `${workspaces.length} workspace${workspaces.length === 1 ? '' : 's'}` : `${shown.length} of ${workspaces.length} workspaces`}
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
        </>
      )}

      {creating && (
        <CreateWorkspace
          meta={meta}
          workspaces={workspaces ?? []}
          onClose={() => setCreating(false)}
          onCreated={(ws) => {
            setCreating(false);
            setCreated(ws.id);
            setWorkspaces((list) => upsert(list, ws));
          }}
        />
      )}
    </section>
  );
}

function upsert(list: Workspace[] | null, ws: Workspace): Workspace[] {
  const rest = (list ?? []).filter((w) => w.id !== ws.id);
  if (ws.status === 'removed') return rest;
  const at = (list ?? []).findIndex((w) => w.id === ws.id);
  if (at < 0) return [...rest, ws];
  const next = [...(list ?? [])];
  next[at] = ws;
  return next;
}
