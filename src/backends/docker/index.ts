import os from 'node:os';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { TIERS, type Tier } from '../../core/types.js';
import {
  ProvisionError,
  type AgentNetwork,
  type InstanceEvent,
  type InstanceHandle,
  type InstanceSpec,
  type InstanceState,
  type LogOptions,
  type OwnedInstance,
  type Provisioner,
} from '../provisioner.js';
import { instanceName, loadPlatformId } from '../naming.js';
import { engineClient, engineFailure, pingEngine, statusOf } from './engine.js';
import { demuxLines } from './logs.js';
import { AGENT_PORT } from '../../agent/contract.js';

const LABELS = {
  managed: 'molecule.managed',
  workspaceId: 'molecule.workspace_id',
  platformId: 'molecule.platform_id',
  runtime: 'molecule.runtime',
  tier: 'molecule.tier',
} as const;

/** The port every runtime image serves A2A on inside the container: the agent contract's. */
export { AGENT_PORT };

export interface DockerProvisionerOptions {
  /** The engine's unix socket (from DOCKER_HOST). */
  socketPath: string;
  logger: Logger;
  /** Labels this platform's containers and volumes, so two platforms on one engine never touch each other's. */
  platformId: string;
  /** Network containers join; the platform listens for agents on its gateway. Default `bridge`. */
  network?: string;
  /** Grace period of a stop before the engine kills the agent. Default 5 s. */
  stopTimeoutS?: number;
  /** How long an image pull may take before the start fails. Default 300 s. */
  pullTimeoutS?: number;
  /** How often the health sweep lists this platform's containers. Default 5 s. */
  sweepMs?: number;
  /** The runtime images workspaces will ask for: checked at startup, shown on /healthz, a missing one logged. */
  images?: string[];
}

/** `ws-<first 12 hex of the workspace id>`: the container's name (its instance id) and hostname. */
export const containerName = instanceName;

/** The workspace's named volume, mounted at /workspace; it outlives restarts and goes with the workspace. */
export function volumeName(instanceId: string): string {
  return `${instanceId}-data`;
}

/** This platform's id on the engine (label `molecule.platform_id`), kept in `<dataDir>/docker-platform-id`. */
export function loadDockerPlatformId(dataDir: string): string {
  return loadPlatformId(dataDir, 'docker-platform-id');
}

interface EngineFacts {
  version?: string;
  apiVersion?: string;
  cpus?: number;
  cgroup?: string;
}

type ContainerState = {
  Status?: string;
  Running?: boolean;
  OOMKilled?: boolean;
  ExitCode?: number;
  Error?: string;
};

/**
 * Each workspace is one container on a local Docker engine (or Podman's compatible API): tier limits from the
 * engine's cgroups, a named volume at /workspace, the agent's port published on an ephemeral 127.0.0.1 port.
 * Deaths are learned from the engine's event stream and, as a backstop, a periodic sweep by label.
 * Every decision about an engine answer is made on its HTTP status, never on its message text.
 */
