/**
 * etcd's configuration file (`--config-file`; etcd 3.4 `embed.ConfigFromFile` and etcdmain's
 * `configFromFile`): a YAML document whose keys are the JSON names of etcd's `embed.Config`
 * (the flag names, with the client and peer TLS settings nested under
 * `client-transport-security` and `peer-transport-security`) and of etcdmain's proxy settings.
 *
 * etcd turns the YAML into JSON and decodes that with Go's `encoding/json` (the `yaml` library
 * here reads YAML 1.1, as go-yaml v2 does: `yes`/`no`/`on`/`off` are booleans), so the values
 * are typed as Go's struct fields are: URL lists are comma-separated strings, durations are
 * integers of nanoseconds, `cipher-suites` and `log-outputs` are lists, and a value of another
 * type is an error in Go's words. Keys etcd does not know are ignored, as Go ignores them.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';

/** The Go type of a setting, as Go's JSON decoder checks it. */
type GoType = 'string' | 'bool' | 'uint' | 'uint32' | 'uint64' | 'int' | 'int64' | 'time.Duration' | '[]string';

/** `embed.configYAML`'s fields by JSON name (etcd 3.4 embed/config.go), besides the two TLS sections. */
const EMBED_KEYS: Readonly<Record<string, GoType>> = {
  name: 'string',
  'data-dir': 'string',
  'wal-dir': 'string',
  'snapshot-count': 'uint64',
  'max-snapshots': 'uint',
  'max-wals': 'uint',
  'heartbeat-interval': 'uint',
  'election-timeout': 'uint',
  'initial-election-tick-advance': 'bool',
  'backend-batch-interval': 'time.Duration',
  'backend-batch-limit': 'int',
  'quota-backend-bytes': 'int64',
  'max-txn-ops': 'uint',
  'max-request-bytes': 'uint',
  'max-concurrent-streams': 'uint32',
  'cipher-suites': '[]string',
  'initial-cluster-state': 'string',
  'discovery-srv': 'string',
  'discovery-srv-name': 'string',
  'discovery-proxy': 'string',
  discovery: 'string',
  'initial-cluster': 'string',
  'initial-cluster-token': 'string',
  'strict-reconfig-check': 'bool',
  'enable-v2': 'bool',
  'auto-compaction-mode': 'string',
  'auto-compaction-retention': 'string',
  'grpc-keepalive-min-time': 'time.Duration',
  'grpc-keepalive-interval': 'time.Duration',
  'grpc-keepalive-timeout': 'time.Duration',
  'pre-vote': 'bool',
  'auth-token': 'string',
  'bcrypt-cost': 'uint',
  'auth-token-ttl': 'uint',
  'experimental-initial-corrupt-check': 'bool',
  'experimental-corrupt-check-time': 'time.Duration',
  'experimental-enable-v2v3': 'string',
  'experimental-backend-bbolt-freelist-type': 'string',
  'experimental-enable-lease-checkpoint': 'bool',
  'experimental-enable-lease-checkpoint-persist': 'bool',
  'experimental-compaction-batch-limit': 'int',
  'experimental-watch-progress-notify-interval': 'time.Duration',
  'experimental-warning-apply-duration': 'time.Duration',
  'force-new-cluster': 'bool',
  'enable-pprof': 'bool',
  metrics: 'string',
  'listen-metrics-urls': 'string',
  logger: 'string',
  'log-level': 'string',
  'log-outputs': '[]string',
  'enable-grpc-gateway': 'bool',
  'log-output': '[]string',
  debug: 'bool',
  'log-package-levels': 'string',
  'unsafe-no-fsync': 'bool',
  'listen-peer-urls': 'string',
  'listen-client-urls': 'string',
  'initial-advertise-peer-urls': 'string',
  'advertise-client-urls': 'string',
  cors: 'string',
  'host-whitelist': 'string',
};

/** etcdmain's `configProxy` fields by JSON name; read from the same document after the above. */
const PROXY_KEYS: Readonly<Record<string, GoType>> = {
  'proxy-failure-wait': 'uint',
  'proxy-refresh-interval': 'uint',
  'proxy-dial-timeout': 'uint',
  'proxy-write-timeout': 'uint',
  'proxy-read-timeout': 'uint',
  proxy: 'string',
  'discovery-fallback': 'string',
};

/** `embed.securityConfig`: the fields of `client-transport-security` and `peer-transport-security`, and the flags they stand for. */
const SECURITY_KEYS: Readonly<Record<string, GoType>> = {
  'cert-file': 'string',
  'key-file': 'string',
  'client-cert-auth': 'bool',
  'trusted-ca-file': 'string',
  'auto-tls': 'bool',
};
const SECURITY_SECTIONS: Readonly<Record<string, string>> = { 'client-transport-security': '', 'peer-transport-security': 'peer-' };

/** The flags a configuration file can set (its keys, and the TLS sections' fields as their flags). */
export function configFileFlags(): string[] {
  const security = Object.values(SECURITY_SECTIONS).flatMap((prefix) => Object.keys(SECURITY_KEYS).map((field) => prefix + field));
  return [...Object.keys(EMBED_KEYS), ...Object.keys(PROXY_KEYS), ...security];
}

