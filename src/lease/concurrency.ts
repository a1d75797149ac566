/**
 * Locks and elections built from leases, txns and key events, run inside the server (etcd
 * `clientv3/concurrency` `Mutex` and `Election`, which etcd's v3lock and v3election services
 * drive through an in-process client). Every step is the same request etcd's client sends, made
 * through the EtcdServer, so revisions, raft index entries and headers move as with etcd. With
 * `ai` (the caller's, see `AuthStore.authInfo`) every read and write is checked against the
 * caller's permissions, as etcd's in-process client carries the caller's token.
 *
 * Waiting (etcd `waitDeletes` / `waitDelete`, which use the watch API) listens to the store's
 * published revisions instead (`KeyEvents`): a read at the published revision and the
 * subscription happen in the same turn of the event loop, so no change can fall between them.
 *
 * Keys: a contender's key is `<name>/<lease ID in lowercase hex>` (Go's `%x` of an int64).
 */
import type { KeyValue } from '../proto/gen/kv.gen.js';
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  TxnRequest,
  type DeleteRangeResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type TxnResponse,
} from '../proto/gen/rpc.gen.js';
import type { LeaderKey } from '../proto/gen/v3election.gen.js';
import type { AuthInfo } from '../auth/auth-store.js';
import { keyFromBytes, keyToBytes, prefixEnd } from '../mvcc/key.js';
import { revHeader } from '../server/apply.js';
import type { EtcdServer } from '../server/etcd-server.js';

/** TTL in seconds of the lease a session grants when the request names none (etcd `defaultSessionTTL`). */
export const DEFAULT_SESSION_TTL_SEC = 60;

/** etcd `concurrency.ErrElectionNotLeader`: proclaiming with a leader key that is not the current one. */
export class ElectionNotLeader extends Error {
  override name = 'ElectionNotLeader';
  constructor() {
    super('election: not leader');
  }
}

/** etcd `concurrency.ErrElectionNoLeader`: Leader on an election with no candidate. */
export class ElectionNoLeader extends Error {
  override name = 'ElectionNoLeader';
  constructor() {
    super('election: no leader');
  }
}

/** etcd `v3election.ErrMissingLeaderKey`: Proclaim or Resign without a leader key. */
export class MissingLeaderKey extends Error {
  override name = 'MissingLeaderKey';
  constructor() {
    super('"leader" field must be provided');
  }
}

/** Thrown into a waiter whose caller went away (etcd: the request context was canceled). */
export class Canceled extends Error {
  override name = 'Canceled';
  constructor() {
    super('context canceled');
  }
}

/** Called with every published revision and its changes (deletes have version 0). */
type ChangeListener = (rev: number, changes: readonly KeyValue[]) => void;

/**
 * Fan-out of the store's published revisions to the current waiters. One per server: the store
 * has no way to remove a publish listener, so this registers one and keeps its own set.
 */
class KeyEvents {
  /** Current subscribers; each removes itself when done. */
  private readonly listeners = new Set<ChangeListener>();

  constructor(etcd: EtcdServer) {
    etcd.store.onPublish((rev, changes) => {
      for (const l of [...this.listeners]) l(rev, changes);
    });
  }

