/**
 * The server's logger, in etcd 3.4's two forms (`--logger`):
 * - `zap`: pino writing one JSON object per line, shaped like etcd's zap output
 *   (`{"level":"info","ts":"2024-05-01T12:00:00.000Z","msg":"…",…fields}`), to stderr as etcd
 *   does, or to the outputs of `--log-outputs` ({@link openLogOutputs}). Unlike zap there is no
 *   `caller` field.
 * - `capnslog` (etcd 3.4's default): capnslog's pretty text lines,
 *   `2024-05-01 12:00:00.123456 W | etcdserver: …` (local time, level letter, package, text).
 *
 * etcd's code logs each event twice over, `if lg != nil { lg.Warn(msg, fields…) } else {
 * plog.Warningf(text…) }`, with different words. A call here carries both: the zap message and
 * fields as pino's, and the capnslog line merged into the fields with {@link plog}, which the
 * JSON leaves out.
 */
import { existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { inspect } from 'node:util';

import type { DestinationStream, Level, Logger } from 'pino';
import { goErrnoText } from './go-format.js';

/**
 * pino, loaded at the first logger made: the command binds its listeners before it sets up its
 * logging, without pino's ~20 ms of loading (see cli/etcd-ts.ts).
 */
function loadPino(): typeof import('pino').pino {
  return (createRequire(import.meta.url)('pino') as typeof import('pino')).pino;
}

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
 * @param destination where the lines go. @default stderr (fd 2), written synchronously so
 *   that a line logged just before the process exits is not lost.
 * @param kind `zap`: each line is a JSON object with `level` (the label, e.g. "info"), `ts`
 *   (ISO 8601, UTC), `msg`, and the logged object's fields; no `pid`/`hostname`. `capnslog`: each
 *   line is the call's {@link plog} line (or one made of its level, message and fields), shown
 *   when its capnslog level is at least as severe as `level`'s (etcd's
 *   `ConvertToCapnslogLogLevel`: `warn` shows C, E and W). @default 'zap'
 * @returns a pino Logger.
 * @throws Error when `level` is not one of {@link LOG_LEVELS}.
 */
