/**
 * The embedded server: `startServer(options)` runs an etcd-ts server inside the calling
 * process, e.g. one per test of an application's suite, and hands back a ready client.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { Client, type ClientOptions } from './client/client.js';
import { defaultConfig, type ServerConfig } from './config.js';
import { createLogger } from './logger.js';
import { bindUrls } from './server/bind.js';
import { startEtcd, type RunningServer } from './server/embed.js';

/**
 * Options of {@link startServer}: any {@link ServerConfig} field (camelCase forms of etcd's
 * flags), plus the logger and the client's options. Differences from the CLI defaults:
 * `listenClientUrls` defaults to `['http://127.0.0.1:0']` (a free port), `advertiseClientUrls`
 * to the client URLs with the ports bound, `listenPeerUrls` to none, `dataDir` to a fresh temp
 * dir removed by `close()`, and logging is off.
 */
export interface StartServerOptions extends Partial<ServerConfig> {
  /**
   * A pino logger for the server; wins over `logLevel` (which logs zap's JSON lines to stderr, or
   * capnslog's text lines when `loggerKind` is `capnslog`). @default no logging
   */
  logger?: Logger;
  /** Extra options of the returned client (e.g. `tls` for https URLs); `endpoints` defaults to the bound client URLs. */
  client?: Partial<ClientOptions>;
}

/** A running embedded server (see {@link startServer}). */
export interface EmbeddedServer {
  /** The first client URL, with the port actually bound, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  /** Every client URL, with the ports actually bound. */
  readonly clientUrls: string[];
  /** The server's data directory. */
  readonly dataDir: string;
  /** A client connected to `clientUrls`, closed by `close()`. */
  readonly client: Client;
  /**
   * Closes the client, stops the server (queued writes become durable first) and removes the
   * data dir when startServer created it. Safe to call more than once; later calls wait for the first.
   */
  close(): Promise<void>;
}

/**
 * Refuses (TypeError) an option ServerConfig does not have (a misspelt name would be ignored)
 * and a value of another type than the option's default (a number given as a string).
 */
function checkOptions(overrides: Partial<ServerConfig>): void {
  const defaults = defaultConfig() as unknown as Record<string, unknown>;
  const kind = (v: unknown) => (Array.isArray(v) ? 'array' : typeof v);
  for (const [name, value] of Object.entries(overrides)) {
    if (!(name in defaults)) throw new TypeError(`startServer: unknown option ${name}`);
    const expected = defaults[name];
    if (value !== undefined && expected !== undefined && kind(value) !== kind(expected)) {
      throw new TypeError(`startServer: option ${name} must be of type ${kind(expected)}, not ${kind(value)}`);
    }
  }
}

/**
 * Starts an etcd-ts server in this process and waits until it answers a Status call.
 * @throws TypeError for an unknown option or a value of the wrong type; DataDirLockedError when
 *   another server holds `dataDir`; Error when a URL cannot be bound or `logLevel` is unknown.
 */
export async function startServer(options: StartServerOptions = {}): Promise<EmbeddedServer> {
  const { logger, client: clientOptions, ...overrides } = options;
  checkOptions(overrides);
  const ownDataDir = overrides.dataDir === undefined ? await mkdtemp(join(tmpdir(), 'etcd-ts-embed-')) : undefined;
  const listenClientUrls = overrides.listenClientUrls ?? ['http://127.0.0.1:0'];
  const config: ServerConfig = {
    ...defaultConfig(),
    listenClientUrls,
    listenPeerUrls: [],
    ...overrides,
    dataDir: overrides.dataDir ?? ownDataDir!,
  };
  const log = logger ?? (overrides.logLevel === undefined ? pino({ level: 'silent' }) : createLogger(overrides.logLevel, undefined, overrides.loggerKind ?? 'zap'));
  let server: RunningServer;
  let client: Client | undefined;
  try {
    // Bound first, so that the URLs advertised by default (member list) carry the ports bound.
    const bound = await bindUrls(config, log);
    if (overrides.advertiseClientUrls === undefined) config.advertiseClientUrls = bound.clients.map((l) => l.boundUrl);
    server = await startEtcd(config, log, bound);
  } catch (err) {
    if (ownDataDir !== undefined) await rm(ownDataDir, { recursive: true, force: true });
    throw err;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      client?.close();
      await server.close();
      if (ownDataDir !== undefined) await rm(ownDataDir, { recursive: true, force: true });
    })();
    return closing;
  };
  try {
    client = new Client({ ...clientOptions, endpoints: clientOptions?.endpoints ?? server.clientUrls });
    await client.status();
  } catch (err) {
    await close();
    throw err;
  }
  return { url: server.clientUrls[0]!, clientUrls: server.clientUrls, dataDir: config.dataDir, client, close };
}
