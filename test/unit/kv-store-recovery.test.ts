// Recovery of the MVCC store (etcd `store.restore`): after close and reopen on the same data
// dir, the store has the same revisions, answers every range at every readable revision as
// before, refuses compacted revisions, never moves its revision back (also when compaction
// removed the newest records), continues key versions, and resumes a scheduled compaction.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../src/mvcc/backend.js';
import { CompactedError, FutureRevError, KVStore, type TxnWrite } from '../../src/mvcc/kv-store.js';
import { bytesToRev, isTombstone } from '../../src/mvcc/revision.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kv-recovery-'));
  dirs.push(d);
  return d;
}

const open = (dir: string): KVStore => new KVStore(Backend.open(dir));

/** Runs `fn` in one write transaction and waits until it is durable; returns the head revision. */
async function write(store: KVStore, fn: (t: TxnWrite) => void): Promise<number> {
  const t = store.beginWrite();
  fn(t);
  await t.end();
  return store.headRev;
}
const put = (store: KVStore, key: string, value: string): Promise<number> =>
  write(store, (t) => t.put(key, Buffer.from(value), 0n));
const del = (store: KVStore, key: string, end?: string): Promise<number> =>
  write(store, (t) => { t.deleteRange(key, end); });

/** Every key at `rev` rendered with all its fields: what a full-range read returns. */
function snapshot(store: KVStore, rev: number): string[] {
  const rr = store.read().range('\0', '\0', { rev });
  const count = store.read().range('\0', '\0', { rev, count: true }).count;
  assert.equal(count, rr.kvs.length, `count at ${rev}`);
  return rr.kvs.map((kv) =>
    `${kv.key.toString('latin1')}=${kv.value.toString('latin1')} c${kv.createRevision} m${kv.modRevision} v${kv.version} l${kv.lease}`);
}

/** Snapshots at every revision from the compacted one (or 1) to the head. */
function history(store: KVStore): Map<number, string[]> {
  const h = new Map<number, string[]>();
  for (let rev = Math.max(store.compactRev, 1); rev <= store.headRev; rev++) h.set(rev, snapshot(store, rev));
  return h;
}

/** A mixed workload: puts, overwrites, deletes (single and range), multi-op txns. Returns the head. */
async function workload(store: KVStore, rounds: number): Promise<number> {
  for (let i = 0; i < rounds; i++) {
    await put(store, `k/${i % 7}`, `v${i}`);
    if (i % 3 === 0) await write(store, (t) => {
      t.put(`t/${i}`, Buffer.from('a'), 0n);
      t.put(`t/${i}/x`, Buffer.from('b'), 0n);
      t.deleteRange(`k/${(i + 1) % 7}`, undefined);
    });
    if (i % 5 === 4) await del(store, 't/', 't0');
    if (i % 11 === 10) await put(store, 'bin/\xff\x00', `\x00\xff${i}`);
  }
  return store.headRev;
}

