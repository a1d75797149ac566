/**
 * The MVCC key-value store (etcd `mvcc/kvstore.go`, `kvstore_txn.go`).
 *
 * State lives in two places: the in-memory `TreeIndex` (key → keyIndex of revisions) and the
 * `Backend` (revision → KeyValue). A write transaction assigns the next main revision, updates
 * the index at once, and queues its records in the backend's current batch. The records become
 * visible only when the batch is durable: until then readers use `publishedRev`, the newest
 * revision known to be on disk, and every index lookup is made "at" a revision, so entries of
 * newer, not yet durable revisions are simply not seen.
 *
 * Concurrency model: Node runs this on one thread. A write transaction runs synchronously from
 * `beginWrite()` to `end()`, so write transactions are serialized by construction, in the
 * order they arrive; no lock is needed. Only the wait for durability is asynchronous.
 *
 * Revisions:
 * - `currentRev`:   the newest assigned main revision (may not be durable yet). Written only by
 *                   `TxnWrite.end()` and `restore()`.
 * - `publishedRev`: the newest durable revision; reads and watchers never go beyond it. Written
 *                   only by `publish()`.
 * - `compactMainRev`: history below it is gone; reads below it fail with ErrCompacted. −1 until
 *                   the first compaction, as in etcd, which accepts one compaction at 0.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { KeyValue } from '../proto/gen/kv.gen.js';
import { marshalKeyValue, readKeyValueHead, unmarshalKeyValue } from '../proto/wire.js';
import { Backend } from './backend.js';
import { type Key, keyToBytes } from './key.js';
import { type Revision, bytesToRev, isTombstone, isTombstoneAt, mainRevAt, revToBytes, subRevAt } from './revision.js';
import { TreeIndex, RevisionSet } from './tree-index.js';

/** Thrown for a read below the compacted revision (etcd `mvcc.ErrCompacted`). */
export class CompactedError extends Error {
  override name = 'CompactedError';
  constructor() {
    super('mvcc: required revision has been compacted');
  }
}

/** Thrown for a read or compaction above the current revision (etcd `mvcc.ErrFutureRev`). */
export class FutureRevError extends Error {
  override name = 'FutureRevError';
  constructor() {
    super('mvcc: required revision is a future revision');
  }
}

/** A `StoredRecords.read` stopped because its caller no longer wants it (a cancelled call). */
export class ReadCancelledError extends Error {
  override name = 'ReadCancelledError';
  constructor() {
    super('mvcc: read cancelled');
  }
}

/** Thrown when a put names a lease that does not exist (etcd `lease.ErrLeaseNotFound`). */
export class LeaseNotFoundError extends Error {
  override name = 'LeaseNotFoundError';
  constructor() {
    super('lease not found');
  }
}

/** Options of a range read (etcd `mvcc.RangeOptions`). */
export interface RangeOptions {
  /** At most this many KeyValues; 0 = no limit. */
  limit?: number;
  /** Read at this main revision; 0 = the view's revision. */
  rev?: number;
  /** Only count the keys; `kvs` is empty. */
  count?: boolean;
  /**
   * Give the stored records (each an mvccpb.KeyValue's protobuf bytes, as a response carries it)
   * in `records`, to be read, instead of decoded `kvs`, which is then empty: what a Range answer
   * sends as it is.
   */
  records?: boolean;
}

/**
 * The stored records a range found (`RangeOptions.records`), in key order, not read yet. Each
 * is handed over in place: the bytes are valid only during the call that receives them.
 */
export interface StoredRecords {
  /** How many (at most the range's `limit`). */
  readonly length: number;
  /** Hands them all to `each` now, in this turn of the event loop. */
  forEach(each: (record: Buffer) => void): void;
  /**
   * Hands the first `n` (default all) to `each` in slices of about 10 ms of reading, one per
   * turn of the event loop, so that the thread serves other requests and HTTP/2 pings while a
   * large answer is read (etcd reads it on a goroutine of its own). Returns undefined when the
   * first slice read them all, else a promise for the last. Read them before the view they came
   * from ends: while it is open, a compaction above its reads deletes no record (see
   * `KVStore.read`); reads also wait while a defragmentation swaps the database file. When
   * `cancelled` (checked between slices) says so, the read stops and rejects with
   * ReadCancelledError; it also rejects if the backend fails or closes.
   */
  read(each: (record: Buffer) => void, n?: number, cancelled?: () => boolean): Promise<void> | undefined;
}

