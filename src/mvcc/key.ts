/**
 * How the store holds keys in memory.
 *
 * etcd keys are arbitrary bytes ordered bytewise. Inside the store a key is a JavaScript
 * string in which each character is one byte (char code 0–255, Node's `latin1` encoding).
 * Such strings compare with `<` exactly as the bytes compare, V8 stores them one byte per
 * character, and they work directly as `Map` keys and B-tree keys. Convert at the edges only:
 * `keyFromBytes` when a request arrives, `keyToBytes` when a response leaves.
 */

/** A key as a one-byte-per-character string (see the module comment). */
export type Key = string;

/** Bytes (from the wire) → the store's key string. */
export function keyFromBytes(b: Uint8Array): Key {
  return Buffer.isBuffer(b) ? b.toString('latin1') : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** The store's key string → bytes for the wire. */
export function keyToBytes(k: Key): Buffer {
  return Buffer.from(k, 'latin1');
}

/**
 * The smallest key after every key that starts with `prefix` (etcd `clientv3.GetPrefixRangeEnd`):
 * the prefix with its last byte below 0xff incremented and what follows dropped; `"\0"`
 * (meaning "to the end") when every byte is 0xff.
 */
export function prefixEnd(prefix: Key): Key {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const c = prefix.charCodeAt(i);
    if (c < 0xff) return prefix.slice(0, i) + String.fromCharCode(c + 1);
  }
  return '\0';
}
