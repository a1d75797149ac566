// The embedded server: startServer() / close() 50 times in one process, checking that each
// instance serves (a put is read back and a watch sees it), that close() is idempotent, and
// that no handle (socket, timer, file request…) outlives the instances.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from '../../src/index.js';

/** Active resources by type, e.g. { TCPSocketWrap: 2, Timeout: 1 }. */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/** Waits a few event-loop turns so that closed handles are actually released. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 20));
}

test('startServer: 50 start/stop cycles in one process leave no handle behind', async () => {
  // One warm-up round loads the modules and lets lazily created process-wide handles appear.
  const warm = await startServer();
  await warm.close();
  await settle();
  const before = resources();
  const startMs: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    const server = await startServer();
    startMs.push(performance.now() - t0);
    const key = `k${i}`;
    const watcher = server.client.watch(key);
    await watcher.created;
    const put = await server.client.put(key, `v${i}`);
    const got = await server.client.get(key);
    assert.equal(got.kvs[0]?.value.toString(), `v${i}`);
    for await (const response of watcher) {
      assert.equal(response.events[0]?.kv.modRevision, put.header?.revision);
      break;
    }
    await server.close();
    await server.close();
    assert.equal(existsSync(server.dataDir), false, 'the temp data dir is removed');
  }
  await settle();
  const after = resources();
  assert.deepEqual(Object.fromEntries(after), Object.fromEntries(before), 'active resources before vs after 50 cycles');
  startMs.sort((a, b) => a - b);
  console.log(`startServer: median ${startMs[25]!.toFixed(1)} ms, max ${startMs[49]!.toFixed(1)} ms over 50 starts`);
});

test('startServer: a client URL given twice is bound and served once, as etcd keeps one listener per address', async (t) => {
  const server = await startServer({ listenClientUrls: ['http://127.0.0.1:0', 'http://127.0.0.1:0'] });
  t.after(() => server.close());
  assert.equal(server.clientUrls.length, 1, server.clientUrls.join(','));
  await server.client.put('k', 'v');
  assert.equal((await server.client.get('k')).kvs[0]?.value.toString(), 'v');
});

test('startServer: the member advertises the client URLs with the ports bound', async (t) => {
  const server = await startServer({ listenClientUrls: ['http://127.0.0.1:0', 'http://localhost:0'] });
  t.after(() => server.close());
  assert.ok(server.clientUrls.every((u) => !u.endsWith(':0')), server.clientUrls.join(','));
  assert.deepEqual((await server.client.memberList()).members[0]?.clientURLs, server.clientUrls);
});

test('startServer: serves a unix socket client URL, and its client connects through it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'embed-unix-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const url = `unix://${join(dir, 'etcd.sock')}`;
  const server = await startServer({ listenClientUrls: [url] });
  t.after(() => server.close());
  assert.deepEqual(server.clientUrls, [url]);
  await server.client.put('k', 'over unix');
  assert.equal((await server.client.get('k')).kvs[0]?.value.toString(), 'over unix');
});

test('startServer: a client it cannot make fails the start with the server stopped and its data dir removed', async () => {
  const embedDirs = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('etcd-ts-embed-')).sort();
  await settle();
  const [before, dirsBefore] = [resources(), await embedDirs()];
  const err = await startServer({ client: { endpoints: ['ftp://127.0.0.1:1'] } }).catch((e: unknown) => e);
  assert.ok(err instanceof TypeError && /unsupported endpoint scheme/.test(err.message), String(err));
  await settle();
  assert.deepEqual(Object.fromEntries(resources()), Object.fromEntries(before), 'active resources before vs after');
  assert.deepEqual(await embedDirs(), dirsBefore, 'no temp data dir left');
});

test('startServer: an unknown option or a value of the wrong type is refused before anything starts', async () => {
  const dirsBefore = (await readdir(tmpdir())).filter((name) => name.startsWith('etcd-ts-embed-')).sort();
  await assert.rejects(startServer({ maxTxnOp: 4 } as never), { name: 'TypeError', message: 'startServer: unknown option maxTxnOp' });
  await assert.rejects(startServer({ maxTxnOps: 'abc' } as never), { name: 'TypeError', message: 'startServer: option maxTxnOps must be of type number, not string' });
  await assert.rejects(startServer({ listenClientUrls: 'http://127.0.0.1:0' } as never), { name: 'TypeError', message: 'startServer: option listenClientUrls must be of type array, not string' });
  assert.deepEqual((await readdir(tmpdir())).filter((name) => name.startsWith('etcd-ts-embed-')).sort(), dirsBefore);
});