/** Result of a range read (etcd `mvcc.RangeResult`). */
export interface RangeResult {
  /** The KeyValues, ordered by key, at most `limit`. */
  kvs: KeyValue[];
  /** With `RangeOptions.records`: the stored records of the KeyValues, in key order, at most `limit`. */
  records?: StoredRecords;
  /** How many keys the range holds at the read revision (ignoring `limit`). */
  count: number;
  /** The view's revision (the store's revision as the reader sees it, not the read revision). */
  rev: number;
}

/**
 * Lease bookkeeping the store needs on writes (etcd `lease.Lessor`, the part the store uses).
 * The lessor itself lives in `src/lease/`; until it is attached no lease exists.
 */
export interface LeaseHooks {
  /** True when the lease exists. */
  exists(id: bigint): boolean;
  /** Records that `key` is attached to lease `id`. */
  attach(id: bigint, key: Key): void;
  /** Records that `key` is no longer attached to lease `id`. */
  detach(id: bigint, key: Key): void;
  /** The lease `key` is attached to, or 0n (etcd `Lessor.GetLease`). */
  leaseOf(key: Key): bigint;
}

const EMPTY = Buffer.alloc(0);

/** The error of a revision the index holds and the backend does not: a damaged data dir or a bug. */
function missingRecord(rev: Revision): Error {
  return new Error(`mvcc: revision ${rev.main}_${rev.sub} in the index but not in the backend`);
}

const NO_LEASES: LeaseHooks = { exists: () => false, attach: () => {}, detach: () => {}, leaseOf: () => 0n };

/** A read-only view of the store at one revision (etcd `mvcc.ReadView`). */
export interface ReadView {
  /** The revision this view reads at by default. */
  rev(): number;
  /** The oldest revision still readable (the compacted revision). */
  firstRev(): number;
  /** Reads `[key, end)` (see `TreeIndex.range` for `end`). Throws CompactedError, FutureRevError. */
  range(key: Key, end: Key | undefined, opts?: RangeOptions): RangeResult;
}

/** A read transaction (etcd `TxnRead`): a view whose ranges count in `KVStore.ops` when it ends. */
export interface TxnRead extends ReadView {
  end(): void;
}

/**
 * Storage calls since start, as etcd's `metricsTxnWrite` counts them for its range, put,
 * delete and txn totals: every range, put and delete-range call of a storage transaction (a
 * delete-range once, whatever it deletes), and a txn for each storage transaction that made
 * more than one call.
 */
export interface StorageOps {
  ranges: number;
  puts: number;
  deletes: number;
  txns: number;
}

/** A view counted as a read transaction (see `KVStore.read`, `KVStore.readWithin`). */
class CountedRead implements TxnRead {
  private ranges = 0;
  /** The lowest revision a range of this view read at; Infinity before the first. */
  lowestRev = Infinity;
  /** Settles when the view ends; made when something waits for it. */
  private ending: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly store: KVStore,
    private readonly view: ReadView,
  ) {}

  rev(): number {
    return this.view.rev();
  }

  firstRev(): number {
    return this.view.firstRev();
  }

  range(key: Key, end: Key | undefined, opts?: RangeOptions): RangeResult {
    this.ranges++;
    const rev = opts?.rev !== undefined && opts.rev > 0 ? opts.rev : this.view.rev();
    if (rev < this.lowestRev) this.lowestRev = rev;
    return this.view.range(key, end, opts);
  }

  /** Resolves when the view ends. */
  ended(): Promise<void> {
    if (!this.ending) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.ending = { promise, resolve };
    }
    return this.ending.promise;
  }

  end(): void {
    this.store.countTxn(this.ranges, 0, 0);
    this.store.closeView(this);
    this.ending?.resolve();
  }
}

/** Observer of durable changes: called once per published revision, in revision order. */
export type PublishListener = (rev: number, changes: readonly KeyValue[]) => void;

/**
 * Time per slice of work done a turn of the event loop at a time, in ms: a `StoredRecords.read`
 * (the clock checked every 64 records) and an index compaction (every 256 keys).
 */
const READ_SLICE_MS = 10;

/** Range counts `rangeRevisions` keeps (one per revision and range end: a list being paged). */
const RANGE_COUNTS = 64;

