// The server side of an HTTP/2 connection (src/server/transport/h2-connection.ts), driven with
// raw frames: the settings exchange, header blocks and the HPACK state, request DATA, flow
// control of what we send, and the errors a client can cause (GOAWAY or RST_STREAM, never a
// throw), including random bytes.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { encodeHeaders, H2Connection, H2Error, type H2Stream } from '../../src/server/transport/h2-connection.js';
import { frame, literalBlock, PREFACE } from '../helpers/h2-frames.js';
import { seeded } from '../helpers/seeded.js';

const DATA = 0;
const HEADERS = 1;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A socket stand-in: what the test writes is read by the connection; what the connection writes is parsed into frames. */
class FakeSocket extends Duplex {
  readonly written: Buffer[] = [];

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.written.push(chunk);
    cb();
  }

  /** Every frame written so far. */
  frames(): Frame[] {
    const all = Buffer.concat(this.written);
    const out: Frame[] = [];
    for (let off = 0; off + 9 <= all.length; ) {
      const len = all.readUIntBE(off, 3);
      out.push({ type: all[off + 3]!, flags: all[off + 4]!, id: all.readUInt32BE(off + 5) & 0x7fffffff, payload: all.subarray(off + 9, off + 9 + len) });
      off += 9 + len;
    }
    return out;
  }
}

/** Lets socket events run and the frames they queued be flushed (in a later check phase). */
const turn = (): Promise<void> => new Promise((done) => setTimeout(done, 5));

/** A connection on a FakeSocket, with every stream it opened and what each heard. */
function connect(maxConcurrentStreams = 100, keepalive?: { intervalMs: number; timeoutMs: number }) {
  const socket = new FakeSocket();
  const streams: H2Stream[] = [];
  const heard: string[] = [];
  const conn = new H2Connection(socket, {
    maxConcurrentStreams,
    pingMinTimeMs: 5000,
    keepalive,
    onStream: (s) => {
      streams.push(s);
      s.listener = {
        onData: (d) => heard.push(`${s.id} data ${d.toString()}`),
        onEnd: () => heard.push(`${s.id} end`),
        onReset: () => heard.push(`${s.id} reset`),
      };
    },
  });
  const send = (...bufs: Buffer[]): void => {
    socket.push(Buffer.concat(bufs));
  };
  return { socket, conn, streams, heard, send };
}

const request = (path: string): Buffer => literalBlock([[':method', 'POST'], [':path', path], ['content-type', 'application/grpc']], false);

test('the server opens with its SETTINGS and a connection WINDOW_UPDATE, and ACKs the client SETTINGS', async () => {
  const { socket, send } = connect(7);
  send(PREFACE, frame(SETTINGS, 0, 0));
  await turn();
  const [settings, update, ack] = socket.frames();
  assert.equal(settings!.type, SETTINGS);
  assert.deepEqual([settings!.payload.readUInt16BE(0), settings!.payload.readUInt32BE(2)], [3, 7], 'MAX_CONCURRENT_STREAMS');
  assert.deepEqual([settings!.payload.readUInt16BE(6), settings!.payload.readUInt32BE(8)], [4, 1 << 20], 'INITIAL_WINDOW_SIZE');
  assert.deepEqual([update!.type, update!.id], [WINDOW_UPDATE, 0]);
  assert.deepEqual([ack!.type, ack!.flags, ack!.payload.length], [SETTINGS, 1, 0]);
});

test('requests: headers, DATA and END_STREAM reach the stream; a PING is answered with its payload', async () => {
  const { socket, streams, heard, send } = connect();
  send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/a/B')), frame(DATA, 0, 1, Buffer.from('xy')), frame(DATA, END_STREAM, 1, Buffer.from('z')));
  send(frame(PING, 0, 0, Buffer.from('12345678')));
  await turn();
  assert.equal(streams.length, 1);
  assert.equal(streams[0]!.header(':path'), '/a/B');
  assert.deepEqual(heard, ['1 data xy', '1 data z', '1 end']);
  const pong = socket.frames().find((f) => f.type === PING)!;
  assert.deepEqual([pong.flags, pong.payload.toString()], [1, '12345678']);
});

test('indexed header blocks follow the dynamic table as it changes', async () => {
  const { streams, send } = connect();
  // Stream 1 adds ':path /one' to the dynamic table (index 62); stream 3 refers to it by index.
  const one = literalBlock([[':path', '/one']], true);
  send(PREFACE, frame(HEADERS, END_HEADERS | END_STREAM, 1, one), frame(HEADERS, END_HEADERS | END_STREAM, 3, Buffer.from([0xbe])));
  // Stream 5 adds ':path /two', now index 62; the same byte on stream 7 means /two.
  send(frame(HEADERS, END_HEADERS | END_STREAM, 5, literalBlock([[':path', '/two']], true)), frame(HEADERS, END_HEADERS | END_STREAM, 7, Buffer.from([0xbe])));
  await turn();
  assert.deepEqual(streams.map((s) => s.header(':path')), ['/one', '/one', '/two', '/two']);
});

