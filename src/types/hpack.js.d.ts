// Types for the parts of the `hpack.js` package (an HPACK implementation, RFC 7541) we use.
declare module 'hpack.js' {
  interface Decompressor {
    /** Queues a header block fragment. */
    write(block: Buffer): boolean;
    /** Decodes everything queued; throws on malformed input. */
    execute(): void;
    /** The next decoded header, or null. Names and values are one-char-per-byte strings. */
    read(): { name: string; value: string; neverIndex: boolean } | null;
  }
  const hpack: {
    decompressor: { create(options: { table: { size: number } }): Decompressor };
  };
  export default hpack;
}
