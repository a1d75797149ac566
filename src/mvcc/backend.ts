/**
 * The backend: durable storage (etcd `mvcc/backend`, which uses bbolt, plus the role etcd's raft
 * WAL plays for durability).
 *
 * One LMDB environment in `<data-dir>/member/db/` holds named databases, like bbolt's buckets:
 * - `key`:   revision bytes (17, or 18 with the tombstone mark) → marshalled mvccpb.KeyValue,
 *            exactly the bytes etcd stores, so hashes over history match etcd's;
 * - `meta`:  string → UTF-8 text (consistent_index, scheduledCompactRev, finishedCompactRev,
 *            term, and `walSeq`: the last log record LMDB holds);
 * - `lease`, `alarm`: records of later subsystems, same shape (bytes → bytes).
 *
 * The write path, as etcd's (a WAL fsync per batch of requests, a bbolt commit every 100 ms):
 * 1. `put`/`remove` queue the write and show it at once to this backend's readers (the
 *    overlay: bucket → key → newest value or deletion, not yet in LMDB).
 * 2. Writes queued in one event-loop turn become one record of the write-ahead log (`Wal`),
 *    one `O_DSYNC` write, one at a time; writes arriving meanwhile share the next record
 *    (group commit). `durable()` resolves when every write queued before it is in the log: the
 *    only moment a write may be acknowledged or shown to anyone.
 * 3. Logged records are applied to LMDB in one transaction every `batchIntervalMs`, or at once
 *    when `batchLimit` writes wait (etcd `--backend-batch-interval`, `--backend-batch-limit`).
 *    The transaction also stores `walSeq`. Once it is committed its writes leave the overlay;
 *    once it is on disk the log segments it covers are reused.
 * 4. Opening replays the records after LMDB's `walSeq` into the overlay and applies them.
 *
 * Reads (`get`, `range`) are synchronous and see every queued write: the overlay over LMDB.
 * Callers that must not show undurable data (the MVCC store) read only revisions they know
 * are durable. A `range` must be consumed synchronously.
 */
import fs from 'node:fs';
import path from 'node:path';
import { open, type Database, type DatabaseOptions, type RootDatabase, type RootDatabaseOptions } from 'lmdb';
import { Wal, WAL_HEADER_BYTES, WAL_SEGMENT_BYTES, type TornRecord, type WalRecord } from './wal.js';

/** Names of the backend's databases (etcd's bucket names where etcd has one). */
export type BucketName = 'key' | 'meta' | 'lease' | 'alarm' | 'auth' | 'authUsers' | 'authRoles';

/** Bucket numbers in log records (append only: logs written by older versions keep their numbers). */
/** The file a defragmentation copies the database into, beside its directory. */
const DEFRAG_COPY = 'db.defrag.mdb';
const BUCKETS: readonly BucketName[] = ['key', 'meta', 'lease', 'alarm', 'auth', 'authUsers', 'authRoles'];
/** The buckets in name order, which is bbolt's (etcd's) iteration order. */
export const BUCKETS_BY_NAME: readonly BucketName[] = [...BUCKETS].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
const BUCKET_IDS: Record<BucketName, number> = { key: 0, meta: 1, lease: 2, alarm: 3, auth: 4, authUsers: 5, authRoles: 6 };
const OP_PUT = 1;
const OP_DELETE = 2;
/**
 * Records of at most this many writes (a lone put and its consistent_index) are written on the
 * main thread: with one writer the thread has nothing else to do meanwhile, and the pool's two
 * thread hand-offs are most of what it would wait for. Measured with etcdbench, interleaved
 * pairs: sequential puts p99 3.1–3.9 → 2.4–2.6 ms, put-to-event at 100 puts/s to 100 watchers
 * p50 −0.1–0.2 ms and p99 −1–2 ms. Under load records carry many writes and go to the pool,
 * where the main thread works during the write (a write per turn on the main thread cost
 * half the put throughput, session 4).
 */
const INLINE_APPEND_OPS = 4;
/**
 * A write that finds the log idle for longer than this (ms since the last append ended) is
 * appended at the end of its tick; sooner, appends are coming back to back and it waits for
 * the check phase, so that the writes of every connection read in that poll phase share the
 * record (see `scheduleAppend`). Under 64 clients, 1 ms still gave 2–7% more appends for the
 * same puts; 5 ms gave as many as waiting for the check phase always did.
 */
