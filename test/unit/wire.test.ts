// The hand-written protobuf encoders (src/proto/wire.ts) must write exactly the bytes the
// generated encoders write: the backend's records, every watch event and the KV answers are
// made by them, and etcd's hashes and clients read those bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KeyValue } from '../../src/proto/gen/kv.gen.js';
import { DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse, type ResponseHeader } from '../../src/proto/gen/rpc.gen.js';
import { marshalDeleteRangeResponse, marshalHeaderField, marshalKeyValue, marshalPutResponse, marshalRangeResponse, marshalTxnResponse, pushVarint, readKeyValueHead, RecordFields, unmarshalKeyValue, type EncodedTxnResponse } from '../../src/proto/wire.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** int64 values around every varint length boundary, zero, negatives and the extremes. */
const int64 = fc.oneof(
  fc.constantFrom(0n, 1n, 127n, 128n, 16383n, 16384n, 2n ** 53n - 1n, 2n ** 53n, -1n, INT64_MIN, INT64_MAX),
  fc.bigInt({ min: 0n, max: 1n << 40n }),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
);
/** Byte strings of 0 bytes, of a one-byte length and of multi-byte lengths. */
const bytes = fc.oneof(fc.uint8Array({ maxLength: 4 }), fc.uint8Array({ minLength: 120, maxLength: 20_000 })).map((u) => Buffer.from(u));

const keyValue = fc.record({ key: bytes, createRevision: int64, modRevision: int64, version: int64, value: bytes, lease: int64 });
const uint64 = fc.oneof(fc.constantFrom(0n, 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const header = fc.option(fc.record({ clusterId: uint64, memberId: uint64, revision: int64, raftTerm: uint64 }), { nil: undefined }) as fc.Arbitrary<ResponseHeader | undefined>;
const kvs = fc.array(keyValue, { maxLength: 4 });

test('marshalKeyValue writes what KeyValue.encode writes', () => {
  fc.assert(
    fc.property(keyValue, (kv) => {
      assert.deepEqual(marshalKeyValue(kv), Buffer.from(KeyValue.encode(kv).finish()));
    }),
    { numRuns: 500 },
  );
});

/** Fields KeyValue does not know, of every wire type, and known fields of the wrong wire type. */
const foreign = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.concat([Buffer.from([(11 << 3) | 2, u.length]), u])),
      fc.constant(Buffer.concat([Buffer.from([(9 << 3) | 1]), Buffer.alloc(8, 7)])),
      fc.constant(Buffer.concat([Buffer.from([(10 << 3) | 5]), Buffer.alloc(4, 7)])),
      fc.constant(Buffer.from([12 << 3, 0x80, 0x01])),
      fc.constant(Buffer.from([1 << 3, 0x05])), // key as a varint
      fc.constant(Buffer.from([(2 << 3) | 2, 1, 0x61])), // create_revision as bytes
    ),
    { maxLength: 3 },
  )
  .map((parts) => Buffer.concat(parts));

test('unmarshalKeyValue and readKeyValueHead read what KeyValue.decode reads', () => {
  fc.assert(
    fc.property(keyValue, foreign, foreign, fc.boolean(), (kv, before, after, twice) => {
      const encoded = Buffer.from(KeyValue.encode(kv).finish());
      // Fields in any place; a field repeated (the last one wins).
      const bytes = Buffer.concat([before, twice ? marshalKeyValue({ ...kv, key: Buffer.from('first'), lease: 5n }) : Buffer.alloc(0), encoded, after]);
      const want = KeyValue.decode(bytes);
      assert.deepEqual(unmarshalKeyValue(bytes), want);
      // The head: revisions and versions as numbers, as the store keeps them (exact up to 2^53).
      const head = readKeyValueHead(bytes);
      assert.deepEqual(head, { key: want.key.toString('latin1'), createRevision: Number(BigInt.asIntN(64, want.createRevision)), version: Number(want.version), lease: want.lease });
    }),
    { numRuns: 500 },
  );
  // A zero tag ends the message, as in the generated decoder.
  const stop = Buffer.concat([marshalKeyValue({ key: Buffer.from('k'), createRevision: 1n, modRevision: 2n, version: 1n, value: Buffer.from('v'), lease: 0n }), Buffer.from([0, (1 << 3) | 2, 1, 0x78])]);
  assert.deepEqual(unmarshalKeyValue(stop), KeyValue.decode(stop));
  assert.equal(readKeyValueHead(stop).key, 'k');
  for (const bad of [[(1 << 3) | 2, 5, 0x61], [2 << 3, 0x80], [(2 << 3) | 3]]) {
    assert.throws(() => unmarshalKeyValue(Buffer.from(bad)), RangeError);
    assert.throws(() => readKeyValueHead(Buffer.from(bad)), RangeError);
  }
});

