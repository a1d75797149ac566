// Watch creates at the gRPC level, etcd 3.4 against etcd-ts: random create requests (keys,
// ranges including from-key and empty ones, start revisions past, compacted, current, future
// and negative, known and unknown filters, prev_kv, client-chosen and duplicate watch IDs,
// fragment, progress_notify) on one stream each, then a progress request and a cancel, over the
// same history with a compaction. The answers for each watch ID must be the same, in the same
// order, and so must the progress answers at the end.
//
// Not compared: the order between different watchers' responses. etcd replays history from a
// loop that runs every 100 ms, so it sends every `created` first and the events later; we
// replay at once. Each request list waits for both servers to catch up before its progress
// request and cancel, so that neither depends on timing. Nor the progress answer when a watcher
// starts beyond the next revision: etcd 3.4 answers at once, below that watcher's start, which
// is etcd bug #20221; we answer once the store reaches it (test/integration/watch-regressions).
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CompactionRequest, PutRequest, type WatchCreateRequest_FilterType, WatchRequest, WatchResponse } from '../../src/proto/gen/rpc.gen.js';
import { seeded } from '../helpers/seeded.js';
import { etcdUnavailableReason, startBoth } from '../helpers/servers.js';

const CASES = 24;
const KEYS = ['a', 'b', 'c', 'ab'];
/** Puts make revisions 2–13 (three of each key); history below 4 is compacted. */
const PUTS = 12;
const NEXT_REV = PUTS + 2;
const COMPACT_AT = 4;

const raw = (b: Buffer): Buffer => b;

function encode(req: WatchRequest): Buffer {
  return Buffer.from(WatchRequest.encode(req).finish());
}

/** A random case: 1–3 creates, then a progress request and one cancel. */
function requests(seed: number): Case {
  const r = seeded(seed);
  const creates: Buffer[] = [];
  const ids: bigint[] = [];
  let beyondNext = false;
  for (let n = 1 + r.int(3); n > 0; n--) {
    const watchId = BigInt(r.pick([0, 0, 0, 1, 2, 7, -1]));
    const startRevision = r.pick([0, 0, 1, 3, 4, 5, 12, 13, 14, 20, -1, -5]);
    beyondNext ||= startRevision > NEXT_REV;
    ids.push(watchId);
    creates.push(
      encode({
        createRequest: {
          key: Buffer.from(r.pick(['a', 'b', 'ab', 'c', '\0', 'z', ''])),
          rangeEnd: Buffer.from(r.pick(['', '', 'b', 'c', '\0', 'a', 'zz'])),
          startRevision: BigInt(startRevision),
          progressNotify: r.int(2) === 1,
          filters: r.int(3) === 0 ? [r.pick([0, 1, 5]) as WatchCreateRequest_FilterType] : [], // 5 is no filter
          prevKv: r.int(2) === 1,
          watchId,
          fragment: r.int(2) === 1,
        },
      }),
    );
  }
  return { creates, cancelIds: [r.pick([...ids, 100n])], beyondNext };
}

/**
 * Creates, then (after catch-up) a progress request and cancels; `beyondNext` when a create
 * starts after the next revision; `progressAtOnce` sends one more progress request right
 * behind the creates.
 */
interface Case {
  creates: Buffer[];
  cancelIds: bigint[];
  beyondNext: boolean;
  progressAtOnce?: boolean;
}

/** A response as compared: everything but the header's cluster and member IDs. */
function describeResponse(bytes: Buffer): { key: string; text: string } {
  const w = WatchResponse.decode(bytes);
  const events = w.events.map((e) => `${e.type} ${Buffer.from(e.kv!.key).toString('latin1')}@${e.kv!.modRevision}${e.prevKv ? ` prev@${e.prevKv.modRevision}` : ''}`);
  const text = JSON.stringify({ rev: String(w.header?.revision), created: w.created, canceled: w.canceled, compact: String(w.compactRevision), reason: w.cancelReason, fragment: w.fragment, events });
  const progress = w.watchId === -1n && !w.created && !w.canceled && w.events.length === 0;
  return { key: progress ? 'progress' : `watch ${w.watchId}`, text };
}

/** Runs one case on a fresh stream; returns the responses grouped by watch ID (and progress). */
function run(client: grpc.Client, c: Case): Promise<Record<string, string[]>> {
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest('/etcdserverpb.Watch/Watch', raw, raw);
    const got: Record<string, string[]> = {};
    call.on('data', (b: Buffer) => {
      const { key, text } = describeResponse(b);
      (got[key] ??= []).push(text);
    });
    call.on('error', () => {}); // canceled below
    for (const q of c.creates) call.write(q);
    if (c.progressAtOnce) call.write(encode({ progressRequest: {} }));
    // etcd replays history within its 100 ms sync loop.
    setTimeout(() => {
      call.write(encode({ progressRequest: {} }));
      for (const watchId of c.cancelIds) call.write(encode({ cancelRequest: { watchId } }));
      setTimeout(() => {
        call.cancel();
        resolve(got);
      }, 200);
    }, 400);
  });
}

