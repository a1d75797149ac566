/**
 * The `etcd-ts` command (bin/etcd-ts.js): etcd's flags and ETCD_* variables → a running server.
 * SIGTERM and SIGINT close it cleanly: listeners stop, queued writes become durable, the data
 * dir is released, and the process exits 0.
 */
import { readFileSync } from 'node:fs';

import type { Logger } from 'pino';

import { createLogger, LogOutputError, openLogOutputs } from '../logger.js';
import { startEtcd } from '../server/embed.js';
import { SERVER_VERSION } from '../server/etcd-server.js';
import { ERR_UNSET_ADVERTISE_CLIENT_URLS, FlagError, parseFlags, usage, usageSummary } from './flags.js';

/**
 * Runs the server until a signal. A command line etcd refuses ends the process as etcd's does:
 * a flag the flag package refuses with its message and the usage summary on stderr, exit
 * status 2; any other refusal, and a failed start, with a JSON log line ("failed to verify
 * flags" or "failed to start etcd-ts", the reason in `error`) and exit status 1. As in etcd, that
 * line goes to stderr when the refusal comes before the log settings are checked, and to the
 * `--log-outputs` at `--log-level` after.
 */
export async function main(argv: string[], env: Record<string, string | undefined>): Promise<void> {
  let parsed;
  try {
    parsed = parseFlags(argv, env);
  } catch (err) {
    if (err instanceof FlagError && err.phase === 'parse') {
      process.stderr.write(`${err.message}\n${usageSummary()}`);
      process.exit(2);
    }
    // A refusal found after etcd sets up its logging goes where the log goes; if that cannot be
    // opened, etcd's logging setup fails first and that is the refusal, on stderr.
    let log = createLogger('info');
    let reason = err;
    if (err instanceof FlagError && err.log !== undefined) {
      try {
        log = createLogger(err.log.level, openLogOutputs(err.log.outputs));
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
    process.stdout.write(usage());
    return;
  }
  let log: Logger;
  try {
    log = createLogger(parsed.config.logLevel, openLogOutputs(parsed.config.logOutputs));
  } catch (err) {
    refuse(createLogger('info'), err);
  }
  for (const w of parsed.warnings) log.warn(w);
  let server: Awaited<ReturnType<typeof startEtcd>>;
  try {
    server = await startEtcd(parsed.config, log);
  } catch (err) {
    refuse(log, err);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'received signal; shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ error: (err as Error).message }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * Logs why the server cannot run, as etcd 3.4 with `--logger=zap` does, and exits with status 1:
 * a setting refused before the start (etcdmain's "error verifying flags") as a warning "failed to
 * verify flags", anything else as "failed to start etcd-ts"; `error` holds etcd's message and
 * `cause` the reason behind it, when there is one.
 */
function refuse(log: Logger, err: unknown): never {
  const error = (err as Error).message;
  const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : undefined;
  const fields = cause === undefined || error.includes(cause) ? { error } : { error, cause };
  if (err instanceof FlagError ? err.phase === 'verify' : err instanceof LogOutputError) {
    log.warn(fields, 'failed to verify flags');
    if (error === ERR_UNSET_ADVERTISE_CLIENT_URLS) log.warn(fields, 'advertise client URLs are not set');
  } else {
    log.fatal(fields, 'failed to start etcd-ts');
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
