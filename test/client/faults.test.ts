// The client under faults that stall rather than fail, against etcd-ts and a real etcd 3.4:
// endpoints that accept TCP but never speak HTTP/2 (a silent listener, a stalled path), a
// stopped server under a keep-alive, auth while the server is gone, deadlines during an outage,
// many concurrent calls; and watch / keepAlive after close(). Bounds are generous: the tests
// assert outcomes (which error, whether something happens at all), not how fast.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import {
  AbortError,
  Client,
  DeadlineExceededError,
  LeaseNotFoundError,
  RequestTooLargeError,
  type LeaseKeepAlive,
} from '../../src/index.js';
import { deadEndpoint, KINDS, start, suiteServer } from './common.js';
import { startProxy } from './proxy.js';

/** An http:// URL of a listener that accepts connections and never answers; closed when the test ends. */
async function silentEndpoint(t: TestContext): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** `promise`, or a rejection naming `what` when it has not settled after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const renewed = (keepAlive: LeaseKeepAlive): Promise<void> => new Promise((resolve) => keepAlive.once('renewed', () => resolve()));

for (const { kind, skip } of KINDS) {
  describe(`client with stalled endpoints against ${kind}`, { skip, timeout: 120_000 }, () => {
    const server = suiteServer(kind);

    it('routes calls, watches and keep-alives around an endpoint that accepts TCP but never speaks HTTP/2', async (t) => {
      const client = new Client({ endpoints: [await silentEndpoint(t), server().endpoint], timeoutMs: 10_000 });
      t.after(() => client.close());
      for (let i = 0; i < 6; i++) {
        await client.put(`stall/${i}`, 'v');
        assert.equal((await client.get(`stall/${i}`)).kvs.length, 1);
      }
      const watcher = client.watch('stall/');
      await within(watcher.created, 20_000, 'watch created');
      const keepAlive = client.keepAlive((await client.leaseGrant(30)).ID);
      await within(renewed(keepAlive), 20_000, 'keep-alive renewed');
    });

    it('recovers a single endpoint whose connection stalled before HTTP/2, once the path answers (dial timeout)', async (t) => {
      const proxy = await startProxy(server().endpoint);
      t.after(() => proxy.close());
      proxy.stall();
      const client = new Client({ endpoints: [proxy.url], dialTimeoutMs: 1000 });
      t.after(() => client.close());
      const watcher = client.watch('recover/');
      await assert.rejects(client.get('recover/x', { timeoutMs: 1000 }), DeadlineExceededError);
      proxy.resume();
      await client.get('recover/x', { timeoutMs: 30_000 });
      await within(watcher.created, 30_000, 'watch created after the path answered');
    });

    it('recovers a connection that broke and then stalled over several dial timeouts, once the path answers', async (t) => {
      const proxy = await startProxy(server().endpoint);
      t.after(() => proxy.close());
      const client = new Client({ endpoints: [proxy.url], dialTimeoutMs: 1000 });
      t.after(() => client.close());
      const watcher = client.watch('restall/k');
      await within(watcher.created, 20_000, 'watch created');
      const events = watcher[Symbol.asyncIterator]();
      proxy.stall();
      proxy.dropConnections();
      await new Promise((resolve) => setTimeout(resolve, 3500)); // three attempts stall and are ended
      proxy.resume();
      const writer = new Client({ endpoints: [server().endpoint] });
      t.after(() => writer.close());
      await writer.put('restall/k', 'after');
      assert.equal((await client.get('restall/k', { timeoutMs: 15_000 })).kvs[0]?.value.toString(), 'after');
      const next = await within(events.next(), 15_000, 'event after the path answered');
      assert.equal(next.done, false);
      assert.equal(next.value?.events[0]?.kv.value.toString(), 'after');
    });

    it('a keep-alive running when the client closes reports the lease lost with AbortError', async () => {
      const client = new Client({ endpoints: [server().endpoint] });
      const keepAlive = client.keepAlive((await client.leaseGrant(30)).ID);
      await within(renewed(keepAlive), 20_000, 'first renewal');
      let events = 0;
      keepAlive.on('lost', () => events++);
      client.close();
      assert.ok((await within(keepAlive.lost, 5000, 'lost after close')) instanceof AbortError);
      assert.equal(events, 1);
    });

    it("'disconnected' fires once per outage for a watch and a keep-alive, however many reconnection attempts fail", async (t) => {
      const proxy = await startProxy(server().endpoint);
      t.after(() => proxy.close());
      const client = new Client({ endpoints: [proxy.url] });
      t.after(() => client.close());
      const watcher = client.watch('outage/k');
      await within(watcher.created, 20_000, 'watch created');
      const keepAlive = client.keepAlive((await client.leaseGrant(60)).ID, { intervalMs: 200 });
      await within(renewed(keepAlive), 20_000, 'first renewal');
      const counts = { watch: 0, connected: 0, keepAlive: 0 };
      watcher.on('disconnected', () => counts.watch++);
      watcher.on('connected', () => counts.connected++);
      keepAlive.on('disconnected', () => counts.keepAlive++);
      proxy.pause(); // connections reset, new ones refused: attempts fail every backoff
      await new Promise((resolve) => setTimeout(resolve, 3000));
      proxy.resume();
      await within(new Promise<void>((resolve) => watcher.once('connected', () => resolve())), 20_000, 'watch re-created');
      await within(renewed(keepAlive), 20_000, 'renewed after the outage');
      assert.deepEqual(counts, { watch: 1, connected: 1, keepAlive: 1 });
    });

    it('no MaxListenersExceededWarning with many concurrent calls', async () => {
      const client = new Client({ endpoints: [server().endpoint] });
      const warnings: Error[] = [];
      const onWarning = (warning: Error): void => { warnings.push(warning); };
      process.on('warning', onWarning);
      try {
        await client.put('many/k', 'v');
        await Promise.all(Array.from({ length: 50 }, () => client.get('many/k')));
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('warning', onWarning);
        client.close();
      }
      assert.deepEqual(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message), []);
    });

    it('a request over the gRPC message limit fails with RequestTooLargeError', async () => {
      const client = new Client({ endpoints: [server().endpoint] });
      try {
        await assert.rejects(client.put('huge', new Uint8Array(3 * 1024 * 1024)), RequestTooLargeError);
      } finally {
        client.close();
      }
    });
  });

  describe(`client keep-alive deadline against ${kind}`, { skip, timeout: 120_000 }, () => {
    it('keepAlive reports the lease lost once its TTL passed without a renewal, while the server is stopped (SIGSTOP)', async (t) => {
      const server = await start(t, kind);
      // No HTTP/2 pings within the test: only the keep-alive deadline can notice the silence.
      const client = new Client({ endpoints: [server.endpoint], keepaliveTimeMs: 600_000 });
      t.after(() => client.close());
      const keepAlive = client.keepAlive((await client.leaseGrant(5)).ID);
      await within(renewed(keepAlive), 20_000, 'first renewal');
      const pid = server.pid;
      process.kill(pid, 'SIGSTOP');
      try {
        const lost = await within(keepAlive.lost, 40_000, 'lost while the server is stopped');
        assert.ok(lost instanceof LeaseNotFoundError, String(lost));
      } finally {
        process.kill(pid, 'SIGCONT');
      }
    });
  });
}

