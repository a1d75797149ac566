// The `etcd3` npm package (microsoft/etcd3, a widely used Node client on grpc-js) against a
// real etcd 3.4 and etcd-ts: the same steps through its API on each, every answer recorded
// (responses with their headers, values, watch events with revisions and prev_kv, lease TTLs,
// lock and election outcomes, the client's error classes and messages, auth with a user) and
// compared. Lease IDs, which the server picks, are replaced by their order of appearance.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Etcd3, type IKeyValue } from 'etcd3';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** JSON of `value` with lease IDs (decimal strings the server picked) replaced by their order. */
function stable(value: unknown, leases: Map<string, string>): string {
  return JSON.stringify(value, (key, v: unknown) => {
    if ((key === 'lease' || key === 'ID') && typeof v === 'string' && v !== '0') {
      if (!leases.has(v)) leases.set(v, `lease#${leases.size + 1}`);
      return leases.get(v);
    }
    return v;
  });
}

/** What a failed call shows a program: the client's error class and its message. */
async function failure(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'no error';
  } catch (err) {
    return `${(err as Error).constructor.name}: ${(err as Error).message}`;
  }
}

const until = async (done: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
};

async function scenario(server: ServerHandle): Promise<string[]> {
  const client = new Etcd3({ hosts: server.endpoint });
  const leases = new Map<string, string>();
  const seen: string[] = [];
  const record = (label: string, value: unknown): void => {
    seen.push(`${label}: ${stable(value, leases)}`);
  };
  try {
    // KV.
    record('put', await client.put('a').value('1').exec());
    record('put prev', await client.put('a').value('2').getPrevious());
    record('get', await client.get('a').exec());
    record('get missing', await client.get('missing').string());
    for (const k of ['p/1', 'p/2', 'p/3']) await client.put(k).value(`v-${k}`);
    record('prefix', await client.getAll().prefix('p/').strings());
    record('prefix sorted keys', await client.getAll().prefix('p/').sort('Key', 'Descend').limit(2).keys());
    record('count', await client.getAll().prefix('p/').count());
    record('at revision', await client.get('a').revision(2).string());
    record('delete', await client.delete().key('p/3').exec());
    record('txn', await client.if('a', 'Value', '==', '2').then(client.put('a').value('3')).else(client.get('a')).commit());
    record('txn else', await client.if('a', 'Version', '>', 10).then(client.put('a').value('4')).else(client.get('a')).commit());
    record('empty key', await failure(client.put('').value('x').exec()));
    record('compact a future revision', await failure(client.kv.compact({ revision: '1000' })));

    // A range end sent present but empty (this client's `Range` default): every key from the key
    // on where etcd serves the request without raft (Range, read-only Txn), a single key where
    // raft's encoding drops the field (a Txn with writes, DeleteRange).
    for (const k of ['e/1', 'e/2', 'e/3', 'f']) await client.put(k).value('e');
    const empty = Buffer.alloc(0);
    const keys = (r: { kvs: IKeyValue[] }): string[] => r.kvs.map((kv) => kv.key.toString());
    record('inRange', await client.getAll().inRange('e/1').keys());
    record('empty end range', keys(await client.kv.range({ key: Buffer.from('e/2'), range_end: empty })));
    record('empty end count', (await client.kv.range({ key: Buffer.from('e/25'), range_end: empty, count_only: true })).count);
    // e/1 holds 'e', and so do the keys up to f, but not the p/ keys after them.
    const compare = { key: Buffer.from('e/1'), range_end: empty, target: 'Value', result: 'Equal', value: Buffer.from('e') } as const;
    const read = { request_range: { key: Buffer.from('e/2'), range_end: empty } };
    const readOnly = await client.kv.txn({ compare: [compare], success: [read], failure: [read] });
    record('empty end read-only txn', { succeeded: readOnly.succeeded, keys: keys(readOnly.responses[0]!.response_range) });
    const put = { request_put: { key: Buffer.from('x'), value: Buffer.from('1') } };
    const writing = await client.kv.txn({ compare: [compare], success: [read, put], failure: [read, put] });
    record('empty end txn with a write', { succeeded: writing.succeeded, keys: keys(writing.responses[0]!.response_range) });
    record('empty end delete', (await client.kv.deleteRange({ key: Buffer.from('e/3'), range_end: empty })).deleted);

    // Watch: puts and deletes under a prefix, with prev_kv.
    const events: unknown[] = [];
    const watcher = await client.watch().prefix('w/').withPreviousKV().create();
    const event = (type: string) => (kv: IKeyValue, prev?: IKeyValue) => events.push({ type, kv, prev });
    watcher.on('put', event('put')).on('delete', event('delete'));
    await client.put('w/1').value('x');
    await client.put('w/1').value('y');
    await client.delete().key('w/1');
    await until(() => events.length === 3);
    await watcher.cancel();
    record('watch', events);

    // Leases.
    const lease = client.lease(60, { autoKeepAlive: false });
    await lease.put('leased').value('v');
    record('lease id', { ID: await lease.grant() });
    record('keepalive', await lease.keepaliveOnce());
    // The remaining TTL is whole seconds, truncated: 59 a moment after the keepalive.
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: await lease.grant(), keys: true });
    record('timetolive', { ...ttl, TTL: Number(ttl.TTL) >= 55 && Number(ttl.TTL) < 60 ? 'under 60' : ttl.TTL });
    await lease.revoke();
    record('after revoke', await client.get('leased').string());
    record('unknown lease', await failure(client.leaseClient.leaseRevoke({ ID: '12345' })));

    // Lock and election (their keys are made from lease IDs: only the outcomes are compared).
    record('lock', await client.lock('the-lock').do(async () => (await client.getAll().prefix('the-lock').count()) === 1));
    record('lock released', await client.getAll().prefix('the-lock').count());
    const election = client.election('the-election');
    const campaign = election.campaign('candidate-1');
    await new Promise<void>((resolve, reject) => campaign.on('elected', () => resolve()).on('error', reject));
    record('leader', await election.leader());
    await campaign.resign();

    // Auth: a root user, auth on, a client that authenticates, auth off again.
    await (await client.user('root').create('rootpw')).addRole('root');
    await client.auth.authEnable({});
    record('unauthenticated', await failure(client.get('a').string()));
    const root = new Etcd3({ hosts: server.endpoint, auth: { username: 'root', password: 'rootpw' } });
    try {
      record('as root', await root.get('a').string());
      record('wrong password', await failure(new Etcd3({ hosts: server.endpoint, auth: { username: 'root', password: 'no' } }).get('a').string()));
      await root.auth.authDisable({});
    } finally {
      root.close();
    }
    record('users', await client.getUsers().then((users) => users.map((u) => u.name)));
  } finally {
    client.close();
  }
  return seen;
}