const IDLE_LOG_MS = 5;
/** Meta entry holding the sequence number of the last log record applied to LMDB. */
export const WAL_SEQ_META = 'walSeq';
const WAL_SEQ_KEY = Buffer.from(WAL_SEQ_META);

/** Options of `Backend.open`. */
export interface BackendOptions {
  /** Directory of the write-ahead log (etcd `--wal-dir`). @default `<data-dir>/member/wal` */
  walDir?: string;
  /** Most ms a logged write waits before LMDB commits it (etcd `--backend-batch-interval`). @default 100 */
  batchIntervalMs?: number;
  /** Logged writes that start an LMDB commit at once (etcd `--backend-batch-limit`). @default 10000 */
  batchLimit?: number;
  /**
   * No fsync anywhere (etcd `--unsafe-no-fsync`): log records are acknowledged once written to
   * the page cache and LMDB never syncs. A killed process loses nothing; a crash of the machine
   * or a power loss can lose acknowledged writes. @default false
   */
  unsafeNoFsync?: boolean;
}

/** One queued write; `value` undefined = delete; `id` is the key as a latin1 string (the overlay's key). */
interface WriteOp {
  bucket: BucketName;
  key: Buffer;
  id: string;
  value: Buffer | undefined;
}

/** A write not yet in LMDB, as readers see it; `seq` is the log record that carries it. */
interface OverlayEntry {
  key: Buffer;
  value: Buffer | undefined;
  seq: number;
}

/** lmdb-js's put options for LMDB's MDB_APPEND. */
const APPEND = { append: true };

/** What LMDB's `mdb_stat` says of one database's tree (lmdb-js `getStats()`). */
interface TreeStats {
  pageSize: number;
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

export class Backend {
  /** The LMDB environment; swapped only by `defragment`. */
  private env: RootDatabase;
  /** Open databases by name; rebuilt with the environment. */
  private dbs = new Map<BucketName, Database<Buffer, Buffer>>();
  /** The file size seen since the last commit, or undefined to read it again. */
  private sizeCache: number | undefined;
  /**
   * A key at or past the last of the `key` bucket in LMDB (undefined: read it from LMDB): a
   * revision record whose key is past it is appended (LMDB's MDB_APPEND), which fills pages
   * rather than splitting them in half. Revisions only grow, so nearly every record is; bbolt
   * fills etcd's key bucket to 90% the same way (`UnsafeSeqPut`), and without it the same
   * data took about 1.5× etcd's file (and `--quota-backend-bytes` held a third less).
   */
  private lastRevisionKey: Buffer | undefined;
  /** Directory holding data.mdb. */
  readonly dir: string;
  private readonly wal: Wal;
  private readonly batchIntervalMs: number;
  private readonly batchLimit: number;
  private readonly unsafeNoFsync: boolean;
  /** Writes not yet in LMDB, by bucket and key (latin1 string of the key bytes). */
  private readonly overlay = new Map<BucketName, Map<string, OverlayEntry>>();
  /** Writes queued for the next log record, its size in bytes, and its sequence number. */
  private queued: WriteOp[] = [];
  private queuedBytes = 0;
  private nextSeq: number;
  /** The last log record LMDB holds on disk (its `walSeq`). */
  private appliedSeq: number;
  /** True while a log append is in flight; set while one is scheduled. */
  private appending = false;
  private appendScheduled = false;
  /** When the last append ended (performance.now() ms). */
  private lastAppendEnd = 0;
  /** Callers of `durable()` waiting for the next append. */
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** The error of a failed append: nothing may be acknowledged after it. */
  private failure: unknown;
  /** Logged records not yet applied to LMDB, in sequence order, and how many writes they hold. */
  private unapplied: { seq: number; ops: WriteOp[] }[] = [];
  private unappliedOps = 0;
  /** The running LMDB commit, the timer of the next one, and whether commits wait (defragment). */
  private applying: Promise<void> | undefined;
  private applyTimer: NodeJS.Timeout | undefined;
  /** Set by `close`: no more LMDB commits are scheduled (it makes its own). */
  private closing = false;
  /** The running `readSnapshot` calls: the environment is not swapped under them. */
  private readonly snapshots = new Set<Promise<unknown>>();
  /** Settles when the running `defragment` is done; LMDB commits wait for it. */
  private defragging: Promise<void> | undefined;
  private reopened: Promise<void> | undefined;
  /** Called with the seconds each LMDB commit took, to disk (etcd `backend_commit_duration_seconds`). */
  onCommitDuration: ((seconds: number) => void) | undefined;
  /**
   * Called once when a log append (`log`) or an LMDB commit (`backend`) fails, before any caller
   * waiting for it is told: the disk state is unknown, and nothing more is acknowledged (every
   * later `durable()` rejects with the error). etcd exits on either (a fatal log line).
   */
  onFatal: ((err: Error, source: 'log' | 'backend') => void) | undefined;
  private fatalReported = false;
  /** Records of the log a crash tore during their append, dropped as it opened (never acknowledged). */
  readonly repairedLog: readonly TornRecord[] = [];
  /**
   * What a defragmentation killed midway left beside the database (its copy), removed as the
   * backend opened, by file name (etcd's `cleanupSnapdir` deletes its `db.tmp.*` files and logs each).
   */
  readonly orphanedDefrag: readonly string[];
  /** Called with the seconds each log append took (etcd `wal_fsync_duration_seconds`). */
  onWalFsyncDuration: ((seconds: number) => void) | undefined;

