/**
 * The `etcd-ts` command (bin/etcd-ts.js): etcd's flags and ETCD_* variables → a running server.
 * SIGTERM and SIGINT close it cleanly: listeners stop, queued writes become durable, the data
 * dir is released, and the process exits 0.
 */
import { createLogger } from '../logger.js';
import { startEtcd } from '../server/embed.js';
import { SERVER_VERSION } from '../server/etcd-server.js';
import { parseFlags, usage } from './flags.js';

/** Runs the server until a signal; exits the process with 1 on a startup error. */
export async function main(argv: string[], env: Record<string, string | undefined>): Promise<void> {
  let parsed;
  try {
    parsed = parseFlags(argv, env);
  } catch (err) {
    process.stderr.write(`etcd-ts: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (parsed.action === 'version') {
    process.stdout.write(`etcd Version: ${SERVER_VERSION}\netcd-ts: ${process.env.npm_package_version ?? ''}\nNode Version: ${process.version}\n`);
    return;
  }
  if (parsed.action === 'help') {
    process.stdout.write(usage());
    return;
  }
  const log = createLogger(parsed.config.logLevel);
  for (const w of parsed.warnings) log.warn(w);
  let server: Awaited<ReturnType<typeof startEtcd>>;
  try {
    server = await startEtcd(parsed.config, log);
  } catch (err) {
    log.fatal({ error: (err as Error).message }, 'failed to start etcd-ts');
    process.exit(1);
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
