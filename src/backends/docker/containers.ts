import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { AGENT_PORT } from '../../agent/contract.js';
import { TIERS, type Tier } from '../../core/types.js';
import { ProvisionError, type InstanceHandle, type InstanceSpec } from '../../core/provisioner.js';
import { engineFailure, statusOf } from './engine.js';
import type { EngineHealth } from './health.js';
import { LABELS, volumeName } from './labels.js';
import type { Placement } from './placement.js';
import { addressOn } from './placement.js';
import { hostPort } from './state.js';

export interface ContainersOptions {
  platformId: string;
  /** Which network containers join and whether their port is published (see placement.ts); read per container. */
  placement: () => Placement;
  stopTimeoutS: number;
  pullTimeoutS: number;
  /** Called before a container is stopped for removal: its death is ours, not news. */
  onRemove: (name: string, containerId: string) => void;
}

/** The engine calls for one workspace's container and volume: create (pulling when needed), stop, remove, inspect. */
export class Containers {
  constructor(
    private readonly docker: Docker,
    private readonly health: EngineHealth,
    private readonly opts: ContainersOptions,
  ) {}

  async inspect(idOrName: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.docker.getContainer(idOrName).inspect();
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw this.health.failure(e, `inspecting container ${idOrName}`);
    }
  }

  async create(name: string, spec: InstanceSpec): Promise<string> {
    const body = this.config(name, spec);
    for (let attempt = 0; ; attempt++) {
      try {
        const c = await this.docker.createContainer(body);
        this.health.imageHere(spec.image);
        return c.id;
      } catch (e) {
        const s = statusOf(e);
        if (s === 404 && attempt === 0) {
          await this.pull(spec);
          this.health.imageHere(spec.image, true);
          continue;
        }
        if (s === 409 && attempt < 2) {
          // The name is taken: a container of this workspace that appeared since we looked (a racing start).
          await this.remove(name);
          continue;
        }
        if (s === 400) throw new ProvisionError('INVALID_CONFIG', `the engine refused the container for image ${spec.image}: ${engineFailure(e).message}`);
        if (s === 404) throw this.imageMissing(spec.image, engineFailure(e).message);
        throw this.health.failure(e, `creating container ${name}`, 'START_FAILED');
      }
    }
  }

  async start(name: string, containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).start();
    } catch (e) {
      if (statusOf(e) !== 304) throw this.health.failure(e, `starting container ${name}`, 'START_FAILED');
    }
  }

  /** Gracefully, for the configured grace period; a stopped or missing container is fine. */
  async stop(name: string, containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).stop({ t: this.opts.stopTimeoutS });
    } catch (e) {
      const s = statusOf(e);
      if (s !== 304 && s !== 404) throw this.health.failure(e, `stopping container ${name}`);
    }
  }

  /** Stops and removes a container, keeping its volume; absent is fine. */
  async remove(name: string): Promise<void> {
    const info = await this.inspect(name);
    if (!info) return;
    this.opts.onRemove(name, info.Id);
    if (info.State?.Running) await this.stop(name, info.Id);
    // 409: removal already in progress; done once the container is gone.
    await this.removeUntilGone(() => this.docker.getContainer(info.Id).remove({ force: true, v: false }), `removing container ${name}`, async () => !(await this.inspect(info.Id)));
  }

  async ensureVolume(name: string, spec: InstanceSpec): Promise<void> {
    try {
      // Creating an existing volume returns it unchanged: a restart keeps its data.
      await this.docker.createVolume({
        Name: volumeName(name),
        Labels: { [LABELS.managed]: 'true', [LABELS.workspaceId]: spec.workspaceId, [LABELS.platformId]: this.opts.platformId },
      });
    } catch (e) {
      throw this.health.failure(e, `creating volume ${volumeName(name)}`, 'START_FAILED');
    }
  }

  async removeVolume(instanceId: string): Promise<void> {
    const vol = volumeName(instanceId);
    // A volume stays "in use" for a moment after its container's removal is acknowledged.
    await this.removeUntilGone(() => this.docker.getVolume(vol).remove(), `removing volume ${vol}`);
  }

  handle(name: string, info: Docker.ContainerInspectInfo, tier: Tier): InstanceHandle {
    const { mode, network } = this.opts.placement();
    const port = hostPort(info) ?? null;
    const net = info.NetworkSettings?.Networks?.[network];
    const { memoryMb, cpus } = TIERS[tier];
    return {
      instanceId: name,
      // On the host: the published port. In a container on the agents' network: the container, by name.
      url: mode === 'published' ? `http://127.0.0.1:${port}` : `http://${addressOn(network, name, net?.IPAddress)}:${AGENT_PORT}`,
      details: {
        container_id: info.Id.slice(0, 12),
        hostname: name,
        ip: net?.IPAddress || null,
        host_port: port,
        image: info.Config?.Image ?? null,
        volume: volumeName(name),
        memory_mb: memoryMb,
        cpus: (info.HostConfig?.NanoCpus ?? cpus * 1e9) / 1e9,
        read_only_root: !!info.HostConfig?.ReadonlyRootfs,
      },
    };
  }

  private config(name: string, spec: InstanceSpec): Docker.ContainerCreateOptions {
    const { memoryMb, cpus } = TIERS[spec.tier];
    const memory = memoryMb * 1024 * 1024;
    const sandboxed = spec.tier === 1;
    const env = { ...spec.env, PORT: String(AGENT_PORT) };
    const { mode, network } = this.opts.placement();
    return {
      name,
      Image: spec.image,
      // The agent registers http://<hostname>:8000; the container's name is the address that belongs to it.
      Hostname: name,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: {
        [LABELS.managed]: 'true',
        [LABELS.workspaceId]: spec.workspaceId,
        [LABELS.platformId]: this.opts.platformId,
        [LABELS.runtime]: spec.runtime,
        [LABELS.tier]: String(spec.tier),
      },
      ExposedPorts: { [`${AGENT_PORT}/tcp`]: {} },
      HostConfig: {
        Init: true,
        Memory: memory,
        // Equal to Memory: no swap on top, so the tier's memory is a hard ceiling.
        MemorySwap: memory,
        NanoCpus: Math.round(Math.min(cpus, this.health.cpus ?? cpus) * 1e9),
        PidsLimit: 1024,
        ReadonlyRootfs: sandboxed,
        Tmpfs: sandboxed ? { '/tmp': 'rw,nosuid,nodev,size=64m' } : undefined,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        // The platform restarts crashed agents itself (backoff, crash-loop detection); the engine must not race it.
        RestartPolicy: { Name: 'no' },
        NetworkMode: network,
        // Published only for a platform on the host; one in a container reaches agents over the network.
        PortBindings: mode === 'published' ? { [`${AGENT_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] } : undefined,
        Mounts: [{ Type: 'volume', Source: volumeName(name), Target: '/workspace' }],
        LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
      },
    };
  }

  /** Runs a removal until it succeeds or the thing is gone (404), waiting out 409 conflicts for up to ~5 s. */
  private async removeUntilGone(remove: () => Promise<unknown>, doing: string, goneMeanwhile?: () => Promise<boolean>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await remove();
        return;
      } catch (e) {
        const s = statusOf(e);
        if (s === 404) return;
        if (s === 409 && attempt < 20) {
          await sleep(250);
          if (goneMeanwhile && (await goneMeanwhile())) return;
          continue;
        }
        throw this.health.failure(e, doing);
      }
    }
  }

  private async pull(spec: InstanceSpec): Promise<void> {
    spec.progress?.('pulling image', { image: spec.image });
    const timeout = AbortSignal.timeout(this.opts.pullTimeoutS * 1000);
    const signal = spec.signal ? AbortSignal.any([spec.signal, timeout]) : timeout;
    try {
      const stream = await this.docker.pull(spec.image, { abortSignal: signal } as object);
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
          const failed = err?.message ?? out?.find((o) => o.error)?.error;
          if (failed) reject(new Error(failed));
          else resolve();
        });
      });
    } catch (e) {
      if (spec.signal?.aborted) throw e;
      // A pull fails inside the engine (registry unreachable, unknown image, denied): the engine still answers.
      if (engineFailure(e).status === null && !timeout.aborted && !(await this.health.check(2000))) throw this.health.failure(e, `pulling ${spec.image}`);
      throw this.imageMissing(spec.image, timeout.aborted ? `no answer within ${this.opts.pullTimeoutS} s` : engineFailure(e).message);
    }
    spec.progress?.('image pulled', { image: spec.image });
  }

  private imageMissing(image: string, why: string): ProvisionError {
    return new ProvisionError(
      'IMAGE_NOT_FOUND',
      `image ${image} is not in the Docker engine and could not be pulled (${why}); build it with \`npm run build:images\` or point MOLECULE_RUNTIME_IMAGE at an image the engine has`,
    );
  }
}
