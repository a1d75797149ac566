// The watch stream's transport on a grpc-js call (src/server/grpc/watch-service.ts): gRPC
// framing of a response given as parts, one message per HTTP/2 write callback, the response
// headers first, and the fallback through grpc-js when its HTTP/2 stream cannot be reached.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { callTransport } from '../../src/server/grpc/watch-service.js';
import type { WatchRequest } from '../../src/proto/gen/rpc.gen.js';

type Call = ServerDuplexStream<WatchRequest, Buffer>;

test('responses go to the HTTP/2 stream as gRPC messages, one per write callback, after the headers', async () => {
  const writes: Buffer[] = [];
  const callbacks: (() => void)[] = [];
  const events: string[] = [];
  const stream = { destroyed: false, writableEnded: false, write: (b: Buffer, cb: () => void) => (writes.push(b), callbacks.push(cb), events.push('data'), true) };
  const call = Object.assign(new EventEmitter(), { call: { stream }, sendMetadata: () => events.push('headers') }) as unknown as Call;
  let drained = 0;
  const t = callTransport(call, () => drained++);

  const parts = [Buffer.from('ab'), Buffer.from('cde')];
  assert.equal(t.write(parts, 5), false, 'full until this message is written');
  assert.deepEqual(writes, [Buffer.from([0, 0, 0, 0, 5, ...Buffer.from('abcde')])]);
  assert.deepEqual(parts, [Buffer.from('ab'), Buffer.from('cde')], 'shared parts are not changed');
  assert.equal(drained, 0);
  callbacks[0]!();
  assert.equal(drained, 1, 'the write callback lets the next message go');
  t.write([Buffer.alloc(300, 1)], 300);
  assert.deepEqual(writes[1]!.subarray(0, 5), Buffer.from([0, 0, 0, 1, 44]));
  assert.deepEqual(events, ['headers', 'data', 'data'], 'headers once, before the first message');

  stream.destroyed = true;
  assert.equal(t.write(parts, 5), true, 'a closed stream takes (and drops) everything');
  assert.equal(writes.length, 2);
});

test('without a reachable HTTP/2 stream, responses go through grpc-js, whole', () => {
  const written: Buffer[] = [];
  const call = Object.assign(new EventEmitter(), { write: (b: Buffer) => (written.push(b), written.length < 2) }) as unknown as Call;
  let drained = 0;
  const t = callTransport(call, () => drained++);
  assert.equal(t.write([Buffer.from('x'), Buffer.from('yz')], 3), true);
  assert.equal(t.write([Buffer.from('q')], 1), false);
  assert.deepEqual(written, [Buffer.from('xyz'), Buffer.from('q')]);
  (call as unknown as EventEmitter).emit('drain');
  assert.equal(drained, 1);
});