/** The KeyValues' stored records as repeated field `field`, written by `RecordFields`. */
function fieldsOf(field: number, list: readonly KeyValue[]): Buffer[] {
  const fields = new RecordFields(field);
  for (const kv of list) fields.add(marshalKeyValue(kv));
  return fields.parts();
}

/** An encoder's bytes, joined when it gave them as buffers to send in order. */
function joined(out: Buffer | Buffer[]): Buffer {
  return Buffer.isBuffer(out) ? out : Buffer.concat(out);
}

test('the Range, Put and DeleteRange response and header encoders write what the generated encoders write', () => {
  fc.assert(
    fc.property(header, kvs, fc.boolean(), int64, fc.option(keyValue, { nil: undefined }), (h, list, more, n, prev) => {
      const range: RangeResponse = { header: h, kvs: list, more, count: n };
      const generated = Buffer.from(RangeResponse.encode(range).finish());
      assert.deepEqual(marshalRangeResponse(range), generated);
      // The same KeyValues given as stored records (what a Range answer copies as they are).
      assert.deepEqual(joined(marshalRangeResponse({ header: h, kvs: [], kvFields: fieldsOf(2, list), more, count: n })), generated);
      const put: PutResponse = { header: h, prevKv: prev };
      assert.deepEqual(marshalPutResponse(put), Buffer.from(PutResponse.encode(put).finish()));
      if (h !== undefined) assert.deepEqual(marshalHeaderField(h), Buffer.from(PutResponse.encode({ header: h, prevKv: undefined }).finish()));
      const del: DeleteRangeResponse = { header: h, deleted: n, prevKvs: list };
      const generatedDel = Buffer.from(DeleteRangeResponse.encode(del).finish());
      assert.deepEqual(marshalDeleteRangeResponse(del), generatedDel);
      assert.deepEqual(joined(marshalDeleteRangeResponse({ header: h, deleted: n, prevKvs: [], prevKvFields: fieldsOf(3, list) })), generatedDel);
    }),
    { numRuns: 300 },
  );
});

test('the Txn response encoder writes what the generated encoder writes, range answers given as field bytes or not', () => {
  fc.assert(
    fc.property(header, fc.boolean(), fc.array(fc.tuple(header, kvs, fc.boolean(), int64, fc.boolean()), { maxLength: 4 }), (h, succeeded, ranges) => {
      const decoded: TxnResponse = { header: h, succeeded, responses: ranges.map(([rh, list, more, count]) => ({ responseRange: { header: rh, kvs: list, more, count } })) };
      const generated = Buffer.from(TxnResponse.encode(decoded).finish());
      assert.deepEqual(joined(marshalTxnResponse(decoded)), generated);
      // The same answer with some or all of its ranges' KeyValues as field bytes, as a read-only txn sends them.
      const encoded: EncodedTxnResponse = {
        header: h,
        succeeded,
        responses: ranges.map(([rh, list, more, count, asFields]) => ({ responseRange: asFields ? { header: rh, kvs: [], kvFields: fieldsOf(2, list), more, count } : { header: rh, kvs: list, more, count } })),
      };
      assert.deepEqual(joined(marshalTxnResponse(encoded)), generated);
    }),
    { numRuns: 300 },
  );
});

