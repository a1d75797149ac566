// The gateway's JSON answers (src/server/http/jsonpb-encode.ts) must be byte for byte what
// `JSON.stringify(toJson(schema, message, { useProtoFieldName: true }))` of @bufbuild/protobuf
// makes of the same message, the gateway's text until the writer replaced it. Random messages of
// every response type of the protos (and of a test type with every kind of field the writer
// takes) are encoded, decoded as the gateway decodes an answer, and written both ways: fields at
// and off their zero values, set but empty messages, oneofs, enum numbers the enum does not
// know, lists, maps, strings of any code points, and messages merged from two encodings with
// fields the type does not know.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, createFileRegistry, fromBinary, fromJson, ScalarType, toBinary, toJson, type DescField, type DescMessage, type Message } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, TimestampSchema, type FieldDescriptorProtoJson } from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { DESCRIPTOR_SET_BASE64 } from '../../src/proto/gen/descriptor-set.gen.js';
import { jsonMessageWriter } from '../../src/server/http/jsonpb-encode.js';

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')));

/** Every response message type of every method of the protos (those the gateway serves among them). */
const responses = [...new Set([...registry].flatMap((d) => (d.kind === 'service' ? d.methods.map((m) => m.output) : [])))];

/** The scalar types, by the name used for the test type's fields. */
const SCALARS: Record<string, ScalarType> = {
  double: ScalarType.DOUBLE,
  float: ScalarType.FLOAT,
  int64: ScalarType.INT64,
  uint64: ScalarType.UINT64,
  int32: ScalarType.INT32,
  fixed64: ScalarType.FIXED64,
  fixed32: ScalarType.FIXED32,
  bool: ScalarType.BOOL,
  string: ScalarType.STRING,
  bytes: ScalarType.BYTES,
  uint32: ScalarType.UINT32,
  sfixed32: ScalarType.SFIXED32,
  sfixed64: ScalarType.SFIXED64,
  sint32: ScalarType.SINT32,
  sint64: ScalarType.SINT64,
};

/**
 * A proto3 type with every kind of field (fields declared out of number order), and a proto2
 * type whose unset fields have defaults (explicit presence outside proto3).
 */
