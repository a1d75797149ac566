/**
 * The etcd v3 client: KV, txn, compaction, watch, lease, auth, maintenance and member-list calls
 * over a {@link Connection}.
 * Works against etcd-ts and etcd 3.4.
 */
import type {
  CompactionResponse,
  DeleteRangeResponse,
  LeaseGrantResponse,
  LeaseLeasesResponse,
  LeaseRevokeResponse,
  LeaseTimeToLiveResponse,
  MemberListResponse,
  PutResponse,
  RangeResponse,
  StatusResponse,
  TxnRequest,
  TxnResponse,
} from '../proto/gen/rpc.gen.js';
import { AuthApi } from './auth.js';
import { Connection, type CallOptions, type ConnectionOptions } from './connection.js';
import { AbortError } from './errors.js';
import {
  deleteRequest,
  putRequest,
  rangeRequest,
  toBigInt,
  type Bytes,
  type DeleteOptions,
  type GetOptions,
  type Int64,
  type PutOptions,
} from './kv.js';
import { LeaseKeepAlive, type KeepAliveOptions } from './lease.js';
import { MaintenanceApi } from './maintenance.js';
import { Txn } from './txn.js';
import { Watcher, WatchStream, type WatchOptions } from './watch.js';

/** Options of a {@link Client}; see {@link ConnectionOptions}. */
export type ClientOptions = ConnectionOptions;

/**
 * A client of one etcd cluster (its endpoints). Create with `new Client({ endpoints })`;
 * release with `close()`. Calls and streams go round-robin to the endpoints whose connection is
 * established (waiting while none is; see `dialTimeoutMs`) and fail over on UNAVAILABLE;
 * reads are retried until their deadline, writes only when the request was never sent.
 */
export class Client {
  private readonly connection: Connection;
  /** Users, roles, permissions and auth enable/disable (etcd clientv3's `Auth`). */
  readonly auth: AuthApi;
  /** Alarms, defragmentation, hashes, snapshots, leadership (etcd clientv3's `Maintenance`). */
  readonly maintenance: MaintenanceApi;
  /** Watch streams by group name. */
  private readonly streams = new Map<string, WatchStream>();
  /** Live keep-alive helpers, stopped by close(). */
  private readonly keepAlives = new Set<LeaseKeepAlive>();

  /** @throws TypeError when `endpoints` is empty or an endpoint has another scheme than http/https. */
  constructor(options: ClientOptions) {
    this.connection = new Connection(options);
    this.auth = new AuthApi(this.connection);
    this.maintenance = new MaintenanceApi(this.connection);
  }

  /** The endpoint URLs, as normalised (with scheme). */
  get endpoints(): string[] {
    return this.connection.endpoints.map((e) => e.url);
  }

  /**
   * Reads a key or a range (see {@link GetOptions}); retried on other endpoints when unavailable.
   * @returns etcd's RangeResponse: `kvs` (Buffer keys/values, bigint revisions), `count`, `more`, `header.revision`.
   * @throws CompactedError / FutureRevisionError for `revision` out of range, UnavailableError, DeadlineExceededError, AbortError.
   */
  get(key: Bytes, options?: GetOptions): Promise<RangeResponse> {
    return this.connection.unary((ep) => ep.kv.range.bind(ep.kv), rangeRequest(key, options), options, true);
  }

  /**
   * Writes a key (see {@link PutOptions}).
   * @returns etcd's PutResponse (`header.revision` is the revision of this write; `prevKv` when asked).
   * @throws LeaseNotFoundError, RequestTooLargeError, EtcdClientError (`etcdserver: key is not provided`, …), UnavailableError, AbortError.
   */
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<PutResponse> {
    return this.connection.unary((ep) => ep.kv.put.bind(ep.kv), putRequest(key, value, options), options, false);
  }

  /**
   * Deletes a key or a range (see {@link DeleteOptions}).
   * @returns etcd's DeleteRangeResponse: `deleted` count, `prevKvs` when asked.
   * @throws UnavailableError, AbortError, DeadlineExceededError.
   */
  delete(key: Bytes, options?: DeleteOptions): Promise<DeleteRangeResponse> {
    return this.connection.unary((ep) => ep.kv.deleteRange.bind(ep.kv), deleteRequest(key, options), options, false);
  }

  /** Starts a txn; see {@link Txn}, {@link Compare} and {@link Op}. */
  txn(): Txn {
    return new Txn((request: TxnRequest, options?: CallOptions): Promise<TxnResponse> =>
      this.connection.unary((ep) => ep.kv.txn.bind(ep.kv), request, options, false));
  }

  /**
   * Compacts the history below `revision`.
   * @param options `physical`: wait until the compaction is applied to the backend. @default false
   * @throws CompactedError when `revision` is not above the current compact revision; FutureRevisionError.
   */
  compact(revision: Int64, options: CallOptions & { physical?: boolean } = {}): Promise<CompactionResponse> {
    const request = { revision: toBigInt(revision), physical: options.physical ?? false };
    return this.connection.unary((ep) => ep.kv.compact.bind(ep.kv), request, options, false);
  }

