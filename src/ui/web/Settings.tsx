import { useEffect, useState } from 'react';
import { api } from './api.js';
import { Ago, ErrorNote, StatusBadge } from './bits.js';
import { memory, useNow } from './format.js';
import { Secrets } from './Secrets.js';
import { useTitle } from './router.js';
import type { Health, Meta, Status } from './types.js';

/**
 * /healthz `cluster`: the replicas sharing this platform's database, as the answering replica sees them. Declared
 * here rather than taken from the server, so the page keeps working against a server without it (older ones).
 */
export interface ClusterInfo {
  /** The replica that answered. */
  this: string;
  /** The replica holding the reconciler lease, or null while none does (e.g. just after its holder died). */
  leader: string | null;
  lease_ttl_s: number;
  /** Replicas seen within the lease TTL. */
  replicas: { id: string; host: string; pid: number; backend: string; url: string | null; started_at: string; last_seen: string }[];
}

/** Replicas renew `last_seen` every few seconds; refreshing keeps "last seen" and the leader current. */
const HEALTH_REFRESH_MS = 10_000;

export function Settings({ meta }: { meta: Meta }) {
  const [health, setHealth] = useState<(Health & { cluster?: ClusterInfo }) | null>(null);
  const [error, setError] = useState<string | null>(null);
  useTitle('Settings');
  useEffect(() => {
    let gone = false;
    const load = () =>
      api<Health & { cluster?: ClusterInfo }>('GET', '/healthz').then(
        (h) => {
          if (gone) return;
          setHealth(h);
          setError(null);
        },
        (e: Error) => !gone && setError(e.message),
      );
    void load();
    const t = setInterval(load, HEALTH_REFRESH_MS);
    return () => {
      gone = true;
      clearInterval(t);
    };
  }, []);

  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Settings</h1>
      <div className="grid">
        <div className="card">
          <h2>Global secrets</h2>
          <Secrets
            base="/settings/secrets"
            idPrefix="global-secret"
            hint="Every workspace gets these as environment variables (a workspace’s own secret of the same name wins). Values are write-only."
          />
        </div>
        <div className="card">
          <h2>Platform</h2>
          <ErrorNote error={error} />
          {health ? <PlatformInfo health={health} meta={meta} /> : !error && <p className="muted">Loading…</p>}
        </div>
        {health?.cluster && (
          <div className="card span-all">
            <h2>Cluster</h2>
            <ClusterSection cluster={health.cluster} />
          </div>
        )}
      </div>
    </section>
  );
}

function PlatformInfo({ health, meta }: { health: Health; meta: Meta }) {
  const { name, limits, ...details } = health.backend as Record<string, unknown> & { name: string; limits?: Record<string, unknown> };
  return (
    <>
      <dl className="facts" aria-label="Platform">
        <dt>Status</dt>
        <dd>{health.status}</dd>
        <dt>Version</dt>
        <dd>{health.version}</dd>
        <dt>Backend</dt>
        <dd>
          <strong data-backend={name}>{name}</strong>
        </dd>
        {Object.entries(details)
          .filter(([, v]) => v !== null && typeof v !== 'object')
          .map(([k, v]) => (
            <Fact key={k} k={k} v={String(v)} />
          ))}
        <dt>Database</dt>
        <dd>{health.database.kind}</dd>
        <dt>Uptime</dt>
        <dd>{Math.round(health.uptime_s / 60)} min</dd>
      </dl>
      {limits && (
        <>
          <h3>Tier limits on this backend</h3>
          <p className="muted small">{String(limits.note ?? '')}</p>
          <table className="mini">
            <thead>
              <tr>
                <th scope="col">Tier</th>
                <th scope="col">Memory</th>
                <th scope="col">CPUs</th>
              </tr>
            </thead>
            <tbody>
              {meta.tiers.map((t) => (
                <tr key={t.tier}>
                  <td>{t.tier}</td>
                  <td>{memory(t.memory_mb)}</td>
                  <td>{t.cpus}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <h3>Workspaces by status</h3>
      {Object.keys(health.workspaces).length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <ul className="counts">
          {Object.entries(health.workspaces).map(([s, n]) => (
            <li key={s}>
              <StatusBadge status={s as Status} /> {n}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function ClusterSection({ cluster }: { cluster: ClusterInfo }) {
  const now = useNow(5000);
  return (
    <>
      <dl className="facts" aria-label="Cluster">
        <dt>This replica</dt>
        <dd>
          <code>{cluster.this}</code>
        </dd>
        <dt>Leader</dt>
        <dd>
          {cluster.leader ? <code>{cluster.leader}</code> : <span className="muted">none right now (taken over within {cluster.lease_ttl_s} s)</span>}
        </dd>
      </dl>
      <h3>Replicas</h3>
      <p className="muted small">Seen in the last {cluster.lease_ttl_s} s. The leader runs the reconciler; every replica serves the API.</p>
      <div className="table-scroll">
        <table className="mini replicas" aria-label="Replicas">
          <thead>
            <tr>
              <th scope="col">Replica</th>
              <th scope="col">Host</th>
              <th scope="col">PID</th>
              <th scope="col">Started</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {cluster.replicas.map((r) => (
              <tr key={r.id} data-replica={r.id}>
                <td>
                  <code title={r.url ?? undefined}>{r.id}</code>
                  {r.id === cluster.this && <span className="badge tone-busy marker">this</span>}
                  {r.id === cluster.leader && <span className="badge tone-ok marker">leader</span>}
                </td>
                <td>{r.host}</td>
                <td>{r.pid}</td>
                <td>
                  <Ago iso={r.started_at} now={now} />
                </td>
                <td>
                  <Ago iso={r.last_seen} now={now} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function Fact({ k, v }: { k: string; v: string }) {
  return (
    <>
      <dt>{`${k[0].toUpperCase()}${k.slice(1).replaceAll('_', ' ')}`}</dt>
      <dd>{v}</dd>
    </>
  );
}
