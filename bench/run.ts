// `npm run bench`: etcd-ts against a real etcd 3.4, side by side, with one load generator
// (../shared/bench: etcdbench, on etcd's own Go client; where etcdbench cannot express a load,
// a script of ours under bench/, on our own client, the same against both servers).
//
// For every run in RUNS and for each server kind, a fresh server is started on free ports with
// a fresh data dir (same durability: etcd keeps its fsyncs, etcd-ts acknowledges only after
// fsync), etcdbench runs against it alone, first to warm it up (printed only), then once more
// to measure, and the server is stopped. Both servers get the same treatment (memory rows
// excepted, see BenchRun.warmupRuns): it is there for V8, whose code runs interpreted until it
// is hot, so a one-second run on a cold process measures the compiler rather than the steady
// state a long-running server lives in (with --no-warmup the first, cold run is the one
// measured).
//
// Each row is measured in rounds (`--rounds`, else the row's own count), etcd then etcd-ts
// in each, so that the two measurements of a round are taken back to back: on this shared
// machine one server's figure moves by up to 40% between runs, with the hour and the other
// tenants. The table prints the median of each server's figures and the median of the rounds'
// ratios etcd-ts/etcd, with their range and in how many rounds etcd-ts did at least as well
// ("rounds as good"). Quote ratios, not absolute figures: the machine is shared and the load
// generator shares its cores with the server.
//
// The fan-out and catch-up rows also print the CPU each side spent per event delivered over
// the whole measured run (watcher creation and writes included): the server's (its process,
// every thread) and the load generator's. On 2 shared cores the sum decides events/s while both
// sides keep both cores busy; where they do not, the server's own time per event can decide
// (docs/ARCHITECTURE.md, "Session 29"). The raw fan-out rows, whose client does not decode
// events, also print the server's busiest thread's CPU per event and from it the events/s the
// server's CPU allows on 2 cores of its own (CEILING_2_CORES; "Session 31").
//
// usage: npm run bench -- [--only put,range] [--rounds N] [--no-build] [--no-warmup] [--cpu-prof DIR] [--kinds etcd,etcd-ts]
//   --only      run only the named rows of RUNS
//   --rounds    measurements of each row per server, interleaved (default: the row's `rounds`, else 3)
//   --no-build  skip `npm run build` (dist/ must be current)
//   --no-warmup measure the first run against each fresh server
//   --cpu-prof  run etcd-ts under `node --cpu-prof`, profiles written to DIR on its exit
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { etcdUnavailableReason, freePort, startServer, type ServerKind } from '../test/helpers/servers.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The load generator's build script; ETCDBENCH_BUILD overrides it (e.g. when run from a git worktree). */
const BUILD_SCRIPT = process.env.ETCDBENCH_BUILD ?? resolve(REPO_ROOT, '../shared/bench/build.sh');

/** One figure etcdbench prints (`name=value`), and which direction is better. */
interface Metric {
  /** The `name` in etcdbench's output line. */
  key: string;
  /** Column label. */
  label: string;
  better: 'higher' | 'lower';
}

/** One row group of the table: an etcdbench invocation (or a script) and the figures to compare. */
interface BenchRun {
  name: string;
  /** etcdbench arguments besides -endpoint and -pid (the script's besides --endpoint and --pid). */
  args: string[];
  /**
   * A load generator of ours under bench/, run with `node --import tsx` instead of etcdbench, for
   * what etcdbench cannot express; it prints one `name=value` line like etcdbench.
   */
  script?: string;
  /**
   * A Go load generator of ours under bench/ (its directory), built like etcdbench in GOPATH
   * mode against Debian's etcd sources and run instead of etcdbench with -endpoint and `args`.
   */
  goTool?: string;
  metrics: Metric[];
  /**
   * Rounds measured when `--rounds` is not given. @default 3. More for a figure that rests on
   * a few samples per run and moves with the host (a p99 of 1,000 puts is its ~10 slowest).
   */
  rounds?: number;
  /**
   * Runs of the same load against the same server before the measured one. @default 1. 0 for
   * the memory rows: their figure is RSS growth, which a warm-up would hide by growing the heap
   * first. More where one run does not bring V8 to its steady state (fanout-latency).
   */
  warmupRuns?: number;
}

