// --quota-backend-bytes against a real etcd 3.4: the same data fills the same quota. Both
// servers take 1 KiB puts, one after another, until NOSPACE; etcd-ts must hold as many within 15%
// (its LMDB file grew to ~1.5× etcd's bbolt file for the same data before revision
// records were appended, and a quota held a third less). And once the keys are deleted and
// compacted, the backend reports the space as free (dbSizeInUse), as etcd's does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Client } from '../../src/client/client.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

const QUOTA = 4 * 1024 * 1024;

/** Puts 1 KiB values under new keys until the server refuses one; returns how many it took. */
async function fill(server: ServerHandle): Promise<number> {
  const client = new Client({ endpoints: [server.endpoint] });
  try {
    const value = Buffer.alloc(1024, 'x');
    for (let i = 0; ; i++) {
      try {
        await client.put(`key${String(i).padStart(8, '0')}`, value);
      } catch (err) {
        assert.match(String(err), /database space exceeded/);
        return i;
      }
    }
  } finally {
    client.close();
  }
}

/** `endpoint status`'s dbSize and dbSizeInUse. */
async function sizes(server: ServerHandle): Promise<{ dbSize: number; dbSizeInUse: number }> {
  const out = (await etcdctl(server.endpoint, ['endpoint', 'status', '-w', 'json'])).stdout;
  return { dbSize: Number(/"dbSize":(\d+)/.exec(out)![1]), dbSizeInUse: Number(/"dbSizeInUse":(\d+)/.exec(out)![1]) };
}

describe('backend quota: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('the same quota holds as many 1 KiB puts; deleted and compacted data shows as free space', { timeout: 120_000 }, async (t) => {
    const flags = ['--quota-backend-bytes', String(QUOTA)];
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags }), startServer(t, { kind: 'etcd-ts', flags })]);
    const [theirs, ours] = [await fill(servers[0]!), await fill(servers[1]!)];
    assert.ok(theirs > 2000, `etcd took ${theirs}`);
    // Within 15%: where each server's file crosses the quota depends on when its batched commits
    // fall among the puts, so the count moves between runs (etcd alone took 3,053–3,371 puts in
    // seven runs, etcd-ts 3,000–3,179); the LMDB layout this guards against held a third less.
    assert.ok(Math.abs(ours - theirs) <= theirs * 0.15, `etcd-ts took ${ours} puts, etcd ${theirs}`);

    for (const s of servers) {
      const before = await sizes(s);
      assert.equal((await etcdctl(s.endpoint, ['del', 'key', '--prefix'])).code, 0);
      const head = /"revision":(\d+)/.exec((await etcdctl(s.endpoint, ['get', 'x', '-w', 'json'])).stdout)![1]!;
      const compacted = await etcdctl(s.endpoint, ['compaction', '--physical', head]);
      assert.equal(compacted.code, 0, compacted.stderr);
      // The last batch of deletions reaches the file with the next backend commit (100 ms).
      let after = await sizes(s);
      for (let i = 0; i < 20 && after.dbSizeInUse >= before.dbSizeInUse / 2; i++) {
        await new Promise((done) => setTimeout(done, 100));
        after = await sizes(s);
      }
      assert.ok(after.dbSizeInUse < before.dbSizeInUse / 2, `${s.kind}: in use ${before.dbSizeInUse} → ${after.dbSizeInUse} of ${after.dbSize}`);
    }
  });
});
