// python-etcd3 (Debian's python3-etcd3, the Python client on grpcio) against a real etcd 3.4
// and etcd-ts: test/compat/fixtures/python_etcd3_steps.py runs the same steps through its API
// on each server (KV, txn, compaction errors, watches, leases, a lock, members, status) and
// prints one line per step; the two outputs must be the same.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { etcdUnavailableReason, startServer } from '../helpers/servers.js';

/** Debian's Python, where python3-etcd3 is installed (a `python3` earlier on PATH may lack it). */
const PYTHON = '/usr/bin/python3';
const STEPS = 'test/compat/fixtures/python_etcd3_steps.py';

/** Installs python3-etcd3 when missing and root; the reason to skip when it cannot be had. */
function pythonEtcd3UnavailableReason(): string | undefined {
  const importable = () => existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import etcd3']).status === 0;
  if (importable()) return undefined;
  if (process.getuid?.() !== 0) return 'python3-etcd3 is not installed and we are not root: apt-get install python3-etcd3';
  spawnSync('apt-get', ['install', '-y', 'python3-etcd3'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return importable() ? undefined : 'apt-get install python3-etcd3 failed';
}

describe('python-etcd3: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() ?? pythonEtcd3UnavailableReason() }, () => {
  it('answers every step alike', { timeout: 120_000 }, async (t) => {
    const outputs: string[] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind });
      const { hostname, port } = new URL(server.endpoint);
      const r = spawnSync(PYTHON, [STEPS, hostname, port], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `${kind}: ${r.stderr}`);
      outputs.push(r.stdout);
      await server.stop();
    }
    assert.match(outputs[0]!, /^watch: \[\["PutEvent", "w\/1", "x", \d+\]/m, 'the watch saw the events');
    assert.equal(outputs[1], outputs[0]);
  });
});
