/**
 * The gRPC KV service (etcd `api/v3rpc/key.go`): Range, Put, DeleteRange, Txn, Compact, each
 * handed to the EtcdServer with the client's metadata and the request's wire size, which it
 * checks in etcd's order (quota, request, auth token, size); Range, Put and DeleteRange
 * answers are encoded by the hand-written encoders of src/proto/wire.ts. A Range's or read-only
 * Txn's empty range end on the wire reads from the key on, as in etcd (empty-range-end.ts).
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { KVService, type CompactionRequest, type DeleteRangeRequest, type PutRequest, type RangeRequest, type TxnRequest } from '../../proto/gen/rpc.gen.js';
import { marshalDeleteRangeResponse, marshalPutResponse, marshalRangeResponse, marshalTxnResponse } from '../../proto/wire.js';
import { RAFT_FIELD, type ClientCall, type EtcdServer } from '../etcd-server.js';
import { openEmptyRangeEnd, openEmptyRangeEnds } from './empty-range-end.js';
import { requestSize, unary, withWire } from './unary.js';

/** Registers the KV service of `etcd` on `grpc`. */
export function addKVService(grpc: Server, etcd: EtcdServer): void {
  // The server reads each call's auth token and checks its size where etcd does (EtcdServer.admit).
  // `cancelled` tells a read in slices that its call was cancelled (deadline, reset, connection
  // gone): it stops instead of reading for no one.
  const call = <Req extends object, Res>(fn: (r: Req, who: ClientCall, cancelled: () => boolean) => Res | Promise<Res>) =>
    unary((r: Req, md, c) => fn(r, { md, wireBytes: requestSize(r) }, () => c.cancelled));
  const serializers = { range: marshalRangeResponse, put: marshalPutResponse, deleteRange: marshalDeleteRangeResponse, txn: marshalTxnResponse };
  grpc.addService(withWire(KVService, serializers, { range: openEmptyRangeEnd, txn: openEmptyRangeEnds }), {
    // Range's and a read-only Txn's KeyValues and DeleteRange's prev_kvs leave as they are
    // stored (the encoders copy the records).
    range: call((r: RangeRequest, who, cancelled) => etcd.rangeEncoded(r, who, cancelled)),
    put: call((r: PutRequest, who) => etcd.put(r, who)),
    deleteRange: call((r: DeleteRangeRequest, who) => etcd.deleteRange(r, who, true)),
    txn: call((r: TxnRequest, who, cancelled) => etcd.txnEncoded(r, who, cancelled)),
    // etcd checks no permission for a compaction, only that a given token is valid, and its size.
    compact: unary((r: CompactionRequest, md) => {
      etcd.checkRequestSize(etcd.auth.authInfo(md), requestSize(r), RAFT_FIELD.compaction);
      return etcd.compact(r);
    }),
  });
}
