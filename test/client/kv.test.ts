// The client's KV, txn, compaction, lease and error mapping, against etcd-ts and a real etcd 3.4.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AbortError,
  Client,
  CompactedError,
  Compare,
  FutureRevisionError,
  LeaseNotFoundError,
  Op,
  RequestTooLargeError,
  TooManyTxnOpsError,
  Txn,
  UnavailableError,
  DeadlineExceededError,
} from '../../src/index.js';
import { deadEndpoint, KINDS, metric, start, suiteServer } from './common.js';

const keys = (r: { kvs: Array<{ key: Buffer }> }): string[] => r.kvs.map((kv) => kv.key.toString());

for (const { kind, skip } of KINDS) {
  describe(`client KV against ${kind}`, { skip, timeout: 60_000 }, () => {
    const server = suiteServer(kind, ['--max-txn-ops', '4', '--max-request-bytes', '8192']);
    let client: Client;
    before(() => { client = new Client({ endpoints: [server().endpoint] }); });
    after(() => client.close());

    it("announces clientv3's API version (3.4) on unary and stream calls, which the server counts", async () => {
      const count = (type: string) => metric(server().endpoint, `etcd_server_client_requests_total{client_api_version="3.4",type="${type}"}`, 0);
      const [unary, stream] = [await count('unary'), await count('stream')];
      await client.put('api/k', 'v');
      const watcher = client.watch('api/');
      await watcher.created;
      await watcher.cancel();
      assert.equal(await count('unary'), unary + 1);
      assert.ok((await count('stream')) > stream, 'the watch stream');
    });

    it('put / get with prefix, range, fromKey, limit, sort, keysOnly, countOnly and revision', async () => {
      const first = await client.put('kv/a', '1');
      await client.put('kv/b', '2');
      await client.put(new Uint8Array([0x6b, 0x76, 0x2f, 0x63]), 'bytes');
      await client.put('kw', 'outside');
      const prev = await client.put('kv/a', '11', { prevKv: true });
      assert.equal(prev.prevKv?.value.toString(), '1');

      assert.deepEqual(keys(await client.get('kv/', { prefix: true })), ['kv/a', 'kv/b', 'kv/c']);
      assert.deepEqual(keys(await client.get('kv/a', { rangeEnd: 'kv/c' })), ['kv/a', 'kv/b']);
      assert.deepEqual(keys(await client.get('kv/b', { fromKey: true })), ['kv/b', 'kv/c', 'kw']);
      const limited = await client.get('kv/', { prefix: true, limit: 2 });
      assert.deepEqual(keys(limited), ['kv/a', 'kv/b']);
      assert.equal(limited.more, true);
      assert.equal(limited.count, 3n);
      assert.deepEqual(keys(await client.get('kv/', { prefix: true, sort: { target: 'key', order: 'descend' } })), ['kv/c', 'kv/b', 'kv/a']);
      assert.deepEqual(keys(await client.get('kv/', { prefix: true, sort: { target: 'mod', order: 'descend' } })), ['kv/a', 'kv/c', 'kv/b']);
      const keysOnly = await client.get('kv/a', { keysOnly: true });
      assert.equal(keysOnly.kvs[0]?.value.length, 0);
      const countOnly = await client.get('kv/', { prefix: true, countOnly: true });
      assert.equal(countOnly.kvs.length, 0);
      assert.equal(countOnly.count, 3n);
      const old = await client.get('kv/a', { revision: first.header!.revision });
      assert.equal(old.kvs[0]?.value.toString(), '1');
      assert.throws(() => client.get('kv/', { prefix: true, fromKey: true }), TypeError);
    });

    it('delete with prefix and prevKv', async () => {
      await client.put('del/1', 'a');
      await client.put('del/2', 'b');
      const res = await client.delete('del/', { prefix: true, prevKv: true });
      assert.equal(res.deleted, 2n);
      assert.deepEqual(res.prevKvs.map((kv) => kv.value.toString()), ['a', 'b']);
      assert.equal((await client.get('del/', { prefix: true, countOnly: true })).count, 0n);
    });

    it('txn: compares on value, version, create, mod and lease; then / else; nested', async () => {
      const put = await client.put('tx/k', 'v');
      const rev = put.header!.revision;
      const ok = await client.txn()
        .if(
          Compare.value('tx/k', '=', 'v'),
          Compare.version('tx/k', '=', 1),
          Compare.createRevision('tx/k', '=', rev),
          Compare.modRevision('tx/k', '<', rev + 1n),
        )
        .then(Op.put('tx/then', 'yes'), Op.get('tx/k'))
        .else(Op.put('tx/else', 'no'))
        .commit();
      assert.equal(ok.succeeded, true);
      assert.equal(ok.responses[1]?.responseRange?.kvs[0]?.value.toString(), 'v');
      const failed = await client.txn().if(Compare.lease('tx/k', '=', 0), Compare.value('tx/k', '!=', 'v')).then(Op.put('tx/then2', 'x')).else(Op.delete('tx/then')).commit();
      assert.equal(failed.succeeded, false);
      assert.equal(failed.responses[0]?.responseDeleteRange?.deleted, 1n);
      const nested = await client.txn()
        .then(Op.txn(new Txn().if(Compare.version('tx/missing', '>', 0)).then(Op.put('tx/n', 'then')).else(Op.put('tx/n', 'else'))))
        .commit();
      assert.equal(nested.responses[0]?.responseTxn?.succeeded, false);
      assert.equal((await client.get('tx/n')).kvs[0]?.value.toString(), 'else');
      await assert.rejects(new Txn().commit(), TypeError);
    });

    it('typed errors: too many txn ops, request too large, compacted, future revision, lease not found', async () => {
      const err = await client.txn().then(...[1, 2, 3, 4, 5].map((i) => Op.put(`e/${i}`, 'x'))).commit().catch((e: unknown) => e);
      assert.ok(err instanceof TooManyTxnOpsError, String(err));
      assert.equal(err.retryable, false);
      assert.equal(err.name, 'TooManyTxnOpsError');
      assert.ok(err.cause !== undefined);
      await assert.rejects(client.put('e/big', 'x'.repeat(10_000)), RequestTooLargeError);
      const a = await client.put('e/c', '1');
      const b = await client.put('e/c', '2');
      await client.compact(b.header!.revision);
      await assert.rejects(client.get('e/c', { revision: a.header!.revision }), CompactedError);
      await assert.rejects(client.compact(a.header!.revision), CompactedError);
      await assert.rejects(client.get('e/c', { revision: b.header!.revision + 1000n }), FutureRevisionError);
      await assert.rejects(client.leaseRevoke(123456789), LeaseNotFoundError);
      await assert.rejects(client.put('e/l', 'x', { lease: 123456789 }), LeaseNotFoundError);
    });

    it('leases: grant, put with lease, ignoreLease / ignoreValue, timeToLive with keys, leases, revoke deletes keys', async () => {
      const lease = await client.leaseGrant(60);
      await client.put('l/k', 'v', { lease: lease.ID });
      await client.put('l/k', 'v2', { ignoreLease: true });
      await client.put('l/k', '', { ignoreValue: true, ignoreLease: true });
      const kv = (await client.get('l/k')).kvs[0];
      assert.equal(kv?.lease, lease.ID);
      assert.equal(kv?.value.toString(), 'v2');
      const ttl = await client.leaseTimeToLive(lease.ID, { keys: true });
      assert.equal(ttl.grantedTTL, 60n);
      assert.deepEqual(ttl.keys.map(String), ['l/k']);
      assert.ok((await client.leases()).leases.some((l) => l.ID === lease.ID));
      await client.leaseRevoke(lease.ID);
      assert.equal((await client.get('l/k')).kvs.length, 0);
    });

    it('keepAlive renews a lease and reports its loss when revoked', async () => {
      const lease = await client.leaseGrant(2);
      const keepAlive = client.keepAlive(lease.ID, { intervalMs: 200 });
      let renewals = 0;
      await new Promise<void>((resolve) => keepAlive.on('renewed', () => { if (++renewals === 3) resolve(); }));
      await client.leaseRevoke(lease.ID);
      const lost = await keepAlive.lost;
      assert.ok(lost instanceof LeaseNotFoundError);
    });

    it('fails over from a dead endpoint to a live one', async () => {
      const failover = new Client({ endpoints: [await deadEndpoint(), server().endpoint] });
      try {
        for (let i = 0; i < 4; i++) {
          await failover.put(`fo/${i}`, 'x');
          assert.equal((await failover.get(`fo/${i}`)).kvs.length, 1);
        }
      } finally {
        failover.close();
      }
    });

    it('an empty key with prefix or fromKey covers every key, as clientv3 sends it', async () => {
      await client.put('every/k', 'v');
      const all = (await client.get(Buffer.from([0]), { rangeEnd: Buffer.from([0]), countOnly: true })).count;
      assert.ok(all >= 1n);
      assert.equal((await client.get('', { prefix: true, countOnly: true })).count, all);
      assert.equal((await client.get('', { fromKey: true, countOnly: true })).count, all);
      const txn = await client.txn().then(Op.get('', { prefix: true, countOnly: true })).commit();
      assert.equal(txn.responses[0]?.responseRange?.count, all);
    });

    it('a lease ID or revision given as a number beyond 2^53 is refused, not rounded to another ID', async () => {
      await assert.rejects(async () => client.put('unsafe/k', 'v', { lease: 2 ** 60 + 1 }), RangeError);
      await assert.rejects(async () => client.get('unsafe/k', { revision: 2 ** 53 + 2 }), RangeError);
      await assert.rejects(async () => client.leaseRevoke(1.5), RangeError);
      assert.equal((await client.get('unsafe/k')).kvs.length, 0);
    });

    it('a call whose AbortSignal fires right after the call is made is aborted and sends nothing', async () => {
      await client.get('abort/now'); // connected: the endpoint is chosen without waiting
      for (const [name, call] of [
        ['put', (signal: AbortSignal) => client.put('abort/now', 'x', { signal })],
        ['get', (signal: AbortSignal) => client.get('abort/now', { signal })],
      ] as const) {
        const controller = new AbortController();
        const pending = call(controller.signal);
        controller.abort();
        await assert.rejects(pending, AbortError, name);
      }
      assert.equal((await client.get('abort/now')).kvs.length, 0, 'the aborted put was not applied');
    });

    it('deadlines and AbortSignal end calls to unreachable endpoints with retryable / abort errors', async () => {
      const dead = new Client({ endpoints: [await deadEndpoint()], timeoutMs: 300 });
      try {
        const err = await dead.get('x').catch((e: unknown) => e);
        assert.ok(err instanceof UnavailableError || err instanceof DeadlineExceededError, String(err));
        assert.equal(err.retryable, true);
        const controller = new AbortController();
        const pending = dead.get('x', { timeoutMs: 60_000, signal: controller.signal });
        setTimeout(() => controller.abort(), 100);
        await assert.rejects(pending, AbortError);
      } finally {
        dead.close();
      }
      await assert.rejects(dead.get('x'), AbortError, 'calls after close() are aborted');
    });
  });
}

