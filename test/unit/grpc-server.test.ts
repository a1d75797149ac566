// Our gRPC server's send limit (grpc-go's MaxSendMsgSize, math.MaxInt32 in etcd): a response
// larger than it ends the call with etcd's RESOURCE_EXHAUSTED status instead of being sent.
// Driven through `invoke` with a stand-in stream, with a small limit.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { status as GrpcStatus, type ServiceDefinition } from '@grpc/grpc-js';
import { GrpcServer, MAX_SEND_MESSAGE_BYTES, type CallStream, type ServerCall } from '../../src/server/transport/grpc-server.js';

const service = {
  Get: {
    path: '/test.T/Get',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: Buffer) => v,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (v: Buffer) => v,
    responseDeserialize: (b: Buffer) => b,
    originalName: 'get',
  },
} as unknown as ServiceDefinition;

/** Calls Get for a response of `size` bytes; resolves with the bytes sent and the call's status. */
function get(server: GrpcServer, size: number): { sent: number; call: ServerCall } {
  let sent = 0;
  const stream: CallStream = {
    headers: [[':path', '/test.T/Get'], ['content-type', 'application/grpc']],
    listener: undefined,
    onDrain: undefined,
    blocked: false,
    sendHeaders: () => undefined,
    sendData: (data) => { sent += data.length; },
    sendTrailers: () => undefined,
  };
  const call = server.invoke('/test.T/Get', stream)!;
  const request = Buffer.alloc(9);
  request.writeUInt32BE(4, 1);
  request.writeUInt32BE(size, 5);
  stream.listener!.onData(request);
  stream.listener!.onEnd();
  return { get sent() { return sent; }, call };
}

it('a response over the send limit ends the call with RESOURCE_EXHAUSTED and is not sent', () => {
  assert.equal(MAX_SEND_MESSAGE_BYTES, 2147483647);
  const server = new GrpcServer({
    maxReceiveMessageLength: 1024,
    maxSendMessageLength: 100,
    maxConcurrentStreams: 10,
    pingMinTimeMs: 5000,
    keepalive: { intervalMs: 7_200_000, timeoutMs: 20_000 },
  });
  server.addService(service, {
    Get: ((call: ServerCall, cb: (err: null, res: Buffer) => void) => cb(null, Buffer.alloc((call.request as Buffer).readUInt32BE(0)))) as (...args: never[]) => void,
  });
  const small = get(server, 100);
  assert.deepEqual(small.call.pendingStatus, { code: GrpcStatus.OK, details: '' });
  assert.equal(small.sent, 105);
  const large = get(server, 101);
  assert.deepEqual(large.call.pendingStatus, { code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'grpc: trying to send message larger than max (101 vs. 100)' });
  assert.equal(large.sent, 0);
});
