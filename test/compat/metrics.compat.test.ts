// /metrics against a real etcd 3.4: the metric names etcd serves are served by etcd-ts too (but
// for those listed in NOT_SERVED, with the reason), under the same help texts and types; the
// counters of client traffic, of storage calls, and the maintenance, compaction and lease
// histograms move by the same amounts for the same requests; the gRPC series listed from the
// start are etcd's; and the `process_*` values describe the etcd-ts process as /proc does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { Client } from '../../src/index.js';
import { WatchClient, WatchCreateRequest } from '../../src/proto/gen/rpc.gen.js';
import { etcdctl, txnInput } from '../helpers/etcdctl.js';
import { ETCDCTL_BIN, etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** Runs `etcdctl --endpoints=<endpoint> ...args` and interrupts it (SIGINT) after `ms`, as a user's Ctrl-C. */
async function interrupted(endpoint: string, args: readonly string[], ms: number): Promise<void> {
  const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: 'ignore' });
  const exited = once(child, 'exit');
  const timer = setTimeout(() => child.kill('SIGINT'), ms);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Metrics etcd 3.4 serves and etcd-ts does not, by prefix or name (see docs/compat-notes.md):
 * the Go runtime's; the v2 store's, the gRPC proxy's, raft snapshots',
 * bbolt's commit phases and open read transactions, which etcd-ts has no counterpart of.
 */
const NOT_SERVED = [
  'go_', 'etcd_server_go_version',
  'etcd_debugging_store_', 'etcd_grpc_proxy_', 'etcd_snap_', 'etcd_debugging_snap_',
  'etcd_debugging_disk_backend_commit_', 'etcd_mvcc_db_open_read_transactions',
];

/** One scrape: the `# HELP` / `# TYPE` line pairs by metric name, and every sample by its series. */
interface Scrape {
  meta: Map<string, string>;
  samples: Map<string, number>;
}

async function scrape(server: ServerHandle): Promise<Scrape> {
  const meta = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of (await (await fetch(`${server.endpoint}/metrics`)).text()).split('\n')) {
    const m = /^# (?:HELP|TYPE) (\w+) /.exec(line);
    if (m) meta.set(m[1]!, `${meta.get(m[1]!) ?? ''}${line}\n`);
    else if (line !== '') {
      const at = line.lastIndexOf(' ');
      samples.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
  }
  return { meta, samples };
}

/**
 * Asserts that each of `series` changed by the same amount on etcd (index 0) and etcd-ts
 * (index 1) between the scrapes `from` and `to`; returns etcd-ts's change of a series.
 */
function sameMoves(from: Scrape[], to: Scrape[], series: readonly string[]): (series: string) => number {
  const change = (i: number, name: string) => (to[i]!.samples.get(name) ?? 0) - (from[i]!.samples.get(name) ?? 0);
  for (const name of series) assert.equal(change(1, name), change(0, name), `change of ${name}`);
  return (name) => change(1, name);
}

/** Asserts that `actual` is within `tolerance` (a fraction) of `expected`. */
function near(actual: number | undefined, expected: number, tolerance: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= expected * tolerance, `${what}: ${actual} against ${expected}`);
}

