// The watcher group (etcd `watcher_group.go`): single keys, ranges, prefixes, from-key, checked
// against a brute-force scan of every watcher on random groups.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { prefixEnd } from '../../src/mvcc/key.js';
import { WatcherGroup } from '../../src/watch/watcher-group.js';
import { Watcher, type WatcherSink } from '../../src/watch/watcher.js';

const sink: WatcherSink = {
  sendEvents: () => true,
  sendCompacted: () => true,
  sendProgress: () => true,
  hasRoom: () => true,
  watcherSettled: () => {},
};

let nextId = 0;
const watcher = (key: string, end: string | undefined): Watcher => new Watcher({ id: nextId++, key, end, startRev: 0 }, sink);

describe('WatcherGroup', () => {
  it('finds single-key, range, prefix and from-key watchers of a key, and only those', () => {
    const g = new WatcherGroup();
    const single = watcher('foo', undefined);
    const range = watcher('a', 'c');
    const prefix = watcher('fo', prefixEnd('fo'));
    const fromKey = watcher('b', '');
    const all = watcher('\0', '');
    for (const w of [single, range, prefix, fromKey, all]) g.add(w);
    const ids = (k: string) => new Set(g.watchersOf(k).map((w) => w.id));
    assert.deepEqual(ids('foo'), new Set([single.id, prefix.id, fromKey.id, all.id]));
    assert.deepEqual(ids('a'), new Set([range.id, all.id]));
    assert.deepEqual(ids('c'), new Set([fromKey.id, all.id])); // range end is exclusive
    assert.deepEqual(ids('\xff\xff'), new Set([fromKey.id, all.id]));
    assert.equal(g.size, 5);
    g.delete(prefix);
    g.delete(single);
    assert.deepEqual(ids('foo'), new Set([fromKey.id, all.id]));
    assert.equal(g.delete(single), false);
  });

  it('keeps many watchers on one range in one entry and removes them one by one', () => {
    const g = new WatcherGroup();
    const ws = Array.from({ length: 1000 }, () => watcher('p/', prefixEnd('p/')));
    for (const w of ws) g.add(w);
    assert.equal(g.watchersOf('p/x').length, 1000);
    for (const w of ws.slice(0, 999)) g.delete(w);
    assert.deepEqual(g.watchersOf('p/x'), [ws[999]]);
    g.delete(ws[999]!);
    assert.deepEqual(g.watchersOf('p/x'), []);
  });

  it('matches a brute-force scan on random groups', () => {
    const key = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\0', '\xff'), maxLength: 3 });
    const spec = fc.record({ key, end: fc.option(fc.oneof(key, fc.constant('')), { nil: undefined }), keep: fc.boolean() });
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 40 }), fc.array(key, { maxLength: 20 }), (specs, probes) => {
        const g = new WatcherGroup();
        const live: Watcher[] = [];
        for (const s of specs) {
          const end = s.end !== undefined && s.end !== '' && s.end <= s.key ? undefined : s.end;
          const w = watcher(s.key, end);
          g.add(w);
          if (s.keep) live.push(w);
        }
        for (const w of [...g.watchers]) if (!live.includes(w)) g.delete(w);
        for (const p of probes) {
          const got = g.watchersOf(p).map((w) => Number(w.id)).sort((a, b) => a - b);
          const want = live.filter((w) => w.contains(p)).map((w) => Number(w.id)).sort((a, b) => a - b);
          assert.deepEqual(got, want);
        }
      }),
    );
  });
});
