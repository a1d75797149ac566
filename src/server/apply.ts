/**
 * The KV request semantics on top of the MVCC store (etcd `etcdserver/apply.go` and the checks
 * of `api/v3rpc/key.go`): Range with sorting, limits and revision filters; Put with prev_kv,
 * ignore_value and ignore_lease; DeleteRange; Txn with compares and nested transactions.
 *
 * Functions here are synchronous: a write runs from its first read to its last change in one
 * turn of the event loop, so it sees and leaves a consistent store. The caller waits for
 * durability afterwards.
 */
import { Errors } from './errors.js';
import { type Key, keyFromBytes } from '../mvcc/key.js';
import { CompactedError, FutureRevError, LeaseNotFoundError, type RangeResult, type ReadView, type TxnWrite } from '../mvcc/kv-store.js';
import type { KeyValue } from '../proto/gen/kv.gen.js';
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type Compare,
  type DeleteRangeRequest,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from '../proto/gen/rpc.gen.js';
import { RecordFields, unmarshalKeyValue, type EncodedDeleteRangeResponse, type EncodedRangeResponse, type EncodedTxnResponse } from '../proto/wire.js';

/** A header with only the revision set; the service fills the rest (etcd `header.fill`). */
export function revHeader(rev: number): ResponseHeader {
  return { clusterId: 0n, memberId: 0n, revision: BigInt(rev), raftTerm: 0n };
}

/**
 * A request's range end as the store takes it (etcd `mkGteRange`): empty = the single key,
 * `"\0"` = every key from `key` on, anything else = `[key, end)`.
 */
export function rangeEndOf(rangeEnd: Uint8Array): Key | undefined {
  return rangeEnd.length === 0 ? undefined : keyFromBytes(rangeEnd);
}

/** Maps mvcc errors to etcd's client errors; other errors pass through. */
export function toEtcdError(err: unknown): unknown {
  if (err instanceof CompactedError) return Errors.compacted();
  if (err instanceof FutureRevError) return Errors.futureRev();
  if (err instanceof LeaseNotFoundError) return Errors.leaseNotFound();
  return err;
}

// ---- request validation (etcd api/v3rpc/key.go) ----

/**
 * etcd `checkRangeRequest`. An unknown sort target crashes etcd 3.4 (it sorts with a nil
 * sorter); it gets etcd 3.5's answer, ErrGRPCInvalidSortOption. An unknown sort order is
 * served unsorted, as by etcd 3.4 (3.5 refuses it too).
 */
export function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw Errors.emptyKey();
  if (r.sortTarget < RangeRequest_SortTarget.KEY || r.sortTarget > RangeRequest_SortTarget.VALUE) throw Errors.invalidSortOption();
}

/** etcd `checkPutRequest`. */
export function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw Errors.emptyKey();
  if (r.ignoreValue && r.value.length !== 0) throw Errors.valueProvided();
  if (r.ignoreLease && r.lease !== 0n) throw Errors.leaseProvided();
}

/** etcd `checkDeleteRequest`. */
export function checkDelete(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw Errors.emptyKey();
}

/** etcd `checkTxnRequest` followed by the put/delete overlap check (`checkIntervals`). */
export function checkTxn(r: TxnRequest, maxTxnOps: number): void {
  checkTxnOps(r, maxTxnOps);
  checkIntervals(r.success);
  checkIntervals(r.failure);
}

function checkTxnOps(r: TxnRequest, maxTxnOps: number): void {
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opc > maxTxnOps) throw Errors.tooManyOps();
  for (const c of r.compare) if (c.key.length === 0) throw Errors.emptyKey();
  for (const op of r.success) checkRequestOp(op, maxTxnOps - opc);
  for (const op of r.failure) checkRequestOp(op, maxTxnOps - opc);
}

function checkRequestOp(op: RequestOp, maxTxnOps: number): void {
  if (op.requestRange) checkRange(op.requestRange);
  else if (op.requestPut) checkPut(op.requestPut);
  else if (op.requestDeleteRange) checkDelete(op.requestDeleteRange);
  else if (op.requestTxn) checkTxnOps(op.requestTxn, maxTxnOps);
  else throw Errors.keyNotFound();
}