/** Compaction batch size (etcd `compactionBatchLimit`) and pause between batches. */
const COMPACTION_BATCH = 1000;
const COMPACTION_PAUSE_MS = 10;

export class KVStore {
  /** key → keyIndex, including not yet durable revisions. */
  readonly index = new TreeIndex();
  /** Durable storage. */
  readonly backend: Backend;
  /** Newest assigned main revision (see module comment). */
  private currentRev = 1;
  /** Newest durable main revision (see module comment). */
  private publishedRevValue = 1;
  /** Reads below this main revision fail with ErrCompacted; −1 when never compacted. */
  private compactMainRev = -1;
  /** Committed-but-unpublished transactions, in revision order, waiting for durability. */
  private readonly unpublished: { rev: number; changes: KeyValue[] }[] = [];
  /** Lease hooks; replaced by the lessor when it starts. */
  leases: LeaseHooks = NO_LEASES;
  /** Observers of published revisions (the watchable store). */
  private readonly listeners: PublishListener[] = [];
  /** Storage calls since start (etcd's mvcc range, put, delete and txn totals); see `countTxn`. */
  readonly ops: StorageOps = { ranges: 0, puts: 0, deletes: 0, txns: 0 };
  /** Backend records deleted by compactions since start (etcd `db_compaction_keys_total`); written only by `deleteCompacted`. */
  compactedKeysTotal = 0;
  /**
   * Called with each compaction's timings in ms (etcd's compaction duration histograms):
   * `index` the index compaction, `dbPause` each batch of backend deletes, `dbTotal` the whole
   * deletion from its first batch to its last.
   */
  onCompactionTiming: ((phase: 'index' | 'dbPause' | 'dbTotal', ms: number) => void) | undefined;
  /** Called when the records of a compaction at `rev` are deleted, `tookMs` after it began (etcd logs it). */
  onCompactionDone: ((rev: number, tookMs: number) => void) | undefined;
  /** Resolves when the running physical compaction is finished. */
  private compaction: Promise<void> = Promise.resolve();
  /** True while a durability wait is in flight (one at a time keeps batches large). */
  private syncing = false;
  /** Callers waiting for the next durability point. */
  private syncWaiters: (() => void)[] = [];
  private syncFailed: ((err: unknown) => void)[] = [];
  /** Live keys with a lease, as `restore` found them, until `attachLeases` hands them over. */
  private readonly keyToLease = new Map<Key, bigint>();
  /** The revision of a compaction a stop interrupted, which the restore resumed (etcd logs it); undefined when none. */
  resumedCompaction: number | undefined;
  /** Read transactions not ended yet (see `read`). */
  private readonly openViews = new Set<CountedRead>();
  /**
   * `rangeRevisions`' counts, the most recently used last: "revision/range end" → the number of
   * keys from `from` to the range's end at that revision.
   */
  private readonly rangeCounts = new Map<string, { from: Key; total: number }>();

  constructor(backend: Backend) {
    this.backend = backend;
    this.restore();
  }

  /** The newest durable revision: what readers see. */
  get publishedRev(): number {
    return this.publishedRevValue;
  }

  /** The newest assigned revision, durable or not. */
  get headRev(): number {
    return this.currentRev;
  }

  /** The compacted revision (−1 when never compacted, as etcd's `compactMainRev`). */
  get compactRev(): number {
    return this.compactMainRev;
  }

  /** Registers an observer of published revisions. */
  onPublish(listener: PublishListener): void {
    this.listeners.push(listener);
  }

  /**
   * A read transaction at the newest durable revision (etcd `store.Read`); `end()` it. Until it
   * ends, a compaction above the revisions its ranges read deletes none of their records, as
   * etcd's compaction waits for open read transactions: records found by its ranges may be read
   * later (`StoredRecords.read`). Its index lookups are all made when its ranges are called.
   */
  read(): TxnRead {
    const rev = this.publishedRevValue;
    return this.readAt(() => rev);
  }

  /**
   * What `txn` reads, as a read transaction of its own (its ranges are not `txn`'s): etcd reads
   * a txn's compares in a read transaction before it begins the write one
   * (`applierV3backend.Txn`); `end()` it.
   */
  readWithin(txn: TxnWrite): TxnRead {
    return this.readAt(() => txn.rev());
  }

  /** A read transaction whose view is at `rev()`. */
  private readAt(rev: () => number): TxnRead {
    const view = new CountedRead(this, {
      rev,
      firstRev: () => this.compactMainRev,
      range: (key, end, opts) => this.rangeKeys(key, end, rev(), opts ?? {}),
    });
    this.openViews.add(view);
    return view;
  }

