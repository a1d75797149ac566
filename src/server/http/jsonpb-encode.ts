/**
 * The gRPC gateway's JSON answers, as etcd 3.4's gateway writes them: golang/protobuf 1.3's
 * `jsonpb.Marshaler{OrigName: true}` (grpc-gateway's `JSONPb`) — proto field names in field
 * number order, 64-bit integers as decimal strings, bytes as standard base64 with padding,
 * enums by value name (a number the enum does not know as that number), fields at their zero
 * value and empty lists and maps left out, a set message field as its object even when empty
 * (`{}`), a oneof's set member under its own name.
 *
 * The text is exactly what `JSON.stringify(toJson(schema, message, { useProtoFieldName: true }))`
 * of @bufbuild/protobuf makes of the same message (test/unit/jsonpb-encode.test.ts checks it),
 * which the gateway wrote until it took 15 s for a 60 MB Range answer, most of it garbage
 * collection: @bufbuild's `base64Encode` builds a string one character at a time when there is
 * no `Uint8Array.prototype.toBase64` (Node 20). Here the UTF-8 is written straight from the
 * message into a Buffer, bytes through Node's base64, with no JSON object and no string of the
 * whole answer in between.
 *
 * The writers are compiled once per message type from its descriptor (`DescMessage.fields`,
 * read by their `localName` as `fromBinary` sets them). Message types with a JSON form of their
 * own (google.protobuf's Any, Timestamp, Duration, FieldMask, Struct, wrappers…), NullValue and
 * proto2 `required` fields are refused when the writer is compiled: no gateway answer holds one.
 */
import { ScalarType, type DescField, type DescMessage, type Message } from '@bufbuild/protobuf';
import { hasCustomJsonRepresentation } from '@bufbuild/protobuf/wkt';

/** A message as `fromBinary` makes it: its fields' values by local name. */
type Fields = Record<string, unknown>;

const COMMA = 0x2c;
const QUOTE = 0x22;

/**
 * JSON text written into one growing Buffer: values' texts are short-lived strings copied in
 * as they are made, so a large answer is neither a string of its own size nor a rope of
 * pieces that has to be flattened and then encoded as UTF-8.
 */
class JsonOut {
  buf: Buffer;
  pos = 0;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, capacity));
  }

  /** Makes room for `n` more bytes (doubling, at least). */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.pos++] = c;
  }

  /** Bytes known in advance (a field's name, an enum's). */
  raw(bytes: Buffer): void {
    this.room(bytes.length);
    const { buf } = this;
    for (let i = 0; i < bytes.length; i++) buf[this.pos++] = bytes[i]!;
  }

  /** Text of ASCII characters only (a number, base64). */
  ascii(text: string): void {
    this.room(text.length);
    if (text.length < 32) {
      const { buf } = this;
      for (let i = 0; i < text.length; i++) buf[this.pos++] = text.charCodeAt(i);
    } else this.pos += this.buf.write(text, this.pos, 'latin1');
  }

  /** Any text, as UTF-8. */
  text(text: string): void {
    this.room(3 * text.length);
    this.pos += this.buf.write(text, this.pos, 'utf8');
  }

  /** A field's `"name":`, after a comma unless it is the first one written since `start`. */
  key(name: Buffer, start: number): void {
    if (this.pos !== start) this.byte(COMMA);
    this.raw(name);
  }
}

/** Writes one value's JSON text. */
type ValueWriter = (out: JsonOut, value: unknown) => void;

/** Writes a field (`"name":value`, after a comma unless first since `start`) of `message`, or nothing when it is left out. */
type FieldWriter = (out: JsonOut, message: Fields, start: number) => void;

/** google.protobuf.FeatureSet.FieldPresence. */
const IMPLICIT = 2;
const LEGACY_REQUIRED = 3;

const messageWriters = new WeakMap<DescMessage, ValueWriter>();

/**
 * The writer of `schema`'s JSON text as UTF-8 (see the module's comment), for messages of that
 * type as `fromBinary(schema, …)` makes them; `capacity` is the size (bytes) of the buffer it
 * starts with, which doubles as needed. Throws if the type, or one it holds, has a field the
 * writer refuses.
 */
export function jsonMessageWriter(schema: DescMessage): (message: Message, capacity?: number) => Buffer {
  const write = messageWriter(schema);
  return (message, capacity = 256) => {
    const out = new JsonOut(capacity);
    write(out, message);
    return out.buf.subarray(0, out.pos);
  };
}

