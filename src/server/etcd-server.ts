/**
 * The single-node etcd server (etcd `etcdserver.EtcdServer`): owns the backend, the MVCC store
 * and the member identity, and runs every client request through etcd's semantics. The gRPC
 * services (`src/server/grpc/`) are thin adapters over it.
 *
 * etcd orders writes through raft; with one member the order is simply arrival order, and the
 * "raft index" is a counter of applied write requests kept in the backend, so Status reports
 * numbers that move the way etcd's do. Every response header carries the cluster and member ID
 * that a real etcd with the same `--initial-advertise-peer-urls` and `--initial-cluster-token`
 * would have.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_QUOTA_BYTES, MAX_QUOTA_BYTES, type ServerConfig } from '../config.js';
import { AuthStore, authChanges, type AuthInfo, type TokenMetadata } from '../auth/auth-store.js';
import { Backend } from '../mvcc/backend.js';
import { keyToBytes } from '../mvcc/key.js';
import { KVStore, type ReadView, type TxnWrite } from '../mvcc/kv-store.js';
import { WatchableStore } from '../watch/watchable-store.js';
import { LeaseExists, LeaseTTLTooLarge, Lessor, type LeaseCheckpoint } from '../lease/lessor.js';
import {
  AlarmRequest_AlarmAction,
  AlarmType,
  type AlarmMember,
  type AuthenticateResponse,
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type TxnRequest,
  type TxnResponse,
} from '../proto/gen/rpc.gen.js';
import { formatGoDuration, goPathError } from '../go-format.js';
import { plog } from '../logger.js';
import { InternalRaftRequest } from '../proto/gen/raft_internal.gen.js';
import type { EncodedDeleteRangeResponse, EncodedRangeResponse, EncodedTxnResponse } from '../proto/wire.js';
import {
  applyDeleteRange,
  applyPut,
  applyRange,
  applyRangeEncoded,
  applyTxnEncoded,
  applyTxn,
  checkDelete,
  checkPut,
  checkRange,
  checkTxn,
  isTxnReadonly,
  revHeader,
  toEtcdError,
} from './apply.js';
import { DataDirLock, DataDirLockedError, lockedFile } from './data-dir-lock.js';
import { Errors } from './errors.js';
import { etcdWalFiles, peerUrlsAdded, readEtcdWal, type EtcdWal } from './etcd-wal.js';
import { Membership, verifyBootstrap } from './membership.js';
import { alarmEntry, clearImport, importEtcdSnapshot } from './snapshot.js';

/** etcd's warning about a data dir's mode other than 0700 (`fileutil.CheckDirPermission`), which changes nothing. */
function checkDataDirMode(dir: string, log: Logger): void {
  if (!fs.existsSync(dir)) return;
  const mode = fs.statSync(dir).mode & 0o777;
  if (mode !== 0o700) {
    const text = `check file permission: directory ${JSON.stringify(dir)} exist, but the permission is ${JSON.stringify(goDirMode(mode))}. The recommended permission is "-rwx------" to prevent possible unprivileged access to the data.`;
    log.warn({ dir, ...plog('pkg/fileutil', 'W', text) }, 'check file permission');
  }
}

/**
 * etcd `fileutil.TouchDirAll` as its `NewServer` calls it: makes the data dir (0700) and checks
 * that it can write there, creating and removing `.touch`.
 * @throws Error `cannot access data directory: <Go's error>` (`mkdir <dir>: permission denied`,
 *   `open <dir>/.touch: read-only file system`)
 */
function touchDataDir(dir: string): void {
  try {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      // Node's recursive mkdir says ENOENT where the last step was refused (a read-only file
      // system): that step alone says why, as Go's MkdirAll does.
      if (!fs.existsSync(path.dirname(dir))) throw err;
      fs.mkdirSync(dir, { mode: 0o700 });
    }
    const touch = path.join(dir, '.touch');
    fs.writeFileSync(touch, '');
    fs.rmSync(touch);
  } catch (err) {
    throw new Error(`cannot access data directory: ${goPathError(err as NodeJS.ErrnoException)}`, { cause: err });
  }
}

/** Go's `os.FileMode.String()` of a directory with permission bits `mode`: `drwxr-xr-x`. */
function goDirMode(mode: number): string {
  return `d${[...'rwxrwxrwx'].map((c, i) => (mode & (0o400 >> i) ? c : '-')).join('')}`;
}

/** etcd `computeMemberId`: SHA-1 of the sorted peer URLs and the cluster token, first 8 bytes. */
export function computeMemberId(peerUrls: readonly string[], clusterToken: string): bigint {
  const h = createHash('sha1').update([...peerUrls].sort().join('') + clusterToken).digest();
  return h.readBigUInt64BE(0);
}

/** etcd `RaftCluster.genID`: SHA-1 of the sorted member IDs (8 bytes each, big-endian), first 8 bytes. */
export function computeClusterId(memberIds: readonly bigint[]): bigint {
  const b = Buffer.alloc(8 * memberIds.length);
  [...memberIds].sort((a, c) => (a < c ? -1 : a > c ? 1 : 0)).forEach((id, i) => b.writeBigUInt64BE(id, 8 * i));
  return createHash('sha1').update(b).digest().readBigUInt64BE(0);
}

/**
 * Size a write costs against the quota (etcd `backendQuota.Cost`): the request's size plus
 * a per-key overhead for puts.
 */
const QUOTA_KV_OVERHEAD = 16 + 8 + 8 + 8 + 8 + 8 + 1 + 17;
const EMPTY = Buffer.alloc(0);
/** Quota cost of a LeaseGrant (etcd `leaseOverhead`). */
const QUOTA_LEASE_OVERHEAD = 64;

/** etcd's log line for a failed log append (`log`) or LMDB commit (`backend`): fatal, as in etcd. */
function logBackendFatal(log: Logger, err: Error, source: 'log' | 'backend'): void {
  const error = goPathError(err);
  if (source === 'log') log.fatal({ error, ...plog('etcdserver', 'C', `raft save state and entries error: ${error}`) }, 'failed to save Raft hard state and entries');
  else log.fatal({ error, ...plog('mvcc/backend', 'C', `cannot commit tx (${error})`) }, 'failed to commit tx');
}

/**
 * Opens the data dir's backend (`Backend.open`) and logs, with etcd's words, what its opening
 * found: orphaned defragmentation files it deleted and log records a crash tore. A failed
 * write is logged with etcd's fatal line (the server adds its own `onFatal`).
 */
