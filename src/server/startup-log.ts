/**
 * The lines etcd 3.4 logs while it starts, in both of its forms (capnslog's text, zap's message
 * and fields), for scripts and test harnesses that wait for them: etcd's own e2e suite waits for
 * `published` and `enabled capabilities for version`; others wait for the raft election or the
 * member's start. Values that are etcd's own facts (Go's version, git SHA) are replaced by ours;
 * the cluster version is the one etcd-ts reports (`CLUSTER_VERSION`, major.minor).
 *
 * etcd's sources of the lines: `etcdmain/etcd.go` (versions, an initialized data dir),
 * `embed/etcd.go` `print`, `etcdserver/raft.go` `startNode`/`restartNode`, raft's own log,
 * `auth/store.go` (simple tokens), `etcdserver/server.go` (`Start`, `publish`,
 * `updateClusterVersion`), `etcdserver/api/membership/cluster.go`, `etcdserver/api/capability.go`.
 */
import { arch, platform } from 'node:os';
import path from 'node:path';

import type { Logger } from 'pino';

import type { ServerConfig } from '../config.js';
import { isCapnslog, plog, raftLog } from '../logger.js';
import { CLUSTER_VERSION, SERVER_VERSION } from '../version.js';
import type { EtcdServer } from './etcd-server.js';

/** The cluster version as etcd logs it: major.minor. */
const LOGGED_CLUSTER_VERSION = CLUSTER_VERSION.split('.').slice(0, 2).join('.');

const hex = (id: bigint): string => id.toString(16);

/** Go's `%v` of a `[]string` / `types.URLs`: the items space-separated in brackets. */
const goList = (urls: readonly string[]): string => `[${urls.join(' ')}]`;

/** etcdmain's first lines, under capnslog: the versions (under zap they are in `starting an etcd server`). */
export function logEtcdmainVersions(log: Logger, etcdTsVersion: string): void {
  if (!isCapnslog(log)) return;
  for (const text of [`etcd Version: ${SERVER_VERSION}`, `etcd-ts Version: ${etcdTsVersion}`, `Node Version: ${process.version}`, `Node OS/Arch: ${platform()}/${arch()}`]) {
    log.info({ ...plog('etcdmain', 'I', text) }, text);
  }
}

/** etcdmain's line for a data dir that holds a member already: it starts as that member. */
export function logInitializedMember(log: Logger, dataDir: string): void {
  const text = 'the server is already initialized as member before, starting as etcd member...';
  log.info({ 'data-dir': dataDir, 'dir-type': 'member', ...plog('etcdmain', 'N', text) }, 'server has been already initialized');
}

/**
 * The server's lines from its configuration to its raft node's start and its membership (etcd
 * `embed.print`, `startNode` or `restartNode`, raft's first lines, `NewServer`, `Start`).
 */
