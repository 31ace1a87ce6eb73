import { build } from 'esbuild';
import { AGENT_BUNDLE } from './launch.js';
import { fileURLToPath } from 'node:url';

/** Bundles the agent runtime into one ESM file, so each workspace boots without compiling TypeScript. */
export async function buildAgentBundle(): Promise<string> {
  await build({
    entryPoints: [fileURLToPath(new URL('./main.ts', import.meta.url))],
    outfile: AGENT_BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Some dependencies are CommonJS and call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __molecule_require } from 'node:module'; const require = __molecule_require(import.meta.url);" },
    logLevel: 'warning',
  });
  return AGENT_BUNDLE;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await buildAgentBundle();
  process.stdout.write(`agent bundle: ${out}\n`);
}