const OPS: Metric = { key: 'ops_per_s', label: 'ops/s', better: 'higher' };
const EVENTS: Metric = { key: 'events_per_s', label: 'events/s', better: 'higher' };
const P50: Metric = { key: 'p50_ms', label: 'p50 ms', better: 'lower' };
const P99: Metric = { key: 'p99_ms', label: 'p99 ms', better: 'lower' };

const SERVER_CPU: Metric = { key: 'server_cpu_us_per_event', label: 'server CPU µs/event', better: 'lower' };
/** CPU per event delivered of the server's thread that spent the most over the run (/proc/PID/task). */
const BUSIEST_THREAD_CPU: Metric = { key: 'busiest_thread_cpu_us_per_event', label: 'busiest thread µs/event', better: 'lower' };
/**
 * The events per second the server's own CPU allows on 2 cores it has to itself: delivered
 * events over the larger of its busiest thread's CPU seconds and half its CPU seconds in all.
 * A server that spreads its work over both cores can reach the second bound; ours, whose
 * fan-out runs on one thread, the first.
 */
const CEILING_2_CORES: Metric = { key: 'ceiling_2_cores_events_per_s', label: 'ceiling on 2 free cores', better: 'higher' };
const CLIENT_CPU: Metric = { key: 'client_cpu_us_per_event', label: 'client CPU µs/event', better: 'lower' };
const CREATES: Metric = { key: 'creates_per_s', label: 'creates/s', better: 'higher' };
const BYTES_PER_WATCHER: Metric = { key: 'bytes_per_watcher', label: 'B/watcher', better: 'lower' };
const COLD_BYTES_PER_WATCHER: Metric = { key: 'bytes_per_watcher', label: 'B/watcher, cold', better: 'lower' };
const RSS_WATCHING: Metric = { key: 'rss_mb_watching', label: 'RSS MB watching', better: 'lower' };
const BYTES_PER_STREAM: Metric = { key: 'bytes_per_stream', label: 'B/stream', better: 'lower' };
const COLD_BYTES_PER_STREAM: Metric = { key: 'cold_bytes_per_stream', label: 'B/stream, cold', better: 'lower' };
const BYTES_PER_STREAM_CONN: Metric = { key: 'bytes_per_watcher', label: 'B/stream+own conn', better: 'lower' };

