// Crash safety of etcd-ts: "acknowledged ⇒ durable" and "the revision never goes back".
//
// 16 concurrent writers put keys through the generated grpc-js KV client while the server is
// killed with SIGKILL at a random moment, several rounds in a row; after each restart every
// write the server acknowledged must be there with the acknowledged revision, and the store's
// revision must be at least every revision acknowledged or observed before the crash.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, credentials } from '@grpc/grpc-js';
import {
  KVClient,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
} from '../../src/proto/gen/rpc.gen.js';
import { etcdTsUnavailableReason, startServer } from '../helpers/servers.js';

const WRITERS = 16;
const ROUNDS = 5;
/** The load runs this long (random in [min, max)) before the kill. */
const LOAD_MIN_MS = 300;
const LOAD_MAX_MS = 1500;
/** Every third write of a writer overwrites its "hot" key; the others create a fresh key. */
const HOT_EVERY = 3;
const CALL_TIMEOUT_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rangeRequest(key: string, rangeEnd = '', revision = 0n): RangeRequest {
  return {
    key: Buffer.from(key), rangeEnd: Buffer.from(rangeEnd), limit: 0n, revision,
    sortOrder: RangeRequest_SortOrder.NONE, sortTarget: RangeRequest_SortTarget.KEY, serializable: false,
    keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
  };
}

function putRequest(key: string, value: string): PutRequest {
  return { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false };
}

const deadline = (): { deadline: Date } => ({ deadline: new Date(Date.now() + CALL_TIMEOUT_MS) });

/** An acknowledged put: the key, the value and the revision the server answered with. */
interface Ack {
  key: string;
  value: string;
  rev: bigint;
  /** For hot keys: the writer's sequence number, to check the newest value is not older. */
  seq: number;
  hot: boolean;
}

describe('crash safety (kill -9 under concurrent writes)', { skip: etcdTsUnavailableReason() }, () => {
  const clients: KVClient[] = [];
  after(() => {
    for (const c of clients) c.close();
  });

  const newClient = (endpoint: string): KVClient => {
    const c = new KVClient(endpoint.replace(/^http:\/\//, ''), credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
    });
    clients.push(c);
    return c;
  };

  it('keeps every acknowledged write and never moves the revision back', async (t) => {
    const server = await startServer(t, { kind: 'etcd-ts' });
    const acks: Ack[] = [];
    /** Highest revision acknowledged, or reported after a restart, so far. */
    let maxSeenRev = 0n;
    /** Next sequence number per writer (continues across rounds). */
    const nextSeq = new Array<number>(WRITERS).fill(0);

    for (let round = 0; round < ROUNDS; round++) {
      const client = newClient(server.endpoint);
      let stop = false;
      let roundAcks = 0;
      const writer = async (w: number): Promise<void> => {
        while (!stop) {
          const seq = nextSeq[w]!++;
          const hot = seq % HOT_EVERY === 0;
          const key = hot ? `crash/hot/${w}` : `crash/w${w}/${String(seq).padStart(7, '0')}`;
          const value = `r${round}-w${w}-s${seq}`;
          let resp: PutResponse;
          try {
            resp = await new Promise<PutResponse>((resolve, reject) => {
              client.put(putRequest(key, value), new Metadata(), deadline(), (err, r) => (err ? reject(err) : resolve(r)));
            });
          } catch {
            // The server died (or is dying): this write may or may not have happened.
            return;
          }
          const rev = resp.header!.revision;
          acks.push({ key, value, rev, seq, hot });
          roundAcks++;
          if (rev > maxSeenRev) maxSeenRev = rev;
        }
      };
      const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
      await sleep(LOAD_MIN_MS + Math.random() * (LOAD_MAX_MS - LOAD_MIN_MS));
      await server.kill9();
      stop = true;
      await Promise.all(writers);
      client.close();
      assert.ok(roundAcks > 0, `round ${round}: the load made acknowledged writes before the kill`);
      t.diagnostic(`round ${round}: ${roundAcks} writes acknowledged before kill -9 (max revision ${maxSeenRev})`);

      await server.restart();
      const check = newClient(server.endpoint);
      try {
        // The head after this restart is the floor for every later restart.
        maxSeenRev = await verify(check, acks, maxSeenRev, round);
      } finally {
        check.close();
      }
    }
    assert.ok(acks.length > ROUNDS * WRITERS, `enough writes were acknowledged (${acks.length})`);
  });
});

/** Checks every acknowledged write after a restart; returns the server's revision. */
async function verify(client: KVClient, acks: readonly Ack[], maxSeenRev: bigint, round: number): Promise<bigint> {
  const range = (r: RangeRequest): Promise<RangeResponse> =>
    new Promise((resolve, reject) => {
      client.range(r, new Metadata(), deadline(), (err, resp) => (err ? reject(err) : resolve(resp)));
    });

  // 1. The revision never goes back: the restarted server is at least at every revision it
  //    acknowledged before the crash.
  const all = await range(rangeRequest('crash/', 'crash0'));
  const head = all.header!.revision;
  assert.ok(head >= maxSeenRev, `round ${round}: revision after restart ${head} < acknowledged ${maxSeenRev}`);

  // 2. Every acknowledged fresh key is there, with the value and the revision acknowledged.
  const latest = new Map(all.kvs.map((kv) => [kv.key.toString(), kv]));
  const lastHotSeq = new Map<string, Ack>();
  for (const a of acks) {
    if (a.hot) {
      const prev = lastHotSeq.get(a.key);
      if (!prev || a.seq > prev.seq) lastHotSeq.set(a.key, a);
      continue;
    }
    const kv = latest.get(a.key);
    assert.ok(kv, `round ${round}: acknowledged key ${a.key} (revision ${a.rev}) is missing`);
    assert.equal(kv.value.toString(), a.value, `value of ${a.key}`);
    assert.equal(kv.modRevision, a.rev, `mod_revision of ${a.key}`);
  }

  // 3. Hot keys: the newest value is the last acknowledged write or a later one (an
  //    unacknowledged write may have become durable before the kill), never an older one.
  for (const [key, a] of lastHotSeq) {
    const kv = latest.get(key);
    assert.ok(kv, `round ${round}: hot key ${key} is missing`);
    const seq = Number(/-s(\d+)$/.exec(kv.value.toString())?.[1] ?? -1);
    assert.ok(seq >= a.seq, `round ${round}: ${key} holds s${seq}, older than the acknowledged s${a.seq}`);
    assert.ok(kv.modRevision >= a.rev, `${key} mod_revision ${kv.modRevision} < acknowledged ${a.rev}`);
  }

  // 4. Every acknowledged hot write is readable at its revision with its value.
  const hot = acks.filter((a) => a.hot);
  for (let i = 0; i < hot.length; i += 64) {
    await Promise.all(hot.slice(i, i + 64).map(async (a) => {
      const rr = await range(rangeRequest(a.key, '', a.rev));
      const kv = rr.kvs[0];
      assert.ok(kv, `round ${round}: ${a.key} is missing at its acknowledged revision ${a.rev}`);
      assert.equal(kv.value.toString(), a.value, `${a.key} at revision ${a.rev}`);
      assert.equal(kv.modRevision, a.rev, `${a.key} mod_revision at revision ${a.rev}`);
    }));
  }
  return head;
}
