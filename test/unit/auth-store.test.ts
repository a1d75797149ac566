// The auth store (etcd auth/store.go, range_perm_cache.go, simple_token.go) on a real backend:
// permission coverage against a model of etcd's interval-tree check, user and role management
// with etcd's errors, simple tokens, passwords, and persistence across a reopen.
import { after, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { AuthStore, authChanges } from '../../src/auth/auth-store.js';
import { Backend } from '../../src/mvcc/backend.js';
import { Permission_Type, type Permission } from '../../src/proto/gen/auth.gen.js';
import type { RequestOp, TxnRequest } from '../../src/proto/gen/rpc.gen.js';
import { EtcdError } from '../../src/server/errors.js';

const dirs: string[] = [];
const backends: Backend[] = [];
after(async () => {
  for (const b of backends) await b.close().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function open(dir?: string): { auth: AuthStore; backend: Backend; dir: string } {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'auth-store-'));
  if (!dir) dirs.push(d);
  const backend = Backend.open(d);
  backends.push(backend);
  return { auth: new AuthStore(backend, { bcryptCost: 4 }), backend, dir: d };
}

const b = (s: string) => Buffer.from(s);
const perm = (permType: Permission_Type, key: string, rangeEnd = ''): Permission => ({ permType, key: b(key), rangeEnd: b(rangeEnd) });
/** A request from `username` with a token as fresh as the store ('' = no token). */
const from = (username: string) => ({ username, revision: username === '' ? 0 : Number.MAX_SAFE_INTEGER });
const alice = from('alice');

/** The etcd error a call throws, as its message text. */
function errorOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof EtcdError, `not an etcd error: ${String(err)}`);
    return err.details;
  }
}

/** An enabled store with root and `alice`, who has role `r` with `perms`. */
function withAlice(perms: readonly Permission[]): AuthStore {
  const { auth } = open();
  auth.userAdd('root', b('x'), false);
  auth.userGrantRole('root', 'root');
  auth.userAdd('alice', b('x'), false);
  auth.roleAdd('r');
  for (const p of perms) auth.roleGrantPermission('r', p);
  auth.userGrantRole('alice', 'r');
  auth.enable();
  return auth;
}

/**
 * The model: etcd's `IntervalTree.Contains` / `Intersects` over the permissions' intervals,
 * done naively: the intervals the request's interval meets by etcd's `Interval.Compare` (for a
 * range ending at or before its key, those that hold the key), in begin order, must chain
 * without a gap from at or before its start to at or past its end.
 */
function modelPermitted(perms: readonly Permission[], kind: 'read' | 'write', key: Buffer, rangeEnd: Buffer): boolean {
  // undefined is etcd's affine infinity.
  const cmp = (x: Buffer | undefined, y: Buffer | undefined) => (x === undefined ? (y === undefined ? 0 : 1) : y === undefined ? -1 : Buffer.compare(x, y));
  const ivs = perms
    .filter((p) => p.permType === Permission_Type.READWRITE || p.permType === (kind === 'read' ? Permission_Type.READ : Permission_Type.WRITE))
    .map((p) => ({
      begin: p.key,
      end: p.rangeEnd.length === 0 ? Buffer.concat([p.key, Buffer.from([0])]) : p.rangeEnd.length === 1 && p.rangeEnd[0] === 0 ? undefined : p.rangeEnd,
    }))
    .filter((iv) => cmp(iv.begin, iv.end) < 0);
  if (rangeEnd.length === 0) return ivs.some((iv) => cmp(iv.begin, key) <= 0 && cmp(key, iv.end) < 0);
  const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? undefined : rangeEnd;
  const meets = (iv: { begin: Buffer; end: Buffer | undefined }) => !(cmp(key, iv.begin) < 0 && cmp(end, iv.begin) <= 0) && cmp(key, iv.end) < 0;
  const hits = ivs.filter(meets).sort((x, y) => Buffer.compare(x.begin, y.begin));
  if (hits.length === 0) return false;
  let reach = hits[0]!.end;
  for (const iv of hits.slice(1)) {
    if (cmp(reach, iv.begin) < 0) return false;
    if (cmp(iv.end, reach) > 0) reach = iv.end;
  }
  return cmp(reach, end) >= 0 && cmp(hits[0]!.begin, key) <= 0;
}

