// Memory per watcher and per watch stream as etcd's "Watch Memory Usage Benchmark" defines them
// (etcd's Documentation/benchmarks/etcd-3-watch-memory-benchmark.md): the growth of the server's
// resident memory per *additional* watcher (etcd's c3, 350 bytes) or per additional stream (c2,
// 18 KB) in a server that already holds many, not the first ones' share of a cold process's
// one-time growth. etcd fitted those constants to servers holding 1k to 25M watchings.
//
// usage: node --import tsx bench/watch-memory.ts --endpoint HOST:PORT --pid PID --mode watchers|streams
//          [--batch 20000] [--base 2] [--batches 4]
//   watchers: every watcher on one watch stream of one connection (etcd's watchings per stream)
//   streams:  one idle watcher per stream, every stream on one connection (our client's watch
//             groups, one stream per group)
// Creates `--base` batches of `--batch` items (not measured: a fresh Node process grows V8's young
// generation to its maximum size during the first tens of thousands of long-lived objects, a Go
// process its heap target), then `--batches` more, sampling the server's VmRSS 500 ms after each
// batch. Prints each batch's growth per item on stderr and one line of `name=value` figures, like
// etcdbench: `cold_bytes_per_<item>` is the first batch's growth per item from the fresh server
// (what etcdbench's create mode measures), `bytes_per_<item>` the growth over the measured batches
// divided by their items.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from '../src/client/client.js';

/** Resident memory of process `pid` in bytes (VmRSS), 0 when unknown. */
function rssOf(pid: number): number {
  if (pid === 0) return 0;
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return line === undefined ? 0 : Number(line.split(/\s+/)[1]) * 1024;
}

/** How long one batch's watchers may take to be created before the run fails. */
const CREATE_TIMEOUT_MS = 120_000;
/** Wait after a batch before sampling VmRSS, as etcdbench's create mode does. */
const SETTLE_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

const { values } = parseArgs({
  options: {
    endpoint: { type: 'string', default: '127.0.0.1:2379' },
    pid: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'watchers' },
    batch: { type: 'string' },
    base: { type: 'string', default: '2' },
    batches: { type: 'string', default: '4' },
  },
});
const mode = values.mode;
if (mode !== 'watchers' && mode !== 'streams') throw new Error(`--mode must be watchers or streams, not ${mode}`);
const item = mode === 'watchers' ? 'watcher' : 'stream';
const pid = Number(values.pid);
const batch = Number(values.batch ?? (mode === 'watchers' ? 20_000 : 1_000));
const base = Number(values.base);
const batches = Number(values.batches);
if (![batch, batches].every((n) => Number.isInteger(n) && n > 0) || !Number.isInteger(base) || base < 0) {
  throw new Error('--batch and --batches must be positive integers, --base a non-negative one');
}

const client = new Client({ endpoints: [`http://${values.endpoint}`] });
try {
  await client.get('/bench/');
  await sleep(SETTLE_MS);
  const samples = [rssOf(pid)];
  const start = performance.now();
  let created = 0;
  for (let b = 0; b < base + batches; b++) {
    const watchers = Array.from({ length: batch }, () => {
      const i = created++;
      return mode === 'watchers' ? client.watch(`/bench/w${i}`) : client.watch(`/bench/s${i}`, { group: `s${i}` });
    });
    const timeout = setTimeout(() => {
      console.error(`watch-memory: batch ${b + 1} was not created within ${CREATE_TIMEOUT_MS} ms`);
      process.exit(1);
    }, CREATE_TIMEOUT_MS);
    await Promise.all(watchers.map((w) => w.created));
    clearTimeout(timeout);
    await sleep(SETTLE_MS);
    samples.push(rssOf(pid));
  }
  const secs = (performance.now() - start) / 1000;
  const growth = samples.slice(1).map((s, i) => (s - samples[i]!) / batch);
  console.error(`watch-memory: RSS growth per ${item}, batch by batch (${base} base, ${batches} measured): ${growth.map((g) => g.toFixed(0)).join(' ')}`);
  const measured = (samples[base + batches]! - samples[base]!) / (batch * batches);
  console.log(
    `mode=${mode} ${item}s=${created} secs=${secs.toFixed(3)} rss_mb_before=${(samples[0]! / 1e6).toFixed(1)} ` +
      `rss_mb_base=${(samples[base]! / 1e6).toFixed(1)} rss_mb_after=${(samples[base + batches]! / 1e6).toFixed(1)} ` +
      `cold_bytes_per_${item}=${growth[0]!.toFixed(0)} bytes_per_${item}=${measured.toFixed(0)}`,
  );
} finally {
  client.close();
}
