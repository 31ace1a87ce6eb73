import fs from 'node:fs';
import { sql } from 'kysely';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus, type Pulse } from '../../src/core/events.js';
import type { PlatformEvent } from '../../src/core/types.js';
import { openStore, type Store } from '../../src/store/db.js';
import { CallTraffic } from '../../src/server/a2a/traffic.js';
import { PgEventFeed } from '../../src/store/pg-event-feed.js';
import { EventRepo } from '../../src/store/repositories.js';
import { tempDir, waitFor } from '../support/harness.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

/** Two "replicas" (each its own pool and LISTEN connection) on one real Postgres. */
interface Replica {
  store: Store;
  bus: EventBus;
  seen: PlatformEvent[];
  pulses: Pulse[];
}

let pg: TestPostgres | null = null;
const replicas: Replica[] = [];

const dirs: string[] = [];

async function replica(url: string): Promise<Replica> {
  const dataDir = tempDir('events-cluster');
  dirs.push(dataDir);
  const store = await openStore({ dataDir, databaseUrl: url });
  const bus = new EventBus(new EventRepo(store.db), new PgEventFeed(store.db, url, pino({ level: 'silent' })));
  await bus.start();
  const r: Replica = { store, bus, seen: [], pulses: [] };
  bus.subscribe((ev) => r.seen.push(ev));
  bus.subscribePulses((p) => r.pulses.push(p));
  replicas.push(r);
  return r;
}

const ids = (evs: PlatformEvent[]) => evs.map((e) => e.id);

describe('events across replicas on one Postgres', () => {
  let a: Replica;
  let b: Replica;

  beforeAll(async () => {
    pg = await startTestPostgres();
    if (!pg) throw new Error('no Postgres server: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
    a = await replica(pg.url);
    b = await replica(pg.url);
  }, 60_000);

  afterAll(async () => {
    for (const r of replicas) {
      await r.bus.close();
      await r.store.close();
    }
    await pg?.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('delivers every event, from either replica, to both, once each and in id order', async () => {
    const before = a.seen.length;
    const published = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).bus.publish('test.burst', null, { i })),
    );
    const all = ids(published).sort((x, y) => x - y);
    await waitFor('both replicas saw the burst', async () => a.seen.length - before >= 200 && b.seen.length - before >= 200, 10_000, 10);
    const tail = (r: Replica) => r.seen.slice(before);
    expect(ids(tail(a))).toEqual(all);
    expect(ids(tail(b))).toEqual(all);
    expect(tail(b).map((e) => e.data.i).sort((x, y) => Number(x) - Number(y))).toEqual(Array.from({ length: 200 }, (_, i) => i));
    // The same as the table, which is what a Last-Event-ID resume reads.
    expect(ids(await a.bus.history({ afterId: all[0] - 1 }))).toEqual(all);
  });

  it('numbers the events one replica publishes at once in the order they were published (written in batches)', async () => {
    const published = await Promise.all(Array.from({ length: 300 }, (_, i) => a.bus.publish('test.order', null, { i })));
    expect(published.map((e) => e.data.i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    const got = ids(published);
    expect(got).toEqual([...got].sort((x, y) => x - y));
    expect(new Set(got).size).toBe(300);
  });

  it('delivers an event too big for a notification by reading it back', async () => {
    const big = 'x'.repeat(20_000);
    const ev = await a.bus.publish('test.big', 'w-big', { big });
    await waitFor('big event on B', async () => b.seen.some((e) => e.id === ev.id), 5000, 10);
    expect(b.seen.find((e) => e.id === ev.id)).toEqual(ev);
  });

  it('carries heartbeat pulses to the other replica, and each replica gets its own once', async () => {
    a.bus.pulse('w-pulse', { n: 1 });
    await waitFor('pulse on B', async () => b.pulses.some((p) => p.workspace_id === 'w-pulse'), 5000, 10);
    await new Promise((r) => setTimeout(r, 200));
    expect(a.pulses.filter((p) => p.workspace_id === 'w-pulse')).toHaveLength(1);
    expect(b.pulses.filter((p) => p.workspace_id === 'w-pulse')).toHaveLength(1);
  });

  it('carries a2a.calls pulses, a full interval of samples included, to the other replica', async () => {
    const traffic = new CallTraffic({ pulse: (id, data, type, at) => a.bus.pulse(id, data, type, at) });
    for (let i = 0; i < 500; i++) traffic.record('w-from', 'w-calls', 12345.678 + i, i % 7 === 0);
    traffic.flush();
    const got = await waitFor('calls pulse on B', async () => b.pulses.find((p) => p.type === 'a2a.calls' && p.workspace_id === 'w-calls'), 5000, 10);
    expect(got.data).toMatchObject({ from: 'w-from', to: 'w-calls', calls: 500, errors: 72, interval_ms: 1000 });
    expect(got.data.latencies_ms).toHaveLength(64);
    expect(a.pulses.filter((p) => p.type === 'a2a.calls')).toHaveLength(1);
  });

  it('misses nothing when its LISTEN connection is cut: it reconnects and reads what it missed', async () => {
    const before = b.seen.length;
    // Cut every LISTEN connection of the database (as a failover or an admin would); pools reconnect on demand.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity where query like 'LISTEN%' and pid <> pg_backend_pid()`.execute(a.store.db);
    const published: number[] = [];
    for (let i = 0; i < 20; i++) published.push((await a.bus.publish('test.outage', null, { i })).id);
    await waitFor('B caught up', async () => b.seen.length - before >= 20, 15_000, 20);
    await new Promise((r) => setTimeout(r, 300));
    expect(ids(b.seen.slice(before))).toEqual(published);
    // And it listens again.
    const after = await b.bus.publish('test.after', null, {});
    await waitFor('A hears B again', async () => a.seen.some((e) => e.id === after.id), 10_000, 10);
    expect(ids(a.seen).filter((id) => id >= published[0])).toEqual([...published, after.id]);
  }, 30_000);

  it('a replica that starts later delivers only what comes after it started', async () => {
    const old = await a.bus.publish('test.old', null, {});
    const c = await replica(pg!.url);
    const fresh = await a.bus.publish('test.fresh', null, {});
    await waitFor('C saw the fresh one', async () => c.seen.some((e) => e.id === fresh.id), 5000, 10);
    expect(ids(c.seen)).toEqual([fresh.id]);
    expect(old.id).toBeLessThan(fresh.id);
  });
});
