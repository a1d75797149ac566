/**
 * Prometheus metrics of one server, served on `/metrics` (etcd registers the same names with
 * the Go client's default registry). Each server owns its own `Registry`, so several embedded
 * servers in one process never mix their numbers.
 *
 * Most values are read from the server's state when scraped (collect-time gauges and counters):
 * the write path pays nothing for them (the watch figures are the watchable store's plain
 * integer counters, see `WatchableStore.stats()`). Only these are counted as they happen, each
 * with a plain integer increment: the store's storage calls (`KVStore.ops`), changes published
 * by the store (put bytes, live keys), the backend's durability waits (a histogram observation
 * per group commit, not per write), gRPC calls per method and status code and per client API
 * version (Map lookups per call), gRPC messages and their bytes each way (etcd counts the bytes
 * in its codec), /health answers, and the durations etcd keeps histograms of: a few
 * Maintenance calls, compactions and lease TTLs (an observation each).
 *
 * Metrics that describe a cluster (heartbeats, read indexes, failed proposals, snapshots from a
 * leader) are served with their single-member value, 0, as etcd serves them on a one-member
 * cluster; failed learner promotions are counted by etcd's reason.
 *
 * The `process_*` metrics are client_golang's process collector's, which etcd serves too (and
 * dashboards chart): CPU, resident memory and start time from Node, and on Linux the file
 * descriptors, virtual memory and their limits from /proc, read when scraped.
 */
import { status as GrpcStatus, type Metadata, type sendUnaryData, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DEFAULT_QUOTA_BYTES, type ServerConfig } from '../config.js';
import { MaintenanceService } from '../proto/gen/rpc.gen.js';
import { GRPC_CODE_NAMES } from './errors.js';
import type { EtcdServer } from './etcd-server.js';
import { SERVER_VERSION } from '../version.js';

/** The soft limit called `name` in /proc/self/limits; unlimited is 2^64, as client_golang reports it. */
function processLimit(name: string): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith(name));
  const soft = line?.slice(name.length).trim().split(/\s+/)[0];
  return soft === 'unlimited' ? 2 ** 64 : Number(soft);
}

/** The process's virtual memory size in bytes (`vsize`, field 23 of /proc/self/stat). */
function processVirtualBytes(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[20]);
}

/** Counts a call in `requests` under the client's `client-api-version` header, 'unknown' without one (etcd's interceptors). */
function countClientRequest(requests: Map<string, number>, metadata: Metadata): void {
  const header = metadata.get('client-api-version')[0];
  const version = typeof header === 'string' ? header : 'unknown';
  requests.set(version, (requests.get(version) ?? 0) + 1);
}

/** go-grpc-prometheus's `grpc_type` label by (client streams, server streams). */
function grpcType(requestStream: boolean, responseStream: boolean): string {
  if (requestStream) return responseStream ? 'bidi_stream' : 'client_stream';
  return responseStream ? 'server_stream' : 'unary';
}

/** A grpc-js streaming call as `instrument` sees it: `pendingStatus` is grpc-js's own field. */
interface StreamingCall extends EventEmitter {
  readonly metadata: Metadata;
  readonly pendingStatus?: { code: number };
  /** Our transport's: the call ended because a request could not be received. */
  readonly receiveFailed?: boolean;
}

/** The streams etcd counts failures of (`etcd_network_server_stream_failures_total`), by its API name. */
const STREAM_FAILURE_APIS: Readonly<Record<string, string>> = {
  '/etcdserverpb.Watch/Watch': 'watch',
  '/etcdserverpb.Lease/LeaseKeepAlive': 'lease-keepalive',
};

/**
 * The services whose methods go-grpc-prometheus lists from the start, every counter at 0 and
 * `grpc_server_handled_total` under all 17 codes: those etcd 3.4 registers before it calls
 * `grpc_prometheus.Register` (`v3rpc.Server`). The others (Lock, Election, and etcd 3.5's
 * AuthStatus, which etcd 3.4 lacks) appear with their first call.
 */
const PRE_REGISTERED_SERVICES = new Set(['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Cluster', 'etcdserverpb.Maintenance', 'etcdserverpb.Auth', 'grpc.health.v1.Health']);
const NOT_IN_ETCD_34 = new Set(['/etcdserverpb.Auth/AuthStatus']);

