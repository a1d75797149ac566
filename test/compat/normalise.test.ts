// The normalisers of test/helpers/etcdctl.ts on outputs captured from the real etcd 3.4.23:
// each hides exactly the part it names, and differences elsewhere survive.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalise, type NormaliseContext } from '../helpers/etcdctl.js';

const A: NormaliseContext = { endpoint: 'http://127.0.0.1:23791', tmpPaths: ['/tmp/compat-tmp-aaaaaa'] };
const B: NormaliseContext = { endpoint: 'http://127.0.0.1:41234', tmpPaths: ['/tmp/compat-tmp-bbbbbb'] };

/** Asserts that the two texts (from servers A and B) normalise to `expected`. */
function same(a: string, b: string, expected: string): void {
  assert.equal(normalise(a, A), expected);
  assert.equal(normalise(b, B), expected);
}

/** Asserts that the two texts still differ after normalisation. */
function differ(a: string, b: string): void {
  assert.notEqual(normalise(a, A), normalise(b, B));
}

const STATUS_JSON = (port: number, version: string, dbSize: number, raftIndex: number): string =>
  `[{"Endpoint":"http://127.0.0.1:${port}","Status":{"header":{"cluster_id":14841639068965178418,` +
  `"member_id":10276657743932975437,"revision":3,"raft_term":2},"version":"${version}","dbSize":${dbSize},` +
  `"leader":10276657743932975437,"raftIndex":${raftIndex},"raftTerm":2,"raftAppliedIndex":${raftIndex},"dbSizeInUse":16384}}]\n`;

const STATUS_TABLE = (port: number, version: string, size: string): string => [
  '+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+',
  '|        ENDPOINT        |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |',
  '+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+',
  `| http://127.0.0.1:${port} | 8e9e05c52164694d | ${version.padStart(7)} | ${size.padStart(7)} |      true |      false |         2 |          6 |                  6 |        |`,
  '+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+',
  '',
].join('\n');

const WARN = (port: number, ts: string, uuid: string, message: string): string =>
  `{"level":"warn","ts":"${ts}","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed",` +
  `"target":"endpoint://client-${uuid}/127.0.0.1:${port}","attempt":0,"error":"rpc error: code = OutOfRange desc = ${message}"}\n` +
  `Error: ${message}\n`;

