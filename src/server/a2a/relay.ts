import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';

export interface Exchanged {
  status: number;
  type: string;
  body: Buffer;
}

export type Relayed =
  /** Read whole: a unary answer, or a streaming call's answer that is not SSE (an error, say). */
  | ({ kind: 'answer' } & Exchanged)
  /** The stream ran to its end, or the client left (`closed`), or the agent's side failed midway (`failed`). */
  | { kind: 'ended' | 'closed' }
  | { kind: 'failed'; error: Error };

export interface RelayOptions {
  url: string;
  headers: Record<string, string>;
  body: Buffer | string;
  timeoutMs: number;
  /** An answer read whole that is longer than this fails with `tooLarge()` and is not read further. */
  maxBytes: number;
  tooLarge: () => Error;
  /** The client's response: if it closes first, the request to the agent is aborted. */
  res: ServerResponse;
  /** For a streaming call: an SSE answer is relayed as it comes instead of read whole. */
  stream?: {
    /** Called once the agent's answer turns out to be an SSE stream: write the response head. */
    start(status: number): void;
    /** Called once, when the first chunk of the stream has been written to the client. */
    first?(): void;
    /** Counts the stream while it runs (a gauge's child), so a leaked one shows. */
    gauge?: { inc(): void; dec(): void };
  };
}

/**
 * One request to an agent. The answer is read whole, unless `stream` is given and the agent answers with SSE: then
 * its chunks go to the client as they come, with backpressure both ways (a full client socket pauses the agent's; a
 * client that leaves aborts it). Written on undici's dispatch callbacks rather than `request()`, whose body stream,
 * async iteration and promises were a measurable share of the proxy's CPU per call (BENCHMARKS.md). Rejects with
 * undici's own errors (timeouts, refused connections) or `tooLarge()`, unless a stream has started.
 */
export function relay(dispatcher: Dispatcher, o: RelayOptions): Promise<Relayed> {
  const target = new URL(o.url);
  return new Promise((resolve, reject) => {
    let settled = false;
    let controller: Dispatcher.DispatchController | undefined;
    let streaming = false;
    let relayed = false;
    let status = 0;
    let type = '';
    const chunks: Buffer[] = [];
    let size = 0;
    const resume = () => controller?.resume();
    const onClose = () => {
      if (settled) return;
      controller?.abort(new Error('the client closed the connection'));
      settle(undefined, { kind: 'closed' });
    };
    const settle = (err: Error | undefined, value?: Relayed) => {
      if (settled) return;
      settled = true;
      o.res.off('close', onClose);
      o.res.off('drain', resume);
      if (streaming) o.stream?.gauge?.dec();
      if (err) reject(err);
      else resolve(value!);
    };
    o.res.once('close', onClose);
    dispatcher.dispatch(
      { origin: target.origin, path: '/', method: 'POST', headers: o.headers, body: o.body, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs },
      {
        onRequestStart(c) {
          controller = c;
          if (o.res.destroyed) onClose();
        },
        onResponseStart(_c, statusCode, headers) {
          status = statusCode;
          const t = headers['content-type'];
          type = Array.isArray(t) ? t[0] ?? '' : t ?? '';
          if (o.stream && statusCode >= 200 && statusCode < 300 && type.startsWith('text/event-stream')) {
            streaming = true;
            o.stream.gauge?.inc();
            o.stream.start(statusCode);
          }
        },
        onResponseData(c, chunk) {
          if (settled) return;
          if (streaming) {
            const more = o.res.write(chunk);
            if (!relayed) {
              relayed = true;
              o.stream?.first?.();
            }
            if (!more) {
              c.pause();
              o.res.once('drain', resume);
            }
            return;
          }
          size += chunk.length;
          if (size > o.maxBytes) {
            const err = o.tooLarge();
            settle(err);
            c.abort(err);
            return;
          }
          chunks.push(chunk);
        },
        onResponseEnd() {
          settle(undefined, streaming ? { kind: 'ended' } : { kind: 'answer', status, type, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
        },
        onResponseError(_c, err) {
          if (streaming) settle(undefined, { kind: 'failed', error: err });
          else settle(err);
        },
      },
    );
  });
}
