/**
 * The write-ahead log in front of the backend (the role of etcd's `wal` package; our own file
 * format, since nothing but etcd-ts reads it).
 *
 * A write is durable once its record is in the log: one `pwrite` through a descriptor opened
 * `O_DSYNC`, to a sequential, zero-filled file. LMDB gets the same writes later, in large
 * batches (see `Backend`), so the one fsync a client waits for is the log's, as in etcd, where
 * the raft WAL's fdatasync is waited for and bbolt commits every 100 ms.
 *
 * Files: `<dir>/<16 hex digits>.log`, segments of `segmentBytes` (64 MiB, etcd's
 * `SegmentSizeBytes`), numbered from 0. A segment is zero-filled ahead of the write position, 4 MiB
 * at a time, just before the record that needs the room (see `Wal.fill`), so an ordinary append
 * never changes the file's size and `O_DSYNC` has no metadata to sync.
 *
 * Record: a 16-byte header, then the payload.
 *   [0, 4)   payload length, u32 LE (0 = end of the log: zero fill);
 *   [4, 8)   crc32c of bytes [8, end): the sequence number and the payload;
 *   [8, 16)  sequence number, u64 LE: one more than the previous record's.
 * Records of a segment are read from offset 0 while each one is whole, its checksum holds and
 * its sequence number follows the previous one. That stops at a torn write (a crash during the
 * last append, dropped) and at what an earlier use of a reused segment left behind (lower
 * numbers); a record that does not check and cannot be a torn write is damage, and opening the
 * log fails (see `readRecords`).
 *
 * Segments are reused once the backend has applied and flushed every record in them
 * (`release`); a new one is created only when none is free.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';

/** Bytes of a record header; `append` takes buffers that start with this much room. */
export const WAL_HEADER_BYTES = 16;
/** Default segment size (etcd `wal.SegmentSizeBytes`): 64 MiB. */
export const WAL_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Zero fill written ahead of the write position when a segment needs room. */
const FILL_BYTES = 4 * 1024 * 1024;
/** The zero fill is written in pieces of this size (see `Wal.fill`). */
const FILL_PIECE_BYTES = 64 * 1024;
const SEGMENT_NAME = /^[0-9a-f]{16}\.log$/;

/** A record a crash tore during its append (never acknowledged), which `Wal.open` dropped. */
export interface TornRecord {
  file: string;
  offset: number;
}

/** One record read back by `Wal.open`: its sequence number and payload. */
export interface WalRecord {
  seq: number;
  payload: Buffer;
}

interface Segment {
  /** Its path, and a descriptor for appends (`O_DSYNC` unless `--unsafe-no-fsync`). */
  file: string;
  fd: number;
  /** Bytes of the file known to exist (zero-filled or written). */
  size: number;
  /** Sequence number of its last record in the current use; 0 when it has none. */
  lastSeq: number;
  /** True when every record in it is applied and flushed: it may be rewritten from offset 0. */
  free: boolean;
}

export class Wal {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly segments: Segment[];
  private active: Segment;
  /** Write offset in the active segment. */
  private pos: number;
  /** Zeros for filling segments ahead of the write position, one piece; allocated on first need. */
  private zeros: Buffer | undefined;
  /** False with `--unsafe-no-fsync`: appends end in the page cache. */
  private readonly sync: boolean;
  /** Bytes of records appended since the log was opened; see `writtenBytes`. */
  private written = 0;

