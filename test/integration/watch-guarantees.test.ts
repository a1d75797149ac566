// etcd's watch guarantees end to end, through the server process, gRPC and HTTP/2 flow control:
// random workloads of puts, txns, deletes (one key or a prefix) and compactions, with watchers
// created on four streams at random revisions (single keys, a prefix, a range, from-key; with
// prev_kv, filters, fragments; sometimes the same watch on several streams at once, which
// the server catches up from one shared batch) and canceled by the client at random, streams
// whose client stops reading (their watchers become victims and are replayed from
// history), progress requests, and periodic progress notifications every 100 ms for the
// watchers that ask for them. The unit
// property test (test/unit/watch-store.test.ts) checks the watchable store alone; this one
// checks what clients receive. Checked per watcher against a model of the keyspace:
// - ordered, unique, reliable: exactly the matching events from its start revision on, or a
//   prefix of them and a cancel whose compact revision is above the watcher's position, or a
//   prefix of them and nothing after the client's cancel;
// - atomic: a revision's events arrive in one response (fragments joined);
// - prev_kv is the value before the event (absent only when created, or compacted);
// - bookmarkable: after a progress notification at R (requested for the stream, or periodic
//   for the watcher), no event at or below R.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import type { DeleteRangeRequest, DeleteRangeResponse, TxnRequest, TxnResponse, WatchResponse } from '../../src/proto/gen/rpc.gen.js';
import { etcdTsUnavailableReason, startServer } from '../helpers/servers.js';
import { call, isProgress, Kv, prefixEnd, WatchSession, WatchCreateRequest_FilterType } from '../helpers/watch-client.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const STREAMS = 4;
const KEYS = Array.from({ length: 8 }, (_, i) => `g/${i}`);
/**
 * Values up to this size (a txn's up to half of it, for at most three keys): a stream that
 * stops reading fills HTTP/2's window and then the server's send queue within a few hundred
 * events, so its watchers become victims.
 */
const VALUE_MAX = 60_000;
/** --max-request-bytes: above the largest request; responses that join several events get split into fragments. */
const MAX_REQUEST_BYTES = 100 * 1024;

/** What a watcher watches: a key, a prefix, a range or from-key. */
const WATCHED: { key: string; end: string | undefined }[] = [
  ...KEYS.map((key) => ({ key, end: undefined })),
  { key: 'g/', end: prefixEnd('g/').toString('latin1') },
  { key: 'g/2', end: 'g/5' },
  { key: 'g/4', end: '\0' },
];

type Op =
  | { t: 'put'; key: number; size: number }
  | { t: 'txn'; keys: number[]; size: number }
  | { t: 'del'; key: number; prefix: boolean }
  | { t: 'compact'; back: number; physical: boolean }
  | { t: 'watch'; stream: number; watched: number; back: number; prevKv: boolean; filter: 'none' | 'noPut' | 'noDelete'; fragment: boolean; progressNotify: boolean; copies: number }
  | { t: 'cancel'; stream: number; nth: number }
  | { t: 'pause'; stream: number }
  | { t: 'progress'; stream: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 50, arbitrary: fc.record({ t: fc.constant('put' as const), key: fc.nat(KEYS.length - 1), size: fc.nat(VALUE_MAX) }) },
  { weight: 10, arbitrary: fc.record({ t: fc.constant('txn' as const), keys: fc.uniqueArray(fc.nat(KEYS.length - 1), { minLength: 1, maxLength: 3 }), size: fc.nat(VALUE_MAX / 2) }) },
  { weight: 10, arbitrary: fc.record({ t: fc.constant('del' as const), key: fc.nat(KEYS.length - 1), prefix: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('compact' as const), back: fc.integer({ min: 1, max: 30 }), physical: fc.boolean() }) },
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant('watch' as const),
      stream: fc.nat(STREAMS - 1),
      watched: fc.nat(WATCHED.length - 1),
      back: fc.nat(40),
      prevKv: fc.boolean(),
      filter: fc.constantFrom('none' as const, 'none' as const, 'noPut' as const, 'noDelete' as const),
      fragment: fc.boolean(),
      progressNotify: fc.boolean(),
      copies: fc.constantFrom(1, 1, 2, 4),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancel' as const), stream: fc.nat(STREAMS - 1), nth: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('pause' as const), stream: fc.nat(STREAMS - 1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('progress' as const), stream: fc.nat(STREAMS - 1) }) },
);

