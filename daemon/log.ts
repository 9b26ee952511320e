// Daemon logs: pino JSON lines on stderr, never stdout (stdout may carry a ticket or proxied bytes).

import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel = 'info', fd = 2): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      // Keys that may hold secrets are dropped wherever they appear, as a second line of defence.
      redact: { paths: ['seed', 'secret', 'secretKey', 'privateKey', 'password', '*.seed', '*.secret', '*.privateKey', '*.password'], remove: true },
    },
    // Synchronous: log lines are few (one per connection or session) and must survive a crash.
    pino.destination({ fd, sync: true }),
  );
}
