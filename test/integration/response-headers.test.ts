// The header revision of requests that are answered once durable (Compact, LeaseGrant,
// LeaseRevoke, auth requests) is the revision at which they were applied, as etcd's
// `newHeader` at apply gives it: not a later write queued while they waited for the disk, which
// a reader may not see yet. Found by a fault-injection hunt (session 25): a read at a Compact's
// header revision was refused as a future revision.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PutRequest, RangeRequest } from '../../src/proto/gen/rpc.gen.js';
import type { RunningServer } from '../../src/server/embed.js';
import { EmbeddedServer } from '../helpers/watch-client.js';

const putReq = (key: string, lease = 0n): PutRequest => ({ key: Buffer.from(key), value: Buffer.from('v'), lease, prevKv: false, ignoreValue: false, ignoreLease: false });
const rangeReq = (key: string, revision: bigint): RangeRequest => ({
  key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision, sortOrder: 0, sortTarget: 0, serializable: false,
  keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
});

describe('header revisions of requests answered once durable', () => {
  let embedded: EmbeddedServer;
  let server: RunningServer;

  before(async () => {
    embedded = await EmbeddedServer.start();
    server = embedded.server;
  });
  after(async () => {
    await embedded.stop();
  });

  it('Compact: the revision at apply, readable when it answers, though puts queued after it are not durable yet', async () => {
    const etcd = server.etcd;
    const { header: before } = await etcd.put(putReq('c/a'));
    const compacting = etcd.compact({ revision: before!.revision, physical: false });
    const later = [etcd.put(putReq('c/b')), etcd.put(putReq('c/c'))];
    const { header } = await compacting;
    assert.equal(header!.revision, before!.revision);
    assert.equal(etcd.range(rangeReq('c/a', header!.revision)).kvs.length, 1, 'readable at the header revision');
    await Promise.all(later);
  });

  it('LeaseGrant and LeaseRevoke: the revision at apply (the revoke\'s is its deletes\'), not later writes made durable with them', async () => {
    const etcd = server.etcd;
    const { header: start } = await etcd.put(putReq('l/x'));
    const granting = etcd.leaseGrant({ TTL: 60n, ID: 0n });
    const afterGrant = etcd.put(putReq('l/y'));
    const grant = await granting;
    assert.equal(grant.header!.revision, start!.revision);
    const { header: attached } = await etcd.put(putReq('l/leased', grant.ID));
    await afterGrant;
    const revoking = etcd.leaseRevoke({ ID: grant.ID });
    const afterRevoke = [etcd.put(putReq('l/z')), etcd.put(putReq('l/w'))];
    const { header } = await revoking;
    assert.equal(header!.revision, attached!.revision + 1n, 'the revision of the lease key\'s delete');
    await Promise.all(afterRevoke);
  });
});
