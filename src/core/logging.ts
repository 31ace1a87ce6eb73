import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Where a secret or token could sit in a log object. Values are replaced, so a careless `log.info({ spec })` or
 * `{ req }` cannot leak them; the code also never logs them on purpose.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.query.token',
  'headers.authorization',
  '*.headers.authorization',
  'token',
  '*.token',
  'secrets',
  '*.secrets',
  'env',
  '*.env',
  'value',
  '*.value',
  'sealed',
  '*.sealed',
];

/** The platform's logger: JSON lines, with secrets and tokens redacted. */
export function platformLogger(level: string, destination?: DestinationStream): Logger {
  const opts = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination ? pino(opts, destination) : pino(opts);
}