/** Calls of one gRPC method, counted by `ServerMetrics.instrument`. */
interface MethodCalls {
  /** Labels shared by both grpc_server_* metrics. */
  readonly labels: { grpc_service: string; grpc_method: string; grpc_type: string };
  /** Listed before its first call (see `PRE_REGISTERED_SERVICES`). */
  readonly preRegistered: boolean;
  /** Calls started. */
  started: number;
  /** Calls finished, by gRPC status code. */
  readonly handled: Map<number, number>;
  /** Messages received and sent (`grpc_server_msg_{received,sent}_total`). */
  received: number;
  sent: number;
  /** This method's `grpc_server_handling_seconds` series, with `--metrics extensive`. */
  readonly handling: { observe(seconds: number): void } | undefined;
}

/** Prometheus's `DefBuckets`, which go-grpc-prometheus's handling-time histogram uses. */
const PROMETHEUS_DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Prometheus `ExponentialBuckets(start, factor, count)`. */
function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}

/** etcd's commit-duration buckets: 1 ms doubling 14 times, to about 8 s. */
const COMMIT_BUCKETS_SECONDS = exponentialBuckets(0.001, 2, 14);

/** The quota etcd reports in `etcd_server_quota_backend_bytes`: the flag, 0 meaning the default. */
function quotaBytes(config: ServerConfig): number {
  return config.quotaBackendBytes === 0 ? DEFAULT_QUOTA_BYTES : config.quotaBackendBytes;
}

/** The metrics of one server; create it once per EtcdServer, before it serves requests. */
export class ServerMetrics {
  /** This server's registry; `/metrics` renders it. */
  readonly registry = new Registry();
  /** gRPC calls by method path (`/etcdserverpb.KV/Range`); written only by the handlers `instrument` wraps. */
  private readonly calls = new Map<string, MethodCalls>();
  /** Key plus value bytes of those puts (etcd `totalPutSizeGauge`). */
  private putBytes = 0;
  /**
   * Keys alive at the published revision (etcd `keysGauge`): counted at the first scrape, then
   * kept by the publish listener; undefined until then. Counting walks the whole index (~30 ms
   * at 100k keys), which a start need not wait for (ARCHITECTURE, "Startup").
   */
  private liveKeys: number | undefined;
  /** Bytes of gRPC messages received and sent (etcd's codec counts them); see `countBytes` and `sender`. */
  private receivedBytes = 0;
  private sentBytes = 0;
  /**
   * Watch and LeaseKeepAlive streams ended because a request could not be received, by etcd's
   * API name (etcd counts them as receive failures); written by `instrument`.
   */
  private readonly streamFailures = new Map<string, number>();
  /** Calls by type and client API version; written by `instrument`. */
  private readonly clientRequests = { unary: new Map<string, number>(), stream: new Map<string, number>() };
  /** Histograms of call durations in seconds by method path, for the calls etcd times; read by `instrument`. */
  private readonly timers = new Map<string, Histogram>();
  /**
   * go-grpc-prometheus's handling time of every call by method (`grpc_server_handling_seconds`),
   * which etcd turns on with `--metrics extensive`; undefined with `basic`.
   */
  private readonly handlingSeconds: Histogram<'grpc_service' | 'grpc_method' | 'grpc_type'> | undefined;
  /** Scrapes being served, and those served by HTTP status (client_golang's promhttp; 200, 500 and 503 from the start). */
  private scrapesInFlight = 0;
  private readonly scrapes = new Map<number, number>([[200, 0], [500, 0], [503, 0]]);
  /**
   * The checks of /livez and /readyz (etcd's `etcd_server_healthcheck` gauge, 1 when the last
   * run passed, and `etcd_server_healthchecks_total` by outcome); written by `probeChecked`.
   */
  private readonly probeResult: Gauge<'type' | 'name'>;
  private readonly probeRuns: Counter<'type' | 'name' | 'status'>;
  /** /health answers, healthy and not; written by `healthChecked`. */
  private healthy = 0;
  private unhealthy = 0;

