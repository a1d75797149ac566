// WatchStream marshals its responses by hand (no ts-proto message per response): every one of
// them must decode to the intended fields and be byte-for-byte what ts-proto would encode.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, mock } from 'node:test';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore } from '../../src/mvcc/kv-store.js';
import { WatchResponse, type ResponseHeader, type WatchCreateRequest } from '../../src/proto/gen/rpc.gen.js';
import { ERR_EMPTY_WATCHER_RANGE, ERR_WATCHER_DUPLICATE_ID, headerFields, WatchStream } from '../../src/watch/watch-stream.js';
import { WatchableStore } from '../../src/watch/watchable-store.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const header = (rev: number): ResponseHeader => ({ clusterId: 0xcdef0123456789abn, memberId: 0x8e9e05c52164694dn, revision: BigInt(rev), raftTerm: 2n });

/** A KV store on a new data dir (removed after the tests) and its watchable store. */
function stores(prefix: string): { kv: KVStore; ws: WatchableStore } {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  const kv = new KVStore(Backend.open(d));
  return { kv, ws: new WatchableStore(kv) };
}

function create(watchId: bigint, key = 'a', rangeEnd = ''): { createRequest: WatchCreateRequest } {
  return { createRequest: { key: Buffer.from(key), rangeEnd: Buffer.from(rangeEnd), startRevision: 0n, progressNotify: false, filters: [], prevKv: false, watchId, fragment: false } };
}

describe('WatchStream response marshalling', () => {
  it('marshals created, refused, canceled and progress responses as ts-proto does', async () => {
    const { ws } = stores('watch-marshal-');
    const out: Buffer[] = [];
    const stream = new WatchStream(ws, { write: (head, parts) => (out.push(Buffer.concat([head, ...parts])), true), flush: () => {} }, { headerField: headerFields(header), fragmentBytes: 1 << 20, progressIntervalMs: 0 });
    for (const req of [create(0n), create(0n), create(5n), create(5n), create(-3n), create(300n), create(0n, 'b', 'a'), create(1n << 40n)]) stream.handle(req);
    stream.handle({ progressRequest: {} });
    stream.handle({ cancelRequest: { watchId: 300n } });
    await new Promise((done) => setImmediate(done));
    stream.close();

    for (const bytes of out) assert.deepEqual(Buffer.from(WatchResponse.encode(WatchResponse.decode(bytes)).finish()), bytes);
    const got = out.map((b) => WatchResponse.decode(b)).map((r) => [r.header?.revision, r.watchId, r.created, r.canceled, r.cancelReason]);
    assert.deepEqual(got, [
      [1n, 0n, true, false, ''],
      [1n, 1n, true, false, ''],
      [1n, 5n, true, false, ''],
      [1n, -1n, true, true, ERR_WATCHER_DUPLICATE_ID],
      [1n, -3n, true, false, ''],
      [1n, 300n, true, false, ''],
      [1n, -1n, true, true, ERR_EMPTY_WATCHER_RANGE],
      [1n, 1n << 40n, true, false, ''],
      [1n, -1n, false, false, ''],
      [1n, 300n, false, true, ''],
    ]);
  });

  it('marshals events responses as ts-proto does, for every form of watch ID and with the fragment flag', async () => {
    const { kv, ws } = stores('watch-marshal-');
    const out: Buffer[] = [];
    const stream = new WatchStream(ws, { write: (head, parts) => (out.push(Buffer.concat([head, ...parts])), true), flush: () => {} }, { headerField: headerFields(header), fragmentBytes: 64, progressIntervalMs: 0 });
    const ids = [0n, 5n, 127n, 128n, 300n, -3n, 1n << 40n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)];
    for (const id of ids) stream.handle(create(id));
    stream.handle({ createRequest: { ...create(9n).createRequest, fragment: true } });
    await new Promise((done) => setImmediate(done));
    out.length = 0;
    const txn = kv.beginWrite();
    txn.put('a', Buffer.alloc(40, 1), 0n);
    txn.put('a', Buffer.alloc(40, 2), 0n); // two events of 60+ bytes: the fragmenting watcher gets two responses
    await txn.end();
    await new Promise((done) => setImmediate(done));
    stream.close();

    for (const bytes of out) assert.deepEqual(Buffer.from(WatchResponse.encode(WatchResponse.decode(bytes)).finish()), bytes);
    const got = out.map((b) => WatchResponse.decode(b)).map((r) => [r.watchId, r.fragment, r.events.length, r.header?.revision]);
    assert.deepEqual(got, [...ids.map((id) => [id, false, 2, 2n]), [9n, true, 1, 2n], [9n, false, 1, 2n]]);
  });
});

describe('WatchStream periodic progress', () => {
  it('ticks at the interval plus a jitter of up to a tenth of it, drawn per stream (etcd GetProgressReportInterval)', (t) => {
    const { ws } = stores('watch-progress-');
    const intervals: number[] = [];
    const setIntervalSpy = mock.method(globalThis, 'setInterval', (_fn: () => void, ms: number) => {
      intervals.push(ms);
      const timer = { unref: () => timer };
      return timer as unknown as NodeJS.Timeout;
    });
    t.after(() => setIntervalSpy.mock.restore());
    for (let i = 0; i < 20; i++) {
      const stream = new WatchStream(ws, { write: () => true, flush: () => {} }, { headerField: headerFields(header), fragmentBytes: 1 << 20, progressIntervalMs: 10_000 });
      stream.handle({ createRequest: { ...create(0n).createRequest, progressNotify: true } });
      stream.handle({ createRequest: { ...create(0n).createRequest, progressNotify: true } });
    }
    assert.equal(intervals.length, 20, 'one ticker per stream');
    for (const ms of intervals) assert.ok(ms >= 10_000 && ms < 11_000, `interval ${ms}`);
    assert.ok(new Set(intervals).size > 1, 'streams draw their own jitter');
  });
});

describe('WatchStream send queue', () => {
  it('joins a waiting events response with its watcher\'s later revisions, but never across a control response', async () => {
    const { kv, ws } = stores('watch-join-');
    const out: Buffer[] = [];
    let blocked = false;
    const stream = new WatchStream(ws, { write: (head, parts) => (out.push(Buffer.concat([head, ...parts])), !blocked), flush: () => {} }, { headerField: headerFields(header), fragmentBytes: 1 << 20, progressIntervalMs: 0 });
    stream.handle(create(1n, 'a'));
    stream.handle(create(2n, 'b'));
    await new Promise((done) => setImmediate(done));
    assert.equal(out.length, 2, 'both created responses');
    out.length = 0;
    blocked = true;
    const put = async () => {
      const txn = kv.beginWrite();
      txn.put('a', Buffer.from('v'), 0n);
      await txn.end();
      await new Promise((done) => setImmediate(done));
    };
    await put(); // rev 2: written at once; the transport is then full
    await put(); // rev 3: waits in the queue
    await put(); // rev 4: joins it
    stream.handle({ cancelRequest: { watchId: 2n } });
    await put(); // rev 5: queued after the cancel, so it may not join the response before it
    for (let i = 0; i < 8; i++) stream.drained(); // one queued response a call
    stream.close();
    const got = out.map((b) => WatchResponse.decode(b)).map((r) => [r.watchId, r.canceled, r.events.map((e) => e.kv!.modRevision)]);
    assert.deepEqual(got, [
      [1n, false, [2n]],
      [1n, false, [3n, 4n]],
      [2n, true, []],
      [1n, false, [5n]],
    ]);
  });
});