function openBackend(config: ServerConfig, log: Logger): Backend {
  const backend = Backend.open(config.dataDir, {
    walDir: config.walDir || undefined,
    batchIntervalMs: config.backendBatchIntervalMs || undefined,
    batchLimit: config.backendBatchLimit || undefined,
    unsafeNoFsync: config.unsafeNoFsync,
  });
  backend.onFatal = (err, source) => logBackendFatal(log, err, source);
  for (const name of backend.orphanedDefrag) {
    log.info({ path: name, ...plog('snap', 'I', `found orphaned defragmentation file; deleting: ${name}`) }, 'found orphaned defragmentation file; deleting');
  }
  // etcd's words when it drops a record torn by a crash (wal.Repair).
  for (const torn of backend.repairedLog) {
    log.info({ path: torn.file, offset: torn.offset, ...plog('wal', 'N', `repairing ${torn.file}`) }, 'repairing');
    log.info({ error: 'unexpected EOF', ...plog('etcdserver', 'I', 'repaired WAL error (unexpected EOF)') }, 'repaired WAL');
  }
  return backend;
}

/** An etcd data dir's log and the last index its bbolt file holds, until `replayEtcdLog` applies the rest. */
interface ImportedEtcdLog {
  wal: EtcdWal;
  applied: bigint;
}

/**
 * On an etcd data dir (or one `etcdctl snapshot restore` made) not imported yet (no
 * `consistent_index`): imports its bbolt file (`importEtcdSnapshot`, committed as it goes) and
 * reads etcd's log, whose entries beyond the file `replayEtcdLog` applies, as etcd does when it
 * restarts. What an import a crash cut short committed is cleared first (`clearImport`): the
 * store's `consistent_index`, written with the import's last entries, says it finished.
 * Resolves to the log, or undefined when there is nothing to import. Rejects when the bbolt
 * file is not one or etcd's log is damaged.
 */
async function importEtcdDataDir(backend: Backend, config: ServerConfig, log: Logger): Promise<ImportedEtcdLog | undefined> {
  const etcdDb = path.join(config.dataDir, 'member', 'snap', 'db');
  if (backend.getMeta('consistent_index') !== undefined || !fs.existsSync(etcdDb)) return undefined;
  await clearImport(backend);
  const applied = await importEtcdSnapshot(backend, etcdDb);
  const wal = readEtcdWal(walDirOf(config), applied);
  if (wal.hardState) backend.putMeta('term', wal.hardState.term.toString());
  // The member the log was written by (or `snapshot restore` made) is this member.
  if (wal.metadata && wal.metadata.NodeID !== 0n) {
    backend.putMeta('memberID', wal.metadata.NodeID.toString());
    backend.putMeta('clusterID', wal.metadata.ClusterID.toString());
    const urls = peerUrlsAdded(wal, wal.metadata.NodeID);
    if (urls) backend.putMeta('peerURLs', JSON.stringify(urls));
  }
  log.info({ path: etcdDb, ...plog('etcdserver', 'I', `imported etcd's database ${etcdDb} (bbolt) into a new etcd-ts store`) }, "imported etcd's database (bbolt) into a new etcd-ts store");
  return { wal, applied };
}

export class EtcdServer {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly backend: Backend;
  readonly store: KVStore;
  /** The store's watchers (etcd `watchableStore`); fed by `store.onPublish`, used by the Watch service. */
  readonly watchableStore: WatchableStore;
  /** The leases (etcd `lessor`); the store's lease hooks. Expired leases are revoked through `leaseRevoke`. */
  readonly lessor: Lessor;
  /** Users, roles and tokens (etcd `authStore`); requests from clients are checked against it. */
  readonly auth: AuthStore;
  /** This member's ID (stable: derived from the peer URLs and cluster token, persisted). */
  readonly memberId: bigint;
  /** The cluster's ID. */
  readonly clusterId: bigint;
  /** The members: this one and the learners added since (etcd `RaftCluster`). */
  readonly membership: Membership;
  /** Bytes of etcd's raft request IDs for this member (see `raftRequestSize`). */
  private readonly requestIdBytes: number;
  /** The raft term: persisted, and one more at each start, as a new leader term would be. */
  readonly raftTerm: bigint;
  /** Whether the data dir held this member before this start (etcd's `haveWAL`): a restart, not a new member. */
  readonly memberInitialized: boolean;
  /** The raft index the member had applied when it last stopped (0 for a new member): etcd's "commit index" of a restart. */
  readonly commitIndexAtStart: bigint;
  /** Applied "raft index": one per write request and per start; persisted with each batch. */
  private raftIndexValue: bigint;
  /** Active alarms by member and type (etcd `alarm.AlarmStore`), persisted in the `alarm` bucket. */
  private readonly alarms = new Map<string, AlarmMember>();
  /**
   * What etcd's applier refuses since the last alarm change (etcd swaps `s.applyV3`): `capped`
   * (NOSPACE: puts, txns with puts, lease grants), `corrupt` (CORRUPT: every write, compaction
   * and lease change), or nothing.
   */
  private alarmApplier: 'capped' | 'corrupt' | undefined;
  /** Backend bytes above which writes raise NOSPACE; Infinity = no quota. */
  private readonly quotaBytes: number;
  /** An etcd data dir's log and the last index its bbolt file holds, until `open` replays it (then undefined). */
  private etcdLog: ImportedEtcdLog | undefined;
  private readonly lock: DataDirLock;
  private closed = false;
  /** Settles when the running defragmentation ends; writes wait for it (set only by `defragment`). */
  private defragging: Promise<void> | undefined;
  /** Applies and reads slower than --experimental-warning-apply-duration (etcd `slowApplies`); written by `timed`. */
  slowApplies = 0;
  /**
   * Called once a write to the disk failed (the log's append or an LMDB commit: the disk full,
   * an I/O error), after etcd's fatal line is logged and before any request waiting for it is
   * answered. Nothing more is acknowledged: writes fail with the error from then on. The
   * command exits (1) here, as etcd does, so its clients see the connection close.
   */
  onFatal: ((err: Error) => void) | undefined;

