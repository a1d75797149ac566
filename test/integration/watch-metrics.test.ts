// etcd's watch metrics on /metrics of an embedded etcd-ts move with watch streams, watchers,
// slow watchers and sent events, and go back to zero when the streams go away; watch requests
// and responses count in the gRPC byte counters.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EmbeddedServer, Kv, WatchSession, prefixEnd } from '../helpers/watch-client.js';

describe('watch metrics', () => {
  let srv: EmbeddedServer;
  let kv: Kv;
  before(async () => {
    srv = await EmbeddedServer.start();
    kv = new Kv(srv.target);
  });
  after(async () => {
    kv.close();
    await srv.stop();
  });

  const scrape = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(`${srv.server.clientUrls[0]}/metrics`)).text();
    const m = new Map<string, number>();
    for (const line of text.split('\n')) {
      const hit = /^(etcd_debugging_mvcc_[a-z_]+) (\S+)$/.exec(line);
      if (hit) m.set(hit[1]!, Number(hit[2]));
    }
    return m;
  };
  const until = async (pred: (m: Map<string, number>) => boolean, what: string): Promise<Map<string, number>> => {
    for (let i = 0; i < 200; i++) {
      const m = await scrape();
      if (pred(m)) return m;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`metrics never showed ${what}: ${JSON.stringify([...(await scrape())])}`);
  };

  it('counts streams, watchers, slow watchers and events, and returns to zero after disconnect', async () => {
    const m0 = await scrape();
    for (const name of ['watch_stream_total', 'watcher_total', 'slow_watcher_total', 'pending_events_total', 'events_total']) {
      assert.equal(m0.get(`etcd_debugging_mvcc_${name}`), 0, `etcd_debugging_mvcc_${name} at start`);
    }
    for (let i = 0; i < 5; i++) await kv.put(`m/${i}`, 'v');

    const a = new WatchSession(srv.target);
    const b = new WatchSession(srv.target);
    a.create('m/', { rangeEnd: prefixEnd('m/') });
    a.create('m/1');
    b.create('m/', { rangeEnd: prefixEnd('m/'), startRevision: 2n });
    await a.created(2);
    await b.created(1);
    const m1 = await until((m) => m.get('etcd_debugging_mvcc_watcher_total') === 3, '3 watchers');
    assert.equal(m1.get('etcd_debugging_mvcc_watch_stream_total'), 2);

    // b replays 5 history events; a gets 2 new ones on its prefix watcher and 1 on its key watcher.
    await kv.put('m/1', 'x');
    await kv.put('m/9', 'y');
    const bId = b.responses[0]!.watchId;
    await b.waitFor(() => b.events(bId).length === 7, '7 events on b');
    await a.waitFor((rs) => rs.reduce((n, r) => n + r.events.length, 0) === 3, '3 events on a');
    const m2 = await until((m) => m.get('etcd_debugging_mvcc_events_total') === 10, '10 events sent');
    assert.equal(m2.get('etcd_debugging_mvcc_pending_events_total'), 0);
    assert.equal(m2.get('etcd_debugging_mvcc_slow_watcher_total'), 0);

    // A watcher from an old revision on a stream that is not read stays slow.
    b.stream.pause();
    for (let i = 0; i < 300; i++) await kv.put('m/big', Buffer.alloc(32 * 1024, i));
    const c = new WatchSession(srv.target);
    c.stream.pause();
    c.create('m/', { rangeEnd: prefixEnd('m/'), startRevision: 1n });
    const m3 = await until((m) => (m.get('etcd_debugging_mvcc_slow_watcher_total') ?? 0) >= 1, 'a slow watcher');
    assert.ok(m3.get('etcd_debugging_mvcc_events_total')! > 10);

    a.close();
    b.close();
    c.close();
    const m4 = await until((m) => m.get('etcd_debugging_mvcc_watch_stream_total') === 0, 'no stream');
    assert.equal(m4.get('etcd_debugging_mvcc_watcher_total'), 0);
    assert.equal(m4.get('etcd_debugging_mvcc_slow_watcher_total'), 0);
    assert.equal(m4.get('etcd_debugging_mvcc_pending_events_total'), 0);
  });

  it('counts the bytes of watch requests and responses in etcd_network_client_grpc_*_bytes_total', async () => {
    const bytes = async (dir: 'received' | 'sent'): Promise<number> => {
      const text = await (await fetch(`${srv.server.clientUrls[0]}/metrics`)).text();
      return Number(new RegExp(`^etcd_network_client_grpc_${dir}_bytes_total (\\S+)$`, 'm').exec(text)![1]);
    };
    const [sent0, received0] = [await bytes('sent'), await bytes('received')];
    const w = new WatchSession(srv.target);
    w.create('bytes/key');
    await w.created(1);
    assert.ok((await bytes('received')) > received0, 'the create request');
    const sent1 = await bytes('sent');
    await kv.put('bytes/key', Buffer.alloc(10_000, 1));
    await w.waitFor((rs) => rs.some((r) => r.events.length > 0), 'the event');
    // The event carries the 10,000-byte value (the put's own answer is small).
    assert.ok((await bytes('sent')) - sent1 > 10_000, 'the event response');
    assert.ok(sent1 > sent0, 'the created response');
    w.close();
  });
});