describe('AuthStore permissions', () => {
  it('grants exactly what the merged permissions of the user\'s roles cover (model of etcd\'s interval tree)', () => {
    const keyArb = fc.stringMatching(/^[abc]{0,3}$/).map(b);
    const endArb = fc.oneof(keyArb, fc.constant(Buffer.from([0])), fc.constant(Buffer.alloc(0)));
    const permArb = fc.record({
      permType: fc.constantFrom(Permission_Type.READ, Permission_Type.WRITE, Permission_Type.READWRITE),
      key: keyArb,
      rangeEnd: endArb,
    });
    const auth = withAlice([]);
    fc.assert(
      fc.property(fc.array(permArb, { maxLength: 6 }), fc.array(fc.tuple(keyArb, endArb), { minLength: 1, maxLength: 10 }), (perms, requests) => {
        auth.roleDelete('r');
        auth.roleAdd('r');
        for (const p of perms) auth.roleGrantPermission('r', p);
        auth.userGrantRole('alice', 'r');
        // The permissions as the role holds them (which grants replace which is etcd's rule,
        // checked against etcd by test/compat/auth.compat.test.ts).
        const effective = auth.roleGet('r');
        for (const [key, rangeEnd] of requests) {
          const read = errorOf(() => auth.checkRange(alice, key, rangeEnd)) === undefined;
          const write = errorOf(() => auth.checkDeleteRange(alice, key, rangeEnd)) === undefined;
          assert.equal(read, modelPermitted(effective, 'read', key, rangeEnd), `read [${key}, ${rangeEnd.toString('hex')})`);
          assert.equal(write, modelPermitted(effective, 'write', key, rangeEnd), `write [${key}, ${rangeEnd.toString('hex')})`);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('checks nothing while disabled, then wants a user, and lets root do anything', () => {
    const { auth } = open();
    assert.equal(errorOf(() => auth.checkRange(from(''), b('k'), b(''))), undefined);
    auth.userAdd('root', b('x'), false);
    auth.userGrantRole('root', 'root');
    auth.enable();
    assert.equal(errorOf(() => auth.checkRange(from(''), b('k'), b(''))), 'etcdserver: user name is empty');
    assert.equal(errorOf(() => auth.checkPut(from('ghost'), b('k'))), 'etcdserver: permission denied');
    assert.equal(errorOf(() => auth.checkDeleteRange(from('root'), b(''), Buffer.from([0]))), undefined);
    assert.equal(errorOf(() => auth.checkAdmin(from(''))), 'etcdserver: user name is empty');
    assert.equal(errorOf(() => auth.checkAdmin(from('ghost'))), 'etcdserver: user name not found');
    auth.userAdd('bob', b('x'), false);
    assert.equal(errorOf(() => auth.checkAdmin(from('bob'))), 'etcdserver: permission denied');
    assert.equal(errorOf(() => auth.checkAdmin(from('root'))), undefined);
  });

  it('checks a txn\'s compares, ops and nested txns', () => {
    const auth = withAlice([perm(Permission_Type.READ, 'r', 's'), perm(Permission_Type.WRITE, 'w', 'x')]);
    const put = (key: string): RequestOp => ({ requestPut: { key: b(key), value: b(''), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } });
    const txn = (success: RequestOp[], compareKey = 'r1'): TxnRequest => ({
      compare: [{ result: 0, target: 0, key: b(compareKey), rangeEnd: b(''), version: 0n }],
      success,
      failure: [],
    });
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([put('w1')]))), undefined);
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([put('w1')], 'w1'))), 'etcdserver: permission denied');
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([put('r1')]))), 'etcdserver: permission denied');
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([{ requestTxn: txn([put('r1')]) }]))), 'etcdserver: permission denied');
    const del = (prevKv: boolean): RequestOp => ({ requestDeleteRange: { key: b('w1'), rangeEnd: b(''), prevKv } });
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([del(false)]))), undefined);
    assert.equal(errorOf(() => auth.checkTxn(alice, txn([del(true)]))), 'etcdserver: permission denied');
  });
});

