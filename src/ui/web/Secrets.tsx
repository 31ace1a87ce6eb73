import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiFailure, api } from './api.js';
import { Ago, ErrorNote } from './bits.js';
import { useNow } from './format.js';
import type { SecretName } from './types.js';

/**
 * Names of the secrets under `base` (/settings/secrets or /workspaces/:id/secrets). Values can be set, never read:
 * the API returns names and times only.
 */
export function Secrets({ base, idPrefix, hint }: { base: string; idPrefix: string; hint: string }) {
  const [items, setItems] = useState<SecretName[] | null>(null);
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [keyError, setKeyError] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const now = useNow(5000);

  const load = useCallback(async () => {
    try {
      setItems(await api<SecretName[]>('GET', base));
    } catch (e) {
      setError((e as Error).message);
    }
  }, [base]);
  useEffect(() => {
    void load();
  }, [load]);

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setKeyError(null);
    setError(null);
    setDone(null);
    try {
      const r = await api<{ key: string; result: string }>('PUT', `${base}/${encodeURIComponent(key)}`, { value });
      setDone(`Secret ${r.key} ${r.result}.`);
      setKey('');
      setValue('');
      await load();
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 400) setKeyError(err.issues.length ? err.issues.map((i) => i.replace(/^params\.key: /, '')).join('; ') : err.message);
      else setError((err as Error).message);
    }
  };

  const remove = async (k: string) => {
    setError(null);
    setDone(null);
    try {
      await api('DELETE', `${base}/${encodeURIComponent(k)}`);
      setDone(`Secret ${k} deleted.`);
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <div className="secrets-panel">
      <p className="muted small">{hint}</p>
      {items === null ? (
        <p className="muted">Loading…</p>
      ) : items.length === 0 ? (
        <p className="muted">No secrets.</p>
      ) : (
        <ul className="secret-list" aria-label="Secret names">
          {items.map((s) => (
            <li key={s.key}>
              <code className="secret-name">{s.key}</code>
              <span className="muted small">
                set <Ago iso={s.updated_at} now={now} />
              </span>
              <button type="button" className="quiet danger" aria-label={`Delete secret ${s.key}`} onClick={() => void remove(s.key)}>
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
      <form className="row secret-form" onSubmit={save}>
        <div className="field">
          <label htmlFor={`${idPrefix}-key`}>Name</label>
          <input
            id={`${idPrefix}-key`}
            value={key}
            required
            autoComplete="off"
            spellCheck={false}
            onChange={(e) => setKey(e.target.value)}
            aria-invalid={keyError ? true : undefined}
            aria-describedby={keyError ? `${idPrefix}-key-error` : undefined}
          />
          {keyError && (
            <p id={`${idPrefix}-key-error`} className="field-error" role="alert">
              {keyError}
            </p>
          )}
        </div>
        <div className="field">
          <label htmlFor={`${idPrefix}-value`}>Value</label>
          <input id={`${idPrefix}-value`} type="password" value={value} autoComplete="new-password" onChange={(e) => setValue(e.target.value)} />
        </div>
        <button type="submit" className="primary">
          Set secret
        </button>
      </form>
      {done && (
        <p className="muted small" role="status">
          {done}
        </p>
      )}
      <ErrorNote error={error} />
    </div>
  );
}
