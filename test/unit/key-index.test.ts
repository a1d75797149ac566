// Tests of KeyIndex (etcd keyIndex): generations, tombstones, get, since, compact and keep.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Generation, KeyIndex, RevisionNotFoundError, RevisionSet } from '../../src/mvcc/key-index.js';
import type { Revision } from '../../src/mvcc/revision.js';

/** "main.sub" for a revision: compact, readable expectations. */
const fmt = (r: Revision): string => `${r.main}.${r.sub}`;

interface GenView {
  created: string;
  ver: number;
  revs: string[];
}
const EMPTY_GEN: GenView = { created: '0.0', ver: 0, revs: [] };

/** A generation's revisions as "main.sub" strings, oldest first. */
const revsView = (g: Generation): string[] => Array.from({ length: g.size }, (_, i) => fmt(g.rev(i)));

/** The keyIndex's state as plain data, for deepEqual. */
function view(ki: KeyIndex): { modified: string; gens: GenView[] } {
  return {
    modified: fmt(ki.modified),
    gens: ki.generations.map((g) => ({ created: fmt(g.created), ver: g.ver, revs: revsView(g) })),
  };
}

/** The set's revisions as sorted "main.sub" strings. */
function setView(s: RevisionSet): string[] {
  return [...s].sort((a, b) => a.main - b.main || a.sub - b.sub).map(fmt);
}

/**
 * etcd's test keyIndex on "foo":
 *   {2.0, 4.0, 6.0(t)} {8.0, 10.0, 12.0(t)} {14.0, 14.1, 16.0(t)} {}
 */
function newTestKeyIndex(): KeyIndex {
  const ki = new KeyIndex('foo');
  ki.put(2, 0);
  ki.put(4, 0);
  ki.tombstone(6, 0);
  ki.put(8, 0);
  ki.put(10, 0);
  ki.tombstone(12, 0);
  ki.put(14, 0);
  ki.put(14, 1);
  ki.tombstone(16, 0);
  return ki;
}

/** The doc comment's example: put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0). */
function newExampleKeyIndex(): KeyIndex {
  const ki = new KeyIndex('foo');
  ki.put(1, 0);
  ki.put(2, 0);
  ki.tombstone(3, 0);
  ki.put(4, 0);
  ki.tombstone(5, 0);
  return ki;
}

describe('KeyIndex.put', () => {
  it('starts a generation at the first put and appends later ones', () => {
    const ki = new KeyIndex('foo');
    ki.put(5, 0);
    assert.deepEqual(view(ki), { modified: '5.0', gens: [{ created: '5.0', ver: 1, revs: ['5.0'] }] });
    ki.put(7, 0);
    assert.deepEqual(view(ki), { modified: '7.0', gens: [{ created: '5.0', ver: 2, revs: ['5.0', '7.0'] }] });
  });

  it('accepts a later sub revision of the same main revision', () => {
    const ki = new KeyIndex('foo');
    ki.put(5, 0);
    ki.put(5, 1);
    assert.deepEqual(view(ki).gens[0]!.revs, ['5.0', '5.1']);
  });

  it('throws on a revision not after the last change, leaving the keyIndex unchanged', () => {
    const ki = new KeyIndex('foo');
    ki.put(5, 1);
    const before = view(ki);
    assert.throws(() => ki.put(5, 1), /not after its last change 5\.1/);
    assert.throws(() => ki.put(5, 0), /not after/);
    assert.throws(() => ki.put(4, 9), /not after/);
    assert.deepEqual(view(ki), before);
  });
});

describe('KeyIndex.restore', () => {
  it('builds one generation holding only the modified revision', () => {
    const ki = new KeyIndex('foo');
    ki.restore({ main: 5, sub: 0 }, { main: 7, sub: 0 }, 2);
    assert.deepEqual(view(ki), { modified: '7.0', gens: [{ created: '5.0', ver: 2, revs: ['7.0'] }] });
    assert.deepEqual(ki.get(7), { modified: { main: 7, sub: 0 }, created: { main: 5, sub: 0 }, ver: 2 });
    ki.put(9, 0);
    assert.equal(ki.get(9)?.ver, 3);
  });

  it('throws on a keyIndex that already holds revisions', () => {
    const ki = new KeyIndex('foo');
    ki.put(1, 0);
    assert.throws(() => ki.restore({ main: 5, sub: 0 }, { main: 7, sub: 0 }, 2), /holds revisions/);
  });
});

