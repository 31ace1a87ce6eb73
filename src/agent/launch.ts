import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * How to run the built-in agent runtime as a local process (process backend, Fly simulator).
 * Uses this Node binary and tsx's loader by absolute path, so it works from any working directory.
 */
export function agentCommand(opts: { heapMb?: number } = {}): { command: string; args: string[] } {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const args: string[] = [];
  if (opts.heapMb) args.push(`--max-old-space-size=${opts.heapMb}`);
  args.push('--import', tsxLoaderUrl(), main);
  return { command: process.execPath, args };
}

let loaderUrl: string | undefined;
function tsxLoaderUrl(): string {
  loaderUrl ??= pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return loaderUrl;
}