  private constructor(config: ServerConfig, log: Logger, lock: DataDirLock, initialized: boolean, backend: Backend, etcdLog: ImportedEtcdLog | undefined) {
    this.memberInitialized = initialized;
    this.config = config;
    this.log = log;
    this.lock = lock;
    this.backend = backend;
    this.backend.onFatal = (err, source) => {
      logBackendFatal(log, err, source);
      this.onFatal?.(err);
    };
    this.etcdLog = etcdLog;
    this.store = new KVStore(this.backend);
    this.store.onCompactionDone = (rev, ms) => {
      const took = formatGoDuration(ms);
      log.info({ 'compact-revision': rev, took, ...plog('mvcc', 'I', `finished scheduled compaction at ${rev} (took ${took})`) }, 'finished scheduled compaction');
    };
    const resumed = this.store.resumedCompaction;
    if (resumed !== undefined) {
      const fields = { 'meta-bucket-name': 'meta', 'meta-bucket-name-key': 'scheduledCompactRev', 'scheduled-compact-revision': resumed };
      log.info({ ...fields, ...plog('mvcc', 'I', `resume scheduled compaction at ${resumed}`) }, 'resume scheduled compaction');
      this.logIndexCompaction(resumed);
    }
    this.watchableStore = new WatchableStore(this.store);
    this.auth = new AuthStore(this.backend, { bcryptCost: config.bcryptCost, tokenTtlSec: config.authTokenTtlSec, tokens: config.authToken });
    const storedId = this.backend.getMeta('memberID');
    this.memberId = storedId ? BigInt(storedId) : computeMemberId(config.initialAdvertisePeerUrls, config.initialClusterToken);
    this.clusterId = BigInt(this.backend.getMeta('clusterID') ?? computeClusterId([this.memberId]));
    this.requestIdBytes = requestIdBytes(this.memberId);
    this.membership = new Membership(this.backend, this.memberId, config.initialAdvertisePeerUrls);
    // etcd: the minimum TTL is ⌊1.5 × election ticks⌋ heartbeats, rounded up to seconds; leases
    // get the election timeout on top when they start counting (`Promote`, see `open`).
    const tick = config.heartbeatIntervalMs;
    const ticks = Math.floor(config.electionTimeoutMs / tick);
    this.lessor = new Lessor(this.store, {
      memberId: this.memberId,
      minTtlSec: Math.ceil((Math.floor((3 * ticks) / 2) * tick) / 1000),
      promoteExtendMs: ticks * tick,
      persistCheckpoints: config.leaseCheckpointPersist,
    });
    this.lessor.revokeExpired = (id) => this.leaseRevoke({ ID: id });
    if (config.leaseCheckpoint) this.lessor.checkpointer = (cps) => this.leaseCheckpoint(cps);
    // A single etcd member campaigns at term 1 and leads from term 2; each restart is a new term.
    this.raftTerm = BigInt(this.backend.getMeta('term') ?? '1') + 1n;
    // A fresh etcd has applied 4 entries when it is ready (the initial member, its own
    // configuration change, the leader's empty entry and the published member attributes);
    // a restart adds the new leader's empty entry and the attributes again.
    const storedIndex = this.backend.getMeta('consistent_index');
    this.commitIndexAtStart = BigInt(storedIndex ?? 0);
    this.raftIndexValue = storedIndex === undefined ? 4n : BigInt(storedIndex) + 2n;
    this.backend.putMeta('memberID', this.memberId.toString());
    this.backend.putMeta('clusterID', this.clusterId.toString());
    this.backend.putMeta('term', this.raftTerm.toString());
    this.backend.putMeta('consistent_index', this.raftIndexValue.toString());
    for (const { key, value } of this.backend.range('alarm')) {
      const a = JSON.parse(value.toString()) as { memberID: string; alarm: AlarmType };
      const m: AlarmMember = { memberID: BigInt(a.memberID), alarm: a.alarm };
      this.alarms.set(alarmId(m), m);
      // Before 2026-12 the bucket was keyed by the alarm type alone.
      const [stored] = alarmEntry(m);
      if (!key.equals(stored)) {
        this.backend.remove('alarm', key);
        this.backend.put('alarm', ...alarmEntry(m));
      }
    }
    // etcd `restoreAlarms`: CORRUPT wins over NOSPACE.
    if (this.listAlarms(AlarmType.NOSPACE).length > 0) this.alarmApplier = 'capped';
    if (this.listAlarms(AlarmType.CORRUPT).length > 0) this.alarmApplier = 'corrupt';
    this.quotaBytes = config.quotaBackendBytes < 0 ? Infinity : config.quotaBackendBytes === 0 ? DEFAULT_QUOTA_BYTES : config.quotaBackendBytes;
    // etcd `NewBackendQuota`'s warnings.
    const quota = { 'quota-name': 'v3-applier', 'quota-size-bytes': config.quotaBackendBytes };
    if (config.quotaBackendBytes < 0) log.info({ ...quota, ...plog('etcdserver', 'W', 'disabling backend quota') }, 'disabled backend quota');
    else if (config.quotaBackendBytes > MAX_QUOTA_BYTES) {
      const text = `backend quota ${config.quotaBackendBytes} exceeds maximum recommended quota ${MAX_QUOTA_BYTES}`;
      log.warn({ ...quota, 'quota-maximum-size-bytes': MAX_QUOTA_BYTES, ...plog('etcdserver', 'W', text) }, 'quota exceeds the maximum value');
    }
  }

