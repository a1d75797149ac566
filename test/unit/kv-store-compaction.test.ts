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
