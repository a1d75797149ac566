/**
 * The server side of one HTTP/2 connection (RFC 9113), as much of it as a gRPC server needs:
 * frames, stream states, both directions of flow control, HPACK decoding (hpack.js) and
 * literal-only HPACK encoding, SETTINGS, PING, GOAWAY and RST_STREAM. It replaces Node's
 * `http2` module under etcd-ts's gRPC server: a unary call through `http2` and grpc-js costs
 * 65–80 µs of CPU, through this connection about 10 (see docs/ARCHITECTURE.md, "Our own
 * HTTP/2"), because it makes no stream object, no C++ round trip and no socket write per
 * frame: every frame produced in one iteration of the event loop leaves in one socket write,
 * in the loop's check phase (`setImmediate`). Flushing on `process.nextTick` instead, before
 * the loop polls again, let a watch stream's write rounds follow each other without new events
 * joining them: fan-out to 1,000 watchers lost 20–30% of its events/s (see WRITE_ROUND_BYTES).
 *
 * Errors the peer causes end the connection with GOAWAY (connection errors) or reset one
 * stream with RST_STREAM (stream errors), as RFC 9113 §5.4 says; nothing the peer sends can
 * throw out of `feed`.
 */
import type { Duplex } from 'node:stream';
import hpack from 'hpack.js';
import { CLIENT_PREFACE } from './h2-preface.js';

const FRAME_HEADER_LEN = 9;
/**
 * A flush of more bytes than this hands the socket its large pieces as they are, in one writev,
 * instead of copying everything into one buffer: a large answer's DATA payloads are copied no
 * more (a 200 MB Range spent ~0.25 s in that copy). Smaller flushes, the latency-bound ones,
 * stay one write of one buffer.
 */
const FLUSH_COPY_BYTES = 64 * 1024;
/** In a flush past FLUSH_COPY_BYTES, pieces of at least this many bytes are written as they are. */
const FLUSH_PIECE_BYTES = 4096;

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

/** The largest frame payload either side may send until told otherwise, and the one we accept. */
const DEFAULT_MAX_FRAME_SIZE = 16_384;
/** Every flow-control window starts here (RFC 9113 §6.9.2). */
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/** The window we give each stream for its request bytes (SETTINGS_INITIAL_WINDOW_SIZE). */
const STREAM_RECV_WINDOW = 1 << 20;
/** The connection's receive window, raised at once from the default by a WINDOW_UPDATE. */
const CONN_RECV_WINDOW = 16 << 20;
/** A header block larger than this ends the connection (no etcd request comes near it). */
const MAX_HEADER_BLOCK = 1 << 20;
/** The HPACK table size both sides start with; we never ask for another. */
const HPACK_TABLE_SIZE = 4096;
/** grpc-go's keepalive enforcement: the minimum ping interval when none is configured (`defaultKeepalivePolicyMinTime`). */
const DEFAULT_PING_MIN_TIME_MS = 5 * 60 * 1000;
/** ... the interval pings must keep while no stream is open (PermitWithoutStream false: `defaultPingTimeout`). */
const IDLE_PING_MIN_TIME_MS = 2 * 60 * 60 * 1000;
/** ... and the strikes tolerated before GOAWAY (`maxPingStrikes`). */
const MAX_PING_STRIKES = 2;
/** Socket bytes buffered past which streams report back-pressure. */
const SOCKET_HIGH_WATER = 256 * 1024;

/** A decoded header field; names are lower case. */
export type HeaderField = readonly [name: string, value: string];

/** What a stream's owner hears from the client. */
export interface StreamListener {
  /** A DATA payload (padding removed), possibly empty. */
  onData(data: Buffer): void;
  /** The client half-closed the stream (END_STREAM). */
  onEnd(): void;
  /** The stream ended without our answer finishing it: RST_STREAM from the client, or the connection closed. */
  onReset(): void;
}