  /**
   * Watches a key or a range (see {@link WatchOptions}) and returns at once; the watch is
   * registered when `created` resolves. The watch resumes after disconnections from its last
   * delivered revision + 1, and ends with CompactedError when that revision was compacted.
   * After `close()`, the returned watch ends at once with AbortError (`created` rejects, the
   * iterator throws, 'error' if listened to), as calls after close() reject with it.
   * @throws TypeError when more than one of prefix / rangeEnd / fromKey is set.
   */
  watch(key: Bytes, options: WatchOptions = {}): Watcher {
    const group = options.group ?? '';
    let stream = this.streams.get(group);
    if (stream === undefined) {
      const created: WatchStream = new WatchStream(this.connection, () => {
        if (this.streams.get(group) === created) this.streams.delete(group);
      });
      stream = created;
      this.streams.set(group, stream);
    }
    const watcher = new Watcher(stream, key, options);
    stream.add(watcher);
    return watcher;
  }

  /** Number of open watch groups (each one gRPC stream while it has watchers). */
  get watchStreamCount(): number {
    return this.streams.size;
  }

  /**
   * Grants a lease.
   * @param ttlSeconds time to live, in seconds (the server may raise it to its minimum).
   * @param options `id`: ask for this lease ID (0 = server chooses). @default 0
   * @returns LeaseGrantResponse with `ID` and `TTL` (seconds).
   */
  leaseGrant(ttlSeconds: number, options: CallOptions & { id?: Int64 } = {}): Promise<LeaseGrantResponse> {
    const request = { TTL: BigInt(ttlSeconds), ID: toBigInt(options.id ?? 0) };
    return this.connection.unary((ep) => ep.lease.leaseGrant.bind(ep.lease), request, options, false);
  }

  /**
   * Revokes a lease and deletes its keys.
   * @throws LeaseNotFoundError.
   */
  leaseRevoke(id: Int64, options?: CallOptions): Promise<LeaseRevokeResponse> {
    return this.connection.unary((ep) => ep.lease.leaseRevoke.bind(ep.lease), { ID: toBigInt(id) }, options, true);
  }

  /**
   * A lease's remaining time to live, in seconds (`TTL` = -1 when expired or unknown).
   * @param options `keys`: also list the attached keys. @default false
   */
  leaseTimeToLive(id: Int64, options: CallOptions & { keys?: boolean } = {}): Promise<LeaseTimeToLiveResponse> {
    const request = { ID: toBigInt(id), keys: options.keys ?? false };
    return this.connection.unary((ep) => ep.lease.leaseTimeToLive.bind(ep.lease), request, options, true);
  }

  /** Every live lease ID. */
  leases(options?: CallOptions): Promise<LeaseLeasesResponse> {
    return this.connection.unary((ep) => ep.lease.leaseLeases.bind(ep.lease), {}, options, true);
  }

  /**
   * Keeps a lease alive until `stop()`: renews it every TTL/3 over a LeaseKeepAlive stream,
   * re-opening the stream (on the next endpoint) after disconnections. Emits 'lost' once (and
   * stops) when the server says the lease is gone, or when no renewal succeeded within the
   * lease's TTL since the last one (within `dialTimeoutMs` + 1 s for the first), whether the
   * stream broke or went silent: clientv3's keep-alive deadline. After `close()`, 'lost' fires
   * at once with AbortError.
   */
  keepAlive(id: Int64, options?: KeepAliveOptions): LeaseKeepAlive {
    const keepAlive = new LeaseKeepAlive(this.connection, toBigInt(id), options, () => this.keepAlives.delete(keepAlive));
    this.keepAlives.add(keepAlive);
    return keepAlive;
  }

  /** The members of the cluster (`members`: ID, name, peer and client URLs, learner flag). */
  memberList(options?: CallOptions): Promise<MemberListResponse> {
    return this.connection.unary((ep) => ep.cluster.memberList.bind(ep.cluster), {}, options, true);
  }

  /** The server status of one endpoint (version, db size, leader, raft index). */
  status(options?: CallOptions): Promise<StatusResponse> {
    return this.connection.unary((ep) => ep.maintenance.status.bind(ep.maintenance), {}, options, true);
  }

  /**
   * Closes the client: every watch ends (iterators finish, 'end' fires), keep-alives stop and
   * report 'lost' with AbortError, in-flight calls reject with AbortError, channels close.
   * Idempotent.
   */
  close(): void {
    for (const stream of this.streams.values()) stream.close();
    this.streams.clear();
    for (const k of [...this.keepAlives]) k.lose(new AbortError('client closed'));
    this.connection.close();
  }
}
