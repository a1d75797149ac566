/**
 * The typed txn builder: `client.txn().if(...compares).then(...ops).else(...ops).commit()`.
 * Compares come from {@link Compare}, operations from {@link Op}; `Op.txn(new Txn()...)` nests
 * a txn inside a branch (etcd ≥ 3.3).
 */
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  type Compare as CompareMessage,
  type RequestOp,
  type TxnRequest,
  type TxnResponse,
} from '../proto/gen/rpc.gen.js';
import type { CallOptions } from './connection.js';
import {
  deleteRequest,
  putRequest,
  rangeRequest,
  toBigInt,
  toBuffer,
  type Bytes,
  type DeleteOptions,
  type GetOptions,
  type Int64,
  type PutOptions,
} from './kv.js';

/** A comparison operator of a txn compare. */
export type CompareOperator = '=' | '!=' | '>' | '<';

const RESULT: Record<CompareOperator, Compare_CompareResult> = {
  '=': Compare_CompareResult.EQUAL,
  '!=': Compare_CompareResult.NOT_EQUAL,
  '>': Compare_CompareResult.GREATER,
  '<': Compare_CompareResult.LESS,
};

function compare(key: Bytes, op: CompareOperator, target: Compare_CompareTarget, field: Partial<CompareMessage>): CompareMessage {
  return { key: toBuffer(key), result: RESULT[op], target, rangeEnd: Buffer.alloc(0), ...field };
}

/** Txn guards. Each compares one attribute of `key` with a constant; a missing key has version, create, mod and lease 0. */
export const Compare = {
  /** The key's value compared byte-wise with `value` (false when the key is missing). */
  value: (key: Bytes, op: CompareOperator, value: Bytes): CompareMessage =>
    compare(key, op, Compare_CompareTarget.VALUE, { value: toBuffer(value) }),
  /** The key's version (number of puts since creation; 0 = missing). */
  version: (key: Bytes, op: CompareOperator, version: Int64): CompareMessage =>
    compare(key, op, Compare_CompareTarget.VERSION, { version: toBigInt(version) }),
  /** The revision that created the key (0 = missing). */
  createRevision: (key: Bytes, op: CompareOperator, revision: Int64): CompareMessage =>
    compare(key, op, Compare_CompareTarget.CREATE, { createRevision: toBigInt(revision) }),
  /** The revision of the key's last modification (0 = missing). */
  modRevision: (key: Bytes, op: CompareOperator, revision: Int64): CompareMessage =>
    compare(key, op, Compare_CompareTarget.MOD, { modRevision: toBigInt(revision) }),
  /** The key's lease ID (0 = no lease). */
  lease: (key: Bytes, op: CompareOperator, lease: Int64): CompareMessage =>
    compare(key, op, Compare_CompareTarget.LEASE, { lease: toBigInt(lease) }),
} as const;

/** Operations of a txn branch; their results appear in `TxnResponse.responses`, in order. */
export const Op = {
  /** A range read (`responseRange`). Call options in `options` are ignored inside a txn. */
  get: (key: Bytes, options?: GetOptions): RequestOp => ({ requestRange: rangeRequest(key, options) }),
  /** A put (`responsePut`). */
  put: (key: Bytes, value: Bytes, options?: PutOptions): RequestOp => ({ requestPut: putRequest(key, value, options) }),
  /** A delete (`responseDeleteRange`). */
  delete: (key: Bytes, options?: DeleteOptions): RequestOp => ({ requestDeleteRange: deleteRequest(key, options) }),
  /** A nested txn (`responseTxn`). */
  txn: (txn: Txn): RequestOp => ({ requestTxn: txn.toRequest() }),
} as const;

/**
 * A txn under construction. `if` guards are ANDed; `then` runs when all hold, `else` otherwise.
 * Each method appends and returns `this`.
 */
export class Txn {
  /** Sends the request; absent for a txn built only to be nested with `Op.txn`. */
  private readonly send: ((request: TxnRequest, options?: CallOptions) => Promise<TxnResponse>) | undefined;
  private readonly request: TxnRequest = { compare: [], success: [], failure: [] };

  /** @param send how commit() sends the request (set by `client.txn()`); omit for a nested txn. */
  constructor(send?: (request: TxnRequest, options?: CallOptions) => Promise<TxnResponse>) {
    this.send = send;
  }

  /** Adds guards (all must hold for `then`). */
  if(...compares: CompareMessage[]): this {
    this.request.compare.push(...compares);
    return this;
  }

  /** Adds operations run when every guard holds. */
  then(...ops: RequestOp[]): this {
    this.request.success.push(...ops);
    return this;
  }

  /** Adds operations run when some guard fails. */
  else(...ops: RequestOp[]): this {
    this.request.failure.push(...ops);
    return this;
  }

  /** The TxnRequest built so far. */
  toRequest(): TxnRequest {
    return { compare: [...this.request.compare], success: [...this.request.success], failure: [...this.request.failure] };
  }

  /**
   * Sends the txn (never retried: it may write).
   * @returns etcd's TxnResponse: `succeeded` says which branch ran, `responses` its results.
   * @throws TooManyTxnOpsError, RequestTooLargeError, CompactedError/FutureRevisionError (a get at an old/new
   *   revision), UnavailableError, AbortError, DeadlineExceededError; TypeError for a txn built with `new Txn()`.
   */
  commit(options?: CallOptions): Promise<TxnResponse> {
    if (this.send === undefined) return Promise.reject(new TypeError('a txn built with new Txn() can only be nested with Op.txn; use client.txn()'));
    return this.send(this.toRequest(), options);
  }
}
