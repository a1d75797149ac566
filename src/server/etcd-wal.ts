/**
 * Reads etcd 3.4's write-ahead log (etcd's `wal` package: `wal.ReadAll` and its decoder), so
 * that etcd-ts started on an etcd data dir applies the raft entries etcd logged but had not yet
 * committed to its bbolt file (see `EtcdServer.open`). Read only: etcd-ts never writes etcd's
 * log.
 *
 * Files: `<wal-dir>/<seq>-<index>.wal` (16 hex digits each), read in name order as one stream
 * of frames. A frame is an 8-byte little-endian length, then a `walpb.Record` and its padding:
 * the low 56 bits give the record's bytes; when the top bit is set, the top byte's low 3 bits
 * give the padding after it (etcd pads records to 8 bytes). A zero length is preallocated room:
 * that file ends there. Each record's `crc` is the crc32c (Castagnoli) of the data of every
 * record so far, chained across files; a crc record (type 4) restarts the chain at its value.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { RaftConfChange, RaftEntry, RaftHardState, WalMetadata, WalRecord } from '../proto/gen/raft_internal.gen.js';

const WAL_NAME = /^[0-9a-f]{16}-[0-9a-f]{16}\.wal$/;
/** `walpb.Record` types (etcd `wal.metadataType` … `snapshotType`). */
const METADATA_TYPE = 1n;
const ENTRY_TYPE = 2n;
const STATE_TYPE = 3n;
const CRC_TYPE = 4n;
/** etcd's `maxWALEntrySizeLimit`: a longer frame is not a record. */
const MAX_RECORD_BYTES = 10 * 1024 * 1024;
/** etcd's `minSectorSize`: torn writes are found sector by sector. */
const SECTOR_BYTES = 512;

/**
 * What etcd's log holds: raft entries by index (a later entry replaces the log from its index
 * on) after the index `readEtcdWal` was given, and every configuration change; the index of
 * the log's last entry (0 when it has none) and whether any of its entries is a normal one
 * (raft's empty entries and requests, not membership); the last hard state; and the member and
 * cluster IDs its files begin with (etcd's `Metadata`, which is where a data dir `snapshot
 * restore` made keeps them).
 */
export interface EtcdWal {
  entries: RaftEntry[];
  lastIndex: bigint;
  normalEntries: boolean;
  hardState: RaftHardState | undefined;
  metadata: WalMetadata | undefined;
}

/** raftpb `EntryNormal`, `EntryConfChange` and `ConfChangeAddNode`. */
const NORMAL_ENTRY = 0;
const CONF_CHANGE_ENTRY = 1;
const ADD_NODE = 0;

/**
 * The peer URLs the log's last configuration change adding member `id` gave it (`snapshot
 * restore` writes one per member); undefined when there is none.
 */
export function peerUrlsAdded(wal: EtcdWal, id: bigint): string[] | undefined {
  let urls: string[] | undefined;
  for (const e of wal.entries) {
    if (e.Type !== CONF_CHANGE_ENTRY) continue;
    const cc = RaftConfChange.decode(e.Data);
    if (cc.Type !== ADD_NODE || cc.NodeID !== id) continue;
    const member = JSON.parse(Buffer.from(cc.Context).toString()) as { peerURLs?: unknown };
    if (Array.isArray(member.peerURLs) && member.peerURLs.every((u) => typeof u === 'string')) urls = member.peerURLs as string[];
  }
  return urls;
}

/** The `*.wal` files of `dir`, in log order; none when `dir` does not exist. */
export function etcdWalFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => WAL_NAME.test(n))
    .sort()
    .map((n) => path.join(dir, n));
}

/**
 * Reads every record of etcd's log in `dir`, keeping the entries after index `after` (those a
 * database at that index lacks: committed entries up to it are never replaced) and the
 * configuration changes; the others count only in `lastIndex` and `normalEntries`, so that a
 * long log is not held in memory. A last record cut short or torn (a sector of it still zeros:
 * a crash during its write) ends the log, as etcd's decoder treats it. Throws `wal: crc
 * mismatch` (etcd's `ErrCRCMismatch` text) when a whole record's checksum does not hold, and
 * with the protobuf decoder's error when a record cannot be decoded.
 */
export function readEtcdWal(dir: string, after = -1n): EtcdWal {
  const entries: RaftEntry[] = [];
  let hardState: RaftHardState | undefined;
  let metadata: WalMetadata | undefined;
  let lastIndex = 0n;
  let normalBefore = false;
  let crc = 0;
  const wal = (): EtcdWal => ({ entries, lastIndex, normalEntries: normalBefore || entries.some((e) => e.Type === NORMAL_ENTRY), hardState, metadata });
  const files = etcdWalFiles(dir);
  for (const [i, file] of files.entries()) {
    const bytes = fs.readFileSync(file);
    const last = i === files.length - 1;
    for (let pos = 0; pos + 8 <= bytes.length; ) {
      const lenField = bytes.readBigUInt64LE(pos);
      if (lenField === 0n) break;
      const recBytes = Number(lenField & 0x00ff_ffff_ffff_ffffn);
      const padBytes = lenField >> 63n ? Number((lenField >> 56n) & 7n) : 0;
      const start = pos + 8;
      const end = start + recBytes + padBytes;
      if (recBytes >= MAX_RECORD_BYTES - padBytes) throw new Error('wal: max entry size limit exceeded');
      if (end > bytes.length) return wal();
      let rec: WalRecord;
      try {
        rec = WalRecord.decode(bytes.subarray(start, start + recBytes));
        if (rec.type !== CRC_TYPE && crc32c(rec.data, crc) !== rec.crc) throw new Error('wal: crc mismatch');
      } catch (err) {
        if (last && isTorn(bytes, start, end)) return wal();
        throw err;
      }
      pos = end;
      if (rec.type === CRC_TYPE) {
        if (crc !== 0 && rec.crc !== crc) throw new Error('wal: crc mismatch');
        crc = rec.crc;
      } else {
        crc = rec.crc;
        if (rec.type === ENTRY_TYPE) {
          const e = RaftEntry.decode(rec.data);
          lastIndex = e.Index;
          while (entries.length > 0 && entries.at(-1)!.Index >= e.Index) entries.pop();
          if (e.Index > after || e.Type === CONF_CHANGE_ENTRY) {
            // A copy: the entry's bytes are a view of the whole file's.
            e.Data = Buffer.from(e.Data);
            entries.push(e);
          } else if (e.Type === NORMAL_ENTRY) normalBefore = true;
        } else if (rec.type === STATE_TYPE) {
          hardState = RaftHardState.decode(rec.data);
        } else if (rec.type === METADATA_TYPE) {
          metadata = WalMetadata.decode(rec.data);
        }
      }
    }
  }
  return wal();
}

/** etcd's `isTornEntry`: some 512-byte sector of the frame's data in [start, end) is all zeros. */
function isTorn(bytes: Buffer, start: number, end: number): boolean {
  for (let at = start; at < end; ) {
    const next = Math.min(end, (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    if (bytes.subarray(at, next).every((b) => b === 0)) return true;
    at = next;
  }
  return false;
}
