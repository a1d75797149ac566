// Tests of TreeIndex (etcd treeIndex): get, ranges, tombstone, rangeSince, compact and keep,
// restore, and a property test against a naive model of the event history.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RevisionNotFoundError, RevisionSet, TreeIndex, type IndexGetResult } from '../../src/mvcc/tree-index.js';
import { compareRev, type Revision } from '../../src/mvcc/revision.js';
import { prefixEnd, type Key } from '../../src/mvcc/key.js';

const rev = (main: number, sub = 0): Revision => ({ main, sub });
const fmt = (r: Revision): string => `${r.main}.${r.sub}`;
const setView = (s: RevisionSet): string[] => [...s].sort(compareRev).map(fmt);
/** Compacts every key of `ti` at `rev` in one call; returns the revisions to keep. */
function compactAll(ti: TreeIndex, rev: number): RevisionSet {
  const available = new RevisionSet();
  assert.equal(ti.compact(rev, available), undefined);
  return available;
}

describe('TreeIndex.get', () => {
  // etcd TestIndexGet: put 2, put 4, tombstone 6 on "foo".
  const ti = new TreeIndex();
  ti.put('foo', rev(2));
  ti.put('foo', rev(4));
  ti.tombstone('foo', rev(6));
  const cases: [number, [string, string, number] | undefined][] = [
    [0, undefined],
    [1, undefined],
    [2, ['2.0', '2.0', 1]],
    [3, ['2.0', '2.0', 1]],
    [4, ['4.0', '2.0', 2]],
    [5, ['4.0', '2.0', 2]],
    [6, undefined],
  ];
  for (const [atRev, want] of cases) {
    it(`at ${atRev}`, () => {
      const got = ti.get('foo', atRev);
      assert.deepEqual(got === undefined ? undefined : [fmt(got.modified), fmt(got.created), got.ver], want);
    });
  }
  it('finds nothing for a key never written', () => {
    assert.equal(ti.get('bar', 10), undefined);
  });
});

describe('TreeIndex.range, revisions, countRevisions', () => {
  // etcd TestIndexRange, plus from-key, all-keys, prefix and binary keys.
  const ti = new TreeIndex();
  const keys = ['\0', 'foo', 'foo1', 'foo2', 'fop', '\xff\xff'];
  keys.forEach((k, i) => ti.put(k, rev(i + 1)));
  ti.tombstone('fop', rev(7)); // deleted at 7
  const atRev = 7;
  const cases: [name: string, key: Key, end: Key | undefined, want: Key[]][] = [
    ['single key not found', 'bar', undefined, []],
    ['single key found', 'foo', undefined, ['foo']],
    ["'' end is a single key", 'foo', '', ['foo']],
    ['single deleted key', 'fop', undefined, []],
    ['first member', 'foo', 'foo1', ['foo']],
    ['first two members', 'foo', 'foo2', ['foo', 'foo1']],
    ['all foo members', 'foo', 'fop', ['foo', 'foo1', 'foo2']],
    ['last two members', 'foo1', 'fop', ['foo1', 'foo2']],
    ['last member', 'foo2', 'fop', ['foo2']],
    ['nothing', 'foo3', 'fop', []],
    ['end before key', 'foo2', 'foo', []],
    ['end equal to key', 'foo', 'foo', []],
    ['prefix foo', 'foo', prefixEnd('foo'), ['foo', 'foo1', 'foo2']],
    ['from key foo1', 'foo1', '\0', ['foo1', 'foo2', '\xff\xff']],
    ['from key \\xff\\xff', '\xff\xff', '\0', ['\xff\xff']],
    ["all keys ('\\0', '\\0')", '\0', '\0', ['\0', 'foo', 'foo1', 'foo2', '\xff\xff']],
    ['range ending at \\xff\\xff excludes it', 'foo', '\xff\xff', ['foo', 'foo1', 'foo2']],
  ];
  for (const [name, key, end, want] of cases) {
    it(name, () => {
      const wantRevs = want.map((k) => fmt(rev(keys.indexOf(k) + 1)));
      const r = ti.range(key, end, atRev);
      assert.deepEqual(r.keys, want);
      assert.deepEqual(r.revs.map(fmt), wantRevs);
      const all = ti.revisions(key, end, atRev, 0);
      assert.deepEqual({ revs: all.revs.map(fmt), total: all.total }, { revs: wantRevs, total: want.length });
      assert.equal(ti.countRevisions(key, end, atRev), want.length);
    });
  }

  it('limits revisions but counts every key', () => {
    const r = ti.revisions('\0', '\0', atRev, 2);
    assert.deepEqual({ revs: r.revs.map(fmt), total: r.total }, { revs: ['1.0', '2.0'], total: 5 });
    const neg = ti.revisions('\0', '\0', atRev, -1);
    assert.equal(neg.revs.length, 5, 'limit <= 0 means no limit');
    const single = ti.revisions('foo', undefined, atRev, 1);
    assert.deepEqual({ revs: single.revs.map(fmt), total: single.total }, { revs: ['2.0'], total: 1 });
  });

  it('reads the range as of an older revision', () => {
    assert.deepEqual(ti.range('foo', '\0', 3).keys, ['foo', 'foo1']);
    assert.deepEqual(ti.range('foo', '\0', 6).keys, ['foo', 'foo1', 'foo2', 'fop', '\xff\xff']);
    assert.equal(ti.countRevisions('\0', '\0', 0), 0);
  });
});

