import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore, ReadCancelledError, type StoredRecords } from '../../src/mvcc/kv-store.js';
import { unmarshalKeyValue } from '../../src/proto/wire.js';

/** Keys in one write; about 40 MB of values, far more than one 10 ms slice reads. */
const KEYS = 40_000;
const VALUE_BYTES = 1024;

function keyOf(i: number): string {
  return `k/${String(i).padStart(6, '0')}`;
}

/** A store holding KEYS keys written in one txn with values filled with `fill`, then again with `fill + 1`. */
async function storeWithHistory(t: TestContext, fill: number): Promise<KVStore> {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-read-'));
  const store = new KVStore(Backend.open(dir));
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const f of [fill, fill + 1]) {
    const txn = store.beginWrite();
    for (let i = 0; i < KEYS; i++) txn.put(keyOf(i), Buffer.alloc(VALUE_BYTES, f), 0n);
    await txn.end();
  }
  return store;
}

/**
 * Reads `records` through `read`, copying each record out and spending `spinMs` on each (a slow
 * consumer, whose slices are short); resolves with them and whether the read took several turns.
 */
async function readAll(records: StoredRecords, spinMs = 0): Promise<{ values: string[]; sliced: boolean }> {
  const values: string[] = [];
  const reading = records.read((record) => {
    for (const until = performance.now() + spinMs; performance.now() < until; );
    const kv = unmarshalKeyValue(Buffer.from(record));
    values.push(`${kv.key.toString()}=${kv.value[0]}/${kv.value.length}`);
  });
  if (reading) await reading;
  return { values, sliced: reading !== undefined };
}

function expected(fill: number): string[] {
  return Array.from({ length: KEYS }, (_, i) => `${keyOf(i)}=${fill}/${VALUE_BYTES}`);
}

test('a large range is read in slices, and callbacks of other work run between them', async (t) => {
  const store = await storeWithHistory(t, 1);
  const { records } = store.read().range('k/', 'k0', { records: true });
  assert.equal(records?.length, KEYS);
  let turns = 0;
  let counting = true;
  const count = (): void => {
    turns++;
    if (counting) setImmediate(count);
  };
  setImmediate(count);
  const { values, sliced } = await readAll(records!);
  counting = false;
  assert.ok(sliced, 'the read took more than the turn it began in');
  assert.ok(turns > 1, `other callbacks ran while it was read (${turns} turns)`);
  assert.deepEqual(values, expected(2));
});

test('a compaction above an open read transaction deletes the records it read only once it ends', async (t) => {
  const store = await storeWithHistory(t, 1);
  // The first write's revision: every key's first value, which a compaction at head supersedes.
  const first = store.headRev - 1;
  const view = store.read();
  const { records } = view.range('k/', 'k0', { records: true, rev: first });
  // Slow enough that the compaction's batches (1,000 records every 10 ms) would overtake it.
  const reading = readAll(records!, 0.02);
  let compacted = false;
  const compaction = store.compact(store.headRev).done.then(() => (compacted = true));
  const { values, sliced } = await reading;
  assert.ok(sliced);
  assert.deepEqual(values, expected(1), 'every record of the old revision was still there');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(compacted, false, 'the compaction waits while the view is open');
  view.end();
  await compaction;
  assert.equal(store.compactedKeysTotal, KEYS, 'and then deletes them');
});

test('a defragmentation during a running read swaps the database file under it without a failed read', async (t) => {
  const store = await storeWithHistory(t, 5);
  const { records } = store.read().range('k/', 'k0', { records: true });
  const reading = readAll(records!);
  await store.backend.defragment();
  const { values, sliced } = await reading;
  assert.ok(sliced);
  assert.deepEqual(values, expected(6));
});

test('a read whose caller gave up stops at the next slice and rejects', async (t) => {
  const store = await storeWithHistory(t, 1);
  const { records } = store.read().range('k/', 'k0', { records: true });
  let read = 0;
  let cancelled = false;
  const reading = records!.read(() => read++, KEYS, () => cancelled);
  assert.ok(reading, 'the read took more than the turn it began in');
  cancelled = true;
  const firstSlice = read;
  await assert.rejects(reading, ReadCancelledError);
  assert.equal(read, firstSlice, 'nothing was read after the cancel');
  assert.ok(read < KEYS);
});
