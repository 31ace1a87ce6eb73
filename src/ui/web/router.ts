import { useEffect, useSyncExternalStore } from 'react';

/** Hash routes (/#/workspaces/<id>), so page paths never collide with the API's own paths on the same origin. */
export type Route = { page: 'fleet' } | { page: 'workspace'; id: string } | { page: 'settings' } | { page: 'map' } | { page: 'missing'; path: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  if (path === '/' || path === '/workspaces') return { page: 'fleet' };
  if (path === '/settings') return { page: 'settings' };
  if (path === '/map') return { page: 'map' };
  const m = path.match(/^\/workspaces\/([^/]+)$/);
  if (m) return { page: 'workspace', id: decodeURIComponent(m[1]) };
  return { page: 'missing', path };
}

export const href = {
  fleet: '#/',
  settings: '#/settings',
  map: '#/map',
  workspace: (id: string) => `#/workspaces/${encodeURIComponent(id)}`,
};

export function navigate(to: string): void {
  location.hash = to.replace(/^#/, '');
}

function subscribe(fn: () => void): () => void {
  window.addEventListener('hashchange', fn);
  return () => window.removeEventListener('hashchange', fn);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => location.hash);
  return parseRoute(hash);
}

/** The tab's title names the page, so history, tabs and screen readers tell pages apart. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Molecule` : 'Molecule';
  }, [title]);
}