function testTypes(): { every: DescMessage; legacy: DescMessage } {
  const scalars = Object.entries(SCALARS);
  const ENUMS = new Set(['.t.Color', '.t.Level']);
  const field = (name: string, number: number, type: string, more: Partial<FieldDescriptorProtoJson> = {}): FieldDescriptorProtoJson => ({
    name,
    number,
    label: 'LABEL_OPTIONAL',
    type: type.startsWith('.') ? (ENUMS.has(type) ? 'TYPE_ENUM' : 'TYPE_MESSAGE') : (`TYPE_${type.toUpperCase()}` as FieldDescriptorProtoJson['type']),
    ...(type.startsWith('.') ? { typeName: type } : {}),
    ...more,
  });
  const entry = (name: string, key: string, value: string) => ({ name, field: [field('key', 1, key), field('value', 2, value)], options: { mapEntry: true } });
  const maps: [string, string, string][] = [
    ['m_int32_string', 'int32', 'string'],
    ['m_string_every', 'string', '.t.Every'],
    ['m_bool_color', 'bool', '.t.Color'],
    ['m_uint64_bytes', 'uint64', 'bytes'],
    ['m_sint64_double', 'sint64', 'double'],
  ];
  const everyFields: FieldDescriptorProtoJson[] = [
    ...scalars.map(([name], i) => field(`s_${name}`, i + 1, name)),
    ...scalars.map(([name], i) => field(`r_${name}`, 101 + i, name, { label: 'LABEL_REPEATED' })),
    field('color', 20, '.t.Color'),
    field('colors', 21, '.t.Color', { label: 'LABEL_REPEATED' }),
    field('child', 22, '.t.Every'),
    field('children', 23, '.t.Every', { label: 'LABEL_REPEATED' }),
    field('opt_int32', 24, 'int32', { oneofIndex: 1, proto3Optional: true }),
    field('opt_string', 25, 'string', { oneofIndex: 2, proto3Optional: true }),
    field('c_string', 30, 'string', { oneofIndex: 0 }),
    field('c_every', 31, '.t.Every', { oneofIndex: 0 }),
    field('c_bytes', 32, 'bytes', { oneofIndex: 0 }),
    field('c_color', 33, '.t.Color', { oneofIndex: 0 }),
    ...maps.map(([name], i) => field(name, 40 + i, `.t.Every.${name.toUpperCase()}Entry`, { label: 'LABEL_REPEATED' })),
  ].reverse();
  const set = fromJson(FileDescriptorSetSchema, {
    file: [
      {
        name: 't3.proto',
        package: 't',
        syntax: 'proto3',
        enumType: [{ name: 'Color', value: [{ name: 'COLOR_NONE', number: 0 }, { name: 'RED', number: 1 }, { name: 'BLUE', number: 5 }] }],
        messageType: [
          {
            name: 'Every',
            field: everyFields,
            oneofDecl: [{ name: 'choice' }, { name: '_opt_int32' }, { name: '_opt_string' }],
            nestedType: maps.map(([name, key, value]) => entry(`${name.toUpperCase()}Entry`, key, value)),
          },
        ],
      },
      {
        name: 't2.proto',
        package: 't',
        syntax: 'proto2',
        dependency: ['t3.proto'],
        enumType: [{ name: 'Level', value: [{ name: 'LOW', number: 3 }, { name: 'HIGH', number: 4 }] }],
        messageType: [
          {
            name: 'Legacy',
            field: [
              field('i', 1, 'int32', { defaultValue: '7' }),
              field('s', 2, 'string', { defaultValue: 'x' }),
              field('level', 3, '.t.Level', { defaultValue: 'HIGH' }),
              field('b', 4, 'bytes'),
              field('u', 5, 'uint64', { defaultValue: '9' }),
              field('legacy', 6, '.t.Legacy'),
              field('every', 7, '.t.Every'),
              field('r', 8, 'sint64', { label: 'LABEL_REPEATED' }),
            ],
          },
        ],
      },
    ],
  });
  const types = createFileRegistry(set);
  return { every: types.getMessage('t.Every')!, legacy: types.getMessage('t.Legacy')! };
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Strings of any code points (lone surrogates too) and of the characters JSON escapes. */
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', '"', '\\', '\u0000\u001f\u007f', '\u2028\u2029', '</script>', 'é€😀'));

/** A value of a scalar type, zero often. */
function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.DOUBLE:
      return fc.oneof(fc.constant(0), fc.double());
    case ScalarType.FLOAT:
      return fc.oneof(fc.constant(0), fc.float());
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.constantFrom(0n, -1n, INT64_MIN, INT64_MAX, 2n ** 53n + 1n), fc.bigInt({ min: INT64_MIN, max: INT64_MAX }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.constantFrom(0n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constant(0), fc.integer());
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      // Lengths of each base64 padding, and past the writer's short-text loop.
      return fc.oneof(fc.uint8Array({ maxLength: 5 }), fc.uint8Array({ maxLength: 200 }));
  }
}

/** A map key of a scalar type, as the key of the map's record. */
function mapKey(type: ScalarType): fc.Arbitrary<string> {
  return type === ScalarType.STRING ? text : scalar(type).map(String);
}

/** A value of one field (a list's items, a map's values), messages down to `depth` levels. */
function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  const one = (): fc.Arbitrary<unknown> => {
    if (field.message) return message(field.message, depth - 1);
    // Names and numbers the enum does not know, negative ones too.
    if (field.enum) return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), fc.integer({ min: -3, max: 40 }));
    return scalar(field.scalar!);
  };
  if (field.fieldKind === 'list') return field.listKind === 'message' && depth <= 0 ? fc.constant([]) : fc.array(one(), { maxLength: 3 });
  if (field.fieldKind === 'map') {
    if (field.mapKind === 'message' && depth <= 0) return fc.constant({});
    return fc.dictionary(mapKey(field.mapKey), one(), { maxKeys: 3 });
  }
  return one();
}

