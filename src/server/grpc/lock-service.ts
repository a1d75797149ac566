/**
 * The gRPC Lock service (etcd `api/v3lock`, package `v3lockpb`): Lock waits until the caller
 * holds `<name>/<lease hex>`, Unlock deletes a lock key. The semantics live in
 * `src/lease/concurrency.ts`; errors that are not etcd's (e.g. a canceled wait) leave as
 * gRPC Unknown with their text, as etcd's in-process client errors do.
 */
import type { sendUnaryData, Server, ServerUnaryCall } from '@grpc/grpc-js';
import { lock, unlock } from '../../lease/concurrency.js';
import { LockService, type LockRequest, type LockResponse, type UnlockRequest } from '../../proto/gen/v3lock.gen.js';
import { toServiceError } from '../errors.js';
import type { EtcdServer } from '../etcd-server.js';
import { unary } from './unary.js';

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
      lock(etcd, call.request.name, call.request.lease, callSignal(call)).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(err)),
      );
    },
    unlock: unary(async (r: UnlockRequest) => ({ header: await unlock(etcd, r.key) })),
  });
}
