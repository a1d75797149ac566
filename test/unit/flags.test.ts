// etcd's command line and ETCD_* environment → ServerConfig (src/cli/flags.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { configFileFlags } from '../../src/cli/config-file.js';
import { FlagError, parseFlags, parseGoDuration, usage, usageSummary, type CommandLine, type FlagErrorPhase, type Notice } from '../../src/cli/flags.js';
import { defaultConfig, type ServerConfig } from '../../src/config.js';
import { makeCerts } from '../helpers/certs.js';

/** etcd 3.4's warning whenever its default logger, capnslog, is in use (tested on its own below). */
const CAPNSLOG_DEPRECATION = "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead";

/** A notice as an operator with capnslog (etcd 3.4's default) reads it: a raw line, or its capnslog text. */
function said(n: Notice): string {
  return 'raw' in n ? n.raw : n.plog.text;
}

/**
 * Parses and expects `run`; returns the config, the notices, and what they say (`warnings`),
 * the capnslog deprecation left out.
 */
function run(argv: string[], env: Record<string, string | undefined> = {}): { config: ServerConfig; notices: Notice[]; warnings: string[] } {
  const parsed: CommandLine = parseFlags(argv, env);
  assert.equal(parsed.action, 'run');
  if (parsed.action !== 'run') throw new Error('unreachable');
  // Warnings: the notices but pkg/flags' information lines (the variables used).
  const warnings = parsed.notices.filter((n) => 'raw' in n || !(n.plog.pkg === 'pkg/flags' && n.plog.level === 'I')).map(said).filter((w) => w !== CAPNSLOG_DEPRECATION);
  return { config: parsed.config, notices: parsed.notices, warnings };
}

