import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { AGENT_PORT } from '../../agent/contract.js';
import {
  ProvisionError,
  type AgentNetwork,
  type InstanceHandle,
  type InstanceSpec,
  type InstanceState,
  type LogOptions,
  type OwnedInstance,
  type Provisioner,
  type AdoptsInstances,
  type HasAgentNetwork,
  type ReportsHealth,
} from '../../core/provisioner.js';
import { LocalProvisioner } from '../shared/local-provisioner.js';
import { Containers } from './containers.js';
import { ContainerDeaths } from './deaths.js';
import type { BackendCallObserver } from '../../core/backend-calls.js';
import { engineClient, statusOf, streamGet } from './engine.js';
import { EngineHealth } from './health.js';
import { LABELS, containerName, ownedBy, volumeName } from './labels.js';
import { demuxLines } from './logs.js';
import { agentNetwork } from './network.js';
import { addressOn, detectPlacement, type Placement } from './placement.js';
import { containerExitReason, hostPort, listState, stateOf, tierOf } from './state.js';

/** The port every runtime image serves A2A on inside the container: the agent contract's. */
export { AGENT_PORT };
export { containerName, loadDockerPlatformId, volumeName } from './labels.js';
export { stateOf } from './state.js';

export interface DockerProvisionerOptions {
  /** The engine's unix socket (from DOCKER_HOST). */
  socketPath: string;
  logger: Logger;
  /** Labels this platform's containers and volumes, so two platforms on one engine never touch each other's. */
  platformId: string;
  /**
   * Network containers join. Default `bridge` on the host (the platform listens for agents on its gateway); in a
   * container, the platform's own user-defined network (see placement.ts).
   */
  network?: string;
  /** MOLECULE_DOCKER_AGENT_ADDRESS: how agents are reached (published port, or container name); default auto. */
  agentAddress?: 'auto' | 'published' | 'network';
  /** Grace period of a stop before the engine kills the agent. Default 5 s. */
  stopTimeoutS?: number;
  /** How long an image pull may take before the start fails. Default 300 s. */
  pullTimeoutS?: number;
  /** How often the health sweep lists this platform's containers. Default 5 s. */
  sweepMs?: number;
  /** The runtime images workspaces will ask for: checked at startup, shown on /healthz, a missing one logged. */
  images?: string[];
  /** Told of every engine request (molecule_backend_call_seconds). */
  onCall?: BackendCallObserver;
}

/**
 * Each workspace is one container on a local Docker engine (or Podman's compatible API): tier limits from the
 * engine's cgroups, a named volume at /workspace, the agent's port published on an ephemeral 127.0.0.1 port.
 * Deaths are learned from the engine's event stream and, as a backstop, a periodic sweep by label.
 * Every decision about an engine answer is made on its HTTP status, never on its message text.
 */
export class DockerProvisioner extends LocalProvisioner implements Provisioner, AdoptsInstances, HasAgentNetwork, ReportsHealth {
  readonly name = 'docker';
  private readonly docker: Docker;
  private placement: Placement;
  private placing: Promise<Placement> | undefined;
  private readonly health: EngineHealth;
  private readonly containers: Containers;
  private readonly deaths: ContainerDeaths;

  constructor(private readonly opts: DockerProvisionerOptions) {
    super();
    this.docker = engineClient(opts.socketPath, opts.onCall);
    this.placement = { mode: opts.agentAddress === 'network' ? 'network' : 'published', network: opts.network ?? 'bridge', why: 'not yet known' };
    this.health = new EngineHealth(this.docker, { socketPath: opts.socketPath, logger: opts.logger, images: opts.images, onReachable: () => this.deaths.follow() });
    this.containers = new Containers(this.docker, this.health, {
      platformId: opts.platformId,
      placement: () => this.placement,
      stopTimeoutS: opts.stopTimeoutS ?? 5,
      pullTimeoutS: opts.pullTimeoutS ?? 300,
      onRemove: (name, containerId) => {
        this.instances.disarm(name);
        this.deaths.forget(containerId);
      },
    });
    this.deaths = new ContainerDeaths(this.docker, this.health, this.containers, this.instances, {
      platformId: opts.platformId,
      logger: opts.logger,
      sweepMs: opts.sweepMs ?? 5000,
    });
  }

