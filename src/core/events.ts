import { EventEmitter } from 'node:events';
import type { EventRepo } from '../store/repositories.js';
import type { PlatformEvent } from './types.js';

export interface Pulse {
  type: 'workspace.heartbeat';
  workspace_id: string;
  at: string;
  data: Record<string, unknown>;
}

/** Persists every event, then fans it out to live subscribers (/events, /ws, metrics). */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor(private readonly repo: EventRepo) {
    this.emitter.setMaxListeners(0);
  }

  async publish(type: string, workspaceId: string | null, data: Record<string, unknown>): Promise<PlatformEvent> {
    const ev = await this.repo.append({ type, workspace_id: workspaceId, at: new Date().toISOString(), data });
    this.emitter.emit('event', ev);
    return ev;
  }

  /**
   * A heartbeat's news (time, current task) for live views. Not persisted and not an event: at one per agent
   * per interval it would flood the timeline and the table. Only subscribers that ask for pulses get them.
   */
  pulse(workspaceId: string, data: Record<string, unknown>): void {
    this.emitter.emit('pulse', { type: 'workspace.heartbeat', workspace_id: workspaceId, at: new Date().toISOString(), data } satisfies Pulse);
  }

  subscribePulses(fn: (p: Pulse) => void): () => void {
    this.emitter.on('pulse', fn);
    return () => this.emitter.off('pulse', fn);
  }

  subscribe(fn: (ev: PlatformEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  history(opts: { workspaceId?: string; afterId?: number; limit?: number }): Promise<PlatformEvent[]> {
    return this.repo.list(opts);
  }
}
