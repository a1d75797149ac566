/**
 * The server's configuration: one field per etcd flag that applies to a single node.
 * The CLI (`src/cli/`) fills it from flags and `ETCD_*` variables; the embedded server takes
 * it directly. Defaults are etcd 3.4's.
 */
import type { TokenOptions } from './auth/token-provider.js';
import type { LoggerKind } from './logger.js';

/**
 * TLS settings of the client listeners (etcd's `--cert-file` … `--client-crl-file`); the peer
 * listeners' are {@link PeerTlsConfig}.
 */
export interface ClientTlsConfig {
  /** PEM certificate file (`--cert-file`). */
  certFile: string;
  /** PEM private key file (`--key-file`). */
  keyFile: string;
  /** CA bundle used to verify client certificates (`--trusted-ca-file`); '' = none. */
  trustedCaFile: string;
  /** Require and verify client certificates (`--client-cert-auth`). */
  clientCertAuth: boolean;
  /** Generate a self-signed certificate when no cert/key is given (`--auto-tls`). */
  autoTls: boolean;
  /** Allowed cipher suites, etcd (Go) names (`--cipher-suites`); empty = Node's defaults. */
  cipherSuites: string[];
  /** PEM certificate revocation list (`--client-crl-file`); '' = none. */
  clientCrlFile: string;
}

/**
 * TLS settings of the peer listeners (etcd's `--peer-cert-file` … `--peer-crl-file`; the
 * fields of ClientTlsConfig are the `--peer-` flags of the same names, `cipherSuites` the
 * shared `--cipher-suites`).
 */
export interface PeerTlsConfig extends ClientTlsConfig {
  /** The CN a peer client certificate must have (`--peer-cert-allowed-cn`); '' = any. */
  allowedCn: string;
  /** A host name a peer client certificate must be valid for (`--peer-cert-allowed-hostname`); '' = any. */
  allowedHostname: string;
}

/** `--auto-compaction-mode`; '' (which etcd accepts) starts no compactor. */
export type AutoCompactionMode = 'periodic' | 'revision' | '';

