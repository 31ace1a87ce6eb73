import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildPlatformImage, PLATFORM_IMAGE } from '../../tools/images/build.js';
import { api, tempDir, waitFor, type Api } from '../support/harness.js';
import { runSeedSteps } from '../support/seed.js';
import { DOCKER_SOCKET, docker, dockerDescribe, removeByPlatformId, TEST_IMAGE_TEMPLATE_ENV } from './support.js';

/**
 * Issue 15, item 2: the platform's own image (images/platform/Dockerfile, built offline by tools/images/build.ts)
 * run as a container with the engine's socket mounted, an admin token, the Docker backend and `--init`. Agents
 * join the platform's user-defined network and are reached by container name; nothing is published on the host.
 * The seed walkthrough runs against it as written (curl authenticates through a .curlrc, the only change).
 */
dockerDescribe(
  'the platform image (ghcr.io/molecule-ai/platform:latest) on the Docker backend',
  () => {
    const suffix = crypto.randomBytes(3).toString('hex');
    const network = `molecule-test-${suffix}`;
    const name = `molecule-platform-${suffix}`;
    const token = crypto.randomBytes(16).toString('hex');
    let home: string;
    let http: Api;
    let port: number;
    let platformId: string | undefined;
    let ws: string;

    beforeAll(async () => {
      await buildPlatformImage(docker);
      await docker.createNetwork({ Name: network, Driver: 'bridge' });
      const socketGid = fs.statSync(DOCKER_SOCKET).gid;
      const c = await docker.createContainer({
        name,
        Image: PLATFORM_IMAGE,
        Env: [
          `MOLECULE_ADMIN_TOKEN=${token}`,
          'CONTAINER_BACKEND=docker',
          `MOLECULE_RUNTIME_IMAGE=${TEST_IMAGE_TEMPLATE_ENV}`,
          `MOLECULE_DOCKER_NETWORK=${network}`,
          'MOLECULE_DOCKER_STOP_TIMEOUT_S=2',
          'HEARTBEAT_INTERVAL_S=2',
        ],
        ExposedPorts: { '8080/tcp': {} },
        HostConfig: {
          Init: true,
          Binds: [`${DOCKER_SOCKET}:/var/run/docker.sock`],
          // The image runs as uid 1000: the socket's group lets it use the engine.
          GroupAdd: [String(socketGid)],
          NetworkMode: network,
          PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
        },
      });
      await c.start();
      const info = await c.inspect();
      port = Number(info.NetworkSettings.Ports['8080/tcp']![0].HostPort);
      http = api(`http://127.0.0.1:${port}`, token);
      const healthy = async () => (await Promise.race([http.call('GET', '/healthz'), sleep(2000)]).catch(() => undefined))?.status === 200;
      await waitFor('the containerised platform to answer /healthz', healthy, 30_000, 250).catch(async (e) => {
        const logs = (await c.logs({ stdout: true, stderr: true, tail: 30 })).toString('utf8');
        throw new Error(`${(e as Error).message}; its log:\n${logs}`);
      });
      platformId = (await http.call('GET', '/healthz')).body.backend.platform_id;
      home = tempDir('curlrc');
      fs.writeFileSync(path.join(home, '.curlrc'), `header = "Authorization: Bearer ${token}"\n`);
    }, 300_000);

    afterAll(async () => {
      const c = docker.getContainer(name);
      await c.remove({ force: true, v: true }).catch(() => undefined);
      if (platformId) await removeByPlatformId(platformId);
      await docker.getNetwork(network).remove().catch(() => undefined);
      if (home) fs.rmSync(home, { recursive: true, force: true });
    });

    it('is built non-root, with a HEALTHCHECK on /healthz, and turns healthy', async () => {
      const image = await docker.getImage(PLATFORM_IMAGE).inspect();
      expect(image.Config.User).toBe('1000:1000');
      expect(image.Config.Healthcheck?.Test?.join(' ')).toContain('/healthz');
      expect(image.Config.Cmd).toEqual(['node', '--enable-source-maps', '/app/dist/main.js']);
      expect((await http.call('GET', '/workspaces', undefined, { authorization: '' })).status).toBe(401);
      await waitFor('the container to be healthy', async () => (await docker.getContainer(name).inspect()).State.Health?.Status === 'healthy', 40_000, 500);
    }, 60_000);

    it('runs the seed walkthrough steps 3, 4, 6 and 7 with an admin token', async () => {
      const run = await runSeedSteps([3, 4, 6, 7], port, { HOME: home });
      expect(run.code, run.stderr).toBe(0);
      const health = JSON.parse(run.stdout.slice(0, run.stdout.indexOf('\nWorkspace ID:')));
      expect(health).toMatchObject({ status: 'ok', backend: { name: 'docker', agent_address: 'network', network }, auth: { admin_token: true } });
      ws = run.stdout.match(/Workspace ID: ([0-9a-f-]{36})/)![1];
      expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toMatch(/\blocal\b/);
    }, 120_000);

    it('reaches the agent by container name on the shared network; nothing is published on the host', async () => {
      const w = (await http.call('GET', `/workspaces/${ws}`)).body;
      expect(w.instance.url).toBe(`http://${w.instance.id}:8000`);
      const info = await docker.getContainer(w.instance.id).inspect();
      expect(Object.keys(info.NetworkSettings.Networks)).toEqual([network]);
      expect(info.HostConfig.PortBindings ?? {}).toEqual({});
      const env = Object.fromEntries(info.Config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      expect(env.PLATFORM_URL).toBe(`http://${name}:8080`);
    });

    it('docker stop: drains, then exits 0 (SIGTERM through docker-init)', async () => {
      expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
      await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 30_000);
      await docker.getContainer(name).stop({ t: 15 });
      const info = await docker.getContainer(name).inspect();
      expect(info.State.ExitCode).toBe(0);
      const logs = (await docker.getContainer(name).logs({ stdout: true, stderr: true })).toString('utf8');
      expect(logs).toMatch(/SIGTERM: draining for up to 10 s/);
    }, 60_000);
  },
  { shuffle: false },
);
