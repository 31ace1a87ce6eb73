import { useEffect, useState, type FormEvent } from 'react';
import { ApiFailure, api, fieldErrors } from './api.js';
import { Modal } from './bits.js';
import { memory } from './format.js';
import type { Meta, Workspace } from './types.js';

const FIELDS = ['name', 'role', 'runtime', 'tier', 'region', 'parent_id', 'secrets'] as const;
type Field = (typeof FIELDS)[number];

interface SecretRow {
  key: string;
  value: string;
}

/**
 * The create form. The platform validates; its messages are shown next to the field they are about. With `parent`
 * (a workspace page's "Create child") the parent is chosen already.
 */
export function CreateWorkspace({ meta, onClose, onCreated, parent: preset }: { meta: Meta; onClose: () => void; onCreated: (ws: Workspace) => void; parent?: Workspace }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState('');
  const [runtime, setRuntime] = useState(meta.default_runtime);
  const [tier, setTier] = useState(meta.default_tier);
  const [region, setRegion] = useState('');
  const [parent, setParent] = useState(preset?.id ?? '');
  const [parentQuery, setParentQuery] = useState('');
  const [candidates, setCandidates] = useState<Workspace[]>([]);
  const [secrets, setSecrets] = useState<SecretRow[]>([]);
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [general, setGeneral] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  // Parents come from the server, found by name: the fleet may hold far more workspaces than a list can show.
  useEffect(() => {
    let stale = false;
    const t = setTimeout(() => {
      const q = new URLSearchParams({ limit: '100' });
      if (parentQuery.trim()) q.set('q', parentQuery.trim());
      api<Workspace[]>('GET', `/workspaces?${q}`).then(
        (list) => !stale && setCandidates(list.filter((w) => w.status !== 'removing')),
        () => undefined,
      );
    }, 200);
    return () => {
      stale = true;
      clearTimeout(t);
    };
  }, [parentQuery]);
  const [chosen, setChosen] = useState<Workspace | null>(preset ?? null);
  const parentOptions = chosen && !candidates.some((w) => w.id === chosen.id) ? [chosen, ...candidates] : candidates;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    setGeneral([]);
    const filled = secrets.filter((s) => s.key !== '' || s.value !== '');
    const body: Record<string, unknown> = { name, runtime, tier };
    if (role) body.role = role;
    if (region) body.region = region;
    if (parent) body.parent_id = parent;
    if (filled.length) body.secrets = Object.fromEntries(filled.map((s) => [s.key, s.value]));
    try {
      onCreated(await api<Workspace>('POST', '/workspaces', body));
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 400) {
        const { byField, rest } = fieldErrors(err, FIELDS);
        setErrors(byField);
        setGeneral(rest);
        const first = FIELDS.find((f) => byField[f]);
        if (first) document.getElementById(`create-${first}`)?.focus();
      } else {
        setGeneral([(err as Error).message]);
      }
    } finally {
      setBusy(false);
    }
  };

  const err = (f: Field) =>
    errors[f] ? (
      <p id={`create-${f}-error`} className="field-error" role="alert">
        {errors[f]}
      </p>
    ) : null;
  const a11y = (f: Field) => ({ 'aria-invalid': errors[f] ? true : undefined, 'aria-describedby': errors[f] ? `create-${f}-error` : undefined });
  const regions = meta.backend.regions;

  return (
    <Modal title={preset ? `New child of ${preset.name}` : 'New workspace'} labelId="create-title" onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <div className="field">
          <label htmlFor="create-name">Name</label>
          <input id="create-name" value={name} onChange={(e) => setName(e.target.value)} data-autofocus autoComplete="off" {...a11y('name')} />
          {err('name')}
        </div>
        <div className="field">
          <label htmlFor="create-role">
            Role <span className="muted">(optional)</span>
          </label>
          <textarea id="create-role" rows={2} value={role} onChange={(e) => setRole(e.target.value)} placeholder="What this agent is for" {...a11y('role')} />
          {err('role')}
        </div>
        <div className="row">
          <div className="field">
            <label htmlFor="create-runtime">Runtime</label>
            <select id="create-runtime" value={runtime} onChange={(e) => setRuntime(e.target.value)} {...a11y('runtime')}>
              {meta.runtimes.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
            {err('runtime')}
          </div>
          <div className="field">
            <label htmlFor="create-tier">Tier</label>
            <select id="create-tier" value={tier} onChange={(e) => setTier(Number(e.target.value))} {...a11y('tier')}>
              {meta.tiers.map((t) => (
                <option key={t.tier} value={t.tier}>
                  {`Tier ${t.tier} — ${memory(t.memory_mb)}, ${t.cpus} CPU${t.cpus === 1 ? '' : 's'}`}
                </option>
              ))}
            </select>
            {err('tier')}
          </div>
        </div>
        <div className="row">
          <div className="field">
            <label htmlFor="create-region">Region</label>
            {regions ? (
              <select id="create-region" value={region} onChange={(e) => setRegion(e.target.value)} {...a11y('region')}>
                <option value="">{`Default (${meta.backend.default_region})`}</option>
                {regions.map((r) => (
                  <option key={r.code} value={r.code}>{`${r.code} — ${r.name}`}</option>
                ))}
              </select>
            ) : (
              <input id="create-region" value={region} onChange={(e) => setRegion(e.target.value)} placeholder={`${meta.backend.default_region} (default)`} autoComplete="off" {...a11y('region')} />
            )}
            {err('region')}
          </div>
          <div className="field">
            <label htmlFor="create-parent_id">
              Parent <span className="muted">(optional)</span>
            </label>
            <input
              id="create-parent-search"
              type="search"
              aria-label="Find a parent by name"
              placeholder="Find by name…"
              value={parentQuery}
              onChange={(e) => setParentQuery(e.target.value)}
              autoComplete="off"
            />
            <select
              id="create-parent_id"
              value={parent}
              onChange={(e) => {
                setParent(e.target.value);
                setChosen(parentOptions.find((w) => w.id === e.target.value) ?? null);
              }}
              {...a11y('parent_id')}
            >
              <option value="">None</option>
              {parentOptions.map((w) => (
                <option key={w.id} value={w.id}>
                  {w.name}
                </option>
              ))}
            </select>
            {err('parent_id')}
          </div>
        </div>

        <fieldset className="secrets" aria-describedby="create-secrets-help">
          <legend>Secrets</legend>
          <p id="create-secrets-help" className="muted small">
            Given to the agent as environment variables, stored encrypted. Only their names are shown afterwards.
          </p>
          {secrets.map((s, i) => (
            <div className="row secret-row" key={i}>
              <div className="field">
                <label htmlFor={`create-secret-key-${i}`}>Name</label>
                <input
                  id={`create-secret-key-${i}`}
                  value={s.key}
                  autoComplete="off"
                  spellCheck={false}
                  placeholder="OPENAI_API_KEY"
                  onChange={(e) => setSecrets(secrets.map((x, j) => (j === i ? { ...x, key: e.target.value } : x)))}
                />
              </div>
              <div className="field">
                <label htmlFor={`create-secret-value-${i}`}>Value</label>
                <input
                  id={`create-secret-value-${i}`}
                  type="password"
                  value={s.value}
                  autoComplete="new-password"
                  onChange={(e) => setSecrets(secrets.map((x, j) => (j === i ? { ...x, value: e.target.value } : x)))}
                />
              </div>
              <button type="button" className="quiet remove" aria-label={`Remove secret ${s.key || i + 1}`} onClick={() => setSecrets(secrets.filter((_, j) => j !== i))}>
                Remove
              </button>
            </div>
          ))}
          <button type="button" id="create-secrets" className="quiet" onClick={() => setSecrets([...secrets, { key: '', value: '' }])} {...a11y('secrets')}>
            Add secret
          </button>
          {err('secrets')}
        </fieldset>

        {general.length > 0 && (
          <div className="banner bad" role="alert">
            {general.map((g) => (
              <p key={g}>{g}</p>
            ))}
          </div>
        )}

        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create workspace'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
