// Watch events under live writes, etcd 3.4 against etcd-ts: seeded random workloads run op by
// op on both servers (puts with and without a lease, some keeping the key's value or lease,
// deletes of a key, a range and a prefix, txns of several puts and deletes, leases granted
// with a chosen ID and revoked, compactions), with watchers created between the ops on two
// streams per server (a key, a range, a prefix, from-key and every key; starting now, in the
// past, below the compaction and in the future; with prev_kv; with NOPUT or NODELETE). Per
// watcher, the answers must be the same on both:
// its created answer, then every event in order with every field of its kv and prev_kv, and a
// cancel. So must every op's answer (its revision, or its error).
//
// Compared per watcher, not per response: how a watcher's events are cut into responses is the
// server's choice (etcd sends history from its 100 ms sync loop; each revision in one response
// either way, which test/integration/watch-guarantees checks). Each create waits for its
// created answer on both servers (a watch from now then starts at the same revision), and one
// from the past waits for etcd's sync loop before the next op, so that a compaction meets
// synced watchers only, as it does on both servers without timing in play. No watcher starts
// at the compaction revision itself: etcd 3.4 drops that revision's deletes there (etcd bug
// #18089, test/integration/watch-regressions).
//
// A second test cuts one response past --max-request-bytes + 512 KiB into fragments, live (a
// delete of 20 keys with prev_kv) and from history, and compares where each server cut. A third
// runs --experimental-watch-progress-notify-interval: who is notified, and at which revision.
// A fourth lets a lease expire under a watcher with prev_kv.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  LeaseGrantRequest,
  LeaseRevokeRequest,
  PutRequest,
  type RequestOp,
  TxnRequest,
  WatchCreateRequest_FilterType,
  WatchRequest,
  WatchResponse,
} from '../../src/proto/gen/rpc.gen.js';
import { Event_EventType, type KeyValue } from '../../src/proto/gen/kv.gen.js';
import { seeded } from '../helpers/seeded.js';
import { etcdUnavailableReason, startBoth } from '../helpers/servers.js';
import { prefixEnd } from '../helpers/watch-client.js';

const CASES = 6;
const OPS_PER_CASE = 45;
const raw = (b: Buffer): Buffer => b;

/**
 * One step of a case: a unary call (method path and request bytes), a compaction `back`
 * revisions below the current one, or a watch create on one of the two streams.
 */
type Step = { call: string; body: Buffer } | { compactBack: number } | { watch: 0 | 1; create: (currentRev: number, compactedAt: number) => Buffer };

