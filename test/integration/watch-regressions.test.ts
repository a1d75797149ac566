// The regression sequences of etcd's watch bugs, run against an embedded etcd-ts through the
// generated gRPC clients, plus the bookmarkable guarantee on a busy, slowly read stream:
// - #18089: a watch from the compacted revision, where that revision is a delete, gets the delete;
// - #19179: the same after a restart (compaction finished on disk, watch opened at the compact revision);
// - #15220: a requested progress notification at R never precedes queued events ≤ R;
// - #17529: many watchers multiplexed on one full stream, history compacted under them: each
//   watcher gets its events without a gap, or a compacted cancel at the first one it lost;
// - #20221: a watcher started at a future revision S gets no progress notification below S − 1;
// - bookmarkable: after a progress notification at R, no event ≤ R arrives on that watcher.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { WatchResponse } from '../../src/proto/gen/rpc.gen.js';
import { EmbeddedServer, Kv, WatchSession, isProgress, prefixEnd } from '../helpers/watch-client.js';

describe('watch regressions of etcd issues', () => {
  let srv: EmbeddedServer;
  let kv: Kv;
  const sessions: WatchSession[] = [];
  const session = (): WatchSession => {
    const s = new WatchSession(srv.target);
    sessions.push(s);
    return s;
  };
  before(async () => {
    srv = await EmbeddedServer.start({ watchProgressNotifyIntervalMs: 100 });
    kv = new Kv(srv.target);
  });
  after(async () => {
    for (const s of sessions) s.close();
    kv.close();
    await srv.stop();
  });

  it('etcd #18089: a watch from a compacted revision that is a delete receives that delete', async () => {
    await kv.put('i18089/a', '1');
    await kv.put('i18089/b', '1');
    const delRev = Number((await kv.del('i18089/a')).header!.revision);
    await kv.compact(delRev);
    await kv.put('i18089/b', '2');

    const s = session();
    s.create('i18089/', { rangeEnd: prefixEnd('i18089/'), startRevision: BigInt(delRev) });
    const id = await s.created();
    await s.waitFor(() => s.events(id).length === 2, 'the delete and the later put');
    assert.deepEqual(s.events(id).map((e) => [e.rev, e.type, e.key]), [
      [delRev, 'DELETE', 'i18089/a'],
      [delRev + 1, 'PUT', 'i18089/b'],
    ]);

    // One revision earlier is compacted: canceled with compact_revision, no events.
    s.create('i18089/', { rangeEnd: prefixEnd('i18089/'), startRevision: BigInt(delRev - 1) });
    await s.waitFor((rs) => rs.some((r) => r.canceled && r.compactRevision > 0n), 'the compacted cancel');
    const cancel = s.responses.find((r) => r.canceled && r.compactRevision > 0n)!;
    assert.equal(Number(cancel.compactRevision), delRev);
    assert.equal(s.events(cancel.watchId).length, 0);
  });

  it('etcd #19179: after a restart, a watch opened at the compact revision receives its delete', async () => {
    const base = await kv.rev();
    for (const k of ['a', 'b', 'c', 'd']) await kv.put(`i19179/${k}`, '1');
    const delRev = Number((await kv.del('i19179/a')).header!.revision);
    assert.equal(delRev, base + 5);
    await kv.compact(delRev, true);
    for (const s of sessions.splice(0)) s.close();
    kv.close();
    await srv.restart();
    kv = new Kv(srv.target);

    const s = session();
    s.create('i19179/', { rangeEnd: prefixEnd('i19179/'), startRevision: BigInt(delRev) });
    const id = await s.created();
    await kv.put('i19179/e', '1');
    await s.waitFor(() => s.events(id).length === 2, 'the delete and the next put');
    assert.deepEqual(s.events(id).map((e) => [e.rev, e.type, e.key]), [
      [delRev, 'DELETE', 'i19179/a'],
      [delRev + 1, 'PUT', 'i19179/e'],
    ]);
  });

  it('etcd #15220: a requested progress notification never overtakes queued events', async () => {
    const s = session();
    s.create('i15220/', { rangeEnd: prefixEnd('i15220/') });
    const id = await s.created();
    // Writers and progress requests race while the client alternately stops and resumes
    // reading, so that the stream backs up and the watcher becomes a victim (replayed later).
    const revs: number[] = [];
    let maxSlow = 0;
    for (let round = 0; round < 6; round++) {
      if (round % 2 === 0) s.stream.pause();
      else s.stream.resume();
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 25; i++) {
          revs.push(Number((await kv.put(`i15220/${w}`, Buffer.alloc(16 * 1024, i))).header!.revision));
          s.progress();
          maxSlow = Math.max(maxSlow, srv.server.etcd.watchableStore.stats().slowWatchers);
        }
      }));
    }
    s.stream.resume();
    s.progress();
    assert.ok(maxSlow > 0, 'the watcher fell behind at least once');
    const last = Math.max(...revs);
    await s.waitFor((rs) => rs.some((r) => isProgress(r) && Number(r.header!.revision) >= last), 'a progress at the last revision');

    const progressCount = checkBookmarks(s.responses, id, new Set(revs));
    assert.ok(progressCount > 1, 'several progress notifications were checked');
    assert.deepEqual(s.events(id).map((e) => e.rev), [...revs].sort((a, b) => a - b));
  });

  it('etcd #17529: watchers sharing a full stream get every event or a compacted cancel, never a gap', async () => {
    const start = (await kv.rev()) + 1;
    const revs: number[] = [];
    for (let i = 0; i < 150; i++) revs.push(Number((await kv.put(`i17529/${i % 7}`, Buffer.alloc(1024, i))).header!.revision));
    const s = session();
    s.stream.pause(); // the client stops reading: the stream's buffer fills, watchers become victims
    const n = 200; // more watchers than the stream's send buffer holds responses
    for (let i = 0; i < n; i++) s.create('i17529/', { rangeEnd: prefixEnd('i17529/'), startRevision: BigInt(start + (i % 100)) });
    // Let the server queue what it can, then compact under the slow watchers and keep writing.
    await new Promise((r) => setTimeout(r, 300));
    const compactAt = revs[100]!;
    await kv.compact(compactAt);
    for (let i = 0; i < 20; i++) revs.push(Number((await kv.put(`i17529/${i % 7}`, 'after')).header!.revision));
    s.stream.resume();
    const last = revs[revs.length - 1]!;

    const done = (rs: WatchResponse[], id: bigint): boolean =>
      rs.some((r) => r.watchId === id && r.canceled) || s.events(id).some((e) => e.rev === last);
    await s.waitFor((rs) => rs.filter((r) => r.created).length === n, 'every created');
    const ids = s.responses.filter((r) => r.created).map((r) => r.watchId);
    await s.waitFor((rs) => ids.every((id) => done(rs, id)), 'every watcher done', 60_000);
    let canceled = 0;
    for (const [i, id] of ids.entries()) {
      const want = revs.filter((r) => r >= start + (i % 100));
      const got = s.events(id).map((e) => e.rev);
      assert.deepEqual(got, want.slice(0, got.length), `watcher ${id}: a prefix of its history, in order, no gap`);
      const cancel = s.responses.find((r) => r.watchId === id && r.canceled);
      if (got.length < want.length) {
        assert.ok(cancel, `watcher ${id} stopped at ${got.length}/${want.length} without a cancel`);
        const next = want[got.length]!;
        assert.ok(next < Number(cancel.compactRevision), `watcher ${id}: its next revision ${next} was compacted (at ${cancel.compactRevision})`);
        canceled++;
      } else {
        assert.equal(cancel, undefined, `watcher ${id} got everything and a cancel`);
      }
    }
    // The client did not read while the history was compacted: some watchers must have lost it.
    assert.ok(canceled > 0, 'some watchers were compacted');
  });

  it('etcd #20221: a watcher from a future revision gets no progress notification below its start', async () => {
    const cur = await kv.rev();
    const startRev = cur + 5;
    const s = session();
    s.create('i20221/', { rangeEnd: prefixEnd('i20221/'), startRevision: BigInt(startRev), progressNotify: true });
    const id = await s.created();
    s.progress();
    // Periodic notifications (every 100 ms here) and the requested one may come; none may be below startRev - 1.
    await new Promise((r) => setTimeout(r, 400));
    for (let i = 0; i < 6; i++) await kv.put(`i20221/${i}`, String(i));
    s.progress();
    await s.waitFor((rs) => rs.some((r) => isProgress(r) && Number(r.header!.revision) >= startRev), 'a progress at or past the start');
    for (const r of s.responses.filter(isProgress)) {
      assert.ok(Number(r.header!.revision) >= startRev - 1, `progress at ${r.header!.revision} below start ${startRev} - 1`);
    }
    await s.waitFor(() => s.events(id).length === 2, 'the events from the start revision');
    assert.deepEqual(s.events(id).map((e) => e.rev), [startRev, startRev + 1]);
  });

  it('bookmarkable: after a progress notification at R no event ≤ R arrives', async () => {
    const s = session();
    const base = await kv.rev();
    // Watchers from the past, from now and from the future, with periodic and requested progress.
    s.create('bm/', { rangeEnd: prefixEnd('bm/'), startRevision: BigInt(Math.max(1, base - 20)), progressNotify: true });
    s.create('bm/', { rangeEnd: prefixEnd('bm/'), progressNotify: true });
    s.create('bm/3', { progressNotify: true });
    s.create('bm/', { rangeEnd: prefixEnd('bm/'), startRevision: BigInt(base + 50), progressNotify: true });
    await s.created(4);
    const ids = s.responses.filter((r) => r.created).map((r) => r.watchId);
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 50; i++) await kv.put(`bm/${(w + i) % 5}`, Buffer.alloc(2048, i));
    });
    const requester = (async () => {
      let n = 0;
      while (writing) {
        s.progress();
        if (++n % 5 === 0) {
          s.stream.pause();
          await new Promise((r) => setTimeout(r, 30));
          s.stream.resume();
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await Promise.all(writers);
    writing = false;
    await requester;
    const last = await kv.rev();
    s.progress();
    await s.waitFor((rs) => rs.some((r) => isProgress(r) && r.watchId === -1n && Number(r.header!.revision) >= last), 'a final progress');
    let checked = 0;
    for (const id of ids) checked += checkBookmarks(s.responses, id, undefined);
    assert.ok(checked > 0, 'progress notifications were checked');
    const futureEvents = s.events(ids[3]!);
    assert.ok(futureEvents.every((e) => e.rev >= base + 50));
    assert.equal(futureEvents.length, last - (base + 50) + 1);
  });
});

/**
 * Checks the bookmarkable guarantee for watcher `id` on one stream: a progress notification at R
 * (its own, or the stream-wide one with watch ID −1) is followed by no event ≤ R of `id`, and
 * when `expected` holds every revision `id` must receive, each one ≤ R arrived before it.
 * Returns the number of progress notifications checked.
 */
function checkBookmarks(responses: readonly WatchResponse[], id: bigint, expected: Set<number> | undefined): number {
  let bookmark = 0;
  let checked = 0;
  const seen = new Set<number>();
  for (const r of responses) {
    if (isProgress(r) && (r.watchId === id || r.watchId === -1n)) {
      const at = Number(r.header!.revision);
      if (expected) for (const rev of expected) if (rev <= at) assert.ok(seen.has(rev), `progress at ${at} before event ${rev}`);
      bookmark = Math.max(bookmark, at);
      checked++;
      continue;
    }
    if (r.watchId !== id) continue;
    for (const e of r.events) {
      const rev = Number(e.kv!.modRevision);
      assert.ok(rev > bookmark, `watcher ${id}: event at ${rev} after a progress notification at ${bookmark}`);
      seen.add(rev);
    }
  }
  return checked;
}