describe('TreeIndex.tombstone', () => {
  it('hides the key and refuses a second tombstone or an unknown key', () => {
    // etcd TestIndexTombstone
    const ti = new TreeIndex();
    ti.put('foo', rev(1));
    ti.tombstone('foo', rev(2));
    assert.equal(ti.get('foo', 2), undefined);
    assert.equal(ti.get('foo', 1)?.modified.main, 1);
    assert.throws(() => ti.tombstone('foo', rev(3)), RevisionNotFoundError);
    assert.throws(
      () => ti.tombstone('bar', rev(3)),
      (e: unknown) => e instanceof RevisionNotFoundError && e.key === 'bar',
    );
    assert.equal(ti.size, 1, 'a failed tombstone must not create a keyIndex');
  });

  it('refuses a put that goes back in time', () => {
    const ti = new TreeIndex();
    ti.put('foo', rev(3));
    assert.throws(() => ti.put('foo', rev(2)), /not after/);
  });
});

describe('TreeIndex.rangeSince', () => {
  // etcd TestIndexRangeSince
  const ti = new TreeIndex();
  const puts: [Key, number][] = [['foo', 1], ['foo1', 2], ['foo2', 3], ['foo2', 4], ['foo1', 5], ['foo', 6]];
  for (const [k, m] of puts) ti.put(k, rev(m));
  const cases: [Key, Key | undefined, number[]][] = [
    ['bar', undefined, []],
    ['foo', undefined, [1, 6]],
    ['foo', 'foo1', [1, 6]],
    ['foo', 'foo2', [1, 2, 5, 6]],
    ['foo', 'fop', [1, 2, 3, 4, 5, 6]],
    ['foo1', 'fop', [2, 3, 4, 5]],
    ['foo2', 'fop', [3, 4]],
    ['foo3', 'fop', []],
    ['foo1', '\0', [2, 3, 4, 5]],
  ];
  for (const [key, end, want] of cases) {
    it(`[${JSON.stringify(key)}, ${JSON.stringify(end)}) since 1`, () => {
      assert.deepEqual(ti.rangeSince(key, end, 1).map(fmt), want.map((m) => fmt(rev(m))));
    });
  }
  it('starts at the given revision', () => {
    assert.deepEqual(ti.rangeSince('foo', 'fop', 4).map(fmt), ['4.0', '5.0', '6.0']);
  });
});

