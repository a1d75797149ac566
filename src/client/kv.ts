/**
 * KV requests: key and range helpers, the option shapes of get / put / delete, and the
 * builders that turn them into etcd's RangeRequest / PutRequest / DeleteRangeRequest.
 * Responses are etcd's own messages (ts-proto shapes: bytes as Buffer, int64 as bigint).
 */
import {
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type DeleteRangeRequest,
  type PutRequest,
  type RangeRequest,
} from '../proto/gen/rpc.gen.js';
import type { CallOptions } from './connection.js';

/** A key or value: a string (encoded as UTF-8) or raw bytes. */
export type Bytes = string | Uint8Array;

/** A revision or lease ID: a bigint, or a number (must be a safe integer). */
export type Int64 = bigint | number;

/** `b` as a Buffer (strings UTF-8 encoded; byte arrays shared, not copied). */
export function toBuffer(b: Bytes): Buffer {
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * `n` as a bigint.
 * @throws RangeError for a number that is not a safe integer (above 2^53 a number no longer
 *   names one ID: `2 ** 60 + 1` is `2 ** 60`; pass a bigint).
 */
export function toBigInt(n: Int64): bigint {
  if (typeof n === 'number' && !Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer: pass revisions and lease IDs above 2^53 as bigints`);
  return typeof n === 'bigint' ? n : BigInt(n);
}

/**
 * The range end that makes `[key, end)` cover every key starting with `key` (etcd's
 * `GetPrefixRangeEnd`): the key with its last byte below 0xff incremented and what follows
 * dropped; `\0` (every key) when the key is empty or all 0xff.
 */
export function prefixRangeEnd(key: Uint8Array): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Which keys an operation covers besides the single key; at most one of these may be set. */
export interface RangeOptions {
  /** Every key starting with the key. */
  prefix?: boolean;
  /** Keys in `[key, rangeEnd)`. */
  rangeEnd?: Bytes;
  /** Every key `>= key`. */
  fromKey?: boolean;
}

/**
 * The key and rangeEnd fields for `key` and `options` (rangeEnd empty = the single key). An empty
 * key with `prefix` or `fromKey` becomes `\0`, every key, as clientv3's `WithPrefix` /
 * `WithFromKey` send it (etcd refuses an empty key: `key is not provided`).
 * @throws TypeError when two range options are set.
 */
export function keyRange(key: Bytes, options: RangeOptions | undefined): { key: Buffer; rangeEnd: Buffer } {
  const k = toBuffer(key);
  if (options === undefined) return { key: k, rangeEnd: Buffer.alloc(0) };
  const set = [options.prefix === true, options.rangeEnd !== undefined, options.fromKey === true].filter(Boolean).length;
  if (set > 1) throw new TypeError('at most one of prefix, rangeEnd and fromKey may be set');
  const open = options.prefix === true || options.fromKey === true;
  if (open && k.length === 0) return { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };
  if (options.prefix === true) return { key: k, rangeEnd: prefixRangeEnd(k) };
  if (options.fromKey === true) return { key: k, rangeEnd: Buffer.from([0]) };
  return { key: k, rangeEnd: options.rangeEnd === undefined ? Buffer.alloc(0) : toBuffer(options.rangeEnd) };
}

/** What a get sorts by. */
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';
/** Sort direction of a get. */
export type SortOrder = 'ascend' | 'descend';

/** Options of {@link Client.get} (and of a get inside a txn). */
export interface GetOptions extends RangeOptions, CallOptions {
  /** Read at this revision; 0 or unset = the latest. Older than the compact revision → CompactedError; newer than the store → FutureRevisionError. */
  revision?: Int64;
  /** At most this many keys; 0 or unset = no limit (`more` says whether keys were left out). */
  limit?: number;
  /** Sort order of the keys. @default key ascending */
  sort?: { target: SortTarget; order: SortOrder };
  /** Return keys without values. */
  keysOnly?: boolean;
  /** Return only `count`. */
  countOnly?: boolean;
  /** Serve from the member's local state without a linearizable read. */
  serializable?: boolean;
  /** Only keys last modified at or after this revision. */
  minModRevision?: Int64;
  /** Only keys last modified at or before this revision. */
  maxModRevision?: Int64;
  /** Only keys created at or after this revision. */
  minCreateRevision?: Int64;
  /** Only keys created at or before this revision. */
  maxCreateRevision?: Int64;
}

/** Options of {@link Client.put}. */
export interface PutOptions extends CallOptions {
  /** Attach the key to this lease (0 or unset = no lease). */
  lease?: Int64;
  /** Return the previous key-value in `prevKv`. */
  prevKv?: boolean;
  /** Keep the current value (the key must exist; pass an empty value). */
  ignoreValue?: boolean;
  /** Keep the current lease (the key must exist; no `lease` allowed). */
  ignoreLease?: boolean;
}

/** Options of {@link Client.delete}. */
export interface DeleteOptions extends RangeOptions, CallOptions {
  /** Return the deleted key-values in `prevKvs`. */
  prevKv?: boolean;
}

const SORT_TARGET: Record<SortTarget, RangeRequest_SortTarget> = {
  key: RangeRequest_SortTarget.KEY,
  version: RangeRequest_SortTarget.VERSION,
  create: RangeRequest_SortTarget.CREATE,
  mod: RangeRequest_SortTarget.MOD,
  value: RangeRequest_SortTarget.VALUE,
};

/** The RangeRequest of a get. */
export function rangeRequest(key: Bytes, options: GetOptions = {}): RangeRequest {
  return {
    ...keyRange(key, options),
    limit: BigInt(options.limit ?? 0),
    revision: toBigInt(options.revision ?? 0),
    sortOrder: options.sort === undefined ? RangeRequest_SortOrder.NONE
      : options.sort.order === 'ascend' ? RangeRequest_SortOrder.ASCEND : RangeRequest_SortOrder.DESCEND,
    sortTarget: options.sort === undefined ? RangeRequest_SortTarget.KEY : SORT_TARGET[options.sort.target],
    serializable: options.serializable ?? false,
    keysOnly: options.keysOnly ?? false,
    countOnly: options.countOnly ?? false,
    minModRevision: toBigInt(options.minModRevision ?? 0),
    maxModRevision: toBigInt(options.maxModRevision ?? 0),
    minCreateRevision: toBigInt(options.minCreateRevision ?? 0),
    maxCreateRevision: toBigInt(options.maxCreateRevision ?? 0),
  };
}

/** The PutRequest of a put. */
export function putRequest(key: Bytes, value: Bytes, options: PutOptions = {}): PutRequest {
  return {
    key: toBuffer(key),
    value: toBuffer(value),
    lease: toBigInt(options.lease ?? 0),
    prevKv: options.prevKv ?? false,
    ignoreValue: options.ignoreValue ?? false,
    ignoreLease: options.ignoreLease ?? false,
  };
}

/** The DeleteRangeRequest of a delete. */
export function deleteRequest(key: Bytes, options: DeleteOptions = {}): DeleteRangeRequest {
  return { ...keyRange(key, options), prevKv: options.prevKv ?? false };
}
