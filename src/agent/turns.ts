/**
 * Book-keeping for model turns: what is running (for heartbeats, cancel and graceful shutdown) and how recent
 * turns ended (the heartbeat's error_rate, which the platform uses to mark a workspace degraded).
 */

export const ERROR_WINDOW = 20;

export type TurnOutcome = 'ok' | 'failed' | 'canceled';

/** Failure fraction over the last `size` finished turns. Canceled turns are not the agent's fault and are not counted. */
export class ErrorWindow {
  private readonly outcomes: boolean[] = [];

  constructor(private readonly size: number = ERROR_WINDOW) {}

  record(failed: boolean): void {
    this.outcomes.push(failed);
    if (this.outcomes.length > this.size) this.outcomes.shift();
  }

  get rate(): number {
    if (this.outcomes.length === 0) return 0;
    return this.outcomes.filter(Boolean).length / this.outcomes.length;
  }

  get count(): number {
    return this.outcomes.length;
  }
}

/** Counts things in flight and lets shutdown wait until there are none. */
export class Inflight {
  private n = 0;
  private waiters: Array<() => void> = [];

  enter(): () => void {
    this.n++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.n--;
      if (this.n === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    };
  }

  get size(): number {
    return this.n;
  }

  whenIdle(): Promise<void> {
    if (this.n === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export interface ActiveTurn {
  readonly taskId: string;
  readonly contextId: string;
  readonly startedAt: number;
  readonly signal: AbortSignal;
  /** Set by cancel(): the executor must then stay silent, because the cancel path already published `canceled`. */
  readonly canceled: boolean;
}

interface TurnState extends ActiveTurn {
  canceled: boolean;
  controller: AbortController;
  leave: () => void;
}

export class TurnTracker {
  private readonly active = new Map<string, TurnState>();
  private readonly inflight = new Inflight();
  readonly errors = new ErrorWindow();
  private turnsTotal = 0;
  private failedTotal = 0;

  begin(taskId: string, contextId: string): ActiveTurn {
    const controller = new AbortController();
    const turn: TurnState = {
      taskId,
      contextId,
      startedAt: Date.now(),
      signal: controller.signal,
      canceled: false,
      controller,
      leave: this.inflight.enter(),
    };
    this.active.set(taskId, turn);
    return turn;
  }

  end(taskId: string, outcome: TurnOutcome): void {
    const turn = this.active.get(taskId);
    if (!turn) return;
    this.active.delete(taskId);
    if (outcome !== 'canceled') {
      this.turnsTotal++;
      if (outcome === 'failed') this.failedTotal++;
      this.errors.record(outcome === 'failed');
    }
    turn.leave();
  }

  /** Marks the turn canceled and aborts its model call. False when no such turn is running. */
  cancel(taskId: string, reason = 'canceled by request'): boolean {
    const turn = this.active.get(taskId);
    if (!turn) return false;
    turn.canceled = true;
    turn.controller.abort(new Error(reason));
    return true;
  }

  /** Shutdown's last resort: turns fail (not cancel) so callers learn the agent went away. */
  abortAll(reason: string): number {
    for (const turn of this.active.values()) turn.controller.abort(new Error(reason));
    return this.active.size;
  }

  contextOf(taskId: string): string | undefined {
    return this.active.get(taskId)?.contextId;
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** The most recently started turn still running; Map iteration order is insertion order. */
  get currentTask(): string | null {
    let last: string | null = null;
    for (const id of this.active.keys()) last = id;
    return last;
  }

  get errorRate(): number {
    return this.errors.rate;
  }

  get totals(): { turns: number; failed: number } {
    return { turns: this.turnsTotal, failed: this.failedTotal };
  }

  whenIdle(): Promise<void> {
    return this.inflight.whenIdle();
  }
}
