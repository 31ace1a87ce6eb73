import { EventEmitter } from 'node:events';
import { GroupCommit } from './group-commit.js';
import type { EventLog } from './ports.js';
import type { PlatformEvent } from './types.js';

/**
 * Live news that is not stored: a heartbeat's (per workspace), and A2A call traffic (per caller → target edge,
 * aggregated by server/a2a/traffic.ts). /ws clients get each kind only when they ask for it.
 */
export type PulseType = 'workspace.heartbeat' | 'a2a.calls';

export interface Pulse {
  type: PulseType;
  workspace_id: string;
  at: string;
  data: Record<string, unknown>;
}

/** Where a feed hands what it delivers: every event once, in id order, and pulses. */
export interface FeedSink {
  event(ev: PlatformEvent): void;
  pulse(p: Pulse): void;
}

/**
 * How an event gets from the replica that published it to every subscriber. With one replica (SQLite) that is
 * this process; with several (Postgres) it is the database (see store/pg-event-feed.ts).
 */
export interface EventFeed {
  attach(sink: FeedSink): void;
  /** Persists the event; the sink gets it once it is committed (maybe after this resolves). */
  append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent>;
  pulse(p: Pulse): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * One process: the event is delivered as soon as it is written. Events published while a write is under way are
 * written together, in one transaction (group-commit.ts): a commit each was most of their cost.
 */
export class LocalFeed implements EventFeed {
  private sink: FeedSink | undefined;
  private readonly commits: GroupCommit<Omit<PlatformEvent, 'id'>, PlatformEvent>;
  constructor(repo: EventLog) {
    this.commits = new GroupCommit(
      async (batch) => {
        const written = await repo.appendAll(batch);
        // Delivered here, once committed and in id order, before any publisher hears back.
        for (const ev of written) this.sink?.event(ev);
        return written;
      },
      { max: 200 },
    );
  }
  attach(sink: FeedSink): void {
    this.sink = sink;
  }
  append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent> {
    return this.commits.submit(e);
  }
  pulse(p: Pulse): void {
    this.sink?.pulse(p);
  }
  async start(): Promise<void> {}
  async close(): Promise<void> {
    await this.commits.flushed();
  }
}

/** Persists every event, then fans it out to live subscribers (/events, /ws, the reconciler, metrics). */
export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly feed: EventFeed;

  constructor(
    private readonly repo: EventLog,
    feed?: EventFeed,
  ) {
    this.emitter.setMaxListeners(0);
    this.feed = feed ?? new LocalFeed(repo);
    this.feed.attach({ event: (ev) => this.emitter.emit('event', ev), pulse: (p) => this.emitter.emit('pulse', p) });
  }

  /** Connects the feed (Postgres: its LISTEN connection). */
  start(): Promise<void> {
    return this.feed.start();
  }

  close(): Promise<void> {
    return this.feed.close();
  }

  async publish(type: string, workspaceId: string | null, data: Record<string, unknown>): Promise<PlatformEvent> {
    const ev = await this.feed.append({ type, workspace_id: workspaceId, at: new Date().toISOString(), data });
    this.emitter.emit('published', ev);
    return ev;
  }

  /**
   * News for live views: a heartbeat's (time, current task), or A2A call traffic. Not persisted and not an event:
   * at one per agent (or edge) per interval it would flood the timeline and the table. Only subscribers that ask
   * for pulses get them.
   */
  pulse(workspaceId: string, data: Record<string, unknown>, type: PulseType = 'workspace.heartbeat', at: string = new Date().toISOString()): void {
    this.feed.pulse({ type, workspace_id: workspaceId, at, data });
  }

  subscribePulses(fn: (p: Pulse) => void): () => void {
    this.emitter.on('pulse', fn);
    return () => this.emitter.off('pulse', fn);
  }

  /** Every event of the cluster, once each, in id order. */
  subscribe(fn: (ev: PlatformEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  /** Only the events this replica published (metrics: summed over replicas, each event counts once). */
  subscribePublished(fn: (ev: PlatformEvent) => void): () => void {
    this.emitter.on('published', fn);
    return () => this.emitter.off('published', fn);
  }

  history(opts: { workspaceId?: string; afterId?: number; limit?: number }): Promise<PlatformEvent[]> {
    return this.repo.list(opts);
  }
}
