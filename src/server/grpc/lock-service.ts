/**
 * The gRPC Lock service (etcd `api/v3lock`, package `v3lockpb`): Lock waits until the caller
 * holds `<name>/<lease hex>`, Unlock deletes a lock key. The semantics live in
 * `src/lease/concurrency.ts`; every error leaves as gRPC Unknown with its text (see
 * `clientError`).
 */
import { Metadata, status as Status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import type { TokenMetadata } from '../../auth/auth-store.js';
import { lock, unlock } from '../../lease/concurrency.js';
import { LockService, type LockRequest, type LockResponse, type UnlockRequest } from '../../proto/gen/v3lock.gen.js';
import type { EtcdServer } from '../etcd-server.js';

/**
 * The status etcd's lock and election servers answer with for any error: their in-process
 * clientv3 turns even etcd's own errors into values grpc-go sends as Unknown with the message
 * (measured: a Lock with an unknown lease answers Unknown "etcdserver: requested lease not found").
 */
export function clientError(err: unknown): Partial<ServiceError> {
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.UNKNOWN, details: message, message, metadata: new Metadata() } as Partial<ServiceError>;
}

/** Wraps `fn(request, metadata)` as a grpc-js unary handler answering errors as `clientError`. */
export function clientUnary<Req, Res>(fn: (req: Req, metadata: TokenMetadata) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => fn(call.request, call.metadata))
      .then((res) => callback(null, res), (err: unknown) => callback(clientError(err)));
  };
}

/** An AbortSignal that fires when the client cancels `call` (or its deadline passes). */
export function callSignal(call: { on(event: 'cancelled', listener: () => void): unknown }): AbortSignal {
  const ac = new AbortController();
  call.on('cancelled', () => ac.abort());
  return ac.signal;
}

/** Registers the Lock service of `etcd` on `grpc`. */
export function addLockService(grpc: Server, etcd: EtcdServer): void {
  grpc.addService(LockService, {
    lock: (call: ServerUnaryCall<LockRequest, LockResponse>, callback: sendUnaryData<LockResponse>) => {
      Promise.resolve()
        .then(() => lock(etcd, call.request.name, call.request.lease, callSignal(call), etcd.auth.authInfo(call.metadata)))
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(clientError(err)),
        );
    },
    unlock: clientUnary(async (r: UnlockRequest, md) => ({ header: await unlock(etcd, r.key, etcd.auth.authInfo(md)) })),
  });
}