test('DATA waits for the client window, and its callback for the socket write', async () => {
  const { socket, streams, send } = connect();
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(4, 0);
  settings.writeUInt32BE(10, 2); // INITIAL_WINDOW_SIZE 10
  send(PREFACE, frame(SETTINGS, 0, 0, settings), frame(HEADERS, END_HEADERS, 1, request('/a/B')));
  await turn();
  const s = streams[0]!;
  s.sendHeaders(encodeHeaders([[':status', '200']]), false);
  let written = 0;
  s.sendData(Buffer.from('0123456789abcdefghijklmno'), () => written++);
  s.sendTrailers(encodeHeaders([['grpc-status', '0']]));
  await turn();
  const data = () => socket.frames().filter((f) => f.type === DATA && f.id === 1);
  assert.deepEqual(data().map((f) => f.payload.toString()), ['0123456789']);
  assert.equal(s.blocked, true);
  assert.equal(written, 0);
  const inc = Buffer.alloc(4);
  inc.writeUInt32BE(100);
  send(frame(WINDOW_UPDATE, 0, 1, inc));
  await turn();
  assert.deepEqual(data().map((f) => f.payload.toString()), ['0123456789', 'abcdefghijklmno']);
  assert.equal(written, 1);
  const last = socket.frames().at(-2)!;
  assert.deepEqual([last.type, last.flags & END_STREAM], [HEADERS, END_STREAM], 'trailers after the held DATA');
  const rst = socket.frames().at(-1)!;
  assert.deepEqual([rst.type, rst.payload.readUInt32BE(0)], [RST_STREAM, H2Error.NO_ERROR], 'the client had not ended its side');
});

test('a finished answer is written at the end of the tick; streaming DATA waits for the check phase', async () => {
  const watch = connect();
  const unary = connect();
  watch.send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/w/Watch')));
  unary.send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/kv/Put')), frame(DATA, END_STREAM, 1, Buffer.from('p')));
  await turn();
  const before = { watch: watch.socket.frames().length, unary: unary.socket.frames().length };
  // Scheduled before anything below is queued, so it runs before the connections' own check-phase flushes.
  const seen = new Promise<{ watch: number; unary: Frame[] }>((done) =>
    setImmediate(() => done({ watch: watch.socket.frames().length, unary: unary.socket.frames().slice(before.unary) })),
  );
  const w = watch.streams[0]!;
  w.sendHeaders(encodeHeaders([[':status', '200']]), false);
  w.sendData(Buffer.from('event'));
  const u = unary.streams[0]!;
  u.sendHeaders(encodeHeaders([[':status', '200']]), false);
  u.sendData(Buffer.from('answer'));
  u.sendTrailers(encodeHeaders([['grpc-status', '0']]));
  const at = await seen;
  assert.deepEqual(at.unary.map((f) => [f.type, f.flags & END_STREAM]), [[HEADERS, 0], [DATA, 0], [HEADERS, END_STREAM]], 'the answer is out');
  assert.equal(at.watch, before.watch, 'the stream that did not end is not written yet');
  await turn();
  assert.deepEqual(watch.socket.frames().slice(before.watch).map((f) => f.type), [HEADERS, DATA]);
});

test('malformed requests are reset with PROTOCOL_ERROR, and the connection goes on', async () => {
  const { socket, streams, send } = connect();
  const bad = [
    literalBlock([[':path', '/a/B'], ['Content-Type', 'application/grpc']], false),
    literalBlock([[':foo', 'x']], false),
    literalBlock([['content-type', 'application/grpc'], [':path', '/a/B']], false),
    literalBlock([[':path', '/a/B'], ['x', 'a\u0001b']], false),
  ];
  send(PREFACE, ...bad.map((b, i) => frame(HEADERS, END_HEADERS, 1 + 2 * i, b)), frame(HEADERS, END_HEADERS, 9, request('/a/B')));
  await turn();
  const resets = socket.frames().filter((f) => f.type === RST_STREAM).map((f) => [f.id, f.payload.readUInt32BE(0)]);
  assert.deepEqual(resets, [1, 3, 5, 7].map((id) => [id, H2Error.PROTOCOL_ERROR]));
  assert.deepEqual(streams.map((s) => s.id), [9]);
});

test('a client RST_STREAM resets the stream; streams past the limit are refused', async () => {
  const { socket, heard, send } = connect(1);
  const cancel = Buffer.alloc(4);
  cancel.writeUInt32BE(H2Error.CANCEL);
  send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/a/B')), frame(HEADERS, END_HEADERS, 3, request('/a/B')));
  send(frame(RST_STREAM, 0, 1, cancel));
  await turn();
  assert.deepEqual(heard, ['1 reset']);
  const refused = socket.frames().find((f) => f.type === RST_STREAM && f.id === 3)!;
  assert.equal(refused.payload.readUInt32BE(0), H2Error.REFUSED_STREAM);
});

