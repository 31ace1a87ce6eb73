/**
 * Sim-only: a machine's output (on Fly: `flyctl logs` / NATS). With follow=1 the answer stays open and streams
 * new lines, so a test or a person can watch an agent boot.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { LogLine } from '../../runner.js';
import { truthyQuery } from '../../util.js';
import { MACHINE_BASE, route, type RouteDeps } from '../route.js';

const FORMATS = ['text', 'raw', 'json', 'ndjson'];

export const logRoutes: FastifyPluginAsync<RouteDeps> = async (app, { engine }) => {
  route(app, 'GET', `${MACHINE_BASE}/logs`, 'logs', async (req, reply) => {
    const m = engine.machine(req.params.app, req.params.id);
    // text (the default) has flyctl's prefix, raw is the line alone, ndjson (alias json) one object per line
    const format = String(req.query.format ?? 'text');
    if (!FORMATS.includes(format)) {
      return reply.code(400).send({ error: `invalid format "${format}": one of text, raw, ndjson` });
    }
    const json = format === 'json' || format === 'ndjson';
    const tailRaw = Number(req.query.tail);
    const lines = engine.logs(m).tail(Number.isInteger(tailRaw) && tailRaw >= 0 ? tailRaw : undefined);
    const fmt = (l: LogLine) =>
      json
        ? `${JSON.stringify({ timestamp: new Date(l.timestamp).toISOString(), stream: l.stream, message: l.message, instance: l.instance, machine_id: m.id, region: m.region })}\n`
        : format === 'raw'
          ? `${l.message}\n`
          : `${new Date(l.timestamp).toISOString()} app[${m.id}] ${m.region} [${l.stream === 'stderr' ? 'error' : 'info'}] ${l.message}\n`;
    const type = json ? 'application/x-ndjson' : 'text/plain; charset=utf-8';
    if (!truthyQuery(req.query.follow)) return reply.type(type).send(lines.map(fmt).join(''));
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'fly-request-id': String(reply.getHeader('fly-request-id') ?? '') });
    res.socket?.setNoDelay(true);
    res.flushHeaders();
    for (const l of lines) res.write(fmt(l));
    const unsub = engine.logs(m).subscribe((l) => res.write(fmt(l)));
    res.once('close', unsub);
  });
};
