/**
 * The gRPC KV service (etcd `api/v3rpc/key.go`): Range, Put, DeleteRange, Txn, Compact, each
 * checked against --max-request-bytes and handed to the EtcdServer with the client's auth
 * token (an invalid one is refused before anything else); Range, Put and DeleteRange
 * answers are encoded by the hand-written encoders of src/proto/wire.ts.
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { KVService, type CompactionRequest, type DeleteRangeRequest, type PutRequest, type RangeRequest, type TxnRequest } from '../../proto/gen/rpc.gen.js';
import { marshalDeleteRangeResponse, marshalPutResponse, marshalRangeResponse } from '../../proto/wire.js';
import type { AuthInfo } from '../../auth/auth-store.js';
import type { EtcdServer } from '../etcd-server.js';
import { requestSize, unary, withWire } from './unary.js';

/** Registers the KV service of `etcd` on `grpc`. */
export function addKVService(grpc: Server, etcd: EtcdServer): void {
  const sized = <Req extends object, Res>(fn: (r: Req, ai: AuthInfo) => Res | Promise<Res>) =>
    unary((r: Req, md) => {
      etcd.checkRequestSize(requestSize(r));
      return fn(r, etcd.auth.authInfo(md));
    });
  const serializers = { range: marshalRangeResponse, put: marshalPutResponse, deleteRange: marshalDeleteRangeResponse };
  grpc.addService(withWire(KVService, serializers), {
    range: sized((r: RangeRequest, ai) => etcd.range(r, ai)),
    put: sized((r: PutRequest, ai) => etcd.put(r, ai)),
    deleteRange: sized((r: DeleteRangeRequest, ai) => etcd.deleteRange(r, ai)),
    txn: sized((r: TxnRequest, ai) => etcd.txn(r, ai)),
    // etcd checks no permission for a compaction, only that a given token is valid.
    compact: unary((r: CompactionRequest, md) => {
      etcd.auth.authInfo(md);
      return etcd.compact(r);
    }),
  });
}
