// The peer URL (--listen-peer-urls) against a real etcd 3.4: the same HTTP requests to both
// servers' peer URLs get the same answers (status, the headers etcd's handlers set, body), and
// etcdctl works through a peer URL as it does with etcd, which serves its gRPC API there too.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { LeaseKeepAliveRequest } from '../../src/proto/gen/rpc.gen.js';
import { LeaseInternalRequest, RaftMessage } from '../../src/proto/gen/raft_internal.gen.js';
import { makeCerts, makeCrl } from '../helpers/certs.js';
import { etcdctl, hideMemberIds } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, freePort, startServer, type ServerHandle } from '../helpers/servers.js';

interface PeerRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** A raft message as rafthttp's snapshot handler reads it: an 8-byte big-endian length, then the message. */
function framed(message: Uint8Array): Buffer {
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(message.length));
  return Buffer.concat([length, message]);
}

/** What a client sees of one answer: `dropped` when the server closed the connection instead. */
type Answer = { status: number; headers: Record<string, string>; body: string } | 'dropped';

/** The headers etcd's peer handlers set (Go's net/http adds Date and Content-Length). */
const SHOWN_HEADERS = ['allow', 'content-type', 'location', 'x-content-type-options', 'x-etcd-cluster-id', 'x-server-version'];

function send(base: string, r: PeerRequest): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve) => {
    // Node sends a GET's body without framing unless told its length.
    const length = r.body === undefined ? {} : { 'Content-Length': String(Buffer.byteLength(r.body)) };
    const req = http.request({ host: url.hostname, port: url.port, method: r.method, path: r.path, headers: { ...r.headers, ...length }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const headers: Record<string, string> = {};
        for (const name of SHOWN_HEADERS) if (res.headers[name] !== undefined) headers[name] = String(res.headers[name]);
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers, body: headers['content-type'] === 'application/protobuf' ? body.toString('hex') : body.toString() });
      });
    });
    req.on('error', () => resolve('dropped'));
    req.end(r.body);
  });
}

/** Masks what differs by design: the version etcd-ts reports, the client URL, the clock. */
function normalised(answer: Answer, server: ServerHandle): Answer {
  if (answer === 'dropped') return answer;
  const mask = (text: string) =>
    text
      .replaceAll(server.endpoint, '<client-url>')
      .replace(/"etcdserver":"[^"]+","etcdcluster":"[^"]+"/, '"etcdserver":"<v>","etcdcluster":"<v>"')
      .replace(/"Now":"[^"]+"/, '"Now":"<time>"')
      .replace(/^3\.[45]\.\d+$/, '<v>');
  return { status: answer.status, headers: Object.fromEntries(Object.entries(answer.headers).map(([k, v]) => [k, mask(v)])), body: mask(answer.body) };
}

