/**
 * The etcd-ts command as an operator meets it: data-dir ownership, clean shutdown on signals,
 * unknown and cluster-only flags.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '../../src/client/client.js';
import { usage, usageSummary } from '../../src/cli/flags.js';
import { Backend } from '../../src/mvcc/backend.js';
import { SERVER_VERSION } from '../../src/version.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdTsUnavailableReason, freePort } from '../helpers/servers.js';

const BIN = path.resolve('bin/etcd-ts.js');

interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The exit code, or the signal the process died of. */
  exited: Promise<number | NodeJS.Signals | null>;
}

/** Starts `node [nodeArgs] bin/etcd-ts.js [args]`, killed when the test ends. */
function run(t: TestContext, args: string[], nodeArgs: string[] = []): Proc {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  t.after(() => {
    child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function ready(p: Proc): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!p.stderr().includes('ready to serve client requests')) {
    if (p.child.exitCode !== null) throw new Error(`exited early: ${p.stderr()}`);
    if (Date.now() > deadline) throw new Error(`not ready: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function serverArgs(dir: string): Promise<{ args: string[]; url: string }> {
  const url = `http://127.0.0.1:${await freePort()}`;
  return { url, args: ['--data-dir', dir, '--listen-client-urls', url, '--advertise-client-urls', url, '--listen-peer-urls', `http://127.0.0.1:${await freePort()}`] };
}

/** Connects to `url`'s port on 127.0.0.1, retrying every 5 ms up to `tries` times; undefined if it never accepts. */
async function connectWhenListening(url: string, tries: number): Promise<net.Socket | undefined> {
  const port = Number(new URL(url).port);
  for (let i = 0; i < tries; i++) {
    const socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket !== undefined) return socket;
    await sleep(5);
  }
  return undefined;
}

const skip = etcdTsUnavailableReason();

test('a second server on the same data dir refuses to start; SIGUSR1 and SIGUSR2 are ignored; SIGTERM shuts down cleanly, keeps data, and ends the process by the signal as etcd', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await serverArgs(dir);
  const a = run(t, first.args);
  await ready(a);
  assert.equal((await etcdctl(first.url, ['put', 'k', 'v'])).stdout, 'OK\n');

  const second = run(t, (await serverArgs(dir)).args);
  assert.equal(await second.exited, 1);
  assert.match(second.stderr(), /in use by another etcd-ts process/);

  // SIGUSR1 and SIGUSR2 are ignored, as etcd ignores them (Node would open its inspector, or die).
  a.child.kill('SIGUSR1');
  a.child.kill('SIGUSR2');
  assert.equal((await etcdctl(first.url, ['get', 'k', '--print-value-only'])).stdout, 'v\n');
  assert.doesNotMatch(a.stderr(), /Debugger listening/);

  a.child.kill('SIGTERM');
  assert.equal(await a.exited, 'SIGTERM', a.stderr());
  assert.match(a.stderr(), /received terminated signal, shutting down/);
  assert.equal(fs.existsSync(path.join(dir, 'member', 'etcd-ts.lock')), false, 'lock released');

  const again = run(t, first.args);
  await ready(again);
  assert.equal((await etcdctl(first.url, ['get', 'k', '--print-value-only'])).stdout, 'v\n');
  again.child.kill('SIGINT');
  assert.equal(await again.exited, 'SIGINT');
});

const hasIpv6 = Object.values(os.networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));

test('a client URL on 0.0.0.0 takes IPv6 clients too, as Go listens there (one dual-stack socket)', { skip: skip ?? (hasIpv6 ? undefined : 'no IPv6 loopback') }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const p = run(t, ['--data-dir', dir, '--listen-client-urls', `http://0.0.0.0:${port}`, '--advertise-client-urls', `http://127.0.0.1:${port}`, '--listen-peer-urls', `http://127.0.0.1:${await freePort()}`]);
  await ready(p);
  assert.equal((await etcdctl(`http://[::1]:${port}`, ['put', 'k', 'v'])).stdout, 'OK\n');
  assert.equal((await etcdctl(`http://127.0.0.1:${port}`, ['get', 'k', '--print-value-only'])).stdout, 'v\n');
  assert.match(p.stderr(), new RegExp(`serving insecure client requests on \\[::\\]:${port},`));
});

test("--quota-backend-bytes off (negative) or over etcd's recommended maximum is warned about as etcd does (etcd 3.4's lines, measured)", { skip }, async (t) => {
  for (const [quota, line] of [
    ['-1', 'W | etcdserver: disabling backend quota\n'],
    ['10000000000', 'W | etcdserver: backend quota 10000000000 exceeds maximum recommended quota 8589934592\n'],
  ] as const) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const p = run(t, [...(await serverArgs(dir)).args, '--quota-backend-bytes', quota]);
    await ready(p);
    assert.ok(p.stderr().includes(line), p.stderr());
    p.child.kill('SIGTERM');
    await p.exited;
  }
});

