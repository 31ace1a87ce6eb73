/**
 * What is shown of a machine: the API's JSON (full, or summary for list?summary=true), and the simulator's
 * snapshot, which adds what only a test can see (pid, local port, restarts).
 */
import { deepClone, isoSeconds, parseImageRef } from '../util.js';
import { activeLease } from './leases.js';
import type { EngineState } from './state.js';
import type { Json, MachineRecord, MachineSnapshot } from './types.js';

export function snapshot(e: EngineState, m: MachineRecord): MachineSnapshot {
  return {
    id: m.id,
    app: m.app,
    name: m.name,
    state: m.state,
    region: m.region,
    version: m.version,
    image: m.config.image,
    pid: m.proc?.alive ? (m.proc.pid ?? null) : null,
    hostPort: m.proc?.alive ? (m.hostPort ?? null) : null,
    internalPort: m.internalPort,
    restarts: m.restarts,
    cordoned: m.cordoned,
    leased: !!activeLease(e, m),
    lastExit: m.lastExit ?? null,
    metadata: { ...(m.config.metadata ?? {}) },
    env: { ...(m.config.env ?? {}) },
  };
}

export function machineJson(e: EngineState, m: MachineRecord, opts: { summary?: boolean; nonce?: string } = {}): Json {
  const imageRef = parseImageRef(m.config.image);
  const base: Json = {
    id: m.id,
    name: m.name,
    state: m.state,
    region: m.region,
    instance_id: m.version,
    version: m.version,
    private_ip: m.privateIp,
    created_at: isoSeconds(m.createdAt),
    updated_at: isoSeconds(m.updatedAt),
  };
  if (opts.summary) {
    return {
      ...base,
      image_ref: imageRef,
      config: { image: m.config.image, guest: m.config.guest, metadata: m.config.metadata ?? {} },
    };
  }
  const out: Json = {
    ...base,
    config: deepClone(m.config),
    incomplete_config: null,
    image_ref: imageRef,
    events: eventsJson(m, 20),
    host_status: 'ok',
    cordoned: m.cordoned,
  };
  if (m.config.checks && Object.keys(m.config.checks).length) {
    out.checks = Object.keys(m.config.checks).map((name) => {
      const c = m.checks.get(name);
      return {
        name,
        status: c?.status ?? 'critical',
        output: c?.output ?? 'not started',
        updated_at: isoSeconds(c?.updatedAt ?? m.updatedAt),
      };
    });
  }
  if (opts.nonce) out.nonce = opts.nonce;
  return out;
}

export function eventsJson(m: MachineRecord, limit: number): Json[] {
  return m.events
    .slice(-limit)
    .reverse()
    .map((e) => ({ ...e }));
}
