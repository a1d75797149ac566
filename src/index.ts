/**
 * etcd-ts's public surface: the client, its errors and helpers, and the embedded server.
 * Everything importable from the package root is listed here.
 */
export { Client, type ClientOptions } from './client/client.js';
export type { CallOptions, ClientTlsOptions, ConnectionOptions } from './client/connection.js';
export type { BackoffOptions } from './client/backoff.js';
export {
  prefixRangeEnd,
  type Bytes,
  type DeleteOptions,
  type GetOptions,
  type Int64,
  type PutOptions,
  type RangeOptions,
  type SortOrder,
  type SortTarget,
} from './client/kv.js';
export { Compare, Op, Txn, type CompareOperator } from './client/txn.js';
export { Watcher, type WatchEvent, type WatchOptions, type WatchResponse, type WatcherEvents } from './client/watch.js';
export { LeaseKeepAlive, type KeepAliveOptions, type LeaseKeepAliveEvents } from './client/lease.js';
export { AuthApi, type PermissionType } from './client/auth.js';
export { MaintenanceApi } from './client/maintenance.js';
export { Election, Mutex, Session, type SessionOptions } from './client/concurrency.js';
export {
  AbortError,
  AuthFailedError,
  CompactedError,
  DeadlineExceededError,
  EtcdClientError,
  FutureRevisionError,
  InvalidAuthTokenError,
  LeaseNotFoundError,
  NoLeaderError,
  PermissionDeniedError,
  RequestTooLargeError,
  TooManyTxnOpsError,
  UnavailableError,
} from './client/errors.js';
export { startServer, type EmbeddedServer, type StartServerOptions } from './embed.js';
export { DataDirLockedError } from './server/data-dir-lock.js';
export type { ServerConfig } from './config.js';
export type { KeyValue } from './proto/gen/kv.gen.js';
export { AlarmType } from './proto/gen/rpc.gen.js';
export type {
  AlarmMember,
  AlarmResponse,
  AuthStatusResponse,
  CompactionResponse,
  DefragmentResponse,
  DeleteRangeResponse,
  HashKVResponse,
  LeaseGrantResponse,
  LeaseLeasesResponse,
  LeaseRevokeResponse,
  LeaseTimeToLiveResponse,
  MemberListResponse,
  MoveLeaderResponse,
  PutResponse,
  RangeResponse,
  ResponseHeader,
  StatusResponse,
  TxnResponse,
} from './proto/gen/rpc.gen.js';