/** One request stream: the client's headers, and the means to answer. */
export class H2Stream {
  readonly id: number;
  readonly headers: readonly HeaderField[];
  listener: StreamListener | undefined;
  /** Our send window for this stream. */
  sendWindow: number;
  /** Request bytes received since our last WINDOW_UPDATE for this stream. */
  recvUnacked = 0;
  /** Bytes the client may still send before our next WINDOW_UPDATE. */
  recvWindow = STREAM_RECV_WINDOW;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  /** DATA waiting for send window: payloads, and what to call once each is written. */
  readonly pending: { data: Buffer; cb: (() => void) | undefined }[] = [];
  pendingBytes = 0;
  /** Trailers to send once `pending` is empty. */
  pendingTrailers: Buffer | undefined;
  /** Called when this stream's writes no longer wait (see `H2Connection.blocked`). */
  onDrain: (() => void) | undefined;
  private readonly conn: H2Connection;

  constructor(conn: H2Connection, id: number, headers: readonly HeaderField[], sendWindow: number) {
    this.conn = conn;
    this.id = id;
    this.headers = headers;
    this.sendWindow = sendWindow;
  }

  /** The value of the first header named `name` (lower case), or undefined. */
  header(name: string): string | undefined {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  /** Sends a header block (encoded by `encodeHeaders`); `endStream` ends our side. */
  sendHeaders(block: Buffer, endStream: boolean): void {
    if (this.localEnded || this.closed) return;
    this.conn.sendHeadersFrame(this, block, endStream);
  }

  /** Sends `data` as DATA frames within the flow-control windows; `cb` once it is in a socket write that completed. */
  sendData(data: Buffer, cb?: () => void): void {
    if (this.localEnded || this.closed) return;
    this.conn.sendData(this, data, cb);
  }

  /** Sends trailers and ends our side, after any DATA still waiting for window. */
  sendTrailers(block: Buffer): void {
    if (this.localEnded || this.closed) return;
    if (this.pending.length > 0) this.pendingTrailers = block;
    else this.conn.sendHeadersFrame(this, block, true);
  }

  /** Resets the stream with `code` (one of H2Error). */
  reset(code: number): void {
    this.conn.resetStream(this, code);
  }

  /** True while writes to this stream should wait: DATA is held for window, or the socket is full. */
  get blocked(): boolean {
    return this.pendingBytes > 0 || this.conn.socketFull;
  }
}

/** Options of an H2Connection. */
export interface H2ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we announce and enforce (etcd's --max-concurrent-streams). */
  maxConcurrentStreams: number;
  /**
   * grpc-go's keepalive enforcement (etcd's --grpc-keepalive-min-time), in ms: a ping sooner
   * than this after the previous one while a stream is open (2 h while none is) is a strike,
   * unless we sent HEADERS or DATA since; the third strike ends the connection with GOAWAY
   * ENHANCE_YOUR_CALM "too_many_pings". ≤ 0 means grpc-go's default, 5 min; Infinity, no
   * enforcement at all (Go's net/http server, which serves etcd's TLS connections).
   */
  pingMinTimeMs: number;
  /**
   * grpc-go's server keepalive (etcd's --grpc-keepalive-interval and -timeout), in ms: after
   * `interval` with nothing read the server sends a PING, and closes the connection (no GOAWAY)
   * when nothing more is read within `timeout`. Off unless both are > 0.
   */
  keepalive?: { intervalMs: number; timeoutMs: number };
  /** Called for each new request stream, once its header block is complete. */
  onStream(stream: H2Stream): void;
  /** Called once when the connection is gone (socket closed or ended by either side). */
  onClose?(): void;
}

/** Encodes an HPACK integer with an `n`-bit prefix whose high bits are `first`. */
function hpackInt(out: number[], value: number, n: number, first: number): void {
  const max = (1 << n) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/**
 * A header block of literals without indexing (RFC 7541 §6.2.2), which leave both sides'
 * dynamic tables untouched, so the encoder keeps no state. `:status 200` is the static
 * table's entry 8. Names must be lower case; values are sent as their UTF-8 bytes.
 */
export function encodeHeaders(fields: readonly HeaderField[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    if (name === ':status' && value === '200') {
      parts.push(Buffer.from([0x88]));
      continue;
    }
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'utf8');
    const head: number[] = [0x00];
    hpackInt(head, n.length, 7, 0);
    parts.push(Buffer.from(head), n);
    const vh: number[] = [];
    hpackInt(vh, v.length, 7, 0);
    parts.push(Buffer.from(vh), v);
  }
  return Buffer.concat(parts);
}

/** True when every field of `block` is an indexed field (RFC 7541 §6.1), which leaves the dynamic table as it was. */
function onlyIndexed(block: Buffer): boolean {
  let i = 0;
  while (i < block.length) {
    if ((block[i]! & 0x80) === 0) return false;
    // Skip the 7-bit-prefix integer.
    if ((block[i]! & 0x7f) === 0x7f) {
      i++;
      while (i < block.length && block[i]! & 0x80) i++;
    }
    i++;
  }
  return true;
}

/** The pseudo-header fields a request may carry. */
const REQUEST_PSEUDO = new Set([':method', ':scheme', ':path', ':authority']);

/**
 * True when `fields` may be a request's (or its trailers') header list as Go's HTTP/2 accepts
 * it: lower-case names, known pseudo-header fields each at most once and before the others,
 * and no control characters but HTAB in values.
 */
function wellFormed(fields: readonly HeaderField[]): boolean {
  let regular = false;
  const pseudo = new Set<string>();
  for (const [name, value] of fields) {
    if (name.length === 0 || /[A-Z]/.test(name)) return false;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular || !REQUEST_PSEUDO.has(name) || pseudo.has(name)) return false;
      pseudo.add(name);
    } else {
      regular = true;
    }
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return false;
  }
  return true;
}