  /** Called by a read transaction as it ends. */
  closeView(view: CountedRead): void {
    this.openViews.delete(view);
  }

  /** Adds one storage transaction's calls to `ops`. */
  countTxn(ranges: number, puts: number, deletes: number): void {
    const ops = this.ops;
    ops.ranges += ranges;
    ops.puts += puts;
    ops.deletes += deletes;
    if (ranges + puts + deletes > 1) ops.txns++;
  }

  /** Starts a write transaction at the head revision (etcd `store.Write`). Call `end()` synchronously. */
  beginWrite(): TxnWrite {
    return new TxnWrite(this, this.currentRev);
  }

  /** Reads the KeyValue stored at a revision (the backend shows records not yet durable too). */
  readRecord(rev: Revision): KeyValue {
    // The KeyValue's key and value are views of the bytes read: they must be a copy of their own.
    const bytes = this.backend.get('key', revToBytes(rev));
    if (!bytes) throw missingRecord(rev);
    return unmarshalKeyValue(bytes);
  }

  /** The stored record at `rev`, in place: valid until the next backend read. */
  private recordInPlace(rev: Revision): Buffer {
    const bytes = this.backend.getInPlace('key', revToBytes(rev));
    if (!bytes) throw missingRecord(rev);
    return bytes;
  }

  /** etcd `storeTxnRead.rangeKeys`: `viewRev` is the view's current revision. */
  rangeKeys(key: Key, end: Key | undefined, viewRev: number, opts: RangeOptions): RangeResult {
    let rev = opts.rev ?? 0;
    if (rev > viewRev) throw new FutureRevError();
    if (rev <= 0) rev = viewRev;
    if (rev < this.compactMainRev) throw new CompactedError();
    if (opts.count) return { kvs: [], count: this.index.countRevisions(key, end, rev), rev: viewRev };
    const limit = opts.limit ?? 0;
    const { revs, total } = this.rangeRevisions(key, end, rev, limit);
    const n = limit > 0 && limit < revs.length ? limit : revs.length;
    if (opts.records) return { kvs: [], records: this.storedRecords(revs, n), count: total, rev: viewRev };
    const kvs: KeyValue[] = new Array<KeyValue>(n);
    for (let i = 0; i < n; i++) kvs[i] = this.readRecord(revs[i]!);
    return { kvs, count: total, rev: viewRev };
  }

  /**
   * `index.revisions` with the counts of earlier calls at the same revision and range end
   * (`rangeCounts`), so that a list read page by page at one revision (Kubernetes' paginated
   * lists: `limit`, each page from the last key + 1, at the first page's revision) counts the
   * keys after each page without walking them all again. A count at a durable revision never
   * changes: later writes are at later revisions, and a compaction leaves the answers at or
   * above its revision alone (reads below it fail). Counts at a revision not yet durable (a
   * txn reading its own writes) are not kept.
   */
  private rangeRevisions(key: Key, end: Key | undefined, rev: number, limit: number): { revs: Revision[]; total: number } {
    if (end === undefined || end === '' || rev > this.publishedRevValue) return this.index.revisions(key, end, rev, limit);
    const id = `${rev}/${end}`;
    const known = this.rangeCounts.get(id);
    const found = this.index.revisions(key, end, rev, limit, known !== undefined && known.from <= key ? known : undefined);
    this.rangeCounts.delete(id);
    this.rangeCounts.set(id, { from: key, total: found.total });
    if (this.rangeCounts.size > RANGE_COUNTS) this.rangeCounts.delete(this.rangeCounts.keys().next().value!);
    return found;
  }

  /** The first `length` of `revs`, found by a range, as records to read. */
  private storedRecords(revs: readonly Revision[], length: number): StoredRecords {
    return {
      length,
      forEach: (each) => {
        for (let i = 0; i < length; i++) each(this.recordInPlace(revs[i]!));
      },
      read: (each, n = length, cancelled) => {
        const i = this.readSlice(revs, 0, n, each);
        return i === n ? undefined : this.readSlices(revs, i, n, each, cancelled);
      },
    };
  }

