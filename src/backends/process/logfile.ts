import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Last `n` lines of the first `upTo` bytes of a file, reading backwards in blocks so a large log costs little. */
export async function lastLines(file: string, n: number, upTo?: number): Promise<{ lines: string[]; size: number }> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], size: 0 };
    throw e;
  }
  try {
    const size = Math.min(upTo ?? Infinity, (await fh.stat()).size);
    const block = 64 * 1024;
    let pos = size;
    let text = '';
    while (pos > 0 && text.split('\n').length <= n + 1) {
      const len = Math.min(block, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, pos);
      text = buf.toString('utf8') + text;
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return { lines: n > 0 ? lines.slice(-n) : [], size };
  } finally {
    await fh.close();
  }
}

type ReadOptions = { tail?: number; follow?: boolean; signal?: AbortSignal; pollMs?: number };

/**
 * Yields the last `tail` lines, then (with follow) each new line until the signal aborts. The split between
 * "old" and "new" is the file's size when this is called, not when iteration starts, so a line written in
 * between (say, while response headers travel) is neither lost nor shown twice.
 */
export function readLog(file: string, opts: ReadOptions): AsyncGenerator<string> {
  let size = 0;
  try {
    size = fs.statSync(file).size;
  } catch {
    /* no log yet: everything is new */
  }
  return readFrom(file, size, opts);
}

async function* readFrom(file: string, startSize: number, opts: ReadOptions): AsyncGenerator<string> {
  const { lines, size } = await lastLines(file, opts.tail ?? 200, startSize);
  yield* lines;
  if (!opts.follow) return;
  let offset = size;
  let partial = '';
  while (!opts.signal?.aborted) {
    try {
      await sleep(opts.pollMs ?? 200, undefined, { signal: opts.signal });
    } catch {
      return;
    }
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(file);
    } catch {
      continue;
    }
    if (stat.size < offset) offset = 0; // truncated or replaced
    if (stat.size === offset) continue;
    const fh = await fs.promises.open(file, 'r');
    try {
      const buf = Buffer.alloc(stat.size - offset);
      await fh.read(buf, 0, buf.length, offset);
      offset = stat.size;
      const parts = (partial + buf.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      yield* parts;
    } finally {
      await fh.close();
    }
  }
}