  private constructor(dir: string, options: BackendOptions) {
    this.dir = dir;
    this.batchIntervalMs = options.batchIntervalMs ?? 100;
    this.batchLimit = options.batchLimit ?? 10_000;
    this.unsafeNoFsync = options.unsafeNoFsync ?? false;
    this.orphanedDefrag = this.removeOrphanedDefrag();
    this.env = this.openEnv();
    let wal: Wal | undefined;
    let applied: number;
    let records: WalRecord[];
    let seq: number;
    try {
      // The LMDB state trusted below must be on disk, not only in the page cache of a process
      // that crashed: segments are reused on the strength of it.
      if (!this.unsafeNoFsync) {
        const fd = fs.openSync(path.join(dir, 'data.mdb'), 'r+');
        try {
          fs.fdatasyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      }
      applied = Number(this.bucket('meta').getBinary(WAL_SEQ_KEY)?.toString() ?? 0);
      let repaired: TornRecord[];
      ({ wal, records, repaired } = Wal.open(options.walDir ?? path.join(path.dirname(dir), 'wal'), WAL_SEGMENT_BYTES, !this.unsafeNoFsync));
      this.repairedLog = repaired;
      seq = applied;
      for (const r of records) {
        if (r.seq <= applied) continue;
        if (r.seq !== seq + 1) throw new Error(`wal: record ${seq + 1} is missing (next found: ${r.seq}); LMDB holds up to ${applied}`);
        seq = r.seq;
        const ops = decodeOps(r.payload);
        for (const op of ops) this.show(op, seq);
        this.unapplied.push({ seq, ops });
        this.unappliedOps += ops.length;
      }
    } catch (err) {
      wal?.close();
      void this.env.close();
      throw err;
    }
    this.wal = wal;
    this.appliedSeq = applied;
    this.nextSeq = Math.max(seq, records.at(-1)?.seq ?? 0) + 1;
    if (this.unapplied.length > 0) this.applyInBackground();
    else this.wal.release(applied);
  }

  /**
   * Opens (creating if needed) the backend under `<dataDir>/member/db` and replays its log.
   * Throws when LMDB or the log cannot be opened, or the log misses a record LMDB lacks.
   */
  static open(dataDir: string, options: BackendOptions = {}): Backend {
    const dir = path.join(dataDir, 'member', 'db');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new Backend(dir, options);
  }

  private openEnv(): RootDatabase {
    // overlappingSync: a commit is visible before its fsync ends; `flushed` says when it ended.
    const env = open({ path: this.dir, overlappingSync: !this.unsafeNoFsync, noSync: this.unsafeNoFsync, maxDbs: 16, pageSize: 4096 });
    // LMDB makes its files 0644; etcd keeps every file of a data dir 0600 (they hold every key
    // and the password hashes). Files of another owner that we may write are left as they are.
    for (const name of ['data.mdb', 'lock.mdb']) {
      try {
        fs.chmodSync(path.join(this.dir, name), 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      }
    }
    // data.mdb may end before LMDB's last page (`mm_last_pg`) when its final pages are free:
    // the file's size does not tell a cut-short file from a sound one.
    return env;
  }

  /** The named database, opened on first use. Keys and values are raw bytes. */
  private bucket(name: BucketName): Database<Buffer, Buffer> {
    let db = this.dbs.get(name);
    if (!db) {
      db = this.env.openDB<Buffer, Buffer>({ name, keyEncoding: 'binary', encoding: 'binary' });
      this.dbs.set(name, db);
    }
    return db;
  }

  /** The overlay of one bucket. */
  private overlayOf(bucket: BucketName): Map<string, OverlayEntry> {
    let m = this.overlay.get(bucket);
    if (!m) {
      m = new Map();
      this.overlay.set(bucket, m);
    }
    return m;
  }

  /** Shows a write to readers until LMDB has it. */
  private show(op: WriteOp, seq: number): void {
    this.overlayOf(op.bucket).set(op.id, { key: op.key, value: op.value, seq });
  }

  /** Queues a put; it is logged with the current record. `key` and `value` must not change afterwards. */
  put(bucket: BucketName, key: Buffer, value: Buffer): void {
    this.queue({ bucket, key, id: key.toString('latin1'), value }, 10 + key.length + value.length);
  }

  /** Queues a delete; it is logged with the current record. */
  remove(bucket: BucketName, key: Buffer): void {
    this.queue({ bucket, key, id: key.toString('latin1'), value: undefined }, 6 + key.length);
  }

  private queue(op: WriteOp, bytes: number): void {
    this.queued.push(op);
    this.queuedBytes += bytes;
    this.show(op, this.nextSeq);
    this.scheduleAppend();
  }

  /** Reads a value (queued writes included), or undefined. */
  get(bucket: BucketName, key: Buffer): Buffer | undefined {
    const m = this.overlay.get(bucket);
    if (m !== undefined && m.size > 0) {
      const e = m.get(key.toString('latin1'));
      if (e) return e.value;
    }
    return this.bucket(bucket).getBinary(key) as Buffer | undefined;
  }

  /**
   * `get` without a copy: LMDB's bytes in a buffer the next read overwrites (lmdb-js
   * `getBinaryFast`), or a queued write's value. Use them before reading anything else.
   */
  getInPlace(bucket: BucketName, key: Buffer): Buffer | undefined {
    const m = this.overlay.get(bucket);
    if (m !== undefined && m.size > 0) {
      const e = m.get(key.toString('latin1'));
      if (e) return e.value;
    }
    const bytes = this.bucket(bucket).getBinaryFast(key);
    // lmdb-js's reused buffer is larger than the value: its `length` property alone tells the
    // value's (TypedArray methods such as `set` would use the whole buffer).
    return bytes?.subarray(0, bytes.length);
  }

  /** Reads a meta entry as text, or undefined. */
  getMeta(name: string): string | undefined {
    return this.get('meta', Buffer.from(name))?.toString('utf8');
  }

  /** Queues a meta write. */
  putMeta(name: string, value: string | number): void {
    this.put('meta', Buffer.from(name), Buffer.from(String(value)));
  }

  /**
   * Entries of a bucket with start ≤ key < end, in key order, queued writes included. Consume
   * it synchronously: an LMDB commit in between would be read twice or not at all.
   */
  range(bucket: BucketName, start?: Buffer, end?: Buffer): Generator<{ key: Buffer; value: Buffer }> {
    return this.merged(bucket, this.bucket(bucket).getRange({ start, end }), start, end);
  }

  /**
   * Every entry of `bucket` in key order, queued writes included (as `range`), for a scan of a
   * whole bucket that makes nothing per entry (the restart's rebuild of the index: a Buffer for
   * each key and value was a fifth of it, see ARCHITECTURE "Startup"). Each entry's key goes to
   * `readKey` as the bytes `bytes[start, end)`, then its value to `readValue`: lmdb-js's own
   * buffers, which the next entry overwrites (the value's is larger than the value; its `length`
   * property alone is the value's, as with `getInPlace`), or a queued write's. Neither may be
   * kept past the call. For one-off scans: each call opens a database handle.
   */
  scanInPlace(bucket: BucketName, readKey: (bytes: Buffer, start: number, end: number) => void, readValue: (value: Buffer) => void): void {
    const m = this.overlay.get(bucket);
    const queued = m === undefined ? [] : [...m.values()].sort((a, b) => Buffer.compare(a.key, b.key));
    let next = 0;
    /** Whether a queued write replaces the stored entry whose key was read last (its value is then not read). */
    let replaced = false;
    const readQueued = (e: OverlayEntry): void => {
      if (e.value === undefined) return;
      readKey(e.key, 0, e.key.length);
      readValue(e.value);
    };
    // lmdb-js takes `encoder` and `keyEncoder` for any database (its README's database options);
    // its types list them only among the root's. It reads an entry's key, then its value.
    const options: DatabaseOptions & RootDatabaseOptions & { name: string } = {
      name: bucket,
      keyEncoder: {
        writeKey: (key: Buffer, target: Uint8Array, start: number) => {
          target.set(key, start);
          return start + key.length;
        },
        readKey: (bytes: Buffer, start: number, end: number) => {
          let c = -1;
          for (; next < queued.length && (c = queued[next]!.key.compare(bytes, start, end)) < 0; next++) readQueued(queued[next]!);
          replaced = next < queued.length && c === 0;
          if (replaced) readQueued(queued[next++]!);
          else readKey(bytes, start, end);
          return null;
        },
      },
      encoder: {
        encode: () => {
          throw new Error(`backend: scanInPlace's handle of ${bucket} is read-only`);
        },
        decode: (value: Buffer) => {
          if (!replaced) readValue(value);
          return null;
        },
      },
    };
    // From the least key (LMDB keys are never empty): without a start, lmdb-js would begin at its
    // own encoding's first key, which this key encoder cannot write.
    for (const _entry of this.env.openDB<null, Buffer>(options).getRange({ start: Buffer.alloc(1) })) {
      // The key encoder and the decoder above read the entry.
    }
    for (; next < queued.length; next++) readQueued(queued[next]!);
  }

  /** LMDB's `stored` entries of `bucket` merged with its queued writes in `[start, end)`. */
  private *merged(bucket: BucketName, stored: Iterable<{ key: Buffer; value: Buffer }>, start: Buffer | undefined, end: Buffer | undefined): Generator<{ key: Buffer; value: Buffer }> {
    const m = this.overlay.get(bucket);
    if (m === undefined || m.size === 0) {
      for (const { key, value } of stored) yield { key, value };
      return;
    }
    const queued: OverlayEntry[] = [];
    for (const e of m.values()) {
      if ((start === undefined || Buffer.compare(e.key, start) >= 0) && (end === undefined || Buffer.compare(e.key, end) < 0)) queued.push(e);
    }
    queued.sort((a, b) => Buffer.compare(a.key, b.key));
    let i = 0;
    for (const entry of stored) {
      const key = entry.key;
      let c = -1;
      for (; i < queued.length && (c = Buffer.compare(queued[i]!.key, key)) < 0; i++) {
        const e = queued[i]!;
        if (e.value) yield { key: e.key, value: e.value };
      }
      if (i < queued.length && c === 0) {
        const e = queued[i++]!;
        if (e.value) yield { key: e.key, value: e.value };
      } else {
        yield { key, value: entry.value };
      }
    }
    for (; i < queued.length; i++) {
      const e = queued[i]!;
      if (e.value) yield { key: e.key, value: e.value };
    }
  }

  /** Bytes appended to the write-ahead log since the backend opened (etcd `etcd_disk_wal_write_bytes_total`). */
  walWriteBytes(): number {
    return this.wal.writtenBytes;
  }

  /**
   * Resolves when every write queued so far is in the log, on disk. Rejects, then and from
   * then on, when an append failed: the disk state is unknown and nothing more may be
   * acknowledged.
   */
  durable(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.queued.length === 0 && !this.appending) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.scheduleAppend();
    });
  }

