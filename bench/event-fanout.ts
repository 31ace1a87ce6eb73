/**
 * Events across replicas (issue 9): how long an event takes from publish() on one replica to a subscriber on
 * another, by the two ways Postgres can carry it — NOTIFY with the whole event (what the platform does), or NOTIFY
 * with only the id and the event read back by id — against a baseline in the same run: one process on SQLite,
 * where publish() hands the event straight to subscribers. Also: publishes per second with both replicas
 * publishing at once, each event seen by both.
 *
 *   npx tsx bench/event-fanout.ts [--events 1000] [--burst 2000] [--rounds 3]
 *
 * The two "replicas" are two EventBus+store pairs in this process, each with its own pool and LISTEN
 * connection, on one real Postgres started here (stopped by pid at the end).
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { EventBus } from '../src/core/events.js';
import type { PlatformEvent } from '../src/core/types.js';
import { openStore, type Store } from '../src/store/db.js';
import { PgEventFeed } from '../src/store/pg-event-feed.js';
import { EventRepo } from '../src/store/repositories.js';
import { tempDir } from '../test/support/harness.js';
import { startTestPostgres } from '../test/support/postgres.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '1000' }, burst: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '3' } } });
const EVENTS = Number(values.events);
const BURST = Number(values.burst);
const ROUNDS = Number(values.rounds);
const logger = pino({ level: 'warn' });
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const median = (xs: number[]) => quantile(xs, 0.5);
// A typical status event's data.
const data = { from: 'provisioning', to: 'ready', reason: 'agent registered' };

interface Pair {
  name: string;
  pub: EventBus;
  sub: EventBus;
}

/** Sequential publishes; for each, publish() called → the subscriber of the other replica has it. */
async function delay(p: Pair, n: number): Promise<number[]> {
  const out: number[] = [];
  let waiting: { id: number; resolve: () => void } | null = null;
  const arrived = new Set<number>();
  const off = p.sub.subscribe((ev) => {
    arrived.add(ev.id);
    if (waiting && ev.id === waiting.id) waiting.resolve();
  });
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const ev = await p.pub.publish('bench.fanout', 'w-bench', { ...data, i });
    if (!arrived.has(ev.id)) await new Promise<void>((resolve) => (waiting = { id: ev.id, resolve }));
    out.push(performance.now() - t0);
    waiting = null;
    arrived.clear();
  }
  off();
  return out;
}

/** `n` publishes from both replicas at once (64 in flight); events per second until both have seen them all. */
async function burst(a: EventBus, b: EventBus, n: number): Promise<number> {
  const seen = [new Set<number>(), new Set<number>()];
  const offs = [a, b].map((bus, k) => bus.subscribe((ev: PlatformEvent) => ev.type === 'bench.burst' && seen[k].add(ev.id)));
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async (_, w) => {
    while (next < n) {
      next++;
      await (w % 2 ? a : b).publish('bench.burst', null, data);
    }
  }));
  while (seen[0].size < n || seen[1].size < n) await new Promise((r) => setTimeout(r, 1));
  const secs = (performance.now() - t0) / 1000;
  offs.forEach((off) => off());
  return n / secs;
}

const pg = await startTestPostgres();
if (!pg) throw new Error('no Postgres server here: install postgresql or set MOLECULE_TEST_POSTGRES_URL');
const stores: Store[] = [];
const dirs: string[] = [];
const buses: EventBus[] = [];
try {
  const open = async (url?: string) => {
    // Nothing is written to the data dir (Postgres, or SQLite in memory); it only has to exist.
    const dataDir = tempDir('bench-events');
    dirs.push(dataDir);
    const s = await openStore({ dataDir, databaseUrl: url, memory: !url });
    stores.push(s);
    return s;
  };
  const pgBus = async (maxPayload?: number) => {
    const s = await open(pg.url);
    const bus = new EventBus(new EventRepo(s.db), new PgEventFeed(s.db, pg.url, logger, maxPayload));
    await bus.start();
    buses.push(bus);
    return bus;
  };
  const local = new EventBus(new EventRepo((await open()).db));
  const [fullA, fullB, idA, idB] = [await pgBus(), await pgBus(), await pgBus(0), await pgBus(0)];
  const pairs: Pair[] = [
    { name: 'one process, SQLite (baseline)', pub: local, sub: local },
    { name: 'Postgres, same replica (NOTIFY with the event)', pub: fullA, sub: fullA },
    { name: 'Postgres, other replica (NOTIFY with the event) — used', pub: fullA, sub: fullB },
    { name: 'Postgres, other replica (NOTIFY with the id, read back)', pub: idA, sub: idB },
  ];
  for (const p of pairs) await delay(p, 100); // warm up
  const res = new Map<string, number[][]>();
  for (let r = 0; r < ROUNDS; r++) for (const p of pairs) res.set(p.name, [...(res.get(p.name) ?? []), await delay(p, EVENTS)]);
  const rate = { full: [] as number[], id: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    rate.full.push(await burst(fullA, fullB, BURST));
    rate.id.push(await burst(idA, idB, BURST));
  }
  const p50 = (name: string) => median(res.get(name)!.map((xs) => quantile(xs, 0.5)));
  const p99 = (name: string) => median(res.get(name)!.map((xs) => quantile(xs, 0.99)));
  const base = p50(pairs[0].name);
  console.log(`Event delivery, publish() → subscriber: ${EVENTS} events × ${ROUNDS} rounds, one at a time; node ${process.version}, ${os.cpus().length} CPUs, Postgres on loopback (medians of rounds)`);
  console.log('| path | p50 ms | p99 ms | p50 vs one process |');
  console.log('|---|---|---|---|');
  for (const p of pairs) console.log(`| ${p.name} | ${p50(p.name).toFixed(3)} | ${p99(p.name).toFixed(3)} | ${(p50(p.name) / base).toFixed(1)}× |`);
  console.log('');
  console.log(`Both replicas publishing at once (64 in flight, ${BURST} events × ${ROUNDS} rounds), until both have delivered every event`);
  console.log('| payload | events/s | vs id-only |');
  console.log('|---|---|---|');
  console.log(`| the event (used) | ${median(rate.full).toFixed(0)} | ${(median(rate.full) / median(rate.id)).toFixed(2)}× |`);
  console.log(`| the id, read back | ${median(rate.id).toFixed(0)} | 1.00× |`);
} finally {
  for (const b of buses) await b.close();
  for (const s of stores) await s.close();
  await pg.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}
