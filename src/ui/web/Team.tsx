import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import { ApiFailure, api, request } from './api.js';
import { ErrorNote, Modal, StatusBadge } from './bits.js';
import { CreateWorkspace } from './CreateWorkspace.js';
import { TREE_PAGE } from './hierarchy.js';
import { useLiveEvents } from './live.js';
import { href } from './router.js';
import type { Meta, Workspace } from './types.js';

/** A workspace's place in its team: its parent and its children, each with status and link; create child, move. */
export function Team({ ws, meta, onMoved }: { ws: Workspace; meta: Meta; onMoved: (ws: Workspace) => void }) {
  const [parent, setParent] = useState<Workspace | null>(null);
  const [parentGone, setParentGone] = useState(false);
  const [children, setChildren] = useState<Workspace[] | null>(null);
  const [moreChildren, setMoreChildren] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [moving, setMoving] = useState(false);
  const parentId = ws.parent_id ?? null;

  const loadParent = useCallback(async () => {
    if (!parentId) return setParent(null);
    try {
      setParent(await api<Workspace>('GET', `/workspaces/${parentId}`));
      setParentGone(false);
    } catch (e) {
      if (e instanceof ApiFailure && (e.status === 404 || e.status === 410)) setParentGone(true);
    }
  }, [parentId]);

  const loadChildren = useCallback(async () => {
    try {
      const res = await request('GET', `/workspaces?parent_id=${encodeURIComponent(ws.id)}&limit=${TREE_PAGE}`);
      setChildren((await res.json()) as Workspace[]);
      setMoreChildren(res.headers.get('x-next-cursor') !== null);
      setError(null);
    } catch (e) {
      setError(`Could not list the children: ${(e as Error).message}`);
    }
  }, [ws.id]);

  useEffect(() => {
    void loadParent();
  }, [loadParent]);
  useEffect(() => {
    void loadChildren();
  }, [loadChildren]);

  // A child's or the parent's news, or a workspace created or changed (it may have become a child), is fetched again;
  // a burst of events is one fetch.
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const want = useRef({ parent: false, children: false });
  const childIds = new Set((children ?? []).map((c) => c.id));
  useLiveEvents(
    (ev) => {
      if (!ev.workspace_id || !ev.type.startsWith('workspace.')) return;
      if (ev.workspace_id === parentId) want.current.parent = true;
      else if (childIds.has(ev.workspace_id) || ev.type === 'workspace.created' || ev.type === 'workspace.updated') want.current.children = true;
      else return;
      if (timer.current) return;
      timer.current = setTimeout(() => {
        timer.current = undefined;
        if (want.current.parent) void loadParent();
        if (want.current.children) void loadChildren();
        want.current = { parent: false, children: false };
      }, 150);
    },
    () => {
      void loadParent();
      void loadChildren();
    },
  );
  useEffect(() => () => clearTimeout(timer.current), []);

  return (
    <div className="card team" aria-labelledby="team-title">
      <div className="card-head">
        <h2 id="team-title">Team</h2>
        <div className="button-row">
          <button type="button" onClick={() => setCreating(true)}>
            Create child
          </button>
          <button type="button" onClick={() => setMoving(true)}>
            Move…
          </button>
        </div>
      </div>
      <ErrorNote error={error} />
      <h3 id="team-parent">Parent</h3>
      {!parentId ? (
        <p className="muted">None: a top-level workspace.</p>
      ) : (
        <ul className="team-list" aria-labelledby="team-parent">
          <li>
            {parent ? <Member w={parent} /> : parentGone ? <span className="muted">removed ({parentId})</span> : <code className="small">{parentId}</code>}
          </li>
        </ul>
      )}
      <h3 id="team-children">
        Children {children && children.length > 0 && <span className="muted">({children.length}{moreChildren ? '+' : ''})</span>}
      </h3>
      {children === null ? (
        <p className="muted">Loading…</p>
      ) : children.length === 0 ? (
        <p className="muted">No children.</p>
      ) : (
        <ul className="team-list" aria-labelledby="team-children">
          {children.map((c) => (
            <li key={c.id}>
              <Member w={c} />
            </li>
          ))}
          {moreChildren && <li className="muted small">More children than shown: see the fleet’s tree view.</li>}
        </ul>
      )}

      {creating && (
        <CreateWorkspace
          meta={meta}
          parent={ws}
          onClose={() => setCreating(false)}
          onCreated={(child) => {
            setCreating(false);
            setChildren((list) => (list && !list.some((c) => c.id === child.id) ? [...list, child] : list));
            void loadChildren();
          }}
        />
      )}
      {moving && (
        <MoveDialog
          ws={ws}
          current={parent}
          onClose={() => setMoving(false)}
          onMoved={(moved) => {
            setMoving(false);
            onMoved(moved);
          }}
        />
      )}
    </div>
  );
}

