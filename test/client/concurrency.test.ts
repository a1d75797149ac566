// Mutex and Election interoperate with `etcdctl lock` / `etcdctl elect` on the same names,
// against etcd-ts and a real etcd 3.4.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Client, Election, Mutex, Session } from '../../src/index.js';
import { ETCDCTL_BIN } from '../helpers/servers.js';
import { KINDS, suiteServer } from './common.js';

/** A running etcdctl and the lines it printed so far. */
interface Ctl {
  child: ChildProcess;
  lines: string[];
  /** Resolves once it printed `n` lines. */
  printed(n: number): Promise<string[]>;
  /** SIGINT (etcdctl releases its lock / resigns) and wait for exit. */
  stop(): Promise<void>;
}

/** etcdctl processes still running: killed if this test process exits first. */
const running = new Set<ChildProcess>();
process.on('exit', () => { for (const child of running) child.kill('SIGKILL'); });

function etcdctl(endpoint: string, args: string[]): Ctl {
  const child = spawn(ETCDCTL_BIN, ['--endpoints', endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'ignore'] });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buffer = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters) w();
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => { running.delete(child); resolve(); }));
  return {
    child,
    lines,
    printed: (n) => new Promise((resolve) => {
      const check = (): void => { if (lines.length >= n) resolve(lines.slice(0, n)); };
      waiters.push(check);
      check();
    }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/** Polls until `count` keys exist under `prefix` (etcdctl registered itself). */
async function contenders(client: Client, prefix: string, count: number): Promise<void> {
  while ((await client.get(prefix, { prefix: true, countOnly: true })).count < BigInt(count)) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const { kind, skip } of KINDS) {
  describe(`Mutex and Election with etcdctl against ${kind}`, { skip, timeout: 60_000 }, () => {
    const server = suiteServer(kind);
    let client: Client;
    before(() => { client = new Client({ endpoints: [server().endpoint] }); });
    after(() => client.close());

    it('Mutex waits for `etcdctl lock`, and `etcdctl lock` waits for the Mutex', async (t) => {
      const holder = etcdctl(server().endpoint, ['lock', 'mx']);
      t.after(() => holder.stop());
      const [held] = await holder.printed(1);
      assert.match(held!, /^mx\/[0-9a-f]+$/);
      const session = await Session.create(client, { ttlSeconds: 10 });
      t.after(() => session.close());
      const mutex = new Mutex(session, 'mx');
      let acquired = false;
      const locking = mutex.lock().then(() => { acquired = true; });
      await contenders(client, 'mx/', 2);
      assert.equal(acquired, false, 'our key is queued behind etcdctl\'s');
      await holder.stop();
      await locking;
      assert.equal((await client.get(mutex.key)).kvs.length, 1);

      const waiter = etcdctl(server().endpoint, ['lock', 'mx']);
      t.after(() => waiter.stop());
      await contenders(client, 'mx/', 2);
      assert.deepEqual(waiter.lines, [], 'etcdctl waits while we hold the lock');
      await mutex.unlock();
      const [got] = await waiter.printed(1);
      assert.match(got!, /^mx\/[0-9a-f]+$/);
      assert.notEqual(got, mutex.key);
    });

    it('Election: etcdctl observes our leadership and takes over when we resign', async (t) => {
      const session = await Session.create(client, { ttlSeconds: 10 });
      t.after(() => session.close());
      const election = new Election(session, 'el');
      await election.campaign('ours');
      const observed: string[] = [];
      const stopObserving = new AbortController();
      const observing = (async () => {
        for await (const kv of new Election(session, 'el').observe({ signal: stopObserving.signal })) {
          observed.push(kv.value.toString());
          if (observed.length === 3) return;
        }
      })();
      t.after(() => stopObserving.abort());
      const observer = etcdctl(server().endpoint, ['elect', '-l', 'el']);
      t.after(() => observer.stop());
      assert.deepEqual(await observer.printed(2), [election.key, 'ours']);
      const rival = etcdctl(server().endpoint, ['elect', 'el', 'theirs']);
      t.after(() => rival.stop());
      await contenders(client, 'el/', 2);
      await election.proclaim('ours-2');
      assert.deepEqual((await observer.printed(4)).slice(2), [election.key, 'ours-2']);
      assert.deepEqual(rival.lines, [], 'the rival waits while we lead');
      await election.resign();
      const [rivalKey, rivalValue] = await rival.printed(2);
      assert.equal(rivalValue, 'theirs');
      assert.equal((await election.leader())?.key.toString(), rivalKey);
      await observing;
      assert.deepEqual(observed, ['ours', 'ours-2', 'theirs'], 'observe() yields each leader and value change');
      await rival.stop();
      // etcdctl resigned on SIGINT; a campaign of ours wins again.
      await election.campaign('back');
      assert.equal((await election.leader())?.value.toString(), 'back');
    });
  });
}
