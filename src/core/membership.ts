import crypto from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import type { LeaseStore, ReplicaInfo, ReplicaRegistry } from './ports.js';
import { ConfigError } from './config.js';

/** The lease whose holder runs the reconciler: the one replica that acts on workspaces. */
export const RECONCILER_LEASE = 'reconciler';

export interface MembershipOptions {
  replicas: ReplicaRegistry;
  leases: LeaseStore;
  logger: Logger;
  /** The backend this replica drives; every replica of a cluster must drive the same one. */
  backend: string;
  leaseTtlMs: number;
  /** Tests pass a clock; production uses Date.now. */
  now?: () => number;
  /** Is a process with this pid alive on this host (a replica row left by one killed here)? */
  pidAlive?: (pid: number) => boolean;
  /**
   * The only replica there can be (SQLite: one process owns the file): it takes the lease at once, even from a
   * predecessor killed before it could give the lease up, and checks no peers.
   */
  sole?: boolean;
}

export interface ClusterView {
  this: string;
  leader: string | null;
  lease_ttl_s: number;
  replicas: Array<{ id: string; host: string; pid: number; backend: string; url: string | null; started_at: string; last_seen: string }>;
}

/**
 * This replica's place in the cluster: it announces itself (and keeps `last_seen` fresh), and competes for the
 * reconciler lease. Leadership is a time-bounded lease in the database rather than a Postgres advisory lock, so a
 * replica that is cut off (not only one that died) loses it within the TTL, and the same code runs on SQLite.
 *
 * Timing: the holder renews every TTL/3; the lease it writes lasts TTL minus one follower poll, and followers try
 * every poll, so a killed holder is replaced within the TTL. A holder that cannot renew stops acting when its own
 * view of the lease runs out, measured from before the renewal it last got through.
 */
