/**
 * Machine leases. A lease only guards mutations (the nonce header); reads never need it.
 */
import { stripNulls } from '../spec.js';
import { goTimeString, isPlainObject, newNonce } from '../util.js';
import type { EngineState } from './state.js';
import { err, leaseErr, type Json, type Lease, type MachineRecord } from './types.js';

export function activeLease(e: EngineState, m: MachineRecord): Lease | undefined {
  if (m.lease && m.lease.expiresAt > e.clock.now()) return m.lease;
  return undefined;
}

function leaseHeldText(m: MachineRecord, l: Lease): string {
  return `machine ID ${m.id} lease currently held by ${l.owner}, expires at ${goTimeString(l.expiresAt)}`;
}

/** Mutations of a leased machine need the lease's nonce (fly-machine-lease-nonce). 409 otherwise. */
export function requireNonce(e: EngineState, m: MachineRecord, nonce: string | undefined): void {
  const l = activeLease(e, m);
  if (!l || nonce === l.nonce) return;
  const why = nonce ? 'the fly-machine-lease-nonce header does not match the lease' : 'send its nonce in the fly-machine-lease-nonce header';
  throw err(409, `${leaseHeldText(m, l)}; ${why}`);
}

function leaseData(l: Lease): Json {
  return { nonce: l.nonce, expires_at: Math.floor(l.expiresAt / 1000), owner: l.owner, description: l.description, version: l.version };
}

export function newLease(e: EngineState, m: MachineRecord, ttlS: number, description = ''): Lease {
  m.lease = {
    nonce: newNonce(),
    expiresAt: e.clock.now() + ttlS * 1000,
    owner: e.opts.leaseOwner ?? 'sim-user@example.com',
    description,
    version: m.version,
  };
  return m.lease;
}

export function leaseGet(e: EngineState, app: string, id: string): Json {
  const m = e.machine(app, id);
  const l = activeLease(e, m);
  if (!l) throw leaseErr(404, 'lease not found', 'not_found');
  return { status: 'success', data: leaseData(l) };
}

export function leaseAcquire(e: EngineState, app: string, id: string, body: unknown, query: Json, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  if (body !== undefined) {
    const r = e.spec.validate('Machines_create_lease', body, { strict: e.strictSpec });
    if (!r.ok) throw leaseErr(400, r.error ?? 'invalid request body');
  }
  const b: Json = isPlainObject(body) ? stripNulls(body) : {};
  let ttl: number = e.timing.defaultLeaseTtlS;
  const qttl = Array.isArray(query.ttl) ? query.ttl[0] : query.ttl;
  if (b.ttl !== undefined && b.ttl !== 0) ttl = b.ttl;
  else if (qttl !== undefined && qttl !== '') {
    if (!/^\d+$/.test(String(qttl))) throw leaseErr(400, `invalid ttl "${qttl}", must be a number of seconds`);
    ttl = Number(qttl);
  }
  if (!(ttl > 0)) throw leaseErr(400, `invalid ttl ${ttl}, must be a positive number of seconds`);
  if (m.state === 'destroyed' || m.state === 'destroying') throw leaseErr(412, `failed_precondition: machine ${m.id} is ${m.state}`);
  const held = activeLease(e, m);
  if (held) {
    if (nonce !== held.nonce) throw leaseErr(409, leaseHeldText(m, held));
    held.expiresAt = e.clock.now() + ttl * 1000;
    if (typeof b.description === 'string') held.description = b.description;
    return { status: 'success', data: leaseData(held) };
  }
  return { status: 'success', data: leaseData(newLease(e, m, ttl, typeof b.description === 'string' ? b.description : '')) };
}

export function leaseRelease(e: EngineState, app: string, id: string, nonce: string | undefined): Json {
  const m = e.machine(app, id);
  const l = activeLease(e, m);
  if (!l) throw leaseErr(404, 'lease not found', 'not_found');
  if (!nonce) throw leaseErr(400, 'fly-machine-lease-nonce header is required to release a lease');
  if (nonce !== l.nonce) throw leaseErr(409, leaseHeldText(m, l));
  m.lease = undefined;
  return { status: 'success', data: { ok: true } };
}
