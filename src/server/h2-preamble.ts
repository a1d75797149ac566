/**
 * Chooses, per HTTP/2 connection (plaintext, or TLS after the handshake), between Node's native
 * socket path and the JS path through the `:authority` fixer (see h2-authority.ts), by reading
 * the connection's first request before the HTTP/2 session exists.
 *
 * Most clients send valid authorities; only etcdctl 3.4's per-endpoint calls and clientv3
 * 3.5.0–3.5.9 do not, and a Go client keeps one authority for every request of a connection.
 * A session reading the socket's native handle skips the JS duplex and Node's JSStreamSocket,
 * which cost a quarter of a small request's server time. But the session must exist before the
 * first request arrives: grpc-go sends no request until it has the server's SETTINGS frame. So
 * the server sends its preface itself, as an empty SETTINGS frame (no parameter changes, so it
 * says nothing the session's own SETTINGS, which follows, does not), and reads the client's
 * frames until it has both the client's ACK of that frame and the first complete header block:
 * - the ACK is dropped (the session never sent that SETTINGS, and nghttp2 treats an ACK it did
 *   not ask for as a connection error);
 * - PINGs are answered here and dropped (keepalive must not wait for the first request);
 * - every other frame, the preface and the header block are kept and replayed into the session.
 * The verdict is `native` when the first request's `:authority` is valid, else `fixed`.
 */
import hpack from 'hpack.js';
import {
  FLAG_END_HEADERS,
  FRAME_HEADER_LEN,
  HPACK_TABLE_SIZE,
  PREFACE_LEN,
  TYPE_CONTINUATION,
  TYPE_HEADERS,
  decodeBlock,
  headersFragment,
  isValidAuthority,
} from './h2-authority.js';

const TYPE_SETTINGS = 0x4;
const TYPE_PING = 0x6;
const FLAG_ACK = 0x1;
/** A client may send this much before a verdict; more is refused (PreambleError). */
const MAX_PREAMBLE_BYTES = 4 * 1024 * 1024;

/** The server's provisional preface: a SETTINGS frame with no parameters, on stream 0. */
export const EMPTY_SETTINGS = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);

/** Which path a connection takes, and the client bytes to replay into its session, in order. */
export interface PreambleVerdict {
  path: 'native' | 'fixed';
  /**
   * Whether the first request is a gRPC call: its content-type contains `application/grpc`,
   * etcd's test (`grpcHandlerFunc`) for sending a TLS connection's request to gRPC rather than
   * to the HTTP handler.
   */
  grpc: boolean;
  replay: Buffer;
}

/** Thrown for a client that sends more than MAX_PREAMBLE_BYTES before its first request. */
export class PreambleError extends Error {
  override name = 'PreambleError';
}

/**
 * Reads the start of one client connection (from its first byte, the preface included). Feed it
 * the bytes as they arrive; `reply` is called with bytes to send back (PING ACKs).
 */
export class H2Preamble {
  private readonly reply: (b: Buffer) => void;
  /** Bytes received and not yet parsed into whole frames. */
  private buffered: Buffer = Buffer.alloc(0);
  /** Bytes to replay into the session. */
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private prefaceSeen = false;
  private ackSeen = false;
  /** Fragments of the first header block, until END_HEADERS. */
  private block: Buffer[] | undefined;
  /** What the first request's header block says, once it is complete. */
  private first: FirstRequest | undefined;

  constructor(reply: (b: Buffer) => void) {
    this.reply = reply;
  }

  /** Consumes `chunk`; returns the verdict once there is one (then feed no more). */
  feed(chunk: Buffer): PreambleVerdict | undefined {
    let data = this.buffered.length > 0 ? Buffer.concat([this.buffered, chunk]) : chunk;
    if (!this.prefaceSeen) {
      if (data.length < PREFACE_LEN) {
        this.buffered = data;
        return undefined;
      }
      this.keep(data.subarray(0, PREFACE_LEN));
      this.prefaceSeen = true;
      data = data.subarray(PREFACE_LEN);
    }
    let off = 0;
    while (data.length - off >= FRAME_HEADER_LEN) {
      const len = data.readUIntBE(off, 3);
      const end = off + FRAME_HEADER_LEN + len;
      if (data.length < end) break;
      this.onFrame(data.subarray(off, end));
      off = end;
      if (this.ackSeen && this.first !== undefined) {
        this.keep(data.subarray(off));
        return { path: this.first.authorityValid ? 'native' : 'fixed', grpc: this.first.grpc, replay: Buffer.concat(this.kept) };
      }
    }
    this.buffered = Buffer.from(data.subarray(off));
    if (this.keptBytes + this.buffered.length > MAX_PREAMBLE_BYTES) throw new PreambleError('HTTP/2 client sent too much before its first request');
    return undefined;
  }

  private keep(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.kept.push(Buffer.from(bytes));
    this.keptBytes += bytes.length;
  }

  private onFrame(frame: Buffer): void {
    const type = frame[3]!;
    const flags = frame[4]!;
    if (type === TYPE_SETTINGS && flags & FLAG_ACK && !this.ackSeen) {
      this.ackSeen = true;
      return;
    }
    if (type === TYPE_PING && !(flags & FLAG_ACK)) {
      const ack = Buffer.from(frame);
      ack[4] = FLAG_ACK;
      this.reply(ack);
      return;
    }
    this.keep(frame);
    if (this.first !== undefined) return;
    if (type === TYPE_HEADERS) {
      this.block = [headersFragment(frame)];
    } else if (type === TYPE_CONTINUATION && this.block) {
      this.block.push(frame.subarray(FRAME_HEADER_LEN));
    } else {
      return;
    }
    if (flags & FLAG_END_HEADERS) this.first = inspectFirstBlock(Buffer.concat(this.block));
  }
}

/** What the first request of a connection says about where the connection should go. */
interface FirstRequest {
  /** Its `:authority` is valid, or absent. */
  authorityValid: boolean;
  /** Its content-type contains `application/grpc`. */
  grpc: boolean;
}

/**
 * Reads the first header block of a connection. A block that does not decode counts as a gRPC
 * call with an invalid authority: the fixer's path then reports the error as it does today.
 */
function inspectFirstBlock(block: Buffer): FirstRequest {
  try {
    const headers = decodeBlock(hpack.decompressor.create({ table: { size: HPACK_TABLE_SIZE } }), block);
    return {
      authorityValid: headers.every((h) => h.name !== ':authority' || isValidAuthority(h.value)),
      grpc: headers.some((h) => h.name === 'content-type' && h.value.includes('application/grpc')),
    };
  } catch {
    return { authorityValid: false, grpc: true };
  }
}
