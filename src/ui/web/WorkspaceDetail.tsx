import { useCallback, useEffect, useState } from 'react';
import { ApiFailure, api } from './api.js';
import { Ago, ErrorNote, Modal, StatusBadge, TierBadge } from './bits.js';
import { Chat } from './Chat.js';
import { clock, useNow } from './format.js';
import { useLiveEvents, useLiveHeartbeats } from './live.js';
import { Logs } from './Logs.js';
import { href, navigate, useTitle } from './router.js';
import { Secrets } from './Secrets.js';
import { Team } from './Team.js';
import type { Action, Meta, PlatformEvent, Workspace } from './types.js';

export function WorkspaceDetail({ id, meta }: { id: string; meta: Meta }) {
  const [ws, setWs] = useState<Workspace | null>(null);
  const [gone, setGone] = useState<string | null>(null);
  const [events, setEvents] = useState<PlatformEvent[]>([]);
  const [card, setCard] = useState<Record<string, unknown> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const now = useNow();

  const load = useCallback(async () => {
    try {
      setWs(await api<Workspace>('GET', `/workspaces/${id}`));
      setError(null);
    } catch (e) {
      if (e instanceof ApiFailure && (e.status === 404 || e.status === 410 || e.status === 400)) setGone(e.message);
      else setError((e as Error).message);
    }
  }, [id]);
  const loadEvents = useCallback(async () => {
    try {
      setEvents(await api<PlatformEvent[]>('GET', `/workspaces/${id}/events`));
    } catch {
      /* the workspace itself reports what is wrong */
    }
  }, [id]);
  const loadCard = useCallback(async () => {
    try {
      setCard(await api<Record<string, unknown>>('GET', `/workspaces/${id}/agent-card`));
    } catch {
      setCard(null);
    }
  }, [id]);

  useEffect(() => {
    void load();
    void loadEvents();
    void loadCard();
  }, [load, loadEvents, loadCard]);
  useLiveHeartbeats((p) => {
    if (p.workspace_id === id) setWs((w) => (w ? { ...w, last_heartbeat_at: p.data.last_heartbeat_at, heartbeat: p.data.heartbeat } : w));
  });

  useLiveEvents(
    (ev) => {
      if (ev.workspace_id !== id) return;
      setEvents((list) => (list.some((e) => e.id === ev.id) ? list : [...list, ev]));
      void load();
      if (ev.type === 'workspace.step' && ev.data.step === 'registered') void loadCard();
    },
    () => {
      void load();
      void loadEvents();
    },
  );

  useTitle(ws?.name ?? (gone ? 'Not available' : ''));

  if (gone) {
    return (
      <section>
        <p>
          <a href={href.fleet}>← Workspaces</a>
        </p>
        <h1>Workspace not available</h1>
        <p>{gone}</p>
      </section>
    );
  }
  if (!ws) return <p className="muted">{error ?? 'Loading…'}</p>;

  // A sleeping workspace takes messages too: the first one wakes it (the platform holds it until it is ready).
  const canChat = ws.status === 'ready' || ws.status === 'degraded' || ws.status === 'sleeping';
  return (
    <section aria-labelledby="ws-title" className="detail">
      <p className="crumbs">
        <a href={href.fleet}>← Workspaces</a>
      </p>
      <div className="page-head">
        <div>
          <h1 id="ws-title">{ws.name}</h1>
          {ws.role && <p className="muted">{ws.role}</p>}
        </div>
        <Actions ws={ws} meta={meta} onChange={setWs} />
      </div>
      <ErrorNote error={error} />

      <div className="status-line" aria-live="polite">
        <StatusBadge status={ws.status} />
        {ws.status_reason && <span className="reason">{ws.status_reason}</span>}
        <span className="muted small">
          since <Ago iso={ws.status_changed_at} now={now} />
        </span>
        {ws.needs_restart && <span className="badge tone-warn">restart to apply changes</span>}
      </div>

      <div className="grid">
        <div className="card">
          <h2>Overview</h2>
          <dl className="facts">
            <dt>Runtime</dt>
            <dd>{ws.runtime}</dd>
            <dt>Tier</dt>
            <dd>
              <TierBadge meta={meta} tier={ws.tier} />
            </dd>
            <dt>Region</dt>
            <dd>{ws.region ?? `${meta.backend.default_region} (default)`}</dd>
            <dt>Backend</dt>
            <dd>{ws.backend}</dd>
            <dt>Instance</dt>
            <dd>{ws.instance ? <code>{ws.instance.id}</code> : <span className="muted">none</span>}</dd>
            <dt>Last heartbeat</dt>
            <dd>
              <Ago iso={ws.last_heartbeat_at} now={now} />
            </dd>
            <dt>Current task</dt>
            <dd>{ws.heartbeat?.current_task ?? <span className="muted">idle</span>}</dd>
            <dt>Restarts</dt>
            <dd>
              {ws.restart_count}
              {ws.next_restart_at && (
                <span className="muted small">
                  {' '}
                  (next at {clock(ws.next_restart_at)})
                </span>
              )}
            </dd>
            <dt>Created</dt>
            <dd>
              <Ago iso={ws.created_at} now={now} />
            </dd>
            <dt>Id</dt>
            <dd>
              <code className="small">{ws.id}</code>
            </dd>
          </dl>
        </div>

        <Team ws={ws} meta={meta} onMoved={setWs} />

        <div className="card chat-card">
          <h2>Chat</h2>
          <Chat workspaceId={ws.id} canChat={canChat} statusNote={`The agent takes messages when the workspace is ready (it is ${ws.status}).`} />
        </div>

        <div className="card">
          <h2>Timeline</h2>
          <Timeline events={events} />
        </div>

        <div className="card wide">
          <h2>Logs</h2>
          <Logs workspaceId={ws.id} epoch={`${ws.instance?.id ?? ''}:${canChat ? 'up' : 'down'}`} />
        </div>

        <div className="card">
          <h2>Agent card</h2>
          <AgentCard card={card} />
        </div>

        <div className="card">
          <h2>Secrets</h2>
          <Secrets base={`/workspaces/${ws.id}/secrets`} idPrefix="ws-secret" hint="Names only; values never leave the platform. A change reaches the agent when it restarts." />
        </div>
      </div>
    </section>
  );
}