describe('normalisers', () => {
  it('endpoint status: port, version and db size are hidden, the raft index is not', () => {
    const expected = STATUS_JSON(0, '', 0, 6)
      .replace('127.0.0.1:0', '<host:port>')
      .replace('"version":""', '"version":"<version>"')
      .replace('"dbSize":0', '"dbSize":"<size>"')
      .replace('"dbSizeInUse":16384', '"dbSizeInUse":"<size>"');
    same(STATUS_JSON(23791, '3.4.23', 20480, 6), STATUS_JSON(41234, '0.1.0', 32768, 6), expected);
    differ(STATUS_JSON(23791, '3.4.23', 20480, 6), STATUS_JSON(41234, '3.4.23', 20480, 7));

    same('http://127.0.0.1:23791, 8e9e05c52164694d, 3.4.23, 20 kB, true, false, 2, 6, 6, \n',
      'http://127.0.0.1:41234, 8e9e05c52164694d, 0.1.0, 1.1 MB, true, false, 2, 6, 6, \n',
      'http://<host:port>, 8e9e05c52164694d, <version>, <size>, true, false, 2, 6, 6, \n');
    differ('http://127.0.0.1:23791, 8e9e05c52164694d, 3.4.23, 20 kB, true, false, 2, 6, 6, \n',
      'http://127.0.0.1:41234, 8e9e05c52164694e, 3.4.23, 20 kB, true, false, 2, 6, 6, \n');

    const table = normalise(STATUS_TABLE(23791, '3.4.23', '20 kB'), A);
    assert.equal(normalise(STATUS_TABLE(41234, '0.1.0', '1.1 MB'), B), table);
    assert.match(table, /^\| http:\/\/<host:port> \| 8e9e05c52164694d \| <version> \| <size> \| true \| false \| 2 \| 6 \| 6 \| \|$/m);
    assert.match(table, /^\+-\+-\+-\+-\+-\+-\+-\+-\+-\+-\+$/m);
  });

  it('endpoint health: the duration is hidden, the health and the endpoint count are not', () => {
    same('http://127.0.0.1:23791 is healthy: successfully committed proposal: took = 921.591µs\n',
      'http://127.0.0.1:41234 is healthy: successfully committed proposal: took = 1.2ms\n',
      'http://<host:port> is healthy: successfully committed proposal: took = <took>\n');
    same('[{"endpoint":"http://127.0.0.1:23791","health":true,"took":"737.95µs"}]\n',
      '[{"endpoint":"http://127.0.0.1:41234","health":true,"took":"2.000001s"}]\n',
      '[{"endpoint":"http://<host:port>","health":true,"took":"<took>"}]\n');
    differ('[{"endpoint":"http://127.0.0.1:23791","health":true,"took":"737.95µs"}]\n',
      '[{"endpoint":"http://127.0.0.1:41234","health":false,"took":"737.95µs"}]\n');
    same('| http://127.0.0.1:23791 |   true | 694.783µs |       |\n',
      '| http://127.0.0.1:41234 |   true |     1.5ms |       |\n',
      '| http://<host:port> | true | <took> | |\n');
  });

  it('client warnings: timestamp and resolver UUID are hidden, the gRPC error is not', () => {
    const compacted = 'etcdserver: mvcc: required revision has been compacted';
    same(WARN(23791, '2026-11-21T22:28:59.708Z', '0f41a2f4-b5d3-4513-aeb8-84d70925dad6', compacted),
      WARN(41234, '2026-11-21T22:29:03.001Z', '8440400c-596e-47c5-ad73-4325c4b32141', compacted),
      WARN(0, '<ts>', '<uuid>', compacted).replace('127.0.0.1:0', '<host:port>'));
    differ(WARN(23791, '2026-11-21T22:28:59.708Z', '0f41a2f4-b5d3-4513-aeb8-84d70925dad6', compacted),
      WARN(41234, '2026-11-21T22:28:59.708Z', '0f41a2f4-b5d3-4513-aeb8-84d70925dad6', 'etcdserver: mvcc: required revision is a future revision'));
  });

  it('snapshot save: temp path, size, epoch timestamps and durations are hidden', () => {
    const log = (dir: string, port: number, ts: string, size: string, took: string): string =>
      `{"level":"info","ts":${ts},"caller":"snapshot/v3_snapshot.go:142","msg":"fetched snapshot",` +
      `"endpoint":"http://127.0.0.1:${port}","size":"${size}","took":${took}}\n` +
      `{"level":"info","ts":${ts},"caller":"snapshot/v3_snapshot.go:152","msg":"saved","path":"${dir}/snap.db"}\n`;
    same(log(A.tmpPaths[0] ?? '', 23791, '1795300163.7382827', '20 kB', '0.002385747'),
      log(B.tmpPaths[0] ?? '', 41234, '1795300170.1', '1.1 MB', '1.5e-05'),
      log('<tmp>', 0, '"<ts>"', '<size>', '"<took>"').replace('127.0.0.1:0', '<host:port>'));
  });

  it('KV output is never touched', () => {
    const get = '{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":3,"raft_term":2},' +
      '"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFyMg=="}],"count":1}\n';
    assert.equal(normalise(get, A), get);
    differ(get, get.replace('"version":2', '"version":3'));
    // Values that look like sizes or versions are only normalised inside endpoint status rows.
    assert.equal(normalise('foo\n20 kB\n3.4.23\n', A), 'foo\n20 kB\n3.4.23\n');
  });
});