/** The steps of case `seed`, on keys under its own prefix. */
function steps(seed: number): Step[] {
  const r = seeded(seed * 7919);
  const p = `c${seed}/`;
  const pEnd = prefixEnd(p).toString('latin1');
  const keys = ['a', 'b', 'b1', 'c', 'd'].map((k) => p + k);
  const leaseIds = [0n, 1n, 2n].map((i) => BigInt(seed * 100) + i + 1n);
  const granted = new Set<bigint>();
  // One put in six keeps the key's value (ignore_value) or lease (ignore_lease): the event
  // carries the kept one, and a key that does not exist is refused.
  const put = (lease = 0n): RequestOp => {
    const keep = r.int(6);
    const ignoreValue = keep === 0;
    const ignoreLease = keep === 1;
    const key = Buffer.from(r.pick(keys));
    const value = Buffer.from(ignoreValue ? '' : `v${r.int(1000)}`);
    return { requestPut: { key, value, lease: ignoreLease ? 0n : lease, prevKv: false, ignoreValue, ignoreLease } };
  };
  const del = (): RequestOp => {
    const from = r.pick(keys);
    const rangeEnd = r.pick(['', '', p + 'c', pEnd]);
    return { requestDeleteRange: { key: Buffer.from(rangeEnd && rangeEnd <= from ? p : from), rangeEnd: Buffer.from(rangeEnd), prevKv: false } };
  };
  const out: Step[] = [];
  for (let i = 0; i < OPS_PER_CASE; i++) {
    const kind = r.int(20);
    if (kind < 7) {
      const lease = granted.size > 0 && r.int(3) === 0 ? r.pick([...granted]) : 0n;
      out.push({ call: '/etcdserverpb.KV/Put', body: Buffer.from(PutRequest.encode(put(lease).requestPut!).finish()) });
    } else if (kind < 10) {
      out.push({ call: '/etcdserverpb.KV/DeleteRange', body: Buffer.from(DeleteRangeRequest.encode(del().requestDeleteRange!).finish()) });
    } else if (kind < 12) {
      const ops = Array.from({ length: 1 + r.int(3) }, () => (r.int(2) === 0 ? put() : del()));
      const txn = {
        compare: [{ result: Compare_CompareResult.GREATER, target: Compare_CompareTarget.VERSION, key: Buffer.from(r.pick(keys)), version: BigInt(r.int(2)), rangeEnd: Buffer.alloc(0) }],
        success: ops,
        failure: [put()],
      };
      out.push({ call: '/etcdserverpb.KV/Txn', body: Buffer.from(TxnRequest.encode(txn).finish()) });
    } else if (kind < 13) {
      const id = r.pick(leaseIds);
      granted.add(id);
      out.push({ call: '/etcdserverpb.Lease/LeaseGrant', body: Buffer.from(LeaseGrantRequest.encode({ ID: id, TTL: 600n }).finish()) });
    } else if (kind < 14 && granted.size > 0) {
      const id = r.pick([...granted]);
      granted.delete(id);
      out.push({ call: '/etcdserverpb.Lease/LeaseRevoke', body: Buffer.from(LeaseRevokeRequest.encode({ ID: id }).finish()) });
    } else if (kind < 15) {
      out.push({ compactBack: 1 + r.int(6) });
    } else {
      const range = r.pick<[string, string]>([
        [p + 'b', ''],
        [p + 'a', p + 'c'],
        [p, pEnd],
        [p + 'b', '\0'],
        ['\0', '\0'],
      ]);
      const startKind = r.int(5);
      const back = 1 + r.int(8);
      const filters = r.int(3) === 0 ? [r.pick([WatchCreateRequest_FilterType.NOPUT, WatchCreateRequest_FilterType.NODELETE])] : [];
      const prevKv = r.int(2) === 0;
      out.push({
        watch: r.int(2) as 0 | 1,
        create: (currentRev, compactedAt) => {
          // now; past (never at the compaction itself); below the compaction; the future
          let start = 0;
          if (startKind === 1 || startKind === 2) start = Math.max(1, currentRev - back);
          if (start > 0 && start === compactedAt) start++;
          if (startKind === 3 && compactedAt > 1) start = compactedAt - 1;
          if (startKind === 4) start = currentRev + 2;
          return create(range[0], range[1], { startRevision: start, prevKv, filters });
        },
      });
    }
  }
  return out;
}

/** An event's kv or prev_kv as compared: every field, '-' when absent. */
function kvText(kv: KeyValue | undefined): string {
  if (!kv) return '-';
  // A long value as its length and digest, so that a difference stays readable.
  const s = (b: Uint8Array) => (b.length > 64 ? `${b.length}B:${createHash('sha1').update(b).digest('hex').slice(0, 12)}` : Buffer.from(b).toString('latin1'));
  return `${s(kv.key)}=${s(kv.value)} c${kv.createRevision} m${kv.modRevision} v${kv.version} l${kv.lease}`;
}

/**
 * One server's side of a case: a client and two watch streams, and what each watcher got.
 * `boundaries`: also record where each events response starts (its fragment flag and event
 * count), for the fragment test, where the cut is the server's to match.
 */
class Side {
  /** Per stream, per watch ID: the created answer, every event, a cancel. */
  readonly got: Map<string, string[]>[] = [new Map(), new Map()];
  private readonly streams: grpc.ClientDuplexStream<Buffer, Buffer>[];
  private readonly createdWaiters: (() => void)[][] = [[], []];

  constructor(
    readonly client: grpc.Client,
    private readonly boundaries = false,
  ) {
    this.streams = [0, 1].map((i) => {
      const call = client.makeBidiStreamRequest('/etcdserverpb.Watch/Watch', raw, raw);
      call.on('error', () => {}); // canceled at the end
      call.on('data', (b: Buffer) => this.onResponse(i, WatchResponse.decode(b)));
      return call;
    });
  }

