/**
 * `etcd-ts gateway start`: etcd's L4 gateway command (etcd `etcdmain/gateway.go`), with its flags
 * (cobra/pflag syntax), checks, messages and exit statuses. `--discovery-srv` (endpoints from
 * DNS SRV records) is not implemented and is refused.
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';

import { parseGoDuration, splitHostPort } from '../cli/flags.js';
import { goErrnoText } from '../go-format.js';
import { TcpProxy, type ProxyLog } from './tcp-proxy.js';

const GATEWAY_HELP = `gateway related command

Usage:
  etcd gateway [command]

Available Commands:
  start       start the gateway

Flags:
  -h, --help   help for gateway

Use "etcd gateway [command] --help" for more information about a command.
`;

const START_USAGE = `Usage:
  etcd gateway start [flags]

Flags:
      --discovery-srv string        DNS domain used to bootstrap initial cluster
      --discovery-srv-name string   service name to query when using DNS discovery
      --endpoints strings           comma separated etcd cluster endpoints (default [127.0.0.1:2379])
  -h, --help                        help for start
      --insecure-discovery          accept insecure SRV records
      --listen-addr string          listen address (default "127.0.0.1:23790")
      --retry-delay duration        duration of delay before retrying failed endpoints (default 1m0s)
      --trusted-ca-file string      path to the client server TLS CA file for verifying the discovered endpoints when discovery-srv is provided.
`;

/** The flags of `etcd gateway start` and whether each takes a value. */
const START_FLAGS: Record<string, 'string' | 'strings' | 'bool' | 'duration'> = {
  'listen-addr': 'string',
  'discovery-srv': 'string',
  'discovery-srv-name': 'string',
  'insecure-discovery': 'bool',
  'trusted-ca-file': 'string',
  endpoints: 'strings',
  'retry-delay': 'duration',
};

interface StartOptions {
  listenAddr: string;
  endpoints: string[];
  retryDelayMs: number;
  discoverySrv: string;
}

/** A command line cobra refuses: its `Error: …`, the usage, and etcdmain's last word. */
class UsageError extends Error {}

/** Runs `etcd-ts gateway …` (`argv` after `gateway`): exits with etcd's status on a refusal; serves until a signal otherwise. */
export async function gatewayMain(argv: readonly string[]): Promise<void> {
  // cobra finds the subcommand among the flags (`gateway --endpoints=… start` works too): the
  // first argument that is neither a flag nor the value of a `--flag value` before it.
  let at = 0;
  while (at < argv.length && argv[at]!.startsWith('-')) at += argv[at]!.startsWith('--') && !argv[at]!.includes('=') && START_FLAGS[argv[at]!.slice(2)] !== 'bool' ? 2 : 1;
  if (argv[at] !== 'start') {
    process.stdout.write(GATEWAY_HELP);
    return;
  }
  let options: StartOptions | 'help';
  try {
    options = parseStartFlags([...argv.slice(0, at), ...argv.slice(at + 1)]);
  } catch (err) {
    const message = (err as Error).message;
    process.stderr.write(`Error: ${message}\n${START_USAGE}\n${message}`);
    process.exit(1);
  }
  if (options === 'help') {
    process.stdout.write(`start the gateway\n\n${START_USAGE}`);
    return;
  }
  const proxy = await startGateway(options);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void proxy.close().then(() => process.kill(process.pid, signal));
    });
  }
}

/** pflag's reading of `start`'s flags (`--name value`, `--name=value`, booleans alone). @throws UsageError with cobra's text */
function parseStartFlags(argv: readonly string[]): StartOptions | 'help' {
  const options: StartOptions = { listenAddr: '127.0.0.1:23790', endpoints: ['127.0.0.1:2379'], retryDelayMs: 60_000, discoverySrv: '' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') return 'help';
    if (!arg.startsWith('--')) continue; // cobra leaves positional arguments to the command, which ignores them
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = START_FLAGS[name];
    if (kind === undefined) throw new UsageError(`unknown flag: --${name}`);
    let value = eq < 0 ? undefined : arg.slice(eq + 1);
    if (kind === 'bool') continue; // --insecure-discovery only matters with discovery
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`flag needs an argument: --${name}`);
    }
    if (name === 'listen-addr') options.listenAddr = value;
    else if (name === 'endpoints') options.endpoints = value.split(',');
    else if (name === 'discovery-srv') options.discoverySrv = value;
    else if (name === 'retry-delay') {
      try {
        options.retryDelayMs = parseGoDuration(value);
      } catch (err) {
        throw new UsageError(`invalid argument ${JSON.stringify(value)} for "--retry-delay" flag: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  return options;
}

/** etcd `startGateway`: checks the endpoints and the listen address as etcd does (exit 1 with its words), binds, and proxies. */
async function startGateway(options: StartOptions): Promise<TcpProxy> {
  const fail = (text: string, stream: NodeJS.WriteStream = process.stdout): never => {
    stream.write(text);
    process.exit(1);
  };
  if (options.discoverySrv !== '') fail("etcd-ts does not implement 'etcd gateway start --discovery-srv'\n", process.stderr);
  // etcd strips a scheme (`http://host:port` → `host:port`).
  const endpoints = options.endpoints.map((ep) => {
    const host = /^[a-z][a-z0-9+.-]*:\/\/([^/]+)/i.exec(ep)?.[1];
    const hostPort = splitHostPort(host ?? ep);
    return hostPort ?? fail(`error parsing endpoint ${JSON.stringify(ep)}`);
  });
  const listen = splitHostPort(options.listenAddr) ?? fail(`failed to validate listen address: ${options.listenAddr}\n`);
  const resolve = async (host: string): Promise<string[] | undefined> => {
    try {
      return (await lookup(host === '' ? 'localhost' : host, { all: true })).map((a) => a.address);
    } catch {
      return undefined;
    }
  };
  const listenAddrs = (await resolve(listen.host)) ?? fail(`failed to resolve listen host: ${listen.host}\n`);
  for (const ep of endpoints) {
    const addrs = (await resolve(ep.host)) ?? fail(`failed to resolve endpoint host: ${ep.host}\n`);
    if (ep.port !== listen.port) continue;
    const same = addrs.find((a) => listenAddrs.includes(a));
    if (same !== undefined) fail(`SRV or endpoint (${ep.host}:${ep.port}->${same}:${ep.port}) should not resolve to the gateway listen addr (${options.listenAddr})\n`);
  }
  const listener = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => {
    listener.once('error', (err: NodeJS.ErrnoException) => {
      const text = goErrnoText(err.code);
      fail(`listen tcp ${options.listenAddr}: ${text === undefined ? err.message : `bind: ${text}`}\n`, process.stderr);
    });
    listener.listen({ host: listen.host || undefined, port: Number(listen.port) }, resolve);
  });
  return new TcpProxy({ listener, endpoints: endpoints.map((e) => ({ host: e.host, port: Number(e.port) })), monitorIntervalMs: options.retryDelayMs, log: zapProduction() });
}

/** zap's production logger, as `etcd gateway` makes it: JSON lines on stderr, `ts` in seconds since the epoch. */
function zapProduction(): ProxyLog {
  const write = (level: string, msg: string, fields: Record<string, unknown>): void => {
    process.stderr.write(`${JSON.stringify({ level, ts: (performance.timeOrigin + performance.now()) / 1000, msg, ...fields })}\n`);
  };
  return { info: (msg, fields) => write('info', msg, fields), warn: (msg, fields) => write('warn', msg, fields) };
}
