// Revision keys (etcd `revToBytes`/`bytesToRev`): 8-byte big-endian main, '_', 8-byte
// big-endian sub, and 't' for a tombstone, for every revision up to 2^53 − 1.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { bytesToRev, isTombstone, revToBytes } from '../../src/mvcc/revision.js';

/** The encoding spelled out with 64-bit integers, as etcd's Go writes it. */
function reference(main: number, sub: number, tombstone: boolean): Buffer {
  const b = Buffer.alloc(tombstone ? 18 : 17);
  b.writeBigUInt64BE(BigInt(main), 0);
  b[8] = 0x5f;
  b.writeBigUInt64BE(BigInt(sub), 9);
  if (tombstone) b[17] = 0x74;
  return b;
}

describe('revision keys', () => {
  it('match the 64-bit big-endian encoding and decode back, across the 32-bit boundary', () => {
    const edges = [0, 1, 255, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER];
    for (const main of edges) {
      for (const sub of edges) {
        for (const tombstone of [false, true]) {
          const b = revToBytes({ main, sub }, tombstone);
          assert.deepEqual(b, reference(main, sub, tombstone), `${main}_${sub}`);
          assert.deepEqual(bytesToRev(b), { main, sub });
          assert.equal(isTombstone(b), tombstone);
        }
      }
    }
  });

  it('order as the revisions do (random pairs)', () => {
    const rev = fc.record({ main: fc.maxSafeNat(), sub: fc.maxSafeNat() });
    fc.assert(
      fc.property(rev, rev, (a, b) => {
        const byRev = Math.sign(a.main !== b.main ? a.main - b.main : a.sub - b.sub);
        assert.equal(Math.sign(Buffer.compare(revToBytes(a), revToBytes(b))), byRev);
        assert.deepEqual(revToBytes(a), reference(a.main, a.sub, false));
      }),
    );
  });
});
