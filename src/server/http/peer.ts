/**
 * The HTTP endpoints of a peer URL (etcd `etcdhttp.NewPeerHandler`), answering as etcd 3.4 does
 * (measured on the real etcd). etcd-ts has no raft peers, so what a peer would use to join or
 * replicate ends at the checks etcd makes before it: the version and cluster headers of
 * `/raft`, and the sender of a `/raft/stream/` request, which is never a member etcd-ts streams
 * to. The gRPC API is served on the same URLs by the listener (see embed.ts).
 *
 * - `GET /version`: as on a client URL.
 * - `GET /members`: every member as etcd's `membership.Member` JSON, with `X-Etcd-Cluster-ID`.
 * - `POST /members/promote/<id>`: etcd `PromoteMember` (see `promoteMember`): 404 `member <id>
 *   not found in cluster` for an ID that is not a decimal uint64, else the failure's own text
 *   (404 for an unknown ID, 412 otherwise; a refused permission is 500 `Internal Server Error`).
 * - `GET /members/hashkv` with a JSON `HashKVRequest` body: the `HashKVResponse` as JSON (Go's
 *   encoding). Under `--logger zap`, 400 `error unmarshalling request` for a body that is not
 *   the request, or the mvcc error for a compacted or future revision; under capnslog etcd 3.4
 *   panics there instead (it logs through a nil logger), so the connection is dropped.
 * - `POST /leases` (`LeaseKeepAliveRequest`, protobuf) renews a lease; `POST /leases/internal`
 *   (`LeaseInternalRequest`) answers its time to live; 404 `lease not found`. A
 *   `LeaseInternalRequest` without its inner request is a panic in etcd (dropped connection).
 * - `/raft/probing`: `{"OK":true,"Now":"<RFC 3339 time>"}`.
 * - `/raft` (POST), `/raft/snapshot` (POST), `/raft/stream/<type>/<id>` (GET): the method, then
 *   the sender's version headers (412 `incompatible version`) and cluster ID (412 `cluster ID
 *   mismatch`), as rafthttp checks them; then a raft message is decoded as etcd decodes it (400
 *   with etcd's text when it is not one, `wrong raft message type` for a snapshot that is not
 *   a MsgSnap), refused from a removed member (403), else read and dropped (204); a stream
 *   request gets 404 `invalid path` or `invalid from`, 410 `removed member` for a removed
 *   member and 404 `error sender not found` for any other.
 *
 * Other paths get Go's 404; paths that are not clean are redirected (301), as http.ServeMux does.
 */
import type http from 'node:http';
import { LeaseKeepAliveRequest, LeaseKeepAliveResponse, type Member } from '../../proto/gen/rpc.gen.js';
import { LeaseInternalRequest, LeaseInternalResponse, RaftMessage } from '../../proto/gen/raft_internal.gen.js';
import { unmarshalError } from '../../proto/unmarshal-check.js';
import { LeaseNotFoundError } from '../../mvcc/kv-store.js';
import type { EtcdServer } from '../etcd-server.js';
import { SERVER_VERSION } from '../../version.js';
import { promoteFailureReason } from '../membership.js';
import { promoteMember, toMember } from '../grpc/cluster-service.js';
import { hashByRev } from '../grpc/maintenance-service.js';
import { allowMethod, badRequest, cleanPath, httpError, redirect, reply, requestTarget, serveVersion } from './handlers.js';
import { readJsonValues } from './go-json.js';

/** rafthttp `connReadLimitByte`: how much of a pipeline message is read. */
const RAFT_MESSAGE_READ_LIMIT = 64 * 1024;
/** raftpb `MsgSnap`. */
const MSG_SNAP = 7;

/** etcd `version.MinClusterVersion`: the oldest cluster version a member of ours joins. */
const MIN_CLUSTER_VERSION: readonly [number, number] = [3, 0];

/** A Go panic in etcd's handler: net/http drops the connection without an answer. */
class HandlerPanic extends Error {}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A uint64 in `radix` 10 (Go `strconv.ParseUint`) or 16 (etcd `types.IDFromString`), else undefined. */
function parseUint64(s: string, radix: 10 | 16): bigint | undefined {
  if (!(radix === 10 ? /^[0-9]+$/ : /^[0-9a-fA-F]+$/).test(s)) return undefined;
  const id = BigInt(radix === 10 ? s : `0x${s}`);
  return id < 2n ** 64n ? id : undefined;
}

