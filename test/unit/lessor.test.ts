// The lessor (etcd lease/lessor.go) on a real store: grant / renew / expiry / revoke, keys
// attached through puts, revocation of many keys in one revision, many leases expiring at once,
// persistence across a reopen, and etcd's record format and ID scheme.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore, LeaseNotFoundError } from '../../src/mvcc/kv-store.js';
import {
  IdGenerator,
  LeaseExists,
  LeaseTTLTooLarge,
  Lessor,
  MAX_LEASE_TTL_SEC,
  decodeLeaseRecord,
  encodeLeaseRecord,
} from '../../src/lease/lessor.js';

const MEMBER = 0x8e9e05c52164694dn;
const dirs: string[] = [];
const open: { store: KVStore; lessor: Lessor }[] = [];
after(async () => {
  for (const o of open) {
    o.lessor.stop();
    await o.store.close().catch(() => {});
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'lessor-'));
  dirs.push(d);
  return d;
}

function start(dir = tempDir(), minTtlSec = 2): { store: KVStore; lessor: Lessor; dir: string } {
  const store = new KVStore(Backend.open(dir));
  const lessor = new Lessor(store, { memberId: MEMBER, minTtlSec, checkIntervalMs: 50 });
  open.push({ store, lessor });
  return { store, lessor, dir };
}

async function put(store: KVStore, key: string, lease: bigint): Promise<void> {
  const t = store.beginWrite();
  t.put(key, Buffer.from('v'), lease);
  await t.end();
}

const liveKeys = (store: KVStore): string[] => store.read().range('\0', '\0').kvs.map((kv) => kv.key.toString('latin1'));
const FAR = 1e12;

