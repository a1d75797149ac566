/**
 * TLS on the client URL, as etcd does it: https:// listen URLs with --cert-file/--key-file,
 * client certificates required with --client-cert-auth/--trusted-ca-file, and --auto-tls.
 * Driven by the real etcdctl.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { etcdctl, hideMemberIds } from '../helpers/etcdctl.js';
import { ETCD_BIN, ETCDCTL_BIN, etcdTsUnavailableReason, etcdUnavailableReason, freePort } from '../helpers/servers.js';
import { makeCerts } from '../helpers/certs.js';

const BIN = path.resolve('bin/etcd-ts.js');

/**
 * Starts etcd-ts (or, with `kind` 'etcd', the real etcd 3.4) with `flags` on an https client
 * URL; resolves with that URL once the server logged that it is ready. Killed after the test.
 */
async function startTls(t: TestContext, dir: string, flags: string[], kind: 'etcd-ts' | 'etcd' = 'etcd-ts'): Promise<string> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const peer = ['--listen-peer-urls', `http://127.0.0.1:${await freePort()}`];
  const common = ['--data-dir', path.join(dir, `data-${kind}`), '--listen-client-urls', url, '--advertise-client-urls', url, ...peer, ...flags];
  const child = kind === 'etcd' ? spawn(ETCD_BIN, common, { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(process.execPath, [BIN, ...common], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${kind} did not start: ${err}`)), 20_000);
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('ready to serve client requests')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`${kind} exited ${code}: ${err}`)));
  });
  return url;
}

/**
 * A request over HTTP/2 (what curl negotiates by ALPN): GET `path`, or POST `body` to it;
 * resolves with the status and body, or with the first `lines` lines of a streamed answer.
 */
async function requestOverH2(url: string, ca: Buffer, pathname: string, body?: string, lines?: number): Promise<{ status: number; body: string }> {
  const session = http2.connect(url, { ca });
  try {
    const req = session.request({ ':path': pathname, ':method': body === undefined ? 'GET' : 'POST' });
    const chunks: Buffer[] = [];
    const status = new Promise<number>((resolve, reject) => {
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
    });
    await new Promise<void>((resolve) => {
      req.on('data', (c: Buffer) => {
        chunks.push(c);
        if (lines !== undefined && Buffer.concat(chunks).toString().split('\n').length > lines) resolve();
      });
      req.on('close', resolve);
      req.end(body);
    });
    req.close();
    return { status: await status, body: Buffer.concat(chunks).toString() };
  } finally {
    session.close();
  }
}

const skip = etcdTsUnavailableReason() ?? (fs.existsSync(ETCDCTL_BIN) ? undefined : 'etcdctl missing');

test('https client URL with client certificate authentication', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-tls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const url = await startTls(t, dir, ['--cert-file', f('server.crt'), '--key-file', f('server.key'), '--trusted-ca-file', f('ca.crt'), '--client-cert-auth']);

  const withCert = ['--cacert', f('ca.crt'), '--cert', f('client.crt'), '--key', f('client.key')];
  const put = await etcdctl(url, [...withCert, 'put', 'k', 'v']);
  assert.equal(put.stdout, 'OK\n', put.stderr);
  const get = await etcdctl(url, [...withCert, 'get', 'k']);
  assert.equal(get.stdout, 'k\nv\n');
  const status = await etcdctl(url, [...withCert, 'endpoint', 'status']);
  assert.equal(status.code, 0, status.stderr);

  // Without a client certificate the TLS handshake is refused, so the request fails.
  const noCert = await etcdctl(url, ['--cacert', f('ca.crt'), '--command-timeout', '2s', 'get', 'k'], { timeoutMs: 15_000 });
  assert.notEqual(noCert.code, 0);
  assert.equal(noCert.stdout, '');
});

test("--auto-tls serves TLS with a generated certificate like etcd's, and then asks clients for none, whatever --client-cert-auth says", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-autotls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const url = await startTls(t, dir, ['--auto-tls', '--client-cert-auth', '--trusted-ca-file', path.join(dir, 'ca.crt')]);
  // No client certificate given (etcd 3.4 measured the same: its self-signed TLS settings replace the others).
  const put = await etcdctl(url, ['--insecure-skip-tls-verify', '--insecure-transport=false', 'put', 'a', 'b']);
  assert.equal(put.stdout, 'OK\n', put.stderr);
  // etcdctl needs --insecure-transport=false to use TLS without CA files (same with etcd 3.4);
  // a client that verifies the certificate refuses the self-signed one.
  const strict = await etcdctl(url, ['--insecure-transport=false', '--command-timeout', '2s', 'get', 'a'], { timeoutMs: 15_000 });
  assert.notEqual(strict.code, 0);
  // etcd's SelfCert: ECDSA P-521, not a CA, for server authentication, naming the listen host.
  const cert = new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'data-etcd-ts', 'fixtures', 'client', 'cert.pem')));
  assert.equal(cert.ca, false);
  assert.equal(cert.subject, 'O=etcd');
  assert.equal(cert.subjectAltName, 'IP Address:127.0.0.1');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'secp521r1');
});

/** The TLS 1.2 suite `url`'s server agrees to when offered only `cipher` (OpenSSL's name); undefined when it refuses. */
async function negotiated(url: string, cipher: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false, maxVersion: 'TLSv1.2', ciphers: cipher, ALPNProtocols: ['h2'] }, () => {
      resolve(socket.getCipher().standardName);
      socket.destroy();
    });
    socket.on('error', () => resolve(undefined));
  });
}

test("--cipher-suites takes Go's names, the server's order wins, and a list HTTP/2 cannot use is refused; Go's defaults otherwise", { skip, timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-ciphers-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const files = ['--cert-file', f('server.crt'), '--key-file', f('server.key')];
  const defaults = await startTls(t, dir, files);
  // Go leaves the CBC suites with SHA-256 out of its defaults.
  assert.equal(await negotiated(defaults, 'ECDHE-RSA-AES128-SHA256'), undefined);
  assert.equal(await negotiated(defaults, 'ECDHE-RSA-AES128-GCM-SHA256'), 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');

  const listed = await startTls(t, fs.mkdtempSync(path.join(dir, 'b-')), [...files, '--cipher-suites',
    'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256']);
  // etcd 3.4 (Go 1.19), measured: AES-GCM unless the client puts ChaCha20 first, whatever the list's order.
  assert.equal(await negotiated(listed, 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305'), 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
  assert.equal(await negotiated(listed, 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256'), 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256');
  assert.equal(await negotiated(listed, 'ECDHE-RSA-AES256-GCM-SHA384'), undefined);
  // Go's order puts ECDHE first, whatever the client's.
  assert.equal(await negotiated(defaults, 'AES128-SHA:ECDHE-RSA-AES128-SHA'), 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA');

  // etcd (with --logger zap; with capnslog it crashes) cannot configure HTTP/2 and stops.
  const refused = spawnSync(process.execPath, [BIN, '--data-dir', f('c'), '--listen-client-urls', `https://127.0.0.1:${await freePort()}`,
    '--advertise-client-urls', 'https://127.0.0.1:1', ...files, '--cipher-suites', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA'], { encoding: 'utf8' });
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /http2: TLSConfig.CipherSuites is missing an HTTP\/2-required AES_128_GCM_SHA256 cipher/);
});

