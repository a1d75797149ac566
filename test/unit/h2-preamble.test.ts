// The per-connection choice between the native socket path and the authority fixer
// (src/server/h2-preamble.ts): what is replayed into the session, what is dropped, what is
// answered, and when the verdict comes, for the frame orders of grpc-go and nghttp2 clients.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EMPTY_SETTINGS, H2Preamble, PreambleError, type PreambleVerdict } from '../../src/server/h2-preamble.js';
import { PREFACE, frame, literalBlock } from '../helpers/h2-frames.js';

const block = (headers: [string, string][]): Buffer => literalBlock(headers, false);

const CLIENT_SETTINGS = frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0x40, 0])); // INITIAL_WINDOW_SIZE
const SETTINGS_ACK = frame(4, 1, 0);
const WINDOW_UPDATE = frame(8, 0, 0, Buffer.from([0, 0, 0x10, 0]));
const headers = (authority: string, flags = 4): Buffer =>
  frame(1, flags, 1, block([[':method', 'POST'], [':path', '/etcdserverpb.KV/Range'], [':authority', authority], ['content-type', 'application/grpc']]));
const DATA = frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]));

/** Feeds `chunks`, returning the verdict (with the chunk index it came at) and the replies. */
function run(chunks: Buffer[]): { verdict: PreambleVerdict | undefined; at: number; replies: Buffer[] } {
  const replies: Buffer[] = [];
  const p = new H2Preamble((b) => replies.push(Buffer.from(b)));
  for (let i = 0; i < chunks.length; i++) {
    const verdict = p.feed(chunks[i]!);
    if (verdict) return { verdict, at: i, replies };
  }
  return { verdict: undefined, at: -1, replies };
}

/** Every byte of `b` as its own chunk. */
const bytewise = (b: Buffer): Buffer[] => [...b].map((x) => Buffer.from([x]));

test('the server preface is an empty SETTINGS frame', () => {
  assert.deepEqual(EMPTY_SETTINGS, frame(4, 0, 0));
});

test('grpc-go order (ACK before the first request): native, the ACK dropped, everything else replayed', () => {
  const input = Buffer.concat([PREFACE, CLIENT_SETTINGS, WINDOW_UPDATE, SETTINGS_ACK, headers('127.0.0.1:2379'), DATA]);
  const whole = run([input]);
  assert.equal(whole.verdict?.path, 'native');
  assert.deepEqual(whole.verdict.replay, Buffer.concat([PREFACE, CLIENT_SETTINGS, WINDOW_UPDATE, headers('127.0.0.1:2379'), DATA]));
  // Byte by byte, the verdict comes with the request's last byte; later bytes stay in the socket.
  const split = run(bytewise(input));
  assert.equal(split.verdict?.path, 'native');
  assert.deepEqual(split.verdict.replay, Buffer.concat([PREFACE, CLIENT_SETTINGS, WINDOW_UPDATE, headers('127.0.0.1:2379')]));
});

test('nghttp2 order (request before the ACK): no verdict until the ACK, then the request and what followed are replayed', () => {
  const { verdict, at } = run([Buffer.concat([PREFACE, CLIENT_SETTINGS, headers('localhost:2379')]), DATA, SETTINGS_ACK]);
  assert.equal(at, 2, 'the verdict waits for the ACK');
  assert.equal(verdict?.path, 'native');
  assert.deepEqual(verdict.replay, Buffer.concat([PREFACE, CLIENT_SETTINGS, headers('localhost:2379'), DATA]));
});

test("etcdctl's URL authority and clientv3 3.5's #initially authority take the fixer's path", () => {
  for (const authority of ['http://127.0.0.1:2379', '#initially=[http://127.0.0.1:2379]']) {
    const { verdict } = run([Buffer.concat([PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, headers(authority)])]);
    assert.equal(verdict?.path, 'fixed', authority);
    assert.deepEqual(verdict.replay, Buffer.concat([PREFACE, CLIENT_SETTINGS, headers(authority)]));
  }
});

test('a header block continued in CONTINUATION frames is read whole', () => {
  const b = block([[':path', '/etcdserverpb.KV/Put'], [':authority', 'http://x:1']]);
  const first = frame(1, 0, 1, b.subarray(0, 10));
  const rest = frame(9, 4, 1, b.subarray(10));
  const partial = run([Buffer.concat([PREFACE, SETTINGS_ACK, first])]);
  assert.equal(partial.verdict, undefined, 'no verdict before END_HEADERS');
  const { verdict } = run([Buffer.concat([PREFACE, SETTINGS_ACK, first, rest])]);
  assert.equal(verdict?.path, 'fixed');
  assert.deepEqual(verdict.replay, Buffer.concat([PREFACE, first, rest]));
});

test('PINGs before the first request are answered here and not replayed; a second SETTINGS ACK is replayed', () => {
  const ping = frame(6, 0, 0, Buffer.from('12345678'));
  const { verdict, replies } = run([Buffer.concat([PREFACE, CLIENT_SETTINGS, ping, SETTINGS_ACK, SETTINGS_ACK, headers('h:1')])]);
  assert.deepEqual(replies, [frame(6, 1, 0, Buffer.from('12345678'))]);
  assert.deepEqual(verdict?.replay, Buffer.concat([PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, headers('h:1')]));
});

test('the verdict says whether the first request is a gRPC call, by content-type as etcd decides', () => {
  const request = (contentType: string | undefined): PreambleVerdict | undefined => {
    const fields: [string, string][] = [[':method', 'GET'], [':path', '/health'], [':authority', '127.0.0.1:2379']];
    if (contentType !== undefined) fields.push(['content-type', contentType]);
    return run([Buffer.concat([PREFACE, SETTINGS_ACK, frame(1, 4, 1, block(fields))])]).verdict;
  };
  assert.equal(request('application/grpc')?.grpc, true);
  assert.equal(request('application/grpc+proto')?.grpc, true);
  assert.equal(request(undefined)?.grpc, false, 'curl https://…/health over HTTP/2');
  assert.equal(request('application/json')?.grpc, false);
  assert.equal(request(undefined)?.path, 'native', 'the authority check is unchanged');
});

test('a client that sends megabytes without a request is refused', () => {
  const p = new H2Preamble(() => {});
  p.feed(Buffer.concat([PREFACE, CLIENT_SETTINGS]));
  const big = frame(0, 0, 1, Buffer.alloc(16_000));
  assert.throws(() => {
    for (let i = 0; i < 300; i++) p.feed(big);
  }, PreambleError);
});