  /**
   * Appends the queued writes soon, as one record. While appends come back to back (under
   * load), that is in this iteration's check phase, so that the writes of every connection
   * read in the poll phase share the record. When the log was idle (a lone writer), it is at
   * the end of this tick: the check phase can wait behind the rest of the poll phase, and
   * appending at once cut put-to-event p99 at 100 puts/s by 1–3 ms in six interleaved pairs.
   * Always appending at the end of the tick made 11% more records for the same puts under 64
   * clients, hence the idle test (IDLE_LOG_MS).
   */
  private scheduleAppend(): void {
    if (this.appending || this.appendScheduled) return;
    this.appendScheduled = true;
    const run = (): void => {
      this.appendScheduled = false;
      this.append();
    };
    if (performance.now() - this.lastAppendEnd > IDLE_LOG_MS) process.nextTick(run);
    else setImmediate(run);
  }

  /** Logs the queued writes as one record; the waiters so far resolve when it is on disk. */
  private append(): void {
    const waiters = this.waiters;
    this.waiters = [];
    if (this.queued.length === 0) {
      for (const w of waiters) w.resolve();
      return;
    }
    const ops = this.queued;
    const record = encodeOps(ops, this.queuedBytes);
    const seq = this.nextSeq++;
    this.queued = [];
    this.queuedBytes = 0;
    this.appending = true;
    const start = performance.now();
    this.wal.append(seq, record, ops.length <= INLINE_APPEND_OPS).then(
      () => {
        this.appending = false;
        this.lastAppendEnd = performance.now();
        // etcd does not time a sync it skips.
        if (!this.unsafeNoFsync) this.onWalFsyncDuration?.((this.lastAppendEnd - start) / 1000);
        this.unapplied.push({ seq, ops });
        this.unappliedOps += ops.length;
        this.scheduleApply();
        for (const w of waiters) w.resolve();
        // Writes queued during the append go out now, in one record.
        if (this.queued.length > 0 || this.waiters.length > 0) this.append();
      },
      (err: unknown) => {
        this.failure = err;
        this.fatal(err as Error, 'log');
        for (const w of [...waiters, ...this.waiters]) w.reject(err);
        this.waiters = [];
      },
    );
  }