export function createLogger(level: string, destination?: DestinationStream, kind: LoggerKind = 'zap'): Logger {
  if (!isLogLevel(level)) {
    throw new Error(`unknown log level "${level}" (want one of ${LOG_LEVELS.join(', ')})`);
  }
  const pino = loadPino();
  const out = destination ?? pino.destination({ dest: 2, sync: true });
  if (kind === 'capnslog') {
    const shown = { rank: CAPNSLOG_RANK[CAPNSLOG_THRESHOLD[level]] };
    const logger = pino(
      {
        level: 'debug',
        hooks: {
          // Every call ends here: the line is written in capnslog's form, and pino writes nothing.
          logMethod(args: unknown[], _method, pinoLevel) {
            const [first, second] = args;
            const fields = typeof first === 'object' && first !== null ? (first as Record<string | symbol, unknown>) : {};
            const msg = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
            const line = (fields[CAPNSLOG_LINE] as CapnslogLine | undefined) ?? fallbackLine(pinoLevel, fields, msg);
            if (CAPNSLOG_RANK[line.level] <= shown.rank) out.write(formatCapnslog(line));
          },
        },
      },
      out,
    );
    capnslogThresholds.set(logger, shown);
    return logger;
  }
  return pino(
    {
      level: PINO_LEVEL[level],
      base: undefined,
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    out,
  );
}

/** The two loggers of etcd 3.4's `--logger`. */
export type LoggerKind = 'zap' | 'capnslog';

/**
 * capnslog's levels as the letters its lines show, most severe first: CRITICAL, ERROR, WARNING,
 * NOTICE, INFO, DEBUG.
 */
export type CapnslogLevel = 'C' | 'E' | 'W' | 'N' | 'I' | 'D';

/** One capnslog line: the etcd package that logs it (`etcdmain`, `pkg/flags`, …), its level and text. */
export interface CapnslogLine {
  pkg: string;
  level: CapnslogLevel;
  text: string;
  /** A line of raft's own logger (Go's `log` with the prefix `raft`), not capnslog's: see {@link raftLog}. */
  raft?: true;
}

const CAPNSLOG_LINE = Symbol('capnslog');

/**
 * capnslog's levels, most severe first (a level's rank is its index): its name
 * (`LogLevel.String()`), what else `ParseLevel` takes for it, and last its letter.
 */
const CAPNSLOG_NAMES = [
  ['CRITICAL', 'C'],
  ['ERROR', '0', 'E'],
  ['WARNING', '1', 'W'],
  ['NOTICE', '2', 'N'],
  ['INFO', '3', 'I'],
  ['DEBUG', '4', 'D'],
  ['TRACE', '5', 'T'],
] as const;
const CAPNSLOG_RANK = Object.fromEntries(CAPNSLOG_NAMES.map((names, rank) => [names.at(-1), rank])) as Record<CapnslogLevel, number>;

/** The most verbose rank each capnslog logger shows now (see `setCapnslogLevel`). */
const capnslogThresholds = new WeakMap<Logger, { rank: number }>();

/**
 * capnslog `ParseLevel`: a level's name, letter or number (ERROR is 0 … TRACE 5) to its name;
 * undefined for anything else (etcd upper-cases the text first).
 */
export function parseCapnslogLevel(text: string): string | undefined {
  return CAPNSLOG_NAMES.find((names) => (names as readonly string[]).includes(text))?.[0];
}

/**
 * capnslog `SetGlobalLogLevel`, as etcd 3.4's `PUT /config/local/log` calls it: a capnslog
 * logger shows from now on the lines at least as severe as `name` (a {@link parseCapnslogLevel}
 * result; TRACE shows all). A zap logger is left as it is, as etcd's is.
 */
export function setCapnslogLevel(logger: Logger, name: string): void {
  const shown = capnslogThresholds.get(logger);
  const rank = CAPNSLOG_NAMES.findIndex(([n]) => n === name);
  if (shown && rank >= 0) shown.rank = rank;
}

/** `--log-level` → the most verbose capnslog level shown (etcd `logutil.ConvertToCapnslogLogLevel`). */
const CAPNSLOG_THRESHOLD: Record<LogLevel, CapnslogLevel> = { debug: 'D', info: 'I', warn: 'W', error: 'E', dpanic: 'C', panic: 'C', fatal: 'C' };

/** pino's level numbers → capnslog's, for a call that carries no {@link plog} line. */
const CAPNSLOG_OF_PINO: Readonly<Record<number, CapnslogLevel>> = { 20: 'D', 30: 'I', 40: 'W', 50: 'E', 60: 'C' };

/**
 * A log call's capnslog form, to merge into its fields:
 * `log.warn({ error, ...plog('etcdmain', 'E', \`error verifying flags, ${error}.\`) }, 'failed to verify flags')`.
 * The zap JSON leaves it out (a symbol key); the capnslog logger writes it instead of the message.
 */
export function plog(pkg: string, level: CapnslogLevel, text: string): { [CAPNSLOG_LINE]: CapnslogLine } {
  return { [CAPNSLOG_LINE]: { pkg, level, text } };
}

/**
 * A line of etcd's raft library, which etcd 3.4 under capnslog leaves to raft's default logger:
 * `raft2006/01/02 15:04:05 INFO: text` (local time, to the second). Merged into a call's fields
 * as {@link plog}'s line is; the zap JSON has the text as its message.
 */
export function raftLog(text: string): { [CAPNSLOG_LINE]: CapnslogLine } {
  return { [CAPNSLOG_LINE]: { pkg: 'raft', level: 'I', text, raft: true } };
}

/** True when `log` writes capnslog's lines (`--logger=capnslog`), false for zap's JSON. */
export function isCapnslog(log: Logger): boolean {
  return capnslogThresholds.has(log);
}

/**
 * A capnslog line as its `PrettyFormatter` writes it: `YYYY-MM-DD HH:MM:SS.uuuuuu L | pkg: text`
 * and a newline, in local time, to the microsecond.
 * @param epochMs the time, in milliseconds since the epoch (fractions kept). @default now
 */
export function formatCapnslog(line: CapnslogLine, epochMs: number = performance.timeOrigin + performance.now()): string {
  const at = new Date(Math.floor(epochMs));
  const two = (n: number): string => String(n).padStart(2, '0');
  const micros = String(Math.floor((epochMs % 1000) * 1000)).padStart(6, '0');
  const date = `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}`;
  const time = `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}.${micros}`;
  const text = line.text.endsWith('\n') ? line.text : `${line.text}\n`;
  if (line.raft) return `raft${date.replaceAll('-', '/')} ${time.slice(0, 8)} INFO: ${text}`;
  return `${date} ${time} ${line.level} | ${line.pkg}: ${text}`;
}

/**
 * The capnslog line of a log call that carries none: pino's level, package `etcdserver`, the
 * message and then the fields as `key=value` (an error by its message), on one line.
 */
function fallbackLine(pinoLevel: number, fields: Record<string, unknown>, msg: string): CapnslogLine {
  const text = (v: unknown): string => (typeof v === 'string' ? v : v instanceof Error ? v.message : inspect(v, { breakLength: Infinity }));
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${text(v)}`);
  return { pkg: 'etcdserver', level: CAPNSLOG_OF_PINO[pinoLevel] ?? 'I', text: pairs.length === 0 ? msg : `${msg} (${pairs.join(', ')})` };
}

/** The `--log-outputs` name of the systemd journal (etcd `embed.JournalLogOutput`). */
export const JOURNAL_LOG_OUTPUT = 'systemd/journal';

/** The socket etcd's `systemd/journal` output writes to (`logutil.NewJournalWriter`). */
const JOURNAL_SOCKET = '/run/systemd/journal/socket';

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
  const pino = loadPino();
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
    const text = goErrnoText((err as NodeJS.ErrnoException).code) ?? (err as Error).message;
    throw new LogOutputError(`open sink ${JSON.stringify(output)}: open ${output}: ${text}`);
  }
}