describe('KeyIndex.tombstone', () => {
  it('closes the generation and opens an empty one; throws RevisionNotFoundError when deleted', () => {
    const ki = new KeyIndex('foo');
    ki.put(5, 0);
    ki.tombstone(7, 0);
    assert.deepEqual(view(ki), {
      modified: '7.0',
      gens: [{ created: '5.0', ver: 2, revs: ['5.0', '7.0'] }, EMPTY_GEN],
    });

    ki.put(8, 0);
    ki.put(9, 0);
    ki.tombstone(15, 0);
    assert.deepEqual(view(ki), {
      modified: '15.0',
      gens: [
        { created: '5.0', ver: 2, revs: ['5.0', '7.0'] },
        { created: '8.0', ver: 3, revs: ['8.0', '9.0', '15.0'] },
        EMPTY_GEN,
      ],
    });

    assert.throws(
      () => ki.tombstone(16, 0),
      (err: unknown) =>
        err instanceof RevisionNotFoundError &&
        err.name === 'RevisionNotFoundError' &&
        err.message === 'mvcc: revision not found' &&
        err.key === 'foo',
    );
    assert.equal(ki.modified.main, 15, 'a refused tombstone changes nothing');
  });

  it('throws RevisionNotFoundError on a key never written', () => {
    assert.throws(() => new KeyIndex('foo').tombstone(1, 0), RevisionNotFoundError);
  });
});

describe('KeyIndex.get', () => {
  // etcd TestKeyIndexGet: the test keyIndex compacted at 4:
  //   {4.0, 6.0(t)} {8.0, 10.0, 12.0(t)} {14.0, 14.1, 16.0(t)} {}
  const ki = newTestKeyIndex();
  ki.compact(4, new RevisionSet());
  const cases: [atRev: number, want: [modified: string, created: string, ver: number] | undefined][] = [
    [17, undefined],
    [16, undefined],
    [15, ['14.1', '14.0', 2]],
    [14, ['14.1', '14.0', 2]],
    [13, undefined],
    [12, undefined],
    [11, ['10.0', '8.0', 2]],
    [10, ['10.0', '8.0', 2]],
    [9, ['8.0', '8.0', 1]],
    [8, ['8.0', '8.0', 1]],
    [7, undefined],
    [6, undefined],
    [5, ['4.0', '2.0', 2]],
    [4, ['4.0', '2.0', 2]],
    [3, undefined], // 2.0 was compacted away
    [2, undefined],
    [1, undefined],
    [0, undefined],
  ];
  for (const [atRev, want] of cases) {
    it(`at ${atRev} → ${want === undefined ? 'not found' : want.join(' ')}`, () => {
      const got = ki.get(atRev);
      assert.deepEqual(got === undefined ? undefined : [fmt(got.modified), fmt(got.created), got.ver], want);
      const mod = ki.modifiedAt(atRev);
      assert.equal(mod === undefined ? undefined : fmt(mod), want?.[0]);
    });
  }

  it('finds the doc example at every revision', () => {
    const ex = newExampleKeyIndex();
    const got = [0, 1, 2, 3, 4, 5, 6].map((r) => {
      const g = ex.get(r);
      return g === undefined ? '-' : `${fmt(g.modified)}/${fmt(g.created)}/v${g.ver}`;
    });
    assert.deepEqual(got, ['-', '1.0/1.0/v1', '2.0/1.0/v2', '-', '4.0/4.0/v1', '-', '-']);
  });

  it('sees a key deleted and recreated within one transaction as recreated', () => {
    const ki2 = new KeyIndex('foo');
    ki2.put(5, 0);
    ki2.tombstone(5, 1);
    ki2.put(5, 2);
    assert.deepEqual(ki2.get(5), { modified: { main: 5, sub: 2 }, created: { main: 5, sub: 2 }, ver: 1 });
    assert.equal(ki2.get(4), undefined);
  });

  it('finds nothing in a never-written keyIndex', () => {
    assert.equal(new KeyIndex('foo').get(10), undefined);
  });
});

