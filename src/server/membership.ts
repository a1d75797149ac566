/**
 * The cluster's members as etcd-ts keeps them (etcd `membership.RaftCluster`): this member,
 * which always runs, and at most one learner added by `MemberAdd`, which never starts (etcd-ts
 * has no raft peers, so nothing can join). Persisted in the backend's `meta` bucket: this
 * member's peer URLs (`peerURLs`), the learners (`learners`), the IDs of the
 * removed ones (`removedMembers`, etcd's `members_removed`).
 */
import { isIP } from 'node:net';
import type { ServerConfig } from '../config.js';
import { parseUrl } from '../cli/flags.js';
import { goQuotedList } from '../go-format.js';
import type { Backend } from '../mvcc/backend.js';
import { Errors } from './errors.js';

/** One member as MemberList shows it (etcd `membership.Member` without its attributes when unstarted). */
export interface MemberRecord {
  id: bigint;
  peerUrls: string[];
  isLearner: boolean;
}

/** etcd `membership.maxLearners`. */
const MAX_LEARNERS = 1;

interface StoredLearner {
  id: string;
  peerURLs: string[];
}

/**
 * The texts of etcd's own errors behind the gRPC errors a promotion fails with, which etcd
 * counts its failures by (`etcd_server_learner_promote_failures{Reason}`); others keep theirs.
 */
const PROMOTE_FAILURE_REASONS: Readonly<Record<string, string>> = {
  'etcdserver: member not found': 'membership: ID not found',
  'etcdserver: can only promote a learner member': 'membership: can only promote a learner member',
  'etcdserver: permission denied': 'auth: permission denied',
  'etcdserver: user name is empty': 'auth: user name is empty',
  'etcdserver: invalid auth token': 'auth: invalid auth token',
};

/** The text of etcd's own error behind `err`, a promotion's failure (see PROMOTE_FAILURE_REASONS). */
export function promoteFailureReason(err: unknown): string {
  const text = err instanceof Error ? (err as Error & { details?: string }).details ?? err.message : String(err);
  return PROMOTE_FAILURE_REASONS[text] ?? text;
}

export class Membership {
  /** Failed promotions by etcd's reason, since start (see `promoteFailed`). */
  readonly promoteFailures = new Map<string, number>();

  /**
   * `advertisedPeerUrls` (`--initial-advertise-peer-urls`) become this member's peer URLs unless
   * the backend holds them already: etcd keeps the member it was created as (or restored with),
   * and a restart with other flags does not change it.
   */
  constructor(
    private readonly backend: Backend,
    /** This member's ID. */
    readonly selfId: bigint,
    advertisedPeerUrls: readonly string[],
  ) {
    if (backend.getMeta('peerURLs') === undefined) backend.putMeta('peerURLs', JSON.stringify(advertisedPeerUrls));
  }

  /** This member's peer URLs. */
  get selfPeerUrls(): string[] {
    return JSON.parse(this.backend.getMeta('peerURLs')!) as string[];
  }

  /** The learners, unstarted. */
  get learners(): MemberRecord[] {
    const stored = this.backend.getMeta('learners');
    if (stored === undefined) return [];
    return (JSON.parse(stored) as StoredLearner[]).map((l) => ({ id: BigInt(l.id), peerUrls: l.peerURLs, isLearner: true }));
  }