class ConnectionError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * One HTTP/2 connection on `socket`, the server's side; it reads the socket itself, from the
 * client preface on.
 */
export class H2Connection {
  private readonly socket: Duplex;
  private readonly opts: H2ConnectionOptions;
  private readonly decoder = hpack.decompressor.create({ table: { size: HPACK_TABLE_SIZE } });
  /** Decoded header lists of blocks that were only indexed fields, while the dynamic table is unchanged. */
  private readonly blockCache = new Map<string, readonly HeaderField[]>();
  private readonly streams = new Map<number, H2Stream>();
  private buf: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private lastStreamId = 0;
  /** A header block being continued: its stream, flags of the HEADERS frame, fragments. */
  private continuing: { id: number; endStream: boolean; fragments: Buffer[]; size: number } | undefined;
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = CONN_RECV_WINDOW;
  private connRecvUnacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  /** Frames to write in this iteration's check phase, and the callbacks of the DATA among them. */
  private out: Buffer[] = [];
  private outBytes = 0;
  private outCallbacks: (() => void)[] = [];
  /** A flush is pending in the check phase (every queued frame) or at the end of this tick (a finished answer). */
  private checkPhaseFlushPending = false;
  private endOfTickFlushPending = false;
  /** Streams holding DATA for send window, in the order they blocked. */
  private readonly windowWaiters = new Set<H2Stream>();
  private goingAway = false;
  private closedAll = false;
  /** Keepalive enforcement: strikes so far, the last ping's time (ms), and whether we sent HEADERS or DATA since. */
  private pingStrikes = 0;
  private lastPingAt = 0;
  private sentSincePing = false;
  /** Server keepalive: when the socket was last read (ms), and its timer. */
  private lastReadAt = Date.now();
  private keepaliveTimer: NodeJS.Timeout | undefined;

