/**
 * List, create and update: the routes that make or replace a machine's config (and with it, its version).
 */
import { LogBuffer } from '../runner.js';
import { stripNulls } from '../spec.js';
import { clockSleep, deepClone, newMachineId, newMachineName, newPrivateIp, newUlid, REGION_CODES } from '../util.js';
import { boot } from './boot.js';
import { stopChecks } from './checks.js';
import { internalPortOf, normalizeConfig } from './config.js';
import { activeLease, newLease, requireNonce } from './leases.js';
import { stopParams } from './lifecycle.js';
import { first, truthy } from './query.js';
import { requireSecretsVersion } from './secrets.js';
import type { EngineState } from './state.js';
import { err, type Json, type MachineRecord } from './types.js';
import { machineJson } from './views.js';

export function list(e: EngineState, app: string, query: Json): Json[] {
  e.app(app);
  const includeDeleted = truthy(query.include_deleted);
  const summary = truthy(query.summary);
  const region = first(query.region);
  const states = ([] as unknown[])
    .concat(query.state ?? [])
    .flatMap((s) => String(s).split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  const meta: Array<[string, string]> = Object.entries(query)
    .filter(([k]) => k.startsWith('metadata.'))
    .map(([k, v]) => [k.slice('metadata.'.length), String(first(v) ?? '')]);
  let ms = [...e.machines.values()].filter((m) => m.app === app);
  if (includeDeleted) ms = ms.concat([...e.graveyard.values()].filter((m) => m.app === app));
  else ms = ms.filter((m) => m.state !== 'destroyed');
  if (region) ms = ms.filter((m) => m.region === region);
  if (states.length) ms = ms.filter((m) => states.includes(m.state));
  for (const [k, v] of meta) ms = ms.filter((m) => m.config.metadata?.[k] === v);
  ms.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  if (e.faults.take(['list_order'], { action: 'list', app })) ms.reverse();
  return ms.map((m) => machineJson(e, m, { summary }));
}

/** POST …/machines. `timeout` set when a create_timeout fault wants this (committed) create answered with 408. */
export function create(e: EngineState, app: string, body: unknown): { machine: Json; timeout?: { delayMs: number } } {
  const a = e.app(app);
  e.validateBody('Machines_create', body);
  const b: Json = stripNulls(body ?? {});
  const config = normalizeConfig(b.config);
  requireSecretsVersion(e, app, b.min_secrets_version);
  const region: string = b.region || e.defaultRegion;
  if (!REGION_CODES.has(region)) {
    throw err(400, `invalid region "${region}"; known regions: ${[...REGION_CODES].join(', ')} (GET /v1/platform/regions)`);
  }
  if (e.faults.take(['insufficient_capacity'], { action: 'create', app, region })) {
    throw err(503, `insufficient resources to create machine in region ${region}: could not find a candidate host`, {
      status: 'insufficient_capacity',
    });
  }
  if (e.faults.take(['insufficient_memory'], { action: 'create', app })) {
    throw err(409, 'aborted: insufficient resources available to fulfill request: insufficient memory available to fulfill request');
  }
  let name: string = b.name;
  if (name) {
    const clash = [...e.machines.values()].find((x) => x.app === app && x.name === name && x.state !== 'destroyed');
    if (clash) throw err(409, `already_exists: unique machine name violation, machine ID ${clash.id} already exists with name "${name}"`);
  } else {
    do name = newMachineName();
    while ([...e.machines.values()].some((x) => x.app === app && x.name === name));
  }
  let id: string;
  do id = newMachineId();
  while (e.machines.has(id) || e.graveyard.has(id));
  const now = e.clock.now();
  const version = newUlid(now);
  const m: MachineRecord = {
    id,
    app: a.name,
    name,
    region,
    privateIp: newPrivateIp(a.name),
    createdAt: now,
    updatedAt: now,
    config,
    version,
    versions: [{ version, config: deepClone(config), createdAt: now }],
    state: 'created',
    stateEventId: '',
    events: [],
    cordoned: false,
    launchPending: !b.skip_launch,
    stillActiveUntil: 0,
    epoch: 0,
    internalPort: internalPortOf(config),
    failureTimes: [],
    restarts: 0,
    logs: new LogBuffer(),
    waiters: new Set(),
    checks: new Map(),
  };
  e.machines.set(id, m);
  e.transition(m, 'created', 'launch', 'user');
  let nonce: string | undefined;
  if (typeof b.lease_ttl === 'number' && b.lease_ttl > 0) nonce = newLease(e, m, b.lease_ttl).nonce;
  if (m.launchPending) {
    const epoch = m.epoch;
    e.after(e.timing.launchDelayMs, () => {
      if (m.epoch === epoch && m.launchPending && m.state === 'created') void boot(e, m, 'flyd');
    });
  }
  const machine = machineJson(e, m, { nonce });
  const fault = e.faults.take(['create_timeout'], { action: 'create', app });
  if (fault && fault.kind === 'create_timeout') return { machine, timeout: { delayMs: fault.delayMs ?? 0 } };
  return { machine };
}

export function update(e: EngineState, app: string, id: string, body: unknown, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  if (m.state === 'destroyed' || m.state === 'destroying') {
    throw err(412, `failed_precondition: unable to update machine from current state: '${m.state}'`);
  }
  requireNonce(e, m, nonce);
  e.validateBody('Machines_update', body);
  const b: Json = stripNulls(body ?? {});
  const config = normalizeConfig(b.config);
  requireSecretsVersion(e, app, b.min_secrets_version);
  if (b.region && b.region !== m.region) throw err(400, `invalid_argument: region is immutable (machine ${m.id} is in ${m.region})`);
  if (b.name && b.name !== m.name) throw err(400, `invalid_argument: name is immutable (machine ${m.id} is named ${m.name})`);
  if (b.current_version && b.current_version !== m.version) {
    throw err(412, `failed_precondition: machine version mismatch: current_version ${b.current_version}, machine is at ${m.version}`);
  }
  if (e.faults.take(['insufficient_memory'], { action: 'update', app, machine: id })) {
    throw err(409, 'aborted: could not reserve resource for machine: insufficient memory available to fulfill request on the current host');
  }
  const wasRunning = ['started', 'starting', 'restarting'].includes(m.state) || (m.state === 'created' && m.launchPending);
  const oldConfig = m.config;
  const now = e.clock.now();
  m.version = newUlid(now);
  m.config = config;
  m.versions.push({ version: m.version, config: deepClone(config), createdAt: now });
  m.internalPort = internalPortOf(config);
  m.launchPending = false;
  const epoch = ++m.epoch;
  stopChecks(e, m);
  e.transition(m, 'replacing', 'update', 'user');
  let leaseNonce: string | undefined;
  if (typeof b.lease_ttl === 'number' && b.lease_ttl > 0) {
    const held = activeLease(e, m);
    if (held) {
      held.expiresAt = now + b.lease_ttl * 1000;
      leaseNonce = held.nonce;
    } else leaseNonce = newLease(e, m, b.lease_ttl).nonce;
  }
  const proc = m.proc;
  void (async () => {
    if (proc?.alive) {
      const { signal, timeoutMs } = stopParams(oldConfig);
      await (proc.suspended ? proc.kill() : proc.stop(signal, timeoutMs));
    }
    await clockSleep(e.clock, e.timing.replacingMs);
    if (m.epoch !== epoch || e.closed) return;
    if (b.skip_launch) e.transition(m, 'created', 'update', 'flyd');
    else if (wasRunning) void boot(e, m, 'flyd');
    else e.transition(m, 'stopped', 'update', 'flyd');
  })();
  return machineJson(e, m, { nonce: leaseNonce });
}