/** The runs, in order (the watch rows are the reference runs of ../shared/bench/README.md). */
const RUNS: BenchRun[] = [
  { name: 'put', args: ['-mode', 'put', '-total', '20000', '-conc', '64', '-clients', '16'], metrics: [OPS, P50, P99] },
  // range first writes -keys keys one at a time (a sequential put load of its own), then reads.
  { name: 'range', args: ['-mode', 'range', '-total', '20000', '-conc', '64', '-clients', '16', '-keys', '1000'], metrics: [OPS, P50, P99] },
  // 1,000 / 10,000 watchers on one prefix, 16 concurrent writers: events delivered per second.
  // fanout-1k's ratio moves widely from one round to the next (0.56–1.88 in one run of session
  // 30): server and load generator share the 2 cores, and how the CPU splits between them moves
  // from run to run (docs/ARCHITECTURE.md, "Session 29"). Hence 5 rounds; a round pair takes ~25 s.
  { name: 'fanout-1k', args: ['-mode', 'fanout', '-watchers', '1000', '-total', '2000', '-writers', '16'], metrics: [EVENTS, P50, P99, RSS_WATCHING, SERVER_CPU, CLIENT_CPU], rounds: 5 },
  // The fan-out loads received by a client that counts events without decoding them
  // (bench/raw-fanout): its CPU per event is a third of etcdbench's or less, so the server's own
  // cost decides more of the figure. Their "ceiling on 2 free cores" is what the server's CPU
  // allows where the client runs elsewhere or the host has cores to spare: there etcd spreads
  // its fan-out over both cores and ours runs on one thread (docs/ARCHITECTURE.md, "Session 31").
  // Our CPU per event moves with how many events each response carries, so a round's ceiling
  // ratio moves by ±20%: 5 rounds each.
  { name: 'fanout-raw-1k', goTool: 'bench/raw-fanout', args: ['-watchers', '1000', '-total', '4000', '-writers', '16'], metrics: [EVENTS, SERVER_CPU, BUSIEST_THREAD_CPU, CEILING_2_CORES, CLIENT_CPU], rounds: 5 },
  { name: 'fanout-raw-10k', goTool: 'bench/raw-fanout', args: ['-watchers', '10000', '-total', '400', '-writers', '16'], metrics: [EVENTS, SERVER_CPU, BUSIEST_THREAD_CPU, CEILING_2_CORES, CLIENT_CPU], rounds: 5 },
  { name: 'fanout-10k', args: ['-mode', 'fanout', '-watchers', '10000', '-total', '200', '-writers', '16'], metrics: [EVENTS, P50, P99, RSS_WATCHING, SERVER_CPU, CLIENT_CPU] },
  // Put-to-event latency at a steady 100 puts/s with 100 watchers. Its p99 is the ~10 slowest
  // of 1,000 puts, which the host's stalls decide (docs/ARCHITECTURE.md, "Where the p99 of
  // put-to-event latency goes"): one round's ratio moves between ~0.8 and ~1.5, hence 7 rounds.
  // Four warm-up runs (40 s): at 100 puts/s V8 is still optimizing ~70 of our functions in the
  // second 10 s and ~25 in the third, on threads that delay the main thread's wake-ups by 1–3
  // ms (docs/ARCHITECTURE.md, "Session 28: the JIT's warm-up at 100 puts/s, and a range regression").
  { name: 'fanout-latency', args: ['-mode', 'fanout', '-watchers', '100', '-rate', '100', '-total', '1000'], metrics: [P50, P99, EVENTS], rounds: 7, warmupRuns: 4 },
  // 1,000 watchers replaying 1,000 historical revisions.
  { name: 'catchup-1k', args: ['-mode', 'catchup', '-watchers', '1000', '-total', '1000'], metrics: [EVENTS, SERVER_CPU, CLIENT_CPU] },
  // 20,000 idle watchers: creation rate, and server memory per watcher from a cold start
  // (-pid samples VmRSS; the figure carries the server process's one-time growth).
  { name: 'create-20k', args: ['-mode', 'create', '-watchers', '20000'], metrics: [CREATES, COLD_BYTES_PER_WATCHER], warmupRuns: 0 },
  // Memory per additional idle watcher and per additional watch stream, as etcd's watch memory
  // benchmark defines its 350-byte and 18 KB figures (see bench/watch-memory.ts): 2 base batches,
  // then 4 measured ones. The streams are all on one connection (our client's watch groups).
  { name: 'watchers-80k', script: 'bench/watch-memory.ts', args: ['--mode', 'watchers', '--batch', '20000'], metrics: [BYTES_PER_WATCHER], warmupRuns: 0 },
  { name: 'streams-4k', script: 'bench/watch-memory.ts', args: ['--mode', 'streams', '--batch', '1000'], metrics: [BYTES_PER_STREAM, COLD_BYTES_PER_STREAM], warmupRuns: 0 },
  // 1,000 watchers on 1,000 connections: etcdbench puts the watchers of a connection on one
  // stream, so this is one stream per connection. The connections are dialed before the
  // baseline, so the figure is a stream plus what its connection allocates lazily.
  { name: 'streams-1k-conns', args: ['-mode', 'create', '-watchers', '1000', '-conc', '1000', '-clients', '1000'], metrics: [BYTES_PER_STREAM_CONN], warmupRuns: 0 },
];

