/**
 * Makes etcd's own clients acceptable to Node's HTTP/2 server.
 *
 * etcd's Go clients send `:authority` values that are not valid authorities: etcdctl 3.4 sends
 * the whole endpoint URL (`http://127.0.0.1:2379`) on its per-endpoint maintenance calls, and
 * clientv3 3.5.0–3.5.9 sends `#initially=[http://…]` (etcd issue #13192). Go's HTTP/2 server
 * accepts them; nghttp2, under Node's `http2`, resets such streams with PROTOCOL_ERROR. The
 * authority means nothing to a single etcd member, so this transform sits between the socket
 * and the HTTP/2 session and replaces invalid authorities with `localhost`.
 *
 * It parses the client-to-server frame stream. DATA and control frames pass through as they
 * are. Every header block (HEADERS + CONTINUATION) is decoded with an HPACK decoder that
 * mirrors the client's compression state. Blocks pass through unchanged until the first one
 * that needs a fix; from then on every block of the connection is re-encoded as HPACK literals
 * without indexing, which leave the server's decoding table untouched, so the two sides can
 * never disagree about it.
 */
import hpack from 'hpack.js';

/** Length of the client connection preface. */
export const PREFACE_LEN = 24;
/** Length of a frame header (24-bit length, type, flags, stream id). */
export const FRAME_HEADER_LEN = 9;
export const TYPE_HEADERS = 0x1;
export const TYPE_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
export const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** The largest frame payload the server accepts until it says otherwise (SETTINGS_MAX_FRAME_SIZE default). */
const MAX_FRAME_PAYLOAD = 16384;
/** The default HPACK table size of both sides (SETTINGS_HEADER_TABLE_SIZE default). */
export const HPACK_TABLE_SIZE = 4096;

/** Characters RFC 3986 allows in an authority (what nghttp2 checks). */
const AUTHORITY_RE = /^[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]*$/;

/** True when nghttp2 accepts `value` as an `:authority` (only RFC 3986 authority characters). */
export function isValidAuthority(value: string): boolean {
  return AUTHORITY_RE.test(value);
}

/** One decoded header field. */
export interface HpackHeader {
  name: string;
  value: string;
}

/** The header block fragment of a HEADERS frame: its payload without padding and priority fields. */
export function headersFragment(frame: Buffer): Buffer {
  const flags = frame[4]!;
  let payload = frame.subarray(FRAME_HEADER_LEN);
  let pad = 0;
  if (flags & FLAG_PADDED) {
    pad = payload[0] ?? 0;
    payload = payload.subarray(1);
  }
  if (flags & FLAG_PRIORITY) payload = payload.subarray(5);
  return payload.subarray(0, Math.max(0, payload.length - pad));
}

/** Decodes a whole header block with `decoder` (an hpack.js decompressor, whose table it updates). Throws on a malformed block. */
export function decodeBlock(decoder: ReturnType<typeof hpack.decompressor.create>, block: Buffer): HpackHeader[] {
  decoder.write(block);
  decoder.execute();
  const out: HpackHeader[] = [];
  for (let h = decoder.read() as HpackHeader | null; h !== null; h = decoder.read() as HpackHeader | null) {
    out.push({ name: h.name, value: h.value });
  }
  return out;
}

/** A header block being collected across HEADERS and CONTINUATION frames. */
interface PendingBlock {
  streamId: number;
  endStream: boolean;
  fragments: Buffer[];
}

/**
 * Rewrites the client-to-server half of an HTTP/2 connection so that `:authority` values are
 * valid. Feed it the bytes as they arrive; it hands out the bytes to deliver, in order.
 */
export class AuthorityFixer {
  /** Bytes received but not yet forming a whole frame. */
  private buffered = Buffer.alloc(0);
  /** Preface bytes still to pass through before frames start. */
  private prefaceLeft = PREFACE_LEN;
  /** The header block being collected, if a HEADERS frame lacked END_HEADERS. */
  private pending: PendingBlock | undefined;
  /** Mirrors the client's HPACK encoder state. */
  private readonly decoder = hpack.decompressor.create({ table: { size: HPACK_TABLE_SIZE } });
  /** Set at the first rewritten block: from then on every block is re-encoded. */
  private reencode = false;
  /** Where rewritten bytes go (set per `feed` call). */
  private push: (b: Buffer) => void = () => {};

