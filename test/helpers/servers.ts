// Starts a real etcd 3.4 or an etcd-ts on free ports with a fresh data dir, for tests that run
// the same steps against both. Every started process is killed when its test ends (through the
// `after` hook the caller passes in) and, as a last resort, when this process exits.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as stringifyYaml } from 'yaml';
import { etcdctl } from './etcdctl.js';

export type ServerKind = 'etcd' | 'etcd-ts';

/** Where the real etcd lives (Debian's etcd-server package). */
export const ETCD_BIN = '/usr/bin/etcd';
/** Where etcdctl lives (Debian's etcd-client package). */
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ETCD_TS_BIN = join(REPO_ROOT, 'bin', 'etcd-ts.js');
const ETCD_TS_ENTRY = join(REPO_ROOT, 'dist', 'src', 'cli', 'etcd-ts.js');

/** The line both servers log on stderr once they accept client requests. */
const READY_LINE = 'ready to serve client requests';
/**
 * The real etcd applies the cluster-version raft entry asynchronously, usually just before
 * READY_LINE. Waiting for its log line too makes the raft index after startup always 4, so
 * `endpoint status` outputs are comparable from the first step.
 */
const ETCD_CLUSTER_VERSION_LINE = 'enabled capabilities for version';

/** The part of node:test's TestContext (or its module-level `after`) used to register cleanup. */
export interface CleanupRegistrar {
  after(fn: () => Promise<void> | void): void;
}

export interface StartOptions {
  kind: ServerKind;
  /** Extra etcd flags, e.g. ['--max-txn-ops', '4']. */
  flags?: string[];
  /** How long to wait for readiness. @default 20000 */
  readyTimeoutMs?: number;
  /**
   * Start from an etcd configuration file instead: the file (YAML, beside the data dir) holds
   * the settings the flags would give, overridden and added to by these; the command line is
   * then `--config-file <file>` and `flags`, which both servers ignore.
   */
  configFile?: Record<string, unknown>;
  /**
   * A file the server logs to (the test's `flags` send its log there, e.g. `--log-outputs`):
   * its ready line is looked for in this file instead of on stderr.
   */
  logFile?: string;
}

export interface ServerHandle {
  readonly kind: ServerKind;
  /** Client URL, e.g. http://127.0.0.1:41234 */
  readonly endpoint: string;
  /** The URL it listens on for peers (`--listen-peer-urls`), e.g. http://127.0.0.1:41235 */
  readonly peerEndpoint: string;
  readonly dataDir: string;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** What the current process has written to stderr. */
  stderr(): string;
  /** SIGTERM, wait for exit, remove the data dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), wait for exit; the data dir stays for restart(). */
  kill9(): Promise<void>;
  /** Stop gracefully if running, then start again on the same ports and data dir. */
  /** SIGTERM, then start again on the same data dir and ports; `flags`, when given, replace the extra flags from then on. */
  restart(flags?: readonly string[]): Promise<void>;
}

/** How long stop() waits after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;

/** Children still running, killed by the exit hook if a test forgot or crashed. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const child of liveChildren) child.kill('SIGKILL');
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
}

/**
 * The lowest port the kernel hands out on its own (to `listen(0)` and to outgoing connections),
 * from /proc/sys/net/ipv4/ip_local_port_range; 32768 (Linux's default) when unreadable.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

const PORTS_FROM = 10000;
const PORTS_TO = ephemeralLow();
/** Where this process's next candidate port lies: a random start, so test files differ. */
let nextPort = PORTS_FROM + Math.floor(Math.random() * Math.max(1, PORTS_TO - PORTS_FROM));

/**
 * Listens on `port` of 127.0.0.1 (0: one the OS picks) and closes again; resolves with the
 * port, or undefined when it cannot be listened on.
 */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : undefined));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that is free now and that nothing else is handed: ports are taken
 * below the kernel's ephemeral range, so no client connection's local port and no `listen(0)`
 * can take it between this answer and the server's bind (a CI run lost etcd's bind to a port
 * handed out again that way), and one process never gets the same port twice. Where the range
 * leaves no room below it, the OS picks (listen on 0).
 */
export async function freePort(): Promise<number> {
  if (PORTS_TO - PORTS_FROM < 1000) {
    const port = await tryListen(0);
    if (port === undefined) throw new Error('cannot listen on 127.0.0.1');
    return port;
  }
  for (let tries = PORTS_TO - PORTS_FROM; tries > 0; tries--) {
    const port = nextPort;
    nextPort = nextPort + 1 >= PORTS_TO ? PORTS_FROM : nextPort + 1;
    if ((await tryListen(port)) !== undefined) return port;
  }
  throw new Error(`no port of 127.0.0.1 from ${PORTS_FROM} to ${PORTS_TO - 1} can be listened on`);
}

