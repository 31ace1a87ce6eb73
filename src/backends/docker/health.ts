import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { ProvisionError } from '../../core/provisioner.js';
import { engineFailure, pingEngine } from './engine.js';

interface EngineFacts {
  version?: string;
  apiVersion?: string;
  cpus?: number;
  cgroup?: string;
}

export interface EngineHealthOptions {
  socketPath: string;
  logger: Logger;
  /** Runtime images to look for whenever the engine (re)appears. */
  images?: string[];
  /** Called on every successful check: the event stream reconnects from here after the engine was away. */
  onReachable: () => void;
}

/**
 * Whether the engine answers, and what it is. An unreachable engine is a state of the backend, not an error of
 * one call: every failure that could not reach it flips the backend to unavailable, and a recheck every second
 * flips it back soon after the engine returns, so creates stop answering 503 without waiting for the sweep.
 */
export class EngineHealth {
  private engine: { reachable: boolean; error?: string; checkedAt?: string; facts: EngineFacts } = { reachable: false, facts: {} };
  /** Runtime image → present in the engine, as of the last check. */
  private readonly images = new Map<string, boolean>();
  private recheckTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly docker: Docker,
    private readonly opts: EngineHealthOptions,
  ) {}

  get reachable(): boolean {
    return this.engine.reachable;
  }

  /** CPUs the engine has: a tier asking for more gets this many (the engine refuses more). */
  get cpus(): number | undefined {
    return this.engine.facts.cpus;
  }

  async check(timeoutMs: number): Promise<boolean> {
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
    if (!this.closed) this.opts.onReachable();
    return true;
  }

  unavailable(): string | null {
    if (this.engine.reachable) return null;
    return `the Docker engine at unix://${this.opts.socketPath} is unreachable (${this.engine.error ?? 'not checked yet'}); start it, or point DOCKER_HOST at its socket`;
  }

  /** Turns a dockerode failure into a ProvisionError; an unreachable engine also flips the backend to unavailable. */
  failure(e: unknown, doing: string, code: 'START_FAILED' | 'BACKEND_UNAVAILABLE' = 'BACKEND_UNAVAILABLE'): ProvisionError {
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

  /** The engine and image parts of /healthz. */
  describe(): { engine: Record<string, unknown>; images: Record<string, string> } {
    const f = this.engine.facts;
    return {
      engine: this.engine.reachable
        ? { reachable: true, version: f.version ?? null, api_version: f.apiVersion ?? null, cpus: f.cpus ?? null, cgroup: f.cgroup ?? null }
        : { reachable: false, error: this.unavailable(), checked_at: this.engine.checkedAt ?? null },
      images: Object.fromEntries([...this.images].map(([image, present]) => [image, present ? 'present' : 'missing (npm run build:images)'])),
    };
  }

  missingImages(): string[] {
    return [...this.images].filter(([, present]) => !present).map(([image]) => image);
  }

  /** A container was created from the image, so it is here now; `pulled` also records images nobody asked us to check. */
  imageHere(image: string, pulled = false): void {
    if (pulled || this.images.has(image)) this.images.set(image, true);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.recheckTimer);
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

  private recheckSoon(): void {
    if (this.recheckTimer || this.closed) return;
    this.recheckTimer = setTimeout(async () => {
      const up = await this.check(1000).catch(() => false);
      this.recheckTimer = undefined;
      if (!up) this.recheckSoon();
    }, 1000);
    this.recheckTimer.unref();
  }
}
