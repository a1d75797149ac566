// Malformed requests: the same bytes to a real etcd 3.4 and to etcd-ts, on every method whose
// request can be sent without changing the cluster (no member changes, alarms, defragment,
// auth), the same answer required: etcd refuses what its gogo-generated Unmarshal refuses, with
// gRPC INTERNAL and the decoder's error, and serves what it decodes. The requests are random
// bytes and random mutations (a byte changed, inserted or dropped, the tail cut) of a valid
// request, from a fixed seed. The last check compares both keyspaces: what etcd refused
// changed nothing on either side, what it served changed the same.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Compare, Compare_CompareTarget, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse, WatchRequest, WatchResponse } from '../../src/proto/gen/rpc.gen.js';
import { pushVarint } from '../../src/proto/wire.js';
import { unmarshalError } from '../../src/proto/unmarshal-check.js';
import { seeded } from '../helpers/seeded.js';
import { etcdUnavailableReason, startBoth, startServer, type ServerHandle } from '../helpers/servers.js';

/** Unary methods and a valid request of each (hex), the seed of the mutated ones. */
const UNARY: [string, string][] = [
  ['/etcdserverpb.KV/Range', '0a016112017a18ac02280130023801'], // a..z, limit 300, sorted by create, serializable
  ['/etcdserverpb.KV/Put', '0a046b657931120576616c75652001'], // key1=value, prev_kv
  ['/etcdserverpb.KV/DeleteRange', '0a016b12016c1801'], // k..l, prev_kv
  ['/etcdserverpb.KV/Txn', '0a0708011a016b2005120b12090a01611202767620011a0a0a080a01611201621803'], // version(k) > 5 ? put a : range a..b
  ['/etcdserverpb.KV/Compact', '0801'],
  ['/etcdserverpb.Lease/LeaseGrant', '083c1007'], // TTL 60, ID 7
  ['/etcdserverpb.Lease/LeaseRevoke', '0807'],
  ['/etcdserverpb.Lease/LeaseTimeToLive', '08071001'],
  ['/etcdserverpb.Lease/LeaseLeases', ''],
  ['/etcdserverpb.Maintenance/Status', ''],
  ['/etcdserverpb.Maintenance/Hash', ''],
  ['/etcdserverpb.Maintenance/HashKV', '0801'],
  ['/etcdserverpb.Cluster/MemberList', ''],
  ['/v3lockpb.Lock/Unlock', '0a026c6b'],
  ['/v3electionpb.Election/Leader', '0a02656c'],
];
/** Bidirectional streams and a valid first message of each. */
const STREAMS: [string, string][] = [
  ['/etcdserverpb.Watch/Watch', '0a070a016128002801'], // create on "a", filters NOPUT unpacked
  ['/etcdserverpb.Lease/LeaseKeepAlive', '0807'],
];
const PER_METHOD = 40;
const PER_STREAM = 16;

/** `n` requests: every other one random bytes, the rest mutations of `valid`. */
function requests(valid: string, n: number, seed: number): Buffer[] {
  const r = seeded(seed);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      out.push(Buffer.from(Array.from({ length: r.int(13) }, () => r.int(256))));
      continue;
    }
    const b = [...Buffer.from(valid, 'hex')];
    for (let m = 1 + r.int(3); m > 0; m--) {
      const at = r.int(b.length + 1);
      const op = r.int(4);
      if (op === 0 && at < b.length) b[at] = r.int(256);
      else if (op === 1) b.splice(at, 0, r.int(256));
      else if (op === 2) b.splice(at, 1);
      else b.length = at;
    }
    out.push(Buffer.from(b));
  }
  return out;
}

/**
 * A Range (alone or in a Txn) with an unknown sort target makes etcd 3.4 panic (it sorts with a
 * nil sorter), so such requests are not sent to it; the second test checks our answer.
 */
function crashesEtcd34(method: string, bytes: Buffer): boolean {
  const type = method.endsWith('/Range') ? 'RangeRequest' : method.endsWith('/Txn') ? 'TxnRequest' : undefined;
  if (type === undefined || unmarshalError(`etcdserverpb.${type}`, bytes) !== undefined) return false;
  const txn = type === 'TxnRequest' ? TxnRequest.decode(bytes) : undefined;
  const ranges = txn ? [...txn.success, ...txn.failure].flatMap((op) => (op.requestRange ? [op.requestRange] : [])) : [RangeRequest.decode(bytes)];
  return ranges.some((rr) => rr.sortTarget < 0 || rr.sortTarget > 4);
}

const raw = (b: Buffer): Buffer => b;

function unary(client: grpc.Client, method: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, raw, raw, body, (err) => resolve(err ? `${err.code} ${err.details}` : 'OK'));
  });
}

