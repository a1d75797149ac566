// Txn semantics of src/server/apply.ts (etcd `applierV3backend.Txn`, `applyCompare`,
// `checkTxnRequest`, `checkIntervals`) against a real KVStore on a temp dir: compares of every
// target and result, missing keys, compares over ranges, nested txns, branch choice, the single
// main revision of a txn with its sub revisions, reads of the txn's own writes, and validation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../src/mvcc/backend.js';
import { KVStore } from '../../src/mvcc/kv-store.js';
import { bytesToRev, isTombstone } from '../../src/mvcc/revision.js';
import { applyTxn, checkTxn, isTxnReadonly } from '../../src/server/apply.js';
import { EtcdError } from '../../src/server/errors.js';
import {
  Compare_CompareResult as R,
  Compare_CompareTarget as T,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type Compare,
  type RangeResponse,
  type RequestOp,
  type TxnRequest,
  type TxnResponse,
} from '../../src/proto/gen/rpc.gen.js';
import type { KeyValue } from '../../src/proto/gen/kv.gen.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- request builders (the generated code has no fromPartial) ----

function rangeOp(key: string, rangeEnd = '', revision = 0n): RequestOp {
  return {
    requestRange: {
      key: b(key), rangeEnd: b(rangeEnd), limit: 0n, revision, sortOrder: RangeRequest_SortOrder.NONE,
      sortTarget: RangeRequest_SortTarget.KEY, serializable: false, keysOnly: false, countOnly: false,
      minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
    },
  };
}
function putOp(key: string, value: string, lease = 0n): RequestOp {
  return { requestPut: { key: b(key), value: b(value), lease, prevKv: false, ignoreValue: false, ignoreLease: false } };
}
function delOp(key: string, rangeEnd = ''): RequestOp {
  return { requestDeleteRange: { key: b(key), rangeEnd: b(rangeEnd), prevKv: false } };
}
function txnOp(r: TxnRequest): RequestOp {
  return { requestTxn: r };
}
function txn(compare: Compare[], success: RequestOp[], failure: RequestOp[] = []): TxnRequest {
  return { compare, success, failure };
}

type Target = 'value' | 'version' | 'create' | 'mod' | 'lease';
const TARGETS: Record<Target, T> = { value: T.VALUE, version: T.VERSION, create: T.CREATE, mod: T.MOD, lease: T.LEASE };
const RESULTS = { '=': R.EQUAL, '!=': R.NOT_EQUAL, '>': R.GREATER, '<': R.LESS } as const;

/** A compare `target(key[, rangeEnd]) op operand`, as etcdctl's `txn` writes them. */
function cmp(target: Target, key: string, op: keyof typeof RESULTS, operand: string | bigint, rangeEnd = ''): Compare {
  const c: Compare = { result: RESULTS[op], target: TARGETS[target], key: b(key), rangeEnd: b(rangeEnd) };
  switch (target) {
    case 'value': c.value = b(String(operand)); break;
    case 'version': c.version = BigInt(operand); break;
    case 'create': c.createRevision = BigInt(operand); break;
    case 'mod': c.modRevision = BigInt(operand); break;
    case 'lease': c.lease = BigInt(operand); break;
  }
  return c;
}

/** The message of the EtcdError `fn` throws. */
function etcdErrorOf(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EtcdError, `expected an EtcdError, got ${String(err)}`);
    return err.details;
  }
  assert.fail('expected an error');
}

const TOO_MANY = 'etcdserver: too many operations in txn request';
const DUPLICATE = 'etcdserver: duplicate key given in txn request';

