// A Range answer, and a read-only Txn's, read in slices (KVStore's StoredRecords.read) and sent
// as the buffers it was built in (RecordFields, GrpcServer.write, the HTTP/2 flush's writev):
// the client gets every KeyValue, in order, over gRPC and through the gateway, with `limit` and
// `more`, and a read made while the large one is read is answered first.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '../../src/client/client.js';
import { Compare, Op } from '../../src/client/txn.js';
import { RangeRequest, RangeRequest_SortOrder, TxnRequest } from '../../src/proto/gen/rpc.gen.js';
import type { RunningServer } from '../../src/server/embed.js';
import { EmbeddedServer } from '../helpers/watch-client.js';

/**
 * About 60 MB, in records enough that reading them takes several 10 ms slices on any machine
 * (3,000 of 20 KB were once copied within one); far more than one 1 MiB buffer or one flush.
 */
const KEYS = 12_000;
const VALUE_BYTES = 5_000;

function keyOf(i: number): string {
  return `big/${String(i).padStart(5, '0')}`;
}

/** A value that differs per key and per byte position, so that any misplaced byte shows. */
function valueOf(i: number): Buffer {
  const b = Buffer.alloc(VALUE_BYTES);
  for (let j = 0; j < VALUE_BYTES; j++) b[j] = (i * 31 + j) & 0xff;
  return b;
}

describe('a large Range answer', () => {
  let embedded: EmbeddedServer;
  let server: RunningServer;
  let client: Client;
  let other: Client;

  before(async () => {
    embedded = await EmbeddedServer.start();
    server = embedded.server;
    client = new Client({ endpoints: server.clientUrls });
    other = new Client({ endpoints: server.clientUrls });
    for (let i = 0; i < KEYS; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => client.put(keyOf(i + j), valueOf(i + j))));
    }
    await other.put('small', 'v');
  });
  after(async () => {
    client.close();
    other.close();
    await embedded.stop();
  });

  it('carries every KeyValue, in key order, over gRPC', async () => {
    const resp = await client.get('big/', { prefix: true });
    assert.equal(resp.count, BigInt(KEYS));
    assert.equal(resp.more, false);
    assert.equal(resp.kvs.length, KEYS);
    resp.kvs.forEach((kv, i) => {
      assert.equal(kv.key.toString(), keyOf(i));
      assert.ok(kv.value.equals(valueOf(i)), `value of ${keyOf(i)}`);
    });
  });

  it('with a limit, carries that many and says there are more', async () => {
    const resp = await client.get('big/', { prefix: true, limit: KEYS - 1 });
    assert.equal(resp.kvs.length, KEYS - 1);
    assert.equal(resp.more, true);
    assert.equal(resp.count, BigInt(KEYS));
    assert.equal(resp.kvs.at(-1)!.key.toString(), keyOf(KEYS - 2));
    assert.ok(resp.kvs.at(-1)!.value.equals(valueOf(KEYS - 2)));
  });

  it('keys only, sorted, or filtered by revision: read in slices, then shaped as etcd shapes them', async () => {
    const keysOnly = await client.get('big/', { prefix: true, keysOnly: true });
    assert.equal(keysOnly.kvs.length, KEYS);
    assert.ok(keysOnly.kvs.every((kv, i) => kv.key.toString() === keyOf(i) && kv.value.length === 0));
    const sorted = await client.get('big/', { prefix: true, sort: { target: 'key', order: 'descend' }, limit: 3 });
    assert.deepEqual(sorted.kvs.map((kv) => kv.key.toString()), [keyOf(KEYS - 1), keyOf(KEYS - 2), keyOf(KEYS - 3)]);
    assert.ok(sorted.kvs[0]!.value.equals(valueOf(KEYS - 1)));
    assert.equal(sorted.more, true);
    const last = await client.get(keyOf(KEYS - 10));
    const filtered = await client.get('big/', { prefix: true, minModRevision: last.kvs[0]!.modRevision });
    assert.ok(filtered.kvs.length >= 10 && filtered.kvs.length < KEYS, `${filtered.kvs.length} of the last keys written`);
    assert.ok(filtered.kvs.every((kv) => kv.modRevision >= last.kvs[0]!.modRevision && kv.value.equals(valueOf(Number(kv.key.toString().slice(4))))));
  });

  it('carries every KeyValue through the gateway', async () => {
    const body = JSON.stringify({ key: Buffer.from('big/').toString('base64'), range_end: Buffer.from('big0').toString('base64') });
    const res = await fetch(`${server.clientUrls[0]}/v3/kv/range`, { method: 'POST', body });
    const json = (await res.json()) as { count: string; kvs: { key: string; value: string }[] };
    assert.equal(json.count, String(KEYS));
    assert.equal(json.kvs.length, KEYS);
    json.kvs.forEach((kv, i) => {
      assert.equal(Buffer.from(kv.key, 'base64').toString(), keyOf(i));
      assert.ok(Buffer.from(kv.value, 'base64').equals(valueOf(i)), `value of ${keyOf(i)}`);
    });
  });

  it('in a read-only Txn, each range op carries its KeyValues, read in slices or sorted', async () => {
    const resp = await client
      .txn()
      .if(Compare.value(keyOf(0), '=', valueOf(0)))
      .then(Op.get('big/', { prefix: true }), Op.get('small'), Op.get('big/', { prefix: true, limit: 2, sort: { target: 'key', order: 'descend' } }))
      .commit();
    assert.equal(resp.succeeded, true);
    const [all, small, sorted] = resp.responses.map((r) => r.responseRange!);
    assert.equal(all!.kvs.length, KEYS);
    all!.kvs.forEach((kv, i) => {
      assert.equal(kv.key.toString(), keyOf(i));
      assert.ok(kv.value.equals(valueOf(i)), `value of ${keyOf(i)}`);
    });
    assert.deepEqual(small!.kvs.map((kv) => kv.value.toString()), ['v']);
    assert.deepEqual(sorted!.kvs.map((kv) => kv.key.toString()), [keyOf(KEYS - 1), keyOf(KEYS - 2)]);
    assert.equal(sorted!.more, true);
  });

  it('is read in slices: a read made in a later turn of the event loop is answered first', async () => {
    const rangeOf = (key: string, rangeEnd = ''): RangeRequest => ({ ...RangeRequest.decode(new Uint8Array(0)), key: Buffer.from(key), rangeEnd: Buffer.from(rangeEnd) });
    const bigRange = rangeOf('big/', 'big0');
    const order: string[] = [];
    const range = Promise.resolve(server.etcd.rangeEncoded(bigRange)).then((r) => order.push(`range of ${r.count}`));
    const sorted = Promise.resolve(server.etcd.rangeEncoded({ ...bigRange, sortOrder: RangeRequest_SortOrder.DESCEND, limit: 1n })).then((r) => order.push(`sorted ${r.kvs[0]!.key.toString()}`));
    const txn = server.etcd.txnEncoded({ ...TxnRequest.decode(new Uint8Array(0)), success: [{ requestRange: bigRange }] }).then(() => order.push('txn'));
    await new Promise((resolve) => setImmediate(resolve));
    order.push(`small=${server.etcd.range(rangeOf('small')).kvs[0]!.value.toString()}`);
    await Promise.all([range, sorted, txn]);
    assert.equal(order[0], 'small=v');
    assert.deepEqual(order.slice(1).sort(), [`range of ${KEYS}`, `sorted ${keyOf(KEYS - 1)}`, 'txn']);
  });
});
