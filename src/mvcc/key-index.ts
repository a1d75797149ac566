/**
 * The history of one key in the in-memory index (etcd `mvcc/key_index.go`).
 *
 * The index never holds values: it maps a key to the revisions at which the key changed, and
 * the backend maps each revision to the KeyValue written then. A key's life is cut into
 * *generations*: a generation starts with the put that (re)creates the key and ends with the
 * tombstone that deletes it; a new, empty generation then waits for the next put.
 */
import type { Revision } from './revision.js';
import type { Key } from './key.js';

/**
 * The index has no live revision for a key (etcd `ErrRevisionNotFound`, "mvcc: revision not
 * found"): a tombstone was asked for a key that does not exist.
 */
export class RevisionNotFoundError extends Error {
  override readonly name = 'RevisionNotFoundError';
  /** The key that had no live revision. */
  readonly key: Key;

  constructor(key: Key) {
    super('mvcc: revision not found');
    this.key = key;
  }
}

/** What `get` finds: the key's state as of a revision (etcd `keyIndex.get`'s results). */
export interface IndexGetResult {
  /** Revision of the change that wrote the value visible at the asked revision. */
  readonly modified: Revision;
  /** Revision that created the key in that generation (the KeyValue's `create_revision`). */
  readonly created: Revision;
  /** Version of the key at `modified`: 1 for the creating put, +1 per change after it. */
  readonly ver: number;
}

/**
 * A set of revisions, used for the revisions compaction must keep (etcd's
 * `available map[revision]struct{}`).
 *
 * Held as a Map from main revision to its one sub revision, or to a Set of sub revisions once a
 * second revision with the same main joins. Nearly every main revision keeps one sub, so the
 * common case costs one numeric Map entry and no allocation; `has(main, sub)` needs no key
 * string or object, so the compaction can test every backend record it scans for free. (A
 * packed number `main * 2^k + sub` is not an option: main and sub may each use all 53 bits.)
 */
export class RevisionSet {
  /** main revision → its sub revision in the set, or the Set of them when there are several. */
  private readonly subsByMain = new Map<number, number | Set<number>>();
  /** Number of revisions in the set. */
  private count = 0;

  /** Number of revisions in the set. */
  get size(): number {
    return this.count;
  }

  /** Adds revision (main, sub); adding one already present changes nothing. */
  add(main: number, sub: number): void {
    const subs = this.subsByMain.get(main);
    if (subs === undefined) {
      this.subsByMain.set(main, sub);
    } else if (typeof subs === 'number') {
      if (subs === sub) return;
      this.subsByMain.set(main, new Set([subs, sub]));
    } else {
      if (subs.has(sub)) return;
      subs.add(sub);
    }
    this.count++;
  }

  /** True when revision (main, sub) is in the set. */
  has(main: number, sub: number): boolean {
    const subs = this.subsByMain.get(main);
    if (subs === undefined) return false;
    return typeof subs === 'number' ? subs === sub : subs.has(sub);
  }

  /** The revisions in the set, grouped by main revision in insertion order (not sorted). */
  *[Symbol.iterator](): IterableIterator<Revision> {
    for (const [main, subs] of this.subsByMain) {
      if (typeof subs === 'number') {
        yield { main, sub: subs };
      } else {
        for (const sub of subs) yield { main, sub };
      }
    }
  }
}

/**
 * Length of a generation's `revs` (two numbers per revision) below which an append copies the
 * array to its exact new size. V8's `push` reserves room for half the length again plus 16
 * elements (8 bytes each), which on the one or two revisions most keys hold cost more than
 * everything else the key's index holds; a longer history grows by `push`, so a key rewritten
 * many times between compactions still appends in amortized constant time.
 */
const EXACT_REVS_LENGTH = 16;

/**
 * One life of a key, from the put that creates it to the tombstone that deletes it (etcd
 * `generation`). The key's last generation has no tombstone; every other one ends with one.
 *
 * Revisions are held as numbers, not Revision objects: at a million keys the index is most of
 * the server's memory, and an object per revision cost 48 bytes (40 and its 8-byte slot), three
 * times the two numbers.
 */
