/**
 * The database file Maintenance.Snapshot sends: etcd 3.4's backend, a bbolt file, so that
 * `etcdctl snapshot status` reads an etcd-ts snapshot and `etcdctl snapshot restore` turns it
 * into an etcd data dir (a way from etcd-ts to etcd); and the way back, `importEtcdSnapshot`,
 * which starts an empty etcd-ts from the bbolt file such a data dir holds.
 *
 * The backend is read consistently (one LMDB read transaction, after everything queued is
 * committed), and its buckets are written out with etcd's names and encodings as the bytes are
 * sent. Most of them are etcd's
 * byte for byte already (`key`, `lease`, `auth`, `authUsers`, `authRoles`); two are converted:
 * - `meta`: `consistent_index` as 8 bytes big-endian, `scheduledCompactRev` and
 *   `finishedCompactRev` as revision bytes (etcd's `revToBytes`), where etcd-ts keeps decimal
 *   text; etcd-ts's own entries (`term`, `memberID`, `clusterID`, `walSeq`) are left out;
 * - `alarm`: keyed by the marshalled `AlarmMember`, empty values.
 * Membership (`members`, `members_removed`, `cluster`) is left out: `snapshot restore` writes
 * the new cluster's own.
 */
import { boltEntries, writeBoltImage, type BoltSink } from '../mvcc/bolt-file.js';
import { BUCKETS_BY_NAME, type Backend, type BucketName } from '../mvcc/backend.js';
import { bytesToRev, revToBytes } from '../mvcc/revision.js';
import { AlarmMember } from '../proto/gen/rpc.gen.js';

/** An entry as etcd stores it. */
type Entry = readonly [key: Buffer, value: Buffer];

const byKey = (a: Entry, b: Entry): number => Buffer.compare(a[0], b[0]);

/** etcd's `meta` entries from etcd-ts's (see the module comment). */
function etcdMeta(entries: Iterable<{ key: Buffer; value: Buffer }>): Entry[] {
  const out: Entry[] = [];
  for (const { key, value } of entries) {
    const name = key.toString();
    if (name === 'consistent_index') {
      const index = Buffer.alloc(8);
      index.writeBigUInt64BE(BigInt(value.toString()));
      out.push([key, index]);
    } else if (name === 'scheduledCompactRev' || name === 'finishedCompactRev') {
      out.push([key, revToBytes({ main: Number(value.toString()), sub: 0 })]);
    }
  }
  return out.sort(byKey);
}

/**
 * An alarm's record in our `alarm` bucket: etcd's key (the marshalled AlarmMember), and its
 * member and type as JSON (the member ID as a decimal string).
 */
export function alarmEntry(m: AlarmMember): [Buffer, Buffer] {
  return [Buffer.from(AlarmMember.encode(m).finish()), Buffer.from(JSON.stringify({ memberID: m.memberID.toString(), alarm: m.alarm }))];
}

/** etcd's `alarm` entries from etcd-ts's: the same keys, with no value. */
function etcdAlarms(entries: Iterable<{ key: Buffer }>): Entry[] {
  return [...entries].map(({ key }) => [key, Buffer.alloc(0)] as Entry).sort(byKey);
}

/**
 * Writes a consistent snapshot of `backend` to `out` as etcd 3.4's bbolt database, its size
 * first and then its bytes in order, as they are made (no temp file). Rejects with what `out`
 * rejects with.
 */
export function writeEtcdSnapshot(backend: Backend, out: BoltSink): Promise<void> {
  return backend.readSnapshot((read) =>
    writeBoltImage(
      () =>
        BUCKETS_BY_NAME.map((name) => ({
          name: Buffer.from(name),
          entries:
            name === 'meta' ? etcdMeta(read(name)) : name === 'alarm' ? etcdAlarms(read(name)) : (function* () {
              for (const { key, value } of read(name)) yield [key, value] as const;
            })(),
        })),
      out,
    ),
  );
}

/**
 * Removes what an import a crash cut short committed (see `importEtcdSnapshot`): every entry of
 * the buckets the import fills and the compaction state it took from the file, so that the
 * next import starts from an empty store. Entries are found by the backend's scan (LMDB and
 * queued writes); nothing is removed from a store that has none.
 */
export async function clearImport(backend: Backend): Promise<void> {
  for (const bucket of BUCKETS_BY_NAME) {
    const names =
      bucket === 'meta'
        ? ['scheduledCompactRev', 'finishedCompactRev'].filter((n) => backend.getMeta(n) !== undefined).map((n) => Buffer.from(n))
        : [...backend.range(bucket)].map(({ key }) => key);
    for (const key of names) backend.remove(bucket, key);
  }
  await backend.forceCommit();
}

/** Bytes of keys and values an import queues before it commits them (see `importEtcdSnapshot`). */
const IMPORT_CHUNK_BYTES = 64 << 20;

/**
 * Loads etcd 3.4's bbolt database `file` (what `etcdctl snapshot restore` leaves at
 * `<data-dir>/member/snap/db`, or an etcd data dir's own) into an empty `backend`, converting
 * `meta` and `alarm` back to etcd-ts's forms (the compaction state; the raft index starts as a
 * fresh member's). The member ID and peer URLs are taken from the `members` bucket when it
 * holds exactly one member, so the server keeps the member `snapshot restore` made. Every
 * `chunkBytes` of entries (default IMPORT_CHUNK_BYTES) are committed (log and LMDB) before more are read, so that
 * memory stays bounded whatever the file's size; the last entries are left queued (readable at
 * once, durable with the backend's next commit). The caller marks the import finished
 * (`consistent_index`) with the last of them: a crash before that leaves a store with no
 * `consistent_index`, which the next start clears and imports again. Resolves to the raft
 * index of the last entry the file holds (etcd's `consistent_index`; 0 when absent), from which
 * etcd's log goes on. Rejects when `file` is not a bbolt database.
 */
export async function importEtcdSnapshot(backend: Backend, file: string, chunkBytes = IMPORT_CHUNK_BYTES): Promise<bigint> {
  let consistentIndex = 0n;
  const ours = new Set<string>(BUCKETS_BY_NAME);
  const members: { id: string; peerURLs: string[] | undefined }[] = [];
  let queued = 0;
  for (const { bucket: bucketName, key, value } of boltEntries(file)) {
    const bucket = bucketName.toString();
    if (bucket === 'members') members.push({ id: key.toString(), peerURLs: (JSON.parse(value.toString()) as { peerURLs?: string[] }).peerURLs });
    else if (bucket === 'meta') {
      const name = key.toString();
      if (name === 'scheduledCompactRev' || name === 'finishedCompactRev') backend.putMeta(name, bytesToRev(value).main);
      else if (name === 'consistent_index' && value.length === 8) consistentIndex = value.readBigUInt64BE(0);
    } else if (bucket === 'alarm') {
      backend.put('alarm', ...alarmEntry(AlarmMember.decode(key)));
    } else if (ours.has(bucket)) {
      backend.put(bucket as BucketName, Buffer.from(key), Buffer.from(value));
      queued += key.length + value.length;
      if (queued >= chunkBytes) {
        await backend.forceCommit();
        queued = 0;
      }
    }
  }
  if (members.length === 1) {
    backend.putMeta('memberID', BigInt(`0x${members[0]!.id}`).toString());
    if (members[0]!.peerURLs) backend.putMeta('peerURLs', JSON.stringify(members[0]!.peerURLs));
  }
  return consistentIndex;
}
