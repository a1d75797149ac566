/**
 * The gRPC Maintenance service (etcd `api/v3rpc/maintenance.go`): Status, Alarm, Hash, HashKV,
 * Defragment, Snapshot, and MoveLeader as a single member answers it. (Downgrade is not part of
 * the etcd 3.4 API.)
 */
import { createHash } from 'node:crypto';
import { status as Status, type ServerWritableStream } from '@grpc/grpc-js';
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { crc32c } from '@node-rs/crc32';
import type { TokenMetadata } from '../../auth/auth-store.js';
import { BUCKETS_BY_NAME, WAL_SEQ_META } from '../../mvcc/backend.js';
import type { KVStore } from '../../mvcc/kv-store.js';
import { bytesToRev, revToBytes } from '../../mvcc/revision.js';
import {
  MaintenanceService,
  type MaintenanceServer,
  AlarmRequest,
  type AlarmResponse,
  type HashKVRequest,
  type HashKVResponse,
  type HashResponse,
  type MoveLeaderRequest,
  type SnapshotRequest,
  type SnapshotResponse,
  type StatusResponse,
} from '../../proto/gen/rpc.gen.js';
import { humanizeBytes } from '../../go-format.js';
import { plog } from '../../logger.js';
import { Errors, EtcdError, toServiceError, unmappedError } from '../errors.js';
import { RAFT_FIELD, alarmText, type EtcdServer } from '../etcd-server.js';
import { SERVER_VERSION } from '../../version.js';
import { writeEtcdSnapshot } from '../snapshot.js';
import { unary } from './unary.js';

/** Maintenance.Status (etcd `maintenanceServer.Status`). */
export function status(etcd: EtcdServer): StatusResponse {
  return {
    header: etcd.fillHeader(undefined),
    version: SERVER_VERSION,
    dbSize: BigInt(etcd.backend.size()),
    leader: etcd.memberId,
    raftIndex: etcd.raftIndex,
    raftTerm: etcd.raftTerm,
    raftAppliedIndex: etcd.raftIndex,
    errors: etcd.listAlarms().map(alarmText),
    dbSizeInUse: BigInt(etcd.backend.sizeInUse()),
    isLearner: false,
  };
}

/** Bytes fed to the native crc32c at once: per-record calls would cost more than the hashing. */
const HASH_CHUNK_BYTES = 1 << 20;

/** An incremental crc32 (Castagnoli) over a sequence of byte strings (Go's `crc32.New(castagnoli)`). */
class Crc32c {
  private crc = 0;
  private parts: Buffer[] = [];
  private buffered = 0;

  write(b: Buffer): void {
    this.parts.push(b);
    this.buffered += b.length;
    if (this.buffered >= HASH_CHUNK_BYTES) this.flush();
  }

  /** The checksum of everything written, as an unsigned 32-bit number. */
  sum32(): number {
    this.flush();
    return this.crc >>> 0;
  }

  private flush(): void {
    if (this.buffered === 0) return;
    this.crc = crc32c(Buffer.concat(this.parts, this.buffered), this.crc);
    this.parts = [];
    this.buffered = 0;
  }
}

/** The `key` bucket's name, hashed first as etcd does (`keyBucketName`). */
const KEY_BUCKET = Buffer.from('key');

/**
 * etcd 3.4 `store.HashByRev`: crc32c over the name `key`, then every record of the `key`
 * bucket (revision bytes, then the marshalled mvccpb.KeyValue) with main revision ≤ `rev`,
 * in revision order. Records below compactRev + 1 count only if they are in
 * `index.keep(rev)` — the records a finished compaction leaves — unless that set is empty (etcd's
 * quirk: then every such record counts). The backend stores etcd's bytes, so the value equals a
 * real etcd's for the same history.
 *
 * `rev` 0 means the current revision; a negative one hashes no record. Resolves to the hash,
 * the current revision (the response header's) and the compacted revision (-1 when never
 * compacted, as etcd's `compactMainRev`), all as of the call.
 * Throws etcd's ErrCompacted when 0 < rev ≤ compacted revision, ErrFutureRev when rev > current.
 */