  private constructor(dir: string, segmentBytes: number, sync: boolean, segments: Segment[], active: Segment, pos: number) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
    this.sync = sync;
    this.segments = segments;
    this.active = active;
    this.pos = pos;
  }

  /**
   * Opens the log in `dir` (created if missing) and reads every record back, in sequence
   * order. Appends continue after the newest record. `segmentBytes` defaults to 64 MiB.
   * `sync` false (etcd `--unsafe-no-fsync`): no `O_DSYNC`, no directory fsync, so an append
   * is done once in the page cache. `repaired`: records torn by a crash during their append,
   * dropped (see `readRecords`).
   * Throws when the directory or a segment cannot be read or opened; WalCorruptError when a
   * record is damaged (etcd refuses to start on a damaged WAL too).
   */
  static open(dir: string, segmentBytes = WAL_SEGMENT_BYTES, sync = true): { wal: Wal; records: WalRecord[]; repaired: TornRecord[] } {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const repaired: TornRecord[] = [];
    const names = fs.readdirSync(dir).filter((n) => SEGMENT_NAME.test(n)).sort();
    const segments: Segment[] = [];
    const records: WalRecord[] = [];
    let active: Segment | undefined;
    let pos = 0;
    try {
      for (const [i, name] of names.entries()) {
        if (name !== segmentName(i)) throw new Error(`wal: unexpected segment ${name} in ${dir} (want ${segmentName(i)})`);
        const file = path.join(dir, name);
        const bytes = fs.readFileSync(file);
        const { found, end, torn } = readRecords(file, bytes);
        if (torn !== undefined) repaired.push({ file, offset: torn });
        const seg: Segment = {
          file,
          fd: openSegment(file, sync),
          size: bytes.length,
          lastSeq: found.at(-1)?.seq ?? 0,
          free: false,
        };
        segments.push(seg);
        for (const r of found) records.push(r);
        if (seg.lastSeq > (active?.lastSeq ?? 0)) {
          active = seg;
          pos = end;
        }
      }
    } catch (err) {
      for (const seg of segments) fs.closeSync(seg.fd);
      throw err;
    }
    records.sort((a, b) => a.seq - b.seq);
    if (segments.length === 0) segments.push(createSegment(dir, 0, sync));
    return { wal: new Wal(dir, segmentBytes, sync, segments, active ?? segments[0]!, pos), records, repaired };
  }

  /**
   * Writes `record` (a buffer whose first `WAL_HEADER_BYTES` are filled here, then the payload)
   * as number `seq`, and resolves once it is on disk. One append at a time: the caller waits
   * for the previous one. Rejects with the write's error (or the zero fill's, see `fill`).
   *
   * `inline`: write on this thread, blocking it for the write. A write on libuv's pool costs two
   * thread hand-offs (~0.1–0.3 ms on this VM), which is what a lone writer waits for; under load
   * the pool lets the main thread work meanwhile.
   */
  append(seq: number, record: Buffer, inline = false): Promise<void> {
    record.writeUInt32LE(record.length - WAL_HEADER_BYTES, 0);
    record.writeUInt32LE(seq % 0x1_0000_0000, 8);
    record.writeUInt32LE(Math.floor(seq / 0x1_0000_0000), 12);
    record.writeUInt32LE(crc32c(record.subarray(8)), 4);
    if (this.pos > 0 && this.pos + record.length > this.segmentBytes) this.rotate();
    const seg = this.active;
    const at = this.pos;
    this.pos += record.length;
    seg.lastSeq = seq;
    this.written += record.length;
    // Errors of writes by descriptor name no file: this one names the segment.
    const named = (err: NodeJS.ErrnoException): Error => {
      err.path ??= seg.file;
      return err;
    };
    try {
      if (this.pos > seg.size) this.fill(seg, Math.max(this.pos, Math.min(this.pos + FILL_BYTES, this.segmentBytes)));
      if (inline) {
        fs.writeSync(seg.fd, record, 0, record.length, at);
        return Promise.resolve();
      }
    } catch (err) {
      return Promise.reject(named(err as NodeJS.ErrnoException));
    }
    return new Promise((resolve, reject) => {
      fs.write(seg.fd, record, 0, record.length, at, (err) => (err ? reject(named(err)) : resolve()));
    });
  }

  /**
   * Zero-fills `seg` from its end to `end`, so that the appends below `end` neither grow the file
   * nor allocate blocks in their synced write. The zeros go through the page cache in 64 KiB
   * writes, on this thread (~1 ms for 4 MiB), and are synced in the background.
   *
   * Why in pieces: since Linux 6.16 ext4 caches a file in folios as large as the write that made
   * them (up to 2 MiB), and every later small write into such a folio walks all of its blocks
   * (`ext4_block_write_begin`): ~0.1 ms of CPU in each append of a lone put after one 4 MiB
   * fill, none after 64 KiB pieces (docs/ARCHITECTURE.md, session 18).
   *
   * Why not synced first: a record's own synced write makes durable what reading it back needs,
   * the file's size included. The zeros only spare later appends that work, so the background
   * sync's failure is not an error.
   * @throws the error of a write (e.g. ENOSPC), with the segment's known size unchanged.
   */
  private fill(seg: Segment, end: number): void {
    this.zeros ??= Buffer.alloc(FILL_PIECE_BYTES);
    const fd = fs.openSync(seg.file, fs.constants.O_WRONLY);
    try {
      for (let at = seg.size; at < end; at += FILL_PIECE_BYTES) fs.writeSync(fd, this.zeros, 0, Math.min(FILL_PIECE_BYTES, end - at), at);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    seg.size = end;
    if (this.sync) fs.fdatasync(fd, () => fs.close(fd, () => {}));
    else fs.closeSync(fd);
  }

  /** Bytes of records appended since the log was opened, headers included, zero fill not (etcd `wal_write_bytes_total`). */
  get writtenBytes(): number {
    return this.written;
  }

  /** Marks every segment whose records are all ≤ `seq` reusable: the backend has them on disk. */
  release(seq: number): void {
    for (const seg of this.segments) {
      if (seg !== this.active && seg.lastSeq <= seq) seg.free = true;
    }
  }

  /** Closes every segment. */
  close(): void {
    for (const seg of this.segments) fs.closeSync(seg.fd);
  }

  /** Continues in a free segment, or a new one, from offset 0. */
  private rotate(): void {
    let next = this.segments.find((s) => s.free);
    if (!next) {
      next = createSegment(this.dir, this.segments.length, this.sync);
      this.segments.push(next);
    }
    next.free = false;
    next.lastSeq = 0;
    this.active = next;
    this.pos = 0;
  }
}

