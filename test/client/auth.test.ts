// The client's username/password authentication (etcd clientv3's getToken / refreshToken),
// against etcd-ts and a real etcd 3.4, with users and roles set up through etcdctl.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { AuthFailedError, Client, PermissionDeniedError, type EtcdClientError } from '../../src/index.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { KINDS, start } from './common.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs etcdctl steps, failing on the first that fails. */
async function ctl(endpoint: string, ...steps: string[][]): Promise<void> {
  for (const args of steps) {
    const r = await etcdctl(endpoint, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  }
}

/** root (password "rootpw") and alice (password "a"), who may read and write under /a/ only. */
const USERS = [
  ['user', 'add', 'root', '--new-user-password=rootpw'],
  ['user', 'grant-role', 'root', 'root'],
  ['user', 'add', 'alice', '--new-user-password=a'],
  ['role', 'add', 'rw-a'],
  ['role', 'grant-permission', 'rw-a', 'readwrite', '--prefix', '/a/'],
  ['user', 'grant-role', 'alice', 'rw-a'],
];

for (const { kind, skip } of KINDS) {
  describe(`client auth against ${kind}`, { skip, timeout: 60_000 }, () => {
    it('manages users, roles and permissions, and enables auth, through client.auth', async (t) => {
      const server = await start(t, kind, ['--bcrypt-cost', '4']);
      const admin = new Client({ endpoints: [server.endpoint], auth: { username: 'root', password: 'rootpw' } });
      t.after(() => admin.close());
      await admin.auth.userAdd('root', 'rootpw');
      await admin.auth.userGrantRole('root', 'root');
      await admin.auth.userAdd('bob', 'b');
      await admin.auth.userAdd('svc', 'ignored', { noPassword: true });
      await assert.rejects(admin.auth.userAdd('bob', 'b'), /etcdserver: user name already exists/);
      await admin.auth.roleAdd('ops');
      await admin.auth.roleGrantPermission('ops', '/ops/', 'readwrite', { prefix: true });
      await admin.auth.roleGrantPermission('ops', '/cfg', 'read');
      await admin.auth.roleGrantPermission('ops', '/z', 'write', { fromKey: true });
      await admin.auth.userGrantRole('bob', 'ops');
      assert.deepEqual((await admin.auth.userList()).users, ['bob', 'root', 'svc']);
      assert.deepEqual((await admin.auth.roleList()).roles, ['ops']);
      assert.deepEqual((await admin.auth.userGet('bob')).roles, ['ops']);
      const perms = (await admin.auth.roleGet('ops')).perm.map((p) => [p.permType, p.key.toString(), p.rangeEnd.toString('hex')]);
      assert.deepEqual(perms, [[0, '/cfg', ''], [2, '/ops/', Buffer.from('/ops0').toString('hex')], [1, '/z', '00']]);
      await assert.rejects(admin.auth.roleRevokePermission('ops', '/cfg', { prefix: true }), /etcdserver: permission is not granted to the role/);
      await admin.auth.roleRevokePermission('ops', '/cfg');
      await admin.auth.authEnable();

      const bob = new Client({ endpoints: [server.endpoint], auth: { username: 'bob', password: 'b' } });
      t.after(() => bob.close());
      await bob.put('/ops/x', '1');
      await assert.rejects(bob.get('/cfg'), PermissionDeniedError);
      await assert.rejects(bob.auth.userList(), PermissionDeniedError);
      assert.deepEqual((await bob.auth.userGet('bob')).roles, ['ops']);
      await admin.auth.userChangePassword('bob', 'b2');
      await assert.rejects(bob.get('/ops/x'), AuthFailedError);
      await admin.auth.userRevokeRole('bob', 'ops');
      await admin.auth.roleDelete('ops');
      await admin.auth.userDelete('bob');
      await assert.rejects(admin.auth.userDelete('root'), /etcdserver: invalid auth management/);
      await admin.auth.authDisable();
      const anonymous = new Client({ endpoints: [server.endpoint] });
      t.after(() => anonymous.close());
      assert.equal((await anonymous.get('/ops/x')).kvs.length, 1);
    });

    it('asks whether auth is on (etcd 3.5 AuthStatus; etcd 3.4 answers Unimplemented)', async (t) => {
      const server = await start(t, kind, ['--bcrypt-cost', '4']);
      const client = new Client({ endpoints: [server.endpoint] });
      t.after(() => client.close());
      if (kind === 'etcd') {
        await assert.rejects(client.auth.authStatus(), (err: EtcdClientError) => err.code === Status.UNIMPLEMENTED);
        return;
      }
      await client.put('k', 'v');
      const before = await client.status();
      const off = await client.auth.authStatus();
      assert.equal(off.enabled, false);
      assert.equal(off.authRevision, 1n);
      assert.equal(off.header?.revision, 2n);
      assert.equal((await client.status()).raftIndex, before.raftIndex + 1n, 'one raft entry, as in etcd 3.5');
      await ctl(server.endpoint, ...USERS, ['auth', 'enable']);
      const on = await client.auth.authStatus(); // no token needed
      assert.equal(on.enabled, true);
      assert.ok(on.authRevision > off.authRevision, `${on.authRevision} > ${off.authRevision}`);
      const gateway = await fetch(`${server.endpoint}/v3/auth/status`, { method: 'POST', body: '{}' });
      const body = (await gateway.json()) as { enabled: boolean; authRevision: string };
      assert.deepEqual([body.enabled, body.authRevision], [true, on.authRevision.toString()]);
      const stale = await fetch(`${server.endpoint}/v3/auth/status`, { method: 'POST', body: '{}', headers: { authorization: 'not-a-token' } });
      assert.match(await stale.text(), /etcdserver: invalid auth token/);
    });

    it('sends its token with calls and watches; the server checks the user\'s permissions', async (t) => {
      const server = await start(t, kind);
      await ctl(server.endpoint, ...USERS, ['auth', 'enable']);
      const client = new Client({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'a' } });
      t.after(() => client.close());
      await client.put('/a/1', 'v');
      assert.equal((await client.get('/a/1')).kvs[0]?.value.toString(), 'v');
      await assert.rejects(client.put('/b/1', 'v'), PermissionDeniedError);
      await assert.rejects(client.get('/b/1'), PermissionDeniedError);

      const denied = client.watch('/b/', { prefix: true });
      await assert.rejects(denied.created, PermissionDeniedError);
      const w = client.watch('/a/', { prefix: true });
      await w.created;
      const got = new Promise<string>((resolve) => w.once('event', (e) => resolve(e.kv.key.toString())));
      await client.put('/a/2', 'x');
      assert.equal(await got, '/a/2');
      w.cancel();

      const anonymous = new Client({ endpoints: [server.endpoint] });
      t.after(() => anonymous.close());
      await assert.rejects(anonymous.get('/a/1'), /etcdserver: user name is empty/);
      const wrong = new Client({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'nope' } });
      t.after(() => wrong.close());
      await assert.rejects(wrong.get('/a/1'), AuthFailedError);
    });

    it('renews an expired token, and works without one while auth is disabled, then gets one once it is enabled', async (t) => {
      const server = await start(t, kind, ['--auth-token-ttl', '1']);
      await ctl(server.endpoint, ...USERS);
      const client = new Client({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'a' } });
      t.after(() => client.close());
      // Auth disabled: the client sends no token, everything is allowed.
      await client.put('/b/1', 'v');
      await ctl(server.endpoint, ['auth', 'enable']);
      // Enabled since: the server wants a token, the client authenticates and retries.
      await client.put('/a/1', 'v1');
      await assert.rejects(client.put('/b/1', 'v'), PermissionDeniedError);
      // The token expires after 1 s unused (etcd sweeps once a second): renewed on refusal.
      await sleep(2500);
      await client.put('/a/1', 'v2');
      // A watch stream opened now, with a token that then expires: a later create on the
      // same stream is refused for the token, and the client reconnects with a new one.
      const first = client.watch('/a/1');
      await first.created;
      await sleep(2500);
      const second = client.watch('/a/2');
      await second.created;
      const got = new Promise<string>((resolve) => second.once('event', (e) => resolve(e.kv.value.toString())));
      await client.put('/a/2', 'seen');
      assert.equal(await got, 'seen');
      first.cancel();
      second.cancel();
    });

    it('with JWT tokens, authenticates again when a change of users or roles made its token old', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'client-jwt-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileSync(join(dir, 'jwt.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      const server = await start(t, kind, ['--auth-token', `jwt,priv-key=${join(dir, 'jwt.key')},sign-method=ES256`]);
      await ctl(server.endpoint, ...USERS, ['auth', 'enable']);
      const client = new Client({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'a' } });
      t.after(() => client.close());
      await client.put('/a/1', 'v1');
      const w = client.watch('/a/', { prefix: true });
      const disconnections: EtcdClientError[] = [];
      w.on('disconnected', (err) => disconnections.push(err));
      await w.created;
      // Each etcdctl step authenticates on its own; the user added moves the auth revision.
      await ctl(server.endpoint, ['--user', 'root:rootpw', 'user', 'add', 'carol', '--new-user-password=c']);
      await client.put('/a/1', 'v2');
      assert.equal((await client.get('/a/1')).kvs[0]?.value.toString(), 'v2');
      // A create on the old stream is refused for the old token; the client reconnects.
      const second = client.watch('/a/2');
      await second.created;
      // The reconnection is reported to the watch already there, as retried (retryable).
      assert.ok(disconnections.length > 0);
      for (const err of disconnections) assert.equal(err.retryable, true, `${err.name}: ${err.message}`);
      const got = new Promise<string>((resolve) => second.once('event', (e) => resolve(e.kv.value.toString())));
      await client.put('/a/2', 'seen');
      assert.equal(await got, 'seen');
      w.cancel();
      second.cancel();
    });
  });
}
