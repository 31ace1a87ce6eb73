import type { FlyTransport } from './transport.js';

/**
 * The simulator's `GET …/{id}/logs` as lines. Real Fly serves logs through flyctl / NATS instead, and answers this
 * route with a FlyApiError 404.
 */
export async function* machineLogs(t: FlyTransport, id: string, opts: { tail?: number; follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<string> {
  const query = { tail: opts.tail ?? 200, ...(opts.follow ? { follow: 1 } : {}) };
  const res = await t.openStream(`${t.machinePath(id)}/logs`, { action: 'logs', machineId: id, query, signal: opts.signal, endless: opts.follow });
  if (!res.body) return;
  try {
    yield* lines(res.body as unknown as AsyncIterable<Uint8Array>);
  } catch (e) {
    if (opts.signal?.aborted) return;
    throw e;
  }
}

/** Splits a byte stream into lines; a last line without a newline is still a line. */
async function* lines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let partial = '';
  for await (const chunk of chunks) {
    const text = partial + decoder.decode(chunk, { stream: true });
    const split = text.split('\n');
    partial = split.pop() ?? '';
    yield* split;
  }
  if (partial) yield partial;
}