for (const { kind, skip } of KINDS) {
  describe(`client lease keep-alive across restarts against ${kind}`, { skip, timeout: 60_000 }, () => {
    it('keeps renewing through kill -9 and restart; the lease and its key survive', async (t) => {
      const server = await start(t, kind);
      const client = new Client({ endpoints: [await deadEndpoint(), server.endpoint] });
      t.after(() => client.close());
      const lease = await client.leaseGrant(5);
      await client.put('ka/k', 'v', { lease: lease.ID });
      const keepAlive = client.keepAlive(lease.ID, { intervalMs: 200 });
      let lost = false;
      keepAlive.on('lost', () => { lost = true; });
      const renewed = (): Promise<void> => new Promise((resolve) => keepAlive.once('renewed', () => resolve()));
      await renewed();
      const disconnected = new Promise((resolve) => keepAlive.once('disconnected', resolve));
      await server.kill9();
      await server.restart();
      await disconnected;
      await renewed();
      await renewed();
      const ttl = await client.leaseTimeToLive(lease.ID);
      assert.ok(ttl.TTL > 0n, `lease alive after restart (TTL ${ttl.TTL})`);
      assert.equal((await client.get('ka/k')).kvs[0]?.lease, lease.ID);
      assert.equal(lost, false);
      keepAlive.stop();
    });
  });
}