  /**
   * Opens the data directory and recovers the store; on an etcd data dir, imports it (see the
   * constructor and `replayEtcdLog`). Throws DataDirLockedError when another etcd-ts, or an
   * etcd still running on it, holds the data directory; throws when the backend cannot be
   * opened or etcd's log is damaged (`wal: crc mismatch`).
   */
  static async open(config: ServerConfig, log: Logger): Promise<EtcdServer> {
    checkDataDirMode(config.dataDir, log);
    // A new member's cluster flags are checked as etcd checks them; an existing one has its own.
    const initialized = fs.existsSync(path.join(config.dataDir, 'member', 'db', 'data.mdb')) || etcdWalFiles(walDirOf(config)).length > 0;
    if (!initialized) verifyBootstrap(config);
    touchDataDir(config.dataDir);
    // An etcd still running on the data dir (etcd waits forever for its database's lock).
    const held = lockedFile([path.join(config.dataDir, 'member', 'snap', 'db'), ...etcdWalFiles(walDirOf(config))]);
    if (held) throw new DataDirLockedError(`data dir ${config.dataDir} is in use by etcd (it holds a lock on ${held}); stop it first`);
    const lock = DataDirLock.acquire(path.join(config.dataDir, 'member'));
    try {
      const backend = openBackend(config, log);
      const etcdLog = await importEtcdDataDir(backend, config, log);
      const server = new EtcdServer(config, log, lock, initialized, backend, etcdLog);
      // In the same tick as the constructor's `consistent_index`, so that both are one record
      // of our log with the import's last entries: a crash leaves all of it or none, and a
      // restart imports again (see `importEtcdDataDir`).
      await server.replayEtcdLog();
      await server.backend.durable();
      // Leases count from here, as etcd's from when it leads, just before it serves.
      server.lessor.start();
      return server;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  /**
   * Applies the entries of etcd's log (`etcdLog`, when the constructor imported an etcd data
   * dir) after index `applied` (the last its bbolt file holds), in order, through the same
   * requests as clients' (etcd `applyEntryNormal` at a restart): writes,
   * compactions, leases, alarms and auth changes, each checked against the user and auth
   * revision its header names. Entries that change nothing etcd-ts keeps are skipped: raft's
   * empty and membership entries, the v2 store's requests (member attributes, cluster version)
   * and reads; an Authenticate entry gives its simple token again, as etcd's replay does. A request
   * refused (as etcd refused it) changes nothing, as in etcd. The raft index then goes on from
   * etcd's: its last entry, plus what etcd's restart adds (a new leader's empty entry and the
   * member's attributes, and the cluster version on a data dir that holds only its members).
   */
  private replayEtcdLog(): Promise<unknown> {
    if (!this.etcdLog) return Promise.resolve();
    const { wal, applied } = this.etcdLog;
    this.etcdLog = undefined; // its entries are not kept for the server's lifetime
    const requests: { index: bigint; r: InternalRaftRequest }[] = [];
    for (const e of wal.entries) {
      if (e.Index <= applied || e.Type !== 0 || e.Data.length === 0) continue;
      let r: InternalRaftRequest;
      try {
        r = InternalRaftRequest.decode(e.Data);
      } catch {
        continue; // a v2 store request
      }
      if (r.header) requests.push({ index: e.Index, r });
    }
    // Each request applies synchronously as it is called, so the calls keep the log's order.
    const changes = authChanges(this.auth);
    const results = requests.map(({ index, r }) => {
      this.raftIndexValue = index - 1n;
      return this.applyEtcdRequest(r, changes);
    });
    const last = wal.lastIndex;
    this.raftIndexValue = (last > applied ? last : applied) + (wal.normalEntries ? 2n : 3n);
    this.backend.putMeta('consistent_index', this.raftIndexValue.toString());
    const line = plog('etcdserver', 'I', `applied ${requests.length} entries of etcd's log beyond its database (raft index ${this.raftIndexValue})`);
    this.log.info({ entries: requests.length, raftIndex: this.raftIndexValue.toString(), ...line }, "applied etcd's log beyond its database");
    return Promise.allSettled(results);
  }

  /** One request of etcd's log (see `replayEtcdLog`); undefined for one that changes nothing here. */
  private applyEtcdRequest(r: InternalRaftRequest, c: ReturnType<typeof authChanges>): Promise<unknown> | undefined {
    const ai: AuthInfo = { username: r.header!.username, revision: Number(r.header!.authRevision) };
    if (r.put) return this.put(r.put, ai);
    if (r.deleteRange) return this.deleteRange(r.deleteRange, ai);
    if (r.txn) return this.txn(r.txn, ai);
    if (r.compaction) return this.compact(r.compaction);
    if (r.leaseGrant) return this.leaseGrant(r.leaseGrant);
    if (r.leaseRevoke) return this.leaseRevoke(r.leaseRevoke, ai);
    if (r.alarm) return this.alarm(r.alarm.action, r.alarm.memberID, r.alarm.alarm);
    const change = (apply: () => void) =>
      this.authRequest(ai, true, () => {
        apply();
        return {};
      });
    // A simple token given before the crash works again, as after etcd's restart: the same
    // letters (the entry holds them) and the entry's index.
    if (r.authenticate) {
      const { name, simpleToken } = r.authenticate;
      return this.authRequest(ai, false, () => ({ token: this.auth.authenticate(name, this.raftIndexValue, simpleToken) }));
    }
    if (r.authEnable) return change(c.enable);
    if (r.authDisable) return change(c.disable);
    // etcd 3.4 logs the password and hashes it when applying, as this does (before serving).
    const hashed = (password: string) => this.auth.hashPasswordSync(password);
    if (r.authUserAdd) return change(() => c.userAdd(r.authUserAdd!, r.authUserAdd!.options?.noPassword ? Buffer.alloc(0) : hashed(r.authUserAdd!.password)));
    if (r.authUserDelete) return change(() => c.userDelete(r.authUserDelete!));
    if (r.authUserChangePassword) return change(() => c.userChangePassword(r.authUserChangePassword!, hashed(r.authUserChangePassword!.password)));
    if (r.authUserGrantRole) return change(() => c.userGrantRole(r.authUserGrantRole!));
    if (r.authUserRevokeRole) return change(() => c.userRevokeRole(r.authUserRevokeRole!));
    if (r.authRoleAdd) return change(() => c.roleAdd(r.authRoleAdd!));
    if (r.authRoleDelete) return change(() => c.roleDelete(r.authRoleDelete!));
    if (r.authRoleGrantPermission) return change(() => c.roleGrantPermission(r.authRoleGrantPermission!));
    if (r.authRoleRevokePermission) return change(() => c.roleRevokePermission(r.authRoleRevokePermission!));
    return undefined;
  }

  /** The raft index as Status reports it. */
  get raftIndex(): bigint {
    return this.raftIndexValue;
  }

  /**
   * A membership change (etcd `configure`): one raft entry, in which `apply` runs as etcd's
   * applier validates and applies the change. Resolves with what `apply` returns, or throws
   * what it threw, once the entry is durable (a refused change still spends its entry).
   */
  async confChange<T>(apply: () => T): Promise<T> {
    this.checkStopped();
    this.bumpRaftIndex();
    try {
      return apply();
    } finally {
      await this.store.sync();
    }
  }

  /** True while `defragment` runs (etcd `etcd_disk_defrag_inflight`). */
  get defragInProgress(): boolean {
    return this.defragging !== undefined;
  }

  /** Completes a header as etcd's `header.fill` does. */
  fillHeader(h: ResponseHeader | undefined): ResponseHeader {
    const header = h ?? revHeader(0);
    header.clusterId = this.clusterId;
    header.memberId = this.memberId;
    header.raftTerm = this.raftTerm;
    if (header.revision === 0n) header.revision = BigInt(this.store.publishedRev);
    return header;
  }

  /**
   * The header of a request applied now, as etcd's `newHeader` at apply: the revision of every
   * write applied before it, durable or not. Send it only once the request is durable (every
   * revision it names is readable by then).
   */
  private appliedHeader(): ResponseHeader {
    return this.fillHeader(revHeader(this.store.headRev));
  }

  /**
   * The empty v2 QGET etcd's HTTP /health proposes to prove a quorum (etcd `checkHealth`): a
   * single member has nothing to prove, but the entry counts in the raft index as etcd's does.
   */
  quorumGet(): void {
    this.bumpRaftIndex();
  }

  /** Counts one applied write request (a raft entry) and queues it with the current batch. */
  private bumpRaftIndex(): void {
    this.raftIndexValue++;
    this.backend.putMeta('consistent_index', this.raftIndexValue.toString());
  }

  private checkStopped(): void {
    if (this.closed) throw Errors.stopped();
  }

  /**
   * etcd's quota check before anything else of a Put, a Txn or a LeaseGrant
   * (`quotaAlarmer.check`): when a request that costs space (a txn without puts does not) would
   * take the backend to the quota, it raises NOSPACE for this member (a raft entry of its own)
   * and refuses.
   */
  private checkQuota(cost: number): void {
    if (cost === 0 || this.backend.size() + cost < this.quotaBytes) return;
    this.bumpRaftIndex();
    this.activateAlarm(this.memberId, AlarmType.NOSPACE);
    throw Errors.noSpace();
  }

  /**
   * What etcd's applier refuses under a raised alarm (`applierV3Capped`, `applierV3Corrupt`),
   * checked as the request is applied (its raft entry counts): NOSPACE a request whose quota
   * `cost` is not 0, CORRUPT any.
   */
  private checkAlarms(cost: number): void {
    if (this.alarmApplier === 'corrupt') throw Errors.corrupt();
    if (this.alarmApplier === 'capped' && cost > 0) throw Errors.noSpace();
  }

  /**
   * Resolves who sends a request where etcd does, after the request was validated: the
   * client's auth token (`AuthInfoFromCtx`), then, for a KV `write`, the size of the raft
   * request that would carry it against --max-request-bytes (`processInternalRaftRequestOnce`).
   * `who` given as an InProcessCall is its user, its size checked as a client's; as an AuthInfo
   * (the server's own requests, etcd's replayed log) it is taken as is; undefined checks
   * nothing. Throws "invalid auth token", "request is too large".
   */
  private admit(who: Who, write = false): AuthInfo | undefined {
    if (who === undefined) return undefined;
    if (!('wireBytes' in who)) return who;
    const ai = 'md' in who ? this.auth.authInfo(who.md) : who.ai;
    // Put, DeleteRange and Txn are fields 4 to 6 of InternalRaftRequest.
    if (write) this.checkRequestSize(ai ?? NO_USER, who.wireBytes, 4);
    return ai;
  }

  /**
   * etcd's size check of every request it proposes (`processInternalRaftRequestOnce`): throws
   * "request is too large" when the InternalRaftRequest carrying a request of `bytes` (as field
   * `field`, with `ai`'s user and auth revision in its header) is longer than
   * `--max-request-bytes`.
   */
  checkRequestSize(ai: AuthInfo, bytes: number, field: number): void {
    if (raftRequestSize(bytes, field, ai, this.requestIdBytes) > this.config.maxRequestBytes) throw Errors.requestTooLarge();
  }

  /**
   * KV.Range: reads at the newest durable revision. `who` sends it (see `Who`); without it (the
   * server's own calls) no permission is checked.
   */
  range(r: RangeRequest, who?: Who): RangeResponse {
    return this.read(r, who, applyRange);
  }

  /**
   * KV.Range for an encoder that sends KeyValues as stored (see `applyRangeEncoded`): a large
   * answer is read in slices, and is then a promise, so that other requests are served meanwhile;
   * `cancelled` (the call's) stops the reading.
   */
  rangeEncoded(r: RangeRequest, who?: Who, cancelled?: () => boolean): EncodedRangeResponse | Promise<EncodedRangeResponse> {
    // A defragmentation swapping the database file: reads resume once it is open again.
    const reopening = this.store.backend.reopening;
    if (reopening) return reopening.then(() => this.rangeEncoded(r, who, cancelled));
    return this.read(r, who, (view, req) => applyRangeEncoded(view, req, cancelled));
  }

  /** Checks and reads `r` with `apply` in a read transaction, then fills the answer's header (see `range`). */
  private read<R extends RangeResponse>(r: RangeRequest, who: Who | undefined, apply: (view: ReadView, r: RangeRequest) => R): R;
  private read<R extends RangeResponse>(r: RangeRequest, who: Who | undefined, apply: (view: ReadView, r: RangeRequest) => R | Promise<R>): R | Promise<R>;
  private read<R extends RangeResponse>(r: RangeRequest, who: Who | undefined, apply: (view: ReadView, r: RangeRequest) => R | Promise<R>): R | Promise<R> {
    this.checkStopped();
    checkRange(r);
    const ai = this.admit(who);
    if (ai) this.auth.checkRange(ai, r.key, r.rangeEnd);
    const resp = this.inReadView((view) => apply(view, r));
    const finish = (answer: R): R => {
      this.checkReadRevision(ai);
      this.fillHeader(answer.header);
      return answer;
    };
    return resp instanceof Promise ? resp.then(finish) : finish(resp);
  }

  /**
   * Runs `apply` in a read transaction at the newest durable revision, timed as a read-only
   * request. The transaction ends once the answer is read: when `apply`'s promise settles, for
   * an answer read in slices, whose records no compaction deletes until then.
   */
  private inReadView<T>(apply: (view: ReadView) => T | Promise<T>): T | Promise<T> {
    const view = this.store.read();
    let resp: T | Promise<T>;
    try {
      resp = this.timed('read-only range ', () => apply(view));
    } catch (err) {
      view.end();
      throw err;
    }
    if (resp instanceof Promise) return resp.finally(() => view.end());
    view.end();
    return resp;
  }

  /**
   * etcd `doSerialize`, after a read: a token made at another auth revision than the store's
   * is refused with "revision of auth store is old", also while auth is off (a JWT still
   * parses then, and disabling auth moved the revision).
   */
  private checkReadRevision(ai: AuthInfo | undefined): void {
    if (ai && ai.revision !== 0 && ai.revision !== this.auth.revision) throw Errors.authOldRevision();
  }

  /**
   * Runs `fn`; when it took longer than --experimental-warning-apply-duration, logs etcd's
   * warning and counts a slow apply (etcd `warnOfExpensiveGenericRequest`; `prefix` is etcd's:
   * '' for applied writes, 'read-only range ' for reads).
   */
  private timed<R>(prefix: string, fn: () => R): R {
    const start = performance.now();
    let result: R;
    try {
      result = fn();
    } catch (err) {
      this.warnIfSlow(prefix, start);
      throw err;
    }
    // An answer read in slices took as long as its last slice.
    if (result instanceof Promise) return result.finally(() => this.warnIfSlow(prefix, start)) as R;
    this.warnIfSlow(prefix, start);
    return result;
  }

  /** `timed`'s warning for a request that began at `start`. */
  private warnIfSlow(prefix: string, start: number): void {
    const took = performance.now() - start;
    if (took > this.config.warningApplyDurationMs) {
      this.slowApplies++;
      // etcd's capnslog line also quotes the request and its result, which are not kept here.
      const line = plog('etcdserver', 'W', `${prefix}request took too long (${formatGoDuration(took)}) to execute`);
      this.log.warn({ took_ms: took, expected_duration_ms: this.config.warningApplyDurationMs, prefix, ...line }, 'apply request took too long');
    }
  }

  /**
   * Runs `apply` in one write transaction, as one raft entry, and resolves when its effects
   * (or, if it changed nothing, the writes it may have read) are durable. When `apply` throws,
   * the entry still counts, as a request refused at apply time does in etcd.
   */
  private async write<R>(apply: (txn: TxnWrite) => R): Promise<R> {
    const txn = this.store.beginWrite();
    let resp: R;
    try {
      resp = this.timed('', () => apply(txn));
    } finally {
      this.bumpRaftIndex();
      await txn.end();
    }
    if (txn.changes.length === 0) await this.store.sync();
    return resp;
  }

  /** KV.Put: resolves once the write is durable. `who` as for `range`. */
  async put(r: PutRequest, who?: Who): Promise<PutResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    const cost = r.key.length + r.value.length + QUOTA_KV_OVERHEAD;
    this.checkQuota(cost);
    checkPut(r);
    const ai = this.admit(who, true);
    const resp = await this.write((txn) => {
      this.checkAlarms(cost);
      if (ai) {
        // etcd `authApplierV3.Put`: write on the key, on every key of the lease, read for prev_kv.
        this.auth.checkPut(ai, r.key);
        this.checkLeaseKeys(ai, r.lease);
        if (r.prevKv) this.auth.checkRange(ai, r.key, EMPTY);
      }
      // etcd looks the lease up before it reads the previous value (and so before ignore_value
      // finds no key).
      if (r.lease !== 0n && !this.store.leases.exists(r.lease)) throw Errors.leaseNotFound();
      return applyPut(txn, r);
    });
    this.fillHeader(resp.header);
    return resp;
  }

  /**
   * KV.DeleteRange: resolves once the deletion is durable. `who` as for `range`; with `records`,
   * the prev_kvs may be given as stored (see `applyDeleteRange`).
   */
  async deleteRange(r: DeleteRangeRequest, who?: Who, records = false): Promise<EncodedDeleteRangeResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    checkDelete(r);
    const ai = this.admit(who, true);
    const resp = await this.write((txn) => {
      this.checkAlarms(0);
      if (ai) {
        this.auth.checkDeleteRange(ai, r.key, r.rangeEnd);
        if (r.prevKv) this.auth.checkRange(ai, r.key, r.rangeEnd);
      }
      return applyDeleteRange(txn, r, records);
    });
    this.fillHeader(resp.header);
    return resp;
  }