  constructor(socket: Duplex, opts: H2ConnectionOptions) {
    this.socket = socket;
    this.opts = opts;
    // Our SETTINGS, then the connection window raised to CONN_RECV_WINDOW.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(Math.min(opts.maxConcurrentStreams, 2 ** 32 - 1), 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(STREAM_RECV_WINDOW, 8);
    this.queueFrame(SETTINGS, 0, 0, settings);
    this.queueFrame(WINDOW_UPDATE, 0, 0, uint32(CONN_RECV_WINDOW - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    socket.on('drain', () => this.drained());
    socket.on('close', () => this.closeAll());
    socket.on('end', () => this.closeAll());
    socket.on('error', () => this.closeAll());
    const ka = opts.keepalive;
    if (ka && ka.intervalMs > 0 && ka.timeoutMs > 0) this.armKeepalive(ka.intervalMs, ka.intervalMs, ka.timeoutMs);
  }

  /**
   * grpc-go's server keepalive loop: in `delayMs`, if nothing was read for `intervalMs`, PING
   * and give the client `timeoutMs` to send anything; silence past that closes the socket.
   */
  private armKeepalive(delayMs: number, intervalMs: number, timeoutMs: number, pingedAt?: number): void {
    this.keepaliveTimer = setTimeout(() => {
      const now = Date.now();
      if (pingedAt !== undefined) {
        if (this.lastReadAt < pingedAt) {
          this.socket.destroy();
          return;
        }
      } else if (now - this.lastReadAt >= intervalMs) {
        this.queueFrame(PING, 0, 0, Buffer.alloc(8)); // grpc-go's keepalive payload
        this.armKeepalive(timeoutMs, intervalMs, timeoutMs, now);
        return;
      }
      this.armKeepalive(Math.max(1, this.lastReadAt + intervalMs - now), intervalMs, timeoutMs);
    }, delayMs);
    this.keepaliveTimer.unref();
  }

  /** True while the socket holds more unsent bytes than SOCKET_HIGH_WATER. */
  get socketFull(): boolean {
    return this.socket.writableLength > SOCKET_HIGH_WATER;
  }

  /** Sends GOAWAY(NO_ERROR) and closes the socket once the frames are out; open streams are reset for their owners. */
  close(): void {
    if (this.closedAll) return;
    this.goAway(H2Error.NO_ERROR, '');
  }

  /** Parses `chunk` and every complete frame buffered before it. */
  private feed(chunk: Buffer): void {
    if (this.closedAll) return;
    this.lastReadAt = Date.now();
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(this.buf.length, CLIENT_PREFACE.length);
        if (!this.buf.subarray(0, n).equals(CLIENT_PREFACE.subarray(0, n))) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad preface');
        if (n < CLIENT_PREFACE.length) return;
        this.prefaceSeen = true;
        off = CLIENT_PREFACE.length;
      }
      const buf = this.buf;
      while (buf.length - off >= FRAME_HEADER_LEN && !this.closedAll) {
        const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (len > DEFAULT_MAX_FRAME_SIZE) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'frame too large');
        if (buf.length - off < FRAME_HEADER_LEN + len) break;
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
        const payload = buf.subarray(off + FRAME_HEADER_LEN, off + FRAME_HEADER_LEN + len);
        off += FRAME_HEADER_LEN + len;
        this.frame(type, flags, id, payload);
      }
    } catch (err) {
      if (err instanceof ConnectionError) this.goAway(err.code, err.message);
      else this.goAway(H2Error.INTERNAL_ERROR, '');
      return;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }

