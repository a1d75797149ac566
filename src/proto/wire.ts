/**
 * Hand-written protobuf wire encoding for the hot paths, byte-identical to the generated
 * encoders (src/proto/gen) but without their per-call writer, buffer growth and bigint varint
 * work: `marshalKeyValue` runs once per written key (the backend record) and once per watch
 * event, the response encoders once per KV Range, Put and DeleteRange answer.
 */
import type { KeyValue } from './gen/kv.gen.js';
import { TxnResponse, type DeleteRangeResponse, type PutResponse, type RangeResponse, type ResponseHeader, type ResponseOp } from './gen/rpc.gen.js';

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
export function pushInt64(out: number[], v: bigint): void {
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

/**
 * Most bytes of a buffer a `RecordFields` copies records into (a larger record gets one of its
 * own). Its first buffer is FIRST_FIELD_SLAB_BYTES and each next one twice the last, so that the
 * answer of a single-key read does not take a 1 MiB buffer: one per Range cost the range bench
 * 0.41× etcd's reads/s (external memory that V8 collects by Mark-Compacts; session 28).
 */
const FIELD_SLAB_BYTES = 1 << 20;
const FIRST_FIELD_SLAB_BYTES = 1024;

/**
 * Stored records (mvccpb.KeyValue bytes as stored) written as a repeated length-delimited field
 * `field` (below 16: a one-byte tag), one record at a time, into buffers of up to 1 MiB: what the
 * generated encoder writes for the decoded KeyValues, without decoding and encoding them again
 * and without a Buffer per record. A Range answer read in slices (`StoredRecords.read`) is built
 * with it piece by piece.
 */
export class RecordFields {
  /** Bytes written so far. */
  bytes = 0;
  private readonly filled: Buffer[] = [];
  private slab: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(private readonly field: number) {}

  /** Copies `record` in as one field; `record` may change once this returns. */
  add(record: Uint8Array): void {
    const at = this.head(record.length);
    this.slab.set(record, at);
    this.at = at + record.length;
  }

  /**
   * Copies the stored mvccpb.KeyValue `record` in as one field without its value (field 5), as
   * etcd marshals a keys-only KeyValue (an empty value is not written); `record` may change
   * once this returns.
   */
  addKeyOnly(record: Buffer): void {
    const [from, to] = valueFieldSpan(record);
    const n = record.length - (to - from);
    const at = this.head(n);
    this.slab.set(record.subarray(0, from), at);
    this.slab.set(record.subarray(to), at + from);
    this.at = at + n;
  }

  /** Makes room for a field of `n` bytes and writes its tag and length; returns where its bytes go. */
  private head(n: number): number {
    const size = 1 + varintSize(n) + n;
    if (this.at + size > this.slab.length) {
      if (this.at > 0) this.filled.push(this.slab.subarray(0, this.at));
      const next = Math.min(FIELD_SLAB_BYTES, Math.max(FIRST_FIELD_SLAB_BYTES, this.slab.length * 2));
      this.slab = Buffer.allocUnsafe(Math.max(next, size));
      this.at = 0;
    }
    const out = this.slab;
    let at = this.at;
    out[at++] = (this.field << 3) | 2;
    let v = n;
    for (; v >= 0x80; v >>>= 7) out[at++] = (v & 0x7f) | 0x80;
    out[at++] = v;
    this.bytes += size;
    return at;
  }

  /** The fields written, as buffers to send in order. */
  parts(): Buffer[] {
    return this.at === 0 ? [...this.filled] : [...this.filled, this.slab.subarray(0, this.at)];
  }
}

/**
 * Where the value (field 5) of the marshalled mvccpb.KeyValue `record` lies: [start, end) of its
 * tag, length and bytes; [0, 0] when the record has none (an empty value is not written).
 * @throws RangeError on bytes that are not a KeyValue (see `readField`)
 */
function valueFieldSpan(record: Buffer): [number, number] {
  const r: Reader = { b: record, at: 0, lo: 0, hi: 0, end: 0 };
  while (r.at < record.length) {
    const start = r.at;
    const tag = readField(r);
    if (tag === 0) break;
    if (tag === ((5 << 3) | 2)) return [start, r.end];
    if ((tag & 7) === 2) r.at = r.end;
  }
  return [0, 0];
}

/** Bytes of a varint of `n` (a non-negative integer below 2^31). */
function varintSize(n: number): number {
  let size = 1;
  for (; n >= 0x80; n >>>= 7) size++;
  return size;
}

/**
 * A RangeResponse whose KeyValues may be given as field bytes already written from their
 * stored records (`RecordFields` for field 2): then `kvs` is empty and `kvFields` holds them.
 */
export interface EncodedRangeResponse extends RangeResponse {
  kvFields?: readonly Buffer[];
}

/**
 * etcdserverpb.RangeResponse as protobuf bytes, exactly as `RangeResponse.encode` writes them.
 * With `kvFields` the bytes come as buffers to send in order (the fields as they are, not
 * copied into one).
 */
export function marshalRangeResponse(r: EncodedRangeResponse): Buffer | Buffer[] {
  const head: number[] = [];
  pushHeader(head, r.header);
  const tail: number[] = [];
  if (r.more) tail.push(3 << 3, 1);
  pushInt64Field(tail, 4, r.count);
  return r.kvFields === undefined ? withKeyValues(head, 2, r.kvs, tail) : [Buffer.from(head), ...r.kvFields, Buffer.from(tail)];
}

/** A ResponseOp whose range answer may carry its KeyValues as field bytes (see `EncodedRangeResponse`). */
export interface EncodedResponseOp extends ResponseOp {
  responseRange?: EncodedRangeResponse | undefined;
}

/** A TxnResponse whose range answers may carry their KeyValues as field bytes (a read-only txn's). */
export interface EncodedTxnResponse extends TxnResponse {
  responses: EncodedResponseOp[];
}

/**
 * etcdserverpb.TxnResponse as protobuf bytes, exactly as `TxnResponse.encode` writes them. When
 * a range answer carries `kvFields` (only a read-only txn's do, whose ops are all ranges), the
 * bytes come as buffers to send in order, the fields as they are (see `marshalRangeResponse`).
 */
export function marshalTxnResponse(r: EncodedTxnResponse): Buffer | Buffer[] {
  if (!r.responses.some((op) => op.responseRange?.kvFields !== undefined)) return Buffer.from(TxnResponse.encode(r).finish());
  const out: Buffer[] = [];
  const head: number[] = [];
  pushHeader(head, r.header);
  if (r.succeeded) head.push(2 << 3, 1);
  for (const op of r.responses) {
    if (!op.responseRange) throw new Error('marshalTxnResponse: a txn answer with field bytes holds range answers only');
    const range = marshalRangeResponse(op.responseRange);
    const parts = Buffer.isBuffer(range) ? [range] : range;
    let rangeBytes = 0;
    for (const part of parts) rangeBytes += part.length;
    // ResponseOp field 1 (response_range) inside TxnResponse field 3 (responses).
    const opHead: number[] = [];
    pushVarint(opHead, rangeBytes);
    const opBytes = 1 + opHead.length + rangeBytes;
    head.push((3 << 3) | 2);
    pushVarint(head, opBytes);
    head.push((1 << 3) | 2, ...opHead);
    out.push(Buffer.from(head), ...parts);
    head.length = 0;
  }
  return out;
}

/** etcdserverpb.PutResponse as protobuf bytes, exactly as `PutResponse.encode` writes them. */
export function marshalPutResponse(r: PutResponse): Buffer {
  const head: number[] = [];
  pushHeader(head, r.header);
  return withKeyValues(head, 2, r.prevKv === undefined ? [] : [r.prevKv], []);
}

/**
 * A DeleteRangeResponse whose prev_kvs may be given as field bytes written from their stored
 * records (`RecordFields` for field 3): `prevKvs` is then empty.
 */
export interface EncodedDeleteRangeResponse extends DeleteRangeResponse {
  prevKvFields?: readonly Buffer[];
}

/**
 * etcdserverpb.DeleteRangeResponse as protobuf bytes, exactly as `DeleteRangeResponse.encode`
 * writes them; with `prevKvFields`, as buffers to send in order (see `marshalRangeResponse`).
 */
export function marshalDeleteRangeResponse(r: EncodedDeleteRangeResponse): Buffer | Buffer[] {
  const head: number[] = [];
  pushHeader(head, r.header);
  pushInt64Field(head, 2, r.deleted);
  return r.prevKvFields === undefined ? withKeyValues(head, 3, r.prevKvs, []) : [Buffer.from(head), ...r.prevKvFields];
}

/** A read position in protobuf bytes and the last varint read, as two 32-bit halves. */
interface Reader {
  b: Buffer;
  at: number;
  lo: number;
  hi: number;
  /** The end of the last length-delimited field read. */
  end: number;
}

/** Reads a varint at `r.at` into `r.lo`/`r.hi` (a sign-extended int64 fills all ten bytes). */
function readVarint(r: Reader): void {
  const b = r.b;
  let lo = 0;
  let hi = 0;
  for (let shift = 0; ; shift += 7) {
    if (r.at >= b.length || shift > 63) throw new RangeError('protobuf: bad varint');
    const byte = b[r.at++]!;
    const bits = byte & 0x7f;
    if (shift < 28) lo |= bits << shift;
    else if (shift === 28) {
      lo |= bits << 28;
      hi = bits >>> 4;
    } else hi |= bits << (shift - 32);
    if (byte < 0x80) break;
  }
  r.lo = lo >>> 0;
  r.hi = hi >>> 0;
}

/** The last varint as an int64 number (exact within ±2^53). */
const int64Number = (r: Reader): number => (r.hi | 0) * 0x1_0000_0000 + r.lo;

/** The last varint as an int64 bigint. */
const int64Big = (r: Reader): bigint => (r.hi === 0 ? BigInt(r.lo) : BigInt.asIntN(64, (BigInt(r.hi) << 32n) | BigInt(r.lo)));

/**
 * Reads the next field's tag and, for a varint field, its value (in `r.lo`/`r.hi`); for a
 * length-delimited one, sets `r.end` to its end with `r.at` at its start; fixed-size fields are
 * skipped. Returns the tag, or 0 where the generated decoders stop reading (a zero tag, an end
 * group).
 * @throws RangeError on a truncated field or a start group (protobuf 3 writes none)
 */
function readField(r: Reader): number {
  readVarint(r);
  const tag = r.lo;
  const wireType = tag & 7;
  if (tag === 0 || wireType === 4) return 0;
  if (wireType === 0) readVarint(r);
  else if (wireType === 2) {
    readVarint(r);
    r.end = r.at + r.lo;
    if (r.hi !== 0 || r.end > r.b.length) throw new RangeError('protobuf: truncated field');
  } else if (wireType === 1 || wireType === 5) {
    r.at += wireType === 1 ? 8 : 4;
    if (r.at > r.b.length) throw new RangeError('protobuf: truncated field');
  } else throw new RangeError(`protobuf: wire type ${wireType}`);
  return tag;
}

/**
 * Calls `each(field, bytes)` for every length-delimited field of the message in `b`, in the order
 * they come (`bytes` a view of `b`), stopping where the generated decoders stop (a zero tag, an
 * end group): what a decoded message no longer tells, such as an empty field sent on the wire.
 * @throws RangeError on a truncated field or a start group
 */
export function forEachLengthDelimited(b: Buffer, each: (field: number, bytes: Buffer) => void): void {
  const r: Reader = { b, at: 0, lo: 0, hi: 0, end: 0 };
  while (r.at < b.length) {
    const tag = readField(r);
    if (tag === 0) return;
    if ((tag & 7) !== 2) continue;
    each(tag >>> 3, b.subarray(r.at, r.end));
    r.at = r.end;
  }
}

/**
 * Decodes mvccpb.KeyValue bytes as `KeyValue.decode` does (any field order, the last of a
 * repeated field wins, unknown fields and known fields of another wire type skipped), without its
 * copies: `key` and `value` are views of `b`, which must not change afterwards.
 * @throws RangeError on bytes that are not a KeyValue (a truncated field; a start group, which
 *   the generated decoder would skip and protobuf 3 never writes)
 */
export function unmarshalKeyValue(b: Buffer): KeyValue {
  const kv: KeyValue = { key: EMPTY, createRevision: 0n, modRevision: 0n, version: 0n, value: EMPTY, lease: 0n };
  const r: Reader = { b, at: 0, lo: 0, hi: 0, end: 0 };
  while (r.at < b.length) {
    const tag = readField(r);
    if (tag === 0) break;
    if (tag === ((1 << 3) | 2)) kv.key = b.subarray(r.at, r.end);
    else if (tag === 2 << 3) kv.createRevision = int64Big(r);
    else if (tag === 3 << 3) kv.modRevision = int64Big(r);
    else if (tag === 4 << 3) kv.version = int64Big(r);
    else if (tag === ((5 << 3) | 2)) kv.value = b.subarray(r.at, r.end);
    else if (tag === 6 << 3) kv.lease = int64Big(r);
    if ((tag & 7) === 2) r.at = r.end;
  }
  return kv;
}
const EMPTY = Buffer.alloc(0);

/**
 * The fields of a stored mvccpb.KeyValue that rebuilding the index and the leases needs at
 * startup (etcd's `restore` reads the same ones). `key` is the store's key string (see
 * mvcc/key.ts); `createRevision` and `version` are exact up to 2^53, as everywhere in the store.
 */
export interface KeyValueHead {
  key: string;
  createRevision: number;
  version: number;
  lease: bigint;
}

/**
 * Reads the `KeyValueHead` of KeyValue bytes as `unmarshalKeyValue` would, without making the
 * rest: no bigints but the lease's, no views.
 * @throws RangeError as `unmarshalKeyValue` does
 */
export function readKeyValueHead(b: Buffer): KeyValueHead {
  const head: KeyValueHead = { key: '', createRevision: 0, version: 0, lease: 0n };
  const r: Reader = { b, at: 0, lo: 0, hi: 0, end: 0 };
  while (r.at < b.length) {
    const tag = readField(r);
    if (tag === 0) break;
    if (tag === ((1 << 3) | 2)) head.key = b.toString('latin1', r.at, r.end);
    else if (tag === 2 << 3) head.createRevision = int64Number(r);
    else if (tag === 4 << 3) head.version = int64Number(r);
    else if (tag === 6 << 3) head.lease = int64Big(r);
    if ((tag & 7) === 2) r.at = r.end;
  }
  return head;
}
