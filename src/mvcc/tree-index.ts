/**
 * The in-memory index of the MVCC store (etcd `mvcc/index.go`, `treeIndex`): an ordered map
 * from key to its keyIndex, answering "which revision holds key K as of revision R" for single
 * keys and key ranges.
 *
 * Ranges follow etcd's `(key, end)` convention everywhere below:
 * - `end` undefined or `''`: the single key `key`;
 * - `end === '\0'`: every key ≥ `key` (from-key; with `key === '\0'` that is every key);
 * - otherwise: the keys in [key, end), nothing if `end <= key`.
 *
 * Everything here is synchronous and single-threaded, so etcd's index lock has no counterpart:
 * a caller sees each method's effect as atomic.
 */
import sortedBtree from 'sorted-btree';
import { bulkLoad } from 'sorted-btree/extended/bulkLoad.js';
import { compareRev, type Revision } from './revision.js';
import type { Key } from './key.js';
import { KeyIndex, RevisionNotFoundError, RevisionSet, type IndexGetResult } from './key-index.js';

export { KeyIndex, RevisionNotFoundError, RevisionSet, type IndexGetResult };

const BTree = sortedBtree.default;
type BTree<K, V> = sortedBtree.default<K, V>;

/**
 * A bound above every key: keys are strings of characters 0–255 (key.ts), and any such string
 * compares below a string starting with character 256. Used as the end of from-key ranges.
 */
const AFTER_ALL_KEYS = '\u0100';

