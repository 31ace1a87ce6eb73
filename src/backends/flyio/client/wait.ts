import { setTimeout as sleep } from 'node:timers/promises';
import { FlyApiError } from './errors.js';
import type { FlyTransport, Query } from './transport.js';

/** Fly's longest `/wait` timeout: longer waits are made of slices. */
export const WAIT_SLICE_MAX_S = 60;

export interface WaitResult {
  state: string;
  version?: string;
}

export interface WaitForOptions {
  states: string[];
  version?: string;
  /** Epoch ms. */
  deadline: number;
  signal?: AbortSignal;
  /** Sees every slice that ran out (408), e.g. to look at the machine between slices. */
  onSlice?: (err: FlyApiError) => Promise<void> | void;
}

/**
 * `GET …/wait` (reference §5). A class because it remembers what the server taught it: the pre-2026 API takes one
 * `state` only, and says so with a 400 the first time it gets several.
 */
export class MachineWaiter {
  private singleStateWait = false;

  constructor(private readonly t: FlyTransport) {}

  /**
   * One `/wait` call (≤ 60 s). Resolves with the state reached; throws FlyApiError (408 when the slice ran out).
   * The HTTP timeout is the wait timeout plus a margin, so the long poll is never cut short by the client.
   */
  async once(id: string, opts: { states: string[]; version?: string; timeoutS: number; signal?: AbortSignal }): Promise<WaitResult> {
    const timeoutS = Math.max(1, Math.min(WAIT_SLICE_MAX_S, Math.ceil(opts.timeoutS)));
    const states = this.singleStateWait ? opts.states.slice(0, 1) : opts.states;
    const query: Query = { state: states.length > 1 ? states : states[0], timeout: timeoutS };
    if (opts.version) query.version = opts.version;
    try {
      const r = await this.t.call<{ ok?: boolean; state?: string; version?: string }>('GET', `${this.t.machinePath(id)}/wait`, {
        action: 'wait',
        machineId: id,
        query,
        timeoutMs: timeoutS * 1000 + 15_000,
        signal: opts.signal,
        retry: false,
      });
      return { state: r.body?.state ?? states[0], version: r.body?.version };
    } catch (e) {
      if (!this.refusedStateList(e, states)) throw e;
      this.singleStateWait = true;
      return this.once(id, opts);
    }
  }

  /**
   * Waits for one of `states` until the deadline, in slices. A slice that runs out (408), 429, 5xx and network
   * errors go on waiting; anything else (400, 404) is thrown at once. Past the deadline: a FlyApiError 408.
   */
  async until(id: string, opts: WaitForOptions): Promise<WaitResult> {
    let attempt = 0;
    let last: FlyApiError | undefined;
    for (;;) {
      const left = opts.deadline - Date.now();
      if (left <= 0) throw this.timedOut(id, opts.states, last);
      try {
        return await this.once(id, { states: opts.states, version: opts.version, timeoutS: Math.min(WAIT_SLICE_MAX_S, Math.ceil(left / 1000)), signal: opts.signal });
      } catch (e) {
        if (!(e instanceof FlyApiError) || !e.retryable) throw e;
        last = e;
        if (e.status === 408) {
          attempt = 0;
          await opts.onSlice?.(e);
          continue;
        }
        attempt++;
        await sleep(Math.min(2000, 500 * attempt) + Math.floor(Math.random() * 250), undefined, { signal: opts.signal });
      }
    }
  }

  /** The 400 an API that takes one state gives a list of them (not a 400 about the version). */
  private refusedStateList(e: unknown, states: string[]): boolean {
    return e instanceof FlyApiError && e.status === 400 && states.length > 1 && /state/i.test(e.message) && !/version|instance_id/i.test(e.message);
  }

  private timedOut(id: string, states: string[], last: FlyApiError | undefined): FlyApiError {
    const lastAnswer = last ? ` (last answer: ${last.message})` : '';
    return new FlyApiError(408, `machine ${id} did not reach ${states.join('|')} in time${lastAnswer}`, last?.flyRequestId ?? null, last?.body ?? null, 'GET', `${this.t.machinePath(id)}/wait`);
  }
}
