import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';

export interface CapturedLogs {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
  raw: string[];
  /** Resolves with the first line (already logged or future) matching the predicate. */
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves once `count` lines match. */
  waitForCount(predicate: (line: Record<string, unknown>) => boolean, count: number, timeoutMs?: number): Promise<void>;
}

/** A pino logger that keeps every JSON line in memory, so tests can wait on log events and check for leaks. */
export function captureLogs(level = 'debug'): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const events = new EventEmitter();
  events.setMaxListeners(100);
  const logger = pino(
    { level },
    {
      write(chunk: string) {
        raw.push(chunk);
        lines.push(JSON.parse(chunk) as Record<string, unknown>);
        events.emit('line');
      },
    },
  );
  const waitForCount = (predicate: (line: Record<string, unknown>) => boolean, count: number, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (lines.filter(predicate).length >= count) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${count} matching log line(s); have ${lines.filter(predicate).length}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        events.off('line', check);
      };
      events.on('line', check);
      check();
    });
  return {
    logger,
    lines,
    raw,
    waitForCount,
    async waitFor(predicate, timeoutMs) {
      await waitForCount(predicate, 1, timeoutMs);
      return lines.find(predicate)!;
    },
  };
}
