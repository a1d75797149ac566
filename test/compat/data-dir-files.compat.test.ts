// The data dir on disk, etcd 3.4 against etcd-ts.
//
// File modes: etcd makes every file of its data dir 0600 and every directory 0700; so must we
// (LMDB's own files included), whatever the layout inside.
//
// A damaged write-ahead log: both run with --backend-batch-interval 1h,
// so that 20 acknowledged puts are only in the log when they are killed with SIGKILL. A byte of
// the 10th put's key is then flipped in the log. etcd refuses to start (its WAL decoder
// fails, exit 1) rather than come up without the writes after the damage; so must we. With the
// byte put back, both start and serve every put: the kill alone lost nothing.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerKind } from '../helpers/servers.js';

const PUTS = 20;

/** The log file written last: etcd's newest `.wal`, our one segment. */
function logFile(dataDir: string, kind: ServerKind): string {
  const dir = join(dataDir, 'member', 'wal');
  const names = readdirSync(dir).filter((n) => n.endsWith(kind === 'etcd' ? '.wal' : '.log')).sort();
  return join(dir, names.at(-1)!);
}

/** Every file and directory under `dir` with its permission bits, as `path mode` lines. */
function modes(dir: string, under = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, under), { withFileTypes: true })) {
    const rel = join(under, entry.name);
    out.push(`${entry.isDirectory() ? 'dir' : 'file'} ${(statSync(join(dir, rel)).mode & 0o777).toString(8)}`);
    if (entry.isDirectory()) out.push(...modes(dir, rel));
  }
  return out;
}

describe('the data dir on disk: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('every file is 0600 and every directory 0700, after writes and a defragmentation', async (t) => {
    const seen: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind });
      for (const args of [['put', 'a', '1'], ['defrag']]) assert.equal((await etcdctl(server.endpoint, args)).code, 0);
      seen.push([...new Set(modes(server.dataDir))].sort());
    }
    assert.deepEqual(seen[1], seen[0]);
    assert.deepEqual(seen[0], ['dir 700', 'file 600']);
  });

  for (const kind of ['etcd', 'etcd-ts'] as const) {
    it(`${kind} refuses to start without the writes after the damage, and starts with all of them once it is mended`, async (t) => {
      const server = await startServer(t, { kind, flags: ['--backend-batch-interval', '1h'] });
      for (let i = 1; i <= PUTS; i++) assert.equal((await etcdctl(server.endpoint, ['put', `lag${i}`, `v${i}`])).code, 0);
      await server.kill9();
      const file = logFile(server.dataDir, kind);
      const original = readFileSync(file);
      // A byte of the 10th put's key, in the middle of the log (etcd's record padding is not checked).
      const at = original.indexOf('lag10');
      assert.ok(at > 0);
      const damaged = Buffer.from(original);
      damaged[at + 1] = damaged[at + 1]! ^ 0x10;
      writeFileSync(file, damaged);

      await assert.rejects(server.restart(), (err: Error) => {
        assert.match(err.message, /exited \(1\) before ready/);
        assert.match(err.message, /C \| etcdmain: /);
        if (kind === 'etcd-ts') assert.match(err.message, /C \| etcdmain: walpb: crc mismatch/);
        return true;
      });

      writeFileSync(file, original);
      await server.restart();
      const got = await etcdctl(server.endpoint, ['get', 'lag', '--prefix', '--keys-only']);
      assert.equal(got.stdout.split('\n').filter((l) => l.startsWith('lag')).length, PUTS);
    });
  }
});