describe('txn compare semantics (apply.ts on a KVStore)', () => {
  let dir: string;
  let store: KVStore;
  /** Leases that "exist" for the store (a stand-in lessor). */
  const leases = new Set<bigint>([7n, 9n]);
  const attached = new Map<string, bigint>();

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'txn-compare-'));
    store = new KVStore(Backend.open(dir));
    store.leases = {
      exists: (id) => leases.has(id),
      attach: (id, key) => { attached.set(key, id); },
      detach: (_id, key) => { attached.delete(key); },
      leaseOf: (key) => attached.get(key) ?? 0n,
    };
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a txn the way EtcdServer.txn does: validation, then a read view or a write txn, then durability. */
  async function run(r: TxnRequest): Promise<TxnResponse> {
    checkTxn(r, 128);
    const exists = (id: bigint): boolean => leases.has(id);
    if (isTxnReadonly(r)) {
      const view = store.read();
      try {
        return applyTxn(view, undefined, r, exists);
      } finally {
        view.end();
      }
    }
    const w = store.beginWrite();
    const view = store.readWithin(w);
    try {
      return applyTxn(view, w, r, exists);
    } finally {
      view.end();
      await w.end();
    }
  }

  /** Puts key=value in its own transaction; returns the revision. */
  async function put(key: string, value: string, lease = 0n): Promise<number> {
    const resp = await run(txn([], [putOp(key, value, lease)]));
    return Number(resp.header!.revision);
  }

  /** The latest KeyValue of a key, or undefined. */
  function get(key: string): KeyValue | undefined {
    return store.read().range(key, undefined).kvs[0];
  }

  /** True when the compares hold: runs a read-only txn and reads `succeeded`. */
  async function holds(...compare: Compare[]): Promise<boolean> {
    const resp = await run(txn(compare, [], []));
    return resp.succeeded;
  }

  // State used by the compare tests: c/a (version 2, lease 7), c/b (version 1), c/c (deleted).
  let aCreate = 0;
  let aMod = 0;
  let bMod = 0;
  before(async () => {
    aCreate = await put('c/a', 'apple');
    aMod = await put('c/a', 'avocado', 7n);
    bMod = await put('c/b', 'banana');
    await put('c/c', 'cherry');
    await run(txn([], [delOp('c/c')]));
  });

  it('VALUE compares bytes with =, !=, >, <', async () => {
    assert.equal(await holds(cmp('value', 'c/a', '=', 'avocado')), true);
    assert.equal(await holds(cmp('value', 'c/a', '=', 'apple')), false);
    assert.equal(await holds(cmp('value', 'c/a', '!=', 'apple')), true);
    assert.equal(await holds(cmp('value', 'c/a', '!=', 'avocado')), false);
    assert.equal(await holds(cmp('value', 'c/a', '>', 'apple')), true);
    assert.equal(await holds(cmp('value', 'c/a', '>', 'b')), false);
    assert.equal(await holds(cmp('value', 'c/a', '<', 'b')), true);
    assert.equal(await holds(cmp('value', 'c/a', '<', 'avocado')), false);
    // Bytes, not UTF-16 or locale: 0xff sorts after every ASCII byte.
    assert.equal(await holds(cmp('value', 'c/a', '<', '\xff')), true);
  });

  it('VERSION, CREATE, MOD and LEASE compare numbers with =, !=, >, <', async () => {
    const cases: [Target, bigint][] = [['version', 2n], ['create', BigInt(aCreate)], ['mod', BigInt(aMod)], ['lease', 7n]];
    for (const [target, actual] of cases) {
      assert.equal(await holds(cmp(target, 'c/a', '=', actual)), true, `${target} = actual`);
      assert.equal(await holds(cmp(target, 'c/a', '=', actual + 1n)), false, `${target} = actual+1`);
      assert.equal(await holds(cmp(target, 'c/a', '!=', actual + 1n)), true, `${target} != actual+1`);
      assert.equal(await holds(cmp(target, 'c/a', '!=', actual)), false, `${target} != actual`);
      assert.equal(await holds(cmp(target, 'c/a', '>', actual - 1n)), true, `${target} > actual-1`);
      assert.equal(await holds(cmp(target, 'c/a', '>', actual)), false, `${target} > actual`);
      assert.equal(await holds(cmp(target, 'c/a', '<', actual + 1n)), true, `${target} < actual+1`);
      assert.equal(await holds(cmp(target, 'c/a', '<', actual)), false, `${target} < actual`);
    }
    // c/b has no lease: LEASE compares as 0.
    assert.equal(await holds(cmp('lease', 'c/b', '=', 0n)), true);
  });

  it('a VALUE compare on a missing or deleted key is always false', async () => {
    for (const key of ['c/missing', 'c/c']) {
      for (const op of ['=', '!=', '>', '<'] as const) {
        assert.equal(await holds(cmp('value', key, op, '')), false, `value(${key}) ${op} ""`);
        assert.equal(await holds(cmp('value', key, op, 'x')), false, `value(${key}) ${op} "x"`);
      }
    }
  });

  it('other targets compare a missing or deleted key as 0', async () => {
    for (const key of ['c/missing', 'c/c']) {
      for (const target of ['version', 'create', 'mod', 'lease'] as const) {
        assert.equal(await holds(cmp(target, key, '=', 0n)), true, `${target}(${key}) = 0`);
        assert.equal(await holds(cmp(target, key, '<', 1n)), true, `${target}(${key}) < 1`);
        assert.equal(await holds(cmp(target, key, '>', 0n)), false, `${target}(${key}) > 0`);
        assert.equal(await holds(cmp(target, key, '!=', 0n)), false, `${target}(${key}) != 0`);
      }
    }
  });

  it('a compare over a range holds only when every key in it satisfies it', async () => {
    // c/a version 2, c/b version 1 (c/c deleted: not in the range).
    assert.equal(await holds(cmp('version', 'c/', '>', 0n, 'c0')), true);
    assert.equal(await holds(cmp('version', 'c/', '=', 1n, 'c0')), false);
    assert.equal(await holds(cmp('version', 'c/', '<', 3n, 'c0')), true);
    assert.equal(await holds(cmp('mod', 'c/', '<', BigInt(bMod + 1), 'c0')), true);
    assert.equal(await holds(cmp('mod', 'c/', '<', BigInt(bMod), 'c0')), false);
    assert.equal(await holds(cmp('value', 'c/', '>', 'a', 'c0')), true);
    assert.equal(await holds(cmp('value', 'c/', '=', 'avocado', 'c0')), false);
    // From-key ("\0" end) covers c/a and c/b, and nothing after them exists but keys written later by other tests.
    assert.equal(await holds(cmp('version', 'c/a', '>', 0n, '\0')), true);
    // An empty range: no keys, so VALUE fails and VERSION compares as 0.
    assert.equal(await holds(cmp('value', 'd/', '!=', 'x', 'd0')), false);
    assert.equal(await holds(cmp('version', 'd/', '=', 0n, 'd0')), true);
  });

  it('all compares must hold: one false compare takes the failure branch', async () => {
    const resp = await run(txn(
      [cmp('value', 'c/a', '=', 'avocado'), cmp('version', 'c/b', '=', 5n)],
      [rangeOp('c/a')],
      [rangeOp('c/b')],
    ));
    assert.equal(resp.succeeded, false);
    assert.equal(resp.responses.length, 1);
    assert.equal(resp.responses[0]!.responseRange!.kvs[0]!.value.toString(), 'banana');
  });

  it('the success branch runs its ops in order and the failure branch is skipped', async () => {
    const before = store.publishedRev;
    const resp = await run(txn([cmp('value', 'c/a', '=', 'avocado')], [putOp('s/1', 'one'), rangeOp('c/b')], [putOp('s/never', 'x')]));
    assert.equal(resp.succeeded, true);
    assert.equal(Number(resp.header!.revision), before + 1);
    assert.ok(resp.responses[0]!.responsePut);
    assert.equal(resp.responses[1]!.responseRange!.kvs[0]!.value.toString(), 'banana');
    assert.equal(get('s/1')?.value.toString(), 'one');
    assert.equal(get('s/never'), undefined);

    const resp2 = await run(txn([cmp('value', 'c/a', '=', 'nope')], [putOp('s/never', 'x')], [putOp('s/2', 'two')]));
    assert.equal(resp2.succeeded, false);
    assert.equal(get('s/never'), undefined);
    assert.equal(get('s/2')?.value.toString(), 'two');
  });

  it('a txn gets one main revision; its changes get sub revisions 0, 1, 2… in op order', async () => {
    const head = store.headRev;
    const resp = await run(txn([], [putOp('m/x', '1'), putOp('m/y', '2'), delOp('s/1'), putOp('m/z', '3')]));
    const rev = head + 1;
    assert.equal(Number(resp.header!.revision), rev);
    assert.equal(store.headRev, rev);
    assert.equal(store.publishedRev, rev, 'published once durable');
    for (const k of ['m/x', 'm/y', 'm/z']) assert.equal(Number(get(k)!.modRevision), rev, `${k} mod_revision`);
    // The backend holds exactly four records at this main revision, subs 0..3, the delete marked.
    const records = [...store.backend.range('key')].filter(({ key }) => bytesToRev(key).main === rev);
    assert.deepEqual(records.map(({ key }) => [bytesToRev(key).sub, isTombstone(key)]), [[0, false], [1, false], [2, true], [3, false]]);
    // Every put's response header carries the txn's revision.
    for (const i of [0, 1, 3]) assert.equal(Number(resp.responses[i]!.responsePut!.header!.revision), rev);
    assert.equal(resp.responses[2]!.responseDeleteRange!.deleted, 1n);
  });

  it('a txn that changes nothing does not move the revision', async () => {
    const head = store.headRev;
    const resp = await run(txn([cmp('version', 'c/a', '=', 99n)], [putOp('n/x', '1')], [delOp('n/nothing-here')]));
    assert.equal(resp.succeeded, false);
    assert.equal(store.headRev, head);
    assert.equal(Number(resp.header!.revision), head);
  });

  it('reads inside a txn see the txn\'s own earlier writes and deletes', async () => {
    await put('r/k', 'old');
    const head = store.headRev;
    const resp = await run(txn([], [
      rangeOp('r/k'),
      putOp('r/k', 'new'),
      rangeOp('r/k'),
      putOp('r/j', 'jay'),
      rangeOp('r/', 'r0'),
    ]));
    const ranges = resp.responses.filter((op) => op.responseRange).map((op) => op.responseRange!);
    const show = (rr: RangeResponse): string[] => rr.kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}@${kv.modRevision}/v${kv.version}`);
    const rev = head + 1;
    assert.deepEqual(show(ranges[0]!), [`r/k=old@${head}/v1`]);
    assert.deepEqual(show(ranges[1]!), [`r/k=new@${rev}/v2`]);
    assert.deepEqual(show(ranges[2]!), [`r/j=jay@${rev}/v1`, `r/k=new@${rev}/v2`]);
    // A delete and a later read in one txn (a put and a delete of one key would be a duplicate).
    const del = await run(txn([], [delOp('r/k'), rangeOp('r/', 'r0'), rangeOp('r/k')]));
    assert.deepEqual(show(del.responses[1]!.responseRange!), [`r/j=jay@${rev}/v1`]);
    assert.equal(del.responses[2]!.responseRange!.kvs.length, 0);
    assert.equal(Number(del.responses[1]!.responseRange!.header!.revision), rev + 1);
    // The range after a write reports the txn's revision in its header, the one before it the old head.
    assert.equal(Number(ranges[0]!.header!.revision), head);
    assert.equal(Number(ranges[1]!.header!.revision), rev);
  });

  it('nested txns: inner compares are decided against the state before the txn', async () => {
    await put('n/flag', 'off');
    // The outer success sets flag=on, then a nested txn compares flag = off: etcd decides every
    // branch before applying, so the nested compare still sees "off" and takes its success.
    const resp = await run(txn(
      [cmp('value', 'n/flag', '=', 'off')],
      [putOp('n/flag', 'on'), txnOp(txn([cmp('value', 'n/flag', '=', 'off')], [putOp('n/inner', 'then')], [putOp('n/inner', 'else')]))],
      [putOp('n/outer-failed', 'x')],
    ));
    assert.equal(resp.succeeded, true);
    const nested = resp.responses[1]!.responseTxn!;
    assert.equal(nested.succeeded, true);
    assert.equal(Number(nested.header!.revision), 0, 'etcd leaves a nested txn header empty');
    assert.equal(get('n/flag')?.value.toString(), 'on');
    assert.equal(get('n/inner')?.value.toString(), 'then');
    assert.equal(get('n/outer-failed'), undefined);
    assert.equal(get('n/inner')!.modRevision, get('n/flag')!.modRevision, 'nested writes share the outer revision');
  });

  it('nested txns: the failure branch of a nested txn and txns nested two deep', async () => {
    const resp = await run(txn([], [
      txnOp(txn([cmp('version', 'n/flag', '=', 100n)], [putOp('n/d1', 'then')], [
        putOp('n/d1', 'else'),
        txnOp(txn([cmp('create', 'n/missing', '=', 0n)], [putOp('n/d2', 'deep')])),
      ])),
      txnOp(txn([cmp('value', 'n/flag', '=', 'on')], [rangeOp('n/d1')])),
    ]));
    const first = resp.responses[0]!.responseTxn!;
    assert.equal(first.succeeded, false);
    assert.equal(first.responses[1]!.responseTxn!.succeeded, true);
    const second = resp.responses[1]!.responseTxn!;
    assert.equal(second.succeeded, true);
    // The later nested range sees the earlier nested put of the same txn.
    assert.equal(second.responses[0]!.responseRange!.kvs[0]!.value.toString(), 'else');
    assert.equal(get('n/d1')?.value.toString(), 'else');
    assert.equal(get('n/d2')?.value.toString(), 'deep');
  });

  it('a compare on a key written by an earlier txn sees it (txns are serialized)', async () => {
    const rev = await put('o/k', 'v1');
    const resp = await run(txn([cmp('mod', 'o/k', '=', BigInt(rev))], [putOp('o/k', 'v2')], []));
    assert.equal(resp.succeeded, true);
    const again = await run(txn([cmp('mod', 'o/k', '=', BigInt(rev))], [putOp('o/k', 'v3')], []));
    assert.equal(again.succeeded, false, 'mod_revision moved with v2');
    assert.equal(get('o/k')?.value.toString(), 'v2');
  });

  it('a put with an unknown lease on the taken path fails the whole txn before any change', async () => {
    const head = store.headRev;
    await assert.rejects(run(txn([], [putOp('l/a', 'x'), putOp('l/b', 'y', 12345n)])), (err: unknown) =>
      err instanceof EtcdError && err.details === 'etcdserver: requested lease not found');
    assert.equal(store.headRev, head);
    assert.equal(get('l/a'), undefined);
  });

  describe('validation (checkTxn)', () => {
    it('too many ops: compares, success or failure above the limit', () => {
      const many = (n: number): RequestOp[] => Array.from({ length: n }, (_, i) => putOp(`v/${i}`, 'x'));
      assert.equal(etcdErrorOf(() => checkTxn(txn([], many(5)), 4)), TOO_MANY);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [], many(5)), 4)), TOO_MANY);
      assert.equal(etcdErrorOf(() => checkTxn(txn(Array.from({ length: 5 }, () => cmp('version', 'v', '=', 0n)), []), 4)), TOO_MANY);
      checkTxn(txn([], many(4), many(4)), 4);
      // A nested txn gets the budget left after its parent's widest list (etcd maxTxnOps-opc).
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [txnOp(txn([], many(2))), putOp('v/x', 'x')]), 3)), TOO_MANY);
      checkTxn(txn([], [txnOp(txn([], many(1))), putOp('v/x', 'x')]), 3);
    });

    it('duplicate keys: a key put twice, or put and deleted, in one branch', () => {
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [putOp('k', '1'), putOp('k', '2')]), 128)), DUPLICATE);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [], [putOp('k', '1'), putOp('k', '2')]), 128)), DUPLICATE);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [delOp('k'), putOp('k', '2')]), 128)), DUPLICATE);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [putOp('k/1', '1'), delOp('k/', 'k0')]), 128)), DUPLICATE);
      // A nested put colliding with the parent's put or delete.
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [putOp('k', '1'), txnOp(txn([], [putOp('k', '2')]))]), 128)), DUPLICATE);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [delOp('k'), txnOp(txn([], [], [putOp('k', '2')]))]), 128)), DUPLICATE);
    });

    it('not duplicates: the same key in success and failure, in a nested then and else, twice deleted, put and read', () => {
      checkTxn(txn([], [putOp('k', '1')], [putOp('k', '2')]), 128);
      checkTxn(txn([], [txnOp(txn([], [putOp('k', '1')], [putOp('k', '2')]))]), 128);
      checkTxn(txn([], [delOp('k'), delOp('k')]), 128);
      checkTxn(txn([], [putOp('k', '1'), rangeOp('k')]), 128);
      checkTxn(txn([], [putOp('k0', '1'), delOp('k/', 'k0')]), 128);
    });

    it('empty keys in compares and ops are refused', () => {
      const empty = 'etcdserver: key is not provided';
      assert.equal(etcdErrorOf(() => checkTxn(txn([cmp('version', '', '=', 0n)], []), 128)), empty);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [putOp('', 'x')]), 128)), empty);
      assert.equal(etcdErrorOf(() => checkTxn(txn([], [], [rangeOp('')]), 128)), empty);
    });
  });
});