test('the client URL takes connections before the server has loaded and made its data dir, as etcd binds first: one made then is served once it is ready', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-early-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(path.join(dir, 'data'));
  const p = run(t, args);
  const socket = await connectWhenListening(url, 400);
  assert.ok(socket, 'the client URL never accepted a connection');
  // Taken before the server's modules loaded and its data dir was made.
  assert.equal(fs.existsSync(path.join(dir, 'data', 'member')), false, p.stderr());
  assert.equal(p.stderr().includes('ready to serve client requests'), false);
  const answer = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString()));
    socket.on('close', () => resolve(got));
  });
  socket.end('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  assert.match(await answer, /^HTTP\/1\.1 200 OK[\s\S]*"health":"true"/);
  await ready(p);
});

test("after a kill -9, calls made while the server has not restored its store yet wait for it: the data written before, not a refusal nor an empty answer; /health answers once it is ready, as etcd's", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-early-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'data');
  const { args, url } = await serverArgs(dataDir);
  const first = run(t, args);
  await ready(first);
  const writer = new Client({ endpoints: [url] });
  for (let i = 0; i < 200; i++) await writer.put(`early/${i}`, `v${i}`);
  writer.close();
  first.child.kill('SIGKILL');
  await first.exited;

  // The restarted server's log goes to a FIFO, whose opening blocks it (before it opens its data
  // dir) until this test reads it: the listeners must take connections meanwhile.
  const fifo = path.join(dir, 'log.fifo');
  const mkfifo = spawnSync('mkfifo', [fifo]);
  if (mkfifo.status !== 0) return t.skip(`mkfifo: ${mkfifo.stderr?.toString()}`);
  const p = run(t, [...args, '--logger', 'zap', '--log-outputs', fifo]);
  const socket = await connectWhenListening(url, 2000);
  assert.ok(socket, 'the client URL never accepted a connection while the server waited for its log');
  const lock = path.join(dataDir, 'member', 'etcd-ts.lock');
  assert.notEqual(fs.readFileSync(lock, 'utf8'), String(p.child.pid), 'the store was not opened yet');
  const health = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString()));
    socket.on('close', () => resolve(got));
  });
  socket.end('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  const reader = new Client({ endpoints: [url], timeoutMs: 20_000 });
  t.after(() => reader.close());
  const read = reader.get('early/', { prefix: true });
  let settled = false;
  void Promise.allSettled([read, health]).then(() => (settled = true));
  await sleep(200);
  assert.equal(settled, false, 'answered before the server had its store');

  let log = '';
  fs.createReadStream(fifo).on('data', (c) => (log += c.toString()));
  const { kvs } = await read;
  assert.equal(kvs.length, 200);
  assert.equal(kvs.find((kv) => kv.key.toString() === 'early/199')?.value.toString(), 'v199');
  assert.match(await health, /^HTTP\/1\.1 200 OK[\s\S]*"health":"true"/);
  assert.match(log, /ready to serve client requests/);
  assert.equal(fs.readFileSync(lock, 'utf8'), String(p.child.pid));
});

test('a client or peer URL whose port is taken is refused with Go\'s words before the data dir is made, as etcd does (exit 1)', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const holder = net.createServer();
  const port = await new Promise<number>((resolve) => holder.listen(0, '127.0.0.1', () => resolve((holder.address() as net.AddressInfo).port)));
  t.after(() => holder.close());
  const dataDir = path.join(dir, 'data');
  const client = `http://127.0.0.1:${await freePort()}`;
  for (const host of ['127.0.0.1', 'localhost']) {
    const taken = `http://${host}:${port}`;
    for (const args of [
      ['--listen-client-urls', taken, '--advertise-client-urls', `http://127.0.0.1:${port}`, '--listen-peer-urls', `http://127.0.0.1:${await freePort()}`],
      ['--listen-client-urls', client, '--advertise-client-urls', client, '--listen-peer-urls', taken],
    ]) {
      const p = run(t, ['--data-dir', dataDir, ...args]);
      assert.equal(await p.exited, 1);
      assert.match(p.stderr(), new RegExp(`C \\| etcdmain: listen tcp 127\\.0\\.0\\.1:${port}: bind: address already in use\n`));
      assert.equal(fs.existsSync(dataDir), false, 'the data dir is not made');
    }
  }
});