export class Generation {
  /** Number of changes made in this generation (puts and the closing tombstone), compacted ones included. */
  ver: number;
  /** Main revision of the put that created the key in this generation; 0 while empty. */
  createdMain: number;
  /** Sub revision of the put that created the key in this generation; 0 while empty. */
  createdSub: number;
  /**
   * The changes still indexed, ascending, as (main, sub) pairs: revision i is
   * `(revs[2 * i], revs[2 * i + 1])`. Compaction drops a prefix.
   */
  revs: number[];

  constructor(createdMain = 0, createdSub = 0, ver = 0, revs: number[] = []) {
    this.createdMain = createdMain;
    this.createdSub = createdSub;
    this.ver = ver;
    this.revs = revs;
  }

  /** Revision of the put that created the key in this generation; the zero revision while empty. */
  get created(): Revision {
    return { main: this.createdMain, sub: this.createdSub };
  }

  /** Number of revisions the generation holds. */
  get size(): number {
    return this.revs.length >> 1;
  }

  /** True when the generation holds no revision (a key's last generation after a tombstone). */
  isEmpty(): boolean {
    return this.revs.length === 0;
  }

  /** The generation's `i`-th revision (0 = the oldest still indexed). */
  rev(i: number): Revision {
    return { main: this.revs[2 * i]!, sub: this.revs[2 * i + 1]! };
  }

  /** Main revision of the last change: its tombstone unless it is the key's last generation; 0 when empty. */
  lastMain(): number {
    const n = this.revs.length;
    return n === 0 ? 0 : this.revs[n - 2]!;
  }

  /** Appends revision (main, sub), which must be after every revision held (see EXACT_REVS_LENGTH). */
  append(main: number, sub: number): void {
    const revs = this.revs;
    const n = revs.length;
    if (n >= EXACT_REVS_LENGTH) {
      revs.push(main, sub);
      return;
    }
    // A loop, not `concat`: V8's concat with number arguments takes its slow path (~9× slower).
    const next = new Array<number>(n + 2);
    for (let i = 0; i < n; i++) next[i] = revs[i]!;
    next[n] = main;
    next[n + 1] = sub;
    this.revs = next;
  }

  /** Drops the revisions before the `i`-th (compaction); the array left has its exact size. */
  dropBefore(i: number): void {
    this.revs = this.revs.slice(2 * i);
  }
}

/**
 * Index of the last revision in `revs` (a generation's ascending (main, sub) pairs) whose main
 * revision is ≤ `atRev`, or -1 when every revision is after `atRev`. Binary search: a key
 * rewritten many times stays cheap.
 */
function lastAtOrBefore(revs: readonly number[], atRev: number): number {
  let lo = 0;
  let hi = revs.length >> 1; // answer + 1 lies in [lo, hi]
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (revs[2 * mid]! <= atRev) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * The revisions of one key, cut into generations (etcd `keyIndex`).
 *
 * Generations are in history order; the last one is the live one (empty if the key is
 * currently deleted); every earlier one ends with a tombstone. Revision comparisons against a
 * reader's revision (`atRev`) use the main revision only: a reader at revision 5 sees the
 * whole transaction 5.
 *
 * Worked example — put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0) on key "foo":
 * ```
 * modified: 5.0
 * generations:
 *   {1.0, 2.0, 3.0(t)}   created 1.0, ver 3
 *   {4.0, 5.0(t)}        created 4.0, ver 2
 *   {}                   (empty: "foo" is deleted)
 * ```
 * `get(2)` finds 2.0 (created 1.0, ver 2); `get(3)` finds nothing (deleted at 3);
 * `since(2)` is [2.0, 3.0, 4.0, 5.0].
 *
 * Compaction at n keeps, per key, the revision visible at n (the last one ≤ n) unless the key is
 * deleted at n, and drops every revision before it; it reports the kept revision in `available`
 * so the backend keeps that record and deletes the others ≤ n. On the example:
 * ```
 * compact(1): {1.0, 2.0, 3.0(t)} {4.0, 5.0(t)} {}   available {1.0}  (nothing before 1.0)
 * compact(2): {2.0, 3.0(t)} {4.0, 5.0(t)} {}        available {2.0}
 * compact(3): {4.0, 5.0(t)} {}                      available {}     (deleted at 3: first generation gone)
 * compact(4): {4.0, 5.0(t)} {}                      available {4.0}
 * compact(5): {}                                    available {}     (empty: drop the keyIndex)
 * compact(6) and later: same as compact(5)
 * ```
 * Compaction never changes `ver` or `created`: versions at revisions still readable stay right.
 *
 * The live generation is held apart from the ended ones, which most keys do not have (a key not
 * deleted since the last compaction), so that they need no array of generations. etcd's
 * never-written keyIndex has no generation at all; ours has an empty live one, which behaves
 * the same everywhere.
 */