  /** Starts an LMDB commit when the batch limit is reached, or arms the batch interval's timer. */
  private scheduleApply(): void {
    if (this.applying || this.defragging || this.closing || this.unapplied.length === 0) return;
    if (this.unappliedOps >= this.batchLimit) this.applyInBackground();
    else this.applyTimer ??= setTimeout(() => this.applyInBackground(), this.batchIntervalMs).unref();
  }

  /** An LMDB commit nobody waits for: its failure goes to `onFatal`. */
  private applyInBackground(): void {
    this.apply().catch(() => {});
  }

  /** Tells `onFatal`, once, that a write to the disk failed. */
  private fatal(err: Error, source: 'log' | 'backend'): void {
    if (this.fatalReported) return;
    this.fatalReported = true;
    this.onFatal?.(err, source);
  }

  /**
   * Applies every logged record to LMDB in one transaction with `walSeq`, then drops the
   * writes from the overlay (once committed) and releases the log (once on disk). Resolves when
   * that commit is done, or with the one already running. A failed commit rejects: the process
   * cannot go on without its backend.
   */
  private apply(): Promise<void> {
    clearTimeout(this.applyTimer);
    this.applyTimer = undefined;
    if (this.applying) return this.applying;
    const batch = this.unapplied;
    if (batch.length === 0) return Promise.resolve();
    this.unapplied = [];
    this.unappliedOps = 0;
    const upto = batch.at(-1)!.seq;
    let last = this.lastRevisionKey;
    if (last === undefined) for (const key of this.bucket('key').getKeys({ reverse: true, limit: 1 })) last = key;
    last ??= Buffer.alloc(0);
    // An append LMDB refuses resolves false (and the rest of the batch commits): never expected,
    // as every appended key is past the last one, but checked, so that it cannot pass unseen.
    const appended: Promise<boolean>[] = [];
    for (const { ops } of batch) {
      for (const op of ops) {
        if (!op.value) void this.bucket(op.bucket).remove(op.key);
        else if (op.bucket === 'key' && Buffer.compare(op.key, last) > 0) {
          // lmdb-js takes LMDB's put flags in place of a version.
          appended.push(this.bucket('key').put(op.key, op.value, APPEND as unknown as number));
          last = op.key;
        } else void this.bucket(op.bucket).put(op.key, op.value);
      }
    }
    this.lastRevisionKey = last;
    void this.bucket('meta').put(WAL_SEQ_KEY, Buffer.from(String(upto)));
    // Both thenables are bound now, to the batch just queued.
    const committed = new Promise((resolve, reject) => this.env.committed.then(resolve, reject));
    const flushed = new Promise((resolve, reject) => this.env.flushed.then(resolve, reject));
    const start = performance.now();
    this.applying = (async () => {
      try {
        await committed;
        if ((await Promise.all(appended)).includes(false)) throw new Error('backend: LMDB refused to append a revision record (MDB_APPEND)');
        for (const { ops } of batch) {
          for (const op of ops) {
            const m = this.overlay.get(op.bucket)!;
            const e = m.get(op.id);
            if (e !== undefined && e.seq <= upto) m.delete(op.id);
          }
        }
        this.sizeCache = undefined;
        await flushed;
        this.appliedSeq = upto;
        this.onCommitDuration?.((performance.now() - start) / 1000);
        this.wal.release(upto);
      } catch (err) {
        // lmdb-js rejects a failed commit's writes with "Commit failed" and its cause in a
        // promise (`commitError`) that rejects with LMDB's error.
        const cause: unknown = await (err as { commitError?: Promise<unknown> }).commitError?.then(
          () => undefined,
          (c: unknown) => c,
        );
        const failure = cause instanceof Error ? cause : (err as Error);
        this.failure ??= failure;
        this.fatal(failure, 'backend');
        throw failure;
      } finally {
        this.applying = undefined;
      }
      this.scheduleApply();
    })();
    return this.applying;
  }

