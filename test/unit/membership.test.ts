// The members etcd-ts keeps (etcd `membership.RaftCluster`): this member and at most one
// learner, listed by ID, with etcd's refusals; a learner whose peer URLs change stays a learner.
// The same against the real etcd: test/compat/kv.compat.test.ts, "a learner member".
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../src/mvcc/backend.js';
import { Membership } from '../../src/server/membership.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function open(): Membership {
  const dir = mkdtempSync(join(tmpdir(), 'membership-'));
  dirs.push(dir);
  return new Membership(Backend.open(dir), 0x8e9e05c52164694dn, ['http://localhost:2380']);
}

const learner = (id: bigint, url: string) => ({ id, peerUrls: [url], isLearner: true });

describe('Membership', () => {
  it('lists this member and its learner by ID', () => {
    const m = open();
    m.addLearner(learner(0x1n, 'http://a:1'));
    assert.deepEqual(m.members().map((x) => [x.id, x.isLearner]), [[0x1n, true], [0x8e9e05c52164694dn, false]]);
  });

  it("refuses a second learner, a taken ID and another member's peer URL", () => {
    const m = open();
    m.addLearner(learner(0x1n, 'http://a:1'));
    assert.throws(() => m.addLearner(learner(0x1n, 'http://b:1')), /member ID already exist/);
    assert.throws(() => m.addLearner(learner(0x2n, 'http://a:1')), /Peer URLs already exists/);
    assert.throws(() => m.addLearner(learner(0x2n, 'http://b:1')), /too many learner members in cluster/);
    assert.throws(() => m.updatePeerUrls(0x8e9e05c52164694dn, ['http://a:1']), /Peer URLs already exists/);
    assert.equal(m.members().length, 2);
  });

  it('keeps a learner a learner when its peer URLs change, and lets it go for good', () => {
    const m = open();
    m.addLearner(learner(0x1n, 'http://a:1'));
    m.updatePeerUrls(0x1n, ['http://a:2']);
    assert.deepEqual(m.member(0x1n), { id: 0x1n, peerUrls: ['http://a:2'], isLearner: true });
    m.updatePeerUrls(0x8e9e05c52164694dn, ['http://localhost:2380', 'http://a:1']);
    assert.deepEqual(m.selfPeerUrls, ['http://localhost:2380', 'http://a:1']);
    m.removeLearner(0x1n);
    assert.throws(() => m.removeLearner(0x1n), /member not found/);
    // etcd's ErrIDRemoved: a removed ID cannot come back.
    assert.throws(() => m.addLearner(learner(0x1n, 'http://c:1')), /member not found/);
    assert.throws(() => m.validateAdd({ id: 0x1n, peerUrls: ['http://c:1'], isLearner: false }), /member not found/);
    assert.throws(() => m.updatePeerUrls(0x1n, ['http://a:3']), /member not found/);
    assert.deepEqual(m.members().map((x) => x.id), [0x8e9e05c52164694dn]);
  });
});