/** The writer of a message type's JSON object, compiled on first use. */
function messageWriter(desc: DescMessage): ValueWriter {
  const known = messageWriters.get(desc);
  if (known) return known;
  if (hasCustomJsonRepresentation(desc)) throw new Error(`gateway JSON: no writer for ${desc.typeName}, a type with its own JSON form`);
  const fields: FieldWriter[] = [];
  const write: ValueWriter = (out, message) => {
    out.byte(0x7b);
    const start = out.pos;
    for (let i = 0; i < fields.length; i++) fields[i]!(out, message as Fields, start);
    out.byte(0x7d);
  };
  // Registered before its fields are compiled, so that a type reached again through them
  // (TxnResponse → ResponseOp → TxnResponse) finds this writer.
  messageWriters.set(desc, write);
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) fields.push(fieldWriter(field));
  return write;
}

/** A field's writer: whether it is written (as toJson decides it), then its name and value. */
function fieldWriter(field: DescField): FieldWriter {
  const key = Buffer.from(`${JSON.stringify(field.name)}:`);
  const local = field.localName;
  if (field.fieldKind === 'list') {
    const item = valueWriter(field);
    return (out, message, start) => {
      const list = message[local] as readonly unknown[];
      if (list.length === 0) return;
      out.key(key, start);
      out.byte(0x5b);
      for (let i = 0; i < list.length; i++) {
        if (i > 0) out.byte(COMMA);
        item(out, list[i]);
      }
      out.byte(0x5d);
    };
  }
  if (field.fieldKind === 'map') {
    const entry = valueWriter(field);
    return (out, message, start) => {
      const map = message[local] as Fields;
      // Object.keys' order (integer keys first, ascending) is the order JSON.stringify writes
      // toJson's object in.
      const keys = Object.keys(map);
      if (keys.length === 0) return;
      out.key(key, start);
      out.byte(0x7b);
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) out.byte(COMMA);
        out.text(`${JSON.stringify(keys[i])}:`);
        entry(out, map[keys[i]!]);
      }
      out.byte(0x7d);
    };
  }
  const write = valueWriter(field);
  if (field.oneof) {
    const oneof = field.oneof.localName;
    return (out, message, start) => {
      const set = message[oneof] as { case: string | undefined; value?: unknown };
      if (set.case !== local) return;
      out.key(key, start);
      write(out, set.value);
    };
  }
  if (field.presence === LEGACY_REQUIRED) throw new Error(`gateway JSON: no writer for ${field.toString()}, a required field`);
  if (field.presence !== IMPLICIT) {
    // Explicit presence: an unset field is undefined or, outside proto3, its default on the prototype.
    return (out, message, start) => {
      const value = message[local];
      if (value === undefined || !Object.hasOwn(message, local)) return;
      out.key(key, start);
      write(out, value);
    };
  }
  const isZero = zeroTest(field);
  return (out, message, start) => {
    const value = message[local];
    if (isZero(value)) return;
    out.key(key, start);
    write(out, value);
  };
}

/** Whether a field of implicit presence holds its zero value (and is left out). */
function zeroTest(field: DescField & { fieldKind: 'scalar' | 'enum' | 'message' }): (value: unknown) => boolean {
  if (field.fieldKind === 'enum') {
    const zero = field.enum.values[0]!.number;
    return (value) => value === zero;
  }
  switch (field.scalar) {
    case ScalarType.BOOL:
      return (value) => value === false;
    case ScalarType.STRING:
      return (value) => value === '';
    case ScalarType.BYTES:
      return (value) => (value as Uint8Array).byteLength === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      // -0 is written.
      return (value) => Object.is(value, 0);
    default:
      // A number, a bigint, or (jstype JS_STRING) a string.
      return (value) => value === 0 || value === 0n || value === '0';
  }
}

/** The writer of one value of a field (of its items, for a list; of its values, for a map). */
function valueWriter(field: DescField): ValueWriter {
  if (field.message) return messageWriter(field.message);
  if (field.enum) {
    const desc = field.enum;
    if (desc.typeName === 'google.protobuf.NullValue') throw new Error(`gateway JSON: no writer for ${field.toString()}, a NullValue`);
    const names = new Map(desc.values.map((v) => [v.number, Buffer.from(JSON.stringify(v.jsonName))]));
    return (out, value) => {
      const name = names.get(value as number);
      if (name) out.raw(name);
      else out.ascii(String(value));
    };
  }
  switch (field.scalar!) {
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return (out, value) => {
        out.byte(QUOTE);
        out.ascii(String(value));
        out.byte(QUOTE);
      };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return (out, value) => {
        const n = value as number;
        out.ascii(Number.isFinite(n) ? String(n) : Number.isNaN(n) ? '"NaN"' : n > 0 ? '"Infinity"' : '"-Infinity"');
      };
    case ScalarType.BOOL:
      return (out, value) => out.ascii(value ? 'true' : 'false');
    case ScalarType.STRING:
      return (out, value) => out.text(JSON.stringify(value));
    case ScalarType.BYTES:
      return (out, value) => {
        const bytes = value as Uint8Array;
        out.byte(QUOTE);
        out.ascii(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'));
        out.byte(QUOTE);
      };
    default:
      // The 32-bit integers.
      return (out, value) => out.ascii(String(value));
  }
}
