/**
 * The backend: durable storage on LMDB (etcd `mvcc/backend`, which uses bbolt).
 *
 * One LMDB environment in `<data-dir>/member/db/` holds named databases, like bbolt's buckets:
 * - `key`:   revision bytes (17, or 18 with the tombstone mark) → marshalled mvccpb.KeyValue,
 *            exactly the bytes etcd stores, so hashes over history match etcd's;
 * - `meta`:  string → UTF-8 text (consistent_index, scheduledCompactRev, finishedCompactRev, term);
 * - `lease`, `alarm`: records of later subsystems, same shape (bytes → bytes).
 *
 * Writes are asynchronous and batched: every write issued in one event-loop turn lands in one
 * LMDB transaction, committed on lmdb-js's writer thread. `durable()` resolves when everything
 * issued so far is committed *and flushed to disk* (fsync), which is the only moment a write may
 * be acknowledged or shown to anyone. Reads are synchronous and see committed data only.
 */
import fs from 'node:fs';
import path from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

/** Names of the backend's databases (etcd's bucket names where etcd has one). */
export type BucketName = 'key' | 'meta' | 'lease' | 'alarm';

export class Backend {
  /** The LMDB environment; swapped only by `defragment`. */
  private env: RootDatabase;
  /** Open databases by name; rebuilt with the environment. */
  private dbs = new Map<BucketName, Database<Buffer, Buffer>>();
  /** The file size seen since the last commit, or undefined to read it again. */
  private sizeCache: number | undefined;
  /** Directory holding data.mdb. */
  readonly dir: string;
  /**
   * Writes queued while `defragment` rewrites the file, replayed into the new environment; set
   * only by `defragment`. Writes that reached the old environment after the copy began would be lost.
   */
  private heldWrites: { bucket: BucketName; key: Buffer; value: Buffer | undefined }[] | undefined;
  /** Settles when the running `defragment` is done; `durable()` waits for it. */
  private defragDone: Promise<void> | undefined;
  /** Called with the seconds each `durable()` wait took (etcd `backend_commit_duration_seconds`). */
  onCommitDuration: ((seconds: number) => void) | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    this.env = Backend.openEnv(dir);
  }

  /** Opens (creating if needed) the backend under `<dataDir>/member/db`. */
  static open(dataDir: string): Backend {
    const dir = path.join(dataDir, 'member', 'db');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new Backend(dir);
  }

  private static openEnv(dir: string): RootDatabase {
    // overlappingSync: commits become visible before their fsync finishes; we wait on
    // `flushed` ourselves before acknowledging, so durability is kept and fsyncs overlap.
    return open({ path: dir, overlappingSync: true, maxDbs: 16, pageSize: 4096 });
  }

  /** The named database, opened on first use. Keys and values are raw bytes. */
  bucket(name: BucketName): Database<Buffer, Buffer> {
    let db = this.dbs.get(name);
    if (!db) {
      db = this.env.openDB<Buffer, Buffer>({ name, keyEncoding: 'binary', encoding: 'binary' });
      this.dbs.set(name, db);
    }
    return db;
  }

  /** Queues a put; it commits with the current batch. */
  put(bucket: BucketName, key: Buffer, value: Buffer): void {
    if (this.heldWrites) this.heldWrites.push({ bucket, key, value });
    else void this.bucket(bucket).put(key, value);
  }

  /** Queues a delete; it commits with the current batch. */
  remove(bucket: BucketName, key: Buffer): void {
    if (this.heldWrites) this.heldWrites.push({ bucket, key, value: undefined });
    else void this.bucket(bucket).remove(key);
  }

  /** Reads a committed value, or undefined. */
  get(bucket: BucketName, key: Buffer): Buffer | undefined {
    return this.bucket(bucket).getBinary(key) as Buffer | undefined;
  }

  /** Reads a meta entry as text, or undefined. */
  getMeta(name: string): string | undefined {
    return this.get('meta', Buffer.from(name))?.toString('utf8');
  }

  /** Queues a meta write. */
  putMeta(name: string, value: string | number): void {
    this.put('meta', Buffer.from(name), Buffer.from(String(value)));
  }

  /** Committed entries of a bucket with start ≤ key < end, in key order. */
  *range(bucket: BucketName, start?: Buffer, end?: Buffer): Generator<{ key: Buffer; value: Buffer }> {
    for (const { key, value } of this.bucket(bucket).getRange({ start, end })) {
      yield { key: key as Buffer, value: value as Buffer };
    }
  }

  /** Resolves when every write queued so far is committed and fsynced. */
  async durable(): Promise<void> {
    const start = performance.now();
    if (this.defragDone) await this.defragDone;
    // Both thenables are bound here, to the batch of the newest queued write. `flushed` read
    // only after the commit resolved would bind to whatever batch is open by then, and wait
    // for that later batch's fsync too.
    const committed = new Promise((resolve, reject) => this.env.committed.then(resolve, reject));
    const flushed = new Promise((resolve, reject) => this.env.flushed.then(resolve, reject));
    await Promise.all([committed, flushed]);
    this.sizeCache = undefined;
    this.onCommitDuration?.((performance.now() - start) / 1000);
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

  /** Bytes in use: the file size minus free pages (etcd `backend.SizeInUse`). */
  sizeInUse(): number {
    const stats = this.env.getStats() as { pageSize: number; lastPageNumber: number; free: { entryCount: number } };
    return Math.max(stats.pageSize, (stats.lastPageNumber + 1 - stats.free.entryCount) * stats.pageSize);
  }

  /**
   * Writes a consistent, compacted copy of the environment to `file` (a single LMDB data file,
   * openable with `noSubdir`). Throws when the copy cannot be written.
   */
  async copyTo(file: string): Promise<void> {
    await this.durable();
    await this.copyInto(file);
  }

  /**
   * LMDB's copy (`mdb_env_copy2`) of an environment opened on a directory writes `data.mdb` into
   * a directory; this copies through a temp directory beside `file`, then moves the file there.
   */
  private async copyInto(file: string): Promise<void> {
    const dir = `${file}.copy`;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    try {
      await this.env.backup(dir, true);
      fs.renameSync(path.join(dir, 'data.mdb'), file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Rewrites the database file without free pages (etcd `Defragment`). Writes issued meanwhile
   * are held and replayed into the new file, and `durable()` waits until they are on disk there.
   * Reads keep working during the copy (the old environment serves them). The swap at the end
   * (close, rename, reopen) starts with no write pending, so the close settles within
   * microtasks and no timer or I/O callback can read in between; only an outstanding
   * asynchronous read could delay it. Throws, keeping the old file, when the copy fails.
   */
  async defragment(): Promise<void> {
    if (this.defragDone) throw new Error('backend: defragment already running');
    const tmp = path.join(path.dirname(this.dir), 'db.defrag.mdb');
    fs.rmSync(tmp, { force: true });
    await this.durable();
    this.heldWrites = [];
    let finish!: () => void;
    this.defragDone = new Promise<void>((resolve) => (finish = resolve));
    try {
      await this.copyInto(tmp);
      await this.env.close();
      this.dbs.clear();
      fs.renameSync(tmp, path.join(this.dir, 'data.mdb'));
      fs.rmSync(path.join(this.dir, 'lock.mdb'), { force: true });
      this.env = Backend.openEnv(this.dir);
      this.sizeCache = undefined;
    } finally {
      fs.rmSync(tmp, { force: true });
      const held = this.heldWrites;
      this.heldWrites = undefined;
      for (const w of held) {
        if (w.value) this.put(w.bucket, w.key, w.value);
        else this.remove(w.bucket, w.key);
      }
      this.defragDone = undefined;
      finish();
    }
  }

  /** Closes the environment after pending writes are durable. */
  async close(): Promise<void> {
    await this.durable();
    await this.env.close();
  }
}
