// The gateway's JSON request decoding (src/server/http/jsonpb.ts) on random input: the reader
// splits a body into the values it holds, whole or in any two pieces; 64-bit integers survive
// exactly; standard base64 decodes to the bytes it encodes, with line breaks anywhere; and a
// decoded request turns into the protobuf message @bufbuild/protobuf builds from the same
// fields. The error texts are compared with the real etcd in test/compat/gateway.compat.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createFileRegistry, fromBinary, fromJson, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { DESCRIPTOR_SET_BASE64 } from '../../src/proto/gen/descriptor-set.gen.js';
import { readJsonValues, type RawJson } from '../../src/server/http/go-json.js';
import { decodeRequestMessage, decodeStdBase64 } from '../../src/server/http/jsonpb.js';

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')));
const RangeRequest = registry.getMessage('etcdserverpb.RangeRequest')!;

/** A RawJson back to plain JS, numbers as their text (to compare with JSON.parse of the same text). */
function plain(v: RawJson): unknown {
  switch (v.kind) {
    case 'object':
      return Object.fromEntries([...v.fields].map(([k, x]) => [k, plain(x)]));
    case 'array':
      return v.items.map(plain);
    case 'number':
      return Number(v.text);
    case 'null':
      return null;
    default:
      return v.value;
  }
}

describe('gateway JSON decoding (jsonpb)', () => {
  it('reads every value of a body of concatenated JSON values, whole or cut in two anywhere', () => {
    fc.assert(
      fc.property(fc.array(fc.jsonValue(), { minLength: 1, maxLength: 4 }), fc.nat(), fc.constantFrom(' ', '\n', ' \r\n\t'), (values, cutAt, sep) => {
        const text = values.map((v) => JSON.stringify(v)).join(sep);
        const whole = readJsonValues(text, true);
        assert.equal(whole.error, undefined);
        assert.deepEqual(whole.values.map(plain), values.map((v) => JSON.parse(JSON.stringify(v)) as unknown));
        // Streamed in two pieces: the first read keeps an unfinished value for the second.
        const cut = cutAt % (text.length + 1);
        const first = readJsonValues(text.slice(0, cut), false);
        assert.equal(first.error, undefined);
        const second = readJsonValues(text.slice(first.rest), true);
        assert.deepEqual([...first.values, ...second.values].map(plain), whole.values.map(plain));
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps 64-bit integers exact, as numbers or strings', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), fc.boolean(), (n, quoted) => {
        const text = `{"revision":${quoted ? `"${n}"` : n}}`;
        const decoded = decodeRequestMessage(RangeRequest, readJsonValues(text, true).values[0]!);
        assert.equal(decoded.revision, n.toString());
      }),
      { numRuns: 500 },
    );
    const tooBig = readJsonValues('{"revision":9223372036854775808}', true).values[0]!;
    assert.throws(() => decodeRequestMessage(RangeRequest, tooBig), { message: 'json: cannot unmarshal number 9223372036854775808 into Go value of type int64' });
  });

  it('decodes standard base64 with padding, line breaks skipped, as Go does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 3 }), (bytes, breaks) => {
        let text = Buffer.from(bytes).toString('base64');
        for (const at of breaks) {
          const i = at % (text.length + 1);
          text = `${text.slice(0, i)}\r\n${text.slice(i)}`;
        }
        assert.deepEqual(decodeStdBase64(text), Buffer.from(bytes));
      }),
      { numRuns: 1000 },
    );
    for (const [text, at] of [['Zm9', 0], ['Zm9v-_', 4], ['!!!', 0], ['Zm9=v', 4], ['Zg=', 3], ['Zg==x', 4], ['Z===', 1]] as const) {
      assert.throws(() => decodeStdBase64(text), { message: `illegal base64 data at input byte ${at}` }, text);
    }
  });

  it('builds the message @bufbuild/protobuf builds from the same fields', () => {
    const request = fc.record(
      {
        key: fc.uint8Array({ maxLength: 8 }),
        range_end: fc.uint8Array({ maxLength: 8 }),
        limit: fc.bigInt({ min: 0n, max: 1n << 40n }),
        sort_order: fc.constantFrom('NONE', 'ASCEND', 'DESCEND'),
        keys_only: fc.boolean(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(request, (r) => {
        const json: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(r)) json[k] = v instanceof Uint8Array ? Buffer.from(v).toString('base64') : typeof v === 'bigint' ? v.toString() : v;
        const text = JSON.stringify(json);
        const ours = toBinary(RangeRequest, fromJson(RangeRequest, decodeRequestMessage(RangeRequest, readJsonValues(text, true).values[0]!)));
        assert.deepEqual(ours, toBinary(RangeRequest, fromJson(RangeRequest, JSON.parse(text) as never)));
      }),
      { numRuns: 500 },
    );
  });
});
