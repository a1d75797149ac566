// The watch stream's transport on a call (src/server/grpc/watch-service.ts): gRPC framing of a
// response given as parts, the messages of a pass over the send queue in one write of up to
// WRITE_ROUND_BYTES, one write in flight at a time, and the bytes of each response counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callTransport, WRITE_ROUND_BYTES } from '../../src/server/grpc/watch-service.js';

/** A gRPC message: uncompressed flag, big-endian length, payload. */
const frame = (payload: Buffer): Buffer => {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
};

test('a pass over the queue goes to the call as gRPC messages in one write', () => {
  const writes: Buffer[] = [];
  const callbacks: (() => void)[] = [];
  const call = { closed: false, writeFramed: (b: Buffer, cb?: () => void) => (writes.push(b), callbacks.push(cb!), true) };
  let drained = 0;
  const sent: number[] = [];
  const t = callTransport(call, () => drained++, (bytes) => sent.push(bytes));

  const head = Buffer.from('ab');
  const parts = [Buffer.from('c'), Buffer.from('de')];
  assert.equal(t.write(head, parts, 5), true, 'a small message is held for the rest of the pass');
  assert.equal(t.write(Buffer.from('f'), [], 1), true);
  assert.equal(writes.length, 0, 'nothing is written before flush');
  t.flush();
  assert.deepEqual(writes, [Buffer.concat([frame(Buffer.from('abcde')), frame(Buffer.from('f'))])]);
  assert.deepEqual([head, ...parts], [Buffer.from('ab'), Buffer.from('c'), Buffer.from('de')], 'shared parts are not changed');
  assert.deepEqual(sent, [5, 1], 'each response counted by its size, framing excluded');

  assert.equal(t.write(Buffer.from('g'), [], 1), false, 'full while a write is in flight');
  t.flush();
  assert.equal(writes.length, 1, 'the next write waits for the callback');
  assert.equal(drained, 0);
  callbacks[0]!();
  assert.equal(drained, 1, 'the write callback lets the next pass go');
  t.flush();
  assert.deepEqual(writes[1], frame(Buffer.from('g')));
  callbacks[1]!();

  // A pass writes as soon as it holds WRITE_ROUND_BYTES, then is full.
  const big = Buffer.alloc(1000, 1);
  let n = 0;
  while (t.write(big, [], big.length)) n++;
  assert.equal(n, Math.ceil(WRITE_ROUND_BYTES / 1005) - 1);
  assert.equal(writes.length, 3);
  assert.equal(writes[2]!.length, (n + 1) * 1005);
  assert.deepEqual(writes[2]!.subarray(0, 1010), Buffer.concat([frame(big).subarray(0, 1005), frame(big).subarray(0, 5)]));

  callbacks[2]!();
  call.closed = true;
  assert.equal(t.write(head, parts, 5), true, 'a closed call takes (and drops) everything');
  t.flush();
  assert.equal(writes.length, 3);
});

test('the pass a write callback starts reuses that write\'s buffer; a later pass gets its own', () => {
  const writes: Buffer[] = [];
  const callbacks: (() => void)[] = [];
  const call = { closed: false, writeFramed: (b: Buffer, cb?: () => void) => (writes.push(b), callbacks.push(cb!), true) };
  const big = Buffer.alloc(WRITE_ROUND_BYTES, 1);
  const small = Buffer.alloc(100, 2);
  // The stream's next pass runs inside the callback (as WatchStream.drained does).
  let onDrain = (): void => {
    t.write(small, [], small.length);
    t.flush();
  };
  const t = callTransport(call, () => onDrain(), () => {});
  t.write(big, [], big.length);
  t.flush();
  callbacks[0]!();
  assert.equal(writes.length, 2);
  assert.equal(writes[1]!.buffer, writes[0]!.buffer, 'the second write is copied into the first one\'s memory');
  assert.equal(writes[1]!.byteOffset, writes[0]!.byteOffset);
  assert.deepEqual(writes[1], frame(small), 'and only its own bytes are written');

  onDrain = () => {};
  callbacks[1]!();
  t.write(small, [], small.length);
  t.flush();
  assert.equal(writes.length, 3);
  assert.notEqual(writes[2]!.buffer, writes[0]!.buffer, 'an idle transport kept no buffer');
  assert.deepEqual(writes[2], frame(small));
});
