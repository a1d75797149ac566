/**
 * The `etcd-ts` command (bin/etcd-ts.js): etcd's flags and ETCD_* variables → a running server.
 * SIGTERM and SIGINT close it cleanly: listeners stop, queued writes become durable, the data
 * dir is released, and the process then dies of the same signal, as etcd does (its
 * `osutil.HandleInterrupts` re-raises it): a shell sees 143 or 130. SIGUSR1 and SIGUSR2 are
 * ignored, as etcd ignores them.
 */
import { readdirSync, readFileSync, writeSync } from 'node:fs';

import type { Logger } from 'pino';

import { createLogger, formatCapnslog, LogOutputError, openLogOutputs, plog, type CapnslogLevel, type CapnslogLine } from '../logger.js';
import { bindsSocketsOnly, bindUrls, EmbedFatalError } from '../server/bind.js';
import type { RunningServer } from '../server/embed.js';
import { SERVER_VERSION } from '../version.js';
import { logEtcdmainVersions, logInitializedMember } from '../server/startup-log.js';
import { ERR_UNSET_ADVERTISE_CLIENT_URLS, FlagError, parseFlags, usage, usageSummary, type Notice } from './flags.js';

/**
 * Runs the server until a signal. A command line etcd refuses ends the process as etcd's does:
 * a flag the flag package refuses with its message and the usage summary on stderr, exit
 * status 2; any other refusal, and a failed start, with etcd's log lines and exit status 1
 * (see `refuse`). Before that, what reading the command line had to say is written as etcd
 * writes it ({@link Notice}).
 */
