import '@xyflow/react/dist/style.css';
import { Graph, layout } from '@dagrejs/dagre';
import {
  Background,
  BaseEdge,
  Controls,
  EdgeLabelRenderer,
  Handle,
  MarkerType,
  Position,
  ReactFlow,
  getSmoothStepPath,
  type Edge,
  type EdgeProps,
  type Node,
  type NodeProps,
} from '@xyflow/react';
import { useCallback, useEffect, useMemo, useRef, useState, type CSSProperties } from 'react';
import { ApiFailure, api } from './api.js';
import { ErrorNote, StatusBadge } from './bits.js';
import { tone, useNow } from './format.js';
import { fetchAll } from './hierarchy.js';
import { useLiveCalls, useLiveRefresh } from './live.js';
import { href, useTitle } from './router.js';
import type { CallsPulse, Workspace } from './types.js';

/** How far back an edge's count and p50 reach, and how long an edge stays lit after a pulse. */
const WINDOW_MS = 5 * 60_000;
const LIT_MS = 1500;
const NODE_W = 190;
const NODE_H = 64;

type WsNode = Node<{ w: Workspace }, 'workspace'>;
interface EdgeStat {
  from: string;
  to: string;
  calls: number;
  errors: number;
  p50: number | null;
  lastAt: number;
}
type TeamEdge = Edge<{ kind: 'hierarchy' | 'traffic'; stat: EdgeStat | null; lit: boolean; label: string }, 'team'>;
interface Sample {
  at: number;
  calls: number;
  errors: number;
  latencies: number[];
}

/**
 * The team map: the hierarchy as a graph laid out by dagre, drawn by React Flow; nodes in their status colour, and
 * agent-to-agent calls lighting up edges as the platform's pulses arrive. Counts and latencies are what this tab saw
 * since the map was opened: the platform does not store the pulses.
 */