  private onResponse(stream: number, w: WatchResponse): void {
    const id = String(w.watchId);
    if (w.watchId === -1n && !w.created && !w.canceled && w.events.length === 0) return; // a progress answer
    const list = this.got[stream]!.get(id) ?? [];
    this.got[stream]!.set(id, list);
    if (w.created || w.canceled) list.push(JSON.stringify({ created: w.created, canceled: w.canceled, compact: String(w.compactRevision), reason: w.cancelReason }));
    if (!w.created && !w.canceled && w.events.length === 0) list.push(`progress ${w.header?.revision}`);
    if (this.boundaries && w.events.length > 0) list.push(`response: ${w.events.length} events${w.fragment ? ', fragment' : ''}, header ${w.header?.revision}`);
    for (const e of w.events) list.push(`${e.type === Event_EventType.DELETE ? 'DELETE' : 'PUT'} ${kvText(e.kv)} prev ${kvText(e.prevKv)}`);
    if (w.created) this.createdWaiters[stream]!.shift()?.();
  }

  /** Sends a create on `stream`; resolves on its created answer. */
  create(stream: 0 | 1, req: Buffer): Promise<void> {
    return new Promise((resolve) => {
      this.createdWaiters[stream]!.push(resolve);
      this.streams[stream]!.write(req);
    });
  }

  /** A unary call: its header's revision, or its error's code and text. */
  unary(method: string, body: Buffer): Promise<{ rev: number; answer: string }> {
    return new Promise((resolve) =>
      this.client.makeUnaryRequest(method, raw, raw, body, (err, res) => {
        if (err) resolve({ rev: -1, answer: `error ${err.code} ${err.details}` });
        else {
          // Every KV and Lease answer has its header in field 1: CompactionResponse, which has
          // nothing else, reads it from any of them (other fields are skipped).
          const rev = Number(CompactionResponse.decode(res!).header!.revision);
          resolve({ rev, answer: `rev ${rev}` });
        }
      }),
    );
  }

  close(): void {
    for (const s of this.streams) s.cancel();
  }
}

/** Starts etcd and etcd-ts with `flags`; a client of each (etcd first). */
async function clientsOfBoth(t: TestContext, flags: string[] = []): Promise<grpc.Client[]> {
  const clients = (await startBoth(t, { flags })).map((s) => new grpc.Client(s.endpoint.replace('http://', ''), grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }));
  t.after(() => clients.forEach((c) => c.close()));
  return clients;
}

/** A watch create request on [key, rangeEnd). */
function create(
  key: string,
  rangeEnd: string,
  o: { startRevision?: number; prevKv?: boolean; fragment?: boolean; progressNotify?: boolean; filters?: WatchCreateRequest_FilterType[] } = {},
): Buffer {
  return Buffer.from(
    WatchRequest.encode({
      createRequest: {
        key: Buffer.from(key),
        rangeEnd: Buffer.from(rangeEnd),
        startRevision: BigInt(o.startRevision ?? 0),
        progressNotify: o.progressNotify ?? false,
        filters: o.filters ?? [],
        prevKv: o.prevKv ?? false,
        watchId: 0n,
        fragment: o.fragment ?? false,
      },
    }).finish(),
  );
}

