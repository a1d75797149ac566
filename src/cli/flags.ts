/**
 * etcd's command line and `ETCD_*` environment, parsed into a {@link ServerConfig}.
 *
 * The syntax is Go's `flag` package, which etcd uses: `-flag value`, `--flag value`,
 * `-flag=value`, `--flag=value`; a boolean flag alone means true and takes its value only after
 * `=` (`--auto-tls=false`); `--` ends the flags; parsing stops at the first argument that is
 * not a flag. The scanner below is a port of Go's `flag.(*FlagSet).parseOne`, with its error
 * wording, rather than `util.parseArgs` or an npm parser: those follow POSIX/GNU conventions
 * (`-name` is a group of one-letter flags, `--bool=false` is refused, a value starting with `-`
 * is refused), and each of those differences would reject or misread an etcd command line.
 *
 * Every flag of etcd 3.4 (etcdmain/config.go) is in {@link FLAGS}, classified:
 * - supported: lands in ServerConfig;
 * - ignored: cluster-only or without meaning here; its value is still checked as etcd checks it,
 *   and all ignored flags that were set are named in one warning;
 * - rejected: ignoring it would silently change what the operator asked for, so it is an error
 *   when set to anything but its default.
 *
 * Environment (etcd `pkg/flags.SetFlagsFromEnv`): each flag is also read from
 * `ETCD_<NAME>` (upper case, `-` → `_`) when the command line does not set it and the variable
 * is not empty. A variable whose flag the command line sets is refused, as etcd 3.4 refuses it
 * (phase `env`); an `ETCD_*` variable that names no flag, or is empty, gets etcd's warning
 * ("unrecognized environment variable"). `ETCD_VERSION` is never read (Docker images set it to
 * a version string, which etcd 3.4 rejects as a boolean).
 */
import { isIP } from 'node:net';
import path from 'node:path';

import { parseTokenOptions, TokenOptionsError } from '../auth/token-provider.js';
import { defaultConfig, isTlsUrl, type ClientTlsConfig, type PeerTlsConfig, type ServerConfig } from '../config.js';
import { goQuotedList } from '../go-format.js';
import { isLogLevel, JOURNAL_LOG_OUTPUT, LOG_LEVELS, type CapnslogLine, type LoggerKind } from '../logger.js';
import { readConfigFile } from './config-file.js';

/**
 * Where etcd stops on a bad command line, which sets how the error is reported and the exit
 * status (src/cli/etcd-ts.ts):
 * - `parse`: Go's flag package refuses an argument (unknown flag, missing or malformed value on
 *   the command line): the message and the usage summary on stderr, exit status 2;
 * - `env`: etcd's `pkg/flags` exits on an `ETCD_*` variable whose flag the command line sets
 *   (`C | pkg/flags: conflicting environment variable …`): exit status 1;
 * - `verify`: etcdmain's "error verifying flags" (a malformed `ETCD_*` value, the configuration
 *   file, a positional argument, settings etcd checks before it starts): exit status 1;
 * - `start`: refused while the server starts (TLS settings, the auth token, the compaction
 *   retention): exit status 1.
 */
export type FlagErrorPhase = 'parse' | 'env' | 'verify' | 'start';

/** etcd `embed.ErrUnsetAdvertiseClientURLsFlag`: its refusal is followed by a second warning line. */
export const ERR_UNSET_ADVERTISE_CLIENT_URLS = '--advertise-client-urls is required when --listen-client-urls is set explicitly';

/** A command line that cannot be used: unknown flag, bad value, conflicting settings. */
export class FlagError extends Error {
  override readonly name = 'FlagError';
  /** Where etcd would have refused it (see {@link FlagErrorPhase}). */
  readonly phase: FlagErrorPhase;
  /**
   * The log level and outputs the command line asked for, when the refusal comes after etcd has
   * set up its logging (`embed.Config.Validate` starts with it): etcd logs such a refusal there,
   * not on stderr. Undefined for refusals before that point.
   */
  log: LogSettings | undefined;
  /** What reading the command line had to say before the refusal, in order (see {@link Notice}). */
  notices: Notice[] = [];

  constructor(message: string, phase: FlagErrorPhase = 'verify', options?: ErrorOptions) {
    super(message, options);
    this.phase = phase;
  }
}

/**
 * A message from reading the command line, in etcd 3.4's forms (src/cli/etcd-ts.ts writes them):
 * - `raw`: a line etcd prints with `fmt.Fprintln(os.Stderr, …)` while it sets up its logging (the
 *   deprecation warnings), whatever `--logger` says; `again`: etcd sets up its logging once more
 *   when the server starts, and prints it again then;
 * - otherwise a log line: zap's `msg` and `fields`, capnslog's `plog` line. An `early` line comes
 *   from etcd code that logs through capnslog before any logger is set up (`pkg/flags`, etcdmain
 *   reading a configuration file): a capnslog line on stderr whatever `--logger` says, at
 *   capnslog's default level (INFO). The others are logged once the logger exists.
 */
export type Notice =
  | { raw: string; again?: boolean }
  | { msg: string; fields: Record<string, unknown>; plog: CapnslogLine; early?: boolean };

/** What the command line asks for, and the {@link Notice}s for the operator, in order. */
export type CommandLine =
  | { action: 'run'; config: ServerConfig; notices: Notice[] }
  | { action: 'help' }
  | { action: 'version' };

/**
 * How a flag's value is parsed: the Go `flag.Value` etcd registers for it.
 * - `string`, `strings` (comma-separated, never fails), `bool` (Go's strconv.ParseBool);
 * - `uint`/`uint64`, `uint32`, `int`/`int64`: Go integers with base prefixes (`0x`, `0o`,
 *   `0b`, leading `0` = octal) and `_` separators;
 * - `duration`: a Go duration (`10m`, `1h30m`, `100ms`);
 * - `urls`: comma-separated etcd URLs (an empty value leaves the list as it was, as etcd's
 *   `UniqueURLs` does); `origins`: the same, with `*` meaning any (`--cors`);
 * - `legacy`: a flag etcd itself only accepts and ignores (boolean syntax, any value);
 * - a list of strings: one of those words.
 */
type FlagKind =
  | 'string'
  | 'strings'
  | 'bool'
  | 'uint'
  | 'uint32'
  | 'uint64'
  | 'int'
  | 'int64'
  | 'duration'
  | 'urls'
  | 'origins'
  | 'legacy'
  | readonly string[];

type FlagSpec =
  /** Lands in ServerConfig; `defaultText` and `usage` are as `etcd --help` prints them. */
  | { use: 'supported'; name: string; kind: FlagKind; defaultText: string; usage: string }
  /** Accepted, value checked, then ignored with a warning. */
  | { use: 'ignored'; name: string; kind: FlagKind }
  /** An error when set to anything but '' (its default); `reason` says why. */
  | { use: 'rejected'; name: string; kind: FlagKind; reason: string };

const supported = (name: string, kind: FlagKind, defaultText: string, usage: string): FlagSpec => ({
  use: 'supported',
  name,
  kind,
  defaultText,
  usage,
});
const ignored = (name: string, kind: FlagKind): FlagSpec => ({ use: 'ignored', name, kind });

const CONFIG_FILE_USAGE =
  'Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.';

