import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import type { EventFeed, FeedSink, Pulse } from '../core/events.js';
import { GroupCommit } from '../core/group-commit.js';
import type { PlatformEvent } from '../core/types.js';
import { EventRepo } from './repositories.js';
import type { Database } from './schema.js';

const EVENTS = 'molecule_events';
const PULSES = 'molecule_pulses';
/** NOTIFY payloads must stay under 8000 bytes; a bigger event travels as its id and is read back. */
const MAX_PAYLOAD = 7500;
/** Room for the origin and brackets around a batch of pulses. */
const PULSE_ENVELOPE = 64;
const CATCH_UP_PAGE = 1000;

/**
 * Events for every replica on one Postgres. Each event is written once (its id from the table's sequence) and
 * announced with NOTIFY in the same transaction. Every replica, the publishing one included, keeps one LISTEN
 * connection and delivers what it hears in order, so all replicas deliver the same events in the same (id) order
 * and an SSE client can resume on any of them by Last-Event-ID.
 *
 * Why in id order: appends (one SQL function call each) hold one transaction-scoped advisory lock, so a lower id never commits after a higher
 * one; Postgres delivers notifications in commit order. Subscribers can therefore treat "id ≤ the last I saw"
 * as "seen", with nothing skipped. When the LISTEN connection drops, it reconnects and reads what it missed from
 * the table before delivering new notifications.
 *
 * Pulses (heartbeat and A2A call news, not persisted) are NOTIFYed on their own channel, outside any transaction; the
 * publishing replica delivers its own at once and skips their echo.
 */
export class PgEventFeed implements EventFeed {
  private sink: FeedSink | undefined;
  private client: pg.Client | null = null;
  /** The last event id delivered; -1 until the first connection has read where the table stands. */
  private lastId = -1;
  /** Deliveries (and catch-ups) one after another, in arrival order. */
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private retryMs = 250;
  private readonly origin = crypto.randomBytes(6).toString('hex');
  private readonly repo: EventRepo;
  private readonly commits = new GroupCommit<Omit<PlatformEvent, 'id'>, PlatformEvent>((es) => this.appendAll(es), { max: 200 });
  /** Pulses of this tick, serialised, waiting to be announced together. */
  private outbox: string[] = [];

  constructor(
    private readonly db: Kysely<Database>,
    private readonly databaseUrl: string,
    private readonly logger: Logger,
    /** Events bigger than this travel as their id (bench/event-fanout.ts measures both ways with 0). */
    private readonly maxPayload = MAX_PAYLOAD,
  ) {
    this.repo = new EventRepo(db);
  }

  attach(sink: FeedSink): void {
    this.sink = sink;
  }

  /**
   * One statement (molecule_append_events, migration 0006) for the events published while the previous batch was
   * being written (group commit): insert and NOTIFY each, in one transaction, one round trip.
   */
  append(e: Omit<PlatformEvent, 'id'>): Promise<PlatformEvent> {
    return this.commits.submit(e);
  }

  private async appendAll(es: Omit<PlatformEvent, 'id'>[]): Promise<PlatformEvent[]> {
    const col = <T>(f: (e: Omit<PlatformEvent, 'id'>) => T) => es.map(f);
    const r = await sql<{ ids: number[] }>`select molecule_append_events(${col((e) => e.workspace_id)}::text[], ${col((e) => e.type)}::text[],
      ${col((e) => e.at)}::text[], ${col((e) => JSON.stringify(e.data))}::text[], ${this.maxPayload}) as ids`.execute(this.db);
    const ids = r.rows[0]!.ids;
    return es.map((e, i) => ({ ...e, id: Number(ids[i]) }));
  }

  /**
   * Delivered here at once; announced to the other replicas in batches: the pulses of one tick (at 10,000
   * workspaces, a thousand heartbeats a second) go in as few NOTIFYs as fit the payload limit, not one query each.
   */
  pulse(p: Pulse): void {
    this.sink?.pulse(p);
    const one = JSON.stringify(p);
    // A pulse too big to announce stays local: it is only news, the next one will do.
    if (Buffer.byteLength(one) + PULSE_ENVELOPE > MAX_PAYLOAD) return;
    this.outbox.push(one);
    if (this.outbox.length === 1) setImmediate(() => this.announcePulses());
  }

