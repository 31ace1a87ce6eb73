import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../src/util/net.js';
import { buildImages, buildPlatformImage } from '../../tools/images/build.js';
import { buildStandIns, canBuildStandIns, NGINX_STANDIN, POSTGRES_STANDIN } from '../../tools/images/services.js';
import { DOCKER_SOCKET, docker, dockerDescribe, removeByPlatformId } from '../docker/support.js';
import { api, ROOT, tempDir, waitFor, type Api } from '../support/harness.js';
import { runSeedSteps } from '../support/seed.js';

/**
 * Issue 15, item 3: `docker-compose up -d` with deploy/docker-compose.yml as written — Postgres, two replicas of
 * the platform image, nginx — then the seed walkthrough against the balancer with the admin token, then one
 * replica stopped (it drains) while the other keeps serving. No registry here: postgres and nginx are this host's
 * own binaries imported as images (tools/images/services.ts), named through the file's MOLECULE_POSTGRES_IMAGE and
 * MOLECULE_NGINX_IMAGE. Needs Debian's docker-compose, a Docker engine, and the postgresql-15 and nginx packages.
 */
const composeVersion = spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' });
const missing = composeVersion.status !== 0 ? 'docker-compose is not installed' : !canBuildStandIns() ? 'this host has no postgresql-15 or nginx to make images of' : '';
if (missing) process.stderr.write(`docker-compose test SKIPPED: ${missing}\n`);

dockerDescribe(
  `deploy/docker-compose.yml${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    if (missing) return void it.skip('needs docker-compose, postgresql-15 and nginx');
    const project = `molecule-test-${crypto.randomBytes(3).toString('hex')}`;
    const token = crypto.randomBytes(24).toString('hex');
    let dir: string;
    let env: Record<string, string>;
    let port: number;
    let http: Api;
    let platformId: string | undefined;

    const compose = (...args: string[]) => {
      const r = spawnSync('docker-compose', ['-p', project, '-f', path.join(ROOT, 'deploy/docker-compose.yml'), '--project-directory', path.join(ROOT, 'deploy'), ...args], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_HOST: `unix://${DOCKER_SOCKET}`, ...env },
        timeout: 240_000,
      });
      if (r.status !== 0) throw new Error(`docker-compose ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
      return r.stdout;
    };

    beforeAll(async () => {
      await Promise.all([buildStandIns(docker), buildPlatformImage(docker)]);
      await buildImages(docker, { platform: false }); // the runtime image, under the name the platform asks for
      dir = tempDir('compose');
      port = await freePort();
      // The .env the README shows, plus this test's own names so it never meets a real deployment on the engine.
      env = {
        MOLECULE_SECRETS_KEY: crypto.randomBytes(32).toString('base64'),
        MOLECULE_ADMIN_TOKEN: token,
        POSTGRES_PASSWORD: crypto.randomBytes(12).toString('hex'),
        DOCKER_GID: String(fs.statSync(DOCKER_SOCKET).gid),
        DOCKER_SOCKET,
        MOLECULE_DOCKER_NETWORK: project,
        MOLECULE_PORT: String(port),
        MOLECULE_POSTGRES_IMAGE: POSTGRES_STANDIN,
        MOLECULE_NGINX_IMAGE: NGINX_STANDIN,
      };
      compose('up', '-d');
      http = api(`http://127.0.0.1:${port}`, token);
      await waitFor('both replicas behind the balancer', async () => {
        const h = await http.call('GET', '/healthz').catch(() => undefined);
        return h?.status === 200 && h.body.cluster.replicas.length === 2;
      }, 90_000, 500);
      platformId = (await http.call('GET', '/healthz')).body.backend.platform_id;
      fs.writeFileSync(path.join(dir, '.curlrc'), `header = "Authorization: Bearer ${token}"\n`);
    }, 400_000);

    afterAll(async () => {
      if (env) {
        try {
          compose('stop', '-t', '15');
        } catch {
          /* shown by the tests */
        }
        // Workspaces outlive the platform (by design); this test's go with it, then the project.
        if (platformId) await removeByPlatformId(platformId);
        try {
          compose('down', '-v');
        } catch {
          /* best effort */
        }
        await docker.getNetwork(project).remove().catch(() => undefined);
      }
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }, 120_000);

    it('runs the seed walkthrough against the balancer, on Postgres, with the admin token', async () => {
      const health = (await http.call('GET', '/healthz')).body;
      expect(health).toMatchObject({ status: 'ok', database: { kind: 'postgres' }, backend: { name: 'docker', agent_address: 'network', network: project }, auth: { admin_token: true } });
      const run = await runSeedSteps([3, 4, 6, 7], port, { HOME: dir });
      expect(run.code, run.stderr).toBe(0);
      const ws = run.stdout.match(/Workspace ID: ([0-9a-f-]{36})/)![1];
      expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toMatch(/\blocal\b/);
      const w = (await http.call('GET', `/workspaces/${ws}`)).body;
      expect(w.instance.url).toBe(`http://${w.instance.id}:8000`);
      const info = await docker.getContainer(w.instance.id).inspect();
      expect(info.Config.Env).toContain('PLATFORM_URL=http://balancer:8080');
    }, 120_000);

    it('keeps serving with one replica stopped (it drains and exits 0)', async () => {
      compose('stop', '-t', '15', 'platform-1');
      const [stopped] = JSON.parse(spawnSync('docker', ['inspect', `${project}_platform-1_1`], { encoding: 'utf8', env: { ...process.env, DOCKER_HOST: `unix://${DOCKER_SOCKET}` } }).stdout || '[{}]');
      if (stopped?.State) expect(stopped.State.ExitCode).toBe(0);
      expect(compose('logs', '--no-color', 'platform-1')).toMatch(/SIGTERM: draining for up to 10 s/);
      const ws = (await http.call('GET', '/workspaces')).body;
      const id = (Array.isArray(ws) ? ws : ws.workspaces ?? ws.items)[0].id;
      for (let i = 0; i < 6; i++) expect((await http.call('GET', `/workspaces/${id}`)).status).toBe(200);
      const asked = await http.call('POST', `/workspaces/${id}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'What is your name?' }] });
      expect(asked.body.result.parts[0].text).toMatch(/fly-worker/);
      // The one left takes over the reconciler within the lease TTL.
      await waitFor('the remaining replica to lead', async () => {
        const c = (await http.call('GET', '/healthz')).body.cluster;
        return c.leader === c.this && c.replicas.length === 1;
      }, 40_000, 500);
    }, 90_000);
  },
  { shuffle: false },
);