describe('KeyIndex.since', () => {
  // etcd TestKeyIndexSince: the test keyIndex compacted at 4.
  const ki = newTestKeyIndex();
  ki.compact(4, new RevisionSet());
  // 14.0 is hidden by 14.1: one revision per main revision, the last.
  const all = ['4.0', '6.0', '8.0', '10.0', '12.0', '14.1', '16.0'];
  const cases: [rev: number, want: string[]][] = [
    [17, []],
    [16, all.slice(6)],
    [15, all.slice(6)],
    [14, all.slice(5)],
    [13, all.slice(5)],
    [12, all.slice(4)],
    [11, all.slice(4)],
    [10, all.slice(3)],
    [9, all.slice(3)],
    [8, all.slice(2)],
    [7, all.slice(2)],
    [6, all.slice(1)],
    [5, all.slice(1)],
    [4, all],
    [3, all],
    [2, all],
    [1, all],
    [0, all],
  ];
  for (const [rev, want] of cases) {
    it(`since ${rev}`, () => {
      assert.deepEqual(ki.since(rev).map(fmt), want);
    });
  }

  it('collapses one main revision across generations to its last change', () => {
    const ki2 = new KeyIndex('foo');
    ki2.put(3, 0);
    ki2.put(5, 0);
    ki2.tombstone(5, 1);
    ki2.put(5, 2);
    ki2.put(6, 0);
    assert.deepEqual(ki2.since(4).map(fmt), ['5.2', '6.0']);
    assert.deepEqual(ki2.since(0).map(fmt), ['3.0', '5.2', '6.0']);
  });
});

describe('KeyIndex.compact and keep', () => {
  const G1 = { created: '2.0', ver: 3, revs: ['2.0', '4.0', '6.0'] };
  const G1at4 = { created: '2.0', ver: 3, revs: ['4.0', '6.0'] };
  const G2 = { created: '8.0', ver: 3, revs: ['8.0', '10.0', '12.0'] };
  const G2at10 = { created: '8.0', ver: 3, revs: ['10.0', '12.0'] };
  const G3 = { created: '14.0', ver: 3, revs: ['14.0', '14.1', '16.0'] };
  const G3at14 = { created: '14.0', ver: 3, revs: ['14.1', '16.0'] };
  // etcd TestKeyIndexCompactAndKeep: compact revision → generations after it, kept revisions.
  const cases: [atRev: number, gens: GenView[], available: string[]][] = [
    [1, [G1, G2, G3, EMPTY_GEN], []],
    [2, [G1, G2, G3, EMPTY_GEN], ['2.0']],
    [3, [G1, G2, G3, EMPTY_GEN], ['2.0']],
    [4, [G1at4, G2, G3, EMPTY_GEN], ['4.0']],
    [5, [G1at4, G2, G3, EMPTY_GEN], ['4.0']],
    [6, [G2, G3, EMPTY_GEN], []],
    [7, [G2, G3, EMPTY_GEN], []],
    [8, [G2, G3, EMPTY_GEN], ['8.0']],
    [9, [G2, G3, EMPTY_GEN], ['8.0']],
    [10, [G2at10, G3, EMPTY_GEN], ['10.0']],
    [11, [G2at10, G3, EMPTY_GEN], ['10.0']],
    [12, [G3, EMPTY_GEN], []],
    [13, [G3, EMPTY_GEN], []],
    [14, [G3at14, EMPTY_GEN], ['14.1']],
    [15, [G3at14, EMPTY_GEN], ['14.1']],
    [16, [EMPTY_GEN], []],
  ];

  /** keep must report what compact keeps and change nothing; compact must then reach `gens`. */
  function step(ki: KeyIndex, atRev: number, gens: GenView[], available: string[]): void {
    const before = view(ki);
    const kept = new RevisionSet();
    ki.keep(atRev, kept);
    assert.deepEqual(view(ki), before, `keep(${atRev}) must not change the keyIndex`);
    assert.deepEqual(setView(kept), available, `keep(${atRev})`);
    const compacted = new RevisionSet();
    ki.compact(atRev, compacted);
    assert.deepEqual(view(ki), { modified: '16.0', gens }, `compact(${atRev})`);
    assert.deepEqual(setView(compacted), available, `compact(${atRev}) available`);
    assert.equal(ki.isEmpty(), gens.length === 1 && gens[0]!.revs.length === 0);
  }

  it('compacts continuously at every revision', () => {
    const ki = newTestKeyIndex();
    for (const [atRev, gens, available] of cases) step(ki, atRev, gens, available);
  });

  it('compacts in jumps', () => {
    const ki = newTestKeyIndex();
    cases.forEach(([atRev, gens, available], i) => {
      if ((i % 2 === 0 && i < 6) || (i % 2 === 1 && i > 6)) step(ki, atRev, gens, available);
    });
  });

  it('compacts a fresh keyIndex once at each revision', () => {
    for (const [atRev, gens, available] of cases) step(newTestKeyIndex(), atRev, gens, available);
  });

  it('keeps the last revision when compacting after it (etcd TestKeyIndexCompactOnFurtherRev)', () => {
    const ki = new KeyIndex('foo');
    ki.put(1, 0);
    ki.put(2, 0);
    const available = new RevisionSet();
    ki.compact(3, available);
    assert.deepEqual(view(ki), { modified: '2.0', gens: [{ created: '1.0', ver: 2, revs: ['2.0'] }] });
    assert.deepEqual(setView(available), ['2.0']);
    assert.equal(ki.isEmpty(), false);
  });

  it('walks the doc comment example', () => {
    const A = { created: '1.0', ver: 3, revs: ['1.0', '2.0', '3.0'] };
    const Aat2 = { created: '1.0', ver: 3, revs: ['2.0', '3.0'] };
    const B = { created: '4.0', ver: 2, revs: ['4.0', '5.0'] };
    const expected: [number, GenView[], string[]][] = [
      [1, [A, B, EMPTY_GEN], ['1.0']],
      [2, [Aat2, B, EMPTY_GEN], ['2.0']],
      [3, [B, EMPTY_GEN], []],
      [4, [B, EMPTY_GEN], ['4.0']],
      [5, [EMPTY_GEN], []],
      [6, [EMPTY_GEN], []],
    ];
    for (const [n, gens, available] of expected) {
      const ki = newExampleKeyIndex();
      const set = new RevisionSet();
      ki.compact(n, set);
      assert.deepEqual(view(ki).gens, gens, `compact(${n})`);
      assert.deepEqual(setView(set), available, `compact(${n}) available`);
      assert.equal(ki.isEmpty(), n >= 5, `compact(${n}) isEmpty`);
    }
  });

  it('keeps reads at and after the compact revision unchanged', () => {
    for (let c = 0; c <= 17; c++) {
      const ref = newTestKeyIndex();
      const ki = newTestKeyIndex();
      ki.compact(c, new RevisionSet());
      for (let r = c; r <= 17; r++) {
        assert.deepEqual(ki.get(r), ref.get(r), `get(${r}) after compact(${c})`);
        assert.deepEqual(ki.since(r + 1), ref.since(r + 1), `since(${r + 1}) after compact(${c})`);
      }
    }
  });
});

