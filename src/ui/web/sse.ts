/** Reads a text/event-stream response body, yielding each event's data parsed as JSON. */
export async function* sseJson(res: Response): AsyncGenerator<unknown> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    for (let end = buf.search(/\r?\n\r?\n/); end >= 0; end = buf.search(/\r?\n\r?\n/)) {
      const block = buf.slice(0, end);
      buf = buf.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data) yield JSON.parse(data);
    }
  }
}

/** Reads a text/plain body a line at a time as it arrives. */
export async function* textLines(res: Response): AsyncGenerator<string[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const cut = buf.lastIndexOf('\n');
    if (cut < 0) continue;
    yield buf.slice(0, cut).split('\n');
    buf = buf.slice(cut + 1);
  }
  if (buf) yield [buf];
}

/** An id for JSON-RPC requests and A2A messages; crypto.randomUUID needs a secure context, this does not. */
export function uid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
