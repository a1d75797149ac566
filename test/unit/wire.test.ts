// The hand-written protobuf encoders (src/proto/wire.ts) must write exactly the bytes the
// generated encoders write: the backend's records and every watch event are made by them, and
// etcd's hashes and clients read those bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KeyValue } from '../../src/proto/gen/kv.gen.js';
import { marshalKeyValue, pushVarint } from '../../src/proto/wire.js';

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

test('marshalKeyValue writes what KeyValue.encode writes', () => {
  fc.assert(
    fc.property(bytes, int64, int64, int64, bytes, int64, (key, createRevision, modRevision, version, value, lease) => {
      const kv: KeyValue = { key, createRevision, modRevision, version, value, lease };
      assert.deepEqual(marshalKeyValue(kv), Buffer.from(KeyValue.encode(kv).finish()));
    }),
    { numRuns: 500 },
  );
});

test('marshalKeyValue refuses an int64 field outside int64, like KeyValue.encode', () => {
  const kv: KeyValue = { key: Buffer.from('k'), createRevision: 0n, modRevision: INT64_MAX + 1n, version: 0n, value: Buffer.alloc(0), lease: 0n };
  assert.throws(() => KeyValue.encode(kv));
  assert.throws(() => marshalKeyValue(kv), RangeError);
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
