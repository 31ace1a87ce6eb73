import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UI_CONFIG, UI_DIST, uiIsStale } from './paths.js';

/**
 * Builds the web UI into dist/ui. Vite writes into a fresh folder that then replaces the old build, so a
 * running platform never serves a half-written one.
 */
export async function buildUi(): Promise<string> {
  const { build } = await import('vite');
  const staging = `${UI_DIST}.building-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  // Vite and the React plugin read NODE_ENV itself (vitest sets it to "test", which means React's dev build).
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({ configFile: UI_CONFIG, mode: 'production', logLevel: 'warn', build: { outDir: staging, emptyOutDir: true } });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
  const old = `${UI_DIST}.old-${process.pid}`;
  try {
    if (fs.existsSync(UI_DIST)) fs.renameSync(UI_DIST, old);
    fs.renameSync(staging, UI_DIST);
  } catch (e) {
    // Another build (a second test run or npm start in the same tree) swapped its own in first: keep that one.
    fs.rmSync(staging, { recursive: true, force: true });
    if (uiIsStale()) throw e;
  } finally {
    fs.rmSync(old, { recursive: true, force: true });
  }
  return UI_DIST;
}

/** Builds only when the sources are newer than the build (npm start and the test setup call this). */
export async function ensureUiBuilt(): Promise<{ built: boolean; dir: string }> {
  if (!uiIsStale()) return { built: false, dir: UI_DIST };
  return { built: true, dir: await buildUi() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = Date.now();
  const { built, dir } = process.argv.includes('--if-stale') ? await ensureUiBuilt() : { built: true, dir: await buildUi() };
  process.stdout.write(built ? `web UI: built ${dir} in ${Date.now() - started} ms\n` : `web UI: ${dir} is up to date\n`);
}