  /**
   * Consumes `chunk` and calls `out` with the bytes to deliver (possibly none, possibly the
   * chunk itself when it holds no header block). Throws on a malformed header block.
   */
  feed(chunk: Buffer, out: (b: Buffer) => void): void {
    this.push = out;
    this.consume(chunk);
  }

  private consume(chunk: Buffer): void {
    let data = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, data.length);
      this.push(data.subarray(0, n));
      this.prefaceLeft -= n;
      data = data.subarray(n);
    }
    let off = 0;
    let passFrom = 0; // start of a run of frames passed through unchanged
    while (data.length - off >= FRAME_HEADER_LEN) {
      const len = data.readUIntBE(off, 3);
      if (data.length - off < FRAME_HEADER_LEN + len) break;
      const type = data[off + 3]!;
      if (type === TYPE_HEADERS || type === TYPE_CONTINUATION) {
        if (off > passFrom) this.push(data.subarray(passFrom, off));
        this.onHeaderFrame(data.subarray(off, off + FRAME_HEADER_LEN + len));
        passFrom = off + FRAME_HEADER_LEN + len;
      }
      off += FRAME_HEADER_LEN + len;
    }
    if (off > passFrom) this.push(data.subarray(passFrom, off));
    this.buffered = Buffer.from(data.subarray(off));
  }

  private onHeaderFrame(frame: Buffer): void {
    const flags = frame[4]!;
    const streamId = frame.readUInt32BE(5) & 0x7fffffff;
    let payload = frame.subarray(FRAME_HEADER_LEN);
    if (frame[3] === TYPE_HEADERS) {
      payload = headersFragment(frame);
      this.pending = { streamId, endStream: (flags & FLAG_END_STREAM) !== 0, fragments: [] };
    }
    const block = this.pending;
    if (!block) {
      // A CONTINUATION without a HEADERS: a protocol error the session will report.
      this.push(frame);
      return;
    }
    block.fragments.push(Buffer.from(payload));
    if (!(flags & FLAG_END_HEADERS)) return;
    this.pending = undefined;
    const original = Buffer.concat(block.fragments);
    const headers = decodeBlock(this.decoder, original);
    let changed = false;
    for (const h of headers) {
      if (h.name === ':authority' && !isValidAuthority(h.value)) {
        h.value = 'localhost';
        changed = true;
      }
    }
    if (changed) this.reencode = true;
    this.pushBlock(block.streamId, block.endStream, this.reencode ? encodeLiterals(headers) : original);
  }

  /** Emits a header block as HEADERS plus as many CONTINUATION frames as it needs. */
  private pushBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let off = 0;
    let first = true;
    do {
      const n = Math.min(MAX_FRAME_PAYLOAD, block.length - off);
      const last = off + n === block.length;
      const head = Buffer.alloc(FRAME_HEADER_LEN);
      head.writeUIntBE(n, 0, 3);
      head[3] = first ? TYPE_HEADERS : TYPE_CONTINUATION;
      head[4] = (first && endStream ? FLAG_END_STREAM : 0) | (last ? FLAG_END_HEADERS : 0);
      head.writeUInt32BE(streamId, 5);
      this.push(Buffer.concat([head, block.subarray(off, off + n)]));
      off += n;
      first = false;
    } while (off < block.length);
  }
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits. */
function encodeInt(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
}

/** Encodes headers as "literal header field without indexing — new name" (RFC 7541 §6.2.2), no Huffman. */
function encodeLiterals(headers: readonly HpackHeader[]): Buffer {
  const parts: Buffer[] = [];
  for (const h of headers) {
    const name = Buffer.from(h.name, 'latin1');
    const value = Buffer.from(h.value, 'latin1');
    const prefix: number[] = [0x00];
    encodeInt(prefix, name.length, 7, 0);
    parts.push(Buffer.from(prefix), name);
    const vlen: number[] = [];
    encodeInt(vlen, value.length, 7, 0);
    parts.push(Buffer.from(vlen), value);
  }
  return Buffer.concat(parts);
}
