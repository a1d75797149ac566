// The client's watch against etcd-ts and a real etcd 3.4: options, progress, fragments,
// cancel and stream sharing, 1,000 watches on one stream, resume across kill -9 / restarts /
// endpoint switches with every revision exactly once, and compaction while disconnected.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, CompactedError, Op, type WatchResponse, type Watcher } from '../../src/index.js';
import { deadEndpoint, KINDS, metric, start, suiteServer } from './common.js';
import { startProxy } from './proxy.js';

const STREAMS = 'etcd_debugging_mvcc_watch_stream_total';
const WATCHERS = 'etcd_debugging_mvcc_watcher_total';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns `want` (the server updates some counters asynchronously); returns the last value. */
async function eventually<T>(probe: () => Promise<T>, want: T): Promise<T> {
  let value = await probe();
  for (let i = 0; i < 100 && value !== want; i++) {
    await sleep(50);
    value = await probe();
  }
  return value;
}

/** Resolves with the responses, taken from the iterator, that carry the first `n` events (then the watch is cancelled). */
async function take(watcher: Watcher, n: number): Promise<WatchResponse[]> {
  const out: WatchResponse[] = [];
  let events = 0;
  for await (const response of watcher) {
    if (response.events.length > 0) out.push(response);
    events += response.events.length;
    if (events >= n) break;
  }
  return out;
}

/** Resolves once the watcher delivered an event at `revision` or later. */
function reached(watcher: Watcher, revision: bigint): Promise<void> {
  return new Promise((resolve) => {
    if (watcher.lastRevision >= revision) resolve();
    watcher.on('event', (e) => { if (e.kv.modRevision >= revision) resolve(); });
  });
}

