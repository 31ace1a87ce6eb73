import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform } from '../../src/platform.js';
import { DOCKER_SOCKET, docker, dockerDescribe, nodeEval, removeByPlatformId, TEST_IMAGE, TEST_IMAGE_TEMPLATE_ENV } from '../docker/support.js';
import { api, FAST_ENV, launchPlatform, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { printPlatformLogOnFailure } from '../support/hooks.js';
import { runSeedSteps } from '../support/seed.js';

const dockerEnv = { CONTAINER_BACKEND: 'docker', DOCKER_HOST: `unix://${DOCKER_SOCKET}`, MOLECULE_RUNTIME_IMAGE: TEST_IMAGE_TEMPLATE_ENV, MOLECULE_DOCKER_STOP_TIMEOUT_S: '2' };

/**
 * The product with CONTAINER_BACKEND=docker on a real engine: `npm start` as its own process, the seed's curl
 * walkthrough, then every lifecycle path with the engine as the witness (docker inspect, exec, kill).
 */
dockerDescribe(
  'docker backend, end to end',
  () => {
    // Made in beforeAll: a suite skipped for want of an engine must leave nothing behind.
    let dataDir: string;
    let platform: PlatformProcess;
    let http: Api;
    let ws: string;
    let platformId: string;

    const get = async (id = ws) => {
      const r = await http.call('GET', `/workspaces/${id}`);
      if (r.status !== 200 && r.status !== 410) throw new Error(`GET /workspaces/${id} → ${r.status} ${r.text}`);
      return r.body;
    };
    const status = async (id = ws) => (await get(id))?.status;
    const container = async (id = ws) => (await get(id)).instance.id as string;
    const containerId = async (id = ws) => (await docker.getContainer(await container(id)).inspect()).Id;
    const events = async (id = ws) => (await http.call('GET', `/workspaces/${id}/events`)).body as any[];
    const ask = (text: string, id = ws) => http.call('POST', `/workspaces/${id}/a2a`, { role: 'user', parts: [{ kind: 'text', text }] });
    const envOf = async (name: string) => {
      const env = (await docker.getContainer(await container()).inspect()).Config.Env;
      return env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
    };

    beforeAll(async () => {
      dataDir = tempDir('e2e-docker');
      platform = await launchPlatform({ dataDir, env: dockerEnv });
      http = api(platform.url);
      platformId = (await http.call('GET', '/healthz')).body.backend.platform_id;
    });

    afterAll(async () => {
      await platform?.stop();
      if (platformId) await removeByPlatformId(platformId);
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });
    printPlatformLogOnFailure(() => platform, 30);

    it('runs the seed walkthrough steps 3, 4, 6 and 7 exactly as written', async () => {
      const run = await runSeedSteps([3, 4, 6, 7], platform.port);
      expect(run.code, run.stderr).toBe(0);
      const health = JSON.parse(run.stdout.slice(0, run.stdout.indexOf('\nWorkspace ID:')));
      expect(health).toMatchObject({ status: 'ok', backend: { name: 'docker', engine: { reachable: true }, selected: 'CONTAINER_BACKEND=docker' } });
      ws = run.stdout.match(/Workspace ID: ([0-9a-f-]{36})/)![1];
      expect(JSON.parse(run.stdout.trim().split('\n').pop()!)).toMatch(/\blocal\b/);
      expect(await status()).toBe('ready');
    }, 120_000);

    it('runs the workspace as a container with the tier 2 limits, its labels, a loopback port and a platform URL it can reach', async () => {
      const w = await get();
      const info = await docker.getContainer(w.instance.id).inspect();
      expect(w.instance.id).toBe(`ws-${ws.replace(/-/g, '').slice(0, 12)}`);
      expect(info.HostConfig.Memory).toBe(512 * 1024 * 1024);
      expect(info.HostConfig.NanoCpus).toBe(1e9);
      expect(info.HostConfig.Init).toBe(true);
      expect(info.Config.Labels).toMatchObject({ 'molecule.managed': 'true', 'molecule.workspace_id': ws });
      expect(w.instance.url).toBe(`http://127.0.0.1:${info.NetworkSettings.Ports['8000/tcp']![0].HostPort}`);
      // Containers cannot reach 127.0.0.1 of the host: they get the bridge gateway, where the platform also listens.
      const platformUrl = (await envOf('PLATFORM_URL'))!;
      const gateway = new URL(platformUrl).hostname;
      expect(gateway).not.toMatch(/^127\./);
      expect(info.NetworkSettings.Networks.bridge.Gateway || gateway).toBe(gateway);
      // The agent registered from inside the container through that address, as its container name.
      const registered = (await events()).find((e) => e.type === 'workspace.step' && e.data.step === 'registered');
      expect(registered.data.agent_url).toBe(`http://${w.instance.id}:8000`);
    });

    it('serves only the agent-facing routes on the bridge listener, and only to the containers’ network', async () => {
      const platformUrl = (await envOf('PLATFORM_URL'))!;
      // From inside the workspace's container, as an agent (or whatever runs in it) would try.
      const probe = async (method: string, path: string, headers: Record<string, string> = {}) => {
        const code = `fetch(${JSON.stringify(platformUrl + path)}, { method: ${JSON.stringify(method)}, headers: ${JSON.stringify({ 'content-type': 'application/json', ...headers })}, body: ${method === 'GET' ? 'undefined' : JSON.stringify(JSON.stringify({ active_tasks: 0, current_task: null, error_rate: 0, uptime_s: 1 }))} }).then(async (r) => console.log(r.status, (await r.json()).code))`;
        return (await nodeEval(await container(), code)).out;
      };
      expect(await probe('GET', '/workspaces')).toBe('404 route_not_found');
      expect(await probe('GET', '/settings/secrets')).toBe('404 route_not_found');
      expect(await probe('POST', '/workspaces')).toBe('404 route_not_found');
      expect(await probe('POST', `/workspaces/${ws}/a2a`)).toBe('404 route_not_found');
      expect(await probe('POST', '/registry/heartbeat')).toBe('401 missing_token');
      expect(await probe('POST', `/workspaces/${ws}/a2a`, { authorization: 'Bearer mws_not-a-token' })).toBe('401 invalid_token');
      // Anything not on the containers' network is refused outright (this host's own address is not on it).
      const fromHost = await api(platformUrl).call('POST', '/registry/heartbeat', {});
      expect(fromHost.status).toBe(403);
      expect(fromHost.body.code).toBe('forbidden');
    });

    it('serves the container logs from the engine, and follows them', async () => {
      const logs = await http.call('GET', `/workspaces/${ws}/logs?tail=50`);
      expect(logs.status).toBe(200);
      expect(logs.text).toMatch(/agent listening/);
      const abort = new AbortController();
      const res = await fetch(`${platform.url}/workspaces/${ws}/logs?tail=0&follow=1`, { signal: abort.signal });
      const reader = res.body!.getReader();
      await ask('What is your role?');
      let seen = '';
      await waitFor('a new log line', async () => {
        seen += new TextDecoder().decode((await reader.read()).value);
        return /a2a call/.test(seen);
      });
      abort.abort();
      expect(seen).not.toMatch(/agent listening/);
    });

    it('keeps /workspace across a restart, which makes a new container, and with it the agent’s tasks', async () => {
      const before = await containerId();
      expect((await nodeEval(await container(), "require('fs').writeFileSync('/workspace/notes.txt', 'still here'); console.log('ok')")).out).toBe('ok');
      // A task left waiting for input (the built-in responder asks which fact) lives in the agent's state dir on the volume.
      const rpc = (method: string, params: unknown) => http.call('POST', `/workspaces/${ws}/a2a`, { jsonrpc: '2.0', id: method, method, params });
      const message = (text: string, taskId?: string) => ({ kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }], ...(taskId ? { taskId } : {}) });
      const task = (await rpc('message/send', { message: message('Tell me a fact'), configuration: { blocking: false } })).body.result;
      expect(task, JSON.stringify(task)).toMatchObject({ kind: 'task' });
      const asked = await waitFor('the task to wait for input', async () => {
        const t = (await rpc('tasks/get', { id: task.id })).body.result;
        return t?.status?.state === 'input-required' && t;
      }, 10_000, 50);
      expect((await nodeEval(await container(), "console.log(require('fs').existsSync('/workspace/.molecule/a2a-tasks.json'))")).out).toBe('true');

      expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(202);
      await waitReady(http, ws, { what: 'ready after restart', until: async () => (await containerId()) !== before, timeoutMs: 60_000 });
      expect((await nodeEval(await container(), "console.log(require('fs').readFileSync('/workspace/notes.txt', 'utf8'))")).out).toBe('still here');
      expect((await rpc('tasks/get', { id: asked.id })).body.result).toMatchObject({ id: asked.id, status: { state: 'input-required' } });
      const answered = (await rpc('message/send', { message: message('your region', asked.id) })).body.result;
      expect(answered).toMatchObject({ id: asked.id, contextId: asked.contextId, status: { state: 'completed' } });
      await expect(docker.getContainer(before).inspect()).rejects.toMatchObject({ statusCode: 404 });
      expect((await ask('What region are you running in?')).body.result.parts[0].text).toMatch(/local/);
    }, 90_000);

    it('applies a changed tier on restart: a new container with the new limits, same volume', async () => {
      const patched = await http.call('PATCH', `/workspaces/${ws}`, { tier: 3 });
      expect(patched.status).toBe(200);
      expect(patched.body.needs_restart).toBe(true);
      const before = await containerId();
      expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(202);
      await waitReady(http, ws, { what: 'ready with the new tier', until: async () => (await containerId()) !== before, timeoutMs: 60_000 });
      const info = await docker.getContainer(await container()).inspect();
      expect(info.HostConfig.Memory).toBe(2048 * 1024 * 1024);
      expect(info.HostConfig.NanoCpus).toBe(Math.min(2, (await docker.info()).NCPU) * 1e9);
      expect((await nodeEval(info.Id, "console.log(require('fs').readFileSync('/workspace/notes.txt', 'utf8'))")).out).toBe('still here');
      expect((await get()).needs_restart).toBe(false);
    }, 90_000);

    it('pauses (container stopped, A2A workspace_not_ready) and resumes', async () => {
      const running = await container();
      expect((await http.call('POST', `/workspaces/${ws}/pause`)).status).toBe(200);
      expect((await docker.getContainer(running).inspect()).State.Running).toBe(false);
      const refused = await ask('hello?');
      expect(refused.status).toBe(200); // a JSON-RPC error: HTTP 200, the reason in error.data
      expect(refused.body.error.data).toMatchObject({ code: 'workspace_not_ready', status: 'paused' });
      expect((await http.call('POST', `/workspaces/${ws}/resume`)).status).toBe(202);
      await waitReady(http, ws, { what: 'ready after resume', timeoutMs: 60_000 });
      expect((await ask('What is your name?')).body.result.parts[0].text).toMatch(/fly-worker/);
    }, 90_000);

    it('notices a container killed from outside, goes offline and restarts it', async () => {
      const victim = await containerId();
      await docker.getContainer(victim).kill({ signal: 'SIGKILL' });
      await waitReady(http, ws, { what: 'offline then ready in a new container', until: async () => (await containerId()) !== victim, timeoutMs: 60_000 });
      const offline = (await events()).filter((e) => e.type === 'workspace.status' && e.data.to === 'offline').pop();
      expect(offline.data.reason).toMatch(/killed \(SIGKILL, exit code 137\)/);
      expect(offline.data.reason).not.toMatch(/OOM/);
      expect((await get()).restart_count).toBeGreaterThanOrEqual(1);
    }, 90_000);

    it('enforces the tier memory limit: an agent allocating past it is OOM-killed, recorded as OOM, and restarted', async () => {
      const r = await http.call('POST', '/workspaces', { name: 'hungry', tier: 1 });
      expect(r.status).toBe(201);
      const id = r.body.id;
      await waitReady(http, id, { what: 'tier 1 workspace ready', timeoutMs: 60_000 });
      const info = await docker.getContainer(await container(id)).inspect();
      expect(info.HostConfig.Memory).toBe(256 * 1024 * 1024);
      expect(info.HostConfig.ReadonlyRootfs).toBe(true);
      // The test image's hook: SIGUSR2 makes the agent allocate without bound.
      await docker.getContainer(info.Id).kill({ signal: 'SIGUSR2' });
      const offline = await waitFor(
        'offline with an OOM reason',
        async () => (await events(id)).find((e) => e.type === 'workspace.status' && e.data.to === 'offline'),
        60_000,
      );
      expect(offline.data.reason).toMatch(/OOM: the kernel killed the agent at the tier 1 memory limit \(256 MB; exit code 137\)/);
      const dead = await docker.getContainer(info.Id).inspect().catch(() => undefined);
      if (dead) expect(dead.State).toMatchObject({ OOMKilled: true, ExitCode: 137 });
      await waitReady(http, id, { what: 'restarted and ready', until: async () => (await containerId(id)) !== info.Id, timeoutMs: 60_000 });
      expect((await events(id)).some((e) => e.type === 'workspace.status' && /automatic restart/.test(e.data.reason))).toBe(true);
      expect((await ask('What is your tier?', id)).status).toBe(200);
      expect((await http.call('DELETE', `/workspaces/${id}`)).status).toBe(202);
    }, 120_000);

    it('adopts running containers after a platform restart and removes orphans', async () => {
      const adopted = await containerId();
      // An orphan: a container (and volume) labelled as this platform's, for a workspace it has never heard of.
      const ghost = crypto.randomUUID();
      const ghostName = `ws-${ghost.replace(/-/g, '').slice(0, 12)}`;
      const labels = { 'molecule.managed': 'true', 'molecule.workspace_id': ghost, 'molecule.platform_id': platformId };
      await docker.createVolume({ Name: `${ghostName}-data`, Labels: labels });
      const orphan = await docker.createContainer({
        name: ghostName,
        Image: TEST_IMAGE,
        Env: [`WORKSPACE_ID=${ghost}`, 'MOLECULE_AGENT_TOKEN=x'],
        Labels: labels,
        HostConfig: { Init: true, Mounts: [{ Type: 'volume', Source: `${ghostName}-data`, Target: '/workspace' }] },
      });
      await orphan.start();

      await platform.stop('SIGTERM');
      expect((await docker.getContainer(adopted).inspect()).State.Running).toBe(true);
      platform = await launchPlatform({ dataDir, port: platform.port, env: dockerEnv });
      http = api(platform.url);
      expect(await status()).toBe('ready');
      expect(await containerId()).toBe(adopted);
      // Reconcile runs right after the API answers; the orphan is gone moments later.
      await waitFor('orphan container removed', () => orphan.inspect().then(() => false, (e) => e.statusCode === 404), 30_000);
      await waitFor('orphan volume removed', () => docker.getVolume(`${ghostName}-data`).inspect().then(() => false, (e) => e.statusCode === 404), 30_000);
      const hb = (await get()).last_heartbeat_at;
      await waitFor('a heartbeat reaches the new platform', async () => (await get()).last_heartbeat_at !== hb, 30_000);
      expect((await ask('What region are you running in?')).status).toBe(200);
      // The adopted container's death is still seen.
      await docker.getContainer(adopted).kill({ signal: 'SIGKILL' });
      await waitReady(http, ws, { what: 'adopted container replaced', until: async () => (await containerId()) !== adopted, timeoutMs: 60_000 });
    }, 120_000);

    it('deletes: container and volume removed, then 410', async () => {
      const name = await container();
      expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(202);
      await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410, 30_000);
      await expect(docker.getContainer(name).inspect()).rejects.toMatchObject({ statusCode: 404 });
      await expect(docker.getVolume(`${name}-data`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    });
  },
  { shuffle: false },
);

