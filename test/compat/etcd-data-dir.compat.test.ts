// etcd-ts started on a real etcd 3.4's data dir, against etcd restarted on the same data dir.
// etcd runs with --backend-batch-interval 1h, so that what follows its last forced commit
// (a compaction commits at once) is only in its write-ahead log when it is killed with
// SIGKILL: writes, a txn, a lease revoke, a user and a role, writes as users, one of them
// refused. Two copies of the data dir are then started, one by etcd and one by
// etcd-ts; both must show the same keys with their revisions, the compaction, leases, users,
// roles, the raft index and term, accept the replayed users' passwords and a simple token
// given before the kill, and go on with the same next revision. Before that, while etcd still runs, etcd-ts must refuse its data dir.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { Backend } from '../../src/mvcc/backend.js';
import { revToBytes } from '../../src/mvcc/revision.js';
import { marshalKeyValue } from '../../src/proto/wire.js';
import { etcdctl, txnInput } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

const ROOT = ['--user', 'root:rootpw'];
const BIN = resolve('bin/etcd-ts.js');
const execFileAsync = promisify(execFile);

/** etcdctl against `endpoint`, failing the test on an error exit. */
async function ctl(endpoint: string, args: string[], input?: string): Promise<string> {
  const r = await etcdctl(endpoint, args, { stdin: input });
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** etcdctl's last line on stderr (an error), or stdout on success. */
async function outcome(endpoint: string, args: string[]): Promise<string> {
  const r = await etcdctl(endpoint, args);
  return r.code === 0 ? r.stdout : (r.stderr.trim().split('\n').at(-1) ?? '');
}

/** Everything compared between etcd and etcd-ts started on copies of one data dir; `token`: alice's, from before the kill. */
async function observe(server: ServerHandle, token: string): Promise<string[]> {
  const e = server.endpoint;
  const withToken = await fetch(new URL('/v3/kv/range', e), { method: 'POST', headers: { Authorization: token }, body: JSON.stringify({ key: Buffer.from('k6').toString('base64') }) });
  const ranged = (await withToken.json()) as { kvs?: { value: string }[]; error?: string };
  const status = JSON.parse(await ctl(e, ['endpoint', 'status', '-w', 'json', ...ROOT])) as { Status: { header: { revision: number; raft_term: number }; raftIndex: number; raftTerm: number } }[];
  const { header, raftIndex, raftTerm } = status[0]!.Status;
  return [
    `revision ${header.revision} header term ${header.raft_term} raft index ${raftIndex} term ${raftTerm}`,
    await ctl(e, ['get', '', '--from-key', '-w', 'json', ...ROOT]),
    await outcome(e, ['get', 'k1', '--rev', '3', ...ROOT]),
    await ctl(e, ['lease', 'list', ...ROOT]),
    await ctl(e, ['lease', 'timetolive', '1234', '--keys', ...ROOT]).then((s) => s.replace(/remaining\(\d+s\)/, 'remaining(Ns)')),
    await ctl(e, ['user', 'list', ...ROOT]),
    await ctl(e, ['user', 'get', 'alice', ...ROOT]),
    await ctl(e, ['role', 'get', 'writer', ...ROOT]),
    // The passwords etcd logged in clear and hashed when applying: etcd-ts hashed them too.
    await outcome(e, ['get', 'k', '--prefix', '--keys-only', '--user', 'alice:alicepw']),
    await outcome(e, ['get', 'k1', '--user', 'alice:wrong']),
    `token ${withToken.status} ${JSON.stringify(ranged.kvs?.map((kv) => kv.value) ?? ranged.error)}`,
    await ctl(e, ['put', 'after', 'start', '-w', 'json', ...ROOT]),
  ];
}

/**
 * Leaves in `dataDir` what an import a crash cut short would have committed: etcd-ts's store
 * without its `consistent_index`, holding records etcd's database does not have (a key at
 * revision 100, a lease, a compaction state).
 */
async function plantCutImport(dataDir: string): Promise<void> {
  const backend = Backend.open(dataDir);
  const key = Buffer.from('stray');
  backend.put('key', revToBytes({ main: 100, sub: 0 }), marshalKeyValue({ key, value: key, createRevision: 100n, modRevision: 100n, version: 1n, lease: 0n }));
  backend.put('lease', Buffer.from('stray-lease'), Buffer.from('x'));
  backend.putMeta('finishedCompactRev', 50);
  await backend.forceCommit();
  await backend.close();
}

describe('an etcd 3.4 data dir: etcd vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it("etcd-ts applies what etcd's write-ahead log holds beyond its database, as etcd does on restart", { timeout: 120_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'etcd-data-dir-compat-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const etcd = await startServer(t, { kind: 'etcd', flags: ['--backend-batch-interval', '1h', '--bcrypt-cost', '4'] });
    const e = etcd.endpoint;
    // Leases with chosen IDs (etcdctl takes them in hex: 1234 and 5678).
    for (const [id, ttl] of [[0x1234, 3600], [0x5678, 3600]]) {
      const grant = await fetch(new URL('/v3/lease/grant', e), { method: 'POST', body: JSON.stringify({ TTL: ttl, ID: id }) });
      assert.equal(grant.status, 200, await grant.text());
    }
    for (let k = 0; k < 6; k++) await ctl(e, ['put', `k${k}`, `v${k}`]);
    // Enabling auth and compacting commit etcd's database at once; after them, nothing more
    // reaches it until etcd is killed.
    await ctl(e, ['user', 'add', 'root:rootpw']);
    await ctl(e, ['auth', 'enable']);
    await ctl(e, ['compaction', '4', ...ROOT]);
    await ctl(e, ['put', 'k1', 'again', ...ROOT]);
    await ctl(e, ['del', 'k2', ...ROOT]);
    await ctl(e, ['txn', '-i', ...ROOT], txnInput(['value("k3") = "v3"'], ['put k4 "from-txn"', 'del k5'], []));
    await ctl(e, ['put', 'leased', 'v', '--lease=1234', ...ROOT]);
    await ctl(e, ['put', 'gone-with-lease', 'v', '--lease=5678', ...ROOT]);
    await ctl(e, ['lease', 'revoke', '5678', ...ROOT]);
    await ctl(e, ['user', 'add', 'alice:alicepw', ...ROOT]);
    await ctl(e, ['role', 'add', 'writer', ...ROOT]);
    await ctl(e, ['role', 'grant-permission', 'writer', 'readwrite', 'k', '--prefix', ...ROOT]);
    await ctl(e, ['user', 'grant-role', 'alice', 'writer', ...ROOT]);
    await ctl(e, ['put', 'k6', 'by-alice', '--user', 'alice:alicepw']);
    const authenticated = await fetch(new URL('/v3/auth/authenticate', e), { method: 'POST', body: JSON.stringify({ name: 'alice', password: 'alicepw' }) });
    const { token } = (await authenticated.json()) as { token: string };
    assert.match(token, /^[a-zA-Z]{16}\.\d+$/);
    assert.match(await outcome(e, ['put', 'z', 'denied', '--user', 'alice:alicepw']), /permission denied/);
    await ctl(e, ['put', 'last', 'by-root', ...ROOT]);
    // While etcd runs, etcd-ts refuses its data dir and leaves it as it was.
    const refused = await execFileAsync(process.execPath, [BIN, '--data-dir', etcd.dataDir, '--listen-client-urls', 'http://127.0.0.1:0', '--advertise-client-urls', 'http://127.0.0.1:0', '--listen-peer-urls', 'http://127.0.0.1:0']).then(
      () => assert.fail('etcd-ts started on a running etcd\'s data dir'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is in use by etcd \(it holds a lock on [^)]+\); stop it first/);
    assert.equal(existsSync(join(etcd.dataDir, 'member', 'db')), false);
    await etcd.kill9();

    // The database alone stops at the compaction's commit (revision 7, k5's): the rest is only in the log.
    const db = JSON.parse((await etcdctl('127.0.0.1:1', ['snapshot', 'status', join(etcd.dataDir, 'member', 'snap', 'db'), '-w', 'json'])).stdout) as { revision: number };
    assert.equal(db.revision, 7);

    const answers: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts', 'etcd-ts after a cut import'] as const) {
      const copy = join(dir, kind);
      await cp(etcd.dataDir, copy, { recursive: true });
      if (kind === 'etcd-ts after a cut import') await plantCutImport(copy);
      const server = await startServer(t, { kind: kind === 'etcd' ? 'etcd' : 'etcd-ts', flags: ['--data-dir', copy, '--bcrypt-cost', '4'] });
      answers.push(await observe(server, token));
      await server.stop();
    }
    assert.match(answers[0]![1]!, /"key":"bGFzdA=="/, 'etcd applied its log: the last put is there');
    assert.equal(answers[0]![10], `token 200 ["${Buffer.from('by-alice').toString('base64')}"]`, "etcd's restart gave the token again");
    assert.deepEqual(answers[1], answers[0]);
    assert.deepEqual(answers[2], answers[0], 'what the cut import had committed is gone: the import was made again');
  });
});
