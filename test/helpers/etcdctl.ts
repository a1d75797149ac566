// Runs etcdctl (API v3) against one endpoint, and normalises the few parts of its output that
// legitimately differ between two servers. etcdctl renders every output itself, so two servers
// that send the same responses produce the same bytes; each rule below names what differs and
// why. Everything not matched by a rule must be identical.
import { spawn } from 'node:child_process';
import { ETCDCTL_BIN } from './servers.js';

export interface CtlResult {
  /** Exit code of etcdctl. */
  code: number;
  /** stdout as UTF-8 text, or as hex when `stdoutAsHex` was set (for `-w protobuf`). */
  stdout: string;
  stderr: string;
}

export interface CtlOptions {
  /** Written to etcdctl's stdin, which is then closed (e.g. for `txn -i`). */
  stdin?: string;
  /** Return stdout as lowercase hex: binary output must not go through UTF-8 decoding. */
  stdoutAsHex?: boolean;
  /** Kill etcdctl and reject after this long. @default 30000 */
  timeoutMs?: number;
}

/** Runs `etcdctl --endpoints=<endpoint> ...args` with ETCDCTL_API=3 and no other ETCDCTL_* vars. */
export function etcdctl(endpoint: string, args: readonly string[], options: CtlOptions = {}): Promise<CtlResult> {
  const { stdin, stdoutAsHex = false, timeoutMs = 30_000 } = options;
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('ETCDCTL_')) env[name] = value;
  }
  env.ETCDCTL_API = '3';
  return new Promise((resolve, reject) => {
    const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoint}`, ...args], {
      env,
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`etcdctl ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === null) {
        reject(new Error(`etcdctl ${args.join(' ')} killed by ${String(signal)}`));
        return;
      }
      const stdout = Buffer.concat(out);
      resolve({
        code,
        stdout: stdoutAsHex ? stdout.toString('hex') : stdout.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/** What the normalisers need to know about the server a result came from. */
export interface NormaliseContext {
  /** The server's client URL, e.g. http://127.0.0.1:41234. */
  endpoint: string;
  /** Temp paths used in the steps (e.g. the snapshot file's dir), replaced by `<tmp>`. */
  tmpPaths: readonly string[];
}

export interface Normaliser {
  name: string;
  /** Why this part legitimately differs between two correct servers. */
  why: string;
  apply(text: string, ctx: NormaliseContext): string;
}

/** A Go time.Duration as printed by String(), e.g. 921.591µs, 1.2ms, 1m2.5s. */
const GO_DURATION = String.raw`(?:\d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h))+`;
/** A size as printed by go-humanize Bytes(), e.g. 20 kB, 1.2 MB, 512 B. */
const HUMAN_SIZE = String.raw`\d+(?:\.\d+)? [kMGTPE]?B`;
const SEMVER = String.raw`\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?`;
/** Placeholder for the endpoint's host:port (applied first, so later rules can anchor on it). */
const HOST_PORT = '<host:port>';
/** An endpoint status row (simple or table) has these columns: endpoint, ID, version, DB size, ... */
const STATUS_VERSION_COLUMN = 2;
const STATUS_SIZE_COLUMN = 3;
const STATUS_COLUMNS = 10;

function replaceAll(text: string, needle: string, replacement: string): string {
  return needle === '' ? text : text.split(needle).join(replacement);
}

/** The cells of a table row `| a | b |`, trimmed; undefined for other lines. */
function tableCells(line: string): string[] | undefined {
  return /^\|.*\|$/.test(line) ? line.split('|').slice(1, -1).map((cell) => cell.trim()) : undefined;
}

/** A table row with one space of padding (an empty cell is one space). */
function tableRow(cells: readonly string[]): string {
  return `|${cells.map((cell) => (cell === '' ? ' ' : ` ${cell} `)).join('|')}|`;
}

/** Applies `edit` to the columns of endpoint status rows (`simple` and `table` output). */
function editStatusRows(text: string, edit: (cells: string[]) => void): string {
  return text.split('\n').map((line) => {
    const table = tableCells(line);
    const cells = table ?? (line.startsWith(`http://${HOST_PORT}, `) ? line.split(', ') : undefined);
    if (cells === undefined || cells.length !== STATUS_COLUMNS || cells[0] !== `http://${HOST_PORT}`) return line;
    edit(cells);
    return table === undefined ? cells.join(', ') : tableRow(cells);
  }).join('\n');
}

/**
 * The normalisers, applied in this order to stdout and stderr of both servers. Keep this list
 * short: each entry hides a difference, so each must be one a correct server may show.
 */
export const NORMALISERS: readonly Normaliser[] = [
  {
    name: 'host-port',
    why: 'each server listens on its own free port',
    apply: (text, { endpoint }) => replaceAll(text, new URL(endpoint).host, HOST_PORT),
  },
  {
    name: 'tmp-paths',
    why: 'each server gets its own temp dir (snapshot files)',
    apply: (text, { tmpPaths }) => tmpPaths.reduce((acc, path) => replaceAll(acc, path, '<tmp>'), text),
  },
  {
    name: 'table-padding',
    why: 'etcdctl pads table cells to the widest value; once a value is normalised (a duration ' +
      'such as 694.783µs vs 1.2ms) the padding differs. Cell contents still compare exactly.',
    apply: (text) => text.split('\n').map((line) => {
      if (/^\+[-+]+\+$/.test(line)) return line.replace(/-+/g, '-');
      const cells = tableCells(line);
      return cells === undefined ? line : tableRow(cells);
    }).join('\n'),
  },
  {
    name: 'log-timestamp',
    why: 'etcdctl\'s zap log lines (warnings before errors, snapshot progress) carry the wall clock',
    apply: (text) => text.replace(/"ts":(?:"[^"]*"|[\d.e+]+)/g, '"ts":"<ts>"'),
  },
  {
    name: 'client-id',
    why: 'etcdctl names its gRPC resolver target with a random UUID per run',
    apply: (text) => text.replace(/endpoint:\/\/client-[0-9a-f-]{36}\//g, 'endpoint://client-<uuid>/'),
  },
  {
    name: 'durations',
    why: 'how long a health check or snapshot took',
    apply: (text) => text
      .replace(new RegExp(`took = ${GO_DURATION}`, 'g'), 'took = <took>')
      .replace(new RegExp(`"took":"${GO_DURATION}"`, 'g'), '"took":"<took>"')
      .replace(new RegExp(`"Took" : ${GO_DURATION}`, 'g'), '"Took" : <took>')
      .replace(/"took":\d+(?:\.\d+)?(?:e-?\d+)?/g, '"took":"<took>"')
      .replace(new RegExp(`^\\| http://${HOST_PORT} \\| (true|false) \\| ${GO_DURATION} \\|`, 'gm'),
        `| http://${HOST_PORT} | $1 | <took> |`),
  },
  {
    name: 'db-size',
    why: 'the size of the backend file depends on the storage engine (bbolt vs LMDB)',
    apply: (text) => editStatusRows(
      text
        .replace(/"(dbSize|dbSizeInUse)":\d+/g, '"$1":"<size>"')
        .replace(/"(DBSize|DBSizeInUse)" : \d+/g, '"$1" : <size>')
        .replace(new RegExp(`"size":"${HUMAN_SIZE}"`, 'g'), '"size":"<size>"'),
      (cells) => { cells[STATUS_SIZE_COLUMN] = cells[STATUS_SIZE_COLUMN]?.replace(new RegExp(`^${HUMAN_SIZE}$`), '<size>') ?? ''; },
    ),
  },
  {
    name: 'server-version',
    why: 'etcd reports 3.4.23, etcd-ts its own version (endpoint status only)',
    apply: (text) => editStatusRows(
      text
        .replace(new RegExp(`"version":"${SEMVER}"`, 'g'), '"version":"<version>"')
        .replace(new RegExp(`"Version" : "${SEMVER}"`, 'g'), '"Version" : "<version>"'),
      (cells) => { cells[STATUS_VERSION_COLUMN] = cells[STATUS_VERSION_COLUMN]?.replace(new RegExp(`^${SEMVER}$`), '<version>') ?? ''; },
    ),
  },
];

/** Applies every normaliser in order. */
export function normalise(text: string, ctx: NormaliseContext): string {
  return NORMALISERS.reduce((acc, rule) => rule.apply(acc, ctx), text);
}

/** A result with stdout and stderr normalised (the exit code is never normalised). */
export function normaliseResult(result: CtlResult, ctx: NormaliseContext): CtlResult {
  return { code: result.code, stdout: normalise(result.stdout, ctx), stderr: normalise(result.stderr, ctx) };
}

/** The stdin of `etcdctl txn -i`: compares, success ops and failure ops, each block ended by an empty line. */
export const txnInput = (compares: readonly string[], success: readonly string[], failure: readonly string[]): string =>
  [compares, success, failure].map((block) => block.map((line) => `${line}\n`).join('') + '\n').join('');

/** JSON text with member and cluster IDs (quoted, as the gateway writes them, or not) hidden as `"cluster_id":"<id>"`. */
export const hideMemberIds = (text: string): string => text.replace(/"(cluster_id|member_id|leader)":"?\d+"?/g, '"$1":"<id>"');