  /** `readSlice` from `from` to `n`, a slice per turn of the event loop, after this one, until `cancelled`. */
  private async readSlices(revs: readonly Revision[], from: number, n: number, each: (record: Buffer) => void, cancelled?: () => boolean): Promise<void> {
    for (let i = from; i < n; ) {
      await nextTurn();
      if (cancelled?.()) throw new ReadCancelledError();
      const reopening = this.backend.reopening;
      if (reopening) await reopening;
      i = this.readSlice(revs, i, n, each);
    }
  }

  /** Hands the records at `revs[from]`, … to `each` for about READ_SLICE_MS, up to `n`; returns where it stopped. */
  private readSlice(revs: readonly Revision[], from: number, n: number, each: (record: Buffer) => void): number {
    const stop = performance.now() + READ_SLICE_MS;
    let i = from;
    while (i < n) {
      each(this.recordInPlace(revs[i++]!));
      if ((i & 63) === 0 && performance.now() >= stop) break;
    }
    return i;
  }

  /** Resolves once no read transaction that read at a revision below `rev` is open. */
  private async readsBelow(rev: number): Promise<void> {
    for (;;) {
      const open = [...this.openViews].filter((v) => v.lowestRev < rev).map((v) => v.ended());
      if (open.length === 0) return;
      await Promise.all(open);
    }
  }

  /** Called by TxnWrite.end() for a transaction that changed something. */
  commitTxn(rev: number, changes: KeyValue[]): Promise<void> {
    this.currentRev = rev;
    this.unpublished.push({ rev, changes });
    return this.sync();
  }

