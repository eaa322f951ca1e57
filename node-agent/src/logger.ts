import { type Logger, pino } from 'pino';

/** The agent's root logger: JSON lines on stdout, constant messages with structured fields. */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino({ name: opts.name ?? 'node-agent', level: opts.level ?? process.env.LOG_LEVEL ?? 'info' });
}