describe('the etcd3 npm client: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('answers every call of the same steps alike', { timeout: 120_000 }, async (t) => {
    const answers: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind, flags: ['--bcrypt-cost', '4'] });
      answers.push(await scenario(server));
      await server.stop();
    }
    assert.ok(answers[0]!.some((line) => line.startsWith('watch: [{"type":"put"')), 'the watch saw events');
    assert.ok(answers[0]!.includes('empty end range: ["e/2","e/3","f","p/1","p/2"]'), 'an empty end read from the key on');
    assert.deepEqual(answers[1], answers[0]);
  });

  // On purpose unlike etcd, which checks such a read's permission for the single key only and
  // answers every key after it to a user who may read one (see empty-range-end.ts).
  it('etcd-ts checks the permission of the keys an empty range end reads', { timeout: 60_000 }, async (t) => {
    const server = await startServer(t, { kind: 'etcd-ts', flags: ['--bcrypt-cost', '4'] });
    const admin = new Etcd3({ hosts: server.endpoint });
    const alice = new Etcd3({ hosts: server.endpoint, auth: { username: 'alice', password: 'pw' } });
    try {
      for (const k of ['ro', 'rp', 'secret']) await admin.put(k).value(k);
      await (await admin.user('root').create('rootpw')).addRole('root');
      const role = await admin.role('reader').create();
      await role.grant({ permission: 'Read', range: admin.range('ro') });
      await (await admin.user('alice').create('pw')).addRole('reader');
      await admin.auth.authEnable({});
      const empty = Buffer.alloc(0);
      assert.deepEqual((await alice.kv.range({ key: Buffer.from('ro') })).kvs.map((kv) => kv.key.toString()), ['ro'], 'the single key is readable');
      assert.equal(await failure(alice.kv.range({ key: Buffer.from('ro'), range_end: empty })), 'EtcdPermissionDeniedError: 7 PERMISSION_DENIED: etcdserver: permission denied');
      assert.equal(await failure(alice.kv.txn({ compare: [], success: [{ request_range: { key: Buffer.from('ro'), range_end: empty } }] })), 'EtcdPermissionDeniedError: 7 PERMISSION_DENIED: etcdserver: permission denied');
    } finally {
      alice.close();
      admin.close();
      await server.stop();
    }
  });
});