/**
 * Makes sure etcd and etcdctl are installed, installing Debian's packages when running as root.
 * Returns undefined when usable, otherwise the reason to skip the tests.
 */
export function etcdUnavailableReason(): string | undefined {
  if (existsSync(ETCD_BIN) && existsSync(ETCDCTL_BIN)) return undefined;
  if (process.getuid?.() !== 0) {
    return `etcd 3.4 is not installed (${ETCD_BIN}, ${ETCDCTL_BIN}) and we are not root: ` +
      'run `apt-get install etcd-server etcd-client` to enable the compat tests';
  }
  const install = spawnSync('apt-get', ['install', '-y', 'etcd-server', 'etcd-client'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (install.status !== 0 || !existsSync(ETCD_BIN) || !existsSync(ETCDCTL_BIN)) {
    return `apt-get install etcd-server etcd-client failed (exit ${String(install.status)})`;
  }
  return undefined;
}

/** Why etcd-ts cannot be started yet, or undefined when it is built. */
export function etcdTsUnavailableReason(): string | undefined {
  if (!existsSync(ETCD_TS_BIN)) return `${ETCD_TS_BIN} does not exist`;
  if (!existsSync(ETCD_TS_ENTRY)) {
    return `${ETCD_TS_ENTRY} does not exist: run \`npm run build\` first ` +
      '(or COMPAT_SELF_CHECK=1 to compare real etcd with a second real etcd)';
  }
  return undefined;
}

interface Ports {
  client: number;
  peer: number;
}

function commandLine(kind: ServerKind, ports: Ports, dataDir: string, flags: string[], configFile?: Record<string, unknown>): [string, string[]] {
  const clientUrl = `http://127.0.0.1:${ports.client}`;
  // The advertised peer URL and cluster stay at etcd's defaults so member and cluster IDs are
  // the well-known 8e9e05c52164694d / cdf818194e3a8c32; only the listen address is private.
  const settings: Record<string, unknown> = {
    name: 'default',
    'data-dir': dataDir,
    'listen-client-urls': clientUrl,
    'advertise-client-urls': clientUrl,
    'listen-peer-urls': `http://127.0.0.1:${ports.peer}`,
    'initial-advertise-peer-urls': 'http://localhost:2380',
    'initial-cluster': 'default=http://localhost:2380',
  };
  let args: string[];
  if (configFile) {
    const file = `${dataDir}.conf.yml`;
    writeFileSync(file, stringifyYaml({ ...settings, ...configFile }));
    args = ['--config-file', file, ...flags];
  } else {
    args = [...Object.entries(settings).flatMap(([name, value]) => [`--${name}`, String(value)]), ...flags];
  }
  return kind === 'etcd' ? [ETCD_BIN, args] : [process.execPath, [ETCD_TS_BIN, ...args]];
}

function waitForExit(child: ChildProcess): Promise<void> {
  // No pid: spawning failed, there is no process to wait for.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One server process, what it wrote to stderr, and its log (stderr, or its log file). */
interface Running {
  child: ChildProcess;
  stderr: () => string;
  log: () => string;
  /** Whether the server logs zap's JSON lines (`--logger zap`), not capnslog's. */
  zap: boolean;
  /** Resolves with the spawn error, if spawning fails (e.g. missing binary). */
  spawnError: Promise<Error>;
}

function spawnServer(kind: ServerKind, ports: Ports, dataDir: string, flags: string[], configFile?: Record<string, unknown>, logFile?: string): Running {
  const [cmd, args] = commandLine(kind, ports, dataDir, flags, configFile);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: REPO_ROOT });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  // Neither the server nor its stderr pipe keeps the test process alive: if a test forgets a
  // server, the process still exits and the exit hook kills it.
  child.unref();
  if (child.stderr !== null && 'unref' in child.stderr && typeof child.stderr.unref === 'function') {
    child.stderr.unref();
  }
  let log = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => { log += chunk; });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const fileLog = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  const zap = flags.some((f, i) => f === '--logger=zap' || (f === 'zap' && flags[i - 1] === '--logger'));
  return { child, stderr: () => log, log: logFile === undefined ? () => log : () => fileLog(logFile), zap, spawnError };
}

/**
 * Resolves once the server logged its ready line(s) and `etcdctl endpoint status` succeeds
 * (etcd 3.4's HTTP /health is not used: it appends a raft entry; `endpoint health` reads a key,
 * which a server with auth enabled refuses without a user). Kills it on timeout.
 */
