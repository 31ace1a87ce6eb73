import { lazy, Suspense, useCallback, useEffect, useState, type MouseEvent } from 'react';
import { ApiFailure, api, authEvents, getToken, setToken } from './api.js';
import { ViewBoundary } from './bits.js';
import { Fleet } from './Fleet.js';
import { live, useLiveState } from './live.js';
import { href, useRoute, type Route } from './router.js';
import { Settings } from './Settings.js';
import { SignIn } from './SignIn.js';
import type { Meta } from './types.js';
import { WorkspaceDetail } from './WorkspaceDetail.js';

// The map brings React Flow and a layout library: loaded when first opened, so the fleet page stays small.
const TeamMap = lazy(() => import('./TeamMap.js'));

type Auth = 'checking' | 'ok' | 'needed' | 'refused';

export function App() {
  const route = useRoute();
  const [meta, setMeta] = useState<Meta | null>(null);
  const [auth, setAuth] = useState<Auth>('checking');
  const [problem, setProblem] = useState<string | null>(null);

  // /meta is the first call: it tells whether the API wants a token, and what the create form may offer.
  const load = useCallback(async () => {
    try {
      setMeta(await api<Meta>('GET', '/meta'));
      setProblem(null);
      setAuth('ok');
      live.connect();
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 401) return;
      setProblem(`The platform did not answer: ${(e as Error).message}`);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    const refused = () => {
      setAuth(getToken() ? 'refused' : 'needed');
      setToken(null);
      live.disconnect();
    };
    authEvents.addEventListener('unauthorized', refused);
    return () => authEvents.removeEventListener('unauthorized', refused);
  }, []);

  const signIn = (token: string) => {
    setToken(token);
    void load();
  };
  const signOut = () => {
    setToken(null);
    live.disconnect();
    setAuth('needed');
    setMeta(null);
  };

  return (
    <>
      <a className="skip" href="#main" onClick={skipToMain}>
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href={href.fleet}>
          <img src="/favicon.svg" alt="" width="22" height="22" />
          Molecule
        </a>
        {auth === 'ok' && (
          <nav aria-label="Main">
            <a href={href.fleet} aria-current={route.page === 'fleet' || route.page === 'workspace' ? 'page' : undefined}>
              Workspaces
            </a>
            <a href={href.map} aria-current={route.page === 'map' ? 'page' : undefined}>
              Team map
            </a>
            <a href={href.settings} aria-current={route.page === 'settings' ? 'page' : undefined}>
              Settings
            </a>
          </nav>
        )}
        <div className="topbar-end">
          {auth === 'ok' && <LiveBadge />}
          {auth === 'ok' && getToken() && (
            <button type="button" className="quiet" onClick={signOut}>
              Sign out
            </button>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {problem && (
          <p className="banner bad" role="alert">
            {problem}{' '}
            <button type="button" onClick={() => void load()}>
              Try again
            </button>
          </p>
        )}
        {(auth === 'needed' || auth === 'refused') && <SignIn refused={auth === 'refused'} onSubmit={signIn} />}
        {auth === 'checking' && !problem && <p className="muted">Loading…</p>}
        {auth === 'ok' && meta && <ViewBoundary key={location.hash}>{page(route, meta)}</ViewBoundary>}
      </main>
    </>
  );
}

function page(route: Route, meta: Meta) {
  switch (route.page) {
    case 'fleet':
      return <Fleet meta={meta} />;
    case 'workspace':
      return <WorkspaceDetail key={route.id} id={route.id} meta={meta} />;
    case 'settings':
      return <Settings meta={meta} />;
    case 'map':
      return (
        <Suspense fallback={<p className="muted">Loading the map…</p>}>
          <TeamMap />
        </Suspense>
      );
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            There is no page at <code>{route.path}</code>. <a href={href.fleet}>Go to the workspaces</a>.
          </p>
        </section>
      );
  }
}

/** Hash links to an id would change the route; move focus to the content instead. */
function skipToMain(e: MouseEvent) {
  e.preventDefault();
  document.getElementById('main')?.focus();
}

function LiveBadge() {
  const state = useLiveState();
  const text = state === 'live' ? 'Live' : state === 'connecting' ? 'Connecting…' : 'Reconnecting…';
  return (
    <span className={`live live-${state}`} role="status" title="Live updates over /ws">
      <span className="dot" aria-hidden="true" />
      {text}
    </span>
  );
}