test('RecordFields copies records of any size across its 1 MiB buffers, as the generated encoder writes them', () => {
  // Values around the buffer size: records that fill one exactly, cross into the next, or need one of their own.
  const sizes = [10, 1024 * 1024 - 40, 300, 2 * 1024 * 1024, 0, 700 * 1024, 700 * 1024, 5];
  const list: KeyValue[] = sizes.map((n, i) => ({ key: Buffer.from(`k${i}`), createRevision: 1n, modRevision: BigInt(i + 1), version: 1n, value: Buffer.alloc(n, i + 1), lease: 0n }));
  const fields = new RecordFields(2);
  const scratch = Buffer.alloc(3 * 1024 * 1024);
  for (const kv of list) {
    // Records are handed over in place: a reused buffer, overwritten after each call.
    const record = marshalKeyValue(kv);
    record.copy(scratch);
    fields.add(scratch.subarray(0, record.length));
    scratch.fill(0xee);
  }
  const range: RangeResponse = { header: undefined, kvs: list, more: false, count: BigInt(list.length) };
  const parts = marshalRangeResponse({ ...range, kvs: [], kvFields: fields.parts() });
  assert.ok(Array.isArray(parts) && parts.length > 3, 'the fields span several buffers');
  assert.deepEqual(joined(parts), Buffer.from(RangeResponse.encode(range).finish()));
  assert.equal(fields.bytes, joined(parts).length - joined(marshalRangeResponse({ ...range, kvs: [] })).length);
});

test('RecordFields takes small buffers for a small answer: a single-key read holds no 1 MiB buffer', () => {
  const fields = new RecordFields(2);
  fields.add(marshalKeyValue({ key: Buffer.from('k'), createRevision: 1n, modRevision: 1n, version: 1n, value: Buffer.from('v'), lease: 0n }));
  const held = fields.parts().reduce((sum, part) => sum + part.buffer.byteLength, 0);
  assert.ok(held <= 8192, `one small record holds ${held} bytes of buffers`);
  // Growing: 2,000 records of ~100 bytes fill buffers that double, not 2,000 buffers or one per record.
  const many = new RecordFields(2);
  for (let i = 0; i < 2000; i++) many.add(Buffer.alloc(100, i));
  assert.ok(many.parts().length < 12, `${many.parts().length} buffers`);
});

test('the encoders refuse integers outside their field\'s range, like the generated ones', () => {
  const kv: KeyValue = { key: Buffer.from('k'), createRevision: 0n, modRevision: INT64_MAX + 1n, version: 0n, value: Buffer.alloc(0), lease: 0n };
  assert.throws(() => KeyValue.encode(kv));
  assert.throws(() => marshalKeyValue(kv), RangeError);
  const put: PutResponse = { header: { clusterId: 2n ** 64n, memberId: 0n, revision: 0n, raftTerm: 0n }, prevKv: undefined };
  assert.throws(() => PutResponse.encode(put));
  assert.throws(() => marshalPutResponse(put), RangeError);
});

test('pushVarint writes protobuf varints, negative numbers as ten bytes of two\'s complement', () => {
  const varint = (n: number): number[] => {
    const out: number[] = [];
    pushVarint(out, n);
    return out;
  };
  assert.deepEqual(varint(0), [0]);
  assert.deepEqual(varint(300), [0xac, 0x02]);
  assert.deepEqual(varint(2 ** 53 - 1), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(varint(-1), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
});

test('RecordFields.addKeyOnly writes a stored KeyValue without its value, as the generated encoder writes a keys-only one', () => {
  fc.assert(
    fc.property(kvs, fc.boolean(), (list, inPlace) => {
      const fields = new RecordFields(2);
      const scratch = Buffer.alloc(64 * 1024);
      for (const kv of list) {
        const record = marshalKeyValue(kv);
        // Records are handed over in place: a reused buffer, overwritten after each call.
        if (inPlace) {
          record.copy(scratch);
          fields.addKeyOnly(scratch.subarray(0, record.length));
          scratch.fill(0xee);
        } else fields.addKeyOnly(record);
      }
      const keysOnly: RangeResponse = { header: undefined, kvs: list.map((kv) => ({ ...kv, value: Buffer.alloc(0) })), more: false, count: BigInt(list.length) };
      assert.deepEqual(joined(marshalRangeResponse({ ...keysOnly, kvs: [], kvFields: fields.parts() })), Buffer.from(RangeResponse.encode(keysOnly).finish()));
    }),
    { numRuns: 300 },
  );
});