dockerDescribe('docker backend failures', () => {
  const logger = pino({ level: 'silent' });

  it('CONTAINER_BACKEND unset: picks the engine that answers and says so on /healthz', async () => {
    const dataDir = tempDir('docker-auto-on');
    const { CONTAINER_BACKEND: _, ...auto } = dockerEnv;
    const p = await startPlatform({ env: { ...FAST_ENV, ...auto, PORT: '0', MOLECULE_DATA_DIR: dataDir }, logger });
    try {
      const backend = (await api(p.url).call('GET', '/healthz')).body.backend;
      expect(backend).toMatchObject({ name: 'docker', engine: { reachable: true } });
      expect(backend.selected).toBe(`auto: a Docker engine answered at unix://${DOCKER_SOCKET}`);
    } finally {
      await p.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('CONTAINER_BACKEND unset: an engine without the runtime image is passed over for processes, saying why', async () => {
    const dataDir = tempDir('docker-auto-noimage');
    const { CONTAINER_BACKEND: _, ...auto } = dockerEnv;
    const image = `localhost/molecule-missing-${crypto.randomBytes(3).toString('hex')}/{runtime}:nope`;
    const p = await startPlatform({ env: { ...FAST_ENV, ...auto, MOLECULE_RUNTIME_IMAGE: image, PORT: '0', MOLECULE_DATA_DIR: dataDir }, logger });
    try {
      const backend = (await api(p.url).call('GET', '/healthz')).body.backend;
      expect(backend.name).toBe('process');
      expect(backend.selected).toContain(`a Docker engine answers at unix://${DOCKER_SOCKET} but lacks the runtime image ${image.replace('{runtime}', 'hermes')}`);
      expect(backend.selected).toContain('npm run build:images');
    } finally {
      await p.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('fails a workspace whose image is missing and cannot be pulled, naming the image', async () => {
    const dataDir = tempDir('docker-missing');
    const image = `localhost/molecule-missing-${crypto.randomBytes(3).toString('hex')}/{runtime}:nope`;
    const p = await startPlatform({ env: { ...FAST_ENV, ...dockerEnv, PORT: '0', MOLECULE_DATA_DIR: dataDir, MOLECULE_RUNTIME_IMAGE: image }, logger });
    try {
      const http = api(p.url);
      const id = (await http.call('POST', '/workspaces', { name: 'no-image' })).body.id;
      const w = await waitFor('failed', async () => {
        const b = (await http.call('GET', `/workspaces/${id}`)).body;
        return b.status === 'failed' && b;
      });
      expect(w.status_reason).toContain(`IMAGE_NOT_FOUND: image ${image.replace('{runtime}', 'hermes')} is not in the Docker engine and could not be pulled`);
    } finally {
      await p.close();
      await removeByPlatformId(fs.readFileSync(`${dataDir}/docker-platform-id`, 'utf8').trim());
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/**
 * A unix-socket relay in front of the real engine that the test can take down and bring back: to the platform,
 * an engine that goes away (restart, crash) and returns.
 */
async function engineRelay() {
  const file = path.join(tempDir('relay'), 'engine.sock');
  const conns = new Set<net.Socket>();
  const serve = () =>
    new Promise<net.Server>((resolve) => {
      const srv = net.createServer((client) => {
        const upstream = net.connect(DOCKER_SOCKET);
        conns.add(client).add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        client.pipe(upstream).pipe(client);
      });
      srv.listen(file, () => resolve(srv));
    });
  let srv: net.Server | undefined = await serve();
  return {
    host: `unix://${file}`,
    async down() {
      const closing = new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
      srv = undefined;
      for (const c of conns) c.destroy();
      conns.clear();
      await closing;
    },
    async up() {
      srv ??= await serve();
    },
    async close() {
      await this.down();
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    },
  };
}

dockerDescribe('docker backend through an engine outage', () => {
  it('answers 503 while the engine is away, keeps the workspace alive through it, and recovers by itself', async () => {
    const relay = await engineRelay();
    const dataDir = tempDir('docker-outage');
    const p = await startPlatform({
      env: { ...FAST_ENV, ...dockerEnv, DOCKER_HOST: relay.host, PORT: '0', MOLECULE_DATA_DIR: dataDir, MOLECULE_CRASH_LOOP_MAX: '100' },
      logger: pino({ level: 'silent' }),
    });
    const platformId = fs.readFileSync(`${dataDir}/docker-platform-id`, 'utf8').trim();
    try {
      const http = api(p.url);
      const id = (await http.call('POST', '/workspaces', { name: 'through-the-outage' })).body.id;
      const ws = async () => (await http.call('GET', `/workspaces/${id}`)).body;
      await waitReady(http, id, { timeoutMs: 60_000 });
      const first = (await ws()).instance.id;

      await relay.down();
      // The agent dies while the engine is away: nothing tells the platform but the silence.
      await docker.getContainer(first).kill({ signal: 'SIGKILL' });
      await waitFor('the engine reported unreachable', async () => (await http.call('GET', '/healthz')).body.backend.engine.reachable === false, 20_000);
      const refused = await http.call('POST', '/workspaces', { name: 'not-now' });
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('backend_unavailable');
      await waitFor('offline, retrying', async () => {
        const evs = (await http.call('GET', `/workspaces/${id}/events`)).body as any[];
        return evs.some((e) => e.type === 'workspace.status' && e.data.to === 'offline' && /BACKEND_UNAVAILABLE/.test(e.data.reason));
      }, 30_000);
      expect((await ws()).status).not.toBe('failed');

      await relay.up();
      await waitReady(http, id, {
        what: 'ready again in a new container',
        until: async (w) => w.instance.id === first && (await docker.getContainer(first).inspect()).State.Running,
        timeoutMs: 60_000,
      });
      await waitFor('/healthz says the engine is back', async () => (await http.call('GET', '/healthz')).body.backend.engine.reachable === true, 5_000);
      expect((await http.call('POST', '/workspaces', { name: 'now-again' })).status).toBe(201);
      // The event stream is back too: a kill is noticed without waiting for heartbeats to go missing.
      const again = (await docker.getContainer(first).inspect()).Id;
      await docker.getContainer(again).kill({ signal: 'SIGKILL' });
      await waitReady(http, id, { what: 'restarted after the kill', until: async () => (await docker.getContainer(first).inspect()).Id !== again, timeoutMs: 30_000 });
    } finally {
      await p.close();
      await relay.close();
      await removeByPlatformId(platformId);
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('docker backend without an engine', () => {
  const logger = pino({ level: 'silent' });
  const noEngine = { DOCKER_HOST: `unix:///tmp/molecule-no-engine-${process.pid}.sock` };

  it('CONTAINER_BACKEND=docker: starts, /healthz says the engine is unreachable, create answers 503', async () => {
    const dataDir = tempDir('docker-down');
    const p = await startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'docker', ...noEngine }, logger });
    try {
      const http = api(p.url);
      const health = (await http.call('GET', '/healthz')).body;
      expect(health.status).toBe('ok');
      expect(health.backend).toMatchObject({ name: 'docker', engine: { reachable: false } });
      expect(health.backend.engine.error).toContain(`${noEngine.DOCKER_HOST} is unreachable`);
      const r = await http.call('POST', '/workspaces', { name: 'nowhere' });
      expect(r.status).toBe(503);
      expect(r.body.code).toBe('backend_unavailable');
      expect(r.body.error).toMatch(/Docker engine at unix:\/\/\/tmp\/molecule-no-engine-\d+\.sock is unreachable/);
      expect((await http.call('GET', '/workspaces')).body).toEqual(expect.not.arrayContaining([expect.objectContaining({ name: 'nowhere' })]));
    } finally {
      await p.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('CONTAINER_BACKEND unset: falls back to the process backend and says why on /healthz', async () => {
    const dataDir = tempDir('docker-auto');
    const env: Record<string, string> = { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, ...noEngine };
    const p = await startPlatform({ env, logger });
    try {
      const backend = (await api(p.url).call('GET', '/healthz')).body.backend;
      expect(backend.name).toBe('process');
      expect(backend.selected).toMatch(/^auto: no Docker engine answered at unix:\/\/\/tmp\/molecule-no-engine/);
    } finally {
      await p.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
