/**
 * The server's logger: pino writing one JSON object per line, shaped like etcd's zap output
 * (`{"level":"info","ts":"2024-05-01T12:00:00.000Z","msg":"…",…fields}`), to stderr as etcd does.
 * Unlike zap there is no `caller` field.
 */
import { pino, type DestinationStream, type Level, type Logger } from 'pino';

/** The levels etcd's `--log-level` accepts (etcd `logutil.ConvertToZapLevel`), least severe first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'dpanic', 'panic', 'fatal'] as const;

/** One of etcd's log levels. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** True when `level` is one of {@link LOG_LEVELS}. */
export function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/**
 * zap level → pino level. pino has nothing between `error` and `fatal`, so etcd's three levels
 * above error (`dpanic`, `panic`, `fatal`) all become pino's `fatal`: at any of them only the
 * most severe messages are written.
 */
const PINO_LEVEL: Record<LogLevel, Level> = {
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  error: 'error',
  dpanic: 'fatal',
  panic: 'fatal',
  fatal: 'fatal',
};

/**
 * Creates the server logger.
 * @param level an etcd log level (`config.logLevel`): debug, info, warn, error, dpanic, panic, fatal.
 * @param destination where the JSON lines go. @default stderr (fd 2), written synchronously so
 *   that a line logged just before the process exits is not lost.
 * @returns a pino Logger; each line has `level` (the label, e.g. "info"), `ts` (ISO 8601, UTC),
 *   `msg`, and the logged object's fields; no `pid`/`hostname`.
 * @throws Error when `level` is not one of {@link LOG_LEVELS}.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  if (!isLogLevel(level)) {
    throw new Error(`unknown log level "${level}" (want one of ${LOG_LEVELS.join(', ')})`);
  }
  return pino(
    {
      level: PINO_LEVEL[level],
      base: undefined,
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 2, sync: true }),
  );
}
