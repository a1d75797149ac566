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

test('a list read page by page at one revision counts the keys after each page as a whole read does, with writes between pages', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-read-'));
  const store = new KVStore(Backend.open(dir));
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const key = (i: number) => `p/${String(i).padStart(4, '0')}`;
  const write = async (f: (txn: ReturnType<KVStore['beginWrite']>) => void) => {
    const txn = store.beginWrite();
    f(txn);
    await txn.end();
  };
  await write((txn) => {
    for (let i = 0; i < 1000; i += 2) txn.put(key(i), Buffer.from('v'), 0n);
  });
  const at = store.publishedRev;
  const wholeCount = (from: string) => store.index.revisions(from, 'p0', at, 0).total;
  // Pages of 50 from the last key + 1, as Kubernetes lists; keys added and deleted between pages.
  let from = 'p/';
  let pages = 0;
  for (;;) {
    const read = store.read();
    const page = read.range(from, 'p0', { rev: at, limit: 51 });
    read.end();
    assert.equal(page.count, wholeCount(from), `count from ${from}`);
    assert.deepEqual(page.kvs.map((kv) => kv.key.toString()), store.index.range(from, 'p0', at).keys.slice(0, 51));
    assert.ok(page.kvs.every((kv) => kv.value.toString() === 'v'));
    pages++;
    if (page.count <= 50) break;
    from = `${page.kvs[49]!.key.toString()}\0`;
    await write((txn) => {
      txn.put(key(2 * pages + 1), Buffer.from('new'), 0n);
      txn.deleteRange(key(998 - 2 * pages), undefined);
    });
  }
  assert.equal(pages, 10);
  // A txn reading its own writes: a count at its revision (not durable yet) changes with its next put.
  const txn = store.beginWrite();
  const within = store.readWithin(txn);
  txn.put('p/new1', Buffer.from('x'), 0n);
  const before = within.range('p/', 'p0', { limit: 10 }).count;
  txn.put('p/new2', Buffer.from('x'), 0n);
  assert.equal(within.range('p/', 'p0', { limit: 10 }).count, before + 1);
  within.end();
  await txn.end();
});