function Member({ w }: { w: Workspace }) {
  return (
    <>
      <a href={href.workspace(w.id)} className="ws-name">
        {w.name}
      </a>
      <StatusBadge status={w.status} />
    </>
  );
}

/**
 * Re-parenting: PATCH parent_id (null: top level). The platform refuses an unknown parent (400) and a cycle (409,
 * the workspace itself or one of its descendants); its message is shown here and nothing changes. The A2A access
 * rules follow the hierarchy, so who may call whom changes with the move.
 */
function MoveDialog({ ws, current, onClose, onMoved }: { ws: Workspace; current: Workspace | null; onClose: () => void; onMoved: (ws: Workspace) => void }) {
  const [query, setQuery] = useState('');
  const [candidates, setCandidates] = useState<Workspace[]>([]);
  const [choice, setChoice] = useState(ws.parent_id ?? '');
  const [chosen, setChosen] = useState<Workspace | null>(current);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // Found by name on the server, as in the create form: the fleet may be far larger than one list.
  useEffect(() => {
    let stale = false;
    const t = setTimeout(() => {
      const q = new URLSearchParams({ limit: '100' });
      if (query.trim()) q.set('q', query.trim());
      api<Workspace[]>('GET', `/workspaces?${q}`).then(
        (list) => !stale && setCandidates(list.filter((w) => w.id !== ws.id && w.status !== 'removing')),
        () => undefined,
      );
    }, 200);
    return () => {
      stale = true;
      clearTimeout(t);
    };
  }, [query, ws.id]);
  const options = chosen && !candidates.some((w) => w.id === chosen.id) ? [chosen, ...candidates] : candidates;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onMoved(await api<Workspace>('PATCH', `/workspaces/${ws.id}`, { parent_id: choice || null }));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal title={`Move ${ws.name}`} labelId="move-title" onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <p className="muted small">
          Its children move with it. Who it may call over A2A follows the hierarchy: its parent, its children and its
          siblings.
        </p>
        <div className="field">
          <label htmlFor="move-search">Find a workspace</label>
          <input id="move-search" type="search" placeholder="Part of a name" value={query} onChange={(e) => setQuery(e.target.value)} autoComplete="off" data-autofocus />
        </div>
        <div className="field">
          <label htmlFor="move-parent">New parent</label>
          <select
            id="move-parent"
            value={choice}
            onChange={(e) => {
              setChoice(e.target.value);
              setChosen(options.find((w) => w.id === e.target.value) ?? null);
            }}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? 'move-error' : undefined}
          >
            <option value="">No parent (top level)</option>
            {options.map((w) => (
              <option key={w.id} value={w.id}>
                {w.name}
                {w.id === ws.parent_id ? ' (current)' : ''}
              </option>
            ))}
          </select>
        </div>
        {error && (
          <p id="move-error" className="banner bad" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || choice === (ws.parent_id ?? '')}>
            {busy ? 'Moving…' : 'Move'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