export async function main(argv: string[], env: Record<string, string | undefined>): Promise<void> {
  // etcd (Go) ignores SIGUSR1 and SIGUSR2; Node would open its inspector on the first (a
  // debugger on 127.0.0.1:9229) and die of the second.
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) process.on(signal, () => {});
  if (argv[0] === 'gateway') return (await import('../gateway/cli.js')).gatewayMain(argv.slice(1));
  let parsed;
  try {
    parsed = parseFlags(argv, env);
  } catch (err) {
    if (err instanceof FlagError && err.phase === 'parse') {
      process.stderr.write(`${err.message}\n${usageSummary()}`);
      process.exit(2);
    }
    if (err instanceof FlagError) writeEarly(err.notices);
    // A refusal found after etcd sets up its logging goes where the log goes; if that cannot be
    // opened, etcd's logging setup fails first and that is the refusal.
    let log: Logger | undefined;
    let reason = err;
    if (err instanceof FlagError && err.log !== undefined) {
      try {
        log = createLogger(err.log.level, openLogOutputs(err.log.outputs), err.log.logger);
        logNotices(log, err.notices);
      } catch (openErr) {
        reason = openErr;
      }
    }
    refuse(log, reason);
  }
  if (parsed.action === 'version') {
    process.stdout.write(`etcd Version: ${SERVER_VERSION}\netcd-ts: ${packageVersion()}\nNode Version: ${process.version}\n`);
    return;
  }
  if (parsed.action === 'help') {
    // etcd writes the ways to run it on stderr and its flags on stdout.
    process.stderr.write(usageSummary());
    process.stdout.write(usage());
    return;
  }
  const { config, notices } = parsed;
  // The listeners first when binding them touches nothing but sockets (`bindsSocketsOnly`),
  // before the logger (pino) and the log lines etcd writes before it binds: clients that connect
  // from then on wait in their queues and are served once the store is restored, as etcd's,
  // instead of being refused into clientv3's reconnect backoff (1 s, then 1.6 s more; see
  // ARCHITECTURE, "Startup"). A failure to bind is reported where it was reported before, below,
  // after those lines, and nothing else anyone can see changes order.
  const early = bindsSocketsOnly(config) ? await bindUrls(config).then((bound) => ({ bound }), (error: unknown) => ({ error })) : undefined;
  writeEarly(notices);
  let log: Logger;
  try {
    log = createLogger(config.logLevel, openLogOutputs(config.logOutputs), config.loggerKind);
  } catch (err) {
    refuse(undefined, err);
  }
  logNotices(log, notices);
  logEtcdmainVersions(log, packageVersion());
  try {
    if (identifyDataDir(config.dataDir, log)) logInitializedMember(log, config.dataDir);
  } catch (err) {
    refuse(log, err);
  }
  // etcd sets up its logging again as the server starts, and warns again.
  writeEarly(notices.filter((n) => 'raw' in n && n.again === true));
  let server: RunningServer;
  try {
    // The listeners (unless bound above), then the rest of the server's modules: clients that
    // connect while those load wait in the listeners' queues, as with etcd, instead of being
    // refused.
    if (early && 'error' in early) throw early.error;
    const bound = early?.bound ?? (await bindUrls(config, log));
    const { startEtcd } = await import('../server/embed.js');
    server = await startEtcd(config, log, bound);
  } catch (err) {
    refuse(log, err);
  }
  // A write to the disk failed (logged as etcd logs it): exit as etcd's Fatal does, before any
  // waiting request is answered.
  server.etcd.onFatal = () => process.exit(1);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    // Go's names of the two signals (syscall.Signal.String).
    const name = signal === 'SIGINT' ? 'interrupt' : 'terminated';
    log.info({ signal: name, ...plog('pkg/osutil', 'N', `received ${name} signal, shutting down...`) }, 'received signal; shutting down');
    server.close().then(
      () => {
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
      },
      (err: unknown) => {
        const error = (err as Error).message;
        log.error({ error, ...plog('etcdmain', 'E', `error while shutting down: ${error}`) }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

type ZapLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug';

/** The zap level etcd logs a notice at, by its capnslog level. */
const ZAP_LEVEL: Record<CapnslogLevel, ZapLevel> = { C: 'fatal', E: 'error', W: 'warn', N: 'info', I: 'info', D: 'debug' };

/** Logs one event in both of etcd's forms: zap's `level`, `msg` and `fields`, and capnslog's `line`. */
function logEvent(log: Logger, level: ZapLevel, msg: string, fields: Record<string, unknown>, line: CapnslogLine): void {
  log[level]({ ...fields, ...plog(line.pkg, line.level, line.text) }, msg);
}

/** Logs the notices that are neither raw nor early (see {@link Notice}), in order. */
function logNotices(log: Logger, notices: readonly Notice[]): void {
  for (const n of notices) {
    if (!('raw' in n) && n.early !== true) logEvent(log, ZAP_LEVEL[n.plog.level], n.msg, n.fields, n.plog);
  }
}

/**
 * Writes the notices etcd prints before it has a logger, in order: raw lines as they are, and
 * early log lines as capnslog's default formatter writes them, on stderr.
 */
function writeEarly(notices: readonly Notice[]): void {
  for (const n of notices) {
    if ('raw' in n) writeSync(2, `${n.raw}\n`);
    else if (n.early === true) writeSync(2, formatCapnslog(n.plog));
  }
}

/**
 * Says why the server cannot run, as etcd 3.4 does, and exits with status 1:
 * - an `ETCD_*` variable shadowed by a flag: `C | pkg/flags: …`, on stderr;
 * - a setting refused before the start (etcdmain's "error verifying flags"): zap's warning
 *   "failed to verify flags", capnslog's `E | etcdmain: error verifying flags, <reason>. See
 *   'etcd --help'.`, with a second line after the advertise-URL refusal;
 * - a start refused by etcd's embed package (EmbedFatalError): its own fatal line, `C | embed: …`;
 * - anything else: zap's fatal "failed to start etcd-ts", capnslog's `C | etcdmain: <reason>`.
 * `error` holds etcd's message and `cause` the reason behind it, when there is one.
 * @param log the server's logger; undefined when the refusal comes before etcd has one, which then
 *   writes through capnslog's default formatter, on stderr, whatever `--logger` says.
 */
function refuse(log: Logger | undefined, err: unknown): never {
  const error = (err as Error).message;
  const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : undefined;
  const fields = cause === undefined || error.includes(cause) ? { error } : { error, cause };
  const write = (level: ZapLevel, msg: string, line: CapnslogLine, zapFields: Record<string, unknown> = fields): void => {
    if (log === undefined) writeSync(2, formatCapnslog(line));
    else logEvent(log, level, msg, zapFields, line);
  };
  if (err instanceof FlagError && err.phase === 'env') {
    writeSync(2, formatCapnslog({ pkg: 'pkg/flags', level: 'C', text: error }));
  } else if (err instanceof FlagError ? err.phase === 'verify' : err instanceof LogOutputError) {
    write('warn', 'failed to verify flags', { pkg: 'etcdmain', level: 'E', text: `error verifying flags, ${error}. See 'etcd --help'.` });
    if (error === ERR_UNSET_ADVERTISE_CLIENT_URLS) {
      const text = 'When listening on specific address(es), this etcd process must advertise accessible url(s) to each connected client.';
      write('warn', 'advertise client URLs are not set', { pkg: 'etcdmain', level: 'E', text });
    }
  } else if (err instanceof EmbedFatalError) {
    write('fatal', err.zapMessage, { pkg: 'embed', level: 'C', text: error }, err.fields);
  } else {
    write('fatal', 'failed to start etcd-ts', { pkg: 'etcdmain', level: 'C', text: error });
  }
  process.exit(1);
}

/** etcd-ts's own version: the `version` of the package.json above this module (in src/ or dist/src/). */
function packageVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    let pkg: { name?: string; version?: string };
    try {
      pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as typeof pkg;
    } catch {
      continue;
    }
    if (pkg.name === 'etcd-ts') return pkg.version ?? '';
  }
  return '';
}

/**
 * What the etcd command says of the data dir before it starts a server (etcdmain
 * `identifyDataDirOrDie`): a path it cannot list is fatal (throws `error listing data dir:
 * <dir>`); a name in it other than `member` or `proxy` is warned about (changing nothing).
 * The embedded server does not call it, as etcd's embed package does not.
 * @returns whether the data dir holds a member (`member`); false for a dir not there yet.
 */
function identifyDataDir(dir: string, log: Logger): boolean {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new Error(`error listing data dir: ${dir}`, { cause: err });
  }
  for (const name of names) {
    if (name === 'member' || name === 'proxy') continue;
    const text = `found invalid file/dir ${name} under data dir ${dir} (Ignore this if you are upgrading etcd)`;
    log.warn({ filename: name, 'data-dir': dir, ...plog('etcdmain', 'W', text) }, 'found invalid file under data directory');
  }
  return names.includes('member');
}
