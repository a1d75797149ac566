// Memory per watch stream: opens `-streams` gRPC Watch streams with one idle watcher each, all
// on one connection (our client's watch groups: one stream per group), and reports how much
// the server's resident memory grew per stream. etcdbench's create mode cannot express this: it
// puts every watcher of a connection on one stream.
//
// usage: node --import tsx bench/watch-streams.ts --endpoint HOST:PORT --pid PID [--streams 1000]
// Prints one line of `name=value` figures, like etcdbench: bytes_per_stream is the growth of
// the server's VmRSS between the connection being open (one Range done, 500 ms settled) and
// 500 ms after every stream's watcher was created, divided by the number of streams.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from '../src/client/client.js';

/** Resident memory of process `pid` in bytes (VmRSS), 0 when unknown. */
function rssOf(pid: number): number {
  if (pid === 0) return 0;
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return line === undefined ? 0 : Number(line.split(/\s+/)[1]) * 1024;
}

/** How long every watcher may take to be created before the run fails. */
const CREATE_TIMEOUT_MS = 120_000;

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

const { values } = parseArgs({
  options: {
    endpoint: { type: 'string', default: '127.0.0.1:2379' },
    pid: { type: 'string', default: '0' },
    streams: { type: 'string', default: '1000' },
  },
});
const pid = Number(values.pid);
const streams = Number(values.streams);

const client = new Client({ endpoints: [`http://${values.endpoint}`] });
try {
  await client.get('/bench/');
  await sleep(500);
  const rss0 = rssOf(pid);
  const start = performance.now();
  const watchers = Array.from({ length: streams }, (_, i) => client.watch(`/bench/s${i}`, { group: `s${i}` }));
  const timeout = setTimeout(() => {
    console.error(`watch-streams: not every watcher was created within ${CREATE_TIMEOUT_MS} ms`);
    process.exit(1);
  }, CREATE_TIMEOUT_MS);
  await Promise.all(watchers.map((w) => w.created));
  clearTimeout(timeout);
  const secs = (performance.now() - start) / 1000;
  await sleep(500);
  const rss1 = rssOf(pid);
  console.log(
    `mode=streams streams=${streams} secs=${secs.toFixed(3)} streams_per_s=${(streams / secs).toFixed(0)} ` +
      `rss_mb_before=${(rss0 / 1e6).toFixed(1)} rss_mb_after=${(rss1 / 1e6).toFixed(1)} bytes_per_stream=${((rss1 - rss0) / streams).toFixed(0)}`,
  );
} finally {
  client.close();
}