describe('TreeIndex.compact and keep', () => {
  // etcd TestIndexCompactAndKeep's history.
  type Op = { key: Key; remove: boolean; rev: Revision; created: Revision; ver: number };
  const ops: Op[] = [
    { key: 'foo', remove: false, rev: rev(1), created: rev(1), ver: 1 },
    { key: 'foo1', remove: false, rev: rev(2), created: rev(2), ver: 1 },
    { key: 'foo2', remove: false, rev: rev(3), created: rev(3), ver: 1 },
    { key: 'foo2', remove: false, rev: rev(4), created: rev(3), ver: 2 },
    { key: 'foo', remove: false, rev: rev(5), created: rev(1), ver: 2 },
    { key: 'foo1', remove: false, rev: rev(6), created: rev(2), ver: 2 },
    { key: 'foo1', remove: true, rev: rev(7), created: rev(0), ver: 0 },
    { key: 'foo2', remove: true, rev: rev(8), created: rev(0), ver: 0 },
    { key: 'foo', remove: true, rev: rev(9), created: rev(0), ver: 0 },
    { key: 'foo', remove: false, rev: rev(10, 0), created: rev(10, 0), ver: 1 },
    { key: 'foo1', remove: false, rev: rev(10, 1), created: rev(10, 1), ver: 1 },
  ];
  const build = (): TreeIndex => {
    const ti = new TreeIndex();
    for (const op of ops) {
      if (op.remove) ti.tombstone(op.key, op.rev);
      else ti.put(op.key, op.rev);
    }
    return ti;
  };
  /** The keyIndexes as plain data: key → generations of "main.sub" plus created/ver. */
  const dump = (ti: TreeIndex): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const k of ['foo', 'foo1', 'foo2']) {
      const ki = ti.keyIndex(k);
      if (ki !== undefined) out[k] = ki.generations.map((g) => [fmt(g.created), g.ver, Array.from({ length: g.size }, (_, i) => fmt(g.rev(i)))]);
    }
    return out;
  };
  /** What a restart would rebuild from the records that compaction at `c` leaves. */
  const rebuilt = (available: RevisionSet, c: number): TreeIndex => {
    const ti = new TreeIndex();
    const restore = ti.restorer();
    for (const op of ops) {
      if (!available.has(op.rev.main, op.rev.sub) && op.rev.main <= c) continue;
      restore.add(op.key, op.rev.main, op.rev.sub, op.remove, op.created.main, op.ver);
    }
    restore.flush();
    return ti;
  };
  const wantAvailable: Record<number, string[]> = {
    1: ['1.0'],
    2: ['1.0', '2.0'],
    3: ['1.0', '2.0', '3.0'],
    4: ['1.0', '2.0', '4.0'],
    5: ['2.0', '4.0', '5.0'],
    6: ['4.0', '5.0', '6.0'],
    7: ['4.0', '5.0'],
    8: ['5.0'],
    9: [],
  };
  const wantAvailableAt = (c: number): string[] => wantAvailable[c] ?? ['10.0', '10.1'];

  it('compacts continuously; keep agrees; the result equals a rebuild from the kept records', () => {
    const ti = build();
    for (let c = 1; c < 20; c++) {
      const available = compactAll(ti, c);
      assert.deepEqual(setView(available), wantAvailableAt(c), `compact(${c})`);
      assert.deepEqual(setView(ti.keep(c)), setView(available), `keep(${c}) after compact(${c})`);
      assert.deepEqual(dump(ti), dump(rebuilt(available, c)), `index after compact(${c})`);
    }
  });

  it('compacts a fresh index once at each revision; keep does not mutate', () => {
    for (let c = 1; c < 20; c++) {
      const ti = build();
      const before = dump(ti);
      const kept = ti.keep(c);
      assert.deepEqual(dump(ti), before, `keep(${c}) must not change the index`);
      const available = compactAll(ti, c);
      assert.deepEqual(setView(kept), setView(available), `keep(${c}) = compact(${c})`);
      assert.deepEqual(setView(available), wantAvailableAt(c));
      assert.deepEqual(dump(ti), dump(rebuilt(available, c)), `index after compact(${c})`);
    }
  });

  it('removes keys left empty', () => {
    const ti = new TreeIndex();
    ti.put('a', rev(2));
    ti.put('b', rev(3));
    ti.tombstone('a', rev(4));
    ti.put('c', rev(5));
    ti.tombstone('c', rev(6));
    ti.put('c', rev(7));
    assert.equal(compactAll(ti, 3).size, 2);
    assert.equal(ti.size, 3);
    const available = compactAll(ti, 6);
    assert.deepEqual(setView(available), ['3.0']);
    assert.equal(ti.size, 2, "'a' was deleted at 4: removed");
    assert.equal(ti.keyIndex('a'), undefined);
    assert.deepEqual(ti.range('\0', '\0', 7).keys, ['b', 'c']);
    ti.tombstone('b', rev(8));
    ti.tombstone('c', rev(9));
    assert.equal(compactAll(ti, 9).size, 0);
    assert.equal(ti.size, 0);
  });
});

