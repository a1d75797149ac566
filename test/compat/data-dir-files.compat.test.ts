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
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { etcdctl } from '../helpers/etcdctl.js';
import { ETCD_BIN, etcdUnavailableReason, freePort, startServer, type ServerKind } from '../helpers/servers.js';

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

/** Why the data-dir access test cannot run here: it runs the servers as `nobody`, which only root can. */
function asNobodyUnavailable(bin: string): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to run the servers as nobody';
  if (spawnSync('runuser', ['-u', 'nobody', '--', 'test', '-r', bin]).status !== 0) return `nobody cannot read ${bin}`;
  return undefined;
}
const BIN = resolve('bin/etcd-ts.js');

describe('the data dir on disk: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('a data dir it cannot write to is refused in etcd\'s words (cannot access data directory)', { skip: asNobodyUnavailable(BIN) }, async (t) => {
    const parent = mkdtempSync(join(tmpdir(), 'data-dir-access-'));
    t.after(() => rmSync(parent, { recursive: true, force: true }));
    chmodSync(parent, 0o755);
    mkdirSync(join(parent, 'existing'), { mode: 0o755 });
    const url = `http://127.0.0.1:${await freePort()}`;
    const peer = `http://127.0.0.1:${await freePort()}`;
    const fatal = (cmd: string[], dir: string): string => {
      const r = spawnSync('runuser', ['-u', 'nobody', '--', ...cmd, '--data-dir', dir, '--listen-client-urls', url, '--advertise-client-urls', url, '--listen-peer-urls', peer], { timeout: 20_000 });
      return `${r.status} ${(/ C \| .*/.exec(r.stderr.toString())?.[0] ?? r.stderr.toString()).trim()}`;
    };
    for (const dir of [join(parent, 'existing'), join(parent, 'new')]) {
      const etcd = fatal([ETCD_BIN], dir);
      assert.match(etcd, /^1 C \| etcdmain: cannot access data directory: /);
      assert.equal(fatal([process.execPath, BIN], dir), etcd);
    }
  });

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
