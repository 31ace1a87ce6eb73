import { GroupCommit } from './group-commit.js';

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
/** How long a heartbeat waits for others to share its write: nothing next to the interval between heartbeats. */
export const HEARTBEAT_WINDOW_MS = 10;

/**
 * Heartbeats in group commits (group-commit.ts). At thousands of agents the heartbeat's own UPDATE and commit were
 * most of the platform's database time; heartbeats that arrive while a batch is being written, or within a few
 * milliseconds of the first, go together in one statement. A heartbeat's promise settles when its batch is
 * committed, so its request still answers only once the heartbeat is stored. A workspace's later heartbeat in the
 * same batch replaces its earlier one, remembering whether that one was busy.
 */
export class HeartbeatWrites {
  private readonly commits: GroupCommit<HeartbeatWrite>;

  constructor(write: (batch: HeartbeatWrite[]) => Promise<void>, opts: { windowMs?: number } = {}) {
    this.commits = new GroupCommit(write, {
      max: HEARTBEAT_BATCH_MAX,
      windowMs: opts.windowMs ?? HEARTBEAT_WINDOW_MS,
      key: (h) => h.id,
      merge: (earlier, later) => ({ ...later, wasBusy: earlier.wasBusy || earlier.busy }),
    });
  }

  record(id: string, at: string, heartbeat: Record<string, unknown>, activeTasks: number): Promise<void> {
    return this.commits.submit({ id, at, heartbeat, busy: activeTasks > 0, wasBusy: false });
  }

  /** Resolves once everything recorded so far is written (shutdown). */
  flushed(): Promise<void> {
    return this.commits.flushed();
  }
}