/** A delete's key interval for overlap checks: `[key, end)`, or the single key. */
interface DelInterval {
  key: Key;
  end: Key | undefined;
}

function hits(dels: readonly DelInterval[], k: Key): boolean {
  // An interval end compares as plain bytes here, as etcd's interval tree does (so a "\0"
  // end covers no key after "\0").
  return dels.some((d) => (d.end === undefined ? d.key === k : d.key <= k && k < d.end));
}

/**
 * etcd `checkIntervals`: within one branch, a key may not be put twice, nor put and deleted;
 * the then/else branches of a nested txn are exclusive, so the same key may appear in both.
 * Returns this level's puts and deletes for the enclosing level.
 */
function checkIntervals(reqs: readonly RequestOp[]): { puts: Set<Key>; dels: DelInterval[] } {
  const dels: DelInterval[] = [];
  for (const op of reqs) {
    const d = op.requestDeleteRange;
    if (d) dels.push({ key: keyFromBytes(d.key), end: d.rangeEnd.length ? keyFromBytes(d.rangeEnd) : undefined });
  }
  const puts = new Set<Key>();
  for (const op of reqs) {
    if (!op.requestTxn) continue;
    const then = checkIntervals(op.requestTxn.success);
    const other = checkIntervals(op.requestTxn.failure);
    for (const k of then.puts) {
      if (puts.has(k) || hits(dels, k)) throw Errors.duplicateKey();
      puts.add(k);
    }
    for (const k of other.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw Errors.duplicateKey();
      if (hits(dels, k)) throw Errors.duplicateKey();
      puts.add(k);
    }
    dels.push(...then.dels, ...other.dels);
  }
  for (const op of reqs) {
    if (!op.requestPut) continue;
    const k = keyFromBytes(op.requestPut.key);
    if (puts.has(k) || hits(dels, k)) throw Errors.duplicateKey();
    puts.add(k);
  }
  return { puts, dels };
}

/**
 * True when every op of both branches is a range (etcd `isTxnReadonly`): a nested txn counts as
 * a write even when it only reads, so etcd proposes it (a raft entry) and applies it.
 */
export function isTxnReadonly(r: TxnRequest): boolean {
  return [...r.success, ...r.failure].every((op) => op.requestRange !== undefined);
}

// ---- Range ----

const cmpBig = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

function sorter(target: RangeRequest_SortTarget): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case RangeRequest_SortTarget.VERSION:
      return (a, b) => cmpBig(a.version, b.version);
    case RangeRequest_SortTarget.CREATE:
      return (a, b) => cmpBig(a.createRevision, b.createRevision);
    case RangeRequest_SortTarget.MOD:
      return (a, b) => cmpBig(a.modRevision, b.modRevision);
    case RangeRequest_SortTarget.VALUE:
      return (a, b) => Buffer.compare(a.value, b.value);
    default:
      return (a, b) => Buffer.compare(a.key, b.key);
  }
}

/** True when a range's filter fields ask for anything (min/max mod and create revisions). */
function isFiltered(r: RangeRequest): boolean {
  return r.minModRevision !== 0n || r.maxModRevision !== 0n || r.minCreateRevision !== 0n || r.maxCreateRevision !== 0n;
}

/** Reads `r` from `view` with etcd's errors, one KeyValue past `limit` to know about `more`. */
function readRange(view: ReadView, r: RangeRequest, records: boolean): RangeResult {
  let limit = Number(r.limit);
  // Sorting or filtering needs everything; otherwise fetch one extra to know about `more`.
  if (r.sortOrder !== RangeRequest_SortOrder.NONE || isFiltered(r)) limit = 0;
  if (limit > 0) limit++;
  try {
    return view.range(keyFromBytes(r.key), rangeEndOf(r.rangeEnd), { limit, rev: Number(r.revision), count: r.countOnly, records });
  } catch (err) {
    throw toEtcdError(err);
  }
}

/**
 * `applyRange` for an answer that `marshalRangeResponse` encodes, its records read in slices
 * (`StoredRecords.read`) so that a large answer does not hold the thread; it is then a promise
 * that resolves once they are all read. An answer whose KeyValues go out as stored (no filter,
 * no sort but by key; keys only drops each record's value field) carries them as `kvFields`,
 * copied from their records;
 * otherwise the records are decoded, slice by slice, then filtered and sorted at once. A count
 * only is answered at once. `cancelled` (the call's) stops the reading between slices: the
 * promise then rejects.
 */
