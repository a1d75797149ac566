/**
 * Which requests etcd cannot unmarshal, and with which error.
 *
 * etcd 3.4 decodes requests with gogo/protobuf's generated `Unmarshal` methods (`rpc.pb.go`),
 * which reject bytes our generated decoders accept: an end-group tag ends a ts-proto decode as
 * if the message were complete, where gogo answers "wiretype end group for non-group", so a
 * request etcd refuses would be executed here. etcd answers such a request with gRPC status
 * INTERNAL and gogo's error after grpc-go's prefix (src/server/grpc/malformed.ts); this module
 * gives gogo's error, walking the bytes as gogo's code does, in the same order of checks:
 * - a tag: 10 bytes at most ("proto: integer overflow"), within the message ("unexpected EOF");
 *   end-group wire type 4 ("proto: M: wiretype end group for non-group"); field number ≤ 0, from
 *   the tag's bits 3–34 as a signed 32-bit integer ("proto: M: illegal tag N (wire type W)",
 *   W being the whole tag);
 * - a known field: its wire type ("proto: wrong wireType = W for field F"; repeated numeric
 *   fields take 0 or packed 2), then its varint or length (a length with bit 63 set is "proto:
 *   negative length found during unmarshaling"; past the end, "unexpected EOF"), nested
 *   messages checked on their own bytes;
 * - an unknown field: skipped as gogo's `skipRpc` skips it (wire types 6 and 7: "proto: illegal
 *   wireType W"; groups skipped to their end tag).
 * Where etcd 3.4's gogo version crashes on a length that overflows the index (it has no
 * `postIndex < 0` check), this answers as later gogo versions do, with the negative-length error.
 *
 * One more difference, in bytes both accept: a oneof sent with several members. gogo's Unmarshal
 * replaces the oneof each time one of its members comes, so the last one on the wire wins
 * (a RequestOp with a range and then a put is a put); ts-proto keeps every member, and our
 * handlers would pick by their own order. `checkRequest` hands such bytes on with the earlier
 * members left out.
 */
import { MESSAGES } from './gen/unmarshal-schema.gen.js';
import { pushVarint } from './wire.js';

/** A request message as gogo's Unmarshal sees it: its Go type name and fields by number. */
export interface MessageShape {
  goName: string;
  /**
   * [Go field name, wire kind]: `v` a varint, `pv` a repeated varint (packed or not), `b` bytes
   * or a string, `m:<full name>` a message.
   */
  fields: Record<number, [string, string]>;
  /** The field numbers of each oneof, if the message has any. */
  oneofs?: number[][];
}

const EOF = 'unexpected EOF';
const OVERFLOW = 'proto: integer overflow';
const NEGATIVE_LENGTH = 'proto: negative length found during unmarshaling';

class UnmarshalError extends Error {}

/** A field as the check walks it: its Go name, wire kind and, for a message, its shape. */
interface Field {
  goName: string;
  kind: 'v' | 'pv' | 'b' | 'm';
  message: Shape | undefined;
}
/** A message shape with its fields indexed by number (etcd's numbers are small). */
interface Shape {
  goName: string;
  fields: (Field | undefined)[];
  /** Field number → index of its oneof, for oneof members. */
  oneofOf: (number | undefined)[];
}

/** Every request message's Shape, linked once (messages nest, TxnRequest in itself). */
const SHAPES = new Map<string, Shape>();
for (const [name, m] of Object.entries(MESSAGES)) SHAPES.set(name, { goName: m.goName, fields: [], oneofOf: [] });
for (const [name, m] of Object.entries(MESSAGES)) {
  const { fields, oneofOf } = SHAPES.get(name)!;
  for (const [i, members] of (m.oneofs ?? []).entries()) for (const num of members) oneofOf[num] = i;
  for (const [num, [goName, kind]] of Object.entries(m.fields)) {
    const message = kind.startsWith('m:') ? SHAPES.get(kind.slice(2)) : undefined;
    fields[Number(num)] = { goName, kind: message ? 'm' : (kind as Field['kind']), message };
  }
}

/** The last varint read: its value below bit 63 (exact below 2^53), and bit 63. */
let value = 0;
let bit63 = false;
/** Set by checkMessage when a message of the bytes checked had two members of one oneof. */
let oneofConflict = false;

