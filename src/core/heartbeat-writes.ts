/** One workspace's heartbeat as the store writes it. */
export interface HeartbeatWrite {
  id: string;
  at: string;
  heartbeat: Record<string, unknown>;
  /** The heartbeat reports running tasks. */
  busy: boolean;
  /** An earlier heartbeat of the same batch reported running tasks (the first report of none after some is activity). */
  wasBusy: boolean;
}

/** Heartbeats written in one statement at most (SQLite binds 5 values each; its limit is 32,766). */
export const HEARTBEAT_BATCH_MAX = 500;

/**
 * Group commit for heartbeats. At thousands of agents the heartbeat's own UPDATE and commit were most of the
 * platform's database time; here, while one batch is being written, the heartbeats that arrive meanwhile wait and go
 * together in the next. An idle platform writes each one at once (no timer, no added delay); a busy one writes
 * fewer, larger statements. A heartbeat's promise settles when its batch is committed, so its request still answers
 * only once the heartbeat is stored. A workspace's later heartbeat in the same batch replaces its earlier one.
 */
export class HeartbeatWrites {
  private pending = new Map<string, { write: HeartbeatWrite; waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> }>();
  private writing: Promise<void> | undefined;

  constructor(private readonly write: (batch: HeartbeatWrite[]) => Promise<void>) {}

  record(id: string, at: string, heartbeat: Record<string, unknown>, activeTasks: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const busy = activeTasks > 0;
      const earlier = this.pending.get(id);
      if (earlier) {
        const wasBusy = earlier.write.wasBusy || earlier.write.busy;
        earlier.write = { id, at, heartbeat, busy, wasBusy };
        earlier.waiters.push({ resolve, reject });
      } else {
        this.pending.set(id, { write: { id, at, heartbeat, busy, wasBusy: false }, waiters: [{ resolve, reject }] });
      }
      this.writing ??= this.drain();
    });
  }

  /** Resolves once everything recorded so far is written (shutdown). */
  async flushed(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    // Lets the heartbeats of this tick join the first batch.
    await Promise.resolve();
    try {
      while (this.pending.size) {
        const taken = [...this.pending.values()].slice(0, HEARTBEAT_BATCH_MAX);
        for (const t of taken) this.pending.delete(t.write.id);
        try {
          await this.write(taken.map((t) => t.write));
          for (const t of taken) for (const w of t.waiters) w.resolve();
        } catch (e) {
          for (const t of taken) for (const w of t.waiters) w.reject(e);
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}