function segmentName(i: number): string {
  return `${i.toString(16).padStart(16, '0')}.log`;
}

/** Opens a segment for synchronous-data writes (`sync`), or for page-cache writes. */
function openSegment(file: string, sync: boolean): number {
  return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | (sync ? fs.constants.O_DSYNC : 0), 0o600);
}

/** Creates segment number `i` (empty) and, with `sync`, syncs the directory so the file survives a crash. */
function createSegment(dir: string, i: number, sync: boolean): Segment {
  const file = path.join(dir, segmentName(i));
  const fd = openSegment(file, sync);
  if (sync) {
    const dirFd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  }
  return { file, fd, size: 0, lastSeq: 0, free: false };
}

/** etcd's `minSectorSize`: a write of one sector lands whole or not at all. */
const SECTOR_BYTES = 512;
/** How far past the last good record's number a record found beyond a bad one may be numbered. */
const SCAN_SEQS = 1_000_000;

/** A damaged record in the log: etcd's `walpb: crc mismatch`, fatal at startup. */
export class WalCorruptError extends Error {
  constructor(file: string, offset: number) {
    super('walpb: crc mismatch');
    this.file = file;
    this.offset = offset;
  }
  readonly file: string;
  readonly offset: number;
}

/**
 * The chain of whole, consecutive records of `file` (its `bytes`) from offset 0, the offset
 * after the last one, and the offset of a record torn by a crash during its append, if one
 * ends the chain.
 *
 * The chain ends at a zero length (the zero fill), at a record numbered out of turn (what an
 * earlier use of the segment left) and at a record that does not check (its checksum, or its
 * length past the file). Only the last append before a crash can be unfinished, and it was never
 * acknowledged, so a bad record is torn, and dropped, only when it could be one (as etcd's
 * `isTornEntry` decides):
 * - no record numbered after it follows it in the segment (else the log is damaged);
 * - it runs past the file, or one of its pieces between sector boundaries is still all zeros
 *   (the zero fill under a sector the write never reached); a record within one sector cannot
 *   be torn. A record over several sectors of a reused segment holds older records' bytes where
 *   the write did not reach: that too is taken as torn.
 * @throws WalCorruptError for a damaged record
 */
function readRecords(file: string, bytes: Buffer): { found: WalRecord[]; end: number; torn: number | undefined } {
  const found: WalRecord[] = [];
  let pos = 0;
  while (pos + WAL_HEADER_BYTES <= bytes.length) {
    const len = bytes.readUInt32LE(pos);
    if (len === 0) break;
    const seq = bytes.readUInt32LE(pos + 8) + bytes.readUInt32LE(pos + 12) * 0x1_0000_0000;
    const prev = found.at(-1);
    if (prev && seq !== prev.seq + 1) break;
    const end = pos + WAL_HEADER_BYTES + len;
    if (end <= bytes.length && crc32c(bytes.subarray(pos + 8, end)) === bytes.readUInt32LE(pos + 4)) {
      found.push({ seq, payload: bytes.subarray(pos + WAL_HEADER_BYTES, end) });
      pos = end;
      continue;
    }
    // A record that does not check: torn, or damaged.
    if (laterRecord(bytes, pos + 1, prev ? prev.seq : seq)) throw new WalCorruptError(file, pos);
    if (end > bytes.length || zeroPiece(bytes, pos, end)) return { found, end: pos, torn: pos };
    if (Math.floor(pos / SECTOR_BYTES) === Math.floor((end - 1) / SECTOR_BYTES)) throw new WalCorruptError(file, pos);
    return { found, end: pos, torn: pos };
  }
  return { found, end: pos, torn: undefined };
}

/** True when a whole record numbered in (after, after + SCAN_SEQS] starts at or after `from`. */
function laterRecord(bytes: Buffer, from: number, after: number): boolean {
  for (let at = from; at + WAL_HEADER_BYTES <= bytes.length; at++) {
    const seq = bytes.readUInt32LE(at + 8) + bytes.readUInt32LE(at + 12) * 0x1_0000_0000;
    if (seq <= after || seq > after + SCAN_SEQS) continue;
    const len = bytes.readUInt32LE(at);
    const end = at + WAL_HEADER_BYTES + len;
    if (len > 0 && end <= bytes.length && crc32c(bytes.subarray(at + 8, end)) === bytes.readUInt32LE(at + 4)) return true;
  }
  return false;
}

/** True when one of the pieces of `bytes[from, to)` between sector boundaries is all zeros. */
function zeroPiece(bytes: Buffer, from: number, to: number): boolean {
  for (let start = from; start < to; ) {
    const stop = Math.min(to, (Math.floor(start / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    let zero = true;
    for (let i = start; i < stop && zero; i++) zero = bytes[i] === 0;
    if (zero) return true;
    start = stop;
  }
  return false;
}
