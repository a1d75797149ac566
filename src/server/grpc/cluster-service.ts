/**
 * The gRPC Cluster service (etcd `api/v3rpc/member.go`) for a single voting member and at most
 * one learner that never starts (see `addClusterService`).
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
  type MemberAddResponse,
  type MemberRemoveResponse,
  type MemberUpdateResponse,
} from '../../proto/gen/rpc.gen.js';
import { computeMemberId, type EtcdServer } from '../etcd-server.js';
import type { MemberRecord } from '../membership.js';
import { Errors } from '../errors.js';
import { parseUrl } from '../../cli/flags.js';
import { unary } from './unary.js';

/** A member as MemberList shows it: this one with its name and client URLs, a learner (never started) without. */
export function toMember(etcd: EtcdServer, clientUrls: readonly string[], m: MemberRecord): Member {
  const self = m.id === etcd.memberId;
  return {
    ID: m.id,
    name: self ? etcd.config.name : '',
    peerURLs: m.peerUrls,
    clientURLs: self ? [...clientUrls] : [],
    isLearner: m.isLearner,
  };
}

/**
 * etcd `types.NewURLs`, which MemberAdd checks first: the URLs (at least one, each an http,
 * https, unix or unixs `host:port` without a path), parsed and sorted. Throws `given member URLs
 * are invalid`.
 */
function memberUrls(urls: readonly string[]): string[] {
  try {
    if (urls.length > 0) return urls.map((u) => parseUrl(u).url).sort();
  } catch {
    // Refused below.
  }
  throw Errors.memberBadURLs();
}

/** A change etcd proposes, then refuses as it applies it with `err`: its raft entry counts. */
function refuseChange(etcd: EtcdServer, err: unknown): Promise<never> {
  return etcd.confChange(() => {
    throw err;
  });
}

/**
 * etcd `PromoteMember`, over gRPC or the peer URL's `/members/promote/<id>`: `permit` (the
 * permission check) first, then, as no learner ever starts, never in sync (etcd
 * `isLearnerReady`), a learner gets `learnerNotReady` before anything is proposed; this member
 * gets `memberNotLearner` and an unknown ID `memberNotFound` once the change is refused as it
 * is applied. Always throws; every failure is counted by its reason.
 */
export async function promoteMember(etcd: EtcdServer, id: bigint, permit: () => void): Promise<never> {
  try {
    permit();
    if (etcd.membership.member(id)?.isLearner === true) throw Errors.learnerNotReady();
    return await refuseChange(etcd, id === etcd.memberId ? Errors.memberNotLearner() : Errors.memberNotFound());
  } catch (err) {
    etcd.membership.promoteFailed(err);
    throw err;
  }
}

/**
 * Registers the Cluster service. `clientUrls` are the advertised client URLs. Each change
 * checks root's privileges when auth is on (etcd `checkMembershipOperationPermission`), then
 * answers as etcd does for this member, a learner and an unknown ID. A learner can be added
 * (one at most, as in etcd); it never starts, so it cannot be promoted. Adding a voting member
 * is refused: it would need a peer to keep quorum, and etcd-ts has none (etcd accepts it and
 * stops serving, having lost quorum).
 */
export function addClusterService(grpc: Server, etcd: EtcdServer, clientUrls: readonly string[]): void {
  const admin = (md: TokenMetadata) => etcd.auth.checkAdmin(etcd.auth.authInfo(md));
  const header = () => ({ clusterId: etcd.clusterId, memberId: etcd.memberId, raftTerm: etcd.raftTerm, revision: 0n });
  const members = () => etcd.membership.members().map((m) => toMember(etcd, clientUrls, m));
  const refused = (err: unknown) => refuseChange(etcd, err);
  grpc.addService(ClusterService, {
    // etcd's cluster server fills the header without a revision.
    memberList: unary((_r: MemberListRequest) => ({ header: header(), members: members() })),
    memberAdd: unary(async (r: MemberAddRequest, md): Promise<MemberAddResponse> => {
      const peerUrls = memberUrls(r.peerURLs);
      admin(md);
      // etcd `NewMember`: the ID hashes the peer URLs and the time in seconds.
      const member = { id: computeMemberId(peerUrls, String(Math.floor(Date.now() / 1000))), peerUrls, isLearner: r.isLearner };
      if (!r.isLearner) {
        // What etcd refuses as it applies the change spends its raft entry.
        try {
          etcd.membership.validateAdd(member);
        } catch (err) {
          return refused(err);
        }
        throw Errors.memberNotEnoughStarted();
      }
      await etcd.confChange(() => etcd.membership.addLearner(member));
      return { header: header(), member: toMember(etcd, clientUrls, member), members: members() };
    }),
    // Removing the only voting member fails etcd's quorum check before it proposes anything.
    memberRemove: unary(async (r: MemberRemoveRequest, md): Promise<MemberRemoveResponse> => {
      admin(md);
      if (r.ID === etcd.memberId) throw Errors.memberNotEnoughStarted();
      await etcd.confChange(() => etcd.membership.removeLearner(r.ID));
      return { header: header(), members: members() };
    }),
    memberUpdate: unary(async (r: MemberUpdateRequest, md): Promise<MemberUpdateResponse> => {
      admin(md);
      await etcd.confChange(() => etcd.membership.updatePeerUrls(r.ID, r.peerURLs));
      return { header: header(), members: members() };
    }),
    memberPromote: unary((r: MemberPromoteRequest, md) => promoteMember(etcd, r.ID, () => admin(md))),
  });
}