export async function hashByRev(store: KVStore, rev: number): Promise<{ hash: number; currentRev: number; compactRev: number }> {
  const compactRev = store.compactRev;
  const currentRev = store.publishedRev;
  if (rev > 0 && rev <= compactRev) throw Errors.compacted();
  if (rev > 0 && rev > currentRev) throw Errors.futureRev();
  if (rev === 0) rev = currentRev;
  const h = new Crc32c();
  h.write(KEY_BUCKET);
  // A negative revision is below every record: etcd hashes the bucket's name alone.
  if (rev < 0) return { hash: h.sum32(), currentRev, compactRev };
  const keep = store.index.keep(rev);
  const lowerMain = compactRev + 1;
  const end = revToBytes({ main: rev + 1, sub: 0 });
  // One consistent read (a snapshot of the backend, which a defragmentation waits for), in
  // slices between which the rest of the process runs: a large store takes a while.
  await store.backend.readSnapshot(async (read) => {
    let since = performance.now();
    for (const { key, value } of read('key')) {
      if (Buffer.compare(key, end) >= 0) break;
      if (performance.now() - since > HASH_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const r = bytesToRev(key);
      if (r.main < lowerMain && keep.size > 0 && !keep.has(r.main, r.sub)) continue;
      h.write(key);
      h.write(value);
    }
  });
  return { hash: h.sum32(), currentRev, compactRev };
}

/** How long `hashByRev` reads before it lets the rest of the process run, in ms. */
const HASH_SLICE_MS = 5;

/**
 * Meta entries left out of the whole-backend hash (etcd `DefaultIgnores` skips
 * `consistent_index`; `term` is ours and moves at every start the same way, `walSeq` at every
 * LMDB commit).
 */
const HASH_IGNORED_META = new Set(['consistent_index', 'term', WAL_SEQ_META]);

/**
 * etcd `backend.Hash(DefaultIgnores)`: crc32c over every bucket's name followed by its keys and
 * values in key order. It covers the same logical content as etcd's, but our buckets hold
 * records etcd keeps elsewhere or encodes differently (meta values as text, alarms as JSON,
 * our own `term`), so the value never equals a real etcd's bbolt hash: only compare it
 * between etcd-ts members or over time.
 */
export function hashBackend(etcd: EtcdServer): number {
  const h = new Crc32c();
  for (const name of BUCKETS_BY_NAME) {
    h.write(Buffer.from(name));
    for (const { key, value } of etcd.backend.range(name)) {
      if (name === 'meta' && HASH_IGNORED_META.has(key.toString('utf8'))) continue;
      h.write(key);
      h.write(value);
    }
  }
  return h.sum32();
}

/** Size of each Snapshot message's blob (etcd `snapshotSendBufferSize`: 32 KiB). */
const SNAPSHOT_CHUNK_BYTES = 32 * 1024;

/** Thrown into the snapshot's writer when the client went away: the stream just stops. */
class SnapshotAbandoned extends Error {}

/**
 * Maintenance.Snapshot (etcd `maintenanceServer.Snapshot`): the backend as etcd's bbolt database
 * (src/server/snapshot.ts), sent as it is made, in 32 KiB blobs each carrying `remaining_bytes`
 * (bytes still to come after it), then one last message whose blob is the SHA-256 of the
 * content (remaining 0), which `etcdctl snapshot restore` checks. Stops early when the client
 * goes away.
 */
async function streamSnapshot(etcd: EtcdServer, call: ServerWritableStream<SnapshotRequest, SnapshotResponse>): Promise<void> {
  const v3rpc = (text: string) => plog('etcdserver/api/v3rpc', 'I', text);
  const sha = createHash('sha256');
  let total = 0;
  let size = '';
  let sent = 0;
  let blob = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
  let filled = 0;
  const sendBlob = async (bytes: Buffer): Promise<void> => {
    if (call.cancelled) throw new SnapshotAbandoned();
    sent += bytes.length;
    sha.update(bytes);
    await send(call, { header: undefined, remainingBytes: BigInt(total - sent), blob: bytes });
  };
  try {
    await writeEtcdSnapshot(etcd.backend, {
      size(bytes) {
        total = bytes;
        size = humanizeBytes(total);
        etcd.log.info({ 'total-bytes': total, size, ...v3rpc(`sending database snapshot to client ${size} [${total} bytes]`) }, 'sending database snapshot to client');
      },
      async write(bytes) {
        for (let at = 0; at < bytes.length; ) {
          const n = bytes.copy(blob, filled, at);
          filled += n;
          at += n;
          if (filled === SNAPSHOT_CHUNK_BYTES) {
            const full = blob;
            blob = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
            filled = 0;
            await sendBlob(full);
          }
        }
      },
    });
    if (filled > 0) await sendBlob(blob.subarray(0, filled));
  } catch (err) {
    if (err instanceof SnapshotAbandoned) return;
    throw err;
  }
  const digest = sha.digest();
  etcd.log.info(
    { 'total-bytes': total, 'checksum-size': digest.length, ...v3rpc(`sending database sha256 checksum to client [${digest.length} bytes]`) },
    'sending database sha256 checksum to client',
  );
  await send(call, { header: undefined, remainingBytes: 0n, blob: digest });
  etcd.log.info({ 'total-bytes': total, size, ...v3rpc(`successfully sent database snapshot to client ${size} [${total} bytes]`) }, 'successfully sent database snapshot to client');
}

/** Writes one message and waits until the stream can take more (backpressure) or the call is gone. */
function send(call: ServerWritableStream<SnapshotRequest, SnapshotResponse>, msg: SnapshotResponse): Promise<void> {
  return new Promise((resolve) => {
    if (call.write(msg) || call.cancelled) {
      resolve();
      return;
    }
    const done = (): void => {
      call.off('drain', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('close', done);
  });
}

/**
 * Registers the Maintenance service. With auth on, Hash, HashKV, Defragment and Snapshot need
 * root's privileges (etcd `authMaintenanceServer`, whose errors leave as Unknown with the auth
 * package's text, see `unmappedError`) and Alarm a valid token if one is given (it is a
 * raft request); Status and MoveLeader check nothing.
 */
export function addMaintenanceService(grpc: Server, etcd: EtcdServer): void {
  const admin = (md: TokenMetadata) => {
    try {
      etcd.auth.checkAdmin(etcd.auth.authInfo(md));
    } catch (err) {
      throw unmappedError(err);
    }
  };
  const handlers: MaintenanceServer = {
    status: unary(() => status(etcd)),
    // The 3.4 AlarmResponse carries no header (etcd `applierV3backend.Alarm`). etcd's Alarm
    // returns its raft request's error unmapped: a token refused is Unknown, in auth's words, and
    // so is a request too large, in etcdserver's.
    alarm: unary(async (r: AlarmRequest, md): Promise<AlarmResponse> => {
      try {
        etcd.checkRequestSize(etcd.auth.authInfo(md), AlarmRequest.encode(r).finish().length, RAFT_FIELD.alarm);
      } catch (err) {
        throw unmappedError(err);
      }
      return { header: undefined, alarms: await etcd.alarm(r.action, r.memberID, r.alarm) };
    }),
    hash: unary(async (_r, md): Promise<HashResponse> => {
      admin(md);
      await etcd.store.sync();
      return { header: etcd.fillHeader(undefined), hash: hashBackend(etcd) };
    }),
    hashKv: unary(async (r: HashKVRequest, md): Promise<HashKVResponse> => {
      admin(md);
      const { hash, currentRev, compactRev } = await hashByRev(etcd.store, Number(r.revision));
      const header = etcd.fillHeader(undefined);
      header.revision = BigInt(currentRev);
      return { header, hash, compactRevision: BigInt(compactRev) };
    }),
    defragment: unary(async (_r, md) => {
      admin(md);
      etcd.log.info(plog('etcdserver/api/v3rpc', 'N', 'starting to defragment the storage backend...'), 'starting defragment');
      await etcd.defragment();
      etcd.log.info(plog('etcdserver/api/v3rpc', 'N', 'finished defragmenting the storage backend'), 'finished defragment');
      // Like Alarm, etcd 3.4 answers Defragment and MoveLeader without a header.
      return { header: undefined };
    }),
    snapshot: (call: ServerWritableStream<SnapshotRequest, SnapshotResponse>) => {
      Promise.resolve()
        .then(() => admin(call.metadata))
        .then(() => streamSnapshot(etcd, call))
        .then(
          () => call.end(),
          (err: unknown) => {
            etcd.log.warn({ err, ...plog('etcdserver/api/v3rpc', 'W', `failed to send database snapshot (${(err as Error).message})`) }, 'failed to send database snapshot');
            // A server stream ends with the status of an emitted error.
            call.emit('error', toServiceError(err));
          },
        );
    },
    moveLeader: unary((r: MoveLeaderRequest) => {
      // The only member leads already; moving to it is a no-op, any other target is unknown
      // (etcd `EtcdServer.MoveLeader`: ErrBadLeaderTransferee).
      if (r.targetID !== etcd.memberId) throw new EtcdError(Status.FAILED_PRECONDITION, 'etcdserver: bad leader transferee');
      return { header: undefined };
    }),
  };
  grpc.addService(MaintenanceService, handlers);
}
