/**
 * A keyed work queue in the style of controller-runtime's: a key waits at most once however often it is added, a
 * key is never processed by two workers at once, and a key added while it is being processed runs again after.
 * What a key is processed with is merged by `merge` when it is added twice before it runs.
 */
export class WorkQueue<T> {
  private readonly waiting = new Map<string, T>();
  private readonly active = new Set<string>();
  /** Keys added while active: they run again once the current run ends. */
  private readonly again = new Map<string, T>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly idleWaiters: Array<() => void> = [];
  private paused = true;

  constructor(
    private readonly concurrency: number,
    private readonly handler: (key: string, item: T) => Promise<void>,
    private readonly merge: (older: T, newer: T) => T = (_o, n) => n,
  ) {}

  add(key: string, item: T): void {
    if (this.active.has(key)) {
      const prev = this.again.get(key);
      this.again.set(key, prev === undefined ? item : this.merge(prev, item));
      return;
    }
    const prev = this.waiting.get(key);
    this.waiting.set(key, prev === undefined ? item : this.merge(prev, item));
    this.pump();
  }

  /** Adds `key` at time `at` (epoch ms); an earlier request for the same key wins. */
  addAt(key: string, item: T, at: number): void {
    const cur = this.timers.get(key);
    if (cur && cur.at <= at) return;
    if (cur) clearTimeout(cur.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key, item);
    }, Math.max(0, at - Date.now()));
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Starts handing keys to the handler. */
  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Stops handing out keys and forgets the waiting ones and the timers; runs in progress finish. */
  pause(): void {
    this.paused = true;
    this.waiting.clear();
    this.again.clear();
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
  }

  get size(): number {
    return this.waiting.size + this.active.size;
  }

  /** Resolves when nothing is waiting or running. */
  idle(): Promise<void> {
    if (this.active.size === 0 && (this.paused || this.waiting.size === 0)) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (!this.paused && this.active.size < this.concurrency && this.waiting.size > 0) {
      const [key, item] = this.waiting.entries().next().value as [string, T];
      this.waiting.delete(key);
      this.active.add(key);
      void this.handler(key, item)
        .catch(() => undefined) // the handler logs its own failures
        .finally(() => {
          this.active.delete(key);
          const again = this.again.get(key);
          if (again !== undefined) {
            this.again.delete(key);
            if (!this.paused) this.waiting.set(key, again);
          }
          this.pump();
          if (this.active.size === 0 && (this.paused || this.waiting.size === 0)) for (const r of this.idleWaiters.splice(0)) r();
        });
    }
  }
}
