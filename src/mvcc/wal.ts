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
 * last append) and at what an earlier use of a reused segment left behind (lower numbers).
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
   * is done once in the page cache.
   * Throws when the directory or a segment cannot be read or opened.
   */
  static open(dir: string, segmentBytes = WAL_SEGMENT_BYTES, sync = true): { wal: Wal; records: WalRecord[] } {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names = fs.readdirSync(dir).filter((n) => SEGMENT_NAME.test(n)).sort();
    const segments: Segment[] = [];
    const records: WalRecord[] = [];
    let active: Segment | undefined;
    let pos = 0;
    for (const [i, name] of names.entries()) {
      if (name !== segmentName(i)) throw new Error(`wal: unexpected segment ${name} in ${dir} (want ${segmentName(i)})`);
      const file = path.join(dir, name);
      const bytes = fs.readFileSync(file);
      const { found, end } = readRecords(bytes);
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
    records.sort((a, b) => a.seq - b.seq);
    if (segments.length === 0) segments.push(createSegment(dir, 0, sync));
    return { wal: new Wal(dir, segmentBytes, sync, segments, active ?? segments[0]!, pos), records };
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
    try {
      if (this.pos > seg.size) this.fill(seg, Math.max(this.pos, Math.min(this.pos + FILL_BYTES, this.segmentBytes)));
      if (inline) {
        fs.writeSync(seg.fd, record, 0, record.length, at);
        return Promise.resolve();
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise((resolve, reject) => {
      fs.write(seg.fd, record, 0, record.length, at, (err) => (err ? reject(err) : resolve()));
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

/** The chain of whole, consecutive records from offset 0, and the offset after the last one. */
function readRecords(bytes: Buffer): { found: WalRecord[]; end: number } {
  const found: WalRecord[] = [];
  let pos = 0;
  while (pos + WAL_HEADER_BYTES <= bytes.length) {
    const len = bytes.readUInt32LE(pos);
    const end = pos + WAL_HEADER_BYTES + len;
    if (len === 0 || end > bytes.length) break;
    if (crc32c(bytes.subarray(pos + 8, end)) !== bytes.readUInt32LE(pos + 4)) break;
    const seq = bytes.readUInt32LE(pos + 8) + bytes.readUInt32LE(pos + 12) * 0x1_0000_0000;
    const prev = found.at(-1);
    if (prev && seq !== prev.seq + 1) break;
    found.push({ seq, payload: bytes.subarray(pos + WAL_HEADER_BYTES, end) });
    pos = end;
  }
  return { found, end: pos };
}
