/**
 * The simulator's record of API requests, newest last, capped so a long-running simulator does not grow
 * without bound. Tests read it through the handle and /__sim/requests.
 */
import type { RequestLogEntry } from './types.js';

export type RequestFilter = { method?: string; action?: string; app?: string; machineId?: string };

export class RequestLog {
  private entries: RequestLogEntry[] = [];
  private seq = 0;

  constructor(
    private readonly max: number,
    private readonly onLogged?: (entry: RequestLogEntry) => void,
  ) {}

  add(fields: Omit<RequestLogEntry, 'seq'>): void {
    const entry: RequestLogEntry = { seq: ++this.seq, ...fields };
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.splice(0, this.entries.length - this.max);
    this.onLogged?.(entry);
  }

  since(seq: number): RequestLogEntry[] {
    return this.entries.filter((e) => e.seq > seq);
  }

  filter(f: RequestFilter = {}): RequestLogEntry[] {
    return this.entries.filter(
      (e) =>
        (!f.method || e.method === f.method.toUpperCase()) &&
        (!f.action || e.action === f.action) &&
        (!f.app || e.app === f.app) &&
        (!f.machineId || e.machineId === f.machineId),
    );
  }

  clear(): void {
    this.entries.length = 0;
  }
}
