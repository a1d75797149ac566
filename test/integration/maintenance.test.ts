// The Maintenance service and the HTTP endpoints of an embedded etcd-ts, driven through the
// generated grpc-js clients: Snapshot (content, remaining_bytes, the SHA-256 suffix, a file
// LMDB opens), Defragment (data and hashes intact, file not larger, writes during it kept),
// Hash/HashKV, MoveLeader, /metrics values moving with writes, /health under an alarm.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { defaultConfig } from '../../src/config.js';
import {
  AlarmRequest_AlarmAction,
  AlarmType,
  KVClient,
  MaintenanceClient,
  type AlarmRequest,
  type AlarmResponse,
  type CompactionRequest,
  type CompactionResponse,
  type DefragmentRequest,
  type DefragmentResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type HashKVRequest,
  type HashKVResponse,
  type HashRequest,
  type HashResponse,
  type MoveLeaderRequest,
  type MoveLeaderResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type StatusRequest,
  type StatusResponse,
  type SnapshotResponse,
} from '../../src/proto/gen/rpc.gen.js';
import { startEtcd, type RunningServer } from '../../src/server/embed.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { ETCDCTL_BIN } from '../helpers/servers.js';

const etcdctlMissing = fs.existsSync(ETCDCTL_BIN) ? false : `${ETCDCTL_BIN} not installed`;

/** Calls a callback-style grpc-js client method as a promise. */
function call<Req, Res>(fn: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
}