  /**
   * KV.Txn: a txn with writes runs at the head and resolves when durable; a read-only one reads
   * the durable view. `who` as for `range`.
   */
  txn(r: TxnRequest, who?: Who): Promise<TxnResponse> {
    return this.txnWith(r, who, applyTxn);
  }

  /**
   * KV.Txn for an encoder that sends KeyValues as stored (see `applyTxnEncoded`): the range ops
   * of a read-only txn are read in slices, so that a large answer does not hold the thread;
   * `cancelled` (the call's) stops the reading.
   */
  txnEncoded(r: TxnRequest, who?: Who, cancelled?: () => boolean): Promise<EncodedTxnResponse> {
    return this.txnWith(r, who, (view, _write, req, leaseExists) => applyTxnEncoded(view, req, leaseExists, cancelled));
  }

  /** `txn`, with `readOnly` applying a read-only txn. */
  private async txnWith(
    r: TxnRequest,
    who: Who | undefined,
    readOnly: (view: ReadView, write: undefined, r: TxnRequest, leaseExists: (id: bigint) => boolean) => EncodedTxnResponse | Promise<EncodedTxnResponse>,
  ): Promise<EncodedTxnResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    const cost = txnCost(r);
    this.checkQuota(cost);
    checkTxn(r, this.config.maxTxnOps);
    const leaseExists = (id: bigint) => this.store.leases.exists(id);
    let resp: EncodedTxnResponse;
    if (isTxnReadonly(r)) {
      const ai = this.admit(who);
      if (ai) this.auth.checkTxn(ai, r);
      resp = await this.inReadView((view) => readOnly(view, undefined, r, leaseExists));
      this.checkReadRevision(ai);
    } else {
      const ai = this.admit(who, true);
      resp = await this.write((txn) => {
        this.checkAlarms(cost);
        if (ai) this.auth.checkTxn(ai, r);
        const view = this.store.readWithin(txn);
        try {
          return applyTxn(view, txn, r, leaseExists);
        } finally {
          view.end();
        }
      });
    }
    this.fillHeader(resp.header);
    return resp;
  }

  /** KV.Compact: with `physical`, resolves only after the old records left the backend. */
  async compact(r: CompactionRequest): Promise<CompactionResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    // etcd proposes the compaction and finds a compacted or future revision only when applying
    // it, so a refused compaction is a raft entry too.
    this.bumpRaftIndex();
    let done: Promise<void>;
    let header: ResponseHeader;
    try {
      this.checkAlarms(0);
      ({ done } = this.store.compact(Number(r.revision)));
      header = this.appliedHeader();
      this.logIndexCompaction(Number(r.revision));
    } catch (err) {
      await this.store.sync();
      throw toEtcdError(err);
    }
    // etcd then reads the current revision with a range (counted in its range total).
    this.store.countTxn(1, 0, 0);
    await this.store.sync();
    if (r.physical) await done;
    return { header };
  }

  /** etcd's line as its index compaction begins (`treeIndex.Compact`). */
  private logIndexCompaction(rev: number): void {
    this.log.info({ revision: rev, ...plog('mvcc', 'I', `store.index: compact ${rev}`) }, 'compact tree index');
  }

  /** The active alarms of type `alarm`, every one for NONE (etcd `AlarmStore.Get`). */
  listAlarms(alarm = AlarmType.NONE): AlarmMember[] {
    const all = [...this.alarms.values()];
    return alarm === AlarmType.NONE ? all : all.filter((m) => m.alarm === alarm);
  }

  /**
   * Raises `alarm` for `memberID` and persists it (etcd `AlarmStore.Activate` and its applier
   * swap). Returns the alarm, the one already raised when it was.
   */
  private activateAlarm(memberID: bigint, alarm: AlarmType): AlarmMember {
    const m: AlarmMember = { memberID, alarm };
    const known = this.alarms.get(alarmId(m));
    if (known) return known;
    const before = this.listAlarms(alarm).length;
    this.alarms.set(alarmId(m), m);
    this.backend.put('alarm', ...alarmEntry(m));
    if (before > 0) return m;
    const from = memberID.toString(16);
    this.log.warn({ alarm: AlarmType[alarm], from, ...plog('etcdserver', 'W', `alarm ${AlarmType[alarm]} raised by peer ${from}`) }, 'alarm raised');
    if (alarm === AlarmType.CORRUPT) this.alarmApplier = 'corrupt';
    else if (alarm === AlarmType.NOSPACE) this.alarmApplier = 'capped';
    else this.log.warn({ alarm: alarmText(m), ...plog('etcdserver', 'E', `unimplemented alarm activation (${alarmText(m)})`) }, 'unimplemented alarm activation');
    return m;
  }

  /** Clears `alarm` of `memberID` (etcd `AlarmStore.Deactivate`); undefined when it was not raised. */
  private deactivateAlarm(memberID: bigint, alarm: AlarmType): AlarmMember | undefined {
    const m = this.alarms.get(alarmId({ memberID, alarm }));
    if (!m) return undefined;
    this.alarms.delete(alarmId(m));
    this.backend.remove('alarm', alarmEntry(m)[0]);
    if (this.listAlarms(alarm).length > 0) return m;
    if (alarm === AlarmType.NOSPACE || alarm === AlarmType.CORRUPT) {
      const from = memberID.toString(16);
      this.log.warn({ alarm: AlarmType[alarm], from, ...plog('etcdserver', 'I', `alarm disarmed action:DEACTIVATE ${alarmText(m)}`) }, 'alarm disarmed');
      // etcd puts back its whole applier, whatever other alarm is still raised.
      this.alarmApplier = undefined;
    } else {
      this.log.warn({ alarm: alarmText(m), ...plog('etcdserver', 'E', `unimplemented alarm deactivation (${alarmText(m)})`) }, 'unimplemented alarm deactivation');
    }
    return m;
  }

  /**
   * Maintenance.Alarm (etcd `applierV3backend.Alarm`): GET lists the alarms of a type (all for
   * NONE), ACTIVATE raises one for any member ID, DEACTIVATE clears one; returns the alarms the
   * action touched. An unknown action touches nothing.
   */
  async alarm(action: AlarmRequest_AlarmAction, memberId: bigint, alarm: AlarmType): Promise<AlarmMember[]> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    // etcd proposes every AlarmRequest, GET included: each one is a raft entry.
    this.bumpRaftIndex();
    let touched: AlarmMember[] = [];
    if (action === AlarmRequest_AlarmAction.GET) touched = this.listAlarms(alarm);
    else if (action === AlarmRequest_AlarmAction.ACTIVATE) touched = [this.activateAlarm(memberId, alarm)];
    else if (action === AlarmRequest_AlarmAction.DEACTIVATE) touched = [this.deactivateAlarm(memberId, alarm)].filter((m) => m !== undefined);
    await this.store.sync();
    return touched;
  }

  /**
   * Maintenance.Defragment (etcd `backend.Defrag`): rewrites the backend file without free
   * pages. Writes arriving meanwhile wait until it is done; reads are served throughout (see
   * `Backend.defragment`). A second call while one runs waits for it and returns. Throws when the
   * rewrite fails; the old file is then kept.
   */
  async defragment(): Promise<void> {
    this.checkStopped();
    if (this.defragging) return this.defragging;
    const run = this.backend.defragment();
    this.defragging = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      await run;
    } finally {
      this.defragging = undefined;
    }
  }

  /**
   * Lease.LeaseGrant (etcd `LeaseGrant` + `quotaLeaseServer`): ID 0 = server-chosen, TTL in
   * seconds raised to the minimum. One raft index entry. Throws etcd's NOSPACE, "lease already
   * exists", "too large lease TTL". Resolves once the lease is durable.
   */
  async leaseGrant(r: LeaseGrantRequest): Promise<LeaseGrantResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    this.checkQuota(QUOTA_LEASE_OVERHEAD);
    this.bumpRaftIndex();
    let granted;
    try {
      this.checkAlarms(QUOTA_LEASE_OVERHEAD);
      granted = this.lessor.grant(r.ID, Number(r.TTL));
    } catch (err) {
      await this.store.sync();
      throw leaseError(err);
    }
    const header = this.appliedHeader();
    await granted.durable;
    return { header, ID: granted.lease.id, TTL: BigInt(granted.lease.ttlSec), error: '' };
  }

  /**
   * etcd's LeaseCheckpoint raft request (`--experimental-enable-lease-checkpoint`): one raft
   * index entry, applied through `Lessor.checkpoint`; resolves when durable.
   */
  private async leaseCheckpoint(cps: readonly LeaseCheckpoint[]): Promise<void> {
    this.checkStopped();
    this.bumpRaftIndex();
    for (const cp of cps) this.lessor.checkpoint(cp);
    await this.store.sync();
  }

  /**
   * Lease.LeaseRevoke (etcd `LeaseRevoke`): deletes the lease's keys in one revision. One raft
   * index entry, also for an unknown lease, which throws "requested lease not found". With
   * `ai` (as for `range`), the client needs write permission on every key of the lease.
   */
  async leaseRevoke(r: LeaseRevokeRequest, ai?: AuthInfo): Promise<LeaseRevokeResponse> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    this.bumpRaftIndex();
    let revoked: Promise<void>;
    try {
      this.checkAlarms(0);
      if (ai) this.checkLeaseKeys(ai, r.ID);
      revoked = this.lessor.revoke(r.ID);
    } catch (err) {
      await this.store.sync();
      throw leaseError(err);
    }
    const header = this.appliedHeader();
    await revoked;
    return { header };
  }

  /** etcd `checkLeasePuts`: write permission on every key attached to lease `id` (none for an unknown lease). */
  private checkLeaseKeys(ai: AuthInfo, id: bigint): void {
    for (const key of this.lessor.lookup(id)?.keys ?? []) this.auth.checkPut(ai, keyToBytes(key));
  }

  /**
   * An Auth service request (etcd applies each as a raft entry): one raft index entry, root's
   * privileges when `admin`, then `apply`; resolves with apply's result and a header once its
   * changes are durable. Errors of the check or of `apply` are thrown after the entry counted.
   */
  async authRequest<R extends object>(ai: AuthInfo, admin: boolean, apply: () => R): Promise<R & { header: ResponseHeader }> {
    if (this.defragging) await this.defragging;
    this.checkStopped();
    this.bumpRaftIndex();
    try {
      if (admin) this.auth.checkAdmin(ai);
      return { ...apply(), header: this.appliedHeader() };
    } finally {
      await this.store.sync();
    }
  }

  /**
   * Auth.Authenticate (etcd `EtcdServer.Authenticate`): checks the password (no raft entry
   * when it is wrong), the token the request carries in `md`, if any, and the size of what is
   * proposed, then, as one raft entry, gives a simple token ending in that entry's index.
   * Throws as `AuthStore.checkPassword`, `AuthStore.authInfo` ("invalid auth token"),
   * `checkRequestSize` and `AuthStore.authenticate`, and throws what `contextEnded` returns when
   * the caller's context ended while the password was checked (nothing is proposed then, as
   * etcd's `raftRequestOnce` proposes nothing with an ended context).
   */
  async authenticate(name: string, password: string, md?: TokenMetadata, contextEnded?: () => Error | undefined): Promise<AuthenticateResponse> {
    this.checkStopped();
    await this.auth.checkPassword(name, password);
    const ended = contextEnded?.();
    if (ended) throw ended;
    // etcd reads the caller's token as it proposes any request: one it does not accept stops
    // this one too (a client re-authenticating with its expired token in the metadata). Then
    // the size of what it proposes: name, password and a simple token's 16 letters.
    const ai = this.auth.authInfo(md);
    const field = (bytes: number) => (bytes > 0 ? 1 + varintBytes(bytes) + bytes : 0);
    const simpleToken = this.config.authToken.type === 'simple' ? field(16) : 0;
    this.checkRequestSize(ai, field(Buffer.byteLength(name)) + field(Buffer.byteLength(password)) + simpleToken, RAFT_FIELD.authenticate);
    return this.authRequest({ username: '', revision: 0 }, false, () => ({ token: this.auth.authenticate(name, this.raftIndexValue) }));
  }

  /** Stops serving: waits for queued writes to be durable, closes the backend, frees the data dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.auth.close();
    this.lessor.stop();
    this.watchableStore.close();
    try {
      await this.store.close();
    } finally {
      this.lock.release();
    }
  }
}

/** The write-ahead log's directory: `--wal-dir`, else `<data-dir>/member/wal` (ours and etcd's alike). */
function walDirOf(config: ServerConfig): string {
  return config.walDir || path.join(config.dataDir, 'member', 'wal');
}