/** Reads the varint at `b[i]`, within `end`, into `value`/`bit63`; returns the index after it. */
function readVarint(b: Uint8Array, i: number, end: number): number {
  if (i < end && b[i]! < 0x80) {
    value = b[i]!;
    bit63 = false;
    return i + 1;
  }
  value = 0;
  bit63 = false;
  for (let shift = 0, scale = 1; ; shift += 7, scale *= 128) {
    if (shift >= 64) throw new UnmarshalError(OVERFLOW);
    if (i >= end) throw new UnmarshalError(EOF);
    const x = b[i++]!;
    if (shift === 63) bit63 = (x & 1) === 1;
    else value += (x & 0x7f) * scale;
    if (x < 0x80) return i;
  }
}

/** Reads a length (a Go `int`) at `b[i]`; returns the index after it, the length in `value`. */
function readLength(b: Uint8Array, i: number, end: number): number {
  i = readVarint(b, i, end);
  // A Go int with bit 63 set is negative; one that overflows the index is too, in later gogo.
  if (bit63 || i + value >= 2 ** 63) throw new UnmarshalError(NEGATIVE_LENGTH);
  return i;
}

/** The tag read from `b[from..to)` as Go's uint64. */
function uint64(b: Uint8Array, from: number, to: number): bigint {
  let w = 0n;
  for (let i = from, shift = 0n; i < to; i++, shift += 7n) w |= BigInt(b[i]! & 0x7f) << shift;
  return BigInt.asUintN(64, w);
}

/** Checks `b[start..end)` as message `shape` (gogo's `Unmarshal`); throws UnmarshalError. */
function checkMessage(shape: Shape, b: Uint8Array, start: number, end: number): void {
  let i = start;
  // The member of each oneof seen last, while no conflict is known.
  let members: number[] | undefined;
  while (i < end) {
    const tagAt = i;
    i = readVarint(b, i, end);
    const wireType = b[tagAt]! & 7;
    if (wireType === 4) throw new UnmarshalError(`proto: ${shape.goName}: wiretype end group for non-group`);
    // Tags of up to four bytes are below 2^28; longer ones take Go's int32(wire >> 3).
    const fieldNum = i - tagAt <= 4 ? value >>> 3 : Number(BigInt.asIntN(32, uint64(b, tagAt, i) >> 3n));
    if (fieldNum <= 0) throw new UnmarshalError(`proto: ${shape.goName}: illegal tag ${fieldNum} (wire type ${uint64(b, tagAt, i)})`);
    const field = shape.fields[fieldNum];
    const oneof = shape.oneofOf[fieldNum];
    if (oneof !== undefined && !oneofConflict) {
      members ??= [];
      if (members[oneof] !== undefined && members[oneof] !== fieldNum) oneofConflict = true;
      members[oneof] = fieldNum;
    }
    if (field === undefined) {
      const next = skip(b, tagAt, end);
      if (next > end) throw new UnmarshalError(EOF);
      i = next;
      continue;
    }
    if (field.kind === 'v') {
      if (wireType !== 0) throw wrongWireType(wireType, field);
      i = readVarint(b, i, end);
    } else if (field.kind === 'pv') {
      if (wireType === 0) i = readVarint(b, i, end);
      else if (wireType === 2) {
        i = readLength(b, i, end);
        const packedEnd = i + value;
        if (packedEnd > end) throw new UnmarshalError(EOF);
        // gogo reads each element within the message, not within the packed run.
        while (i < packedEnd) i = readVarint(b, i, end);
      } else throw wrongWireType(wireType, field);
    } else {
      if (wireType !== 2) throw wrongWireType(wireType, field);
      i = readLength(b, i, end);
      const fieldEnd = i + value;
      if (fieldEnd > end) throw new UnmarshalError(EOF);
      if (field.message) checkMessage(field.message, b, i, fieldEnd);
      i = fieldEnd;
    }
  }
}

function wrongWireType(wireType: number, field: Field): UnmarshalError {
  return new UnmarshalError(`proto: wrong wireType = ${wireType} for field ${field.goName}`);
}