  /** Connects to the engine. An engine that does not answer is not fatal: the backend reports it and keeps trying. */
  async init(pingTimeoutMs = 2000): Promise<this> {
    if (await this.health.check(pingTimeoutMs)) await this.place().catch((e) => this.opts.logger.warn({ err: (e as Error).message }, 'docker: could not tell where the platform runs yet; retried on the next start'));
    this.deaths.startSweeping();
    return this;
  }

  /** Where the platform runs relative to the engine (once; retried after a failure). */
  private place(): Promise<Placement> {
    this.placing ??= detectPlacement(this.docker, {
      configured: this.opts.agentAddress ?? 'auto',
      network: this.opts.network,
      log: (msg) => this.opts.logger.info(`docker: ${msg}`),
    }).then(
      (p) => {
        this.placement = p;
        this.opts.logger.info({ mode: p.mode, network: p.network }, `docker: ${p.why}`);
        return p;
      },
      (e) => {
        this.placing = undefined;
        throw this.health.failure(e, 'inspecting the platform\'s own container');
      },
    );
    return this.placing;
  }

  describe(): Record<string, unknown> {
    const { engine, images } = this.health.describe();
    const cpus = this.health.cpus;
    return {
      name: this.name,
      docker_host: `unix://${this.opts.socketPath}`,
      engine,
      network: this.placement.network,
      agent_address: this.placement.mode,
      placement: this.placement.why,
      platform_id: this.opts.platformId,
      images,
      limits: {
        memory: 'HostConfig.Memory (swap off)',
        cpu: 'HostConfig.NanoCpus',
        read_only_root: 'tier 1 (tmpfs /tmp)',
        note: cpus && cpus < 4 ? `tiers asking for more CPUs than the engine's ${cpus} get ${cpus}` : undefined,
      },
    };
  }

  unavailable(): string | null {
    return this.health.unavailable();
  }

  /** Runtime images the engine does not have (as of the last check). */
  missingImages(): string[] {
    return this.health.missingImages();
  }

  async agentNetwork(): Promise<AgentNetwork> {
    const p = await this.place();
    return agentNetwork(this.docker, this.health, p.network, p.self && { host: addressOn(p.network, p.self.name, p.self.ip) });
  }

