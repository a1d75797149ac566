// The gRPC health service (grpc.health.v1.Health, what Kubernetes' gRPC probes call) against a
// real etcd 3.4: the same Check and Watch calls to both servers, the same answers; and the
// raft entry each healthy HTTP /health answer costs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { HealthClient, type HealthCheckResponse } from '../../src/proto/gen/health.gen.js';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** Check(`service`): the status, or the error's code and message. */
function check(client: HealthClient, service: string): Promise<unknown> {
  return new Promise((resolve) => {
    client.check({ service }, (err: ServiceError | null, res?: HealthCheckResponse) => resolve(err ? { code: err.code, details: err.details } : res));
  });
}

/** The first message of Watch(`service`); the call is then cancelled. */
function firstWatched(client: HealthClient, service: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const call = client.watch({ service });
    call.once('data', (res: HealthCheckResponse) => {
      resolve(res);
      call.cancel();
    });
    call.on('error', (err: ServiceError) => (err.code === 1 ? undefined : reject(err)));
  });
}

async function answers(server: ServerHandle): Promise<unknown[]> {
  const client = new HealthClient(server.endpoint.replace('http://', ''), credentials.createInsecure());
  try {
    return [
      await check(client, ''),
      await check(client, 'etcdserverpb.KV'),
      await firstWatched(client, ''),
      await firstWatched(client, 'etcdserverpb.KV'),
    ];
  } finally {
    client.close();
  }
}

describe('gRPC health service: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('Check and Watch answer as grpc-go health server etcd registers', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const etcd = await answers(servers[0]!);
    assert.deepEqual(etcd[0], { status: 1 }, 'etcd 3.4 as measured: SERVING');
    assert.deepEqual(await answers(servers[1]!), etcd);
  });
});

/** The raft index `endpoint status` reports. */
async function raftIndex(server: ServerHandle): Promise<number> {
  const out = await etcdctl(server.endpoint, ['endpoint', 'status', '-w', 'json']);
  return (JSON.parse(out.stdout) as { Status: { raftIndex: number } }[])[0]!.Status.raftIndex;
}

describe('HTTP /health: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('a healthy answer adds one raft entry (etcd proposes a QGET), as many as etcd adds', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const grown = await Promise.all(
      servers.map(async (s) => {
        const before = await raftIndex(s);
        for (let i = 0; i < 3; i++) {
          const res = await fetch(`${s.endpoint}/health`);
          assert.equal(await res.text(), '{"health":"true"}');
        }
        return (await raftIndex(s)) - before;
      }),
    );
    assert.deepEqual(grown, [3, 3]);
  });
});