for (const { kind, skip } of KINDS) {
  describe(`client watch against ${kind}`, { skip, timeout: 60_000 }, () => {
    const server = suiteServer(kind, ['--max-request-bytes', '4096']);
    let client: Client;
    before(() => { client = new Client({ endpoints: [server().endpoint] }); });
    after(() => client.close());

    it('prefix watch with prevKv: iterator and callbacks see the same puts and deletes, in order', async () => {
      const watcher = client.watch('w1/', { prefix: true, prevKv: true });
      const seen: string[] = [];
      watcher.on('event', (e) => seen.push(`${e.type} ${e.kv.key.toString()} ${e.kv.modRevision}`));
      await watcher.created;
      const taken = take(watcher, 3);
      const a = await client.put('w1/a', '1');
      const b = await client.put('w1/a', '2');
      await client.put('w1-outside', 'x');
      const d = await client.delete('w1/a');
      const events = (await taken).flatMap((r) => r.events);
      assert.deepEqual(events.map((e) => `${e.type} ${e.kv.key.toString()} ${e.kv.modRevision}`), [
        `put w1/a ${a.header!.revision}`, `put w1/a ${b.header!.revision}`, `delete w1/a ${d.header!.revision}`,
      ]);
      assert.deepEqual(seen, events.map((e) => `${e.type} ${e.kv.key.toString()} ${e.kv.modRevision}`));
      assert.equal(events[1]?.prevKv?.value.toString(), '1');
      assert.equal(events[2]?.prevKv?.value.toString(), '2');
      assert.equal(watcher.ended, true, 'breaking out of the iterator cancels the watch');
    });

    it('range, fromKey, startRevision replay and the noDelete filter', async () => {
      const first = await client.put('w2/a', 'a');
      await client.put('w2/b', 'b');
      await client.delete('w2/a');
      await client.put('w2/c', 'c');
      const replay = client.watch('w2/', { prefix: true, startRevision: first.header!.revision, filters: ['noDelete'] });
      const ranged = client.watch('w2/b', { rangeEnd: 'w2/c', startRevision: first.header!.revision });
      const fromKey = client.watch('w2/c', { fromKey: true, startRevision: first.header!.revision });
      assert.deepEqual((await take(replay, 3)).flatMap((r) => r.events.map((e) => e.kv.key.toString())), ['w2/a', 'w2/b', 'w2/c']);
      assert.deepEqual((await take(ranged, 1)).flatMap((r) => r.events.map((e) => e.kv.key.toString())), ['w2/b']);
      assert.deepEqual((await take(fromKey, 1)).flatMap((r) => r.events.map((e) => e.kv.key.toString())), ['w2/c']);
    });

    it('requestProgress() brings a progress notification at the current revision', async () => {
      const watcher = client.watch('w3/');
      await watcher.created;
      const put = await client.put('w3-other', 'x');
      const progress = new Promise<WatchResponse>((resolve) => watcher.on('progress', resolve));
      watcher.requestProgress();
      const response = await progress;
      assert.equal(response.progressNotify, true);
      assert.equal(response.events.length, 0);
      assert.ok(response.header.revision >= put.header!.revision);
      await watcher.cancel();
    });

    it('fragment: a revision larger than --max-request-bytes arrives whole in one response', async () => {
      const big = 'v'.repeat(700);
      const keys = [1, 2, 3, 4, 5].map((i) => `w4/${i}`);
      for (const k of keys) await client.put(k, big);
      const watcher = client.watch('w4/', { prefix: true, prevKv: true, fragment: true });
      await watcher.created;
      const txn = await client.txn().then(...keys.map((k) => Op.put(k, big))).commit();
      const [response] = await take(watcher, 1);
      assert.equal(response?.events.length, 5);
      assert.ok(response!.events.every((e) => e.kv.modRevision === txn.header!.revision && e.prevKv?.value.length === 700));
    });

    it('watches share one stream per group; cancel() frees it', async () => {
      const own = new Client({ endpoints: [server().endpoint] });
      try {
        const base = await eventually(() => metric(server().endpoint, STREAMS), 0);
        assert.equal(base, 0);
        const watchersBefore = await metric(server().endpoint, WATCHERS);
        const ws = [own.watch('g/a'), own.watch('g/b'), own.watch('g/c', { group: 'second' })];
        await Promise.all(ws.map((w) => w.created));
        assert.equal(await metric(server().endpoint, STREAMS), 2);
        assert.equal(own.watchStreamCount, 2);
        assert.equal(await metric(server().endpoint, WATCHERS), watchersBefore + 3);
        await ws[0]!.cancel();
        assert.equal(await eventually(() => metric(server().endpoint, WATCHERS), watchersBefore + 2), watchersBefore + 2, 'a cancel request freed the server-side watcher');
        assert.equal(await metric(server().endpoint, STREAMS), 2, 'the shared stream stays open for g/b');
        await Promise.all(ws.map((w) => w.cancel()));
        assert.equal(own.watchStreamCount, 0);
        assert.equal(await eventually(() => metric(server().endpoint, STREAMS), 0), 0);
      } finally {
        own.close();
      }
    });

    it('1,000 watches created at once share one stream; each gets its own ack and only its own events', async () => {
      const own = new Client({ endpoints: [server().endpoint] });
      try {
        const n = 1000;
        const watchers = Array.from({ length: n }, (_, i) => own.watch(`many/${i}`));
        const got: string[][] = watchers.map(() => []);
        watchers.forEach((w, i) => w.on('event', (e) => got[i]!.push(e.kv.key.toString())));
        await Promise.all(watchers.map((w) => w.created));
        assert.equal(new Set(watchers.map((w) => w.watchId)).size, n, 'every watch has its own ID');
        assert.equal(await metric(server().endpoint, STREAMS), 1);
        for (let i = 0; i < n; i += 100) {
          await own.txn().then(...Array.from({ length: 100 }, (_, j) => Op.put(`many/${i + j}`, 'x'))).commit();
        }
        await Promise.all(watchers.map((w, i) => (got[i]!.length > 0 ? undefined : new Promise((r) => w.once('event', r)))));
        got.forEach((keys, i) => assert.deepEqual(keys, [`many/${i}`]));
      } finally {
        own.close();
      }
    });
  });

  describe(`client watch resume against ${kind}`, { skip, timeout: 90_000 }, () => {
    it('kill -9, restarts and endpoint switches: every written revision exactly once, in order', async (t) => {
      const server = await start(t, kind);
      const proxyA = await startProxy(server.endpoint);
      const proxyB = await startProxy(server.endpoint);
      t.after(() => proxyA.close());
      t.after(() => proxyB.close());
      const writer = new Client({ endpoints: [server.endpoint], timeoutMs: 2000 });
      const watching = new Client({ endpoints: [proxyA.url, await deadEndpoint(), proxyB.url] });
      t.after(() => { writer.close(); watching.close(); });
      const watcher = watching.watch('r/', { prefix: true });
      const received: bigint[] = [];
      watcher.on('event', (e) => received.push(e.kv.modRevision));
      let disconnections = 0;
      let reconnections = 0;
      watcher.on('disconnected', () => disconnections++);
      watcher.on('connected', () => reconnections++);
      await watcher.created;
      /** Waits until the watch is created again after its last disconnection. */
      const reconnected = async (): Promise<void> => {
        for (let i = 0; i < 400 && reconnections < disconnections; i++) await sleep(50);
        assert.equal(reconnections, disconnections, 'the watch is created again within 20 s');
      };

      let writing = true;
      let acknowledged = 0;
      const writes = (async () => {
        for (let i = 0; writing; i++) {
          try {
            await writer.put(`r/${i}`, String(i));
            acknowledged++;
          } catch {
            await sleep(20);
          }
        }
      })();
      for (let cycle = 0; cycle < 3; cycle++) {
        await sleep(200);
        proxyA.dropConnections();
        proxyB.dropConnections();
        await sleep(200);
        await server.kill9();
        await sleep(100);
        await server.restart();
        await reconnected(); // so that the next cycle's faults break a connected watch
      }
      await sleep(200);
      writing = false;
      await writes;
      const all = await writer.get('r/', { prefix: true });
      const last = all.header!.revision;
      await reached(watcher, last);
      // Every revision of this server after the first (2…last) is one put of r/: exactly those must arrive.
      const written = Array.from({ length: Number(last) - 1 }, (_, i) => BigInt(i + 2));
      assert.ok(acknowledged > 0 && all.kvs.length >= acknowledged, 'every acknowledged write is in the store');
      assert.deepEqual(received, written, 'received revisions = written revisions, in order, once each');
      // 'disconnected' fires once per outage; each cycle broke a connected watch at least once,
      // and each outage ended with the watch created again ('connected').
      assert.ok(disconnections >= 3, `the watch was disconnected in every cycle (saw ${disconnections})`);
      assert.equal(reconnections, disconnections, 'every outage ended with the watch re-created');
      console.log(`${kind}: ${written.length} revisions through 3 kill -9 + 3 endpoint switches, ${disconnections} disconnections`);
    });

    it('compaction during a disconnection ends the watch with CompactedError and the compact revision', async (t) => {
      const server = await start(t, kind);
      const proxy = await startProxy(server.endpoint);
      t.after(() => proxy.close());
      const direct = new Client({ endpoints: [server.endpoint] });
      const watching = new Client({ endpoints: [proxy.url] });
      t.after(() => { direct.close(); watching.close(); });
      const watcher = watching.watch('c/', { prefix: true });
      await watcher.created;
      const first = await direct.put('c/1', 'x');
      await reached(watcher, first.header!.revision);
      const disconnected = new Promise((r) => watcher.once('disconnected', r));
      proxy.pause();
      await disconnected;
      await direct.put('c/2', 'x');
      const third = await direct.put('c/3', 'x');
      await direct.compact(third.header!.revision);
      proxy.resume();
      const ended = await (async () => {
        try {
          for await (const response of watcher) {
            assert.ok(response.events.every((e) => e.kv.modRevision <= first.header!.revision), 'no event after the disconnection');
          }
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      assert.ok(ended instanceof CompactedError, String(ended));
      assert.equal(ended.compactRevision, third.header!.revision);
      assert.equal(watcher.ended, true);
    });
  });
}
