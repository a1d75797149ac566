// --experimental-warning-apply-duration: writes applied and reads served in more than that
// many ms count in etcd_server_slow_apply_total (etcd `warnOfExpensiveGenericRequest`).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EmbeddedServer, Kv } from '../helpers/watch-client.js';

async function slowApplies(srv: EmbeddedServer): Promise<number> {
  const text = await (await fetch(`${srv.server.clientUrls[0]}/metrics`)).text();
  return Number(/^etcd_server_slow_apply_total (\S+)$/m.exec(text)![1]);
}

/** A put, a range and a delete against `srv`. */
async function requests(srv: EmbeddedServer): Promise<void> {
  const kv = new Kv(srv.target);
  try {
    await kv.put('slow', 'v');
    await kv.get('slow');
    await kv.del('slow');
  } finally {
    kv.close();
  }
}

describe('slow applies', () => {
  it('none under the 100 ms default; every request when the limit is below any duration', async () => {
    const fast = await EmbeddedServer.start();
    try {
      await requests(fast);
      assert.equal(await slowApplies(fast), 0);
    } finally {
      await fast.stop();
    }
    const strict = await EmbeddedServer.start({ warningApplyDurationMs: -1 });
    try {
      await requests(strict);
      assert.equal(await slowApplies(strict), 3, 'the put, the range and the delete');
    } finally {
      await strict.stop();
    }
  });
});