describe('AuthStore users and roles', () => {
  it('answers etcd\'s errors and keeps roles and permissions sorted', () => {
    const { auth } = open();
    assert.equal(errorOf(() => auth.userAdd('', undefined, true)), 'etcdserver: user name is empty');
    auth.userAdd('zed', b('h'), false);
    auth.userAdd('amy', b('h'), false);
    assert.equal(errorOf(() => auth.userAdd('amy', b('h'), false)), 'etcdserver: user name already exists');
    assert.deepEqual(auth.userList(), ['amy', 'zed']);
    assert.equal(errorOf(() => auth.userGet('nobody')), 'etcdserver: user name not found');
    assert.equal(errorOf(() => auth.roleAdd('')), 'etcdserver: role name is empty');
    auth.roleAdd('w');
    auth.roleAdd('b');
    assert.equal(errorOf(() => auth.roleAdd('b')), 'etcdserver: role name already exists');
    assert.deepEqual(auth.roleList(), ['b', 'w']);
    assert.equal(errorOf(() => auth.userGrantRole('amy', 'nope')), 'etcdserver: role name not found');
    auth.userGrantRole('amy', 'w');
    auth.userGrantRole('amy', 'b');
    auth.userGrantRole('amy', 'b');
    auth.userGrantRole('amy', 'root'); // the root role needs not exist
    assert.deepEqual(auth.userGet('amy'), ['b', 'root', 'w']);
    assert.equal(errorOf(() => auth.userRevokeRole('amy', 'x')), 'etcdserver: role is not granted to the user');
    auth.roleGrantPermission('w', perm(Permission_Type.READ, 'm', 'n'));
    auth.roleGrantPermission('w', perm(Permission_Type.READ, 'a'));
    auth.roleGrantPermission('w', perm(Permission_Type.WRITE, 'm', 'n'));
    assert.deepEqual(auth.roleGet('w'), [perm(Permission_Type.READ, 'a'), perm(Permission_Type.WRITE, 'm', 'n')]);
    assert.equal(errorOf(() => auth.roleRevokePermission('w', b('m'), b(''))), 'etcdserver: permission is not granted to the role');
    auth.roleRevokePermission('w', b('m'), b('n'));
    assert.deepEqual(auth.roleGet('w'), [perm(Permission_Type.READ, 'a')]);
    // A grant that carries no permission (etcd 3.4 crashes on it) gets etcd 3.5's answer.
    assert.equal(errorOf(() => authChanges(auth).roleGrantPermission({ name: 'w', perm: undefined })), 'etcdserver: permission not given');
    assert.deepEqual(auth.roleGet('w'), [perm(Permission_Type.READ, 'a')]);
    auth.roleDelete('w');
    assert.deepEqual(auth.userGet('amy'), ['b', 'root']);
    assert.equal(errorOf(() => auth.roleGet('w')), 'etcdserver: role name not found');
  });

  it('guards root while enabled and refuses to enable without it', () => {
    const { auth } = open();
    assert.equal(errorOf(() => auth.enable()), 'etcdserver: root user does not exist');
    auth.userAdd('root', b('h'), false);
    assert.equal(errorOf(() => auth.enable()), 'etcdserver: root user does not have root role');
    auth.roleAdd('root');
    auth.userGrantRole('root', 'root');
    auth.enable();
    auth.enable();
    assert.equal(errorOf(() => auth.userDelete('root')), 'etcdserver: invalid auth management');
    assert.equal(errorOf(() => auth.userRevokeRole('root', 'root')), 'etcdserver: invalid auth management');
    assert.equal(errorOf(() => auth.roleDelete('root')), 'etcdserver: invalid auth management');
    auth.disable();
    auth.userRevokeRole('root', 'root');
    auth.roleDelete('root');
    auth.userDelete('root');
    assert.deepEqual(auth.userList(), []);
  });

  it('keeps users, roles and the enabled flag across a reopen, and no token', async () => {
    const first = open();
    first.auth.userAdd('root', b('h'), false);
    first.auth.userGrantRole('root', 'root');
    first.auth.roleAdd('r');
    first.auth.roleGrantPermission('r', perm(Permission_Type.READWRITE, 'p', 'q'));
    first.auth.userAdd('alice', b('h'), false);
    first.auth.userGrantRole('alice', 'r');
    first.auth.enable();
    const token = first.auth.authenticate('alice', 7n);
    await first.backend.durable();
    first.auth.close();
    await first.backend.close();
    const again = open(first.dir);
    assert.equal(again.auth.enabled, true);
    assert.deepEqual(again.auth.userList(), ['alice', 'root']);
    assert.deepEqual(again.auth.roleGet('r'), [perm(Permission_Type.READWRITE, 'p', 'q')]);
    assert.equal(errorOf(() => again.auth.checkPut(alice, b('p1'))), undefined);
    assert.equal(errorOf(() => again.auth.checkPut(alice, b('q'))), 'etcdserver: permission denied');
    assert.equal(errorOf(() => again.auth.authInfo({ get: (k) => (k === 'token' ? [token] : []) })), 'etcdserver: invalid auth token');
    again.auth.close();
  });
});

