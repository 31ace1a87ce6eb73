interface Waiter<R> {
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export interface GroupCommitOptions<T> {
  /** Items written in one call at most. */
  max: number;
  /**
   * How long the first item of a batch waits for others (ms); 0: until the event loop's next turn, so what the
   * requests and callbacks of this turn submit goes together (SQLite answers synchronously: without a wait nothing
   * would ever be submitted while a write is under way).
   */
  windowMs?: number;
  /** Items with the same key share one pending slot: `merge(earlier, later)` is what gets written. */
  key?: (item: T) => string;
  merge?: (earlier: T, later: T) => T;
}

/**
 * Group commit: items that arrive while a batch is being written (or within a short window) are written together,
 * one call for the batch, in arrival order. Each item's promise settles when its batch is committed, with the result
 * the write gave for it (the write returns one result per item, in order). A failed batch rejects only its own items;
 * the next batch is written regardless. At thousands of agents the database's per-statement and per-commit costs
 * were most of the platform's time; this pays them once per batch.
 */
export class GroupCommit<T, R = void> {
  private pending: Array<{ item: T; waiters: Waiter<R>[] }> = [];
  private slots = new Map<string, { item: T; waiters: Waiter<R>[] }>();
  private writing: Promise<void> | undefined;

  constructor(
    private readonly write: (batch: T[]) => Promise<R[] | void>,
    private readonly opts: GroupCommitOptions<T>,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const k = this.opts.key?.(item);
      const slot = k === undefined ? undefined : this.slots.get(k);
      if (slot) {
        slot.item = this.opts.merge ? this.opts.merge(slot.item, item) : item;
        slot.waiters.push({ resolve, reject });
      } else {
        const entry = { item, waiters: [{ resolve, reject }] };
        this.pending.push(entry);
        if (k !== undefined) this.slots.set(k, entry);
      }
      this.writing ??= this.drain();
    });
  }

  /** Resolves once everything submitted so far is written (shutdown). */
  async flushed(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    const windowMs = this.opts.windowMs ?? 0;
    await new Promise((r) => (windowMs > 0 ? setTimeout(r, windowMs) : setImmediate(r)));
    try {
      while (this.pending.length) {
        const taken = this.pending.splice(0, this.opts.max);
        if (this.opts.key) for (const t of taken) this.slots.delete(this.opts.key(t.item));
        try {
          const results = (await this.write(taken.map((t) => t.item))) ?? [];
          taken.forEach((t, i) => t.waiters.forEach((w) => w.resolve(results[i] as R)));
        } catch (e) {
          for (const t of taken) for (const w of t.waiters) w.reject(e);
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}
