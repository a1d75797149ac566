import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore } from '../../src/mvcc/kv-store.js';

async function put(store: KVStore, key: string, value: string): Promise<void> {
  const t = store.beginWrite();
  t.put(key, Buffer.from(value), 0n);
  await t.end();
}

test('physical compaction deletes superseded records and counts them (etcd db_compaction_keys_total)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-compact-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new KVStore(Backend.open(dir));
  try {
    for (const v of ['1', '2', '3']) await put(store, 'a', v);
    await put(store, 'b', '1');
    assert.equal([...store.backend.range('key')].length, 4);
    await store.compact(store.headRev).done;
    // a@2 and a@3 are superseded by a@4; a@4 and b@5 are the live values.
    assert.equal(store.compactedKeysTotal, 2);
    assert.equal([...store.backend.range('key')].length, 2);
    assert.deepEqual(store.read().range('\0', '\0').kvs.map((kv) => `${kv.key}=${kv.value}`), ['a=3', 'b=1']);
  } finally {
    await store.close();
  }
});

test('the compacted revision is -1 until the first compaction, which may be at 0, and survives a restart (etcd compactMainRev)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-compact-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let store = new KVStore(Backend.open(dir));
  try {
    assert.equal(store.compactRev, -1);
    assert.equal(store.read().firstRev(), -1);
    await store.compact(0).done;
    assert.equal(store.compactRev, 0);
    assert.throws(() => store.compact(0), /compacted/, 'a second compaction at 0 is refused');
    await store.close();
    store = new KVStore(Backend.open(dir));
    assert.equal(store.compactRev, 0);
    assert.throws(() => store.compact(0), /compacted/);
  } finally {
    await store.close();
  }
});

test('the index is compacted in slices, one per event-loop turn; writes and reads between them answer as before', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-compact-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new KVStore(Backend.open(dir));
  try {
    // Enough keys that compacting their index takes several 10 ms slices on any machine.
    const keys = Array.from({ length: 100_000 }, (_, i) => `k/${String(i).padStart(6, '0')}`);
    for (const v of ['old', 'new']) {
      const txn = store.beginWrite();
      for (const k of keys) txn.put(k, Buffer.from(v), 0n);
      await txn.end();
    }
    const at = store.headRev;
    const first = keys[0]!;
    const last = keys[keys.length - 1]!;
    let indexMs: number | undefined;
    store.onCompactionTiming = (phase, ms) => {
      if (phase === 'index') indexMs = ms;
    };
    const { done } = store.compact(at);
    // Each turn, while the index is compacted: a read at the compacted revision, and a write.
    let turns = 0;
    const writes: Promise<void>[] = [];
    while (indexMs === undefined) {
      await new Promise((r) => setImmediate(r));
      if (indexMs !== undefined) break;
      turns++;
      const read = store.read();
      assert.deepEqual(read.range(first, undefined, { rev: at }).kvs.map((kv) => `${kv.value}`), ['new']);
      assert.deepEqual(read.range(last, undefined, { rev: at }).kvs.map((kv) => `${kv.value}`), ['new']);
      read.end();
      writes.push(put(store, turns % 2 ? first : last, `turn ${turns}`));
    }
    assert.ok(turns >= 1, 'other work ran while the index was compacted');
    await Promise.all(writes);
    await done;
    assert.throws(() => store.read().range(first, undefined, { rev: at - 1 }), /compacted/);
    const read = store.read();
    assert.deepEqual(read.range(first, undefined, { rev: at }).kvs.map((kv) => `${kv.value}`), ['new']);
    const now = read.range('k/', 'k0');
    read.end();
    assert.equal(now.count, keys.length);
    assert.equal(`${now.kvs[0]!.value}`, `turn ${turns % 2 ? turns : turns - 1}`);
    // Every record below the compacted revision but the live values is gone; the turns' writes stay.
    assert.equal(store.compactedKeysTotal, keys.length);
    assert.equal([...store.backend.range('key')].length, keys.length + turns);
  } finally {
    await store.close();
  }
});