export function applyRangeEncoded(view: ReadView, r: RangeRequest, cancelled?: () => boolean): EncodedRangeResponse | Promise<EncodedRangeResponse> {
  if (r.countOnly) return applyRange(view, r);
  const rr = readRange(view, r, true);
  const records = rr.records!;
  const asStored = !isFiltered(r) && r.sortOrder === RangeRequest_SortOrder.NONE && r.sortTarget === RangeRequest_SortTarget.KEY;
  if (!asStored) {
    const kvs: KeyValue[] = [];
    // A record is handed over in place: the KeyValue's key and value need bytes of their own.
    const reading = records.read((record) => kvs.push(unmarshalKeyValue(Buffer.from(record))), records.length, cancelled);
    return reading ? reading.then(() => shapeRange(r, rr, kvs)) : shapeRange(r, rr, kvs);
  }
  const want = Number(r.limit);
  const more = want > 0 && records.length > want;
  const fields = new RecordFields(2);
  const answer = (): EncodedRangeResponse => ({ header: revHeader(rr.rev), kvs: [], kvFields: fields.parts(), more, count: BigInt(rr.count) });
  const add = r.keysOnly ? (record: Buffer) => fields.addKeyOnly(record) : (record: Buffer) => fields.add(record);
  const reading = records.read(add, more ? want : records.length, cancelled);
  return reading ? reading.then(answer) : answer();
}

/** etcd `applierV3backend.Range`. Throws etcd's compacted / future-revision errors. */
export function applyRange(view: ReadView, r: RangeRequest): RangeResponse {
  const rr = readRange(view, r, false);
  return shapeRange(r, rr, rr.kvs);
}