test("a data dir open to others, or holding files etcd does not know, is warned about in etcd 3.4's words (measured)", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  fs.writeFileSync(path.join(dir, 'hello.txt'), '');
  const p = run(t, (await serverArgs(dir)).args);
  await ready(p);
  assert.ok(p.stderr().includes(`W | etcdmain: found invalid file/dir hello.txt under data dir ${dir} (Ignore this if you are upgrading etcd)\n`), p.stderr());
  assert.ok(p.stderr().includes(`W | pkg/fileutil: check file permission: directory "${dir}" exist, but the permission is "drwxr-xr-x". ` +
    'The recommended permission is "-rwx------" to prevent possible unprivileged access to the data.\n'), p.stderr());
  assert.equal(fs.statSync(dir).mode & 0o777, 0o755, 'left as it was');
});

test("--version names the etcd version served and etcd-ts's own, run directly (not through npm)", { skip }, () => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_')));
  const r = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
  assert.equal(r.stdout, `etcd Version: ${SERVER_VERSION}\netcd-ts: ${pkg.version}\nNode Version: ${process.version}\n`);
});

test('unknown flags fail with Go flag wording; cluster-only flags are ignored with one warning', { skip }, async (t) => {
  const bad = run(t, ['--no-such-flag']);
  assert.equal(await bad.exited, 2);
  assert.match(bad.stderr(), /flag provided but not defined: -no-such-flag/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(dir);
  const p = run(t, [...args, '--max-wals', '3', '--snapshot-count', '5']);
  await ready(p);
  // etcd 3.4's default logger, capnslog: one warning line from etcdmain.
  const warnings = p.stderr().split('\n').filter((l) => l.includes('--max-wals'));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} W \| etcdmain: ignoring flags that do not apply to a single-node etcd-ts: /);
  assert.match(warnings[0]!, /--snapshot-count/);
  assert.equal((await etcdctl(url, ['put', 'x', 'y'])).stdout, 'OK\n');
});

test('--wal-dir holds the log: a write acknowledged before kill -9 is replayed from it, with LMDB commits an hour apart', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  const walDir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-wal-'));
  t.after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(walDir, { recursive: true, force: true });
  });
  const { args, url } = await serverArgs(dir);
  const withLog = [...args, '--wal-dir', walDir, '--backend-batch-interval', '1h'];
  const first = run(t, withLog);
  await ready(first);
  assert.equal((await etcdctl(url, ['put', 'logged', 'only'])).stdout, 'OK\n');
  first.child.kill('SIGKILL');
  await first.exited;
  assert.deepEqual(fs.readdirSync(walDir), ['0000000000000000.log']);
  assert.equal(fs.existsSync(path.join(dir, 'member', 'wal')), false, 'nothing logged in the data dir');

  const again = run(t, withLog);
  await ready(again);
  assert.equal((await etcdctl(url, ['get', 'logged', '--print-value-only'])).stdout, 'only\n');
});

test('--unsafe-no-fsync: no log sync is timed, and a write acknowledged before kill -9 is still replayed (the page cache has it)', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(dir);
  const unsafe = [...args, '--unsafe-no-fsync', '--backend-batch-interval', '1h'];
  const first = run(t, unsafe);
  await ready(first);
  assert.equal((await etcdctl(url, ['put', 'cached', 'only'])).stdout, 'OK\n');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /^etcd_disk_wal_fsync_duration_seconds_count 0$/m);
  first.child.kill('SIGKILL');
  await first.exited;
  const again = run(t, unsafe);
  await ready(again);
  assert.equal((await etcdctl(url, ['get', 'cached', '--print-value-only'])).stdout, 'only\n');
});

test("at a low write rate, the executable's V8 does not run a Mark-Compact after every scavenge", { skip }, async (t) => {
  // The young generation at its maximum size (2 × 16 MiB), as in a server that has run for a
  // while, and V8's growing factor at the 1.1 it picks at low write rates (src/cli/gc.ts).
  // Without the executable's GC flags, every scavenge here starts a marking that ends in a
  // Mark-Compact: 8 Mark-Compacts and 2 scavenges, measured; with them, 3 and 8 to 10.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(dir);
  const p = run(t, args, ['--trace-gc', '--min-semi-space-size=16', '--max-semi-space-size=16', '--heap-growing-percent=10']);
  await ready(p);
  const client = new Client({ endpoints: [url] });
  t.after(() => client.close());
  const watchers = Array.from({ length: 300 }, () => client.watch('gc/', { prefix: true }));
  for (const w of watchers) w.on('response', () => {});
  await Promise.all(watchers.map((w) => w.created));

  const from = p.stdout().length;
  for (let i = 0; i < 500; i++) {
    await client.put(`gc/${i % 50}`, 'v'.repeat(100));
    await sleep(10);
  }
  const trace = p.stdout().slice(from);
  const scavenges = trace.match(/: Scavenge /g)?.length ?? 0;
  const markCompacts = trace.match(/: Mark-Compact /g)?.length ?? 0;
  assert.ok(markCompacts < scavenges, `${markCompacts} Mark-Compacts in ${scavenges} scavenges`);
  assert.ok(scavenges >= 4, `${scavenges} scavenges: the load did not fill the young generation`);
});