describe('TreeIndex.restorer', () => {
  it('creates a keyIndex from the first record and appends later ones', () => {
    const ti = new TreeIndex();
    const restore = ti.restorer();
    restore.add('foo', 5, 0, false, 2, 3);
    restore.add('foo', 7, 0, false, 2, 4);
    restore.flush();
    assert.deepEqual(ti.get('foo', 6), { modified: rev(5), created: rev(2), ver: 3 });
    assert.deepEqual(ti.get('foo', 7), { modified: rev(7), created: rev(2), ver: 4 });
    restore.add('foo', 8, 0, true, 0, 0);
    restore.add('foo', 9, 0, false, 9, 1);
    restore.flush();
    assert.deepEqual(ti.get('foo', 9), { modified: rev(9), created: rev(9), ver: 1 });
    assert.equal(ti.get('foo', 8), undefined);
  });

  it('starts a first put at its own revision, sub-revision included', () => {
    const ti = new TreeIndex();
    const restore = ti.restorer();
    restore.add('bar', 4, 2, false, 4, 1);
    restore.flush();
    assert.deepEqual(ti.get('bar', 4), { modified: { main: 4, sub: 2 }, created: { main: 4, sub: 2 }, ver: 1 });
  });

  it('skips a tombstone of a key that is not live (its put compacted away, etcd #18089)', () => {
    const ti = new TreeIndex();
    const restore = ti.restorer();
    restore.add('gone', 6, 0, true, 0, 0);
    restore.flush();
    assert.equal(ti.keyIndex('gone'), undefined);
    restore.add('gone', 7, 0, false, 7, 1);
    restore.add('gone', 8, 0, true, 0, 0);
    restore.add('gone', 9, 0, true, 0, 0);
    restore.flush();
    assert.deepEqual(ti.keyIndex('gone')?.generations.map((g) => g.size), [2, 0]);
  });

  it('finds keyIndexes it did not make in the tree', () => {
    const ti = new TreeIndex();
    ti.put('old', rev(1));
    const restore = ti.restorer();
    restore.add('old', 3, 0, false, 1, 2);
    restore.add('new', 4, 0, false, 4, 1);
    restore.flush();
    assert.deepEqual(ti.get('old', 3), { modified: rev(3), created: rev(1), ver: 2 });
    assert.deepEqual(ti.range('\0', '\0', 4).keys, ['new', 'old']);
  });

  it('builds the tree in key order from records in revision order, with keys flushed once made', () => {
    const ti = new TreeIndex();
    const restore = ti.restorer();
    const keys = Array.from({ length: 2000 }, (_, i) => `k${(i * 7919) % 2000}`);
    keys.forEach((k, i) => restore.add(k, i + 2, 0, false, i + 2, 1));
    assert.equal(ti.size, 0, 'nothing in the tree before the flush');
    restore.flush();
    assert.equal(ti.size, 2000);
    assert.deepEqual(ti.range('\0', '\0', 2001).keys, [...keys].sort());
    // Records of keys already flushed find them; new keys join an index that is no longer empty.
    restore.add('k0', 2002, 0, false, 2, 2);
    restore.add('a', 2003, 0, false, 2003, 1);
    restore.flush();
    assert.equal(ti.size, 2001);
    assert.deepEqual(ti.get('k0', 2002), { modified: rev(2002), created: rev(keys.indexOf('k0') + 2), ver: 2 });
    assert.equal(ti.range('\0', '\0', 2003).keys[0], 'a');
    ti.put('b', rev(2004));
    assert.deepEqual(ti.range('a', 'c', 2004).keys, ['a', 'b']);
  });
});

