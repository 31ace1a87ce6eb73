import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const agentDir = path.dirname(fileURLToPath(import.meta.url));
const sourceMain = path.join(agentDir, 'main.ts');
/** The bundled agent (`npm run build:agent`, run by `npm start` and the test setup): boots in ~0.2 s instead of ~1.5 s under tsx. */
export const AGENT_BUNDLE = path.resolve(agentDir, '..', '..', 'dist', 'agent.mjs');

/**
 * How to run the built-in agent runtime as a local process (process backend, Fly simulator): the bundle when it
 * is at least as new as every agent source file, otherwise the sources through tsx's loader. Either way with this
 * Node binary and absolute paths, so it works from any working directory.
 */
export function agentCommand(opts: { heapMb?: number } = {}): { command: string; args: string[] } {
  const args: string[] = [];
  if (opts.heapMb) args.push(`--max-old-space-size=${opts.heapMb}`);
  if (bundleIsFresh()) args.push(AGENT_BUNDLE);
  else args.push('--import', tsxLoaderUrl(), sourceMain);
  return { command: process.execPath, args };
}

let fresh: boolean | undefined;
/** Checked once per process: sources do not change under a running platform. */
function bundleIsFresh(): boolean {
  if (fresh !== undefined) return fresh;
  try {
    const built = fs.statSync(AGENT_BUNDLE).mtimeMs;
    fresh = newestSource(agentDir) <= built;
  } catch {
    fresh = false;
  }
  return fresh;
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

let loaderUrl: string | undefined;
function tsxLoaderUrl(): string {
  loaderUrl ??= pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return loaderUrl;
}
