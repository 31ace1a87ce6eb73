import { useState, type FormEvent } from 'react';
import { useTitle } from './router.js';

/** Shown when the API answers 401: the platform runs with MOLECULE_ADMIN_TOKEN. */
export function SignIn({ refused, onSubmit }: { refused: boolean; onSubmit: (token: string) => void }) {
  const [token, setTokenText] = useState('');
  useTitle('Sign in');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (token.trim()) onSubmit(token.trim());
  };
  return (
    <section className="signin card" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in</h1>
      <p>
        This platform requires its admin token (<code>MOLECULE_ADMIN_TOKEN</code>). It is kept in this browser tab only, until you
        sign out or close the tab.
      </p>
      <form onSubmit={submit}>
        <div className="field">
          <label htmlFor="admin-token">Admin token</label>
          <input
            id="admin-token"
            type="password"
            autoComplete="current-password"
            autoFocus
            required
            value={token}
            onChange={(e) => setTokenText(e.target.value)}
            aria-invalid={refused || undefined}
            aria-describedby={refused ? 'admin-token-error' : undefined}
          />
          {refused && (
            <p id="admin-token-error" className="field-error" role="alert">
              The platform refused that token.
            </p>
          )}
        </div>
        <button type="submit" className="primary">
          Sign in
        </button>
      </form>
    </section>
  );
}