export interface ServerConfig {
  /** Human-readable member name (`--name`). @default 'default' */
  name: string;
  /** Data directory (`--data-dir`). @default '${name}.etcd' */
  dataDir: string;
  /** Directory of the write-ahead log (`--wal-dir`); '' = `<dataDir>/member/wal`. @default '' */
  walDir: string;
  /** Most ms a logged write waits before the LMDB commit that applies it (`--backend-batch-interval`); 0 = 100, negative = at once. @default 0 */
  backendBatchIntervalMs: number;
  /** Logged writes that start an LMDB commit at once (`--backend-batch-limit`); 0 = 10000. @default 0 */
  backendBatchLimit: number;
  /** URLs the client API listens on (`--listen-client-urls`). @default ['http://localhost:2379'] */
  listenClientUrls: string[];
  /** Client URLs advertised to clients (`--advertise-client-urls`). @default ['http://localhost:2379'] */
  advertiseClientUrls: string[];
  /**
   * URLs the peer API listens on (`--listen-peer-urls`): etcd's peer HTTP endpoints and the
   * gRPC API. @default ['http://localhost:2380'] (none for the embedded server)
   */
  listenPeerUrls: string[];
  /** Extra URLs serving /metrics, /health and /version only (`--listen-metrics-urls`). @default [] */
  listenMetricsUrls: string[];
  /** Peer URLs used only to derive the member ID as etcd does (`--initial-advertise-peer-urls`). @default ['http://localhost:2380'] */
  initialAdvertisePeerUrls: string[];
  /** Cluster token used only to derive the member and cluster IDs as etcd does (`--initial-cluster-token`). @default 'etcd-cluster' */
  initialClusterToken: string;
  /**
   * `--initial-cluster` (`name=url,…`) as given; undefined when not given (etcd's default then:
   * `default=http://localhost:2380`, or this member's name with its peer URLs when the name is
   * not `default`). Checked only on a new data dir, as etcd checks it (see `verifyBootstrap`).
   */
  initialCluster: string | undefined;
  /** `--initial-cluster-state`: 'existing' needs peers to join, which etcd-ts never has. @default 'new' */
  initialClusterState: 'new' | 'existing';
  /**
   * etcd's raft heartbeat, in ms (`--heartbeat-interval`): with the election timeout it sets the
   * smallest lease TTL, ceil(⌊1.5 × ticks⌋ × heartbeat) where ticks = ⌊election / heartbeat⌋.
   * @default 100
   */
  heartbeatIntervalMs: number;
  /** etcd's election timeout, in ms (`--election-timeout`): see `heartbeatIntervalMs`; leases get this much more time at start. @default 1000 */
  electionTimeoutMs: number;
  /** Largest client request, in bytes (`--max-request-bytes`). @default 1572864 (1.5 MiB) */
  maxRequestBytes: number;
  /** Most operations in one txn (`--max-txn-ops`). @default 128 */
  maxTxnOps: number;
  /** Backend size, in bytes, that raises the NOSPACE alarm (`--quota-backend-bytes`); 0 = default 2 GiB, negative = no quota. @default 0 */
  quotaBackendBytes: number;
  /** Auto compaction mode (`--auto-compaction-mode`). @default 'periodic' */
  autoCompactionMode: AutoCompactionMode;
  /** Retention: a duration ('1h', '30m', or a bare number of hours) for periodic, a revision count for revision; '0' = off (`--auto-compaction-retention`). @default '0' */
  autoCompactionRetention: string;
  /**
   * The log format (`--logger`): `capnslog` text lines (etcd 3.4's default) or `zap` JSON lines
   * (see src/logger.ts). The embedded server (`startServer`) writes zap's unless told otherwise.
   * @default 'capnslog'
   */
  loggerKind: LoggerKind;
  /** Log level (`--log-level`): debug, info, warn, error, panic, fatal. @default 'info' */
  logLevel: string;
  /**
   * Where the CLI's log lines go (`--logger`, `--log-outputs`, see `openLogOutputs`):
   * `stderr`, `stdout`, `systemd/journal`, or file paths (appended to). The embedded server
   * (`startServer`) logs only to the logger it is given. @default ['stderr']
   */
  logOutputs: string[];
  /**
   * No fsync at all (`--unsafe-no-fsync`, for tests and throwaway clusters): writes are
   * acknowledged once in the page cache; a machine crash can lose them. @default false
   */
  unsafeNoFsync: boolean;
  /**
   * Detail of `/metrics` (`--metrics`): `extensive` adds `grpc_server_handling_seconds`, the
   * handling time of every gRPC call by method; any other value is etcd's `basic`. @default 'basic'
   */
  metrics: string;
  /** Max concurrent HTTP/2 streams per client connection (`--max-concurrent-streams`). @default 4294967295 */
  maxConcurrentStreams: number;
  /**
   * Pings closer together than this many ms (with a stream open; 2 h without) are strikes, and
   * the third strike ends the connection with GOAWAY `too_many_pings`, as grpc-go's keepalive
   * enforcement does (`--grpc-keepalive-min-time`; ≤ 0 gives grpc-go's own default, 5 min). @default 5000
   */
  grpcKeepaliveMinTimeMs: number;
  /** After this many ms with nothing read from a client connection the server pings it (`--grpc-keepalive-interval`; off unless it and the timeout are > 0). @default 7200000 */
  grpcKeepaliveIntervalMs: number;
  /** ... and closes it when nothing is read within this many ms of the ping (`--grpc-keepalive-timeout`). @default 20000 */
  grpcKeepaliveTimeoutMs: number;
  /**
   * Checkpoint every lease's remaining TTL every 5 minutes, each time as a raft entry
   * (`--experimental-enable-lease-checkpoint`). @default false
   */
  leaseCheckpoint: boolean;
  /**
   * Keep checkpoints in the lease records, so a restart counts a lease's checkpointed remaining
   * TTL instead of its whole TTL (`--experimental-enable-lease-checkpoint-persist`). @default false
   */
  leaseCheckpointPersist: boolean;
  /** Interval of periodic watch progress notifications, in ms (`--experimental-watch-progress-notify-interval`). @default 600000 */
  watchProgressNotifyIntervalMs: number;
  /**
   * Requests whose apply (or read) takes longer than this many ms are logged and counted in
   * `etcd_server_slow_apply_total` (`--experimental-warning-apply-duration`). @default 100
   */
  warningApplyDurationMs: number;
  /** bcrypt cost of the passwords the Auth service stores (`--bcrypt-cost`; outside 4–31 gives 10, as etcd does). @default 10 */
  bcryptCost: number;
  /** Seconds an unused simple auth token stays valid (`--auth-token-ttl`). @default 300 */
  authTokenTtlSec: number;
  /** The kind of auth token and its settings (`--auth-token`, see `parseTokenOptions`). @default simple tokens */
  authToken: TokenOptions;
  /** TLS for the client URLs; undefined = plaintext (`https://` URLs need it). */
  clientTls: ClientTlsConfig | undefined;
  /** TLS of the peer listeners; undefined when no peer TLS flag is set. */
  peerTls: PeerTlsConfig | undefined;
  /** Serve the gRPC gateway's JSON API (`/v3/…`) on the client URLs (`--enable-grpc-gateway`). @default true */
  enableGrpcGateway: boolean;
  /**
   * Origins the client URLs' HTTP answers allow (`--cors`, etcd `AccessController.CORS`):
   * `*` or an empty list allows any, and every answer says `Access-Control-Allow-Origin: *`;
   * otherwise only a listed `Origin` is named back. @default ['*']
   */
  corsOrigins: string[];
  /**
   * Host names a plaintext HTTP request to a client URL may give in its `Host` header
   * (`--host-whitelist`, etcd's DNS-rebinding guard, CVE-2018-5702); others are answered 421.
   * `*` or an empty list allows any. @default ['*']
   */
  hostWhitelist: string[];
}

