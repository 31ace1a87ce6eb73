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
