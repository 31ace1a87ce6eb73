import { useEffect, useState } from 'react';
import { api } from './api.js';
import { ErrorNote, StatusBadge } from './bits.js';
import { memory } from './format.js';
import { Secrets } from './Secrets.js';
import { useTitle } from './router.js';
import type { Health, Meta, Status } from './types.js';

export function Settings({ meta }: { meta: Meta }) {
  const [health, setHealth] = useState<Health | null>(null);
  const [error, setError] = useState<string | null>(null);
  useTitle('Settings');
  useEffect(() => {
    api<Health>('GET', '/healthz').then(setHealth, (e: Error) => setError(e.message));
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

function Fact({ k, v }: { k: string; v: string }) {
  return (
    <>
      <dt>{`${k[0].toUpperCase()}${k.slice(1).replaceAll('_', ' ')}`}</dt>
      <dd>{v}</dd>
    </>
  );
}
