// Leases survive restarts (etcd's promise): after a kill -9 or a clean restart the lease and its
// keys are back, and the lease does not expire before its TTL counted from the restart — even
// when, counted from the grant, it should already have expired. It still expires afterwards.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdctl } from '../helpers/etcdctl.js';
import { etcdTsUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

const TTL_SEC = 6;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function ctl(server: ServerHandle, args: string[]): Promise<string> {
  const r = await etcdctl(server.endpoint, args);
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Grants a lease with one key, waits `beforeMs`, crashes or restarts, returns the lease hex ID and restart time. */
async function grantThenRestart(server: ServerHandle, crash: boolean, beforeMs: number): Promise<{ id: string; restartedAt: number }> {
  const id = /lease ([0-9a-f]{16}) granted/.exec(await ctl(server, ['lease', 'grant', String(TTL_SEC)]))![1]!;
  await ctl(server, ['put', '--lease', id, 'leased', 'v']);
  await sleep(beforeMs);
  if (crash) await server.kill9();
  await server.restart();
  return { id, restartedAt: Date.now() };
}

async function checkSurvivesThenExpires(server: ServerHandle, id: string, restartedAt: number): Promise<void> {
  assert.match(await ctl(server, ['lease', 'timetolive', id, '--keys']), new RegExp(`lease ${id} granted with TTL\\(${TTL_SEC}s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)`));
  assert.match(await ctl(server, ['lease', 'list']), new RegExp(id));
  // Counted from the grant the lease is long expired here; counted from the restart it is not.
  await sleep(restartedAt + (TTL_SEC - 1) * 1000 - Date.now());
  assert.equal((await ctl(server, ['get', 'leased', '--print-value-only'])).trim(), 'v', 'the key outlives TTL − 1 s after the restart');
  assert.doesNotMatch(await ctl(server, ['lease', 'timetolive', id]), /already expired/);
  // And it does expire: within TTL + election timeout + a generous 5 s.
  const deadline = restartedAt + (TTL_SEC + 6) * 1000;
  while (Date.now() < deadline && !/already expired/.test(await ctl(server, ['lease', 'timetolive', id]))) await sleep(200);
  assert.match(await ctl(server, ['lease', 'timetolive', id]), /already expired/);
  assert.equal(await ctl(server, ['get', 'leased']), '');
}

describe('lease restart', { skip: etcdTsUnavailableReason() }, () => {
  it('after kill -9, a lease keeps its keys and lives its full TTL from the restart', async (t) => {
    const server = await startServer(t, { kind: 'etcd-ts' });
    const { id, restartedAt } = await grantThenRestart(server, true, (TTL_SEC - 2) * 1000);
    await checkSurvivesThenExpires(server, id, restartedAt);
  });

  it('after a clean restart, the same', async (t) => {
    const server = await startServer(t, { kind: 'etcd-ts' });
    const { id, restartedAt } = await grantThenRestart(server, false, (TTL_SEC - 2) * 1000);
    await checkSurvivesThenExpires(server, id, restartedAt);
  });
});