const INT_RANGE: Readonly<Record<string, [bigint, bigint]>> = {
  uint: [0n, (1n << 64n) - 1n],
  uint64: [0n, (1n << 64n) - 1n],
  uint32: [0n, (1n << 32n) - 1n],
  int: [-(1n << 63n), (1n << 63n) - 1n],
  int64: [-(1n << 63n), (1n << 63n) - 1n],
  'time.Duration': [-(1n << 63n), (1n << 63n) - 1n],
};

/** What {@link readConfigFile} read. */
export interface ConfigFileSettings {
  /**
   * Flag name → value in the flag's own syntax (`--name value`), for every setting the file gives
   * (a `null` value sets nothing, as in Go); a duration as `<n>ns`, a list joined with commas.
   */
  settings: Map<string, string>;
  /**
   * etcdmain's own fields (`configProxy`) are decoded after etcd has read and checked the rest
   * and set up its logging: their error (`… Go struct field configProxy.<key> …`), which etcd
   * refuses only then.
   */
  proxyError?: Error;
}

/**
 * Reads etcd's configuration file `file`.
 * @throws Error with etcd's text: `open <file>: no such file or directory`, `error converting
 *   YAML to JSON: yaml: …` (the parser's own description of a syntax error), or `error
 *   unmarshaling JSON: while decoding JSON: json: cannot unmarshal <kind> into Go struct field
 *   configYAML.<key> of type <type>`.
 */
export function readConfigFile(file: string): ConfigFileSettings {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`open ${file}: no such file or directory`, { cause: err });
    if (code === 'EACCES') throw new Error(`open ${file}: permission denied`, { cause: err });
    if (code === 'EISDIR') throw new Error(`read ${file}: is a directory`, { cause: err });
    throw err;
  }
  // go-yaml v2 lets a repeated key's last value win; so does uniqueKeys: false.
  // Loaded on first use: the command binds its listeners before it loads what it needs later.
  const { parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const doc = parseDocument(text, { version: '1.1', intAsBigInt: true, uniqueKeys: false });
  const parseError = doc.errors[0];
  if (parseError) throw new Error(`error converting YAML to JSON: yaml: ${parseError.message.split('\n')[0]!.replace(/:$/, '')}`);
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return { settings: new Map() };
  if (typeof root !== 'object' || Array.isArray(root)) {
    throw new Error(`error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${jsonKind(root)} into Go value of type embed.configYAML`);
  }
  const settings = new Map<string, string>();
  const fields = root as Record<string, unknown>;
  // Go's decoder meets the keys in JSON's order, which ghodss/yaml sorts.
  const keys = Object.keys(fields).sort();
  for (const key of keys) {
    const value = fields[key];
    if (value === null) continue;
    const prefix = SECURITY_SECTIONS[key];
    const type = EMBED_KEYS[key];
    if (prefix !== undefined) readSecuritySection(key, value, prefix, settings);
    else if (type !== undefined) settings.set(key, goValue('configYAML', key, value, type));
  }
  try {
    for (const key of keys) {
      const type = PROXY_KEYS[key];
      if (fields[key] !== null && type !== undefined) settings.set(key, goValue('configProxy', key, fields[key], type));
    }
  } catch (err) {
    return { settings, proxyError: err as Error };
  }
  return { settings };
}

/** A `client-transport-security` or `peer-transport-security` section into `settings`, its fields as their flags (`prefix` + field). */
function readSecuritySection(key: string, value: unknown, prefix: string, settings: Map<string, string>): void {
  if (typeof value !== 'object' || Array.isArray(value)) throw typeError('configYAML', key, value, 'embed.securityConfig');
  const section = value as Record<string, unknown>;
  for (const field of Object.keys(section).sort()) {
    const type = SECURITY_KEYS[field];
    if (type !== undefined && section[field] !== null) settings.set(prefix + field, goValue('securityConfig', `${key}.${field}`, section[field], type));
  }
}

/** `value` checked as Go's JSON decoder checks a field of `type`, in the flag's syntax. */
function goValue(struct: string, field: string, value: unknown, type: GoType): string {
  switch (type) {
    case 'string':
      if (typeof value !== 'string') throw typeError(struct, field, value, type);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw typeError(struct, field, value, type);
      return String(value);
    case '[]string':
      if (!Array.isArray(value)) throw typeError(struct, field, value, type);
      for (const item of value) if (typeof item !== 'string' && item !== null) throw typeError(struct, field, item, 'string');
      return value.map((item) => item ?? '').join(',');
    default: {
      if (typeof value !== 'bigint' && typeof value !== 'number') throw typeError(struct, field, value, type);
      const [min, max] = INT_RANGE[type]!;
      if (typeof value === 'number' || value < min || value > max) throw typeError(struct, field, value, type, `number ${String(value)}`);
      return type === 'time.Duration' ? `${value}ns` : String(value);
    }
  }
}

function typeError(struct: string, field: string, value: unknown, type: string, kind = jsonKind(value)): Error {
  return new Error(`error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${kind} into Go struct field ${struct}.${field} of type ${type}`);
}

/** How Go's JSON decoder names a value's kind in a type error. */
function jsonKind(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'number':
    case 'bigint':
      return 'number';
    default:
      return 'object';
  }
}
