// The watchable store (etcd `watchable_store.go`) on a real KVStore: synced, unsynced and
// victim watchers, compaction, and etcd's watch guarantees as a property test over random
// workloads (ordered, unique, reliable, atomic, resumable, prev_kv, filters).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore } from '../../src/mvcc/kv-store.js';
import { prefixEnd } from '../../src/mvcc/key.js';
import { WatchResponse } from '../../src/proto/gen/rpc.gen.js';
import { WatchableStore } from '../../src/watch/watchable-store.js';
import type { Watcher, WatchEvent, WatchId, WatcherOptions, WatcherSink } from '../../src/watch/watcher.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function open(): { kv: KVStore; ws: WatchableStore } {
  const d = mkdtempSync(join(tmpdir(), 'watch-store-'));
  dirs.push(d);
  const kv = new KVStore(Backend.open(d));
  return { kv, ws: new WatchableStore(kv) };
}

/** An event as a test sees it. */
interface Ev {
  rev: number;
  type: 'PUT' | 'DELETE';
  key: string;
  value: string;
  prev?: string;
}

/** A sink that decodes what it receives; `capacity` bounded (a slow client) or not. */
class TestSink implements WatcherSink {
  /** Every events batch received, per watcher id, in order. */
  readonly batches = new Map<WatchId, Ev[][]>();
  /** compact_revision per canceled watcher id. */
  readonly compacted = new Map<WatchId, number>();
  /** Progress notifications: [watcher id, revision]. */
  readonly progress: [WatchId, number][] = [];
  /** Batches queued and not yet "read" by the client (bounded by capacity). */
  queued = 0;
  constructor(
    private readonly ws: WatchableStore,
    readonly capacity = Infinity,
  ) {}
  sendEvents(w: Watcher, events: readonly WatchEvent[]): boolean {
    if (this.queued >= this.capacity) return false;
    this.queued++;
    const bytes = Buffer.concat(events.map((e) => e.entry(w.prevKv, this.ws.prevKv)));
    const evs = WatchResponse.decode(bytes).events.map((e) => ({
      rev: Number(e.kv!.modRevision),
      type: e.type === 1 ? ('DELETE' as const) : ('PUT' as const),
      key: e.kv!.key.toString('latin1'),
      value: e.kv!.value.toString(),
      ...(e.prevKv ? { prev: e.prevKv.value.toString() } : {}),
    }));
    const list = this.batches.get(w.id) ?? [];
    list.push(evs);
    this.batches.set(w.id, list);
    return true;
  }
  sendCompacted(w: Watcher, compactRev: number): boolean {
    this.compacted.set(w.id, compactRev);
    return true;
  }
  sendProgress(w: Watcher, rev: number): boolean {
    this.progress.push([w.id, rev]);
    return true;
  }
  hasRoom(): boolean {
    return this.queued < this.capacity;
  }
  watcherSettled(): void {}
  /** The client reads everything queued. */
  drain(): void {
    this.queued = 0;
  }
  events(id: WatchId): Ev[] {
    return (this.batches.get(id) ?? []).flat();
  }
}

/** Applies one write op; returns the events it produced (the oracle). */
type Op = { t: 'put'; key: string; value: string } | { t: 'del'; key: string; end?: string } | { t: 'txn'; puts: [string, string][] };

/** The model: current values per key, and the full event history. */
class Model {
  readonly values = new Map<string, string>();
  readonly history: Ev[] = [];
  /** value of each key at the end of each revision */
  readonly snapshots = new Map<number, Map<string, string>>([[1, new Map()]]);
  rev = 1;
  apply(op: Op): void {
    const evs: Ev[] = [];
    const rev = this.rev + 1;
    if (op.t === 'put' || op.t === 'txn') {
      for (const [key, value] of op.t === 'put' ? ([[op.key, op.value]] as [string, string][]) : op.puts) {
        const prev = this.values.get(key);
        evs.push({ rev, type: 'PUT', key, value, ...(prev !== undefined ? { prev } : {}) });
        this.values.set(key, value);
      }
    } else {
      const keys = [...this.values.keys()].filter((k) => (op.end === undefined ? k === op.key : k >= op.key && k < op.end)).sort();
      for (const key of keys) {
        evs.push({ rev, type: 'DELETE', key, value: '', prev: this.values.get(key)! });
        this.values.delete(key);
      }
    }
    if (evs.length === 0) return;
    this.rev = rev;
    this.history.push(...evs);
    this.snapshots.set(rev, new Map(this.values));
  }
}