describe('watch events under live writes: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('every watcher gets the same answers and events, with the same kv and prev_kv, as etcd gives it', async (t) => {
    const clients = await clientsOfBoth(t);
    const differ: string[] = [];
    const seen = { events: 0, prevKv: 0, deletes: 0, compactCancels: 0, revokes: 0, refused: 0 };
    let currentRev = 1;
    let compactedAt = 0;
    for (let seed = 1; seed <= CASES; seed++) {
      const sides = clients.map((c) => new Side(c));
      try {
        const ops: string[] = [];
        for (const step of steps(seed)) {
          if ('watch' in step) {
            const req = step.create(currentRev, compactedAt);
            await Promise.all(sides.map((s) => s.create(step.watch, req)));
            const start = Number(WatchRequest.decode(req).createRequest!.startRevision);
            if (start > 0 && start <= currentRev) await sleep(350); // etcd's sync loop (every 100 ms) replays it
            continue;
          }
          let call: string;
          let body: Buffer;
          if ('compactBack' in step) {
            const at = currentRev - step.compactBack;
            if (at <= compactedAt) continue;
            call = '/etcdserverpb.KV/Compact';
            body = Buffer.from(CompactionRequest.encode({ revision: BigInt(at), physical: true }).finish());
            compactedAt = at;
          } else ({ call, body } = step);
          const answers = await Promise.all(sides.map((s) => s.unary(call, body)));
          ops.push(`${call}: ${answers.map((a) => a.answer).join(' | ')}`);
          if (answers[0]!.answer !== answers[1]!.answer) differ.push(`case ${seed}, ${call}: etcd ${answers[0]!.answer}, etcd-ts ${answers[1]!.answer}`);
          if (answers[0]!.rev <= 0) {
            seen.refused++;
            continue;
          }
          currentRev = answers[0]!.rev;
          if (call.endsWith('LeaseRevoke')) seen.revokes++;
        }
        await sleep(400); // etcd's sync loop, for watchers still waiting on history
        const [expected, actual] = sides.map((s) => s.got.map((m) => Object.fromEntries([...m].sort())));
        const all = JSON.stringify(expected);
        const lines = expected!.flatMap((m) => Object.values(m).flat());
        seen.events += lines.filter((l) => l.includes(' prev ')).length;
        seen.prevKv += lines.filter((l) => l.includes(' prev ') && !l.endsWith(' prev -')).length;
        seen.deletes += lines.filter((l) => l.startsWith('DELETE ')).length;
        seen.compactCancels += lines.filter((l) => l.includes('"canceled":true,"compact":"') && !l.includes('"compact":"0"')).length;
        if (JSON.stringify(actual) !== all) differ.push(`case ${seed}\n  ops: ${ops.join('\n       ')}\n  etcd:    ${all}\n  etcd-ts: ${JSON.stringify(actual)}`);
      } finally {
        sides.forEach((s) => s.close());
      }
    }
    assert.deepEqual(differ, []);
    // The workloads reach events with and without prev_kv, deletes, watchers canceled by the
    // compaction, revoked leases and refused ops (a put keeping the value of a missing key).
    assert.ok(seen.events > 200 && seen.prevKv > 50 && seen.deletes > 30 && seen.compactCancels > 0 && seen.revokes > 0 && seen.refused > 0, JSON.stringify(seen));
  });

  it('a response past --max-request-bytes + 512 KiB is cut into the same fragments, live and from history', async (t) => {
    // Fragments start at 64 KiB + 512 KiB of response; 20 values of 40 KiB make 800 KiB, within
    // the 1 MiB a catch-up pass gives one watcher (docs/compat-notes.md, "Catch-up framing").
    const clients = await clientsOfBoth(t, ['--max-request-bytes', String(64 * 1024)]);
    const sides = clients.map((c) => new Side(c, true));
    t.after(() => sides.forEach((s) => s.close()));
    const value = Buffer.alloc(40 * 1024, 'x');
    let firstRev = 0;
    for (let i = 0; i < 20; i++) {
      const key = Buffer.from(`f/k${String(i).padStart(2, '0')}`);
      const body = Buffer.from(PutRequest.encode({ key, value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }).finish());
      const answers = await Promise.all(sides.map((s) => s.unary('/etcdserverpb.KV/Put', body)));
      assert.equal(answers[1]!.answer, answers[0]!.answer);
      firstRev ||= answers[0]!.rev;
    }
    // Watch IDs 0–3: the deletes with prev_kv, fragmented; without prev_kv (small: not cut);
    // with prev_kv but not fragmented (one response); the puts' history, fragmented.
    for (const req of [
      create('f/', 'f0', { prevKv: true, fragment: true }),
      create('f/', 'f0', { fragment: true }),
      create('f/', 'f0', { prevKv: true }),
      create('f/', 'f0', { startRevision: firstRev, fragment: true }),
    ]) {
      await Promise.all(sides.map((s) => s.create(0, req)));
    }
    await sleep(250); // etcd's sync loop replays the history
    const del = Buffer.from(DeleteRangeRequest.encode({ key: Buffer.from('f/'), rangeEnd: Buffer.from('f0'), prevKv: false }).finish());
    await Promise.all(sides.map((s) => s.unary('/etcdserverpb.KV/DeleteRange', del)));
    await sleep(400);
    const [expected, actual] = sides.map((s) => Object.fromEntries(s.got[0]!));
    assert.deepEqual(actual, expected);
    // etcd cut the deletes with prev_kv and the history into several responses.
    const cuts = (id: string) => expected![id]!.filter((l) => l.includes(', fragment')).length;
    assert.ok(cuts('0') >= 1 && cuts('1') === 0 && cuts('2') === 0 && cuts('3') >= 1, JSON.stringify(expected));
  });

  it('periodic progress notifications go to the watchers that asked, skip a watcher that just had events, and carry the revision', async (t) => {
    // Ticks every 600 ms; the busy key gets a put every ~100 ms.
    const clients = await clientsOfBoth(t, ['--experimental-watch-progress-notify-interval', '600ms']);
    const sides = clients.map((c) => new Side(c));
    t.after(() => sides.forEach((s) => s.close()));
    // Watch IDs: 0 a quiet key, asked; 1 a quiet key, not asked; 2 a busy key, asked.
    for (const req of [create('p', '', { progressNotify: true }), create('q', ''), create('r', '', { progressNotify: true })]) {
      await Promise.all(sides.map((s) => s.create(0, req)));
    }
    const put = Buffer.from(PutRequest.encode({ key: Buffer.from('r'), value: Buffer.from('v'), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }).finish());
    let lastRev = 0;
    for (const until = Date.now() + 2400; Date.now() < until; ) {
      const answers = await Promise.all(sides.map((s) => s.unary('/etcdserverpb.KV/Put', put)));
      assert.equal(answers[1]!.answer, answers[0]!.answer);
      lastRev = answers[0]!.rev;
      await sleep(100);
    }
    await sleep(1300); // the busy key is quiet now: its next notification comes
    /** Per watcher: its events, and its notifications' revisions (how many is the timer's). */
    const shape = (s: Side) =>
      [...s.got[0]!].map(([id, lines]) => {
        const revs = lines.filter((l) => l.startsWith('progress ')).map((l) => Number(l.slice('progress '.length)));
        return { id, events: lines.filter((l) => !l.startsWith('progress ')), notified: revs.length > 0, revisions: [...new Set(revs)].sort((a, b) => a - b) };
      });
    const [expected, actual] = sides.map(shape);
    // The quiet watcher that asked was notified at every tick (how many, and at which revisions
    // while the puts went on, is the timers'), the last time at the last revision.
    for (const [side, x] of [sides[0]!, sides[1]!].map((s, i) => [s, [expected, actual][i]!] as const)) {
      const count = side.got[0]!.get('0')!.filter((l) => l.startsWith('progress ')).length;
      const revs = x[0]!.revisions;
      assert.ok(count >= 4 && revs.every((r) => r >= 1 && r <= lastRev) && revs.includes(lastRev), `${count} notifications at ${revs}`);
      x[0]!.revisions = [];
    }
    assert.deepEqual(actual, expected);
    // The busy watcher was notified only once its key went quiet, at the last revision.
    assert.deepEqual(expected![2]!.revisions, [lastRev]);
  });

  it('an expired lease deletes its keys in one revision: the same DELETE events, with prev_kv', { timeout: 30_000 }, async (t) => {
    const clients = await clientsOfBoth(t);
    const sides = clients.map((c) => new Side(c));
    t.after(() => sides.forEach((s) => s.close()));
    const unary = async (method: string, body: Uint8Array) => {
      const answers = await Promise.all(sides.map((s) => s.unary(method, Buffer.from(body))));
      assert.equal(answers[1]!.answer, answers[0]!.answer);
    };
    await Promise.all(sides.map((s) => s.create(0, create('x/', 'x0', { prevKv: true }))));
    await unary('/etcdserverpb.Lease/LeaseGrant', LeaseGrantRequest.encode({ ID: 77n, TTL: 2n }).finish());
    for (const [key, lease] of [['x/3', 77n], ['x/1', 77n], ['x/kept', 0n], ['x/2', 77n]] as const) {
      await unary('/etcdserverpb.KV/Put', PutRequest.encode({ key: Buffer.from(key), value: Buffer.from('v'), lease, prevKv: false, ignoreValue: false, ignoreLease: false }).finish());
    }
    const deletes = (s: Side) => (s.got[0]!.get('0') ?? []).filter((l) => l.startsWith('DELETE')).length;
    for (const until = Date.now() + 20_000; Date.now() < until && !sides.every((s) => deletes(s) === 3); ) await sleep(200);
    const [expected, actual] = sides.map((s) => s.got[0]!.get('0'));
    assert.deepEqual(actual, expected);
    assert.equal(deletes(sides[0]!), 3, JSON.stringify(expected));
  });
});