  /** Subscribes `fn`; returns the unsubscribe function. */
  subscribe(fn: ChangeListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/** The KeyEvents of each server. */
const keyEventsOf = new WeakMap<EtcdServer, KeyEvents>();

function keyEvents(etcd: EtcdServer): KeyEvents {
  let ev = keyEventsOf.get(etcd);
  if (!ev) {
    ev = new KeyEvents(etcd);
    keyEventsOf.set(etcd, ev);
  }
  return ev;
}

/** Go's `%x` of an int64 lease ID. */
function leaseHex(id: bigint): string {
  return id < 0n ? `-${(-id).toString(16)}` : id.toString(16);
}

const EMPTY = Buffer.alloc(0);

function rangeReq(key: Buffer, rangeEnd: Buffer, extra: Partial<RangeRequest> = {}): RangeRequest {
  return {
    key, rangeEnd, limit: 0n, revision: 0n, sortOrder: RangeRequest_SortOrder.NONE, sortTarget: RangeRequest_SortTarget.KEY,
    serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n,
    minCreateRevision: 0n, maxCreateRevision: 0n, ...extra,
  };
}

/** The oldest (`ASCEND`) or newest (`DESCEND`) created key under `prefix` (etcd `WithFirstCreate` / `WithLastCreate`). */
function topByCreate(prefix: Buffer, order: RangeRequest_SortOrder, maxCreateRevision = 0n): RangeRequest {
  return rangeReq(prefix, keyToBytes(prefixEnd(keyFromBytes(prefix))), {
    limit: 1n, sortOrder: order, sortTarget: RangeRequest_SortTarget.CREATE, maxCreateRevision,
  });
}

const createRevIs = (key: Buffer, rev: bigint) => ({
  result: Compare_CompareResult.EQUAL, target: Compare_CompareTarget.CREATE, key, createRevision: rev, rangeEnd: EMPTY,
});
const putOp = (key: Buffer, value: Buffer, lease: bigint): RequestOp =>
  ({ requestPut: { key, value, lease, prevKv: false, ignoreValue: false, ignoreLease: false } });
const getOp = (r: RangeRequest): RequestOp => ({ requestRange: r });
const delOp = (key: Buffer): RequestOp => ({ requestDeleteRange: { key, rangeEnd: EMPTY, prevKv: false } });

/**
 * etcd `concurrency.NewSession(WithLease(lease))` as the lock and election servers use it:
 * lease 0 grants a fresh 60 s lease (which nobody keeps alive afterwards, as the servers orphan
 * the session); any other ID is used as given.
 */
async function sessionLease(etcd: EtcdServer, lease: bigint): Promise<bigint> {
  if (lease !== 0n) return lease;
  const resp = await etcd.leaseGrant({ ID: 0n, TTL: BigInt(DEFAULT_SESSION_TTL_SEC) });
  return resp.ID;
}

/** Resolves when `key` is deleted after the current published revision; rejects with Canceled on abort. */
function waitDelete(etcd: EtcdServer, key: Buffer, signal: AbortSignal): Promise<void> {
  const k = keyFromBytes(key);
  return new Promise<void>((resolve, reject) => {
    const stop = (): void => {
      unsubscribe();
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      stop();
      reject(new Canceled());
    };
    const unsubscribe = keyEvents(etcd).subscribe((_rev, changes) => {
      if (changes.some((kv) => kv.version === 0n && keyFromBytes(kv.key) === k)) {
        stop();
        resolve();
      }
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort);
  });
}

/**
 * etcd `waitDeletes`: waits until no key under `prefix` created at or before `maxCreateRev`
 * remains, newest first. Returns the header of the last (empty) read.
 */
async function waitDeletes(etcd: EtcdServer, prefix: Buffer, maxCreateRev: bigint, signal: AbortSignal, ai: AuthInfo | undefined): Promise<ResponseHeader> {
  for (;;) {
    const resp = etcd.range(topByCreate(prefix, RangeRequest_SortOrder.DESCEND, maxCreateRev), ai);
    const last = resp.kvs[0];
    if (!last) return resp.header!;
    await waitDelete(etcd, last.key, signal);
  }
}

/**
 * The recipes' writes go through etcd's in-process client (`v3client`), which proposes them as
 * any client's requests: their size is checked against --max-request-bytes too.
 */
function txn(etcd: EtcdServer, r: TxnRequest, ai: AuthInfo | undefined): Promise<TxnResponse> {
  return etcd.txn(r, { ai, wireBytes: TxnRequest.encode(r).finish().length });
}

/** A delete of the in-process client (see `txn`). */
function deleteRange(etcd: EtcdServer, r: DeleteRangeRequest, ai: AuthInfo | undefined): Promise<DeleteRangeResponse> {
  return etcd.deleteRange(r, { ai, wireBytes: DeleteRangeRequest.encode(r).finish().length });
}

/**
 * v3lock `Lock` (etcd `Mutex.Lock`): puts `<name>/<lease hex>` with the lease unless it exists,
 * then waits until every key under `<name>/` created earlier is deleted. Returns the lock key
 * and the header of the acquiring txn (or of the last read when it had to wait). On abort
 * the key is deleted and Canceled thrown; etcd's errors (e.g. an unknown lease) pass through.
 */
export async function lock(
  etcd: EtcdServer, name: Buffer, lease: bigint, signal: AbortSignal, ai?: AuthInfo,
): Promise<{ header: ResponseHeader; key: Buffer }> {
  const id = await sessionLease(etcd, lease);
  const pfx = Buffer.concat([name, Buffer.from('/')]);
  const myKey = Buffer.concat([pfx, Buffer.from(leaseHex(id))]);
  const getOwner = getOp(topByCreate(pfx, RangeRequest_SortOrder.ASCEND));
  const resp = await txn(etcd, {
    compare: [createRevIs(myKey, 0n)],
    success: [putOp(myKey, EMPTY, id), getOwner],
    failure: [getOp(rangeReq(myKey, EMPTY)), getOwner],
  }, ai);
  let myRev = resp.header!.revision;
  if (!resp.succeeded) myRev = resp.responses[0]!.responseRange!.kvs[0]!.createRevision;
  const owner = resp.responses[1]?.responseRange?.kvs[0];
  if (!owner || owner.createRevision === myRev) return { header: resp.header!, key: myKey };
  try {
    return { header: await waitDeletes(etcd, pfx, myRev - 1n, signal, ai), key: myKey };
  } catch (err) {
    await deleteRange(etcd, { key: myKey, rangeEnd: EMPTY, prevKv: false }, ai);
    throw err;
  }
}

/** v3lock `Unlock`: deletes the lock key; returns the delete's header. */
export async function unlock(etcd: EtcdServer, key: Buffer, ai?: AuthInfo): Promise<ResponseHeader> {
  return (await deleteRange(etcd, { key, rangeEnd: EMPTY, prevKv: false }, ai)).header!;
}

/**
 * v3election `Campaign` (etcd `Election.Campaign`): puts `<name>/<lease hex>` = `value` unless
 * it exists (then proclaims `value` if it differs), and waits until every earlier candidate's
 * key is deleted. Returns the campaign txn's header and the leader key. On abort the candidate
 * resigns and Canceled is thrown.
 */
export async function campaign(
  etcd: EtcdServer, name: Buffer, lease: bigint, value: Buffer, signal: AbortSignal, ai?: AuthInfo,
): Promise<{ header: ResponseHeader; leader: LeaderKey }> {
  const id = await sessionLease(etcd, lease);
  const pfx = Buffer.concat([name, Buffer.from('/')]);
  const key = Buffer.concat([pfx, Buffer.from(leaseHex(id))]);
  const resp = await txn(etcd, {
    compare: [createRevIs(key, 0n)],
    success: [putOp(key, value, id)],
    failure: [getOp(rangeReq(key, EMPTY))],
  }, ai);
  const leader: LeaderKey = { name, key, rev: resp.header!.revision, lease: id };
  if (!resp.succeeded) {
    const kv = resp.responses[0]!.responseRange!.kvs[0]!;
    leader.rev = kv.createRevision;
    if (!kv.value.equals(value)) {
      try {
        await proclaim(etcd, leader, value, ai);
      } catch (err) {
        await resign(etcd, leader, ai);
        throw err;
      }
    }
  }
  try {
    await waitDeletes(etcd, pfx, leader.rev - 1n, signal, ai);
  } catch (err) {
    if (err instanceof Canceled) await resign(etcd, leader, ai);
    throw err;
  }
  return { header: resp.header!, leader };
}

/**
 * v3election `Proclaim` (etcd `Election.Proclaim`): sets the leader's value if `leader` still is
 * the key created at `leader.rev`. Throws MissingLeaderKey, ElectionNotLeader.
 */
export async function proclaim(etcd: EtcdServer, leader: LeaderKey | undefined, value: Buffer, ai?: AuthInfo): Promise<ResponseHeader> {
  if (!leader) throw new MissingLeaderKey();
  const id = await sessionLease(etcd, leader.lease);
  const resp = await txn(etcd, { compare: [createRevIs(leader.key, leader.rev)], success: [putOp(leader.key, value, id)], failure: [] }, ai);
  if (!resp.succeeded) throw new ElectionNotLeader();
  return resp.header!;
}

/**
 * v3election `Resign` (etcd `Election.Resign`): deletes the leader key if it still is the one
 * created at `leader.rev`; answers the same either way. Throws MissingLeaderKey.
 */
export async function resign(etcd: EtcdServer, leader: LeaderKey | undefined, ai?: AuthInfo): Promise<ResponseHeader> {
  if (!leader) throw new MissingLeaderKey();
  await sessionLease(etcd, leader.lease);
  const resp = await txn(etcd, { compare: [createRevIs(leader.key, leader.rev)], success: [delOp(leader.key)], failure: [] }, ai);
  return resp.header!;
}

/** v3election `Leader`: the oldest candidate's KeyValue. Throws ElectionNoLeader. */
export function leader(etcd: EtcdServer, name: Buffer, ai?: AuthInfo): { header: ResponseHeader; kv: KeyValue } {
  const resp = etcd.range(topByCreate(Buffer.concat([name, Buffer.from('/')]), RangeRequest_SortOrder.ASCEND), ai);
  const kv = resp.kvs[0];
  if (!kv) throw new ElectionNoLeader();
  return { header: resp.header!, kv };
}

/**
 * v3election `Observe` (etcd `Election.observe`): calls `send` with the current leader, then
 * with each new value of the leader key; when that key is deleted, with the next leader (or,
 * when there is none, with the first candidate put afterwards). Runs until `signal` aborts, or
 * until a read of the election's keys is refused (auth), when it calls `end`: etcd's observer
 * then closes its channel and Observe ends without an error.
 *
 * State machine over published revisions: `current` is the watched leader key, or undefined
 * while waiting for a candidate. After a new leader is chosen the rest of that revision is
 * skipped, as etcd's watch restarts at the next revision.
 */
export function observe(
  etcd: EtcdServer, name: Buffer, send: (header: ResponseHeader, kv: KeyValue) => void, signal: AbortSignal, ai: AuthInfo | undefined, end: () => void,
): void {
  const pfx = Buffer.concat([name, Buffer.from('/')]);
  const pfxKey = keyFromBytes(pfx);
  /** The leader key being followed; undefined while there is no leader. */
  let current: string | undefined;
  /** Reads the leader and sends it; false when the read is refused. */
  const lookup = (): boolean => {
    let resp: RangeResponse;
    try {
      resp = etcd.range(topByCreate(pfx, RangeRequest_SortOrder.ASCEND), ai);
    } catch {
      return false;
    }
    const kv = resp.kvs[0];
    current = kv ? keyFromBytes(kv.key) : undefined;
    if (kv) send(resp.header!, kv);
    return true;
  };
  if (signal.aborted) return;
  if (!lookup()) return end();
  const unsubscribe = keyEvents(etcd).subscribe((rev, changes) => {
    for (const kv of changes) {
      const k = keyFromBytes(kv.key);
      if (current === undefined) {
        if (kv.version !== 0n && k.startsWith(pfxKey)) {
          current = k;
          send(etcd.fillHeader(revHeader(Number(kv.modRevision))), kv);
          return;
        }
      } else if (k === current) {
        if (kv.version === 0n) {
          if (!lookup()) {
            unsubscribe();
            end();
          }
          return;
        }
        send(etcd.fillHeader(revHeader(rev)), kv);
      }
    }
  });
  signal.addEventListener('abort', unsubscribe, { once: true });
}