/**
 * Major and minor of a `MAJOR.MINOR.PATCH[-pre][+meta]` version header (go-semver), 2.0 when
 * the header is missing (etcd 2.0 sent none). An unparsable one is a panic in etcd
 * (`semver.Must`).
 */
function headerVersion(value: string | string[] | undefined): [number, number] {
  const text = typeof value === 'string' && value !== '' ? value : '2.0.0';
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.exec(text);
  if (!m) throw new HandlerPanic(`invalid version ${text}`);
  return [Number(m[1]), Number(m[2])];
}

const compareMajorMinor = (a: readonly [number, number], b: readonly [number, number]): number => a[0] - b[0] || a[1] - b[1];

/**
 * rafthttp `checkClusterCompatibilityFromHeader`: the sender's server version must be at least
 * our minimum cluster version, its minimum cluster version at most our version, and its
 * cluster ID ours. Returns the refusal's text, or undefined.
 */
function incompatibility(req: http.IncomingMessage, clusterId: string): string | undefined {
  const server = headerVersion(req.headers['x-server-version']);
  const minCluster = headerVersion(req.headers['x-min-cluster-version']);
  const [major, minor] = SERVER_VERSION.split('.').map(Number) as [number, number];
  if (compareMajorMinor(server, MIN_CLUSTER_VERSION) < 0 || compareMajorMinor(minCluster, [major, minor]) > 0) return 'incompatible version';
  if (req.headers['x-etcd-cluster-id'] !== clusterId) return 'cluster ID mismatch';
  return undefined;
}

/** Go's JSON of a `time.Time` (RFC 3339 with the fraction's trailing zeros cut) in the local zone. */
function goTimeJson(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const zone = offset === 0 ? 'Z' : `${offset > 0 ? '+' : '-'}${two(Math.trunc(Math.abs(offset) / 60))}:${two(Math.abs(offset) % 60)}`;
  const fraction = date.getMilliseconds() === 0 ? '' : `.${String(date.getMilliseconds()).padStart(3, '0').replace(/0+$/, '')}`;
  const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
  return `${day}T${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}${fraction}${zone}`;
}

/** Go's encoding/json of `membership.Member` (an ID as a number, empty attributes left out). */
function memberJson(m: Member): string {
  const fields = [`"id":${m.ID}`, `"peerURLs":${JSON.stringify(m.peerURLs)}`];
  if (m.isLearner) fields.push('"isLearner":true');
  if (m.name) fields.push(`"name":${JSON.stringify(m.name)}`);
  if (m.clientURLs.length > 0) fields.push(`"clientURLs":${JSON.stringify(m.clientURLs)}`);
  return `{${fields.join(',')}}`;
}

/**
 * Go's `json.Unmarshal` of a `HashKVRequest`: the revision (key matched without regard to
 * case), 0 when absent; throws when `body` is not one JSON object (or null) whose revision is
 * an int64.
 */
function hashKVRevision(body: Buffer): number {
  const { values, rest, error } = readJsonValues(body.toString('latin1'), true);
  const [value] = values;
  if (error || values.length !== 1 || body.toString('latin1').slice(rest).trim() !== '' || !value || (value.kind !== 'object' && value.kind !== 'null')) {
    throw new Error('error unmarshalling request');
  }
  let revision = 0;
  for (const [name, field] of value.kind === 'object' ? value.fields : []) {
    if (name.toLowerCase() !== 'revision' || field.kind === 'null') continue;
    if (field.kind !== 'number' || !/^-?[0-9]+$/.test(field.text) || BigInt(field.text) >= 2n ** 63n || BigInt(field.text) < -(2n ** 63n)) {
      throw new Error('error unmarshalling request');
    }
    revision = Number(field.text);
  }
  return revision;
}