describe('lessor', () => {
  it('grants server-chosen IDs with the member prefix, client IDs once, and enforces TTL bounds', async () => {
    const { lessor } = start();
    const a = lessor.grant(0n, 60);
    const b = lessor.grant(0n, 60);
    await Promise.all([a.durable, b.durable]);
    assert.notEqual(a.lease.id, b.lease.id);
    assert.equal(a.lease.id >> 48n, 0x694dn);
    assert.ok(a.lease.id > 0n);
    assert.equal(lessor.grant(42n, 1).lease.ttlSec, 2, 'a TTL below the minimum is raised');
    assert.throws(() => lessor.grant(42n, 10), LeaseExists);
    assert.throws(() => lessor.grant(43n, MAX_LEASE_TTL_SEC + 1), LeaseTTLTooLarge);
    assert.equal(lessor.lookup(43n), undefined);
    assert.deepEqual(lessor.metrics(), { granted: 3, revoked: 0, renewed: 0, expired: 0 });
  });

  it('attaches keys through puts, moves them between leases and refuses unknown leases', async () => {
    const { store, lessor } = start();
    const l1 = lessor.grant(1n, 60).lease.id;
    const l2 = lessor.grant(2n, 60).lease.id;
    await put(store, 'a', l1);
    await put(store, 'b', l1);
    assert.deepEqual(lessor.timeToLive(l1)?.keys, ['a', 'b']);
    await put(store, 'b', l2);
    assert.deepEqual(lessor.timeToLive(l1)?.keys, ['a']);
    assert.deepEqual(lessor.timeToLive(l2)?.keys, ['b']);
    await put(store, 'a', 0n);
    assert.deepEqual(lessor.timeToLive(l1)?.keys, []);
    assert.equal(lessor.leaseOf('a'), 0n);
    assert.throws(() => store.beginWrite().put('c', Buffer.from('v'), 99n), LeaseNotFoundError);
    assert.equal(lessor.timeToLive(99n), undefined);
  });

  it('renew extends the expiry and reports the TTL; unknown leases are not found; an expired one is, once its revocation is done', async () => {
    const { lessor } = start();
    const id = lessor.grant(7n, 10).lease.id;
    const before = lessor.lookup(id)!.expiryMs;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await lessor.renew(id), 10);
    assert.ok(lessor.lookup(id)!.expiryMs > before);
    await assert.rejects(lessor.renew(8n), LeaseNotFoundError);
    lessor.lookup(id)!.expiryMs = performance.now() - 1;
    let answered = false;
    const renewal = lessor.renew(id).finally(() => (answered = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(answered, false, 'an expired lease awaiting revocation waits for it (etcd `revokec`)');
    await lessor.revoke(id);
    await assert.rejects(renewal, LeaseNotFoundError);
    assert.equal(lessor.metrics().renewed, 1);
  });

  it('expires leases on time through the expiry loop and deletes their keys', async () => {
    const { store, lessor } = start(undefined, 1);
    const id = lessor.grant(0n, 1).lease.id;
    await put(store, 'tmp', id);
    await put(store, 'keep', 0n);
    lessor.start();
    const deadline = Date.now() + 5000;
    while (lessor.lookup(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lessor.lookup(id), undefined, 'lease expired within 5 s of a 1 s TTL');
    await store.sync();
    assert.deepEqual(liveKeys(store), ['keep']);
    assert.equal(lessor.metrics().revoked, 1);
    assert.equal(lessor.metrics().expired, 1);
  });

  it('does not expire a lease before its TTL and keeps renewed leases alive', () => {
    const { lessor } = start();
    const id = lessor.grant(0n, 30).lease.id;
    const now = performance.now();
    assert.deepEqual(lessor.expire(now + 29_000), []);
    assert.deepEqual(lessor.expire(now + 31_000), [id]);
  });

  it('revokes many leases expiring at once, each through revokeExpired, each key deleted', async () => {
    const { store, lessor } = start();
    const ids: bigint[] = [];
    for (let i = 0; i < 1000; i++) ids.push(lessor.grant(0n, 5).lease.id);
    const t = store.beginWrite();
    ids.forEach((id, i) => t.put(`k${i}`, Buffer.from('v'), id));
    await t.end();
    const revBefore = store.headRev;
    const seen: bigint[] = [];
    const revoked: Promise<void>[] = [];
    lessor.revokeExpired = (id) => {
      seen.push(id);
      const p = lessor.revoke(id);
      revoked.push(p);
      return p;
    };
    // etcd's revocation rate: 500 every pass (1000 a second), soonest first.
    const far = performance.now() + FAR;
    assert.equal(lessor.expire(far).length, 500);
    assert.equal(lessor.leases().length, 500, 'the rest wait, still listed');
    assert.equal(lessor.expire(far).length, 500);
    await Promise.all(revoked);
    assert.deepEqual(new Set(seen), new Set(ids));
    assert.equal(lessor.leases().length, 0);
    assert.deepEqual(liveKeys(store), []);
    assert.equal(store.headRev, revBefore + 1000, 'one revision per revoked lease');
    assert.deepEqual(lessor.expire(performance.now() + FAR), [], 'nothing is handed out twice');
  });

  it('retries a failed revocation of an expired lease', async () => {
    const { lessor } = start();
    const id = lessor.grant(0n, 5).lease.id;
    let calls = 0;
    lessor.revokeExpired = () => {
      calls++;
      return Promise.reject(new Error('stopped'));
    };
    const expiry = lessor.lookup(id)!.expiryMs;
    const at = performance.now() + 6000;
    lessor.expire(at);
    await new Promise((r) => setImmediate(r));
    assert.ok(lessor.lookup(id), 'the lease stays after a failed revocation');
    assert.equal(lessor.lookup(id)!.expiryMs, expiry, 'its expiry stays: its TTL goes on falling below zero');
    assert.equal(lessor.metrics().expired, 0, 'a failed revocation is not counted');
    assert.deepEqual(lessor.expire(at + 2999), [], 'retried 3 s after it was handed out');
    assert.deepEqual(lessor.expire(at + 3000), [id]);
    assert.equal(calls, 2);
  });

  it('revokes a lease with 10,000 keys in one revision, published once with every delete', async () => {
    const { store, lessor } = start();
    const id = lessor.grant(0n, 60).lease.id;
    const t = store.beginWrite();
    for (let i = 0; i < 10_000; i++) t.put(`key/${String(i).padStart(5, '0')}`, Buffer.from('v'), id);
    await t.end();
    await put(store, 'other', 0n);
    const revBefore = store.headRev;
    const published: { rev: number; deletes: number }[] = [];
    store.onPublish((rev, changes) => published.push({ rev, deletes: changes.filter((kv) => kv.version === 0n).length }));
    await lessor.revoke(id);
    assert.equal(store.headRev, revBefore + 1);
    assert.deepEqual(published, [{ rev: revBefore + 1, deletes: 10_000 }]);
    assert.deepEqual(liveKeys(store), ['other']);
    assert.throws(() => lessor.revoke(id), LeaseNotFoundError);
  });

  it('revoking a lease without keys writes no revision', async () => {
    const { store, lessor } = start();
    const id = lessor.grant(0n, 60).lease.id;
    const rev = store.headRev;
    await lessor.revoke(id);
    assert.equal(store.headRev, rev);
    assert.equal(lessor.lookup(id), undefined);
  });

  it('restores leases and their keys after a reopen, with the full TTL counted from the restart', async () => {
    const first = start();
    const id = first.lessor.grant(0n, 30).lease.id;
    const gone = first.lessor.grant(0n, 30).lease.id;
    await put(first.store, 'a', id);
    await put(first.store, 'b', id);
    // Keys whose lease went away before the restart stay detached after it.
    await put(first.store, 'c', id);
    const t = first.store.beginWrite();
    t.deleteRange('c', undefined);
    await t.end();
    await put(first.store, 'd', id);
    await put(first.store, 'd', 0n);
    await first.lessor.revoke(gone);
    first.lessor.stop();
    await first.store.close();
    const second = start(first.dir);
    const restartedAt = performance.now();
    second.lessor.start();
    assert.equal(second.lessor.lookup(gone), undefined);
    const ttl = second.lessor.timeToLive(id);
    assert.deepEqual(ttl?.keys, ['a', 'b']);
    assert.equal(ttl?.grantedTtlSec, 30);
    assert.ok(second.lessor.lookup(id)!.expiryMs >= restartedAt + 30_000);
    assert.deepEqual(second.lessor.expire(restartedAt + 29_999), []);
    await second.lessor.revoke(id);
    assert.deepEqual(liveKeys(second.store), ['d']);
  });

  it('spreads the expiries of 1000 leases or more at a restart, at most 750 in any second, as etcd\'s Promote does', async () => {
    for (const count of [999, 3000]) {
      const first = start();
      const t = first.store.beginWrite();
      for (let i = 0; i < count; i++) first.lessor.grant(0n, 100);
      await t.end();
      first.lessor.stop();
      await first.store.close();
      const second = start(first.dir);
      const now = performance.now();
      second.lessor.start();
      const expiries = second.lessor.leases().map((l) => l.expiryMs - now);
      assert.equal(expiries.length, count);
      const spread = expiries[expiries.length - 1]! - expiries[0]!;
      if (count < 1000) {
        assert.ok(spread < 100, `${count} leases keep their expiry: spread ${spread} ms`);
        continue;
      }
      // 101 s (TTL + election timeout) for the first 750, then 1/750 s more for each next one.
      assert.ok(Math.abs(expiries[0]! - 101_000) < 100, String(expiries[0]));
      assert.ok(Math.abs(expiries[749]! - 101_000) < 100, String(expiries[749]));
      assert.ok(Math.abs(expiries[count - 1]! - (101_000 + (1000 * count) / 750)) < 100, String(expiries[count - 1]));
      for (let i = 0; i + 750 < count; i++) assert.ok(expiries[i + 750]! - expiries[i]! > 990, `751 expiries within a second from #${i}`);
    }
  });

  it('checkpoints remaining TTLs through the checkpointer, kept across a restart when persisted, cleared by a renewal', async () => {
    for (const persist of [true, false]) {
      const dir = tempDir();
      const open1 = (): { store: KVStore; lessor: Lessor; proposed: bigint[][] } => {
        const store = new KVStore(Backend.open(dir));
        const lessor = new Lessor(store, { memberId: MEMBER, checkIntervalMs: 50, checkpointIntervalMs: 1000, persistCheckpoints: persist });
        const proposed: bigint[][] = [];
        lessor.checkpointer = (cps) => {
          proposed.push(cps.flatMap((cp) => [cp.id, BigInt(cp.remainingTtlSec)]));
          for (const cp of cps) lessor.checkpoint(cp);
          return store.sync();
        };
        open.push({ store, lessor });
        return { store, lessor, proposed };
      };
      const first = open1();
      first.lessor.start();
      const id = first.lessor.grant(0n, 60).lease.id;
      // A checkpoint is taken one interval (a second here) after the grant.
      const deadline = Date.now() + 5000;
      while (first.proposed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(first.proposed[0], [id, 59n], 'the remaining TTL, rounded up');
      const record = () => decodeLeaseRecord(first.store.backend.get('lease', Buffer.from(id.toString(16).padStart(16, '0'), 'hex'))!);
      assert.equal(record().remainingTtlSec, persist ? 59 : 0);
      first.lessor.stop();
      await first.store.close();

      const second = open1();
      const now = performance.now();
      second.lessor.start();
      const left = second.lessor.lookup(id)!.expiryMs - now;
      // 59 s checkpointed (or the whole 60 s) plus the election timeout.
      if (persist) assert.ok(left < 60_500 && left > 59_500, String(left));
      else assert.ok(left > 60_500, String(left));
      const proposedBefore = second.proposed.length;
      assert.equal(await second.lessor.renew(id), 60);
      if (persist) assert.deepEqual(second.proposed[proposedBefore], [id, 0n], 'a renewal clears the checkpoint through the checkpointer');
      assert.equal(second.lessor.lookup(id)!.checkpointTtlSec, 0);
      second.lessor.stop();
    }
  });

  it("stores etcd's leasepb.Lease bytes and generates IDs as etcd's idutil", () => {
    assert.equal(encodeLeaseRecord(1n, 60).toString('hex'), '0801103c');
    assert.deepEqual(decodeLeaseRecord(encodeLeaseRecord(0x694da2006e089705n, 9_000_000_000)), {
      id: 0x694da2006e089705n, ttlSec: 9_000_000_000, remainingTtlSec: 0,
    });
    const gen = new IdGenerator(MEMBER, 0x12345678abcd);
    assert.equal(gen.next(), (0x694dn << 48n) | ((0x12345678abcdn & 0xffffffffffn) << 8n) + 1n);
    assert.equal(gen.next() & 0xffn, 2n);
  });
});
