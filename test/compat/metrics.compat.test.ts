// Process metrics: a real etcd 3.4 and etcd-ts both serve client_golang's `process_*` metrics
// on /metrics, under the same names, help texts and types; etcd-ts's values are checked
// against what /proc says of its process.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** The `# HELP` and `# TYPE` lines (sorted) and the samples of the `process_*` metrics of a scrape. */
async function processMetrics(server: ServerHandle): Promise<{ meta: string[]; values: Map<string, number> }> {
  const lines = (await (await fetch(`${server.endpoint}/metrics`)).text()).split('\n');
  const meta = lines.filter((l) => /^# (HELP|TYPE) process_/.test(l)).sort();
  const values = new Map<string, number>();
  for (const l of lines) {
    const m = /^(process_\w+) (\S+)$/.exec(l);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return { meta, values };
}

/** Asserts that `actual` is within `tolerance` (a fraction) of `expected`. */
function near(actual: number | undefined, expected: number, tolerance: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= expected * tolerance, `${what}: ${actual} against ${expected}`);
}

describe('process metrics: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('the same process_* names, help texts and types; values that describe the process', async (t) => {
    const [etcd, ours] = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const [theirs, first] = await Promise.all([processMetrics(etcd), processMetrics(ours)]);
    assert.equal(theirs.meta.length, 14, 'etcd 3.4 serves seven process metrics');
    assert.deepEqual(first.meta, theirs.meta);

    // Both servers run under this test's limits.
    assert.equal(first.values.get('process_max_fds'), theirs.values.get('process_max_fds'));
    assert.equal(first.values.get('process_virtual_memory_max_bytes'), theirs.values.get('process_virtual_memory_max_bytes'));

    const status = readFileSync(`/proc/${ours.pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
    near(first.values.get('process_resident_memory_bytes'), kib('VmRSS'), 0.25, 'resident memory');
    near(first.values.get('process_virtual_memory_bytes'), kib('VmSize'), 0.1, 'virtual memory');
    near(first.values.get('process_open_fds'), readdirSync(`/proc/${ours.pid}/fd`).length, 0.2, 'open fds');
    const start = first.values.get('process_start_time_seconds')!;
    assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 120, `start time ${start}`);

    const cpu = first.values.get('process_cpu_seconds_total')!;
    assert.ok(cpu > 0);
    const later = await processMetrics(ours);
    assert.ok(later.values.get('process_cpu_seconds_total')! >= cpu, 'CPU time only grows');
  });
});
