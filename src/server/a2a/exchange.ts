import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';

export interface Exchanged {
  status: number;
  type: string;
  body: Buffer;
}

export interface ExchangeOptions {
  url: string;
  headers: Record<string, string>;
  body: Buffer | string;
  timeoutMs: number;
  /** An answer longer than this fails with `tooLarge()` and is not read further. */
  maxBytes: number;
  tooLarge: () => Error;
  /** The client's response: if it closes first, the request to the agent is aborted. */
  res: ServerResponse;
}

/**
 * One request to an agent, its answer read whole: the proxy's unary calls. Written on undici's dispatch callbacks
 * rather than `request()`, whose body stream, async iteration and promises are a measurable share of the proxy's
 * CPU per call (BENCHMARKS.md). Rejects with undici's own errors (timeouts, refused connections) or `tooLarge()`.
 */
export function exchange(dispatcher: Dispatcher, o: ExchangeOptions): Promise<Exchanged> {
  const target = new URL(o.url);
  return new Promise((resolve, reject) => {
    let settled = false;
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let type = '';
    const chunks: Buffer[] = [];
    let size = 0;
    const onClose = () => {
      if (!settled) controller?.abort(new Error('the client closed the connection'));
    };
    const settle = (err: Error | undefined, value?: Exchanged) => {
      if (settled) return;
      settled = true;
      o.res.off('close', onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    o.res.once('close', onClose);
    dispatcher.dispatch(
      { origin: target.origin, path: '/', method: 'POST', headers: o.headers, body: o.body, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs },
      {
        onRequestStart(c) {
          controller = c;
          if (o.res.destroyed) c.abort(new Error('the client closed the connection'));
        },
        onResponseStart(_c, statusCode, headers) {
          status = statusCode;
          const t = headers['content-type'];
          type = Array.isArray(t) ? t[0] ?? '' : t ?? '';
        },
        onResponseData(c, chunk) {
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
          settle(undefined, { status, type, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
        },
        onResponseError(_c, err) {
          settle(err);
        },
      },
    );
  });
}