  /**
   * Resolves once every write queued so far is durable, publishing the revisions that became
   * durable. One fsync is in flight at a time; writers arriving meanwhile share the next one
   * (group commit).
   */
  sync(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push(resolve);
      this.syncFailed.push(reject);
      if (!this.syncing) this.runSync();
    });
  }

  private runSync(): void {
    this.syncing = true;
    const waiters = this.syncWaiters;
    const failed = this.syncFailed;
    this.syncWaiters = [];
    this.syncFailed = [];
    const upto = this.unpublished.length;
    this.backend.durable().then(
      () => {
        this.publish(this.unpublished.splice(0, upto));
        for (const w of waiters) w();
        this.syncing = false;
        if (this.syncWaiters.length > 0) this.runSync();
      },
      (err: unknown) => {
        // A failed fsync leaves the disk state unknown: nothing more may be acknowledged (the
        // backend rejects every later wait, and reports the failure through its onFatal).
        for (const f of failed) f(err);
        this.syncing = false;
        if (this.syncWaiters.length > 0) this.runSync();
      },
    );
  }

  /** Makes durable transactions visible and tells observers, in revision order. */
  private publish(txns: { rev: number; changes: KeyValue[] }[]): void {
    for (const t of txns) {
      this.publishedRevValue = t.rev;
      for (const l of this.listeners) l(t.rev, t.changes);
    }
  }

  /** Queues a record in the backend, which shows it to `readRecord` at once (called by TxnWrite). */
  writeRecord(rev: Revision, kv: KeyValue, tombstone: boolean): void {
    this.backend.put('key', revToBytes(rev, tombstone), marshalKeyValue(kv));
  }

  /**
   * Compacts history below `rev` (etcd `store.Compact`): reads below `rev` fail from now on;
   * in the background, after the compactions before it, the index forgets superseded
   * revisions (`compactIndex`) and their records are deleted from the backend. Returns a
   * promise for the physical deletion.
   * Throws CompactedError when `rev` ≤ the compacted revision, FutureRevError when above head.
   */
  compact(rev: number): { done: Promise<void> } {
    if (rev <= this.compactMainRev) throw new CompactedError();
    if (rev > this.currentRev) throw new FutureRevError();
    this.compactMainRev = rev;
    this.backend.putMeta('scheduledCompactRev', rev);
    const previous = this.compaction;
    // A read transaction still open at a revision below `rev` may need records this deletes.
    const done = previous.then(async () => {
      // Once the compaction is durable, and after the turn that answers it: etcd answers a
      // Compact once it is applied, and compacts in its scheduler.
      await this.sync();
      await nextTurn();
      const keep = await this.compactIndex(rev);
      await this.readsBelow(rev);
      await this.deleteCompacted(rev, keep);
    });
    this.compaction = done.catch(() => {});
    return { done };
  }

  /**
   * Compacts the index at `rev` in slices of about READ_SLICE_MS, one per turn of the event
   * loop, so that a large index does not hold the thread (etcd compacts one key at a time
   * under the index lock). Reads and writes between slices see the same answers at revisions
   * ≥ `rev` either side of a key's compaction. Resolves to the revisions to keep.
   */
  private async compactIndex(rev: number): Promise<RevisionSet> {
    const keep = new RevisionSet();
    const start = performance.now();
    let stopAt = start + READ_SLICE_MS;
    const stop = (): boolean => performance.now() >= stopAt;
    for (let after = this.index.compact(rev, keep, undefined, stop); after !== undefined; after = this.index.compact(rev, keep, after, stop)) {
      await nextTurn();
      stopAt = performance.now() + READ_SLICE_MS;
    }
    // etcd times the whole index compaction, waits for its lock included.
    this.onCompactionTiming?.('index', performance.now() - start);
    return keep;
  }

  /** Deletes backend records at or below `rev` not in `keep`, in batches (etcd `scheduleCompaction`). */
  private async deleteCompacted(rev: number, keep: RevisionSet): Promise<void> {
    const end = revToBytes({ main: rev + 1, sub: 0 });
    const totalStart = performance.now();
    let start: Buffer | undefined = revToBytes({ main: 0, sub: 0 });
    while (start) {
      const batchStart = performance.now();
      let n = 0;
      let last: Buffer | undefined;
      for (const { key } of this.backend.range('key', start, end)) {
        const r = bytesToRev(key);
        // A tombstone at exactly the compacted revision stays: a watcher may still start at
        // that revision and must see the delete (etcd issue #18089).
        if (!keep.has(r.main, r.sub) && !(r.main === rev && isTombstone(key))) {
          this.backend.remove('key', key);
          this.compactedKeysTotal++;
        }
        last = key;
        if (++n === COMPACTION_BATCH) break;
      }
      // As etcd, a full batch is never the last: the next one starts past it, even when empty.
      const next = n === COMPACTION_BATCH ? Buffer.concat([last!, Buffer.from([0])]) : undefined;
      if (!next) this.backend.putMeta('finishedCompactRev', rev);
      // etcd commits each batch but the last at once (`ForceCommit`), so the space shows free.
      if (next) await this.backend.forceCommit();
      else await this.backend.durable();
      start = next;
      if (start) {
        // etcd times every batch but the last.
        this.onCompactionTiming?.('dbPause', performance.now() - batchStart);
        await new Promise((r) => setTimeout(r, COMPACTION_PAUSE_MS));
      }
    }
    this.onCompactionTiming?.('dbTotal', performance.now() - totalStart);
    this.onCompactionDone?.(rev, performance.now() - totalStart);
  }

  /** Rebuilds the index from the backend (etcd `store.restore`) and resumes a scheduled compaction. */
  private restore(): void {
    const finished = Number(this.backend.getMeta('finishedCompactRev') ?? -1);
    const scheduled = Number(this.backend.getMeta('scheduledCompactRev') ?? -1);
    this.compactMainRev = finished;
    // The record being read (its key's revision is read in place, then its value); after the
    // scan, the last one's.
    let main = 1;
    let sub = 0;
    let tombstone = false;
    const restore = this.index.restorer();
    this.backend.scanInPlace(
      'key',
      (bytes, start, end) => {
        main = mainRevAt(bytes, start);
        sub = subRevAt(bytes, start);
        tombstone = isTombstoneAt(bytes, start, end);
      },
      (value) => {
        const kv = readKeyValueHead(value);
        restore.add(kv.key, main, sub, tombstone, kv.createRevision, kv.version);
        if (!tombstone && kv.lease !== 0n) this.keyToLease.set(kv.key, kv.lease);
        else this.keyToLease.delete(kv.key);
      },
    );
    restore.flush();
    this.currentRev = Math.max(main, this.compactMainRev, 1);
    this.publishedRevValue = this.currentRev;
    if (scheduled > this.compactMainRev) {
      const keep = new RevisionSet();
      this.index.compact(scheduled, keep);
      this.compactMainRev = scheduled;
      this.resumedCompaction = scheduled;
      this.compaction = this.deleteCompacted(scheduled, keep).catch(() => {});
    }
  }

  /**
   * Attaches every live key with a lease to the lessor (after it restored its leases), from
   * what `restore` read (etcd's `keyToLease`). Once: the store forgets them afterwards.
   */
  attachLeases(): void {
    for (const [key, lease] of this.keyToLease) this.leases.attach(lease, key);
    this.keyToLease.clear();
  }

  /** Waits for background compaction and closes the backend (a read still running then fails). */
  async close(): Promise<void> {
    await this.compaction;
    await this.backend.close();
  }
}