/** GET /version over TLS: the status, or the error's code when the server refused the client. */
function tlsVersion(url: string, options: https.RequestOptions): Promise<string> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/version`, { ...options, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`status ${res.statusCode}`));
    });
    req.on('error', () => resolve('refused'));
  });
}

describe('peer URL: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('answers the peer HTTP endpoints as etcd does', { timeout: 120_000 }, async (t) => {
    const servers = [await startServer(t, { kind: 'etcd' }), await startServer(t, { kind: 'etcd-ts' })];
    const results: Answer[][] = [];
    for (const server of servers) {
      // The same history on both, for the hash; a lease to renew and look up.
      await etcdctl(server.endpoint, ['put', 'k', 'v']);
      const granted = await etcdctl(server.endpoint, ['lease', 'grant', '600', '-w', 'json']);
      const leaseId = BigInt((JSON.parse(granted.stdout) as { ID: number | string }).ID);
      const list = await etcdctl(server.endpoint, ['member', 'list', '-w', 'json']);
      const selfId = /"member_id":(\d+)/.exec(list.stdout)![1]!;
      const peer = { 'X-Server-Version': '3.4.23', 'X-Etcd-Cluster-ID': 'cdf818194e3a8c32' };
      const requests: PeerRequest[] = [
        { method: 'GET', path: '/' },
        { method: 'GET', path: '/version' },
        { method: 'POST', path: '/version' },
        { method: 'GET', path: '//version' },
        { method: 'GET', path: '/members' },
        { method: 'POST', path: '/members' },
        { method: 'GET', path: '/members/x' },
        { method: 'GET', path: '/health' },
        { method: 'GET', path: '/v3/kv/range' },
        // rafthttp: the method, then the sender's versions and cluster.
        { method: 'GET', path: '/raft' },
        { method: 'POST', path: '/raft' },
        { method: 'POST', path: '/raft', headers: { 'X-Server-Version': '3.4.23' } },
        { method: 'POST', path: '/raft', headers: { 'X-Server-Version': '2.3.0', 'X-Etcd-Cluster-ID': 'cdf818194e3a8c32' } },
        { method: 'POST', path: '/raft', headers: { 'X-Server-Version': '3.4' } },
        { method: 'POST', path: '/raft/snapshot' },
        { method: 'GET', path: '/raft/snapshot' },
        // Past the checks, the message is decoded as etcd decodes it.
        { method: 'POST', path: '/raft', headers: peer, body: 'abc' },
        { method: 'POST', path: '/raft', headers: peer, body: '' },
        { method: 'POST', path: '/raft', headers: peer, body: RaftMessage.encode({ ...RaftMessage.decode(new Uint8Array()), type: 3, from: 5n, to: 6n, term: 1n }).finish() },
        ...[Buffer.alloc(0), Buffer.alloc(4), framed(Buffer.alloc(0)), Buffer.concat([framed(Buffer.from('ab')).subarray(0, 9)]), framed(Buffer.alloc(0)).subarray(0, 8).fill(0, 0, 7).fill(2, 7), framed(Buffer.from([0xff, 0xff]))].map(
          (body): PeerRequest => ({ method: 'POST', path: '/raft/snapshot', headers: peer, body }),
        ),
        { method: 'GET', path: '/raft/probing' },
        { method: 'GET', path: '/raft/x' },
        { method: 'GET', path: '/raft/stream' },
        { method: 'POST', path: '/raft/stream/message/1' },
        { method: 'GET', path: '/raft/stream/message/1' },
        { method: 'GET', path: '/raft/stream/message/1', headers: peer },
        { method: 'GET', path: '/raft/stream/msgapp/zz', headers: peer },
        { method: 'GET', path: '/raft/stream/other/1', headers: peer },
        // leasehttp: protobuf in and out.
        { method: 'GET', path: '/leases' },
        { method: 'POST', path: '/leases', body: 'zzz' },
        { method: 'POST', path: '/leases', body: LeaseKeepAliveRequest.encode({ ID: 1n }).finish() },
        { method: 'POST', path: '/leases', body: LeaseKeepAliveRequest.encode({ ID: leaseId }).finish() },
        { method: 'POST', path: '/leases/internal' },
        { method: 'POST', path: '/leases/internal', body: LeaseInternalRequest.encode({ LeaseTimeToLiveRequest: { ID: 1n, keys: false } }).finish() },
        { method: 'GET', path: '/leases/x' },
        // Promotion: only a learner can be, and none is in sync.
        { method: 'GET', path: '/members/promote/1' },
        { method: 'POST', path: '/members/promote' },
        { method: 'POST', path: '/members/promote/abc' },
        { method: 'POST', path: '/members/promote/1' },
        { method: 'POST', path: `/members/promote/${selfId}` },
        // The hash of the keys a follower compares with the leader's.
        { method: 'POST', path: '/members/hashkv' },
        { method: 'GET', path: '/members/hashkv', body: '{}' },
        { method: 'GET', path: '/members/hashkv', body: '{"revision":1}' },
        { method: 'GET', path: '/members/hashkv', body: '{"revision":99}' },
        { method: 'GET', path: '/members/hashkv' },
      ];
      // One at a time: etcd refuses a membership change proposed while another is pending.
      const answers: Answer[] = [];
      for (const r of requests) answers.push(normalised(await send(server.peerEndpoint, r), server));
      results.push(answers);
    }
    assert.deepEqual(results[1], results[0]);
  });

  it('serves the gRPC API on the peer URL', { timeout: 60_000 }, async (t) => {
    const outputs: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind });
      const steps = [['put', 'a', '1'], ['get', 'a', '-w', 'json'], ['member', 'list'], ['endpoint', 'health']];
      const out: string[] = [];
      for (const step of steps) {
        const r = await etcdctl(server.peerEndpoint, step);
        out.push(hideMemberIds(`${r.code} ${r.stdout}${r.stderr}`).replaceAll(server.endpoint, '<client-url>').replaceAll(server.peerEndpoint, '<peer-url>').replace(/took = \S+/, 'took'));
      }
      outputs.push(out);
    }
    assert.deepEqual(outputs[1], outputs[0]);
  });

  it('serves the peer URL over TLS: --peer-auto-tls, and the client certificate checks of --peer-client-cert-auth, --peer-cert-allowed-cn and --peer-cert-allowed-hostname', { timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    makeCerts(dir);
    const client = { cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')) };
    const files = ['--peer-cert-file', join(dir, 'server.crt'), '--peer-key-file', join(dir, 'server.key'), '--peer-trusted-ca-file', join(dir, 'ca.crt'), '--peer-client-cert-auth'];
    const cases: [string, string[], https.RequestOptions][] = [
      ['auto TLS', ['--peer-auto-tls'], {}],
      ['client certificate required, none given', files, {}],
      ['client certificate required and given', files, client],
      ['allowed CN matches', [...files, '--peer-cert-allowed-cn', 'client'], client],
      ['allowed CN differs', [...files, '--peer-cert-allowed-cn', 'other'], client],
      ['allowed host name matches', [...files, '--peer-cert-allowed-hostname', 'localhost'], client],
      ['allowed host name differs', [...files, '--peer-cert-allowed-hostname', 'example.com'], client],
    ];
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      for (const [name, flags, options] of cases) {
        const url = `https://127.0.0.1:${await freePort()}`;
        const server = await startServer(t, { kind, flags: ['--listen-peer-urls', url, ...flags] });
        const fixtures = existsSync(join(server.dataDir, 'fixtures', 'peer', 'cert.pem')) ? ', fixtures/peer made' : '';
        (seen[kind] ??= []).push(`${name}: ${await tlsVersion(url, options)}${fixtures}`);
        await server.stop();
      }
    }
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('refuses, after the handshake, client certificates whose serial number a CRL lists (DER or PEM, out of date or not), and logs each refusal as etcd does', { timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-crl-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    makeCerts(dir);
    makeCrl(dir, ['client']);
    const as = (name: string) => ({ cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) });
    const files = ['--peer-cert-file', join(dir, 'server.crt'), '--peer-key-file', join(dir, 'server.key'), '--peer-trusted-ca-file', join(dir, 'ca.crt'), '--peer-client-cert-auth'];
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      for (const crl of ['crl.der', 'crl.pem']) {
        const url = `https://127.0.0.1:${await freePort()}`;
        const server = await startServer(t, { kind, flags: ['--listen-peer-urls', url, ...files, '--peer-crl-file', join(dir, crl)] });
        const answers = [`${crl}, revoked: ${await tlsVersion(url, as('client'))}`, `${crl}, not revoked: ${await tlsVersion(url, as('server'))}`];
        const rejected = server.stderr().split('\n').filter((l) => l.includes('rejected connection'));
        (seen[kind] ??= []).push(...answers, ...rejected.map((l) => l.replace(/^.* I \| /, '').replace(/127\.0\.0\.1:\d+/g, '<addr>')));
        await server.stop();
      }
    }
    assert.match(seen.etcd!.join('\n'), /crl\.der, revoked: refused\ncrl\.der, not revoked: status 200\nembed: rejected connection from "<addr>" \(error "transport: certificate serial [0-9a-f]+ revoked"/);
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('logs a TLS handshake refused for want of a client certificate, or on a plain HTTP request, in Go\'s words as etcd does', { timeout: 60_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-handshake-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    makeCerts(dir);
    const files = ['--peer-cert-file', join(dir, 'server.crt'), '--peer-key-file', join(dir, 'server.key'), '--peer-trusted-ca-file', join(dir, 'ca.crt'), '--peer-client-cert-auth'];
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const port = await freePort();
      const server = await startServer(t, { kind, flags: ['--listen-peer-urls', `https://127.0.0.1:${port}`, ...files] });
      const answers = [`no client certificate: ${await tlsVersion(`https://127.0.0.1:${port}`, {})}`];
      answers.push(await new Promise<string>((resolve) => {
        const req = http.get(`http://127.0.0.1:${port}/version`, (res) => {
          res.resume();
          resolve(`plain HTTP: status ${res.statusCode}`);
        });
        req.on('error', () => resolve('plain HTTP: refused'));
      }));
      await new Promise((r) => setTimeout(r, 200));
      const rejected = server.stderr().split('\n').filter((l) => l.includes('rejected connection'));
      // Sorted: a server may log the two refusals in either order (etcd did both).
      seen[kind] = [...answers, ...rejected.map((l) => l.replace(/^.* I \| /, '').replace(/127\.0\.0\.1:\d+/g, '<addr>')).sort()];
      await server.stop();
    }
    assert.deepEqual(seen.etcd!.slice(2), [
      'embed: rejected connection from "<addr>" (error "tls: client didn\'t provide a certificate", ServerName "")',
      'embed: rejected connection from "<addr>" (error "tls: first record does not look like a TLS handshake", ServerName "")',
    ], 'etcd 3.4 as measured');
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('auto TLS makes its certificates whatever the URLs, and warns about them on http:// ones, as etcd does', { timeout: 60_000 }, async (t) => {
    const seen: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind, flags: ['--auto-tls', '--peer-auto-tls'] });
      const made = ['client', 'peer'].map((dir) => `fixtures/${dir}: ${existsSync(join(server.dataDir, 'fixtures', dir, 'cert.pem'))}`);
      const lines = server.stderr().split('\n').filter((l) => /TLS: cert|scheme of (client|peer) url/.test(l));
      seen.push([...made, ...lines.map((l) => l.replace(/^.* [IWN] \| /, '').replaceAll(server.dataDir, '<data-dir>').replace(/127\.0\.0\.1:\d+/g, '<host>'))]);
      await server.stop();
    }
    assert.deepEqual(seen[0]!.slice(0, 2), ['fixtures/client: true', 'fixtures/peer: true']);
    assert.equal(seen[0]!.length, 6, seen[0]!.join('\n'));
    assert.deepEqual(seen[1], seen[0]);
  });
});