/** The lessor's errors as etcd's client errors; others pass through. */
export function leaseError(err: unknown): unknown {
  if (err instanceof LeaseExists) return Errors.leaseExist();
  if (err instanceof LeaseTTLTooLarge) return Errors.leaseTTLTooLarge();
  return toEtcdError(err);
}

/**
 * A client's request as etcd's gRPC layer hands it on: its metadata, whose auth token is read
 * only once the request was validated, and its size on the wire.
 */
export interface ClientCall {
  readonly md: TokenMetadata;
  readonly wireBytes: number;
}

/**
 * A request of the server's in-process client (etcd's `v3client`, which the Lock and Election
 * services use) for `ai`'s user (undefined with auth off), of `wireBytes` as encoded: etcd
 * proposes it as any client's, so its size is checked too.
 */
export interface InProcessCall {
  readonly ai: AuthInfo | undefined;
  readonly wireBytes: number;
}

/** Who sends a request: a client (`ClientCall`), the in-process client (`InProcessCall`), a known user (`AuthInfo`), or the server itself (undefined). */
export type Who = ClientCall | InProcessCall | AuthInfo | undefined;

/** The AuthInfo of a request with no user (auth off): etcd's raft request then has no user in its header. */
const NO_USER: AuthInfo = { username: '', revision: 0 };

