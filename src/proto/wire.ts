/**
 * Hand-written protobuf wire encoding for the hot paths, byte-identical to the generated
 * encoders (src/proto/gen) but without their per-call writer, buffer growth and bigint varint
 * work: `marshalKeyValue` runs once per written key (the backend record) and once per watch event.
 */
import type { KeyValue } from './gen/kv.gen.js';

/**
 * Appends the protobuf varint of `n` (an integer of at most 53 bits) to `out`: a length, or the
 * value of an int64 field (ten bytes of two's complement when negative).
 */
export function pushVarint(out: number[], n: number): void {
  if (n < 0) {
    let v = BigInt.asUintN(64, BigInt(n));
    for (; v >= 0x80n; v >>= 7n) out.push(Number(v & 0x7fn) | 0x80);
    out.push(Number(v));
    return;
  }
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
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
  let u = BigInt.asUintN(64, v);
  for (; u >= 0x80n; u >>= 7n) out.push(Number(u & 0x7fn) | 0x80);
  out.push(Number(u));
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
  if (kv.createRevision !== 0n) {
    head.push(2 << 3);
    pushInt64(head, kv.createRevision);
  }
  if (kv.modRevision !== 0n) {
    head.push(3 << 3);
    pushInt64(head, kv.modRevision);
  }
  if (kv.version !== 0n) {
    head.push(4 << 3);
    pushInt64(head, kv.version);
  }
  if (kv.value.length !== 0) {
    head.push((5 << 3) | 2);
    pushVarint(head, kv.value.length);
  }
  const valueEnd = head.length;
  if (kv.lease !== 0n) {
    head.push(6 << 3);
    pushInt64(head, kv.lease);
  }
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
