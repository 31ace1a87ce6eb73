// Whether dist/ is older than its sources, decided without loading TypeScript tooling (`npm start` runs this on
// every start; only a stale tree pays for tsx and the builders).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BUNDLES, DIST, ROOT, isStale } from './bundle.mjs';

const newest = (dir, filter = () => true) => {
  let n = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    n = Math.max(n, e.isDirectory() ? newest(p, filter) : filter(e.name) ? fs.statSync(p).mtimeMs : 0);
  }
  return n;
};
const mtime = (p) => {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return 0;
  }
};

/** As src/agent/launch.ts decides: the bundle is older than an agent source file. */
export function agentIsStale() {
  const built = mtime(path.join(DIST, 'agent.mjs'));
  return !built || newest(path.join(ROOT, 'src', 'agent'), (n) => n.endsWith('.ts')) > built;
}

/** As src/ui/paths.ts decides: no dist/ui/index.html, or a UI source or the Vite config is newer. */
export function uiIsStale() {
  const built = mtime(path.join(DIST, 'ui', 'index.html'));
  if (!built) return true;
  return Math.max(newest(path.join(ROOT, 'src', 'ui', 'web')), mtime(path.join(ROOT, 'src', 'ui', 'vite.config.ts'))) > built;
}

export function staleParts() {
  const parts = Object.keys(BUNDLES).filter(isStale);
  if (agentIsStale()) parts.push('agent');
  if (uiIsStale()) parts.push('ui');
  return parts;
}

// `npm start`'s prestart: build what is stale (through tsx: the agent and UI builders are TypeScript), else nothing.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const stale = staleParts();
  if (stale.length) {
    process.stdout.write(`dist/ is stale (${stale.join(', ')}): building\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tools', 'build', 'build.ts'), '--if-stale'], { stdio: 'inherit', cwd: ROOT });
    process.exit(r.status ?? 1);
  }
}
