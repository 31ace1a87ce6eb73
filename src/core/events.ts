import { EventEmitter } from 'node:events';
import type { EventRepo } from '../store/repositories.js';
import type { PlatformEvent } from './types.js';

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

  subscribe(fn: (ev: PlatformEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  history(opts: { workspaceId?: string; afterId?: number; limit?: number }): Promise<PlatformEvent[]> {
    return this.repo.list(opts);
  }
}