export default function TeamMap() {
  useTitle('Team map');
  const [list, setList] = useState<Workspace[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const now = useNow(500);

  const seq = useRef(0);
  const known = useRef<Set<string> | null>(null);
  const load = useCallback(async () => {
    const mine = ++seq.current;
    known.current = null;
    try {
      const all = await fetchAll();
      if (mine !== seq.current) return;
      known.current = new Set(all.map((w) => w.id));
      setList(all);
      setError(null);
    } catch (e) {
      if (mine !== seq.current) return;
      known.current = new Set();
      setError(`Could not list workspaces: ${(e as Error).message}`);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  // Live: a status change recolours its node (one fetch); a new, moved or removed workspace, or an event during a
  // fetch, lays the map out again (at most every 500 ms).
  const listRef = useRef(list);
  listRef.current = list;
  const refreshOne = useCallback(
    async (id: string) => {
      try {
        const ws = await api<Workspace>('GET', `/workspaces/${id}`);
        const before = listRef.current?.find((w) => w.id === id);
        if (!before || ws.status === 'removed' || ws.parent_id !== before.parent_id) return void load();
        setList((l) => (l ? l.map((w) => (w.id === id ? ws : w)) : l));
      } catch (e) {
        if (e instanceof ApiFailure && (e.status === 404 || e.status === 410)) void load();
      }
    },
    [load],
  );
  useLiveRefresh((ev) => (known.current?.has(ev.workspace_id) && ev.type !== 'workspace.updated' ? 'one' : 'all'), refreshOne, load);

  // Traffic, per directed edge, as samples in arrival order; kept 5 minutes.
  const samples = useRef(new Map<string, Sample[]>());
  const [trafficVersion, setTrafficVersion] = useState(0);
  useLiveCalls((p: CallsPulse) => {
    const { from, to, calls, errors, latencies_ms } = p.data;
    if (!from || !to) return;
    const key = `${from}->${to}`;
    const list = samples.current.get(key) ?? [];
    // Arrival time, not the pulse's own: the window and the glow are this browser's, whatever the platform's clock.
    list.push({ at: Date.now(), calls, errors, latencies: latencies_ms ?? [] });
    samples.current.set(key, list);
    setTrafficVersion((v) => v + 1);
  });
  const stats = useMemo(() => {
    const out = new Map<string, EdgeStat>();
    const cutoff = now - WINDOW_MS;
    for (const [key, list] of samples.current) {
      const kept = list.filter((s) => s.at >= cutoff);
      if (!kept.length) {
        samples.current.delete(key);
        continue;
      }
      samples.current.set(key, kept);
      const [from, to] = key.split('->');
      const lat = kept.flatMap((s) => s.latencies).sort((a, b) => a - b);
      out.set(key, {
        from,
        to,
        calls: kept.reduce((n, s) => n + s.calls, 0),
        errors: kept.reduce((n, s) => n + s.errors, 0),
        p50: lat.length ? lat[Math.floor((lat.length - 1) / 2)] : null,
        lastAt: kept[kept.length - 1].at,
      });
    }
    return out;
    // trafficVersion: a pulse changed the samples (a ref); now: the window slides and the glow fades.
  }, [trafficVersion, now]);

  // Laid out again only when the shape of the hierarchy changes, not when a status does.
  const shape = useMemo(() => (list ? list.map((w) => `${w.id}<${w.parent_id ?? ''}`).join(',') : ''), [list]);
  const positions = useMemo(() => (list ? layoutOf(list) : new Map<string, { x: number; y: number }>()), [shape]);

  const byId = useMemo(() => new Map((list ?? []).map((w) => [w.id, w])), [list]);
  const nodes: WsNode[] = useMemo(
    () => (list ?? []).map((w) => ({ id: w.id, type: 'workspace', position: positions.get(w.id) ?? { x: 0, y: 0 }, data: { w }, ariaLabel: `${w.name}, ${w.status}` })),
    [list, positions],
  );
  const edges: TeamEdge[] = useMemo(() => {
    const out: TeamEdge[] = [];
    const hierarchy = new Set<string>();
    for (const w of list ?? []) {
      if (!w.parent_id || !byId.has(w.parent_id)) continue;
      const key = `${w.parent_id}->${w.id}`;
      hierarchy.add(key);
      out.push(edgeOf(key, 'hierarchy', stats.get(key) ?? null, now, byId, positions));
    }
    for (const [key, stat] of stats) {
      if (hierarchy.has(key) || !byId.has(stat.from) || !byId.has(stat.to)) continue;
      out.push(edgeOf(key, 'traffic', stat, now, byId, positions));
    }
    return out;
  }, [list, byId, stats, now, positions]);

  const calls = [...stats.values()].sort((a, b) => b.lastAt - a.lastAt);

  return (
    <section aria-labelledby="map-title" className="team-map">
      <div className="page-head">
        <div>
          <h1 id="map-title">Team map</h1>
          <p className="muted">Who belongs to whom, and who is calling whom right now.</p>
        </div>
      </div>
      <ErrorNote error={error} />
      {list === null ? (
        <p className="muted">Loading workspaces…</p>
      ) : list.length === 0 ? (
        <div className="empty card">
          <p>No workspaces yet.</p>
        </div>
      ) : (
        <div className="map-frame" role="figure" aria-label="Team map: workspaces and the calls between them">
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={nodeTypes}
            edgeTypes={edgeTypes}
            fitView
            fitViewOptions={{ padding: 0.15, maxZoom: 1.2 }}
            minZoom={0.05}
            nodesDraggable={false}
            nodesConnectable={false}
            elementsSelectable={false}
            nodesFocusable={false}
            edgesFocusable={false}
            onlyRenderVisibleElements={list.length > 300}
            colorMode="system"
          >
            <Background gap={24} size={1} />
            <Controls showInteractive={false} />
          </ReactFlow>
        </div>
      )}
      <Legend />
      <div className="card calls-card">
        <h2 id="calls-title">Calls in the last 5 minutes</h2>
        {calls.length === 0 ? (
          <p className="muted">No calls seen since the map was opened.</p>
        ) : (
          <table className="mini calls" aria-labelledby="calls-title">
            <thead>
              <tr>
                <th scope="col">From</th>
                <th scope="col">To</th>
                <th scope="col">Calls</th>
                <th scope="col">Errors</th>
                <th scope="col">p50</th>
              </tr>
            </thead>
            <tbody>
              {calls.map((s) => (
                <tr key={`${s.from}->${s.to}`} data-edge={`${s.from}->${s.to}`} className={now - s.lastAt < LIT_MS ? 'lit' : undefined}>
                  <td>{nameLink(byId.get(s.from), s.from)}</td>
                  <td>{nameLink(byId.get(s.to), s.to)}</td>
                  <td>{s.calls}</td>
                  <td>{s.errors}</td>
                  <td>{s.p50 === null ? '—' : `${Math.round(s.p50)} ms`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}

function nameLink(w: Workspace | undefined, id: string) {
  return w ? <a href={href.workspace(id)}>{w.name}</a> : <code className="small">{id}</code>;
}

type Side = 't' | 'b' | 'l' | 'r';

function edgeOf(key: string, kind: 'hierarchy' | 'traffic', stat: EdgeStat | null, now: number, byId: Map<string, Workspace>, positions: Map<string, { x: number; y: number }>): TeamEdge {
  const [from, to] = key.split('->');
  const lit = !!stat && now - stat.lastAt < LIT_MS;
  // Parent → child lines go from the bottom to the top; a call takes the sides that face each other.
  let sides: [Side, Side] = ['b', 't'];
  if (kind === 'traffic') {
    const a = positions.get(from) ?? { x: 0, y: 0 };
    const b = positions.get(to) ?? { x: 0, y: 0 };
    if (Math.abs(b.y - a.y) > NODE_H) sides = b.y > a.y ? ['b', 't'] : ['t', 'b'];
    else sides = b.x > a.x ? ['r', 'l'] : ['l', 'r'];
  }
  return {
    id: `${kind}:${key}`,
    source: from,
    target: to,
    sourceHandle: `s${sides[0]}`,
    targetHandle: `t${sides[1]}`,
    type: 'team',
    className: `team-edge ${kind}${stat ? ' busy' : ''}${lit ? ' lit' : ''}`,
    markerEnd: kind === 'traffic' ? { type: MarkerType.ArrowClosed, width: 16, height: 16 } : undefined,
    data: { kind, stat, lit, label: `${byId.get(from)?.name ?? from} → ${byId.get(to)?.name ?? to}` },
  };
}

/** dagre lays out the teams (top-down); workspaces with neither parent nor children go in a grid below them. */
function layoutOf(list: Workspace[]): Map<string, { x: number; y: number }> {
  const ids = new Set(list.map((w) => w.id));
  const linked = new Set<string>();
  for (const w of list) {
    if (w.parent_id && ids.has(w.parent_id)) (linked.add(w.id), linked.add(w.parent_id));
  }
  const pos = new Map<string, { x: number; y: number }>();
  let bottom = 0;
  let width = 0;
  if (linked.size) {
    const g = new Graph();
    g.setGraph({ rankdir: 'TB', nodesep: 40, ranksep: 70, marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const w of list) if (linked.has(w.id)) g.setNode(w.id, { width: NODE_W, height: NODE_H });
    for (const w of list) if (linked.has(w.id) && w.parent_id && ids.has(w.parent_id)) g.setEdge(w.parent_id, w.id);
    layout(g);
    for (const id of g.nodes()) {
      const n = g.node(id);
      pos.set(id, { x: n.x - NODE_W / 2, y: n.y - NODE_H / 2 });
      bottom = Math.max(bottom, n.y + NODE_H / 2);
      width = Math.max(width, n.x + NODE_W / 2);
    }
    bottom += 70;
  }
  const lone = list.filter((w) => !linked.has(w.id));
  const perRow = Math.max(4, Math.floor(Math.max(width, Math.sqrt(lone.length) * (NODE_W + 30)) / (NODE_W + 30)));
  lone.forEach((w, i) => pos.set(w.id, { x: (i % perRow) * (NODE_W + 30), y: bottom + Math.floor(i / perRow) * (NODE_H + 30) }));
  return pos;
}

const SIDES: Array<[Side, Position]> = [
  ['t', Position.Top],
  ['b', Position.Bottom],
  ['l', Position.Left],
  ['r', Position.Right],
];

function WorkspaceNode({ data }: NodeProps<WsNode>) {
  const w = data.w;
  return (
    <div className="map-node" data-workspace-id={w.id} data-tone={tone(w.status)}>
      {SIDES.map(([side, position]) => (
        <Handle key={`t${side}`} type="target" position={position} id={`t${side}`} isConnectable={false} />
      ))}
      <a href={href.workspace(w.id)} className="ws-name nodrag nopan" title={w.role ?? undefined}>
        {w.name}
      </a>
      <StatusBadge status={w.status} />
      {SIDES.map(([side, position]) => (
        <Handle key={`s${side}`} type="source" position={position} id={`s${side}`} isConnectable={false} />
      ))}
    </div>
  );
}

function TeamEdgeView({ id, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition, markerEnd, data }: EdgeProps<TeamEdge>) {
  const geometry = { sourceX, sourceY, sourcePosition, targetX, targetY, targetPosition };
  const [path, labelX, labelY] = data?.kind === 'traffic' ? bowed(sourceX, sourceY, targetX, targetY) : getSmoothStepPath({ ...geometry, borderRadius: 8 });
  const stat = data?.stat;
  return (
    <>
      <BaseEdge id={id} path={path} markerEnd={markerEnd} />
      {stat && (
        <EdgeLabelRenderer>
          <div
            className={`edge-label nodrag nopan${data?.lit ? ' lit' : ''}`}
            data-edge={`${stat.from}->${stat.to}`}
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` } as CSSProperties}
            title={`${data?.label}: ${stat.calls} call${stat.calls === 1 ? '' : 's'}, ${stat.errors} error${stat.errors === 1 ? '' : 's'}, median latency ${stat.p50 === null ? 'unknown' : `${Math.round(stat.p50)} ms`}, over the last 5 minutes as seen by this browser since the map was opened`}
          >
            {stat.calls} call{stat.calls === 1 ? '' : 's'}
            {stat.p50 !== null && ` · p50 ${Math.round(stat.p50)} ms`}
            {stat.errors > 0 && <span className="edge-errors"> · {stat.errors} err</span>}
          </div>
        </EdgeLabelRenderer>
      )}
    </>
  );
}

/**
 * A call drawn as a curve bowed to the right of its direction: calls both ways between two workspaces, and a call
 * alongside a parent → child line, stay apart instead of drawn over each other.
 */
function bowed(sx: number, sy: number, tx: number, ty: number): [string, number, number] {
  const dx = tx - sx;
  const dy = ty - sy;
  const len = Math.hypot(dx, dy) || 1;
  const bow = Math.min(60, 18 + len * 0.15);
  const cx = (sx + tx) / 2 - (dy / len) * bow;
  const cy = (sy + ty) / 2 + (dx / len) * bow;
  return [`M ${sx},${sy} Q ${cx},${cy} ${tx},${ty}`, 0.25 * sx + 0.5 * cx + 0.25 * tx, 0.25 * sy + 0.5 * cy + 0.25 * ty];
}

const nodeTypes = { workspace: WorkspaceNode };
const edgeTypes = { team: TeamEdgeView };

function Legend() {
  return (
    <div className="map-legend muted small">
      <span>
        <span className="swatch line" aria-hidden="true" /> parent → child
      </span>
      <span>
        <span className="swatch traffic" aria-hidden="true" /> calls outside the hierarchy
      </span>
      <span>
        <span className="swatch lit" aria-hidden="true" /> a call just now (lit for 1.5 s)
      </span>
      <span title="The platform sends a pulse per edge at most once a second and does not store them; this page adds them up.">
        Labels: calls and median (p50) latency over the last 5 minutes, counted by this browser since the map was opened.
      </span>
    </div>
  );
}
