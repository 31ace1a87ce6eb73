/**
 * The simulator's state: apps, machines, the reference §4 state machine with its preconditions and texts,
 * events, waits, leases, metadata — and the real local process behind every booted machine.
 * HTTP-agnostic: handlers call these methods; failures are thrown as ApiError(status, body).
 *
 * Engine is the one public face; each behaviour lives in its own module as functions over EngineState
 * (state.ts), so a module can be read without the others and Engine stays a list of what is offered.
 */
import type { LogBuffer } from '../runner.js';
import type { AppSecrets } from '../secrets.js';
import * as apps from './apps.js';
import * as leases from './leases.js';
import * as lifecycle from './lifecycle.js';
import * as machineOps from './machines.js';
import * as metadata from './metadata.js';
import * as secretOps from './secrets.js';
import { EngineState } from './state.js';
import type { AppRecord, Json, Lease, MachineRecord, MachineSnapshot } from './types.js';
import * as views from './views.js';
import * as waits from './waits.js';

export { EngineState } from './state.js';
export {
  ApiError,
  DEFAULT_TIMING,
  SETTLED_STATES,
  type BootContext,
  type EngineOptions,
  type ImageMapping,
  type Lease,
  type MachineEvent,
  type MachineRecord,
  type MachineSnapshot,
  type MachineState,
  type SimTiming,
} from './types.js';

export class Engine extends EngineState {
  createApp(body: unknown): Json {
    return apps.createApp(this, body);
  }

  appJson(a: AppRecord): Json {
    return apps.appJson(this, a);
  }

  listApps(orgSlug?: string): Json {
    return apps.listApps(this, orgSlug);
  }

  deleteApp(name: string): Promise<void> {
    return apps.deleteApp(this, name);
  }

  /** The app's secrets (the app is looked up, or auto-created, as for machines). */
  secrets(app: string): AppSecrets {
    return secretOps.secretsOf(this, app);
  }

  secretsList(app: string, query: Record<string, unknown> = {}): Json {
    return secretOps.secretsList(this, app, query);
  }

  secretsUpdate(app: string, body: unknown): Json {
    return secretOps.secretsUpdate(this, app, body);
  }

  secretGet(app: string, name: string, query: Record<string, unknown> = {}): Json {
    return secretOps.secretGet(this, app, name, query);
  }

  secretSet(app: string, name: string, body: unknown): Json {
    return secretOps.secretSet(this, app, name, body);
  }

  secretDelete(app: string, name: string): Json {
    return secretOps.secretDelete(this, app, name);
  }

  regions(): Json {
    return apps.regions(this);
  }

  snapshot(m: MachineRecord): MachineSnapshot {
    return views.snapshot(this, m);
  }

  machineJson(m: MachineRecord, opts: { summary?: boolean; nonce?: string } = {}): Json {
    return views.machineJson(this, m, opts);
  }

  eventsJson(m: MachineRecord, limit: number): Json[] {
    return views.eventsJson(m, limit);
  }

  /** GET …/wait (reference §5). Resolves with the HTTP answer; `signal` aborts when the client goes away. */
  wait(app: string, id: string, query: Json, signal?: AbortSignal): Promise<{ status: number; body: unknown }> {
    return waits.wait(this, app, id, query, signal);
  }

  activeLease(m: MachineRecord): Lease | undefined {
    return leases.activeLease(this, m);
  }

  /** Mutations of a leased machine need the lease's nonce (fly-machine-lease-nonce). 409 otherwise. */
  requireNonce(m: MachineRecord, nonce: string | undefined): void {
    return leases.requireNonce(this, m, nonce);
  }

  leaseGet(app: string, id: string): Json {
    return leases.leaseGet(this, app, id);
  }

  leaseAcquire(app: string, id: string, body: unknown, query: Json, nonce: string | undefined): Json {
    return leases.leaseAcquire(this, app, id, body, query, nonce);
  }

  leaseRelease(app: string, id: string, nonce: string | undefined): Json {
    return leases.leaseRelease(this, app, id, nonce);
  }

  list(app: string, query: Json): Json[] {
    return machineOps.list(this, app, query);
  }

  /** POST …/machines. `timeout` set when a create_timeout fault wants this (committed) create answered with 408. */
  create(app: string, body: unknown): { machine: Json; timeout?: { delayMs: number } } {
    return machineOps.create(this, app, body);
  }

  update(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    return machineOps.update(this, app, id, body, nonce);
  }

  start(app: string, id: string, nonce: string | undefined): Json {
    return lifecycle.start(this, app, id, nonce);
  }

  stop(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    return lifecycle.stop(this, app, id, body, nonce);
  }

  suspend(app: string, id: string, nonce: string | undefined): Json {
    return lifecycle.suspend(this, app, id, nonce);
  }

  restart(app: string, id: string, query: Json, nonce: string | undefined): Json {
    return lifecycle.restart(this, app, id, query, nonce);
  }

  signal(app: string, id: string, body: unknown, nonce: string | undefined): Json {
    return lifecycle.signal(this, app, id, body, nonce);
  }

  cordon(app: string, id: string, on: boolean, nonce: string | undefined): Json {
    return lifecycle.cordon(this, app, id, on, nonce);
  }

  destroy(app: string, id: string, force: boolean, nonce: string | undefined): Json {
    return lifecycle.destroy(this, app, id, force, nonce);
  }

  metadataGet(app: string, id: string): Record<string, string> {
    return metadata.metadataGet(this, app, id);
  }

  metadataGetKey(app: string, id: string, key: string): Json {
    return metadata.metadataGetKey(this, app, id, key);
  }

  metadataSet(app: string, id: string, key: string, body: unknown): void {
    return metadata.metadataSet(this, app, id, key, body);
  }

  metadataDelete(app: string, id: string, key: string): void {
    return metadata.metadataDelete(this, app, id, key);
  }

  metadataReplace(app: string, id: string, body: unknown, merge: boolean): void {
    return metadata.metadataReplace(this, app, id, body, merge);
  }

  events(app: string, id: string, limitRaw: unknown): Json[] {
    return metadata.events(this, app, id, limitRaw);
  }

  versions(app: string, id: string): Json[] {
    return metadata.versions(this, app, id);
  }

  logs(m: MachineRecord): LogBuffer {
    return metadata.logs(m);
  }
}