/** The key of etcdbench's binary in the map of built load generators. */
const ETCDBENCH = 'etcdbench';

/**
 * Builds the Go program in `dir` (relative to the repository) as bench/restart-outage's header
 * says, offline in GOPATH mode against Debian's etcd sources (which etcdbench's build installs),
 * into /tmp/etcd-ts-bench-bin (as etcdbench's build into /tmp/etcdbench-bin), and returns the
 * binary's path.
 */
function buildGoTool(dir: string): string {
  const out = resolve('/tmp/etcd-ts-bench-bin', dir.split('/').pop()!);
  const b = spawnSync('go', ['build', '-o', out, `./${dir}`], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOFLAGS: '' },
  });
  if (b.status !== 0) throw new Error(`go build ./${dir} failed:\n${b.stdout ?? ''}${b.stderr ?? ''}${b.error ? String(b.error) : ''}`);
  return out;
}

/** What one etcdbench invocation produced against one server. */
interface Result {
  figures: Map<string, number>;
  line: string;
  error?: string;
}

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`). */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/**
 * CPU seconds so far (user and system) of process `pid` (every thread), of one thread (`pid` is
 * `PID/task/TID`), or of this process's children that have been waited for (`self`:
 * /proc/self's cutime and cstime, where a finished spawnSync's load generator lands).
 */
function cpuSeconds(pid: number | string): number {
  // The fields after the command name, which is in parentheses and may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime are fields 14 and 15 of stat(5), cutime, cstime 16 and 17; f[0] is field 3.
  const at = pid === 'self' ? 13 : 11;
  return (Number(f[at]) + Number(f[at + 1])) / CLOCK_TICKS;
}

/** CPU seconds so far of each thread of process `pid`, by thread ID. */
function threadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(tid, cpuSeconds(`${pid}/task/${tid}`));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/** Parses etcdbench's `name=value name=value …` line (the last line of stdout). */
function parseFigures(stdout: string): { figures: Map<string, number>; line: string } {
  const line = stdout.trim().split('\n').pop() ?? '';
  const figures = new Map<string, number>();
  for (const m of line.matchAll(/(\w+)=(-?[\d.]+)(?=\s|$)/g)) figures.set(m[1]!, Number(m[2]));
  return { figures, line };
}

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, encoding: 'utf8', timeout: opts.timeoutMs, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

/** Stop functions of every started server; all run in `finally`, whatever failed. */
const cleanups: (() => Promise<void> | void)[] = [];
const registrar = { after: (fn: () => Promise<void> | void) => { cleanups.push(fn); } };
async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      console.error('cleanup failed:', err);
    }
  }
}

/** A started server as benchOne needs it. */
interface BenchServer {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * etcd-ts under `node --cpu-prof` (not allowed in NODE_OPTIONS, so test/helpers/servers.ts
 * cannot start it): spawned here, ready when it logs its ready line, stopped with SIGTERM so
 * that it exits normally and writes its profile into `profDir`.
 */
async function startProfiledEtcdTs(profDir: string): Promise<BenchServer> {
  const client = await freePort();
  const peer = await freePort();
  const dataDir = mkdtempSync(resolve(tmpdir(), 'bench-etcd-ts-'));
  const url = `http://127.0.0.1:${client}`;
  const child = spawn(process.execPath, [
    '--cpu-prof', `--cpu-prof-dir=${profDir}`, resolve(REPO_ROOT, 'bin/etcd-ts.js'),
    '--data-dir', dataDir, '--listen-client-urls', url, '--advertise-client-urls', url, '--listen-peer-urls', `http://127.0.0.1:${peer}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  registrar.after(stop);
  let log = '';
  await new Promise<void>((ready, fail) => {
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      log += chunk;
      if (log.includes('ready to serve client requests')) ready();
    });
    void exited.then(() => fail(new Error(`etcd-ts exited before ready:\n${log.slice(-2000)}`)));
  });
  return { endpoint: url, pid: child.pid ?? 0, stop };
}

/** Starts a fresh server of `kind`, runs etcdbench (or the run's script or Go tool) against it `warmupRuns` times and once more to measure, stops it. */
async function benchOne(bins: ReadonlyMap<string, string>, kind: ServerKind, r: BenchRun, cpuProfDir: string | undefined, warmupRuns: number): Promise<Result> {
  const server: BenchServer = kind === 'etcd-ts' && cpuProfDir ? await startProfiledEtcdTs(cpuProfDir) : await startServer(registrar, { kind });
  try {
    const endpoint = server.endpoint.replace(/^https?:\/\//, '');
    const once = (): Result => {
      const cpu0 = r.metrics.includes(SERVER_CPU) ? { server: cpuSeconds(server.pid), client: cpuSeconds('self') } : undefined;
      const threads0 = r.metrics.includes(BUSIEST_THREAD_CPU) ? threadCpuSeconds(server.pid) : undefined;
      const out = r.script
        ? run(process.execPath, ['--import', 'tsx', resolve(REPO_ROOT, r.script), '--endpoint', endpoint, '--pid', String(server.pid), ...r.args], { timeoutMs: 600_000 })
        : r.goTool
          ? run(bins.get(r.goTool)!, ['-endpoint', endpoint, ...r.args], { timeoutMs: 600_000 })
          : run(bins.get(ETCDBENCH)!, ['-endpoint', endpoint, '-pid', String(server.pid), ...r.args], { timeoutMs: 600_000 });
      const { figures, line } = parseFigures(out.stdout);
      if (out.code !== 0) return { figures, line, error: `${r.script ?? r.goTool ?? 'etcdbench'} exit ${out.code}: ${(out.stderr || line).trim().slice(-500)}` };
      const delivered = figures.get('delivered');
      if (cpu0 && delivered) {
        figures.set(SERVER_CPU.key, ((cpuSeconds(server.pid) - cpu0.server) / delivered) * 1e6);
        figures.set(CLIENT_CPU.key, ((cpuSeconds('self') - cpu0.client) / delivered) * 1e6);
      }
      if (threads0 && delivered) {
        let busiest = 0;
        for (const [tid, secs] of threadCpuSeconds(server.pid)) busiest = Math.max(busiest, secs - (threads0.get(tid) ?? 0));
        const busiestUs = (busiest / delivered) * 1e6;
        figures.set(BUSIEST_THREAD_CPU.key, busiestUs);
        const serverUs = figures.get(SERVER_CPU.key);
        if (serverUs !== undefined) figures.set(CEILING_2_CORES.key, 1e6 / Math.max(busiestUs, serverUs / 2));
      }
      return { figures, line };
    };
    for (let i = 0; i < warmupRuns; i++) {
      const warm = once();
      console.error(`  warm-up: ${warm.error ?? warm.line}`);
      if (warm.error) return warm;
    }
    return once();
  } finally {
    await server.stop();
  }
}

const fmt = (n: number | undefined): string =>
  n === undefined || Number.isNaN(n) ? '-' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);

/** The median of `xs` (the mean of the middle two for an even count); undefined when empty. */
function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A row's measurements: for each server kind, one Result per round, in round order. */
type RowResults = Map<ServerKind, Result[]>;

function printTable(rows: { run: BenchRun; results: RowResults }[]): void {
  const header = ['run', 'metric', 'etcd', 'etcd-ts', 'etcd-ts/etcd'];
  const lines: string[][] = [header];
  for (const { run: r, results } of rows) {
    const e = results.get('etcd') ?? [];
    const t = results.get('etcd-ts') ?? [];
    const eFailed = e.some((x) => x.error !== undefined);
    const tFailed = t.some((x) => x.error !== undefined);
    for (const m of r.metrics) {
      const figure = (x: Result): number | undefined => x.figures.get(m.key);
      const a = eFailed ? undefined : median(e.map(figure).filter((v) => v !== undefined));
      const b = tFailed ? undefined : median(t.map(figure).filter((v) => v !== undefined));
      // The ratio of each round: two measurements taken back to back.
      const ratios: number[] = [];
      for (let i = 0; i < Math.min(e.length, t.length); i++) {
        const ai = figure(e[i]!);
        const bi = figure(t[i]!);
        if (ai !== undefined && bi !== undefined && ai !== 0) ratios.push(bi / ai);
      }
      const mid = eFailed || tFailed ? undefined : median(ratios);
      const asGood = ratios.filter((x) => (m.better === 'higher' ? x >= 1 : x <= 1)).length;
      const spread = ratios.length > 1 ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}, ${asGood}/${ratios.length} rounds as good)` : '';
      const ratio = mid === undefined ? '-' : `${mid.toFixed(2)}x${spread} (${m.better} is better)`;
      lines.push([r.name, m.label, eFailed ? 'ERROR' : fmt(a), tFailed ? 'ERROR' : fmt(b), ratio]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const render = (l: string[]): string => l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(render(lines[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines.slice(1)) console.log(render(l));
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      kinds: { type: 'string', default: 'etcd,etcd-ts' },
      rounds: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      'no-warmup': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
    },
  });
  const only = values.only?.split(',');
  const runs = only ? RUNS.filter((r) => only.includes(r.name)) : RUNS;
  if (runs.length === 0) throw new Error(`no run named ${values.only}; known: ${RUNS.map((r) => r.name).join(', ')}`);
  const kinds = values.kinds.split(',') as ServerKind[];
  const roundsFlag = values.rounds === undefined ? undefined : Number(values.rounds);
  if (roundsFlag !== undefined && (!Number.isInteger(roundsFlag) || roundsFlag < 1)) throw new Error(`--rounds must be a positive integer, not ${values.rounds}`);
  const cpuProfDir = values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  const reason = etcdUnavailableReason();
  if (reason) throw new Error(reason);
  if (!values['no-build']) {
    console.error('building etcd-ts (npm run build)…');
    const b = run('npm', ['run', 'build']);
    if (b.code !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`);
  }
  console.error('building etcdbench…');
  const built = run('bash', [BUILD_SCRIPT]);
  if (built.code !== 0) throw new Error(`${BUILD_SCRIPT} failed:\n${built.stdout}${built.stderr}`);
  const bins = new Map([[ETCDBENCH, built.stdout.trim().split('\n').pop()!]]);
  for (const tool of new Set(runs.flatMap((r) => (r.goTool ? [r.goTool] : [])))) {
    console.error(`building ${tool}…`);
    bins.set(tool, buildGoTool(tool));
  }

  const rows: { run: BenchRun; results: RowResults }[] = [];
  let failed = false;
  for (const r of runs) {
    const results: RowResults = new Map(kinds.map((k) => [k, []]));
    const rounds = roundsFlag ?? r.rounds ?? 3;
    for (let round = 1; round <= rounds; round++) {
      for (const kind of kinds) {
        console.error(`${r.name} against ${kind} (round ${round}/${rounds}): ${r.script ?? r.goTool ?? 'etcdbench'} ${r.args.join(' ')}`);
        const res = await benchOne(bins, kind, r, cpuProfDir, values['no-warmup'] ? 0 : r.warmupRuns ?? 1);
        console.error(`  ${res.error ?? res.line}`);
        if (res.error) failed = true;
        results.get(kind)!.push(res);
      }
    }
    rows.push({ run: r, results });
  }
  console.log('');
  printTable(rows);
  if (cpuProfDir) console.log(`\netcd-ts CPU profiles: ${cpuProfDir}`);
  return failed ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 2;
} finally {
  await cleanupAll();
}
