/**
 * The write-ahead log in front of the backend (the role of etcd's `wal` package; our own file
 * format, since nothing but etcd-ts reads it).
 *
 * A write is durable once its record is in the log: one `pwrite` through a descriptor opened
 * `O_DSYNC`, to a sequential file. LMDB gets the same writes later, in large batches (see
 * `Backend`), so the one fsync a client waits for is the log's, as in etcd, where the raft
 * WAL's fdatasync is waited for and bbolt commits every 100 ms.
 *
 * Files: `<dir>/<16 hex digits>.log`, segments of `segmentBytes` (64 MiB, etcd's
 * `SegmentSizeBytes`), numbered from 0. A segment's size grows ahead of the write position,
 * 4 MiB at a time, by `ftruncate`: the room is a hole, as etcd's WAL preallocates its segments
 * with `fallocate` and writes nothing into them. So an ordinary append never changes the file's
 * size. (A synced write into a hole was 0.05–0.1 ms faster than into written zeros on the
 * development VM, with the same device requests: see docs/ARCHITECTURE.md, session 12.)
 *
 * Record: a 16-byte header, then the payload.
 *   [0, 4)   payload length, u32 LE (0 = end of the log: the hole, or zeros, past the last record);
 *   [4, 8)   crc32c of bytes [8, end): the sequence number and the payload;
 *   [8, 16)  sequence number, u64 LE: one more than the previous record's.
 * Records of a segment are read from offset 0 while each one is whole, its checksum holds and
 * its sequence number follows the previous one. That stops at a torn write (a crash during the
 * last append) and at what an earlier use of a reused segment left behind (lower numbers).
 *
 * Segments are reused once the backend has applied and flushed every record in them
 * (`release`), after being emptied; a new one is created only when none is free.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';

/** Bytes of a record header; `append` takes buffers that start with this much room. */
export const WAL_HEADER_BYTES = 16;
/** Default segment size (etcd `wal.SegmentSizeBytes`): 64 MiB. */
export const WAL_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Room a segment's size grows by, as a hole, when a record needs it. */
const GROW_BYTES = 4 * 1024 * 1024;
const SEGMENT_NAME = /^[0-9a-f]{16}\.log$/;

/** One record read back by `Wal.open`: its sequence number and payload. */
export interface WalRecord {
  seq: number;
  payload: Buffer;
}

interface Segment {
  fd: number;
  /** The file's size: records, then a hole (or zeros, in a segment written before holes). */
  size: number;
  /** Sequence number of its last record in the current use; 0 when it has none. */
  lastSeq: number;
  /** True when every record in it is applied and flushed and it is emptied: it may be rewritten from offset 0. */
  free: boolean;
  /** The truncation that empties it once released, while it runs. */
  emptying: Promise<void> | undefined;
}

export class Wal {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly segments: Segment[];
  private active: Segment;
  /** Write offset in the active segment. */
  private pos: number;

  private constructor(dir: string, segmentBytes: number, segments: Segment[], active: Segment, pos: number) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
    this.segments = segments;
    this.active = active;
    this.pos = pos;
  }

  /**
   * Opens the log in `dir` (created if missing) and reads every record back, in sequence
   * order. Appends continue after the newest record. `segmentBytes` defaults to 64 MiB.
   * Throws when the directory or a segment cannot be read or opened.
   */
  static open(dir: string, segmentBytes = WAL_SEGMENT_BYTES): { wal: Wal; records: WalRecord[] } {
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
        fd: openSegment(file),
        size: bytes.length,
        lastSeq: found.at(-1)?.seq ?? 0,
        free: false,
        emptying: undefined,
      };
      segments.push(seg);
      for (const r of found) records.push(r);
      if (seg.lastSeq > (active?.lastSeq ?? 0)) {
        active = seg;
        pos = end;
      }
    }
    records.sort((a, b) => a.seq - b.seq);
    if (segments.length === 0) segments.push(createSegment(dir, 0));
    return { wal: new Wal(dir, segmentBytes, segments, active ?? segments[0]!, pos), records };
  }

  /**
   * Writes `record` (a buffer whose first `WAL_HEADER_BYTES` are filled here, then the payload)
   * as number `seq`, and resolves once it is on disk. One append at a time: the caller waits
   * for the previous one. Rejects with the write's error.
   *
   * `inline`: write on this thread, blocking it for the write. A write on libuv's pool costs
   * two thread hand-offs (~0.1–0.3 ms on this VM), which is what a lone writer waits for; under
   * load the pool lets the main thread work meanwhile.
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
    try {
      if (this.pos > seg.size) {
        // The new size reaches the disk with this record: O_DSYNC syncs what reading it needs.
        const size = Math.max(this.pos, Math.min(this.segmentBytes, this.pos + GROW_BYTES));
        fs.ftruncateSync(seg.fd, size);
        seg.size = size;
      }
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
   * Empties every segment whose records are all ≤ `seq` (the backend has them on disk) and then
   * marks it reusable; resolves when they all are. Emptying is a truncation to 0 on libuv's
   * pool: it frees the segment's blocks (~45 ms for 64 MiB on the development VM, whose disk is
   * mounted with `discard`), and appends into a reused segment then write into a hole again.
   * A truncation that fails leaves the segment reusable as it is: its records are older than
   * any logged since, and reading stops at them.
   */
  release(seq: number): Promise<void> {
    const emptied: Promise<void>[] = [];
    for (const seg of this.segments) {
      if (seg === this.active || seg.free || seg.lastSeq > seq) continue;
      seg.emptying ??= new Promise((resolve) => {
        fs.ftruncate(seg.fd, 0, (err) => {
          if (!err) seg.size = 0;
          seg.free = true;
          seg.emptying = undefined;
          resolve();
        });
      });
      emptied.push(seg.emptying);
    }
    return Promise.all(emptied).then(() => undefined);
  }

  /** Closes every segment, once the truncations under way have ended. */
  async close(): Promise<void> {
    await Promise.all(this.segments.map((seg) => seg.emptying));
    for (const seg of this.segments) fs.closeSync(seg.fd);
  }

  /** Continues in a free segment, or a new one, from offset 0. */
  private rotate(): void {
    let next = this.segments.find((s) => s.free);
    if (!next) {
      next = createSegment(this.dir, this.segments.length);
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

/** Opens a segment for synchronous-data writes. */
function openSegment(file: string): number {
  return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DSYNC, 0o600);
}

/** Creates segment number `i` (empty) and syncs the directory so the file survives a crash. */
function createSegment(dir: string, i: number): Segment {
  const file = path.join(dir, segmentName(i));
  const fd = openSegment(file);
  const dirFd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
  return { fd, size: 0, lastSeq: 0, free: false, emptying: undefined };
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
