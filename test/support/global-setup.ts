import { buildAgentBundle } from '../../src/agent/build.js';
import { dockerSocketPath, engineClient, pingEngine } from '../../src/backends/docker/engine.js';
import { buildImages } from '../../tools/images/build.js';
import { ensureUiBuilt } from '../../src/ui/build.js';
import { buildBundle } from '../../tools/build/bundle.mjs';

/** Every test that starts agents gets the bundled agent (fast boots), built once per run from the current sources. */
export default async function setup(): Promise<void> {
  // The web UI is rebuilt only when its sources changed (a fresh clone has no build yet).
  // The platform and CLI bundles too: platforms launched as processes run `node dist/main.js` (harness.ts).
  await Promise.all([buildAgentBundle(), ensureUiBuilt(), buildBundle('platform'), buildBundle('cli')]);
  await buildDockerTestImages();
}

/** With a Docker engine at DOCKER_HOST, the Docker tests' image is built from the bundle just made (~2 s, cached). */
async function buildDockerTestImages(): Promise<void> {
  let docker;
  try {
    docker = engineClient(dockerSocketPath(process.env.DOCKER_HOST));
  } catch {
    return; // a DOCKER_HOST the backend does not support: the Docker tests say so
  }
  if (!(await pingEngine(docker, 3000)).ok) return;
  await buildImages(docker, { testOnly: true });
}