  constructor(etcd: EtcdServer) {
    const store = etcd.store;
    const register = [this.registry];
    if (etcd.config.metrics === 'extensive') {
      this.handlingSeconds = new Histogram({
        name: 'grpc_server_handling_seconds',
        help: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
        labelNames: ['grpc_service', 'grpc_method', 'grpc_type'],
        buckets: PROMETHEUS_DEFAULT_BUCKETS,
        registers: register,
      });
    }
    store.onPublish((_rev, changes) => {
      for (const kv of changes) {
        if (kv.version === 0n) {
          if (this.liveKeys !== undefined) this.liveKeys--;
        } else {
          this.putBytes += kv.key.length + kv.value.length;
          if (kv.version === 1n && this.liveKeys !== undefined) this.liveKeys++;
        }
      }
    });
    const value = (name: string, help: string, read: () => number, kind: 'gauge' | 'counter' = 'gauge'): void => {
      if (kind === 'gauge') {
        new Gauge({ name, help, registers: register, collect() { this.set(read()); } });
      } else {
        new Counter({ name, help, registers: register, collect() { this.reset(); this.inc(read()); } });
      }
    };
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, registers: register });

    // Raft: a single member leads from its start on, through one election.
    value('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.', () => 1);
    value('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.', () => 1);
    value('etcd_server_leader_changes_seen_total', 'The number of leader changes seen.', () => 1, 'counter');
    value('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.', () => Number(etcd.raftIndex));
    value('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.', () => Number(etcd.raftIndex));
    value('etcd_server_proposals_pending', 'The current number of pending proposals to commit.', () => 0);
    value('etcd_server_quota_backend_bytes', 'Current backend storage quota size in bytes.', () => quotaBytes(etcd.config));
    new Gauge({ name: 'etcd_server_id', help: 'Server or member ID in hexadecimal format. 1 for \'server_id\' label with current ID.', labelNames: ['server_id'], registers: register })
      .set({ server_id: etcd.memberId.toString(16) }, 1);
    new Gauge({ name: 'etcd_server_version', help: 'Which version is running. 1 for \'server_version\' label with current version.', labelNames: ['server_version'], registers: register })
      .set({ server_version: SERVER_VERSION }, 1);
    new Gauge({ name: 'etcd_cluster_version', help: 'Which version is running. 1 for \'cluster_version\' label with current cluster version', labelNames: ['cluster_version'], registers: register })
      .set({ cluster_version: SERVER_VERSION.split('.').slice(0, 2).join('.') }, 1);
    value('etcd_server_is_learner', 'Whether or not this member is a learner. 1 if is, 0 otherwise.', () => 0);
    const promoteFailures = etcd.membership.promoteFailures;
    new Counter({
      name: 'etcd_server_learner_promote_failures',
      help: 'The total number of failed learner promotions (likely learner not ready) while this member is leader.',
      labelNames: ['Reason'],
      registers: register,
      collect() {
        this.reset();
        for (const [reason, n] of promoteFailures) this.inc({ Reason: reason }, n);
      },
    });
    value('etcd_server_learner_promote_successes', 'The total number of successful learner promotions while this member is leader.', () => 0, 'counter');
    value('etcd_server_proposals_failed_total', 'The total number of failed proposals seen.', () => 0, 'counter');
    value('etcd_server_heartbeat_send_failures_total', 'The total number of leader heartbeat send failures (likely overloaded from slow disk).', () => 0, 'counter');
    value('etcd_server_slow_apply_total', 'The total number of slow apply requests (likely overloaded from slow disk).', () => etcd.slowApplies, 'counter');
    value('etcd_server_slow_read_indexes_total', 'The total number of pending read indexes not in sync with leader\'s or timed out read index requests.', () => 0, 'counter');
    value('etcd_server_read_indexes_failed_total', 'The total number of failed read indexes seen.', () => 0, 'counter');
    value('etcd_server_snapshot_apply_in_progress_total', '1 if the server is applying the incoming snapshot. 0 if none.', () => 0);
    value('etcd_server_health_success', 'The total number of successful health checks', () => this.healthy, 'counter');
    value('etcd_server_health_failures', 'The total number of failed health checks', () => this.unhealthy, 'counter');
    this.probeResult = new Gauge({ name: 'etcd_server_healthcheck', help: 'The result of each kind of healthcheck.', labelNames: ['type', 'name'], registers: register });
    this.probeRuns = new Counter({ name: 'etcd_server_healthchecks_total', help: 'The total number of each kind of healthcheck.', labelNames: ['type', 'name', 'status'], registers: register });
    const clientRequests = this.clientRequests;
    new Counter({
      name: 'etcd_server_client_requests_total',
      help: 'The total number of client requests per client version.',
      labelNames: ['client_api_version', 'type'],
      registers: register,
      collect() {
        this.reset();
        for (const type of ['unary', 'stream'] as const) {
          for (const [version, n] of clientRequests[type]) this.inc({ client_api_version: version, type }, n);
        }
      },
    });
    const streamFailures = this.streamFailures;
    new Counter({
      name: 'etcd_network_server_stream_failures_total',
      help: 'The total number of stream failures from the local server.',
      labelNames: ['Type', 'API'],
      registers: register,
      collect() {
        this.reset();
        for (const [api, n] of streamFailures) this.inc({ Type: 'receive', API: api }, n);
      },
    });
    value('etcd_network_client_grpc_received_bytes_total', 'The total number of bytes received from grpc clients.', () => this.receivedBytes, 'counter');
    value('etcd_network_client_grpc_sent_bytes_total', 'The total number of bytes sent to grpc clients.', () => this.sentBytes, 'counter');

    // Backend and MVCC store.
    // etcd 3.4 serves these under both names, the older etcd_debugging_ one beside the new one.
    const mvcc = (name: string, help: string, read: () => number, kind: 'gauge' | 'counter' = 'gauge'): void => {
      value(`etcd_mvcc_${name}`, help, read, kind);
      value(`etcd_debugging_mvcc_${name}`, help, read, kind);
    };
    mvcc('db_total_size_in_bytes', 'Total size of the underlying database physically allocated in bytes.', () => etcd.backend.size());
    value('etcd_mvcc_db_total_size_in_use_in_bytes', 'Total size of the underlying database logically in use in bytes.', () => etcd.backend.sizeInUse());
    value('etcd_debugging_mvcc_keys_total', 'Total number of keys.', () => (this.liveKeys ??= store.index.countRevisions('\0', '\0', store.publishedRev)));
    value('etcd_debugging_mvcc_current_revision', 'The current revision of store.', () => store.publishedRev);
    value('etcd_debugging_mvcc_compact_revision', 'The revision of the last compaction in store.', () => store.compactRev);
    value('etcd_debugging_mvcc_db_compaction_keys_total', 'Total number of db keys compacted.', () => store.compactedKeysTotal, 'counter');
    mvcc('put_total', 'Total number of puts seen by this member.', () => store.ops.puts, 'counter');
    mvcc('delete_total', 'Total number of deletes seen by this member.', () => store.ops.deletes, 'counter');
    mvcc('range_total', 'Total number of ranges seen by this member.', () => store.ops.ranges, 'counter');
    mvcc('txn_total', 'Total number of txns seen by this member.', () => store.ops.txns, 'counter');
    value('etcd_debugging_mvcc_total_put_size_in_bytes', 'The total size of put kv pairs seen by this member.', () => this.putBytes);
    value('etcd_debugging_auth_revision', 'The current revision of auth store.', () => etcd.auth.revision);
    value('etcd_disk_defrag_inflight', 'Whether or not defrag is active on the member. 1 means active, 0 means not.', () => (etcd.defragInProgress ? 1 : 0));
    value('etcd_debugging_lease_granted_total', 'The total number of granted leases.', () => etcd.lessor.metrics().granted, 'counter');
    value('etcd_debugging_lease_revoked_total', 'The total number of revoked leases.', () => etcd.lessor.metrics().revoked, 'counter');
    value('etcd_debugging_lease_renewed_total', 'The number of renewed leases seen by the leader.', () => etcd.lessor.metrics().renewed, 'counter');
    value('etcd_debugging_server_lease_expired_total', 'The total number of expired leases.', () => etcd.lessor.metrics().expired, 'counter');
    // Watch (etcd mvcc/metrics.go), read from the watchable store's counters when scraped.
    const watch = () => etcd.watchableStore.stats();
    value('etcd_debugging_mvcc_watch_stream_total', 'Total number of watch streams.', () => watch().streams);
    value('etcd_debugging_mvcc_watcher_total', 'Total number of watchers.', () => watch().watchers);
    value('etcd_debugging_mvcc_slow_watcher_total', 'Total number of unsynced slow watchers.', () => watch().slowWatchers);
    value('etcd_debugging_mvcc_pending_events_total', 'Total number of pending events to be sent.', () => watch().pendingEvents);
    value('etcd_debugging_mvcc_events_total', 'Total number of events sent by this member.', () => watch().eventsSent, 'counter');
    const commit = histogram('etcd_disk_backend_commit_duration_seconds', 'The latency distributions of commit called by backend.', COMMIT_BUCKETS_SECONDS);
    const fsync = histogram('etcd_disk_wal_fsync_duration_seconds', 'The latency distributions of fsync called by WAL.', COMMIT_BUCKETS_SECONDS);
    etcd.backend.onCommitDuration = (seconds) => commit.observe(seconds);
    etcd.backend.onWalFsyncDuration = (seconds) => fsync.observe(seconds);
    // A gauge in etcd, whatever its name says.
    value('etcd_disk_wal_write_bytes_total', 'Total number of bytes written in WAL.', () => etcd.backend.walWriteBytes());
    // Maintenance calls, timed from the handler's start to its answer (to the stream's end for
    // Snapshot): etcd times the hash, the defragmentation and the snapshot transfer themselves.
    this.timers.set(MaintenanceService.hash.path, histogram('etcd_mvcc_hash_duration_seconds', 'The latency distribution of storage hash operation.', exponentialBuckets(0.01, 2, 15)));
    this.timers.set(MaintenanceService.hashKv.path, histogram('etcd_mvcc_hash_rev_duration_seconds', 'The latency distribution of storage hash by revision operation.', exponentialBuckets(0.01, 2, 15)));
    this.timers.set(MaintenanceService.defragment.path, histogram('etcd_disk_backend_defrag_duration_seconds', 'The latency distribution of backend defragmentation.', exponentialBuckets(0.1, 2, 13)));
    this.timers.set(MaintenanceService.snapshot.path, histogram('etcd_disk_backend_snapshot_duration_seconds', 'The latency distribution of backend snapshots.', exponentialBuckets(0.01, 2, 17)));
    const compaction = {
      index: histogram('etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds', 'Bucketed histogram of index compaction pause duration.', exponentialBuckets(0.5, 2, 14)),
      dbPause: histogram('etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds', 'Bucketed histogram of db compaction pause duration.', exponentialBuckets(1, 2, 13)),
      dbTotal: histogram('etcd_debugging_mvcc_db_compaction_total_duration_milliseconds', 'Bucketed histogram of db compaction total duration.', exponentialBuckets(100, 2, 14)),
    };
    // Whole milliseconds, as etcd observes them (`float64(time.Since(start) / time.Millisecond)`).
    store.onCompactionTiming = (phase, ms) => compaction[phase].observe(Math.floor(ms));
    const leaseTtls = histogram('etcd_debugging_lease_ttl_total', 'Bucketed histogram of lease TTLs.', exponentialBuckets(1, 2, 24));
    etcd.lessor.onGrant = (ttlSec) => leaseTtls.observe(ttlSec);

    // The process, as client_golang's process collector names it.
    value('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    }, 'counter');
    value('process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss());
    value('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () => performance.timeOrigin / 1000);
    if (process.platform === 'linux') {
      const openFds = () => readdirSync('/proc/self/fd').length;
      const maxFds = () => processLimit('Max open files');
      value('process_open_fds', 'Number of open file descriptors.', openFds);
      value('process_max_fds', 'Maximum number of open file descriptors.', maxFds);
      value('process_virtual_memory_bytes', 'Virtual memory size in bytes.', processVirtualBytes);
      value('process_virtual_memory_max_bytes', 'Maximum amount of virtual memory available in bytes.', () => processLimit('Max address space'));
      // etcd's own names for the same two figures (etcd `monitorFileDescriptor` samples them every 10 minutes).
      value('os_fd_used', 'The number of used file descriptors.', openFds);
      value('os_fd_limit', 'The file descriptor limit.', maxFds);
    }

    // Scrapes, as client_golang's promhttp handler counts them.
    value('promhttp_metric_handler_requests_in_flight', 'Current number of scrapes being served.', () => this.scrapesInFlight);
    const scrapes = this.scrapes;
    new Counter({
      name: 'promhttp_metric_handler_requests_total',
      help: 'Total number of scrapes by HTTP status code.',
      labelNames: ['code'],
      registers: register,
      collect() {
        this.reset();
        for (const [code, n] of scrapes) this.inc({ code: String(code) }, n);
      },
    });

    // gRPC, as go-grpc-prometheus names them.
    const calls = this.calls;
    const listed = (c: MethodCalls) => c.preRegistered || c.started > 0;
    const perMethod = (name: string, help: string, read: (c: MethodCalls) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['grpc_service', 'grpc_method', 'grpc_type'],
        registers: register,
        collect() {
          this.reset();
          for (const c of calls.values()) if (listed(c)) this.inc(c.labels, read(c));
        },
      });
    perMethod('grpc_server_started_total', 'Total number of RPCs started on the server.', (c) => c.started);
    perMethod('grpc_server_msg_received_total', 'Total number of RPC stream messages received on the server.', (c) => c.received);
    perMethod('grpc_server_msg_sent_total', 'Total number of gRPC stream messages sent by the server.', (c) => c.sent);
    new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_type', 'grpc_code'],
      registers: register,
      collect() {
        this.reset();
        for (const c of calls.values()) {
          if (!listed(c)) continue;
          for (const [code, n] of c.handled) this.inc({ ...c.labels, grpc_code: GRPC_CODE_NAMES[code] ?? String(code) }, n);
        }
      },
    });
  }

  /**
   * `impl` with every handler counting its calls by method when they start and, by status
   * code, when they end (`grpc_server_started_total`, `grpc_server_handled_total`). Handlers
   * are wrapped rather than intercepted: a grpc-js server interceptor puts one more
   * call layer under every message of every call, which cost about a quarter of the unary
   * throughput (measured with fixed answers: 12.9k against 9.3k puts/s). Calls that grpc-js
   * refuses before a handler runs (unknown method, undecodable request) are not counted.
   */
  instrument(service: ServiceDefinition, impl: UntypedServiceImplementation): UntypedServiceImplementation {
    const out: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(service)) {
      const handler = impl[name];
      if (handler === undefined) continue;
      const counted = this.methodCalls(method.path, method.requestStream, method.responseStream);
      const requests = this.clientRequests[method.requestStream || method.responseStream ? 'stream' : 'unary'];
      const timer = this.timers.get(method.path);
      const timed = timer !== undefined || counted.handling !== undefined;
      const failureApi = STREAM_FAILURE_APIS[method.path];
      /** Counts a call that started at `start` (ms; 0 when the method is not timed) as ended with `code`. */
      const handled = (code: number, start: number): void => {
        counted.handled.set(code, (counted.handled.get(code) ?? 0) + 1);
        if (!timed) return;
        const seconds = (performance.now() - start) / 1000;
        // etcd times the operation itself, which a refused call (e.g. HashKV at a compacted revision) never ran.
        if (code === GrpcStatus.OK) timer?.observe(seconds);
        counted.handling?.observe(seconds);
      };
      if (!method.responseStream) {
        // Unary and client-streaming handlers answer through a callback.
        const h = handler as (call: { metadata: Metadata }, callback: sendUnaryData<unknown>) => void;
        out[name] = (call: { metadata: Metadata }, callback: sendUnaryData<unknown>) => {
          const start = timed ? performance.now() : 0;
          counted.started++;
          countClientRequest(requests, call.metadata);
          h(call, (err, value, trailer, flags) => {
            handled(err ? (err.code ?? GrpcStatus.UNKNOWN) : GrpcStatus.OK, start);
            callback(err, value, trailer, flags);
          });
        };
      } else {
        // A streaming call is counted when it closes, with the status it ended with
        // (`pendingStatus`): the one it sent, or the one its cancellation stands for.
        const h = handler as (call: StreamingCall) => void;
        out[name] = (call: StreamingCall) => {
          const start = timed ? performance.now() : 0;
          counted.started++;
          countClientRequest(requests, call.metadata);
          call.once('close', () => {
            handled(call.pendingStatus?.code ?? GrpcStatus.OK, start);
            if (call.receiveFailed && failureApi !== undefined) this.streamFailures.set(failureApi, (this.streamFailures.get(failureApi) ?? 0) + 1);
          });
          h(call);
        };
      }
    }
    return out;
  }

  /**
   * `service` with every method's request deserializer and response serializer counting the
   * messages and their bytes (`grpc_server_msg_{received,sent}_total`,
   * `etcd_network_client_grpc_{received,sent}_bytes_total`, which etcd counts in its gRPC
   * codec). Responses written past grpc-js's serializer are counted through `sender`.
   */
  countBytes(service: ServiceDefinition): ServiceDefinition {
    const counted = Object.entries(service).map(([name, method]) => {
      const calls = this.methodCalls(method.path, method.requestStream, method.responseStream);
      return [name, {
        ...method,
        requestDeserialize: (bytes: Buffer): unknown => {
          // etcd counts a request's bytes in its codec, the message only once it is decoded (a
          // request that does not decode throws here).
          this.receivedBytes += bytes.length;
          const request: unknown = method.requestDeserialize(bytes);
          calls.received++;
          return request;
        },
        responseSerialize: (value: unknown): Buffer => {
          const bytes = method.responseSerialize(value);
          this.sentBytes += bytes.length;
          calls.sent++;
          return bytes;
        },
      }];
    });
    return Object.fromEntries(counted) as ServiceDefinition;
  }

  /**
   * A counter of the messages `method` sends past grpc-js's serializer (the watch transport):
   * call it with each message's bytes.
   */
  sender(method: { path: string; requestStream: boolean; responseStream: boolean }): (bytes: number) => void {
    const calls = this.methodCalls(method.path, method.requestStream, method.responseStream);
    return (bytes) => {
      this.sentBytes += bytes;
      calls.sent++;
    };
  }

  /** Records one run of the check `name` of /livez or /readyz (`type`), passed or not. */
  probeChecked(type: 'livez' | 'readyz', name: string, ok: boolean): void {
    this.probeResult.set({ type, name }, ok ? 1 : 0);
    this.probeRuns.inc({ type, name, status: ok ? 'success' : 'error' });
  }

  /** Counts one /health answer (`etcd_server_health_success` / `_failures`). */
  healthChecked(healthy: boolean): void {
    if (healthy) this.healthy++;
    else this.unhealthy++;
  }

  /** The counters of the method at `path`, created when its service is registered. */
  private methodCalls(path: string, requestStream: boolean, responseStream: boolean): MethodCalls {
    let c = this.calls.get(path);
    if (!c) {
      const [service = '', name = ''] = path.slice(1).split('/');
      const labels = { grpc_service: service, grpc_method: name, grpc_type: grpcType(requestStream, responseStream) };
      const preRegistered = PRE_REGISTERED_SERVICES.has(service) && !NOT_IN_ETCD_34.has(path);
      // go-grpc-prometheus's `preRegisterMethod`: the series are there from the start, at 0.
      const handled = new Map<number, number>(preRegistered ? Object.keys(GRPC_CODE_NAMES).map((code) => [Number(code), 0]) : []);
      if (preRegistered) this.handlingSeconds?.zero(labels);
      c = { labels, preRegistered, started: 0, handled, received: 0, sent: 0, handling: this.handlingSeconds?.labels(labels) };
      this.calls.set(path, c);
    }
    return c;
  }

  /**
   * The exposition text of every metric (Prometheus text format 0.0.4). The scrape counts as
   * in flight while it renders and, as promhttp counts it, by its status code once answered:
   * the caller reports that with `scraped`.
   */
  render(): Promise<string> {
    this.scrapesInFlight++;
    return this.registry.metrics().then(sortLabels);
  }

  /** Ends a scrape `render` began, answered with HTTP status `code`. */
  scraped(code: number): void {
    this.scrapesInFlight--;
    this.scrapes.set(code, (this.scrapes.get(code) ?? 0) + 1);
  }

  /** The Content-Type of `render()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A label pair of the exposition text: `name="value"` (the value escaped: `\\`, `\"`, `\n`). */
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/gy;

/**
 * The exposition text with each sample's labels in Go's order (client_golang sorts a metric's
 * labels by name; a histogram's `le` and a summary's `quantile` come after them), where
 * prom-client writes them in the order they were given. etcd's e2e tests match whole lines.
 */
function sortLabels(text: string): string {
  return text.replace(/^([^#\n][^{\n]*)\{([^\n]*)\}( [^\n]*)$/gm, (line, name: string, labels: string, rest: string) => {
    const pairs: [string, string][] = [];
    for (let at = 0; at < labels.length; ) {
      LABEL_PAIR.lastIndex = at;
      const m = LABEL_PAIR.exec(labels);
      if (!m) return line;
      pairs.push([m[1]!, m[0]]);
      at = LABEL_PAIR.lastIndex + (labels[LABEL_PAIR.lastIndex] === ',' ? 1 : 0);
    }
    const last = (n: string): number => (n === 'le' || n === 'quantile' ? 1 : 0);
    pairs.sort(([a], [b]) => last(a) - last(b) || (a < b ? -1 : a > b ? 1 : 0));
    return `${name}{${pairs.map(([, pair]) => pair).join(',')}}${rest}`;
  });
}