/** The answer to `r` from the KeyValues `kvs` its read `rr` found: filtered, sorted, cut to `limit`, keys only. */
function shapeRange(r: RangeRequest, rr: RangeResult, found: KeyValue[]): RangeResponse {
  let kvs = found;
  if (isFiltered(r)) {
    kvs = kvs.filter(
      (kv) =>
        !(r.maxModRevision !== 0n && kv.modRevision > r.maxModRevision) &&
        !(r.minModRevision !== 0n && kv.modRevision < r.minModRevision) &&
        !(r.maxCreateRevision !== 0n && kv.createRevision > r.maxCreateRevision) &&
        !(r.minCreateRevision !== 0n && kv.createRevision < r.minCreateRevision),
    );
  }
  let order = r.sortOrder;
  // The store returns keys ascending; sort by another target ascending unless told otherwise.
  if (r.sortTarget !== RangeRequest_SortTarget.KEY && order === RangeRequest_SortOrder.NONE) order = RangeRequest_SortOrder.ASCEND;
  if (order === RangeRequest_SortOrder.ASCEND || order === RangeRequest_SortOrder.DESCEND) {
    const cmp = sorter(r.sortTarget);
    // Stable sorts, like Go's sort.Sort on a slice already in key order, give key order among
    // equals; descending reverses the comparison, not the result, to keep that order.
    kvs = order === RangeRequest_SortOrder.ASCEND ? [...kvs].sort(cmp) : [...kvs].sort((a, b) => cmp(b, a));
  }
  let more = false;
  const want = Number(r.limit);
  if (want > 0 && kvs.length > want) {
    kvs = kvs.slice(0, want);
    more = true;
  }
  if (r.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
  return { header: revHeader(rr.rev), kvs, more, count: BigInt(rr.count) };
}

const EMPTY = Buffer.alloc(0);

// ---- Put / DeleteRange ----

/** etcd `applierV3backend.Put` inside a write txn. Throws keyNotFound, leaseNotFound. */
export function applyPut(txn: TxnWrite, p: PutRequest): PutResponse {
  const key = keyFromBytes(p.key);
  let prev: KeyValue | undefined;
  if (p.ignoreValue || p.ignoreLease || p.prevKv) {
    prev = txn.range(key, undefined).kvs[0];
    if ((p.ignoreValue || p.ignoreLease) && !prev) throw Errors.keyNotFound();
  }
  const value = p.ignoreValue ? prev!.value : p.value;
  const lease = p.ignoreLease ? prev!.lease : p.lease;
  try {
    txn.put(key, value, lease);
  } catch (err) {
    throw toEtcdError(err);
  }
  return { header: revHeader(txn.beginRev + 1), prevKv: p.prevKv ? prev : undefined };
}

/**
 * etcd `applierV3backend.DeleteRange` inside a write txn. With `records`, the prev_kvs asked
 * for are given as field bytes copied from their stored records (`prevKvFields`, see
 * `EncodedDeleteRangeResponse`).
 */
export function applyDeleteRange(txn: TxnWrite, d: DeleteRangeRequest, records = false): EncodedDeleteRangeResponse {
  const key = keyFromBytes(d.key);
  const end = rangeEndOf(d.rangeEnd);
  const prev = d.prevKv ? txn.range(key, end, { records }) : undefined;
  let prevKvFields: Buffer[] | undefined;
  if (prev?.records) {
    const fields = new RecordFields(3);
    prev.records.forEach((record) => fields.add(record));
    prevKvFields = fields.parts();
  }
  const deleted = txn.deleteRange(key, end);
  const header = revHeader(deleted > 0 || txn.changes.length > 0 ? txn.beginRev + 1 : txn.beginRev);
  return { header, deleted: BigInt(deleted), prevKvs: prev?.kvs ?? [], prevKvFields };
}

// ---- Txn ----

/** The integer a compare target reads from a KeyValue and from the Compare (0 when absent). */
const INT_TARGETS: Partial<Record<Compare_CompareTarget, (x: Partial<KeyValue> & Partial<Compare>) => bigint | undefined>> = {
  [Compare_CompareTarget.CREATE]: (x) => x.createRevision,
  [Compare_CompareTarget.MOD]: (x) => x.modRevision,
  [Compare_CompareTarget.VERSION]: (x) => x.version,
  [Compare_CompareTarget.LEASE]: (x) => x.lease,
};

function compareKV(c: Compare, kv: KeyValue | undefined): boolean {
  const field = INT_TARGETS[c.target];
  let result: number;
  if (c.target === Compare_CompareTarget.VALUE) result = Buffer.compare(kv?.value ?? EMPTY, c.value ?? EMPTY);
  else if (field) result = cmpBig((kv && field(kv)) ?? 0n, field(c) ?? 0n);
  else result = 0;
  switch (c.result) {
    case Compare_CompareResult.EQUAL:
      return result === 0;
    case Compare_CompareResult.NOT_EQUAL:
      return result !== 0;
    case Compare_CompareResult.GREATER:
      return result > 0;
    case Compare_CompareResult.LESS:
      return result < 0;
    default:
      return true;
  }
}

/** etcd `applyCompare`: every key of the compare's range must satisfy it. */
export function applyCompare(view: ReadView, c: Compare): boolean {
  let kvs: KeyValue[];
  try {
    kvs = view.range(keyFromBytes(c.key), rangeEndOf(c.rangeEnd)).kvs;
  } catch {
    return false;
  }
  if (kvs.length === 0) {
    // A missing key has no value, and nothing equals "no value"; other targets compare as 0.
    return c.target === Compare_CompareTarget.VALUE ? false : compareKV(c, undefined);
  }
  return kvs.every((kv) => compareKV(c, kv));
}

/**
 * Decides every branch up front (etcd `compareToPath`): the compares of all nested txns on the
 * taken path are evaluated against the state before the txn, as etcd does.
 */
function compareToPath(view: ReadView, r: TxnRequest): boolean[] {
  const ok = r.compare.every((c) => applyCompare(view, c));
  const path = [ok];
  for (const op of ok ? r.success : r.failure) if (op.requestTxn) path.push(...compareToPath(view, op.requestTxn));
  return path;
}

/**
 * The pre-checks etcd makes before applying a txn (etcd `checkRequests`), over the ops on the
 * taken path: with `puts`, ignore_value/ignore_lease need the key and leases must exist
 * (`checkRequestPut`); otherwise range revisions must be readable (`checkRequestRange`).
 * Returns how many nested txns it walked.
 */
function checkTxnPath(view: ReadView, r: TxnRequest, path: boolean[], puts: boolean, leaseExists: (id: bigint) => boolean): number {
  let count = 0;
  let rest = path.slice(1);
  for (const op of path[0] ? r.success : r.failure) {
    if (op.requestTxn) {
      const n = checkTxnPath(view, op.requestTxn, rest, puts, leaseExists);
      count += n + 1;
      rest = rest.slice(n + 1);
      continue;
    }
    const p = op.requestPut;
    if (puts && p) {
      if ((p.ignoreValue || p.ignoreLease) && view.range(keyFromBytes(p.key), undefined).kvs.length === 0) throw Errors.keyNotFound();
      if (p.lease !== 0n && !leaseExists(p.lease)) throw Errors.leaseNotFound();
    }
    const rr = op.requestRange;
    if (!puts && rr && rr.revision !== 0n) {
      if (Number(rr.revision) > view.rev()) throw Errors.futureRev();
      if (Number(rr.revision) < view.firstRev()) throw Errors.compacted();
    }
  }
  return count;
}

/**
 * etcd `applierV3backend.Txn`: the compares and pre-checks read `view`; the ops run in `write`,
 * the write transaction of a txn with writes, or in `view` for a read-only one. Returns the
 * response; the caller ends both.
 */
export function applyTxn(view: ReadView, write: TxnWrite | undefined, r: TxnRequest, leaseExists: (id: bigint) => boolean): TxnResponse {
  const path = compareToPath(view, r);
  if (write) checkTxnPath(view, r, path, true, leaseExists);
  checkTxnPath(view, r, path, false, leaseExists);
  const txn = write ?? view;
  const resp = runTxn(txn, r, path).resp;
  resp.header = revHeader(txn.rev());
  return resp;
}

/**
 * `applyTxn` for a read-only txn (`isTxnReadonly`) whose answer `marshalTxnResponse` encodes:
 * its range ops are answered as `applyRangeEncoded` answers them, read in slices; the answer is
 * then a promise that resolves once they are all read. Every index lookup (compares, ranges) is
 * made at once, in the view. `cancelled` as for `applyRangeEncoded`.
 */
export function applyTxnEncoded(view: ReadView, r: TxnRequest, leaseExists: (id: bigint) => boolean, cancelled?: () => boolean): EncodedTxnResponse | Promise<EncodedTxnResponse> {
  const path = compareToPath(view, r);
  checkTxnPath(view, r, path, false, leaseExists);
  const succeeded = path[0]!;
  const ranges = (succeeded ? r.success : r.failure).map((op) => applyRangeEncoded(view, op.requestRange!, cancelled));
  const header = revHeader(view.rev());
  const answer = (done: EncodedRangeResponse[]): EncodedTxnResponse => ({ header, succeeded, responses: done.map((responseRange) => ({ responseRange })) });
  return ranges.some((range) => range instanceof Promise) ? Promise.all(ranges).then(answer) : answer(ranges as EncodedRangeResponse[]);
}

function runTxn(txn: ReadView | TxnWrite, r: TxnRequest, path: boolean[]): { resp: TxnResponse; txns: number } {
  const succeeded = path[0]!;
  const responses: ResponseOp[] = [];
  let txns = 0;
  let rest = path.slice(1);
  for (const op of succeeded ? r.success : r.failure) {
    if (op.requestRange) {
      responses.push({ responseRange: applyRange(txn, op.requestRange) });
    } else if (op.requestPut) {
      responses.push({ responsePut: applyPut(txn as TxnWrite, op.requestPut) });
    } else if (op.requestDeleteRange) {
      responses.push({ responseDeleteRange: applyDeleteRange(txn as TxnWrite, op.requestDeleteRange) });
    } else if (op.requestTxn) {
      const nested = runTxn(txn, op.requestTxn, rest);
      // etcd leaves a nested txn's header empty.
      nested.resp.header = revHeader(0);
      responses.push({ responseTxn: nested.resp });
      txns += nested.txns + 1;
      rest = rest.slice(nested.txns + 1);
    }
  }
  return { resp: { header: undefined, succeeded, responses }, txns };
}
