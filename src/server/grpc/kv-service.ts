/**
 * The gRPC KV service (etcd `api/v3rpc/key.go`): Range, Put, DeleteRange, Txn, Compact, each
 * checked against --max-request-bytes and handed to the EtcdServer; Range, Put and DeleteRange
 * answers are encoded by the hand-written encoders of src/proto/wire.ts.
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { KVService, type CompactionRequest, type DeleteRangeRequest, type PutRequest, type RangeRequest, type TxnRequest } from '../../proto/gen/rpc.gen.js';
import { marshalDeleteRangeResponse, marshalPutResponse, marshalRangeResponse } from '../../proto/wire.js';
import type { EtcdServer } from '../etcd-server.js';
import { requestSize, unary, withWire } from './unary.js';

/** Registers the KV service of `etcd` on `grpc`. */
export function addKVService(grpc: Server, etcd: EtcdServer): void {
  const sized = <Req extends object, Res>(fn: (r: Req) => Res | Promise<Res>) =>
    unary((r: Req) => {
      etcd.checkRequestSize(requestSize(r));
      return fn(r);
    });
  const serializers = { range: marshalRangeResponse, put: marshalPutResponse, deleteRange: marshalDeleteRangeResponse };
  grpc.addService(withWire(KVService, serializers), {
    range: sized((r: RangeRequest) => etcd.range(r)),
    put: sized((r: PutRequest) => etcd.put(r)),
    deleteRange: sized((r: DeleteRangeRequest) => etcd.deleteRange(r)),
    txn: sized((r: TxnRequest) => etcd.txn(r)),
    compact: unary((r: CompactionRequest) => etcd.compact(r)),
  });
}