export class KeyIndex {
  /** The key, one byte per character (see key.ts). */
  readonly key: Key;
  /** Main revision of the key's last change (put or tombstone); 0 before the first. */
  private modifiedMain = 0;
  /** Sub revision of the key's last change; 0 before the first. */
  private modifiedSub = 0;
  /** The live generation: the last one, empty while the key is deleted (or before its first put). */
  private live = new Generation();
  /** The generations before the live one, oldest first, each ended by a tombstone; undefined when there is none. */
  private ended: Generation[] | undefined;

  constructor(key: Key) {
    this.key = key;
  }

  /** Revision of the key's last change (put or tombstone); the zero revision before the first. */
  get modified(): Revision {
    return { main: this.modifiedMain, sub: this.modifiedSub };
  }

  /** The key's generations, oldest first; the last one is the live (or empty) one. A new array. */
  get generations(): Generation[] {
    return this.ended === undefined ? [this.live] : [...this.ended, this.live];
  }

  /**
   * Records a put of the key at revision (main, sub) (etcd `keyIndex.put`). Starts the key's
   * generation if the last one is empty.
   * @throws Error if (main, sub) is not after `modified`: revisions only grow, so this is a bug.
   */
  put(main: number, sub: number): void {
    if (!(main > this.modifiedMain || (main === this.modifiedMain && sub > this.modifiedSub))) {
      throw new Error(
        `mvcc: keyIndex put of ${JSON.stringify(this.key)} at ${main}.${sub} is not after its last change ${this.modifiedMain}.${this.modifiedSub}`,
      );
    }
    const g = this.live;
    if (g.isEmpty()) {
      g.createdMain = main;
      g.createdSub = sub;
    }
    g.append(main, sub);
    g.ver++;
    this.modifiedMain = main;
    this.modifiedSub = sub;
  }

  /**
   * Rebuilds the keyIndex at startup from the key's newest surviving record (etcd
   * `keyIndex.restore`): one generation created at `created` whose only indexed revision is
   * `modified`, at version `ver` (the record's `create_revision`, revision and `version`).
   * @throws Error if the keyIndex already holds revisions.
   */
  restore(created: Revision, modified: Revision, ver: number): void {
    if (!this.isEmpty()) {
      throw new Error(`mvcc: keyIndex restore of ${JSON.stringify(this.key)} on a keyIndex that holds revisions`);
    }
    this.modifiedMain = modified.main;
    this.modifiedSub = modified.sub;
    this.live = new Generation(created.main, created.sub, ver, [modified.main, modified.sub]);
  }

  /**
   * Records the deletion of the key at revision (main, sub) (etcd `keyIndex.tombstone`): appends
   * the tombstone to the live generation and opens a new empty one.
   * @throws RevisionNotFoundError if the key has no live generation (it is deleted or never existed).
   * @throws Error if (main, sub) is not after `modified`.
   */
  tombstone(main: number, sub: number): void {
    if (this.live.isEmpty()) throw new RevisionNotFoundError(this.key);
    this.put(main, sub);
    this.ended = this.ended === undefined ? [this.live] : this.ended.concat(this.live);
    this.live = new Generation();
  }

  /**
   * The key's state as a reader at main revision `atRev` sees it (etcd `keyIndex.get`).
   * @returns undefined when the key did not exist at `atRev` (never created by then, deleted,
   *   or its history up to `atRev` was compacted away) — etcd's `ErrRevisionNotFound`.
   */
  get(atRev: number): IndexGetResult | undefined {
    const g = this.findGeneration(atRev);
    if (g === undefined) return undefined;
    const i = lastAtOrBefore(g.revs, atRev);
    return { modified: g.rev(i), created: g.created, ver: g.ver - (g.size - 1 - i) };
  }

  /**
   * Only the `modified` part of `get(atRev)`: the revision whose record holds the value visible
   * at main revision `atRev`, or undefined when the key did not exist then.
   */
  modifiedAt(atRev: number): Revision | undefined {
    const g = this.findGeneration(atRev);
    return g === undefined ? undefined : g.rev(lastAtOrBefore(g.revs, atRev));
  }