// ---------------------------------------------------------------------------------------------
// Property test: TreeIndex against a naive model, a list of every change.

interface Change {
  key: Key;
  rev: Revision;
  tombstone: boolean;
  /** create_revision and version of the record a put writes (0 for tombstones). */
  created: Revision;
  ver: number;
}

/** The naive model: answers every question by scanning the full change list. */
class Model {
  readonly changes: Change[] = [];

  state(key: Key, atRev: number): { modified: Revision; created: Revision; ver: number } | undefined {
    let found: { modified: Revision; created: Revision; ver: number } | undefined;
    for (const c of this.changes) {
      if (c.key !== key || c.rev.main > atRev) continue;
      found = c.tombstone ? undefined : { modified: c.rev, created: c.created, ver: c.ver };
    }
    return found;
  }

  keys(): Key[] {
    return [...new Set(this.changes.map((c) => c.key))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  range(key: Key, end: Key | undefined, atRev: number): { keys: Key[]; revs: Revision[] } {
    const keys: Key[] = [];
    const revs: Revision[] = [];
    for (const k of this.keys()) {
      const s = inRange(k, key, end) ? this.state(k, atRev) : undefined;
      if (s !== undefined) {
        keys.push(k);
        revs.push(s.modified);
      }
    }
    return { keys, revs };
  }

  rangeSince(key: Key, end: Key | undefined, rev: number): Revision[] {
    const out: Revision[] = [];
    for (const k of this.keys()) {
      if (!inRange(k, key, end)) continue;
      const byMain = new Map<number, Revision>();
      for (const c of this.changes) if (c.key === k && c.rev.main >= rev) byMain.set(c.rev.main, c.rev);
      out.push(...byMain.values());
    }
    return out.sort(compareRev);
  }
}

function inRange(k: Key, key: Key, end: Key | undefined): boolean {
  if (end === undefined || end === '') return k === key;
  if (end === '\0') return k >= key;
  return k >= key && k < end;
}

const KEYS = ['\0', 'a', 'a\0', 'ab', 'b', 'ba', 'c', '\x7f', '\x80', '\xff', '\xff\xff'];
const keyArb = fc.constantFrom(...KEYS);
const endArb = fc.oneof(fc.constantFrom<Key | undefined>(undefined, '', '\0'), keyArb);
/** A history: transactions of puts and deletes; a delete of a key not alive is skipped, as etcd does. */
const historyArb = fc.array(fc.array(fc.record({ key: keyArb, del: fc.boolean() }), { minLength: 1, maxLength: 4 }), {
  minLength: 1,
  maxLength: 25,
});
const queryArb = fc.record({ key: keyArb, end: endArb, at: fc.nat(30), limit: fc.integer({ min: -1, max: 4 }) });

function apply(history: { key: Key; del: boolean }[][]): { ti: TreeIndex; model: Model; lastMain: number } {
  const ti = new TreeIndex();
  const model = new Model();
  history.forEach((txn, i) => {
    const main = i + 2; // the empty store is revision 1
    let sub = 0;
    for (const op of txn) {
      const live = model.state(op.key, main);
      if (op.del && live === undefined) continue;
      const r = rev(main, sub++);
      if (op.del) {
        ti.tombstone(op.key, r);
        model.changes.push({ key: op.key, rev: r, tombstone: true, created: rev(0), ver: 0 });
      } else {
        ti.put(op.key, r);
        const created = live?.created ?? r;
        model.changes.push({ key: op.key, rev: r, tombstone: false, created, ver: (live?.ver ?? 0) + 1 });
      }
    }
  });
  return { ti, model, lastMain: history.length + 1 };
}

/** Asserts that the index answers like the model at main revision q.at. */
/**
 * `restored`: `ti` was rebuilt from backend records, which carry a key's create_revision as a
 * main revision only (the store reads no more of it), so `get`'s `created` is compared by main.
 */
function check(ti: TreeIndex, model: Model, q: { key: Key; end: Key | undefined; at: number; limit: number }, restored = false): void {
  const want = model.range(q.key, q.end, q.at);
  assert.deepEqual(ti.range(q.key, q.end, q.at), want);
  const r = ti.revisions(q.key, q.end, q.at, q.limit);
  assert.equal(r.total, want.revs.length);
  assert.deepEqual(r.revs, q.limit > 0 ? want.revs.slice(0, q.limit) : want.revs);
  assert.equal(ti.countRevisions(q.key, q.end, q.at), want.revs.length);
  const createdMain = (r: IndexGetResult | undefined): IndexGetResult | undefined => (r && restored ? { ...r, created: { main: r.created.main, sub: 0 } } : r);
  for (const k of KEYS) assert.deepEqual(createdMain(ti.get(k, q.at)), createdMain(model.state(k, q.at)), `get(${JSON.stringify(k)}, ${q.at})`);
}

describe('TreeIndex property: matches a naive model', () => {
  it('answers range, revisions, count, get and rangeSince at any revision', () => {
    fc.assert(
      fc.property(historyArb, fc.array(queryArb, { minLength: 1, maxLength: 8 }), (history, queries) => {
        const { ti, model } = apply(history);
        for (const q of queries) {
          check(ti, model, q);
          assert.deepEqual(ti.rangeSince(q.key, q.end, q.at), model.rangeSince(q.key, q.end, q.at));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('after compaction: same answers at and after the compact revision, the right records kept, empty keys gone', () => {
    fc.assert(
      fc.property(historyArb, fc.nat(30), fc.array(queryArb, { minLength: 1, maxLength: 8 }), (history, c, queries) => {
        const { ti, model, lastMain } = apply(history);
        const kept = ti.keep(c);
        const available = compactAll(ti, c);

        // The records kept: per key, the one holding its value at c (none if deleted at c).
        const want = model
          .keys()
          .map((k) => model.state(k, c)?.modified)
          .filter((r): r is Revision => r !== undefined);
        assert.deepEqual(setView(available), want.sort(compareRev).map(fmt));
        assert.deepEqual(setView(kept), setView(available));

        // The keys left: those alive at c or changed after c.
        const alive = model.keys().filter((k) => model.state(k, c) !== undefined || model.changes.some((ch) => ch.key === k && ch.rev.main > c));
        assert.equal(ti.size, alive.length);

        // A restart from the surviving records rebuilds an index that answers the same.
        const restored = new TreeIndex();
        const restore = restored.restorer();
        for (const ch of model.changes) {
          if (ch.rev.main <= c && !available.has(ch.rev.main, ch.rev.sub)) continue;
          restore.add(ch.key, ch.rev.main, ch.rev.sub, ch.tombstone, ch.created.main, ch.ver);
        }
        restore.flush();
        assert.equal(restored.size, ti.size);

        for (const q of queries) {
          const at = Math.max(c, Math.min(q.at, lastMain + 1));
          check(ti, model, { ...q, at });
          check(restored, model, { ...q, at }, true);
          assert.deepEqual(ti.rangeSince(q.key, q.end, at + 1), model.rangeSince(q.key, q.end, at + 1));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('TreeIndex.compact in slices', () => {
  /** Keys enough for several slices (`compact` asks `stop` every 256 keys). */
  const manyKeys = (n: number): Key[] => Array.from({ length: n }, (_, i) => `k${String(i).padStart(5, '0')}`);

  it('stopped after each slice, with writes between slices: the same index, kept records and answers as in one call', () => {
    const opArb = fc.record({ key: fc.nat(1199), del: fc.boolean() });
    fc.assert(
      fc.property(fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 300, maxLength: 900 }), fc.array(opArb, { maxLength: 40 }), fc.nat(900), (history, later, cAt) => {
        const keys = manyKeys(1200);
        const named = history.map((txn) => txn.map((op) => ({ key: keys[op.key]!, del: op.del })));
        const { ti, model, lastMain } = apply(named);
        const whole = apply(named).ti;
        const c = Math.min(cAt, lastMain);
        const keysBefore = ti.size;

        // Stop at every chance; between two calls, write one transaction of `later` to both
        // indexes (above c, as every write after a compaction is) and compare their answers.
        const sliced = new RevisionSet();
        const wholeKeep = new RevisionSet();
        let main = lastMain;
        let slices = 0;
        const write = (op: { key: number; del: boolean }): void => {
          const key = keys[op.key]!;
          main++;
          const live = model.state(key, main) !== undefined;
          if (op.del && !live) return;
          for (const t of [ti, whole]) {
            if (op.del) t.tombstone(key, rev(main));
            else t.put(key, rev(main));
          }
          model.changes.push({ key, rev: rev(main), tombstone: op.del, created: rev(0), ver: 0 });
        };
        assert.equal(whole.compact(c, wholeKeep), undefined);
        for (let after = ti.compact(c, sliced, undefined, () => true); after !== undefined; after = ti.compact(c, sliced, after, () => true)) {
          slices++;
          const op = later[slices - 1];
          if (op) write(op);
          for (const at of [c, main]) assert.deepEqual(ti.range('\0', '\0', at), whole.range('\0', '\0', at), `range at ${at} between slices`);
        }
        assert.ok(slices >= Math.floor(keysBefore / 256), `${slices} slices for ${keysBefore} keys`);
        assert.deepEqual(setView(sliced), setView(wholeKeep));
        assert.equal(ti.size, whole.size);
        for (const at of [c, c + 1, main]) assert.deepEqual(ti.range('\0', '\0', at), whole.range('\0', '\0', at));
        for (const k of keys) assert.deepEqual(ti.keyIndex(k)?.since(c), whole.keyIndex(k)?.since(c), k);
      }),
      // Shrinking histories this long takes minutes: report the first failure as found.
      { numRuns: 40, endOnFailure: true },
    );
  });
});

describe('TreeIndex.revisions with a known count', () => {
  it('answers as without it, given the count from any key at or before the range start', () => {
    fc.assert(
      fc.property(historyArb, keyArb, keyArb, endArb, fc.nat(30), fc.integer({ min: 1, max: 4 }), (history, a, b, end, at, limit) => {
        const { ti } = apply(history);
        const [from, key] = a <= b ? [a, b] : [b, a];
        if (end === undefined || end === '') return;
        const known = { from, total: ti.revisions(from, end, at, 0).total };
        assert.deepEqual(ti.revisions(key, end, at, limit, known), ti.revisions(key, end, at, limit), `from ${JSON.stringify(from)}`);
      }),
      { numRuns: 1000 },
    );
  });
});
