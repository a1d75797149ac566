// A Range answer read in slices (KVStore's StoredRecords.read) and sent as the buffers it was
// built in (RecordFields, GrpcServer.write, the HTTP/2 flush's writev): the client gets every
// KeyValue, in order, over gRPC and through the gateway, with `limit` and `more`, and a small
// request made meanwhile on another connection is answered before the large one.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { Client } from '../../src/client/client.js';
import { defaultConfig } from '../../src/config.js';
import { startEtcd, type RunningServer } from '../../src/server/embed.js';

/** About 60 MB: far more than one 10 ms slice, one 1 MiB buffer or one flush. */
const KEYS = 3000;
const VALUE_BYTES = 20_000;

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
  let server: RunningServer;
  let dataDir: string;
  let client: Client;
  let other: Client;

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-large-range-'));
    const config = { ...defaultConfig(), dataDir, listenClientUrls: ['http://127.0.0.1:0'], advertiseClientUrls: ['http://127.0.0.1:0'], listenPeerUrls: [] };
    server = await startEtcd(config, pino({ level: 'silent' }));
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
    await server.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
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

  it('does not hold the server: a small read on another connection is answered before it', async () => {
    await other.get('small');
    const order: string[] = [];
    const large = client.get('big/', { prefix: true }).then(() => order.push('large'));
    // Sent once the large one is being read: its first slice runs in the turn it arrives.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const small = other.get('small').then((r) => order.push(`small=${r.kvs[0]!.value.toString()}`));
    await Promise.all([large, small]);
    assert.deepEqual(order, ['small=v', 'large']);
  });
});