test('/health, /version, unknown paths and the gRPC gateway over HTTP/2 on TLS answer as etcd 3.4 answers them', { skip: skip ?? etcdUnavailableReason(), timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-tls-h2-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const ca = fs.readFileSync(f('ca.crt'));
  const flags = ['--cert-file', f('server.crt'), '--key-file', f('server.key')];
  const answers = async (kind: 'etcd' | 'etcd-ts') => {
    const url = await startTls(t, dir, flags, kind);
    const health = await requestOverH2(url, ca, '/health');
    const version = await requestOverH2(url, ca, '/version');
    const missing = await requestOverH2(url, ca, '/no-such-path');
    // The gRPC gateway on the same HTTP/2 connections: request bodies, answers, a stream.
    const ids = (a: { status: number; body: string }) => ({ ...a, body: hideMemberIds(a.body) });
    const gatewayPut = ids(await requestOverH2(url, ca, '/v3/kv/put', '{"key":"Zm9v","value":"YmFy"}'));
    const gatewayRange = ids(await requestOverH2(url, ca, '/v3/kv/range', '{"key":"Zm9v"}'));
    const gatewayError = ids(await requestOverH2(url, ca, '/v3/kv/range', '{"key":5}'));
    const gatewayWatch = ids(await requestOverH2(url, ca, '/v3/watch', '{"create_request":{"key":"Zm9v","start_revision":1}}', 2));
    // A gRPC call on a connection of its own still reaches gRPC.
    const put = await etcdctl(url, ['--cacert', f('ca.crt'), 'put', 'k', 'v']);
    return {
      health,
      version: { status: version.status, keys: version.status === 200 ? Object.keys(JSON.parse(version.body) as object) : version.body },
      missing: missing.status,
      gateway: [gatewayPut, gatewayRange, gatewayError, gatewayWatch],
      put: put.stdout,
    };
  };
  const etcd = await answers('etcd');
  const ours = await answers('etcd-ts');
  assert.deepEqual(etcd.health, { status: 200, body: '{"health":"true"}' }, 'etcd 3.4 as measured');
  assert.match(etcd.gateway[1]!.body, /"kvs":\[\{"key":"Zm9v"/, 'etcd 3.4 serves the gateway over HTTP/2');
  assert.equal(etcd.gateway[3]!.body.split('\n').length, 3, 'a created line and an events line');
  assert.deepEqual(ours, etcd);
});

test('with auth enabled, the common name of a verified client certificate is the user when no token is sent, as in etcd 3.4; the gateway refuses it', { skip: skip ?? etcdUnavailableReason(), timeout: 90_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-tls-cn-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const flags = ['--cert-file', f('server.crt'), '--key-file', f('server.key'), '--trusted-ca-file', f('ca.crt'), '--client-cert-auth', '--bcrypt-cost', '4'];
  // The client certificate's common name is "client".
  const withCert = ['--cacert', f('ca.crt'), '--cert', f('client.crt'), '--key', f('client.key')];
  const steps = [
    ['user', 'add', 'root', '--new-user-password=r'], ['user', 'grant-role', 'root', 'root'],
    ['user', 'add', 'client', '--new-user-password=c'], ['role', 'add', 'c'],
    ['role', 'grant-permission', 'c', 'readwrite', '--prefix', '/c/'], ['user', 'grant-role', 'client', 'c'], ['auth', 'enable'],
    ['put', '/c/1', 'v'], ['get', '/c/1'], ['put', '/d/1', 'v'], ['user', 'list'], ['user', 'get', 'client'],
    // A token wins over the certificate.
    ['--user', 'root:r', 'user', 'list'], ['--user', 'root:r', 'put', '/d/1', 'v'],
  ];
  const answers = async (kind: 'etcd' | 'etcd-ts') => {
    const url = await startTls(t, dir, flags, kind);
    const out: { code: number; stdout: string; error: string }[] = [];
    for (const args of steps) {
      const r = await etcdctl(url, [...withCert, ...args]);
      out.push({ code: r.code, stdout: r.stdout, error: r.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '' });
    }
    // Through the gateway the certificate's name is refused outright (etcd's access controller).
    out.push(await new Promise((resolve, reject) => {
      const req = https.request(new URL('/v3/kv/range', url), { method: 'POST', ca: fs.readFileSync(f('ca.crt')), cert: fs.readFileSync(f('client.crt')), key: fs.readFileSync(f('client.key')) }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ code: res.statusCode ?? 0, stdout: body, error: '' }));
      });
      req.on('error', reject).end(JSON.stringify({ key: Buffer.from('/c/1').toString('base64') }));
    }));
    return out;
  };
  const etcd = await answers('etcd');
  assert.equal(etcd.at(-1)!.code, 400, 'etcd 3.4 as measured');
  assert.deepEqual(etcd[9], { code: 1, stdout: '', error: 'Error: etcdserver: permission denied' }, 'etcd 3.4 as measured');
  assert.equal(etcd[7]!.stdout, 'OK\n', 'etcd 3.4 as measured');
  assert.deepEqual(await answers('etcd-ts'), etcd);
});