describe('KeyIndex with a long history', () => {
  it('keeps every revision across appends that copy the array and appends that grow it in place', () => {
    const ki = new KeyIndex('foo');
    for (let r = 1; r <= 20; r++) ki.put(r, r % 3);
    const want = Array.from({ length: 20 }, (_, i) => `${i + 1}.${(i + 1) % 3}`);
    assert.deepEqual(view(ki).gens, [{ created: '1.1', ver: 20, revs: want }]);
    for (let r = 1; r <= 20; r++) {
      assert.deepEqual(ki.get(r), { modified: { main: r, sub: r % 3 }, created: { main: 1, sub: 1 }, ver: r });
    }
    const available = new RevisionSet();
    ki.compact(12, available);
    assert.deepEqual(setView(available), ['12.0']);
    assert.deepEqual(view(ki).gens, [{ created: '1.1', ver: 20, revs: want.slice(11) }]);
    ki.put(21, 0);
    assert.deepEqual(ki.since(19).map(fmt), ['19.1', '20.2', '21.0']);
    assert.equal(ki.get(11), undefined);
    assert.deepEqual(ki.get(21), { modified: { main: 21, sub: 0 }, created: { main: 1, sub: 1 }, ver: 21 });
  });
});

describe('KeyIndex.isEmpty', () => {
  it('is true for a never-written keyIndex and one compacted after its deletion only', () => {
    assert.equal(new KeyIndex('foo').isEmpty(), true);
    const ki = newTestKeyIndex();
    assert.equal(ki.isEmpty(), false, 'history not compacted');
    ki.compact(15, new RevisionSet());
    assert.equal(ki.isEmpty(), false, 'still has 14.1 and 16.0');
    ki.compact(16, new RevisionSet());
    assert.equal(ki.isEmpty(), true);
  });
});

describe('RevisionSet', () => {
  it('holds revisions by (main, sub), several subs per main, without duplicates', () => {
    const s = new RevisionSet();
    s.add(7, 0);
    s.add(7, 0);
    assert.equal(s.size, 1);
    s.add(7, 3);
    s.add(7, 3);
    s.add(7, 1);
    s.add(2 ** 52, 2 ** 52); // both halves may be large: no packing into one number
    assert.equal(s.size, 4);
    assert.equal(s.has(7, 0), true);
    assert.equal(s.has(7, 1), true);
    assert.equal(s.has(7, 2), false);
    assert.equal(s.has(8, 0), false);
    assert.equal(s.has(2 ** 52, 2 ** 52), true);
    assert.equal(s.has(2 ** 52, 2 ** 52 + 2), false);
    assert.deepEqual(setView(s), ['7.0', '7.1', '7.3', `${2 ** 52}.${2 ** 52}`]);
  });
});