/** Bytewise key order: for one-byte-per-character strings `<` compares exactly as the bytes do. */
function compareKeys(a: Key, b: Key): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when `end` selects the single key (etcd's nil range end). */
function isSingleKey(end: Key | undefined): end is undefined | '' {
  return end === undefined || end === '';
}

/** Keys `compact` handles between two calls of its `stop`. */
const COMPACT_STOP_KEYS = 256;

/** Keys whose keyIndex a `restorer` keeps at hand (etcd's `restoreChunkKeys` is 10,000). */
const RESTORE_CACHE_KEYS = 1 << 20;

/** Rebuilds a TreeIndex from the backend's records (see `TreeIndex.restorer`). */
export interface IndexRestorer {
  /** Feeds the next record, in revision order. */
  add(key: Key, main: number, sub: number, tombstone: boolean, created: number, ver: number): void;
  /** Puts the keyIndexes made so far into the tree; the index is complete once the last record is fed and flushed. */
  flush(): void;
}

/** The in-memory MVCC index (etcd `treeIndex`): key → keyIndex in a B+ tree ordered bytewise. */
export class TreeIndex {
  /**
   * Every key with indexed history → its keyIndex; never holds an empty keyIndex after `compact`.
   * Replaced only by a restorer's first flush into it while empty.
   */
  private tree: BTree<Key, KeyIndex> = new BTree<Key, KeyIndex>(undefined, compareKeys);

  /** Number of keys in the index, deleted-but-not-yet-compacted keys included. */
  get size(): number {
    return this.tree.size;
  }

  /** The keyIndex of `key`, or undefined if the index has none (etcd `treeIndex.KeyIndex`). */
  keyIndex(key: Key): KeyIndex | undefined {
    return this.tree.get(key);
  }

  /**
   * Records a put of `key` at `rev` (etcd `treeIndex.Put`).
   * @throws Error if `rev` is not after the key's last change.
   */
  put(key: Key, rev: Revision): void {
    const ki = this.tree.get(key);
    if (ki !== undefined) {
      ki.put(rev.main, rev.sub);
      return;
    }
    const created = new KeyIndex(key);
    created.put(rev.main, rev.sub);
    this.tree.set(key, created);
  }

  /**
   * Records the deletion of `key` at `rev` (etcd `treeIndex.Tombstone`).
   * @throws RevisionNotFoundError if `key` does not exist (absent from the index, or deleted).
   * @throws Error if `rev` is not after the key's last change.
   */
  tombstone(key: Key, rev: Revision): void {
    const ki = this.tree.get(key);
    if (ki === undefined) throw new RevisionNotFoundError(key);
    ki.tombstone(rev.main, rev.sub);
  }

  /**
   * Rebuilds the index at startup (etcd `restoreIntoIndex`). The restorer's `add` is fed every
   * backend record in revision order: `main` and `sub` are the record's revision, `tombstone` its
   * mark, `created` and `ver` its create_revision and version.
   * - a put of a key not in the index creates its keyIndex: from the record alone when `ver` > 1
   *   (its earlier revisions were compacted away: one generation created at `{created, 0}`, at
   *   version `ver`), else as a first put;
   * - a put of a key in the index is recorded at its revision;
   * - a tombstone ends the key's live generation; one of a key not live (its put compacted away,
   *   a tombstone kept at the compacted revision for watchers, see etcd #18089) is skipped.
   * Like etcd's `kiCache`, the restorer keeps the keyIndexes it made in a hash map, so that most
   * records skip the B-tree's lookup (a third of a restart's time before); the map goes with the
   * restorer. The keyIndexes it makes join the tree at `flush`, in key order: into an empty tree
   * (a start) at once, as sorted-btree's `bulkLoad` builds a tree from sorted entries, 2-5 times
   * faster than inserting them one by one in revision order (ARCHITECTURE, "Startup").
   * @throws Error if a record's revision is not after the key's last change.
   */
  restorer(): IndexRestorer {
    let cache = new Map<Key, KeyIndex>();
    // True while the cache holds every keyIndex of the tree and of `made`: a miss is then a new key.
    let complete = this.tree.size === 0;
    /** The keyIndexes made since the last flush, not in the tree yet. */
    let made: KeyIndex[] = [];
    const flush = (): void => {
      if (made.length === 0) return;
      made.sort((a, b) => compareKeys(a.key, b.key));
      if (this.tree.size === 0) {
        this.tree = bulkLoad(
          made.map((ki) => ki.key),
          made,
          this.tree.maxNodeSize,
          compareKeys,
        );
      } else {
        for (const ki of made) this.tree.set(ki.key, ki);
      }
      made = [];
    };
    const add = (key: Key, main: number, sub: number, tombstone: boolean, created: number, ver: number): void => {
      let ki = cache.get(key);
      if (ki === undefined && !complete) {
        ki = this.tree.get(key);
        if (ki !== undefined) cache.set(key, ki);
      }
      if (tombstone) {
        if (ki?.get(main) !== undefined) ki.tombstone(main, sub);
        return;
      }
      if (ki !== undefined) {
        ki.put(main, sub);
        return;
      }
      const k = new KeyIndex(key);
      if (ver > 1) k.restore({ main: created, sub: 0 }, { main, sub }, ver);
      else k.put(main, sub);
      made.push(k);
      // Bounded: a Map holds at most 2^24 entries; past the bound, misses go to the tree.
      if (cache.size >= RESTORE_CACHE_KEYS) {
        flush();
        cache = new Map();
        complete = false;
      }
      cache.set(key, k);
    };
    return { add, flush };
  }

  /**
   * The state of `key` as a reader at main revision `atRev` sees it (etcd `treeIndex.Get`), or
   * undefined when the key did not exist then (etcd `ErrRevisionNotFound`).
   */
  get(key: Key, atRev: number): IndexGetResult | undefined {
    return this.tree.get(key)?.get(atRev);
  }

  /**
   * The keys of the range (see the module comment) that exist at main revision `atRev`, in key
   * order, with the revision holding each one's value then (etcd `treeIndex.Range`).
   * `keys[i]` pairs with `revs[i]`.
   */
  range(key: Key, end: Key | undefined, atRev: number): { keys: Key[]; revs: Revision[] } {
    const keys: Key[] = [];
    const revs: Revision[] = [];
    if (isSingleKey(end)) {
      const rev = this.tree.get(key)?.modifiedAt(atRev);
      if (rev !== undefined) {
        keys.push(key);
        revs.push(rev);
      }
      return { keys, revs };
    }
    this.tree.forRange(key, rangeHigh(end), false, (k, ki) => {
      const rev = ki.modifiedAt(atRev);
      if (rev !== undefined) {
        keys.push(k);
        revs.push(rev);
      }
    });
    return { keys, revs };
  }

  /**
   * The revisions holding the values of the range's keys at main revision `atRev`, in key order
   * (etcd 3.5 `treeIndex.Revisions`). `total` counts every key of the range that exists at
   * `atRev`; `revs` stops at `limit` entries when `limit > 0` (no limit when `limit <= 0`).
   * `known`, when given, is the count of the keys from `known.from` (≤ `key`) to the range's end
   * that exist at `atRev`, as an earlier call found it: `total` is then that count less the keys
   * in [`known.from`, `key`), and the keys past the `limit`-th are not walked (a list read page by
   * page at one revision walks each page once more instead of every key after it).
   */
  revisions(key: Key, end: Key | undefined, atRev: number, limit: number, known?: { from: Key; total: number }): { revs: Revision[]; total: number } {
    const revs: Revision[] = [];
    if (isSingleKey(end)) {
      const rev = this.tree.get(key)?.modifiedAt(atRev);
      if (rev !== undefined) revs.push(rev);
      return { revs, total: revs.length };
    }
    const high = rangeHigh(end);
    if (known !== undefined && limit > 0) {
      this.tree.editRange<true>(key, high, false, (_k, ki) => {
        const rev = ki.modifiedAt(atRev);
        if (rev === undefined) return;
        revs.push(rev);
        if (revs.length === limit) return { break: true };
      });
      // The keys in [from, key), of the range's: a key past the range's end counts up to the end
      // (the range is then empty). None when from is there already ('\0' as an end means every key).
      const upto = key < high ? key : high;
      const before = known.from === upto ? 0 : this.countRevisions(known.from, upto, atRev);
      return { revs, total: known.total - before };
    }
    let total = 0;
    this.tree.forRange(key, high, false, (_k, ki) => {
      const rev = ki.modifiedAt(atRev);
      if (rev === undefined) return;
      if (limit <= 0 || revs.length < limit) revs.push(rev);
      total++;
    });
    return { revs, total };
  }

  /** Number of the range's keys that exist at main revision `atRev` (etcd 3.5 `treeIndex.CountRevisions`). */
  countRevisions(key: Key, end: Key | undefined, atRev: number): number {
    if (isSingleKey(end)) return this.tree.get(key)?.modifiedAt(atRev) !== undefined ? 1 : 0;
    let total = 0;
    this.tree.forRange(key, rangeHigh(end), false, (_k, ki) => {
      if (ki.modifiedAt(atRev) !== undefined) total++;
    });
    return total;
  }

  /**
   * Every change to the range's keys at main revision `rev` or later, sorted by revision, with
   * one revision per key per main revision (the last, see `KeyIndex.since`) (etcd
   * `treeIndex.RangeSince`).
   */
  rangeSince(key: Key, end: Key | undefined, rev: number): Revision[] {
    if (isSingleKey(end)) return this.tree.get(key)?.since(rev) ?? [];
    const revs: Revision[] = [];
    this.tree.forRange(key, rangeHigh(end), false, (_k, ki) => {
      for (const r of ki.since(rev)) revs.push(r);
    });
    return revs.sort(compareRev);
  }

  /**
   * Compacts keyIndexes at main revision `rev` (etcd `treeIndex.Compact`) in key order, from
   * the first key after `after` (from the first key when undefined), and removes the keys left
   * empty, until every key is done or `stop()` returns true (asked every COMPACT_STOP_KEYS
   * keys). Adds to `available` the revisions ≤ `rev` whose backend records must survive (one per
   * key alive at `rev`: the record of its value then); every other record with revision ≤ `rev`
   * may be deleted once every key is done. Writes made between two calls add revisions above
   * `rev` only, which compaction leaves alone, so a stopped compaction resumes where it was, as
   * etcd's compacts one key at a time between other writers.
   * @returns the last key compacted when `stop` ended the call, undefined when every key is done.
   */
  compact(rev: number, available: RevisionSet, after?: Key, stop?: () => boolean): Key | undefined {
    const stopped = this.tree.editRange<Key>(after ?? '', AFTER_ALL_KEYS, false, (k, ki, n) => {
      if (k === after) return;
      ki.compact(rev, available);
      const empty = ki.isEmpty();
      if (n % COMPACT_STOP_KEYS === COMPACT_STOP_KEYS - 1 && stop?.()) return empty ? { delete: true, break: k } : { break: k };
      return empty ? { delete: true } : undefined;
    });
    return typeof stopped === 'string' ? stopped : undefined;
  }

  /**
   * The set `compact(rev)` would return, without changing the index (etcd `treeIndex.Keep`,
   * used to hash the store as of a compaction).
   */
  keep(rev: number): RevisionSet {
    const available = new RevisionSet();
    this.tree.forEachPair((_k, ki) => {
      ki.keep(rev, available);
    });
    return available;
  }
}

/** The exclusive upper bound to scan up to for a non-single-key range end. */
function rangeHigh(end: Key): Key {
  return end === '\0' ? AFTER_ALL_KEYS : end;
}
