// etcd's Go client (clientv3 from Debian's golang-etcd-server-dev, the client Kubernetes' API
// server is built on) against a real etcd 3.4 and etcd-ts: test/compat/fixtures/clientv3-listwatch
// makes the calls k8s.io/apiserver's etcd3 store, watcher and compactor make (guarded creates,
// updates and deletes, paginated lists at one revision, a watch from the list's revision + 1
// with prev_kv, progress requests, leases, the compactor's claim and Compact, relist and
// rewatch after compaction, a resumed watch) and prints one line per step; the two outputs
// must be the same.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { etcdUnavailableReason, startServer } from '../helpers/servers.js';

const FIXTURE = 'test/compat/fixtures/clientv3-listwatch';
/** Where Debian's Go packages keep their sources; the fixture is built against them in GOPATH mode, offline. */
const GOPATH = '/usr/share/gocode';

/** Installs Go and etcd's client sources when missing and root; the reason to skip when they cannot be had. */
function goClientUnavailableReason(): string | undefined {
  const present = () => spawnSync('go', ['version']).status === 0 && existsSync(join(GOPATH, 'src/go.etcd.io/etcd/clientv3'));
  if (present()) return undefined;
  if (process.getuid?.() !== 0) return 'Go or clientv3 is missing and we are not root: apt-get install golang-go golang-etcd-server-dev';
  spawnSync('apt-get', ['install', '-y', 'golang-go', 'golang-etcd-server-dev'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return present() ? undefined : 'apt-get install golang-go golang-etcd-server-dev failed';
}

describe('Go clientv3, Kubernetes-style list and watch: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() ?? goClientUnavailableReason() }, () => {
  it('answers every step alike', { timeout: 300_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'clientv3-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const bin = join(dir, 'clientv3-listwatch');
    // The build cache outlives the test, so that later runs do not compile gRPC again.
    const env = { ...process.env, GO111MODULE: 'off', GOPATH, GOFLAGS: '', GOCACHE: join(tmpdir(), 'etcd-ts-gocache') };
    const build = spawnSync('go', ['build', '-o', bin, '.'], { cwd: FIXTURE, env, encoding: 'utf8', timeout: 240_000 });
    assert.equal(build.status, 0, build.stderr);

    const outputs: string[] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind });
      const { host } = new URL(server.endpoint);
      const r = spawnSync(bin, [host], { encoding: 'utf8', timeout: 90_000 });
      assert.equal(r.status, 0, `${kind}: ${r.stdout}${r.stderr}`);
      outputs.push(r.stdout);
      await server.stop();
    }
    assert.match(outputs[0]!, /^watch at compacted rev: err=etcdserver: mvcc: required revision has been compacted compact_revision=\d+ canceled=true/m, 'the steps reached the compaction');
    assert.match(outputs[0]!, /^progress: notify=true events=0 rev=\d+ not-before-last-event=true$/m, 'the progress request was answered');
    assert.equal(outputs[1], outputs[0]);
  });
});
