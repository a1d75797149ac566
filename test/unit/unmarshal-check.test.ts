// unmarshalError against what etcd 3.4 answered: every request below was sent to a real etcd
// 3.4.23 (Debian), and each expected error is the text of its gRPC status after grpc-go's
// prefix (the accepted ones it served). test/compat/malformed.compat.test.ts keeps comparing
// the two servers live.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MESSAGES, REQUEST_TYPES } from '../../src/proto/gen/unmarshal-schema.gen.js';
import { TxnRequest, WatchRequest } from '../../src/proto/gen/rpc.gen.js';
import { checkRequest, unmarshalError } from '../../src/proto/unmarshal-check.js';

/** [request message, bytes in hex, etcd's error]. */
const ETCD_ANSWERS: [string, string, string][] = [
  ['RangeRequest', '97', 'unexpected EOF'],
  ['RangeRequest', 'c86cc09c5677c6', 'proto: illegal wireType 7'],
  ['RangeRequest', '0a016112017a0818ac02280130023801', 'proto: wrong wireType = 0 for field Key'],
  ['RangeRequest', '0a016112017a1869ac02280130023801', 'proto: RangeRequest: wiretype end group for non-group'],
  ['RangeRequest', '0a016112017a18ac022830023801', 'proto: RangeRequest: illegal tag 0 (wire type 2)'],
  ['RangeRequest', '0a016112017a18ac02289a01868d023801', 'proto: illegal wireType 6'],
  ['RangeRequest', '65016112017a18ac49', 'proto: wrong wireType = 5 for field MinCreateRevision'],
  ['DeleteRangeRequest', 'a42b6e566b0bb0e8', 'proto: DeleteRangeRequest: wiretype end group for non-group'],
  ['CompactionRequest', 'b9a981e977c50edeebc1', 'proto: CompactionRequest: illegal tag -274462057 (wire type 32164041913)'],
  ['PutRequest', '0a046b6579fc31120576616c75652001', 'proto: wrong wireType = 1 for field IgnoreLease'],
  ['PutRequest', '9704e6657931120576616c75652001', 'proto: illegal wireType 7'],
  ['LeaseTimeToLiveRequest', '2e452d3a6f29b2046a65ab', 'proto: illegal wireType 6'],
  // Errors inside nested messages name the nested message or field.
  ['TxnRequest', '0a08011a016b2005120b12090a01611202767620011a0a0a080a0161', 'proto: Compare: illegal tag 0 (wire type 1)'],
  ['TxnRequest', '0a0708011a016b442005120b12090a01611202767620011a0a0a080a01611201621803', 'proto: Compare: wiretype end group for non-group'],
  ['TxnRequest', '0a0708011a016b2005120b120901611202767620011a0a0a080a01611201621803', 'proto: PutRequest: illegal tag 0 (wire type 1)'],
  ['TxnRequest', '0a0708011a016b2005120b090a01611202767620011a0a0a080a01611201621803', 'proto: wrong wireType = 1 for field RequestRange'],
  ['TxnRequest', '0a0708011a016b2005120b12090a01611202767620011a0a0a080a01614e1201621803', 'proto: wrong wireType = 6 for field CountOnly'],
  ['TxnRequest', '0a0713011a016b200512280b12090a01611202767620c1011a0a0a080a01611201621803', 'proto: wrong wireType = 3 for field Target'],
  ['TxnRequest', '0a0708011a016b2005120b12090a0161120276762001061a0a0a080ace016112', 'proto: TxnRequest: illegal tag 0 (wire type 6)'],
];

