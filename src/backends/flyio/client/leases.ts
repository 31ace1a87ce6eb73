import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { FlyApiError, isNotFound } from './errors.js';
import { backoff, LOOK, type FlyTransport } from './transport.js';
import type { FlyLease } from './types.js';

/** Fly answers a lease in a `data` envelope; older answers had it bare. */
type LeaseAnswer = { data?: FlyLease } & Partial<FlyLease>;

const leasePath = (t: FlyTransport, id: string) => `${t.machinePath(id)}/lease`;

/**
 * Takes the machine's lease, all within one deadline, `maxWaitMs` (default 60 s, as fly-go). Someone else's lease
 * (409) is waited out, as its holder is normally mid-operation.
 *
 * Fly mints the nonce, so a lease whose answer was lost can only be recognised by what we sent: the description
 * carries a token unique to this acquisition, which GET …/lease shows. Nothing is acquired again before that look;
 * a 409 after it (our own lease, taken by a request whose answer never came) is looked at the same way.
 */
export async function acquireLease(t: FlyTransport, id: string, opts: { ttlS?: number; description?: string; maxWaitMs?: number } = {}): Promise<FlyLease> {
  const deadline = Date.now() + (opts.maxWaitMs ?? 60_000);
  const description = `${opts.description ?? 'molecule'} #${crypto.randomBytes(4).toString('hex')}`;
  let maybeOurs = false;
  for (let attempt = 1; ; attempt++) {
    let err: FlyApiError;
    try {
      return await requestLease(t, id, { ttl: opts.ttlS ?? 60, description }, deadline);
    } catch (e) {
      if (!(e instanceof FlyApiError) || (e.status >= 200 && e.status < 300)) throw e;
      err = e;
    }
    if (err.ambiguous || (maybeOurs && err.status === 409)) {
      maybeOurs = true;
      const mine = await ownLease(t, id, description, deadline);
      if (mine) {
        t.logger?.info({ machine_id: id, err: err.message }, 'fly lease: the answer was lost, but the lease is ours');
        return mine;
      }
    } else if (err.status !== 409) {
      throw err;
    }
    const delay = err.status === 409 ? Math.min(3000, 500 * attempt) + Math.floor(Math.random() * 250) : backoff(attempt, t.retryPolicy);
    if (Date.now() + delay > deadline) throw err;
    await sleep(delay);
  }
}

/** Releases the lease. A lease that expired or vanished ("lease not found") is not an error. */
export async function releaseLease(t: FlyTransport, id: string, nonce: string): Promise<void> {
  try {
    await t.call('DELETE', leasePath(t, id), { action: 'lease_release', machineId: id, nonce });
  } catch (e) {
    if (isNotFound(e) || (e instanceof FlyApiError && /not found/i.test(e.message))) return;
    throw e;
  }
}

/** Runs fn while holding the machine's lease, and always releases it: a failed release only waits for the TTL. */
export async function withLease<T>(t: FlyTransport, id: string, description: string, fn: (nonce: string, lease: FlyLease) => Promise<T>, ttlS = 120): Promise<T> {
  const lease = await acquireLease(t, id, { ttlS, description });
  try {
    return await fn(lease.nonce, lease);
  } finally {
    await releaseLease(t, id, lease.nonce).catch((e) => t.logger?.warn({ machine_id: id, err: (e as Error).message }, 'fly lease release failed; it expires by itself'));
  }
}

async function requestLease(t: FlyTransport, id: string, body: { ttl: number; description: string }, deadline: number): Promise<FlyLease> {
  const path = leasePath(t, id);
  const r = await t.call<LeaseAnswer>('POST', path, { action: 'lease_acquire', machineId: id, body, deadline });
  const lease = r.body?.data ?? (r.body as FlyLease);
  if (!lease?.nonce) throw new FlyApiError(r.status, 'lease answer without a nonce', r.requestId, r.body, 'POST', path);
  return lease;
}

/** The machine's lease when its description is `description` (ours), else null — also when the look fails. */
async function ownLease(t: FlyTransport, id: string, description: string, deadline: number): Promise<FlyLease | null> {
  try {
    const r = await t.call<LeaseAnswer>('GET', leasePath(t, id), { action: 'lease_get', machineId: id, retry: LOOK, deadline });
    const lease = r.body?.data ?? (r.body as FlyLease);
    return lease?.nonce && lease.description === description ? lease : null;
  } catch {
    return null;
  }
}