/** A message of type `desc`: each field set or not, nested messages down to `depth` levels. */
function message(desc: DescMessage, depth: number): fc.Arbitrary<Message> {
  const init: Record<string, fc.Arbitrary<unknown>> = {};
  for (const member of desc.members) {
    if (member.kind === 'oneof') {
      const cases = member.fields.filter((f) => !f.message || depth > 0).map((f) => fieldValue(f, depth).map((value) => ({ case: f.localName, value })));
      init[member.localName] = fc.oneof(fc.constant({ case: undefined }), ...cases);
    } else if (member.message && member.fieldKind === 'message') {
      init[member.localName] = depth > 0 ? fc.option(fieldValue(member, depth), { nil: undefined }) : fc.constant(undefined);
    } else init[member.localName] = fc.option(fieldValue(member, depth), { nil: undefined });
  }
  return fc.record(init).map((fields) => create(desc, Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined))));
}

/** Field 9999 (a varint), which none of the types has. */
const UNKNOWN_FIELD = Buffer.from([0xf8, 0xf0, 0x04, 0x01]);

/** An answer's bytes: one message (nested `depth` levels deep), or two merged (lists appended, the last scalar and oneof case winning), with an unknown field or not. */
function answerBytes(desc: DescMessage, depth: number): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(message(desc, depth), fc.option(message(desc, depth - 1), { nil: undefined }), fc.boolean())
    .map(([first, second, unknown]) => Buffer.concat([toBinary(desc, first), second ? toBinary(desc, second) : Buffer.alloc(0), unknown ? UNKNOWN_FIELD : Buffer.alloc(0)]));
}

/** Writes the message decoded from `bytes` both ways, from a buffer of `capacity` bytes (so that it grows), and compares. */
function assertSameJson(desc: DescMessage, bytes: Uint8Array, capacity: number): void {
  const decoded = fromBinary(desc, bytes);
  const expected = JSON.stringify(toJson(desc, decoded, { useProtoFieldName: true }));
  const written = jsonMessageWriter(desc)(decoded, capacity);
  assert.equal(written.toString('utf8'), expected, desc.typeName);
  assert.ok(written.equals(Buffer.from(expected)), `${desc.typeName}: the UTF-8 of the same text`);
}

// A failure is reported as found (endOnFailure): shrinking these nested messages takes many minutes.
describe('gateway JSON answers (jsonpb-encode)', () => {
  it('writes every response type as JSON.stringify(toJson(…, { useProtoFieldName: true })) does', () => {
    assert.ok(responses.length > 40, `${responses.length} response types`);
    fc.assert(
      fc.property(
        fc.constantFrom(...responses).chain((desc) => fc.tuple(fc.constant(desc), answerBytes(desc, 3), fc.nat(300))),
        ([desc, bytes, capacity]) => assertSameJson(desc, bytes, capacity),
      ),
      { numRuns: 3000, endOnFailure: true },
    );
  });

  it('writes every kind of field as toJson does: all scalar types, enums, lists, maps, oneofs, optional and proto2 fields', () => {
    const { every, legacy } = testTypes();
    for (const desc of [every, legacy]) {
      fc.assert(
        fc.property(answerBytes(desc, 2), fc.nat(300), (bytes, capacity) => assertSameJson(desc, bytes, capacity)),
        { numRuns: 500, endOnFailure: true },
      );
    }
  });

  it('writes a large Range answer, of 20 KB values, as toJson does', () => {
    const RangeResponse = registry.getMessage('etcdserverpb.RangeResponse')!;
    const kvs = Array.from({ length: 50 }, (_, i) => ({ key: Buffer.from(`big/${i}`), createRevision: BigInt(i + 2), modRevision: BigInt(i + 2), version: 1n, value: Buffer.alloc(20_000 + i, i) }));
    const bytes = toBinary(RangeResponse, create(RangeResponse, { header: { clusterId: 1n, revision: 51n }, kvs, count: 50n }));
    assertSameJson(RangeResponse, bytes, 256);
    assertSameJson(RangeResponse, bytes, Math.ceil(bytes.length * 1.5));
  });

  it('refuses types with a JSON form of their own', () => {
    assert.throws(() => jsonMessageWriter(TimestampSchema), /google\.protobuf\.Timestamp, a type with its own JSON form/);
  });
});
