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
 * Memory: a key or range with one watcher holds that watcher itself, not a one-element Set
 * (a Set costs about 150 bytes, twice a watcher); a second watcher turns it into a Set. The
 * group keeps its insertion order (`watchers`) only once that order was first read: the
 * synced group, which holds nearly every idle watcher, is only ever looked up by key, so it
 * pays nothing for an order.
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

/** The watchers of one key or range: the watcher itself while it is alone, else a Set of two or more. */
type Members = Watcher | Set<Watcher>;

/** `members` (which does not hold `w`) with `w` added. */
function withMember(members: Members | undefined, w: Watcher): Members {
  if (members === undefined) return w;
  return members instanceof Set ? members.add(w) : new Set([members, w]);
}

/** `members` (which holds `w`) without `w`; undefined when none are left. */
function withoutMember(members: Members, w: Watcher): Members | undefined {
  if (!(members instanceof Set)) return undefined;
  members.delete(w);
  if (members.size > 1) return members;
  return members.size === 1 ? members.values().next().value : undefined;
}

function isMember(members: Members | undefined, w: Watcher): boolean {
  return members === w || (members instanceof Set && members.has(w));
}

function forEachMember(members: Members, fn: (w: Watcher) => void): void {
  if (members instanceof Set) for (const w of members) fn(w);
  else fn(members);
}

/** The watchers sharing one range. */
interface RangeEntry {
  /** The range's first key. */
  readonly low: Key;
  /** The range's end ('' = to the end of the keyspace). */
  readonly end: Key;
  /** The watchers on exactly this range; the entry leaves the tree when none are left. */
  members: Members;
}

export class WatcherGroup {
  /** Single-key watchers by key; a key leaves the map when its last watcher leaves. */
  private readonly keyWatchers = new Map<Key, Members>();
  /** Range entries by `low + '\u0100' + end` (unambiguous: keys never contain U+0100). */
  private readonly rangeEntries = new Map<string, RangeEntry>();
  /** Interval tree over the range entries. */
  private readonly ranges = new IntervalTree<RangeEntry>();
  /** Number of watchers; changed by add and delete. */
  private count = 0;
  /** The watchers in insertion order; undefined until `watchers` is first read, then kept by add and delete. */
  private order: Set<Watcher> | undefined;

  /** Number of watchers. */
  get size(): number {
    return this.count;
  }

  /**
   * Every watcher of the group. From the first read on, in the order they were added (a
   * watcher deleted and added again moves to the back: syncWatchers rotates this way); the
   * watchers present at the first read come single keys first, then ranges.
   */
  get watchers(): ReadonlySet<Watcher> {
    if (this.order === undefined) {
      const order = new Set<Watcher>();
      const add = (w: Watcher): void => void order.add(w);
      for (const members of this.keyWatchers.values()) forEachMember(members, add);
      for (const entry of this.rangeEntries.values()) forEachMember(entry.members, add);
      this.order = order;
    }
    return this.order;
  }

  /** Adds `w` (a no-op when present). */
  add(w: Watcher): void {
    if (w.end === undefined) {
      const members = this.keyWatchers.get(w.key);
      if (isMember(members, w)) return;
      this.keyWatchers.set(w.key, withMember(members, w));
    } else {
      const id = rangeId(w);
      const entry = this.rangeEntries.get(id);
      if (!entry) {
        const created: RangeEntry = { low: w.key, end: w.end, members: w };
        this.rangeEntries.set(id, created);
        this.ranges.insert(new Interval(w.key, highOf(w.end)), created);
      } else if (isMember(entry.members, w)) {
        return;
      } else {
        entry.members = withMember(entry.members, w);
      }
    }
    this.count++;
    this.order?.add(w);
  }

  /** Removes `w`; returns false when it was not in the group. */
  delete(w: Watcher): boolean {
    if (w.end === undefined) {
      const members = this.keyWatchers.get(w.key);
      if (!isMember(members, w)) return false;
      const left = withoutMember(members!, w);
      if (left === undefined) this.keyWatchers.delete(w.key);
      else if (left !== members) this.keyWatchers.set(w.key, left);
    } else {
      const id = rangeId(w);
      const entry = this.rangeEntries.get(id);
      if (!entry || !isMember(entry.members, w)) return false;
      const left = withoutMember(entry.members, w);
      if (left === undefined) {
        this.rangeEntries.delete(id);
        this.ranges.remove(new Interval(entry.low, highOf(entry.end)), entry);
      } else {
        entry.members = left;
      }
    }
    this.count--;
    this.order?.delete(w);
    return true;
  }

  has(w: Watcher): boolean {
    if (w.end === undefined) return isMember(this.keyWatchers.get(w.key), w);
    return isMember(this.rangeEntries.get(rangeId(w))?.members, w);
  }

  /** Calls `fn` for every watcher whose key or range contains `key` (etcd `watcherSetByKey`). */
  forEachWatcherOf(key: Key, fn: (w: Watcher) => void): void {
    const single = this.keyWatchers.get(key);
    if (single) forEachMember(single, fn);
    if (this.rangeEntries.size === 0) return;
    const point = new Interval(key, key);
    for (const entry of this.ranges.search(point)) {
      if (entry.end !== '' && key >= entry.end) continue; // the tree's interval is closed; ours is not
      forEachMember(entry.members, fn);
    }
  }

  /** The watchers whose key or range contains `key`. */
  watchersOf(key: Key): Watcher[] {
    const out: Watcher[] = [];
    this.forEachWatcherOf(key, (w) => out.push(w));
    return out;
  }
}

/** The rangeEntries key of a range watcher. */
function rangeId(w: Watcher): string {
  return w.key + KEY_INFINITY + w.end!;
}

function highOf(end: Key): Key {
  return end === '' ? KEY_INFINITY : end;
}