describe('maintenance and operations endpoints', () => {
  let server: RunningServer;
  let dataDir: string;
  let url: string;
  let kv: KVClient;
  let mt: MaintenanceClient;
  const put = (key: string, value: string | Buffer) =>
    call<PutRequest, PutResponse>(kv.put.bind(kv), { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
  const get = (key: string) =>
    call<RangeRequest, RangeResponse>(kv.range.bind(kv), {
      key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false,
      keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
    });
  /** The number of keys, as a count-only Range of every key answers it. */
  const keyCount = async () =>
    Number(
      (
        await call<RangeRequest, RangeResponse>(kv.range.bind(kv), {
          key: Buffer.from([0]), rangeEnd: Buffer.from([0]), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false,
          keysOnly: false, countOnly: true, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
        })
      ).count,
    );
  const hashKV = (revision: bigint) => call<HashKVRequest, HashKVResponse>(mt.hashKv.bind(mt), { revision });
  const metrics = async (): Promise<string> => (await fetch(`${url}/metrics`)).text();
  /** The value of the sample `name` (with its labels, as printed), or undefined. */
  const sample = (text: string, name: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-maint-'));
    const config = { ...defaultConfig(), dataDir, listenClientUrls: ['http://127.0.0.1:0'], advertiseClientUrls: ['http://127.0.0.1:0'], listenPeerUrls: [] };
    server = await startEtcd(config, pino({ level: 'silent' }));
    url = server.clientUrls[0]!;
    const target = url.replace('http://', '');
    kv = new KVClient(target, credentials.createInsecure());
    mt = new MaintenanceClient(target, credentials.createInsecure());
  });

  after(async () => {
    kv.close();
    mt.close();
    await server.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("Snapshot streams the backend in 32 KiB chunks, then its SHA-256; the file is etcd's bbolt database", { skip: etcdctlMissing }, async () => {
    for (let i = 0; i < 50; i++) await put(`snap/${i}`, 'v'.repeat(2000));
    const msgs: SnapshotResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = mt.snapshot({});
      stream.on('data', (m: SnapshotResponse) => msgs.push(m));
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    assert.ok(msgs.length >= 3, `expected several chunks, got ${msgs.length}`);
    const chunks = msgs.slice(0, -1);
    const digest = msgs.at(-1)!;
    const content = Buffer.concat(chunks.map((m) => m.blob));
    let remaining = content.length;
    // Every blob but the last is exactly 32 KiB (the pages are regrouped as they are made).
    assert.ok(chunks.slice(0, -1).every((m) => m.blob.length === 32 * 1024));
    for (const m of chunks) {
      assert.ok(m.blob.length <= 32 * 1024);
      remaining -= m.blob.length;
      assert.equal(m.remainingBytes, BigInt(remaining));
    }
    assert.equal(digest.remainingBytes, 0n);
    assert.deepEqual(digest.blob, createHash('sha256').update(content).digest());
    // etcdctl's restore recognises the appended hash by this size rule.
    assert.equal((content.length + digest.blob.length) % 512, 32);

    // The file is etcd's bbolt database: etcdctl reads it (its integrity check included).
    const file = path.join(dataDir, 'snapshot.db');
    fs.writeFileSync(file, Buffer.concat([content, digest.blob]));
    const status = await etcdctl('127.0.0.1:1', ['snapshot', 'status', file, '-w', 'json']);
    assert.equal(status.code, 0, status.stderr);
    const { revision, totalKey } = JSON.parse(status.stdout) as { revision: number; totalKey: number };
    assert.equal(BigInt(revision), (await get('snap/49')).header!.revision);
    assert.ok(totalKey >= 50, `${totalKey} keys`);
  });

  it('Defragment keeps every record and the HashKV, shrinks the file, and keeps writes made meanwhile', async () => {
    for (let i = 0; i < 300; i++) await put(`big/${i}`, Buffer.alloc(4000, i % 256));
    await put('keep', 'me');
    const del = await call<DeleteRangeRequest, DeleteRangeResponse>(kv.deleteRange.bind(kv), { key: Buffer.from('big/'), rangeEnd: Buffer.from('big0'), prevKv: false });
    assert.equal(del.deleted, 300n);
    await call<CompactionRequest, CompactionResponse>(kv.compact.bind(kv), { revision: del.header!.revision, physical: true });
    await put('after', 'compaction'); // HashKV refuses the compacted revision itself
    const sizeBefore = server.etcd.backend.size();
    const hashBefore = await hashKV(0n);

    const defrag = call<DefragmentRequest, DefragmentResponse>(mt.defragment.bind(mt), {});
    const during = put('during', 'defrag');
    await defrag;
    await during;

    assert.ok(server.etcd.backend.size() <= sizeBefore, `size ${server.etcd.backend.size()} > ${sizeBefore}`);
    assert.ok(server.etcd.backend.size() < sizeBefore / 2, 'the freed pages are gone');
    assert.equal((await get('keep')).kvs[0]?.value.toString(), 'me');
    assert.equal((await get('during')).kvs[0]?.value.toString(), 'defrag');
    const hashAtOldRev = await hashKV(hashBefore.header!.revision);
    assert.equal(hashAtOldRev.hash, hashBefore.hash);
    assert.equal(hashAtOldRev.compactRevision, del.header!.revision);
  });

  it('HashKV refuses compacted and future revisions; Hash moves with writes', async () => {
    const compactRev = (await hashKV(0n)).compactRevision;
    await assert.rejects(hashKV(compactRev), (e: ServiceError) =>
      e.code === GrpcStatus.OUT_OF_RANGE && e.details === 'etcdserver: mvcc: required revision has been compacted');
    await assert.rejects(hashKV(1_000_000n), (e: ServiceError) =>
      e.code === GrpcStatus.OUT_OF_RANGE && e.details === 'etcdserver: mvcc: required revision is a future revision');
    const h1 = await call<HashRequest, HashResponse>(mt.hash.bind(mt), {});
    await put('hash', 'moves');
    const h2 = await call<HashRequest, HashResponse>(mt.hash.bind(mt), {});
    assert.notEqual(h1.hash, h2.hash);
    assert.equal(h2.header!.revision, h1.header!.revision + 1n);
  });

  it('MoveLeader to itself succeeds, to anyone else fails like etcd', async () => {
    await call<MoveLeaderRequest, MoveLeaderResponse>(mt.moveLeader.bind(mt), { targetID: server.etcd.memberId });
    await assert.rejects(call<MoveLeaderRequest, MoveLeaderResponse>(mt.moveLeader.bind(mt), { targetID: 42n }), (e: ServiceError) =>
      e.code === GrpcStatus.FAILED_PRECONDITION && e.details === 'etcdserver: bad leader transferee');
  });

  it('/metrics exposes etcd names whose values move with writes', async () => {
    const keys = await keyCount();
    const m1 = await metrics();
    for (const name of [
      'etcd_server_has_leader 1', 'etcd_server_is_leader 1', 'etcd_server_leader_changes_seen_total 1',
      'etcd_server_quota_backend_bytes 2147483648', 'etcd_mvcc_db_total_size_in_bytes', 'etcd_mvcc_db_total_size_in_use_in_bytes',
      'etcd_disk_backend_commit_duration_seconds_bucket', 'etcd_debugging_mvcc_compact_revision', 'etcd_debugging_mvcc_db_compaction_keys_total',
    ]) {
      assert.ok(m1.includes(`\n${name}`), `missing ${name}`);
    }
    assert.equal(sample(m1, 'etcd_mvcc_hash_duration_seconds_count'), 2, 'the two Hash calls of the test before');
    // Counted at this first scrape (the earlier tests' keys), then kept up to date by the writes.
    assert.equal(sample(m1, 'etcd_debugging_mvcc_keys_total'), keys);
    await put('metric', 'a');
    await put('metric', 'b');
    await call<DeleteRangeRequest, DeleteRangeResponse>(kv.deleteRange.bind(kv), { key: Buffer.from('metric'), rangeEnd: Buffer.alloc(0), prevKv: false });
    await get('metric');
    const m2 = await metrics();
    const delta = (name: string) => sample(m2, name)! - sample(m1, name)!;
    assert.equal(delta('etcd_mvcc_put_total'), 2);
    assert.equal(delta('etcd_mvcc_delete_total'), 1);
    assert.equal(delta('etcd_mvcc_range_total'), 1);
    assert.equal(delta('etcd_debugging_mvcc_current_revision'), 3);
    assert.equal(delta('etcd_debugging_mvcc_keys_total'), 0);
    assert.equal(delta('etcd_server_proposals_applied_total'), 3);
    assert.equal(sample(m2, 'etcd_debugging_mvcc_current_revision'), Number((await get('x')).header!.revision));
    const handled = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}';
    assert.ok(sample(m2, handled)! > sample(m1, handled)!);
    // Calls of the earlier tests: a refused unary call by its code, a finished server stream.
    const maintenance = (method: string, type: string, code: string) =>
      `grpc_server_handled_total{grpc_code="${code}",grpc_method="${method}",grpc_service="etcdserverpb.Maintenance",grpc_type="${type}"}`;
    assert.equal(sample(m2, maintenance('MoveLeader', 'unary', 'FailedPrecondition')), 1);
    assert.equal(sample(m2, maintenance('MoveLeader', 'unary', 'OK')), 1);
    assert.equal(sample(m2, maintenance('Snapshot', 'server_stream', 'OK')), 1);
    assert.equal(sample(m2, 'grpc_server_started_total{grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"}'), 1);
    await put('metric-kept', 'c');
    assert.equal(sample(await metrics(), 'etcd_debugging_mvcc_keys_total'), await keyCount());
  });

  it('/health is 503 while an alarm is active (unless excluded), /version answers JSON', async () => {
    const ok = await fetch(`${url}/health`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), '{"health":"true"}');
    const version = await fetch(`${url}/version`);
    assert.equal(version.headers.get('content-type'), 'application/json');
    assert.deepEqual(Object.keys((await version.json()) as object), ['etcdserver', 'etcdcluster']);
    assert.equal((await fetch(`${url}/health`, { method: 'POST' })).status, 405);

    const alarm = (action: AlarmRequest_AlarmAction) => call<AlarmRequest, AlarmResponse>(mt.alarm.bind(mt), { action, memberID: 0n, alarm: AlarmType.NOSPACE });
    await alarm(AlarmRequest_AlarmAction.ACTIVATE);
    try {
      const bad = await fetch(`${url}/health`);
      assert.equal(bad.status, 503);
      assert.equal(await bad.text(), '{"health":"false"}\n');
      assert.equal((await fetch(`${url}/health?exclude=NOSPACE`)).status, 200);
      const st = await call<StatusRequest, StatusResponse>(mt.status.bind(mt), {});
      // etcd keeps an alarm under the member ID it was raised for, 0 included.
      assert.deepEqual(st.errors, ['memberID:0 alarm:NOSPACE ']);
    } finally {
      await alarm(AlarmRequest_AlarmAction.DEACTIVATE);
    }
    assert.equal((await fetch(`${url}/health`)).status, 200);
  });

  it("/livez and /readyz answer etcd 3.5's probes: named checks, ?verbose, ?exclude, one check by path, 503 with every line on a CORRUPT alarm", async () => {
    const text = async (path: string, init?: RequestInit): Promise<[number, string]> => {
      const r = await fetch(`${url}${path}`, init);
      return [r.status, await r.text()];
    };
    assert.deepEqual(await text('/livez'), [200, 'ok\n']);
    assert.deepEqual(await text('/livez?verbose'), [200, '[+]serializable_read ok\nok\n']);
    assert.deepEqual(await text('/readyz?verbose'), [200, '[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n']);
    assert.deepEqual(await text('/readyz?verbose&exclude=serializable_read&exclude=no_such_check'), [200, '[+]data_corruption ok\n[+]linearizable_read ok\nok\n']);
    assert.deepEqual(await text('/readyz/linearizable_read?verbose'), [200, '[+]linearizable_read ok\nok\n']);
    const headers = (await fetch(`${url}/readyz`)).headers;
    assert.equal(headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(await text('/readyz', { method: 'POST' }), [405, 'Method Not Allowed\n']);
    assert.deepEqual(await text('/readyz/'), [404, '404 page not found\n']);
    assert.deepEqual(await text('/livez/data_corruption'), [404, '404 page not found\n']);

    const alarm = (action: AlarmRequest_AlarmAction) => call<AlarmRequest, AlarmResponse>(mt.alarm.bind(mt), { action, memberID: 0n, alarm: AlarmType.CORRUPT });
    await alarm(AlarmRequest_AlarmAction.ACTIVATE);
    try {
      const failed = '[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n[+]linearizable_read ok\n\n';
      assert.deepEqual(await text('/readyz'), [503, failed]);
      assert.deepEqual(await text('/readyz?exclude=data_corruption'), [200, 'ok\n']);
      assert.deepEqual(await text('/livez'), [200, 'ok\n'], 'a CORRUPT alarm is no reason to restart');
    } finally {
      await alarm(AlarmRequest_AlarmAction.DEACTIVATE);
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^etcd_server_healthcheck\{name="data_corruption",type="readyz"\} 0$/m, "its last run failed");
    assert.match(metrics, /^etcd_server_healthchecks_total\{name="data_corruption",status="error",type="readyz"\} 1$/m);
  });
});