  /**
   * The key's changes at main revision `rev` or later, ascending, with one revision per main
   * revision: the last one (highest sub) when a transaction changed the key several times, since
   * only that one is visible outside the transaction (etcd `keyIndex.since`). Empty when none.
   */
  since(rev: number): Revision[] {
    const gens = this.generations;
    // Step back from the newest generation to the first one that ends at or after rev:
    // generations are in history order, so all earlier ones end before rev too.
    let gi = gens.length;
    while (gi > 0) {
      const g = gens[gi - 1]!;
      if (!g.isEmpty() && g.lastMain() < rev) break;
      gi--;
    }
    const out: Revision[] = [];
    for (; gi < gens.length; gi++) {
      const revs = gens[gi]!.revs;
      for (let i = 2 * (lastAtOrBefore(revs, rev - 1) + 1); i < revs.length; i += 2) {
        const r: Revision = { main: revs[i]!, sub: revs[i + 1]! };
        const n = out.length;
        if (n > 0 && out[n - 1]!.main === r.main) out[n - 1] = r;
        else out.push(r);
      }
    }
    return out;
  }

  /**
   * Compacts the key's history at main revision `atRev` (etcd `keyIndex.compact`): drops every
   * revision ≤ `atRev` except the one visible at `atRev`, which is added to `available`; when the
   * key is deleted at `atRev`, nothing ≤ `atRev` is kept. See the class comment for an example.
   * Afterwards the keyIndex may be empty (`isEmpty()`); the tree index then removes it.
   */
  compact(atRev: number, available: RevisionSet): void {
    const gi = this.compactGeneration(atRev);
    const ended = this.ended;
    const g = ended !== undefined && gi < ended.length ? ended[gi]! : this.live;
    const i = lastAtOrBefore(g.revs, atRev);
    if (i >= 0) {
      available.add(g.revs[2 * i]!, g.revs[2 * i + 1]!);
      if (i > 0) g.dropBefore(i);
    }
    if (ended !== undefined && gi > 0) this.ended = gi < ended.length ? ended.slice(gi) : undefined;
  }

  /**
   * Adds to `available` the revision `compact(atRev, available)` would keep, without changing
   * the keyIndex (etcd `keyIndex.keep`, used to hash the store as of a compaction).
   */
  keep(atRev: number, available: RevisionSet): void {
    const gi = this.compactGeneration(atRev);
    const ended = this.ended;
    const g = ended !== undefined && gi < ended.length ? ended[gi]! : this.live;
    const i = lastAtOrBefore(g.revs, atRev);
    if (i >= 0) available.add(g.revs[2 * i]!, g.revs[2 * i + 1]!);
  }

  /**
   * True when the key has no revision left: one empty generation (etcd `keyIndex.isEmpty`;
   * etcd counts a never-written keyIndex, which has no generation, as non-empty, we count it
   * as empty).
   */
  isEmpty(): boolean {
    return this.ended === undefined && this.live.isEmpty();
  }

  /**
   * Index in `generations` of the first generation compaction at `atRev` keeps: the first one not
   * deleted at or before `atRev` (its tombstone is after `atRev`), or the last generation.
   * Because every kept non-last generation ends after `atRev`, the revision compaction keeps in
   * it is never a tombstone.
   */
  private compactGeneration(atRev: number): number {
    const ended = this.ended;
    if (ended === undefined) return 0;
    let gi = 0;
    while (gi < ended.length && ended[gi]!.lastMain() <= atRev) gi++;
    return gi;
  }

  /**
   * The generation alive at main revision `atRev`, or undefined when the key did not exist then
   * (etcd `keyIndex.findGeneration`). The generation found has a revision ≤ `atRev`.
   */
  private findGeneration(atRev: number): Generation | undefined {
    const live = this.live;
    if (!live.isEmpty() && live.revs[0]! <= atRev) return live;
    const ended = this.ended;
    if (ended === undefined) return undefined;
    for (let gi = ended.length - 1; gi >= 0; gi--) {
      const g = ended[gi]!;
      // An ended generation's last change is its tombstone: at or before atRev, the key was
      // deleted by atRev, and every later generation started after atRev.
      if (g.lastMain() <= atRev) return undefined;
      if (g.revs[0]! <= atRev) return g;
    }
    return undefined;
  }
}