/** Every flag of etcd 3.4, in the order of its help text. */
const FLAGS: readonly FlagSpec[] = [
  // Member.
  supported('name', 'string', 'default', 'Human-readable name for this member.'),
  supported('data-dir', 'string', '${name}.etcd', 'Path to the data directory.'),
  supported('wal-dir', 'string', '', 'Path to the dedicated wal directory.'),
  ignored('snapshot-count', 'uint64'),
  supported('heartbeat-interval', 'uint', '100', 'Time (in milliseconds) of a heartbeat interval.'),
  supported('election-timeout', 'uint', '1000', 'Time (in milliseconds) for an election to timeout.'),
  ignored('initial-election-tick-advance', 'bool'),
  supported('listen-peer-urls', 'urls', 'http://localhost:2380', 'List of URLs to listen on for peer traffic.'),
  supported('listen-client-urls', 'urls', 'http://localhost:2379', 'List of URLs to listen on for client traffic.'),
  ignored('max-snapshots', 'uint'),
  ignored('max-wals', 'uint'),
  supported(
    'quota-backend-bytes',
    'int64',
    '0',
    'Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).',
  ),
  supported('backend-batch-interval', 'duration', '', 'BackendBatchInterval is the maximum time before commit the backend transaction.'),
  supported('backend-batch-limit', 'int', '0', 'BackendBatchLimit is the maximum operations before commit the backend transaction.'),
  supported('max-txn-ops', 'uint', '128', 'Maximum number of operations permitted in a transaction.'),
  supported('max-request-bytes', 'uint', '1572864', 'Maximum client request size in bytes the server will accept.'),
  supported(
    'max-concurrent-streams',
    'uint32',
    'math.MaxUint32',
    'Maximum concurrent streams that each client can open at a time.',
  ),
  supported('grpc-keepalive-min-time', 'duration', '5s', 'Minimum interval duration that a client should wait before pinging server.'),
  supported('grpc-keepalive-interval', 'duration', '2h', 'Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).'),
  supported('grpc-keepalive-timeout', 'duration', '20s', 'Additional duration of wait before closing a non-responsive connection (0 to disable).'),
  // Clustering.
  supported(
    'initial-advertise-peer-urls',
    'urls',
    'http://localhost:2380',
    "List of this member's peer URLs; etcd-ts uses them only to derive the member ID as etcd does.",
  ),
  supported('initial-cluster', 'string', 'default=http://localhost:2380', 'Initial cluster configuration for bootstrapping; etcd-ts checks it as etcd does on a new data dir.'),
  supported('initial-cluster-state', ['new', 'existing'], 'new', "Initial cluster state ('new' or 'existing'); 'existing' needs peers, which etcd-ts never has."),
  supported(
    'initial-cluster-token',
    'string',
    'etcd-cluster',
    'Initial cluster token; etcd-ts uses it only to derive the member and cluster IDs as etcd does.',
  ),
  supported(
    'advertise-client-urls',
    'urls',
    'http://localhost:2379',
    "List of this member's client URLs to advertise to the public.",
  ),
  ignored('discovery', 'string'),
  ignored('discovery-fallback', ['proxy', 'exit']),
  ignored('discovery-proxy', 'string'),
  ignored('discovery-srv', 'string'),
  ignored('discovery-srv-name', 'string'),
  ignored('strict-reconfig-check', 'bool'),
  ignored('pre-vote', 'bool'),
  supported(
    'auto-compaction-retention',
    'string',
    '0',
    'Auto compaction retention length. 0 means disable auto compaction.',
  ),
  supported(
    'auto-compaction-mode',
    'string',
    'periodic',
    "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, " +
      "defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
  ),
  ignored('enable-v2', 'bool'),
  // Security.
  supported('cert-file', 'string', '', 'Path to the client server TLS cert file.'),
  supported('key-file', 'string', '', 'Path to the client server TLS key file.'),
  supported('client-cert-auth', 'bool', 'false', 'Enable client cert authentication.'),
  supported('client-crl-file', 'string', '', 'Path to the client certificate revocation list file.'),
  {
    use: 'rejected',
    name: 'client-cert-allowed-hostname',
    kind: 'string',
    reason:
      '--client-cert-allowed-hostname is not supported by etcd-ts; it refuses to start with weaker ' +
      'client certificate checks than asked for',
  },
  supported('trusted-ca-file', 'string', '', 'Path to the client server TLS trusted CA cert file.'),
  supported('auto-tls', 'bool', 'false', 'Client TLS using generated certificates.'),
  supported('peer-cert-file', 'string', '', 'Path to the peer server TLS cert file.'),
  supported('peer-key-file', 'string', '', 'Path to the peer server TLS key file.'),
  supported('peer-client-cert-auth', 'bool', 'false', 'Enable peer client cert authentication.'),
  supported('peer-trusted-ca-file', 'string', '', 'Path to the peer server TLS trusted CA file.'),
  supported('peer-cert-allowed-cn', 'string', '', 'Required CN for client certs connecting to the peer endpoint.'),
  supported('peer-cert-allowed-hostname', 'string', '', 'Allowed TLS hostname for inter peer authentication.'),
  supported('peer-auto-tls', 'bool', 'false', 'Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.'),
  supported('peer-crl-file', 'string', '', 'Path to the peer certificate revocation list file.'),
  supported(
    'cipher-suites',
    'strings',
    '',
    'Comma-separated list of supported TLS cipher suites, by their Go names (empty means the defaults).',
  ),
  supported('cors', 'origins', '*', 'Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).'),
  supported('host-whitelist', 'strings', '*', 'Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).'),
  ignored('experimental-peer-skip-client-san-verification', 'bool'),
  // Auth.
  supported('auth-token', 'string', 'simple', "Specify a v3 authentication token type and its options ('simple' or 'jwt')."),
  supported('bcrypt-cost', 'uint', '10', 'Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.'),
  supported('auth-token-ttl', 'uint', '300', 'Time (in seconds) of the auth-token-ttl.'),
  // Profiling and monitoring.
  ignored('enable-pprof', 'bool'),
  supported('metrics', 'string', 'basic', "Set level of detail for exported metrics, specify 'extensive' to include histogram metrics."),
  supported(
    'listen-metrics-urls',
    'urls',
    '',
    'List of URLs to listen on for the metrics and health endpoints.',
  ),
  supported('enable-grpc-gateway', 'bool', 'true', 'Enable GRPC gateway.'),
  // Logging.
  supported(
    'logger',
    'string',
    'capnslog',
    "Specify 'zap' for structured logging (JSON lines) or 'capnslog' (text lines); 'capnslog' takes only one of default, stderr, stdout as output, as in etcd 3.4.",
  ),
  supported(
    'log-outputs',
    'strings',
    'default',
    "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets (files, with --logger=zap).",
  ),
  supported('log-output', 'strings', 'default', "Deprecated: use '--log-outputs'."),
  supported(
    'log-level',
    'string',
    'info',
    `Configures log level. Only supports ${LOG_LEVELS.join(', ')}.`,
  ),
  supported('debug', 'bool', 'false', "Enable debug-level logging. Deprecated: use '--log-level=debug' instead."),
  ignored('log-package-levels', 'string'),
  // v2 proxy.
  ignored('proxy', ['off', 'readonly', 'on']),
  ignored('proxy-failure-wait', 'uint'),
  ignored('proxy-refresh-interval', 'uint'),
  ignored('proxy-dial-timeout', 'uint'),
  ignored('proxy-write-timeout', 'uint'),
  ignored('proxy-read-timeout', 'uint'),
  // Experimental.
  ignored('experimental-initial-corrupt-check', 'bool'),
  ignored('experimental-corrupt-check-time', 'duration'),
  ignored('experimental-enable-v2v3', 'string'),
  ignored('experimental-backend-bbolt-freelist-type', 'string'),
  supported(
    'experimental-enable-lease-checkpoint',
    'bool',
    'false',
    'ExperimentalEnableLeaseCheckpoint enables primary lessor to persist lease remainingTTL to prevent indefinite auto-renewal of long lived leases.',
  ),
  supported(
    'experimental-enable-lease-checkpoint-persist',
    'bool',
    'false',
    'Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases. Always enabled in v3.6. Should be used to ensure smooth upgrade from v3.5 clusters with this feature enabled. Requires experimental-enable-lease-checkpoint to be enabled.',
  ),
  ignored('experimental-compaction-batch-limit', 'int'),
  supported(
    'experimental-watch-progress-notify-interval',
    'duration',
    '10m',
    'Duration of periodical watch progress notification.',
  ),
  supported(
    'experimental-warning-apply-duration',
    'duration',
    '100ms',
    'Time duration after which a warning is generated if request takes more time.',
  ),
  // Unsafe.
  supported('unsafe-no-fsync', 'bool', 'false', 'Disables fsync, unsafe, will cause data loss.'),
  ignored('force-new-cluster', 'bool'),
  // Others.
  supported('config-file', 'string', '', CONFIG_FILE_USAGE),
  // Read from the command line only; see the module comment.
  supported('version', 'bool', 'false', 'Print the version and exit.'),
  // Flags etcd itself accepts and ignores (etcdmain `ignored`).
  ...[
    'cluster-active-size',
    'cluster-remove-delay',
    'cluster-sync-interval',
    'config',
    'force',
    'max-result-buffer',
    'max-retry-attempts',
    'peer-heartbeat-interval',
    'peer-election-timeout',
    'retry-interval',
    'snapshot',
    'v',
    'vv',
    'test.coverprofile',
    'test.outputdir',
  ].map((name) => ignored(name, 'legacy')),
];