/**
 * Skips the unknown field whose tag is at `b[at]` as etcd 3.4's `skipRpc` does; returns the
 * index after it, which may lie past `end` (the caller's "unexpected EOF").
 */
function skip(b: Uint8Array, at: number, end: number): number {
  let i = readVarint(b, at, end);
  const wireType = b[at]! & 7;
  switch (wireType) {
    case 0:
      return readVarint(b, i, end);
    case 1:
      return i + 8;
    case 2:
      i = readLength(b, i, end);
      return i + value;
    case 3:
      // A group: skip fields up to its end tag.
      for (;;) {
        const tagAt = i;
        i = readVarint(b, i, end);
        if ((b[tagAt]! & 7) === 4) return i;
        i = skip(b, tagAt, end);
      }
    case 4:
      return i;
    case 5:
      return i + 4;
    default:
      throw new UnmarshalError(`proto: illegal wireType ${wireType}`);
  }
}

/**
 * `b[start..end)`, a message `shape` that checkMessage accepted, with every oneof member but the
 * last on the wire left out, in nested messages too (lengths rewritten), as gogo decodes it.
 */
function lastOneofsOnly(shape: Shape, b: Uint8Array, start: number, end: number): Buffer {
  // The fields as [tag start, content start, end], and each oneof's last member.
  const fields: [number, number, number][] = [];
  const last: number[] = [];
  for (let i = start; i < end; ) {
    const tagAt = i;
    i = readVarint(b, i, end);
    const fieldNum = value >>> 3;
    const oneof = shape.oneofOf[fieldNum];
    if (oneof !== undefined) last[oneof] = fieldNum;
    const field = shape.fields[fieldNum];
    if (field?.kind === 'm') {
      i = readLength(b, i, end);
      fields.push([tagAt, i, i + value]);
      i += value;
    } else {
      i = skip(b, tagAt, end);
      fields.push([tagAt, i, i]);
    }
  }
  const parts: Buffer[] = [];
  for (const [tagAt, contentAt, fieldEnd] of fields) {
    readVarint(b, tagAt, end);
    const fieldNum = value >>> 3;
    const oneof = shape.oneofOf[fieldNum];
    if (oneof !== undefined && last[oneof] !== fieldNum) continue;
    const message = shape.fields[fieldNum]?.message;
    if (message === undefined || contentAt === fieldEnd) {
      parts.push(Buffer.from(b.subarray(tagAt, Math.max(contentAt, fieldEnd))));
      continue;
    }
    const content = lastOneofsOnly(message, b, contentAt, fieldEnd);
    const length: number[] = [];
    pushVarint(length, content.length);
    parts.push(Buffer.from(b.subarray(tagAt, readVarint(b, tagAt, end))), Buffer.from(length), content);
  }
  return Buffer.concat(parts);
}

/**
 * Checks request bytes as etcd's gogo-generated Unmarshal reads them, for the message `type` (a
 * full name such as `etcdserverpb.RangeRequest`): returns gogo's error without grpc-go's status
 * prefix when etcd cannot decode them, else the bytes to decode, which are `bytes` unless a
 * oneof came with several members (then without all but the last, see the module comment).
 * Throws when `type` is not a request message of src/proto.
 */
export function checkRequest(type: string, bytes: Uint8Array): { error: string } | { bytes: Uint8Array } {
  const shape = SHAPES.get(type);
  if (shape === undefined) throw new Error(`checkRequest: ${type} is not a request message`);
  oneofConflict = false;
  try {
    checkMessage(shape, bytes, 0, bytes.length);
  } catch (err) {
    if (err instanceof UnmarshalError) return { error: err.message };
    throw err;
  }
  return { bytes: oneofConflict ? lastOneofsOnly(shape, bytes, 0, bytes.length) : bytes };
}

/**
 * The error etcd's gogo-generated Unmarshal returns for `bytes` as the message `type`, without
 * grpc-go's status prefix; undefined when etcd would decode it (see `checkRequest`).
 */
export function unmarshalError(type: string, bytes: Uint8Array): string | undefined {
  const checked = checkRequest(type, bytes);
  return 'error' in checked ? checked.error : undefined;
}
