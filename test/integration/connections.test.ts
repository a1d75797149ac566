// Clients whose `:authority` is not a valid authority are served like any other: etcdctl 3.4
// sends the endpoint URL as `:authority` on its per-endpoint calls (Go's HTTP/2 server accepts
// it, nghttp2 would reset the stream), over plaintext and over TLS alike.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RangeResponse } from '../../src/proto/gen/rpc.gen.js';
import { makeCerts } from '../helpers/certs.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason } from '../helpers/servers.js';
import { EmbeddedServer, Kv } from '../helpers/watch-client.js';

describe('gRPC connections', { skip: etcdUnavailableReason() }, () => {
  let srv: EmbeddedServer;
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('etcdctl and grpc-js clients are served; so is etcdctl endpoint status, with its URL as :authority', async () => {
    srv = await EmbeddedServer.start();
    cleanups.push(() => srv.stop());
    assert.equal((await etcdctl(srv.target, ['put', 'k', 'v'])).stdout, 'OK\n');

    const kv = new Kv(srv.target);
    cleanups.push(() => kv.close());
    assert.equal((await kv.get('k')).kvs[0]?.value.toString(), 'v');

    const status = await etcdctl(`http://${srv.target}`, ['endpoint', 'status', '-w', 'json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { Endpoint: string; Status: { header: { revision: number } } }[];
    assert.equal(parsed[0]!.Status.header.revision, 2);
  });

  it('over TLS too: etcdctl and a request with an invalid :authority are answered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'etcd-ts-conn-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    makeCerts(dir);
    const tls = await EmbeddedServer.start({
      listenClientUrls: ['https://127.0.0.1:0'],
      advertiseClientUrls: ['https://127.0.0.1:0'],
      clientTls: {
        certFile: join(dir, 'server.crt'),
        keyFile: join(dir, 'server.key'),
        trustedCaFile: '',
        clientCertAuth: false,
        autoTls: false,
        cipherSuites: [],
        clientCrlFile: '',
      },
    });
    cleanups.push(() => tls.stop());
    const url = tls.server.clientUrls[0]!;

    const put = await etcdctl(url, ['--cacert', join(dir, 'ca.crt'), 'put', 'k', 'v']);
    assert.equal(put.stdout, 'OK\n', put.stderr);

    // A Range for "k" with the endpoint URL as :authority (what etcdctl 3.4 sends on plaintext
    // per-endpoint calls), which nghttp2 alone would refuse with PROTOCOL_ERROR.
    const session = http2.connect(url, { ca: readFileSync(join(dir, 'ca.crt')) });
    cleanups.push(() => void session.close());
    const body = Buffer.from([0x0a, 1, 'k'.charCodeAt(0)]); // RangeRequest { key: "k" }
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
    const req = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', ':authority': url, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      req.on('trailers', resolve);
      req.on('error', reject);
    });
    req.end(frame);
    assert.equal((await trailers)['grpc-status'], '0');
    const answer = RangeResponse.decode(Buffer.concat(chunks).subarray(5));
    assert.equal(Buffer.from(answer.kvs[0]!.value).toString(), 'v');
  });
});
