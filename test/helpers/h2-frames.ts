// HTTP/2 bytes for tests of the frame-level code (h2-authority.ts, h2-preamble.ts).

/** The client connection preface. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** A frame: 24-bit length, type, flags, stream id, payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/**
 * A header block of literal fields with new names, no Huffman, names and values under 127
 * bytes: with incremental indexing (0x40, added to the decoder's table) or without (0x00).
 */
export function literalBlock(headers: [string, string][], indexing: boolean): Buffer {
  const parts: Buffer[] = [];
  for (const [n, v] of headers) parts.push(Buffer.from([indexing ? 0x40 : 0x00, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v));
  return Buffer.concat(parts);
}