test("a compaction is logged in etcd 3.4's words: the index's, then the records' with the time taken", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(dir);
  const p = run(t, args);
  await ready(p);
  for (const v of ['1', '2', '3']) await etcdctl(url, ['put', 'a', v]);
  assert.equal((await etcdctl(url, ['compaction', '3'])).stdout, 'compacted revision 3\n');
  const deadline = Date.now() + 5000;
  while (!p.stderr().includes('finished scheduled compaction') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.match(p.stderr(), /I \| mvcc: store\.index: compact 3\n(.*\n)*.* I \| mvcc: finished scheduled compaction at 3 \(took [0-9.]+(ns|µs|ms|s)\)\n/);
  p.child.kill('SIGTERM');
  await p.exited;
});

test("a compaction a stop cut short is resumed at the restart, logged in etcd 3.4's words", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-cli-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { args, url } = await serverArgs(dir);
  const first = run(t, args);
  await ready(first);
  for (const v of ['1', '2', '3']) await etcdctl(url, ['put', 'a', v]);
  first.child.kill('SIGTERM');
  await first.exited;
  // What a kill during a compaction at 3 leaves: the compaction scheduled, not finished.
  const backend = Backend.open(dir);
  backend.putMeta('scheduledCompactRev', 3);
  await backend.forceCommit();
  await backend.close();
  const p = run(t, args);
  await ready(p);
  const deadline = Date.now() + 5000;
  while (!p.stderr().includes('finished scheduled compaction') && Date.now() < deadline) await sleep(50);
  assert.match(p.stderr(), /I \| mvcc: resume scheduled compaction at 3\n(.*\n)*.* I \| mvcc: store\.index: compact 3\n(.*\n)*.* I \| mvcc: finished scheduled compaction at 3 \(took [0-9.]+(ns|µs|ms|s)\)\n/);
  assert.match((await etcdctl(url, ['get', 'a', '--rev', '2'])).stderr, /required revision has been compacted/);
  p.child.kill('SIGTERM');
  await p.exited;
});

test('--help writes the ways to run it on stderr and the flags on stdout, as etcd splits them, and exits 0', { skip }, () => {
  const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.equal(r.stderr, usageSummary());
  assert.equal(r.stdout, usage());
  assert.match(r.stdout, /^ {2}--data-dir '\$\{name\}\.etcd'$/m);
});

// Needs root, to mount a small tmpfs that the writes fill up.
const mountSkip = skip ?? (process.getuid?.() === 0 ? undefined : 'needs root to mount a tmpfs');

test('a full disk: the server exits 1 with etcd\'s fatal line before answering the writes it could not store; every acknowledged write survives', { skip: mountSkip }, async (t) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-full-'));
  t.after(() => {
    spawnSync('umount', [mnt]);
    fs.rmSync(mnt, { recursive: true, force: true });
  });
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
  if (mounted.status !== 0) return t.skip(`cannot mount a tmpfs: ${mounted.stderr.toString()}`);
  const dir = path.join(mnt, 'data');
  const { args, url } = await serverArgs(dir);
  const p = run(t, args);
  await ready(p);
  // Values that LMDB cannot store smaller than they are (random letters).
  const big = Array.from({ length: 300_000 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join('');
  let acked = 0;
  let refusal = '';
  for (let i = 1; i <= 60; i++) {
    const r = await etcdctl(url, ['--command-timeout', '3s', 'put', `big${i}`], { stdin: big });
    if (r.code !== 0) {
      refusal = r.stderr;
      break;
    }
    acked = i;
  }
  assert.equal(await p.exited, 1);
  assert.ok(acked > 0 && refusal !== '', `acked ${acked}`);
  assert.match(p.stderr(), /C \| (mvcc\/backend: cannot commit tx \(|etcdserver: raft save state and entries error: write .*: no space left on device)/);
  // The refused write was not answered with the disk's error: the connection closed.
  assert.doesNotMatch(refusal, /ENOSPC|Input\/output error/);

  assert.equal(spawnSync('mount', ['-o', 'remount,size=64m', mnt]).status, 0);
  const again = run(t, args);
  await ready(again);
  const keys = (await etcdctl(url, ['get', 'big', '--prefix', '--keys-only'])).stdout.split('\n').filter((l) => l.startsWith('big'));
  assert.ok(keys.length >= acked, `${keys.length} keys, ${acked} acknowledged`);
  again.child.kill('SIGTERM');
  await again.exited;
});