test('over TLS no keepalive policy refuses pings, as etcd 3.4 serves gRPC on TLS through Go\'s net/http (no --grpc-keepalive-* there)', { skip: skip ?? etcdUnavailableReason(), timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-tls-ping-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  /** Four pings on an idle connection, each after the previous one's answer: grpc-go's plaintext policy ends the connection at the third. */
  const pings = async (url: string): Promise<{ acks: number; goaway: string | undefined }> => {
    const session = http2.connect(url, { rejectUnauthorized: false });
    session.on('error', () => {});
    let goaway: string | undefined;
    session.on('goaway', (_code: number, _last: number, debug?: Buffer) => (goaway = debug?.toString() ?? ''));
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    let acks = 0;
    for (let i = 0; i < 4 && goaway === undefined; i++) {
      if (await new Promise<boolean>((resolve) => session.ping((err) => resolve(!err)) || resolve(false))) acks++;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    session.destroy();
    return { acks, goaway };
  };
  const flags = ['--auto-tls', '--grpc-keepalive-min-time', '1s'];
  const [etcd, ours] = await Promise.all([startTls(t, dir, flags, 'etcd'), startTls(t, dir, flags)]);
  const expected = await pings(etcd);
  assert.deepEqual(expected, { acks: 4, goaway: undefined });
  assert.deepEqual(await pings(ours), expected);
});
