/**
 * The watch path without gRPC and without a client: the store, the watchable store, watch
 * streams and their framing transport (`callTransport` on a stand-in HTTP/2 stream whose writes
 * complete on the next event-loop turn), all in this process. It measures the CPU etcd-ts
 * spends per delivered event, which etcdbench's watch rows cannot isolate: there the Go client
 * shares the two cores and its pace changes how many events each response carries, so one
 * build's server CPU moves by ±15% between runs. Here the load is fixed and only our code runs.
 * - `--mode fanout`: `--watchers` watchers on one prefix, then `--writers` concurrent writers put
 *   `--puts` values (etcdbench's fanout);
 * - `--mode catchup`: `--puts` values first, then the watchers, all from the first of them
 *   (etcdbench's catchup).
 *
 * usage: node --import tsx bench/watch-engine.ts [--mode fanout] [--watchers 1000] [--streams 16]
 *        [--puts 2000] [--writers 16] [--write-ms 0] [--runs 5]
 * Prints one line per run: events, HTTP/2 writes, CPU ms (process, all threads, LMDB's
 * included), µs of CPU per event, wall ms. Compare builds with interleaved runs from git
 * worktrees; the first run of a process is cold.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Backend } from '../src/mvcc/backend.js';
import { KVStore } from '../src/mvcc/kv-store.js';
import { callTransport } from '../src/server/grpc/watch-service.js';
import { headerFields, WatchStream } from '../src/watch/watch-stream.js';
import { WatchableStore } from '../src/watch/watchable-store.js';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'fanout' },
    watchers: { type: 'string', default: '1000' },
    streams: { type: 'string', default: '16' },
    puts: { type: 'string', default: '2000' },
    writers: { type: 'string', default: '16' },
    'write-ms': { type: 'string', default: '0' },
    runs: { type: 'string', default: '5' },
  },
});
const WATCHERS = Number(values.watchers);
const STREAMS = Number(values.streams);
const PUTS = Number(values.puts);
const WRITERS = Number(values.writers);
const WRITE_MS = Number(values['write-ms']);
if (values.mode !== 'fanout' && values.mode !== 'catchup') throw new Error(`--mode is fanout or catchup, not ${values.mode}`);
const CATCHUP = values.mode === 'catchup';
const VALUE = Buffer.alloc(128, 'v');
const header = (rev: number) => ({ clusterId: 1n, memberId: 2n, revision: BigInt(rev), raftTerm: 2n });

/** One run on a fresh store: returns events delivered, CPU and wall time. */
async function run(): Promise<{ events: number; writes: number; cpuMs: number; wallMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'watch-engine-'));
  const kv = new KVStore(Backend.open(dir));
  const store = new WatchableStore(kv);
  let inFlight = 0;
  let writes = 0;
  const streams: WatchStream[] = [];
  for (let s = 0; s < STREAMS; s++) {
    // A stand-in for the call: a write completes on the next turn, or after --write-ms, the
    // pace of a client that reads slower than the server writes.
    const call = {
      closed: false,
      writeFramed: (_chunk: Buffer, cb?: () => void): boolean => {
        inFlight++;
        writes++;
        const done = (): void => {
          inFlight--;
          cb?.();
        };
        if (WRITE_MS > 0) setTimeout(done, WRITE_MS);
        else setImmediate(done);
        return true;
      },
    };
    const stream: WatchStream = new WatchStream(store, callTransport(call, () => stream.drained(), () => {}), { headerField: headerFields(header), fragmentBytes: 1.5 * 1024 * 1024, progressIntervalMs: 0 });
    streams.push(stream);
  }
  /** `WRITERS` concurrent writers put PUTS values in all. */
  const write = async (): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, k) => {
        while (next++ < PUTS) {
          const txn = kv.beginWrite();
          txn.put(`fan/k${k}`, VALUE, 0n);
          await txn.end();
        }
      }),
    );
  };
  const firstRev = kv.headRev + 1;
  const createWatchers = (): void => {
    for (let w = 0; w < WATCHERS; w++) {
      streams[w % STREAMS]!.handle({
        createRequest: {
          key: Buffer.from('fan/'),
          rangeEnd: Buffer.from('fan0'),
          startRevision: CATCHUP ? BigInt(firstRev) : 0n,
          progressNotify: false,
          filters: [],
          prevKv: false,
          watchId: 0n,
          fragment: false,
        },
      });
    }
  };
  if (CATCHUP) await write();
  else createWatchers();
  await new Promise((r) => setTimeout(r, 50));
  writes = 0; // the created responses of a fan-out run are not part of it
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (CATCHUP) createWatchers();
  else await write();
  while (inFlight > 0 || store.stats().eventsSent < WATCHERS * PUTS) await new Promise((r) => setImmediate(r));
  const events = store.stats().eventsSent;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  for (const s of streams) s.close();
  store.close();
  await kv.close();
  rmSync(dir, { recursive: true, force: true });
  return { events, writes, cpuMs: (cpu.user + cpu.system) / 1000, wallMs };
}

for (let i = 0; i < Number(values.runs); i++) {
  const r = await run();
  console.log(`events=${r.events} writes=${r.writes} cpu_ms=${r.cpuMs.toFixed(0)} cpu_us_per_event=${((r.cpuMs * 1000) / r.events).toFixed(3)} wall_ms=${r.wallMs.toFixed(0)}`);
}