/**
 * Field numbers of etcd's InternalRaftRequest (raft_internal.proto) for the requests whose size
 * `EtcdServer.checkRequestSize` checks outside the KV writes; `auth`: every auth request (1000
 * and on).
 */
export const RAFT_FIELD = { compaction: 7, leaseGrant: 8, leaseRevoke: 9, alarm: 10, auth: 1000, authenticate: 1012 } as const;

/** Bytes of a protobuf varint of a non-negative safe integer. */
function varintBytes(n: number): number {
  let bytes = 1;
  for (; n >= 0x80; n = Math.floor(n / 0x80)) bytes++;
  return bytes;
}

/**
 * Bytes of the varint of the IDs etcd's request ID generator gives from `memberId` (idutil: the
 * member ID's low 16 bits, then the time in ms at start, then a counter): the same for all of
 * a run's requests.
 */
function requestIdBytes(memberId: bigint): number {
  const id = ((memberId & 0xffffn) << 48n) | ((BigInt(Date.now()) & 0xff_ffff_ffffn) << 8n);
  return Math.max(1, Math.ceil(id.toString(2).length / 7));
}

/**
 * Bytes of etcd's marshalled InternalRaftRequest carrying a request of `bytes` as field
 * `field`: its header holds a request ID (`idBytes` long, see `requestIdBytes`) and, for a
 * request with a token, the user and auth revision.
 */