export class Membership {
  readonly id = `r-${crypto.randomBytes(6).toString('hex')}`;
  readonly host = os.hostname();
  readonly startedAt = new Date().toISOString();
  private url: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /** Local deadline of our lease (epoch ms); 0 when we do not hold it. */
  private heldUntil = 0;
  private leader = false;
  private lastRenewAttempt = 0;
  private readonly listeners = new Set<(leader: boolean) => void>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly o: MembershipOptions) {
    this.now = o.now ?? Date.now;
  }

  get ttlMs(): number {
    return this.o.leaseTtlMs;
  }
  /** How often followers try for the lease. */
  get pollMs(): number {
    return Math.max(50, Math.min(1000, Math.floor(this.o.leaseTtlMs / 5)));
  }
  private get renewMs(): number {
    return Math.max(50, Math.floor(this.o.leaseTtlMs / 3));
  }
  private get leaseMs(): number {
    return this.o.leaseTtlMs - this.pollMs;
  }

  /**
   * Refuses to join a cluster whose live replicas drive another backend, and a second replica of the process
   * backend (its agents are child processes of one host's platform: another replica could neither reach nor
   * manage them). Then announces this replica and makes the first try for the lease.
   */
  async join(url: string | null): Promise<void> {
    this.url = url;
    const live = await this.live();
    // A predecessor on this host that was killed holding the lease (a platform restarted after SIGKILL) need not
    // be waited out: its process is gone.
    const holder = await this.o.leases.holder(RECONCILER_LEASE, this.now());
    const dead = live.find((r) => r.id === holder && this.deadHere(r));
    if (holder && (this.o.sole || dead)) await this.o.leases.release(RECONCILER_LEASE, holder);
    const others = this.o.sole ? [] : live.filter((r) => r.id !== this.id && !this.deadHere(r));
    const foreign = others.find((r) => r.backend !== this.o.backend);
    if (foreign) {
      throw new ConfigError(
        `replica ${foreign.id} (${foreign.host}, pid ${foreign.pid}) on this database drives the ${foreign.backend} backend, this one ${this.o.backend}; ` +
          'every replica of a cluster must use the same CONTAINER_BACKEND',
      );
    }
    if (this.o.backend === 'process' && others.length) {
      const r = others[0]!;
      throw new ConfigError(
        `the process backend runs one replica per database, and replica ${r.id} (${r.host}, pid ${r.pid}) is live on it: its agents are ` +
          'child processes of that platform. Stop it, or run several replicas with CONTAINER_BACKEND=docker (one shared engine) or flyio',
      );
    }
    const now = new Date(this.now()).toISOString();
    await this.o.replicas.announce({ id: this.id, host: this.host, pid: process.pid, backend: this.o.backend, url, startedAt: this.startedAt, lastSeen: now });
    await this.tick();
    if (this.o.backend === 'process' && !this.o.sole) await this.leadOrRefuse();
  }

  /**
   * A process-backend replica must hold the lease: two started at once both pass the check above, but only one
   * can take the lease. A holder that is merely dead (on another host) lets go within the TTL; a live one does not.
   */
  private async leadOrRefuse(): Promise<void> {
    for (let tries = Math.ceil(this.o.leaseTtlMs / this.pollMs) + 1; !this.isLeader() && tries > 0; tries--) {
      await new Promise((r) => setTimeout(r, this.pollMs));
      await this.tick();
    }
    if (this.isLeader()) return;
    const holder = await this.o.leases.holder(RECONCILER_LEASE, this.now());
    const r = (await this.live()).find((x) => x.id === holder);
    await this.leave();
    throw new ConfigError(
      `the process backend runs one replica per database, and replica ${holder ?? '(unknown)'}${r ? ` (${r.host}, pid ${r.pid})` : ''} holds it: its agents are ` +
        'child processes of that platform. Stop it, or run several replicas with CONTAINER_BACKEND=docker (one shared engine) or flyio',
    );
  }

  /** Starts the renew/compete loop. */
  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        void this.tick().finally(loop);
      }, this.pollMs);
      this.timer.unref();
    };
    loop();
  }

  isLeader(): boolean {
    return this.leader && this.now() < this.heldUntil;
  }

  /** Called with true when this replica becomes the leader, false when it stops being one. */
  onLeadership(fn: (leader: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** One round: renew or compete, keep `last_seen` fresh. Never overlaps itself; never throws. */
  tick(): Promise<void> {
    this.ticking ??= this.round().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async round(): Promise<void> {
    const t0 = this.now();
    try {
      // The holder renews every TTL/3; followers try every poll, and only win once the lease expired.
      if (!this.leader || t0 - this.lastRenewAttempt >= this.renewMs) {
        this.lastRenewAttempt = t0;
        const got = await this.o.leases.acquire(RECONCILER_LEASE, this.id, t0, t0 + this.leaseMs);
        if (got) this.heldUntil = t0 + this.leaseMs;
        else this.heldUntil = 0;
      }
      await this.o.replicas.seen(this.id, new Date(t0).toISOString());
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'cluster: could not renew membership; retrying');
    }
    if (this.stopped) return;
    this.setLeader(this.now() < this.heldUntil);
  }

  private setLeader(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.o.logger.info({ replica: this.id }, leader ? 'cluster: this replica holds the reconciler lease' : 'cluster: this replica no longer holds the reconciler lease');
    for (const fn of this.listeners) fn(leader);
  }

  /** Replicas seen within the lease TTL. */
  async live(): Promise<ReplicaInfo[]> {
    return this.o.replicas.liveSince(new Date(this.now() - this.o.leaseTtlMs).toISOString());
  }

  /** For /healthz. */
  async view(): Promise<ClusterView> {
    const [replicas, leader] = await Promise.all([this.live(), this.o.leases.holder(RECONCILER_LEASE, this.now())]);
    return {
      this: this.id,
      leader,
      lease_ttl_s: this.o.leaseTtlMs / 1000,
      replicas: replicas.map((r) => ({ id: r.id, host: r.host, pid: r.pid, backend: r.backend, url: r.url, started_at: r.startedAt, last_seen: r.lastSeen })),
    };
  }

  /** A row left by a replica that ran on this host and whose process is gone (killed, then restarted here). */
  private deadHere(r: ReplicaInfo): boolean {
    if (r.host !== this.host) return false;
    const alive = this.o.pidAlive ?? pidAlive;
    return r.pid !== process.pid && !alive(r.pid);
  }

  /** Leaves the cluster: gives the lease up at once and removes this replica's row. */
  async leave(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    this.setLeader(false);
    this.heldUntil = 0;
    await this.o.leases.release(RECONCILER_LEASE, this.id).catch(() => undefined);
    await this.o.replicas.remove(this.id).catch(() => undefined);
    // Pruning rows of replicas long gone is anyone's chore; leaving is a good moment.
    await this.o.replicas.prune(new Date(this.now() - 24 * 3600_000).toISOString()).catch(() => undefined);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