/** Expects a FlagError whose message matches `message` (and of `phase`, when given). */
function fails(argv: string[], message: RegExp | string, env: Record<string, string | undefined> = {}, phase?: FlagErrorPhase): void {
  assert.throws(
    () => parseFlags(argv, env),
    (err: unknown) => {
      assert.ok(err instanceof FlagError, `expected a FlagError, got ${String(err)}`);
      assert.equal(err.name, 'FlagError');
      if (phase !== undefined) assert.equal(err.phase, phase, `${argv.join(' ')}: ${err.message}`);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

const CLIENT = ['--listen-client-urls=http://127.0.0.1:2379', '--advertise-client-urls=http://127.0.0.1:2379'];

describe('flag syntax (Go flag package)', () => {
  it('reads --flag=value, --flag value, -flag value and -flag=value alike', () => {
    for (const argv of [['--name=n1'], ['--name', 'n1'], ['-name', 'n1'], ['-name=n1']]) {
      assert.equal(run(argv).config.name, 'n1', argv.join(' '));
    }
  });

  it('takes a value that starts with a dash, and a value containing =', () => {
    assert.equal(run(['--name', '-odd']).config.name, '-odd');
    assert.equal(run(['--initial-cluster-token=a=b']).config.initialClusterToken, 'a=b');
  });

  it('sets a boolean flag alone or with =value, in every spelling Go accepts', () => {
    for (const argv of [['--auto-tls'], ['-auto-tls'], ['--auto-tls=true'], ['-auto-tls=1'], ['--auto-tls=T'], ['--auto-tls=TRUE']]) {
      assert.equal(run(argv).config.clientTls?.autoTls, true, argv.join(' '));
    }
    for (const argv of [['--auto-tls=false'], ['-auto-tls=0'], ['--auto-tls=F'], ['--auto-tls=False']]) {
      assert.equal(run(argv).config.clientTls, undefined, argv.join(' '));
    }
  });

  it('does not let a boolean flag take the next argument as its value', () => {
    fails(['--auto-tls', 'false'], "'false' is not a valid flag");
    assert.equal(run(['--force-new-cluster', '--name', 'x']).config.name, 'x');
  });

  it('rejects a malformed boolean with Go wording', () => {
    fails(['--auto-tls=maybe'], 'invalid boolean value "maybe" for -auto-tls: parse error');
  });

  it('lets the last occurrence of a flag win', () => {
    assert.equal(run(['--name=a', '-name', 'b']).config.name, 'b');
  });

  it('ends flags at --, and refuses what follows as etcd does', () => {
    assert.equal(run(['--name=a', '--']).config.name, 'a');
    fails(['--', '--name', 'x'], "'--name' is not a valid flag");
  });

  it('refuses positional arguments, bad syntax and a missing value', () => {
    fails(['--name=a', 'extra'], "'extra' is not a valid flag", {}, 'verify');
    fails(['grpc-proxy', 'start'], "etcd-ts does not implement 'etcd grpc-proxy'");
    fails(['---name=a'], 'bad flag syntax: ---name=a', {}, 'parse');
    fails(['-=a'], 'bad flag syntax: -=a');
    fails(['--name'], 'flag needs an argument: -name', {}, 'parse');
  });

  it('names an unknown flag in etcd wording', () => {
    fails(['--bogus-flag'], 'flag provided but not defined: -bogus-flag', {}, 'parse');
    fails(['--name=a', '-listen-client-http-urls=http://127.0.0.1:1'], 'flag provided but not defined: -listen-client-http-urls');
  });
});

describe('--help and --version', () => {
  it('answers help for -h, --help and -help, even with flags after', () => {
    for (const argv of [['-h'], ['--help'], ['-help'], ['--h'], ['--help', '--bogus'], ['--name=x', '-h']]) {
      assert.deepEqual(parseFlags(argv, {}), { action: 'help' }, argv.join(' '));
    }
  });

  it('parses the flags before --help first', () => {
    fails(['--bogus', '--help'], 'flag provided but not defined: -bogus');
  });

  it('answers version for --version, run for --version=false', () => {
    assert.deepEqual(parseFlags(['--version'], {}), { action: 'version' });
    assert.deepEqual(parseFlags(['-version', '--name=x'], {}), { action: 'version' });
    assert.equal(parseFlags(['--version=false'], {}).action, 'run');
  });

  it('never reads ETCD_VERSION (images set it to a version string)', () => {
    const { warnings } = run([], { ETCD_VERSION: '3.4.23' });
    assert.deepEqual(warnings, []);
  });

  it('lists the supported flags with defaults, and the ignored and refused ones', () => {
    const text = usage();
    assert.match(text, /^ {2}--data-dir '\$\{name\}\.etcd'$/m);
    assert.match(text, /^ {2}--max-request-bytes '1572864'$/m);
    assert.match(text, /--initial-cluster-state/);
    assert.match(usageSummary(), /^ {2}etcd-ts --config-file\n {4}Path to the server configuration file\./m);
    assert.doesNotMatch(text, /--vv/);
  });
});

describe('environment variables', () => {
  it('reads every flag from ETCD_<NAME>', () => {
    const { config, warnings, notices } = run([], {
      ETCD_NAME: 'envname',
      ETCD_DATA_DIR: '/var/lib/etcd',
      ETCD_LISTEN_CLIENT_URLS: 'http://0.0.0.0:2379',
      ETCD_ADVERTISE_CLIENT_URLS: 'http://10.0.0.1:2379',
      ETCD_MAX_TXN_OPS: '256',
      ETCD_AUTO_TLS: 'true',
      ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL: '5s',
    });
    assert.equal(config.name, 'envname');
    assert.equal(config.dataDir, '/var/lib/etcd');
    assert.deepEqual(config.listenClientUrls, ['http://0.0.0.0:2379']);
    assert.deepEqual(config.advertiseClientUrls, ['http://10.0.0.1:2379']);
    assert.equal(config.maxTxnOps, 256);
    assert.equal(config.clientTls?.autoTls, true);
    assert.equal(config.watchProgressNotifyIntervalMs, 5000);
    // --auto-tls makes its certificate for an http:// URL too, which etcd then warns about.
    assert.deepEqual(warnings, ['The scheme of client url http://0.0.0.0:2379 is HTTP while peer key/cert files are presented. Ignored key/cert files.']);
    // etcd's pkg/flags says so of each, in flag name order.
    const used = notices.filter((n) => !('raw' in n) && n.plog.level === 'I').map(said);
    assert.deepEqual(used, [
      'recognized and used environment variable ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.1:2379',
      'recognized and used environment variable ETCD_AUTO_TLS=true',
      'recognized and used environment variable ETCD_DATA_DIR=/var/lib/etcd',
      'recognized and used environment variable ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL=5s',
      'recognized and used environment variable ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379',
      'recognized and used environment variable ETCD_MAX_TXN_OPS=256',
      'recognized and used environment variable ETCD_NAME=envname',
    ]);
  });

  it('refuses a variable whose flag the command line sets, empty or not, as etcd 3.4 (pkg/flags) does', () => {
    const shadowed = 'conflicting environment variable "ETCD_NAME" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)';
    fails(['--name', 'cli'], shadowed, { ETCD_NAME: 'env' }, 'env');
    fails(['--name', 'cli'], shadowed, { ETCD_NAME: '' }, 'env');
    // verifyEnv runs before a malformed value is reported, and its warnings come first.
    assert.throws(
      () => parseFlags(['--name', 'cli'], { ETCD_FOO: '1', ETCD_NAME: 'env', ETCD_MAX_TXN_OPS: 'abc' }),
      (err: unknown) => err instanceof FlagError && err.phase === 'env' && err.notices.map(said).join() === 'unrecognized environment variable ETCD_FOO=1',
    );
  });

  it('treats an empty variable as unset, and warns of it as unrecognized (etcd verifyEnv), in the order of the environment', () => {
    const { config, warnings, notices } = run([], { ETCD_NAME: '', ETCD_MAX_TXN_OPS: '' });
    assert.equal(config.name, 'default');
    assert.equal(config.maxTxnOps, 128);
    assert.deepEqual(warnings, ['unrecognized environment variable ETCD_NAME=', 'unrecognized environment variable ETCD_MAX_TXN_OPS=']);
    assert.ok(notices.every((n) => 'raw' in n || (n.early === true && n.plog.pkg === 'pkg/flags' && n.plog.level === 'W')));
  });

  it('reports the malformed variable of the last flag in name order, as Go\'s VisitAll leaves it', () => {
    fails([], 'invalid value "x" for ETCD_MAX_TXN_OPS: parse error', { ETCD_MAX_TXN_OPS: 'x', ETCD_AUTO_TLS: 'y' }, 'verify');
  });

  it('warns about an unrecognised ETCD_ variable without failing, and ignores other variables', () => {
    const { config, warnings } = run([], { ETCD_NAME: 'x', ETCD_FOO: 'bar', ETCDCTL_API: '3', PATH: '/bin' });
    assert.equal(config.name, 'x');
    assert.deepEqual(warnings, ['unrecognized environment variable ETCD_FOO=bar']);
  });

  it('names the variable when its value is bad', () => {
    fails([], 'invalid value "abc" for ETCD_MAX_TXN_OPS: parse error', { ETCD_MAX_TXN_OPS: 'abc' }, 'verify');
    fails([], /^invalid value "yes" for ETCD_AUTO_TLS: parse error/, { ETCD_AUTO_TLS: 'yes' });
  });

  it('counts an environment setting as explicit (advertise URLs required)', () => {
    fails([], '--advertise-client-urls is required when --listen-client-urls is set explicitly', {
      ETCD_LISTEN_CLIENT_URLS: 'http://0.0.0.0:2379',
    });
  });
});

describe('cluster-only and unsupported flags', () => {
  it('accepts the ignored flags with one warning naming each, from flags and variables', () => {
    const { config, warnings } = run(
      ['--max-wals=3', '--snapshot-count', '5', '-strict-reconfig-check', '--pre-vote', '--name=n'],
      { ETCD_MAX_SNAPSHOTS: '10' },
    );
    assert.equal(config.name, 'n');
    assert.equal(warnings.length, 1);
    const warning = warnings[0] as string;
    for (const name of ['--max-wals', '--snapshot-count', '--strict-reconfig-check', '--pre-vote', 'ETCD_MAX_SNAPSHOTS']) {
      assert.ok(warning.includes(name), `${name} missing from: ${warning}`);
    }
    assert.deepEqual({ ...config, name: 'default', dataDir: 'default.etcd' }, defaultConfig());
  });

  it('warns about a single ignored flag too', () => {
    assert.deepEqual(run(['--snapshot-count=5']).warnings, ['ignoring flags that do not apply to a single-node etcd-ts: --snapshot-count']);
  });

  it("accepts etcd's own legacy flags (-v, -config=...) as booleans", () => {
    const { config, warnings } = run(['-v', '-config=old.conf', '--name', 'x']);
    assert.equal(config.name, 'x');
    assert.equal(warnings.length, 1);
    assert.ok(/ --v\b/.test(warnings[0] as string) && / --config\b/.test(warnings[0] as string), warnings[0]);
  });

  it('still checks the value of an ignored flag as etcd does', () => {
    fails(['--snapshot-count=lots'], /^invalid value "lots" for flag -snapshot-count: parse error/);
    fails(['--initial-cluster-state=maybe'], /^invalid value "maybe" for flag -initial-cluster-state: invalid value/);
    fails(['--grpc-keepalive-timeout=5'], 'invalid value "5" for flag -grpc-keepalive-timeout: parse error', {}, 'parse');
    fails(['--listen-peer-urls=peer:2380'], /URL scheme must be http, https, unix, or unixs: peer:2380/);
  });

  it('refuses --client-cert-allowed-hostname, from a flag or a variable', () => {
    fails(['--client-cert-allowed-hostname=a.example'], /--client-cert-allowed-hostname is not supported/);
    fails([], /--client-cert-allowed-hostname is not supported/, { ETCD_CLIENT_CERT_ALLOWED_HOSTNAME: 'a.example' });
  });
});

describe('--config-file (etcd 3.4 configFromFile)', () => {
  /** Writes `yaml` to a file of its own and returns its path. */
  function configFile(t: { after(fn: () => void): void }, yaml: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'config-file-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'etcd.conf.yml');
    writeFileSync(file, yaml);
    return file;
  }
  const goTypeError = (key: string, kind: string, type: string) =>
    `error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${kind} into Go struct field configYAML.${key} of type ${type}`;

  it('takes every setting from the file and ignores the command line and the environment', (t) => {
    const file = configFile(
      t,
      [
        'name: from-file',
        'data-dir: /var/lib/from-file',
        'listen-client-urls: http://127.0.0.1:2381,http://127.0.0.1:2382',
        'advertise-client-urls: http://10.0.0.1:2381',
        'quota-backend-bytes: 4294967296',
        'max-txn-ops: 3',
        'backend-batch-interval: 250000000',
        'auto-compaction-mode: revision',
        "auto-compaction-retention: '100'",
        'enable-grpc-gateway: no',
        'cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]',
        'log-level: ~',
        'initial-cluster: a=http://127.0.0.1:2380',
        'snapshot-count: 5',
        'some-key-etcd-does-not-know: 1',
      ].join('\n'),
    );
    const { config, warnings } = run(['--config-file', file, '--name', 'from-flag', '--max-txn-ops=100'], { ETCD_MAX_REQUEST_BYTES: '10' });
    assert.equal(config.name, 'from-file');
    assert.equal(config.dataDir, '/var/lib/from-file');
    assert.deepEqual(config.listenClientUrls, ['http://127.0.0.1:2381', 'http://127.0.0.1:2382']);
    assert.deepEqual(config.advertiseClientUrls, ['http://10.0.0.1:2381']);
    assert.equal(config.quotaBackendBytes, 4294967296);
    assert.equal(config.maxTxnOps, 3);
    assert.equal(config.backendBatchIntervalMs, 250);
    assert.equal(config.maxRequestBytes, defaultConfig().maxRequestBytes);
    assert.equal(config.enableGrpcGateway, false);
    assert.deepEqual(config.clientTls?.cipherSuites, ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256']);
    assert.equal(config.initialCluster, 'a=http://127.0.0.1:2380');
    assert.deepEqual(warnings, [
      `Loading server configuration from ${JSON.stringify(file)}. Other configuration command line flags and environment variables will be ignored if provided.`,
      'ignoring settings that do not apply to a single-node etcd-ts: snapshot-count',
    ]);
    assert.equal(run([], { ETCD_CONFIG_FILE: file, ETCD_NAME: 'from-env' }).config.name, 'from-file');
  });

  it("says it loads the file through capnslog, or through zap when the file sets zap up; and says so when it cannot read it", (t) => {
    const loading = (notices: Notice[]) => notices.find((n) => !('raw' in n) && n.plog.text.startsWith('Loading server configuration'));
    const capnslog = loading(run(['--config-file', configFile(t, 'name: a\n')]).notices);
    assert.ok(capnslog !== undefined && !('raw' in capnslog) && capnslog.early === true && capnslog.plog.pkg === 'etcdmain' && capnslog.plog.level === 'I');
    const file = configFile(t, 'logger: zap\n');
    const zap = loading(run(['--config-file', file]).notices);
    assert.ok(zap !== undefined && !('raw' in zap) && zap.early === false);
    assert.deepEqual([zap.msg, zap.fields], ['loaded server configuration, other configuration command line flags and environment variables will be ignored if provided', { path: file }]);
    // Refused as the server starts, etcd has the file's zap logger say it: not an early line.
    const refusedAtStart = configFile(t, 'logger: zap\ncipher-suites: [TLS_BOGUS]\n');
    assert.throws(
      () => parseFlags(['--config-file', refusedAtStart], {}),
      (err: unknown) => {
        const notice = err instanceof FlagError && err.phase === 'start' ? loading(err.notices) : undefined;
        return notice !== undefined && !('raw' in notice) && notice.early === false;
      },
    );
    assert.throws(
      () => parseFlags(['--config-file', '/nonexistent/etcd.yml'], {}),
      (err: unknown) =>
        err instanceof FlagError &&
        err.log === undefined &&
        err.notices.map(said).join() ===
          'Loading server configuration from "/nonexistent/etcd.yml". Other configuration command line flags and environment variables will be ignored if provided.',
    );
  });

  it('reads TLS settings from client-transport-security, and a listen URL alone (etcd checks that on flags only)', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'config-file-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    makeCerts(dir);
    const file = configFile(
      t,
      [
        'listen-client-urls: https://127.0.0.1:2379',
        'client-transport-security:',
        `  cert-file: ${join(dir, 'server.crt')}`,
        `  key-file: ${join(dir, 'server.key')}`,
        `  trusted-ca-file: ${join(dir, 'ca.crt')}`,
        '  client-cert-auth: true',
        'peer-transport-security:',
        '  auto-tls: true',
      ].join('\n'),
    );
    const { config } = run(['--config-file', file]);
    assert.equal(config.clientTls?.certFile, join(dir, 'server.crt'));
    assert.equal(config.clientTls?.keyFile, join(dir, 'server.key'));
    assert.equal(config.clientTls?.trustedCaFile, join(dir, 'ca.crt'));
    assert.equal(config.clientTls?.clientCertAuth, true);
    assert.deepEqual(config.advertiseClientUrls, defaultConfig().advertiseClientUrls);
  });

  it('refuses values of the wrong Go type, in Go words, and a file it cannot read or parse', (t) => {
    fails(['--config-file', configFile(t, 'backend-batch-interval: 100ms\n')], goTypeError('backend-batch-interval', 'string', 'time.Duration'));
    fails(['--config-file', configFile(t, 'max-txn-ops: "5"\n')], goTypeError('max-txn-ops', 'string', 'uint'));
    fails(['--config-file', configFile(t, 'max-txn-ops: -1\n')], goTypeError('max-txn-ops', 'number -1', 'uint'));
    fails(['--config-file', configFile(t, 'auto-compaction-retention: 1\n')], goTypeError('auto-compaction-retention', 'number', 'string'));
    fails(['--config-file', configFile(t, 'cipher-suites: TLS_RSA_WITH_AES_128_CBC_SHA\n')], goTypeError('cipher-suites', 'string', '[]string'));
    fails(
      ['--config-file', configFile(t, 'client-transport-security:\n  client-cert-auth: 1\n')],
      goTypeError('client-transport-security.client-cert-auth', 'number', 'bool').replace('configYAML', 'securityConfig'),
    );
    // Go's decoder meets the keys in sorted order.
    fails(['--config-file', configFile(t, 'name: 7\nbcrypt-cost: x\n')], goTypeError('bcrypt-cost', 'string', 'uint'));
    fails(['--config-file', configFile(t, 'name: [a\n')], /^error converting YAML to JSON: yaml: /);
    fails(['--config-file', '/nonexistent/etcd.yml'], 'open /nonexistent/etcd.yml: no such file or directory');
    fails(['--config-file', configFile(t, 'auto-compaction-mode: weekly\n')], /auto-compaction-mode/);
  });

  it('every setting of the file is a flag of etcd-ts', () => {
    const flags = configFileFlags();
    assert.ok(flags.length > 70);
    for (const flag of flags) {
      try {
        parseFlags([`--${flag}=x`], {});
      } catch (err) {
        assert.doesNotMatch((err as Error).message, /not defined/, flag);
      }
    }
  });

  it('an empty --config-file is no file', () => {
    assert.equal(run(['--config-file=']).config.name, 'default');
  });
});

describe('values', () => {
  it('defaults the data dir to ${name}.etcd, also when given empty', () => {
    assert.equal(run(['--name', 'infra1']).config.dataDir, 'infra1.etcd');
    assert.equal(run(['--name', 'infra1', '--data-dir=']).config.dataDir, 'infra1.etcd');
    assert.equal(run(['--data-dir', '/d']).config.dataDir, '/d');
  });

  it('reads sizes as Go integers: hex, octal, binary, underscores, signs where signed', () => {
    const { config } = run(['--max-request-bytes=0x200000', '--max-txn-ops=0o20', '--quota-backend-bytes=8_589_934_592', '--max-concurrent-streams=0b1010']);
    assert.equal(config.maxRequestBytes, 0x200000);
    assert.equal(config.maxTxnOps, 16);
    assert.equal(config.quotaBackendBytes, 8589934592);
    assert.equal(config.maxConcurrentStreams, 10);
    assert.equal(run(['--max-txn-ops=010']).config.maxTxnOps, 8);
    assert.equal(run(['--quota-backend-bytes=-1']).config.quotaBackendBytes, -1);
  });

  it('refuses malformed and out-of-range sizes', () => {
    fails(['--max-request-bytes=1.5MB'], 'invalid value "1.5MB" for flag -max-request-bytes: parse error', {}, 'parse');
    fails(['--max-txn-ops=-1'], /^invalid value "-1" for flag -max-txn-ops: parse error/);
    fails(['--max-txn-ops=08'], /parse error/);
    fails(['--max-txn-ops=1__0'], /parse error/);
    fails(['--max-concurrent-streams=4294967296'], 'invalid value "4294967296" for flag -max-concurrent-streams: value out of range', {}, 'parse');
    fails(['--quota-backend-bytes=9223372036854775808'], /value out of range/);
    fails(['--quota-backend-bytes=-9223372036854775809'], /value out of range/);
    assert.equal(run(['--quota-backend-bytes=-9223372036854775808']).config.quotaBackendBytes, -(2 ** 63));
  });

  it('reads URL lists: trimmed, sorted, repeats kept as etcd keeps them, but not in the CORS origins (a set in etcd)', () => {
    const { config } = run([
      '--listen-client-urls', 'http://127.0.0.1:2379, http://0.0.0.0:2379,http://127.0.0.1:2379',
      '--advertise-client-urls', 'https://etcd.example:2379,HTTP://[::1]:2379',
      '--listen-metrics-urls', 'http://[::]:2381',
      '--initial-advertise-peer-urls', 'http://10.0.0.1:2380',
      '--cors', 'http://b.example:1,http://a.example:1,http://b.example:1',
      '--auto-tls',
    ]);
    assert.deepEqual(config.listenClientUrls, ['http://0.0.0.0:2379', 'http://127.0.0.1:2379', 'http://127.0.0.1:2379']);
    assert.deepEqual(config.corsOrigins, ['http://a.example:1', 'http://b.example:1']);
    assert.deepEqual(config.advertiseClientUrls, ['http://[::1]:2379', 'https://etcd.example:2379']);
    assert.deepEqual(config.listenMetricsUrls, ['http://[::]:2381']);
    assert.deepEqual(config.initialAdvertisePeerUrls, ['http://10.0.0.1:2380']);
  });

  it("refuses bad URLs with etcd's messages", () => {
    fails(['--advertise-client-urls=localhost:2379'], 'invalid value "localhost:2379" for flag -advertise-client-urls: URL scheme must be http, https, unix, or unixs: localhost:2379');
    fails(['--advertise-client-urls=http://localhost'], /URL address does not have the form "host:port": http:\/\/localhost$/);
    fails(['--advertise-client-urls=http://localhost:2379/v3'], /URL must not contain a path: http:\/\/localhost:2379\/v3$/);
    fails(['--advertise-client-urls=http://a:b:2379'], /does not have the form "host:port"/);
    fails(['--advertise-client-urls=http://a:port'], /invalid port ":port" after host/);
    fails(['--advertise-client-urls=http://:2379'], '--advertise-client-urls "http://:2379" must be "host:port" (unexpected empty host (http://:2379))');
    fails(['--listen-client-urls=http://etcd.example:2379', '--advertise-client-urls=http://etcd.example:2379'], 'expected IP in URL for binding (http://etcd.example:2379)');
    fails(['--listen-metrics-urls=http://etcd.example:2381'], 'expected IP in URL for binding (http://etcd.example:2381)');
  });

  it('requires --advertise-client-urls with an explicit --listen-client-urls, even an empty one', () => {
    fails(['--listen-client-urls=http://0.0.0.0:2379'], '--advertise-client-urls is required when --listen-client-urls is set explicitly');
    fails(['--listen-client-urls='], '--advertise-client-urls is required when --listen-client-urls is set explicitly');
    assert.deepEqual(run(['--listen-client-urls=', '--advertise-client-urls=http://localhost:2379']).config.listenClientUrls, ['http://localhost:2379']);
  });

  it('checks the compaction mode and retention', () => {
    assert.equal(run(['--auto-compaction-mode=revision', '--auto-compaction-retention=1000']).config.autoCompactionMode, 'revision');
    assert.equal(run(['--auto-compaction-retention=1h30m']).config.autoCompactionRetention, '1h30m');
    assert.equal(run(['--auto-compaction-retention=']).config.autoCompactionRetention, '0');
    fails(['--auto-compaction-mode=daily'], 'unknown auto-compaction-mode "daily"', {}, 'verify');
    fails(['--auto-compaction-retention=-5'], 'error parsing CompactionRetention: time: missing unit in duration "-5"', {}, 'start');
    fails(['--auto-compaction-retention=week'], 'error parsing CompactionRetention: time: invalid duration "week"');
  });

  it('checks the log level; --debug means debug, with a warning', () => {
    for (const level of ['debug', 'info', 'warn', 'error', 'dpanic', 'panic', 'fatal']) {
      assert.equal(run([`--log-level=${level}`]).config.logLevel, level);
    }
    fails(['--log-level=verbose'], 'unknown level "verbose"', {}, 'verify');
    const { config, warnings } = run(['--debug', '--log-level=error']);
    assert.equal(config.logLevel, 'debug');
    assert.deepEqual(warnings, [
      "[WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead",
      "[WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=error' flag",
    ]);
  });

  it('reads the watch progress interval as a Go duration; clamps to 100ms; non-positive keeps 10m', () => {
    assert.equal(run(['--experimental-watch-progress-notify-interval=1m30s']).config.watchProgressNotifyIntervalMs, 90_000);
    assert.equal(run(['--experimental-watch-progress-notify-interval', '250ms']).config.watchProgressNotifyIntervalMs, 250);
    const clamped = run(['--experimental-watch-progress-notify-interval=10ms']);
    assert.equal(clamped.config.watchProgressNotifyIntervalMs, 100);
    assert.match(clamped.warnings[0] as string, /minimum period 100ms/);
    assert.equal(run(['--experimental-watch-progress-notify-interval=0']).config.watchProgressNotifyIntervalMs, 600_000);
    fails(['--experimental-watch-progress-notify-interval=10'], 'invalid value "10" for flag -experimental-watch-progress-notify-interval: parse error', {}, 'parse');
  });

  it('reads the slow-request warning duration as a Go duration, taken as given', () => {
    assert.equal(run([]).config.warningApplyDurationMs, 100);
    assert.equal(run(['--experimental-warning-apply-duration=250ms']).config.warningApplyDurationMs, 250);
    assert.equal(run(['--experimental-warning-apply-duration', '1s']).config.warningApplyDurationMs, 1000);
    assert.equal(run(['--experimental-warning-apply-duration=0s']).config.warningApplyDurationMs, 0);
  });

  it('reads the keepalive durations as Go durations, etcd\'s defaults otherwise', () => {
    const defaults = run([]).config;
    assert.deepEqual([defaults.grpcKeepaliveMinTimeMs, defaults.grpcKeepaliveIntervalMs, defaults.grpcKeepaliveTimeoutMs], [5000, 7_200_000, 20_000]);
    const set = run(['--grpc-keepalive-min-time=30s', '--grpc-keepalive-interval=1m', '--grpc-keepalive-timeout=5s']);
    assert.deepEqual([set.config.grpcKeepaliveMinTimeMs, set.config.grpcKeepaliveIntervalMs, set.config.grpcKeepaliveTimeoutMs], [30_000, 60_000, 5000]);
    assert.deepEqual(set.warnings, [], 'none of them is ignored');
  });

  it('reads the backend batch flags and the WAL directory, negative values included as etcd 3.4 takes them', () => {
    const d = run([]).config;
    assert.deepEqual([d.walDir, d.backendBatchIntervalMs, d.backendBatchLimit], ['', 0, 0]);
    const set = run(['--wal-dir=/fast/wal', '--backend-batch-interval=250ms', '--backend-batch-limit=500']);
    assert.deepEqual([set.config.walDir, set.config.backendBatchIntervalMs, set.config.backendBatchLimit], ['/fast/wal', 250, 500]);
    assert.deepEqual(set.warnings, [], 'none of them is ignored');
    const negative = run(['--backend-batch-interval=-1s', '--backend-batch-limit=-1']).config;
    assert.deepEqual([negative.backendBatchIntervalMs, negative.backendBatchLimit], [-1000, -1]);
  });
});

describe('logging (--logger, --log-outputs; etcd embed setupLogging)', () => {
  const outputs = (argv: string[], env: Record<string, string | undefined> = {}): string[] => run(argv, env).config.logOutputs;

  it('writes to stderr by default; capnslog takes one of default, stderr, stdout', () => {
    assert.deepEqual(outputs([]), ['stderr']);
    assert.deepEqual(outputs(['--log-outputs=stdout']), ['stdout']);
    assert.deepEqual(outputs(['--logger=capnslog', '--log-outputs=default']), ['stderr']);
    fails(['--log-outputs=/var/log/etcd.log'], 'unknown log-output "/var/log/etcd.log" (only supports "default", "stderr", "stdout")', {}, 'verify');
    fails(['--log-outputs=stdout,stderr'], `--logger=capnslog supports only 1 value in '--log-outputs', got ["stderr" "stdout"]`, {}, 'verify');
  });

  it('zap takes files, stdout and stderr together, sorted without duplicates; /dev/null silences all', () => {
    assert.deepEqual(outputs(['--logger=zap', '--log-outputs=stdout,/tmp/b.log,/tmp/a.log,stdout']), ['/tmp/a.log', '/tmp/b.log', 'stdout']);
    assert.deepEqual(outputs(['--logger=zap', '--log-outputs=default']), ['stderr']);
    assert.deepEqual(outputs(['--logger=zap', '--log-outputs=stderr,/dev/null']), ['/dev/null']);
    assert.deepEqual(outputs([], { ETCD_LOGGER: 'zap', ETCD_LOG_OUTPUTS: '/tmp/etcd.log' }), ['/tmp/etcd.log']);
    assert.deepEqual(outputs(['--logger=zap', '--log-outputs=systemd/journal']), ['systemd/journal']);
    fails(['--logger=zap', '--log-outputs=default,stdout'], 'multi logoutput for "default" is not supported yet', {}, 'verify');
    fails(
      ['--logger=zap', '--log-outputs=systemd/journal,stdout'],
      `running with systemd/journal but other '--log-outputs' values (["stdout" "systemd/journal"]) are configured with 'default'; override 'default' value with something else`,
    );
    fails(['--logger=glog'], 'unknown logger option "glog"', {}, 'verify');
  });

  it("warns of capnslog, etcd 3.4's default logger, as deprecated, once more as the server starts; not of zap", () => {
    const capnslog = run([]).notices.filter((n) => 'raw' in n);
    assert.deepEqual(capnslog, [{ raw: CAPNSLOG_DEPRECATION, again: true }]);
    assert.equal(run([]).config.loggerKind, 'capnslog');
    const zap = run(['--logger=zap']);
    assert.deepEqual(zap.notices, []);
    assert.equal(zap.config.loggerKind, 'zap');
    assert.deepEqual(run(['--logger=zap', '--log-package-levels=etcdserver=DEBUG']).warnings, [
      "[WARNING] Deprecated '--log-package-levels=etcdserver=DEBUG' flag is set; use '--logger=zap' flag instead",
      'ignoring flags that do not apply to a single-node etcd-ts: --log-package-levels',
    ]);
  });

  it('reads the deprecated --log-output as etcd 3.4 does', () => {
    // One value: a warning, and --log-outputs stays in force.
    const single = run(['--log-output=stdout']);
    assert.deepEqual(single.config.logOutputs, ['stderr']);
    assert.deepEqual(single.warnings, ['[WARNING] Deprecated \'--log-output\' flag is set to ["stdout"]', "Please use '--log-outputs' flag"]);
    // More values than --log-outputs: they replace it.
    const many = run(['--logger=zap', '--log-output=stdout,stderr']);
    assert.deepEqual(many.config.logOutputs, ['stderr', 'stdout']);
    assert.deepEqual(many.warnings, ["'--log-output' flag has been deprecated! Please use '--log-outputs'!"]);
    fails(['--log-output=stdout', '--log-outputs=stdout'], `'--log-output=["stdout"]' and '--log-outputs=["stdout"]' are incompatible; only set --log-outputs`);
    fails(['--logger=zap', '--log-output=a,b', '--log-outputs=c,d'], "both '--log-output' and '--log-outputs' are set; only set '--log-outputs'");
  });
});

describe('client TLS', () => {
  it('stays undefined when no TLS flag has a value', () => {
    assert.equal(run(['--cert-file=', '--client-cert-auth=false', '--cipher-suites=']).config.clientTls, undefined);
  });

  it('is filled when any TLS flag is set', () => {
    const cases: [string[], Partial<NonNullable<ServerConfig['clientTls']>>][] = [
      [['--cert-file=c.pem', '--key-file=k.pem'], { certFile: 'c.pem', keyFile: 'k.pem' }],
      [['--trusted-ca-file=ca.pem'], { trustedCaFile: 'ca.pem' }],
      [['--client-cert-auth'], { clientCertAuth: true }],
      [['--auto-tls'], { autoTls: true }],
      [['--client-crl-file=crl.pem'], { clientCrlFile: 'crl.pem' }],
      [['--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256'], { cipherSuites: ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256'] }],
    ];
    const empty = { certFile: '', keyFile: '', trustedCaFile: '', clientCertAuth: false, autoTls: false, cipherSuites: [], clientCrlFile: '' };
    for (const [argv, expected] of cases) {
      assert.deepEqual(run(argv).config.clientTls, { ...empty, ...expected }, argv.join(' '));
    }
  });

  it('refuses https:// listeners without cert/key or --auto-tls, as etcd', () => {
    const https = ['--listen-client-urls=https://0.0.0.0:2379', '--advertise-client-urls=https://10.0.0.1:2379'];
    fails(https, 'TLS key/cert (--cert-file, --key-file) must be provided for client url https://0.0.0.0:2379 with HTTPS scheme', {}, 'start');
    fails([...https, '--trusted-ca-file=ca.pem'], /must be provided for client url https:\/\/0\.0\.0\.0:2379/);
    assert.equal(run([...https, '--auto-tls']).config.clientTls?.autoTls, true);
    assert.equal(run([...https, '--cert-file=c.pem', '--key-file=k.pem']).config.clientTls?.certFile, 'c.pem');
    fails(['--listen-metrics-urls=https://127.0.0.1:2381'], 'cannot listen on TLS for 127.0.0.1:2381: KeyFile and CertFile are not presented', {}, 'start');
  });

  it('takes a cert without a key (refused only where TLS is used), and refuses an unknown cipher suite', () => {
    const { config, warnings } = run([...CLIENT, '--cert-file=c.pem']);
    assert.equal(config.clientTls?.certFile, 'c.pem');
    assert.deepEqual(warnings, ['The scheme of client url http://127.0.0.1:2379 is HTTP while peer key/cert files are presented. Ignored key/cert files.']);
    fails(['--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,ECDHE-RSA-AES128-GCM-SHA256'], 'unexpected TLS cipher suite "ECDHE-RSA-AES128-GCM-SHA256"', {}, 'start');
  });

  it('warns when cert files or client cert auth meet an http:// listener', () => {
    const { notices } = run([...CLIENT, '--cert-file=c.pem', '--key-file=k.pem', '--client-cert-auth']);
    const logged = notices.filter((n) => !('raw' in n));
    assert.deepEqual(
      logged.map((n) => ('raw' in n ? [] : [n.msg, n.fields['client-url'], n.plog.pkg, n.plog.level])),
      [
        ['scheme is HTTP while key and cert files are present; ignoring key and cert files', 'http://127.0.0.1:2379', 'embed', 'W'],
        ['scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL', 'http://127.0.0.1:2379', 'embed', 'W'],
      ],
    );
    assert.match(said(logged[1]!), /^The scheme of client url http:\/\/127\.0\.0\.1:2379 is HTTP while client cert auth \(--client-cert-auth\) is enabled\. Ignored client cert auth for this url\.$/);
  });
});

describe('parseGoDuration (Go time.ParseDuration)', () => {
  it('reads what Go reads, in milliseconds', () => {
    const cases: [string, number][] = [
      ['0', 0], ['-0', 0], ['5s', 5000], ['+5s', 5000], ['-5s', -5000], ['5.6s', 5600], ['5.s', 5000], ['.5s', 500],
      ['1.004s', 1004], ['100.00100s', 100001], ['10ns', 0.00001], ['11us', 0.011], ['12µs', 0.012], ['12μs', 0.012],
      ['13ms', 13], ['15m', 900_000], ['16h', 57_600_000], ['3h30m', 12_600_000], ['10.5s4m', 250_500],
      ['-2m3.4s', -123_400], ['1h2m3s4ms5us6ns', 3_723_004.005006], ['39h9m14.425s', 140_954_425], ['52763797000ns', 52_763.797],
      ['0.3333333333333333333h', 1_199_999.999999],
    ];
    for (const [text, ms] of cases) {
      assert.ok(Math.abs(parseGoDuration(text) - ms) < 1e-6, `${text}: got ${parseGoDuration(text)}, want ${ms}`);
    }
  });

  it("refuses what Go refuses, with Go's messages", () => {
    const cases: [string, string][] = [
      ['', 'time: invalid duration ""'], ['3', 'time: missing unit in duration "3"'], ['-', 'time: invalid duration "-"'],
      ['s', 'time: invalid duration "s"'], ['.', 'time: invalid duration "."'], ['-.', 'time: invalid duration "-."'],
      ['.s', 'time: invalid duration ".s"'], ['+.s', 'time: invalid duration "+.s"'], ['1d', 'time: unknown unit "d" in duration "1d"'],
      ['9223372036854775810ns', 'time: invalid duration "9223372036854775810ns"'], ['1h 2m', 'time: unknown unit "h " in duration "1h 2m"'],
    ];
    for (const [text, message] of cases) assert.throws(() => parseGoDuration(text), { message }, text);
  });
});

describe('defaults and flag list match etcd 3.4 (/usr/bin/etcd)', () => {
  const ETCD = '/usr/bin/etcd';
  const haveEtcd = existsSync(ETCD);

  /** `--flag 'default'` lines of a help text → flag → default text. */
  function helpDefaults(text: string): Map<string, string> {
    const defaults = new Map<string, string>();
    for (const m of text.matchAll(/^ {2}--([a-z0-9.-]+) (?:'([^'\n]*)'|([0-9]+))$/gm)) {
      defaults.set(m[1] as string, m[2] ?? (m[3] as string));
    }
    return defaults;
  }
  const etcdHelp = (): Map<string, string> => {
    const out = spawnSync(ETCD, ['--help'], { encoding: 'utf8' });
    const defaults = helpDefaults(out.stdout);
    assert.ok(defaults.size > 70, `could not read etcd --help (${defaults.size} flags)`);
    return defaults;
  };

  it('prints the same default as etcd for every supported flag', { skip: !haveEtcd && `${ETCD} not installed` }, () => {
    const etcd = etcdHelp();
    const ours = helpDefaults(usage());
    assert.ok(ours.size >= 20);
    for (const [flag, text] of ours) assert.equal(text, etcd.get(flag), `--${flag}`);
  });

  it("yields the default config when each supported flag is given etcd's default", { skip: !haveEtcd && `${ETCD} not installed` }, () => {
    const etcd = etcdHelp();
    const base = run([]).config;
    assert.deepEqual(base, defaultConfig());
    // etcd prints 'math.MaxUint32', and '' for a zero duration that Go's flag package reads as 0s.
    const literal: Record<string, string> = { 'max-concurrent-streams': '4294967295', 'backend-batch-interval': '0s' };
    for (const flag of helpDefaults(usage()).keys()) {
      if (flag === 'data-dir') continue; // '${name}.etcd' is a description, checked below
      const value = literal[flag] ?? (etcd.get(flag) as string);
      const extra = flag === 'listen-client-urls' ? ['--advertise-client-urls=http://localhost:2379'] : [];
      assert.deepEqual(run([`--${flag}=${value}`, ...extra]).config, base, `--${flag}=${value}`);
    }
    assert.equal(base.dataDir, `${base.name}.etcd`);
  });

  it('knows every flag etcd 3.4 defines', { skip: !haveEtcd && `${ETCD} not installed` }, () => {
    // etcd --help lists most; these are defined in etcdmain/config.go without a help line.
    const unlisted = ['enable-grpc-gateway', 'experimental-enable-lease-checkpoint-persist', 'log-output', 'unsafe-no-fsync', 'version'];
    const legacy = ['cluster-active-size', 'cluster-remove-delay', 'cluster-sync-interval', 'config', 'force', 'max-result-buffer', 'max-retry-attempts', 'peer-heartbeat-interval', 'peer-election-timeout', 'retry-interval', 'snapshot', 'v', 'vv'];
    const flags = [...etcdHelp().keys(), ...unlisted, ...legacy, 'config-file'];
    assert.ok(flags.length > 95);
    for (const flag of flags) {
      try {
        parseFlags([`--${flag}=x`], {});
      } catch (err) {
        assert.doesNotMatch((err as Error).message, /not defined/, `--${flag}`);
      }
    }
  });
});

describe('--enable-grpc-gateway', () => {
  it('is on by default and can be turned off, also as ETCD_ENABLE_GRPC_GATEWAY', () => {
    assert.equal(run([]).config.enableGrpcGateway, true);
    assert.equal(run(['--enable-grpc-gateway=false']).config.enableGrpcGateway, false);
    assert.equal(run([], { ETCD_ENABLE_GRPC_GATEWAY: 'false' }).config.enableGrpcGateway, false);
  });
});

describe('auth flags', () => {
  it('takes --bcrypt-cost in 4–31 and falls back to 10 with etcd\'s warning outside it', () => {
    assert.equal(defaultConfig().bcryptCost, 10);
    assert.equal(run(['--bcrypt-cost', '4']).config.bcryptCost, 4);
    const { config, warnings } = run(['--bcrypt-cost', '40']);
    assert.equal(config.bcryptCost, 10);
    assert.deepEqual(warnings, ['Use default bcrypt-cost 10 instead of the invalid value 40']);
    // etcd warns as its server starts, which a refused command line never reaches.
    assert.throws(
      () => parseFlags(['--bcrypt-cost', '40', '--snapshot-count', '5', '--auto-compaction-mode', 'daily'], {}),
      (err: unknown) => err instanceof FlagError && err.notices.map(said).join('|') === CAPNSLOG_DEPRECATION,
    );
  });

  it('takes --auth-token-ttl (also as ETCD_AUTH_TOKEN_TTL) in seconds', () => {
    assert.equal(defaultConfig().authTokenTtlSec, 300);
    assert.equal(run(['--auth-token-ttl', '7']).config.authTokenTtlSec, 7);
    assert.equal(run([], { ETCD_AUTH_TOKEN_TTL: '9' }).config.authTokenTtlSec, 9);
  });

  it('takes simple and jwt tokens, reading the JWT keys at start, and refuses what etcd 3.4 refuses, with its errors', () => {
    assert.deepEqual(run(['--auth-token', 'simple']).config.authToken, { type: 'simple' });
    const dir = mkdtempSync(join(tmpdir(), 'jwt-flags-'));
    try {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const write = (name: string, key: KeyObject, type: 'pkcs8' | 'spki') => {
        writeFileSync(join(dir, name), key.export({ type, format: 'pem' }) as string);
        return join(dir, name);
      };
      const priv = write('rsa.key', rsa.privateKey, 'pkcs8');
      const pub = write('rsa.pub', rsa.publicKey, 'spki');
      const otherPub = write('other.pub', other.publicKey, 'spki');
      const ecKey = write('ec.key', ec.privateKey, 'pkcs8');
      writeFileSync(join(dir, 'secret'), 'hmac-secret');
      const jwt = run(['--auth-token', `jwt,pub-key=${pub},priv-key=${priv},sign-method=RS256,ttl=10m`]).config.authToken;
      assert.equal(jwt.type === 'jwt' && `${jwt.method} ${jwt.ttlMs} ${jwt.signKey !== undefined}`, 'RS256 600000 true');
      const verifyOnly = run(['--auth-token', `jwt,pub-key=${pub},sign-method=RS256`]).config.authToken;
      assert.equal(verifyOnly.type === 'jwt' && `${verifyOnly.ttlMs} ${verifyOnly.signKey === undefined}`, '300000 true');
      assert.equal(run(['--auth-token', `jwt,priv-key=${join(dir, 'secret')},sign-method=HS256`]).config.authToken.type, 'jwt');
      assert.equal(run(['--auth-token', `jwt,priv-key=${ecKey},sign-method=ES256`]).config.authToken.type, 'jwt');
      // etcd 3.4's texts for the same values (checked by starting etcd with each), but for the
      // mismatched pair, which etcd 3.4 starts with (its check needs the public exponent and the
      // modulus to both differ) and etcd-ts refuses.
      fails(['--auth-token', 'jwt'], 'auth: invalid auth options');
      fails(['--auth-token', 'jwt,sign-method=RS256'], 'auth: missing key data');
      fails(['--auth-token', 'jwt,sign-method=XX256,priv-key=' + priv], 'auth: invalid auth options');
      fails(['--auth-token', 'jwt,sign-method=RS256,priv-key=/nonexistent'], 'auth: invalid auth options');
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key=${priv},priv-key=${priv}`], 'auth: invalid auth options');
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key`], 'auth: invalid auth options');
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key=${priv},ttl=soon`], 'auth: invalid auth options');
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key=${priv},pub-key=${otherPub}`], "auth: public and private keys don't match");
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key=${ecKey}`], 'key is not a valid RSA private key');
      fails(['--auth-token', `jwt,sign-method=RS256,priv-key=${join(dir, 'secret')}`], 'invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key');
      fails(['--auth-token', 'opaque'], 'auth: invalid auth options', {}, 'start');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lease checkpoints (etcd Config.Validate)', () => {
  it('needs --experimental-enable-lease-checkpoint for -persist, and warns about checkpoints without persistence', () => {
    fails(['--experimental-enable-lease-checkpoint-persist'], 'setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint');
    const alone = run(['--experimental-enable-lease-checkpoint']);
    assert.equal(alone.config.leaseCheckpoint, true);
    assert.equal(alone.config.leaseCheckpointPersist, false);
    assert.ok(alone.warnings.some((w) => w.includes('Detected that checkpointing is enabled without persistence. Consider enabling experimental-enable-lease-checkpoint-persist')), alone.warnings.join('\n'));
    const both = run(['--experimental-enable-lease-checkpoint', '--experimental-enable-lease-checkpoint-persist']);
    assert.deepEqual([both.config.leaseCheckpoint, both.config.leaseCheckpointPersist, both.warnings], [true, true, []]);
  });
});