  /**
   * Commits every write queued so far to LMDB now, without waiting for the batch interval
   * (etcd `backend.ForceCommit`); resolves once on disk.
   */
  forceCommit(): Promise<void> {
    return this.applyAll();
  }

  /**
   * Resolves when every write queued before the call is in LMDB, on disk. Writes queued later
   * are not waited for: under a steady load there always are some.
   */
  private async applyAll(): Promise<void> {
    const seq = this.queued.length > 0 ? this.nextSeq : this.nextSeq - 1;
    await this.durable();
    while (this.appliedSeq < seq) {
      if (!this.defragging && !this.applying && this.unapplied.length === 0) throw new Error(`backend: record ${seq} is logged but neither applied nor waiting`);
      await (this.defragging ?? this.applying ?? this.apply());
    }
  }

  /**
   * Size of the database file in bytes (etcd `backend.Size`). Read from LMDB's stats at most
   * once per commit: the quota check asks on every write, and the file only grows at commits.
   */
  size(): number {
    if (this.sizeCache === undefined) {
      const stats = this.env.getStats() as { pageSize: number; lastPageNumber: number };
      this.sizeCache = (stats.lastPageNumber + 1) * stats.pageSize;
    }
    return this.sizeCache;
  }

  /**
   * Bytes in use (etcd `backend.SizeInUse`: the file size minus free pages): the pages of every
   * database's tree, the list of free pages' own, and LMDB's two meta pages.
   */
  sizeInUse(): number {
    const pages = (s: TreeStats) => s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
    const env = this.env.getStats() as TreeStats & { free: TreeStats };
    let used = 2 + pages(env) + pages(env.free);
    for (const name of BUCKETS) used += pages(this.bucket(name).getStats() as TreeStats);
    return used * env.pageSize;
  }