describe('KVStore recovery after restart', () => {
  it('keeps revisions and range results at every revision; compacted reads fail', async () => {
    const dir = tempDir();
    let store = open(dir);
    await workload(store, 40);
    const compactAt = store.headRev - 25;
    await store.compact(compactAt).done;
    await workload(store, 10);
    const head = store.headRev;
    const before = history(store);
    assert.ok(before.size > 30, 'the workload made enough history');
    await store.close();

    store = open(dir);
    try {
      assert.equal(store.headRev, head);
      assert.equal(store.publishedRev, head);
      assert.equal(store.compactRev, compactAt);
      const afterRestart = history(store);
      assert.deepEqual([...afterRestart.keys()], [...before.keys()]);
      for (const [rev, kvs] of before) assert.deepEqual(afterRestart.get(rev), kvs, `range at revision ${rev}`);
      assert.throws(() => store.read().range('\0', '\0', { rev: compactAt - 1 }), CompactedError);
      assert.throws(() => store.read().range('k/1', undefined, { rev: 1 }), CompactedError);
      assert.throws(() => store.read().range('\0', '\0', { rev: head + 1 }), FutureRevError);
      // Compacting again at or below the compacted revision is refused.
      assert.throws(() => store.compact(compactAt), CompactedError);

      // Writing continues from the head, with versions and create revisions carried on: the
      // last version of k/0 before restart may have been restored from a compacted history.
      const k0 = store.read().range('k/0', undefined).kvs[0];
      const rev = await put(store, 'k/0', 'after');
      assert.equal(rev, head + 1);
      const k0after = store.read().range('k/0', undefined).kvs[0]!;
      if (k0) {
        assert.equal(k0after.version, k0.version + 1n);
        assert.equal(k0after.createRevision, k0.createRevision);
      } else {
        assert.equal(k0after.version, 1n);
        assert.equal(Number(k0after.createRevision), rev);
      }
      // The pre-restart history is still readable next to the new revision.
      assert.deepEqual(snapshot(store, head), before.get(head));
    } finally {
      await store.close();
    }
  });

  it('a key compacted down to one old version keeps counting versions after restart', async () => {
    const dir = tempDir();
    let store = open(dir);
    const created = await put(store, 'a', '1');
    await put(store, 'a', '2');
    const third = await put(store, 'a', '3');
    await put(store, 'other', 'x');
    await store.compact(store.headRev).done;
    // Only a's newest record (version 3) is left in the backend.
    const recs = [...store.backend.range('key')].map(({ key }) => bytesToRev(key).main);
    assert.ok(!recs.includes(created), 'superseded records are gone');
    assert.ok(recs.includes(third));
    await store.close();

    store = open(dir);
    try {
      const rev = await put(store, 'a', '4');
      const kv = store.read().range('a', undefined).kvs[0]!;
      assert.equal(kv.version, 4n);
      assert.equal(Number(kv.createRevision), created);
      assert.equal(Number(kv.modRevision), rev);
      // Delete then recreate: a new generation starting at version 1.
      await del(store, 'a');
      const again = await put(store, 'a', '5');
      const kv2 = store.read().range('a', undefined).kvs[0]!;
      assert.equal(kv2.version, 1n);
      assert.equal(Number(kv2.createRevision), again);
    } finally {
      await store.close();
    }
  });

  it('the revision never goes back when compaction removed deleted keys (tombstones kept only at the compacted revision)', async () => {
    const dir = tempDir();
    let store = open(dir);
    await put(store, 'x', '1');
    await put(store, 'y', '1');
    await write(store, (t) => { t.put('x', Buffer.from('2'), 0n); t.put('z', Buffer.from('1'), 0n); });
    // The newest revisions are deletions only.
    await del(store, 'x');
    await del(store, 'y', 'z\0');
    const head = store.headRev;
    // Compacting at the head removes every record of the deleted keys, except the tombstones
    // at exactly the compacted revision: a watcher starting there must still see those deletes
    // (etcd issue #18089).
    await store.compact(head).done;
    const left = [...store.backend.range('key')].map(({ key }) => ({ main: bytesToRev(key).main, tombstone: isTombstone(key) }));
    assert.deepEqual(left, [{ main: head, tombstone: true }, { main: head, tombstone: true }], 'only the tombstones of y and z at the head remain');
    await store.close();

    store = open(dir);
    try {
      assert.equal(store.headRev, head, 'head after restart');
      assert.equal(store.publishedRev, head);
      assert.deepEqual(snapshot(store, head), []);
      const rev = await put(store, 'x', 'new');
      assert.equal(rev, head + 1, 'the next write gets a fresh revision, never a reused one');
      const kv = store.read().range('x', undefined).kvs[0]!;
      assert.equal(kv.version, 1n);
      assert.equal(Number(kv.createRevision), head + 1);
    } finally {
      await store.close();
    }

    // A second restart without writes after the last one also keeps the head.
    store = open(dir);
    try {
      assert.equal(store.headRev, head + 1);
    } finally {
      await store.close();
    }
  });

  it('the revision never goes back when everything was deleted and compacted, over several restarts', async () => {
    const dir = tempDir();
    let store = open(dir);
    for (let i = 0; i < 5; i++) await put(store, `e/${i}`, 'v');
    await del(store, 'e/', 'e0');
    const head = store.headRev;
    await store.compact(head).done;
    const left = [...store.backend.range('key')];
    assert.equal(left.length, 5, 'only the five tombstones at the compacted revision remain (etcd #18089)');
    assert.ok(left.every(({ key }) => isTombstone(key) && bytesToRev(key).main === head));
    await store.close();
    for (let i = 0; i < 2; i++) {
      store = open(dir);
      try {
        assert.equal(store.headRev, head);
        assert.equal(store.compactRev, head);
        assert.throws(() => store.read().range('\0', '\0', { rev: head - 1 }), CompactedError);
      } finally {
        await store.close();
      }
    }
  });

  it('a scheduled but unfinished compaction resumes on open', async () => {
    const dir = tempDir();
    let store = open(dir);
    for (let i = 0; i < 30; i++) await put(store, `s/${i % 4}`, `v${i}`);
    await del(store, 's/3');
    await put(store, 's/4', 'last');
    const head = store.headRev;
    const scheduleAt = head - 5;
    const before = history(store);
    const recordsBefore = [...store.backend.range('key')].length;
    // What KVStore.compact persists first; a crash before the deletion finished leaves exactly
    // this: scheduledCompactRev set, finishedCompactRev not, every old record still there.
    store.backend.putMeta('scheduledCompactRev', scheduleAt);
    await store.backend.durable();
    await store.close();

    store = open(dir);
    try {
      assert.equal(store.compactRev, scheduleAt, 'the scheduled compaction is in force at once');
      assert.equal(store.headRev, head);
      assert.throws(() => store.read().range('\0', '\0', { rev: scheduleAt - 1 }), CompactedError);
      for (let rev = scheduleAt; rev <= head; rev++) assert.deepEqual(snapshot(store, rev), before.get(rev), `range at ${rev}`);
    } finally {
      await store.close(); // waits for the background compaction
    }

    const backend = Backend.open(dir);
    try {
      assert.equal(backend.getMeta('finishedCompactRev'), String(scheduleAt), 'the resumed compaction finished');
      const records = [...backend.range('key')].map(({ key }) => bytesToRev(key));
      assert.ok(records.length < recordsBefore, 'old records were deleted');
      // At or below the compacted revision only the newest revision of each live key remains
      // (4 keys: s/0..s/3, s/3 deleted only after scheduleAt).
      const old = records.filter((r) => r.main <= scheduleAt);
      assert.equal(old.length, 4);
    } finally {
      await backend.close();
    }

    store = open(dir);
    try {
      assert.equal(store.compactRev, scheduleAt);
      for (let rev = scheduleAt; rev <= head; rev++) assert.deepEqual(snapshot(store, rev), before.get(rev), `range at ${rev} after the resumed compaction`);
    } finally {
      await store.close();
    }
  });
});