/** Starts both servers, writes the same history to each and returns a client of each (etcd first). */
async function serversWithHistory(t: TestContext): Promise<grpc.Client[]> {
  const clients = (await startBoth(t)).map((s) => new grpc.Client(s.endpoint.replace('http://', ''), grpc.credentials.createInsecure()));
  t.after(() => clients.forEach((c) => c.close()));
  const unary = (c: grpc.Client, method: string, body: Uint8Array) =>
    new Promise<void>((resolve, reject) => c.makeUnaryRequest(method, raw, raw, Buffer.from(body), (err) => (err ? reject(err) : resolve())));
  for (const c of clients) {
    for (let i = 0; i < PUTS; i++) {
      const put = PutRequest.encode({ key: Buffer.from(KEYS[i % KEYS.length]!), value: Buffer.from(`v${i}`), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }).finish();
      await unary(c, '/etcdserverpb.KV/Put', put);
    }
    await unary(c, '/etcdserverpb.KV/Compact', CompactionRequest.encode({ revision: BigInt(COMPACT_AT), physical: true }).finish());
  }
  return clients;
}

/** Runs a case on both servers: the answers grouped by watch ID, in ID order (etcd's, then ours). */
async function runBoth(clients: grpc.Client[], c: Case): Promise<Record<string, string[]>[]> {
  return (await Promise.all(clients.map((client) => run(client, c)))).map((g) => {
    if (c.beyondNext) delete g.progress;
    return Object.fromEntries(Object.entries(g).sort());
  });
}

describe('watch creates over gRPC: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('every watch ID gets the same answers, and progress requests the same', async (t) => {
    const clients = await serversWithHistory(t);
    const differ: string[] = [];
    let events = 0;
    let canceled = 0;
    for (let seed = 1; seed <= CASES; seed++) {
      const c = requests(seed);
      const [expected, actual] = await runBoth(clients, c);
      const all = Object.values(expected!).flat().join('\n');
      events += (all.match(/@/g) ?? []).length;
      canceled += (all.match(/"canceled":true/g) ?? []).length;
      if (JSON.stringify(actual) !== JSON.stringify(expected)) differ.push(`case ${seed}\n  etcd:    ${JSON.stringify(expected)}\n  etcd-ts: ${JSON.stringify(actual)}`);
    }
    assert.deepEqual(differ, []);
    // The cases reach past history, compacted and refused creates, and cancels.
    assert.ok(events > 20 && canceled > 10, `only ${events} events and ${canceled} cancels`);
  });

  it('client-chosen watch IDs are int64s: exact beyond 2^53, the extremes distinct, each canceled by its own ID', async (t) => {
    const clients = await serversWithHistory(t);
    const ids = [2n ** 53n + 1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n - 1n];
    const create = (watchId: bigint): Buffer =>
      encode({ createRequest: { key: Buffer.from('a'), rangeEnd: Buffer.alloc(0), startRevision: BigInt(COMPACT_AT), progressNotify: false, filters: [], prevKv: false, watchId, fragment: false } });
    const c: Case = { creates: ids.map(create), cancelIds: [2n ** 53n + 1n, 2n ** 63n - 1n], beyondNext: false };
    const [expected, actual] = await runBoth(clients, c);
    assert.deepEqual(actual, expected);
    // Five watchers answered under their own IDs; two of them canceled.
    assert.deepEqual(Object.keys(expected!).sort(), [...ids.map((id) => `watch ${id}`), 'progress'].sort());
    assert.equal(Object.values(expected!).flat().filter((r) => r.includes('"canceled":true')).length, 2);
  });

  it('a progress request waiting on a watcher that compaction cancels is answered, and so are later ones', async (t) => {
    const clients = await serversWithHistory(t);
    const create = (key: string, startRevision: number): Buffer =>
      encode({ createRequest: { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), startRevision: BigInt(startRevision), progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false } });
    // The second watcher starts below the compaction: the progress request behind it waits
    // until that watcher is canceled with compact_revision.
    const c: Case = { creates: [create('z', 0), create('a', COMPACT_AT - 1)], cancelIds: [], beyondNext: false, progressAtOnce: true };
    const [expected, actual] = await runBoth(clients, c);
    assert.deepEqual(actual, expected);
    assert.equal(expected!.progress?.length, 2);
    assert.ok(expected!['watch 1']?.some((r) => r.includes(`"compact":"${COMPACT_AT}"`)));
  });
});