async function waitReady(kind: ServerKind, running: Running, endpoint: string, readyTimeoutMs: number): Promise<void> {
  const { child, stderr, log } = running;
  // etcd 3.4 logs "ready to serve client requests" only through capnslog, not with --logger=zap.
  const readyLines = kind === 'etcd' ? (running.zap ? [ETCD_CLUSTER_VERSION_LINE] : [READY_LINE, ETCD_CLUSTER_VERSION_LINE]) : [READY_LINE];
  const deadline = Date.now() + readyTimeoutMs;
  let lastStatus = '';
  for (;;) {
    const failure = await Promise.race([running.spawnError, sleep(50).then(() => undefined)]);
    if (failure !== undefined) throw new Error(`cannot start ${kind}: ${failure.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      const output = log() === stderr() ? stderr() : `${stderr()}\nlog file:\n${log()}`;
      throw new Error(`${kind} exited (${String(child.exitCode ?? child.signalCode)}) before ready:\n${output.slice(-4000)}`);
    }
    if (readyLines.every((line) => log().includes(line))) {
      const status = await etcdctl(endpoint, ['endpoint', 'status'], { timeoutMs: 5000 });
      if (status.code === 0) return;
      lastStatus = status.stderr;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await waitForExit(child);
      throw new Error(`${kind} not ready after ${readyTimeoutMs} ms; last status check: ${lastStatus}\n` +
        `log tail:\n${log().slice(-4000)}`);
    }
  }
}

/**
 * Starts etcd and etcd-ts side by side with the same options (see startServer); returns
 * `[etcd, etcd-ts]`. Both starts are awaited before either failure is thrown, so whichever
 * started is registered with `cleanup` and stopped.
 */
export async function startBoth(cleanup: CleanupRegistrar, options: Omit<StartOptions, 'kind'> = {}): Promise<[ServerHandle, ServerHandle]> {
  const [etcd, ours] = await Promise.allSettled([startServer(cleanup, { ...options, kind: 'etcd' }), startServer(cleanup, { ...options, kind: 'etcd-ts' })]);
  if (etcd.status === 'rejected') throw etcd.reason;
  if (ours.status === 'rejected') throw ours.reason;
  return [etcd.value, ours.value];
}

/**
 * Starts a server of the given kind on free ports with a fresh temp data dir and waits until it
 * serves. `cleanup.after` receives the stop function, so the process dies with the test even
 * when an assertion fails.
 */
export async function startServer(cleanup: CleanupRegistrar, options: StartOptions): Promise<ServerHandle> {
  const { kind, flags = [], readyTimeoutMs = 20_000 } = options;
  if (kind === 'etcd-ts') {
    const reason = etcdTsUnavailableReason();
    if (reason !== undefined) throw new Error(`cannot start etcd-ts: ${reason}`);
  }
  installExitHook();
  const ports: Ports = { client: await freePort(), peer: await freePort() };
  const dataDir = await mkdtemp(join(tmpdir(), `compat-${kind}-`));
  const endpoint = `http://127.0.0.1:${ports.client}`;
  let stopped = false;
  let extraFlags = flags;
  const start = (): Running => spawnServer(kind, ports, dataDir, extraFlags, options.configFile, options.logFile);
  let current = start();

  // A server that ignores SIGTERM for STOP_GRACE_MS is killed: a hung stop must not hang tests.
  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const { child } = current;
    child.kill(signal);
    const escalate = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await waitForExit(child);
    clearTimeout(escalate);
  };
  const handle: ServerHandle = {
    kind,
    endpoint,
    peerEndpoint: `http://127.0.0.1:${ports.peer}`,
    dataDir,
    get pid() { return current.child.pid ?? -1; },
    stderr: () => current.stderr(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate('SIGTERM');
      await rm(dataDir, { recursive: true, force: true });
      await rm(`${dataDir}.conf.yml`, { force: true });
    },
    async kill9() {
      await terminate('SIGKILL');
    },
    async restart(newFlags) {
      if (stopped) throw new Error('restart() after stop(): the data dir is gone');
      await terminate('SIGTERM');
      if (newFlags) extraFlags = [...newFlags];
      current = start();
      await waitReady(kind, current, endpoint, readyTimeoutMs);
    },
  };
  // Registered before waiting, so a test that fails meanwhile still stops this server.
  cleanup.after(() => handle.stop());
  await waitReady(kind, current, endpoint, readyTimeoutMs);
  return handle;
}
