import { acquireLease, releaseLease, withLease } from './leases.js';
import { machineLogs } from './logs.js';
import {
  createMachine,
  destroyMachine,
  findMachine,
  findMachineByMetadata,
  getMachine,
  listMachines,
  machineEvents,
  restartMachine,
  signalMachine,
  startMachine,
  stopMachine,
  updateMachine,
  type MachineFilter,
  type ReadOptions,
} from './machines.js';
import { deleteSecret, listSecrets, setSecrets } from './secrets.js';
import { FlyTransport, type FlyClientOptions, type RetryPolicy } from './transport.js';
import type { CreateMachineRequest, FlyAppSecret, FlyLease, FlyMachine, FlyMachineEvent, UpdateMachineRequest } from './types.js';
import { MachineWaiter, type WaitForOptions, type WaitResult } from './wait.js';

/**
 * A small Fly Machines API client (reference: /work/shared/reference/fly-machines-api.md; official spec
 * fly-machines-openapi3.json), laid out like fly-go's `flaps` package: transport.ts sends a request (limits,
 * retries, typed errors), and one file per part of the API says how each call is made safe to repeat —
 * machines.ts, wait.ts, leases.ts, secrets.ts, logs.ts. This class is the one door to all of them.
 */
export class FlyClient {
  readonly app: string;
  readonly baseUrl: string;
  private readonly t: FlyTransport;
  private readonly waiter: MachineWaiter;

  constructor(opts: FlyClientOptions) {
    this.t = new FlyTransport(opts);
    this.waiter = new MachineWaiter(this.t);
    this.app = this.t.app;
    this.baseUrl = this.t.baseUrl;
  }

  // ---- machines (machines.ts) ---------------------------------------------------------------------------------

  list(filter: MachineFilter = {}, opts: ReadOptions = {}): Promise<FlyMachine[]> {
    return listMachines(this.t, filter, opts);
  }

  get(id: string, opts: ReadOptions = {}): Promise<FlyMachine> {
    return getMachine(this.t, id, opts);
  }

  find(id: string, opts: ReadOptions = {}): Promise<FlyMachine | null> {
    return findMachine(this.t, id, opts);
  }

  create(req: CreateMachineRequest, identity: Record<string, string>): Promise<{ machine: FlyMachine; adopted: boolean; attempts: number }> {
    return createMachine(this.t, req, identity);
  }

  findByMetadata(metadata: Record<string, string>, opts: { attempts?: number; deadline?: number } = {}): Promise<FlyMachine | null> {
    return findMachineByMetadata(this.t, metadata, opts);
  }

  update(id: string, req: UpdateMachineRequest, nonce?: string): Promise<FlyMachine> {
    return updateMachine(this.t, id, req, nonce);
  }

  start(id: string, opts: { nonce?: string; transientDeadlineMs?: number } = {}): Promise<{ previous_state?: string }> {
    return startMachine(this.t, id, opts);
  }

  stop(id: string, body: { signal?: string; timeout?: string } = {}, nonce?: string): Promise<void> {
    return stopMachine(this.t, id, body, nonce);
  }

  /**
   * POST …/suspend (the machine's memory is snapshotted; a start resumes it). Fly falls back to a stop for machines
   * it cannot snapshot. Sent once: a caller that cannot tell whether it landed looks at the machine.
   */
  async suspend(id: string, nonce?: string): Promise<void> {
    await this.t.call('POST', `${this.t.machinePath(id)}/suspend`, { action: 'suspend', machineId: id, nonce, deadline: Date.now() + this.t.retryPolicy.maxElapsedMs });
  }

  restart(id: string, opts: { timeoutS?: number; signal?: string; nonce?: string } = {}): Promise<void> {
    return restartMachine(this.t, id, opts);
  }

  signal(id: string, signal: string, nonce?: string): Promise<void> {
    return signalMachine(this.t, id, signal, nonce);
  }

  destroy(id: string, opts: { force?: boolean; nonce?: string } = {}): Promise<boolean> {
    return destroyMachine(this.t, id, opts);
  }

  events(id: string, limit = 20): Promise<FlyMachineEvent[]> {
    return machineEvents(this.t, id, limit);
  }

  // ---- wait (wait.ts) -----------------------------------------------------------------------------------------

  waitOnce(id: string, opts: { states: string[]; version?: string; timeoutS: number; signal?: AbortSignal }): Promise<WaitResult> {
    return this.waiter.once(id, opts);
  }

  waitFor(id: string, opts: WaitForOptions): Promise<WaitResult> {
    return this.waiter.until(id, opts);
  }

  // ---- leases (leases.ts) -------------------------------------------------------------------------------------

  acquireLease(id: string, opts: { ttlS?: number; description?: string; maxWaitMs?: number } = {}): Promise<FlyLease> {
    return acquireLease(this.t, id, opts);
  }

  releaseLease(id: string, nonce: string): Promise<void> {
    return releaseLease(this.t, id, nonce);
  }

  withLease<T>(id: string, description: string, fn: (nonce: string, lease: FlyLease) => Promise<T>, ttlS = 120): Promise<T> {
    return withLease(this.t, id, description, fn, ttlS);
  }

  // ---- app secrets (secrets.ts) -------------------------------------------------------------------------------

  listSecrets(opts: { retry?: boolean | Partial<RetryPolicy> } = {}): Promise<FlyAppSecret[]> {
    return listSecrets(this.t, opts);
  }

  setSecrets(values: Record<string, string>): Promise<number | undefined> {
    return setSecrets(this.t, values);
  }

  deleteSecret(name: string): Promise<boolean> {
    return deleteSecret(this.t, name);
  }

  // ---- logs (logs.ts) -----------------------------------------------------------------------------------------

  logs(id: string, opts: { tail?: number; follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<string> {
    return machineLogs(this.t, id, opts);
  }

  // ---- paths ----------------------------------------------------------------------------------------------------

  machinesPath(): string {
    return this.t.machinesPath();
  }

  machinePath(id: string): string {
    return this.t.machinePath(id);
  }

  secretsPath(): string {
    return this.t.secretsPath();
  }
}

export { FlyApiError, flyErrorMessage } from './errors.js';
export { ClientRateLimiter, FLY_LIMITS, type BucketSpec, type RateLimits } from './ratelimit.js';
export { backoff, DEFAULT_API_BASE, DEFAULT_RETRY, type FlyClientOptions, type RecordedRequest, type RetryPolicy } from './transport.js';
export type { CreateMachineRequest, FlyAppSecret, FlyGuestConfig, FlyLease, FlyMachine, FlyMachineConfig, FlyMachineEvent, UpdateMachineRequest } from './types.js';
export { WAIT_SLICE_MAX_S, type WaitForOptions, type WaitResult } from './wait.js';
export type { MachineFilter, ReadOptions } from './machines.js';