  /** Every member, by ID (etcd `RaftCluster.Members`). */
  members(): MemberRecord[] {
    const all = [{ id: this.selfId, peerUrls: this.selfPeerUrls, isLearner: false }, ...this.learners];
    return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The member with `id`, if any. */
  member(id: bigint): MemberRecord | undefined {
    return this.members().find((m) => m.id === id);
  }

  /**
   * etcd `ValidateConfigurationChange` for a new member: throws `member not found` for a
   * removed ID (etcd's `ErrIDRemoved`), `member ID already exist`, or `Peer URLs already
   * exists` (a URL another member has).
   */
  validateAdd(m: MemberRecord): void {
    if (this.isRemoved(m.id)) throw Errors.memberNotFound();
    if (this.member(m.id)) throw Errors.memberExist();
    if (this.urlsTaken(m.peerUrls)) throw Errors.peerURLExist();
  }

  /**
   * etcd `ValidateConfigurationChange` then `AddMember` for a learner: throws as `validateAdd`,
   * or `too many learner members in cluster`. Queues the change in the backend.
   */
  addLearner(learner: MemberRecord): void {
    this.validateAdd(learner);
    const learners = this.learners;
    if (learners.length + 1 > MAX_LEARNERS) throw Errors.tooManyLearners();
    this.storeLearners([...learners, learner]);
  }

  /** Removes learner `id` (etcd `RemoveMember`); throws `member not found` for any other ID. */
  removeLearner(id: bigint): void {
    const learners = this.learners;
    if (!learners.some((l) => l.id === id)) throw Errors.memberNotFound();
    this.storeLearners(learners.filter((l) => l.id !== id));
    this.backend.putMeta('removedMembers', JSON.stringify([...this.removed(), id.toString()]));
  }

  /** Whether member `id` was removed (etcd `RaftCluster.IsIDRemoved`). */
  isRemoved(id: bigint): boolean {
    return this.removed().includes(id.toString());
  }

  private removed(): string[] {
    const stored = this.backend.getMeta('removedMembers');
    return stored === undefined ? [] : (JSON.parse(stored) as string[]);
  }

  /**
   * etcd's ConfChangeUpdateNode: member `id` gets `urls`, unchecked as etcd leaves them except
   * that no other member may have one of them (`Peer URLs already exists`); throws `member not
   * found` for an unknown ID. A learner stays a learner (etcd 3.4 forgets it is one in its
   * member store while raft goes on treating it as one; we keep the two in agreement).
   */
  updatePeerUrls(id: bigint, urls: readonly string[]): void {
    if (!this.member(id)) throw Errors.memberNotFound();
    if (this.urlsTaken(urls, id)) throw Errors.peerURLExist();
    if (id === this.selfId) this.backend.putMeta('peerURLs', JSON.stringify(urls));
    else this.storeLearners(this.learners.map((l) => (l.id === id ? { ...l, peerUrls: [...urls] } : l)));
  }

  /** Counts a promotion that failed with `err` (etcd `learnerPromoteFailed`). */
  promoteFailed(err: unknown): void {
    const reason = promoteFailureReason(err);
    this.promoteFailures.set(reason, (this.promoteFailures.get(reason) ?? 0) + 1);
  }

  /** True when a member other than `except` has one of `urls`. */
  urlsTaken(urls: readonly string[], except?: bigint): boolean {
    const taken = new Set(this.members().filter((m) => m.id !== except).flatMap((m) => m.peerUrls));
    return urls.some((u) => taken.has(u));
  }

  private storeLearners(learners: readonly MemberRecord[]): void {
    const stored: StoredLearner[] = learners.map((l) => ({ id: l.id.toString(), peerURLs: l.peerUrls }));
    this.backend.putMeta('learners', JSON.stringify(stored));
  }
}

/**
 * etcd's checks of a new member's cluster flags, made only when the data dir is new (etcd
 * `PeerURLsMapAndToken`, then `VerifyBootstrap`, or for `--initial-cluster-state existing` the
 * peers' membership it cannot fetch). Throws etcd's text:
 * - `error setting up initial cluster: …` for a malformed `--initial-cluster`;
 * - `couldn't find local name "x" in the initial cluster configuration`;
 * - `--initial-cluster has … but missing from --initial-advertise-peer-urls=…` (or the other
 *   way round) when this member's URLs differ there. etcd resolves host names through DNS
 *   before it compares; so, without DNS here, URLs naming a host other than an IP address or
 *   `localhost` are not compared;
 * - `failed to resolve … to match --initial-cluster=… (len(…) != len(…))` when they hold the
 *   same URLs but one side repeats some;
 * - `initial cluster … has duplicate url`;
 * - `cannot fetch cluster info from peer urls: …` for `existing`: there are no peers to ask.
 */
export function verifyBootstrap(config: ServerConfig): void {
  const name = config.name;
  const apurls = [...config.initialAdvertisePeerUrls].sort();
  // etcd's default: `default=http://localhost:2380`, or the name's own URLs when it is not `default`.
  const raw = config.initialCluster ?? (name === 'default' ? 'default=http://localhost:2380' : apurls.map((u) => `${name || 'default'}=${u}`).join(','));
  const cluster = new Map<string, string[]>();
  try {
    for (const entry of raw.split(',')) {
      if (entry === '') continue;
      const eq = entry.indexOf('=');
      const [member, url] = eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
      cluster.set(member, [...(cluster.get(member) ?? []), parseUrl(url).url]);
    }
  } catch (err) {
    throw new Error(`error setting up initial cluster: ${(err as Error).message}`, { cause: err });
  }
  const urls = cluster.get(name);
  if (urls === undefined) throw new Error(`couldn't find local name ${JSON.stringify(name)} in the initial cluster configuration`);
  if (config.initialClusterState === 'existing') {
    throw new Error('cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs');
  }
  urls.sort();
  const literal = (u: string) => {
    const host = new URL(u).hostname.replace(/^\[(.*)\]$/, '$1');
    return host === 'localhost' || isIP(host) !== 0;
  };
  const same = apurls.length === urls.length && apurls.every((u, i) => u === urls[i]);
  if (!same && [...apurls, ...urls].every(literal)) {
    const firstDiffering = apurls.findIndex((u, i) => u !== urls[i]);
    const why = apurls.length !== urls.length ? `len(${goQuotedList(apurls)}) != len(${goQuotedList(urls)})` : `resolved urls: ${JSON.stringify(apurls[firstDiffering])} != ${JSON.stringify(urls[firstDiffering])}`;
    const notAdvertised = urls.filter((u) => !apurls.includes(u));
    if (notAdvertised.length > 0) {
      throw new Error(`--initial-cluster has ${notAdvertised.map((u) => `${name}=${u}`).join(',')} but missing from --initial-advertise-peer-urls=${apurls.join(',')} (${why})`);
    }
    const notListed = apurls.filter((u) => !urls.includes(u));
    const advertised = apurls.map((u) => `${name}=${u}`).join(',');
    if (notListed.length > 0) throw new Error(`--initial-advertise-peer-urls has ${notListed.join(',')} but missing from --initial-cluster=${advertised}`);
    // The same URLs, one side repeating some: etcd's comparison fails on the lengths alone.
    throw new Error(`failed to resolve ${apurls.join(',')} to match --initial-cluster=${advertised} (${why})`);
  }
  const all = [...cluster.values()].flat();
  if (new Set(all).size !== all.length) {
    const pairs = [...cluster].flatMap(([member, list]) => list.map((u) => `${member}=${u}`)).sort();
    throw new Error(`initial cluster ${pairs.join(',')} has duplicate url`);
  }
}