describe('AuthStore passwords and tokens', () => {
  const md = (token: string) => ({ get: (k: string) => (k === 'token' ? [token] : []) });

  it('checks passwords with bcrypt and answers etcd\'s errors', async () => {
    const { auth } = open();
    const reject = async (p: Promise<void>) => {
      try {
        await p;
      } catch (err) {
        return (err as EtcdError).details;
      }
      return undefined;
    };
    auth.userAdd('root', await auth.hashPassword('pw'), false);
    assert.equal(await reject(auth.checkPassword('root', 'pw')), 'etcdserver: authentication is not enabled');
    auth.userGrantRole('root', 'root');
    auth.userAdd('nopw', undefined, true);
    auth.enable();
    assert.equal(await reject(auth.checkPassword('root', 'pw')), undefined);
    assert.equal(await reject(auth.checkPassword('root', 'pW')), 'etcdserver: authentication failed, invalid user ID or password');
    assert.equal(await reject(auth.checkPassword('ghost', 'pw')), 'etcdserver: authentication failed, invalid user ID or password');
    assert.equal(await reject(auth.checkPassword('nopw', '')), 'auth: authentication failed, password was given for no password user');
  });

  it('gives simple tokens and forgets them on disable, user deletion, password change and expiry', () => {
    mock.timers.enable({ apis: ['Date', 'setInterval'] });
    try {
      const auth = withAlice([]);
      const t1 = auth.authenticate('alice', 42n);
      assert.match(t1, /^[a-zA-Z]{16}\.42$/);
      assert.deepEqual(auth.authInfo(md(t1)), { username: 'alice', revision: auth.revision });
      assert.deepEqual(auth.authInfo({ get: (k) => (k === 'authorization' ? [t1] : []) }), { username: 'alice', revision: auth.revision });
      assert.deepEqual(auth.authInfo({ get: () => [] }), { username: '', revision: 0 });
      assert.equal(errorOf(() => auth.authInfo(md('abcdefghijklmnop.42'))), 'etcdserver: invalid auth token');
      // Each use restarts the 300 s lifetime.
      mock.timers.tick(299_000);
      assert.deepEqual(auth.authInfo(md(t1)), { username: 'alice', revision: auth.revision });
      mock.timers.tick(299_000);
      assert.deepEqual(auth.authInfo(md(t1)), { username: 'alice', revision: auth.revision });
      mock.timers.tick(301_000);
      assert.equal(errorOf(() => auth.authInfo(md(t1))), 'etcdserver: invalid auth token');
      const t2 = auth.authenticate('alice', 43n);
      auth.userChangePassword('alice', b('new'));
      assert.equal(errorOf(() => auth.authInfo(md(t2))), 'etcdserver: invalid auth token');
      const t3 = auth.authenticate('alice', 44n);
      const root = auth.authenticate('root', 45n);
      auth.disable();
      assert.equal(errorOf(() => auth.authInfo(md(t3))), 'etcdserver: invalid auth token');
      assert.equal(errorOf(() => auth.authInfo(md(root))), 'etcdserver: invalid auth token');
      assert.equal(errorOf(() => auth.authenticate('alice', 46n)), 'etcdserver: authentication is not enabled');
      auth.enable();
      const t4 = auth.authenticate('alice', 47n);
      auth.userDelete('alice');
      assert.equal(errorOf(() => auth.authInfo(md(t4))), 'etcdserver: invalid auth token');
      auth.close();
    } finally {
      mock.timers.reset();
    }
  });
});
