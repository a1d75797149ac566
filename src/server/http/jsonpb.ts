/**
 * The gRPC gateway's JSON request decoding, as etcd 3.4's gateway does it: Go's encoding/json
 * reads the body's next JSON value (json.Decoder, see go-json.ts) and golang/protobuf 1.3's
 * jsonpb maps it onto the request message (`Unmarshaler{AllowUnknownFields: true}`). What a
 * client sees of it are the rules and the error texts, kept here:
 *
 * - a field is found by its proto name or its lowerCamel JSON name (the JSON name wins when
 *   both are given); unknown fields are ignored; `null` leaves a field unset; a duplicate key's
 *   last value counts;
 * - 64- and 32-bit integers are JSON numbers or strings holding one, checked as Go's
 *   strconv.ParseInt / ParseUint check them (no fractions, exponents or overflow);
 * - bytes are standard base64 with padding (line breaks skipped), as Go's base64.StdEncoding,
 *   or, as encoding/json also takes them, an array of byte values (null is 0);
 * - a null item of a list is its type's zero value, but in a list of messages it is a nil
 *   pointer, on which etcd's in-process gRPC client panics as it marshals the request
 *   (`JsonNilMessage`);
 * - enums are their value names (case-sensitive) or any number;
 * - errors read as Go's: `invalid character 'x' looking for beginning of value`,
 *   `unexpected EOF`, `json: cannot unmarshal string into Go value of type bool`,
 *   `illegal base64 data at input byte 3`, `unknown value "X" for enum etcdserverpb.…`.
 *
 * Decoding yields the message's canonical proto3 JSON (for @bufbuild/protobuf's `fromJson`).
 */
