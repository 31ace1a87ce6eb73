import crypto from 'node:crypto';
import net from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerProvisioner, volumeName } from '../../src/backends/docker/index.js';
import { demuxLines } from '../../src/backends/docker/logs.js';
import { ProvisionError, type InstanceEvent, type InstanceSpec } from '../../src/core/provisioner.js';
import type { Tier } from '../../src/core/types.js';
import { waitFor } from '../support/harness.js';
import { agentHealthy, instanceSpec } from '../support/instance.js';
import { DOCKER_SOCKET, docker, dockerDescribe, nodeEval, removeByPlatformId, TEST_IMAGE } from './support.js';

const logger = pino({ level: 'silent' });
const AGENT_TOKEN = 'docker-test-agent-token';

function spec(tier: Tier, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  const base = instanceSpec({ name: 'docker-test', tier, image: TEST_IMAGE, agent: { workspaceTier: String(tier), agentToken: AGENT_TOKEN, region: 'local' } });
  return { ...base, ...overrides };
}

dockerDescribe('Docker backend on a real engine', () => {
  const platformId = `test-${crypto.randomBytes(4).toString('hex')}`;
  let p: DockerProvisioner;
  const events: InstanceEvent[] = [];

  beforeAll(async () => {
    p = await new DockerProvisioner({ socketPath: DOCKER_SOCKET, logger, platformId, stopTimeoutS: 2, sweepMs: 1000 }).init();
    p.watch((e) => events.push(e));
  });
  afterAll(async () => {
    await p?.close();
    await removeByPlatformId(platformId);
  });

  it('applies tier 1: 256 MB without swap, 1 CPU, read-only root with a writable tmpfs /tmp, init, labels, loopback port', async () => {
    const sp = spec(1);
    const h = await p.start(sp);
    const info = await docker.getContainer(h.instanceId).inspect();
    expect(info.Name).toBe(`/ws-${sp.workspaceId.replace(/-/g, '').slice(0, 12)}`);
    expect(info.Config.Hostname).toBe(h.instanceId);
    expect(info.HostConfig.Memory).toBe(256 * 1024 * 1024);
    expect(info.HostConfig.MemorySwap).toBe(256 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(1e9);
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.Tmpfs).toHaveProperty('/tmp');
    expect(info.HostConfig.Init).toBe(true);
    expect(info.HostConfig.RestartPolicy?.Name).toBe('no');
    expect(info.Config.Labels).toMatchObject({ 'molecule.managed': 'true', 'molecule.workspace_id': sp.workspaceId, 'molecule.platform_id': platformId });
    expect(info.HostConfig.PortBindings['8000/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: '' }]);
    expect(info.Mounts).toContainEqual(expect.objectContaining({ Type: 'volume', Name: volumeName(h.instanceId), Destination: '/workspace' }));
    const bound = info.NetworkSettings.Ports['8000/tcp']!;
    expect(bound[0].HostIp).toBe('127.0.0.1');
    expect(h.url).toBe(`http://127.0.0.1:${bound[0].HostPort}`);
    expect(h.details).toMatchObject({ hostname: h.instanceId, memory_mb: 256, cpus: 1, read_only_root: true });
    await waitFor('agent up', () => agentHealthy(h.url), 30_000);

    // Enforced, not just configured: the root filesystem refuses writes, /tmp and /workspace take them.
    const root = await nodeEval(h.instanceId, "try { require('fs').writeFileSync('/etc/x', 'x'); console.log('wrote') } catch (e) { console.log(e.code) }");
    expect(root.out).toBe('EROFS');
    const tmp = await nodeEval(h.instanceId, "require('fs').writeFileSync('/tmp/x', 'x'); require('fs').writeFileSync('/workspace/x', 'x'); console.log('ok')");
    expect(tmp.out).toBe('ok');
    await p.destroy(h.instanceId);
  });

  it('applies tier 3: 2 GB and 2 CPUs (or every CPU the engine has, if fewer)', async () => {
    const cpus = (await docker.info()).NCPU as number;
    const h = await p.start(spec(3));
    const info = await docker.getContainer(h.instanceId).inspect();
    expect(info.HostConfig.Memory).toBe(2048 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(Math.min(2, cpus) * 1e9);
    expect(info.HostConfig.ReadonlyRootfs).toBe(false);
    await p.destroy(h.instanceId);
  });

  it('keeps /workspace across restarts and removes container and volume on destroy', async () => {
    const sp = spec(2);
    const first = await p.start(sp);
    await waitFor('agent up', () => agentHealthy(first.url), 30_000);
    const w = await nodeEval(first.instanceId, "require('fs').writeFileSync('/workspace/notes.txt', 'kept'); console.log(require('fs').statSync('/workspace').uid)");
    expect(w.out).toBe('1000'); // the agent's own user owns its volume
    const firstId = (await docker.getContainer(first.instanceId).inspect()).Id;

    const again = await p.restart(first.instanceId, sp);
    const againId = (await docker.getContainer(again.instanceId).inspect()).Id;
    expect(againId).not.toBe(firstId); // a new container (fresh env and tokens), the same volume
    await waitFor('agent up again', () => agentHealthy(again.url), 30_000);
    expect((await nodeEval(again.instanceId, "console.log(require('fs').readFileSync('/workspace/notes.txt', 'utf8'))")).out).toBe('kept');

    await p.stop(again.instanceId);
    const resumed = await p.resume(again.instanceId, sp);
    await waitFor('agent up after resume', () => agentHealthy(resumed.url), 30_000);
    expect((await nodeEval(resumed.instanceId, "console.log(require('fs').readFileSync('/workspace/notes.txt', 'utf8'))")).out).toBe('kept');

    await p.destroy(resumed.instanceId);
    await expect(docker.getContainer(resumed.instanceId).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await expect(docker.getVolume(volumeName(resumed.instanceId)).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await p.inspect(resumed.instanceId)).state).toBe('gone');
  }, 90_000);

  it('fails a start whose image is missing and cannot be pulled, naming the image', async () => {
    const image = `localhost/molecule-missing-${crypto.randomBytes(3).toString('hex')}:nope`;
    const steps: string[] = [];
    const e = await p.start(spec(2, { image, progress: (s) => steps.push(s) })).catch((x) => x);
    expect(e).toBeInstanceOf(ProvisionError);
    expect(e.code).toBe('IMAGE_NOT_FOUND');
    expect(e.message).toContain(image);
    expect(e.message).toMatch(/npm run build:images/);
    expect(steps).toContain('pulling image');
  });

  it('reports an OOM kill at the tier limit as the reason, with exit code 137', async () => {
    const sp = spec(1);
    const h = await p.start(sp);
    await waitFor('agent up', () => agentHealthy(h.url), 30_000);
    const before = events.length;
    // The test image's hook: SIGUSR2 makes the agent allocate without bound (forwarded by the container's init).
    await docker.getContainer(h.instanceId).kill({ signal: 'SIGUSR2' });
    const ev = await waitFor('an OOM event', async () => events.slice(before).find((e) => e.instanceId === h.instanceId), 60_000);
    expect(ev).toMatchObject({ workspaceId: sp.workspaceId, state: 'failed', exitCode: 137 });
    expect(ev.reason).toMatch(/^OOM: .*tier 1 memory limit \(256 MB/);
    const st = await p.inspect(h.instanceId);
    expect(st).toMatchObject({ state: 'failed', exitCode: 137 });
    expect(st.reason).toMatch(/^OOM/);
    const logs: string[] = [];
    for await (const l of p.logs(h.instanceId, { tail: 20 })) logs.push(l);
    expect(logs.join('\n')).toMatch(/allocating memory until the limit/);
    await p.destroy(h.instanceId);
  }, 90_000);

  it('streams logs from the engine and follows new lines', async () => {
    const sp = spec(2);
    const h = await p.start(sp);
    await waitFor('agent up', () => agentHealthy(h.url), 30_000);
    const abort = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const l of p.logs(h.instanceId, { tail: 0, follow: true, signal: abort.signal })) seen.push(l);
    })();
    const rpc = { jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', messageId: 'm1', parts: [{ kind: 'text', text: 'What is your name?' }] } } };
    // The follow stream attaches in its own time (tail=0 drops what came before): call until a call shows up.
    await waitFor('a call logged', async () => {
      const res = await fetch(h.url!, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${AGENT_TOKEN}` }, body: JSON.stringify(rpc) });
      expect(res.status).toBe(200);
      return seen.some((l) => /a2a call/.test(l));
    }, 10_000, 250);
    expect(seen.some((l) => /agent listening/.test(l))).toBe(false); // tail=0: only what came after
    abort.abort();
    await following;
    await p.destroy(h.instanceId);
  });

  it('lists only this platform’s instances, including a volume whose container is gone', async () => {
    const other = await new DockerProvisioner({ socketPath: DOCKER_SOCKET, logger, platformId: `${platformId}-other` }).init();
    const sp = spec(2);
    const h = await p.start(sp);
    expect((await p.list()).map((o) => o.instanceId)).toContain(h.instanceId);
    expect((await other.list()).map((o) => o.instanceId)).not.toContain(h.instanceId);
    await other.close();
    await docker.getContainer(h.instanceId).remove({ force: true }); // removed behind our back: the volume remains
    const ev = await waitFor('a report', async () => events.find((e) => e.instanceId === h.instanceId), 10_000);
    expect(['failed', 'gone']).toContain(ev.state);
    expect(await p.list()).toContainEqual({ instanceId: h.instanceId, workspaceId: sp.workspaceId, state: 'gone' });
    await p.destroy(h.instanceId);
    expect((await p.list()).map((o) => o.instanceId)).not.toContain(h.instanceId);
  });

  it('offers the network gateway as the address agents reach the platform on', async () => {
    const n = await p.agentNetwork();
    expect(net.isIPv4(n.host)).toBe(true);
    const list = new net.BlockList();
    for (const s of n.subnets) list.addSubnet(s.split('/')[0], Number(s.split('/')[1]));
    expect(list.check(n.host)).toBe(true);
  });
});

describe('Docker backend without an engine', () => {
  it('starts, says the engine is unreachable, and refuses work with BACKEND_UNAVAILABLE', async () => {
    const socket = `/tmp/molecule-no-engine-${process.pid}.sock`;
    const p = await new DockerProvisioner({ socketPath: socket, logger, platformId: 'none' }).init(500);
    try {
      expect(p.unavailable()).toContain(`unix://${socket} is unreachable`);
      expect(p.describe()).toMatchObject({ name: 'docker', engine: { reachable: false } });
      expect((await p.inspect('ws-000000000000')).state).toBe('unknown');
      const e = await p.start(spec(2)).catch((x) => x);
      expect(e).toBeInstanceOf(ProvisionError);
      expect(e.code).toBe('BACKEND_UNAVAILABLE');
    } finally {
      await p.close();
    }
  });
});

describe('engine log stream demultiplexing', () => {
  const frame = (stream: number, text: string) => {
    const payload = Buffer.from(text);
    const h = Buffer.alloc(8);
    h[0] = stream;
    h.writeUInt32BE(payload.length, 4);
    return Buffer.concat([h, payload]);
  };
  async function* chunks(buf: Buffer, sizes: number[]) {
    let at = 0;
    for (const n of sizes) {
      yield buf.subarray(at, at + n);
      at += n;
    }
    if (at < buf.length) yield buf.subarray(at);
  }
  const collect = async (it: AsyncIterable<string>) => {
    const out: string[] = [];
    for await (const l of it) out.push(l);
    return out;
  };

  it('splits frames cut anywhere, keeps each stream’s unfinished line, and flushes the rest at the end', async () => {
    const all = Buffer.concat([frame(1, 'hello wo'), frame(2, 'err line\n'), frame(1, 'rld\nsecond\nthi'), frame(1, 'rd')]);
    for (const sizes of [[all.length], [3], [8, 1, 5, 9], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]) {
      expect(await collect(demuxLines(chunks(all, sizes)))).toEqual(['err line', 'hello world', 'second', 'third']);
    }
  });

  it('passes a TTY container’s plain output through', async () => {
    expect(await collect(demuxLines(chunks(Buffer.from('plain\r\noutput\n'), [4])))).toEqual(['plain', 'output']);
  });
});
