/**
 * A `range_end` sent on the wire but empty, as protobufjs clients (the etcd3 npm package: its
 * `Range` ends default to an empty buffer) write it; clientv3 and python-etcd3 leave an empty
 * field out.
 *
 * etcd 3.4's gogo decoder keeps such a field as a non-nil empty slice, and its mvcc reads a
 * non-nil end as a range: every key from `key` on, the meaning of `"\0"` (`mkGteRange` turns
 * `"\0"` into that same empty slice). That holds wherever a request is served without raft: a
 * Range, and the range ops and compares of a read-only Txn (`isTxnReadonly`). A Txn with writes
 * is proposed through raft, whose encoding drops the empty field, and a DeleteRange or a Watch
 * never sees it either: a single key there. Decoded with proto3's implicit presence, the
 * request no longer tells; these read the bytes again and write such an end as `"\0"`, which
 * means to the store what the empty end means to etcd's.
 *
 * One difference, on purpose: etcd checks the permission of such a read for the single key only
 * (`range_perm_cache.go` tests `len(rangeEnd) == 0`), so a user who may read one key reads every
 * key after it. Here the permission checked is that of the read made, from `key` on.
 */
import type { Compare, RangeRequest, RequestOp, TxnRequest } from '../../proto/gen/rpc.gen.js';
import { forEachLengthDelimited } from '../../proto/wire.js';
import { isTxnReadonly } from '../apply.js';

const FROM_KEY = Buffer.from([0]);

/** Field numbers: RangeRequest.range_end, Compare.range_end, RequestOp.request_range, TxnRequest's compare, success, failure. */
const RANGE_REQUEST_RANGE_END = 2;
const COMPARE_RANGE_END = 64;
const REQUEST_OP_RANGE = 1;
const TXN_COMPARE = 1;
const TXN_SUCCESS = 2;
const TXN_FAILURE = 3;

/** The last occurrence of length-delimited field `field` in `bytes`, or undefined. */
function lastField(bytes: Buffer, field: number): Buffer | undefined {
  let last: Buffer | undefined;
  forEachLengthDelimited(bytes, (f, value) => {
    if (f === field) last = value;
  });
  return last;
}

/** Sets `m.rangeEnd` to `"\0"` when its bytes (`bytes`) carry it as an empty field `field`. */
function openIfEmpty(m: RangeRequest | Compare, bytes: Buffer, field: number): void {
  if (m.rangeEnd.length === 0 && lastField(bytes, field)?.length === 0) m.rangeEnd = FROM_KEY;
}

/** KV.Range decoded from `bytes`: an empty `range_end` on the wire reads from `key` on. */
export function openEmptyRangeEnd(req: RangeRequest, bytes: Buffer): void {
  openIfEmpty(req, bytes, RANGE_REQUEST_RANGE_END);
}

/**
 * KV.Txn decoded from `bytes`: when it is read-only, an empty `range_end` on the wire of one of
 * its compares or range ops reads from `key` on. (A read-only txn has no nested txn.)
 */
export function openEmptyRangeEnds(req: TxnRequest, bytes: Buffer): void {
  if (!isTxnReadonly(req)) return;
  const next = { compare: 0, success: 0, failure: 0 };
  const op = (o: RequestOp | undefined, opBytes: Buffer): void => {
    // The last request_range on the wire is the one decoded (gogo replaces a oneof member too).
    const range = lastField(opBytes, REQUEST_OP_RANGE);
    if (o?.requestRange && range) openEmptyRangeEnd(o.requestRange, range);
  };
  forEachLengthDelimited(bytes, (field, value) => {
    if (field === TXN_COMPARE) {
      const c = req.compare[next.compare++];
      if (c) openIfEmpty(c, value, COMPARE_RANGE_END);
    } else if (field === TXN_SUCCESS) op(req.success[next.success++], value);
    else if (field === TXN_FAILURE) op(req.failure[next.failure++], value);
  });
}
