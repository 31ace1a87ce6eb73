import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * JSON lines on stdout: the platform collects stdout as the workspace's log on every backend. Secrets are never
 * passed to the logger; the redact list is a second line of defence against a careless future log call.
 */
export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  // An unknown LOG_LEVEL must not stop the agent from starting (pino throws on it).
  const known = level === 'silent' || level in pino.levels.values;
  return pino(
    {
      level: known ? level : 'info',
      base: { service: 'molecule-agent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['token', 'apiKey', 'api_key', 'authorization', '*.token', '*.apiKey', '*.api_key', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;
const REDACTED_KEYS = new Set(['token', 'apiKey', 'api_key', 'authorization']);

/**
 * The lines createLogger writes (pino's JSON: level number, ISO time, bindings, fields, msg; the same redactions),
 * handed to `sink` instead of stdout, by a few-field object rather than a pino instance: what an agent embedded
 * by the thousand in one process (embedded.ts) logs with. Covers what the agent calls: the level methods, child,
 * level and isLevelEnabled.
 */
export function createLineLogger(level: string, sink: (line: string) => void, bindings: Record<string, unknown> = { service: 'molecule-agent' }): Logger {
  const min = level === 'silent' ? Infinity : (LEVELS[level as LevelName] ?? LEVELS.info);
  return new LineLogger(min, bindings, sink) as unknown as Logger;
}

class LineLogger {
  constructor(
    private readonly min: number,
    private readonly bindings: Record<string, unknown>,
    private readonly sink: (line: string) => void,
  ) {}

  get level(): string {
    return (Object.keys(LEVELS) as LevelName[]).find((k) => LEVELS[k] === this.min) ?? 'silent';
  }

  isLevelEnabled(level: string): boolean {
    return (LEVELS[level as LevelName] ?? Infinity) >= this.min;
  }

  child(bindings: Record<string, unknown>): LineLogger {
    return new LineLogger(this.min, { ...this.bindings, ...bindings }, this.sink);
  }

  private write(n: number, a: unknown, b: unknown): void {
    if (n < this.min) return;
    const fields = typeof a === 'object' && a !== null ? redactTop(a as Record<string, unknown>) : {};
    const msg = typeof a === 'string' ? a : typeof b === 'string' ? b : undefined;
    this.sink(JSON.stringify({ level: n, time: new Date().toISOString(), ...this.bindings, ...fields, ...(msg !== undefined ? { msg } : {}) }));
  }

  trace(a: unknown, b?: unknown): void {
    this.write(LEVELS.trace, a, b);
  }
  debug(a: unknown, b?: unknown): void {
    this.write(LEVELS.debug, a, b);
  }
  info(a: unknown, b?: unknown): void {
    this.write(LEVELS.info, a, b);
  }
  warn(a: unknown, b?: unknown): void {
    this.write(LEVELS.warn, a, b);
  }
  error(a: unknown, b?: unknown): void {
    this.write(LEVELS.error, a, b);
  }
  fatal(a: unknown, b?: unknown): void {
    this.write(LEVELS.fatal, a, b);
  }
}

function redactTop(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    if (REDACTED_KEYS.has(k)) {
      if (out === fields) out = { ...fields };
      out[k] = '[redacted]';
    } else if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).some((x) => REDACTED_KEYS.has(x))) {
      if (out === fields) out = { ...fields };
      out[k] = redactTop(v as Record<string, unknown>);
    }
  }
  return out;
}
