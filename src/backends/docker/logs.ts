/**
 * The engine's log stream, as lines. Containers without a TTY (ours) send stdout and stderr multiplexed: frames of
 * an 8-byte header (stream 1/2, three zero bytes, big-endian payload length) followed by the payload. A frame can
 * hold part of a line or several lines, and a read can end in the middle of a header, so bytes are buffered until
 * a frame is whole and each stream keeps its own unfinished line.
 */
export async function* demuxLines(chunks: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let pending: Buffer = Buffer.alloc(0);
  const partial = new Map<number, string>();
  let raw: boolean | undefined;
  const take = function* (streamId: number, text: string): Generator<string> {
    const parts = ((partial.get(streamId) ?? '') + text).split('\n');
    partial.set(streamId, parts.pop() ?? '');
    for (const p of parts) yield p.replace(/\r$/, '');
  };
  for await (const chunk of chunks) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    pending = pending.length ? Buffer.concat([pending, buf]) : buf;
    // A container created with a TTY sends plain bytes; tell the two apart by the first header.
    if (raw === undefined && pending.length >= 4) raw = !isHeader(pending);
    if (raw) {
      yield* take(1, pending.toString('utf8'));
      pending = Buffer.alloc(0);
      continue;
    }
    while (pending.length >= 8) {
      const size = pending.readUInt32BE(4);
      if (pending.length < 8 + size) break;
      yield* take(pending[0], pending.subarray(8, 8 + size).toString('utf8'));
      pending = pending.subarray(8 + size);
    }
  }
  if (raw && pending.length) yield* take(1, pending.toString('utf8'));
  for (const rest of partial.values()) if (rest) yield rest;
}

function isHeader(b: Buffer): boolean {
  return b[0] <= 2 && b[1] === 0 && b[2] === 0 && b[3] === 0;
}