import { ScalarType, type DescEnum, type DescField, type DescMessage, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { JsonDecodeError, unmarshalText, type RawJson } from './go-json.js';

/**
 * A null item in a list of messages (`{"success":[null]}`): etcd's gateway decodes it, then
 * panics marshalling the request for its gRPC client, and Go's net/http drops the connection
 * without an answer.
 */
export class JsonNilMessage extends Error {}

/** Go's encoding/json type error; a RawJson kind is the word Go uses for it. */
const typeError = (v: RawJson, goType: string): JsonDecodeError =>
  new JsonDecodeError(`json: cannot unmarshal ${v.kind} into Go value of type ${goType}`);

/** Go's name of an enum type: `etcdserverpb.RangeRequest_SortOrder`. */
function goEnumName(e: DescEnum): string {
  const pkg = e.file.proto.package;
  const local = pkg === '' ? e.typeName : e.typeName.slice(pkg.length + 1);
  return `${pkg}.${local.replace(/\./g, '_')}`;
}

/** Integer scalar types by Go type: name, signedness, bits. */
const INTEGERS: Partial<Record<ScalarType, [goType: string, signed: boolean, bits: number]>> = {
  [ScalarType.INT64]: ['int64', true, 64],
  [ScalarType.SINT64]: ['int64', true, 64],
  [ScalarType.SFIXED64]: ['int64', true, 64],
  [ScalarType.UINT64]: ['uint64', false, 64],
  [ScalarType.FIXED64]: ['uint64', false, 64],
  [ScalarType.INT32]: ['int32', true, 32],
  [ScalarType.SINT32]: ['int32', true, 32],
  [ScalarType.SFIXED32]: ['int32', true, 32],
  [ScalarType.UINT32]: ['uint32', false, 32],
  [ScalarType.FIXED32]: ['uint32', false, 32],
};

/** Go's strconv.Parse(U)Int of a JSON number's text into `bits`, as encoding/json decodes an integer. */
function parseInteger(v: RawJson, goType: string, signed: boolean, bits: number): bigint {
  if (v.kind !== 'number') throw typeError(v, goType);
  const bad = new JsonDecodeError(`json: cannot unmarshal number ${v.text} into Go value of type ${goType}`);
  if (!/^-?\d+$/.test(v.text)) throw bad;
  const n = BigInt(v.text);
  const limit = 1n << BigInt(signed ? bits - 1 : bits);
  if (signed ? n < -limit || n >= limit : n < 0n || n >= limit) throw bad;
  return n;
}

/**
 * An integer field's value: a number, or a string whose inside, as written (golang/protobuf's
 * jsonpb drops the quotes without unescaping), Go unmarshals as one; `"null"` so leaves 0.
 */
function integer(v: RawJson, goType: string, signed: boolean, bits: number): bigint {
  const inner = v.kind === 'string' ? unmarshalText(v.raw) : v;
  return v.kind === 'string' && inner.kind === 'null' ? 0n : parseInteger(inner, goType, signed, bits);
}

/** Go's base64.StdEncoding.Decode, which skips CR and LF and requires padding; throws its CorruptInputError text. */
export function decodeStdBase64(s: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const corrupt = (at: number): JsonDecodeError => new JsonDecodeError(`illegal base64 data at input byte ${at}`);
  const out: number[] = [];
  const isNewline = (c: string | undefined) => c === '\n' || c === '\r';
  let si = 0;
  while (si < s.length) {
    const quantum: number[] = [];
    let j = 0;
    let end = false;
    for (; j < 4; j++) {
      if (si === s.length) {
        if (j === 0) return Buffer.from(out);
        throw corrupt(si - j);
      }
      const c = s[si]!;
      si++;
      const d = alphabet.indexOf(c);
      if (d >= 0) {
        quantum.push(d);
        continue;
      }
      if (isNewline(c)) {
        j--;
        continue;
      }
      if (c !== '=') throw corrupt(si - 1);
      if (j < 2) throw corrupt(si - 1);
      if (j === 2) {
        while (si < s.length && isNewline(s[si])) si++;
        if (si === s.length) throw corrupt(s.length);
        if (s[si] !== '=') throw corrupt(si - 1);
        si++;
      }
      while (si < s.length && isNewline(s[si])) si++;
      if (si < s.length) throw corrupt(si);
      end = true;
      break;
    }
    const bits = quantum.reduce((acc, d) => (acc << 6) | d, 0) << (6 * (4 - quantum.length));
    const bytes = [(bits >>> 16) & 0xff, (bits >>> 8) & 0xff, bits & 0xff];
    out.push(...bytes.slice(0, quantum.length - 1));
    if (end) break;
  }
  return Buffer.from(out);
}

/** An item of a JSON array decoded into a Go `[]byte`: a number 0–255; null is 0. */
function goUint8(v: RawJson): number {
  if (v.kind === 'null') return 0;
  if (v.kind !== 'number') throw typeError(v, 'uint8');
  if (!/^\d+$/.test(v.text) || Number(v.text) > 255) throw new JsonDecodeError(`json: cannot unmarshal number ${v.text} into Go value of type uint8`);
  return Number(v.text);
}

/** One non-repeated value of `field` as canonical proto3 JSON; throws JsonDecodeError. */
function singular(field: DescField, v: RawJson, kind: 'scalar' | 'enum' | 'message', scalar: ScalarType | undefined, desc: DescEnum | DescMessage | undefined): JsonValue {
  if (kind === 'message') return decodeMessage(desc as DescMessage, v);
  if (kind === 'enum') {
    const e = desc as DescEnum;
    if (v.kind === 'string') {
      const found = e.values.find((x) => x.name === v.value);
      if (!found) throw new JsonDecodeError(`unknown value ${JSON.stringify(v.value)} for enum ${goEnumName(e)}`);
      return found.number;
    }
    return Number(parseInteger(v, goEnumName(e), true, 32));
  }
  const int = INTEGERS[scalar!];
  if (int) return integer(v, ...int).toString();
  switch (scalar) {
    case ScalarType.BOOL:
      if (v.kind !== 'bool') throw typeError(v, 'bool');
      return v.value;
    case ScalarType.STRING:
      if (v.kind !== 'string') throw typeError(v, 'string');
      return v.value;
    case ScalarType.BYTES:
      // encoding/json also fills a []byte from an array of numbers, one byte each.
      if (v.kind === 'array') return Buffer.from(v.items.map(goUint8)).toString('base64');
      if (v.kind !== 'string') throw typeError(v, '[]uint8');
      return decodeStdBase64(v.value).toString('base64');
    default:
      throw new JsonDecodeError(`field ${field.name}: type not served by the gateway`);
  }
}

/** The zero value of a list field's item as canonical proto3 JSON. */
function zeroItem(field: DescField & { fieldKind: 'list' }): JsonValue {
  if (field.listKind === 'message') return {};
  if (field.listKind === 'enum') return 0;
  if (field.scalar === ScalarType.BOOL) return false;
  if (field.scalar === ScalarType.STRING || field.scalar === ScalarType.BYTES) return '';
  return INTEGERS[field.scalar] ? '0' : 0;
}

/** Set by decodeMessage when a list of messages had a null item (see JsonNilMessage). */
let nilMessage = false;

/**
 * A request `v` (an object, or null for an empty message) as `schema`'s canonical proto3 JSON.
 * @throws JsonDecodeError for what jsonpb refuses; then JsonNilMessage for a null item in a list
 *   of messages, which etcd meets only once the whole request is decoded
 */
export function decodeRequestMessage(schema: DescMessage, v: RawJson): JsonObject {
  nilMessage = false;
  const out = decodeMessage(schema, v);
  if (nilMessage) throw new JsonNilMessage(`null item in a list of messages of ${schema.typeName}`);
  return out;
}

/** `v` (an object, or null for an empty message) as `schema`'s canonical proto3 JSON; throws JsonDecodeError. */
function decodeMessage(schema: DescMessage, v: RawJson): JsonObject {
  if (v.kind === 'null') return {};
  if (v.kind !== 'object') throw typeError(v, 'map[string]json.RawMessage');
  const out: JsonObject = {};
  for (const field of schema.fields) {
    const value = v.fields.get(field.jsonName) ?? v.fields.get(field.name);
    if (value === undefined || value.kind === 'null') continue;
    if (field.fieldKind === 'list') {
      // jsonpb looks a quoted value up as an enum name before it checks for a list.
      if (value.kind === 'string' && field.listKind === 'enum') {
        const known = field.enum.values.some((x) => x.name === value.value);
        throw new JsonDecodeError(known ? `invalid target "slice" for enum ${goEnumName(field.enum)}` : `unknown value ${JSON.stringify(value.value)} for enum ${goEnumName(field.enum)}`);
      }
      if (value.kind !== 'array') throw typeError(value, '[]json.RawMessage');
      const desc = field.listKind === 'enum' ? field.enum : field.listKind === 'message' ? field.message : undefined;
      // jsonpb leaves a null item at its zero value, a nil pointer in a list of messages.
      if (field.listKind === 'message' && value.items.some((item) => item.kind === 'null')) nilMessage = true;
      out[field.jsonName] = value.items.map((item) => (item.kind === 'null' ? zeroItem(field) : singular(field, item, field.listKind, field.scalar, desc)));
    } else if (field.fieldKind === 'map') {
      throw new JsonDecodeError(`field ${field.name}: map fields are not served by the gateway`);
    } else {
      const desc = field.fieldKind === 'enum' ? field.enum : field.fieldKind === 'message' ? field.message : undefined;
      // Of a oneof's members given together, the last declared stands.
      for (const member of field.oneof?.fields ?? []) delete out[member.jsonName];
      out[field.jsonName] = singular(field, value, field.fieldKind, field.fieldKind === 'scalar' ? field.scalar : undefined, desc);
    }
  }
  return out;
}