  private frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.continuing && type !== CONTINUATION) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'expected CONTINUATION');
    switch (type) {
      case DATA:
        this.onDataFrame(flags, id, payload);
        return;
      case HEADERS:
        this.onHeadersFrame(flags, id, payload);
        return;
      case CONTINUATION: {
        const c = this.continuing;
        if (!c || c.id !== id) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        c.fragments.push(payload);
        c.size += payload.length;
        if (c.size > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'header block too large');
        if (flags & FLAG_END_HEADERS) {
          this.continuing = undefined;
          this.onHeaderBlock(id, Buffer.concat(c.fragments), c.endStream);
        }
        return;
      }
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) this.resetById(id, H2Error.FRAME_SIZE_ERROR);
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad RST_STREAM');
        // On an idle or closed stream it is ignored, as by grpc-go.
        const s = this.streams.get(id);
        if (s) this.resetStream(s, undefined);
        return;
      }
      case SETTINGS:
        this.onSettings(flags, id, payload);
        return;
      case PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case PING: {
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad PING');
        if (flags & FLAG_ACK) return;
        this.queueFrame(PING, FLAG_ACK, 0, Buffer.from(payload));
        this.enforcePingPolicy();
        return;
      }
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        // The client will open no more streams; those open run to their end.
        this.goingAway = true;
        if (this.streams.size === 0) this.end();
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(id, payload);
        return;
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1).
        return;
    }
  }

  /** grpc-go's `handlePing` policy for a ping just answered (see H2ConnectionOptions.pingMinTimeMs). */
  private enforcePingPolicy(): void {
    if (this.opts.pingMinTimeMs === Infinity) return;
    const now = Date.now();
    const last = this.lastPingAt;
    this.lastPingAt = now;
    if (this.sentSincePing) {
      this.sentSincePing = false;
      this.pingStrikes = 0;
      return;
    }
    const configured = this.opts.pingMinTimeMs > 0 ? this.opts.pingMinTimeMs : DEFAULT_PING_MIN_TIME_MS;
    const minGap = this.streams.size === 0 ? IDLE_PING_MIN_TIME_MS : configured;
    if (last !== 0 && now - last < minGap) this.pingStrikes++;
    if (this.pingStrikes > MAX_PING_STRIKES) this.goAway(H2Error.ENHANCE_YOUR_CALM, 'too_many_pings');
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole payload, padding included.
    this.connRecvWindow -= payload.length;
    if (this.connRecvWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window exceeded');
    this.connRecvUnacked += payload.length;
    if (this.connRecvUnacked >= CONN_RECV_WINDOW / 2) {
      this.queueFrame(WINDOW_UPDATE, 0, 0, uint32(this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    const data = unpad(flags, payload);
    const s = this.streams.get(id);
    // DATA on an idle or closed stream is ignored (grpc-go does so); after the client's END_STREAM it is a stream error.
    if (!s) return;
    if (s.remoteEnded) {
      this.resetStream(s, H2Error.STREAM_CLOSED);
      return;
    }
    s.recvWindow -= payload.length;
    if (s.recvWindow < 0) {
      this.resetStream(s, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    s.recvUnacked += payload.length;
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (!endStream && s.recvUnacked >= STREAM_RECV_WINDOW / 2) {
      this.queueFrame(WINDOW_UPDATE, 0, id, uint32(s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    s.listener?.onData(data);
    if (endStream && !s.closed) this.remoteEnd(s);
  }

  private onHeadersFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let p = unpad(flags, payload);
    if (flags & FLAG_PRIORITY) {
      if (p.length < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad HEADERS');
      p = p.subarray(5);
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) this.onHeaderBlock(id, p, endStream);
    else this.continuing = { id, endStream, fragments: [p], size: p.length };
  }

  /** A complete header block: a new request, or trailers of an open one. */
  private onHeaderBlock(id: number, block: Buffer, endStream: boolean): void {
    const headers = this.decode(block);
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: they must end its side.
      if (existing.remoteEnded || !endStream || headers === undefined) {
        this.resetStream(existing, H2Error.PROTOCOL_ERROR);
        return;
      }
      this.remoteEnd(existing);
      return;
    }
    if (id % 2 === 0 || id <= this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad stream id');
    this.lastStreamId = id;
    if (this.goingAway) return;
    if (headers === undefined) {
      // A malformed request (RFC 9113 §8.2.1, §8.3): a stream error, as in Go's HTTP/2.
      this.queueFrame(RST_STREAM, 0, id, uint32(H2Error.PROTOCOL_ERROR));
      return;
    }
    if (this.streams.size >= this.opts.maxConcurrentStreams) {
      this.resetById(id, H2Error.REFUSED_STREAM);
      return;
    }
    const s = new H2Stream(this, id, headers, this.peerInitialWindow);
    this.streams.set(id, s);
    this.opts.onStream(s);
    if (endStream && !s.closed) this.remoteEnd(s);
  }

  /**
   * Decodes a header block, keeping the HPACK state in step with the client's encoder; undefined
   * when the fields are not a well-formed request or trailers (see `wellFormed`).
   */
  private decode(block: Buffer): readonly HeaderField[] | undefined {
    const key = block.toString('latin1');
    const cached = this.blockCache.get(key);
    if (cached) return cached;
    const fields: HeaderField[] = [];
    try {
      this.decoder.write(block);
      this.decoder.execute();
      for (let h = this.decoder.read(); h; h = this.decoder.read()) fields.push([h.name, h.value]);
    } catch {
      throw new ConnectionError(H2Error.COMPRESSION_ERROR, 'bad header block');
    }
    // A block of indexed fields only means the same fields for as long as the dynamic table
    // does not change; any other block may change it.
    const indexed = onlyIndexed(block);
    if (!indexed || this.blockCache.size >= 64) this.blockCache.clear();
    if (!wellFormed(fields)) return undefined;
    if (indexed) this.blockCache.set(key, fields);
    return fields;
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad SETTINGS');
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      switch (key) {
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad ENABLE_PUSH');
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'bad INITIAL_WINDOW_SIZE');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
          }
          if (delta > 0) this.sendWaiting();
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xffffff) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
          this.peerMaxFrame = value;
          break;
        case SETTINGS_HEADER_TABLE_SIZE:
          // Our encoder uses no dynamic table, whatever its size.
          break;
        default:
          break;
      }
    }
    this.queueFrame(SETTINGS, FLAG_ACK, 0);
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad WINDOW_UPDATE');
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
      this.sendWaiting();
      return;
    }
    const s = this.streams.get(id);
    if (!s) return; // an idle or closed stream: ignored, as by grpc-go
    if (inc === 0) {
      this.resetStream(s, H2Error.PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      this.resetStream(s, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.pending.length > 0) this.sendPending(s);
  }

  /** The client ended its side of `s`. */
  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (s.localEnded) this.forget(s);
    s.listener?.onEnd();
  }

  sendHeadersFrame(s: H2Stream, block: Buffer, endStream: boolean): void {
    this.sentSincePing = true;
    // A block over the peer's frame size continues in CONTINUATION frames.
    const max = this.peerMaxFrame;
    let at = 0;
    do {
      const last = at + max >= block.length;
      const flags = (at === 0 && endStream ? FLAG_END_STREAM : 0) | (last ? FLAG_END_HEADERS : 0);
      this.queueFrame(at === 0 ? HEADERS : CONTINUATION, flags, s.id, block.subarray(at, at + max));
      at += max;
    } while (at < block.length);
    if (endStream) this.localEnd(s);
  }

  sendData(s: H2Stream, data: Buffer, cb: (() => void) | undefined): void {
    if (s.pending.length > 0) {
      s.pending.push({ data, cb });
      s.pendingBytes += data.length;
      return;
    }
    const rest = this.sendWithinWindow(s, data, cb);
    if (rest) {
      s.pending.push({ data: rest, cb });
      s.pendingBytes += rest.length;
      this.windowWaiters.add(s);
    }
  }

  /** Queues as much of `data` as the windows allow; returns what is left, or undefined when all went (then `cb` rides with the last frame). */
  private sendWithinWindow(s: H2Stream, data: Buffer, cb: (() => void) | undefined): Buffer | undefined {
    let at = 0;
    const max = this.peerMaxFrame;
    this.sentSincePing = true;
    do {
      const n = Math.min(data.length - at, max, s.sendWindow, this.connSendWindow);
      if (n <= 0 && data.length > 0) return data.subarray(at);
      this.queueFrame(DATA, 0, s.id, data.subarray(at, at + n));
      at += n;
      s.sendWindow -= n;
      this.connSendWindow -= n;
    } while (at < data.length);
    if (cb) this.outCallbacks.push(cb);
    return undefined;
  }

  /** Sends what `s` holds for window, as far as the windows now allow. */
  private sendPending(s: H2Stream): void {
    while (s.pending.length > 0) {
      const head = s.pending[0]!;
      const before = head.data.length;
      const rest = this.sendWithinWindow(s, head.data, head.cb);
      if (rest) {
        s.pendingBytes -= before - rest.length;
        head.data = rest;
        this.windowWaiters.add(s);
        return;
      }
      s.pending.shift();
      s.pendingBytes -= before;
    }
    this.windowWaiters.delete(s);
    if (s.pendingTrailers) {
      const t = s.pendingTrailers;
      s.pendingTrailers = undefined;
      this.sendHeadersFrame(s, t, true);
    }
    s.onDrain?.();
  }

  /** Connection window opened: streams waiting for it send, in the order they started waiting. */
  private sendWaiting(): void {
    for (const s of [...this.windowWaiters]) {
      if (this.connSendWindow <= 0) return;
      if (s.sendWindow > 0) this.sendPending(s);
    }
  }

  /** Our side of `s` ended (END_STREAM sent). */
  private localEnd(s: H2Stream): void {
    s.localEnded = true;
    this.flushAtEndOfTick();
    if (s.remoteEnded) {
      this.forget(s);
      return;
    }
    // The answer is complete while the client still sends: as grpc-go, end the stream with
    // RST_STREAM(NO_ERROR) so that it stops.
    this.queueFrame(RST_STREAM, 0, s.id, uint32(H2Error.NO_ERROR));
    this.forget(s);
  }

  /** Ends `s`, sending RST_STREAM with `code` (undefined: the client reset it), and tells its owner. */
  resetStream(s: H2Stream, code: number | undefined): void {
    if (s.closed) return;
    if (code !== undefined) this.queueFrame(RST_STREAM, 0, s.id, uint32(code));
    const wasOpen = !s.localEnded;
    this.forget(s);
    if (wasOpen) s.listener?.onReset();
  }

  private resetById(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s) this.resetStream(s, code);
    else this.queueFrame(RST_STREAM, 0, id, uint32(code));
  }

  private forget(s: H2Stream): void {
    s.closed = true;
    this.streams.delete(s.id);
    this.windowWaiters.delete(s);
    s.pending.length = 0;
    s.pendingBytes = 0;
    if (this.goingAway && this.streams.size === 0) this.end();
  }

  private goAway(code: number, debug: string): void {
    if (this.closedAll) return;
    this.queueFrame(GOAWAY, 0, 0, Buffer.concat([uint32(this.lastStreamId), uint32(code), Buffer.from(debug)]));
    this.goingAway = true;
    this.end();
  }

  /** Writes what is queued, ends the socket and tells every open stream's owner. */
  private end(): void {
    this.flush();
    this.socket.end();
    this.closeAll();
  }

  private closeAll(): void {
    if (this.closedAll) return;
    this.closedAll = true;
    clearTimeout(this.keepaliveTimer);
    const open = [...this.streams.values()];
    this.streams.clear();
    this.windowWaiters.clear();
    for (const s of open) {
      s.closed = true;
      if (!s.localEnded) s.listener?.onReset();
    }
    this.opts.onClose?.();
  }

  /**
   * Queues a frame for this iteration's write. The payload is not copied here (the flush copies
   * everything once): it must not change afterwards.
   */
  private queueFrame(type: number, flags: number, id: number, payload?: Buffer): void {
    if (this.closedAll) return;
    const head = Buffer.allocUnsafe(FRAME_HEADER_LEN);
    const len = payload?.length ?? 0;
    head[0] = (len >>> 16) & 0xff;
    head[1] = (len >>> 8) & 0xff;
    head[2] = len & 0xff;
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(id, 5);
    this.out.push(head);
    this.outBytes += FRAME_HEADER_LEN;
    if (len > 0) {
      this.out.push(payload!);
      this.outBytes += len;
    }
    if (!this.checkPhaseFlushPending) {
      this.checkPhaseFlushPending = true;
      H2Connection.flushInCheckPhase(this);
    }
  }

  /** Connections to flush in this iteration's check phase, in the order they queued their first frame. */
  private static checkPhaseQueue: H2Connection[] = [];

  /**
   * Flushes `conn` in the check phase. One `setImmediate` serves every connection of the
   * iteration; one per connection was an Immediate and a closure per connection and revision
   * of a fan-out.
   */
  private static flushInCheckPhase(conn: H2Connection): void {
    const queue = H2Connection.checkPhaseQueue;
    queue.push(conn);
    if (queue.length > 1) return;
    setImmediate(() => {
      H2Connection.checkPhaseQueue = [];
      for (const c of queue) {
        c.checkPhaseFlushPending = false;
        c.flush();
      }
    });
  }

  /**
   * Flushes at the end of this tick instead of waiting for the check phase: a finished answer
   * then shares a socket write with the other answers of its group commit, and does not wait
   * behind the socket writes of the watch events that commit queued on other connections.
   */
  private flushAtEndOfTick(): void {
    if (this.endOfTickFlushPending) return;
    this.endOfTickFlushPending = true;
    process.nextTick(() => {
      this.endOfTickFlushPending = false;
      this.flush();
    });
  }

  /** Writes every queued frame, in one socket write (one writev past FLUSH_COPY_BYTES). */
  private flush(): void {
    if (this.out.length === 0) return;
    const out = this.out;
    const bytes = this.outBytes;
    const callbacks = this.outCallbacks;
    this.out = [];
    this.outBytes = 0;
    this.outCallbacks = [];
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const done = callbacks.length === 0 ? undefined : () => { for (const cb of callbacks) cb(); };
    if (out.length === 1 || bytes <= FLUSH_COPY_BYTES) {
      this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out, bytes), done);
      return;
    }
    // Large pieces go as they are; the runs of small ones between them (frame headers, small
    // frames) are joined. Corked, the writes leave in one writev; `done` rides on the last.
    this.socket.cork();
    let run: Buffer[] = [];
    let runBytes = 0;
    const writeRun = (cb?: () => void): void => {
      if (run.length > 0) this.socket.write(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes), cb);
      run = [];
      runBytes = 0;
    };
    out.forEach((piece, i) => {
      const last = i === out.length - 1;
      if (piece.length < FLUSH_PIECE_BYTES) {
        run.push(piece);
        runBytes += piece.length;
        if (last) writeRun(done);
        return;
      }
      writeRun();
      this.socket.write(piece, last ? done : undefined);
    });
    this.socket.uncork();
  }

  /** The socket drained: streams that waited only for it may write again. */
  private drained(): void {
    for (const s of this.streams.values()) if (s.onDrain && s.pendingBytes === 0) s.onDrain();
  }
}

/** `n` as 4 big-endian bytes (a WINDOW_UPDATE increment, an error code, a stream id). */
function uint32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

/** A DATA or HEADERS payload without its padding; a pad longer than the payload is a connection error. */
function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & FLAG_PADDED)) return payload;
  if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'bad padding');
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad padding');
  return payload.subarray(1, payload.length - pad);
}
