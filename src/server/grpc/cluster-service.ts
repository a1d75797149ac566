/**
 * The gRPC Cluster service (etcd `api/v3rpc/member.go`) for a single member: MemberList
 * answers with this member, MemberUpdate changes its peer URLs, and the other changes are
 * refused with etcd's errors (see `addClusterService`).
 */
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import type { TokenMetadata } from '../../auth/auth-store.js';
import {
  ClusterService,
  type Member,
  type MemberAddRequest,
  type MemberListRequest,
  type MemberPromoteRequest,
  type MemberRemoveRequest,
  type MemberUpdateRequest,
  type MemberUpdateResponse,
} from '../../proto/gen/rpc.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import { Errors } from '../errors.js';
import { unary } from './unary.js';

/** This member as MemberList shows it. */
export function selfMember(etcd: EtcdServer, clientUrls: readonly string[]): Member {
  return {
    ID: etcd.memberId,
    name: etcd.config.name,
    peerURLs: etcd.peerUrls,
    clientURLs: [...clientUrls],
    isLearner: false,
  };
}

/**
 * etcd `types.NewURLs`, which MemberAdd checks first: at least one URL, each http, https, unix
 * or unixs, with a `host:port` (Go's `net.SplitHostPort`) and no path.
 */
function validPeerUrls(urls: readonly string[]): boolean {
  return (
    urls.length > 0 &&
    urls.every((raw) => {
      const m = /^(?:https?|unixs?):\/\/([^/?#]*)(.*)$/i.exec(raw.trim());
      return m !== null && /^(?:\[[^\]]*\]|[^:[\]]*):[^:]*$/.test(m[1]!.replace(/^.*@/, '')) && !m[2]!.startsWith('/');
    })
  );
}

/**
 * Registers the Cluster service. `clientUrls` are the advertised client URLs. Each change
 * checks root's privileges when auth is on (etcd `checkMembershipOperationPermission`), then
 * answers as etcd does for this member and an unknown ID. Adding a member is refused: a second
 * member would need a peer to keep quorum, and etcd-ts has none (etcd accepts it and stops
 * serving, having lost quorum).
 */
export function addClusterService(grpc: Server, etcd: EtcdServer, clientUrls: readonly string[]): void {
  const admin = (md: TokenMetadata) => etcd.auth.checkAdmin(etcd.auth.authInfo(md));
  const header = () => ({ clusterId: etcd.clusterId, memberId: etcd.memberId, raftTerm: etcd.raftTerm, revision: 0n });
  grpc.addService(ClusterService, {
    // etcd's cluster server fills the header without a revision.
    memberList: unary((_r: MemberListRequest) => ({ header: header(), members: [selfMember(etcd, clientUrls)] })),
    memberAdd: unary(async (r: MemberAddRequest, md) => {
      if (!validPeerUrls(r.peerURLs)) throw Errors.memberBadURLs();
      admin(md);
      const taken = new Set(etcd.peerUrls);
      if (r.peerURLs.some((u) => taken.has(u.trim()))) return etcd.refuseConfChange(Errors.peerURLExist());
      throw Errors.memberNotEnoughStarted();
    }),
    // Removing the only member fails etcd's quorum check before it proposes anything.
    memberRemove: unary(async (r: MemberRemoveRequest, md) => {
      admin(md);
      if (r.ID === etcd.memberId) throw Errors.memberNotEnoughStarted();
      return etcd.refuseConfChange(Errors.memberNotFound());
    }),
    memberUpdate: unary(async (r: MemberUpdateRequest, md): Promise<MemberUpdateResponse> => {
      admin(md);
      if (r.ID !== etcd.memberId) return etcd.refuseConfChange(Errors.memberNotFound());
      await etcd.updatePeerUrls(r.peerURLs);
      return { header: header(), members: [selfMember(etcd, clientUrls)] };
    }),
    memberPromote: unary(async (r: MemberPromoteRequest, md) => {
      admin(md);
      return etcd.refuseConfChange(r.ID === etcd.memberId ? Errors.memberNotLearner() : Errors.memberNotFound());
    }),
  });
}
