// etcd's configuration file (`--config-file`) against a real etcd 3.4: the same file starts
// both servers, whose flags are then ignored (a --name and a --max-txn-ops on the command line
// must not win); and files etcd refuses are refused by etcd-ts with the same exit status and message (what
// etcd prints after "error verifying flags, "), except for YAML syntax errors, whose
// description is the YAML parser's own.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { etcdctl, txnInput } from '../helpers/etcdctl.js';
import { refusal } from '../helpers/refusals.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** What a server shows of the settings the file gave it. */
async function observe(server: ServerHandle): Promise<string[]> {
  const members = await etcdctl(server.endpoint, ['member', 'list', '-w', 'json']);
  const txn = await etcdctl(server.endpoint, ['txn', '-i'], { stdin: txnInput([], ['put a 1', 'put b 2', 'put c 3', 'put d 4'], []) });
  const fewer = await etcdctl(server.endpoint, ['txn', '-i'], { stdin: txnInput([], ['put a 1', 'put b 2', 'put c 3'], []) });
  const gateway = await fetch(new URL('/v3/kv/range', server.endpoint), { method: 'POST', body: '{"key":"YQ=="}' });
  return [
    members.stdout.replace(/"raft_term":\d+/, '').replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<port>'),
    txn.stderr.trim().split('\n').at(-1) ?? '',
    fewer.stdout,
    `gateway ${gateway.status}`,
  ];
}

describe('--config-file: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('both take their settings from the file, not from the flags', { timeout: 60_000 }, async (t) => {
    const answers: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, {
        kind,
        configFile: { name: 'from-file', 'max-txn-ops': 3, 'enable-grpc-gateway': false, 'backend-batch-interval': 50_000_000 },
        flags: ['--name', 'from-flag', '--max-txn-ops', '100'],
      });
      answers.push(await observe(server));
      await server.stop();
    }
    assert.match(answers[0]![0]!, /"name":"from-file"/);
    assert.deepEqual(answers[1], answers[0]);
  });

  it('both refuse the same files with the same exit status and reason', { timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'config-file-compat-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const files = [
      'backend-batch-interval: 100ms',
      'max-txn-ops: "5"',
      'max-txn-ops: -1',
      'quota-backend-bytes: 1.5',
      'auto-compaction-retention: 1',
      'cipher-suites: TLS_RSA_WITH_AES_128_CBC_SHA',
      'enable-grpc-gateway: "true"',
      'client-transport-security:\n  client-cert-auth: 1',
      'client-transport-security: yes',
      'name: 7\nbcrypt-cost: x',
      'proxy-read-timeout: x',
    ];
    for (const [i, yaml] of files.entries()) {
      const file = join(dir, `bad-${i}.yml`);
      writeFileSync(file, `${yaml}\n`);
      const etcd = await refusal('etcd', ['--config-file', file]);
      assert.notEqual(etcd.status, 0, `etcd started with ${yaml}`);
      assert.deepEqual(await refusal('etcd-ts', ['--config-file', file]), etcd, yaml);
    }
    const missing = ['--config-file', join(dir, 'missing.yml')];
    assert.deepEqual(await refusal('etcd-ts', missing), await refusal('etcd', missing));
  });
});