export function logServerStarting(log: Logger, config: ServerConfig, server: EtcdServer): void {
  const member = server.memberId;
  const cluster = server.clusterId;
  const memberDir = path.join(config.dataDir, 'member');
  const initialized = server.memberInitialized;
  const embedLines = [
    `name = ${config.name}`,
    `data dir = ${config.dataDir}`,
    `member dir = ${memberDir}`,
    ...(config.walDir ? [`dedicated WAL dir = ${config.walDir}`] : []),
    `heartbeat = ${config.heartbeatIntervalMs}ms`,
    `election = ${config.electionTimeoutMs}ms`,
    `advertise client URLs = ${config.advertiseClientUrls.join(',')}`,
    ...(initialized ? [`initial advertise peer URLs = ${config.initialAdvertisePeerUrls.join(',')}`, 'initial cluster = '] : []),
  ];
  if (isCapnslog(log)) for (const text of embedLines) log.info({ ...plog('embed', 'I', text) }, text);
  else log.info(
    {
      'etcd-version': SERVER_VERSION,
      'node-version': process.version,
      'member-initialized': initialized,
      name: config.name,
      'data-dir': config.dataDir,
      'wal-dir': config.walDir,
      'member-dir': memberDir,
      'heartbeat-interval': `${config.heartbeatIntervalMs}ms`,
      'election-timeout': `${config.electionTimeoutMs}ms`,
      'initial-advertise-peer-urls': config.initialAdvertisePeerUrls,
      'listen-peer-urls': config.listenPeerUrls,
      'advertise-client-urls': config.advertiseClientUrls,
      'listen-client-urls': config.listenClientUrls,
      'listen-metrics-urls': config.listenMetricsUrls,
      'initial-cluster-state': config.initialClusterState,
      'initial-cluster-token': config.initialClusterToken,
      'quota-backend-bytes': config.quotaBackendBytes,
      'max-request-bytes': config.maxRequestBytes,
      'max-concurrent-streams': config.maxConcurrentStreams,
      'auto-compaction-mode': config.autoCompactionMode,
      'auto-compaction-retention': config.autoCompactionRetention,
    },
    'starting an etcd server',
  );
  const term = server.raftTerm - 1n;
  if (initialized) {
    const index = server.commitIndexAtStart;
    const text = `restarting member ${hex(member)} in cluster ${hex(cluster)} at commit index ${index}`;
    log.info({ 'cluster-id': hex(cluster), 'local-member-id': hex(member), 'commit-index': Number(index), ...plog('etcdserver', 'I', text) }, 'restarting local member');
    raftLines(log, [
      `${hex(member)} switched to configuration voters=()`,
      `${hex(member)} became follower at term ${term}`,
      `newRaft ${hex(member)} [peers: [], term: ${term}, commit: ${index}, applied: 0, lastindex: ${index}, lastterm: ${term}]`,
    ]);
  } else {
    const text = `starting member ${hex(member)} in cluster ${hex(cluster)}`;
    log.info({ 'local-member-id': hex(member), 'cluster-id': hex(cluster), ...plog('etcdserver', 'I', text) }, 'starting local member');
    raftLines(log, [
      `${hex(member)} switched to configuration voters=()`,
      `${hex(member)} became follower at term 0`,
      `newRaft ${hex(member)} [peers: [], term: 0, commit: 0, applied: 0, lastindex: 0, lastterm: 0]`,
      `${hex(member)} became follower at term 1`,
      `${hex(member)} switched to configuration voters=(${member})`,
    ]);
  }
  if (config.authToken.type === 'simple') {
    log.warn({ ...plog('auth', 'W', 'simple token is not cryptographically signed') }, 'simple token is not cryptographically signed');
  }
  const starting = `starting server... [version: ${SERVER_VERSION}, cluster version: to_be_decided]`;
  log.info({ 'local-member-id': hex(member), 'local-server-version': SERVER_VERSION, 'cluster-version': 'to_be_decided', ...plog('etcdserver', 'I', starting) }, 'starting etcd server');
  // The member's configuration change, applied (again, at a restart: replayed from the log).
  raftLines(log, [`${hex(member)} switched to configuration voters=(${member})`]);
  const peerUrls = server.membership.selfPeerUrls;
  const added = `added member ${hex(member)} ${goList(peerUrls)} to cluster ${hex(cluster)}`;
  log.info(
    { 'cluster-id': hex(cluster), 'local-member-id': hex(member), 'added-peer-id': hex(member), 'added-peer-peer-urls': peerUrls, ...plog('etcdserver/membership', 'I', added) },
    'added member',
  );
  // A restart reads the cluster version back before its election.
  if (initialized) logClusterVersion(log, server);
}

/**
 * The raft election of a single member, its attributes (name, advertised client URLs) published,
 * and the cluster version set.
 */
export function logServerLeading(log: Logger, config: ServerConfig, server: EtcdServer): void {
  const member = hex(server.memberId);
  const cluster = hex(server.clusterId);
  const term = server.raftTerm;
  raftLines(log, [
    `${member} is starting a new election at term ${term - 1n}`,
    `${member} became candidate at term ${term}`,
    `${member} received MsgVoteResp from ${member} at term ${term}`,
    `${member} became leader at term ${term}`,
    `raft.node: ${member} elected leader ${member} at term ${term}`,
  ]);
  const version = LOGGED_CLUSTER_VERSION;
  if (!server.memberInitialized) {
    log.info({ 'cluster-version': version, ...plog('etcdserver', 'I', `setting up the initial cluster version to ${version}`) }, 'setting up initial cluster version');
  }
  const attributes = `{Name:${config.name} ClientURLs:${goList(config.advertiseClientUrls)}}`;
  log.info(
    {
      'local-member-id': member,
      'local-member-attributes': attributes,
      'request-path': `/0/members/${member}/attributes`,
      'cluster-id': cluster,
      'publish-timeout': '7s',
      ...plog('etcdserver', 'I', `published ${attributes} to cluster ${cluster}`),
    },
    'published local member to cluster through raft',
  );
}

/** A new member's cluster version, set once it serves (a restarted one logged it as it started). */
export function logCapabilities(log: Logger, server: EtcdServer): void {
  if (server.memberInitialized) return;
  logClusterVersion(log, server);
  if (!isCapnslog(log)) log.info({ 'cluster-version': LOGGED_CLUSTER_VERSION }, 'cluster version is updated');
}

/** The cluster version set, and the API's capabilities enabled for it. */
function logClusterVersion(log: Logger, server: EtcdServer): void {
  const version = LOGGED_CLUSTER_VERSION;
  const set = `set the initial cluster version to ${version}`;
  log.info({ 'cluster-id': hex(server.clusterId), 'local-member-id': hex(server.memberId), 'cluster-version': version, ...plog('etcdserver/membership', 'N', set) }, 'set initial cluster version');
  log.info({ 'cluster-version': version, ...plog('etcdserver/api', 'I', `enabled capabilities for version ${version}`) }, 'enabled capabilities for version');
}

/** Lines of raft's own logger (capnslog: `raft2006/01/02 15:04:05 INFO: …`; zap: the text as the message). */
function raftLines(log: Logger, lines: readonly string[]): void {
  for (const text of lines) log.info({ ...raftLog(text) }, text);
}
