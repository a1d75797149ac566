/**
 * The server's logger: pino writing one JSON object per line, shaped like etcd's zap output
 * (`{"level":"info","ts":"2024-05-01T12:00:00.000Z","msg":"…",…fields}`), to stderr as etcd does,
 * or to the outputs of `--log-outputs` ({@link openLogOutputs}). Unlike zap there is no `caller`
 * field.
 */
import { existsSync, openSync } from 'node:fs';

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

/** The `--log-outputs` name of the systemd journal (etcd `embed.JournalLogOutput`). */
export const JOURNAL_LOG_OUTPUT = 'systemd/journal';

/** The socket etcd's `systemd/journal` output writes to (`logutil.NewJournalWriter`). */
const JOURNAL_SOCKET = '/run/systemd/journal/socket';

/** Go's texts (syscall.Errno.Error) for the errors opening a log file can meet. */
const GO_ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EROFS: 'read-only file system',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  ENOSPC: 'no space left on device',
};

/** An output of `--log-outputs` that cannot be opened; the message is etcd's. */
export class LogOutputError extends Error {
  override readonly name = 'LogOutputError';
}

/**
 * Opens the log outputs of `ServerConfig.logOutputs` (as `--logger`/`--log-outputs`
 * resolved them), as zap's sinks: `stderr` and `stdout` are the process's own; any other name is
 * a file, opened for appending and created with mode 0666 (less the umask) if missing;
 * `systemd/journal` writes to stderr, which systemd hands to the journal, once the journal's
 * socket is found (etcd writes datagrams to it, which Node cannot send). Each line is written
 * synchronously, so nothing logged before an exit is lost.
 * @param outputs one or more outputs.
 * @returns one destination writing every line to each output.
 * @throws LogOutputError with etcd's text: `open sink "<path>": open <path>: no such file or
 *   directory` (or Go's text for another errno), `can't find journal (…)`.
 */
export function openLogOutputs(outputs: readonly string[]): DestinationStream {
  const destinations = outputs.map((output) => pino.destination({ fd: outputFd(output), sync: true }));
  if (destinations.length === 1) return destinations[0] as DestinationStream;
  return { write: (line: string) => destinations.forEach((d) => d.write(line)) };
}

/** The descriptor to write `output` to (see {@link openLogOutputs}). */
function outputFd(output: string): number {
  if (output === 'stderr') return 2;
  if (output === 'stdout') return 1;
  if (output === JOURNAL_LOG_OUTPUT) {
    if (!existsSync(JOURNAL_SOCKET)) {
      throw new LogOutputError(`can't find journal (dial unixgram ${JOURNAL_SOCKET}: connect: no such file or directory)`);
    }
    return 2;
  }
  try {
    return openSync(output, 'a', 0o666);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const text = GO_ERRNO_TEXT[code] ?? (err as Error).message;
    throw new LogOutputError(`open sink ${JSON.stringify(output)}: open ${output}: ${text}`);
  }
}