function raftRequestSize(bytes: number, field: number, ai: AuthInfo, idBytes: number): number {
  let header = 1 + idBytes;
  const user = Buffer.byteLength(ai.username);
  if (user > 0) header += 1 + varintBytes(user) + user;
  if (ai.revision > 0) header += 1 + varintBytes(ai.revision);
  // header: field 100 (a two-byte tag); the request: a one-byte tag below field 16.
  return 2 + varintBytes(header) + header + (field < 16 ? 1 : 2) + varintBytes(bytes) + bytes;
}

/** An alarm's identity in the alarm store: its member and type. */
function alarmId(m: AlarmMember): string {
  return `${m.memberID}/${m.alarm}`;
}

/**
 * etcd's AlarmMember as protobuf's compact text, as Go prints it (`%v`) in logs and Status
 * lists it in `errors`: `memberID:5 alarm:NOSPACE `, without the alarm for NONE.
 */
export function alarmText(m: AlarmMember): string {
  return `memberID:${m.memberID} ${m.alarm === AlarmType.NONE ? '' : `alarm:${AlarmType[m.alarm]} `}`;
}

/** Quota cost of a txn: the larger of its branches' puts (etcd `costTxn`; nested txns cost nothing). */
function txnCost(r: TxnRequest): number {
  const cost = (ops: RequestOp[]) => ops.reduce((sum, op) => sum + (op.requestPut ? op.requestPut.key.length + op.requestPut.value.length + QUOTA_KV_OVERHEAD : 0), 0);
  return Math.max(cost(r.success), cost(r.failure));
}