async function write(kv: KVStore, op: Op): Promise<void> {
  const txn = kv.beginWrite();
  if (op.t === 'put') txn.put(op.key, Buffer.from(op.value), 0n);
  else if (op.t === 'txn') for (const [k, v] of op.puts) txn.put(k, Buffer.from(v), 0n);
  else txn.deleteRange(op.key, op.end);
  await txn.end();
}

const matches = (o: Pick<WatcherOptions, 'key' | 'end'>, key: string): boolean =>
  o.end === undefined ? key === o.key : key >= o.key && (o.end === '' || key < o.end);

/** Runs sync passes and drains sinks until every watcher is synced (bounded). */
async function settle(ws: WatchableStore, sinks: TestSink[]): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    for (const s of sinks) s.drain();
    ws.syncVictims();
    ws.syncWatchers();
    if (ws.unsynced.size === 0 && ws.victims.size === 0) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('watchers did not catch up');
}

describe('WatchableStore', () => {
  it('notifies synced watchers once per revision, with filters and prev_kv', async () => {
    const { kv, ws } = open();
    const sink = new TestSink(ws);
    const all = ws.watch({ id: 1, key: 'a', end: prefixEnd('a'), startRev: 0, prevKv: true }, sink);
    const noPut = ws.watch({ id: 2, key: 'a1', end: undefined, startRev: 0, noPut: true }, sink);
    await write(kv, { t: 'put', key: 'a1', value: 'x' });
    await write(kv, { t: 'txn', puts: [['a1', 'y'], ['a2', 'z'], ['b', 'q']] });
    await write(kv, { t: 'del', key: 'a', end: 'b' });
    assert.deepEqual(sink.batches.get(all.id), [
      [{ rev: 2, type: 'PUT', key: 'a1', value: 'x' }],
      [
        { rev: 3, type: 'PUT', key: 'a1', value: 'y', prev: 'x' },
        { rev: 3, type: 'PUT', key: 'a2', value: 'z' },
      ],
      [
        { rev: 4, type: 'DELETE', key: 'a1', value: '', prev: 'y' },
        { rev: 4, type: 'DELETE', key: 'a2', value: '', prev: 'z' },
      ],
    ]);
    assert.deepEqual(sink.batches.get(noPut.id), [[{ rev: 4, type: 'DELETE', key: 'a1', value: '' }]]);
    ws.close();
    await kv.close();
  });

  it('replays history to an unsynced watcher in batches of at most 1000 revisions, then syncs it', async () => {
    const { kv, ws } = open();
    for (let i = 0; i < 2500; i++) await write(kv, { t: 'put', key: `k${i % 7}`, value: String(i) });
    const sink = new TestSink(ws);
    const w = ws.watch({ id: 0, key: 'k', end: prefixEnd('k'), startRev: 2 }, sink);
    ws.close(); // drive the passes by hand
    assert.equal(w.state, 'unsynced');
    ws.syncWatchers();
    assert.equal(sink.batches.get(0)!.at(-1)!.length, 1000);
    assert.equal(w.state, 'unsynced');
    ws.syncWatchers();
    ws.syncWatchers();
    assert.equal(w.state, 'synced');
    const revs = sink.events(0).map((e) => e.rev);
    assert.deepEqual(revs, Array.from({ length: 2500 }, (_, i) => i + 2));
    await kv.close();
  });

  it('replays one scan to watchers of one range from one revision, each on its own terms', async () => {
    const { kv, ws } = open();
    for (let i = 0; i < 6; i++) await write(kv, { t: 'put', key: `k${i % 2}`, value: String(i) }); // revisions 2–7
    const free = new TestSink(ws);
    const full = new TestSink(ws, 1);
    full.queued = 1; // its stream has no room: its watcher becomes a victim
    ws.close(); // drive the passes by hand
    const from3: WatcherOptions = { id: 0, key: 'k', end: prefixEnd('k'), startRev: 3 };
    ws.watch(from3, free);
    ws.watch({ ...from3, id: 1, prevKv: true }, free);
    ws.watch({ ...from3, id: 2 }, full);
    ws.watch({ ...from3, id: 3, noPut: true }, free);
    ws.watch({ ...from3, id: 4, startRev: 5 }, free);
    ws.syncWatchers();
    const revsValues = (evs: Ev[]) => evs.map((e) => [e.rev, e.value]);
    assert.deepEqual(revsValues(free.events(0)), [[3, '1'], [4, '2'], [5, '3'], [6, '4'], [7, '5']]);
    assert.deepEqual(revsValues(free.events(1)), revsValues(free.events(0)));
    assert.deepEqual(free.events(1).map((e) => e.prev), [undefined, '0', '1', '2', '3'], 'prev_kv for the watcher that asked');
    assert.deepEqual(free.events(0).map((e) => e.prev), [undefined, undefined, undefined, undefined, undefined]);
    assert.deepEqual(free.events(3), [], 'its filter drops every put');
    assert.deepEqual(revsValues(free.events(4)), [[5, '3'], [6, '4'], [7, '5']]);
    assert.deepEqual(full.events(2), []);
    assert.deepEqual([...ws.victims].map((w) => w.id), [2]);
    assert.equal(ws.synced.size, 4);
    full.drain();
    ws.syncVictims();
    ws.syncWatchers();
    assert.deepEqual(revsValues(full.events(2)), revsValues(free.events(0)), 'the victim gets the same events once, later');
    await kv.close();
  });

  it('makes a watcher whose stream is full a victim and replays what it missed, once', async () => {
    const { kv, ws } = open();
    const sink = new TestSink(ws, 1);
    ws.close();
    ws.watch({ id: 0, key: 'x', end: undefined, startRev: 0 }, sink);
    await write(kv, { t: 'put', key: 'x', value: '1' });
    await write(kv, { t: 'put', key: 'x', value: '2' }); // the buffer is full: victim
    await write(kv, { t: 'put', key: 'x', value: '3' });
    assert.equal(ws.victims.size, 1);
    sink.drain();
    ws.syncVictims();
    ws.syncWatchers();
    assert.deepEqual(sink.events(0).map((e) => e.value), ['1', '2', '3']);
    assert.equal(ws.synced.size, 1);
    await kv.close();
  });

  it('cancels a watcher whose next revision was compacted, and keeps the deletes at the compacted revision (etcd #18089)', async () => {
    const { kv, ws } = open();
    ws.close();
    await write(kv, { t: 'put', key: 'a', value: '1' }); // 2
    await write(kv, { t: 'put', key: 'b', value: '1' }); // 3
    await write(kv, { t: 'del', key: 'a' }); // 4
    await write(kv, { t: 'put', key: 'b', value: '2' }); // 5
    await kv.compact(4).done;
    const sink = new TestSink(ws);
    const compacted = ws.watch({ id: 0, key: 'a', end: 'c', startRev: 3 }, sink);
    ws.watch({ id: 1, key: 'a', end: 'c', startRev: 4 }, sink);
    ws.syncWatchers();
    assert.equal(sink.compacted.get(0), 4);
    assert.equal(sink.compacted.has(1), false);
    assert.deepEqual(sink.events(1).map((e) => [e.rev, e.type, e.key]), [[4, 'DELETE', 'a'], [5, 'PUT', 'b']]);
    // etcd's watcher_total counts the canceled watcher until its stream lets it go.
    assert.equal(ws.stats().watchers, 2);
    ws.cancel(compacted);
    assert.equal(ws.stats().watchers, 1);
    await kv.close();
  });

  it('sends no prev_kv whose revision was compacted, even one an earlier watcher was sent (etcd reads it as it sends)', async () => {
    const { kv, ws } = open();
    ws.close();
    await write(kv, { t: 'put', key: 'k', value: 'v1' }); // 2
    await write(kv, { t: 'put', key: 'k', value: 'v2' }); // 3
    const sink = new TestSink(ws);
    ws.watch({ id: 0, key: 'k', end: undefined, startRev: 3, prevKv: true }, sink);
    ws.syncWatchers();
    await kv.compact(3).done;
    ws.watch({ id: 1, key: 'k', end: undefined, startRev: 3, prevKv: true }, sink);
    ws.syncWatchers();
    assert.deepEqual(sink.events(0), [{ rev: 3, type: 'PUT', key: 'k', value: 'v2', prev: 'v1' }]);
    assert.deepEqual(sink.events(1), [{ rev: 3, type: 'PUT', key: 'k', value: 'v2' }]);
    await kv.close();
  });

  it('progress goes to synced watchers only, at the current revision', async () => {
    const { kv, ws } = open();
    ws.close();
    await write(kv, { t: 'put', key: 'a', value: '1' });
    const sink = new TestSink(ws);
    const synced = ws.watch({ id: 0, key: 'a', end: undefined, startRev: 0 }, sink);
    const behind = ws.watch({ id: 1, key: 'a', end: undefined, startRev: 2 }, sink);
    assert.equal(ws.progress(synced), true);
    assert.equal(ws.progress(behind), false);
    assert.deepEqual(sink.progress, [[0, 2]]);
    await kv.close();
  });

  it('guarantees ordered, unique, reliable, atomic and resumable delivery on random workloads', async () => {
    const key = fc.constantFrom('a', 'ab', 'b', 'ba', 'c');
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ t: fc.constant('put' as const), key, value: fc.string({ maxLength: 3 }) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), key, end: fc.option(fc.constantFrom('b', 'c', 'd'), { nil: undefined }) }) },
      { weight: 1, arbitrary: fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 3 })), { selector: (p) => p[0], minLength: 1, maxLength: 3 }).map((puts) => ({ t: 'txn' as const, puts })) },
    );
    const spec = fc.record({
      key,
      end: fc.constantFrom<string | undefined>(undefined, '', 'b', 'c', 'prefix'),
      at: fc.nat({ max: 40 }),
      slow: fc.boolean(),
      prevKv: fc.boolean(),
      noPut: fc.boolean(),
      noDelete: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.array(spec, { maxLength: 8 }), fc.option(fc.nat({ max: 40 }), { nil: undefined }), async (ops, specs, compactAt) => {
        const { kv, ws } = open();
        const model = new Model();
        const fast = new TestSink(ws);
        const slowSinks: TestSink[] = [];
        const watchers: { w: Watcher; o: WatcherOptions; sink: TestSink; startRev: number }[] = [];
        let compactRev = 0;
        let id = 0;
        try {
          for (let i = 0; i <= ops.length; i++) {
            for (const s of specs.filter((sp) => sp.at === i)) {
              let end = s.end === 'prefix' ? prefixEnd(s.key) : s.end;
              if (end !== undefined && end !== '' && end <= s.key) end = undefined;
              const startRev = 1 + ((s.at * 7) % (model.rev + 1)); // from the past, now or the next revision
              const o: WatcherOptions = { id: id++, key: s.key, end, startRev, prevKv: s.prevKv, noPut: s.noPut, noDelete: s.noDelete && !s.noPut };
              const sink = s.slow ? new TestSink(ws, 1) : fast;
              if (s.slow) slowSinks.push(sink);
              watchers.push({ w: ws.watch(o, sink), o, sink, startRev });
            }
            if (compactAt === i && model.rev > 2) {
              compactRev = model.rev - 1;
              await kv.compact(compactRev).done;
            }
            if (i === ops.length) break;
            model.apply(ops[i]!);
            await write(kv, ops[i]!);
            if (i % 3 === 0) for (const s of slowSinks) s.drain(); // slow clients read now and then
          }
          await settle(ws, [fast, ...slowSinks]);
          for (const { w, o, sink, startRev } of watchers) {
            const want = model.history.filter(
              (e) => e.rev >= startRev && matches(o, e.key) && !(o.noPut && e.type === 'PUT') && !(o.noDelete && e.type === 'DELETE'),
            );
            const got = sink.events(w.id);
            // prev_kv only for watchers that asked; etcd omits it for a key's creation.
            const norm = (e: Ev): Ev => {
              const { prev, ...rest } = e;
              return o.prevKv && prev !== undefined ? { ...rest, prev } : rest;
            };
            const canceledAt = sink.compacted.get(w.id);
            if (canceledAt !== undefined) {
              // Canceled by compaction: what arrived is a prefix of the truth, nothing after.
              assert.equal(canceledAt, compactRev);
              assert.ok(startRev < compactRev);
              assert.deepEqual(got, want.slice(0, got.length).map(norm));
            } else {
              // ordered + unique + reliable (and prev_kv / filters): exactly the persisted events.
              // Events whose previous value was compacted carry no prev_kv, as in etcd.
              const compactedPrev = (e: Ev) => e.rev - 1 < compactRev;
              assert.deepEqual(
                got.map((e) => (compactedPrev(e) ? { ...e, prev: undefined } : e)).map(norm),
                want.map((e) => (compactedPrev(e) ? { ...e, prev: undefined } : e)).map(norm),
              );
              // atomic: every batch holds whole revisions.
              for (const batch of sink.batches.get(w.id) ?? []) {
                for (const rev of new Set(batch.map((e) => e.rev))) {
                  assert.equal(batch.filter((e) => e.rev === rev).length, want.filter((e) => e.rev === rev).length);
                }
              }
              // resumable: a new watcher from the last delivered revision + 1 sees exactly the rest.
              const last = got.at(-1)?.rev ?? startRev - 1;
              if (last + 1 >= compactRev) {
                const resume = new TestSink(ws);
                const w2 = ws.watch({ ...o, id: 1_000_000 + Number(w.id), startRev: last + 1 }, resume);
                await settle(ws, [resume]);
                assert.deepEqual(resume.events(w2.id), []);
                ws.cancel(w2);
              }
            }
          }
        } finally {
          ws.close();
          await kv.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
