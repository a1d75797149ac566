// Watch compatibility: `etcdctl watch` against a fresh real etcd 3.4 and a fresh etcd-ts, same
// writes, same output required. etcdctl watch runs until killed: each scenario spawns it, makes
// its writes with `etcdctl put/del`, waits (bounded) until the expected number of lines
// arrived or etcdctl exited, kills it, and compares stdout and stderr.
//
// Watches start from an explicit revision (`--rev`) wherever possible, so no output depends on
// when the watch reached the server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it, type TestContext } from 'node:test';
import { etcdctl, normalise } from '../helpers/etcdctl.js';
import { ETCDCTL_BIN, etcdUnavailableReason, startServer, type ServerHandle, type ServerKind } from '../helpers/servers.js';

const SELF_CHECK = process.env.COMPAT_SELF_CHECK === '1';
const CANDIDATE: ServerKind = SELF_CHECK ? 'etcd' : 'etcd-ts';

interface Scenario {
  name: string;
  /** etcdctl steps run before the watch starts. */
  before: readonly (readonly string[])[];
  /** The watch command line (after `etcdctl --endpoints=…`). */
  watch: readonly string[];
  /**
   * Lines written to the watch's stdin (interactive mode), one by one; `{ line, after }` waits
   * until stdout has `after` lines first. Two watchers that catch up at the same moment may
   * print in either order (etcd sends a sync pass's watchers in map order), so a scenario
   * orders them by waiting.
   */
  stdin?: readonly (string | { line: string; after: number })[];
  /** etcdctl steps run while the watch runs. */
  during: readonly (readonly string[])[];
  /** stdout lines to wait for (the real etcd must produce exactly these many). */
  lines: number;
  /** Text the real etcd's output must contain. */
  expect: string;
}

const WRITES: readonly (readonly string[])[] = [
  ['put', 'foo', 'v1'],
  ['put', 'foo1', 'v2'],
  ['put', 'b', 'v3'],
  ['put', 'foo', 'v4'],
  ['del', 'foo'],
];

const SCENARIOS: readonly Scenario[] = [
  { name: 'single key from a past revision', before: WRITES, watch: ['watch', 'foo', '--rev', '2'], during: [['put', 'foo', 'v5']], lines: 12, expect: 'DELETE' },
  { name: '--prefix --prev-kv', before: WRITES, watch: ['watch', 'foo', '--prefix', '--prev-kv', '--rev', '2'], during: [['put', 'foo2', 'x']], lines: 19, expect: 'foo2' },
  { name: 'a range: watch a c', before: WRITES, watch: ['watch', 'a', 'c', '--rev', '1'], during: [['put', 'bb', 'y'], ['put', 'c', 'no']], lines: 6, expect: 'bb' },
  // clientv3 turns a prefix watch on the empty key into key "\0", range end "\0": every key.
  { name: 'every key: watch --prefix ""', before: WRITES, watch: ['watch', '--prefix', '', '--rev', '1'], during: [['put', 'zz', 'last']], lines: 18, expect: 'last' },
  { name: 'future revision waits', before: [], watch: ['watch', 'k', '--rev', '4'], during: [['put', 'k', '1'], ['put', 'k', '2'], ['put', 'k', '3']], lines: 3, expect: '3' },
  {
    name: 'exec a command per event: watch ... -- <command>',
    before: WRITES,
    watch: ['watch', 'foo', '--rev', '2', '--', 'sh', '-c', 'echo "got $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'],
    during: [],
    lines: 12,
    expect: 'got "DELETE"',
  },
  {
    name: 'interactive: watch -i',
    before: WRITES,
    watch: ['watch', '-i'],
    stdin: ['watch foo --rev 2 --prev-kv', { line: 'watch b --rev 2', after: 13 }],
    during: [],
    lines: 16,
    expect: 'v3',
  },
  {
    name: 'interactive: progress, and a command it does not know',
    before: WRITES,
    watch: ['watch', '-i'],
    stdin: ['watch foo --rev 2', { line: 'progress', after: 9 }, 'bogus x'],
    during: [],
    lines: 10,
    expect: 'progress notify: 6',
  },
  { name: 'a compacted start revision is canceled', before: [...WRITES, ['compact', '5']], watch: ['watch', 'foo', '--rev', '2'], during: [], lines: 0, expect: 'required revision has been compacted' },
];

interface WatchOutput {
  stdout: string;
  stderr: string;
}

/** Runs one watch scenario on `server`. */
async function runWatch(server: ServerHandle, s: Scenario): Promise<WatchOutput> {
  for (const args of s.before) await etcdctl(server.endpoint, args);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('ETCDCTL_')) env[name] = value;
  env.ETCDCTL_API = '3';
  const child = spawn(ETCDCTL_BIN, [`--endpoints=${server.endpoint}`, ...s.watch], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('close', () => ((exited = true), resolve())));
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const deadline = Date.now() + 10_000;
  const lineCount = () => stdout.split('\n').length - 1;
  const waitLines = async (n: number) => {
    while (!exited && lineCount() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };
  try {
    for (const input of s.stdin ?? []) {
      if (typeof input !== 'string') await waitLines(input.after);
      child.stdin.write(`${typeof input === 'string' ? input : input.line}\n`);
    }
    for (const args of s.during) await etcdctl(server.endpoint, args);
    await waitLines(s.lines);
    // A short grace period lets an extra, unexpected line show up on either side.
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    if (!exited) child.kill('SIGKILL');
    await exit;
  }
  const ctx = { endpoint: server.endpoint, tmpPaths: [] };
  return { stdout: normalise(stdout, ctx), stderr: normalise(stderr, ctx) };
}

async function start(t: TestContext, kind: ServerKind): Promise<ServerHandle> {
  return startServer(t, { kind });
}

describe(`watch compat: etcd 3.4 vs ${SELF_CHECK ? 'a second etcd 3.4 (self check)' : 'etcd-ts'}`, { skip: etcdUnavailableReason() }, () => {
  for (const s of SCENARIOS) {
    it(s.name, async (t) => {
      const [ref, cand] = await Promise.allSettled([start(t, 'etcd'), start(t, CANDIDATE)]);
      if (ref.status === 'rejected') throw ref.reason;
      if (cand.status === 'rejected') throw cand.reason;
      const [expected, actual] = await Promise.all([runWatch(ref.value, s), runWatch(cand.value, s)]);
      assert.equal(expected.stdout.split('\n').length - 1, s.lines, `real etcd printed ${expected.stdout}`);
      assert.ok(`${expected.stdout}${expected.stderr}`.includes(s.expect), `real etcd output lacks ${s.expect}`);
      assert.deepEqual(actual, expected, `${CANDIDATE} differs from etcd`);
    });
  }
});
