import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/** What a streaming answer copies from: an async iterable (a generator, an undici body) or a Node stream. */
export type StreamSource = AsyncIterable<string | Uint8Array> | Readable;

/**
 * How a stream ended. `ended`: the source finished, the client is still there. `closed`: the client went away (or
 * the upstream was aborted by someone else); the upstream has been released. `failed`: the source threw while the
 * client was still there; the caller may tell it so before ending the response.
 */
export type StreamOutcome = { kind: 'ended' } | { kind: 'closed' } | { kind: 'failed'; error: unknown };

export interface PipeOptions {
  /** Counts the stream while it runs (e.g. a gauge's labelled child), so a leaked stream shows. */
  gauge?: { inc(): void; dec(): void };
}

const GONE = Symbol('gone');

/**
 * Copies source to an HTTP response with backpressure: when the socket is full it waits for 'drain', but never
 * only for it: the client going away ('close' or 'error' on the response) or the upstream being aborted ends the
 * wait at once. A client that stops reading and then disconnects would otherwise leave the handler waiting for a
 * 'drain' that never comes, and the upstream (an agent's SSE connection, a log file being read) held forever.
 *
 * Whenever the source did not run to its end, `upstream` is aborted (cancelling whatever feeds the source: a fetch,
 * a poll) and the source's iterator is returned (a generator's finally blocks run, a Readable is destroyed).
 * Resolves, never rejects. It does not end the response: the caller may still write a last frame, then end it.
 */
export async function pipeStream(res: ServerResponse, source: StreamSource, upstream: AbortController, opts: PipeOptions = {}): Promise<StreamOutcome> {
  const iterator = (source as AsyncIterable<string | Uint8Array>)[Symbol.asyncIterator]();
  let leave!: () => void;
  const gone = new Promise<typeof GONE>((resolve) => (leave = () => resolve(GONE)));
  const isGone = () => upstream.signal.aborted || res.destroyed || res.writableEnded || !res.socket || res.socket.destroyed;
  res.once('close', leave);
  res.once('error', leave);
  upstream.signal.addEventListener('abort', leave, { once: true });
  opts.gauge?.inc();

  let finished = false;
  let outcome: StreamOutcome = { kind: 'closed' };
  try {
    while (!isGone()) {
      const next = iterator.next();
      // Should the client leave first, the read still pending may fail (an aborted fetch): that is expected.
      next.catch(() => undefined);
      const item = await Promise.race([next, gone]);
      if (item === GONE) break;
      if (item.done) {
        finished = true;
        outcome = { kind: 'ended' };
        break;
      }
      if (isGone()) break;
      if (!res.write(item.value)) {
        let onDrain!: () => void;
        const drained = new Promise<void>((resolve) => res.once('drain', (onDrain = resolve)));
        const woke = await Promise.race([drained, gone]);
        res.off('drain', onDrain);
        if (woke === GONE) break;
      }
    }
  } catch (error) {
    outcome = isGone() ? { kind: 'closed' } : { kind: 'failed', error };
  } finally {
    res.off('close', leave);
    res.off('error', leave);
    upstream.signal.removeEventListener('abort', leave);
    if (!finished) {
      // Also after a failure (harmless for an iterator that threw, needed should the write have thrown).
      // Abort first: a source waiting on the signal (a poll, a fetch) wakes up and can honour the return().
      upstream.abort();
      // Not awaited: a generator busy in an await handles the return() only once it gets there.
      Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => undefined);
      // A stream's iterator never started would not destroy it on return().
      if (typeof (source as Readable).destroy === 'function') (source as Readable).destroy();
    }
    opts.gauge?.dec();
  }
  return outcome;
}

/**
 * A source fed by pushes (an event bus subscription), for pipeStream. Items wait in a queue while the client is
 * slow; past `limit` waiting items the queue is dropped, `onOverflow` runs and the source ends, rather than
 * growing without bound. The caller should drop the client there (pipeStream may be waiting for a 'drain' that a
 * stalled client never allows; an SSE client reconnects and resumes). Every `idleMs` without items it yields `idle()` (a keepalive). `format` turns an item
 * into what is written, or skips it (undefined).
 */
export function pushSource<T>(opts: {
  limit: number;
  signal: AbortSignal;
  format: (item: T) => string | undefined;
  onOverflow?: () => void;
  idleMs?: number;
  idle?: () => string;
}): { push(item: T): void; overflowed(): boolean; source: AsyncGenerator<string> } {
  const queue: T[] = [];
  let overflow = false;
  let wake: (() => void) | undefined;
  const push = (item: T) => {
    if (overflow) return;
    queue.push(item);
    if (queue.length > opts.limit) {
      overflow = true;
      queue.length = 0;
      opts.onOverflow?.();
    }
    wake?.();
  };
  async function* source(): AsyncGenerator<string> {
    while (!opts.signal.aborted && !overflow) {
      while (queue.length) {
        const text = opts.format(queue.shift()!);
        if (text) yield text;
        if (opts.signal.aborted || overflow) return;
      }
      const idle = await new Promise<boolean>((resolve) => {
        const done = (timedOut: boolean) => {
          clearTimeout(timer);
          opts.signal.removeEventListener('abort', onAbort);
          wake = undefined;
          resolve(timedOut);
        };
        const onAbort = () => done(false);
        const timer = opts.idleMs ? setTimeout(() => done(true), opts.idleMs) : undefined;
        wake = () => done(false);
        opts.signal.addEventListener('abort', onAbort, { once: true });
      });
      if (idle && opts.idle) yield opts.idle();
    }
  }
  return { push, overflowed: () => overflow, source: source() };
}