/**
 * A write transaction (etcd `storeTxnWrite`). Every change gets revision
 * `{main: beginRev + 1, sub: n}` where n counts the changes so far. Reads inside the
 * transaction see its own changes. `end()` hands the changes to the store and returns a
 * promise that resolves when they are durable and published.
 */
export class TxnWrite implements ReadView {
  /** The store's head revision when the transaction began. */
  readonly beginRev: number;
  /** Records written by this transaction, in sub-revision order. */
  readonly changes: KeyValue[] = [];
  private readonly store: KVStore;
  private ended = false;
  /** Calls made, for `KVStore.ops`. */
  private ranges = 0;
  private puts = 0;
  private deletes = 0;

  constructor(store: KVStore, beginRev: number) {
    this.store = store;
    this.beginRev = beginRev;
  }

  /** The revision reads see: beginRev, or beginRev + 1 once this transaction changed something. */
  rev(): number {
    return this.changes.length > 0 ? this.beginRev + 1 : this.beginRev;
  }

  firstRev(): number {
    return this.store.compactRev;
  }

  range(key: Key, end: Key | undefined, opts?: RangeOptions): RangeResult {
    this.ranges++;
    return this.store.rangeKeys(key, end, this.rev(), opts ?? {});
  }

  /**
   * Writes `key` = `value` with `lease` (0n = none) at the next sub revision (etcd
   * `storeTxnWrite.put`). Throws LeaseNotFoundError when the lease does not exist.
   */
  put(key: Key, value: Buffer, lease: bigint): void {
    if (lease !== 0n && !this.store.leases.exists(lease)) throw new LeaseNotFoundError();
    this.puts++;
    const main = this.beginRev + 1;
    const idxRev = { main, sub: this.changes.length };
    const prev = this.store.index.get(key, main);
    let created = main;
    let ver = 1;
    let oldLease = 0n;
    if (prev) {
      created = prev.created.main;
      ver = prev.ver + 1;
      oldLease = this.store.leases.leaseOf(key);
    }
    const kv: KeyValue = {
      key: keyToBytes(key),
      createRevision: BigInt(created),
      modRevision: BigInt(main),
      version: BigInt(ver),
      value,
      lease,
    };
    this.store.writeRecord(idxRev, kv, false);
    this.store.index.put(key, idxRev);
    this.changes.push(kv);
    if (oldLease !== 0n) this.store.leases.detach(oldLease, key);
    if (lease !== 0n) this.store.leases.attach(lease, key);
  }

  /** Deletes every key in `[key, end)` (etcd `storeTxnWrite.deleteRange`); returns how many. */
  deleteRange(key: Key, end: Key | undefined): number {
    this.deletes++;
    const { keys } = this.store.index.range(key, end, this.rev());
    for (const k of keys) this.delete(k);
    return keys.length;
  }

  /**
   * Tombstones `key`. The backend record holds only the key, as etcd's does; the change handed
   * to watchers carries mod_revision = the deleting revision (etcd `watchableStoreTxnWrite.End`).
   */
  private delete(key: Key): void {
    const main = this.beginRev + 1;
    const idxRev = { main, sub: this.changes.length };
    const keyBytes = keyToBytes(key);
    const record: KeyValue = { key: keyBytes, createRevision: 0n, modRevision: 0n, version: 0n, value: EMPTY, lease: 0n };
    this.store.writeRecord(idxRev, record, true);
    this.store.index.tombstone(key, idxRev);
    this.changes.push({ ...record, modRevision: BigInt(main) });
    const lease = this.store.leases.leaseOf(key);
    if (lease !== 0n) this.store.leases.detach(lease, key);
  }

  /**
   * Ends the transaction. With changes, the store's head moves to beginRev + 1 and the promise
   * resolves when they are durable and published; without, it resolves at once.
   */
  end(): Promise<void> {
    if (this.ended) throw new Error('mvcc: transaction ended twice');
    this.ended = true;
    this.store.countTxn(this.ranges, this.puts, this.deletes);
    if (this.changes.length === 0) return Promise.resolve();
    return this.store.commitTxn(this.beginRev + 1, this.changes);
  }
}
