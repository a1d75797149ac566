/**
 * Revisions: the clock of the MVCC store (etcd `mvcc/revision.go`).
 *
 * Every write transaction gets one *main* revision; each change inside it gets a *sub*
 * revision, 0, 1, 2… in the order the changes were made. The store starts at main revision 1
 * (an empty store), so the first write is revision 2, as in etcd.
 *
 * On disk a revision is 17 bytes: 8-byte big-endian main, the byte `_`, 8-byte big-endian
 * sub; a tombstone (a deletion) carries an 18th byte `t`. Byte order equals revision order, so
 * the backend's key order is history order.
 */

/** A (main, sub) revision pair. Both are non-negative integers below 2^53. */
export interface Revision {
  readonly main: number;
  readonly sub: number;
}

/** Length of an encoded revision without the tombstone mark. */
export const REV_BYTES_LEN = 17;
/** Length of an encoded revision with the tombstone mark `t`. */
export const MARKED_REV_BYTES_LEN = 18;
const TOMBSTONE_MARK = 0x74; // 't'

/** Returns a negative number, zero or a positive number as `a` is before, equal to or after `b`. */
export function compareRev(a: Revision, b: Revision): number {
  return a.main !== b.main ? a.main - b.main : a.sub - b.sub;
}

/** Encodes a revision as the backend key (etcd `revToBytes`), with the tombstone mark if asked. */
export function revToBytes(rev: Revision, tombstone = false): Buffer {
  const b = Buffer.allocUnsafe(tombstone ? MARKED_REV_BYTES_LEN : REV_BYTES_LEN);
  b.writeBigUInt64BE(BigInt(rev.main), 0);
  b[8] = 0x5f; // '_'
  b.writeBigUInt64BE(BigInt(rev.sub), 9);
  if (tombstone) b[17] = TOMBSTONE_MARK;
  return b;
}

/** Decodes a backend key into its revision (etcd `bytesToRev`). */
export function bytesToRev(b: Uint8Array): Revision {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { main: Number(buf.readBigUInt64BE(0)), sub: Number(buf.readBigUInt64BE(9)) };
}

/**
 * The main revision of the backend key at `b[start…]`, as `bytesToRev` reads it but with no
 * Revision nor BigInt made (for the restart's scan of every record, see `Backend.scanInPlace`).
 */
export function mainRevAt(b: Buffer, start: number): number {
  return b.readUInt32BE(start) * 2 ** 32 + b.readUInt32BE(start + 4);
}

/** The sub revision of the backend key at `b[start…]` (see `mainRevAt`). */
export function subRevAt(b: Buffer, start: number): number {
  return b.readUInt32BE(start + 9) * 2 ** 32 + b.readUInt32BE(start + 13);
}

/** `isTombstone` of the backend key `b[start, end)`. */
export function isTombstoneAt(b: Uint8Array, start: number, end: number): boolean {
  return end - start === MARKED_REV_BYTES_LEN && b[start + 17] === TOMBSTONE_MARK;
}

/** True when a backend key carries the tombstone mark (etcd `isTombstone`). */
export function isTombstone(b: Uint8Array): boolean {
  return b.length === MARKED_REV_BYTES_LEN && b[17] === TOMBSTONE_MARK;
}
