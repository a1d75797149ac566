import assert from 'node:assert/strict';
import { test } from 'node:test';
import hpack from 'hpack.js';
import { AuthorityFixer } from '../../src/server/h2-authority.js';
import { PREFACE, frame, literalBlock } from '../helpers/h2-frames.js';

/** A header block of "literal with incremental indexing, new name" entries (adds to the table). */
const indexedLiterals = (headers: [string, string][]): Buffer => literalBlock(headers, true);

/** Splits the fixer's output into frames and decodes every header block in order. */
function decodeOutput(out: Buffer): { types: number[]; blocks: Record<string, string>[] } {
  const d = hpack.decompressor.create({ table: { size: 4096 } });
  assert.deepEqual(out.subarray(0, 24), PREFACE);
  const types: number[] = [];
  const blocks: Record<string, string>[] = [];
  for (let off = 24; off < out.length; ) {
    const len = out.readUIntBE(off, 3);
    const type = out[off + 3]!;
    types.push(type);
    if (type === 1) {
      d.write(out.subarray(off + 9, off + 9 + len));
      d.execute();
      const h: Record<string, string> = {};
      for (let x = d.read(); x; x = d.read()) h[x.name] = x.value;
      blocks.push(h);
    }
    off += 9 + len;
  }
  return { types, blocks };
}

async function run(input: Buffer[]): Promise<Buffer> {
  const fixer = new AuthorityFixer();
  const chunks: Buffer[] = [];
  for (const c of input) fixer.feed(c, (b) => chunks.push(Buffer.from(b)));
  return Buffer.concat(chunks);
}

test('a valid authority passes through byte for byte', async () => {
  const block = indexedLiterals([[':authority', '127.0.0.1:2379'], [':path', '/etcdserverpb.KV/Range']]);
  const input = Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 4, 1, block), frame(0, 1, 1, Buffer.from('data'))]);
  assert.deepEqual(await run([input]), input);
});

test('an invalid authority becomes localhost, and later blocks that index the client table still decode', async () => {
  const first = indexedLiterals([[':authority', 'http://127.0.0.1:2379'], ['x-etcd', 'one']]);
  // The second block refers to dynamic table entries the first block added (index 62 = newest).
  const second = Buffer.from([0x80 | 62, 0x80 | 63]);
  const input = Buffer.concat([PREFACE, frame(1, 4, 1, first), frame(0, 1, 1, Buffer.from('d')), frame(1, 4 | 1, 3, second)]);
  // Feed it one byte at a time: frames split across chunks must be reassembled.
  const out = await run([...input].map((b) => Buffer.from([b])));
  const { types, blocks } = decodeOutput(out);
  assert.deepEqual(types, [1, 0, 1]);
  assert.deepEqual(blocks[0], { ':authority': 'localhost', 'x-etcd': 'one' });
  assert.deepEqual(blocks[1], { 'x-etcd': 'one', ':authority': 'localhost' });
  assert.equal(out.readUInt8(24 + 9 + out.readUIntBE(24, 3) + 9 + 1 + 4) & 1, 1, 'END_STREAM of the second HEADERS kept');
});

test('a block split over CONTINUATION frames is reassembled and rewritten', async () => {
  const block = indexedLiterals([[':authority', '#initially=[http://a:1]'], [':path', '/p']]);
  const input = Buffer.concat([PREFACE, frame(1, 0, 5, block.subarray(0, 7)), frame(9, 4, 5, block.subarray(7))]);
  const { types, blocks } = decodeOutput(await run([input]));
  assert.deepEqual(types, [1]);
  assert.deepEqual(blocks[0], { ':authority': 'localhost', ':path': '/p' });
});