const FLAG_BY_NAME = new Map(FLAGS.map((f) => [f.name, f]));

/** The cipher suite names etcd 3.4 accepts (Go 1.19 `tls.CipherSuites`, `InsecureCipherSuites`, and etcd's two aliases). */
const GO_CIPHER_SUITES: ReadonlySet<string> = new Set([
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
  'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA',
  'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA',
  'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305',
  'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305',
  'TLS_RSA_WITH_AES_128_CBC_SHA',
  'TLS_RSA_WITH_AES_256_CBC_SHA',
  'TLS_RSA_WITH_AES_128_GCM_SHA256',
  'TLS_RSA_WITH_AES_256_GCM_SHA384',
  'TLS_RSA_WITH_RC4_128_SHA',
  'TLS_RSA_WITH_3DES_EDE_CBC_SHA',
  'TLS_RSA_WITH_AES_128_CBC_SHA256',
  'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA',
  'TLS_ECDHE_RSA_WITH_RC4_128_SHA',
  'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256',
  'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
]);

/** etcd's floor for `--experimental-watch-progress-notify-interval` (v3rpc `minWatchProgressInterval`). */
const MIN_WATCH_PROGRESS_INTERVAL_MS = 100;

/** A parsed flag value: text, boolean, Go integer, duration in ms, or a list (URLs, words). */
type FlagValue = string | boolean | bigint | number | readonly string[];

/** The environment variable of a flag (etcd `flags.FlagToEnv`): `data-dir` → `ETCD_DATA_DIR`. */
function flagToEnv(name: string): string {
  return `ETCD_${name.toUpperCase().replaceAll('-', '_')}`;
}

/**
 * Parses an etcd command line and environment.
 * @param argv the arguments after the program name (`process.argv.slice(2)`).
 * @param env the environment (`process.env`); only `ETCD_*` variables are read.
 * @returns `help` for `-h`/`--help` (the caller prints {@link usage} and exits 0, as etcd);
 *   `version` for `--version`; otherwise `run` with the config (etcd's defaults where nothing
 *   is set) and the notices to write.
 * @throws FlagError (with the notices before it) naming the flag or variable: unknown flag,
 *   missing or malformed value (size, URL, duration, boolean, choice), a variable whose flag is
 *   set too, a positional argument, a rejected flag, or a combination etcd refuses (e.g. `--listen-client-urls` without `--advertise-client-urls`, an https://
 *   URL without `--cert-file`/`--key-file` or `--auto-tls`).
 */
