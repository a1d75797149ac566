/**
 * The gRPC KV service (etcd `api/v3rpc/key.go`): Range, Put, DeleteRange, Txn, Compact, the
 * writes checked against --max-request-bytes, each handed to the EtcdServer with the client's auth
 * token (an invalid one is refused before anything else); Range, Put and DeleteRange
 * answers are encoded by the hand-written encoders of src/proto/wire.ts.
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { KVService, type CompactionRequest, type DeleteRangeRequest, type PutRequest, type RangeRequest, type TxnRequest } from '../../proto/gen/rpc.gen.js';
import { marshalDeleteRangeResponse, marshalPutResponse, marshalRangeResponse } from '../../proto/wire.js';
import type { AuthInfo } from '../../auth/auth-store.js';
import { isTxnReadonly } from '../apply.js';
import type { EtcdServer } from '../etcd-server.js';
import { requestSize, unary, withWire } from './unary.js';

/** Registers the KV service of `etcd` on `grpc`. */
export function addKVService(grpc: Server, etcd: EtcdServer): void {
  // etcd holds only raft requests to --max-request-bytes: reads (Range, a txn without writes)
  // are served at any size gRPC accepts.
  const sized = <Req extends object, Res>(fn: (r: Req, ai: AuthInfo) => Res | Promise<Res>, isRead: (r: Req) => boolean = () => false) =>
    unary((r: Req, md) => {
      if (!isRead(r)) etcd.checkRequestSize(requestSize(r));
      return fn(r, etcd.auth.authInfo(md));
    });
  const serializers = { range: marshalRangeResponse, put: marshalPutResponse, deleteRange: marshalDeleteRangeResponse };
  grpc.addService(withWire(KVService, serializers), {
    range: sized((r: RangeRequest, ai) => etcd.range(r, ai), () => true),
    put: sized((r: PutRequest, ai) => etcd.put(r, ai)),
    deleteRange: sized((r: DeleteRangeRequest, ai) => etcd.deleteRange(r, ai)),
    txn: sized((r: TxnRequest, ai) => etcd.txn(r, ai), isTxnReadonly),
    // etcd checks no permission for a compaction, only that a given token is valid.
    compact: unary((r: CompactionRequest, md) => {
      etcd.auth.authInfo(md);
      return etcd.compact(r);
    }),
  });
}