function Actions({ ws, meta, onChange }: { ws: Workspace; meta: Meta; onChange: (ws: Workspace) => void }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [children, setChildren] = useState<string | null>(null);
  const allowed = (a: Action) => meta.actions[a].includes(ws.status);

  const run = async (action: Exclude<Action, 'delete'>, label: string) => {
    setBusy(label);
    setError(null);
    try {
      onChange(await api<Workspace>('POST', `/workspaces/${ws.id}/${action}`));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  };

  const remove = async (withChildren: boolean) => {
    setBusy('Delete');
    setError(null);
    try {
      await api<Workspace>('DELETE', `/workspaces/${ws.id}${withChildren ? '?confirm=true' : ''}`);
      setConfirming(false);
      navigate(href.fleet);
    } catch (e) {
      if (e instanceof ApiFailure && e.code === 'confirmation_required') setChildren(e.message);
      else {
        setConfirming(false);
        setError((e as Error).message);
      }
    } finally {
      setBusy(null);
    }
  };

  return (
    <div className="ws-actions">
      <div className="button-row" role="group" aria-label="Workspace actions">
        {ws.status === 'failed' && allowed('restart') && (
          <button type="button" className="primary" disabled={!!busy} onClick={() => void run('restart', 'Retry')}>
            {busy === 'Retry' ? 'Retrying…' : 'Retry'}
          </button>
        )}
        {ws.status !== 'failed' && allowed('restart') && (
          <button type="button" disabled={!!busy} onClick={() => void run('restart', 'Restart')}>
            {busy === 'Restart' ? 'Restarting…' : 'Restart'}
          </button>
        )}
        {allowed('pause') && (
          <button type="button" disabled={!!busy} onClick={() => void run('pause', 'Pause')}>
            {busy === 'Pause' ? 'Pausing…' : 'Pause'}
          </button>
        )}
        {allowed('wake') && (
          <button type="button" className="primary" disabled={!!busy} onClick={() => void run('wake', 'Wake')}>
            {busy === 'Wake' ? 'Waking…' : 'Wake'}
          </button>
        )}
        {allowed('resume') && (
          <button type="button" className="primary" disabled={!!busy} onClick={() => void run('resume', 'Resume')}>
            {busy === 'Resume' ? 'Resuming…' : 'Resume'}
          </button>
        )}
        {allowed('delete') && (
          <button type="button" className="danger" disabled={!!busy} onClick={() => (setChildren(null), setConfirming(true))}>
            Delete
          </button>
        )}
      </div>
      <ErrorNote error={error} />
      {confirming && (
        <Modal title={`Delete ${ws.name}?`} labelId="delete-title" onClose={() => setConfirming(false)}>
          <p>
            This destroys the workspace’s instance and revokes its tokens. The workspace then answers <code>410 Gone</code>. It cannot be undone.
          </p>
          {children && (
            <p className="banner warn" role="alert">
              {children}
            </p>
          )}
          <div className="actions">
            <button type="button" onClick={() => setConfirming(false)} data-autofocus>
              Cancel
            </button>
            <button type="button" className="danger" disabled={busy === 'Delete'} onClick={() => void remove(!!children)}>
              {children ? 'Delete it and its children' : 'Delete workspace'}
            </button>
          </div>
        </Modal>
      )}
    </div>
  );
}

function Timeline({ events }: { events: PlatformEvent[] }) {
  if (!events.length) return <p className="muted">No events yet.</p>;
  const newest = [...events].sort((a, b) => b.id - a.id);
  return (
    <ol className="timeline" aria-label="Events, newest first">
      {newest.map((ev) => (
        <li key={ev.id} data-type={ev.type}>
          <time dateTime={ev.at} title={clock(ev.at)}>
            {new Date(ev.at).toLocaleTimeString()}
          </time>
          <span className="what">{describe(ev)}</span>
        </li>
      ))}
    </ol>
  );
}

const SHOWN_STEP_FIELDS = ['action', 'backend', 'instance_id', 'pid', 'region', 'reason', 'error', 'agent_url', 'machine_id', 'state'];

function describe(ev: PlatformEvent): string {
  const d = ev.data as Record<string, any>;
  switch (ev.type) {
    case 'workspace.status':
      return `${d.from ?? 'new'} → ${d.to}${d.reason ? `: ${d.reason}` : ''}`;
    case 'workspace.created':
      return `created (${d.runtime}, tier ${d.tier}${d.region ? `, ${d.region}` : ''}, on ${d.backend})`;
    case 'workspace.step': {
      const extra = SHOWN_STEP_FIELDS.filter((k) => d[k] !== undefined && d[k] !== null).map((k) => `${k} ${d[k]}`);
      return `${d.step}${extra.length ? ` (${extra.join(', ')})` : ''}`;
    }
    case 'workspace.instance':
      return `instance ${d.state}${d.reason ? `: ${d.reason}` : ''}`;
    case 'workspace.updated':
      return `updated ${(d.fields ?? []).join(', ')}${d.needs_restart ? ' (restart to apply)' : ''}`;
    case 'secret.changed':
      return `secret ${d.key} ${d.change}`;
    default:
      return `${ev.type} ${JSON.stringify(d)}`;
  }
}

function AgentCard({ card }: { card: Record<string, unknown> | null }) {
  if (!card) return <p className="muted">The agent has not registered yet.</p>;
  const skills = Array.isArray(card.skills) ? (card.skills as { id?: string; name?: string; description?: string; examples?: string[] }[]) : [];
  const caps = (card.capabilities ?? {}) as Record<string, unknown>;
  return (
    <div className="agent-card">
      <dl className="facts">
        <dt>Name</dt>
        <dd>{String(card.name ?? '')}</dd>
        <dt>Description</dt>
        <dd>{String(card.description ?? '')}</dd>
        <dt>Version</dt>
        <dd>{String(card.version ?? '')}</dd>
        <dt>Streaming</dt>
        <dd>{caps.streaming ? 'yes' : 'no'}</dd>
      </dl>
      {skills.length > 0 && (
        <>
          <h3>Skills</h3>
          <ul className="skills">
            {skills.map((s) => (
              <li key={s.id ?? s.name}>
                <strong>{s.name}</strong> — {s.description}
                {s.examples?.length ? <div className="muted small">e.g. {s.examples.join(' · ')}</div> : null}
              </li>
            ))}
          </ul>
        </>
      )}
      <details>
        <summary>Raw card</summary>
        <pre className="json">{JSON.stringify(card, null, 2)}</pre>
      </details>
    </div>
  );
}