  private announcePulses(): void {
    const head = `{"origin":${JSON.stringify(this.origin)},"pulses":[`;
    let batch: string[] = [];
    let size = 0;
    const send = () => {
      if (!batch.length) return;
      const payload = `${head}${batch.join(',')}]}`;
      sql`select pg_notify(${PULSES}, ${payload})`.execute(this.db).catch((err) => this.logger.debug({ err: err.message }, 'pulses not announced'));
      batch = [];
      size = 0;
    };
    for (const one of this.outbox) {
      // Sizes in UTF-16 units are a lower bound; the check below it keeps within the limit in bytes.
      const bytes = Buffer.byteLength(one) + 1;
      if (size + bytes + PULSE_ENVELOPE > MAX_PAYLOAD) send();
      batch.push(one);
      size += bytes;
    }
    send();
    this.outbox = [];
  }

  /** Resolves once listening: from here on, every event committed is delivered. */
  async start(): Promise<void> {
    await this.connect();
  }

  async close(): Promise<void> {
    await this.commits.flushed();
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
    await this.chain;
  }

  private enqueue(step: () => Promise<void> | void): void {
    this.chain = this.chain.then(step).catch((err) => {
      this.logger.warn({ err: (err as Error).message }, 'event delivery step failed; reconnecting to catch up');
      this.dropConnection();
    });
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl, keepAlive: true });
    client.on('error', (err) => {
      this.logger.warn({ err: err.message }, 'event LISTEN connection failed');
      this.lost(client);
    });
    client.on('end', () => this.lost(client));
    await client.connect();
    let listening!: () => void;
    const heard = new Promise<void>((resolve) => (listening = resolve));
    // Queued before any notification: what was committed before LISTEN is read from the table, not heard.
    this.enqueue(async () => {
      await heard;
      if (this.lastId < 0) this.lastId = await this.repo.lastId();
      else await this.catchUp();
    });
    client.on('notification', (n) => {
      if (n.channel === EVENTS) this.enqueue(() => this.onEvent(n.payload ?? ''));
      else if (n.channel === PULSES) this.onPulse(n.payload ?? '');
    });
    try {
      await client.query(`LISTEN ${EVENTS}; LISTEN ${PULSES}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      listening(); // the queued step reads nothing new; the next connection catches up
      throw e;
    }
    this.client = client;
    this.retryMs = 250;
    listening();
    await this.chain;
  }

  private async onEvent(payload: string): Promise<void> {
    const parsed = JSON.parse(payload) as PlatformEvent | { id: number };
    if (parsed.id <= this.lastId) return;
    const ev = 'type' in parsed ? parsed : await this.repo.get(parsed.id);
    if (!ev) throw new Error(`event ${parsed.id} announced but not found`);
    this.deliver(ev);
  }

  private onPulse(payload: string): void {
    try {
      const { origin, pulses } = JSON.parse(payload) as { origin: string; pulses: Pulse[] };
      if (origin !== this.origin) for (const p of pulses) this.sink?.pulse(p);
    } catch {
      /* not ours */
    }
  }

  private deliver(ev: PlatformEvent): void {
    this.lastId = ev.id;
    try {
      this.sink?.event(ev);
    } catch (err) {
      this.logger.error({ err, event: ev.id }, 'event subscriber failed');
    }
  }

  /** Everything committed after the last delivered id, read from the table in pages. */
  private async catchUp(): Promise<void> {
    for (;;) {
      const page = await this.repo.list({ afterId: this.lastId, limit: CATCH_UP_PAGE });
      for (const ev of page) this.deliver(ev);
      if (page.length < CATCH_UP_PAGE) return;
    }
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private dropConnection(): void {
    const c = this.client;
    if (c) this.lost(c);
    else this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 5000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.connect().then(
        () => this.logger.info('event LISTEN connection re-established; missed events delivered'),
        (err) => {
          this.logger.warn({ err: (err as Error).message, retry_ms: this.retryMs }, 'event LISTEN reconnect failed');
          this.scheduleReconnect();
        },
      );
    }, wait);
    this.reconnectTimer.unref();
  }
}
