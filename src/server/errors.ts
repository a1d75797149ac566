/**
 * etcd's client-facing errors: gRPC status code plus the exact message text (etcd
 * `api/v3rpc/rpctypes/error.go`). Clients match on the text, so it is reproduced byte for byte.
 * See docs/errors.md for when each one is returned.
 */
import { status as Status, Metadata, type ServiceError } from '@grpc/grpc-js';

/** An error that leaves the server as a gRPC status with etcd's code and message. */
export class EtcdError extends Error {
  override name = 'EtcdError';
  /** The gRPC status code (`@grpc/grpc-js` `status`). */
  readonly code: Status;
  /** The gRPC status details: etcd's message text. */
  readonly details: string;
  /** Trailing metadata sent with the status (empty). */
  readonly metadata = new Metadata();

  constructor(code: Status, message: string) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

/** Turns any thrown value into what grpc-js sends: etcd errors as they are, others as Unknown. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  if (err instanceof EtcdError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.UNKNOWN, details: message, message, metadata: new Metadata() } as Partial<ServiceError>;
}

/**
 * The status of a stream whose handler returned the bare context error as its context ended
 * (etcd's Watch, LeaseKeepAlive and election Observe handlers do): grpc-go sends, and
 * go-grpc-prometheus counts, code Unknown with the error's text. `reason` is why the context
 * ended (`ServerCall`'s `cancelled` event).
 */
export function contextErrorStatus(reason: 'deadline' | 'cancelled'): { code: number; details: string } {
  return { code: Status.UNKNOWN, details: reason === 'deadline' ? 'context deadline exceeded' : 'context canceled' };
}

/** Go's names of the gRPC status codes (go-grpc-prometheus's `grpc_code`, grpc-go's error texts). */
export const GRPC_CODE_NAMES: Record<number, string> = {
  [Status.OK]: 'OK',
  [Status.CANCELLED]: 'Canceled',
  [Status.UNKNOWN]: 'Unknown',
  [Status.INVALID_ARGUMENT]: 'InvalidArgument',
  [Status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [Status.NOT_FOUND]: 'NotFound',
  [Status.ALREADY_EXISTS]: 'AlreadyExists',
  [Status.PERMISSION_DENIED]: 'PermissionDenied',
  [Status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [Status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [Status.ABORTED]: 'Aborted',
  [Status.OUT_OF_RANGE]: 'OutOfRange',
  [Status.UNIMPLEMENTED]: 'Unimplemented',
  [Status.INTERNAL]: 'Internal',
  [Status.UNAVAILABLE]: 'Unavailable',
  [Status.DATA_LOSS]: 'DataLoss',
  [Status.UNAUTHENTICATED]: 'Unauthenticated',
};

/** The text of a grpc-go status error, e.g. `rpc error: code = PermissionDenied desc = etcdserver: permission denied`. */
export function grpcErrorText(err: EtcdError): string {
  return `rpc error: code = ${GRPC_CODE_NAMES[err.code] ?? String(err.code)} desc = ${err.details}`;
}

/**
 * An error as etcd's maintenance server returns it where it passes the underlying error on
 * unmapped (`isAuthenticated`, Alarm): grpc-go sends it as Unknown with that error's own text,
 * the auth package's for an auth check (e.g. `auth: permission denied`), etcdserver's for the
 * rest (`etcdserver: request is too large`). Errors that are not etcd's pass through.
 */
export function unmappedError(err: unknown): unknown {
  if (!(err instanceof EtcdError)) return err;
  return new EtcdError(Status.UNKNOWN, AUTH_PACKAGE_TEXTS.get(err.details) ?? err.details);
}

/** etcd's client message of an auth check's error → the auth package's own text (etcd `auth/store.go`). */
const AUTH_PACKAGE_TEXTS: ReadonlyMap<string, string> = new Map([
  ['etcdserver: permission denied', 'auth: permission denied'],
  ['etcdserver: user name is empty', 'auth: user name is empty'],
  ['etcdserver: user name not found', 'auth: user not found'],
  ['etcdserver: invalid auth token', 'auth: invalid auth token'],
  ['etcdserver: revision of auth store is old', 'auth: revision in header is old'],
]);

const e = (code: Status, msg: string) => () => new EtcdError(code, msg);

/** Factories, one per etcd error (each call gives a fresh Error with its own stack). */
export const Errors = {
  emptyKey: e(Status.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
  keyNotFound: e(Status.INVALID_ARGUMENT, 'etcdserver: key not found'),
  valueProvided: e(Status.INVALID_ARGUMENT, 'etcdserver: value is provided'),
  leaseProvided: e(Status.INVALID_ARGUMENT, 'etcdserver: lease is provided'),
  tooManyOps: e(Status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'),
  duplicateKey: e(Status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'),
  invalidSortOption: e(Status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'),
  compacted: e(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'),
  futureRev: e(Status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
  noSpace: e(Status.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'),
  leaseNotFound: e(Status.NOT_FOUND, 'etcdserver: requested lease not found'),
  leaseExist: e(Status.FAILED_PRECONDITION, 'etcdserver: lease already exists'),
  leaseTTLTooLarge: e(Status.OUT_OF_RANGE, 'etcdserver: too large lease TTL'),
  watchCanceled: e(Status.CANCELLED, 'etcdserver: watch canceled'),
  memberExist: e(Status.FAILED_PRECONDITION, 'etcdserver: member ID already exist'),
  peerURLExist: e(Status.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'),
  /** etcd 3.4 maps this one to a client-side error value, which grpc-go sends as Unknown. */
  memberNotEnoughStarted: e(Status.UNKNOWN, 'etcdserver: re-configuration failed due to not enough started members'),
  memberBadURLs: e(Status.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'),
  memberNotFound: e(Status.NOT_FOUND, 'etcdserver: member not found'),
  memberNotLearner: e(Status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'),
  learnerNotReady: e(Status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member which is in sync with leader'),
  tooManyLearners: e(Status.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'),
  requestTooLarge: e(Status.INVALID_ARGUMENT, 'etcdserver: request is too large'),
  tooManyRequests: e(Status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'),
  permissionDenied: e(Status.PERMISSION_DENIED, 'etcdserver: permission denied'),
  authNotEnabled: e(Status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'),
  invalidAuthToken: e(Status.UNAUTHENTICATED, 'etcdserver: invalid auth token'),
  authOldRevision: e(Status.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old'),
  /** An error etcd has no gRPC mapping for: grpc-go sends it as Unknown with its own text. */
  unknown: (text: string) => new EtcdError(Status.UNKNOWN, text),
  rootUserNotExist: e(Status.FAILED_PRECONDITION, 'etcdserver: root user does not exist'),
  rootRoleNotExist: e(Status.FAILED_PRECONDITION, 'etcdserver: root user does not have root role'),
  userAlreadyExist: e(Status.FAILED_PRECONDITION, 'etcdserver: user name already exists'),
  userEmpty: e(Status.INVALID_ARGUMENT, 'etcdserver: user name is empty'),
  userNotFound: e(Status.FAILED_PRECONDITION, 'etcdserver: user name not found'),
  roleAlreadyExist: e(Status.FAILED_PRECONDITION, 'etcdserver: role name already exists'),
  roleNotFound: e(Status.FAILED_PRECONDITION, 'etcdserver: role name not found'),
  roleEmpty: e(Status.INVALID_ARGUMENT, 'etcdserver: role name is empty'),
  authFailed: e(Status.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password'),
  /** etcd 3.4 has no gRPC mapping for this one: it leaves as Unknown with the auth package's text. */
  noPasswordUser: e(Status.UNKNOWN, 'auth: authentication failed, password was given for no password user'),
  roleNotGranted: e(Status.FAILED_PRECONDITION, 'etcdserver: role is not granted to the user'),
  permissionNotGranted: e(Status.FAILED_PRECONDITION, 'etcdserver: permission is not granted to the role'),
  permissionNotGiven: e(Status.INVALID_ARGUMENT, 'etcdserver: permission not given'),
  invalidAuthMgmt: e(Status.INVALID_ARGUMENT, 'etcdserver: invalid auth management'),
  noLeader: e(Status.UNAVAILABLE, 'etcdserver: no leader'),
  notCapable: e(Status.UNAVAILABLE, 'etcdserver: not capable'),
  stopped: e(Status.UNAVAILABLE, 'etcdserver: server stopped'),
  timeout: e(Status.UNAVAILABLE, 'etcdserver: request timed out'),
  corrupt: e(Status.DATA_LOSS, 'etcdserver: corrupt cluster'),
} as const;
