/**
 * Hand-written protobuf wire encoding for the hot paths, byte-identical to the generated
 * encoders (src/proto/gen) but without their per-call writer, buffer growth and bigint varint
 * work: `marshalKeyValue` runs once per written key (the backend record) and once per watch
 * event, the response encoders once per KV Range, Put and DeleteRange answer.
 */
import type { KeyValue } from './gen/kv.gen.js';
import type { DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader } from './gen/rpc.gen.js';

/**
 * Appends the protobuf varint of `n` (an integer of at most 53 bits) to `out`: a length, or the
 * value of an int64 field (ten bytes of two's complement when negative).
 */
export function pushVarint(out: number[], n: number): void {
  if (n < 0) {
    pushBigVarint(out, BigInt.asUintN(64, BigInt(n)));
    return;
  }
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

/** Appends the varint of `u`, an unsigned 64-bit value (0 ≤ u < 2^64), the slow way, in BigInt steps. */
function pushBigVarint(out: number[], u: bigint): void {
  for (; u >= 0x80n; u >>= 7n) out.push(Number(u & 0x7fn) | 0x80);
  out.push(Number(u));
}

/** `tag varint(length)`: the start of a length-delimited field whose body is `length` bytes. */
export function lengthPrefix(tag: number, length: number): Buffer {
  const out = [tag];
  pushVarint(out, length);
  return Buffer.from(out);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Appends the varint of an int64 field's value (two's complement when negative, as protobuf does).
 * @throws RangeError when `v` is outside the int64 range
 */
function pushInt64(out: number[], v: bigint): void {
  if (v >= 0n && v <= MAX_SAFE) {
    pushVarint(out, Number(v));
    return;
  }
  if (BigInt.asIntN(64, v) !== v) throw new RangeError(`int64 field out of range: ${v}`);
  pushBigVarint(out, BigInt.asUintN(64, v));
}

/**
 * Appends the varint of a uint64 field's value.
 * @throws RangeError when `v` is outside the uint64 range
 */
function pushUint64(out: number[], v: bigint): void {
  if (v >= 0n && v <= MAX_SAFE) {
    pushVarint(out, Number(v));
    return;
  }
  if (BigInt.asUintN(64, v) !== v) throw new RangeError(`uint64 field out of range: ${v}`);
  pushBigVarint(out, v);
}

/** Appends int64 field `field` with value `v` (varint wire type), nothing when `v` is 0. */
function pushInt64Field(out: number[], field: number, v: bigint): void {
  if (v === 0n) return;
  out.push(field << 3);
  pushInt64(out, v);
}

/** Appends uint64 field `field` with value `v` (varint wire type), nothing when `v` is 0. */
function pushUint64Field(out: number[], field: number, v: bigint): void {
  if (v === 0n) return;
  out.push(field << 3);
  pushUint64(out, v);
}

/**
 * The mvccpb.KeyValue message as protobuf bytes, exactly as `KeyValue.encode` writes them
 * (fields in number order, zero values and empty bytes omitted).
 * @throws RangeError when an int64 field is outside the int64 range
 */
export function marshalKeyValue(kv: KeyValue): Buffer {
  // Everything but the two byte strings: tags, lengths and integers.
  const head: number[] = [];
  if (kv.key.length !== 0) {
    head.push((1 << 3) | 2);
    pushVarint(head, kv.key.length);
  }
  const keyEnd = head.length;
  pushInt64Field(head, 2, kv.createRevision);
  pushInt64Field(head, 3, kv.modRevision);
  pushInt64Field(head, 4, kv.version);
  if (kv.value.length !== 0) {
    head.push((5 << 3) | 2);
    pushVarint(head, kv.value.length);
  }
  const valueEnd = head.length;
  pushInt64Field(head, 6, kv.lease);
  const out = Buffer.allocUnsafe(head.length + kv.key.length + kv.value.length);
  let at = 0;
  for (let i = 0; i < keyEnd; i++) out[at++] = head[i]!;
  out.set(kv.key, at);
  at += kv.key.length;
  for (let i = keyEnd; i < valueEnd; i++) out[at++] = head[i]!;
  out.set(kv.value, at);
  at += kv.value.length;
  for (let i = valueEnd; i < head.length; i++) out[at++] = head[i]!;
  return out;
}

/**
 * The cluster_id and member_id fields of the last header encoded, which every answer of a
 * server repeats; both are usually above 2^53, where a varint takes ten BigInt steps.
 */
let lastIds = { clusterId: 0n, memberId: 0n, fields: [] as number[] };

/** Appends field 1 (`header`) of a response: always written, like the generated encoders do. */
function pushHeader(out: number[], h: ResponseHeader | undefined): void {
  if (h === undefined) return;
  if (h.clusterId !== lastIds.clusterId || h.memberId !== lastIds.memberId) {
    const fields: number[] = [];
    pushUint64Field(fields, 1, h.clusterId);
    pushUint64Field(fields, 2, h.memberId);
    lastIds = { clusterId: h.clusterId, memberId: h.memberId, fields };
  }
  const body = lastIds.fields.slice();
  pushInt64Field(body, 3, h.revision);
  pushUint64Field(body, 4, h.raftTerm);
  out.push((1 << 3) | 2);
  pushVarint(out, body.length);
  for (const b of body) out.push(b);
}

/** Field 1 (`header`) of a response as protobuf bytes: tag, length and the ResponseHeader. */
export function marshalHeaderField(h: ResponseHeader): Buffer {
  const out: number[] = [];
  pushHeader(out, h);
  return Buffer.from(out);
}

/** `head` followed by each KeyValue of `kvs` as field `field` (length-delimited), then `tail`. */
function withKeyValues(head: number[], field: number, kvs: readonly KeyValue[], tail: number[]): Buffer {
  if (kvs.length === 0) return Buffer.from(tail.length === 0 ? head : head.concat(tail));
  const chunks: Buffer[] = [Buffer.from(head)];
  let length = head.length + tail.length;
  for (const kv of kvs) {
    const bytes = marshalKeyValue(kv);
    const prefix = lengthPrefix((field << 3) | 2, bytes.length);
    chunks.push(prefix, bytes);
    length += prefix.length + bytes.length;
  }
  if (tail.length !== 0) chunks.push(Buffer.from(tail));
  return Buffer.concat(chunks, length);
}

/** etcdserverpb.RangeResponse as protobuf bytes, exactly as `RangeResponse.encode` writes them. */
export function marshalRangeResponse(r: RangeResponse): Buffer {
  const head: number[] = [];
  pushHeader(head, r.header);
  const tail: number[] = [];
  if (r.more) tail.push(3 << 3, 1);
  pushInt64Field(tail, 4, r.count);
  return withKeyValues(head, 2, r.kvs, tail);
}

/** etcdserverpb.PutResponse as protobuf bytes, exactly as `PutResponse.encode` writes them. */
export function marshalPutResponse(r: PutResponse): Buffer {
  const head: number[] = [];
  pushHeader(head, r.header);
  return withKeyValues(head, 2, r.prevKv === undefined ? [] : [r.prevKv], []);
}

/** etcdserverpb.DeleteRangeResponse as protobuf bytes, exactly as `DeleteRangeResponse.encode` writes them. */
export function marshalDeleteRangeResponse(r: DeleteRangeResponse): Buffer {
  const head: number[] = [];
  pushHeader(head, r.header);
  pushInt64Field(head, 2, r.deleted);
  return withKeyValues(head, 3, r.prevKvs, []);
}

/**
 * The fields of a stored mvccpb.KeyValue that rebuilding the index and the leases needs at
 * startup (etcd's `restore` reads the same ones), read from its protobuf bytes without decoding
 * the value. `key` is the store's key string (see mvcc/key.ts); `createRevision` and `version`
 * are exact up to 2^53, as everywhere in the store.
 */
export interface KeyValueHead {
  key: string;
  createRevision: number;
  version: number;
  lease: bigint;
}

/**
 * Reads the `KeyValueHead` of a KeyValue's protobuf bytes. Fields may come in any order and
 * repeat (the last wins), unknown fields are skipped, as the generated decoder does.
 * @throws RangeError on bytes that are not a KeyValue (truncated field, bad wire type)
 */
export function readKeyValueHead(b: Buffer): KeyValueHead {
  const head: KeyValueHead = { key: '', createRevision: 0, version: 0, lease: 0n };
  let at = 0;
  // The varint just read, as two 32-bit halves (sign-extended int64s fill all ten bytes).
  let lo = 0;
  let hi = 0;
  const readVarint = (): void => {
    lo = 0;
    hi = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= b.length || shift > 63) throw new RangeError('KeyValue: bad varint');
      const byte = b[at++]!;
      const bits = byte & 0x7f;
      if (shift < 28) lo |= bits << shift;
      else if (shift === 28) {
        lo |= bits << 28;
        hi = bits >>> 4;
      } else hi |= bits << (shift - 32);
      if (byte < 0x80) break;
    }
    lo >>>= 0;
  };
  const asNumber = (): number => (hi | 0) * 0x1_0000_0000 + lo;
  while (at < b.length) {
    readVarint();
    const field = lo >>> 3;
    const wireType = lo & 7;
    if (wireType === 0) {
      readVarint();
      if (field === 2) head.createRevision = asNumber();
      else if (field === 4) head.version = asNumber();
      else if (field === 6) head.lease = BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo));
    } else if (wireType === 2) {
      readVarint();
      const end = at + lo;
      if (hi !== 0 || end > b.length) throw new RangeError('KeyValue: truncated field');
      if (field === 1) head.key = b.toString('latin1', at, end);
      at = end;
    } else if (wireType === 1 || wireType === 5) {
      at += wireType === 1 ? 8 : 4;
      if (at > b.length) throw new RangeError('KeyValue: truncated field');
    } else throw new RangeError(`KeyValue: wire type ${wireType}`);
  }
  return head;
}
