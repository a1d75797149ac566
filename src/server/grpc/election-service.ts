/**
 * The gRPC Election service (etcd `api/v3election`, package `v3electionpb`): Campaign waits
 * until the caller leads, Proclaim changes the leader's value, Leader reads it, Observe streams
 * every leader and value, Resign steps down. The semantics live in `src/lease/concurrency.ts`;
 * every error ("election: not leader", "election: no leader", `"leader" field must be provided`,
 * and etcd's own) leaves as gRPC Unknown with its text, as etcd sends them (see `clientError`).
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import type { GrpcServer as Server, ServerCall } from '../transport/grpc-server.js';
import { contextErrorStatus } from '../errors.js';
import { campaign, leader, observe, proclaim, resign } from '../../lease/concurrency.js';
import {
  ElectionService,
  type CampaignRequest,
  type CampaignResponse,
  type LeaderRequest,
  type LeaderResponse,
  type ProclaimRequest,
  type ResignRequest,
} from '../../proto/gen/v3election.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import { callSignal, clientError, clientUnary } from './lock-service.js';

/** Registers the Election service of `etcd` on `grpc`. */
export function addElectionService(grpc: Server, etcd: EtcdServer): void {
  grpc.addService(ElectionService, {
    campaign: (call: ServerUnaryCall<CampaignRequest, CampaignResponse>, callback: sendUnaryData<CampaignResponse>) => {
      const r = call.request;
      Promise.resolve()
        .then(() => campaign(etcd, r.name, r.lease, r.value, callSignal(call), etcd.auth.authInfo(call.metadata)))
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(clientError(err)),
        );
    },
    proclaim: clientUnary(async (r: ProclaimRequest, md) => ({ header: await proclaim(etcd, r.leader, r.value, etcd.auth.authInfo(md)) })),
    leader: clientUnary((r: LeaderRequest, md): LeaderResponse => leader(etcd, r.name, etcd.auth.authInfo(md))),
    observe: (call: ServerWritableStream<LeaderRequest, LeaderResponse>) => {
      const ac = new AbortController();
      // etcd's Observe returns the bare context error, cancelled or past its deadline.
      call.on('cancelled', (reason: 'deadline' | 'cancelled') => {
        (call as unknown as ServerCall).pendingStatus = contextErrorStatus(reason);
        ac.abort();
      });
      call.on('close', () => ac.abort());
      // A refused token ends the stream as a refused read does (see `observe`).
      let ai;
      try {
        ai = etcd.auth.authInfo(call.metadata);
      } catch {
        call.end();
        return;
      }
      observe(etcd, call.request.name, (header, kv) => call.write({ header, kv }), ac.signal, ai, () => call.end());
    },
    resign: clientUnary(async (r: ResignRequest, md) => ({ header: await resign(etcd, r.leader, etcd.auth.authInfo(md)) })),
  });
}
