/**
 * `npm run build`: everything `node dist/main.js` needs, into dist/ —
 *   dist/main.js (+ .map)  the platform, bundled by esbuild (tools/build/bundle.mjs); packages stay in node_modules
 *   dist/cli.js (+ .map)   the molecule CLI (bin/molecule.mjs runs it)
 *   dist/agent.mjs         the agent runtime (src/agent/build.ts), which the process backend and the images run
 *   dist/ui/               the web UI (Vite; src/ui/build.ts)
 *
 *   npm run build                 # all of it
 *   npm run build -- --if-stale   # only what is older than its sources (what `npm start` does)
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildAgentBundle } from '../../src/agent/build.js';
import { buildUi, ensureUiBuilt } from '../../src/ui/build.js';
// Plain JavaScript (bin/molecule.mjs and `npm start` use it without TypeScript tooling); types in bundle.d.mts.
import { BUNDLES, buildBundle, isStale } from './bundle.mjs';
import { agentIsStale } from './stale.mjs';

export async function buildAll(opts: { ifStale?: boolean; log?: (s: string) => void } = {}): Promise<string[]> {
  const log = opts.log ?? (() => {});
  const built: string[] = [];
  const timed = async (what: string, fn: () => Promise<unknown>) => {
    const started = Date.now();
    await fn();
    built.push(what);
    log(`built ${what} in ${Date.now() - started} ms`);
  };
  if (!opts.ifStale || agentIsStale()) await timed('dist/agent.mjs', buildAgentBundle);
  for (const name of Object.keys(BUNDLES) as (keyof typeof BUNDLES)[]) {
    if (!opts.ifStale || isStale(name)) await timed(path.relative(process.cwd(), BUNDLES[name].out) || BUNDLES[name].out, () => buildBundle(name));
  }
  if (opts.ifStale) {
    const started = Date.now();
    const ui = await ensureUiBuilt();
    if (ui.built) {
      built.push('dist/ui');
      log(`built dist/ui in ${Date.now() - started} ms`);
    }
  } else await timed('dist/ui', buildUi);
  return built;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const built = await buildAll({ ifStale: process.argv.includes('--if-stale'), log: (s) => process.stdout.write(`${s}\n`) });
  if (!built.length) process.stdout.write('dist/ is up to date\n');
}
