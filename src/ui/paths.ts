import fs from 'node:fs';
import path from 'node:path';

/** Where the web UI's sources live and where `npm run build:ui` puts the static files the platform serves. */
export const UI_SOURCES = path.resolve(import.meta.dirname, 'web');
export const UI_CONFIG = path.resolve(import.meta.dirname, 'vite.config.ts');
export const UI_DIST = path.resolve(import.meta.dirname, '..', '..', 'dist', 'ui');
export const UI_INDEX = path.join(UI_DIST, 'index.html');

/** True when there is no build, or a source (or the Vite config) changed after it was made. */
export function uiIsStale(): boolean {
  let built: number;
  try {
    built = fs.statSync(UI_INDEX).mtimeMs;
  } catch {
    return true;
  }
  return Math.max(newest(UI_SOURCES), fs.statSync(UI_CONFIG).mtimeMs) > built;
}

function newest(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n = Math.max(n, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return n;
}
