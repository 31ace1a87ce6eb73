import { describe, it } from 'vitest';
import { dockerSocketPath, engineClient, pingEngine } from '../../src/backends/docker/engine.js';
import { demuxLines } from '../../src/backends/docker/logs.js';
import { TEST_IMAGE_TEMPLATE } from '../../tools/images/build.js';

/**
 * The Docker tests run against the engine at DOCKER_HOST (default /var/run/docker.sock); they never start one.
 * Without an engine they skip and say so, unless MOLECULE_REQUIRE_DOCKER=1 (CI), where that is a failure.
 */
export const DOCKER_SOCKET = dockerSocketPath(process.env.DOCKER_HOST);
export const docker = engineClient(DOCKER_SOCKET);
const ping = await pingEngine(docker, 3000);
export const hasDocker = ping.ok;
export const requireDocker = process.env.MOLECULE_REQUIRE_DOCKER === '1';
export const missingDocker = ping.ok
  ? ''
  : `no Docker engine answers at unix://${DOCKER_SOCKET} (${ping.error}); start dockerd and export DOCKER_HOST (README "Docker backend")`;

/** The runtime image with test hooks (images/test), built by the test setup: SIGUSR2 makes the agent allocate memory. */
export const TEST_IMAGE_TEMPLATE_ENV = TEST_IMAGE_TEMPLATE;
export const TEST_IMAGE = TEST_IMAGE_TEMPLATE.replaceAll('{runtime}', 'hermes');

if (!hasDocker && !requireDocker) process.stderr.write(`Docker tests SKIPPED: ${missingDocker}\n`);

/** describe() that runs only with an engine; with MOLECULE_REQUIRE_DOCKER=1 a missing engine fails instead. */
export function dockerDescribe(name: string, fn: () => void, opts: { shuffle?: boolean } = {}): void {
  if (!hasDocker && requireDocker) {
    it(`${name}: a Docker engine answers (MOLECULE_REQUIRE_DOCKER=1)`, () => {
      throw new Error(missingDocker);
    });
    return;
  }
  describe.skipIf(!hasDocker)(`${name}${hasDocker ? '' : ` (skipped: ${missingDocker})`}`, opts, fn);
}

/** Containers and volumes a test platform left behind, by its platform id label. */
export async function removeByPlatformId(platformId: string): Promise<void> {
  const filters = JSON.stringify({ label: [`molecule.platform_id=${platformId}`] });
  for (const c of await docker.listContainers({ all: true, filters })) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  for (const v of (await docker.listVolumes({ filters })).Volumes ?? []) {
    await docker.getVolume(v.Name).remove().catch(() => undefined);
  }
}

/** Runs a command in a container (as `docker exec` does) and returns its exit code and output. */
export async function execIn(container: string, cmd: string[], opts: { user?: string } = {}): Promise<{ code: number | null; out: string }> {
  const exec = await docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, User: opts.user });
  const stream = (await exec.start({ hijack: true, stdin: false })) as NodeJS.ReadableStream;
  const lines: string[] = [];
  for await (const l of demuxLines(stream as AsyncIterable<Buffer>)) lines.push(l);
  const info = await exec.inspect();
  return { code: info.ExitCode, out: lines.join('\n') };
}

/** Node inside the runtime image evaluating `code` (the images have node and nothing else: no shell). */
export const nodeEval = (container: string, code: string) => execIn(container, ['node', '-e', code]);