describe('/metrics: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('etcd\'s metric names with the same help and type lines; client traffic counted alike; process values', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const ours = servers[1]!;
    const before = await Promise.all(servers.map(scrape));
    const [theirs, first] = before as [Scrape, Scrape];

    const notServed = (name: string) => NOT_SERVED.some((p) => name.startsWith(p));
    const missing = [...theirs.meta.keys()].filter((name) => !notServed(name) && !first.meta.has(name));
    assert.deepEqual(missing, [], 'etcd serves these and etcd-ts does not');
    for (const [name, lines] of first.meta) {
      if (theirs.meta.has(name)) assert.equal(lines, theirs.meta.get(name), `help and type of ${name}`);
    }

    // The same requests move the client-traffic counters by the same amounts.
    for (const s of servers) {
      const put = await etcdctl(s.endpoint, ['put', 'metric-key', 'value']);
      assert.equal(put.code, 0, put.stderr);
      assert.equal((await fetch(`${s.endpoint}/health`)).status, 200);
    }
    const after = await Promise.all(servers.map(scrape));
    const delta = sameMoves(before, after, [
      'etcd_network_client_grpc_received_bytes_total',
      'etcd_network_client_grpc_sent_bytes_total',
      'etcd_server_client_requests_total{client_api_version="3.4",type="unary"}',
      'etcd_server_health_success',
      'etcd_server_health_failures',
      'etcd_debugging_mvcc_put_total',
      'etcd_debugging_mvcc_total_put_size_in_bytes',
      'etcd_disk_defrag_inflight',
      'promhttp_metric_handler_requests_in_flight',
      'promhttp_metric_handler_requests_total{code="200"}',
      'promhttp_metric_handler_requests_total{code="500"}',
      ...['grpc_server_started_total', 'grpc_server_msg_received_total', 'grpc_server_msg_sent_total'].map(
        (name) => `${name}{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}`),
      'grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    ]);
    assert.equal(delta('etcd_debugging_mvcc_put_total'), 1, 'the steps did something');
    // Each server's log has its own format, so the put's bytes differ; both logged some.
    for (const [i, s] of servers.entries()) {
      const logged = after[i]!.samples.get('etcd_disk_wal_write_bytes_total')! - before[i]!.samples.get('etcd_disk_wal_write_bytes_total')!;
      assert.ok(logged > 0, `${s.kind}: the put was written to the log (${logged} bytes)`);
    }
    assert.equal(first.samples.get('promhttp_metric_handler_requests_in_flight'), 1, 'a scrape sees itself in flight, as in etcd');
    assert.equal(theirs.samples.get('promhttp_metric_handler_requests_in_flight'), 1);

    // Maintenance, compaction and leases add one observation to the same histograms.
    const dir = await mkdtemp(join(tmpdir(), 'metrics-compat-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    for (const [i, s] of servers.entries()) {
      const rev = (await etcdctl(s.endpoint, ['get', 'metric-key', '-w', 'json'])).stdout.match(/"revision":(\d+)/)![1]!;
      for (const args of [['endpoint', 'hashkv'], ['defrag'], ['snapshot', 'save', join(dir, `${i}.db`)], ['compaction', '--physical', rev], ['lease', 'grant', '60']]) {
        const r = await etcdctl(s.endpoint, args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      }
    }
    const last = await Promise.all(servers.map(scrape));
    const histograms = [
      'etcd_mvcc_hash_rev_duration_seconds', 'etcd_disk_backend_defrag_duration_seconds', 'etcd_disk_backend_snapshot_duration_seconds',
      'etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds', 'etcd_debugging_mvcc_db_compaction_total_duration_milliseconds',
      'etcd_debugging_lease_ttl_total',
    ];
    const moved = sameMoves(after, last, [...histograms.map((h) => `${h}_count`), 'etcd_debugging_lease_ttl_total_sum']);
    assert.equal(moved('etcd_debugging_lease_ttl_total_sum'), 60);

    // Streams the client cancels count as handled with the status etcd's handlers end them
    // with: Canceled for Watch, Unavailable (etcd's "no leader") for LeaseKeepAlive.
    for (const s of servers) {
      const id = /lease ([0-9a-f]+) granted/.exec((await etcdctl(s.endpoint, ['lease', 'grant', '60'])).stdout)![1]!;
      await interrupted(s.endpoint, ['watch', 'metric-key'], 700);
      await interrupted(s.endpoint, ['lease', 'keep-alive', id], 700);
    }
    await new Promise((done) => setTimeout(done, 300));
    const cancelled = await Promise.all(servers.map(scrape));
    const streams = sameMoves(last, cancelled, [
      'grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}',
      'grpc_server_handled_total{grpc_code="Unavailable",grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}',
    ]);
    assert.equal(streams('grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}'), 1);

    // Both servers run under this test's limits; etcd-ts's process values match /proc.
    for (const name of ['process_max_fds', 'process_virtual_memory_max_bytes', 'os_fd_limit']) {
      assert.equal(first.samples.get(name), theirs.samples.get(name), name);
    }
    const status = readFileSync(`/proc/${ours.pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
    const now = cancelled[1]!.samples;
    near(now.get('process_resident_memory_bytes'), kib('VmRSS'), 0.25, 'resident memory');
    near(now.get('process_virtual_memory_bytes'), kib('VmSize'), 0.1, 'virtual memory');
    near(now.get('process_open_fds'), readdirSync(`/proc/${ours.pid}/fd`).length, 0.2, 'open fds');
    const start = now.get('process_start_time_seconds')!;
    assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 120, `start time ${start}`);
    assert.ok(now.get('process_cpu_seconds_total')! >= first.samples.get('process_cpu_seconds_total')!, 'CPU time only grows');
    assert.ok(first.samples.get('process_cpu_seconds_total')! > 0);
  });

  it('range, put, delete and txn totals count storage calls as etcd\'s; gRPC series listed from the start as etcd\'s', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    // go-grpc-prometheus lists etcd 3.4's own services from the start, every code of
    // grpc_server_handled_total included; Lock and Election only once called.
    const grpcSeries = (s: Scrape) => [...s.samples.keys()].filter((k) => k.startsWith('grpc_server_')).sort();
    const [theirs, ours] = await Promise.all(servers.map(scrape));
    assert.deepEqual(grpcSeries(ours!), grpcSeries(theirs!));
    assert.ok(grpcSeries(theirs!).filter((k) => k.startsWith('grpc_server_handled_total')).length > 600, 'every method under every code');

    const totals = ['range', 'put', 'delete', 'txn'].flatMap((op) => [`etcd_mvcc_${op}_total`, `etcd_debugging_mvcc_${op}_total`]);
    const txn = (compares: string[], success: string[]) => ({ args: ['txn'], stdin: txnInput(compares, success, []) });
    const steps: { args: string[]; stdin?: string }[] = [
      { args: ['put', 'm1', 'a'] }, { args: ['put', 'm2', 'b'] }, { args: ['put', 'x1', 'v'] },
      { args: ['put', 'x1', 'v2', '--prev-kv'] },
      { args: ['put', 'x1', '--ignore-value'] },
      { args: ['put', 'x1', 'v3', '--lease', '1234'] },
      { args: ['del', 'm', '--prefix'] },
      { args: ['del', 'nothere'] },
      { args: ['del', 'x1', '--prev-kv'] },
      { args: ['get', 'foo'] },
      { args: ['get', 'foo', '--rev', '100000'] },
      txn(['version("nothere") = "0"'], ['put t1 v']),
      txn(['value("t1") = "zz"'], ['put t1 v']),
      txn([], ['put t2 v']),
      txn([], ['get t1', 'get t2']),
      txn(['value("t1") = "v"', 'value("t2") = "v"'], ['put t3 v', 'del t2']),
      { args: ['compaction', '3'] },
      { args: ['get', 't1', '--rev', '2'] },
    ];
    let before = await Promise.all(servers.map(scrape));
    for (const [i, step] of steps.entries()) {
      for (const s of servers) await etcdctl(s.endpoint, step.args, { stdin: step.stdin });
      const after = await Promise.all(servers.map(scrape));
      const change = (j: number, name: string) => (after[j]!.samples.get(name) ?? 0) - (before[j]!.samples.get(name) ?? 0);
      for (const name of totals) assert.equal(change(1, name), change(0, name), `etcdctl ${step.args.join(' ')} ${JSON.stringify(step.stdin ?? '')}: change of ${name}`);
      const moved = (name: string) => change(1, name);
      if (i === steps.length - 1) assert.equal(moved('etcd_mvcc_range_total'), 1, 'a read at a compacted revision is a range');
      before = after;
    }
  });

  it('compaction batches in whole milliseconds, a full last batch counted as etcd counts it; a refused HashKV untimed', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    // Revisions 2..1001: a compaction at 1001 scans exactly one batch of 1,000 records.
    for (const s of servers) {
      const client = new Client({ endpoints: [s.endpoint] });
      try {
        for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => client.put(`batch/${i + j}`, 'v')));
      } finally {
        client.close();
      }
    }
    const before = await Promise.all(servers.map(scrape));
    const pause = 'etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds';
    const hashRev = 'etcd_mvcc_hash_rev_duration_seconds_count';
    for (const s of servers) {
      assert.equal((await etcdctl(s.endpoint, ['compaction', '--physical', '1001'])).code, 0);
      assert.notEqual((await etcdctl(s.endpoint, ['endpoint', 'hashkv', '--rev', '500'])).code, 0, 'HashKV at a compacted revision is refused');
    }
    const after = await Promise.all(servers.map(scrape));
    const moved = sameMoves(before, after, [`${pause}_count`, hashRev, 'etcd_debugging_mvcc_db_compaction_keys_total']);
    assert.equal(moved(`${pause}_count`), 1, 'the full batch, then an empty last one');
    assert.equal(moved(hashRev), 0);
    for (const name of [pause, 'etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds', 'etcd_debugging_mvcc_db_compaction_total_duration_milliseconds']) {
      const sum = after[1]!.samples.get(`${name}_sum`)!;
      assert.equal(sum, Math.trunc(sum), `${name}_sum counts whole milliseconds: ${sum}`);
    }
  });

  it('failed learner promotions by etcd\'s reason; a watch stream that ends on a request it cannot receive', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const before = await Promise.all(servers.map(scrape));
    for (const s of servers) {
      for (const args of [['member', 'promote', '1234'], ['member', 'promote', '8e9e05c52164694d']]) assert.equal((await etcdctl(s.endpoint, args)).code, 1);
      const address = s.endpoint.replace('http://', '');
      // A create request over the 2 MiB etcd receives (--max-request-bytes + 512 KiB).
      const watch = new WatchClient(address, credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
      const ended = (call: NodeJS.EventEmitter) => new Promise<number>((resolve) => call.on('error', (err: ServiceError) => resolve(err.code)).on('end', () => resolve(0)).on('data', () => {}));
      const big = watch.watch();
      big.write({ createRequest: { ...WatchCreateRequest.decode(new Uint8Array(0)), key: Buffer.alloc(3 << 20, 1) } });
      assert.equal(await ended(big), 8, 'ResourceExhausted');
      await sleep(300);
      watch.close();
    }
    const after = await Promise.all(servers.map(scrape));
    const moved = sameMoves(before, after, [
      'etcd_server_learner_promote_failures{Reason="membership: ID not found"}',
      'etcd_server_learner_promote_failures{Reason="membership: can only promote a learner member"}',
      'etcd_network_server_stream_failures_total{API="watch",Type="receive"}',
    ]);
    assert.equal(moved('etcd_network_server_stream_failures_total{API="watch",Type="receive"}'), 1);
    assert.equal(moved('etcd_server_learner_promote_failures{Reason="membership: ID not found"}'), 1);
  });

  it('etcd_debugging_mvcc_watcher_total counts a watcher canceled by compaction until the client cancels it', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const WATCHERS = 'etcd_debugging_mvcc_watcher_total';
    const seen: number[][] = [];
    for (const s of servers) {
      for (const args of [['put', 'a', '1'], ['put', 'a', '2'], ['compaction', '3']]) assert.equal((await etcdctl(s.endpoint, args)).code, 0);
      const watch = new WatchClient(s.endpoint.replace('http://', ''), credentials.createInsecure());
      const call = watch.watch();
      const canceled = new Promise<void>((resolve) => call.on('data', (r: { canceled: boolean }) => r.canceled && resolve()));
      call.on('error', () => {});
      call.write({ createRequest: { ...WatchCreateRequest.decode(new Uint8Array(0)), key: Buffer.from('a'), startRevision: 1n } });
      await canceled;
      const counts = [(await scrape(s)).samples.get(WATCHERS)!];
      call.write({ cancelRequest: { watchId: 0n } });
      await sleep(300);
      counts.push((await scrape(s)).samples.get(WATCHERS)!);
      call.end();
      watch.close();
      seen.push(counts);
    }
    assert.deepEqual(seen[1], seen[0]);
    assert.deepEqual(seen[0], [1, 0]);
  });

  it('--metrics extensive: grpc_server_handling_seconds of every method from the start, counting calls as etcd\'s', async (t) => {
    const flags = ['--metrics', 'extensive'];
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags }), startServer(t, { kind: 'etcd-ts', flags })]);
    const series = (s: Scrape) => [...s.samples.keys()].filter((k) => k.startsWith('grpc_server_handling_seconds_count'));
    const before = await Promise.all(servers.map(scrape));
    const [theirs, ours] = before as [Scrape, Scrape];
    assert.equal(ours.meta.get('grpc_server_handling_seconds'), theirs.meta.get('grpc_server_handling_seconds'));
    const missing = series(theirs).filter((k) => !ours.samples.has(k));
    assert.deepEqual(missing, [], 'series etcd has at 0 from its start');
    assert.ok(series(theirs).length > 30, `${series(theirs).length} methods`);
    for (const s of servers) {
      assert.equal((await etcdctl(s.endpoint, ['put', 'k', 'v'])).code, 0);
      await interrupted(s.endpoint, ['watch', 'k'], 700);
    }
    await new Promise((done) => setTimeout(done, 300));
    const after = await Promise.all(servers.map(scrape));
    const put = '{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}';
    const watch = '{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}';
    const buckets = (s: Scrape) => [...s.samples.keys()].filter((k) => k.startsWith('grpc_server_handling_seconds_bucket{grpc_method="Put"'));
    assert.deepEqual(buckets(after[1]!), buckets(after[0]!), 'the same buckets');
    const moved = sameMoves(before, after, [`grpc_server_handling_seconds_count${put}`, `grpc_server_handling_seconds_count${watch}`]);
    assert.equal(moved(`grpc_server_handling_seconds_count${put}`), 1);
    assert.equal(moved(`grpc_server_handling_seconds_count${watch}`), 1);
    // The watch stream's time is its whole life (~0.7 s); a put is answered within 0.25 s.
    const seconds = (name: string) => after[1]!.samples.get(`grpc_server_handling_seconds_sum${name}`)! - before[1]!.samples.get(`grpc_server_handling_seconds_sum${name}`)!;
    assert.ok(seconds(watch) > 0.5 && seconds(watch) < 5, `watch ${seconds(watch)} s`);
    assert.ok(seconds(put) > 0 && seconds(put) < 0.25, `put ${seconds(put)} s`);
  });

  it('etcd_debugging_auth_revision starts and moves as etcd\'s', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags: ['--bcrypt-cost', '4'] }), startServer(t, { kind: 'etcd-ts', flags: ['--bcrypt-cost', '4'] })]);
    const revision = async () => (await Promise.all(servers.map(scrape))).map((s) => s.samples.get('etcd_debugging_auth_revision'));
    const [theirs, ours] = await revision();
    assert.equal(ours, theirs, 'a new store');
    // A repeated grant and an enable change nothing; deleting a role held by two users is one change.
    const steps = [
      ['user', 'add', 'root', '--new-user-password=r'], ['user', 'add', 'u', '--new-user-password=p'], ['role', 'add', 'x'],
      ['user', 'grant-role', 'u', 'x'], ['user', 'grant-role', 'u', 'x'], ['user', 'grant-role', 'root', 'x'],
      ['role', 'grant-permission', 'x', 'read', 'k'], ['role', 'delete', 'x'], ['user', 'grant-role', 'root', 'root'],
      ['auth', 'enable'], ['--user', 'root:r', 'user', 'delete', 'u'], ['--user', 'root:r', 'auth', 'disable'],
    ];
    for (const s of servers) {
      for (const args of steps) {
        const r = await etcdctl(s.endpoint, args);
        assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
      }
    }
    const [theirsAfter, oursAfter] = await revision();
    assert.equal(oursAfter, theirsAfter);
    assert.ok(theirsAfter! > theirs!, 'the steps moved it');
  });
});