test('keepalive enforcement: the third ping too soon ends the connection with too_many_pings, unless we sent something', async () => {
  const ping = frame(PING, 0, 0, Buffer.alloc(8));
  // A stream open: pings under 5 s apart. The first is never a strike; the 4th is the third.
  const a = connect();
  a.send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/a/B')), ping, ping, ping);
  await turn();
  assert.equal(a.socket.frames().find((f) => f.type === GOAWAY), undefined, 'two strikes are tolerated');
  a.send(ping);
  await turn();
  const frames = a.socket.frames();
  const goAway = frames.find((f) => f.type === GOAWAY)!;
  assert.deepEqual([goAway.payload.readUInt32BE(0), goAway.payload.readUInt32BE(4), goAway.payload.subarray(8).toString()], [1, H2Error.ENHANCE_YOUR_CALM, 'too_many_pings']);
  assert.equal(frames.filter((f) => f.type === PING && f.flags === 1).length, 4, 'the last ping is answered before GOAWAY');

  // Headers or data sent between pings clear the strikes.
  const b = connect();
  b.send(PREFACE, frame(HEADERS, END_HEADERS, 1, request('/a/B')), ping, ping, ping);
  await turn();
  b.streams[0]!.sendHeaders(encodeHeaders([[':status', '200']]), false);
  b.send(ping, ping);
  await turn();
  assert.equal(b.socket.frames().find((f) => f.type === GOAWAY), undefined);
});

test('server keepalive: a silent connection is pinged after the interval and closed after the timeout', async () => {
  const quiet = connect(100, { intervalMs: 30, timeoutMs: 30 });
  quiet.send(PREFACE, frame(SETTINGS, 0, 0));
  await new Promise((done) => setTimeout(done, 45));
  const pings = quiet.socket.frames().filter((f) => f.type === PING && f.flags === 0);
  assert.deepEqual(pings.map((p) => p.payload), [Buffer.alloc(8)], 'one PING with eight zero bytes');
  assert.equal(quiet.socket.destroyed, false);
  await new Promise((done) => setTimeout(done, 40));
  assert.equal(quiet.socket.destroyed, true, 'nothing read within the timeout');

  // A client that answers (any bytes count) keeps its connection.
  const alive = connect(100, { intervalMs: 30, timeoutMs: 30 });
  alive.send(PREFACE, frame(SETTINGS, 0, 0));
  const answer = setInterval(() => alive.send(frame(PING, 1, 0, Buffer.alloc(8))), 10);
  await new Promise((done) => setTimeout(done, 150));
  clearInterval(answer);
  assert.equal(alive.socket.destroyed, false);
  alive.socket.destroy();
});

/** The GOAWAY error code the connection ends with after `bytes` (after the preface). */
async function goAwayAfter(bytes: Buffer): Promise<number | undefined> {
  const { socket, send } = connect();
  send(PREFACE, bytes);
  await turn();
  return socket.frames().find((f) => f.type === GOAWAY)?.payload.readUInt32BE(4);
}

test('connection errors end with GOAWAY and their code', async () => {
  assert.equal(await goAwayAfter(frame(DATA, 0, 0, Buffer.from('x'))), H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
  assert.equal(await goAwayAfter(frame(DATA, 0, 9, Buffer.from('x'))), undefined, 'DATA on an idle stream is ignored, as by grpc-go');
  assert.equal(await goAwayAfter(frame(HEADERS, END_HEADERS, 2, request('/a/B'))), H2Error.PROTOCOL_ERROR, 'an even stream id');
  assert.equal(await goAwayAfter(frame(PING, 0, 0, Buffer.from('1234'))), H2Error.FRAME_SIZE_ERROR, 'a short PING');
  assert.equal(await goAwayAfter(frame(SETTINGS, 0, 0, Buffer.alloc(5))), H2Error.FRAME_SIZE_ERROR, 'SETTINGS of 5 bytes');
  assert.equal(await goAwayAfter(frame(HEADERS, END_HEADERS, 1, Buffer.from([0xff, 0xff, 0xff, 0xff]))), H2Error.COMPRESSION_ERROR, 'a bad header block');
  assert.equal(await goAwayAfter(frame(HEADERS, 0, 1, request('/a/B')).subarray(0, 9 + 3)), undefined, 'an incomplete frame waits');
  const big = Buffer.alloc(9);
  big.writeUIntBE(16_385, 0, 3);
  assert.equal(await goAwayAfter(big), H2Error.FRAME_SIZE_ERROR, 'a frame above 16 KiB');
  assert.equal(await goAwayAfter(Buffer.concat([frame(HEADERS, 0, 1, request('/a/B')), frame(PING, 0, 0, Buffer.alloc(8))])), H2Error.PROTOCOL_ERROR, 'a frame inside a header block');
});

test('random bytes after the preface never throw', async () => {
  const r = seeded(20261203);
  for (let i = 0; i < 300; i++) {
    const { send } = connect();
    const bytes = Buffer.from(Array.from({ length: r.int(200) }, () => r.int(256)));
    // Keep some frames well-formed enough to reach the frame handlers.
    if (i % 2 === 0 && bytes.length >= 9) bytes.writeUIntBE(r.int(20), 0, 3);
    send(PREFACE, bytes);
    await turn();
  }
});