export function parseFlags(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CommandLine {
  const notices: Notice[] = [];
  try {
    return readCommandLine(argv, env, notices);
  } catch (err) {
    if (err instanceof FlagError) err.notices = notices;
    throw err;
  }
}

/** {@link parseFlags}, appending its notices to `notices` as they arise. */
function readCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, notices: Notice[]): CommandLine {
  const values = new Map<string, FlagValue>(); // flag name → its value, when set
  const source = new Map<string, string>(); // flag name → where it was set: '--name' or 'ETCD_NAME'

  // 1. The command line, as Go's flag.Parse (parseOne) reads it.
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    if (arg.length < 2 || !arg.startsWith('-')) break;
    if (arg === '--') {
      i++;
      break;
    }
    const dashes = arg.startsWith('--') ? 2 : 1;
    let name = arg.slice(dashes);
    if (name === '' || name.startsWith('-') || name.startsWith('=')) {
      throw new FlagError(`bad flag syntax: ${arg}`, 'parse');
    }
    i++;
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq > 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = FLAG_BY_NAME.get(name);
    if (spec === undefined) {
      if (name === 'help' || name === 'h') return { action: 'help' };
      throw new FlagError(`flag provided but not defined: -${name}`, 'parse');
    }
    if (isBoolean(spec.kind)) {
      const given = value ?? 'true';
      setValue(spec, given, values, (reason) => `invalid boolean value ${JSON.stringify(given)} for -${name}: ${reason}`, 'parse');
    } else {
      if (value === undefined) {
        if (i >= argv.length) throw new FlagError(`flag needs an argument: -${name}`, 'parse');
        value = argv[i++] as string;
      }
      const given = value;
      setValue(spec, given, values, (reason) => `invalid value ${JSON.stringify(given)} for flag -${name}: ${reason}`, 'parse');
    }
    source.set(name, `--${name}`);
  }

  // 2. What is left must be nothing (etcd etcdmain: "'%s' is not a valid flag").
  const positional = argv[i];
  if (positional !== undefined) {
    if (i === 0 && positional === 'grpc-proxy') {
      throw new FlagError(`etcd-ts does not implement 'etcd ${positional}'`);
    }
    throw new FlagError(`'${positional}' is not a valid flag`);
  }
  if (values.get('version') === true) return { action: 'version' };

  // 3. A configuration file replaces the command line and the environment (etcdmain
  // `configFromFile`); its variable is read even when the others are not.
  const configFile = values.get('config-file') ?? env[flagToEnv('config-file')];
  if (typeof configFile === 'string' && configFile !== '') {
    values.clear();
    source.clear();
    // etcdmain says it loads the file once it has read it, or failed to; through capnslog unless
    // the file set up a zap logger (see `finish`).
    const loading: Notice = {
      msg: 'loaded server configuration, other configuration command line flags and environment variables will be ignored if provided',
      fields: { path: configFile },
      plog: {
        pkg: 'etcdmain',
        level: 'I',
        text: `Loading server configuration from ${JSON.stringify(configFile)}. Other configuration command line flags and environment variables will be ignored if provided.`,
      },
      early: true,
    };
    let proxyError: Error | undefined;
    try {
      const read = readConfigFile(configFile);
      proxyError = read.proxyError;
      for (const [name, raw] of read.settings) {
        setValue(FLAG_BY_NAME.get(name)!, raw, values, (reason) => `invalid value ${JSON.stringify(raw)} for ${name} in ${configFile}: ${reason}`);
        source.set(name, name);
      }
    } catch (err) {
      notices.push(loading);
      throw err instanceof FlagError ? err : new FlagError((err as Error).message, 'verify', { cause: err });
    }
    return finish(values, source, notices, { loading, proxyError });
  }

  // 4. The environment, for flags the command line left unset (etcd flags.SetFlagsFromEnv): every
  // flag in name order, the last malformed value being the error, returned only after every
  // variable has been checked (verifyEnv) in the environment's order.
  let envError: FlagError | undefined;
  const used = new Set<string>();
  for (const spec of [...FLAGS].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const key = flagToEnv(spec.name);
    const raw = env[key];
    if (source.has(spec.name) || raw === undefined || raw === '' || key === 'ETCD_VERSION') continue;
    used.add(key);
    try {
      setValue(spec, raw, values, (reason) => `invalid value ${JSON.stringify(raw)} for ${key}: ${reason}`);
      source.set(spec.name, key);
      const text = `recognized and used environment variable ${key}=${raw}`;
      notices.push({ msg: 'recognized and used environment variable', fields: { 'variable-name': key, 'variable-value': raw }, plog: { pkg: 'pkg/flags', level: 'I', text }, early: true });
    } catch (err) {
      if (!(err instanceof FlagError)) throw err;
      envError = err;
    }
  }
  const setOnCommandLine = new Set(FLAGS.filter((f) => source.get(f.name) === `--${f.name}`).map((f) => flagToEnv(f.name)));
  for (const [key, raw] of Object.entries(env)) {
    if (raw === undefined || used.has(key) || key === 'ETCD_VERSION') continue;
    if (setOnCommandLine.has(key)) {
      throw new FlagError(
        `conflicting environment variable ${JSON.stringify(key)} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
        'env',
      );
    }
    if (key.startsWith('ETCD_')) {
      const text = `unrecognized environment variable ${key}=${raw}`;
      notices.push({ msg: text, fields: {}, plog: { pkg: 'pkg/flags', level: 'W', text }, early: true });
    }
  }
  if (envError !== undefined) throw envError;

  return finish(values, source, notices);
}

/**
 * The log settings, the config, then one warning naming every ignored flag that was set.
 * @param file when the settings come from a configuration file: the notice that it was loaded,
 *   and the error of its etcdmain fields, refused after the other settings were checked.
 */
function finish(
  values: ReadonlyMap<string, FlagValue>,
  source: ReadonlyMap<string, string>,
  notices: Notice[],
  file?: { loading: Notice; proxyError: Error | undefined },
): CommandLine {
  const fromFile = file !== undefined;
  const log = logSettings(values, notices, fromFile);
  // Said through the file's logger once etcd holds it, when that is zap; else through capnslog.
  const loaded = file && (log.logger === 'zap' ? { ...file.loading, early: false } : file.loading);
  let config: ServerConfig;
  const beforeConfig = notices.length;
  try {
    config = buildConfig(values, source, notices, fromFile, log);
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    // buildConfig's warnings are etcd's as its server starts, which a refusal never reaches.
    notices.length = beforeConfig;
    // A file's settings are checked inside etcd's ConfigFromFile, whose logger is dropped when
    // it fails: that refusal goes to stderr. The command line's are refused after etcd set up
    // its logging, as is everything refused at the start (see FlagError.log), where the error
    // of the file's etcdmain fields comes first.
    if (file?.proxyError !== undefined && loaded !== undefined && err.phase === 'start') throw proxyRefusal(file.proxyError, log, notices, loaded);
    // Refused at the start, etcd already holds the file's logger (see `loaded`).
    if (file !== undefined) notices.push(err.phase === 'start' && loaded !== undefined ? loaded : file.loading);
    if (!fromFile || err.phase === 'start') err.log = log;
    throw err;
  }
  if (file?.proxyError !== undefined && loaded !== undefined) throw proxyRefusal(file.proxyError, log, notices, loaded);
  if (loaded !== undefined) notices.splice(beforeConfig, 0, loaded);
  // Our own warning, said as the server starts, as buildConfig's are.
  const ignoredSet = FLAGS.filter((f) => f.use === 'ignored' && source.has(f.name)).map((f) => source.get(f.name) as string);
  if (ignoredSet.length > 0) {
    const msg = `ignoring ${fromFile ? 'settings' : 'flags'} that do not apply to a single-node etcd-ts`;
    notices.push({ msg, fields: { [fromFile ? 'settings' : 'flags']: ignoredSet }, plog: { pkg: 'etcdmain', level: 'W', text: `${msg}: ${ignoredSet.join(', ')}` } });
  }
  return { action: 'run', config, notices };
}

/**
 * The refusal of a configuration file's etcdmain fields: etcd decodes them once it holds the
 * file's other settings and their logger, so it says it loaded the file (`loaded`) through that
 * logger, and refuses there.
 */
function proxyRefusal(proxyError: Error, log: LogSettings, notices: Notice[], loaded: Notice): FlagError {
  notices.push(loaded);
  const err = new FlagError(proxyError.message, 'verify', { cause: proxyError });
  err.log = log;
  return err;
}

/** A string flag's value; undefined when it is unset. */
function textValue(values: ReadonlyMap<string, FlagValue>, name: string): string | undefined {
  const v = values.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** A list flag's values (a copy); undefined when it is unset. */
function listValue(values: ReadonlyMap<string, FlagValue>, name: string): string[] | undefined {
  const v = values.get(name);
  return Array.isArray(v) ? [...(v as readonly string[])] : undefined;
}

/** `--logger`, `--log-level` and the outputs of `--log-outputs` and `--log-output`. */
export interface LogSettings {
  logger: LoggerKind;
  level: string;
  outputs: string[];
}

/**
 * The log settings, checked first as etcd's `setupLogging` is (see `logOutputs`), with its
 * deprecation warnings; `--debug` means the debug level.
 * @throws FlagError for an unknown level or refused outputs.
 */
function logSettings(values: ReadonlyMap<string, FlagValue>, notices: Notice[], fromFile: boolean): LogSettings {
  const text = (name: string) => textValue(values, name);
  const list = (name: string) => listValue(values, name);
  let level = text('log-level') ?? defaultConfig().logLevel;
  if (!isLogLevel(level)) {
    // etcd 3.4 panics here (logutil.ConvertToZapLevel), exit status 2; a refusal is kinder.
    throw new FlagError(`unknown level "${level}"`);
  }
  const logger = text('logger') ?? defaultConfig().loggerKind;
  const outputs = deprecatedLogOutput(list('log-outputs'), list('log-output'), fromFile, notices);
  // etcd's words, its missing parenthesis included.
  if (values.get('debug') === true) {
    notices.push({ raw: "[WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead" });
    if (level !== 'debug') notices.push({ raw: `[WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=${level}' flag` });
    level = 'debug';
  }
  if (logger === 'capnslog') notices.push({ raw: "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead", again: true });
  const packageLevels = text('log-package-levels') ?? '';
  if (packageLevels !== '') notices.push({ raw: `[WARNING] Deprecated '--log-package-levels=${packageLevels}' flag is set; use '--logger=zap' flag instead` });
  return { logger: logger as LoggerKind, level, outputs: logOutputs(logger, outputs) };
}

function isBoolean(kind: FlagKind): boolean {
  return kind === 'bool' || kind === 'legacy';
}

/**
 * Parses `raw` as `spec` says and stores it in `values` (an empty URL list leaves the old list,
 * as etcd's UniqueURLs does).
 * @param phase where a malformed value is refused: `parse` on the command line, `verify` in the
 *   environment or a configuration file.
 * @throws FlagError with `describe(reason)` when the value is malformed, or the spec's reason
 *   when a rejected flag is set to anything but ''.
 */
function setValue(
  spec: FlagSpec,
  raw: string,
  values: Map<string, FlagValue>,
  describe: (reason: string) => string,
  phase: FlagErrorPhase = 'verify',
): void {
  let value: FlagValue | undefined;
  try {
    value = parseValue(spec.kind, raw);
  } catch (err) {
    throw new FlagError(describe((err as Error).message), phase, { cause: err });
  }
  if (spec.use === 'rejected' && raw !== '') throw new FlagError(spec.reason);
  if (value !== undefined) values.set(spec.name, value);
}

/**
 * One value of a flag of the given kind (see {@link FlagKind}).
 * @returns the value; undefined for an empty URL list (`''`, or `*` for origins).
 * @throws Error whose message is the reason, in Go's words where Go has them ("parse error").
 */
function parseValue(kind: FlagKind, raw: string): FlagValue | undefined {
  if (typeof kind !== 'string') {
    if (kind.includes(raw)) return raw;
    throw new Error('invalid value'); // etcd's flags.SelectiveStringValue
  }
  switch (kind) {
    case 'string':
    case 'legacy':
      return raw;
    case 'strings':
      return raw.split(',');
    case 'bool':
      return parseGoBool(raw);
    case 'uint':
    case 'uint64':
      return parseGoInteger(raw, false, 64);
    case 'uint32':
      return parseGoInteger(raw, false, 32);
    case 'int':
    case 'int64':
      return parseGoInteger(raw, true, 64);
    case 'duration':
      try {
        return parseGoDuration(raw);
      } catch (err) {
        throw new Error('parse error', { cause: err });
      }
    case 'urls':
      return raw === '' ? undefined : parseUrls(raw, false);
    case 'origins':
      return raw === '*' ? undefined : parseUrls(raw, true);
  }
}

/** Go's strconv.ParseBool. @throws Error "parse error". */
function parseGoBool(raw: string): boolean {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false;
  throw new Error('parse error');
}

/** Go integer literal syntax accepted by strconv.ParseInt/ParseUint with base 0, sign excluded. */
const GO_INTEGER = /^(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)$/;

/**
 * Go's strconv.ParseInt / ParseUint with base 0, as Go's flag package calls them: decimal,
 * `0x` hex, `0o` or leading-`0` octal, `0b` binary, `_` between digits; a sign only if signed.
 * @param bits the integer width (32 or 64) that bounds the value.
 * @throws Error "parse error" or "value out of range" (Go's flag wording).
 */
function parseGoInteger(raw: string, signed: boolean, bits: 32 | 64): bigint {
  let digits = raw;
  let negative = false;
  if (signed && (digits.startsWith('+') || digits.startsWith('-'))) {
    negative = digits.startsWith('-');
    digits = digits.slice(1);
  }
  if (!GO_INTEGER.test(digits)) {
    throw new Error('parse error');
  }
  digits = digits.replaceAll('_', '');
  if (/^0[0-7]/.test(digits)) digits = `0o${digits.slice(1)}`; // Go's legacy octal; BigInt reads '017' as decimal
  const magnitude = BigInt(digits);
  const value = negative ? -magnitude : magnitude;
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  if (value > max || value < min) throw new Error('value out of range');
  return value;
}

/** Nanoseconds per unit of a Go duration (time.ParseDuration's unitMap). */
const DURATION_UNIT_NS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/**
 * Go's time.ParseDuration: a signed sequence of decimal numbers, each with an optional fraction
 * and a unit (ns, us, µs, ms, s, m, h), e.g. `300ms`, `-1.5h`, `2h45m`; `0` needs no unit.
 * @returns the duration in milliseconds (fractional below 1 ms).
 * @throws Error with Go's message: `time: invalid duration "x"`, `time: missing unit in duration
 *   "10"`, `time: unknown unit "x" in duration "10x"`.
 */
export function parseGoDuration(text: string): number {
  const quoted = JSON.stringify(text);
  let s = text;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new Error(`time: invalid duration ${quoted}`);
  let totalNs = 0n;
  while (s !== '') {
    const number = /^([0-9]*)(?:\.([0-9]*))?/.exec(s) as RegExpExecArray;
    const whole = number[1] as string;
    const fraction = number[2] ?? '';
    if (whole === '' && fraction === '') throw new Error(`time: invalid duration ${quoted}`);
    // Go's leadingInt refuses an integer part past 2^63 before the unit is looked at.
    if (BigInt(whole || '0') > 1n << 63n) throw new Error(`time: invalid duration ${quoted}`);
    s = s.slice(number[0].length);
    const unitLength = s.search(/[0-9.]/);
    const unit = unitLength < 0 ? s : s.slice(0, unitLength);
    if (unit === '') throw new Error(`time: missing unit in duration ${quoted}`);
    const unitNs = DURATION_UNIT_NS[unit];
    if (unitNs === undefined) throw new Error(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`);
    s = s.slice(unit.length);
    totalNs += BigInt(whole || '0') * unitNs;
    if (fraction !== '') totalNs += (BigInt(fraction) * unitNs) / 10n ** BigInt(fraction.length);
    if (totalNs > (1n << 63n) - 1n) throw new Error(`time: invalid duration ${quoted}`);
  }
  const ms = Number(totalNs) / 1e6;
  return negative ? -ms : ms;
}

/**
 * True when etcd reads an `--auto-compaction-retention` as a count (hours or revisions): what
 * Go's `strconv.Atoi` takes (an optional sign, digits, within int64) and is not negative
 * (etcd `parseCompactionRetention`); anything else is read as a Go duration.
 */
export function isRetentionCount(retention: string): boolean {
  return /^\+?[0-9]+$/.test(retention) && BigInt(retention) <= (1n << 63n) - 1n;
}

/** One URL of an etcd URL list: `url` as given (scheme lower-cased), `host` without brackets. */
export interface EtcdUrl {
  url: string;
  scheme: string;
  host: string;
}

/**
 * etcd's types.NewURLs: comma-separated http, https, unix or unixs URLs of the form
 * `scheme://host:port`, without a path; spaces around each are trimmed.
 * @returns the URLs sorted, repeats kept (etcd keeps them: a repeated peer URL fails to bind, a
 *   repeated advertised URL is listed twice), or without repeats when `unique` (etcd's
 *   `UniqueURLs`, the CORS origins).
 * @throws Error with etcd's message naming the bad URL.
 */
function parseUrls(raw: string, unique: boolean): string[] {
  const urls = raw.split(',').map((u) => parseUrl(u).url);
  return (unique ? [...new Set(urls)] : urls).sort();
}

/**
 * One URL as etcd's `types.NewURLs` takes it (trimmed, its scheme lower-cased): http, https, unix
 * or unixs, `host:port`, no path. Throws etcd's and Go's url.Parse's texts.
 */
export function parseUrl(input: string): EtcdUrl {
  const text = input.trim();
  const scheme = (/^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1] ?? '').toLowerCase();
  // Go's url.Parse: with no scheme, the text is a path, and a colon before its first slash is refused.
  if (scheme === '' && text.startsWith(':')) throw new Error(`parse ${JSON.stringify(text)}: missing protocol scheme`);
  if (scheme === '' && /^[^/]*:/.test(text)) throw new Error(`parse ${JSON.stringify(text)}: first path segment in URL cannot contain colon`);
  if (!['http', 'https', 'unix', 'unixs'].includes(scheme)) {
    throw new Error(`URL scheme must be http, https, unix, or unixs: ${text}`);
  }
  const notHostPort = new Error(`URL address does not have the form "host:port": ${text}`);
  const rest = text.slice(scheme.length + 1);
  if (!rest.startsWith('//')) throw notHostPort;
  const afterSlashes = rest.slice(2);
  const authorityEnd = afterSlashes.search(/[/?#]/);
  const authority = authorityEnd < 0 ? afterSlashes : afterSlashes.slice(0, authorityEnd);
  const hostPort = authority.slice(authority.lastIndexOf('@') + 1);
  if (/\s/.test(hostPort)) throw new Error(`parse ${JSON.stringify(text)}: invalid character in host name`);
  const split = splitHostPort(hostPort);
  if (split === undefined) throw notHostPort;
  if (!/^[0-9]*$/.test(split.port)) {
    throw new Error(`parse ${JSON.stringify(text)}: invalid port ":${split.port}" after host`);
  }
  const path = authorityEnd < 0 ? '' : (afterSlashes.slice(authorityEnd).split(/[?#]/)[0] as string);
  if (path !== '') throw new Error(`URL must not contain a path: ${text}`);
  return { url: scheme + text.slice(scheme.length), scheme, host: split.host };
}

/** Go's net.SplitHostPort: `host:port` or `[ipv6]:port`. @returns undefined where Go errs. */
export function splitHostPort(hostPort: string): { host: string; port: string } | undefined {
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0 || hostPort[close + 1] !== ':') return undefined;
    const host = hostPort.slice(1, close);
    const port = hostPort.slice(close + 2);
    return /[[\]]/.test(host) || /[[\]]/.test(port) ? undefined : { host, port };
  }
  const colon = hostPort.lastIndexOf(':');
  if (colon < 0) return undefined;
  const host = hostPort.slice(0, colon);
  if (host.includes(':') || /[[\]]/.test(hostPort)) return undefined;
  return { host, port: hostPort.slice(colon + 1) };
}

/**
 * Builds the config from the parsed values and checks it as etcd's `embed.Config.Validate` and
 * listener setup do, after the log settings (`log`, checked first). Appends etcd's warnings for
 * deprecated or adjusted settings. `fromFile`: the values came from a configuration file
 * (`source` then holds its keys).
 * @throws FlagError for a combination etcd refuses.
 */
function buildConfig(
  values: ReadonlyMap<string, FlagValue>,
  source: ReadonlyMap<string, string>,
  notices: Notice[],
  fromFile: boolean,
  log: LogSettings,
): ServerConfig {
  const config = defaultConfig();
  config.loggerKind = log.logger;
  config.logLevel = log.level;
  config.logOutputs = log.outputs;
  const text = (name: string) => textValue(values, name);
  const flag = (name: string): boolean => values.get(name) === true;
  const integer = (name: string): number | undefined => {
    const v = values.get(name);
    return typeof v === 'bigint' ? Number(v) : undefined;
  };
  const list = (name: string) => listValue(values, name);

  // 1. Member and limits.
  config.name = text('name') ?? config.name;
  config.dataDir = text('data-dir') || `${config.name}.etcd`; // etcdmain: an empty --data-dir means ${name}.etcd
  config.initialClusterToken = text('initial-cluster-token') ?? config.initialClusterToken;
  // etcd replaces its default initial cluster by the name's own (`UpdateDefaultClusterFromName`)
  // whenever the value is that default, given or not.
  const initialCluster = text('initial-cluster');
  config.initialCluster = initialCluster === 'default=http://localhost:2380' ? undefined : initialCluster;
  config.initialClusterState = text('initial-cluster-state') === 'existing' ? 'existing' : 'new';
  config.maxRequestBytes = integer('max-request-bytes') ?? config.maxRequestBytes;
  config.maxTxnOps = integer('max-txn-ops') ?? config.maxTxnOps;
  config.authTokenTtlSec = integer('auth-token-ttl') ?? config.authTokenTtlSec;
  config.enableGrpcGateway = values.get('enable-grpc-gateway') !== false;
  config.metrics = text('metrics') ?? config.metrics; // etcd checks only for 'extensive'
  config.unsafeNoFsync = flag('unsafe-no-fsync');
  // etcd's NewTokenProvider: simple or jwt (its key files read now), anything else refused.
  try {
    config.authToken = parseTokenOptions(text('auth-token') ?? 'simple', (d) => {
      try {
        return parseGoDuration(d);
      } catch {
        return undefined;
      }
    });
  } catch (err) {
    if (err instanceof TokenOptionsError) throw new FlagError(err.message, 'start', { cause: err.cause });
    throw err;
  }
  // etcd (`NewAuthStore`) falls back to bcrypt's default cost, with a warning, outside 4–31.
  const bcryptCost = integer('bcrypt-cost');
  if (bcryptCost !== undefined && (bcryptCost < 4 || bcryptCost > 31)) {
    notices.push({
      msg: 'use default bcrypt cost instead of the invalid given cost',
      fields: { 'min-cost': 4, 'max-cost': 31, 'default-cost': 10, 'given-cost': bcryptCost },
      plog: { pkg: 'auth', level: 'W', text: `Use default bcrypt-cost 10 instead of the invalid value ${bcryptCost}` },
    });
  } else if (bcryptCost !== undefined) {
    config.bcryptCost = bcryptCost;
  }
  config.quotaBackendBytes = integer('quota-backend-bytes') ?? config.quotaBackendBytes;
  config.maxConcurrentStreams = integer('max-concurrent-streams') ?? config.maxConcurrentStreams;
  config.walDir = text('wal-dir') ?? config.walDir;
  // etcd: 0 keeps the backend's default; a negative interval commits as soon as it can (its
  // timer fires at once; etcd 3.4 starts and serves with --backend-batch-interval=-1s), a
  // negative limit commits after every write.
  const batchIntervalMs = values.get('backend-batch-interval');
  if (typeof batchIntervalMs === 'number') config.backendBatchIntervalMs = batchIntervalMs;
  config.backendBatchLimit = integer('backend-batch-limit') ?? config.backendBatchLimit;

  // 2. URLs: listeners must bind to an IP or localhost, advertised URLs need a host, and an
  // explicit --listen-client-urls needs an explicit --advertise-client-urls (etcdmain checks
  // the flags; a configuration file may leave the default advertised).
  config.listenClientUrls = list('listen-client-urls') ?? config.listenClientUrls;
  config.advertiseClientUrls = list('advertise-client-urls') ?? config.advertiseClientUrls;
  config.listenPeerUrls = list('listen-peer-urls') ?? config.listenPeerUrls;
  config.listenMetricsUrls = list('listen-metrics-urls') ?? config.listenMetricsUrls;
  config.initialAdvertisePeerUrls = list('initial-advertise-peer-urls') ?? config.initialAdvertisePeerUrls;
  config.corsOrigins = list('cors') ?? config.corsOrigins;
  config.hostWhitelist = list('host-whitelist') ?? config.hostWhitelist;
  for (const u of [...config.listenPeerUrls, ...config.listenClientUrls, ...config.listenMetricsUrls].map(parseUrl)) {
    if (u.scheme.startsWith('unix') || u.host === 'localhost' || isIP(u.host) !== 0) continue;
    throw new FlagError(`expected IP in URL for binding (${u.url})`);
  }
  for (const [name, urls] of [
    ['initial-advertise-peer-urls', config.initialAdvertisePeerUrls],
    ['advertise-client-urls', config.advertiseClientUrls],
  ] as const) {
    const empty = urls.find((u) => parseUrl(u).host === '');
    if (empty !== undefined) {
      throw new FlagError(`--${name} "${urls.join(',')}" must be "host:port" (unexpected empty host (${empty}))`);
    }
  }
  // 2a. Bootstrap (etcd `Config.Validate`): at most one of --initial-cluster, --discovery and
  // --discovery-srv; etcdmain drops the default --initial-cluster when a discovery flag is
  // given without it. (A configuration file keeps etcd's default cluster beside its discovery
  // settings; not checked here.)
  if (!fromFile) {
    const given = (name: string) => (text(name) ?? '') !== '';
    const discovery = given('discovery') || given('discovery-srv') || given('discovery-srv-name');
    const cluster = values.has('initial-cluster') ? given('initial-cluster') : !discovery;
    if ([given('discovery'), cluster, given('discovery-srv')].filter(Boolean).length > 1) {
      throw new FlagError('multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery" or "discovery-srv"');
    }
  }
  // 2b. Raft timing (etcd `Config.Validate`), of which a single member keeps the lease rules.
  config.heartbeatIntervalMs = integer('heartbeat-interval') ?? config.heartbeatIntervalMs;
  config.electionTimeoutMs = integer('election-timeout') ?? config.electionTimeoutMs;
  const { heartbeatIntervalMs: tick, electionTimeoutMs: election } = config;
  if (tick <= 0) throw new FlagError(`--heartbeat-interval must be >0 (set to ${tick}ms)`);
  if (election <= 0) throw new FlagError(`--election-timeout must be >0 (set to ${election}ms)`);
  if (5 * tick > election) throw new FlagError(`--election-timeout[${election}ms] should be at least as 5 times as --heartbeat-interval[${tick}ms]`);
  if (election > 50_000) throw new FlagError(`--election-timeout[${election}ms] is too long, and should be set less than 50000ms`);
  if (!fromFile && source.has('listen-client-urls') && !source.has('advertise-client-urls')) {
    throw new FlagError(ERR_UNSET_ADVERTISE_CLIENT_URLS);
  }

  // 3. Compaction.
  const mode = text('auto-compaction-mode') ?? config.autoCompactionMode;
  if (mode !== 'periodic' && mode !== 'revision' && mode !== '') {
    throw new FlagError(`unknown auto-compaction-mode "${mode}"`);
  }
  config.autoCompactionMode = mode;
  // Lease checkpoints, checked last in etcd's `Config.Validate`. etcd 3.4 under capnslog panics
  // as it warns about checkpoints without persistence (it logs through a nil zap logger); we
  // warn in capnslog's words instead.
  config.leaseCheckpoint = flag('experimental-enable-lease-checkpoint');
  config.leaseCheckpointPersist = flag('experimental-enable-lease-checkpoint-persist');
  if (config.leaseCheckpoint && !config.leaseCheckpointPersist) {
    const msg = 'Detected that checkpointing is enabled without persistence. Consider enabling experimental-enable-lease-checkpoint-persist';
    notices.push({ msg, fields: {}, plog: { pkg: 'embed', level: 'W', text: msg } });
  }
  if (config.leaseCheckpointPersist && !config.leaseCheckpoint) {
    throw new FlagError('setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint');
  }
  config.autoCompactionRetention = text('auto-compaction-retention') || '0';
  if (!isRetentionCount(config.autoCompactionRetention)) {
    // etcd parseCompactionRetention: a non-negative integer (hours or revisions), else a duration.
    try {
      parseGoDuration(config.autoCompactionRetention);
    } catch (err) {
      throw new FlagError(`error parsing CompactionRetention: ${(err as Error).message}`, 'start', { cause: err });
    }
  }

  // 4. Watch progress: like etcd, a non-positive interval keeps the default, and one below
  // 100 ms is raised to 100 ms.
  const progressMs = values.get('experimental-watch-progress-notify-interval');
  if (typeof progressMs === 'number' && progressMs > 0) {
    if (progressMs < MIN_WATCH_PROGRESS_INTERVAL_MS) {
      const msg = 'adjusting watch progress notify interval to minimum period';
      const period = `${MIN_WATCH_PROGRESS_INTERVAL_MS}ms`;
      notices.push({ msg, fields: { 'min-watch-progress-interval': period }, plog: { pkg: 'etcdserver/api/v3rpc', level: 'W', text: `${msg} ${period}` } });
    }
    config.watchProgressNotifyIntervalMs = Math.max(progressMs, MIN_WATCH_PROGRESS_INTERVAL_MS);
  }

  // Keepalive: the durations as given; the transport reads them as grpc-go does (≤ 0 min time:
  // its default; ≤ 0 interval or timeout: no server pings).
  const minTimeMs = values.get('grpc-keepalive-min-time');
  if (typeof minTimeMs === 'number') config.grpcKeepaliveMinTimeMs = minTimeMs;
  const intervalMs = values.get('grpc-keepalive-interval');
  if (typeof intervalMs === 'number') config.grpcKeepaliveIntervalMs = intervalMs;
  const timeoutMs = values.get('grpc-keepalive-timeout');
  if (typeof timeoutMs === 'number') config.grpcKeepaliveTimeoutMs = timeoutMs;

  // 5. Slow requests: the duration as given (etcd takes it as is, 0 included).
  const warnApplyMs = values.get('experimental-warning-apply-duration');
  if (typeof warnApplyMs === 'number') config.warningApplyDurationMs = warnApplyMs;

  // 6. Client TLS: filled when any TLS flag has a non-default value.
  const tls = {
    certFile: text('cert-file') ?? '',
    keyFile: text('key-file') ?? '',
    trustedCaFile: text('trusted-ca-file') ?? '',
    clientCertAuth: flag('client-cert-auth'),
    autoTls: flag('auto-tls'),
    cipherSuites: (list('cipher-suites') ?? []).filter((c) => c !== ''),
    clientCrlFile: text('client-crl-file') ?? '',
  };
  const unknownSuite = tls.cipherSuites.find((c) => !GO_CIPHER_SUITES.has(c));
  if (unknownSuite !== undefined) throw new FlagError(`unexpected TLS cipher suite "${unknownSuite}"`, 'start');
  config.peerTls = peerTls(config, tls.cipherSuites, { text, flag }, notices);
  // etcd's TLSInfo.Empty: neither file given. One file without the other is refused only where
  // TLS is used (loadTls: "KeyFile and CertFile must both be present…").
  const hasFiles = tls.certFile !== '' || tls.keyFile !== '';
  const hasCert = hasFiles || tls.autoTls;
  notices.push(...tlsInfoNotices('client', tls, config.dataDir));
  for (const u of config.listenClientUrls) {
    if (isTlsUrl(u) && !hasCert) {
      throw new FlagError(`TLS key/cert (--cert-file, --key-file) must be provided for client url ${u} with HTTPS scheme`, 'start');
    }
    // --auto-tls makes its files whatever the URLs (etcd `ClientSelfCert`).
    if (!isTlsUrl(u)) notices.push(...plainUrlNotices('client', u, hasFiles || tls.autoTls, tls.clientCertAuth));
  }
  for (const u of config.listenMetricsUrls) {
    if (isTlsUrl(u) && !hasCert) {
      throw new FlagError(`cannot listen on TLS for ${u.replace(/^[a-z]+:\/\//, '')}: KeyFile and CertFile are not presented`, 'start');
    }
  }
  const anyTls =
    tls.certFile !== '' || tls.keyFile !== '' || tls.trustedCaFile !== '' || tls.clientCertAuth || tls.autoTls ||
    tls.cipherSuites.length > 0 || tls.clientCrlFile !== '';
  config.clientTls = anyTls ? tls : undefined;
  return config;
}

/**
 * The peer listeners' TLS (the `--peer-` flags), checked as etcd's `configurePeerListeners`
 * checks them before it binds: an https:// peer URL without a certificate is refused
 * (`cannot listen on TLS for host:port: KeyFile and CertFile are not presented`), and http://
 * URLs with certificate files or `--peer-client-cert-auth` are warned about. Undefined when no
 * peer TLS flag is set.
 */
function peerTls(
  config: ServerConfig,
  cipherSuites: string[],
  read: { text: (name: string) => string | undefined; flag: (name: string) => boolean },
  notices: Notice[],
): PeerTlsConfig | undefined {
  const tls: PeerTlsConfig = {
    certFile: read.text('peer-cert-file') ?? '',
    keyFile: read.text('peer-key-file') ?? '',
    trustedCaFile: read.text('peer-trusted-ca-file') ?? '',
    clientCertAuth: read.flag('peer-client-cert-auth'),
    autoTls: read.flag('peer-auto-tls'),
    cipherSuites,
    clientCrlFile: read.text('peer-crl-file') ?? '',
    allowedCn: read.text('peer-cert-allowed-cn') ?? '',
    allowedHostname: read.text('peer-cert-allowed-hostname') ?? '',
  };
  // etcd's TLSInfo.Empty: neither file given (--peer-auto-tls fills them before the check).
  const hasFiles = tls.certFile !== '' || tls.keyFile !== '';
  notices.push(...tlsInfoNotices('peer', tls, config.dataDir));
  for (const u of config.listenPeerUrls) {
    if (isTlsUrl(u) && !hasFiles && !tls.autoTls) {
      throw new FlagError(`cannot listen on TLS for ${u.replace(/^[a-z]+:\/\//, '')}: KeyFile and CertFile are not presented`, 'start');
    }
    // --peer-auto-tls makes its files whatever the URLs (etcd `PeerSelfCert`).
    if (!isTlsUrl(u)) notices.push(...plainUrlNotices('peer', u, hasFiles || tls.autoTls, tls.clientCertAuth));
  }
  const any = hasFiles || tls.trustedCaFile !== '' || tls.clientCertAuth || tls.autoTls || tls.clientCrlFile !== '' || tls.allowedCn !== '' || tls.allowedHostname !== '';
  return any ? tls : undefined;
}

/**
 * etcd's warnings about an http:// `kind` URL when TLS is configured for it: the certificate
 * files (when `hasFiles`) and client certificate checks (when `clientCertAuth`) are ignored
 * there. etcd's capnslog text says "peer key/cert files" for the client's too.
 */
function plainUrlNotices(kind: 'client' | 'peer', u: string, hasFiles: boolean, clientCertAuth: boolean): Notice[] {
  const notices: Notice[] = [];
  const field = { [`${kind}-url`]: u };
  const flag = kind === 'peer' ? '--peer-client-cert-auth' : '--client-cert-auth';
  if (hasFiles) {
    const ignored = kind === 'peer' ? 'peer key/cert files' : 'key/cert files';
    notices.push({
      msg: 'scheme is HTTP while key and cert files are present; ignoring key and cert files',
      fields: field,
      plog: { pkg: 'embed', level: 'W', text: `The scheme of ${kind} url ${u} is HTTP while peer key/cert files are presented. Ignored ${ignored}.` },
    });
  }
  if (clientCertAuth) {
    notices.push({
      msg: `scheme is HTTP while ${flag} is enabled; ignoring client cert auth for this URL`,
      fields: field,
      plog: { pkg: 'embed', level: 'W', text: `The scheme of ${kind} url ${u} is HTTP while client cert auth (${flag}) is enabled. Ignored client cert auth for this url.` },
    });
  }
  return notices;
}

/**
 * etcd's lines about the TLS of the `kind` listeners: `--auto-tls` (or `--peer-auto-tls`) set
 * aside for the files given, then, for peers, the files used (`peerTLS: cert = …`; the
 * client's `ClientTLS:` line comes once the server serves, see embed.ts).
 */
function tlsInfoNotices(kind: 'client' | 'peer', tls: ClientTlsConfig, dataDir: string): Notice[] {
  const notices: Notice[] = [];
  const hasFiles = tls.certFile !== '' || tls.keyFile !== '';
  if (tls.autoTls && hasFiles) {
    const msg = `ignoring ${kind} auto TLS since certs given`;
    notices.push({ msg, fields: {}, plog: { pkg: 'embed', level: 'W', text: msg } });
  }
  if (kind === 'peer' && (hasFiles || tls.autoTls)) {
    const text = tlsInfoText(tls, dataDir, 'peer');
    notices.push({ msg: 'starting with peer TLS', fields: { 'tls-info': text, 'cipher-suites': tls.cipherSuites }, plog: { pkg: 'embed', level: 'I', text: `peerTLS: ${text}` } });
  }
  return notices;
}

/**
 * etcd `TLSInfo.String` of the TLS a `kind` listener uses: the files given, or those
 * `--auto-tls` makes under `<dataDir>/fixtures/<kind>` (then with nothing else).
 */
export function tlsInfoText(tls: ClientTlsConfig, dataDir: string, kind: 'client' | 'peer'): string {
  const auto = tls.certFile === '' && tls.keyFile === '' && tls.autoTls;
  const dir = path.join(dataDir, 'fixtures', kind);
  const c = auto ? { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem'), trustedCaFile: '', clientCertAuth: false, clientCrlFile: '' } : tls;
  return `cert = ${c.certFile}, key = ${c.keyFile}, trusted-ca = ${c.trustedCaFile}, client-cert-auth = ${c.clientCertAuth}, crl-file = ${c.clientCrlFile}`;
}

/** etcd's `--log-outputs` keyword for its default output. */
const DEFAULT_LOG_OUTPUT = 'default';

/**
 * The outputs `--log-outputs` and the deprecated `--log-output` name together, as etcd's
 * `embed.Config.setupLogging` resolves them first: `--log-output` replaces `--log-outputs` only
 * when it names more outputs (a single `--log-output` is only warned about). Both default to
 * `default`. Flags hold them sorted without duplicates (etcd's UniqueStringsValue); a
 * configuration file keeps its lists as written.
 * @throws FlagError (verify) for a combination etcd refuses.
 */
function deprecatedLogOutput(
  outputs: readonly string[] | undefined,
  deprecated: readonly string[] | undefined,
  fromFile: boolean,
  notices: Notice[],
): string[] {
  const given = (list: readonly string[] | undefined): string[] =>
    list === undefined ? [DEFAULT_LOG_OUTPUT] : fromFile ? [...list] : [...new Set(list)].sort();
  let chosen = given(outputs);
  const old = given(deprecated);
  if (old.length > chosen.length) {
    notices.push({ raw: "'--log-output' flag has been deprecated! Please use '--log-outputs'!" });
    chosen = old;
  } else if (old.length === chosen.length) {
    if (old.length > 1) throw new FlagError("both '--log-output' and '--log-outputs' are set; only set '--log-outputs'");
    if (old[0] !== DEFAULT_LOG_OUTPUT) {
      if (old[0] === chosen[0]) {
        throw new FlagError(`'--log-output=${goQuotedList(old)}' and '--log-outputs=${goQuotedList(chosen)}' are incompatible; only set --log-outputs`);
      }
      notices.push({ raw: `[WARNING] Deprecated '--log-output' flag is set to ${goQuotedList(old)}` }, { raw: "Please use '--log-outputs' flag" });
    }
  }
  return chosen;
}

/**
 * The log outputs to open, checked as etcd's `embed.Config.setupLogging` checks them (its error
 * texts).
 * @param logger `--logger`: `capnslog` (etcd 3.4's default) or `zap`.
 * @param chosen the outputs named (see {@link deprecatedLogOutput}).
 * @returns the outputs to open (`stderr`, `stdout`, `systemd/journal` or file paths), sorted,
 *   without duplicates, and only `/dev/null` when it is one of them (zap's MergeOutputPaths).
 * @throws FlagError (verify) for a combination etcd refuses, e.g. a file with capnslog.
 */
function logOutputs(logger: string, chosen: readonly string[]): string[] {
  if (logger === 'capnslog') {
    if (chosen.length !== 1) throw new FlagError(`--logger=capnslog supports only 1 value in '--log-outputs', got ${goQuotedList(chosen)}`);
    const only = chosen[0] as string;
    if (only === 'stdout') return ['stdout'];
    if (only === 'stderr' || only === DEFAULT_LOG_OUTPUT) return ['stderr'];
    throw new FlagError(`unknown log-output ${JSON.stringify(only)} (only supports "default", "stderr", "stdout")`);
  }
  if (logger !== 'zap') throw new FlagError(`unknown logger option ${JSON.stringify(logger)}`);
  if (chosen.length > 1 && chosen.includes(DEFAULT_LOG_OUTPUT)) {
    throw new FlagError(`multi logoutput for "${DEFAULT_LOG_OUTPUT}" is not supported yet`);
  }
  if (chosen.includes(JOURNAL_LOG_OUTPUT)) {
    if (chosen.length > 1) {
      throw new FlagError(
        `running with systemd/journal but other '--log-outputs' values (${goQuotedList(chosen)}) are configured with 'default'; override 'default' value with something else`,
      );
    }
    return [JOURNAL_LOG_OUTPUT];
  }
  const paths = [...new Set(chosen.map((o) => (o === DEFAULT_LOG_OUTPUT ? 'stderr' : o)))].sort();
  return paths.includes('/dev/null') ? ['/dev/null'] : paths;
}

/** Supported flags etcd 3.4 defines without a line in its help text. */
const UNLISTED_IN_HELP = new Set(['version', 'enable-grpc-gateway', 'config-file', 'log-output', 'unsafe-no-fsync', 'experimental-enable-lease-checkpoint-persist']);

/**
 * The ways to run etcd-ts, which etcd prints on stderr after a flag the flag package refuses
 * (a {@link FlagError} of phase `parse`), and which begin {@link usage}.
 */
export function usageSummary(): string {
  return [
    'Usage:',
    '',
    '  etcd-ts [flags]',
    '    Start an etcd-ts server: a single-node etcd v3.',
    '',
    '  etcd-ts --config-file',
    `    ${CONFIG_FILE_USAGE}`,
    '',
    '  etcd-ts --version',
    '    Show the version of etcd-ts.',
    '',
    '  etcd-ts -h | --help',
    '    Show the help information about etcd-ts.',
    '',
  ].join('\n');
}

/**
 * The flag list of `-h`/`--help`, which etcd prints to stdout after the usage summary on stderr
 * (see `usageSummary`), then exits 0: every supported flag with its default as etcd's help
 * prints it, then the flags accepted and ignored and the flags refused.
 */
export function usage(): string {
  const lines = [
    "Every flag can also be set by its environment variable: ETCD_ and the flag's name in upper case with",
    "'-' as '_' (ETCD_DATA_DIR for --data-dir). A variable whose flag is also on the command line is refused.",
    '',
    'Flags:',
  ];
  for (const f of FLAGS) {
    if (f.use === 'supported' && !UNLISTED_IN_HELP.has(f.name)) lines.push(`  --${f.name} '${f.defaultText}'`, `    ${f.usage}`);
  }
  lines.push('', 'Accepted for compatibility with etcd and ignored (cluster-only, or without effect in etcd-ts):');
  let line = ' ';
  for (const f of FLAGS) {
    if (f.use !== 'ignored' || f.kind === 'legacy') continue; // etcd's help does not list its legacy flags either
    if (line.length + f.name.length + 3 > 100) {
      lines.push(line);
      line = ' ';
    }
    line += ` --${f.name}`;
  }
  lines.push(line, '', 'Not supported (etcd-ts refuses to start when they are set):');
  for (const f of FLAGS) {
    if (f.use === 'rejected') lines.push(`  --${f.name}`);
  }
  return `${lines.join('\n')}\n`;
}
