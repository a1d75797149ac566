// The gRPC gateway's JSON API (`POST /v3/...` on the client port) against a real etcd 3.4: the
// same HTTP requests, in the same order, to a fresh etcd and a fresh etcd-ts, and the answers
// compared — status, headers (but Date and the connection headers, which Go and Node write
// differently), trailers and body. Bodies differ only in the member's own IDs and an auth
// token's random part, which are normalised. Covers the KV, lease, lock, election and auth
// routes, grpc-gateway's decoding errors, routing (405, 404, redirects, /v3beta, OPTIONS),
// Grpc-Timeout, and the streaming routes (watch, lease keepalive) line by line.
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { hideMemberIds } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** One HTTP request of a scenario; `lines` makes it a stream read until that many lines arrived. */
interface Step {
  method?: string;
  path: string;
  /** A string is sent as UTF-8; a Buffer as its bytes. */
  body?: string | Buffer;
  headers?: Record<string, string>;
  lines?: number;
  /** Requests made (in order, each answered) once the stream's first line arrived. */
  during?: Step[];
}

/** What a server answered to a step, normalised for comparison. */
interface Answer {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: string;
  /** The answers to the step's `during` requests. */
  during?: Answer[];
}

/** Headers left out of the comparison: Go writes no Connection / Keep-Alive for HTTP/1.1. */
const UNCOMPARED = new Set(['date', 'connection', 'keep-alive']);

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Replaces what differs between two servers by nature: member and cluster IDs, auth tokens. */
function normaliseBody(body: string): string {
  return hideMemberIds(body).replace(/"token":"[A-Za-z]{16}\.\d+"/g, '"token":"<token>"');
}

