import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { pipeStream, pushSource, type StreamOutcome } from '../../src/server/pipe-stream.js';
import { waitFor } from '../support/harness.js';
import { blockedOn, stalledRequest } from '../support/stalled.js';

/** The shared streaming helper against real sockets: a real HTTP server, clients that read slowly or not at all. */

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
    await once(s, 'close');
  }
});

/** A server whose one route streams what `serve` gives it through pipeStream; each outcome is recorded. */
async function streamingServer(serve: (res: http.ServerResponse, upstream: AbortController) => Promise<StreamOutcome>) {
  const outcomes: StreamOutcome[] = [];
  const gauge = { open: 0, inc: () => gauge.open++, dec: () => gauge.open-- };
  const server = http.createServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.flushHeaders();
    const outcome = await serve(res, new AbortController());
    outcomes.push(outcome);
    if (outcome.kind === 'failed') res.write(`failed: ${(outcome.error as Error).message}\n`);
    res.end();
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, outcomes, gauge };
}

const block = (i: number) => `${String(i).padStart(8, '0')}${'.'.repeat(16 * 1024 - 9)}\n`;

describe('pipeStream', () => {
  it('waits for a slow client and delivers everything, in order', async () => {
    const total = 400; // 6.4 MB: more than the socket buffers hold, so the writer must wait for 'drain'
    let drains = 0;
    const { port, outcomes } = await streamingServer((res, upstream) => {
      res.on('drain', () => drains++);
      return pipeStream(res, (async function* () {
        for (let i = 0; i < total; i++) yield block(i);
      })(), upstream);
    });
    const res = await fetch(`http://127.0.0.1:${port}/`);
    const reader = res.body!.getReader();
    await sleep(500); // not reading yet: the server fills the buffers and stops
    let text = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(total);
    expect(lines.every((l, i) => l.startsWith(String(i).padStart(8, '0')))).toBe(true);
    expect(outcomes).toEqual([{ kind: 'ended' }]);
    expect(drains).toBeGreaterThan(0);
  });

  it('resolves "closed" when a stalled client disconnects: the upstream is aborted and the source returned', async () => {
    let released = false;
    let upstreamAborted = false;
    const { port, outcomes, gauge } = await streamingServer((res, upstream) => {
      upstream.signal.addEventListener('abort', () => (upstreamAborted = true));
      const endless = async function* () {
        try {
          for (let i = 0; ; i++) yield block(i);
        } finally {
          released = true;
        }
      };
      return pipeStream(res, endless(), upstream, { gauge });
    });
    const sock = await stalledRequest(port, 'GET / HTTP/1.1');
    await blockedOn(port, sock);
    expect(gauge.open).toBe(1);
    expect(outcomes).toEqual([]);
    sock.destroy();
    await waitFor('the stream to end', async () => outcomes.length === 1, 5000);
    expect(outcomes).toEqual([{ kind: 'closed' }]);
    expect(upstreamAborted).toBe(true);
    await waitFor('the source to be returned', async () => released, 5000);
    expect(gauge.open).toBe(0);
  });

  it('releases a source that is waiting for data when the client disconnects', async () => {
    let released = false;
    const { port, outcomes } = await streamingServer((res, upstream) => {
      const quiet = async function* () {
        try {
          yield 'hello\n';
          // Waits for the upstream, as a log poll or an event queue does; only an abort wakes it.
          await new Promise((resolve) => upstream.signal.addEventListener('abort', resolve));
        } finally {
          released = true;
        }
      };
      return pipeStream(res, quiet(), upstream);
    });
    const sock = await stalledRequest(port, 'GET / HTTP/1.1');
    sock.destroy();
    await waitFor('the stream to end', async () => outcomes.length === 1, 5000);
    expect(outcomes).toEqual([{ kind: 'closed' }]);
    await waitFor('the source to be returned', async () => released, 5000);
  });

  it('reports a source that fails while the client is still there', async () => {
    const { port, outcomes } = await streamingServer((res, upstream) =>
      pipeStream(res, (async function* () {
        yield 'first\n';
        throw new Error('upstream broke');
      })(), upstream),
    );
    const text = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    expect(text).toBe('first\nfailed: upstream broke\n');
    expect(outcomes).toMatchObject([{ kind: 'failed', error: { message: 'upstream broke' } }]);
  });
});

describe('pushSource', () => {
  it('drops its queue and calls onOverflow once a stalled client falls more than `limit` items behind', async () => {
    let feed: ReturnType<typeof pushSource<number>> | undefined;
    let overflows = 0;
    const { port, outcomes } = await streamingServer((res, upstream) => {
      // As the event stream does: a client that cannot keep up is disconnected.
      feed = pushSource<number>({ limit: 50, signal: upstream.signal, format: block, onOverflow: () => (overflows++, res.destroy()) });
      return pipeStream(res, feed.source, upstream);
    });
    const sock = await stalledRequest(port, 'GET / HTTP/1.1');
    try {
      await waitFor('the stream to start', async () => feed !== undefined, 5000);
      for (let i = 0; i < 5000 && !feed!.overflowed(); i++) {
        feed!.push(i);
        await new Promise((r) => setImmediate(r));
      }
      expect(feed!.overflowed()).toBe(true);
      for (let i = 0; i < 100; i++) feed!.push(i); // ignored: nothing more is queued
      expect(overflows).toBe(1);
      await waitFor('the stream to end', async () => outcomes.length === 1, 5000);
      expect(outcomes).toEqual([{ kind: 'closed' }]);
      expect(await feed!.source.next()).toEqual({ done: true, value: undefined });
    } finally {
      sock.destroy();
    }
  });

  it('yields a keepalive when idle and each pushed item once, formatted', async () => {
    let feed: ReturnType<typeof pushSource<string>> | undefined;
    await streamingServer((res, upstream) => {
      feed = pushSource<string>({ limit: 10, signal: upstream.signal, format: (s) => (s === 'skip' ? undefined : `item ${s}\n`), idleMs: 100, idle: () => 'idle\n' });
      return pipeStream(res, feed.source, upstream);
    }).then(async ({ port }) => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      const readUntil = async (s: string) => {
        while (!text.includes(s)) text += decoder.decode((await reader.read()).value, { stream: true });
      };
      await readUntil('idle\n');
      feed!.push('a');
      feed!.push('skip');
      feed!.push('b');
      await readUntil('item b\n');
      expect(text.replaceAll('idle\n', '')).toBe('item a\nitem b\n');
      await reader.cancel();
    });
  });
});