describe('unmarshalError', () => {
  for (const [type, hex, error] of ETCD_ANSWERS) {
    it(`${type} ${hex}: ${error}`, () => {
      assert.equal(unmarshalError(`etcdserverpb.${type}`, Buffer.from(hex, 'hex')), error);
    });
  }

  it('accepts unknown fields of every wire type, and packed or unpacked filters', () => {
    const range = '0a016112017a18ac02280130023801';
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from(range, 'hex')), undefined);
    const txn = '0a0708011a016b2005120b12090a01611202767620011a0a0a080a01611201621803';
    assert.equal(unmarshalError('etcdserverpb.TxnRequest', Buffer.from(txn, 'hex')), undefined);
    // Field 99 as a varint twice, 8 bytes, a length-delimited run, a group with a field inside, 4 bytes.
    const unknown = '980601980601990601020304050607089a060201029b06080a9c069d0601020304';
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from(range + unknown, 'hex')), undefined);
    // Watch creates on key "a" (a stream's messages: etcd's status names the stream's prefix).
    assert.equal(unmarshalError('etcdserverpb.WatchRequest', Buffer.from('0a070a016128002801', 'hex')), undefined, 'unpacked filters');
    assert.equal(unmarshalError('etcdserverpb.WatchRequest', Buffer.from('0a070a01612a020001', 'hex')), undefined, 'packed filters');
    assert.equal(unmarshalError('etcdserverpb.WatchRequest', Buffer.from('0a080a01612d00000000', 'hex')), 'proto: wrong wireType = 5 for field Filters');
  });

  it('reads varints and lengths as Go does: ten bytes at most, bit 63 makes a length negative', () => {
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from('0a016118ffffffffffffffffff01', 'hex')), undefined, 'a ten-byte varint');
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from('0a016118ffffffffffffffffffff01', 'hex')), 'proto: integer overflow');
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from('0affffffffffffffffff01', 'hex')), 'proto: negative length found during unmarshaling');
    assert.equal(unmarshalError('etcdserverpb.RangeRequest', Buffer.from('0a0561', 'hex')), 'unexpected EOF', 'a length past the end');
  });

  it('knows the request message of every method of every service', () => {
    for (const [path, type] of Object.entries(REQUEST_TYPES)) assert.ok(MESSAGES[type], `${path}: ${type}`);
    assert.equal(REQUEST_TYPES['/etcdserverpb.Watch/Watch'], 'etcdserverpb.WatchRequest');
    assert.equal(REQUEST_TYPES['/v3lockpb.Lock/Lock'], 'v3lockpb.LockRequest');
  });
});

describe('checkRequest: oneofs as gogo decodes them', () => {
  const hex = (h: string): Buffer => Buffer.from(h, 'hex');
  const decoded = (type: string, bytes: Buffer): Uint8Array => {
    const checked = checkRequest(type, bytes);
    assert.ok('bytes' in checked);
    return checked.bytes;
  };

  it('hands on bytes with one member of each oneof unchanged', () => {
    const txn = hex('0a0708011a016b2005120b12090a01611202767620011a0a0a080a01611201621803');
    assert.equal(decoded('etcdserverpb.TxnRequest', txn), txn);
  });

  it('keeps the last member on the wire, in nested messages too, and every other field', () => {
    const range = '0a030a016b'; // RequestOp.request_range {key: k}
    const put = '12060a016b120132'; // RequestOp.request_put {key: k, value: 2}
    // A txn: compare {key c, target VALUE, value x, then version 5}, success [range k + put k], failure [put k + range k].
    const compare = '0a0a' + '1003' + '1a0163' + '3a0178' + '2005';
    const txn = hex(`${compare}120d${range}${put}1a0d${put}${range}`);
    const got = TxnRequest.decode(decoded('etcdserverpb.TxnRequest', txn));
    assert.equal(got.compare[0]!.version, 5n);
    assert.equal(got.compare[0]!.value, undefined);
    assert.equal(got.compare[0]!.target, 3);
    assert.deepEqual(Buffer.from(got.compare[0]!.key), Buffer.from('c'));
    assert.equal(got.success[0]!.requestRange, undefined);
    assert.equal(got.success[0]!.requestPut?.value.toString(), '2');
    assert.equal(got.failure[0]!.requestPut, undefined);
    assert.equal(got.failure[0]!.requestRange?.key.toString(), 'k');
    // Nested one level deeper.
    const nested = hex(`1211220f120d${range}${put}`);
    assert.equal(TxnRequest.decode(decoded('etcdserverpb.TxnRequest', nested)).success[0]!.requestTxn!.success[0]!.requestPut?.key.toString(), 'k');
    // A WatchRequest: create, then cancel.
    assert.deepEqual(WatchRequest.decode(decoded('etcdserverpb.WatchRequest', hex('0a030a016112020805'))), { createRequest: undefined, cancelRequest: { watchId: 5n }, progressRequest: undefined });
  });
});
