/**
 * The gRPC Lease service (etcd `api/v3rpc/lease.go`): LeaseGrant and LeaseRevoke go through the
 * EtcdServer (raft index, quota, durability); LeaseKeepAlive, LeaseTimeToLive and LeaseLeases
 * are answered by the lessor directly, as etcd's leader does.
 *
 * Unknown leases are not errors everywhere: a keepalive answers TTL 0 and TimeToLive answers
 * TTL -1 (etcd turns `ErrLeaseNotFound` into those), while LeaseRevoke fails with
 * "etcdserver: requested lease not found".
 */
import { status as Status } from '@grpc/grpc-js';
import type { GrpcServer as Server, ServerCall } from '../transport/grpc-server.js';
import { keyToBytes } from '../../mvcc/key.js';
import { LeaseNotFoundError } from '../../mvcc/kv-store.js';
import {
  LeaseService,
  LeaseGrantRequest,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type LeaseLeasesResponse,
  LeaseRevokeRequest,
  type LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
} from '../../proto/gen/rpc.gen.js';
import { contextErrorStatus, toServiceError } from '../errors.js';
import { RAFT_FIELD, type EtcdServer } from '../etcd-server.js';
import { unary } from './unary.js';

/** Registers the Lease service of `etcd` on `grpc`. */
export function addLeaseService(grpc: Server, etcd: EtcdServer): void {
  grpc.addService(LeaseService, {
    // etcd checks a given token on both (they are raft requests); a revoke needs write
    // permission on the lease's keys.
    // etcd picks a lease's ID before it proposes the grant, whose size counts it.
    leaseGrant: unary((r: LeaseGrantRequest, md) => {
      const ai = etcd.auth.authInfo(md);
      const req = r.ID === 0n ? { ...r, ID: etcd.lessor.nextId() } : r;
      etcd.checkRequestSize(ai, LeaseGrantRequest.encode(req).finish().length, RAFT_FIELD.leaseGrant);
      return etcd.leaseGrant(req);
    }),
    leaseRevoke: unary((r: LeaseRevokeRequest, md) => {
      const ai = etcd.auth.authInfo(md);
      etcd.checkRequestSize(ai, LeaseRevokeRequest.encode(r).finish().length, RAFT_FIELD.leaseRevoke);
      return etcd.leaseRevoke(r, ai);
    }),
    leaseKeepAlive: (call: ServerCall) => keepAlive(etcd, call),
    leaseTimeToLive: unary((r: LeaseTimeToLiveRequest) => timeToLive(etcd, r)),
    leaseLeases: unary((): LeaseLeasesResponse => ({
      header: etcd.fillHeader(undefined),
      leases: etcd.lessor.leases().map((l) => ({ ID: l.id })),
    })),
  });
}

/**
 * One LeaseKeepAlive stream (etcd `leaseKeepAlive`): every request renews one lease and is
 * answered with its TTL in seconds (0 for an unknown or expired lease). The stream ends when
 * the client half-closes or cancels; a cancelled stream ends, as in etcd, with the status of
 * `rpctypes.ErrGRPCNoLeader` (what etcd's handler returns for a cancelled context, and so what
 * grpc_server_handled_total counts), and one past its deadline with the bare context error
 * etcd's handler returns (Unknown).
 */
function keepAlive(etcd: EtcdServer, call: ServerCall): void {
  call.on('cancelled', (reason: 'deadline' | 'cancelled') => {
    call.pendingStatus = reason === 'deadline' ? contextErrorStatus(reason) : { code: Status.UNAVAILABLE, details: 'etcdserver: no leader' };
  });
  // One request at a time, in order, as etcd's loop takes them: renewing an expired lease
  // waits for its revocation, and the requests after it wait too.
  let previous: Promise<void> = Promise.resolve();
  const answer = async (req: LeaseKeepAliveRequest): Promise<void> => {
    let ttl: number;
    try {
      ttl = await etcd.lessor.renew(req.ID);
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError)) {
        call.destroy(toServiceError(err) as Error);
        return;
      }
      ttl = 0;
    }
    const res: LeaseKeepAliveResponse = { header: etcd.fillHeader(undefined), ID: req.ID, TTL: BigInt(ttl) };
    call.write(res);
  };
  call.on('data', (req: LeaseKeepAliveRequest) => {
    previous = previous.then(() => answer(req));
  });
  call.on('end', () => {
    void previous.then(() => call.end());
  });
  call.on('error', () => {});
}

/** etcd `LeaseTimeToLive`: remaining and granted TTL in seconds, keys on request; TTL -1 when unknown. */
function timeToLive(etcd: EtcdServer, r: LeaseTimeToLiveRequest): LeaseTimeToLiveResponse {
  const t = etcd.lessor.timeToLive(r.ID);
  const header = etcd.fillHeader(undefined);
  if (!t) return { header, ID: r.ID, TTL: -1n, grantedTTL: 0n, keys: [] };
  return {
    header,
    ID: r.ID,
    TTL: BigInt(t.ttlSec),
    grantedTTL: BigInt(t.grantedTtlSec),
    keys: r.keys ? t.keys.map(keyToBytes) : [],
  };
}
