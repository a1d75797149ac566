// Snapshots against a real etcd 3.4: the same writes on a fresh etcd and a fresh etcd-ts
// (puts, deletes, a txn, a lease with keys, a user and a role, a compaction), then `etcdctl
// snapshot save` from each, `snapshot status` of each file, and `snapshot restore` of each
// into data dirs that a real etcd 3.4 and etcd-ts then start from. All four must answer alike:
// every key with its revisions and versions, the compacted revision, the lease and its keys,
// the users and roles, and `endpoint hashkv` (a hash over the `key` bucket, so the stored
// records are etcd's byte for byte). `snapshot status` must agree on the revision; its hash and
// key count cover the member buckets, which differ by design (etcd-ts writes none).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { etcdctl, txnInput } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** etcdctl against `server`, failing the test on an error exit. */
async function ctl(server: ServerHandle | string, args: string[], input?: string): Promise<string> {
  const r = await etcdctl(typeof server === 'string' ? server : server.endpoint, args, { stdin: input });
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** etcdctl without an endpoint (`snapshot status`, `snapshot restore` work on files). */
async function offline(args: string[]): Promise<string> {
  const r = await etcdctl('127.0.0.1:1', args);
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('snapshots: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('an etcd-ts snapshot is an etcd snapshot: status reads it, restore makes an etcd data dir that serves the same data', { timeout: 120_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'snapshot-compat-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags: ['--bcrypt-cost', '4'] }), startServer(t, { kind: 'etcd-ts', flags: ['--bcrypt-cost', '4'] })]);
    /** What a server started from each restored snapshot shows: etcd's snapshot in etcd, in etcd-ts, then etcd-ts's in etcd, in etcd-ts. */
    const answers: string[][] = [];
    for (const [i, server] of servers.entries()) {
      // A lease with a chosen ID, so both servers hold the same one.
      const grant = await fetch(new URL('/v3/lease/grant', server.endpoint), { method: 'POST', body: JSON.stringify({ TTL: 3600, ID: 4660 }) });
      assert.equal(grant.status, 200, await grant.text());
      for (let k = 0; k < 40; k++) await ctl(server, ['put', `k${k}`, `v${k}-${'x'.repeat(k * 50)}`]);
      await ctl(server, ['put', 'leased', 'v', '--lease=1234']);
      // Larger than a page: its leaf spans overflow pages.
      await ctl(server, ['put', 'big', 'y'.repeat(10_000)]);
      await ctl(server, ['put', 'k1', 'again']);
      await ctl(server, ['del', 'k2']);
      await ctl(server, ['txn', '-i'], txnInput(['value("k3") = "nope"'], [], ['put k4 "from-txn"', 'put k5 "too"']));
      await ctl(server, ['compaction', '20']);
      await ctl(server, ['user', 'add', 'alice', '--new-user-password=a']);
      await ctl(server, ['role', 'add', 'reader']);
      await ctl(server, ['role', 'grant-permission', 'reader', 'read', 'k', '--prefix']);
      await ctl(server, ['user', 'grant-role', 'alice', 'reader']);
      await ctl(server, ['put', 'last', 'write']);

      const file = join(dir, `snap-${i}.db`);
      await ctl(server, ['snapshot', 'save', file]);
      const status = JSON.parse(await offline(['snapshot', 'status', file, '-w', 'json'])) as { revision: number; totalKey: number };
      // Each snapshot restored twice, once for a real etcd and once for etcd-ts, which both
      // start from the data dir `snapshot restore` made (their default name and peer URL are
      // the ones it used).
      for (const kind of ['etcd', 'etcd-ts'] as const) {
        const restored = join(dir, `restored-${i}-${kind}`);
        await offline(['snapshot', 'restore', file, '--data-dir', restored]);
        const from = await startServer(t, { kind, flags: ['--data-dir', restored] });
        answers.push([
          `revision ${status.revision}`,
          await ctl(from, ['get', '', '--from-key', '-w', 'json']),
          await etcdctl(from.endpoint, ['get', 'k1', '--rev', '10']).then((r) => r.stderr.trim().split('\n').at(-1) ?? ''),
          await ctl(from, ['get', 'k1', '--rev', '30', '-w', 'json']),
          await ctl(from, ['lease', 'list']),
          await ctl(from, ['lease', 'timetolive', '1234', '--keys']).then((s) => s.replace(/remaining\(\d+s\)/, 'remaining(Ns)')),
          await ctl(from, ['user', 'get', 'alice']),
          await ctl(from, ['role', 'get', 'reader']),
          await ctl(from, ['endpoint', 'hashkv', '-w', 'json']).then((s) => s.replace(/"Endpoint":"[^"]*"/, '')),
          await ctl(from, ['put', 'after', 'restore', '-w', 'json']),
        ]);
        await from.stop();
      }
    }
    assert.match(answers[0]![1]!, /"key":"azE="/, 'the restored etcd serves the keys');
    for (const [i, seen] of answers.entries()) assert.deepEqual(seen, answers[0], `restored server ${i}`);
  });

  it('a data dir restored for another member keeps that member (IDs and peer URLs from the log restore wrote), whatever the start flags say', { timeout: 60_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'snapshot-member-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const source = await startServer(t, { kind: 'etcd-ts' });
    await ctl(source, ['put', 'k', 'v']);
    const file = join(dir, 'snap.db');
    await ctl(source, ['snapshot', 'save', file]);
    const seen: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const restored = join(dir, `restored-${kind}`);
      await offline(['snapshot', 'restore', file, '--data-dir', restored, '--name', 'm1', '--initial-cluster', 'm1=http://localhost:2390',
        '--initial-advertise-peer-urls', 'http://localhost:2390', '--initial-cluster-token', 'tok']);
      const from = await startServer(t, { kind, flags: ['--data-dir', restored] });
      const hideEndpoint = (text: string) => text.split(new URL(from.endpoint).host).join('<endpoint>');
      seen.push([hideEndpoint(await ctl(from, ['member', 'list', '-w', 'json'])), await ctl(from, ['get', 'k', '--print-value-only'])]);
      await from.stop();
    }
    assert.match(seen[0]![0]!, /"peerURLs":\["http:\/\/localhost:2390"\]/, 'etcd keeps the restored member');
    assert.deepEqual(seen[1], seen[0]);
  });
});
