// The watch stream's transport on a grpc-js call (src/server/grpc/watch-service.ts): gRPC
// framing of a response given as parts, the messages of a pass over the send queue in one
// HTTP/2 write of up to WRITE_ROUND_BYTES, one write in flight at a time, the response headers
// first, the bytes of each response counted, and the fallback through grpc-js when its HTTP/2
// stream cannot be reached.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { callTransport, WRITE_ROUND_BYTES } from '../../src/server/grpc/watch-service.js';
import type { WatchRequest } from '../../src/proto/gen/rpc.gen.js';

type Call = ServerDuplexStream<WatchRequest, Buffer>;

/** A gRPC message: uncompressed flag, big-endian length, payload. */
const frame = (payload: Buffer): Buffer => {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
};

test('a pass over the queue goes to the HTTP/2 stream as gRPC messages in one write, after the headers', () => {
  const writes: Buffer[] = [];
  const callbacks: (() => void)[] = [];
  const events: string[] = [];
  const stream = { destroyed: false, writableEnded: false, write: (b: Buffer, cb: () => void) => (writes.push(b), callbacks.push(cb), events.push('data'), true) };
  const call = Object.assign(new EventEmitter(), { call: { stream }, sendMetadata: () => events.push('headers') }) as unknown as Call;
  let drained = 0;
  const sent: number[] = [];
  const t = callTransport(call, () => drained++, (bytes) => sent.push(bytes));

  const parts = [Buffer.from('ab'), Buffer.from('cde')];
  assert.equal(t.write(parts, 5), true, 'a small message is held for the rest of the pass');
  assert.equal(t.write([Buffer.from('f')], 1), true);
  assert.equal(writes.length, 0, 'nothing is written before flush');
  t.flush();
  assert.deepEqual(writes, [Buffer.concat([frame(Buffer.from('abcde')), frame(Buffer.from('f'))])]);
  assert.deepEqual(parts, [Buffer.from('ab'), Buffer.from('cde')], 'shared parts are not changed');
  assert.deepEqual(sent, [5, 1], 'each response counted by its size, framing excluded');

  assert.equal(t.write([Buffer.from('g')], 1), false, 'full while a write is in flight');
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
  while (t.write([big], big.length)) n++;
  assert.equal(n, Math.ceil(WRITE_ROUND_BYTES / 1005) - 1);
  assert.equal(writes.length, 3);
  assert.equal(writes[2]!.length, (n + 1) * 1005);
  assert.deepEqual(writes[2]!.subarray(0, 1010), Buffer.concat([frame(big).subarray(0, 1005), frame(big).subarray(0, 5)]));
  assert.deepEqual(events, ['headers', 'data', 'data', 'data'], 'headers once, before the first message');

  callbacks[2]!();
  stream.destroyed = true;
  assert.equal(t.write(parts, 5), true, 'a closed stream takes (and drops) everything');
  t.flush();
  assert.equal(writes.length, 3);
});

test('without a reachable HTTP/2 stream, responses go through grpc-js, whole', () => {
  const written: Buffer[] = [];
  const call = Object.assign(new EventEmitter(), { write: (b: Buffer) => (written.push(b), written.length < 2) }) as unknown as Call;
  let drained = 0;
  const t = callTransport(call, () => drained++, () => assert.fail('grpc-js counts these in its serializer'));
  assert.equal(t.write([Buffer.from('x'), Buffer.from('yz')], 3), true);
  assert.equal(t.write([Buffer.from('q')], 1), false);
  assert.deepEqual(written, [Buffer.from('xyz'), Buffer.from('q')]);
  (call as unknown as EventEmitter).emit('drain');
  assert.equal(drained, 1);
});