  /** Always a new container (see LocalProvisioner): whatever ran under this name before is removed first. */
  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const name = containerName(spec.workspaceId);
    const placement = await this.place();
    await this.containers.remove(name);
    this.abortIfUnwanted(spec);
    await this.containers.ensureVolume(name, spec);
    const id = await this.containers.create(name, spec);
    spec.progress?.('container created', { container_id: id.slice(0, 12), image: spec.image });
    this.abortIfUnwanted(spec);
    await this.containers.start(name, id);
    const info = await this.containers.inspect(id);
    const port = hostPort(info);
    if (placement.mode === 'published' ? !port : !info?.State?.Running) {
      const tail = await this.lastLines(id, 5);
      throw new ProvisionError('START_FAILED', `container ${name} stopped right after starting: ${containerExitReason(info?.State ?? {}, spec.tier)}${tail ? `; last output: ${tail}` : ''}`);
    }
    this.instances.arm(name, spec.workspaceId, id);
    if (!this.health.reachable) void this.health.check(1000);
    spec.progress?.('container started', { container_id: id.slice(0, 12), ...(port ? { host_port: port } : { network: placement.network }) });
    return this.containers.handle(name, info!, spec.tier);
  }

  async stop(instanceId: string): Promise<void> {
    const info = await this.containers.inspect(instanceId);
    if (!info) return;
    this.instances.disarm(instanceId);
    await this.containers.stop(instanceId, info.Id);
  }

  async destroy(instanceId: string): Promise<void> {
    await this.containers.remove(instanceId);
    await this.containers.removeVolume(instanceId);
  }

  async inspect(instanceId: string): Promise<InstanceState> {
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await this.containers.inspect(instanceId);
    } catch {
      return { state: 'unknown', reason: this.unavailable() ?? 'the engine did not answer' };
    }
    if (!info) return { state: 'gone', reason: `no container ${instanceId}` };
    return stateOf(info.State, tierOf(info), this.deaths.oomKilled(info.Id));
  }

  async list(): Promise<OwnedInstance[]> {
    const filters = JSON.stringify({ label: [ownedBy(this.opts.platformId)] });
    let containers: Docker.ContainerInfo[];
    let volumes: { Name: string; Labels?: Record<string, string> | null }[];
    try {
      containers = await this.docker.listContainers({ all: true, filters });
      volumes = (await this.docker.listVolumes({ filters })).Volumes ?? [];
    } catch (e) {
      throw this.health.failure(e, 'listing containers');
    }
    const out = new Map<string, OwnedInstance>();
    for (const c of containers) {
      const name = (c.Names?.[0] ?? '').replace(/^\//, '');
      const workspaceId = c.Labels?.[LABELS.workspaceId];
      if (!name || !workspaceId) continue;
      out.set(name, { instanceId: name, workspaceId, state: listState(c.State) });
    }
    // A volume whose container is gone still belongs to its workspace; reconcile removes it once nobody claims it.
    for (const v of volumes) {
      const workspaceId = v.Labels?.[LABELS.workspaceId];
      const instanceId = v.Name.replace(/-data$/, '');
      if (workspaceId && !out.has(instanceId)) out.set(instanceId, { instanceId, workspaceId, state: 'gone' });
    }
    return [...out.values()];
  }

  async *logs(instanceId: string, opts: LogOptions): AsyncIterable<string> {
    const abort = new AbortController();
    const onAbort = () => abort.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let stream: NodeJS.ReadableStream;
    try {
      stream = await streamGet(this.docker, `/containers/${encodeURIComponent(instanceId)}/logs?`, {
        stdout: true,
        stderr: true,
        follow: !!opts.follow,
        tail: String(opts.tail ?? 200),
      }, abort.signal);
    } catch (e) {
      opts.signal?.removeEventListener('abort', onAbort);
      if (statusOf(e) === 404 || abort.signal.aborted) return;
      throw this.health.failure(e, `reading the logs of ${instanceId}`);
    }
    try {
      yield* demuxLines(stream as AsyncIterable<Buffer>);
    } catch (e) {
      if (!abort.signal.aborted) throw e;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      abort.abort();
    }
  }

  /** Containers that survived a platform restart: their deaths come through the same event stream. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    for (const h of handles) {
      const info = await this.containers.inspect(h.instanceId).catch(() => undefined);
      if (info?.State?.Running && info.Config?.Labels?.[LABELS.platformId] === this.opts.platformId) {
        this.instances.arm(h.instanceId, h.workspaceId, info.Id);
        this.opts.logger.info({ instance_id: h.instanceId, container_id: info.Id.slice(0, 12) }, 'adopted running container');
      }
    }
  }

  async close(): Promise<void> {
    this.health.close();
    await this.deaths.close();
  }

  private abortIfUnwanted(spec: InstanceSpec): void {
    if (spec.signal?.aborted) throw new ProvisionError('START_FAILED', `start abandoned: ${String(spec.signal.reason)}`);
  }

  private async lastLines(id: string, n: number): Promise<string> {
    const lines: string[] = [];
    try {
      for await (const l of this.logs(id, { tail: n })) lines.push(l);
    } catch {
      /* best effort */
    }
    return lines.join(' | ').slice(0, 500);
  }
}