  /**
   * Runs `fn` on a consistent view of every bucket that holds every write queued before the call
   * (they are committed to LMDB first): one LMDB read transaction, held until `fn` settles, as
   * etcd's snapshot holds one bbolt read transaction. `read(bucket)` gives the bucket's entries
   * in key order, from that view, as often as it is called. Writes go on meanwhile; a
   * defragmentation waits for running snapshots before it swaps the file. Rejects with what
   * `fn` rejects with.
   */
  async readSnapshot<T>(fn: (read: (bucket: BucketName) => Iterable<{ key: Buffer; value: Buffer }>) => Promise<T>): Promise<T> {
    await this.applyAll();
    // Every bucket opened (made, the first time) before the transaction begins, so that it sees them.
    const dbs = new Map<BucketName, Database<Buffer, Buffer>>(BUCKETS.map((name) => [name, this.bucket(name)]));
    const txn = this.env.useReadTransaction();
    const running = (async () => {
      try {
        return await fn((name) => dbs.get(name)!.getRange({ transaction: txn }));
      } finally {
        txn.done();
      }
    })();
    this.snapshots.add(running);
    try {
      return await running;
    } finally {
      this.snapshots.delete(running);
    }
  }

  /**
   * LMDB's copy (`mdb_env_copy2`) of an environment opened on a directory writes `data.mdb` into
   * a directory; this copies through a temp directory beside `file`, then moves the file there.
   */
  private async copyInto(file: string): Promise<void> {
    const dir = `${file}.copy`;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      await this.env.backup(dir, true);
      fs.renameSync(path.join(dir, 'data.mdb'), file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Rewrites the database file without free pages (etcd `Defragment`). LMDB commits wait
   * meanwhile: writes are logged, made durable and read from the overlay as usual, and reach
   * the new file after the swap. Reads keep working during the copy (the old environment serves
   * them). The swap at the end (close, rename, reopen) starts with no LMDB write pending, so
   * the close settles within microtasks and no timer or I/O callback can read in between; only
   * an outstanding asynchronous read could delay it. Throws, keeping the old file, when the
   * copy fails.
   */
  async defragment(): Promise<void> {
    if (this.defragging) throw new Error('backend: defragment already running');
    const tmp = this.defragCopy();
    fs.rmSync(tmp, { force: true });
    await this.applyAll();
    if (this.defragging) throw new Error('backend: defragment already running');
    let finish!: () => void;
    this.defragging = new Promise<void>((resolve) => (finish = resolve));
    clearTimeout(this.applyTimer);
    this.applyTimer = undefined;
    try {
      // A commit started by a log append that completed just before this call's turn.
      if (this.applying) await this.applying;
      await this.copyInto(tmp);
      // A snapshot reads the old file through its transaction until it is done.
      while (this.snapshots.size > 0) await Promise.allSettled([...this.snapshots]);
      let reopen!: () => void;
      this.reopened = new Promise<void>((resolve) => (reopen = resolve));
      try {
        await this.env.close();
        this.dbs.clear();
        fs.renameSync(tmp, path.join(this.dir, 'data.mdb'));
        fs.rmSync(path.join(this.dir, 'lock.mdb'), { force: true });
        this.env = this.openEnv();
      } finally {
        this.reopened = undefined;
        reopen();
      }
      this.sizeCache = undefined;
      this.lastRevisionKey = undefined;
    } finally {
      fs.rmSync(tmp, { force: true });
      this.defragging = undefined;
      finish();
      this.scheduleApply();
    }
  }

  /**
   * While `defragment` closes the database to swap its file for the copy, reads would fail: this
   * settles when it is open again (on the copy, or on the old file if the swap failed). Undefined
   * at any other time.
   */
  get reopening(): Promise<void> | undefined {
    return this.reopened;
  }

  /** Where `defragment` writes its copy; `copyInto` writes it through `<copy>.copy/` first. */
  private defragCopy(): string {
    return path.join(path.dirname(this.dir), DEFRAG_COPY);
  }

  /** Removes a defragmentation's copy and its temp directory; returns the names it found. */
  private removeOrphanedDefrag(): string[] {
    const found: string[] = [];
    for (const file of [this.defragCopy(), `${this.defragCopy()}.copy`]) {
      if (!fs.existsSync(file)) continue;
      fs.rmSync(file, { recursive: true, force: true });
      found.push(path.basename(file));
    }
    return found;
  }

  /** Closes the backend once every queued write is in LMDB, on disk. */
  async close(): Promise<void> {
    this.closing = true;
    await this.applyAll();
    clearTimeout(this.applyTimer);
    // A commit started before `closing` for later writes: LMDB closes with no write pending.
    if (this.applying) await this.applying;
    await this.env.close();
    this.wal.close();
  }
}

/** Encodes writes as a log record's payload after `WAL_HEADER_BYTES` of room: per write, op, bucket, key length and key, then for a put value length and value (lengths u32 LE). */
function encodeOps(ops: readonly WriteOp[], bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(WAL_HEADER_BYTES + bytes);
  let p = WAL_HEADER_BYTES;
  for (const op of ops) {
    buf[p++] = op.value ? OP_PUT : OP_DELETE;
    buf[p++] = BUCKET_IDS[op.bucket];
    p = buf.writeUInt32LE(op.key.length, p);
    p += op.key.copy(buf, p);
    if (op.value) {
      p = buf.writeUInt32LE(op.value.length, p);
      p += op.value.copy(buf, p);
    }
  }
  return buf;
}

/** Decodes a payload written by `encodeOps`. Throws on a payload it did not write. */
function decodeOps(payload: Buffer): WriteOp[] {
  const ops: WriteOp[] = [];
  let p = 0;
  while (p < payload.length) {
    const kind = payload[p]!;
    const bucket = BUCKETS[payload[p + 1]!];
    if ((kind !== OP_PUT && kind !== OP_DELETE) || bucket === undefined) throw new Error(`wal: bad write at payload offset ${p}`);
    const keyLen = payload.readUInt32LE(p + 2);
    p += 6;
    const key = Buffer.from(payload.subarray(p, p + keyLen));
    p += keyLen;
    let value: Buffer | undefined;
    if (kind === OP_PUT) {
      const valueLen = payload.readUInt32LE(p);
      p += 4;
      value = Buffer.from(payload.subarray(p, p + valueLen));
      p += valueLen;
    }
    ops.push({ bucket, key, id: key.toString('latin1'), value });
  }
  return ops;
}