/** Sends `step` to `server` and reads its answer (a stream until `lines` lines arrived). */
function send(server: ServerHandle, step: Step): Promise<Answer> {
  const { hostname, port } = new URL(server.endpoint);
  return new Promise<Answer>((resolve, reject) => {
    // The path goes out as written (`//x` included).
    const req = http.request({ hostname, port, path: step.path, method: step.method ?? 'POST', headers: step.headers, agent: false }, (res) => {
      res.setEncoding('utf8');
      let body = '';
      let done = false;
      let during: Promise<Answer[]> | undefined;
      const finish = (): void => {
        if (done) return;
        done = true;
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(res.headers)) {
          if (!UNCOMPARED.has(name)) headers[name] = String(value);
        }
        // Content-Length follows the body, whose IDs may differ in length; compare its presence.
        if ('content-length' in headers) {
          if (step.method !== 'HEAD') assert.equal(Number(headers['content-length']), Buffer.byteLength(body), `${step.path}: content-length`);
          headers['content-length'] = '<n>';
        }
        const answer: Answer = { status: res.statusCode ?? 0, headers, trailers: Object.fromEntries(Object.entries(res.trailers).map(([k, v]) => [k, String(v)])), body: normaliseBody(body) };
        if (!during) return resolve(answer);
        during.then((d) => resolve({ ...answer, during: d }), reject);
      };
      res.on('data', (chunk: string) => {
        body += chunk;
        if (step.lines === undefined) return;
        const lines = body.split('\n').length - 1;
        if (lines >= 1 && !during && step.during) during = sendAll(server, step.during);
        if (lines >= step.lines) {
          finish();
          req.destroy();
        }
      });
      res.on('end', finish);
      res.on('error', finish);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (step.lines !== undefined) return;
      // A connection closed without an answer (a panic in Go's handler) is an answer too.
      if (err.code === 'ECONNRESET') resolve({ status: 0, headers: {}, trailers: {}, body: 'connection closed without an answer' });
      else reject(err);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${step.path}: no answer in 10 s`)));
    req.end(step.body);
  });
}

/** Sends `steps` to `server` one after another; their answers in order. */
async function sendAll(server: ServerHandle, steps: readonly Step[]): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const step of steps) answers.push(await send(server, step));
  return answers;
}

/**
 * Runs `steps` on a fresh etcd and a fresh etcd-ts (both started with `flags`) and asserts the
 * answers are the same, step by step.
 */
async function compare(t: { after(fn: () => Promise<void>): void }, steps: readonly Step[], flags: string[] = []): Promise<Answer[]> {
  const servers = await Promise.all([startServer(t, { kind: 'etcd', flags }), startServer(t, { kind: 'etcd-ts', flags })]);
  const etcd = await sendAll(servers[0]!, steps);
  const ours = await sendAll(servers[1]!, steps);
  steps.forEach((step, i) => {
    assert.deepEqual(ours[i], etcd[i], `step ${i}: ${step.method ?? 'POST'} ${step.path} ${step.body?.toString() ?? ''}`);
  });
  return etcd;
}

/** The token `user` gets from `server`'s gateway. */
async function authToken(server: ServerHandle, user: string, password: string): Promise<string> {
  const res = await fetch(new URL('/v3/auth/authenticate', server.endpoint), { method: 'POST', body: JSON.stringify({ name: user, password }) });
  return ((await res.json()) as { token: string }).token;
}

const post = (path: string, body?: unknown, headers?: Record<string, string>): Step => ({
  path,
  body: body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  headers,
});
const FOO = b64('foo');
/** The headers of curl's `--http2` on an http:// URL. */
const H2C_UPGRADE = { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA' };
const FOP = b64('fop');

describe('gRPC gateway: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('KV, txn, compaction and lease routes answer the same JSON', async (t) => {
    await compare(t, [
      post('/v3/kv/put', { key: FOO, value: b64('bar') }),
      post('/v3/kv/put', { key: b64('foo2'), value: '' }),
      post('/v3/kv/put', { key: b64('foo3'), value: b64('x') }),
      post('/v3/kv/range', { key: FOO }),
      post('/v3/kv/range', { key: FOO, range_end: FOP }),
      post('/v3/kv/range', { key: FOO, rangeEnd: FOP, limit: 1 }),
      post('/v3/kv/range', { key: FOO, range_end: FOP, keys_only: true }),
      post('/v3/kv/range', { key: FOO, range_end: FOP, countOnly: true }),
      post('/v3/kv/range', { key: FOO, range_end: FOP, sort_order: 'DESCEND', sort_target: 'KEY', limit: '2' }),
      post('/v3/kv/range', { key: FOO, range_end: FOP, sort_order: 2 }),
      post('/v3/kv/range', { key: b64('none') }),
      post('/v3/kv/put', { key: FOO, value: b64('baz'), prevKv: true }),
      post('/v3/kv/txn', {
        compare: [{ key: FOO, result: 'EQUAL', target: 'VALUE', value: b64('baz') }],
        success: [{ request_put: { key: FOO, value: b64('qux') } }],
        failure: [{ request_range: { key: FOO } }],
      }),
      post('/v3/kv/txn', {
        compare: [{ key: FOO, result: 'EQUAL', target: 'VALUE', value: b64('baz') }],
        success: [{ requestPut: { key: FOO, value: b64('qux') } }],
        failure: [{ request_range: { key: FOO } }],
      }),
      post('/v3/kv/txn', { compare: [{ key: FOO, result: 'GREATER', target: 'MOD', mod_revision: '1' }], success: [{ request_delete_range: { key: b64('none') } }, { request_txn: {} }] }),
      post('/v3/kv/txn', {}),
      post('/v3/kv/deleterange', { key: b64('foo3'), prev_kv: true }),
      post('/v3/kv/compaction', { revision: 3 }),
      post('/v3/kv/range', { key: FOO, revision: 2 }),
      post('/v3/kv/range', { key: FOO, revision: '1000' }),
      post('/v3/kv/compaction', { revision: '3', physical: true }),
      post('/v3/lease/grant', { TTL: 60, ID: 1000 }),
      post('/v3/lease/grant', { TTL: '120', ID: '7587869011474410000' }),
      post('/v3/kv/put', { key: b64('leased'), value: b64('v'), lease: '7587869011474410000' }),
      post('/v3/lease/timetolive', { ID: '12345' }),
      post('/v3/lease/leases', {}),
      post('/v3/kv/lease/leases'),
      post('/v3/lease/revoke', { ID: '12345' }),
      post('/v3/kv/lease/revoke', { ID: 7587869011474410000 }),
      post('/v3/kv/range', { key: b64('leased') }),
      post('/v3/kv/put', { key: FOO, value: b64('v'), lease: '12345' }),
      post('/v3/kv/put', { key: '', value: b64('v') }),
      post('/v3/kv/put', { key: b64('none'), ignore_value: true }),
      post('/v3/kv/txn', { success: [{ request_put: { key: FOO } }, { request_put: { key: FOO } }] }),
      post('/v3/kv/txn', { success: Array.from({ length: 129 }, () => ({ request_range: { key: FOO } })) }),
      post('/v3/kv/txn', { success: [{}] }),
      post('/v3/maintenance/alarm', {}),
      // Past 2,048 bytes Go's net/http sends a unary answer chunked.
      post('/v3/kv/put', { key: b64('big'), value: b64('x'.repeat(3000)) }),
      post('/v3/kv/range', { key: b64('big') }),
      post('/v3/lock/lock', { name: b64('mylock'), lease: '1000' }),
      post('/v3/lock/unlock', { key: b64('mylock/3e8') }),
      post('/v3/lock/unlock', {}),
      post('/v3/election/leader', { name: b64('elec') }),
      post('/v3/election/resign', {}),
      post('/v3/auth/user/add', { name: 'u1', password: 'p' }),
      post('/v3/auth/user/add', { name: 'u1', password: 'p' }),
      post('/v3/auth/user/get', { name: 'nobody' }),
      post('/v3/auth/user/list', {}),
      post('/v3/auth/enable', {}),
    ]);
  });

  it('request bodies are decoded as grpc-gateway decodes them, errors word for word', async (t) => {
    const bodies = [
      '{"key":5}', '{', '', 'null', '[]', '"str"', '{"key":null}', '{"limit":"abc"}', '{"key":"Zm9v","limit":""}',
      '{"limit":1.5}', '{"limit":1e2}', '{"limit":"1.0"}', '{"limit":99999999999999999999}', '{"limit":[1]}', '{"limit":true}',
      '{"key":"Zm9v","limit":" 1"}', '{"key":"Zm9v","limit":"-1"}', '{"key":"Zm9v","serializable":1}', '{"key":"!!!"}',
      '{"key":"Zm9"}', '{"key":"Zm9v-_"}', '{"key":"Zm9v"}{"key":"eA=="}', '{"key":"Zm9v"} garbage', '{"key":"Zm9v","key":"eA=="}',
      '{"key":"Zm9v","bogus":{"x":[1,2]}}', '{"sort_order":"BOGUS","key":"Zm9v"}', '{"key":"Zm9v","sort_order":99}',
      '{"key" 1}', '{"key":"Zm9v",}', '{"key":tru}', '{"key":"a\nb"}', '{"key":"Zm9v","limit":-}', '{"key":"Zm9v"',
      '{"key":"Zm9v\\r\\n"}', '{"key":"Zm9=v"}', '{"key":"Zm8=="}', '{"key":"Zg=="}',
      // encoding/json also fills bytes from an array of byte values.
      '{"key":[102,111,111]}', '{"key":[]}', '{"key":[null]}', '{"key":[256]}', '{"key":[-1]}', '{"key":[1.5]}', '{"key":[1e2]}',
      '{"key":["Zm9v"]}', '{"key":[true]}', '{"key":[[1]]}', '{"key":"Zm9v","range_end":[102,111,112]}',
      // jsonpb drops a quoted integer's quotes without unescaping what is inside.
      '{"key":"Zm9v","limit":"null"}', '{"key":"Zm9v","limit":" null"}', '{"key":"Zm9v","limit":"\\u0031"}', '{"key":"Zm9v","limit":"\\n2"}',
      '{"key":"Zm9v","limit":"1\\u0030"}', '{"key":"Zm9v","limit":"\\"1\\""}',
      // Go's scanner names the offending byte, not the character.
      'é', '{"key":é}', '\ufeff{"key":"Zm9v"}', '\u0000', '{"key":"\u0001"}', '\u0085',
      Buffer.from([0xff]), Buffer.from('{"key":"Zm9v","range_end":"\xff"}', 'latin1'),
    ];
    const answers = await compare(t, [
      post('/v3/kv/put', { key: FOO, value: b64('bar') }),
      ...bodies.map((body) => post('/v3/kv/range', body)),
      post('/v3/kv/put', '{"key":"Zm9v","value":"YmF6","prev_kv":"yes"}'),
      post('/v3/kv/put', '{"key":"Zm9v","value":"YmF6","prev_kv":1}'),
      post('/v3/kv/txn', { compare: [{ key: FOO, result: 'equal', target: 'VALUE' }] }),
      post('/v3/kv/txn', { compare: [{ key: FOO, result: 'EQUAL', target: 'NOPE' }] }),
      post('/v3/kv/txn', { compare: [{ key: FOO, result: 0, target: 3, value: b64('bar') }], success: [{ request_range: { key: FOO } }] }),
      post('/v3/kv/txn', { compare: { key: FOO } }),
      post('/v3/kv/txn', { compare: [{ key: FOO, createRevision: 5 }] }),
      post('/v3/lease/grant', '{"TTL":60,"ID":"abc"}'),
      post('/v3/auth/user/add', '{"name":5}'),
      post('/v3/watch', '{"create_request":{"key":5}}'),
      post('/v3/watch', '{"create_request":{"key":"Zm9v","filters":"NOPUT"}}'),
      post('/v3/watch', '{"create_request":{"key":"Zm9v","filters":"1"}}'),
      // A null item in a list of messages: etcd's handler panics once the request is decoded.
      post('/v3/kv/txn', '{"success":[null]}'),
      post('/v3/kv/txn', '{"compare":[null],"success":[{"request_put":{"key":"eA==","value":"eQ=="}}]}'),
      post('/v3/kv/txn', '{"failure":[{"request_txn":{"success":[null]}}]}'),
      post('/v3/kv/txn', '{"success":[null],"compare":"bad"}'),
      post('/v3/kv/txn', '{"success":[{"request_put":null}]}'),
      post('/v3/kv/range', { key: b64('x') }),
    ]);
    assert.deepEqual(answers.slice(-6).map((a) => a.status), [0, 0, 0, 400, 400, 200]);
    assert.doesNotMatch(answers.at(-1)!.body, /"kvs"/, 'the dropped txn wrote nothing');
  });

  it('routing, methods, OPTIONS, redirects, /v3beta and Grpc-Timeout', async (t) => {
    const range = JSON.stringify({ key: FOO });
    await compare(t, [
      post('/v3/kv/put', { key: FOO, value: b64('bar') }),
      { method: 'GET', path: '/v3/kv/range' },
      { method: 'PUT', path: '/v3/kv/range', body: range },
      { method: 'DELETE', path: '/v3/kv/range' },
      { method: 'HEAD', path: '/v3/kv/range' },
      post('/v3/kv/nothing', range),
      { method: 'GET', path: '/v3/kv/nothing' },
      post('/v3/kv/range/', range),
      post('/v3/KV/range', range),
      post('/v3/', range),
      post('/v3/lock', range),
      post('/v3/kv/range:foo', range),
      post('/v3beta/kv/range', range),
      post('/v3alpha/kv/range', range),
      post('/v3', range),
      post('/v3/kv//range', range),
      { method: 'GET', path: '/v3/kv/./range' },
      // Paths outside the gateway are cleaned too (http.ServeMux): `//x` is a path, not a host.
      { method: 'GET', path: '//health' },
      { method: 'GET', path: '/./version?x=1' },
      { method: 'GET', path: '/metrics/../health' },
      // Routes match the percent-decoded path; a bad escape is refused before any handler.
      post('/v3/kv/%72ange', range),
      post('/v3/kv%2Frange', range),
      post('/v3/kv/%2e/range', range),
      { method: 'GET', path: '/%68ealth' },
      post('/v3/kv/range#x', range),
      post('/v3/kv/range%zz', range),
      post('/v3/kv/range', range, { 'Grpc-Timeout': '0S' }),
      post('/v3/kv/range', range, { 'Grpc-Timeout': '99999999H' }),
      // A stream whose deadline passes before its first answer fails as a unary call does.
      post('/v3/watch', { create_request: { key: FOO } }, { 'Grpc-Timeout': '1n' }),
      post('/v3/kv/range?key=Zm9v&limit=1', range),
      { method: 'OPTIONS', path: '/v3/kv/range' },
      { method: 'OPTIONS', path: '/v3/nonexistent', headers: { Origin: 'http://example.com', 'Access-Control-Request-Method': 'POST' } },
      post('/v3/kv/range', range, { 'Content-Type': 'application/json' }),
      post('/v3/kv/range', range, { 'Content-Type': 'text/plain' }),
      post('/v3/kv/range', range, { 'Grpc-Timeout': 'bogus' }),
      post('/v3/kv/range', range, { 'Grpc-Timeout': '1n' }),
      post('/v3/kv/range', range, { 'Grpc-Timeout': '5S' }),
      post('/v3/kv/range', range, { 'Grpc-Metadata-Foo': 'bar' }),
      // `curl --http2` on http:// asks to upgrade to h2c; Go's server ignores that and answers,
      // body read as usual.
      post('/v3/kv/range', range, H2C_UPGRADE),
      { method: 'GET', path: '/health', headers: H2C_UPGRADE },
      // etcd 3.4's capnslog level over HTTP.
      { method: 'GET', path: '/config/local/log' },
      { method: 'PUT', path: '/config/local/log' },
      ...['{"Level":"bogus"}', '{"Level":5}', 'null', '5', '{"level":"debug"}', '{"Level":"t"}', '{"Level":"3"}', '{"Level":"warning"} x', '{"Level":"INFO"}'].map(
        (body): Step => ({ method: 'PUT', path: '/config/local/log', body }),
      ),
    ]);
  });

  it('access control: --host-whitelist refuses other hosts (421), --cors names allowed origins only', async (t) => {
    const origin = (o: string) => ({ Origin: o });
    const range = JSON.stringify({ key: FOO });
    await compare(t, [
      { method: 'GET', path: '/health', headers: { Host: 'a.com' } },
      { method: 'GET', path: '/health', headers: { Host: 'b.com:2379' } },
      { method: 'GET', path: '/health', headers: { Host: '[::1]:2379' } },
      post('/v3/kv/range', range, { Host: 'evil.example' }),
      { method: 'OPTIONS', path: '/v3/kv/range', headers: { Host: 'evil.example' } },
      { method: 'GET', path: '/health', headers: { Host: 'a.com', ...origin('http://a.com:80') } },
      { method: 'GET', path: '/health', headers: { Host: 'a.com', ...origin('http://x.com') } },
      { method: 'OPTIONS', path: '/v3/kv/range', headers: { Host: '127.0.0.1', ...origin('http://x.com') } },
      { method: 'OPTIONS', path: '/v3/kv/range', headers: { Host: '127.0.0.1', ...origin('http://a.com:80') } },
      post('/v3/kv/range', range, { Host: '127.0.0.1', ...origin('http://a.com:80') }),
      { method: 'GET', path: '/nothing', headers: { Host: '127.0.0.1', ...origin('http://a.com:80') } },
    ], ['--host-whitelist', 'a.com,127.0.0.1,::1', '--cors', 'http://a.com:80']);
  });

  it('an idle HTTP/1.1 connection stays open, as Go\'s server (no idle timeout) keeps it', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const seen: string[][] = [];
    for (const server of servers) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      t.after(() => agent.destroy());
      const get = () =>
        new Promise<string>((resolve) => {
          const req = http.get(`${server.endpoint}/health`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(`${res.statusCode} ${req.reusedSocket ? 'same connection' : 'new connection'}`));
          });
          req.on('error', (err) => resolve(`error ${err.message}`));
        });
      // Node's own server used to close a connection idle for 5 s.
      seen.push([await get(), await sleep(5500).then(get)]);
    }
    assert.deepEqual(seen[0], ['200 new connection', '200 same connection']);
    assert.deepEqual(seen[1], seen[0]);
  });

  it('requests Go\'s server refuses before any handler get its answers', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const requests = [
      'GET /health HTTP/1.1\r\n\r\n',
      'GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'GET /health HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n',
      `GET /health HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(70 * 1024)}\r\nConnection: close\r\n\r\n`,
      `GET /health HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(1100 * 1024)}\r\n\r\n`,
      'POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n',
    ];
    /** The status line, and the body when the server closed the connection after it. */
    const raw = (server: ServerHandle, request: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(server.endpoint).port), '127.0.0.1');
        let got = '';
        socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => resolve(`${got.split('\r\n')[0]} | ${got.slice(got.indexOf('\r\n\r\n') + 4)}`));
        socket.end(request);
      });
    const seen: string[][] = [];
    for (const server of servers) {
      const answers: string[] = [];
      for (const request of requests) answers.push(await raw(server, request));
      seen.push(answers);
    }
    assert.equal(seen[0]![0], 'HTTP/1.1 400 Bad Request: missing required Host header | 400 Bad Request: missing required Host header');
    assert.deepEqual(seen[1], seen[0]);
  });

  it('--enable-grpc-gateway=false leaves /v3/ to the plain HTTP handler', async (t) => {
    await compare(t, [post('/v3/kv/range', { key: FOO }), post('/v3beta/kv/range', { key: FOO }), { method: 'OPTIONS', path: '/v3/kv/range' }, { method: 'GET', path: '/health' }], [
      '--enable-grpc-gateway=false',
    ]);
  });

  it('streams: watch (history, live events, bad creates, progress, cancel), election and lease keepalive, line by line', async (t) => {
    const live = b64('live');
    const etcd = await compare(t, [
      post('/v3/kv/put', { key: FOO, value: b64('bar') }),
      post('/v3/kv/put', { key: FOO, value: b64('baz') }),
      post('/v3/kv/deleterange', { key: FOO }),
      { ...post('/v3/watch', { create_request: { key: FOO, start_revision: 1, prev_kv: true } }), lines: 2 },
      { ...post('/v3/watch', { create_request: { key: FOO, range_end: FOO } }), lines: 1 },
      // A null filter is the zero value, NOPUT: only the delete comes.
      { ...post('/v3/watch', { create_request: { key: FOO, start_revision: 1, filters: [null] } }), lines: 2 },
      { ...post('/v3/watch', `${JSON.stringify({ create_request: { key: FOO } })}\n${JSON.stringify({ create_request: { key: FOP, watch_id: 7 } })}`), lines: 2 },
      { ...post('/v3/watch', `${JSON.stringify({ create_request: { key: FOO } })}${JSON.stringify({ progress_request: {} })}`), lines: 2 },
      { ...post('/v3/watch', `${JSON.stringify({ create_request: { key: FOO } })} {"create_request":{"key":5}} ${JSON.stringify({ create_request: { key: FOP } })}`), lines: 1 },
      {
        ...post('/v3/watch', { create_request: { key: live, filters: ['NODELETE'] } }),
        lines: 3,
        during: [post('/v3/kv/put', { key: live, value: b64('1') }), post('/v3/kv/deleterange', { key: live }), post('/v3/kv/put', { key: live, value: b64('2') })],
      },
      post('/v3/kv/compaction', { revision: 4 }),
      { ...post('/v3/watch', { create_request: { key: FOO, start_revision: 2 } }), lines: 2 },
      { ...post('/v3/watch', `${JSON.stringify({ create_request: { key: FOO } })} {"cancel_request":{"watch_id":0}} {"cancel_request":{"watch_id":5}}`), lines: 2 },
      post('/v3/lease/grant', { TTL: 60, ID: 1000 }),
      post('/v3/election/campaign', { name: b64('elec'), lease: '1000', value: b64('v1') }),
      post('/v3/election/proclaim', { leader: { name: b64('elec'), key: b64('elec/3e8'), rev: '8', lease: '1000' }, value: b64('v2') }),
      post('/v3/election/leader', { name: b64('elec') }),
      { ...post('/v3/election/observe', { name: b64('elec') }), lines: 1 },
      post('/v3/election/resign', { leader: { name: b64('elec'), key: b64('elec/3e8'), rev: '8', lease: '1000' } }),
      // A keepalive stream ends once its request body has been read.
      post('/v3/lease/keepalive', { ID: 1000 }),
      { ...post('/v3/lease/keepalive', `${JSON.stringify({ ID: 1000 })}${JSON.stringify({ ID: 1000 })}`), lines: 2 },
      { ...post('/v3/lease/keepalive', { ID: 99 }), lines: 1 },
    ]);
    // The election steps ran as the leader (the campaign's revision is the one proclaimed).
    const proclaim = etcd.findIndex((a) => a.body.includes('"leader":{"name":"ZWxlYw=="'));
    assert.equal(etcd[proclaim + 1]?.status, 200, etcd[proclaim + 1]?.body);
  });

  it('over WebSockets: a message per request value, a message per answer line, unary calls end the connection', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    /** What a WebSocket to `path` receives after sending `messages` (and running `during` once open), until it closes or `waitMs` pass. */
    const exchange = (server: ServerHandle, path: string, messages: string[], waitMs: number, during?: () => Promise<unknown>, protocols?: string[]) =>
      new Promise<string[]>((resolve) => {
        const seen: string[] = [];
        const ws = new WebSocket(`${server.endpoint.replace('http://', 'ws://')}${path}`, protocols);
        const timer = setTimeout(() => ws.terminate(), waitMs);
        ws.on('unexpected-response', (_req, res) => seen.push(`not upgraded: ${res.statusCode}`));
        // The subprotocol the server named (the ws client refuses one it did not offer).
        if (protocols) ws.on('upgrade', (res) => seen.push(`protocol ${String(res.headers['sec-websocket-protocol'])}`));
        ws.on('open', () => {
          for (const m of messages) ws.send(m);
          void during?.();
        });
        ws.on('message', (data: Buffer, binary: boolean) => seen.push(`${binary ? 'binary' : 'text'} ${normaliseBody(data.toString())}`));
        ws.on('error', () => {});
        ws.on('close', (code: number) => {
          clearTimeout(timer);
          seen.push(`closed ${code}`);
          resolve(seen);
        });
      });
    const answers: string[][][] = [];
    for (const server of servers) {
      const put = (value: string) => fetch(new URL('/v3/kv/put', server.endpoint), { method: 'POST', body: JSON.stringify({ key: FOO, value: b64(value) }) });
      answers.push([
        await exchange(server, '/v3/kv/range', [JSON.stringify({ key: FOO })], 3000),
        await exchange(server, '/v3/kv/range', ['{"key":5}'], 3000),
        await exchange(server, '/v3beta/kv/put', [JSON.stringify({ key: FOO, value: b64('ws') })], 3000),
        await exchange(server, '/v3/watch', [JSON.stringify({ create_request: { key: FOO, start_revision: 1 } })], 1500, () => sleep(300).then(() => put('live'))),
        await exchange(server, '/v3/watch', [JSON.stringify({ create_request: { key: FOO } }), '{"create_request":{"key":5}}'], 800),
        await exchange(server, '/v3/nothing', ['{}'], 3000),
        await exchange(server, '/health', [], 3000),
        await exchange(server, '/v3/kv/range', [JSON.stringify({ key: FOO })], 3000, undefined, ['foo', 'Bearer']),
        await exchange(server, '/v3/kv/range', [JSON.stringify({ key: FOO })], 3000, undefined, ['Bearer', 'abc']),
      ]);
    }
    assert.match(answers[0]![0]![0]!, /^text \{"header"/, 'etcd 3.4 answers a range over a WebSocket');
    assert.deepEqual(answers[1], answers[0]);
  });

  it('auth through the gateway: tokens from Authorization and Grpc-Metadata-Token, refusals', async (t) => {
    const servers = await Promise.all([startServer(t, { kind: 'etcd' }), startServer(t, { kind: 'etcd-ts' })]);
    const answers: Answer[][] = [];
    for (const server of servers) {
      const got = await sendAll(server, [
        post('/v3/auth/user/add', { name: 'root', password: 'rootpw' }),
        post('/v3/auth/user/grant', { user: 'root', role: 'root' }),
        post('/v3/auth/role/add', { name: 'r1' }),
        post('/v3/auth/role/grant', { name: 'r1', perm: { permType: 'READWRITE', key: FOO, range_end: FOP } }),
        post('/v3/auth/user/add', { name: 'u1', password: 'p1' }),
        post('/v3/auth/user/grant', { user: 'u1', role: 'r1' }),
        post('/v3/auth/role/get', { role: 'r1' }),
        post('/v3/auth/enable', {}),
        post('/v3/kv/range', { key: FOO }),
        post('/v3/maintenance/hash', {}),
        post('/v3/auth/authenticate', { name: 'root', password: 'wrong' }),
        post('/v3/auth/authenticate', { name: 'root', password: 'rootpw' }),
        { ...post('/v3/watch', { create_request: { key: FOO } }), lines: 1 },
      ]);
      const root = await authToken(server, 'root', 'rootpw');
      const u1 = await authToken(server, 'u1', 'p1');
      got.push(
        ...(await sendAll(server, [
          post('/v3/kv/put', { key: FOO, value: b64('x') }, { Authorization: root }),
          post('/v3/kv/range', { key: FOO }, { authorization: root }),
          post('/v3/kv/range', { key: FOO }, { 'Grpc-Metadata-Token': root }),
          post('/v3/kv/range', { key: FOO }, { Authorization: `Bearer ${root}` }),
          post('/v3/kv/range', { key: FOO }, { Authorization: 'bogus.token' }),
          post('/v3/kv/range', { key: FOO }, { Authorization: u1 }),
          post('/v3/kv/range', { key: FOP }, { Authorization: u1 }),
          post('/v3/auth/user/list', {}, { Authorization: u1 }),
          post('/v3/auth/user/list', {}, { Authorization: root }),
          // A token refused stops Authenticate, once the password is right; Alarm passes
          // the auth package's error on (Unknown).
          post('/v3/auth/authenticate', { name: 'u1', password: 'p1' }, { Authorization: 'bogus.token' }),
          post('/v3/auth/authenticate', { name: 'u1', password: 'wrong' }, { Authorization: 'bogus.token' }),
          post('/v3/maintenance/alarm', {}, { Authorization: 'bogus.token' }),
          post('/v3/maintenance/alarm', {}, { Authorization: u1 }),
          // The role is looked up before its permission.
          post('/v3/auth/role/grant', { name: 'nosuch' }, { Authorization: root }),
          // A refused read ends Observe without an error and without an answer.
          { ...post('/v3/election/observe', { name: b64('elec') }), lines: 1 },
          { ...post('/v3/election/observe', { name: b64('elec') }, { Authorization: 'bogus.token' }), lines: 1 },
          { ...post('/v3/election/observe', { name: b64('elec') }, { Authorization: u1 }), lines: 1 },
          post('/v3/auth/disable', {}, { Authorization: root }),
        ])),
      );
      answers.push(got);
    }
    assert.deepEqual(answers[1], answers[0]);
  });

  it('--max-concurrent-streams caps the gateway\'s calls in flight together: open watches hold their places, a request past the cap waits for one or its Grpc-Timeout', { timeout: 60_000 }, async (t) => {
    const outcomes: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const server = await startServer(t, { kind, flags: ['--max-concurrent-streams', '2'] });
      const range = async (headers: Record<string, string> = {}, waitMs = 1500): Promise<string> => {
        const started = performance.now();
        try {
          const res = await fetch(`${server.endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: FOO }), headers, signal: AbortSignal.timeout(waitMs) });
          const body = (await res.text()).replace(/"(cluster_id|member_id|revision|raft_term)":"\d+"/g, '"$1":"<n>"');
          return `${res.status} ${body} after ${performance.now() - started < 900 ? '< 0.9 s' : '>= 0.9 s'}`;
        } catch (err) {
          return `no answer within ${waitMs} ms (${(err as Error).name})`;
        }
      };
      const seen = [`below the cap: ${await range()}`];
      const watches = [new AbortController(), new AbortController()];
      for (const w of watches) {
        const res = await fetch(`${server.endpoint}/v3/watch`, { method: 'POST', body: JSON.stringify({ create_request: { key: FOO } }), signal: w.signal });
        await res.body!.getReader().read(); // the created line: the watch holds its stream
      }
      seen.push(`at the cap: ${await range()}`);
      seen.push(`at the cap, Grpc-Timeout 1S: ${await range({ 'Grpc-Timeout': '1S' }, 5000)}`);
      const waiting = range({}, 5000);
      await sleep(300);
      watches[0]!.abort();
      seen.push(`waiting while a watch ends: ${await waiting}`);
      watches[1]!.abort();
      outcomes.push(seen);
      await server.stop();
    }
    assert.match(outcomes[0]![1]!, /^at the cap: no answer within 1500 ms/);
    assert.deepEqual(outcomes[1], outcomes[0]);
  });
});