/** The status a stream ends with after `body`, or `open` when it is still open after 300 ms. */
function streamStatus(client: grpc.Client, method: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest(method, raw, raw);
    const timer = setTimeout(() => {
      resolve('open');
      call.cancel();
    }, 300);
    call.on('data', () => {});
    call.on('error', () => {}); // the status below says it
    call.on('status', (s: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve(`${s.code} ${s.details}`);
    });
    call.write(body);
  });
}

/** The status of a server-streaming call with `body` as its request. */
function serverStreamStatus(client: grpc.Client, method: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(method, raw, raw, body);
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', (s: grpc.StatusObject) => resolve(`${s.code} ${s.details}`));
  });
}

async function serversAndClients(t: TestContext): Promise<{ servers: ServerHandle[]; clients: grpc.Client[] }> {
  const servers = await startBoth(t);
  const clients = servers.map((s) => new grpc.Client(s.endpoint.replace('http://', ''), grpc.credentials.createInsecure()));
  t.after(() => clients.forEach((c) => c.close()));
  return { servers, clients };
}

describe('malformed requests: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('unary calls and streams answer as etcd, and only what etcd serves changes anything', async (t) => {
    const { clients } = await serversAndClients(t);
    const [etcd, ours] = clients as [grpc.Client, grpc.Client];
    const differ: string[] = [];
    let refused = 0;
    const compare = (what: string, expected: string, actual: string) => {
      if (expected.startsWith(`${grpc.status.INTERNAL} `)) refused++;
      if (expected !== actual) differ.push(`${what}\n  etcd:    ${expected}\n  etcd-ts: ${actual}`);
    };
    for (const [i, [method, valid]] of UNARY.entries()) {
      for (const body of requests(valid, PER_METHOD, i + 1)) {
        if (crashesEtcd34(method, body)) continue;
        compare(`${method} ${body.toString('hex')}`, await unary(etcd, method, body), await unary(ours, method, body));
      }
    }
    for (const [i, [method, valid]] of STREAMS.entries()) {
      for (const body of requests(valid, PER_STREAM, 100 + i)) {
        const [expected, actual] = await Promise.all([streamStatus(etcd, method, body), streamStatus(ours, method, body)]);
        compare(`${method} ${body.toString('hex')}`, expected, actual);
      }
    }
    for (const method of ['/etcdserverpb.Maintenance/Snapshot', '/v3electionpb.Election/Observe']) {
      const body = Buffer.from('97', 'hex'); // a tag cut short
      compare(`${method} 97`, await serverStreamStatus(etcd, method, body), await serverStreamStatus(ours, method, body));
    }
    assert.deepEqual(differ, []);
    assert.ok(refused > 300, `etcd refused only ${refused} of the requests`);
    // Both keyspaces and revisions are the same afterwards.
    const all = Buffer.from('0a0100120100', 'hex'); // every key
    const [a, b] = await Promise.all(clients.map((c) => new Promise<Buffer>((resolve, reject) => c.makeUnaryRequest('/etcdserverpb.KV/Range', raw, raw, all, (err, res) => (err ? reject(err) : resolve(res!))))));
    const view = (bytes: Buffer) => {
      const r = RangeResponse.decode(bytes);
      return { revision: r.header!.revision, kvs: r.kvs };
    };
    assert.deepEqual(view(b!), view(a!));
  });

  it('a oneof sent with several members is its last member on the wire; txns nest as deep as --max-txn-ops lets them', async (t) => {
    const { clients } = await serversAndClients(t);
    const bytes = (m: { finish(): Uint8Array }): Buffer => Buffer.from(m.finish());
    /** A length-delimited field (a message) of number `n`. */
    const field = (n: number, body: Buffer): Buffer => {
      const head: number[] = [(n << 3) | 2];
      pushVarint(head, body.length);
      return Buffer.concat([Buffer.from(head), body]);
    };
    const range = (key: string) => bytes(RequestOp.encode({ requestRange: RangeRequest.decode(Buffer.from(field(1, Buffer.from(key)))) }));
    const put = (key: string, value: string) => bytes(RequestOp.encode({ requestPut: { ...PutRequest.decode(new Uint8Array(0)), key: Buffer.from(key), value: Buffer.from(value) } }));
    const del = (key: string) => field(3, field(1, Buffer.from(key)));
    const cmp = (c: Partial<Compare>) => bytes(Compare.encode({ ...Compare.decode(new Uint8Array(0)), key: Buffer.from('c'), target: Compare_CompareTarget.VALUE, ...c }));
    /** A TxnRequest: compares (each field 1), then success ops (each field 2): every part is a whole RequestOp/Compare's bytes, so two parts in one field make one message with both. */
    const txn = (compares: Buffer[][], success: Buffer[][]) => Buffer.concat([...compares.map((c) => field(1, Buffer.concat(c))), ...success.map((o) => field(2, Buffer.concat(o)))]);
    /** A txn nested `depth` levels deep with `inner` (a RequestOp's bytes, or nothing) at the bottom. */
    const nested = (depth: number, inner: Buffer | undefined): Buffer => {
      let body = inner === undefined ? Buffer.alloc(0) : field(2, inner);
      for (let d = 1; d < depth; d++) body = field(2, field(4, body));
      return body;
    };
    const calls: [string, Buffer][] = [
      ['/etcdserverpb.KV/Put', bytes(PutRequest.encode({ ...PutRequest.decode(new Uint8Array(0)), key: Buffer.from('k'), value: Buffer.from('1') }))],
      ['/etcdserverpb.KV/Txn', txn([], [[range('k'), put('k', '2')]])], // a put
      ['/etcdserverpb.KV/Txn', txn([], [[put('k', '3'), range('k')]])], // a range
      ['/etcdserverpb.KV/Txn', txn([], [[put('j', '1'), del('j')]])], // a delete, no duplicate key
      ['/etcdserverpb.KV/Txn', txn([], [[range('k'), put('', 'x')]])], // a put without a key
      ['/etcdserverpb.KV/Txn', txn([], [[put('c', 'x')]])],
      ['/etcdserverpb.KV/Txn', txn([[cmp({ value: Buffer.from('x') }), cmp({ version: 5n })]], [[put('r', '1')]])], // compares VALUE with the version's union: false
      ['/etcdserverpb.KV/Txn', txn([[cmp({ version: 5n }), cmp({ value: Buffer.from('x') })]], [[put('r', '2')]])], // true
      ['/etcdserverpb.KV/Txn', nested(60, put('deep60', '1'))],
      ['/etcdserverpb.KV/Txn', nested(128, undefined)],
      ['/etcdserverpb.KV/Txn', nested(128, put('deep128', '1'))], // too many operations
      ['/etcdserverpb.KV/Txn', nested(200, range('k'))],
    ];
    const answer = async (client: grpc.Client, method: string, body: Buffer) =>
      new Promise<string>((resolve) =>
        client.makeUnaryRequest(method, raw, raw, body, (err, res) => {
          if (err) return resolve(`${err.code} ${err.details}`);
          if (!method.endsWith('/Txn')) return resolve('OK');
          const { header, ...rest } = TxnResponse.decode(res!);
          resolve(JSON.stringify({ revision: header?.revision, ...rest }, (k, v: unknown) => (typeof v === 'bigint' ? String(v) : k === 'header' ? undefined : v)));
        }),
      );
    const watchAnswers = (client: grpc.Client, body: Buffer) =>
      new Promise<string[]>((resolve) => {
        const call = client.makeBidiStreamRequest('/etcdserverpb.Watch/Watch', raw, raw);
        const got: string[] = [];
        call.on('data', (b: Buffer) => {
          const w = WatchResponse.decode(b);
          got.push(`id ${w.watchId} created ${w.created} canceled ${w.canceled} events ${w.events.length}`);
        });
        call.on('error', () => {});
        call.write(body);
        setTimeout(() => {
          call.cancel();
          resolve(got);
        }, 300);
      });
    const create = bytes(WatchRequest.encode({ createRequest: { ...WatchRequest.decode(Buffer.from('0a00', 'hex')).createRequest!, key: Buffer.from('a') } }));
    const cancel = (id: bigint) => bytes(WatchRequest.encode({ cancelRequest: { watchId: id } }));
    const progress = Buffer.from('1a00', 'hex');
    const watches = [Buffer.concat([create, cancel(5n)]), Buffer.concat([create, progress]), Buffer.concat([cancel(0n), progress]), Buffer.concat([progress, create])];
    const results: string[][] = [];
    for (const client of clients) {
      const out: string[] = [];
      for (const [method, body] of calls) out.push(await answer(client, method, body));
      for (const body of watches) out.push((await watchAnswers(client, body)).join('; '));
      results.push(out);
    }
    assert.deepEqual(results[1], results[0]);
    // What etcd did: the put of the first two-member op, the refusal of the deepest txns.
    assert.match(results[0]![1]!, /responsePut/);
    console.log(results[0]!.map((r) => r.slice(0, 90)).join("\n"));
  });

  it('a Range with an unknown sort target is refused as etcd 3.5 refuses it (etcd 3.4 crashes)', async (t) => {
    const server = await startServer(t, { kind: 'etcd-ts' });
    const client = new grpc.Client(server.endpoint.replace('http://', ''), grpc.credentials.createInsecure());
    t.after(() => client.close());
    const rangeSortedBy90 = Buffer.from('0a01611201732801305a', 'hex');
    assert.equal(await unary(client, '/etcdserverpb.KV/Range', rangeSortedBy90), `${grpc.status.INVALID_ARGUMENT} etcdserver: invalid sort option`);
    const txnWithIt = Buffer.concat([Buffer.from('1a0c0a0a', 'hex'), rangeSortedBy90]);
    assert.equal(await unary(client, '/etcdserverpb.KV/Txn', txnWithIt), `${grpc.status.INVALID_ARGUMENT} etcdserver: invalid sort option`);
  });
});
