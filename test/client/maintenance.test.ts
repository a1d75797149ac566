// The client's maintenance calls (etcd clientv3's Maintenance, and Cluster.MemberList) against
// etcd-ts and a real etcd 3.4: the same steps, the same answers.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AbortError, AlarmType, Client, CompactedError, FutureRevisionError } from '../../src/index.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { KINDS, start } from './common.js';

for (const { kind, skip } of KINDS) {
  describe(`client maintenance against ${kind}`, { skip, timeout: 60_000 }, () => {
    it('lists the member, hashes the key space at a revision, defragments, and moves leadership only to a member', async (t) => {
      const server = await start(t, kind);
      const client = new Client({ endpoints: [server.endpoint] });
      t.after(() => client.close());
      const { members, header } = await client.memberList();
      assert.equal(members.length, 1);
      assert.equal(members[0]!.ID, header!.memberId);
      assert.deepEqual(members[0]!.clientURLs, [server.endpoint]);

      for (let i = 0; i < 5; i++) await client.put(`k${i}`, `v${i}`);
      const at4 = await client.maintenance.hashKV(4);
      const now = await client.maintenance.hashKV();
      assert.equal(now.header!.revision, 6n);
      assert.notEqual(at4.hash, now.hash);
      assert.equal((await client.maintenance.hashKV(4)).hash, at4.hash, 'the same revision hashes the same');
      await client.compact(3);
      assert.equal((await client.maintenance.hashKV(4)).compactRevision, 3n);
      await assert.rejects(client.maintenance.hashKV(2), CompactedError);
      await assert.rejects(client.maintenance.hashKV(100), FutureRevisionError);

      assert.deepEqual(await client.maintenance.defragment(), { header: undefined }); // etcd 3.4 sends no header
      assert.equal((await client.get('k4')).kvs[0]!.value.toString(), 'v4');
      await client.maintenance.moveLeader(header!.memberId);
      await assert.rejects(client.maintenance.moveLeader(header!.memberId + 1n), /etcdserver: bad leader transferee/);
    });

    it('streams a snapshot etcdctl reads, ending in the SHA-256 of the database; stops on abort', async (t) => {
      const server = await start(t, kind);
      const client = new Client({ endpoints: [server.endpoint] });
      t.after(() => client.close());
      for (let i = 0; i < 20; i++) await client.put(`key-${i}`, 'x'.repeat(1000));
      const chunks: Buffer[] = [];
      for await (const chunk of client.maintenance.snapshot()) chunks.push(chunk);
      const file = Buffer.concat(chunks);
      const dir = mkdtempSync(join(tmpdir(), 'client-snapshot-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const path = join(dir, 'snap.db');
      writeFileSync(path, file);
      const db = file.subarray(0, file.length - 32);
      assert.deepEqual(file.subarray(-32), createHash('sha256').update(db).digest());
      const status = await etcdctl('127.0.0.1:1', ['snapshot', 'status', path, '-w', 'json']); // works on the file alone
      assert.equal(status.code, 0, status.stderr);
      const parsed = JSON.parse(status.stdout) as { revision: number; totalKey: number };
      assert.equal(parsed.revision, 21);
      assert.ok(parsed.totalKey >= 20, `${parsed.totalKey} keys`);
      assert.equal(readFileSync(path).length, file.length);

      const aborted = new AbortController();
      aborted.abort();
      await assert.rejects(async () => {
        for await (const chunk of client.maintenance.snapshot({ signal: aborted.signal })) assert.ok(chunk);
      }, AbortError);
    });

    it('lists a NOSPACE alarm with its member and disarms every alarm', async (t) => {
      const server = await start(t, kind, ['--quota-backend-bytes', String(256 * 1024)]);
      const client = new Client({ endpoints: [server.endpoint] });
      t.after(() => client.close());
      assert.deepEqual((await client.maintenance.alarms()).alarms, []);
      // Both servers see a write's size in the quota once their backend commits it (every
      // 100 ms), so the puts are spaced out.
      let refused: unknown;
      for (let i = 0; i < 40 && refused === undefined; i++) {
        await client.put(`big-${i}`, 'x'.repeat(64 * 1024)).catch((err: unknown) => (refused = err));
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      assert.match(String(refused), /etcdserver: mvcc: database space exceeded/);
      const memberId = (await client.status()).header!.memberId;
      assert.deepEqual((await client.maintenance.alarms()).alarms, [{ memberID: memberId, alarm: AlarmType.NOSPACE }]);
      const disarmed = await client.maintenance.alarmDisarm();
      assert.deepEqual(disarmed.alarms, [{ memberID: memberId, alarm: AlarmType.NOSPACE }]);
      assert.deepEqual((await client.maintenance.alarms()).alarms, []);
    });
  });
}