export class DockerProvisioner implements Provisioner {
  readonly name = 'docker';
  readonly defaultRegion = 'local';
  private readonly docker: Docker;
  private readonly network: string;
  private readonly stopTimeoutS: number;
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();
  /** Containers believed running, by instance id; a death is reported once, then forgotten. */
  private readonly watched = new Map<string, { containerId: string; workspaceId: string }>();
  /** Container ids we stop or remove on purpose, with when: their deaths are not news. */
  private readonly expected = new Map<string, number>();
  /** Container ids the engine reported an `oom` event for (the container may be gone before we inspect it). */
  private readonly oomSeen = new Set<string>();
  private engine: { reachable: boolean; error?: string; checkedAt?: string; facts: EngineFacts } = { reachable: false, facts: {} };
  private readonly images = new Map<string, boolean>();
  private eventsAbort: AbortController | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: DockerProvisionerOptions) {
    this.docker = engineClient(opts.socketPath);
    this.network = opts.network ?? 'bridge';
    this.stopTimeoutS = opts.stopTimeoutS ?? 5;
  }

  /** Connects to the engine. An engine that does not answer is not fatal: the backend reports it and keeps trying. */
  async init(pingTimeoutMs = 2000): Promise<this> {
    await this.checkEngine(pingTimeoutMs);
    this.sweepTimer = setInterval(() => void this.sweep(), this.opts.sweepMs ?? 5000);
    this.sweepTimer.unref();
    return this;
  }

  describe(): Record<string, unknown> {
    const f = this.engine.facts;
    return {
      name: this.name,
      docker_host: `unix://${this.opts.socketPath}`,
      engine: this.engine.reachable
        ? { reachable: true, version: f.version ?? null, api_version: f.apiVersion ?? null, cpus: f.cpus ?? null, cgroup: f.cgroup ?? null }
        : { reachable: false, error: this.unavailable(), checked_at: this.engine.checkedAt ?? null },
      network: this.network,
      platform_id: this.opts.platformId,
      images: Object.fromEntries([...this.images].map(([image, present]) => [image, present ? 'present' : 'missing (npm run build:images)'])),
      limits: {
        memory: 'HostConfig.Memory (swap off)',
        cpu: 'HostConfig.NanoCpus',
        read_only_root: 'tier 1 (tmpfs /tmp)',
        note: f.cpus && f.cpus < 4 ? `tiers asking for more CPUs than the engine's ${f.cpus} get ${f.cpus}` : undefined,
      },
    };
  }

  unavailable(): string | null {
    if (this.engine.reachable) return null;
    return `the Docker engine at unix://${this.opts.socketPath} is unreachable (${this.engine.error ?? 'not checked yet'}); start it, or point DOCKER_HOST at its socket`;
  }

  watch(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Where agents in containers reach the platform: the network's gateway, an address of this host that only the
   * host and the containers on that network use. The platform listens there for the agent-facing routes.
   */
  async agentNetwork(): Promise<AgentNetwork> {
    let net: { IPAM?: { Config?: { Subnet?: string; Gateway?: string }[] }; Options?: Record<string, string> };
    try {
      net = await this.docker.getNetwork(this.network).inspect();
    } catch (e) {
      throw this.failure(e, `inspecting network ${this.network}`);
    }
    const configs = (net.IPAM?.Config ?? []).filter((c) => c.Subnet && !c.Subnet.includes(':'));
    const subnets = configs.map((c) => c.Subnet!);
    // The default bridge leaves Gateway out of IPAM. Its gateway is the bridge interface's address on this host:
    // listed by the OS once a container is attached (an idle bridge has no carrier and is left out), and otherwise
    // the subnet's first address, which is what the engine gives the bridge unless configured with --bip.
    let gateway = configs.find((c) => c.Gateway)?.Gateway;
    if (!gateway) {
      const ifname = net.Options?.['com.docker.network.bridge.name'];
      gateway = (ifname ? os.networkInterfaces()[ifname] : undefined)?.find((a) => a.family === 'IPv4')?.address ?? firstHost(subnets[0]);
    }
    if (!gateway || !subnets.length) {
      throw new ProvisionError('BACKEND_UNAVAILABLE', `network ${this.network} has no IPv4 gateway this platform can listen on; set PLATFORM_URL to an address its containers reach`);
    }
    return { host: gateway, subnets };
  }

  // ---- lifecycle -----------------------------------------------------------------------------------------

  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const name = containerName(spec.workspaceId);
    await this.removeContainer(name);
    this.abortIfUnwanted(spec);
    await this.ensureVolume(name, spec);
    const id = await this.createContainer(name, spec);
    spec.progress?.('container created', { container_id: id.slice(0, 12), image: spec.image });
    this.abortIfUnwanted(spec);
    try {
      await this.docker.getContainer(id).start();
    } catch (e) {
      if (statusOf(e) !== 304) throw this.failure(e, `starting container ${name}`, 'START_FAILED');
    }
    const info = await this.inspectContainer(id);
    const port = hostPort(info);
    if (!port) {
      const state = info?.State ?? {};
      const tail = await this.lastLines(id, 5);
      throw new ProvisionError('START_FAILED', `container ${name} stopped right after starting: ${exitReason(state, spec.tier)}${tail ? `; last output: ${tail}` : ''}`);
    }
    this.watched.set(name, { containerId: id, workspaceId: spec.workspaceId });
    if (!this.engine.reachable) void this.checkEngine(1000);
    spec.progress?.('container started', { container_id: id.slice(0, 12), host_port: port });
    return this.handle(name, info!, spec.tier);
  }

  async stop(instanceId: string): Promise<void> {
    const info = await this.inspectContainer(instanceId);
    if (!info) return;
    this.watched.delete(instanceId);
    this.expect(info.Id);
    try {
      await this.docker.getContainer(info.Id).stop({ t: this.stopTimeoutS });
    } catch (e) {
      const s = statusOf(e);
      if (s !== 304 && s !== 404) throw this.failure(e, `stopping container ${instanceId}`);
    }
  }

  /** A new container from the spec: restarts rotate tokens and may change env, secrets, image or tier. The volume stays. */
  async resume(_instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }

  async restart(_instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }

  async destroy(instanceId: string): Promise<void> {
    await this.removeContainer(instanceId);
    const vol = volumeName(instanceId);
    // A volume stays "in use" for a moment after its container's removal is acknowledged.
    await this.removeUntilGone(() => this.docker.getVolume(vol).remove(), `removing volume ${vol}`);
  }

  async inspect(instanceId: string): Promise<InstanceState> {
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await this.inspectContainer(instanceId);
    } catch {
      return { state: 'unknown', reason: this.unavailable() ?? 'the engine did not answer' };
    }
    if (!info) return { state: 'gone', reason: `no container ${instanceId}` };
    return stateOf(info.State, this.tierOf(info), this.oomSeen.has(info.Id));
  }

  async list(): Promise<OwnedInstance[]> {
    const filters = JSON.stringify({ label: [`${LABELS.platformId}=${this.opts.platformId}`] });
    let containers: Docker.ContainerInfo[];
    let volumes: { Name: string; Labels?: Record<string, string> | null }[];
    try {
      containers = await this.docker.listContainers({ all: true, filters });
      volumes = (await this.docker.listVolumes({ filters })).Volumes ?? [];
    } catch (e) {
      throw this.failure(e, 'listing containers');
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
      stream = await this.rawStream(`/containers/${encodeURIComponent(instanceId)}/logs?`, {
        stdout: true,
        stderr: true,
        follow: !!opts.follow,
        tail: String(opts.tail ?? 200),
      }, abort.signal);
    } catch (e) {
      opts.signal?.removeEventListener('abort', onAbort);
      if (statusOf(e) === 404 || abort.signal.aborted) return;
      throw this.failure(e, `reading the logs of ${instanceId}`);
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

  /** Watches containers that survived a platform restart; their deaths come through the same event stream. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    for (const h of handles) {
      const info = await this.inspectContainer(h.instanceId).catch(() => undefined);
      if (info?.State?.Running && info.Config?.Labels?.[LABELS.platformId] === this.opts.platformId) {
        this.watched.set(h.instanceId, { containerId: info.Id, workspaceId: h.workspaceId });
        this.opts.logger.info({ instance_id: h.instanceId, container_id: info.Id.slice(0, 12) }, 'adopted running container');
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.recheckTimer);
    this.eventsAbort?.abort();
    await this.sweeping;
  }

  // ---- containers ----------------------------------------------------------------------------------------

  private async createContainer(name: string, spec: InstanceSpec): Promise<string> {
    const body = this.containerConfig(name, spec);
    for (let attempt = 0; ; attempt++) {
      try {
        const c = await this.docker.createContainer(body);
        if (this.images.has(spec.image)) this.images.set(spec.image, true);
        return c.id;
      } catch (e) {
        const s = statusOf(e);
        if (s === 404 && attempt === 0) {
          await this.pull(spec);
          this.images.set(spec.image, true);
          continue;
        }
        if (s === 409 && attempt < 2) {
          // The name is taken: a container of this workspace that appeared since we looked (a racing start).
          await this.removeContainer(name);
          continue;
        }
        if (s === 400) throw new ProvisionError('INVALID_CONFIG', `the engine refused the container for image ${spec.image}: ${engineFailure(e).message}`);
        if (s === 404) throw this.imageMissing(spec.image, engineFailure(e).message);
        throw this.failure(e, `creating container ${name}`, 'START_FAILED');
      }
    }
  }

  private containerConfig(name: string, spec: InstanceSpec): Docker.ContainerCreateOptions {
    const { memoryMb, cpus } = TIERS[spec.tier];
    const memory = memoryMb * 1024 * 1024;
    const sandboxed = spec.tier === 1;
    const env = { ...spec.env, PORT: String(AGENT_PORT) };
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
        NanoCpus: Math.round(Math.min(cpus, this.engine.facts.cpus ?? cpus) * 1e9),
        PidsLimit: 1024,
        ReadonlyRootfs: sandboxed,
        Tmpfs: sandboxed ? { '/tmp': 'rw,nosuid,nodev,size=64m' } : undefined,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        // The platform restarts crashed agents itself (backoff, crash-loop detection); the engine must not race it.
        RestartPolicy: { Name: 'no' },
        NetworkMode: this.network,
        PortBindings: { [`${AGENT_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
        Mounts: [{ Type: 'volume', Source: volumeName(name), Target: '/workspace' }],
        LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
      },
    };
  }

  private async ensureVolume(name: string, spec: InstanceSpec): Promise<void> {
    try {
      // Creating an existing volume returns it unchanged: a restart keeps its data.
      await this.docker.createVolume({
        Name: volumeName(name),
        Labels: { [LABELS.managed]: 'true', [LABELS.workspaceId]: spec.workspaceId, [LABELS.platformId]: this.opts.platformId },
      });
    } catch (e) {
      throw this.failure(e, `creating volume ${volumeName(name)}`, 'START_FAILED');
    }
  }

  /** Stops (gracefully, briefly) and removes a container; absent is fine. Its death is expected, not news. */
  private async removeContainer(name: string): Promise<void> {
    const info = await this.inspectContainer(name);
    if (!info) return;
    this.watched.delete(name);
    this.expect(info.Id);
    this.oomSeen.delete(info.Id);
    const c = this.docker.getContainer(info.Id);
    if (info.State?.Running) {
      await c.stop({ t: this.stopTimeoutS }).catch((e) => {
        const s = statusOf(e);
        if (s !== 304 && s !== 404) throw this.failure(e, `stopping container ${name}`);
      });
    }
    // 409: removal already in progress; done once the container is gone.
    await this.removeUntilGone(() => c.remove({ force: true, v: false }), `removing container ${name}`, async () => !(await this.inspectContainer(info.Id)));
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
        throw this.failure(e, doing);
      }
    }
  }

  private async pull(spec: InstanceSpec): Promise<void> {
    spec.progress?.('pulling image', { image: spec.image });
    const timeout = AbortSignal.timeout((this.opts.pullTimeoutS ?? 300) * 1000);
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
      if (engineFailure(e).status === null && !timeout.aborted && !(await this.checkEngine(2000))) throw this.failure(e, `pulling ${spec.image}`);
      throw this.imageMissing(spec.image, timeout.aborted ? `no answer within ${this.opts.pullTimeoutS ?? 300} s` : engineFailure(e).message);
    }
    spec.progress?.('image pulled', { image: spec.image });
  }

  private imageMissing(image: string, why: string): ProvisionError {
    return new ProvisionError(
      'IMAGE_NOT_FOUND',
      `image ${image} is not in the Docker engine and could not be pulled (${why}); build it with \`npm run build:images\` or point MOLECULE_RUNTIME_IMAGE at an image the engine has`,
    );
  }

  private abortIfUnwanted(spec: InstanceSpec): void {
    if (spec.signal?.aborted) throw new ProvisionError('START_FAILED', `start abandoned: ${String(spec.signal.reason)}`);
  }

  private async inspectContainer(idOrName: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.docker.getContainer(idOrName).inspect();
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw this.failure(e, `inspecting container ${idOrName}`);
    }
  }

  private handle(name: string, info: Docker.ContainerInspectInfo, tier: Tier): InstanceHandle {
    const port = hostPort(info)!;
    const net = info.NetworkSettings?.Networks?.[this.network];
    const { memoryMb, cpus } = TIERS[tier];
    return {
      instanceId: name,
      url: `http://127.0.0.1:${port}`,
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

  private tierOf(info: Docker.ContainerInspectInfo): Tier {
    const t = Number(info.Config?.Labels?.[LABELS.tier]);
    return (t >= 1 && t <= 4 ? t : 2) as Tier;
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

  private expect(containerId: string): void {
    this.expected.set(containerId, Date.now());
    for (const [id, at] of this.expected) if (Date.now() - at > 120_000) this.expected.delete(id);
  }

  // ---- engine health, events and the sweep ---------------------------------------------------------------

  private async checkEngine(timeoutMs: number): Promise<boolean> {
    const r = await pingEngine(this.docker, timeoutMs);
    const was = this.engine.reachable;
    this.engine = { ...this.engine, reachable: r.ok, error: r.ok ? undefined : r.error, checkedAt: new Date().toISOString() };
    if (!r.ok) {
      if (was) this.opts.logger.warn({ error: r.error }, 'Docker engine unreachable');
      this.recheckSoon();
      return false;
    }
    if (!was || !this.engine.facts.version) {
      try {
        const [v, info] = await Promise.all([this.docker.version(), this.docker.info()]);
        this.engine.facts = { version: v.Version, apiVersion: v.ApiVersion, cpus: info.NCPU, cgroup: info.CgroupVersion ? `v${info.CgroupVersion}` : undefined };
      } catch {
        /* facts are for /healthz only */
      }
      if (!was && this.engine.checkedAt) this.opts.logger.info({ engine: this.engine.facts }, 'Docker engine reachable');
      await this.checkImages();
    }
    if (!this.eventsAbort && !this.closed) void this.followEvents();
    return true;
  }

  /** Runtime images the engine does not have (as of the last check). */
  missingImages(): string[] {
    return [...this.images].filter(([, present]) => !present).map(([image]) => image);
  }

  /** A missing runtime image is not an error until a workspace needs it (it may be pulled), but say so early. */
  private async checkImages(): Promise<void> {
    for (const image of this.opts.images ?? []) {
      const present = await this.docker
        .getImage(image)
        .inspect()
        .then(() => true, () => false);
      if (!present && this.images.get(image) !== false) {
        this.opts.logger.warn(`runtime image ${image} is not in the Docker engine: workspaces will try to pull it; to build it here, run npm run build:images`);
      }
      this.images.set(image, present);
    }
  }

  /** Turns a dockerode failure into a ProvisionError; an unreachable engine also flips the backend to unavailable. */
  private failure(e: unknown, doing: string, code: 'START_FAILED' | 'BACKEND_UNAVAILABLE' = 'BACKEND_UNAVAILABLE'): ProvisionError {
    if (e instanceof ProvisionError) return e;
    const f = engineFailure(e);
    if (f.status === null) {
      if (this.engine.reachable) this.opts.logger.warn({ error: f.message }, 'Docker engine unreachable');
      this.engine = { ...this.engine, reachable: false, error: f.message, checkedAt: new Date().toISOString() };
      this.recheckSoon();
      return new ProvisionError('BACKEND_UNAVAILABLE', `${doing}: ${this.unavailable()}`, true);
    }
    return new ProvisionError(f.status >= 500 ? code : 'START_FAILED', `${doing}: the engine answered ${f.status}: ${f.message}`, f.status >= 500);
  }

  /** While the engine is away, ask every second, so creates stop answering 503 soon after it is back. */
  private recheckSoon(): void {
    if (this.recheckTimer || this.closed) return;
    this.recheckTimer = setTimeout(async () => {
      const up = await this.checkEngine(1000).catch(() => false);
      this.recheckTimer = undefined;
      if (!up) this.recheckSoon();
    }, 1000);
    this.recheckTimer.unref();
  }

  /** The engine's event stream for this platform's containers: deaths reach the core within milliseconds. */
  private async followEvents(): Promise<void> {
    const abort = new AbortController();
    this.eventsAbort = abort;
    try {
      const stream = await this.rawStream('/events?', {
        filters: JSON.stringify({ type: ['container'], event: ['die', 'oom', 'destroy'], label: [`${LABELS.platformId}=${this.opts.platformId}`] }),
      }, abort.signal);
      // readline decodes across chunk boundaries, so a multi-byte character split by the stream stays whole.
      for await (const raw of readline.createInterface({ input: stream as NodeJS.ReadableStream, crlfDelay: Infinity })) {
        const line = raw.trim();
        if (line) this.onEngineEvent(JSON.parse(line)).catch((e) => this.opts.logger.warn({ err: e }, 'handling an engine event failed'));
      }
    } catch (e) {
      if (!abort.signal.aborted) this.opts.logger.debug({ err: (e as Error).message }, 'engine event stream ended');
    } finally {
      if (this.eventsAbort === abort) this.eventsAbort = undefined;
    }
    // The stream ended (engine restarted or went away): the sweep catches what was missed and reconnects.
    if (!this.closed && !abort.signal.aborted) void this.sweep();
  }

  private async onEngineEvent(ev: { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } }): Promise<void> {
    const action = ev.Action ?? ev.status;
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    if (action === 'oom') {
      this.oomSeen.add(id);
      return;
    }
    const name = ev.Actor?.Attributes?.name;
    if (!name || this.watched.get(name)?.containerId !== id) return;
    if (this.expected.has(id)) return;
    const info = await this.inspectContainer(id).catch(() => undefined);
    if (info?.State?.Running) return;
    const exitCode = Number(ev.Actor?.Attributes?.exitCode);
    const state: ContainerState = info?.State ?? { Status: 'exited', ExitCode: Number.isFinite(exitCode) ? exitCode : undefined };
    const tier = info ? this.tierOf(info) : (Number(ev.Actor?.Attributes?.[LABELS.tier]) as Tier) || 2;
    this.report(name, id, info ? stateOf(state, tier, this.oomSeen.has(id)) : { state: 'gone', reason: `container ${name} was removed (${exitReason(state, tier, this.oomSeen.has(id))})` });
  }

  /** Reports a watched container's death once. */
  private report(name: string, containerId: string, s: InstanceState): void {
    const w = this.watched.get(name);
    if (w?.containerId !== containerId || this.expected.has(containerId)) return;
    this.watched.delete(name);
    this.opts.logger.info({ instance_id: name, state: s.state, reason: s.reason }, 'container stopped on its own');
    const ev: InstanceEvent = { workspaceId: w.workspaceId, instanceId: name, state: s.state, reason: s.reason, exitCode: s.exitCode };
    for (const l of this.listeners) l(ev);
  }

  /**
   * The health sweep: one list by label compares the engine with what we believe runs. It catches deaths the event
   * stream missed (engine restart, stream reconnect), notices the engine going away or coming back, and reconnects
   * the event stream.
   */
  private sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      if (this.closed) return;
      if (!(await this.checkEngine(2000))) return;
      let containers: Docker.ContainerInfo[];
      try {
        containers = await this.docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${LABELS.platformId}=${this.opts.platformId}`] }) });
      } catch (e) {
        this.failure(e, 'listing containers');
        return;
      }
      const byId = new Map(containers.map((c) => [c.Id, c]));
      for (const [name, { containerId: id }] of [...this.watched]) {
        const c = byId.get(id);
        if (c?.State === 'running') continue;
        if (this.expected.has(id)) continue;
        const info = c ? await this.inspectContainer(id).catch(() => undefined) : undefined;
        if (info?.State?.Running) continue;
        this.report(name, id, info ? stateOf(info.State, this.tierOf(info), this.oomSeen.has(id)) : { state: 'gone', reason: `container ${name} no longer exists` });
      }
    })()
      .catch((e) => this.opts.logger.warn({ err: e }, 'Docker health sweep failed'))
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  /** A streaming GET on the engine (logs, events), decided on the status code. */
  private rawStream(p: string, options: Record<string, unknown>, signal: AbortSignal): Promise<NodeJS.ReadableStream> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        { path: p, method: 'GET', options, isStream: true, abortSignal: signal, statusCodes: { 200: true, 404: 'not found', 500: 'server error' } } as unknown as Parameters<Docker['modem']['dial']>[0],
        (err, stream) => (err ? reject(err) : resolve(stream as NodeJS.ReadableStream)),
      );
    });
  }
}

/** 172.17.0.0/16 → 172.17.0.1 */
function firstHost(cidr: string | undefined): string | undefined {
  const m = cidr?.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/);
  if (!m) return undefined;
  const bits = Number(m[5]);
  const ip = m.slice(1, 5).reduce((n, o) => n * 256 + Number(o), 0);
  const network = bits === 0 ? 0 : Math.floor(ip / 2 ** (32 - bits)) * 2 ** (32 - bits);
  const first = network + 1;
  return [24, 16, 8, 0].map((shift) => Math.floor(first / 2 ** shift) % 256).join('.');
}

function hostPort(info: Docker.ContainerInspectInfo | undefined): number | null {
  const b = info?.NetworkSettings?.Ports?.[`${AGENT_PORT}/tcp`]?.find((p) => p.HostIp === '127.0.0.1' || p.HostIp === '0.0.0.0' || p.HostIp === '');
  const n = Number(b?.HostPort);
  return Number.isInteger(n) && n > 0 ? n : null;
}

function listState(s: string | undefined): InstanceState['state'] {
  if (s === 'running' || s === 'restarting') return 'running';
  if (s === 'created') return 'starting';
  if (s === 'exited' || s === 'dead' || s === 'paused') return 'stopped';
  return 'unknown';
}

/** The instance state of a container, with a reason a person can act on. */
export function stateOf(s: ContainerState | undefined, tier: Tier, oomEvent = false): InstanceState {
  if (!s) return { state: 'unknown' };
  if (s.Running || s.Status === 'running' || s.Status === 'restarting') return { state: 'running' };
  if (s.Status === 'created') return { state: 'starting' };
  if (s.Status === 'paused') return { state: 'stopped', reason: 'container paused' };
  const oom = !!s.OOMKilled || oomEvent;
  const failed = oom || (s.ExitCode ?? 0) !== 0 || !!s.Error;
  return { state: failed ? 'failed' : 'stopped', reason: exitReason(s, tier, oomEvent), exitCode: s.ExitCode ?? null };
}

export function exitReason(s: ContainerState, tier: Tier, oomEvent = false): string {
  const code = s.ExitCode;
  if (s.OOMKilled || oomEvent) {
    return `OOM: the kernel killed the agent at the tier ${tier} memory limit (${TIERS[tier].memoryMb} MB; exit code ${code ?? 137})`;
  }
  if (s.Error) return `the engine could not run it: ${s.Error}`;
  if (code === 137) return 'killed (SIGKILL, exit code 137)';
  if (code === 143) return 'terminated (SIGTERM, exit code 143)';
  if (code === undefined || code === null) return 'exited';
  return `exited with code ${code}`;
}
