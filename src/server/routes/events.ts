import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';
import { EventsQuery } from '../schemas.js';
import type { PlatformEvent } from '../../core/types.js';
import { pipeStream, pushSource } from '../pipe-stream.js';

/**
 * Events a slow /events client may fall behind by before it is disconnected (rather than buffered without bound).
 * No more than one resume replays (Last-Event-ID is served up to 1000 events), so it reconnects without a gap.
 */
const MAX_BACKLOG = 1000;

/** Live events as SSE (`GET /events`, resumable with Last-Event-ID or ?after=) and over a WebSocket (`GET /ws`). */
export function eventRoutes(deps: Pick<AppDeps, 'bus' | 'metrics'>): FastifyPluginAsync {
  const wire = (ev: PlatformEvent) => ({ id: ev.id, type: ev.type, workspace_id: ev.workspace_id, at: ev.at, data: ev.data });
  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/events',
      { schema: { tags: ['events'], summary: 'Server-sent events: {type, workspace_id, at, data}', querystring: EventsQuery } },
      async (req, reply) => {
        const filter = req.query.workspace_id;
        const lastId = Number(req.headers['last-event-id']) || req.query.after;
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        const frame = (ev: PlatformEvent) => `id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(wire(ev))}\n\n`;
        const abort = new AbortController();
        let sentUpTo = lastId ?? 0;
        const live = pushSource<PlatformEvent>({
          limit: MAX_BACKLOG,
          signal: abort.signal,
          // It would never catch up, and waiting for it holds its queue: drop it; it resumes with Last-Event-ID.
          onOverflow: () => {
            req.log.warn({ backlog: MAX_BACKLOG }, 'event stream client too far behind; disconnecting it');
            res.destroy();
          },
          idleMs: 15_000,
          idle: () => ': keepalive\n\n',
          // Events replayed from history may arrive live as well: each is sent once, in order.
          format: (ev) => {
            if (ev.id <= sentUpTo) return undefined;
            sentUpTo = ev.id;
            return frame(ev);
          },
        });
        async function* stream(): AsyncGenerator<string> {
          // Subscribed here, not before: a generator never started (the client left at once) runs no finally.
          // Before the replay, queueing live events, so nothing falls between the two.
          const unsubscribe = deps.bus.subscribe((ev) => {
            if (!filter || ev.workspace_id === filter) live.push(ev);
          });
          try {
            yield ': connected\n\n';
            if (lastId) {
              for (const ev of await deps.bus.history({ afterId: lastId, workspaceId: filter, limit: 1000 })) {
                sentUpTo = ev.id;
                yield frame(ev);
              }
            }
            yield* live.source;
          } finally {
            unsubscribe();
          }
        }
        const outcome = await pipeStream(res, stream(), abort, { gauge: deps.metrics.openStreams.labels('events') });
        if (outcome.kind === 'failed') req.log.warn({ err: outcome.error }, 'event stream ended with an error');
        res.end();
      },
    );

    app.route({
      method: 'GET',
      url: '/ws',
      schema: {
        hide: true,
        tags: ['events'],
        summary:
          'WebSocket: one JSON event per message. ?heartbeats=1 adds workspace.heartbeat pulses; ?calls=1 adds a2a.calls pulses (per caller → target workspace, at most one per edge per second per replica: {from, to, calls, errors, latencies_ms, interval_ms}). Pulses are not stored; ?workspace_id= keeps those of one workspace (calls it makes or receives)',
      },
      // A plain GET (no upgrade) gets an answer in the API's error shape rather than an empty 404.
      handler: async (_req, reply) =>
        reply.code(426).header('upgrade', 'websocket').send({ error: 'GET /ws is a WebSocket: send Connection: Upgrade, Upgrade: websocket', code: 'upgrade_required' }),
      wsHandler: (socket, req) => {
        const query = new URLSearchParams(req.url.split('?')[1] ?? '');
        const filter = query.get('workspace_id');
        const unsubscribe = deps.bus.subscribe((ev) => {
          if (filter && ev.workspace_id !== filter) return;
          if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(wire(ev)));
        });
        // Pulses only for clients that ask, each kind by itself: live views want them, event consumers do not.
        const on = (flag: string) => ['1', 'true'].includes(query.get(flag) ?? '');
        const heartbeats = on('heartbeats');
        const calls = on('calls');
        const unpulse =
          heartbeats || calls
            ? deps.bus.subscribePulses((p) => {
                if (p.type === 'a2a.calls' ? !calls : !heartbeats) return;
                // A workspace's view also wants the calls it makes, not only those it receives.
                if (filter && p.workspace_id !== filter && !(p.type === 'a2a.calls' && p.data.from === filter)) return;
                if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(p));
              })
            : () => undefined;
        socket.on('close', () => {
          unsubscribe();
          unpulse();
        });
        socket.on('message', () => undefined); // read-only stream; ignore what clients send
      },
    });
  };
}