/** The request handler of `etcd`'s peer URLs; `clientUrls` are its advertised client URLs. */
export function peerHandler(etcd: EtcdServer, clientUrls: readonly string[]): http.RequestListener {
  const clusterId = etcd.clusterId.toString(16);
  const clusterHeader = { 'X-Etcd-Cluster-Id': clusterId };

  const members = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!allowMethod(req, res, 'GET')) return;
    const list = etcd.membership.members().map((m) => memberJson(toMember(etcd, clientUrls, m)));
    reply(res, 200, { ...clusterHeader, 'Content-Type': 'application/json' }, `[${list.join(',')}]\n`);
  };

  const promote = async (req: http.IncomingMessage, res: http.ServerResponse, idText: string): Promise<void> => {
    if (!allowMethod(req, res, 'POST')) return;
    const id = parseUint64(idText, 10);
    if (id === undefined) return httpError(res, 404, `member ${idText} not found in cluster`, clusterHeader);
    try {
      // No token comes with a peer's request: with auth on, etcd's permission check refuses it.
      await promoteMember(etcd, id, () => etcd.auth.checkAdmin(etcd.auth.authInfo(undefined)));
    } catch (err) {
      const reason = promoteFailureReason(err);
      if (reason === 'membership: ID not found') return httpError(res, 404, reason, clusterHeader);
      if (reason.startsWith('auth: ')) return reply(res, 500, { ...clusterHeader, 'Content-Type': 'application/json' }, JSON.stringify({ message: 'Internal Server Error' }));
      return httpError(res, 412, reason, clusterHeader);
    }
  };

  const hashKV = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (!allowMethod(req, res, 'GET')) return;
    const body = await readBody(req);
    // etcd 3.4 logs a refusal through its zap logger, which is nil under capnslog: a panic.
    const refuse = (text: string): void => {
      if (etcd.config.loggerKind !== 'zap') throw new HandlerPanic(text);
      httpError(res, 400, text);
    };
    let revision: number;
    try {
      revision = hashKVRevision(body);
    } catch (err) {
      return refuse((err as Error).message);
    }
    let hashed: Awaited<ReturnType<typeof hashByRev>>;
    try {
      hashed = await hashByRev(etcd.store, revision);
    } catch (err) {
      return refuse((err as Error & { details?: string }).details?.replace(/^etcdserver: /, '') ?? String(err));
    }
    const { hash, currentRev, compactRev } = hashed;
    const fields = [`"header":{${currentRev !== 0 ? `"revision":${currentRev}` : ''}}`];
    if (hash !== 0) fields.push(`"hash":${hash}`);
    if (compactRev !== 0) fields.push(`"compact_revision":${compactRev}`);
    reply(res, 200, { ...clusterHeader, 'Content-Type': 'application/json' }, `{${fields.join(',')}}`);
  };

  /** etcd `leaseHandler`: POST only (without an `Allow` header), the body a protobuf request. */
  const leases = async (req: http.IncomingMessage, res: http.ServerResponse, internal: boolean): Promise<void> => {
    if (req.method !== 'POST') return httpError(res, 405, 'Method Not Allowed');
    const body = await readBody(req);
    if (unmarshalError(internal ? 'etcdserverpb.LeaseInternalRequest' : 'etcdserverpb.LeaseKeepAliveRequest', body) !== undefined) {
      return httpError(res, 400, 'error unmarshalling request');
    }
    let answer: Uint8Array;
    if (internal) {
      const r = LeaseInternalRequest.decode(body).LeaseTimeToLiveRequest;
      // etcd reads the inner request's ID without checking it is there: a panic.
      if (!r) throw new HandlerPanic('nil LeaseTimeToLiveRequest');
      const lease = etcd.lessor.timeToLive(r.ID);
      if (!lease) return httpError(res, 404, new LeaseNotFoundError().message);
      const keys = r.keys ? lease.keys.map((k) => Buffer.from(k)) : [];
      const header = { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n };
      answer = LeaseInternalResponse.encode({ LeaseTimeToLiveResponse: { header, ID: r.ID, TTL: BigInt(lease.ttlSec), grantedTTL: BigInt(lease.grantedTtlSec), keys } }).finish();
    } else {
      const { ID } = LeaseKeepAliveRequest.decode(body);
      let ttl: number;
      try {
        ttl = await etcd.lessor.renew(ID);
      } catch (err) {
        return httpError(res, err instanceof LeaseNotFoundError ? 404 : 400, (err as Error).message);
      }
      answer = LeaseKeepAliveResponse.encode({ header: undefined, ID, TTL: BigInt(ttl) }).finish();
    }
    reply(res, 200, { 'Content-Type': 'application/protobuf' }, answer);
  };

  /**
   * A raft message as etcd's `Process` takes it: from a removed member 403 (etcd's JSON
   * error), else stepped into raft, which answers 204 (dropped here: no raft peer is ours).
   */
  const processMessage = (res: http.ServerResponse, body: Buffer, headers: Record<string, string>): void => {
    const { from } = RaftMessage.decode(body);
    if (etcd.membership.isRemoved(from)) {
      return reply(res, 403, { ...headers, 'Content-Type': 'application/json' }, JSON.stringify({ message: 'cannot process message from removed member' }));
    }
    res.writeHead(204, headers);
    res.end();
  };

  /** rafthttp's pipeline handler (`POST /raft`): one message, read up to 64 KiB. */
  const pipeline = async (req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>): Promise<void> => {
    const body = (await readBody(req)).subarray(0, RAFT_MESSAGE_READ_LIMIT);
    if (unmarshalError('etcdserverpb.RaftMessage', body) !== undefined) return httpError(res, 400, 'error unmarshalling raft message', headers);
    processMessage(res, body, headers);
  };

  /**
   * rafthttp's snapshot handler (`POST /raft/snapshot`): an 8-byte big-endian length, the
   * message (which must be a MsgSnap), then the snapshot's data, which etcd-ts drops.
   */
  const snapshot = async (req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>): Promise<void> => {
    const body = await readBody(req);
    const length = body.length >= 8 ? body.readBigUInt64BE(0) : undefined;
    const decodeError =
      length === undefined ? (body.length === 0 ? 'EOF' : 'unexpected EOF')
      : length > 0n && body.length === 8 ? 'EOF'
      : BigInt(body.length - 8) < length ? 'unexpected EOF'
      : undefined;
    const message = body.subarray(8, 8 + Number(length ?? 0n));
    // etcd's message types are raftpb's: its Go names lack our `Raft` prefix.
    const error = decodeError ?? unmarshalError('etcdserverpb.RaftMessage', message)?.replace(/\bRaft(?=[A-Z])/g, '');
    if (error !== undefined) return httpError(res, 400, `failed to decode raft message (${error})`, headers);
    if (RaftMessage.decode(message).type !== MSG_SNAP) return httpError(res, 400, 'wrong raft message type', headers);
    processMessage(res, message, headers);
  };

  /** rafthttp's handlers, up to what a member with no raft peers can answer. */
  const raft = async (req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> => {
    if (path === '/raft/probing') {
      return reply(res, 200, { 'Content-Type': 'text/plain; charset=utf-8' }, `${JSON.stringify({ OK: true, Now: goTimeJson(new Date()) })}\n`);
    }
    const stream = path.startsWith('/raft/stream/');
    if (!stream && path !== '/raft' && path !== '/raft/snapshot') return httpError(res, 404, '404 page not found');
    if (!allowMethod(req, res, stream ? 'GET' : 'POST')) return;
    const headers: Record<string, string> = stream ? { 'X-Server-Version': SERVER_VERSION, ...clusterHeader } : clusterHeader;
    const refusal = incompatibility(req, clusterId);
    if (refusal !== undefined) return httpError(res, 412, refusal, headers);
    if (path === '/raft') return pipeline(req, res, headers);
    if (path === '/raft/snapshot') return snapshot(req, res, headers);
    const type = path.slice('/raft/stream/'.length, path.lastIndexOf('/'));
    if (type !== 'msgapp' && type !== 'message') return httpError(res, 404, 'invalid path', headers);
    const from = parseUint64(path.slice(path.lastIndexOf('/') + 1), 16);
    if (from === undefined) return httpError(res, 404, 'invalid from', headers);
    if (etcd.membership.isRemoved(from)) return httpError(res, 410, 'removed member', headers);
    httpError(res, 404, 'error sender not found', headers);
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = requestTarget(req);
    if (!url) return badRequest(res);
    const path = cleanPath(url.pathname);
    if (path !== url.pathname) return redirect(req, res, path + url.search);
    if (path === '/version') return serveVersion(req, res);
    if (path === '/members') return members(req, res);
    if (path === '/members/promote') return redirect(req, res, `${path}/${url.search}`);
    if (path.startsWith('/members/promote/')) return promote(req, res, path.slice('/members/promote/'.length));
    if (path === '/members/hashkv') return hashKV(req, res);
    if (path === '/leases' || path === '/leases/internal') return leases(req, res, path === '/leases/internal');
    if (path === '/raft/stream') return redirect(req, res, `${path}/${url.search}`);
    if (path === '/raft' || path.startsWith('/raft/')) return raft(req, res, path);
    httpError(res, 404, '404 page not found');
  };

  return (req, res) => {
    route(req, res).catch(() => res.destroy());
  };
}
