/**
 * A set of watchers indexed by what they watch (etcd `mvcc/watcher_group.go`).
 *
 * Single-key watchers live in a Map from key to watchers. Range watchers (ranges, prefixes,
 * from-key, all keys) live in an interval tree (`@flatten-js/interval-tree`, which compares
 * string endpoints with `<`, i.e. bytewise for our latin1 keys). Each distinct range is one
 * tree entry holding the Set of its watchers, so ten thousand watchers on one prefix cost one
 * tree node, and adding or removing one of them is O(1) once the entry is found.
 *
 * Finding the watchers of a key costs O(log r + m): r distinct ranges, m matches.
 *
 * The tree holds closed intervals; a watcher's range `[key, end)` is stored as `[key, end]`
 * and a match at exactly `end` is dropped after the search. From-key (`end = ''`) is stored
 * with the upper bound `KEY_INFINITY`, above every latin1 key.
 */
import IntervalTree, { Interval } from '@flatten-js/interval-tree';
import type { Key } from '../mvcc/key.js';
import type { Watcher } from './watcher.js';

/** A string greater than every store key (store keys use char codes 0–255 only). */
const KEY_INFINITY = '\u0100';

/** The watchers sharing one range. */
interface RangeEntry {
  /** The range's first key. */
  readonly low: Key;
  /** The range's end ('' = to the end of the keyspace). */
  readonly end: Key;
  /** The watchers on exactly this range; the entry leaves the tree when it empties. */
  readonly watchers: Set<Watcher>;
}

export class WatcherGroup {
  /** Single-key watchers by key; a key leaves the map when its last watcher leaves. */
  private readonly keyWatchers = new Map<Key, Set<Watcher>>();
  /** Range entries by `low + '\u0100' + end` (unambiguous: keys never contain U+0100). */
  private readonly rangeEntries = new Map<string, RangeEntry>();
  /** Interval tree over the range entries. */
  private readonly ranges = new IntervalTree<RangeEntry>();
  /** Every watcher of the group, in the order they were added. */
  readonly watchers = new Set<Watcher>();

  /** Number of watchers. */
  get size(): number {
    return this.watchers.size;
  }

  /** Adds `w` (a no-op when present). */
  add(w: Watcher): void {
    if (this.watchers.has(w)) return;
    this.watchers.add(w);
    if (w.end === undefined) {
      let set = this.keyWatchers.get(w.key);
      if (!set) this.keyWatchers.set(w.key, (set = new Set()));
      set.add(w);
      return;
    }
    const id = w.key + KEY_INFINITY + w.end;
    let entry = this.rangeEntries.get(id);
    if (!entry) {
      entry = { low: w.key, end: w.end, watchers: new Set() };
      this.rangeEntries.set(id, entry);
      this.ranges.insert(new Interval(w.key, highOf(w.end)), entry);
    }
    entry.watchers.add(w);
  }

  /** Removes `w`; returns false when it was not in the group. */
  delete(w: Watcher): boolean {
    if (!this.watchers.delete(w)) return false;
    if (w.end === undefined) {
      const set = this.keyWatchers.get(w.key);
      if (set) {
        set.delete(w);
        if (set.size === 0) this.keyWatchers.delete(w.key);
      }
      return true;
    }
    const id = w.key + KEY_INFINITY + w.end;
    const entry = this.rangeEntries.get(id);
    if (entry) {
      entry.watchers.delete(w);
      if (entry.watchers.size === 0) {
        this.rangeEntries.delete(id);
        this.ranges.remove(new Interval(entry.low, highOf(entry.end)), entry);
      }
    }
    return true;
  }

  has(w: Watcher): boolean {
    return this.watchers.has(w);
  }

  /** Calls `fn` for every watcher whose key or range contains `key` (etcd `watcherSetByKey`). */
  forEachWatcherOf(key: Key, fn: (w: Watcher) => void): void {
    const single = this.keyWatchers.get(key);
    if (single) for (const w of single) fn(w);
    if (this.rangeEntries.size === 0) return;
    const point = new Interval(key, key);
    for (const entry of this.ranges.search(point)) {
      if (entry.end !== '' && key >= entry.end) continue; // the tree's interval is closed; ours is not
      for (const w of entry.watchers) fn(w);
    }
  }

  /** The watchers whose key or range contains `key`. */
  watchersOf(key: Key): Watcher[] {
    const out: Watcher[] = [];
    this.forEachWatcherOf(key, (w) => out.push(w));
    return out;
  }
}

function highOf(end: Key): Key {
  return end === '' ? KEY_INFINITY : end;
}
