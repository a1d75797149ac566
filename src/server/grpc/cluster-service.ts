/**
 * The gRPC Cluster service (etcd `api/v3rpc/member.go`) for a single member: MemberList
 * answers with this member; the membership changes are refused as a single etcd member
 * refuses them when it cannot reach quorum with the change.
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { ClusterService, type Member, type MemberListRequest } from '../../proto/gen/rpc.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import { Errors } from '../errors.js';
import { unary } from './unary.js';

/** This member as MemberList shows it. */
export function selfMember(etcd: EtcdServer, clientUrls: readonly string[]): Member {
  return {
    ID: etcd.memberId,
    name: etcd.config.name,
    peerURLs: [...etcd.config.initialAdvertisePeerUrls],
    clientURLs: [...clientUrls],
    isLearner: false,
  };
}

/** Registers the Cluster service. `clientUrls` are the advertised client URLs. */
export function addClusterService(grpc: Server, etcd: EtcdServer, clientUrls: readonly string[]): void {
  grpc.addService(ClusterService, {
    // etcd's cluster server fills the header without a revision.
    memberList: unary((_r: MemberListRequest) => ({
      header: { clusterId: etcd.clusterId, memberId: etcd.memberId, raftTerm: etcd.raftTerm, revision: 0n },
      members: [selfMember(etcd, clientUrls)],
    })),
    // Adding a member to a one-member cluster needs the new member to be started to keep
    // quorum; etcd-ts has no peers, so every change is refused with etcd's error for that.
    // With auth on, etcd first checks root's privileges (`checkMembershipOperationPermission`).
    memberAdd: unary((_r, md) => {
      etcd.auth.checkAdmin(etcd.auth.authInfo(md));
      throw Errors.memberNotEnoughStarted();
    }),
    memberRemove: unary((_r, md) => {
      etcd.auth.checkAdmin(etcd.auth.authInfo(md));
      throw Errors.memberNotEnoughStarted();
    }),
    memberUpdate: unary((_r, md) => {
      etcd.auth.checkAdmin(etcd.auth.authInfo(md));
      throw Errors.memberNotEnoughStarted();
    }),
    memberPromote: unary((_r, md) => {
      etcd.auth.checkAdmin(etcd.auth.authInfo(md));
      throw Errors.memberNotLearner();
    }),
  });
}