/** etcd's defaults (etcd `embed.NewConfig`). */
export function defaultConfig(): ServerConfig {
  return {
    name: 'default',
    dataDir: 'default.etcd',
    walDir: '',
    backendBatchIntervalMs: 0,
    backendBatchLimit: 0,
    listenClientUrls: ['http://localhost:2379'],
    advertiseClientUrls: ['http://localhost:2379'],
    listenPeerUrls: ['http://localhost:2380'],
    listenMetricsUrls: [],
    initialAdvertisePeerUrls: ['http://localhost:2380'],
    initialClusterToken: 'etcd-cluster',
    initialCluster: undefined,
    initialClusterState: 'new',
    heartbeatIntervalMs: 100,
    electionTimeoutMs: 1000,
    maxRequestBytes: 1.5 * 1024 * 1024,
    maxTxnOps: 128,
    quotaBackendBytes: 0,
    autoCompactionMode: 'periodic',
    autoCompactionRetention: '0',
    loggerKind: 'capnslog',
    logLevel: 'info',
    logOutputs: ['stderr'],
    metrics: 'basic',
    unsafeNoFsync: false,
    maxConcurrentStreams: 4294967295,
    grpcKeepaliveMinTimeMs: 5000,
    grpcKeepaliveIntervalMs: 2 * 60 * 60 * 1000,
    grpcKeepaliveTimeoutMs: 20_000,
    leaseCheckpoint: false,
    leaseCheckpointPersist: false,
    watchProgressNotifyIntervalMs: 10 * 60 * 1000,
    warningApplyDurationMs: 100,
    bcryptCost: 10,
    authTokenTtlSec: 300,
    authToken: { type: 'simple' },
    clientTls: undefined,
    peerTls: undefined,
    enableGrpcGateway: true,
    corsOrigins: ['*'],
    hostWhitelist: ['*'],
  };
}

/** True for a URL served over TLS: `https://`, or a unix socket with TLS (`unixs://`). */
export function isTlsUrl(url: string): boolean {
  return /^(https|unixs):/i.test(url);
}

/** Default backend quota when `quotaBackendBytes` is 0 (etcd `DefaultQuotaBytes`): 2 GiB. */
export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;
/** etcd `MaxQuotaBytes`: a larger --quota-backend-bytes is warned about (8 GiB). */
export const MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024;

/**
 * etcd adds this much to --max-request-bytes for gRPC's own receive limit and for the size at
 * which a watch response is split into fragments (etcd `grpcOverheadBytes`).
 */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;