/** One event of the model: `prev` is the key's value before it, `prevRev` that value's revision. */
interface Ev {
  rev: number;
  type: 'PUT' | 'DELETE';
  key: string;
  value: string;
  prev: string | undefined;
  prevRev: number;
}

/** A watcher as created: where, on what, from which revision, with which options. */
interface Spec {
  stream: number;
  key: string;
  end: string | undefined;
  start: number;
  prevKv: boolean;
  filter: 'none' | 'noPut' | 'noDelete';
  /** Set when the client sent a cancel for it. */
  canceledByClient?: boolean;
}

function matches(s: Spec, e: Ev): boolean {
  if (e.rev < s.start) return false;
  if (s.end === undefined ? e.key !== s.key : e.key < s.key || (s.end !== '\0' && e.key >= s.end)) return false;
  return !(s.filter === 'noPut' && e.type === 'PUT') && !(s.filter === 'noDelete' && e.type === 'DELETE');
}

/** Runs `ops` against a fresh etcd-ts, then checks what every watcher received. */
async function runWorkload(ops: Op[]): Promise<void> {
  const local: (() => Promise<void> | void)[] = [];
  const server = await startServer({ after: (fn) => void local.push(fn) }, {
    kind: 'etcd-ts',
    flags: ['--max-request-bytes', String(MAX_REQUEST_BYTES), '--experimental-watch-progress-notify-interval', '100ms'],
  });
  const target = server.endpoint.replace('http://', '');
  const kv = new Kv(target);
  const sessions = Array.from({ length: STREAMS }, () => new WatchSession(target));
  local.push(() => kv.close(), ...sessions.map((s) => () => s.close()));
  try {
    const paused = sessions.map(() => false);
    const state = new Map<string, { value: string; rev: number }>();
    const history: Ev[] = [];
    const specs: Spec[][] = sessions.map(() => []);
    let rev = await kv.rev();
    let compactRev = 0;
    const record = (key: string, r: number, type: 'PUT' | 'DELETE', value: string): void => {
      const old = state.get(key);
      history.push({ rev: r, type, key, value, prev: old?.value, prevRev: old?.rev ?? 0 });
      if (type === 'PUT') state.set(key, { value, rev: r });
      else state.delete(key);
    };

    for (const [i, op] of ops.entries()) {
      switch (op.t) {
        case 'put': {
          const key = KEYS[op.key]!;
          const value = `${i}:${'p'.repeat(op.size)}`;
          rev = Number((await kv.put(key, value)).header!.revision);
          record(key, rev, 'PUT', value);
          break;
        }
        case 'txn': {
          const keys = op.keys.map((k) => KEYS[k]!);
          const value = `${i}:${'t'.repeat(op.size)}`;
          const res = await call<TxnRequest, TxnResponse>(kv.client.txn.bind(kv.client), {
            compare: [],
            failure: [],
            success: keys.map((k) => ({ requestPut: { key: Buffer.from(k), value: Buffer.from(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } })),
          });
          rev = Number(res.header!.revision);
          // One revision; its events in key order of the puts' sub-revisions.
          for (const k of keys) record(k, rev, 'PUT', value);
          break;
        }
        case 'del': {
          const key = op.prefix ? 'g/' : KEYS[op.key]!;
          const res = await call<DeleteRangeRequest, DeleteRangeResponse>(kv.client.deleteRange.bind(kv.client), { key: Buffer.from(key), rangeEnd: op.prefix ? prefixEnd('g/') : Buffer.alloc(0), prevKv: false });
          const gone = [...state.keys()].filter((k) => (op.prefix ? k.startsWith('g/') : k === key)).sort();
          if (gone.length > 0) {
            rev = Number(res.header!.revision);
            for (const k of gone) record(k, rev, 'DELETE', '');
          }
          break;
        }
        case 'compact': {
          const at = rev - op.back;
          if (at > compactRev) {
            await kv.compact(at, op.physical);
            compactRev = at;
          }
          break;
        }
        case 'watch': {
          const { key, end } = WATCHED[op.watched]!;
          // Copies go to the next streams, every other one with prev_kv flipped.
          for (let c = 0; c < op.copies; c++) {
            const stream = (op.stream + c) % STREAMS;
            const prevKv = op.prevKv !== (c % 2 === 1);
            const spec: Spec = { stream, key, end, start: Math.max(1, rev + 1 - op.back), prevKv, filter: op.filter };
            specs[stream]!.push(spec);
            sessions[stream]!.create(key, {
              rangeEnd: end === undefined ? Buffer.alloc(0) : Buffer.from(end, 'latin1'),
              startRevision: BigInt(spec.start),
              prevKv,
              fragment: op.fragment,
              progressNotify: op.progressNotify,
              filters: op.filter === 'noPut' ? [WatchCreateRequest_FilterType.NOPUT] : op.filter === 'noDelete' ? [WatchCreateRequest_FilterType.NODELETE] : [],
            });
          }
          break;
        }
        case 'cancel': {
          // Watch IDs are given in order from 0 on each stream, so the n-th create has ID n.
          const live = specs[op.stream]!.flatMap((spec, id) => (spec.canceledByClient ? [] : [{ spec, id }]));
          if (live.length === 0) break;
          const { spec, id } = live[op.nth % live.length]!;
          spec.canceledByClient = true;
          sessions[op.stream]!.cancel(id);
          break;
        }
        case 'pause':
          paused[op.stream] = !paused[op.stream];
          if (paused[op.stream]) sessions[op.stream]!.stream.pause();
          else sessions[op.stream]!.stream.resume();
          break;
        case 'progress':
          sessions[op.stream]!.progress();
          break;
      }
    }
    for (const [s, session] of sessions.entries()) if (paused[s]) session.stream.resume();

    for (const [s, session] of sessions.entries()) {
      const n = specs[s]!.length;
      await session.waitFor((rs) => rs.filter((r) => r.created).length >= n, `${n} created on stream ${s}`, 60_000);
      const created = session.responses.flatMap((r, idx) => (r.created ? [{ id: r.watchId, idx }] : []));
      assert.deepEqual(created.map((c) => c.id), specs[s]!.map((_, id) => BigInt(id)), `stream ${s}: watch IDs in creation order from 0`);
      for (const [j, spec] of specs[s]!.entries()) {
        const { id } = created[j]!;
        const want = history.filter((e) => matches(spec, e));
        const cancelOf = (rs: WatchResponse[]): WatchResponse | undefined => rs.find((r) => r.watchId === id && r.canceled);
        const received = (rs: WatchResponse[]): number => rs.reduce((n, r) => (r.watchId === id ? n + r.events.length : n), 0);
        await session.waitFor((rs) => cancelOf(rs) !== undefined || received(rs) >= want.length, `watcher ${id} on stream ${s} to finish`, 60_000);
        const responses = session.responses.filter((r) => r.watchId === id && r.events.length > 0);
        const got: Ev[] = responses.flatMap((r) =>
          r.events.map((e) => ({
            rev: Number(e.kv!.modRevision),
            type: e.type === 1 ? ('DELETE' as const) : ('PUT' as const),
            key: e.kv!.key.toString('latin1'),
            value: e.kv!.value.toString(),
            prev: e.prevKv?.value.toString(),
            prevRev: Number(e.prevKv?.modRevision ?? 0),
          })),
        );
        const shape = (e: Ev): [number, string, string, string] => [e.rev, e.type, e.key, e.value];
        const cancel = cancelOf(session.responses);
        const what = `watcher ${id} on stream ${s} (${JSON.stringify(spec)})`;
        if (cancel && spec.canceledByClient && cancel.compactRevision === 0n) {
          assert.deepEqual(got.map(shape), want.slice(0, got.length).map(shape), `${what}: a prefix of its events before the client's cancel`);
          const afterCancel = session.responses.slice(session.responses.indexOf(cancel) + 1);
          assert.ok(afterCancel.every((r) => r.watchId !== id), `${what}: a response after its cancel`);
        } else if (cancel) {
          assert.deepEqual(got.map(shape), want.slice(0, got.length).map(shape), `${what}: a prefix of its events before the cancel`);
          const position = got.length > 0 ? got.at(-1)!.rev + 1 : spec.start;
          assert.ok(position < Number(cancel.compactRevision), `${what}: canceled at compact revision ${cancel.compactRevision} though at ${position}`);
        } else {
          assert.deepEqual(got.map(shape), want.map(shape), `${what}: every matching event, in order, once`);
        }
        // Atomic: a revision never spans two responses (a fragmented response is one).
        let lastRevOfResponse = 0;
        let inFragments = false;
        for (const r of responses) {
          const first = Number(r.events[0]!.kv!.modRevision);
          if (!inFragments) assert.ok(first > lastRevOfResponse, `${what}: revision ${first} split across responses`);
          lastRevOfResponse = Number(r.events.at(-1)!.kv!.modRevision);
          inFragments = r.fragment;
        }
        // Bookmarkable, periodic: after this watcher's progress notification at R, no event <= R.
        const ofWatcher = session.responses.filter((r) => r.watchId === id);
        for (const [k, r] of ofWatcher.entries()) {
          if (!isProgress(r)) continue;
          const R = Number(r.header!.revision);
          for (const later of ofWatcher.slice(k + 1)) {
            for (const e of later.events) assert.ok(Number(e.kv!.modRevision) > R, `${what}: event at ${e.kv!.modRevision} after its progress notification at ${R}`);
          }
        }
        if (spec.prevKv) {
          got.forEach((e, k) => {
            const w = want[k]!;
            if (e.prev !== undefined) assert.deepEqual([e.prev, e.prevRev], [w.prev, w.prevRev], `${what}: prev_kv of ${e.key}@${e.rev}`);
            else assert.ok(w.prev === undefined || e.rev - 1 < compactRev, `${what}: no prev_kv of ${e.key}@${e.rev}`);
          });
        } else {
          assert.ok(got.every((e) => e.prev === undefined), `${what}: prev_kv it did not ask for`);
        }
      }
      // Bookmarkable: after a progress notification at R, watchers created before it get no event <= R.
      for (const [idx, r] of session.responses.entries()) {
        if (!isProgress(r) || r.watchId !== -1n) continue;
        const R = Number(r.header!.revision);
        const before = new Set(created.filter((c) => c.idx < idx).map((c) => c.id));
        for (const later of session.responses.slice(idx + 1)) {
          if (!before.has(later.watchId)) continue;
          for (const e of later.events) assert.ok(Number(e.kv!.modRevision) > R, `stream ${s}: event at ${e.kv!.modRevision} after a progress notification at ${R}`);
        }
      }
    }
  } finally {
    for (const fn of local.reverse()) await fn();
  }
}

describe('watch guarantees end to end', { skip: etcdTsUnavailableReason() }, () => {
  it('random workloads with slow streams: ordered, unique, reliable, atomic, prev_kv, bookmarkable', { timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 200, maxLength: 500 }), runWorkload), { numRuns: 6, endOnFailure: true, includeErrorInReport: true });
  });
});
