// Command lines etcd 3.4 refuses, against etcd-ts: the same exit status (2 for what Go's flag
// package refuses, 1 for what etcd refuses after parsing) and the same reason, whether etcd
// logs it as "error verifying flags, …" or as a critical line at start. And the log outputs of
// --logger=zap --log-outputs: both servers write their log lines to the files named, not to
// stderr. One difference is deliberate: an unknown --log-level makes etcd 3.4 panic (exit 2);
// etcd-ts refuses it as a flag error (exit 1).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { execFileSync, spawnSync } from 'node:child_process';

import { refusal, refusalReason, type Refusal } from '../helpers/refusals.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, freePort, startServer } from '../helpers/servers.js';

const hasSs = spawnSync('ss', ['-V']).status === 0;

/** A refusal's exit status and reason. */
const brief = (r: Refusal): { status: number | null; message: string } => ({ status: r.status, message: r.message });

describe('flags etcd refuses: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('both refuse the same command lines with the same exit status and reason', { timeout: 180_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'flags-compat-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const client = async (scheme = 'http'): Promise<string[]> => {
      const url = `${scheme}://127.0.0.1:${await freePort()}`;
      return ['--listen-client-urls', url, '--advertise-client-urls', url];
    };
    const cases: [string[], Record<string, string>?][] = [
      // Go's flag package: exit 2.
      [['--no-such-flag']],
      [['--max-txn-ops', 'abc']],
      [['--max-txn-ops', '99999999999999999999']],
      [['--max-txn-ops']],
      [['--auto-tls=maybe']],
      [['--grpc-keepalive-timeout', '5']],
      [['--proxy', 'sometimes']],
      [['--listen-client-urls', 'localhost:2379']],
      [['--listen-client-urls', '127.0.0.1:2379']],
      [['--advertise-client-urls', ':2379']],
      // etcdmain's "error verifying flags": exit 1.
      [['positional']],
      [[], { ETCD_MAX_TXN_OPS: 'abc' }],
      [['--auto-compaction-mode', 'daily']],
      [['--logger', 'zap', '--auto-compaction-mode', 'daily']],
      [['--listen-client-urls', 'http://127.0.0.1:1']],
      [['--initial-cluster', 'default=http://localhost:2380', '--discovery', 'http://127.0.0.1:1/v2/keys/x']],
      [['--initial-cluster', 'default=http://localhost:2380', '--discovery-srv', 'example.invalid']],
      [[], { ETCD_INITIAL_CLUSTER: 'default=http://localhost:2380', ETCD_DISCOVERY: 'http://127.0.0.1:1/v2/keys/x' }],
      [['--initial-cluster', 'default=http://localhost:2380,default=http://localhost:2380']],
      // Refused as Go's listener refuses them.
      [['--listen-client-urls', 'http://127.0.0.1:99999', '--advertise-client-urls', 'http://127.0.0.1:1']],
      [['--listen-client-urls', 'http://10.99.99.99:2379', '--advertise-client-urls', 'http://127.0.0.1:1']],
      [['--logger', 'glog']],
      [['--log-outputs', join(dir, 'etcd.log')]],
      [['--log-outputs', 'stdout,stderr']],
      [['--log-output', 'stdout', '--log-outputs', 'stdout']],
      [['--logger', 'zap', '--log-outputs', 'default,stdout']],
      [['--logger', 'zap', '--log-outputs', join(dir, 'missing', 'etcd.log')]],
      [['--logger', 'zap', '--log-outputs', dir]],
      [['--heartbeat-interval', '300']],
      [['--heartbeat-interval', '0']],
      [['--election-timeout', '60000']],
      [['--election-timeout', '0', '--heartbeat-interval', '0']],
      // Refused at start: exit 1.
      [['--auto-compaction-retention', '1x']],
      [['--auto-compaction-retention', '99999999999999999999']],
      [['--auto-compaction-retention', '-5']],
      // A new member's cluster flags, checked as etcd checks them.
      [['--initial-cluster', 'foo=http://localhost:2380']],
      [['--initial-cluster', 'default']],
      [['--initial-cluster', 'default=http://localhost:2381']],
      [['--initial-cluster', 'default=http://localhost:2380,default=http://localhost:2381']],
      [['--initial-cluster', 'default=http://localhost:2380,b=http://localhost:2380']],
      [['--initial-cluster-state', 'existing']],
      [['--initial-advertise-peer-urls', 'http://127.0.0.1:2390']],
      [['--initial-advertise-peer-urls', 'http://127.0.0.1:2390,http://127.0.0.1:2391', '--initial-cluster', 'default=http://127.0.0.1:2390']],
      [['--initial-advertise-peer-urls', 'http://localhost:2380,http://localhost:2380']],
      [['--name=']],
      // A data dir that is a file, or under one.
      [['--data-dir', '/etc/hostname']],
      [['--data-dir', '/etc/hostname/sub']],
      [['--cipher-suites', 'TLS_FOO']],
      [['--auth-token', 'opaque']],
      [['--auth-token', 'jwt,sign-method=RS256']],
      [['--experimental-enable-lease-checkpoint-persist']],
    ];
    const twice = (url: string): string => `${url},${url}`;
    const holder = createServer();
    const heldPort = await new Promise<number>((resolve) => holder.listen(0, '127.0.0.1', () => resolve((holder.address() as AddressInfo).port)));
    t.after(() => holder.close());
    const differ: string[] = [];
    for (const [args, env] of cases) {
      const full = args.includes('--listen-client-urls') ? args : [...(await client()), ...args];
      const etcd = brief(await refusal('etcd', full, env));
      assert.notEqual(etcd.status, null, `etcd did not exit with ${args.join(' ')}`);
      assert.notEqual(etcd.status, 0, `etcd accepted ${args.join(' ')}`);
      const ours = brief(await refusal('etcd-ts', full, env));
      if (JSON.stringify(ours) !== JSON.stringify(etcd)) {
        differ.push(`${args.join(' ')} ${JSON.stringify(env ?? {})}\n  etcd:    ${JSON.stringify(etcd)}\n  etcd-ts: ${JSON.stringify(ours)}`);
      }
    }
    // TLS asked for without the files: the reason names the URL (metrics: host and port only).
    for (const args of [
      [...(await client('https'))],
      [...(await client('https')), '--cert-file', join(dir, 'server.crt')],
      [...(await client()), '--listen-metrics-urls', `https://127.0.0.1:${await freePort()}`],
      [...(await client()), '--listen-peer-urls', `https://127.0.0.1:${await freePort()}`],
      [...(await client()), '--listen-peer-urls', `https://127.0.0.1:${await freePort()}`, '--peer-cert-file', join(dir, 'server.crt')],
      [...(await client()), '--listen-peer-urls', 'http://example.com:2380'],
      // A peer port another process holds.
      [...(await client()), '--listen-peer-urls', `http://127.0.0.1:${heldPort}`],
      // A peer or metrics URL given twice: the second listener cannot bind.
      [...(await client()), '--listen-peer-urls', twice(`http://127.0.0.1:${await freePort()}`)],
      [...(await client()), '--listen-metrics-urls', twice(`http://127.0.0.1:${await freePort()}`)],
    ]) {
      const etcd = brief(await refusal('etcd', args));
      const ours = brief(await refusal('etcd-ts', args));
      if (JSON.stringify(ours) !== JSON.stringify(etcd)) differ.push(`${args.join(' ')}\n  etcd:    ${JSON.stringify(etcd)}\n  etcd-ts: ${JSON.stringify(ours)}`);
    }
    assert.deepEqual(differ, []);
  });

  it('both refuse to start with 150 open files or fewer allowed, in the embed package\'s words, before making the data dir', { timeout: 60_000 }, async () => {
    const client = async (): Promise<string[]> => {
      const url = `http://127.0.0.1:${await freePort()}`;
      return ['--listen-client-urls', url, '--advertise-client-urls', url];
    };
    const [etcd, ours] = await Promise.all([refusal('etcd', await client(), {}, 100), refusal('etcd-ts', await client(), {}, 100)]);
    assert.equal(etcd.status, 1, etcd.stderr);
    assert.deepEqual(brief(ours), brief(etcd));
    assert.match(etcd.stderr, /C \| embed: file descriptor limit\[100\] of etcd process is too low/);
    assert.match(ours.stderr, /C \| embed: file descriptor limit\[100\] of etcd process is too low/);
    assert.deepEqual([ours.madeDataDir, etcd.madeDataDir], [false, false]);
  });

  it('both log the start-up lines that harnesses wait for, new and restarted, capnslog and zap (the versions aside)', { timeout: 120_000 }, async (t) => {
    // capnslog: the lines of these kinds, kind by kind; zap: the entries with these messages,
    // message by message, with their fields (the two servers' goroutines order some differently).
    const kinds = [
      /etcdmain: the server is already initialized/,
      /embed: (name|data dir|member dir|heartbeat|election|advertise client URLs|initial advertise peer URLs|initial cluster) =/,
      /etcdserver: (starting|restarting) member/,
      /became (follower|candidate|leader) at term|elected leader|starting a new election|received MsgVoteResp|newRaft|switched to configuration/,
      /auth: simple token/,
      /etcdserver: starting server/,
      /membership: added member/,
      /cluster version/,
      /etcdserver: published/,
      /enabled capabilities/,
    ];
    const zapMessages = new Set([
      'server has been already initialized', 'starting local member', 'restarting local member', 'simple token is not cryptographically signed',
      'starting etcd server', 'added member', 'setting up initial cluster version', 'published local member to cluster through raft',
      'set initial cluster version', 'enabled capabilities for version', 'cluster version is updated',
    ]);
    const normalise = (text: string): string =>
      text.replace(/3\.4\.23|3\.5\.17/g, '<version>').replace(/\b3\.[45]\b/g, '<cluster-version>').replace(/127\.0\.0\.1:\d+/g, '<addr>').replace(/\/tmp\/compat-etcd(-ts)?-\w+/g, '<data-dir>');
    const capnslog = (stderr: string): string[] => {
      const lines = stderr.split('\n').map((l) => l.replace(/^raft\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d INFO: |^\S+ \S+ [A-Z] \| /, ''));
      return kinds.flatMap((kind) => lines.filter((l) => kind.test(l)).map(normalise));
    };
    const zap = (stderr: string): string[] => {
      const entries = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const fields = (e: Record<string, unknown>) => JSON.stringify(Object.fromEntries(Object.entries(e).filter(([k]) => !['level', 'ts', 'msg', 'caller'].includes(k))));
      return [...zapMessages].flatMap((msg) => entries.filter((e) => e.msg === msg).map((e) => normalise(`${e.level as string} ${msg} ${fields(e)}`)));
    };
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      for (const [logger, read] of [['capnslog', capnslog], ['zap', zap]] as const) {
        const server = await startServer(t, { kind, flags: ['--logger', logger] });
        const lines = [`${logger}, new:`, ...read(server.stderr())];
        await server.restart();
        lines.push(`${logger}, restarted:`, ...read(server.stderr()));
        await server.stop();
        (seen[kind] ??= []).push(...lines.map((l) => l.replace(/\b[0-9a-f]{16}\b/g, '<id>')));
      }
    }
    assert.ok(seen.etcd!.some((l) => /published \{Name:default ClientURLs:\[http:\/\/<addr>\]\} to cluster <id>/.test(l)), seen.etcd!.join('\n'));
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('both list a repeated advertised client URL twice in the member list', { timeout: 60_000 }, async (t) => {
    const advertised = ['--advertise-client-urls', 'http://127.0.0.1:1,http://127.0.0.1:1'];
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags: advertised }), startServer(t, { kind: 'etcd-ts', flags: advertised })]);
    t.after(() => Promise.all(servers.map((s) => s.stop())));
    const [etcd, ours] = await Promise.all(servers.map(async (s) => (await etcdctl(s.endpoint, ['member', 'list'])).stdout));
    assert.match(etcd!, /http:\/\/127\.0\.0\.1:1,http:\/\/127\.0\.0\.1:1/);
    assert.equal(ours, etcd);
  });

  it('both listen with the kernel\'s somaxconn as the backlog of their client and peer sockets, as Go does', { skip: hasSs ? undefined : 'ss (iproute2) is not installed' }, async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const somaxconn = readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim();
    // `ss -ltn`: State Recv-Q Send-Q Local-Address:Port …; a listener's Send-Q is its backlog.
    const listening = execFileSync('ss', ['-ltnH'], { encoding: 'utf8' });
    const backlog = (url: string): string | undefined => listening.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[3] === new URL(url).host)?.[2];
    const got = servers.map((s) => [backlog(s.endpoint), backlog(s.peerEndpoint)]);
    assert.deepEqual(got, [[somaxconn, somaxconn], [somaxconn, somaxconn]]);
  });

  it('both write a refusal on stderr, and what comes before it, in the same words and form: capnslog\'s, with --logger zap too before it takes effect', { timeout: 120_000 }, async () => {
    const url = async (): Promise<string> => `http://127.0.0.1:${await freePort()}`;
    const client = async (): Promise<string[]> => ['--listen-client-urls', await url(), '--advertise-client-urls', await url()];
    // etcd writes these through its capnslog logger, or through capnslog's default formatter
    // before any logger exists (whatever --logger says), or as bare lines while it sets up its
    // logging; nothing else before it exits.
    const cases: [string[], Record<string, string>?][] = [
      [['--listen-client-urls', await url()]],
      [[...(await client()), '--auto-compaction-mode', 'daily']],
      [[...(await client()), '--logger', 'zap', 'positional']],
      [[...(await client()), '--logger', 'zap'], { ETCD_FOO: '1', ETCD_MAX_TXN_OPS: 'abc' }],
      [[...(await client()), '--name', 'from-flag'], { ETCD_NAME: 'from-env' }],
      [[...(await client()), '--name', 'from-flag'], { ETCD_NAME: '', ETCD_BAR: '' }],
      [[...(await client()), '--debug', '--log-level', 'error', '--auto-compaction-mode', 'daily']],
      [[...(await client()), '--log-output', 'stdout', '--auto-compaction-mode', 'daily']],
      [[...(await client()), '--log-outputs', 'stdout,stderr']],
      [[...(await client()), '--config-file', '/nonexistent/etcd.conf.yml']],
    ];
    // refusal() masks capnslog's time stamps, the one part that differs.
    const read = (stderr: string): string[] => stderr.trim().split('\n');
    const differ: string[] = [];
    for (const [args, env] of cases) {
      const etcd = await refusal('etcd', args, env);
      const ours = await refusal('etcd-ts', args, env);
      assert.equal(etcd.status, 1, `${args.join(' ')}: etcd exits 1`);
      assert.match(etcd.stderr, /^<time> [CE] \| /m, `${args.join(' ')}: etcd writes capnslog`);
      const seen = { etcd: { status: etcd.status, stderr: read(etcd.stderr) }, ours: { status: ours.status, stderr: read(ours.stderr) } };
      if (JSON.stringify(seen.ours) !== JSON.stringify(seen.etcd)) differ.push(`${args.join(' ')} ${JSON.stringify(env ?? {})}\n  etcd:    ${JSON.stringify(seen.etcd)}\n  etcd-ts: ${JSON.stringify(seen.ours)}`);
    }
    assert.deepEqual(differ, []);
  });

  it('both log a refusal found after the log settings to --log-outputs at --log-level, and one found before them to stderr', { timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'refusal-log-compat-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const url = async (): Promise<string> => `http://127.0.0.1:${await freePort()}`;
    const cases: [string, string[], Record<string, string>?][] = [
      ['checked after the log settings', ['--auto-compaction-mode', 'daily']],
      ['no advertised URL', ['--listen-client-urls', await url()]],
      ['refused at start', ['--auth-token', 'opaque']],
      ['below --log-level', ['--log-level', 'error', '--auto-compaction-mode', 'daily']],
      ['a positional argument', ['positional']],
      ['a malformed variable', [], { ETCD_MAX_TXN_OPS: 'abc' }],
    ];
    const seen: Record<string, { status: number | null; stderr: string; file: string; advertiseWarning: boolean }[]> = {};
    for (const [name, args, env] of cases) {
      for (const kind of ['etcd', 'etcd-ts'] as const) {
        const file = join(dir, `${kind}-${Object.keys(seen).length}.log`);
        const client = args.includes('--listen-client-urls') ? [] : ['--listen-client-urls', await url(), '--advertise-client-urls', await url()];
        const r = await refusal(kind, [...client, '--logger', 'zap', '--log-outputs', file, ...args], env);
        let logged = '';
        try {
          logged = readFileSync(file, 'utf8');
        } catch {
          // not created: nothing was logged there
        }
        // etcd follows the advertise-URL refusal with a second warning.
        const advertiseWarning = logged.includes('"msg":"advertise client URLs are not set"');
        (seen[name] ??= []).push({ status: r.status, stderr: r.message, file: refusalReason(logged), advertiseWarning });
      }
    }
    // What etcd does, so that the comparison below compares something.
    assert.match(seen['checked after the log settings']![0]!.file, /auto-compaction-mode/);
    assert.equal(seen['checked after the log settings']![0]!.stderr, '');
    assert.match(seen['a positional argument']![0]!.stderr, /positional/);
    assert.equal(seen['below --log-level']![0]!.file, '');
    assert.equal(seen['no advertised URL']![0]!.advertiseWarning, true);
    for (const [name, [etcd, ours]] of Object.entries(seen)) assert.deepEqual(ours, etcd, name);
  });

  it('both write their log lines to every --log-outputs file and none to stderr', { timeout: 60_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'log-outputs-compat-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const files = [join(dir, `${kind}-a.log`), join(dir, `${kind}-b.log`)];
      const server = await startServer(t, { kind, flags: ['--logger', 'zap', '--log-outputs', files.join(',')], logFile: files[0] });
      await server.stop();
      // etcd's gRPC library writes its own warnings to stderr whatever --log-outputs says
      // (grpclog, e.g. a reconnect at shutdown): its log lines are what must not be there.
      const logLines = server.stderr().split('\n').filter((l) => l.startsWith('{'));
      assert.deepEqual(logLines, [], `${kind} logged to stderr`);
      if (kind === 'etcd-ts') assert.equal(server.stderr(), '');
      const [a, b] = files.map((f) => readFileSync(f, 'utf8'));
      assert.equal(a, b, `${kind}: both files hold the same lines`);
      const entries = (a ?? '').trim().split('\n').map((l) => JSON.parse(l) as { level: string; ts: string; msg: string });
      assert.ok(entries.length > 1, `${kind}: ${entries.length} lines`);
      for (const e of entries) assert.match(e.ts, /^\d{4}-\d\d-\d\dT/, kind);
    }
  });
});
