/**
 * The transport ceiling: a bare node:http2 server answering etcd's KV Put and Range with fixed,
 * pre-encoded responses, no grpc-js and no store. Run etcdbench's put and range modes against
 * it to see how fast Node's HTTP/2 alone can serve unary gRPC calls on this machine.
 *
 * usage: node --import tsx bench/h2-ceiling.ts [port=23796]
 *        /tmp/etcdbench-bin/etcdbench -endpoint 127.0.0.1:23796 -mode put -total 20000 -conc 64 -clients 16
 */
import http2 from 'node:http2';
import { PutResponse, RangeResponse } from '../src/proto/gen/rpc.gen.js';

const header = { clusterId: 1n, memberId: 2n, revision: 3n, raftTerm: 2n };

/** A gRPC length-prefixed message (uncompressed). */
function grpcFrame(message: Uint8Array): Buffer {
  const f = Buffer.alloc(5 + message.length);
  f.writeUInt32BE(message.length, 1);
  f.set(message, 5);
  return f;
}

const rangeResp = grpcFrame(RangeResponse.encode({ header, kvs: [], more: false, count: 0n }).finish());
const putResp = grpcFrame(PutResponse.encode({ header, prevKv: undefined }).finish());

const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const reply = String(headers[':path']).endsWith('/Put') ? putResp : rangeResp;
  stream.on('data', () => {});
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(reply);
  });
});
server.listen(Number(process.argv[2] ?? 23796), '127.0.0.1');
