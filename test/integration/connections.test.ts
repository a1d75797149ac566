// Which path each gRPC connection takes (src/server/h2-preamble.ts): clients with valid
// `:authority` values run on the socket's native handle, etcdctl 3.4's per-endpoint calls
// (whose authority is the endpoint URL) through the authority fixer, and both get their answers.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason } from '../helpers/servers.js';
import { EmbeddedServer, Kv } from '../helpers/watch-client.js';

describe('gRPC connection paths', { skip: etcdUnavailableReason() }, () => {
  let srv: EmbeddedServer;
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('etcdctl and grpc-js clients run natively; etcdctl endpoint status goes through the fixer and is answered', async () => {
    srv = await EmbeddedServer.start();
    cleanups.push(() => srv.stop());
    const counts = () => srv.server.grpcConnections();
    assert.deepEqual(counts(), { native: 0, fixed: 0 });

    assert.equal((await etcdctl(srv.target, ['put', 'k', 'v'])).stdout, 'OK\n');
    assert.deepEqual(counts(), { native: 1, fixed: 0 }, 'a plain etcdctl call (grpc-go: SETTINGS ACK before the request)');

    const kv = new Kv(srv.target);
    cleanups.push(() => kv.close());
    assert.equal((await kv.get('k')).kvs[0]?.value.toString(), 'v');
    assert.deepEqual(counts(), { native: 2, fixed: 0 }, 'a grpc-js client (nghttp2: request before the SETTINGS ACK)');

    const status = await etcdctl(`http://${srv.target}`, ['endpoint', 'status', '-w', 'json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { Endpoint: string; Status: { header: { revision: number } } }[];
    assert.equal(parsed[0]!.Status.header.revision, 2);
    assert.ok(counts().fixed >= 1, `the per-endpoint status call came with its URL as :authority: ${JSON.stringify(counts())}`);
  });
});