describe('client deadlines while endpoints are unreachable', { timeout: 60_000 }, () => {
  it('a call with a deadline keeps retrying until it, then fails with DeadlineExceededError', async () => {
    const client = new Client({ endpoints: [await deadEndpoint()] });
    try {
      for (const call of [() => client.get('x', { timeoutMs: 1500 }), () => client.put('x', 'y', { timeoutMs: 1500 })]) {
        const started = Date.now();
        const err = await call().catch((e: unknown) => e);
        assert.ok(err instanceof DeadlineExceededError, String(err));
        assert.ok(Date.now() - started >= 1450, `failed after ${Date.now() - started} ms, before its deadline`);
      }
    } finally {
      client.close();
    }
  });

  it('with auth, a call waiting for its first token still ends at its deadline', async () => {
    const client = new Client({ endpoints: [await deadEndpoint()], auth: { username: 'u', password: 'p' } });
    try {
      const get = client.get('x', { timeoutMs: 500 });
      await assert.rejects(within(get, 20_000, 'get'), DeadlineExceededError);
    } finally {
      client.close();
    }
  });
});

describe('client watch and keepAlive after close()', { timeout: 60_000 }, () => {
  it('end with AbortError through their usual paths instead of throwing', async () => {
    const client = new Client({ endpoints: [await deadEndpoint()] });
    client.close();
    const watcher = client.watch('x');
    const errors: Error[] = [];
    watcher.on('error', (err) => errors.push(err));
    await assert.rejects(watcher.created, AbortError);
    await assert.rejects(async () => {
      for await (const _ of watcher) assert.fail('no response after close');
    }, AbortError);
    assert.ok(errors[0] instanceof AbortError);
    const keepAlive = client.keepAlive(1);
    assert.ok((await keepAlive.lost) instanceof AbortError);
    await assert.rejects(client.get('x'), AbortError);
  });
});
