/**
 * Reads an SSE response event by event as bytes arrive, so a test can assert what it has received before the
 * server has finished (which is how the streaming tests prove the agent does not buffer).
 */
export class SseReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = '';
  private done = false;
  readonly events: Array<Record<string, unknown>> = [];

  constructor(response: Response) {
    if (!response.body) throw new Error('response has no body');
    this.reader = response.body.getReader();
  }

  /** The next event's parsed `data:` JSON, or undefined at the end of the stream. */
  async next(): Promise<Record<string, unknown> | undefined> {
    for (;;) {
      const sep = this.buffer.indexOf('\n\n');
      if (sep >= 0) {
        const frame = this.buffer.slice(0, sep);
        this.buffer = this.buffer.slice(sep + 2);
        const data = frame
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        const event = JSON.parse(data) as Record<string, unknown>;
        this.events.push(event);
        return event;
      }
      if (this.done) return undefined;
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  /** Reads until `predicate` matches an event (returned) or the stream ends (throws). */
  async until(predicate: (event: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    for (;;) {
      const event = await this.next();
      if (!event) throw new Error(`stream ended before the expected event; got ${JSON.stringify(this.events)}`);
      if (predicate(event)) return event;
    }
  }

  async rest(): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = [];
    for (let e = await this.next(); e; e = await this.next()) out.push(e);
    return out;
  }

  async cancel(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }
}

/** `result` of a JSON-RPC event, typed loosely for assertions. */
export function resultOf(event: Record<string, unknown> | undefined): Record<string, any> {
  return (event?.result ?? {}) as Record<string, any>;
}
