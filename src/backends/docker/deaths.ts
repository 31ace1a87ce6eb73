import readline from 'node:readline';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import type { Tier } from '../../core/types.js';
import type { InstanceState } from '../../core/provisioner.js';
import type { InstanceWatch } from '../shared/instance-watch.js';
import type { Containers } from './containers.js';
import { streamGet } from './engine.js';
import type { EngineHealth } from './health.js';
import { LABELS, ownedBy } from './labels.js';
import { containerExitReason, stateOf, tierOf, type ContainerState } from './state.js';

export interface ContainerDeathsOptions {
  platformId: string;
  logger: Logger;
  sweepMs: number;
}

type EngineEvent = { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };

/**
 * Learns of containers that die on their own. The engine's event stream tells within milliseconds; a periodic
 * sweep (one list by label) catches what the stream missed while it was down, notices the engine going away or
 * coming back, and reconnects the stream. Which deaths are news is the InstanceWatch's call.
 */
export class ContainerDeaths {
  /** The engine's `oom` event is the only OOM sign left when the container is removed before we inspect it. */
  private readonly oomSeen = new Set<string>();
  private eventsAbort: AbortController | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly docker: Docker,
    private readonly health: EngineHealth,
    private readonly containers: Containers,
    private readonly watch: InstanceWatch,
    private readonly opts: ContainerDeathsOptions,
  ) {}

  startSweeping(): void {
    this.sweepTimer = setInterval(() => void this.sweep(), this.opts.sweepMs);
    this.sweepTimer.unref();
  }

  /** Called whenever the engine answers: a stream lost with the engine comes back with it. */
  follow(): void {
    if (!this.eventsAbort && !this.closed) void this.followEvents();
  }

  oomKilled(containerId: string): boolean {
    return this.oomSeen.has(containerId);
  }

  /** For a container we remove: its OOM can no longer matter, and the set would otherwise only grow. */
  forget(containerId: string): void {
    this.oomSeen.delete(containerId);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.eventsAbort?.abort();
    await this.sweeping;
  }

  private async followEvents(): Promise<void> {
    const abort = new AbortController();
    this.eventsAbort = abort;
    try {
      const stream = await streamGet(this.docker, '/events?', {
        filters: JSON.stringify({ type: ['container'], event: ['die', 'oom', 'destroy'], label: [ownedBy(this.opts.platformId)] }),
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

  private async onEngineEvent(ev: EngineEvent): Promise<void> {
    const action = ev.Action ?? ev.status;
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    if (action === 'oom') {
      this.oomSeen.add(id);
      return;
    }
    const name = ev.Actor?.Attributes?.name;
    if (!name || !this.watch.isNews(name, id)) return;
    const info = await this.containers.inspect(id).catch(() => undefined);
    if (info?.State?.Running) return;
    if (info) return this.report(name, id, stateOf(info.State, tierOf(info), this.oomSeen.has(id)));
    // Removed already: the event's attributes are all that is left.
    const exitCode = Number(ev.Actor?.Attributes?.exitCode);
    const state: ContainerState = { Status: 'exited', ExitCode: Number.isFinite(exitCode) ? exitCode : undefined };
    const tier = (Number(ev.Actor?.Attributes?.[LABELS.tier]) as Tier) || 2;
    this.report(name, id, { state: 'gone', reason: `container ${name} was removed (${containerExitReason(state, tier, this.oomSeen.has(id))})` });
  }

  private report(name: string, containerId: string, s: InstanceState): void {
    if (this.watch.report(name, containerId, s)) this.opts.logger.info({ instance_id: name, state: s.state, reason: s.reason }, 'container stopped on its own');
  }

  private sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      if (this.closed) return;
      if (!(await this.health.check(2000))) return;
      let containers: Docker.ContainerInfo[];
      try {
        containers = await this.docker.listContainers({ all: true, filters: JSON.stringify({ label: [ownedBy(this.opts.platformId)] }) });
      } catch (e) {
        this.health.failure(e, 'listing containers');
        return;
      }
      const byId = new Map(containers.map((c) => [c.Id, c]));
      for (const { instanceId: name, incarnation: id } of this.watch.watched()) {
        const c = byId.get(String(id));
        if (c?.State === 'running') continue;
        const info = c ? await this.containers.inspect(c.Id).catch(() => undefined) : undefined;
        if (info?.State?.Running) continue;
        this.report(name, String(id), info ? stateOf(info.State, tierOf(info), this.oomSeen.has(info.Id)) : { state: 'gone', reason: `container ${name} no longer exists` });
      }
    })()
      .catch((e) => this.opts.logger.warn({ err: e }, 'Docker health sweep failed'))
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }
}
