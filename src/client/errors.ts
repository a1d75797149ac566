/**
 * Typed client errors: one class per etcd error a caller acts on, recognised from the gRPC
 * status code plus etcd's message text (the server sends etcd's exact strings, see
 * docs/errors.md), in the manner of microsoft/etcd3's error table.
 *
 * Every class extends {@link EtcdClientError}, sets `name`, keeps the original gRPC error as
 * `cause` and says whether retrying the same request may succeed (`retryable`).
 */
import { status as Status, type ServiceError } from '@grpc/grpc-js';

/** Base class of every error the client throws for a failed etcd request. */
export class EtcdClientError extends Error {
  override name = 'EtcdClientError';
  /** True when sending the same request again (possibly to another endpoint) may succeed. */
  readonly retryable: boolean = false;
  /** The gRPC status code of the failed call, when the error came from the server. */
  readonly code: Status | undefined;

  /**
   * @param message the etcd message text (e.g. `etcdserver: request is too large`).
   * @param options `cause`: the underlying error; `code`: the gRPC status code.
   */
  constructor(message: string, options: { cause?: unknown; code?: Status } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
  }
}

/**
 * The requested revision has been compacted (`etcdserver: mvcc: required revision has been
 * compacted`). A watch that ends with it must re-list from {@link compactRevision} or later.
 */
export class CompactedError extends EtcdClientError {
  override name = 'CompactedError';
  /** The store's compact revision: the oldest revision still readable; 0n when unknown (a Range error). */
  readonly compactRevision: bigint;
  constructor(message: string, compactRevision: bigint, options: { cause?: unknown; code?: Status } = {}) {
    super(message, options);
    this.compactRevision = compactRevision;
  }
}

/** The requested revision is newer than the store's (`etcdserver: mvcc: required revision is a future revision`). */
export class FutureRevisionError extends EtcdClientError {
  override name = 'FutureRevisionError';
}

/** The lease does not exist or has expired (`etcdserver: requested lease not found`). */
export class LeaseNotFoundError extends EtcdClientError {
  override name = 'LeaseNotFoundError';
}

/** The authenticated user lacks the permission (`etcdserver: permission denied`). */
export class PermissionDeniedError extends EtcdClientError {
  override name = 'PermissionDeniedError';
}

/** The auth token is invalid or expired (`etcdserver: invalid auth token`); re-authenticate and retry. */
export class InvalidAuthTokenError extends EtcdClientError {
  override name = 'InvalidAuthTokenError';
  override readonly retryable = true;
}

/** The client's username or password was refused (`etcdserver: authentication failed, invalid user ID or password`). */
export class AuthFailedError extends EtcdClientError {
  override name = 'AuthFailedError';
}

/**
 * The request exceeds the server's `--max-request-bytes` (`etcdserver: request is too large`),
 * or even its gRPC message limit (RESOURCE_EXHAUSTED `grpc: received message larger than max`,
 * above `--max-request-bytes` + 512 KiB on etcd).
 */
export class RequestTooLargeError extends EtcdClientError {
  override name = 'RequestTooLargeError';
}

/** The txn has more operations than `--max-txn-ops` (`etcdserver: too many operations in txn request`). */
export class TooManyTxnOpsError extends EtcdClientError {
  override name = 'TooManyTxnOpsError';
}

/** The member has no raft leader (`etcdserver: no leader`); retryable. */
export class NoLeaderError extends EtcdClientError {
  override name = 'NoLeaderError';
  override readonly retryable = true;
}

/** No endpoint could be reached, or the connection broke during the call (gRPC UNAVAILABLE); retryable. */
export class UnavailableError extends EtcdClientError {
  override name = 'UnavailableError';
  override readonly retryable = true;
}

/** The call's deadline (`timeoutMs`) passed before the server answered (gRPC DEADLINE_EXCEEDED). */
export class DeadlineExceededError extends EtcdClientError {
  override name = 'DeadlineExceededError';
  override readonly retryable = true;
}

/** The caller's AbortSignal fired, or the client was closed, before the call finished. */
export class AbortError extends EtcdClientError {
  override name = 'AbortError';
}

/** etcd's message text → error class; matched exactly, as etcd clients do. */
const BY_MESSAGE: ReadonlyMap<string, new (message: string, options: { cause?: unknown; code?: Status }) => EtcdClientError> = new Map([
  ['etcdserver: mvcc: required revision is a future revision', FutureRevisionError],
  ['etcdserver: requested lease not found', LeaseNotFoundError],
  ['etcdserver: permission denied', PermissionDeniedError],
  ['etcdserver: invalid auth token', InvalidAuthTokenError],
  ['etcdserver: authentication failed, invalid user ID or password', AuthFailedError],
  ['etcdserver: request is too large', RequestTooLargeError],
  ['etcdserver: too many operations in txn request', TooManyTxnOpsError],
  ['etcdserver: no leader', NoLeaderError],
]);

const COMPACTED_MESSAGE = 'etcdserver: mvcc: required revision has been compacted';

/** gRPC's refusal of an oversized message (`grpc: received message larger than max (N vs. M)`, or grpc-js's wording). */
const MESSAGE_TOO_LARGE = /message larger than max/i;

/**
 * Converts a grpc-js error (or anything thrown) into an {@link EtcdClientError} subclass:
 * first by etcd's exact message text (and gRPC's message-size refusal → RequestTooLargeError),
 * then by gRPC code (UNAVAILABLE → UnavailableError,
 * DEADLINE_EXCEEDED → DeadlineExceededError, CANCELLED → AbortError), else the base class.
 * Already-typed errors are returned unchanged.
 */
export function toClientError(err: unknown): EtcdClientError {
  if (err instanceof EtcdClientError) return err;
  const grpc = err as Partial<ServiceError>;
  const code = typeof grpc.code === 'number' ? grpc.code : undefined;
  const details = typeof grpc.details === 'string' ? grpc.details : err instanceof Error ? err.message : String(err);
  const options = { cause: err, code };
  if (details === COMPACTED_MESSAGE) return new CompactedError(details, 0n, options);
  const known = BY_MESSAGE.get(details);
  if (known !== undefined) return new known(details, options);
  if (code === Status.RESOURCE_EXHAUSTED && MESSAGE_TOO_LARGE.test(details)) return new RequestTooLargeError(details, options);
  switch (code) {
    case Status.UNAVAILABLE: return new UnavailableError(details, options);
    case Status.DEADLINE_EXCEEDED: return new DeadlineExceededError(details, options);
    case Status.CANCELLED: return new AbortError(details, options);
    default: return new EtcdClientError(details, options);
  }
}

/**
 * `err` as a watch's or keep-alive's 'disconnected' event reports it: those failures are
 * retried by the client itself, so the error says `retryable`: `err` when it is, else an
 * {@link UnavailableError} with its message and code and `err` as `cause`.
 */
export function retriedError(err: EtcdClientError): EtcdClientError {
  return err.retryable ? err : new UnavailableError(err.message, { cause: err, code: err.code });
}
