/**
 * The gRPC KV service (etcd `api/v3rpc/key.go`): Range, Put, DeleteRange, Txn, Compact, each
 * checked against --max-request-bytes and handed to the EtcdServer.
 */
import type { Server } from '@grpc/grpc-js';
import { KVService, type CompactionRequest, type DeleteRangeRequest, type PutRequest, type RangeRequest, type TxnRequest } from '../../proto/gen/rpc.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import { requestSize, unary, withRequestSizes } from './unary.js';

/** Registers the KV service of `etcd` on `grpc`. */
export function addKVService(grpc: Server, etcd: EtcdServer): void {
  const sized = <Req extends object, Res>(fn: (r: Req) => Res | Promise<Res>) =>
    unary((r: Req) => {
      etcd.checkRequestSize(requestSize(r));
      return fn(r);
    });
  grpc.addService(withRequestSizes(KVService), {
    range: sized((r: RangeRequest) => etcd.range(r)),
    put: sized((r: PutRequest) => etcd.put(r)),
    deleteRange: sized((r: DeleteRangeRequest) => etcd.deleteRange(r)),
    txn: sized((r: TxnRequest) => etcd.txn(r)),
    compact: unary((r: CompactionRequest) => etcd.compact(r)),
  });
}
