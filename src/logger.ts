import { type DestinationStream, type Logger, pino } from 'pino';

// Secrets never reach the logs: request logging records method, route, status and timing only, and
// these paths are censored in case a secret-bearing object is ever logged by mistake.
export const REDACT_PATHS = [
  'authorization',
  'token',
  'key',
  'secret',
  'code',
  'captchaToken',
  'password',
  '*.authorization',
  '*.token',
  '*.key',
  '*.secret',
  '*.code',
  '*.captchaToken',
  '*.password',
  'req.headers.authorization',
  'req.headers["x-gatehouse-token"]',
  'req.headers["x-api-key"]',
  'headers.authorization',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'gatehouse' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

export type { Logger };
